//! alcf-host: hyperparameter search where strategies are sandboxed WebAssembly plugins.
//!
//! This is the library; the `alcf-host` binary (src/main.rs, src/cli/) parses arguments, shows
//! progress and sets up logging on top of it. See docs/ARCHITECTURE.md for the bird's-eye view.
//! Module map:
//! - [`auth`]: Globus login and the token store for Sophia and Globus Compute.
//! - [`space`]: search spaces, assignments and their validation (shared vocabulary).
//! - [`config`]: the TOML study configuration.
//! - [`study`]: the study database (SQLite) and its lock.
//! - [`trial`]: the trial lifecycle every driver goes through.
//! - [`multi`]: multi-objective studies: their stored objectives, Pareto fronts and hypervolumes.
//! - [`plugin`]: the wasmtime runtime that loads and sandboxes strategy plugins.
//! - [`executor`]: how trials run (bench functions, local subprocesses) and the contract for remote ones.
//! - [`campaign`]: the ask/tell loop that ties them together, and its events.
//! - [`llm`]: chat completions for strategies that ask an LLM (Sophia's OpenAI-compatible gateway).

pub mod auth;
pub mod campaign;
pub mod config;
pub mod executor;
pub mod llm;
pub mod machine;
pub mod multi;
pub mod plugin;
pub mod space;
pub mod study;
pub mod trial;
pub mod utc;
