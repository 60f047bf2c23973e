//! The campaign loop: asynchronous parallel ask/tell between one strategy plugin and one executor.
//!
//! Keeps up to `parallel` trials running. Each suggestion is validated against the search space,
//! written as a `pending` trial row, submitted, and its job id recorded, before the loop waits on
//! it. When trials finish they are recorded in one transaction and observed by the strategy in one
//! call, and the freed slots are refilled with one `suggest` call that lists the pending trials.
//!
//! The loop knows nothing about which executor it drives or what the plugin does; it knows the
//! study's objective and direction, and the rules for turning a run report into a trial outcome.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use tokio::task::JoinSet;

use crate::config::Direction;
use crate::executor::{Executor, ExecutorError, JobId, RunReport, TrialSpec};
use crate::plugin::strategy::{Observation, ObservedStatus, PluginError, SandboxedStrategy};
use crate::progress::Progress;
use crate::space::{Assignment, SearchSpace};
use crate::study::{Finish, StudyDb, StudyError, TrialRow, TrialState};

/// How many invalid suggestion rounds in a row end the run (the study stays resumable).
const MAX_INVALID_ROUNDS: u32 = 3;
/// How many trials in a row that cannot even be started end the run (usually a config error).
const MAX_SUBMIT_FAILURES: u32 = 3;
/// How often a trial whose job the executor lost is re-run before it is marked failed.
const MAX_ATTEMPTS: u32 = 3;

#[derive(Clone, Debug)]
pub struct CampaignSettings {
    pub objective: String,
    pub direction: Direction,
    /// Total number of trials in the study, counting those from earlier runs.
    pub trials: Option<u32>,
    pub max_time: Option<Duration>,
    pub parallel: u32,
}

#[derive(Debug, Clone, PartialEq)]
pub enum StopReason {
    /// The trial budget is spent.
    Budget,
    /// The wall-time budget is spent.
    Time,
    /// Ctrl-C (or SIGTERM): running trials were waited for.
    Interrupted,
    /// A second Ctrl-C: running trials were cancelled and will be re-run on resume.
    Cancelled,
    /// The strategy had nothing more to suggest.
    StrategyDone,
    /// The plugin failed beyond its restart budget or kept proposing invalid trials.
    PluginFailed(String),
    /// Trials could not be started.
    ExecutorFailed(String),
}

impl StopReason {
    pub fn is_error(&self) -> bool {
        matches!(self, StopReason::PluginFailed(_) | StopReason::ExecutorFailed(_))
    }
}

#[derive(Debug, Clone)]
pub struct Summary {
    pub reason: StopReason,
    pub completed: usize,
    pub failed: usize,
    pub best: Option<(u64, f64)>,
    pub trials_this_run: usize,
    pub elapsed: Duration,
}

/// Ctrl-C / SIGTERM count shared with the signal listener.
#[derive(Clone, Default)]
pub struct Interrupts {
    count: Arc<AtomicU32>,
    notify: Arc<tokio::sync::Notify>,
}

impl Interrupts {
    /// Listens for SIGINT and SIGTERM for the life of the process.
    pub fn listen() -> Interrupts {
        let me = Interrupts::default();
        let handle = me.clone();
        tokio::spawn(async move {
            #[cfg(unix)]
            let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
            loop {
                #[cfg(unix)]
                let term_recv = async {
                    match term.as_mut() {
                        Some(t) => {
                            t.recv().await;
                        }
                        None => std::future::pending::<()>().await,
                    }
                };
                #[cfg(not(unix))]
                let term_recv = std::future::pending::<()>();
                tokio::select! {
                    r = tokio::signal::ctrl_c() => if r.is_err() { return },
                    _ = term_recv => {}
                }
                handle.raise();
            }
        });
        me
    }

    pub fn raise(&self) {
        self.count.fetch_add(1, Ordering::SeqCst);
        self.notify.notify_waiters();
        self.notify.notify_one();
    }

    pub fn count(&self) -> u32 {
        self.count.load(Ordering::SeqCst)
    }
}

pub struct Campaign {
    pub db: Arc<StudyDb>,
    pub space: SearchSpace,
    pub study_dir: std::path::PathBuf,
    pub strategy: SandboxedStrategy,
    pub executor: Arc<dyn Executor>,
    pub settings: CampaignSettings,
    pub progress: Progress,
    pub interrupts: Interrupts,
}

/// A trial's id and how its run ended.
type Finished = (u64, Result<RunReport, ExecutorError>);
type Waiting = JoinSet<Finished>;

#[derive(Debug, thiserror::Error)]
pub enum CampaignError {
    #[error(transparent)]
    Study(#[from] StudyError),
    #[error("{0}")]
    Plugin(#[from] PluginError),
}

struct State {
    /// Running trials: id -> (spec, attempt).
    running: HashMap<u64, (TrialSpec, u32)>,
    total_trials: usize,
    completed: usize,
    failed: usize,
    best: Option<(u64, f64)>,
    this_run: usize,
    invalid_rounds: u32,
    submit_failures: u32,
}

impl Campaign {
    fn trial_spec(&self, id: u64, params: Assignment) -> TrialSpec {
        let params_json = params.to_json(&self.space);
        TrialSpec { id, params, params_json, dir: self.study_dir.join("trials").join(format!("{id:06}")) }
    }

    fn is_better(&self, value: f64, best: Option<(u64, f64)>) -> bool {
        best.is_none_or(|(_, b)| self.settings.direction.better(value, b))
    }

    /// Runs until the budget is spent, the user interrupts, or a fault stops it.
    pub async fn run(mut self) -> Result<Summary, CampaignError> {
        let start = Instant::now();
        let deadline = self.settings.max_time.map(|t| tokio::time::Instant::now() + t);
        let rows = self.db.trials()?;
        let mut st = State {
            running: HashMap::new(),
            total_trials: rows.len(),
            completed: 0,
            failed: 0,
            best: None,
            this_run: 0,
            invalid_rounds: 0,
            submit_failures: 0,
        };

        // Replay what is finished into the (fresh) plugin; the first plugin call instantiates it.
        let mut history = Vec::new();
        let mut unfinished = Vec::new();
        for row in rows {
            if row.state.is_finished() {
                match row.state {
                    TrialState::Completed => st.completed += 1,
                    _ => st.failed += 1,
                }
                if let (TrialState::Completed, Some(v)) = (row.state, row.value)
                    && self.is_better(v, st.best)
                {
                    st.best = Some((row.id, v));
                }
                history.push(self.observation_of(&row)?);
            } else {
                unfinished.push(row);
            }
        }
        if !history.is_empty() {
            self.db.event("resume", None, &format!("{} finished trials replayed into the strategy", history.len()))?;
        }
        self.strategy.preload(&history);
        self.progress.start(self.settings.trials, st.completed, st.failed, st.best.map(|b| b.1));

        let mut waiting: Waiting = JoinSet::new();
        self.reconcile(unfinished, &mut st, &mut waiting).await?;

        let mut stopping: Option<StopReason> = None;
        let mut seen_interrupts = self.interrupts.count();
        loop {
            // Fill free slots.
            while stopping.is_none() {
                if self.interrupts.count() > seen_interrupts {
                    break;
                }
                if deadline.is_some_and(|d| tokio::time::Instant::now() >= d) {
                    stopping = Some(StopReason::Time);
                    break;
                }
                let budget_left = self.settings.trials.map(|t| (t as usize).saturating_sub(st.total_trials));
                if budget_left == Some(0) {
                    stopping = Some(StopReason::Budget);
                    break;
                }
                let free = (self.settings.parallel as usize).saturating_sub(st.running.len());
                if free == 0 {
                    break;
                }
                let want = budget_left.map_or(free, |b| b.min(free));
                match self.fill(want, &mut st, &mut waiting).await {
                    Ok(true) => {}
                    Ok(false) => {
                        if st.running.is_empty() {
                            stopping = Some(StopReason::StrategyDone);
                        }
                        break;
                    }
                    Err(reason) => {
                        stopping = Some(reason);
                        break;
                    }
                }
            }
            if st.running.is_empty() {
                break;
            }
            let timer = async {
                match deadline {
                    Some(d) if stopping.is_none() => tokio::time::sleep_until(d).await,
                    _ => std::future::pending().await,
                }
            };
            tokio::select! {
                joined = waiting.join_next() => {
                    let mut done = Vec::new();
                    if let Some(j) = joined {
                        done.push(j);
                    }
                    // Take everything else that finished meanwhile: one transaction, one observe call.
                    while let Some(j) = waiting.try_join_next() {
                        done.push(j);
                    }
                    if let Err(reason) = self.record(done, &mut st, &mut waiting).await? {
                        stopping.get_or_insert(reason);
                    }
                }
                _ = self.interrupts.notify.notified() => {}
                _ = timer => { stopping.get_or_insert(StopReason::Time); }
            }
            let n = self.interrupts.count();
            if n > seen_interrupts {
                seen_interrupts = n;
                if n == 1 {
                    stopping = Some(StopReason::Interrupted);
                    self.progress.println(&format!(
                        "Interrupted: no new trials; waiting for {} running trial(s). Press Ctrl-C again to cancel them (they re-run on --resume).",
                        st.running.len()
                    ));
                    self.db.event("interrupt", None, "stop submitting; waiting for running trials")?;
                } else {
                    stopping = Some(StopReason::Cancelled);
                    self.cancel_all(&mut st, &mut waiting).await?;
                    break;
                }
            }
        }
        let reason = stopping.unwrap_or(StopReason::StrategyDone);
        self.db.event("stop", None, &format!("{reason:?}"))?;
        self.progress.finish();
        Ok(Summary {
            reason,
            completed: st.completed,
            failed: st.failed,
            best: st.best,
            trials_this_run: st.this_run,
            elapsed: start.elapsed(),
        })
    }

    fn observation_of(&self, row: &TrialRow) -> Result<Observation, CampaignError> {
        let params = Assignment::from_json(&self.space, &row.params)
            .map_err(|m| StudyError::Corrupt(format!("trial {}: {m}", row.id)))?;
        Ok(Observation {
            trial: row.id,
            params,
            status: match row.state {
                TrialState::Completed => ObservedStatus::Completed,
                TrialState::Pruned => ObservedStatus::Pruned,
                _ => ObservedStatus::Failed,
            },
            value: row.value,
            metrics: row.metrics.iter().map(|(k, v)| (k.clone(), *v)).collect(),
        })
    }

    /// Trials left pending or running by an earlier host: wait on jobs that outlive the host,
    /// re-run the others from scratch.
    async fn reconcile(
        &mut self,
        rows: Vec<TrialRow>,
        st: &mut State,
        waiting: &mut Waiting,
    ) -> Result<(), CampaignError> {
        for row in rows {
            let params = Assignment::from_json(&self.space, &row.params)
                .map_err(|m| StudyError::Corrupt(format!("trial {}: {m}", row.id)))?;
            let spec = self.trial_spec(row.id, params);
            match (&row.job_id, self.executor.jobs_outlive_host()) {
                (Some(job), true) => {
                    self.db.event("reattach", Some(row.id), &format!("waiting again on job {job}"))?;
                    let fut = self.executor.wait(&spec, &JobId(job.clone()));
                    waiting.spawn(async move { (row.id, fut.await) });
                    st.running.insert(row.id, (spec, row.attempt));
                }
                _ => {
                    let attempt = self.db.reset_for_rerun(row.id)?;
                    self.db.event("rerun", Some(row.id), &format!("interrupted trial re-run (attempt {attempt})"))?;
                    tracing::info!(trial = row.id, attempt, "re-running interrupted trial");
                    self.submit(spec, attempt, st, waiting).await;
                }
            }
        }
        Ok(())
    }

    /// Asks the strategy for `want` trials and starts the valid ones. Ok(false): nothing was started
    /// because the strategy returned no suggestions.
    async fn fill(&mut self, want: usize, st: &mut State, waiting: &mut Waiting) -> Result<bool, StopReason> {
        let pending: Vec<(u64, Assignment)> =
            st.running.iter().map(|(id, (spec, _))| (*id, spec.params.clone())).collect();
        let result = self.strategy.suggest(want as u32, &pending).await;
        self.record_faults();
        let suggestions = match result {
            Ok(s) => s,
            Err(e @ (PluginError::GaveUp { .. } | PluginError::Options { .. })) => {
                return Err(StopReason::PluginFailed(e.to_string()));
            }
            Err(e) => {
                return self.invalid_round(st, &e.to_string()).map(|_| true);
            }
        };
        if suggestions.is_empty() {
            return Ok(false);
        }
        if suggestions.len() > want {
            let msg = format!(
                "plugin `{}` returned {} suggestions but was asked for at most {want}; all were discarded",
                self.strategy.name(),
                suggestions.len()
            );
            return self.invalid_round(st, &msg).map(|_| true);
        }
        let mut started = 0;
        for raw in suggestions {
            match self.space.validate(&raw) {
                Ok(params) => {
                    let id = match self.db.insert_trial(&params.to_json(&self.space)) {
                        Ok(id) => id,
                        Err(e) => return Err(StopReason::ExecutorFailed(e.to_string())),
                    };
                    st.total_trials += 1;
                    st.this_run += 1;
                    let spec = self.trial_spec(id, params);
                    self.submit(spec, 1, st, waiting).await;
                    started += 1;
                }
                Err(e) => {
                    let msg = format!(
                        "plugin `{}` suggested an invalid trial ({}): {e}; it was discarded",
                        self.strategy.name(),
                        raw.iter().map(|(n, v)| format!("{n}={v:?}")).collect::<Vec<_>>().join(", ")
                    );
                    tracing::error!("{msg}");
                    self.progress.println(&format!("error: {msg}"));
                    let _ = self.db.event("invalid-suggestion", None, &msg);
                }
            }
        }
        if st.submit_failures >= MAX_SUBMIT_FAILURES {
            return Err(StopReason::ExecutorFailed(format!(
                "{MAX_SUBMIT_FAILURES} trials in a row could not be started; see the failure reason of the last trial (`alcf-host study show`)"
            )));
        }
        if started == 0 {
            st.invalid_rounds += 1;
            if st.invalid_rounds >= MAX_INVALID_ROUNDS {
                return Err(StopReason::PluginFailed(format!(
                    "plugin `{}` proposed only invalid trials {MAX_INVALID_ROUNDS} times in a row; fix the plugin, then continue with --resume",
                    self.strategy.name()
                )));
            }
        } else {
            st.invalid_rounds = 0;
        }
        Ok(true)
    }

    fn invalid_round(&mut self, st: &mut State, message: &str) -> Result<(), StopReason> {
        self.record_faults();
        tracing::error!("{message}");
        self.progress.println(&format!("error: {message}"));
        let _ = self.db.event("plugin-error", None, message);
        st.invalid_rounds += 1;
        if st.invalid_rounds >= MAX_INVALID_ROUNDS {
            return Err(StopReason::PluginFailed(format!(
                "{message} ({MAX_INVALID_ROUNDS} failed rounds in a row; fix the plugin, then continue with --resume)"
            )));
        }
        Ok(())
    }

    /// Moves faults the plugin runtime contained into the study's event log.
    fn record_faults(&mut self) {
        for fault in self.strategy.take_faults() {
            self.progress.println(&format!("warning: {fault}"));
            let _ = self.db.event("plugin-fault", None, &fault.to_string());
        }
        for notice in self.strategy.take_notices() {
            self.progress.println(&format!("warning: {notice}"));
            let _ = self.db.event("plugin-notice", None, &notice.to_string());
        }
    }

    async fn submit(&mut self, spec: TrialSpec, attempt: u32, st: &mut State, waiting: &mut Waiting) {
        let id = spec.id;
        match self.executor.submit(&spec).await {
            Ok(job) => {
                st.submit_failures = 0;
                if let Err(e) = self.db.mark_running(id, &job.0) {
                    tracing::error!("trial {id}: could not record job {}: {e}", job.0);
                }
                tracing::debug!(trial = id, job = %job.0, params = %spec.params.summary(), "trial started");
                let fut = self.executor.wait(&spec, &job);
                waiting.spawn(async move { (id, fut.await) });
                st.running.insert(id, (spec, attempt));
            }
            Err(e) => {
                st.submit_failures += 1;
                let message = e.to_string();
                tracing::error!(trial = id, "{message}");
                self.progress.println(&format!("error: trial {id}: {message}"));
                let finish = Finish::failed(message);
                if let Err(e) = self.db.finish_trials(&[(id, finish)]) {
                    tracing::error!("trial {id}: {e}");
                }
                st.failed += 1;
                let obs = Observation {
                    trial: id,
                    params: spec.params,
                    status: ObservedStatus::Failed,
                    value: None,
                    metrics: vec![],
                };
                // A failure to observe surfaces on the next suggest, which has the same restart logic.
                let _ = self.strategy.observe(&[obs]).await;
            }
        }
    }

    /// Turns run reports into trial outcomes, records them in one transaction, and tells the strategy.
    async fn record(
        &mut self,
        done: Vec<Result<Finished, tokio::task::JoinError>>,
        st: &mut State,
        waiting: &mut Waiting,
    ) -> Result<Result<(), StopReason>, CampaignError> {
        let mut finishes = Vec::with_capacity(done.len());
        let mut observations = Vec::with_capacity(done.len());
        let mut reruns = Vec::new();
        for joined in done {
            let (id, result) = match joined {
                Ok(r) => r,
                Err(e) => {
                    tracing::error!("a trial waiter panicked: {e}");
                    continue;
                }
            };
            let Some((spec, attempt)) = st.running.remove(&id) else { continue };
            let finish = match result {
                Ok(report) => self.outcome(report),
                Err(ExecutorError::Lost { job, message }) if attempt < MAX_ATTEMPTS => {
                    tracing::warn!(trial = id, "job {job} was lost ({message}); re-running");
                    reruns.push(spec);
                    continue;
                }
                Err(e) => Finish::failed(e.to_string()),
            };
            match (finish.state, finish.value) {
                (TrialState::Completed, Some(v)) => {
                    st.completed += 1;
                    if self.is_better(v, st.best) {
                        st.best = Some((id, v));
                    }
                    tracing::debug!(trial = id, value = v, "trial completed");
                }
                _ => {
                    st.failed += 1;
                    let why = finish.failure.as_deref().unwrap_or("failed");
                    tracing::warn!(trial = id, "trial failed: {why}");
                    self.progress.println(&format!("trial {id} failed: {why}"));
                }
            }
            observations.push(Observation {
                trial: id,
                params: spec.params,
                status: if finish.state == TrialState::Completed {
                    ObservedStatus::Completed
                } else {
                    ObservedStatus::Failed
                },
                value: finish.value,
                metrics: finish.metrics.iter().map(|(k, v)| (k.clone(), *v)).collect(),
            });
            finishes.push((id, finish));
        }
        self.db.finish_trials(&finishes)?;
        self.progress.update(st.completed, st.failed, st.running.len(), st.best.map(|b| b.1));
        for spec in reruns {
            let attempt = self.db.reset_for_rerun(spec.id)?;
            self.submit(spec, attempt, st, waiting).await;
        }
        if observations.is_empty() {
            return Ok(Ok(()));
        }
        match self.strategy.observe(&observations).await {
            Ok(()) => {
                self.record_faults();
                Ok(Ok(()))
            }
            Err(e @ (PluginError::GaveUp { .. } | PluginError::Options { .. })) => {
                self.record_faults();
                Ok(Err(StopReason::PluginFailed(e.to_string())))
            }
            Err(e) => {
                // The outcomes are recorded and in the replay history; a refusing observe is reported, not fatal.
                self.record_faults();
                tracing::error!("{e}");
                let _ = self.db.event("plugin-error", None, &e.to_string());
                Ok(Ok(()))
            }
        }
    }

    fn outcome(&self, report: RunReport) -> Finish {
        let failed = |failure: String, report: RunReport| Finish {
            state: TrialState::Failed,
            value: None,
            metrics: report.metrics,
            curve: report.curve,
            failure: Some(failure),
            log_tail: report.log_tail,
        };
        if let Some(f) = report.failure.clone() {
            return failed(f, report);
        }
        match report.metrics.get(&self.settings.objective).copied() {
            Some(v) if v.is_finite() => Finish {
                state: TrialState::Completed,
                value: Some(v),
                metrics: report.metrics,
                curve: report.curve,
                failure: None,
                log_tail: None,
            },
            Some(v) => failed(format!("objective `{}` is {v}", self.settings.objective), report),
            None => {
                let names: Vec<&str> = report.metrics.keys().map(String::as_str).collect();
                let msg = if names.is_empty() {
                    format!(
                        "the trial reported no metrics, so no objective `{}` (it must write result.json or metrics.jsonl)",
                        self.settings.objective
                    )
                } else {
                    format!(
                        "the trial reported no objective `{}` (it reported: {}); fix study.objective or the program",
                        self.settings.objective,
                        names.join(", ")
                    )
                };
                failed(msg, report)
            }
        }
    }

    /// Second Ctrl-C: cancel every running job. Their rows stay `running`, so a resume re-runs them.
    async fn cancel_all(&mut self, st: &mut State, waiting: &mut Waiting) -> Result<(), CampaignError> {
        self.progress.println(&format!("Cancelling {} running trial(s)…", st.running.len()));
        waiting.abort_all();
        let rows = self.db.trials()?;
        for row in rows.iter().filter(|r| r.state == TrialState::Running) {
            if let Some(job) = &row.job_id
                && let Err(e) = self.executor.cancel(&JobId(job.clone())).await
            {
                tracing::warn!("could not cancel job {job}: {e}");
            }
        }
        self.db.event(
            "cancel",
            None,
            &format!("{} running trials cancelled; they re-run on resume", st.running.len()),
        )?;
        st.running.clear();
        Ok(())
    }
}

/// The assignment of a trial as a short text, for tables.
pub fn describe_params(params: &serde_json::Map<String, serde_json::Value>) -> String {
    params
        .iter()
        .map(|(k, v)| match v {
            serde_json::Value::Number(n) => match n.as_f64() {
                Some(x) if n.is_f64() => format!("{k}={}", crate::space::Assignment::format_float(x)),
                _ => format!("{k}={n}"),
            },
            serde_json::Value::String(s) => format!("{k}={s}"),
            other => format!("{k}={other}"),
        })
        .collect::<Vec<_>>()
        .join(" ")
}
