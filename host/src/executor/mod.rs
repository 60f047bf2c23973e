//! Executors run trials. The campaign drives every executor through [`Executor`] and knows nothing
//! about processes, PBS or functions; an executor knows nothing about strategies, objectives or the
//! study database.
//!
//! # The contract, and what each method promises after a crash
//!
//! A trial runs in steps so that nothing can be lost between them:
//!
//! 1. The campaign writes the trial row (`pending`) with its deterministic [`TrialSpec::job_name`].
//! 2. [`Executor::submit`] starts a batch of trials and returns one [`JobHandle`] per trial. The
//!    campaign stores each handle on its trial row before it waits. If the host dies between the
//!    two, the job still carries its name: on resume, [`Executor::find`] looks it up by name.
//! 3. [`Executor::wait`] resolves when the job ends, with a [`RunReport`]. While it runs, it sends
//!    the trial's intermediate metrics (one object per epoch, as the trial protocol writes them) to
//!    the [`MetricsSink`]. A `wait` never fails for a transient reason (a dropped connection, a
//!    busy scheduler): it keeps trying and reports the executor as paused through
//!    [`Executor::health`] instead. It fails with [`ExecutorError::Lost`] only when the job is
//!    known to be gone without a result.
//!
//! After a host restart the campaign calls `wait` again with the stored handle when
//! [`Executor::jobs_outlive_host`] is true (remote batch jobs keep running while a laptop sleeps),
//! and re-runs the trial otherwise.
//!
//! Ending a run: an ordinary exit (budget spent, first Ctrl-C with remote jobs, a plugin that gave
//! up) calls [`Executor::detach`]: remote jobs keep running and a resume re-attaches to them. The
//! second Ctrl-C calls [`Executor::cancel`]: the jobs are stopped, their trials are recorded as
//! `cancelled`, and a resume re-runs them as new attempts, never re-attaching to a cancelled job.

pub mod argv;
pub mod bench;
pub mod globus;
pub mod local;
pub mod pbs;
pub mod process;
pub mod protocol;

use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::space::{Assignment, Metrics};

pub type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

/// What an executor needs to run one attempt of one trial.
#[derive(Clone, Debug)]
pub struct TrialSpec {
    pub id: u64,
    /// 1 for the first run of a trial; a re-run (after a lost job, a cancel or a system failure)
    /// counts up.
    pub attempt: u32,
    pub params: Assignment,
    /// `params.json` content: name -> typed value.
    pub params_json: serde_json::Map<String, serde_json::Value>,
    /// Directory reserved for this trial (the executor creates it if it uses one). Every attempt
    /// of a trial uses the same directory, so a program that can resume from a checkpoint there
    /// continues instead of starting over.
    pub dir: PathBuf,
    /// A name that is the same every time this attempt is rendered: [`job_name`]. Remote executors
    /// give it to the job (PBS `-N`, a task tag) so a job submitted by a host that died before it
    /// recorded the handle can still be found.
    pub job_name: String,
    /// The trial's slot, 0..parallel-1: free while no trial holds it, stable while this one runs.
    /// Lets a config pin each running trial to its own GPU (`{slot}`).
    pub slot: u32,
    /// The trial whose directory this one starts from (an agent's `jobs.submit` with a parent):
    /// its program gets that directory as `ALCF_PARENT_DIR`, to load a checkpoint from it.
    pub parent: Option<u64>,
}

/// The deterministic job name of one attempt of one trial: `<study>.t<id>.a<attempt>`, cut to
/// what schedulers accept (PBS allows 236 characters; names are kept well under that).
pub fn job_name(study: &str, trial: u64, attempt: u32) -> String {
    let study: String = study
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() || matches!(c, '_' | '-') { c } else { '_' })
        .take(48)
        .collect();
    format!("{study}.t{trial}.a{attempt}")
}

/// An executor's handle on a submitted job. It is stored on the trial row (as JSON), so it must
/// hold everything the executor needs to find the job again from another host process.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct JobHandle {
    /// The job's id as a person would look for it (`qstat 12345.aurora-pbs`, a pid, a task id).
    pub id: String,
    /// Anything else the executor needs (a node, a slot, a remote directory); executor-specific.
    #[serde(default, skip_serializing_if = "serde_json::Value::is_null")]
    pub data: serde_json::Value,
}

impl JobHandle {
    pub fn new(id: impl Into<String>) -> JobHandle {
        JobHandle { id: id.into(), data: serde_json::Value::Null }
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_else(|_| format!("{{\"id\":{:?}}}", self.id))
    }

    /// Reads a stored handle; a bare string (what 0.1 hosts stored) is a handle with that id.
    pub fn from_stored(text: &str) -> JobHandle {
        serde_json::from_str(text).unwrap_or_else(|_| JobHandle::new(text))
    }
}

/// Why a trial run failed, as far as the executor can tell.
#[derive(Clone, Debug, PartialEq)]
pub struct Failure {
    /// For a person to read: exit status, signal, timeout, node lost.
    pub reason: String,
    pub cause: FailureCause,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FailureCause {
    /// The trial itself failed (non-zero exit, timeout, bad result): re-running it would fail again.
    Trial,
    /// The system failed it (node lost, walltime exceeded, preempted): a retry may succeed, under
    /// the study's `retries` policy.
    System,
    /// It was cancelled (the second Ctrl-C, or a pruning decision).
    Cancelled,
}

impl Failure {
    pub fn trial(reason: impl Into<String>) -> Failure {
        Failure { reason: reason.into(), cause: FailureCause::Trial }
    }

    pub fn system(reason: impl Into<String>) -> Failure {
        Failure { reason: reason.into(), cause: FailureCause::System }
    }
}

/// How a trial run ended. Interpreting the metrics (which one is the objective, whether it is
/// present and a number) is the campaign's job.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RunReport {
    /// Every numeric metric the trial reported (final `result.json` values override per-epoch lines).
    pub metrics: Metrics,
    /// Per-epoch metric lines, in order, when the trial wrote any.
    pub curve: Vec<Metrics>,
    /// Set when the run failed.
    pub failure: Option<Failure>,
    /// Problems with the objective's raw value that the number map cannot carry: a key of
    /// `result.json` whose value is NaN, infinite or not a number, with what it was
    /// (`"loss" -> "NaN"`). The campaign fails a trial whose objective is listed here.
    pub non_numeric: Vec<(String, String)>,
    /// The last lines of the trial's output, kept for failed trials.
    pub log_tail: Option<String>,
}

/// One intermediate metrics line of a running trial (a line of its `metrics.jsonl`).
#[derive(Clone, Debug, PartialEq)]
pub struct MetricsLine {
    pub trial: u64,
    /// 0-based index of the line in the trial's metrics stream (blank and malformed lines take
    /// none). When a trial rewrites its metrics file (a resumed attempt replaces it with the epochs
    /// its checkpoint covers), lines are sent again from index 0: the latest line of an index wins.
    pub index: usize,
    pub metrics: Metrics,
}

/// Where executors send intermediate metrics of running trials (the pruning issue consumes them).
pub type MetricsSink = tokio::sync::mpsc::UnboundedSender<MetricsLine>;

/// Whether an executor can take work right now.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub enum Health {
    #[default]
    Ready,
    /// Submission is paused: the connection dropped, the scheduler is busy, the endpoint is offline.
    /// `reason` says what happened and, when only the user can fix it, what to do, in one line.
    Paused { reason: String },
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum ExecutorError {
    /// The trial could not be started for a reason of its own (a config or template error, a
    /// program that does not exist); the message says why and what to do.
    #[error("could not start trial {trial}: {message}")]
    Submit { trial: u64, message: String },
    /// Nothing is lost, but nothing could be done now (connection lost, scheduler busy): retry
    /// after a while without failing or re-running any trial.
    #[error("{message} (retrying in {} s)", retry_after.as_secs())]
    Transient { message: String, retry_after: Duration },
    /// The executor lost track of a job (e.g. its record is gone); the trial should be re-run.
    #[error("lost track of job {job}: {message}")]
    Lost { job: String, message: String },
    /// The executor cannot work at all (its configuration is wrong); the run stops.
    #[error("{0}")]
    Fatal(String),
}

/// Runs trials; see the module documentation for the contract.
pub trait Executor: Send + Sync + 'static {
    /// A short name for logs and the study record ("bench", "local", "pbs", "globus").
    fn kind(&self) -> &'static str;

    /// What this executor runs, expanded, for `study show` (e.g. the argv template with its
    /// program resolved to an absolute path).
    fn describe(&self) -> String;

    /// Whether a job started by an earlier host process can still be waited on after a restart.
    fn jobs_outlive_host(&self) -> bool;

    /// Starts a batch of trials. `Err` means nothing was started (a transient error pauses
    /// submission and the batch is retried later); `Ok` holds one result per trial, in order.
    fn submit(&self, batch: Vec<TrialSpec>) -> BoxFuture<Result<Vec<Result<JobHandle, ExecutorError>>, ExecutorError>>;

    /// Resolves when the job ends; see the module documentation.
    fn wait(
        &self,
        trial: TrialSpec,
        job: JobHandle,
        metrics: MetricsSink,
    ) -> BoxFuture<Result<RunReport, ExecutorError>>;

    /// After a crash: looks up jobs submitted under these trials' names whose handles were never
    /// recorded. One answer per trial, in order; `None` when no such job exists.
    fn find(&self, trials: Vec<TrialSpec>) -> BoxFuture<Result<Vec<Option<JobHandle>>, ExecutorError>> {
        let n = trials.len();
        Box::pin(async move { Ok(vec![None; n]) })
    }

    /// Cheap checks of the configuration against this machine, made before any study is created
    /// (a local program that does not exist or is not executable). `Err` is always
    /// [`ExecutorError::Fatal`], with a message that names the field and the fix.
    fn preflight(&self) -> Result<(), ExecutorError> {
        Ok(())
    }

    /// Stops jobs. Stopping one that already ended is not an error.
    fn cancel(&self, jobs: Vec<JobHandle>) -> BoxFuture<Result<(), ExecutorError>>;

    /// The host is leaving without cancelling: release connections and pollers; jobs that outlive
    /// the host keep running.
    fn detach(&self) -> BoxFuture<()> {
        Box::pin(async {})
    }

    /// Whether submission may go on; remote executors pause themselves while their connection or
    /// scheduler is away.
    fn health(&self) -> tokio::sync::watch::Receiver<Health> {
        // A sender that is dropped at once: the receiver keeps the last value, `Ready`, forever.
        tokio::sync::watch::channel(Health::Ready).1
    }

    /// Gives the executor the study's record for the few values it must keep across host
    /// processes (a registered function's id, task ids the moment a service returns them). Called
    /// once the study is open, before the first `submit`, `wait` or `find`.
    fn bind_state(&self, _state: Arc<dyn ExecutorState>) {}
}

/// A small key-value record an executor keeps in the study (the campaign's side implements it on
/// the study database). Keys are the executor's own; values are text.
pub trait ExecutorState: Send + Sync + 'static {
    fn get(&self, key: &str) -> Result<Option<String>, String>;
    fn set(&self, key: &str, value: &str) -> Result<(), String>;
    /// Removes a key; removing one that is not there is not an error.
    fn remove(&self, key: &str) -> Result<(), String>;
}

/// Builds the configured executor. The one place that maps `[executor]` to an implementation.
pub fn from_config(
    config: &crate::config::ExecutorConfig,
    space: &crate::space::SearchSpace,
    parallel: u32,
    study: &str,
) -> Result<Arc<dyn Executor>, BuildError> {
    use crate::config::ExecutorConfig;
    Ok(match config {
        ExecutorConfig::Bench { function, dim, delay, epochs } => {
            Arc::new(bench::BenchExecutor::new(function, *dim, *delay)?.with_epochs(*epochs))
        }
        ExecutorConfig::Local(local) => Arc::new(local::LocalExecutor::new(local.clone(), space, parallel)?),
        ExecutorConfig::Pbs(pbs) => Arc::new(pbs::executor::PbsExecutor::new((**pbs).clone(), space, parallel, study)?),
        ExecutorConfig::Globus(g) => Arc::new(globus::executor::GlobusExecutor::new((**g).clone(), space, study)?),
    })
}

/// Why an executor could not be built from its configuration.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error(transparent)]
    Bench(#[from] bench::UnknownFunction),
    #[error(transparent)]
    Local(#[from] local::LocalConfigError),
    #[error(transparent)]
    Pbs(#[from] pbs::executor::PbsBuildError),
    #[error(transparent)]
    Globus(#[from] globus::executor::GlobusBuildError),
}
