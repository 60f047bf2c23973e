//! The campaign loop: asynchronous parallel ask/tell between one strategy plugin and one executor.
//!
//! Keeps up to `parallel` trials running. Enqueued trials go first; then the strategy is asked for
//! the free slots in one `suggest` call that lists the pending trials. Every trial goes through the
//! [`TrialService`] (validate, row, submit, job recorded, judged, finished). Trials that finish
//! together are recorded in one transaction and observed in one call.
//!
//! The strategy runs on its own task ([`actor`]), so the loop keeps recording finished trials and
//! answering Ctrl-C while a plugin call is in progress. The loop never prints: it emits [`Event`]s.
//!
//! It knows nothing about which executor it drives or what the plugin does.

mod actor;
pub mod agent;
pub mod event;
#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tracing::Instrument;

pub use event::{Event, Level, Observer, StopReason};

use crate::executor::{Executor, ExecutorError, Health, JobHandle, MetricsLine, RunReport, TrialSpec};
use crate::plugin::agent::{SandboxedAgent, Standing};
use crate::plugin::capability::JobsError;
use crate::plugin::strategy::{Observation, PluginError, Progress, SandboxedStrategy, Verdict};
use crate::study::{Finish, StudyError, TrialRow, TrialState};
use crate::trial::{Loaded, Tally, TrialService, describe_params};
use actor::{Reply, Request, StrategyTask};
use agent::{AgentCall, AgentCalls, AgentEvent, AgentRun};

/// How many invalid suggestion rounds in a row end the run (the study stays resumable).
const MAX_INVALID_ROUNDS: u32 = 3;
/// How many trials in a row that cannot even be started end the run (usually a config error).
const MAX_SUBMIT_FAILURES: u32 = 3;
/// How many trials in a row that ran but reported no objective end the run (the config names the
/// wrong metric: every further trial would fail the same way).
const MAX_MISSING_OBJECTIVE: u32 = 3;
/// How often a trial whose job the executor lost is re-run before it is marked failed.
const MAX_ATTEMPTS: u32 = 3;
/// The longest wait between tries while an executor refuses work with transient errors: a
/// scheduler's admins watch its load, so a host must not hammer it.
const MAX_BACKOFF: Duration = Duration::from_secs(300);
/// How long to wait before asking again for jobs a crashed host submitted but never recorded.
const UNRECORDED_RETRY: Duration = Duration::from_secs(30);

#[derive(Clone, Debug)]
pub struct CampaignSettings {
    pub max_time: Option<Duration>,
    pub parallel: u32,
}

#[derive(Debug, Clone)]
pub struct Summary {
    pub reason: StopReason,
    pub tally: Tally,
    pub elapsed: Duration,
}

/// After the first Ctrl-C with remote jobs running, how long a second one still cancels them
/// (after that the host has detached, and the jobs are left to run).
const CANCEL_WINDOW: Duration = Duration::from_secs(5);

/// Ctrl-C / SIGTERM / SIGHUP count shared with the signal listener.
#[derive(Clone, Default)]
pub struct Interrupts {
    count: Arc<AtomicU32>,
    notify: Arc<tokio::sync::Notify>,
}

impl Interrupts {
    /// Listens for SIGINT, SIGTERM and SIGHUP for the life of the process. SIGHUP (the SSH session
    /// to a login node dropped) counts like the first Ctrl-C: stop submitting, keep what runs.
    pub fn listen() -> Interrupts {
        use tokio::signal::unix::{SignalKind, signal};
        let me = Interrupts::default();
        for kind in [SignalKind::terminate(), SignalKind::hangup()] {
            if let Ok(mut stream) = signal(kind) {
                let handle = me.clone();
                tokio::spawn(async move {
                    while stream.recv().await.is_some() {
                        handle.raise();
                    }
                });
            }
        }
        let handle = me.clone();
        tokio::spawn(async move {
            while tokio::signal::ctrl_c().await.is_ok() {
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

#[derive(Debug, thiserror::Error)]
pub enum CampaignError {
    /// The study database failed: nothing more can be recorded, so the run stops at once.
    #[error(transparent)]
    Study(#[from] StudyError),
}

pub struct Campaign {
    trials: TrialService,
    history: Vec<Observation>,
    unfinished: Vec<TrialRow>,
    strategy: Option<SandboxedStrategy>,
    /// The plugin's name, for messages.
    plugin: String,
    executor: Arc<dyn Executor>,
    settings: CampaignSettings,
    observer: Box<dyn Observer>,
    interrupts: Interrupts,
    /// Running trials' reports are judged: by the pruner when there is one, else by a strategy
    /// whose `info.prunes` says it judges.
    prunes: bool,
    /// `[pruner]`: a second plugin that judges while the strategy proposes.
    pruner: Option<SandboxedStrategy>,
    /// An agent plugin drives the study instead of a strategy (the `agent-plugin` world).
    agent: Option<(SandboxedAgent, AgentCalls)>,
}

/// The next answer of a plugin's task; never, without one.
async fn task_reply(task: &mut Option<StrategyTask>) -> Option<Reply> {
    match task {
        Some(t) => t.replies.recv().await,
        None => std::future::pending().await,
    }
}

/// A pruning decision: the report it was taken on. Stored as a `prune` event before the trial is
/// stopped, so a crash between the two cannot undo it.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
struct Pruning {
    attempt: u32,
    step: u32,
    metrics: crate::space::Metrics,
}

impl Pruning {
    /// The trial's record: no objective (it did not finish), the metrics of the report it was
    /// pruned on, and the curve its executor saw.
    fn finish(self, curve: Vec<crate::space::Metrics>) -> Finish {
        Finish { state: TrialState::Pruned, value: None, metrics: self.metrics, curve, failure: None, log_tail: None }
    }
}

type Finished = (u64, Result<RunReport, ExecutorError>);

/// The loop's working state.
struct Run {
    /// Calls for the strategy task; `None` once the run is over.
    requests: Option<mpsc::UnboundedSender<Request>>,
    running: HashMap<u64, (TrialSpec, JobHandle)>,
    /// `slots[i]` holds the trial that runs in slot i.
    slots: Vec<Option<u64>>,
    waiting: JoinSet<Finished>,
    /// Trials with a row that are not submitted yet (the executor is paused, or they are re-runs).
    backlog: Vec<TrialSpec>,
    /// A `suggest` call is in progress for this many trials.
    asked: Option<u32>,
    /// The strategy returned nothing: do not ask again until a trial finishes.
    exhausted: bool,
    paused: Option<String>,
    retry_at: Option<tokio::time::Instant>,
    /// Transient refusals in a row: each doubles the wait before the next try.
    backoff: u32,
    invalid_rounds: u32,
    submit_failures: u32,
    missing_objective: u32,
    stopping: Option<StopReason>,
    /// Reports not yet sent to `judge` (one call at a time; reports that arrive meanwhile wait).
    reports: Vec<Progress>,
    judging: bool,
    /// Trials pruned and being stopped, with the decision.
    pruning: HashMap<u64, Pruning>,
    /// Trials being recorded as pruned, and the step they were pruned at (for the event).
    pruned_at: HashMap<u64, u32>,
    /// Calls for the pruner's task, when there is one.
    pruner: Option<mpsc::UnboundedSender<Request>>,
    /// Each running trial's latest report (step, metrics): what an agent's `cancel` records.
    last_report: HashMap<u64, (u32, crate::space::Metrics)>,
    /// The agent, when one drives the study.
    agent: Option<AgentRun>,
}

impl Run {
    fn in_use(&self) -> usize {
        self.running.len() + self.backlog.len() + self.asked.unwrap_or(0) as usize
    }

    fn take_slot(&mut self, trial: u64) -> u32 {
        match self.slots.iter().position(Option::is_none) {
            Some(i) => {
                self.slots[i] = Some(trial);
                i as u32
            }
            None => {
                // More re-attached jobs than slots (the study's parallelism was lowered).
                self.slots.push(Some(trial));
                (self.slots.len() - 1) as u32
            }
        }
    }

    fn free_slot(&mut self, trial: u64) {
        for s in &mut self.slots {
            if *s == Some(trial) {
                *s = None;
            }
        }
    }
}

/// The executor's record in the study: meta keys under `executor.`.
struct StudyState(Arc<crate::study::StudyDb>);

impl crate::executor::ExecutorState for StudyState {
    fn get(&self, key: &str) -> Result<Option<String>, String> {
        self.0.get_meta(&format!("executor.{key}")).map_err(|e| e.to_string())
    }

    fn set(&self, key: &str, value: &str) -> Result<(), String> {
        self.0.set_meta(&format!("executor.{key}"), value).map_err(|e| e.to_string())
    }

    fn remove(&self, key: &str) -> Result<(), String> {
        self.0.delete_meta(&format!("executor.{key}")).map_err(|e| e.to_string())
    }
}

impl Campaign {
    pub fn new(
        loaded: Loaded,
        strategy: SandboxedStrategy,
        executor: Arc<dyn Executor>,
        settings: CampaignSettings,
        observer: Box<dyn Observer>,
        interrupts: Interrupts,
    ) -> Campaign {
        let plugin = strategy.name().to_string();
        Campaign::build(loaded, plugin, Some(strategy), None, executor, settings, observer, interrupts)
    }

    /// A campaign driven by an agent plugin: its `jobs` calls (through the backend that
    /// [`agent::jobs_channel`] made with `calls`) submit, wait for and cancel trials.
    pub fn new_agent(
        loaded: Loaded,
        agent: SandboxedAgent,
        calls: AgentCalls,
        executor: Arc<dyn Executor>,
        settings: CampaignSettings,
        observer: Box<dyn Observer>,
        interrupts: Interrupts,
    ) -> Campaign {
        let plugin = agent.name().to_string();
        Campaign::build(loaded, plugin, None, Some((agent, calls)), executor, settings, observer, interrupts)
    }

    #[allow(clippy::too_many_arguments)]
    fn build(
        loaded: Loaded,
        plugin: String,
        strategy: Option<SandboxedStrategy>,
        agent: Option<(SandboxedAgent, AgentCalls)>,
        executor: Arc<dyn Executor>,
        settings: CampaignSettings,
        observer: Box<dyn Observer>,
        interrupts: Interrupts,
    ) -> Campaign {
        executor.bind_state(Arc::new(StudyState(loaded.service.db().clone())));
        Campaign {
            trials: loaded.service,
            history: loaded.history,
            unfinished: loaded.unfinished,
            plugin,
            strategy,
            executor,
            settings,
            observer,
            interrupts,
            prunes: false,
            pruner: None,
            agent,
        }
    }

    /// Running trials are judged by `pruner` (a plugin whose `info.prunes` is set), not by the
    /// strategy. It observes every finished trial, as the strategy does.
    pub fn with_pruner(mut self, pruner: SandboxedStrategy) -> Campaign {
        self.pruner = Some(pruner);
        self
    }

    fn emit(&mut self, event: Event) {
        self.observer.event(&event);
    }

    fn notice(&mut self, level: Level, message: String) {
        if level != Level::Info {
            let _ = self.trials.db().event(if level == Level::Error { "error" } else { "warning" }, None, &message);
        }
        self.emit(Event::Notice { level, message });
    }

    /// Runs until the budget is spent, the user interrupts, or a fault stops it.
    pub async fn run(mut self) -> Result<Summary, CampaignError> {
        let start = Instant::now();
        let deadline = self.settings.max_time.map(|t| tokio::time::Instant::now() + t);
        let history = std::mem::take(&mut self.history);
        if !history.is_empty() {
            self.trials.db().event(
                "resume",
                None,
                &format!("{} finished trials replayed into the strategy", history.len()),
            )?;
        }
        let tally = self.trials.tally();
        self.emit(Event::Started {
            budget: self.trials.rules().budget,
            completed: tally.completed,
            failed: tally.failed,
            pruned: tally.pruned,
            best: tally.best.map(|b| b.1),
            replayed: history.len(),
        });
        // The first plugin call instantiates the plugin and replays this history into it.
        let mut strategy = self.strategy.take();
        let agent = self.agent.take();
        if strategy.is_none() && agent.is_none() {
            return Ok(Summary { reason: StopReason::StrategyDone, tally, elapsed: start.elapsed() });
        }
        let mut pruner = self.pruner.take();
        // Asked of a fresh instance; a plugin that cannot even describe itself fails on its first
        // real call, with the reason.
        self.prunes = pruner.is_some()
            || match &mut strategy {
                Some(s) => s.describe().await.is_ok_and(|i| i.prunes),
                None => false,
            };
        if !history.is_empty() {
            if let Some(s) = &mut strategy {
                s.preload(&history);
            }
            if let Some(p) = &mut pruner {
                p.preload(&history);
            }
        }
        let (requests, mut task) = match strategy.map(StrategyTask::spawn) {
            Some((r, t)) => (Some(r), Some(t)),
            None => (None, None),
        };
        let (agent, agent_calls) = match agent {
            Some((a, calls)) => (Some(a), Some(AgentRun::new(calls, history.clone()))),
            None => (None, None),
        };
        let (pruner_requests, mut pruner_task) = match pruner.map(StrategyTask::spawn) {
            Some((r, t)) => (Some(r), Some(t)),
            None => (None, None),
        };

        let (metrics_tx, mut metrics_rx) = mpsc::unbounded_channel::<MetricsLine>();
        let mut health = self.executor.health();
        let mut health_alive = true;
        let mut run = Run {
            requests,
            running: HashMap::new(),
            slots: vec![None; self.settings.parallel.max(1) as usize],
            waiting: JoinSet::new(),
            backlog: Vec::new(),
            asked: None,
            exhausted: false,
            paused: match &*health.borrow() {
                Health::Paused { reason } => Some(reason.clone()),
                Health::Ready => None,
            },
            retry_at: None,
            backoff: 0,
            invalid_rounds: 0,
            submit_failures: 0,
            missing_objective: 0,
            stopping: None,
            reports: Vec::new(),
            judging: false,
            pruning: HashMap::new(),
            pruned_at: HashMap::new(),
            pruner: pruner_requests,
            last_report: HashMap::new(),
            agent: agent_calls,
        };
        let unfinished = std::mem::take(&mut self.unfinished);
        self.reconcile(unfinished, &mut run, &metrics_tx).await?;
        if let Some(agent) = agent {
            // After reconcile: the agent is told of every trial an earlier host left, as it now runs.
            self.start_agent(Box::new(agent), &mut run)?;
        }

        let mut seen_interrupts = self.interrupts.count();
        loop {
            if run.stopping.is_none() {
                self.refill(&mut run, deadline, &metrics_tx).await?;
            }
            if run.stopping.is_some() && run.running.is_empty() {
                // Backlog trials keep their `pending` rows: a resume submits them.
                break;
            }
            if run.running.is_empty() && run.backlog.is_empty() && run.asked.is_none() {
                if self.trials.budget_left() == Some(0) {
                    run.stopping = Some(StopReason::Budget);
                    break;
                }
                if run.exhausted || run.agent.as_ref().is_some_and(|a| a.done) {
                    run.stopping = Some(StopReason::StrategyDone);
                    break;
                }
            }
            let timer = async {
                match deadline {
                    Some(d) if run.stopping.is_none() => tokio::time::sleep_until(d).await,
                    _ => std::future::pending().await,
                }
            };
            let retry = async {
                match run.retry_at {
                    Some(t) if !run.backlog.is_empty() && run.paused.is_none() => tokio::time::sleep_until(t).await,
                    _ => std::future::pending().await,
                }
            };
            tokio::select! {
                joined = run.waiting.join_next(), if !run.waiting.is_empty() => {
                    let mut done = Vec::new();
                    if let Some(j) = joined {
                        done.push(j);
                    }
                    // Take everything else that finished meanwhile: one transaction, one observe call.
                    while let Some(j) = run.waiting.try_join_next() {
                        done.push(j);
                    }
                    self.record(done, &mut run)?;
                }
                reply = task_reply(&mut task) => match reply {
                    Some(reply) => self.answer(reply, &mut run, &metrics_tx).await?,
                    None => {
                        task = None;
                        run.asked = None;
                        run.stopping.get_or_insert(StopReason::PluginFailed(format!(
                            "the task running plugin `{}` ended unexpectedly", self.plugin
                        )));
                    }
                },
                event = agent::next_event(&mut run.agent) => self.agent_event(event, &mut run).await?,
                reply = task_reply(&mut pruner_task) => match reply {
                    Some(reply) => self.answer(reply, &mut run, &metrics_tx).await?,
                    None => {
                        pruner_task = None;
                        run.pruner = None;
                        run.stopping.get_or_insert(StopReason::PluginFailed(
                            "the task running the pruner plugin ended unexpectedly".into(),
                        ));
                    }
                },
                Some(line) = metrics_rx.recv() => {
                    self.emit(Event::TrialProgress { trial: line.trial, index: line.index });
                    self.progress(line, &mut run);
                }
                changed = health.changed(), if health_alive => {
                    if changed.is_err() {
                        health_alive = false;
                    } else {
                        let now = health.borrow_and_update().clone();
                        self.health_changed(now, &mut run);
                    }
                }
                _ = retry => { run.retry_at = None; }
                _ = self.interrupts.notify.notified() => {}
                _ = timer => { run.stopping.get_or_insert(StopReason::Time); }
            }
            let n = self.interrupts.count();
            if n > seen_interrupts {
                seen_interrupts = n;
                if n == 1 {
                    run.stopping = Some(StopReason::Interrupted);
                    self.trials.db().event("interrupt", None, "stop submitting")?;
                    if self.executor.jobs_outlive_host() && !run.running.is_empty() {
                        let message = format!(
                            "Interrupted: no new trials. {} running job(s) keep running on the {} executor; `--resume` picks them up. \
                             Press Ctrl-C again within {} s to cancel them instead.",
                            run.running.len(),
                            self.executor.kind(),
                            CANCEL_WINDOW.as_secs()
                        );
                        self.notice(Level::Warn, message);
                        let interrupts = &self.interrupts;
                        let second = tokio::time::timeout(CANCEL_WINDOW, async {
                            while interrupts.count() <= n {
                                interrupts.notify.notified().await;
                            }
                        })
                        .await
                        .is_ok();
                        if second {
                            run.stopping = Some(StopReason::Cancelled);
                            self.cancel_all(&mut run).await?;
                            break;
                        }
                        run.waiting.abort_all();
                        run.running.clear();
                        break;
                    }
                    let message = format!(
                        "Interrupted: no new trials; waiting for {} running trial(s). Press Ctrl-C again to cancel them (they re-run on --resume).",
                        run.running.len()
                    );
                    self.notice(Level::Warn, message);
                } else {
                    run.stopping = Some(StopReason::Cancelled);
                    self.cancel_all(&mut run).await?;
                    break;
                }
            }
        }
        if run.stopping != Some(StopReason::Cancelled) {
            self.executor.detach().await;
        }
        // Let the plugin finish observing what was recorded (its faults are reported), unless a
        // `suggest` is still running: its answer is not needed. The pruner's answers are not.
        run.requests = None;
        run.pruner = None;
        drop(pruner_task);
        if let Some(agent) = &mut run.agent {
            agent.abort();
        }
        if let (None, Some(task)) = (run.asked, &mut task) {
            while let Some(reply) = task.replies.recv().await {
                if let Reply::Observed { count, result, elapsed, faults } = reply {
                    self.emit(Event::Observed { count, elapsed });
                    self.observed(result, faults, &mut run);
                }
            }
        }
        let reason = run.stopping.unwrap_or(StopReason::StrategyDone);
        self.trials.db().event("stop", None, &format!("{reason:?}"))?;
        self.emit(Event::Stopped { reason: reason.clone() });
        Ok(Summary { reason, tally: self.trials.tally(), elapsed: start.elapsed() })
    }

    /// Trials left pending, running or cancelled by an earlier host: wait again on jobs that
    /// outlive the host, look up by name the ones that were submitted but never recorded, and
    /// re-run the others as new attempts.
    async fn reconcile(
        &mut self,
        rows: Vec<TrialRow>,
        run: &mut Run,
        metrics: &mpsc::UnboundedSender<MetricsLine>,
    ) -> Result<(), CampaignError> {
        let outlive = self.executor.jobs_outlive_host();
        let mut unrecorded = Vec::new();
        let decided = if rows.is_empty() { HashMap::new() } else { self.prune_decisions()? };
        for row in rows {
            let spec = self.trials.spec_of(&row)?;
            if let Some(decision) = decided.get(&row.id).filter(|d| d.attempt == row.attempt).cloned() {
                // Pruned by an earlier host that stopped before the trial ended: the decision
                // stands. A job that is still there is stopped, and its curve kept.
                if let (TrialState::Running, Some(id), true) = (row.state, &row.job_id, outlive) {
                    let handle =
                        row.job_handle.as_deref().map_or_else(|| JobHandle::new(id.clone()), JobHandle::from_stored);
                    self.watch(spec, handle.clone(), run, metrics);
                    run.pruning.insert(row.id, decision);
                    if let Err(e) = self.executor.cancel(vec![handle]).await {
                        self.notice(
                            Level::Warn,
                            format!("trial {} stays pruned; its job could not be stopped yet: {e}", row.id),
                        );
                    }
                } else {
                    run.pruned_at.insert(row.id, decision.step);
                    self.finish(vec![(spec, decision.finish(Vec::new()))], run)?;
                }
                continue;
            }
            match (row.state, &row.job_handle, &row.job_id, outlive) {
                (TrialState::Running, handle, Some(id), true) => {
                    let handle = handle.as_deref().map_or_else(|| JobHandle::new(id.clone()), JobHandle::from_stored);
                    self.trials.db().event("reattach", Some(row.id), &format!("waiting again on job {}", handle.id))?;
                    self.watch(spec, handle, run, metrics);
                }
                (TrialState::Pending, _, _, true) => unrecorded.push(spec),
                _ => {
                    let spec = self.trials.rerun(&spec)?;
                    let reason = match row.state {
                        TrialState::Cancelled => "its job was cancelled".to_string(),
                        _ => "the host that ran it stopped".to_string(),
                    };
                    self.trials.db().event("rerun", Some(row.id), &format!("attempt {}: {reason}", spec.attempt))?;
                    self.emit(Event::TrialRetried { trial: spec.id, attempt: spec.attempt, reason });
                    run.backlog.push(spec);
                }
            }
        }
        if !unrecorded.is_empty() {
            // A host that died between submit and recording left jobs that only their names find.
            match self.executor.find(unrecorded.clone()).await {
                Ok(found) => {
                    for (spec, handle) in unrecorded.into_iter().zip(found) {
                        match handle {
                            Some(handle) => {
                                self.trials.record_job(&spec, &handle)?;
                                self.trials.db().event(
                                    "reattach",
                                    Some(spec.id),
                                    &format!("found job {} by its name {}", handle.id, spec.job_name),
                                )?;
                                self.watch(spec, handle, run, metrics);
                            }
                            None => run.backlog.push(spec),
                        }
                    }
                }
                Err(e) => {
                    // Submitting them again could run them twice: wait until the executor answers.
                    self.notice(Level::Warn, format!("cannot look up unrecorded jobs yet: {e}"));
                    run.backlog.extend(unrecorded);
                    run.retry_at = Some(tokio::time::Instant::now() + UNRECORDED_RETRY);
                }
            }
        }
        Ok(())
    }

    /// The `prune` events of the study: each trial's latest decision.
    fn prune_decisions(&self) -> Result<HashMap<u64, Pruning>, CampaignError> {
        let mut decided = HashMap::new();
        for e in self.trials.db().events()? {
            if e.kind == "prune"
                && let (Some(trial), Ok(d)) = (e.trial, serde_json::from_str::<Pruning>(&e.message))
            {
                decided.insert(trial, d);
            }
        }
        Ok(decided)
    }

    /// Starts work for free slots: the backlog first, then enqueued trials, then one `suggest`.
    async fn refill(
        &mut self,
        run: &mut Run,
        deadline: Option<tokio::time::Instant>,
        metrics: &mpsc::UnboundedSender<MetricsLine>,
    ) -> Result<(), CampaignError> {
        if run.paused.is_some() {
            return Ok(());
        }
        if !run.backlog.is_empty() {
            if run.retry_at.is_some() {
                return Ok(());
            }
            let parallel = self.settings.parallel as usize;
            let room = parallel.saturating_sub(run.running.len()).min(run.backlog.len());
            if room > 0 {
                let batch: Vec<TrialSpec> = run.backlog.drain(..room).collect();
                self.submit(batch, run, metrics).await?;
            }
            if !run.backlog.is_empty() {
                return Ok(());
            }
        }
        if deadline.is_some_and(|d| tokio::time::Instant::now() >= d) {
            run.stopping = Some(StopReason::Time);
            return Ok(());
        }
        let budget_left = self.trials.budget_left();
        if budget_left == Some(0) {
            // Nothing more to ask for; the loop ends once what runs and what waits is done.
            return Ok(());
        }
        if run.asked.is_some() || run.exhausted {
            return Ok(());
        }
        let free = (self.settings.parallel as usize).saturating_sub(run.in_use());
        let want = budget_left.map_or(free, |b| b.min(free));
        if want == 0 {
            return Ok(());
        }
        let queued = self.trials.db().queued()?;
        if !queued.is_empty() {
            let mut batch = Vec::new();
            for q in queued.into_iter().take(want) {
                // Both ways in (`[[study.enqueue]]`, `study enqueue`) validate against the space.
                let params = crate::space::Assignment::from_json(self.trials.space(), &q.params)
                    .map_err(|m| StudyError::Corrupt(format!("enqueued trial {} ({}): {m}", q.id, q.source)))?;
                batch.push(self.trials.create_enqueued(q.id, params)?);
            }
            if !batch.is_empty() {
                self.submit(batch, run, metrics).await?;
                return Ok(());
            }
        }
        let pending: Vec<(u64, crate::space::Assignment)> =
            run.running.values().map(|(s, _)| (s.id, s.params.clone())).collect();
        if let Some(requests) = &run.requests
            && requests.send(Request::Suggest { count: want as u32, pending }).is_ok()
        {
            run.asked = Some(want as u32);
        }
        Ok(())
    }

    /// Handles a plugin's answer.
    async fn answer(
        &mut self,
        reply: Reply,
        run: &mut Run,
        metrics: &mpsc::UnboundedSender<MetricsLine>,
    ) -> Result<(), CampaignError> {
        match reply {
            Reply::Observed { count, result, elapsed, faults } => {
                self.emit(Event::Observed { count, elapsed });
                self.observed(result, faults, run);
                Ok(())
            }
            Reply::Judged { reports, result, elapsed, faults } => {
                run.judging = false;
                self.faults(faults);
                match result {
                    Ok(verdicts) => {
                        let count = reports.len();
                        let mut pruned = 0;
                        for (report, verdict) in reports.into_iter().zip(verdicts) {
                            if verdict == Verdict::Prune && self.prune(report, run).await? {
                                pruned += 1;
                            }
                        }
                        self.emit(Event::Judged { reports: count, pruned, elapsed });
                    }
                    // Nothing is pruned on a failed call; the trials run on.
                    Err(e @ PluginError::GaveUp { .. }) => {
                        run.stopping.get_or_insert(StopReason::PluginFailed(e.to_string()));
                    }
                    Err(e) => self.notice(Level::Error, e.to_string()),
                }
                self.send_reports(run);
                Ok(())
            }
            Reply::Suggested { asked, result, elapsed, faults } => {
                run.asked = None;
                self.faults(faults);
                let suggestions = match result {
                    Ok(s) => s,
                    Err(e) => {
                        self.plugin_error(e, run);
                        return Ok(());
                    }
                };
                self.emit(Event::Suggested { asked, returned: suggestions.len(), elapsed });
                if run.stopping.is_some() {
                    // Asked before the stop: nothing was written for these, so nothing is lost.
                    return Ok(());
                }
                if suggestions.is_empty() {
                    run.exhausted = true;
                    return Ok(());
                }
                if suggestions.len() > asked as usize {
                    let message = format!(
                        "plugin `{}` returned {} suggestions but was asked for at most {asked}; all were discarded",
                        self.strategy_name(),
                        suggestions.len()
                    );
                    self.invalid_round(run, message);
                    return Ok(());
                }
                let mut batch = Vec::new();
                for raw in suggestions {
                    match self.trials.validate(&raw) {
                        Ok(params) => batch.push(self.trials.create(params)?),
                        Err(e) => {
                            let message =
                                format!("plugin `{}` suggested an {e}; it was discarded", self.strategy_name());
                            self.notice(Level::Error, message);
                        }
                    }
                }
                if batch.is_empty() {
                    run.invalid_rounds += 1;
                    if run.invalid_rounds >= MAX_INVALID_ROUNDS {
                        run.stopping = Some(StopReason::PluginFailed(format!(
                            "plugin `{}` proposed only invalid trials {MAX_INVALID_ROUNDS} times in a row; fix the plugin, then continue with --resume",
                            self.strategy_name()
                        )));
                    }
                    return Ok(());
                }
                run.invalid_rounds = 0;
                self.submit(batch, run, metrics).await
            }
        }
    }

    fn strategy_name(&self) -> &str {
        &self.plugin
    }

    fn faults(&mut self, faults: Vec<actor::Contained>) {
        for contained in faults {
            match contained {
                actor::Contained::Restart(message) => {
                    let _ = self.trials.db().event("plugin-fault", None, &message);
                    self.emit(Event::PluginRestarted { message });
                }
                actor::Contained::Notice(message) => {
                    let _ = self.trials.db().event("plugin-notice", None, &message);
                    self.emit(Event::Notice { level: Level::Warn, message });
                }
            }
        }
    }

    fn observed(&mut self, result: Result<(), PluginError>, faults: Vec<actor::Contained>, run: &mut Run) {
        self.faults(faults);
        match result {
            Ok(()) => {}
            Err(e @ PluginError::GaveUp { .. }) => {
                run.stopping.get_or_insert(StopReason::PluginFailed(e.to_string()));
            }
            Err(e @ PluginError::Options { .. }) => {
                run.stopping.get_or_insert(StopReason::PluginOptions(e.to_string()));
            }
            // The outcomes are recorded and in the replay history; a refusing observe is reported, not fatal.
            Err(e) => self.notice(Level::Error, e.to_string()),
        }
    }

    fn plugin_error(&mut self, e: PluginError, run: &mut Run) {
        match e {
            PluginError::GaveUp { .. } => {
                run.stopping = Some(StopReason::PluginFailed(e.to_string()));
            }
            // The user's plugin options are wrong: a configuration error, not the plugin's fault.
            PluginError::Options { .. } => {
                run.stopping = Some(StopReason::PluginOptions(e.to_string()));
            }
            e => self.invalid_round(run, e.to_string()),
        }
    }

    fn invalid_round(&mut self, run: &mut Run, message: String) {
        self.notice(Level::Error, message.clone());
        run.invalid_rounds += 1;
        if run.invalid_rounds >= MAX_INVALID_ROUNDS {
            run.stopping = Some(StopReason::PluginFailed(format!(
                "{message} ({MAX_INVALID_ROUNDS} failed rounds in a row; fix the plugin, then continue with --resume)"
            )));
        }
    }

    fn health_changed(&mut self, health: Health, run: &mut Run) {
        match health {
            Health::Paused { reason } => {
                if run.paused.as_deref() != Some(reason.as_str()) {
                    let _ = self.trials.db().event("executor-paused", None, &reason);
                    self.emit(Event::ExecutorPaused { reason: reason.clone() });
                }
                run.paused = Some(reason);
            }
            Health::Ready => {
                if run.paused.take().is_some() {
                    let _ = self.trials.db().event("executor-resumed", None, "");
                    self.emit(Event::ExecutorResumed);
                }
            }
        }
    }

    /// Submits a batch of trials that have rows, records their jobs, and starts waiting on them.
    async fn submit(
        &mut self,
        mut batch: Vec<TrialSpec>,
        run: &mut Run,
        metrics: &mpsc::UnboundedSender<MetricsLine>,
    ) -> Result<(), CampaignError> {
        for spec in &mut batch {
            spec.slot = run.take_slot(spec.id);
        }
        let results = match self.executor.submit(batch.clone()).await {
            Ok(r) => r,
            Err(e) => {
                for spec in &batch {
                    run.free_slot(spec.id);
                }
                return self.batch_failed(e, batch, run);
            }
        };
        run.backoff = 0;
        let mut failed = Vec::new();
        let mut transient = None;
        for (spec, result) in batch.into_iter().zip(results.into_iter().map(Some).chain(std::iter::repeat(None))) {
            match result {
                Some(Ok(handle)) => {
                    run.submit_failures = 0;
                    // A job whose handle cannot be stored must not be waited on as if it were:
                    // the study database is failing, and the run stops here.
                    self.trials.record_job(&spec, &handle)?;
                    self.emit(Event::TrialStarted {
                        trial: spec.id,
                        attempt: spec.attempt,
                        job: handle.id.clone(),
                        params: describe_params(&spec.params_json),
                    });
                    self.watch(spec, handle, run, metrics);
                }
                Some(Err(ExecutorError::Transient { message, retry_after })) => {
                    run.free_slot(spec.id);
                    transient = Some((message, retry_after));
                    run.backlog.push(spec);
                }
                Some(Err(e)) => {
                    run.free_slot(spec.id);
                    run.submit_failures += 1;
                    failed.push((spec, Finish::failed(e.to_string())));
                }
                None => {
                    run.free_slot(spec.id);
                    failed.push((spec, Finish::failed("the executor gave no answer for this trial".into())));
                }
            }
        }
        if let Some((message, retry_after)) = transient {
            self.pause_for(message, retry_after, run);
        }
        if !failed.is_empty() {
            self.finish(failed, run)?;
        }
        if run.submit_failures >= MAX_SUBMIT_FAILURES {
            run.stopping.get_or_insert(StopReason::ExecutorFailed(format!(
                "{MAX_SUBMIT_FAILURES} trials in a row could not be started; see the failure reason of the last trial (`alcf-host study show`)"
            )));
        }
        Ok(())
    }

    fn batch_failed(&mut self, e: ExecutorError, batch: Vec<TrialSpec>, run: &mut Run) -> Result<(), CampaignError> {
        match e {
            ExecutorError::Transient { message, retry_after } => {
                run.backlog.extend(batch);
                self.pause_for(message, retry_after, run);
                Ok(())
            }
            ExecutorError::Fatal(message) => {
                // Their rows stay pending: a resume, once the configuration is fixed, starts them.
                run.backlog.extend(batch);
                run.stopping.get_or_insert(StopReason::ExecutorFailed(message));
                Ok(())
            }
            e => {
                run.submit_failures += batch.len() as u32;
                let message = e.to_string();
                let failed = batch.into_iter().map(|s| (s, Finish::failed(message.clone()))).collect();
                self.finish(failed, run)?;
                if run.submit_failures >= MAX_SUBMIT_FAILURES {
                    run.stopping.get_or_insert(StopReason::ExecutorFailed(format!(
                        "{MAX_SUBMIT_FAILURES} trials in a row could not be started: {message}"
                    )));
                }
                Ok(())
            }
        }
    }

    /// A transient submit error: keep the trials, pause, retry with a growing delay.
    fn pause_for(&mut self, message: String, retry_after: Duration, run: &mut Run) {
        let delay = retry_after.saturating_mul(1 << run.backoff.min(8)).min(MAX_BACKOFF);
        run.backoff += 1;
        run.retry_at = Some(tokio::time::Instant::now() + delay);
        let reason = format!("{message}; {} trial(s) wait, retrying in {} s", run.backlog.len(), delay.as_secs());
        let _ = self.trials.db().event("executor-paused", None, &reason);
        self.emit(Event::ExecutorPaused { reason });
    }

    fn watch(
        &mut self,
        mut spec: TrialSpec,
        handle: JobHandle,
        run: &mut Run,
        metrics: &mpsc::UnboundedSender<MetricsLine>,
    ) {
        let id = spec.id;
        if !run.slots.contains(&Some(id)) {
            // A re-attached job: it gets a slot for as long as it runs.
            spec.slot = run.take_slot(id);
        }
        let fut = self.executor.wait(spec.clone(), handle.clone(), metrics.clone());
        run.waiting.spawn(async move { (id, fut.await) }.in_current_span());
        run.running.insert(id, (spec, handle));
    }

    /// A running trial's report, for a strategy that judges.
    fn progress(&mut self, line: MetricsLine, run: &mut Run) {
        if run.agent.is_some() && run.running.contains_key(&line.trial) {
            let step = u32::try_from(line.index).unwrap_or(u32::MAX);
            run.last_report.insert(line.trial, (step, line.metrics.clone().into_iter().collect()));
        }
        if !self.prunes || run.pruning.contains_key(&line.trial) {
            return;
        }
        let Some((spec, _)) = run.running.get(&line.trial) else { return };
        run.reports.push(Progress {
            trial: line.trial,
            params: spec.params.clone(),
            step: u32::try_from(line.index).unwrap_or(u32::MAX),
            metrics: line.metrics.into_iter().collect(),
        });
        self.send_reports(run);
    }

    /// One `judge` call at a time, with every report that waits.
    fn send_reports(&mut self, run: &mut Run) {
        if run.judging || run.reports.is_empty() {
            return;
        }
        // Reports of trials that ended (or were pruned) while they waited need no verdict.
        run.reports.retain(|r| run.running.contains_key(&r.trial) && !run.pruning.contains_key(&r.trial));
        if run.reports.is_empty() {
            return;
        }
        let reports = std::mem::take(&mut run.reports);
        if let Some(requests) = run.pruner.as_ref().or(run.requests.as_ref())
            && requests.send(Request::Judge { reports }).is_ok()
        {
            run.judging = true;
        }
    }

    /// Records the decision, then stops the trial; it is finished as `pruned` when its job ends.
    async fn prune(&mut self, report: Progress, run: &mut Run) -> Result<bool, CampaignError> {
        let Some((spec, handle)) = run.running.get(&report.trial).cloned() else { return Ok(false) };
        if run.pruning.contains_key(&spec.id) {
            return Ok(false);
        }
        let decision =
            Pruning { attempt: spec.attempt, step: report.step, metrics: report.metrics.into_iter().collect() };
        let text = serde_json::to_string(&decision).unwrap_or_default();
        self.trials.db().event("prune", Some(spec.id), &text)?;
        run.pruning.insert(spec.id, decision);
        if let Err(e) = self.executor.cancel(vec![handle.clone()]).await {
            // The decision stands: the trial is recorded pruned whenever its job ends.
            self.notice(
                Level::Warn,
                format!("trial {} was pruned but job {} could not be stopped yet: {e}", spec.id, handle.id),
            );
        }
        Ok(true)
    }

    /// Judges finished runs, records them in one transaction, and tells the strategy.
    fn record(
        &mut self,
        done: Vec<Result<Finished, tokio::task::JoinError>>,
        run: &mut Run,
    ) -> Result<(), CampaignError> {
        let mut finished = Vec::with_capacity(done.len());
        for joined in done {
            let (id, result) = match joined {
                Ok(r) => r,
                Err(e) => {
                    self.notice(Level::Error, format!("a trial waiter panicked: {e}"));
                    continue;
                }
            };
            let Some((spec, _handle)) = run.running.remove(&id) else { continue };
            run.last_report.remove(&id);
            run.free_slot(id);
            run.exhausted = false;
            if let Some(decision) = run.pruning.remove(&id) {
                let curve = result.map(|r| r.curve).unwrap_or_default();
                run.pruned_at.insert(id, decision.step);
                finished.push((spec, decision.finish(curve)));
                continue;
            }
            let finish = match result {
                Ok(report) => {
                    let judged = self.trials.judge(&spec, report);
                    if judged.retry {
                        let reason = judged.finish.failure.clone().unwrap_or_default();
                        self.retry(spec, reason, run)?;
                        continue;
                    }
                    if judged.objective_missing {
                        run.missing_objective += 1;
                        if run.missing_objective >= MAX_MISSING_OBJECTIVE {
                            let why = judged.finish.failure.clone().unwrap_or_default();
                            run.stopping.get_or_insert(StopReason::ObjectiveMissing(format!(
                                "{MAX_MISSING_OBJECTIVE} trials in a row ran but reported no objective `{}`; the last one: {why}. \
                                 Fix study.objective in the config (or the program), then continue with --resume: \
                                 a study whose trials all failed takes the new objective",
                                self.trials.rules().objective
                            )));
                        }
                    } else if judged.finish.state == TrialState::Completed {
                        run.missing_objective = 0;
                    }
                    judged.finish
                }
                Err(ExecutorError::Fatal(message)) => {
                    // The executor cannot run anything (a pilot job PBS refuses): the trial keeps
                    // its job and its row, and a resume with a fixed config picks it up.
                    run.stopping.get_or_insert(StopReason::ExecutorFailed(message));
                    continue;
                }
                Err(ExecutorError::Lost { job, message }) if spec.attempt < MAX_ATTEMPTS => {
                    self.retry(spec, format!("job {job} was lost: {message}"), run)?;
                    continue;
                }
                Err(e) => Finish::failed(e.to_string()),
            };
            finished.push((spec, finish));
        }
        self.finish(finished, run)
    }

    fn retry(&mut self, spec: TrialSpec, reason: String, run: &mut Run) -> Result<(), CampaignError> {
        let next = self.trials.rerun(&spec)?;
        self.trials.db().event("retry", Some(spec.id), &format!("attempt {}: {reason}", next.attempt))?;
        self.emit(Event::TrialRetried { trial: next.id, attempt: next.attempt, reason });
        run.backlog.push(next);
        Ok(())
    }

    fn finish(&mut self, finished: Vec<(TrialSpec, Finish)>, run: &mut Run) -> Result<(), CampaignError> {
        if finished.is_empty() {
            return Ok(());
        }
        let objective = &self.trials.rules().objective;
        let events: Vec<Event> = finished
            .iter()
            .map(|(s, f)| match run.pruned_at.remove(&s.id) {
                Some(step) => Event::TrialPruned { trial: s.id, step, value: f.metrics.get(objective).copied() },
                None => {
                    Event::TrialFinished { trial: s.id, state: f.state, value: f.value, failure: f.failure.clone() }
                }
            })
            .collect();
        let crate::trial::Recorded { observations, improved } = self.trials.finish(finished)?;
        for e in events {
            self.emit(e);
        }
        if let Some((trial, value)) = improved {
            self.emit(Event::BestImproved { trial, value });
        }
        // Sent now, served after any `suggest` in progress: the plugin sees calls in order.
        if let Some(pruner) = &run.pruner {
            let _ = pruner.send(Request::Observe { batch: observations.clone() });
        }
        if let Some(agent) = &mut run.agent {
            agent.finished(&observations);
        }
        if let Some(requests) = &run.requests {
            let _ = requests.send(Request::Observe { batch: observations });
        }
        Ok(())
    }

    /// A fresh `run` of the agent over the study as it stands: what finished, what has a row
    /// but has not finished (running, or waiting for a slot), and every trial's parent.
    fn start_agent(&mut self, agent: Box<SandboxedAgent>, run: &mut Run) -> Result<(), CampaignError> {
        let Some(state) = &mut run.agent else { return Ok(()) };
        let mut running: Vec<(u64, crate::space::Assignment)> =
            run.running.values().map(|(s, _)| (s.id, s.params.clone())).collect();
        running.extend(run.backlog.iter().map(|s| (s.id, s.params.clone())));
        running.sort_by_key(|(id, _)| *id);
        let lineage = self.trials.db().trials()?.iter().filter_map(|t| Some((t.id, t.parent?))).collect();
        state.start(agent, Standing { history: state.history.clone(), running, lineage });
        Ok(())
    }

    /// The agent called `jobs`, returned, or its `wait` timed out.
    async fn agent_event(&mut self, event: AgentEvent, run: &mut Run) -> Result<(), CampaignError> {
        match event {
            AgentEvent::Call(AgentCall::Submit { params, parent, reply }) => {
                let result = self.agent_submit(params, parent, run);
                let refused = match &result {
                    Err(e @ JobsError::Refused(_)) => Some(e.to_string()),
                    _ => None,
                };
                let _ = reply.send(result.map(|spec| {
                    let id = spec.id;
                    run.backlog.push(spec);
                    id
                }));
                if let Some(a) = &mut run.agent {
                    a.refused = if refused.is_some() { a.refused + 1 } else { 0 };
                    if let Some(last) = refused.filter(|_| a.refused >= agent::MAX_REFUSED) {
                        run.stopping.get_or_insert(StopReason::PluginFailed(format!(
                            "agent `{}` kept submitting trials that were refused ({} in a row); the last: {last}",
                            self.plugin,
                            agent::MAX_REFUSED
                        )));
                    }
                }
            }
            AgentEvent::Call(AgentCall::Wait { timeout, reply }) => {
                let idle = run.running.is_empty() && run.backlog.is_empty();
                if let Some(a) = &mut run.agent {
                    a.wait(timeout, reply, idle);
                    if a.idle_waits >= agent::MAX_IDLE_WAITS {
                        run.stopping.get_or_insert(StopReason::PluginFailed(format!(
                            "agent `{}` waited {} times in a row with no trial running; it should submit or return",
                            self.plugin,
                            agent::MAX_IDLE_WAITS
                        )));
                    }
                }
            }
            AgentEvent::Call(AgentCall::Cancel { trial, reply }) => {
                let result = self.agent_cancel(trial, run).await?;
                let _ = reply.send(result);
            }
            AgentEvent::WaitOver => {
                if let Some(a) = &mut run.agent {
                    a.wait_over();
                }
            }
            AgentEvent::Returned(mut agent, result) => {
                for notice in agent.take_notices() {
                    let _ = self.trials.db().event("plugin-notice", None, &notice.to_string());
                    self.emit(Event::Notice { level: Level::Warn, message: notice.to_string() });
                }
                match result {
                    Ok(()) => {
                        let message = format!("agent `{}` finished its run", self.plugin);
                        self.trials.db().event("agent-done", None, &message)?;
                        self.emit(Event::Notice { level: Level::Info, message });
                        if let Some(a) = &mut run.agent {
                            a.done = true;
                        }
                    }
                    Err(e @ PluginError::Fault { .. }) if run.stopping.is_none() => {
                        // Contained: a fresh instance starts again from the study as it stands.
                        let message = format!("{e}; restarting it from the study's trials");
                        let _ = self.trials.db().event("plugin-fault", None, &message);
                        self.emit(Event::PluginRestarted { message });
                        self.start_agent(agent, run)?;
                    }
                    Err(e) => {
                        run.stopping.get_or_insert(StopReason::PluginFailed(e.to_string()));
                    }
                }
            }
            AgentEvent::Lost(message) => {
                run.stopping.get_or_insert(StopReason::PluginFailed(format!(
                    "the task running agent `{}` ended unexpectedly: {message}",
                    self.plugin
                )));
            }
        }
        Ok(())
    }

    /// `jobs.submit`: validated and recorded like a suggestion; it starts once a slot is free.
    fn agent_submit(
        &mut self,
        params: Vec<(String, crate::space::Value)>,
        parent: Option<u64>,
        run: &Run,
    ) -> Result<TrialSpec, JobsError> {
        if let Some(reason) = &run.stopping {
            return Err(JobsError::Backend(format!("the run is stopping ({reason:?}): no new trials")));
        }
        if self.trials.budget_left() == Some(0) {
            return Err(JobsError::Refused(format!(
                "the study's budget of {} trials is spent",
                self.trials.rules().budget.unwrap_or_default()
            )));
        }
        let params = self.trials.validate(&params).map_err(|e| JobsError::Refused(e.to_string()))?;
        let created = match parent {
            None => self.trials.create(params),
            Some(p) => {
                let finished = run.agent.as_ref().is_some_and(|a| a.finished.contains(&p));
                if !finished {
                    return Err(JobsError::Refused(format!(
                        "parent trial {p} is not a finished trial of this study; a trial starts from a finished trial's directory"
                    )));
                }
                self.trials.create_child(params, p)
            }
        };
        created.map_err(|e| JobsError::Backend(format!("the study database failed: {e}")))
    }

    /// `jobs.cancel`: a running trial is pruned on its latest report; one still waiting for a
    /// slot is recorded pruned at once.
    async fn agent_cancel(&mut self, trial: u64, run: &mut Run) -> Result<Result<(), JobsError>, CampaignError> {
        if run.running.contains_key(&trial) {
            let (step, metrics) = run.last_report.get(&trial).cloned().unwrap_or_default();
            let params = run.running[&trial].0.params.clone();
            self.prune(Progress { trial, params, step, metrics: metrics.into_iter().collect() }, run).await?;
            return Ok(Ok(()));
        }
        if let Some(i) = run.backlog.iter().position(|s| s.id == trial) {
            let spec = run.backlog.remove(i);
            let decision = Pruning { attempt: spec.attempt, step: 0, metrics: Default::default() };
            self.trials.db().event("prune", Some(trial), &serde_json::to_string(&decision).unwrap_or_default())?;
            run.pruned_at.insert(trial, 0);
            self.finish(vec![(spec, decision.finish(Vec::new()))], run)?;
            return Ok(Ok(()));
        }
        if run.agent.as_ref().is_some_and(|a| a.finished.contains(&trial)) {
            return Ok(Err(JobsError::Refused(format!("trial {trial} has already finished"))));
        }
        Ok(Err(JobsError::UnknownTrial(trial)))
    }

    /// Second Ctrl-C: cancel every running job and record the trials as cancelled.
    async fn cancel_all(&mut self, run: &mut Run) -> Result<(), CampaignError> {
        self.notice(Level::Warn, format!("Cancelling {} running trial(s)…", run.running.len()));
        run.waiting.abort_all();
        let (ids, handles): (Vec<u64>, Vec<JobHandle>) = run.running.drain().map(|(id, (_, h))| (id, h)).unzip();
        if let Err(e) = self.executor.cancel(handles).await {
            self.notice(Level::Error, format!("could not cancel every job: {e}"));
        }
        self.trials.cancelled(&ids)?;
        self.trials.db().event(
            "cancel",
            None,
            &format!("{} running trials cancelled; they re-run on resume", ids.len()),
        )?;
        Ok(())
    }
}
