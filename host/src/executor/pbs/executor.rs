//! The `pbs` executor: trials as PBS jobs on Aurora (or Polaris, or Crux), through the user's SSH
//! ControlMaster or on a login node.
//!
//! # How it runs
//!
//! One **poller** task owns all remote traffic after submission. Every `poll_interval` (30 s by
//! default) it makes **one** remote call (the agent, [`super::remote`]) that asks everything at
//! once: each unfinished job's `qstat -xf -F json` (one id per qstat, on the remote side), the
//! pilot queue's state, and the new metrics lines of every running trial. Only when something
//! ended does it make a second call in the same cycle, for those trials' final files (and for
//! pilot bookkeeping: requeueing a dead pilot's trials, submitting pilots). So the SSH round
//! trips of a cycle do not grow with the number of trials.
//!
//! Two placements ([`Placement`]):
//! - `per_trial`: [`Executor::submit`] writes each trial's directory and job script and runs
//!   `qsub -f`, all trials of a batch in one call; the handle is the PBS job id.
//! - `pilot`: `submit` writes a ticket per trial into the study's queue directory on the shared
//!   file system; the handle is the ticket (the trial's job name). Pilot jobs (`pilot.py`, one per
//!   node, `slots_per_node` trials at once, one per GPU tile) claim tickets as tiles free up. The
//!   poller keeps at most `max_jobs` pilots that can still take work, submits a successor when a
//!   pilot nears its walltime, and puts the trials of a pilot that died back in the queue.
//!
//! # Faults
//! - A failed call (a lost master, a dropped connection, a laptop asleep) changes nothing that is
//!   recorded: [`Health`] goes `Paused` with the one line the user needs (`alcf-host connect
//!   aurora` when the master is gone), and the next cycle tries again. Jobs keep running; their
//!   results are collected when the connection is back.
//! - One failed qstat is never a dead job: a job is lost only when PBS says "Unknown Job Id" on
//!   two cycles in a row (and a ticket only when it is missing from every queue directory twice).
//! - After a host restart, [`Executor::wait`] with a stored handle re-attaches: the job id (or the
//!   ticket name) is all it needs.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine as _;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use tokio::sync::{Notify, oneshot, watch};

use super::qstat::{self, Phase, QstatOutcome};
use super::qsub::{self, QsubError};
use super::remote::{Cmd, Remote, RemoteError, Reply, Transport, op_error};
use super::script::{JobScript, JobScriptError};
use crate::config::{PbsExecutorConfig, Placement, Rerun};
use crate::executor::argv::{EnvTemplate, Template, Vars};
use crate::executor::protocol::{self, MetricsStream};
use crate::executor::{
    BoxFuture, Executor, ExecutorError, Failure, FailureCause, Health, JobHandle, MetricsLine, MetricsSink, RunReport,
    TrialSpec,
};
use crate::space::{Metrics, SearchSpace};

/// The pilot program, staged into `<study>/bin/pilot.py`.
pub const PILOT_SOURCE: &str = include_str!("pilot.py");
/// The job template of a pilot, as shipped in config/aurora/.
pub const PILOT_TEMPLATE: &str = include_str!("../../../../config/aurora/pilot-job.sh.tmpl");

/// Staged files, in all, at most: a study stages its program, not its data set.
const MAX_STAGE_BYTES: u64 = 256 << 20;
/// Cycles in a row a job must be unknown to PBS (or a ticket missing) before it counts as lost.
const LOST_AFTER: u32 = 2;
/// Pilots in a row that may end without running a trial before the waiting trials fail.
const MAX_IDLE_PILOTS: u32 = 3;
/// Between two calls, at least (a burst of submissions wakes the poller, but never floods).
const MIN_GAP: Duration = Duration::from_millis(500);

/// Why the executor could not be built from its configuration.
#[derive(Debug, thiserror::Error)]
pub enum PbsBuildError {
    #[error(transparent)]
    Script(#[from] JobScriptError),
    #[error(transparent)]
    Command(#[from] crate::executor::argv::LocalConfigError),
    #[error("cannot read the job template {}: {source}", path.display())]
    Template { path: PathBuf, source: std::io::Error },
    #[error(
        "`study.parallel` is {parallel} but `executor.max_jobs` is {max_jobs}: with placement = \"per_trial\" \
         every running trial is a PBS job; lower parallel or raise max_jobs (the queue's per-user limit)"
    )]
    TooParallel { parallel: u32, max_jobs: u32 },
    #[error(
        "`executor.walltime` ({walltime}) leaves no room for a trial: a pilot starts a trial only if \
         `executor.trial_estimate` ({estimate} s) fits before its end minus `executor.pilot_margin` ({margin} s); \
         raise the walltime or lower the estimate"
    )]
    NoRoom { walltime: String, estimate: u64, margin: u64 },
    #[error(
        "`executor.timeout_s` applies to trials on pilots; with placement = \"per_trial\" the job's \
         `executor.walltime` is the trial's limit: remove timeout_s, or set walltime"
    )]
    TimeoutPerTrial,
    #[error("the study name {name:?} cannot name a remote directory; use letters, digits, `_`, `-` and `.`")]
    StudyName { name: String },
}

pub struct PbsExecutor {
    inner: Arc<Inner>,
}

struct Inner {
    cfg: PbsExecutorConfig,
    study: String,
    /// `<remote_dir>/<study>`.
    root: String,
    script: JobScript,
    argv: Template,
    env: EnvTemplate,
    remote: Remote,
    state: Mutex<State>,
    wake: Notify,
    health: watch::Sender<Health>,
    stopped: AtomicBool,
    poller: Mutex<Option<tokio::task::JoinHandle<()>>>,
    /// Serializes staging: the first submit of a host process checks (and sends) the files.
    staged: tokio::sync::Mutex<bool>,
    counters: Mutex<CycleCounters>,
}

/// What the poll cycles cost, for the round-trips benchmark and the closing log line.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CycleCounters {
    /// Cycles that made at least one remote call.
    pub cycles: u64,
    /// Remote calls made by those cycles.
    pub calls: u64,
    /// The most calls one cycle made.
    pub max_calls: u64,
    /// The most trials one cycle watched.
    pub max_watched: u64,
}

#[derive(Default)]
struct State {
    /// Keyed by handle id: the PBS job id (`per_trial`) or the ticket name (`pilot`).
    waiters: BTreeMap<String, Waiter>,
    /// Jobs whose JSON qstat output could not be read: asked in the text format from now on.
    text_format: HashSet<String>,
    /// Cycles in a row each job was unknown to PBS / each ticket missing.
    missing: HashMap<String, u32>,
    /// Pilots of this study (from the remote registry), by name.
    pilots: BTreeMap<String, Pilot>,
    /// Tickets waiting for a tile, as of the last cycle.
    pending: usize,
    /// Pilots this host process submitted (names count up from the remote registry's).
    next_pilot: u32,
    /// The last time a pilot's qsub was refused for a limit: don't ask again before the next cycle.
    pilot_refusal: Option<String>,
    /// Pilots in a row that ended without running a trial while trials waited.
    idle_pilots: u32,
}

struct Waiter {
    spec: TrialSpec,
    /// The trial directory relative to the study's remote directory.
    dir: String,
    sink: MetricsSink,
    metrics_from: u64,
    stream: MetricsStream,
    curve: BTreeMap<usize, Metrics>,
    tx: Option<oneshot::Sender<Result<RunReport, ExecutorError>>>,
    /// The job ended, with this failure (or none); its final files are read next.
    ended: Option<Option<Failure>>,
}

#[derive(Clone, Debug, Default)]
struct Pilot {
    job: Option<String>,
    finished: bool,
    /// From its state file: when it ends (remote clock) and whether it takes no more trials.
    ends: Option<f64>,
    draining: bool,
    running: usize,
    /// Its qstat phase, when known.
    phase: Option<Phase>,
    /// It was seen running a trial (or a trial's done record names it).
    worked: bool,
}

impl PbsExecutor {
    pub fn new(
        cfg: PbsExecutorConfig,
        space: &SearchSpace,
        parallel: u32,
        study: &str,
    ) -> Result<PbsExecutor, PbsBuildError> {
        if study.is_empty()
            || study.starts_with('.')
            || !study.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
        {
            return Err(PbsBuildError::StudyName { name: study.to_string() });
        }
        if cfg.placement == Placement::PerTrial && cfg.timeout.is_some() {
            return Err(PbsBuildError::TimeoutPerTrial);
        }
        if cfg.placement == Placement::PerTrial && parallel > cfg.pbs.max_jobs {
            return Err(PbsBuildError::TooParallel { parallel, max_jobs: cfg.pbs.max_jobs });
        }
        let template = match &cfg.pbs.template {
            Some(path) => std::fs::read_to_string(path)
                .map_err(|source| PbsBuildError::Template { path: path.clone(), source })?,
            None => match cfg.placement {
                Placement::PerTrial => super::script::DEFAULT_TEMPLATE.to_string(),
                Placement::Pilot => PILOT_TEMPLATE.to_string(),
            },
        };
        let script = JobScript::new(cfg.pbs.clone(), &template)?;
        if cfg.placement == Placement::Pilot {
            let walltime = super::validate_walltime(&cfg.pbs.walltime).map_err(JobScriptError::from)?;
            if cfg.trial_estimate + cfg.pilot_margin >= walltime {
                return Err(PbsBuildError::NoRoom {
                    walltime: cfg.pbs.walltime.clone(),
                    estimate: cfg.trial_estimate.as_secs(),
                    margin: cfg.pilot_margin.as_secs(),
                });
            }
        }
        let argv = Template::parse(&cfg.command, space)?;
        let env = EnvTemplate::parse(&cfg.env, space)?;
        let root = format!("{}/{}", cfg.remote_dir, study);
        let transport =
            if cfg.host == "local" { Transport::Local } else { Transport::ssh(&cfg.host, &control_path(&cfg)) };
        let remote = Remote::new(transport, &cfg.python, &root, &cfg.pbs_bin);
        let (health, _) = watch::channel(Health::Ready);
        Ok(PbsExecutor {
            inner: Arc::new(Inner {
                cfg,
                study: study.to_string(),
                root,
                script,
                argv,
                env,
                remote,
                state: Mutex::new(State::default()),
                wake: Notify::new(),
                health,
                stopped: AtomicBool::new(false),
                poller: Mutex::new(None),
                staged: tokio::sync::Mutex::new(false),
                counters: Mutex::new(CycleCounters::default()),
            }),
        })
    }

    /// Remote calls made so far, by every method (the round-trips benchmark reads it).
    pub fn remote_calls(&self) -> u64 {
        self.inner.remote.calls()
    }

    /// For `alcf-host doctor`: one remote call that asks whether the PBS server answers
    /// (`qstat -B`), the queue exists (`qstat -Q`), the study root is writable and the trial
    /// program is found (`command -v`); the agent's answer as it is.
    pub async fn probe(&self) -> Result<Value, String> {
        let program = self.inner.cfg.command.first().filter(|p| !p.contains('{')).cloned();
        let op = json!({"op": "probe", "queue": self.inner.cfg.pbs.queue, "program": program});
        let reply = self.inner.remote.call(vec![op]).await.map_err(|e| e.to_string())?;
        Ok(reply.results.into_iter().next().unwrap_or(Value::Null))
    }

    /// The remote transport (for checks of the SSH master).
    pub fn transport(&self) -> &Transport {
        self.inner.remote.transport()
    }

    /// What the poll cycles have cost so far.
    pub fn cycle_counters(&self) -> CycleCounters {
        *self.inner.counters.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The control socket of `cfg`: its `control_path`, or the one `alcf-host connect` opens.
pub fn control_path(cfg: &PbsExecutorConfig) -> PathBuf {
    cfg.control_path.clone().unwrap_or_else(|| default_control_path(&cfg.host))
}

/// `~/.ssh/alcf-host/<host>.sock`: short enough for a Unix socket path (about 100 bytes).
pub fn default_control_path(host: &str) -> PathBuf {
    let home = std::env::var_os("HOME").map(PathBuf::from).unwrap_or_else(|| PathBuf::from("."));
    let safe: String =
        host.chars().map(|c| if c.is_ascii_alphanumeric() || "._-@".contains(c) { c } else { '_' }).collect();
    home.join(".ssh").join("alcf-host").join(format!("{safe}.sock"))
}

impl Executor for PbsExecutor {
    fn kind(&self) -> &'static str {
        "pbs"
    }

    fn describe(&self) -> String {
        let c = &self.inner.cfg;
        let placement = match c.placement {
            Placement::Pilot => {
                format!("pilot jobs of {} slots, at most {} at once", c.pbs.slots_per_node, c.pbs.max_jobs)
            }
            Placement::PerTrial => format!("one job per trial, at most {} at once", c.pbs.max_jobs),
        };
        format!(
            "PBS on {} (queue {}, account {}): {}; trials in {}; command {:?}",
            c.host, c.pbs.queue, c.pbs.account, placement, self.inner.root, c.command
        )
    }

    fn jobs_outlive_host(&self) -> bool {
        true
    }

    fn preflight(&self) -> Result<(), ExecutorError> {
        let c = &self.inner.cfg;
        for s in &c.stage {
            let p = c.workdir.join(s);
            if !p.exists() {
                return Err(ExecutorError::Fatal(format!(
                    "`executor.stage` lists {s:?}, but {} does not exist; fix the path (relative to the config's directory)",
                    p.display()
                )));
            }
        }
        if let Transport::Ssh { host, control, .. } = self.inner.remote.transport()
            && !control.exists()
        {
            return Err(ExecutorError::Fatal(format!(
                "no SSH master connection to {host} (control socket {}): open one with `alcf-host connect {host}` \
                 (it asks for your passcode once), then run this again",
                control.display()
            )));
        }
        Ok(())
    }

    fn submit(&self, batch: Vec<TrialSpec>) -> BoxFuture<Result<Vec<Result<JobHandle, ExecutorError>>, ExecutorError>> {
        let inner = self.inner.clone();
        Box::pin(async move {
            inner.ensure_staged().await?;
            let out = match inner.cfg.placement {
                Placement::PerTrial => inner.submit_jobs(batch).await,
                Placement::Pilot => inner.enqueue(batch).await,
            };
            inner.start_poller();
            // New tickets need a pilot only when none can take them: then submit one now, not at
            // the next cycle. Otherwise the cycles keep their pace.
            if inner.cfg.placement == Placement::Pilot {
                let state = inner.lock();
                if !state.pilots.values().any(|p| !p.finished && p.job.is_some() && p.phase != Some(Phase::Ended)) {
                    inner.wake.notify_one();
                }
            }
            out
        })
    }

    fn wait(
        &self,
        trial: TrialSpec,
        job: JobHandle,
        metrics: MetricsSink,
    ) -> BoxFuture<Result<RunReport, ExecutorError>> {
        let inner = self.inner.clone();
        Box::pin(async move {
            let (tx, rx) = oneshot::channel();
            let dir = job.data.get("dir").and_then(Value::as_str).map_or_else(|| trial_dir(trial.id), str::to_string);
            {
                let mut state = inner.state.lock().unwrap_or_else(|e| e.into_inner());
                state.waiters.insert(
                    job.id.clone(),
                    Waiter {
                        spec: trial,
                        dir,
                        sink: metrics,
                        metrics_from: 0,
                        stream: MetricsStream::quiet(),
                        curve: BTreeMap::new(),
                        tx: Some(tx),
                        ended: None,
                    },
                );
            }
            inner.start_poller();
            match rx.await {
                Ok(r) => r,
                // The poller stopped (the host is leaving); nobody is waiting for this answer.
                Err(_) => Err(ExecutorError::Transient {
                    message: "the executor stopped".into(),
                    retry_after: Duration::from_secs(1),
                }),
            }
        })
    }

    fn find(&self, trials: Vec<TrialSpec>) -> BoxFuture<Result<Vec<Option<JobHandle>>, ExecutorError>> {
        let inner = self.inner.clone();
        Box::pin(async move { inner.find(trials).await })
    }

    fn cancel(&self, jobs: Vec<JobHandle>) -> BoxFuture<Result<(), ExecutorError>> {
        let inner = self.inner.clone();
        Box::pin(async move { inner.cancel(jobs).await })
    }

    fn detach(&self) -> BoxFuture<()> {
        let inner = self.inner.clone();
        Box::pin(async move {
            inner.stopped.store(true, Ordering::SeqCst);
            inner.wake.notify_one();
            // The study is done with its pilots unless trials of it still wait (the host leaves
            // with jobs running, and a resume comes back to them): a pilot kept for
            // `pilot_idle` would hold a charged node for nothing.
            let idle_pilots = {
                let state = inner.lock();
                if state.waiters.is_empty() { inner.active_pilot_jobs(&state) } else { Vec::new() }
            };
            if !idle_pilots.is_empty()
                && let Err(e) = inner.call(vec![json!({"op": "stop_pilots", "jobs": idle_pilots})]).await
            {
                tracing::warn!("pbs: could not tell the pilots to stop ({e}); they end after `pilot_idle`");
            }
            let poller = inner.poller.lock().unwrap_or_else(|e| e.into_inner()).take();
            if let Some(p) = poller {
                p.abort();
                let _ = p.await;
            }
            let c = *inner.counters.lock().unwrap_or_else(|e| e.into_inner());
            tracing::info!(
                "pbs: {} poll cycles made {} remote calls (at most {} in one cycle, watching up to {} trials); {} remote calls in all",
                c.cycles,
                c.calls,
                c.max_calls,
                c.max_watched,
                inner.remote.calls()
            );
            // The session is the user's master: dropping it leaves the master running.
        })
    }

    fn health(&self) -> watch::Receiver<Health> {
        self.inner.health.subscribe()
    }
}

/// Extra environment of one trial, in order.
type TrialEnv = Vec<(String, OsString)>;

fn trial_dir(id: u64) -> String {
    format!("trials/{id:06}")
}

fn transient(e: RemoteError, retry: Duration) -> ExecutorError {
    match e {
        RemoteError::Agent { .. } => ExecutorError::Transient { message: e.to_string(), retry_after: retry * 4 },
        e => ExecutorError::Transient { message: e.to_string(), retry_after: retry },
    }
}

impl Inner {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn retry_after(&self) -> Duration {
        self.cfg.pbs.poll_interval
    }

    /// One remote call; its outcome sets the executor's health.
    async fn call(&self, ops: Vec<Value>) -> Result<Reply, RemoteError> {
        let result = self.remote.call(ops).await;
        match &result {
            Ok(_) => {
                self.health.send_if_modified(|h| {
                    let changed = *h != Health::Ready;
                    *h = Health::Ready;
                    changed
                });
            }
            Err(e) => {
                let reason = e.to_string();
                tracing::warn!("pbs: {reason}");
                self.health.send_if_modified(|h| {
                    let new = Health::Paused { reason: reason.clone() };
                    let changed = *h != new;
                    *h = new;
                    changed
                });
            }
        }
        result
    }

    // ---- staging ----------------------------------------------------------------------------

    /// The study's files on the remote side: the pilot program and `executor.stage`, each sent
    /// only when its digest there differs.
    async fn ensure_staged(&self) -> Result<(), ExecutorError> {
        let mut staged = self.staged.lock().await;
        if *staged {
            return Ok(());
        }
        let files = self.stage_list()?;
        let paths: Vec<&str> = files.iter().map(|f| f.remote.as_str()).collect();
        let reply = self
            .call(vec![json!({"op": "digest", "paths": paths})])
            .await
            .map_err(|e| transient(e, self.retry_after()))?;
        let digests = &reply.results[0]["digests"];
        if let Some(e) = op_error(&reply.results[0]) {
            return Err(ExecutorError::Fatal(format!("cannot read the study's remote directory {}: {e}", self.root)));
        }
        let mut send = Vec::new();
        for f in &files {
            if digests.get(&f.remote).and_then(Value::as_str) != Some(f.sha256.as_str()) {
                send.push(json!({
                    "path": f.remote,
                    "data_b64": base64::engine::general_purpose::STANDARD.encode(&f.data),
                    "mode": f.mode,
                }));
            }
        }
        if !send.is_empty() {
            let n = send.len();
            let reply = self
                .call(vec![json!({"op": "stage", "files": send})])
                .await
                .map_err(|e| transient(e, self.retry_after()))?;
            if let Some(e) = op_error(&reply.results[0]) {
                return Err(ExecutorError::Fatal(format!(
                    "cannot write the study's files under {} on {}: {e}; check `executor.remote_dir`",
                    self.root,
                    self.remote.transport().host()
                )));
            }
            tracing::info!("pbs: staged {n} file(s) into {}", self.root);
        }
        *staged = true;
        Ok(())
    }

    fn stage_list(&self) -> Result<Vec<StagedFile>, ExecutorError> {
        let mut files = vec![StagedFile::new("bin/pilot.py".into(), PILOT_SOURCE.as_bytes().to_vec(), 0o755)];
        let mut total = 0u64;
        for entry in &self.cfg.stage {
            let local = self.cfg.workdir.join(entry);
            collect_files(&local, &staged_name(entry), &mut files, &mut total)
                .map_err(|e| ExecutorError::Fatal(format!("`executor.stage` {entry:?}: {e}")))?;
        }
        if total > MAX_STAGE_BYTES {
            return Err(ExecutorError::Fatal(format!(
                "`executor.stage` lists {} MiB; the limit is {} MiB: stage the program, and put data sets on the \
                 shared file system yourself",
                total >> 20,
                MAX_STAGE_BYTES >> 20
            )));
        }
        Ok(files)
    }

    // ---- submission -------------------------------------------------------------------------

    /// Remote paths of one trial: (relative dir, absolute dir).
    fn dirs(&self, spec: &TrialSpec) -> (String, String) {
        let rel = trial_dir(spec.id);
        let abs = format!("{}/{rel}", self.root);
        (rel, abs)
    }

    /// The trial's argv and extra environment, rendered with remote paths.
    fn render(&self, spec: &TrialSpec, abs_dir: &str) -> Result<(Vec<OsString>, TrialEnv), ExecutorError> {
        let trial_dir = PathBuf::from(abs_dir);
        let params_path = trial_dir.join(protocol::PARAMS_FILE);
        let config_dir = PathBuf::from(format!("{}/files", self.root));
        let parent_dir = spec.parent.map(|p| PathBuf::from(format!("{}/{}", self.root, self::trial_dir(p))));
        let vars = Vars {
            params: &spec.params,
            trial_dir: &trial_dir,
            trial_id: spec.id,
            attempt: spec.attempt,
            slot: spec.slot,
            params_path: &params_path,
            config_dir: &config_dir,
            parent_dir: parent_dir.as_deref(),
        };
        let fail = |message: String| ExecutorError::Submit { trial: spec.id, message };
        let argv = self.argv.render(&vars).map_err(|e| fail(e.to_string()))?;
        // The protocol's variables come last, as with the local executor: a job script exports
        // them after `executor.env`, and a pilot's ticket env (a map) keeps the last of a name.
        let mut env = self.env.render(&vars).map_err(|e| fail(e.to_string()))?;
        env.extend(protocol::env_vars(&vars));
        Ok((argv, env))
    }

    fn rerun(&self) -> &'static str {
        match self.cfg.rerun {
            Rerun::Fresh => "fresh",
            Rerun::Resume => "resume",
        }
    }

    /// per_trial: each trial's directory, `params.json` and job script, and `qsub -f`, in one call.
    async fn submit_jobs(&self, batch: Vec<TrialSpec>) -> Result<Vec<Result<JobHandle, ExecutorError>>, ExecutorError> {
        let prepare = |spec: &TrialSpec, rel: &str, abs: &str| {
            let (argv, env) = self.render(spec, abs)?;
            let script = self
                .script
                .render(spec, abs, &argv, &env)
                .map_err(|e| ExecutorError::Submit { trial: spec.id, message: e.to_string() })?;
            Ok(json!({
                "dir": rel,
                "attempt": spec.attempt,
                "rerun": self.rerun(),
                "files": {protocol::PARAMS_FILE: protocol::params_text(&spec.params_json), "job.sh": script},
                "script": "job.sh",
            }))
        };
        let answer = |spec: &TrialSpec, rel: &str, answer: &Value| {
            // `{"skipped": true}` (after a queue-limit refusal) and `{"error": …}` carry no status.
            if answer["skipped"].as_bool() == Some(true) {
                return Err(ExecutorError::Transient {
                    message: "the queue's per-user job limit is reached".into(),
                    retry_after: self.retry_after(),
                });
            }
            if let Some(message) = op_error(answer) {
                return Err(ExecutorError::Submit { trial: spec.id, message });
            }
            let cmd: Cmd = serde_json::from_value(answer.clone()).map_err(|e| ExecutorError::Submit {
                trial: spec.id,
                message: format!("the remote side's answer to qsub is unreadable ({e}): {answer}"),
            })?;
            match qsub::interpret_qsub(cmd.status, &cmd.stdout, &cmd.stderr) {
                Ok(id) => Ok(JobHandle { id, data: json!({"placement": "per_trial", "dir": rel}) }),
                Err(e) => Err(e.into_executor_error(spec.id, self.retry_after())),
            }
        };
        self.batch_op(&batch, ("submit", "jobs"), "prepare the trials", prepare, answer).await
    }

    /// pilot: each trial's directory and `params.json`, and its ticket in the queue, in one call.
    async fn enqueue(&self, batch: Vec<TrialSpec>) -> Result<Vec<Result<JobHandle, ExecutorError>>, ExecutorError> {
        let prepare = |spec: &TrialSpec, rel: &str, abs: &str| {
            super::script::check_job_name(&spec.job_name)
                .map_err(|e| ExecutorError::Submit { trial: spec.id, message: e.to_string() })?;
            let (argv, env) = self.render(spec, abs).and_then(|(argv, env)| ticket_strings(spec.id, argv, env))?;
            Ok(json!({
                "name": spec.job_name,
                "dir": rel,
                "attempt": spec.attempt,
                "rerun": self.rerun(),
                "files": {protocol::PARAMS_FILE: protocol::params_text(&spec.params_json)},
                "argv": argv,
                "env": env,
                "timeout_s": self.cfg.timeout.map(|t| t.as_secs_f64()),
                "estimate_s": self.cfg.trial_estimate.as_secs_f64(),
            }))
        };
        let answer = |spec: &TrialSpec, rel: &str, answer: &Value| match op_error(answer) {
            Some(message) => Err(ExecutorError::Submit { trial: spec.id, message }),
            None => Ok(JobHandle { id: spec.job_name.clone(), data: json!({"placement": "pilot", "dir": rel}) }),
        };
        let results = self.batch_op(&batch, ("enqueue", "tickets"), "queue the trials", prepare, answer).await?;
        self.lock().pending += results.iter().filter(|r| r.is_ok()).count();
        Ok(results)
    }

    /// One remote op for a batch of trials: `prepare` gives each trial's entry of the op's list
    /// `key` (a trial it refuses gets its error and is not sent), and `answer` reads the entry of
    /// the same place in the reply. One result per trial, in order.
    async fn batch_op(
        &self,
        batch: &[TrialSpec],
        (op, key): (&str, &str),
        what: &str,
        prepare: impl Fn(&TrialSpec, &str, &str) -> Result<Value, ExecutorError>,
        answer: impl Fn(&TrialSpec, &str, &Value) -> Result<JobHandle, ExecutorError>,
    ) -> Result<Vec<Result<JobHandle, ExecutorError>>, ExecutorError> {
        let mut results: Vec<Option<Result<JobHandle, ExecutorError>>> = (0..batch.len()).map(|_| None).collect();
        let mut entries = Vec::new();
        let mut sent = Vec::new();
        for (i, spec) in batch.iter().enumerate() {
            let (rel, abs) = self.dirs(spec);
            match prepare(spec, &rel, &abs) {
                Ok(entry) => {
                    entries.push(entry);
                    sent.push((i, rel));
                }
                Err(e) => results[i] = Some(Err(e)),
            }
        }
        if !entries.is_empty() {
            let reply =
                self.call(vec![json!({"op": op, key: entries})]).await.map_err(|e| transient(e, self.retry_after()))?;
            if let Some(e) = op_error(&reply.results[0]) {
                return Err(ExecutorError::Fatal(format!("the remote side could not {what}: {e}")));
            }
            let answers = reply.results[0].get(key).and_then(Value::as_array).cloned().unwrap_or_default();
            for (k, (i, rel)) in sent.into_iter().enumerate() {
                let spec = &batch[i];
                results[i] = Some(match answers.get(k) {
                    Some(a) => answer(spec, &rel, a),
                    None => {
                        Err(ExecutorError::Submit { trial: spec.id, message: "the remote side gave no answer".into() })
                    }
                });
            }
        }
        Ok(results.into_iter().map(|r| r.unwrap_or_else(|| Err(ExecutorError::Fatal("no answer".into())))).collect())
    }

    // ---- find and cancel --------------------------------------------------------------------

    async fn find(&self, trials: Vec<TrialSpec>) -> Result<Vec<Option<JobHandle>>, ExecutorError> {
        if trials.is_empty() {
            return Ok(Vec::new());
        }
        match self.cfg.placement {
            Placement::PerTrial => {
                // `submit` leaves each job's id beside its files (`job.a<attempt>.id`).
                let wanted: Vec<Value> =
                    trials.iter().map(|t| json!({"dir": trial_dir(t.id), "attempt": t.attempt})).collect();
                let reply = self
                    .call(vec![json!({"op": "job_ids", "trials": wanted})])
                    .await
                    .map_err(|e| transient(e, self.retry_after()))?;
                if let Some(e) = op_error(&reply.results[0]) {
                    return Err(ExecutorError::Transient { message: e, retry_after: self.retry_after() });
                }
                let ids = reply.results[0]["ids"].as_array().cloned().unwrap_or_default();
                Ok(trials
                    .iter()
                    .enumerate()
                    .map(|(i, t)| {
                        ids.get(i).and_then(Value::as_str).map(|id| JobHandle {
                            id: id.to_string(),
                            data: json!({"placement": "per_trial", "dir": trial_dir(t.id)}),
                        })
                    })
                    .collect())
            }
            Placement::Pilot => {
                let names: Vec<&str> = trials.iter().map(|t| t.job_name.as_str()).collect();
                let reply = self
                    .call(vec![json!({"op": "queue_status", "names": names})])
                    .await
                    .map_err(|e| transient(e, self.retry_after()))?;
                let tickets = &reply.results[0]["tickets"];
                Ok(trials
                    .iter()
                    .map(|t| {
                        let state = tickets[&t.job_name]["state"].as_str().unwrap_or("missing");
                        (state != "missing").then(|| JobHandle {
                            id: t.job_name.clone(),
                            data: json!({"placement": "pilot", "dir": trial_dir(t.id)}),
                        })
                    })
                    .collect())
            }
        }
    }

    async fn cancel(&self, jobs: Vec<JobHandle>) -> Result<(), ExecutorError> {
        if jobs.is_empty() {
            return Ok(());
        }
        let ids: Vec<String> = jobs.iter().map(|j| j.id.clone()).collect();
        let mut ops = vec![match self.cfg.placement {
            Placement::PerTrial => json!({"op": "qdel", "ids": ids}),
            Placement::Pilot => json!({"op": "cancel_tickets", "names": ids}),
        }];
        let pilots = {
            let state = self.lock();
            let others = state.waiters.keys().any(|k| !ids.contains(k));
            if others { Vec::new() } else { self.active_pilot_jobs(&state) }
        };
        if !pilots.is_empty() {
            // Nothing else of this study runs: the pilots end once the cancelled trials stop.
            ops.push(json!({"op": "stop_pilots", "jobs": pilots}));
        }
        let reply = self.call(ops).await.map_err(|e| transient(e, self.retry_after()))?;
        {
            let mut state = self.lock();
            for id in &ids {
                if let Some(mut w) = state.waiters.remove(id)
                    && let Some(tx) = w.tx.take()
                {
                    let failure = Failure { reason: "cancelled".into(), cause: FailureCause::Cancelled };
                    let _ = tx.send(Ok(RunReport { failure: Some(failure), ..RunReport::default() }));
                }
            }
        }
        if let Some(e) = op_error(&reply.results[0]) {
            return Err(ExecutorError::Fatal(format!("cancelling failed on the remote side: {e}")));
        }
        if self.cfg.placement == Placement::PerTrial {
            // qdel of a job that already ended is not an error (exit 35 or 153 for those ids).
            let cmd: Cmd = serde_json::from_value(reply.results[0].clone()).unwrap_or_default();
            if ![0, 35, 153].contains(&cmd.status) {
                return Err(ExecutorError::Fatal(format!("qdel exited with {}: {}", cmd.status, cmd.stderr.trim())));
            }
        }
        Ok(())
    }

    /// Job ids of this study's pilots that may still run.
    fn active_pilot_jobs(&self, state: &State) -> Vec<String> {
        state
            .pilots
            .values()
            .filter(|p| !p.finished && p.phase != Some(Phase::Ended))
            .filter_map(|p| p.job.clone())
            .collect()
    }

    // ---- the poller -------------------------------------------------------------------------

    fn start_poller(self: &Arc<Self>) {
        if self.stopped.load(Ordering::SeqCst) {
            return;
        }
        let mut poller = self.poller.lock().unwrap_or_else(|e| e.into_inner());
        if poller.as_ref().is_some_and(|p| !p.is_finished()) {
            return;
        }
        let inner = self.clone();
        // In the caller's span: the poller's lines go to the study's host.log.
        *poller = Some(tokio::spawn(tracing::Instrument::in_current_span(async move { inner.poll_loop().await })));
    }

    async fn poll_loop(self: Arc<Self>) {
        let interval = self.cfg.pbs.poll_interval;
        loop {
            if self.stopped.load(Ordering::SeqCst) {
                return;
            }
            let started = tokio::time::Instant::now();
            if let Err(e) = self.cycle().await {
                // Health is already Paused with the reason; the next cycle tries again.
                tracing::debug!("pbs: cycle failed: {e}");
            }
            let next = started + interval;
            tokio::select! {
                _ = tokio::time::sleep_until(next) => {}
                _ = self.wake.notified() => {
                    tokio::time::sleep_until(started + MIN_GAP).await;
                }
            }
        }
    }

    /// One poll cycle; see the module documentation.
    async fn cycle(&self) -> Result<(), RemoteError> {
        let mut ops = Vec::new();
        let (watch_ids, reads, read_keys, names, pilot_jobs) = {
            let state = self.lock();
            let open: Vec<(&String, &Waiter)> = state.waiters.iter().filter(|(_, w)| w.ended.is_none()).collect();
            let read_keys: Vec<String> = open.iter().map(|(k, _)| (*k).clone()).collect();
            let reads: Vec<Value> = open
                .iter()
                .map(|(_, w)| json!({"dir": w.dir, "metrics_from": w.metrics_from, "final": false}))
                .collect();
            let watch_ids: Vec<String> = match self.cfg.placement {
                Placement::PerTrial => open.iter().map(|(id, _)| (*id).clone()).collect(),
                Placement::Pilot => Vec::new(),
            };
            let names: Vec<String> = match self.cfg.placement {
                Placement::Pilot => open.iter().map(|(id, _)| (*id).clone()).collect(),
                Placement::PerTrial => Vec::new(),
            };
            let pilot_jobs: Vec<String> = state
                .pilots
                .values()
                .filter(|p| !p.finished && p.phase != Some(Phase::Ended))
                .filter_map(|p| p.job.clone())
                .collect();
            (watch_ids, reads, read_keys, names, pilot_jobs)
        };
        // Nothing to watch and no ended trial whose final read failed last cycle: no remote call.
        if read_keys.is_empty() && pilot_jobs.is_empty() && self.lock().waiters.is_empty() {
            return Ok(());
        }
        let qstat_ids: Vec<String> = watch_ids.iter().chain(pilot_jobs.iter()).cloned().collect();
        let formats: Vec<Value> = {
            let state = self.lock();
            qstat_ids
                .iter()
                .map(|id| json!({"id": id, "format": if state.text_format.contains(id) { "text" } else { "json" }}))
                .collect()
        };
        ops.push(json!({"op": "qstat", "jobs": formats}));
        if self.cfg.placement == Placement::Pilot {
            ops.push(json!({"op": "queue_status", "names": names}));
        }
        ops.push(json!({"op": "read", "trials": reads}));
        let watched = read_keys.len() as u64;
        let reply = self.call(ops).await;
        self.count_cycle(watched, 1);
        let reply = reply?;
        let now = reply.now;
        let mut results = reply.results.into_iter();
        let qstat_result = results.next().unwrap_or(Value::Null);
        let queue_result = if self.cfg.placement == Placement::Pilot { results.next() } else { None };
        let read_result = results.next().unwrap_or(Value::Null);

        let mut follow = Vec::new();
        let mut resolved = Vec::new();
        {
            let mut state = self.lock();
            self.take_qstat(&mut state, &qstat_ids, &qstat_result, &mut resolved);
            if let Some(q) = &queue_result {
                self.take_queue(&mut state, q, &mut resolved);
            }
            take_reads(&mut state, &read_keys, &read_result);
            // Final files of the trials that ended.
            let finals: Vec<(String, Value)> = state
                .waiters
                .iter()
                .filter(|(_, w)| w.ended.is_some())
                .map(|(k, w)| (k.clone(), json!({"dir": w.dir, "metrics_from": w.metrics_from, "final": true})))
                .collect();
            if !finals.is_empty() {
                let (keys, reads): (Vec<String>, Vec<Value>) = finals.into_iter().unzip();
                follow.push((FollowUp::Final(keys), json!({"op": "read", "trials": reads})));
            }
            if self.cfg.placement == Placement::Pilot {
                self.plan_pilots(&mut state, now, &mut follow);
            }
        }
        send_resolved(resolved);
        if follow.is_empty() {
            return Ok(());
        }
        let (kinds, ops): (Vec<FollowUp>, Vec<Value>) = follow.into_iter().unzip();
        let reply = self.call(ops).await;
        self.count_cycle(watched, 2);
        let reply = reply?;
        let mut resolved = Vec::new();
        {
            let mut state = self.lock();
            for (kind, result) in kinds.into_iter().zip(reply.results) {
                match kind {
                    FollowUp::Final(keys) => finish_reads(&mut state, &keys, &result, &mut resolved),
                    FollowUp::PilotFinished(name) => {
                        let mut worked = true;
                        if let Some(p) = state.pilots.get_mut(&name) {
                            p.finished = true;
                            worked = p.worked || p.job.is_none();
                        }
                        self.pilot_ended(&mut state, &name, worked, &mut resolved);
                        let requeued = result["requeued"].as_array().map_or(0, Vec::len);
                        state.pending += requeued;
                        if requeued > 0 {
                            tracing::warn!(
                                "pbs: pilot {name} ended with {requeued} trial(s) running; they are queued again"
                            );
                        }
                    }
                    FollowUp::SubmitPilot(name) => self.take_pilot_submit(&mut state, &name, &result, &mut resolved),
                }
            }
        }
        send_resolved(resolved);
        Ok(())
    }

    /// Counts a cycle's `n`-th call (1: its status call, 2: its follow-up).
    fn count_cycle(&self, watched: u64, n: u64) {
        let mut c = self.counters.lock().unwrap_or_else(|e| e.into_inner());
        if n == 1 {
            c.cycles += 1;
        }
        c.calls += 1;
        c.max_calls = c.max_calls.max(n);
        c.max_watched = c.max_watched.max(watched);
    }

    fn take_qstat(&self, state: &mut State, ids: &[String], result: &Value, resolved: &mut Vec<Resolved>) {
        if let Some(e) = op_error(result) {
            tracing::warn!("pbs: qstat failed on the remote side: {e}");
        }
        let answers = result.get("jobs").and_then(Value::as_array).cloned().unwrap_or_default();
        for (id, answer) in ids.iter().zip(answers) {
            // Each job's answer on its own: one the agent could not ask about tells nothing of the others.
            let cmd: Cmd = match serde_json::from_value(answer.clone()) {
                Ok(cmd) => cmd,
                Err(_) => {
                    let why = op_error(&answer).unwrap_or_else(|| answer.to_string());
                    tracing::warn!("pbs: no qstat answer for job {id}: {why}; asking again next cycle");
                    continue;
                }
            };
            let pilot = state.pilots.iter().find(|(_, p)| p.job.as_deref() == Some(id)).map(|(n, _)| n.clone());
            let record = match qstat::interpret_qstat(cmd.status, &cmd.stdout, &cmd.stderr) {
                Ok(QstatOutcome::Jobs(jobs)) => {
                    state.missing.remove(id);
                    jobs.into_iter().find(|j| qstat::same_job(&j.id, id))
                }
                Ok(QstatOutcome::Unknown { message }) => {
                    let n = state.missing.entry(id.clone()).or_default();
                    *n += 1;
                    if *n >= LOST_AFTER {
                        if let Some(name) = pilot {
                            if let Some(p) = state.pilots.get_mut(&name) {
                                p.phase = Some(Phase::Ended);
                            }
                        } else if let Some(w) = state.waiters.get_mut(id) {
                            resolved.push(Resolved {
                                tx: w.tx.take(),
                                result: Err(ExecutorError::Lost { job: id.clone(), message }),
                            });
                            state.waiters.remove(id);
                        }
                    }
                    continue;
                }
                Ok(QstatOutcome::Finished { .. }) => None,
                Err(e) => {
                    if e.wants_text_format() {
                        state.text_format.insert(id.clone());
                    }
                    tracing::warn!("pbs: job {id}: {e}; asking again next cycle");
                    continue;
                }
            };
            let Some(record) = record else { continue };
            if let Some(name) = pilot {
                if let Some(p) = state.pilots.get_mut(&name) {
                    p.phase = Some(record.phase());
                    if let Some(Some(f)) = record.outcome() {
                        tracing::warn!("pbs: pilot {name} ({id}) ended: {}", f.reason);
                    }
                }
                continue;
            }
            if let (Some(outcome), Some(w)) = (record.outcome(), state.waiters.get_mut(id)) {
                w.ended = Some(outcome);
            }
        }
    }

    fn take_queue(&self, state: &mut State, result: &Value, resolved: &mut Vec<Resolved>) {
        if let Some(e) = op_error(result) {
            tracing::warn!("pbs: the queue could not be read: {e}");
            return;
        }
        state.pending = result["pending"].as_u64().unwrap_or(0) as usize;
        if let Some(pilots) = result["pilots"].as_array() {
            for p in pilots {
                let Some(name) = p["name"].as_str() else { continue };
                if let Some(n) =
                    name.rsplit('.').next().and_then(|s| s.strip_prefix('p')).and_then(|s| s.parse::<u32>().ok())
                {
                    state.next_pilot = state.next_pilot.max(n + 1);
                }
                let entry = state.pilots.entry(name.to_string()).or_default();
                entry.job = p["job"].as_str().map(str::to_string).or(entry.job.take());
                entry.finished = p["finished"].as_bool().unwrap_or(false);
                let s = &p["state"];
                entry.ends = s["ends"].as_f64();
                entry.draining = s["draining"].as_bool().unwrap_or(false);
                entry.running = s["running"].as_object().map_or(0, |m| m.len());
                entry.worked |= entry.running > 0;
            }
        }
        let tickets = &result["tickets"];
        let names: Vec<String> = state.waiters.keys().cloned().collect();
        for name in names {
            let t = &tickets[&name];
            let st = t["state"].as_str().unwrap_or("");
            let pilot_job = t["pilot"].as_str().or_else(|| t["done"]["pilot"].as_str());
            if let Some(job) = pilot_job
                && let Some(p) = state.pilots.values_mut().find(|p| p.job.as_deref() == Some(job))
            {
                p.worked = true;
            }
            match st {
                "done" => {
                    state.missing.remove(&name);
                    let outcome = done_failure(&t["done"], self.cfg.timeout);
                    if let Some(w) = state.waiters.get_mut(&name) {
                        w.ended = Some(outcome);
                    }
                }
                "missing" => {
                    let n = state.missing.entry(name.clone()).or_default();
                    *n += 1;
                    if *n >= LOST_AFTER
                        && let Some(mut w) = state.waiters.remove(&name)
                    {
                        resolved.push(Resolved {
                            tx: w.tx.take(),
                            result: Err(ExecutorError::Lost {
                                job: name.clone(),
                                message: "its ticket is in none of the queue's directories".into(),
                            }),
                        });
                    }
                }
                "pending" | "running" => {
                    state.missing.remove(&name);
                }
                _ => {}
            }
        }
    }

    /// Pilot bookkeeping after a status read: finish ended pilots (their running trials go back to
    /// the queue), and submit pilots while trials wait and fewer than `max_jobs` can take them.
    fn plan_pilots(&self, state: &mut State, now: f64, follow: &mut Vec<(FollowUp, Value)>) {
        for (name, p) in &state.pilots {
            let gone = p.phase == Some(Phase::Ended) || (p.job.is_none() && !p.finished);
            if gone && !p.finished {
                follow.push((
                    FollowUp::PilotFinished(name.clone()),
                    json!({"op": "pilot_finished", "name": name, "max_requeues": self.cfg.max_requeues}),
                ));
            }
        }
        let estimate = self.cfg.trial_estimate.as_secs_f64();
        // A pilot whose remaining time would not fit two more trials gets a successor now, so the
        // successor's queue wait overlaps the pilot's last trials.
        let lead = 2.0 * estimate + 60.0;
        let able = state
            .pilots
            .values()
            .filter(|p| !p.finished && p.job.is_some() && p.phase != Some(Phase::Ended))
            .filter(|p| !p.draining && p.ends.is_none_or(|end| end - now > lead))
            .count() as u32;
        if state.pending == 0 || able >= self.cfg.pbs.max_jobs {
            return;
        }
        if let Some(why) = state.pilot_refusal.take() {
            tracing::info!("pbs: not submitting a pilot this cycle: {why}");
            return;
        }
        let slots = self.cfg.pbs.slots_per_node.max(1) as usize;
        let wanted = state.pending.div_ceil(slots) as u32;
        let n = wanted.min(self.cfg.pbs.max_jobs - able);
        for _ in 0..n {
            let name = format!("{}.p{}", self.study, state.next_pilot);
            state.next_pilot += 1;
            match self.pilot_script(&name) {
                Ok(script) => follow.push((
                    FollowUp::SubmitPilot(name.clone()),
                    json!({"op": "submit_pilot", "name": name, "script": script}),
                )),
                Err(e) => tracing::error!("pbs: cannot render the pilot's job script: {e}"),
            }
        }
    }

    fn pilot_script(&self, name: &str) -> Result<String, String> {
        let c = &self.cfg;
        let walltime = super::validate_walltime(&c.pbs.walltime).map_err(|e| e.to_string())?;
        let argv: Vec<OsString> = [
            c.python.clone(),
            format!("{}/bin/pilot.py", self.root),
            "--root".into(),
            self.root.clone(),
            "--slots".into(),
            c.pbs.slots_per_node.to_string(),
            "--affinity-var".into(),
            c.pbs.affinity_var.clone(),
            "--cpu-lists".into(),
            c.pbs.cpu_lists.join(":"),
            "--walltime-s".into(),
            walltime.as_secs().to_string(),
            "--idle-s".into(),
            c.pilot_idle.as_secs().to_string(),
            "--margin-s".into(),
            c.pilot_margin.as_secs().to_string(),
            // A listing of the queue directory a second: a freed tile waits at most that long for
            // a queued trial, and the shared file system sees one small readdir per pilot.
            "--poll-s".into(),
            "1".into(),
        ]
        .into_iter()
        .map(OsString::from)
        .collect();
        // The pilot's job: a spec whose only use is its name and its directory.
        let spec = TrialSpec {
            id: 0,
            attempt: 1,
            params: crate::space::Assignment { values: Vec::new() },
            params_json: Default::default(),
            dir: PathBuf::new(),
            job_name: name.to_string(),
            slot: 0,
            parent: None,
        };
        self.script.render(&spec, &format!("{}/pilots", self.root), &argv, &[]).map_err(|e| e.to_string())
    }

    /// A pilot that ends without having run anything while trials wait is a sign that every
    /// pilot will (a setup line that fails, no Python, a walltime too short): after
    /// [`MAX_IDLE_PILOTS`] in a row, the waiting trials fail with the pilot's output to read,
    /// instead of pilots being submitted forever.
    fn pilot_ended(&self, state: &mut State, name: &str, worked: bool, resolved: &mut Vec<Resolved>) {
        if worked || state.pending == 0 {
            state.idle_pilots = 0;
            return;
        }
        state.idle_pilots += 1;
        tracing::warn!("pbs: pilot {name} ended without running a trial while {} waited", state.pending);
        if state.idle_pilots < MAX_IDLE_PILOTS {
            return;
        }
        let message = format!(
            "{MAX_IDLE_PILOTS} pilot jobs in a row ended without running a trial; read their output in {}/pilots/ \
             ({name}.o*) and check executor.python, executor.setup and executor.walltime",
            self.root
        );
        state.idle_pilots = 0;
        stop_all(state, &message, resolved);
    }

    fn take_pilot_submit(&self, state: &mut State, name: &str, result: &Value, resolved: &mut Vec<Resolved>) {
        if let Some(e) = op_error(result) {
            state.pilots.entry(name.to_string()).or_default().finished = true;
            let message = format!(
                "the pilot job could not be submitted on {}: {e}; qsub must be on the remote PATH or in `executor.pbs_bin`",
                self.remote.transport().host()
            );
            stop_all(state, &message, resolved);
            return;
        }
        let cmd: Cmd = serde_json::from_value(result.clone()).unwrap_or_default();
        match qsub::interpret_qsub(cmd.status, &cmd.stdout, &cmd.stderr) {
            Ok(id) => {
                tracing::info!("pbs: pilot {name} submitted as {id}");
                let p = state.pilots.entry(name.to_string()).or_default();
                p.job = Some(id);
                p.phase = Some(Phase::Queued);
            }
            Err(e @ (QsubError::QueueFull { .. } | QsubError::Unreachable { .. } | QsubError::NoJobId { .. })) => {
                tracing::info!("pbs: pilot {name} not accepted now: {e}");
                // Its script is registered without a job id: mark it finished so it is not watched.
                state.pilots.entry(name.to_string()).or_default().finished = true;
                state.pilot_refusal = Some(e.to_string());
            }
            Err(e) => {
                // A configuration problem every pilot would hit: the waiting trials cannot run.
                let message = format!("the pilot job was refused: {e}");
                state.pilots.entry(name.to_string()).or_default().finished = true;
                stop_all(state, &message, resolved);
            }
        }
    }
}

/// Something every pilot would hit: each waiting trial's `wait` ends with [`ExecutorError::Fatal`],
/// which stops the run and leaves the trials as they are (their tickets stay queued) for a resume
/// with a fixed configuration.
fn stop_all(state: &mut State, message: &str, resolved: &mut Vec<Resolved>) {
    tracing::error!("pbs: {message}");
    for (_, mut w) in std::mem::take(&mut state.waiters) {
        resolved.push(Resolved { tx: w.tx.take(), result: Err(ExecutorError::Fatal(message.to_string())) });
    }
}

enum FollowUp {
    Final(Vec<String>),
    PilotFinished(String),
    SubmitPilot(String),
}

struct Resolved {
    tx: Option<oneshot::Sender<Result<RunReport, ExecutorError>>>,
    result: Result<RunReport, ExecutorError>,
}

fn send_resolved(resolved: Vec<Resolved>) {
    for r in resolved {
        if let Some(tx) = r.tx {
            let _ = tx.send(r.result);
        }
    }
}

/// New metrics lines of running trials: sent to the sink as they arrive.
fn take_reads(state: &mut State, keys: &[String], result: &Value) {
    let Some(trials) = result["trials"].as_array() else { return };
    for (key, t) in keys.iter().zip(trials) {
        if let Some(w) = state.waiters.get_mut(key) {
            feed_metrics(w, t);
        }
    }
}

fn feed_metrics(w: &mut Waiter, t: &Value) {
    if t["metrics_reset"].as_bool() == Some(true) {
        w.stream = MetricsStream::quiet();
        w.curve.clear();
    }
    if let Some(text) = t["metrics"].as_str() {
        for (index, metrics) in w.stream.push(text.as_bytes()) {
            w.curve.insert(index, metrics.clone());
            let _ = w.sink.send(MetricsLine { trial: w.spec.id, index, metrics });
        }
    }
    if let Some(next) = t["metrics_next"].as_u64() {
        w.metrics_from = next;
    }
}

/// The final read of trials that ended: their reports.
fn finish_reads(state: &mut State, keys: &[String], result: &Value, resolved: &mut Vec<Resolved>) {
    let trials = result["trials"].as_array().cloned().unwrap_or_default();
    for (key, t) in keys.iter().zip(trials.iter()) {
        let Some(mut w) = state.waiters.remove(key) else { continue };
        feed_metrics(&mut w, t);
        let failure = w.ended.take().flatten();
        let result_text = t["result"].as_str();
        let parsed = match (op_error(t), result_text) {
            (Some(e), _) => {
                Some(Err(protocol::ProtocolError::Malformed { file: protocol::RESULT_FILE.into(), message: e }))
            }
            (None, Some(text)) => Some(protocol::parse_result(text.as_bytes())),
            (None, None) => None,
        };
        let stderr_tail = t["stderr_tail"].as_str().map(str::to_string);
        let stdout_tail = t["stdout_tail"].as_str().map(str::to_string);
        let tail = move || {
            let cut = |s: &str| protocol::tail_text(s.as_bytes(), s.len() >= protocol::TAIL_BYTES);
            stderr_tail.as_deref().and_then(cut).or_else(|| stdout_tail.as_deref().and_then(cut))
        };
        let curve: Vec<Metrics> = std::mem::take(&mut w.curve).into_values().collect();
        let report = protocol::report(curve, parsed, failure, tail);
        resolved.push(Resolved { tx: w.tx.take(), result: Ok(report) });
    }
}

/// A pilot's done record as the trial's failure (`None`: success).
fn done_failure(done: &Value, timeout: Option<Duration>) -> Option<Failure> {
    if done["lost"].as_bool() == Some(true) {
        let why = done["reason"].as_str().unwrap_or("its pilot job ended while it ran");
        return Some(Failure::system(why.to_string()));
    }
    if done["cancelled"].as_bool() == Some(true) {
        return Some(Failure { reason: "cancelled".into(), cause: FailureCause::Cancelled });
    }
    if done["timed_out"].as_bool() == Some(true) {
        let limit = timeout.map(|t| format!(" of {} s", t.as_secs())).unwrap_or_default();
        return Some(Failure::trial(format!("timed out: it ran past executor.timeout_s{limit}")));
    }
    if let Some(sig) = done["signal"].as_i64() {
        let name = qstat::signal_name(sig).map(|s| format!(" ({s})")).unwrap_or_default();
        let reason = format!("killed by signal {sig}{name}");
        // SIGKILL and SIGTERM come from outside (the OOM killer, an admin): a retry may succeed,
        // as with the local executor; a crash signal would come again.
        return Some(if matches!(sig, 9 | 15) { Failure::system(reason) } else { Failure::trial(reason) });
    }
    match done["exit_code"].as_i64() {
        Some(0) => None,
        Some(75) => Some(Failure::system("the trial stopped and asked to be resumed (exit status 75)")),
        Some(code) => Some(Failure::trial(format!("exit status {code}"))),
        None => Some(Failure::system("the pilot recorded no exit status")),
    }
}

/// argv and env of a ticket as JSON strings (a job script or a ticket carries text, not bytes).
fn ticket_strings(
    trial: u64,
    argv: Vec<OsString>,
    env: Vec<(String, OsString)>,
) -> Result<(Vec<String>, BTreeMap<String, String>), ExecutorError> {
    let text = |s: OsString, what: String| {
        s.into_string().map_err(|_| ExecutorError::Submit { trial, message: format!("{what} is not valid UTF-8") })
    };
    let argv = argv
        .into_iter()
        .enumerate()
        .map(|(i, a)| text(a, format!("argument {i} of the command")))
        .collect::<Result<_, _>>()?;
    let env = env
        .into_iter()
        .map(|(k, v)| {
            let v = text(v, format!("the value of {k}"))?;
            Ok((k, v))
        })
        .collect::<Result<_, ExecutorError>>()?;
    Ok((argv, env))
}

/// Where a `stage` entry goes under `<study>/files/`: its path when it is inside the config's
/// directory, its file name when it is outside (`../trainer/python/alcf_train.py` is
/// `files/alcf_train.py`).
fn staged_name(entry: &str) -> PathBuf {
    let path = Path::new(entry);
    let outside = path.is_absolute() || path.components().any(|c| matches!(c, std::path::Component::ParentDir));
    match (outside, path.file_name()) {
        (true, Some(name)) => PathBuf::from(name),
        _ => path.to_path_buf(),
    }
}

struct StagedFile {
    remote: String,
    data: Vec<u8>,
    sha256: String,
    mode: u32,
}

impl StagedFile {
    fn new(remote: String, data: Vec<u8>, mode: u32) -> StagedFile {
        let sha256 = Sha256::digest(&data).iter().map(|b| format!("{b:02x}")).collect();
        StagedFile { remote, data, sha256, mode }
    }
}

/// Files under `local` (a file or a directory), as `files/<rel>/...`.
fn collect_files(local: &Path, rel: &Path, out: &mut Vec<StagedFile>, total: &mut u64) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let meta = std::fs::metadata(local)?;
    if meta.is_dir() {
        let mut entries: Vec<_> = std::fs::read_dir(local)?.collect::<Result<_, _>>()?;
        entries.sort_by_key(|e| e.file_name());
        for e in entries {
            let name = e.file_name();
            // Caches and virtual environments are not the program.
            if matches!(name.to_str(), Some("__pycache__" | ".git" | ".venv")) {
                continue;
            }
            collect_files(&e.path(), &rel.join(&name), out, total)?;
        }
        return Ok(());
    }
    let data = std::fs::read(local)?;
    *total += data.len() as u64;
    let mode = if meta.permissions().mode() & 0o111 != 0 { 0o755 } else { 0o644 };
    let rel = rel.to_str().ok_or_else(|| std::io::Error::other(format!("{} is not UTF-8", rel.display())))?;
    out.push(StagedFile::new(format!("files/{rel}"), data, mode));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A pilot executor on this machine (`host = "local"`), nothing remote touched.
    fn pilot_executor(extra: &str) -> PbsExecutor {
        let text = format!(
            "[executor]\nkind = \"pbs\"\nhost = \"local\"\nremote_dir = \"/tmp/x\"\ncommand = [\"true\"]\n\
             account = \"P\"\nqueue = \"capacity\"\nwalltime = \"02:00:00\"\nmax_jobs = 2\n\
             trial_estimate = \"10m\"\n{extra}\n[space]\nx = {{ type = \"float\", low = 0.0, high = 1.0 }}\n"
        );
        let config = crate::config::Config::parse(&text, Path::new("t.toml")).unwrap();
        let Some(crate::config::ExecutorConfig::Pbs(pbs)) = config.executor else { panic!() };
        PbsExecutor::new(*pbs, config.space.as_ref().unwrap(), 24, "s").unwrap()
    }

    fn running(job: &str, ends: f64) -> Pilot {
        Pilot { job: Some(job.into()), ends: Some(ends), phase: Some(Phase::Running), worked: true, ..Pilot::default() }
    }

    fn planned(exec: &PbsExecutor, state: &mut State, now: f64) -> Vec<String> {
        let mut follow = Vec::new();
        exec.inner.plan_pilots(state, now, &mut follow);
        follow
            .iter()
            .map(|(_, op)| format!("{} {}", op["op"].as_str().unwrap(), op["name"].as_str().unwrap()))
            .collect()
    }

    #[test]
    fn pilots_are_submitted_while_trials_wait_up_to_max_jobs() {
        let exec = pilot_executor("");
        let mut state = State { pending: 30, next_pilot: 0, ..State::default() };
        // 30 waiting trials need 3 pilots of 12; max_jobs allows 2.
        assert_eq!(planned(&exec, &mut state, 0.0), ["submit_pilot s.p0", "submit_pilot s.p1"]);
        let mut state = State { pending: 5, next_pilot: 1, ..State::default() };
        state.pilots.insert("s.p0".into(), running("1.x", 7200.0));
        assert_eq!(planned(&exec, &mut state, 0.0), ["submit_pilot s.p1"], "one more pilot, under the next name");
        state.pilots.insert("s.p1".into(), running("2.x", 7200.0));
        let mut state2 = State { pending: 5, next_pilot: 2, pilots: state.pilots.clone(), ..State::default() };
        assert!(planned(&exec, &mut state2, 0.0).is_empty(), "two pilots that can take work: none more");
        let mut idle = State { pending: 0, next_pilot: 2, pilots: state.pilots.clone(), ..State::default() };
        assert!(planned(&exec, &mut idle, 0.0).is_empty(), "nothing waits: no pilot");
    }

    #[test]
    fn a_pilot_near_its_walltime_gets_a_successor_and_an_ended_one_is_finished() {
        let exec = pilot_executor("");
        let mut state = State { pending: 3, next_pilot: 2, ..State::default() };
        state.pilots.insert("s.p0".into(), running("1.x", 7200.0));
        // 20 minutes left: not enough for two more 10-minute trials and the margin.
        state.pilots.insert("s.p1".into(), running("2.x", 1200.0));
        assert_eq!(planned(&exec, &mut state, 0.0), ["submit_pilot s.p2"]);
        let mut state = State { pending: 3, next_pilot: 2, ..State::default() };
        state.pilots.insert("s.p0".into(), running("1.x", 7200.0));
        state.pilots.insert("s.p1".into(), Pilot { phase: Some(Phase::Ended), ..running("2.x", 1200.0) });
        assert_eq!(planned(&exec, &mut state, 0.0), ["pilot_finished s.p1", "submit_pilot s.p2"]);
        // A refusal for a full queue waits a cycle before the next try.
        let mut state = State { pending: 3, pilot_refusal: Some("full".into()), ..State::default() };
        assert!(planned(&exec, &mut state, 0.0).is_empty());
        assert!(planned(&exec, &mut state, 0.0).len() == 1, "and tries again the cycle after");
    }

    #[test]
    fn configurations_that_cannot_work_are_refused() {
        let text = |extra: &str| {
            format!(
                "[executor]\nkind = \"pbs\"\nhost = \"local\"\nremote_dir = \"/tmp/x\"\ncommand = [\"true\"]\n\
                 account = \"P\"\n{extra}\n[space]\nx = {{ type = \"float\", low = 0.0, high = 1.0 }}\n"
            )
        };
        let build = |extra: &str, parallel: u32| {
            let config = crate::config::Config::parse(&text(extra), Path::new("t.toml")).unwrap();
            let Some(crate::config::ExecutorConfig::Pbs(pbs)) = config.executor else { panic!() };
            PbsExecutor::new(*pbs, config.space.as_ref().unwrap(), parallel, "s").err().map(|e| e.to_string())
        };
        let e = build("walltime = \"00:30:00\"\ntrial_estimate = \"40m\"", 1).unwrap();
        assert!(e.contains("leaves no room") && e.contains("trial_estimate"), "{e}");
        let e = build("placement = \"per_trial\"\nmax_jobs = 2", 3).unwrap();
        assert!(e.contains("study.parallel") && e.contains("max_jobs"), "{e}");
        let e = build("placement = \"per_trial\"\ntimeout_s = 60", 1).unwrap();
        assert!(e.contains("timeout_s") && e.contains("walltime"), "{e}");
        let e = build("queue = \"no such\"", 1).unwrap();
        assert!(e.contains("executor.queue"), "{e}");
        assert_eq!(build("", 12), None);
    }

    #[test]
    fn done_records_read_as_failures() {
        assert_eq!(done_failure(&json!({"exit_code": 0}), None), None);
        assert_eq!(done_failure(&json!({"exit_code": 3}), None), Some(Failure::trial("exit status 3")));
        assert_eq!(done_failure(&json!({"exit_code": 75}), None).unwrap().cause, FailureCause::System);
        assert_eq!(done_failure(&json!({"lost": true, "reason": "x"}), None), Some(Failure::system("x")));
        assert_eq!(done_failure(&json!({"cancelled": true}), None).unwrap().cause, FailureCause::Cancelled);
        let f = done_failure(&json!({"signal": 9, "exit_code": null}), None).unwrap();
        assert!(f.reason.contains("signal 9") && f.cause == FailureCause::System, "{f:?}");
        assert_eq!(done_failure(&json!({"signal": 11}), None).unwrap().cause, FailureCause::Trial);
        let f = done_failure(&json!({"timed_out": true, "signal": 15}), Some(Duration::from_secs(5))).unwrap();
        assert!(f.reason.contains("timed out") && f.reason.contains("5 s"), "{f:?}");
    }

    #[test]
    fn staged_names() {
        assert_eq!(staged_name("train.py"), Path::new("train.py"));
        assert_eq!(staged_name("src/models"), Path::new("src/models"));
        assert_eq!(staged_name("../trainer/python/alcf_train.py"), Path::new("alcf_train.py"));
        assert_eq!(staged_name("/abs/dir/lib"), Path::new("lib"));
    }

    #[test]
    fn control_paths_are_short_and_per_host() {
        let p = default_control_path("user@aurora.alcf.anl.gov");
        assert!(p.ends_with(".ssh/alcf-host/user@aurora.alcf.anl.gov.sock"), "{}", p.display());
        assert!(default_control_path("a b/c").ends_with("a_b_c.sock"));
    }
}
