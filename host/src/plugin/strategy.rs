//! A strategy plugin as the campaign sees it: `suggest` and `observe` calls under a per-call
//! deadline (wall-clock time in the plugin, host calls excluded) and a memory cap, with faults
//! contained. After a trap, timeout or memory exhaustion the store is dropped and a fresh instance
//! is rebuilt by replaying `init` and every observed outcome: `max_restarts` restarts are allowed,
//! and the fault after the last one gives the plugin up so the caller stops cleanly.

use std::sync::Arc;
use std::time::Duration;

use wasmtime::Store;

use super::LoadedPlugin;
use super::abi::Exports;
use super::bindings::alcf::hpo::types as wit;
use super::capability::{Capabilities, CapabilitySet, Notice};
use super::fault::{cut_message, guest_error};
use super::sandbox::{Grants, PluginState, Storage, arm, disarm};
use crate::config::Direction;
use crate::space::{Assignment, Domain, SearchSpace, Value};

pub use super::fault::{Contained, Fault, GuestError};

/// An `init` error that starts with this marks a problem with the plugin's options (the user's
/// configuration), not with the plugin (wit/hpo.wit, `init`).
pub const OPTIONS_ERROR_PREFIX: &str = "options:";

/// Limits applied to every instance of a plugin.
#[derive(Clone, Debug)]
pub struct PluginLimits {
    pub memory_bytes: u64,
    /// Plugin time per call (wall clock minus time in host calls).
    pub call_timeout: Duration,
    /// Restarts allowed after contained faults; the fault after the last one gives the plugin up.
    pub max_restarts: u32,
}

#[derive(Debug, thiserror::Error)]
pub enum PluginError {
    #[error("plugin `{plugin}` failed in {call}: {fault}")]
    Fault { plugin: String, call: &'static str, fault: Fault },
    #[error(
        "plugin `{plugin}` was given up after {restarts} restarts; last failure in {call}: {fault}. The study is intact: fix the plugin or its limits, then continue with --resume"
    )]
    GaveUp { plugin: String, call: &'static str, fault: Fault, restarts: u32 },
    #[error("plugin `{plugin}` returned an error from {call}: {message}")]
    Refused { plugin: String, call: &'static str, message: String },
    /// `init` refused the plugin options: a configuration error, never retried.
    #[error(
        "plugin `{plugin}` does not accept its options: {message}. Fix the plugin options ([strategy.options] in the study config)"
    )]
    Options { plugin: String, message: String },
    #[error("plugin `{plugin}`: {message}")]
    Host { plugin: String, message: String },
}

/// A finished trial as the strategy is told about it.
#[derive(Clone, Debug)]
pub struct Observation {
    pub trial: u64,
    pub params: Assignment,
    pub status: ObservedStatus,
    pub value: Option<f64>,
    pub metrics: Vec<(String, f64)>,
    /// Its intermediate reports, in order (empty when it reported none).
    pub curve: Vec<Vec<(String, f64)>>,
}

/// One intermediate report of a running trial, for `judge`.
#[derive(Clone, Debug)]
pub struct Progress {
    pub trial: u64,
    pub params: Assignment,
    /// 0 for the trial's first report.
    pub step: u32,
    pub metrics: Vec<(String, f64)>,
}

/// What the strategy says of one report.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    Continue,
    Prune,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ObservedStatus {
    Completed,
    Failed,
    Pruned,
}

/// What the plugin is told about the study in `init`.
#[derive(Clone, Debug)]
pub struct StudyInfo {
    pub name: String,
    pub space: SearchSpace,
    pub direction: Direction,
    pub objective: String,
    /// Every objective of a multi-objective study, `objective` first; empty for a study with
    /// just `objective`.
    pub objectives: Vec<(String, Direction)>,
    pub seed: u64,
    pub budget: Option<u32>,
    pub parallelism: u32,
    pub options: serde_json::Value,
}

/// The plugin's self-description.
#[derive(Clone, Debug, PartialEq)]
pub struct PluginInfo {
    pub name: String,
    pub version: String,
    pub description: String,
    pub capabilities: Vec<String>,
    /// It wants running trials' reports (`judge`).
    pub prunes: bool,
    /// It optimizes several objectives at once (`study.objectives`).
    pub multi_objective: bool,
}

struct Live {
    store: Store<PluginState>,
    bindings: Exports,
}

pub struct SandboxedStrategy {
    plugin: Arc<LoadedPlugin>,
    name: String,
    limits: PluginLimits,
    caps: CapabilitySet,
    study: wit::Study,
    /// Every outcome observed so far, in order: the replay log for rebuilding an instance.
    history: Vec<wit::Outcome>,
    live: Option<Live>,
    restarts: u32,
    /// Faults contained since the caller last took them.
    faults: Vec<Contained>,
}

// The campaign runs a strategy in a task of its own (so it keeps recording trials during a long
// suggest): the strategy and the futures of its calls must be `Send + 'static`.
const _: () = {
    fn send<T: Send + 'static>() {}
    fn send_future<F: std::future::Future + Send>(_: F) {}
    #[allow(dead_code)]
    fn check(s: &'static mut SandboxedStrategy) {
        send::<SandboxedStrategy>();
        send_future(s.suggest(1, &[]));
        send_future(s.observe(&[]));
        send_future(s.judge(&[]));
        send_future(s.describe());
    }
};

enum CallError {
    Fault(Fault),
    Refused(String),
    Options(String),
}

/// What a failed guest call means: memory cap, deadline, or a trap (with the guest's own report).
pub(crate) fn classify(store: &mut Store<PluginState>, error: wasmtime::Error, limit: Duration) -> Fault {
    if let Some(requested) = store.data_mut().memory.refused.take() {
        return Fault::OutOfMemory { requested, cap: store.data().memory.max_bytes as u64 };
    }
    if matches!(error.downcast_ref::<wasmtime::Trap>(), Some(wasmtime::Trap::Interrupt)) {
        return Fault::Timeout { limit };
    }
    let message = match error.downcast_ref::<wasmtime::Trap>() {
        Some(trap) => trap.to_string(),
        None => format!("{error:#}").lines().next().unwrap_or_default().to_string(),
    };
    Fault::Trap { message: cut_message(message), guest: guest_error(&store.data().stderr_tail()).map(Box::new) }
}

/// Calls into the guest with `limit` of plugin time, reporting suppressed output when it returns:
/// `guarded!(store, limit, |s| call(s))` gives `Result<_, Fault>`. A macro, not a helper taking
/// a closure: an async closure over the store makes the caller's future lose `Send` (the
/// higher-ranked lifetime inference of async closures), and the campaign needs it `Send`.
macro_rules! guarded {
    ($store:expr, $limit:expr, |$s:ident| $call:expr) => {{
        let limit: Duration = $limit;
        let store: &mut Store<PluginState> = $store;
        arm(store, limit);
        let result = {
            let $s = &mut *store;
            $call.await
        };
        disarm(store);
        result.map_err(|e| classify(store, e, limit))
    }};
}

/// One guest call `with_live` makes (and repeats on a rebuilt instance after a fault).
enum Request<'r> {
    Suggest { count: u32, pending: &'r [wit::Trial] },
    Observe(&'r [wit::Outcome]),
    Judge(&'r [wit::Report]),
}

enum Reply {
    Suggest(Vec<Vec<wit::Assignment>>),
    Observe,
    Judge(Vec<wit::Verdict>),
}

impl Request<'_> {
    fn name(&self) -> &'static str {
        match self {
            Request::Suggest { .. } => "suggest",
            Request::Observe(_) => "observe",
            Request::Judge(_) => "judge",
        }
    }
}

impl SandboxedStrategy {
    /// A plugin with `grants` over one of the built-in storage backends (no LLM service).
    pub fn new(
        plugin: Arc<LoadedPlugin>,
        study: &StudyInfo,
        limits: PluginLimits,
        grants: Grants,
        storage: Storage,
    ) -> SandboxedStrategy {
        SandboxedStrategy::with_capabilities(plugin, study, limits, &Capabilities::new(grants, storage))
    }

    /// A plugin with the capabilities of a registry (grants, backends, quotas, log budget).
    pub fn with_capabilities(
        plugin: Arc<LoadedPlugin>,
        study: &StudyInfo,
        limits: PluginLimits,
        capabilities: &Capabilities,
    ) -> SandboxedStrategy {
        let name = plugin.summary.path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
        SandboxedStrategy {
            caps: capabilities.bind(name.as_str().into()),
            plugin,
            name,
            limits,
            study: study_to_wit(study),
            history: Vec::new(),
            live: None,
            restarts: 0,
            faults: Vec::new(),
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Contained faults so far (after a give-up, `max_restarts + 1`).
    pub fn restarts(&self) -> u32 {
        self.restarts
    }

    /// Faults contained since the last call, oldest first: each restarted the plugin.
    pub fn take_faults(&mut self) -> Vec<Contained> {
        std::mem::take(&mut self.faults)
    }

    /// The largest linear memory the live instance has had (0 before the first call).
    pub fn memory_peak(&self) -> usize {
        self.live.as_ref().map_or(0, |l| l.store.data().memory.peak)
    }

    /// Ungranted uses and suppressed output since the last call, oldest first.
    pub fn take_notices(&mut self) -> Vec<Notice> {
        self.caps.take_notices()
    }

    fn new_store(&self) -> Store<PluginState> {
        PluginState::new(self.caps.clone(), self.limits.memory_bytes, self.study.seed)
            .into_store(self.plugin.pre.engine())
    }

    /// Instantiates the plugin and brings it up to date: `init`, then every observed outcome.
    async fn instantiate(&mut self) -> Result<Live, (&'static str, CallError)> {
        let mut store = self.new_store();
        let limit = self.limits.call_timeout;
        let pre = self.plugin.pre.clone();
        let bindings = guarded!(&mut store, limit, |s| pre.instantiate_async(s))
            .map_err(|f| ("instantiate", CallError::Fault(f)))?;
        let init = guarded!(&mut store, limit, |s| bindings.init(s, &self.study));
        match init {
            Ok(Ok(())) => {}
            Ok(Err(m)) => {
                return Err(match m.strip_prefix(OPTIONS_ERROR_PREFIX) {
                    Some(rest) => ("init", CallError::Options(cut_message(rest.trim_start().to_string()))),
                    None => ("init", CallError::Refused(cut_message(m))),
                });
            }
            Err(f) => return Err(("init", CallError::Fault(f))),
        }
        if !self.history.is_empty() {
            // Replaying a long history may take longer than one suggestion: scale the deadline.
            let scale = 1 + self.history.len() as u32 / 1000;
            let observe = guarded!(&mut store, limit * scale, |s| bindings.observe(s, &self.history));
            match observe {
                Ok(Ok(())) => {}
                Ok(Err(m)) => return Err(("observe", CallError::Refused(cut_message(m)))),
                Err(f) => return Err(("observe", CallError::Fault(f))),
            }
        }
        Ok(Live { store, bindings })
    }

    /// Records a contained fault; errors out once the restart budget is spent.
    fn contain(&mut self, call: &'static str, fault: Fault) -> Result<(), PluginError> {
        self.live = None;
        self.restarts += 1;
        if self.restarts > self.limits.max_restarts {
            let err =
                PluginError::GaveUp { plugin: self.name.clone(), call, fault, restarts: self.limits.max_restarts };
            tracing::error!("{err}");
            return Err(err);
        }
        let contained = Contained {
            plugin: self.name.clone(),
            call,
            fault,
            restart: self.restarts,
            max_restarts: self.limits.max_restarts,
        };
        tracing::warn!("{contained}");
        self.faults.push(contained);
        Ok(())
    }

    /// Makes `request` of a live instance, rebuilding it after faults (bounded by `max_restarts`).
    async fn with_live(&mut self, request: Request<'_>) -> Result<Reply, PluginError> {
        let call = request.name();
        loop {
            let mut live = match self.live.take() {
                Some(l) => l,
                None => match self.instantiate().await {
                    Ok(l) => l,
                    Err((c, CallError::Refused(message))) => {
                        return Err(PluginError::Refused { plugin: self.name.clone(), call: c, message });
                    }
                    Err((_, CallError::Options(message))) => {
                        return Err(PluginError::Options { plugin: self.name.clone(), message });
                    }
                    Err((c, CallError::Fault(fault))) => {
                        self.contain(c, fault)?;
                        continue;
                    }
                },
            };
            let Live { store, bindings } = &mut live;
            let limit = self.limits.call_timeout;
            let result = match request {
                Request::Suggest { count, pending } => {
                    guarded!(store, limit, |s| bindings.suggest(s, count, pending)).map(|r| r.map(Reply::Suggest))
                }
                Request::Observe(batch) => {
                    guarded!(store, limit, |s| bindings.observe(s, batch)).map(|r| r.map(|()| Reply::Observe))
                }
                Request::Judge(reports) => {
                    guarded!(store, limit, |s| bindings.judge(s, reports)).map(|r| r.map(Reply::Judge))
                }
            };
            match result {
                Ok(Ok(v)) => {
                    self.live = Some(live);
                    return Ok(v);
                }
                Ok(Err(message)) => {
                    self.live = Some(live);
                    return Err(PluginError::Refused {
                        plugin: self.name.clone(),
                        call,
                        message: cut_message(message),
                    });
                }
                Err(fault) => {
                    drop(live);
                    self.contain(call, fault)?;
                }
            }
        }
    }

    /// The plugin's self-description. Asked of a fresh instance without `init`, so it works for any
    /// study (and for `plugin inspect`, which has none).
    pub async fn describe(&mut self) -> Result<PluginInfo, PluginError> {
        let mut store = self.new_store();
        let limit = self.limits.call_timeout;
        let pre = self.plugin.pre.clone();
        let fault = |me: &Self, fault| PluginError::Fault { plugin: me.name.clone(), call: "describe", fault };
        let bindings = match guarded!(&mut store, limit, |s| pre.instantiate_async(s)) {
            Ok(b) => b,
            Err(f) => return Err(fault(self, f)),
        };
        let info = match guarded!(&mut store, limit, |s| bindings.describe(s)) {
            Ok(i) => i,
            Err(f) => return Err(fault(self, f)),
        };
        Ok(info_from_wit(info))
    }

    /// Asks for up to `count` new assignments. The result is unvalidated: the caller checks each
    /// against the search space, because a plugin is untrusted.
    pub async fn suggest(
        &mut self,
        count: u32,
        pending: &[(u64, Assignment)],
    ) -> Result<Vec<Vec<(String, Value)>>, PluginError> {
        let pending: Vec<wit::Trial> =
            pending.iter().map(|(id, a)| wit::Trial { id: *id, params: assignment_to_wit(&a.values) }).collect();
        let raw = match self.with_live(Request::Suggest { count, pending: &pending }).await? {
            Reply::Suggest(raw) => raw,
            Reply::Observe | Reply::Judge(_) => Vec::new(),
        };
        // Names and labels are cut like any plugin string: the caller quotes invalid ones in
        // messages, and a cut one stays invalid (no parameter or label ends in "[cut: …]").
        Ok(raw
            .into_iter()
            .map(|a| a.into_iter().map(|x| (cut_message(x.name), value_from_wit(x.value))).collect())
            .collect())
    }

    /// Tells the plugin about finished trials. They join the replay history even when the call
    /// fails, so a rebuilt instance sees them.
    pub async fn observe(&mut self, outcomes: &[Observation]) -> Result<(), PluginError> {
        let batch: Vec<wit::Outcome> = outcomes.iter().map(observation_to_wit).collect();
        self.history.extend(batch.iter().cloned());
        if self.live.is_none() {
            // The next call instantiates and replays the whole history, this batch included.
            return Ok(());
        }
        let result = self.with_live(Request::Observe(&batch)).await.map(drop);
        match result {
            Err(PluginError::GaveUp { .. } | PluginError::Refused { .. } | PluginError::Options { .. }) => result,
            // A contained fault dropped the instance; the rebuild replays `history`, so nothing is lost.
            _ => Ok(()),
        }
    }

    /// Asks for a verdict on each report, in order. A plugin that answers with another number of
    /// verdicts than reports is refused (nothing is pruned on its word).
    pub async fn judge(&mut self, reports: &[Progress]) -> Result<Vec<Verdict>, PluginError> {
        let batch: Vec<wit::Report> = reports
            .iter()
            .map(|r| wit::Report {
                trial: wit::Trial { id: r.trial, params: assignment_to_wit(&r.params.values) },
                step: r.step,
                metrics: r.metrics.clone(),
            })
            .collect();
        let verdicts = match self.with_live(Request::Judge(&batch)).await? {
            Reply::Judge(v) => v,
            Reply::Suggest(_) | Reply::Observe => Vec::new(),
        };
        if verdicts.len() != reports.len() {
            return Err(PluginError::Refused {
                plugin: self.name.clone(),
                call: "judge",
                message: format!(
                    "returned {} verdicts for {} reports (one each is the rule)",
                    verdicts.len(),
                    reports.len()
                ),
            });
        }
        Ok(verdicts
            .into_iter()
            .map(|v| match v {
                wit::Verdict::Continue => Verdict::Continue,
                wit::Verdict::Prune => Verdict::Prune,
            })
            .collect())
    }

    /// Loads past outcomes without calling the plugin (used on resume: the first call replays them).
    pub fn preload(&mut self, outcomes: &[Observation]) {
        self.history.extend(outcomes.iter().map(observation_to_wit));
        self.live = None;
    }
}

/// A plugin's `describe` answer, its strings cut like any plugin string.
pub(crate) fn info_from_wit(info: wit::Info) -> PluginInfo {
    PluginInfo {
        name: cut_message(info.name),
        version: cut_message(info.version),
        description: cut_message(info.description),
        capabilities: info.capabilities.into_iter().take(16).map(cut_message).collect(),
        prunes: info.prunes,
        multi_objective: info.multi_objective,
    }
}

pub(crate) fn study_to_wit(s: &StudyInfo) -> wit::Study {
    wit::Study {
        name: s.name.clone(),
        space: s
            .space
            .params()
            .iter()
            .map(|p| wit::Param {
                name: p.name.clone(),
                domain: match &p.domain {
                    Domain::Float { low, high, log } => {
                        wit::Domain::Float(wit::FloatRange { low: *low, high: *high, log: *log })
                    }
                    Domain::Int { low, high, log } => {
                        wit::Domain::Int(wit::IntRange { low: *low, high: *high, log: *log })
                    }
                    Domain::Choice(c) => wit::Domain::Choice(c.iter().map(|c| c.label.clone()).collect()),
                },
            })
            .collect(),
        conditions: s
            .space
            .params()
            .iter()
            .filter_map(|p| {
                let c = s.space.condition(&p.name)?;
                Some(wit::Condition { param: p.name.clone(), parent: c.parent.clone(), values: c.values.clone() })
            })
            .collect(),
        direction: direction_to_wit(s.direction),
        objective: s.objective.clone(),
        objectives: if s.objectives.is_empty() {
            vec![wit::Objective { name: s.objective.clone(), direction: direction_to_wit(s.direction) }]
        } else {
            s.objectives
                .iter()
                .map(|(n, d)| wit::Objective { name: n.clone(), direction: direction_to_wit(*d) })
                .collect()
        },
        seed: s.seed,
        budget: s.budget,
        parallelism: s.parallelism,
        options: s.options.to_string(),
    }
}

fn direction_to_wit(d: Direction) -> wit::Direction {
    match d {
        Direction::Minimize => wit::Direction::Minimize,
        Direction::Maximize => wit::Direction::Maximize,
    }
}

fn value_to_wit(v: &Value) -> wit::Value {
    match v {
        Value::Float(x) => wit::Value::Float(*x),
        Value::Int(x) => wit::Value::Int(*x),
        Value::Choice(x) => wit::Value::Choice(x.clone()),
    }
}

pub(crate) fn value_from_wit(v: wit::Value) -> Value {
    match v {
        wit::Value::Float(x) => Value::Float(x),
        wit::Value::Int(x) => Value::Int(x),
        wit::Value::Choice(x) => Value::Choice(cut_message(x)),
    }
}

pub(crate) fn assignment_to_wit(values: &[(String, Value)]) -> Vec<wit::Assignment> {
    values.iter().map(|(n, v)| wit::Assignment { name: n.clone(), value: value_to_wit(v) }).collect()
}

pub(crate) fn observation_to_wit(o: &Observation) -> wit::Outcome {
    wit::Outcome {
        trial: wit::Trial { id: o.trial, params: assignment_to_wit(&o.params.values) },
        status: match o.status {
            ObservedStatus::Completed => wit::Status::Completed,
            ObservedStatus::Failed => wit::Status::Failed,
            ObservedStatus::Pruned => wit::Status::Pruned,
        },
        value: o.value,
        metrics: o.metrics.clone(),
        curve: o.curve.clone(),
    }
}
