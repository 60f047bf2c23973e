//! End-to-end tests: the real `alcf-host` binary, real wasm components, real SQLite files and
//! real subprocesses. One harness (this file) with one module per area.

mod agent;
mod auth;
mod cli;
mod compare;
mod conditional;
mod dashboard;
mod doctor;
mod globus;
mod init;
mod llm;
mod multi_objective;
mod newuser;
mod ops;
mod pbs;
mod pruning;
mod python;
mod report;
mod resume;
mod sandbox;
mod ssh;
mod strategies;
