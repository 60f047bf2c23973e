//! The `globus` executor: trials as Globus Compute tasks on the user's endpoint (on an Aurora
//! login node; its Parsl engine submits the PBS jobs and packs tasks onto GPU tiles).
//!
//! # How it runs
//!
//! - **The function**: one per study, [`TRIAL_SOURCE`] registered as pure source the first time
//!   the study submits; its id is kept in the study ([`ExecutorState`] key `globus.function`, with
//!   the source's hash and the service's URL) and registered again only when either changes, or
//!   when the service no longer knows it.
//! - **Submit**: every trial of a batch is one task of one `submit` request (split only where a
//!   body would pass 10 MB). The endpoint's status is asked first (or taken from the last cycle);
//!   an offline endpoint pauses submission. Task ids go into the study the moment the answer
//!   arrives, under the trial's job name, so a host killed before the campaign records them finds
//!   them ([`Executor::find`]).
//! - **The poller**: every `poll_interval`, one endpoint-status request and one batch-status
//!   request for every task in flight. A result is in that answer, and only there: the service
//!   deletes a result once returned, so results are taken as they come and nothing else is
//!   fetched. Every request goes through the client's rate limiter.
//!
//! # Faults
//! - A failed request changes nothing recorded: [`Health`] goes `Paused` with the reason and what
//!   to do, and the next cycle tries again.
//! - A task the service no longer knows on two cycles in a row lost its result (a result not
//!   fetched within 30 minutes of completion is abandoned, e.g. while a laptop slept; an answer
//!   that carried it may have been cut off). The trial function also wrote its outcome to
//!   `outcome.json` in the trial directory, so the executor sends a *collect* task that reads it:
//!   the trial is recovered without running again when that attempt's outcome is there, and
//!   re-run ([`ExecutorError::Lost`]) only when it is not.
//! - Globus Compute cannot stop a task: [`Executor::cancel`] stops waiting; the tasks run to
//!   their end on the endpoint, and their results are ignored.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use tokio::sync::{oneshot, watch};
use tokio::time::Instant;

use super::client::{ComputeClient, ComputeError, MAX_PAYLOAD, MAX_STATUS_IDS, RequestCounts, TaskState};
use super::wire;
use crate::auth::{self, ServiceTokens, TokenSource};
use crate::config::{GlobusExecutorConfig, Rerun};
use crate::executor::argv::{EnvTemplate, LocalConfigError, Template, Vars};
use crate::executor::pbs::quote;
use crate::executor::protocol::{self, ProtocolError};
use crate::executor::{
    BoxFuture, Executor, ExecutorError, ExecutorState, Failure, FailureCause, Health, JobHandle, MetricsLine,
    MetricsSink, RunReport, TrialSpec,
};
use crate::space::SearchSpace;

/// The trial function's source, registered as the function `run_trial`.
pub const TRIAL_SOURCE: &str = include_str!("trial.py");
pub const FUNCTION_NAME: &str = "run_trial";

/// Cycles in a row a task must be unknown to the service before its result counts as lost.
const LOST_AFTER: u32 = 2;
/// The study-record key of the registered function.
const FUNCTION_KEY: &str = "globus.function";
/// Room kept under the service's 10 MB for the request's own JSON.
const BODY_MARGIN: usize = 64 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum GlobusBuildError {
    #[error(transparent)]
    Command(#[from] LocalConfigError),
    #[error("the study name {name:?} cannot name a remote directory; use letters, digits, `_`, `-` and `.`")]
    StudyName { name: String },
    #[error("Globus Compute client: {0}")]
    Client(String),
}

pub struct GlobusExecutor {
    inner: Arc<Inner>,
}

struct Inner {
    cfg: GlobusExecutorConfig,
    /// `<remote_dir>/<study>`.
    root: String,
    argv: Template,
    env: EnvTemplate,
    client: ComputeClient,
    store: Mutex<Option<Arc<dyn ExecutorState>>>,
    /// The registered function's id, once known; serializes registration.
    function: tokio::sync::Mutex<Option<String>>,
    state: Mutex<State>,
    health: watch::Sender<Health>,
    stopped: AtomicBool,
    poller: Mutex<Option<tokio::task::JoinHandle<()>>>,
    /// Set by the first request that worked: before it, a missing login stops the run at once.
    worked: AtomicBool,
    /// The user's login, checked by `preflight` (absent when a test supplies the tokens).
    login: Option<auth::Credentials>,
}

#[derive(Default)]
struct State {
    /// Keyed by task id.
    waiters: BTreeMap<String, Waiter>,
    /// Collect task id -> the task id of the trial it recovers.
    collects: HashMap<String, String>,
    /// Cycles in a row each task (trial or collect) was unknown to the service.
    unknown: HashMap<String, u32>,
    /// The endpoint's last known status and when it was asked.
    endpoint: Option<(bool, Instant)>,
    /// The last request's failure, while it lasts.
    problem: Option<String>,
}

struct Waiter {
    spec: TrialSpec,
    /// The job name the trial function records in `outcome.json`.
    job: String,
    sink: MetricsSink,
    tx: Option<oneshot::Sender<Result<RunReport, ExecutorError>>>,
    /// The service's last word on the task.
    phase: String,
    /// Its result is lost: a collect task is wanted (`None`) or in flight (`Some(id)`).
    collect: Option<Option<String>>,
}

impl GlobusExecutor {
    pub fn new(
        cfg: GlobusExecutorConfig,
        space: &SearchSpace,
        study: &str,
    ) -> Result<GlobusExecutor, GlobusBuildError> {
        let tokens = ServiceTokens::from_env(auth::COMPUTE);
        let login = tokens.credentials.clone();
        let mut exec = GlobusExecutor::with_tokens(cfg, space, study, Arc::new(tokens))?;
        if let Some(inner) = Arc::get_mut(&mut exec.inner) {
            inner.login = Some(login);
        }
        Ok(exec)
    }

    /// As [`new`](Self::new), with the tokens from `tokens` (benchmarks and tests).
    pub fn with_tokens(
        cfg: GlobusExecutorConfig,
        space: &SearchSpace,
        study: &str,
        tokens: Arc<dyn TokenSource>,
    ) -> Result<GlobusExecutor, GlobusBuildError> {
        if study.is_empty()
            || study.starts_with('.')
            || !study.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
        {
            return Err(GlobusBuildError::StudyName { name: study.to_string() });
        }
        let argv = Template::parse(&cfg.command, space)?;
        let env = EnvTemplate::parse(&cfg.env, space)?;
        let client = ComputeClient::new(&cfg.base_url, tokens, cfg.max_requests, cfg.rate_window)
            .map_err(GlobusBuildError::Client)?;
        let (health, _) = watch::channel(Health::Ready);
        Ok(GlobusExecutor {
            inner: Arc::new(Inner {
                root: format!("{}/{study}", cfg.remote_dir),
                cfg,
                argv,
                env,
                client,
                store: Mutex::new(None),
                function: tokio::sync::Mutex::new(None),
                state: Mutex::new(State::default()),
                health,
                stopped: AtomicBool::new(false),
                poller: Mutex::new(None),
                worked: AtomicBool::new(false),
                login: None,
            }),
        })
    }

    /// Requests made so far, by route.
    pub fn requests(&self) -> &RequestCounts {
        &self.inner.client.counts
    }

    /// The payload one attempt of `spec` is submitted with (`pack([args, kwargs])` of
    /// `run_trial`'s call), for tests that decode it with the real SDK.
    pub fn task_payload(&self, spec: &TrialSpec) -> Result<String, ExecutorError> {
        self.inner.call(spec, false).map(|kwargs| wire::payload(&json!([]), &kwargs))
    }
}

impl Executor for GlobusExecutor {
    fn kind(&self) -> &'static str {
        "globus"
    }

    fn describe(&self) -> String {
        let c = &self.inner.cfg;
        format!(
            "Globus Compute endpoint {} via {}: trials in {}; command {:?}",
            c.endpoint, c.base_url, self.inner.root, c.command
        )
    }

    fn jobs_outlive_host(&self) -> bool {
        true
    }

    fn preflight(&self) -> Result<(), ExecutorError> {
        match &self.inner.login {
            Some(login) => login.check_login(&auth::COMPUTE).map_err(|e| ExecutorError::Fatal(e.to_string())),
            None => Ok(()),
        }
    }

    fn bind_state(&self, state: Arc<dyn ExecutorState>) {
        *self.inner.store.lock().unwrap_or_else(|e| e.into_inner()) = Some(state);
    }

    fn submit(&self, batch: Vec<TrialSpec>) -> BoxFuture<Result<Vec<Result<JobHandle, ExecutorError>>, ExecutorError>> {
        let inner = self.inner.clone();
        Box::pin(async move {
            let out = inner.submit(batch).await;
            inner.start_poller();
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
            let name =
                job.data.get("job").and_then(Value::as_str).map_or_else(|| trial.job_name.clone(), str::to_string);
            inner.lock().waiters.insert(
                job.id.clone(),
                Waiter {
                    spec: trial,
                    job: name,
                    sink: metrics,
                    tx: Some(tx),
                    phase: "submitted".into(),
                    collect: None,
                },
            );
            inner.start_poller();
            match rx.await {
                Ok(r) => r,
                Err(_) => Err(ExecutorError::Transient {
                    message: "the executor stopped".into(),
                    retry_after: Duration::from_secs(1),
                }),
            }
        })
    }

    fn find(&self, trials: Vec<TrialSpec>) -> BoxFuture<Result<Vec<Option<JobHandle>>, ExecutorError>> {
        let inner = self.inner.clone();
        Box::pin(async move {
            trials
                .iter()
                .map(|t| match inner.store_get(&task_key(&t.job_name)) {
                    Ok(v) => Ok(v.map(|text| JobHandle::from_stored(&text))),
                    Err(e) => Err(ExecutorError::Fatal(e)),
                })
                .collect()
        })
    }

    fn cancel(&self, jobs: Vec<JobHandle>) -> BoxFuture<Result<(), ExecutorError>> {
        let inner = self.inner.clone();
        Box::pin(async move {
            let mut state = inner.lock();
            let mut ids = Vec::new();
            for job in jobs {
                if let Some(w) = state.waiters.remove(&job.id) {
                    let _ = inner.store_remove(&task_key(&w.job));
                    ids.push(job.id);
                }
            }
            if !ids.is_empty() {
                tracing::warn!(
                    "globus: Globus Compute cannot stop a task once submitted: {} task(s) run to their end on the \
                     endpoint and their results are ignored ({})",
                    ids.len(),
                    ids.join(", ")
                );
            }
            Ok(())
        })
    }

    fn detach(&self) -> BoxFuture<()> {
        let inner = self.inner.clone();
        Box::pin(async move {
            inner.stopped.store(true, Ordering::SeqCst);
            let poller = inner.poller.lock().unwrap_or_else(|e| e.into_inner()).take();
            if let Some(p) = poller {
                p.abort();
                let _ = p.await;
            }
            let c = &inner.client.counts;
            tracing::info!(
                "globus: {} requests to Globus Compute ({} register, {} submit, {} batch status, {} endpoint status; {} refused with 429)",
                c.total(),
                c.register.load(Ordering::Relaxed),
                c.submit.load(Ordering::Relaxed),
                c.status.load(Ordering::Relaxed),
                c.endpoint.load(Ordering::Relaxed),
                c.rate_limited.load(Ordering::Relaxed),
            );
        })
    }

    fn health(&self) -> watch::Receiver<Health> {
        self.inner.health.subscribe()
    }
}

fn task_key(job_name: &str) -> String {
    format!("globus.task.{job_name}")
}

impl Inner {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn store(&self) -> Result<Arc<dyn ExecutorState>, String> {
        self.store
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
            .ok_or_else(|| "the globus executor was used before it was bound to a study".to_string())
    }

    fn store_get(&self, key: &str) -> Result<Option<String>, String> {
        self.store()?.get(key)
    }

    fn store_remove(&self, key: &str) -> Result<(), String> {
        self.store()?.remove(key)
    }

    fn offline_message(&self) -> String {
        format!(
            "Globus Compute endpoint {} is offline: on an Aurora login node run `globus-compute-endpoint start <name>` \
             (docs/globus.md); trials go on when it is online",
            self.cfg.endpoint
        )
    }

    /// Sets health from the endpoint's status and the last request's outcome.
    fn update_health(&self) {
        let reason = {
            let state = self.lock();
            match (&state.problem, state.endpoint) {
                (Some(p), _) => Some(p.clone()),
                (None, Some((false, _))) => Some(self.offline_message()),
                _ => None,
            }
        };
        let next = match reason {
            Some(reason) => Health::Paused { reason },
            None => Health::Ready,
        };
        self.health.send_if_modified(|h| {
            let changed = *h != next;
            *h = next;
            changed
        });
    }

    /// Records a request's outcome; `Err` is handed back.
    fn note<T>(&self, result: Result<T, ComputeError>) -> Result<T, ComputeError> {
        match &result {
            Ok(_) => {
                self.worked.store(true, Ordering::SeqCst);
                self.lock().problem = None;
            }
            Err(e) if e.is_transient() => self.lock().problem = Some(e.to_string()),
            Err(_) => {}
        }
        self.update_health();
        result
    }

    /// A request failure as the submit's answer.
    fn submit_error(&self, e: ComputeError) -> ExecutorError {
        match e {
            // A login that never worked in this process: say so now instead of pausing forever.
            ComputeError::Auth(message) if !self.worked.load(Ordering::SeqCst) => ExecutorError::Fatal(message),
            e if e.is_transient() => {
                let retry_after = match &e {
                    ComputeError::RateLimited { retry_after } => *retry_after,
                    _ => self.cfg.poll_interval,
                };
                ExecutorError::Transient { message: e.to_string(), retry_after }
            }
            ComputeError::Api { code, reason, .. }
                if matches!(code.as_str(), "ENDPOINT_NOT_FOUND" | "INVALID_UUID") =>
            {
                ExecutorError::Fatal(format!(
                    "Globus Compute does not know endpoint {} ({reason}): check `executor.endpoint` against \
                     `globus-compute-endpoint list` on Aurora",
                    self.cfg.endpoint
                ))
            }
            e => ExecutorError::Fatal(format!("{e}; the run stops, and `--resume` continues it")),
        }
    }

    /// The endpoint's status for a submit: the last cycle's when it is recent, else asked now.
    async fn endpoint_online(&self) -> Result<bool, ComputeError> {
        let recent = self.lock().endpoint.filter(|(_, at)| at.elapsed() < self.cfg.poll_interval).map(|(o, _)| o);
        if let Some(online) = recent {
            return Ok(online);
        }
        let status = self.note(self.client.endpoint_status(&self.cfg.endpoint).await)?;
        self.lock().endpoint = Some((status.online, Instant::now()));
        self.update_health();
        Ok(status.online)
    }

    /// The registered function's id: known, stored in the study, or registered now.
    async fn function(&self, force: bool) -> Result<String, ExecutorError> {
        let mut known = self.function.lock().await;
        if !force && let Some(id) = known.as_ref() {
            return Ok(id.clone());
        }
        let sha = format!("{:x}", Sha256::digest(TRIAL_SOURCE.as_bytes()));
        if !force {
            let stored = self.store_get(FUNCTION_KEY).map_err(ExecutorError::Fatal)?;
            if let Some(v) = stored.and_then(|t| serde_json::from_str::<Value>(&t).ok())
                && v["sha256"] == sha.as_str()
                && v["base_url"] == self.cfg.base_url.as_str()
                && let Some(id) = v["id"].as_str()
            {
                *known = Some(id.to_string());
                return Ok(id.to_string());
            }
        }
        let id = self
            .note(self.client.register_function(FUNCTION_NAME, TRIAL_SOURCE).await)
            .map_err(|e| self.submit_error(e))?;
        let record = json!({"id": id, "sha256": sha, "base_url": self.cfg.base_url});
        self.store()
            .and_then(|s| s.set(FUNCTION_KEY, &record.to_string()))
            .map_err(|e| ExecutorError::Fatal(format!("cannot record the registered function in the study: {e}")))?;
        tracing::info!("globus: registered the trial function as {id}");
        *known = Some(id.clone());
        Ok(id)
    }

    /// `run_trial`'s keyword arguments for one attempt of one trial.
    fn call(&self, spec: &TrialSpec, collect: bool) -> Result<Value, ExecutorError> {
        let fail = |message: String| ExecutorError::Submit { trial: spec.id, message };
        let dir = format!("{}/trials/{:06}", self.root, spec.id);
        let trial_dir = std::path::PathBuf::from(&dir);
        let params_path = trial_dir.join(protocol::PARAMS_FILE);
        let config_dir = std::path::PathBuf::from(&self.cfg.code_dir);
        let parent_dir = spec.parent.map(|p| std::path::PathBuf::from(format!("{}/trials/{p:06}", self.root)));
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
        let argv = self.argv.render(&vars).map_err(|e| fail(e.to_string()))?;
        let mut words = Vec::with_capacity(argv.len());
        for (i, a) in argv.iter().enumerate() {
            let a = a.to_str().ok_or_else(|| fail(format!("argument {i} of the command is not UTF-8")))?;
            words.push(quote::quote(a, &format!("argument {i} of the command")).map_err(|e| fail(e.to_string()))?);
        }
        let mut cmd = String::new();
        for line in &self.cfg.setup {
            cmd.push_str(line);
            cmd.push('\n');
        }
        cmd.push_str(&words.join(" "));
        // The protocol's variables last, so `executor.env` cannot hide them.
        let mut env = self.env.render(&vars).map_err(|e| fail(e.to_string()))?;
        env.extend(protocol::env_vars(&vars));
        let mut env_map = serde_json::Map::new();
        for (k, v) in env {
            let v = v.to_str().ok_or_else(|| fail(format!("environment variable {k} is not UTF-8")))?.to_string();
            env_map.insert(k, Value::String(v));
        }
        Ok(json!({
            "cmd": cmd,
            "trial_dir": dir,
            "walltime": self.cfg.timeout.map(|t| t.as_secs_f64()),
            "log_tail_lines": self.cfg.log_tail_lines,
            "params": spec.params_json,
            "env": env_map,
            "job": spec.job_name,
            "attempt": spec.attempt,
            "rerun": match self.cfg.rerun { Rerun::Fresh => "fresh", Rerun::Resume => "resume" },
            "collect": collect,
        }))
    }

    async fn submit(&self, batch: Vec<TrialSpec>) -> Result<Vec<Result<JobHandle, ExecutorError>>, ExecutorError> {
        if !self.endpoint_online().await.map_err(|e| self.submit_error(e))? {
            return Err(ExecutorError::Transient {
                message: self.offline_message(),
                retry_after: self.cfg.poll_interval,
            });
        }
        let mut function = self.function(false).await?;
        let code_len = wire::function_code(FUNCTION_NAME, TRIAL_SOURCE).len();
        let mut out: Vec<Option<Result<JobHandle, ExecutorError>>> = (0..batch.len()).map(|_| None).collect();
        // Each request: (indices into batch, payloads), under the body limit.
        let mut requests: Vec<(Vec<usize>, Vec<String>)> = Vec::new();
        let mut size = 0;
        for (i, spec) in batch.iter().enumerate() {
            let payload = match self.call(spec, false) {
                Ok(kwargs) => wire::payload(&json!([]), &kwargs),
                Err(e) => {
                    out[i] = Some(Err(e));
                    continue;
                }
            };
            if code_len + payload.len() > MAX_PAYLOAD - BODY_MARGIN {
                out[i] = Some(Err(ExecutorError::Submit {
                    trial: spec.id,
                    message: format!(
                        "its task would be {} bytes, over Globus Compute's 10 MB limit: shorten the command, its \
                         environment or its parameters",
                        code_len + payload.len()
                    ),
                }));
                continue;
            }
            if requests.is_empty() || size + payload.len() > MAX_PAYLOAD - BODY_MARGIN {
                requests.push((Vec::new(), Vec::new()));
                size = 0;
            }
            size += payload.len() + 8;
            let (idx, payloads) = requests.last_mut().expect("a request was just pushed");
            idx.push(i);
            payloads.push(payload);
        }
        let mut reregistered = false;
        let mut submitted_any = false;
        for (idx, payloads) in requests {
            let answer = loop {
                let r = self.note(self.client.submit(&self.cfg.endpoint, &function, payloads.clone()).await);
                match r {
                    Err(e) if e.code() == Some("FUNCTION_NOT_FOUND") && !reregistered => {
                        tracing::warn!("globus: the service no longer knows function {function}; registering it again");
                        reregistered = true;
                        function = self.function(true).await?;
                    }
                    r => break r,
                }
            };
            match answer {
                Ok(ids) => {
                    submitted_any = true;
                    for (i, task) in idx.into_iter().zip(ids) {
                        let spec = &batch[i];
                        let handle = JobHandle { id: task, data: json!({"job": spec.job_name}) };
                        // Before the campaign records it: a host killed in between finds it again.
                        if let Err(e) = self.store().and_then(|s| s.set(&task_key(&spec.job_name), &handle.to_json())) {
                            tracing::warn!(
                                "globus: cannot note task {} of trial {} in the study: {e}",
                                handle.id,
                                spec.id
                            );
                        }
                        tracing::info!("globus: trial {} attempt {} is task {}", spec.id, spec.attempt, handle.id);
                        out[i] = Some(Ok(handle));
                    }
                }
                Err(e) => {
                    let err = self.submit_error(e);
                    if !submitted_any && matches!(err, ExecutorError::Transient { .. } | ExecutorError::Fatal(_)) {
                        return Err(err);
                    }
                    for i in idx {
                        out[i] = Some(Err(match &err {
                            ExecutorError::Fatal(m) => ExecutorError::Submit { trial: batch[i].id, message: m.clone() },
                            other => other.clone(),
                        }));
                    }
                }
            }
        }
        Ok(out
            .into_iter()
            .map(|r| {
                r.unwrap_or_else(|| Err(ExecutorError::Fatal("the globus executor lost a trial of the batch".into())))
            })
            .collect())
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
        *poller = Some(tokio::spawn(tracing::Instrument::in_current_span(async move { inner.poll_loop().await })));
    }

    async fn poll_loop(self: Arc<Self>) {
        loop {
            // A cycle right after a submit would find every task just queued: wait first.
            tokio::time::sleep(self.cfg.poll_interval).await;
            if self.stopped.load(Ordering::SeqCst) {
                return;
            }
            if let Err(e) = self.cycle().await {
                tracing::debug!("globus: cycle failed: {e}");
            }
        }
    }

    /// One poll cycle: the endpoint's status, then every task in flight in one batch status.
    async fn cycle(&self) -> Result<(), ComputeError> {
        let (ids, paused) = {
            let state = self.lock();
            let mut ids: Vec<String> = state.waiters.keys().cloned().collect();
            ids.extend(state.collects.keys().cloned());
            (ids, state.problem.is_some() || matches!(state.endpoint, Some((false, _))))
        };
        // Idle and not paused: no request at all.
        if ids.is_empty() && !paused {
            return Ok(());
        }
        let status = self.note(self.client.endpoint_status(&self.cfg.endpoint).await)?;
        let was_online = self.lock().endpoint.map(|(o, _)| o);
        self.lock().endpoint = Some((status.online, Instant::now()));
        if was_online != Some(status.online) && was_online.is_some() {
            if status.online {
                tracing::info!("globus: endpoint {} is online again", self.cfg.endpoint);
            } else {
                tracing::warn!("globus: {}", self.offline_message());
            }
        }
        self.update_health();
        for chunk in ids.chunks(MAX_STATUS_IDS) {
            let states = self.note(self.client.batch_status(chunk).await)?;
            let mut resolved = Vec::new();
            {
                let mut state = self.lock();
                for id in chunk {
                    // A task missing from the answer is as unknown as one the service says it lost.
                    let st =
                        states.get(id).cloned().unwrap_or_else(|| TaskState::Unknown("missing from the answer".into()));
                    self.take(&mut state, id, st, &mut resolved);
                }
            }
            for (tx, result) in resolved {
                let _ = tx.send(result);
            }
        }
        self.send_collects().await;
        Ok(())
    }

    /// One task's state: a trial's or a collect task's.
    fn take(&self, state: &mut State, id: &str, st: TaskState, resolved: &mut Vec<Resolved>) {
        if let Some(trial_task) = state.collects.get(id).cloned() {
            self.take_collect(state, id, &trial_task, st, resolved);
            return;
        }
        let Some(w) = state.waiters.get_mut(id) else { return };
        let report = match st {
            TaskState::Pending(phase) => {
                state.unknown.remove(id);
                if phase != w.phase {
                    tracing::debug!("globus: trial {} (task {id}) is {phase}", w.spec.id);
                    w.phase = phase;
                }
                return;
            }
            TaskState::Unknown(reason) => {
                let n = state.unknown.entry(id.to_string()).or_default();
                *n += 1;
                if *n >= LOST_AFTER && w.collect.is_none() {
                    tracing::warn!(
                        "globus: the result of trial {} (task {id}, last seen {}) is lost: the service answers \
                         {reason:?} (it abandons results not fetched within 30 minutes of completion); reading the \
                         trial's outcome.json on the endpoint instead",
                        w.spec.id,
                        w.phase
                    );
                    w.collect = Some(None);
                }
                return;
            }
            TaskState::Success(serialized) => match wire::json_result(&serialized) {
                Ok(outcome) => outcome_report(&outcome, self.cfg.timeout, w.spec.id),
                Err(e) => RunReport {
                    failure: Some(Failure::trial(format!("the endpoint's answer for this trial is unreadable: {e}"))),
                    ..RunReport::default()
                },
            },
            TaskState::Failed(traceback) => {
                tracing::warn!("globus: trial {} (task {id}) failed on the endpoint:\n{traceback}", w.spec.id);
                RunReport { failure: Some(task_failure(&traceback)), ..RunReport::default() }
            }
        };
        self.resolve(state, id, Ok(report), resolved);
    }

    fn take_collect(&self, state: &mut State, id: &str, trial_task: &str, st: TaskState, resolved: &mut Vec<Resolved>) {
        let lost = |why: String| ExecutorError::Lost { job: trial_task.to_string(), message: why };
        let result = match st {
            TaskState::Pending(_) => {
                state.unknown.remove(id);
                return;
            }
            TaskState::Unknown(reason) => {
                let n = state.unknown.entry(id.to_string()).or_default();
                *n += 1;
                if *n < LOST_AFTER {
                    return;
                }
                Err(lost(format!("its result was lost, and so was the task reading its outcome.json ({reason})")))
            }
            TaskState::Failed(traceback) => Err(lost(format!(
                "its result was lost, and reading its outcome.json failed: {}",
                last_line(&traceback)
            ))),
            TaskState::Success(serialized) => match wire::json_result(&serialized) {
                Ok(outcome) if outcome["collected"] == true => {
                    let Some(w) = state.waiters.get_mut(trial_task) else {
                        state.collects.remove(id);
                        return;
                    };
                    tracing::info!(
                        "globus: trial {} recovered from its outcome.json on the endpoint (no re-run)",
                        w.spec.id
                    );
                    Ok(outcome_report(&outcome, self.cfg.timeout, w.spec.id))
                }
                Ok(_) => Err(lost(
                    "its result was lost (Globus Compute abandons results not fetched within 30 minutes of \
                     completion) and the endpoint has no outcome.json of this attempt: it runs again"
                        .into(),
                )),
                Err(e) => Err(lost(format!("its result was lost, and the outcome read back is unreadable: {e}"))),
            },
        };
        state.collects.remove(id);
        state.unknown.remove(id);
        self.resolve(state, trial_task, result, resolved);
    }

    fn resolve(
        &self,
        state: &mut State,
        task: &str,
        result: Result<RunReport, ExecutorError>,
        resolved: &mut Vec<Resolved>,
    ) {
        state.unknown.remove(task);
        let Some(mut w) = state.waiters.remove(task) else { return };
        if let Some(Some(c)) = &w.collect {
            state.collects.remove(c);
        }
        if let Err(e) = self.store_remove(&task_key(&w.job)) {
            tracing::debug!("globus: {e}");
        }
        if let Ok(report) = &result {
            for (index, metrics) in report.curve.iter().enumerate() {
                let _ = w.sink.send(MetricsLine { trial: w.spec.id, index, metrics: metrics.clone() });
            }
        }
        if let Some(tx) = w.tx.take() {
            resolved.push((tx, result));
        }
    }

    /// Collect tasks for the trials whose results were lost, all in one request.
    async fn send_collects(&self) {
        let wanted: Vec<(String, TrialSpec)> = {
            let state = self.lock();
            state
                .waiters
                .iter()
                .filter(|(_, w)| matches!(w.collect, Some(None)))
                .map(|(id, w)| {
                    let mut spec = w.spec.clone();
                    spec.job_name = w.job.clone();
                    (id.clone(), spec)
                })
                .collect()
        };
        if wanted.is_empty() {
            return;
        }
        let function = match self.function(false).await {
            Ok(f) => f,
            Err(e) => {
                tracing::warn!("globus: cannot send the tasks that read lost results back: {e}");
                return;
            }
        };
        let mut payloads = Vec::new();
        let mut tasks = Vec::new();
        for (task, spec) in &wanted {
            match self.call(spec, true) {
                Ok(kwargs) => {
                    payloads.push(wire::payload(&json!([]), &kwargs));
                    tasks.push(task.clone());
                }
                Err(e) => tracing::warn!("globus: {e}"),
            }
        }
        match self.note(self.client.submit(&self.cfg.endpoint, &function, payloads).await) {
            Ok(ids) => {
                let mut state = self.lock();
                for (task, collect) in tasks.into_iter().zip(ids) {
                    if let Some(w) = state.waiters.get_mut(&task) {
                        w.collect = Some(Some(collect.clone()));
                        state.collects.insert(collect, task);
                    }
                }
            }
            Err(e) => tracing::warn!("globus: cannot send the tasks that read lost results back ({e}); next cycle"),
        }
    }
}

type Resolved = (oneshot::Sender<Result<RunReport, ExecutorError>>, Result<RunReport, ExecutorError>);

fn last_line(text: &str) -> &str {
    text.lines().rev().map(str::trim).find(|l| !l.is_empty() && !l.chars().all(|c| c == '-' || c == '+')).unwrap_or("")
}

/// A `failed` task's exception as the trial's failure.
pub fn task_failure(traceback: &str) -> Failure {
    // globus-compute-sdk's TaskExecutionFailed.WORKER_LOST_REGEX: `\s*parsl\.\S+\.WorkerLost:`; and
    // Parsl's ManagerLost: the PBS job under the worker ended (its walltime, a lost node, a qdel).
    let parsl = |kind: &str| {
        traceback
            .lines()
            .map(str::trim)
            .find(|l| l.starts_with("parsl.") && l.contains(kind))
            .map(|line| line.split_once(": ").map_or(line, |(_, m)| m).to_string())
    };
    if let Some(what) = parsl(".WorkerLost:") {
        return Failure::system(format!("the endpoint lost the worker running it ({what})"));
    }
    if let Some(what) = parsl(".ManagerLost:") {
        return Failure::system(format!(
            "the batch job running it ended under it, e.g. at its walltime ({what}); it may run again"
        ));
    }
    if traceback.contains("MaxResultSizeExceeded") {
        return Failure::trial(format!(
            "its outcome is over Globus Compute's 10 MB result limit ({}): write less to metrics.jsonl",
            last_line(traceback)
        ));
    }
    Failure::trial(format!("the trial function raised on the endpoint: {}", last_line(traceback)))
}

/// The trial function's outcome (its returned dict) as trial `trial`'s report; `timeout` is
/// `executor.timeout_s`, which tells an exit status 124 from the walltime.
pub fn outcome_report(o: &Value, timeout: Option<Duration>, trial: u64) -> RunReport {
    let failure = match o["returncode"].as_i64() {
        Some(0) => None,
        Some(124) if timeout.is_some() => Some(Failure::trial(format!(
            "timed out: it ran past executor.timeout_s of {} s",
            timeout.map_or(0, |t| t.as_secs())
        ))),
        Some(75) => Some(Failure::system("exited with status 75 (EX_TEMPFAIL: it stopped and asks to be resumed)")),
        Some(n) if n < 0 => {
            let sig = -n;
            let name = crate::executor::pbs::qstat::signal_name(sig).map(|s| format!(" ({s})")).unwrap_or_default();
            let reason = format!("killed by signal {sig}{name}");
            Some(if matches!(sig, 9 | 15) { Failure::system(reason) } else { Failure::trial(reason) })
        }
        // The local executor's words, so reasons group alike in reports.
        Some(n) => Some(Failure::trial(format!("exited with status {n}"))),
        None => Some(Failure::system("the endpoint returned no exit status")),
    };
    let lines: Vec<String> = o["metrics"]
        .as_array()
        .map(|a| a.iter().filter(|v| v.is_object()).map(Value::to_string).collect())
        .unwrap_or_default();
    let curve = protocol::parse_metrics(lines.join("\n").as_bytes());
    let result = if o["result_truncated"] == true {
        Some(Err(ProtocolError::Malformed {
            file: protocol::RESULT_FILE.into(),
            message: "larger than 1 MiB, which the trial function does not send back".into(),
        }))
    } else if let Some(text) = o["result_text"].as_str() {
        Some(protocol::parse_result(text.as_bytes()))
    } else if o["result"].is_object() {
        Some(protocol::parse_result(o["result"].to_string().as_bytes()))
    } else {
        None
    };
    if o["metrics_truncated"] == true {
        tracing::warn!("globus: trial {trial}: metrics.jsonl was cut to what the endpoint sends back");
    }
    if let (Some(host), Some(tile)) = (o["host"].as_str(), o["accelerator"].as_str()) {
        tracing::info!(
            "globus: trial {trial} ran on {host}, tile {tile} (worker {}), {} s",
            o["worker_rank"].as_str().unwrap_or("?"),
            o["elapsed_s"]
        );
    }
    let tail = o["log_tail"].as_str().map(str::to_string);
    let mut report = protocol::report(curve, result, failure, move || tail);
    if let Some(f) = &report.failure
        && f.cause == FailureCause::Cancelled
    {
        report.failure = Some(Failure::trial(f.reason.clone()));
    }
    report
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn task_failures_read_as_reasons() {
        let lost = "++++\nTraceback (most recent call last):\n  File \"x.py\", line 1, in f\n    raise WorkerLost(3, 'x4000c0s0b0n0')\nparsl.executors.high_throughput.errors.WorkerLost: Task failure due to loss of worker 3 on host x4000c0s0b0n0\n----\n";
        let f = task_failure(lost);
        assert_eq!(f.cause, FailureCause::System);
        assert!(f.reason.contains("loss of worker 3 on host x4000c0s0b0n0"), "{}", f.reason);
        let boom = "Traceback (most recent call last):\n  File \"<string>\", line 2, in run_trial\nPermissionError: [Errno 13] Permission denied: '/lus'\n";
        let f = task_failure(boom);
        assert_eq!(f.cause, FailureCause::Trial);
        assert_eq!(
            f.reason,
            "the trial function raised on the endpoint: PermissionError: [Errno 13] Permission denied: '/lus'"
        );
        assert!(task_failure("MaxResultSizeExceeded(11000000, 10485760)").reason.contains("10 MB"));
        let manager = "Traceback (most recent call last):\nparsl.executors.high_throughput.errors.ManagerLost: Task failure due to loss of manager 8a1 on host x4102c5s2b0n0\n";
        let f = task_failure(manager);
        assert_eq!(f.cause, FailureCause::System);
        assert!(f.reason.contains("loss of manager 8a1"), "{}", f.reason);
    }
}
