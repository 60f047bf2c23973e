//! alcf-host: hyperparameter search where strategies are sandboxed WebAssembly plugins.
//!
//! See docs/ARCHITECTURE.md for the bird's-eye view. Module map:
//! - [`space`]: search spaces, assignments and their validation (shared vocabulary).
//! - [`config`]: the TOML study configuration.
//! - [`study`]: the study database (SQLite).
//! - [`plugin`]: the wasmtime runtime that loads and sandboxes strategy plugins.
//! - [`executor`]: how trials run (bench functions, local subprocesses).
//! - [`campaign`]: the ask/tell loop that ties them together.
//! - [`compare`]: `alcf-host compare`, strategies side by side, with a report (tables, raw trials, plots).

pub mod campaign;
pub mod commands;
pub mod compare;
pub mod config;
pub mod executor;
pub mod plugin;
pub mod progress;
pub mod space;
pub mod study;
