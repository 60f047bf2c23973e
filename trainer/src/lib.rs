//! alcf-trainer: a native tch (libtorch) CIFAR-100 trainer that speaks the alcf-host trial
//! protocol (metrics.jsonl per epoch, result.json at the end).

pub mod config;
pub mod data;
pub mod download;
pub mod metrics;
pub mod models;
pub mod optim;
pub mod place;
pub mod train;
pub mod xpu;
