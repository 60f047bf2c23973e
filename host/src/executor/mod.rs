//! Executors run trials. The campaign loop drives every executor through [`Executor`] and knows
//! nothing about processes, PBS or functions; an executor knows nothing about strategies,
//! objectives or the study database.
//!
//! A trial runs in two steps so that its job id is recorded before anything can be lost:
//! [`Executor::submit`] starts it and returns a [`JobId`] (the campaign stores it on the trial row),
//! then [`Executor::wait`] resolves when it ends. After a host restart, the campaign calls `wait`
//! again with the stored job id when [`Executor::jobs_outlive_host`] is true (remote batch jobs keep
//! running while a laptop sleeps), and re-runs the trial otherwise.

pub mod bench;
pub mod local;

use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;

use crate::space::{Assignment, Metrics};

pub type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

/// What an executor needs to run one trial.
#[derive(Clone, Debug)]
pub struct TrialSpec {
    pub id: u64,
    pub params: Assignment,
    /// `params.json` content: name -> typed value.
    pub params_json: serde_json::Map<String, serde_json::Value>,
    /// Directory reserved for this trial (the executor creates it if it uses one).
    pub dir: PathBuf,
}

/// An executor's handle on a started trial, stored on the trial row.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JobId(pub String);

/// How a trial run ended, as far as the executor can tell. Interpreting the metrics (which one
/// is the objective, whether it is present) is the campaign's job.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RunReport {
    /// Every numeric metric the trial reported (final `result.json` values override per-epoch lines).
    pub metrics: Metrics,
    /// Per-epoch metric lines, in order, when the trial wrote any.
    pub curve: Vec<Metrics>,
    /// Set when the run failed: exit status, signal, timeout; written for a person to read.
    pub failure: Option<String>,
    /// The last lines of the trial's output, kept for failed trials.
    pub log_tail: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum ExecutorError {
    /// The trial could not be started; the message says why and what to do.
    #[error("could not start trial {trial}: {message}")]
    Submit { trial: u64, message: String },
    /// The executor lost track of a job (e.g. its record is gone); the trial should be re-run.
    #[error("lost track of job {job}: {message}")]
    Lost { job: String, message: String },
    #[error("{0}")]
    Other(String),
}

pub trait Executor: Send + Sync + 'static {
    /// A short name for logs and the study record ("bench", "local", "pbs", "globus").
    fn kind(&self) -> &'static str;

    /// Whether a job started by an earlier host process can still be waited on after a restart.
    fn jobs_outlive_host(&self) -> bool;

    fn submit(&self, trial: &TrialSpec) -> BoxFuture<Result<JobId, ExecutorError>>;

    fn wait(&self, trial: &TrialSpec, job: &JobId) -> BoxFuture<Result<RunReport, ExecutorError>>;

    /// Stops a running job. Stopping one that already ended is not an error.
    fn cancel(&self, job: &JobId) -> BoxFuture<Result<(), ExecutorError>>;
}
