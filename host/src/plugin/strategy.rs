//! A strategy plugin as the campaign sees it: `suggest` and `observe` calls that are deadline- and
//! memory-limited, with faults contained. After a trap, timeout or memory exhaustion the store is
//! dropped and a fresh instance is rebuilt by replaying `init` and every observed outcome, up to
//! `max_restarts` times; after that the plugin is given up and the caller stops cleanly.

use std::sync::Arc;
use std::time::Duration;

use wasmtime::Store;

use super::bindings::StrategyPlugin;
use super::bindings::alcf::hpo::types as wit;
use super::sandbox::{Grants, PluginState, Storage};
use super::{EPOCH_TICK, LoadedPlugin};
use crate::config::Direction;
use crate::space::{Assignment, Domain, SearchSpace, Value};

/// Limits applied to every instance of a plugin.
#[derive(Clone, Debug)]
pub struct PluginLimits {
    pub memory_bytes: u64,
    pub call_timeout: Duration,
    pub max_restarts: u32,
}

/// Why a plugin call failed in a way the host contained.
#[derive(Debug, Clone, PartialEq)]
pub enum Fault {
    Timeout { limit: Duration },
    OutOfMemory { requested: usize, cap: u64 },
    Trap { message: String, stderr: Vec<String> },
}

impl std::fmt::Display for Fault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Fault::Timeout { limit } => write!(
                f,
                "it ran past its {:.1} s CPU deadline (raise strategy.suggest_timeout_s if it needs more)",
                limit.as_secs_f64()
            ),
            Fault::OutOfMemory { requested, cap } => write!(
                f,
                "it ran out of memory: it asked for {} MiB, above its cap of {} MiB (strategy.memory_mib)",
                requested >> 20,
                cap >> 20
            ),
            Fault::Trap { message, stderr } => {
                // A Rust guest prints its panic message to stderr before trapping: that is the useful part.
                let panic: Vec<&str> =
                    stderr.iter().map(String::as_str).skip_while(|l| !l.contains("panicked")).take(4).collect();
                if panic.is_empty() {
                    write!(f, "it trapped: {message}")
                } else {
                    write!(f, "it panicked: {}", panic.join(" | "))
                }
            }
        }
    }
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
}

struct Live {
    store: Store<PluginState>,
    bindings: StrategyPlugin,
}

pub struct SandboxedStrategy {
    plugin: Arc<LoadedPlugin>,
    name: String,
    limits: PluginLimits,
    grants: Grants,
    storage: Storage,
    study: wit::Study,
    /// Every outcome observed so far, in order: the replay log for rebuilding an instance.
    history: Vec<wit::Outcome>,
    live: Option<Live>,
    restarts: u32,
    /// Faults contained so far, for the caller to report and record.
    pub faults: Vec<String>,
}

enum CallError {
    Fault(Fault),
    Refused(String),
}

impl SandboxedStrategy {
    pub fn new(
        plugin: Arc<LoadedPlugin>,
        study: &StudyInfo,
        limits: PluginLimits,
        grants: Grants,
        storage: Storage,
    ) -> SandboxedStrategy {
        let name = plugin.summary.path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
        SandboxedStrategy {
            plugin,
            name,
            limits,
            grants,
            storage,
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

    pub fn restarts(&self) -> u32 {
        self.restarts
    }

    fn new_store(&self) -> Store<PluginState> {
        let state = PluginState::new(
            self.name.as_str().into(),
            self.grants.clone(),
            self.storage.clone(),
            self.limits.memory_bytes,
            self.study.seed,
        );
        let mut store = Store::new(self.plugin.pre.engine(), state);
        store.limiter(|s| &mut s.memory);
        store.epoch_deadline_trap();
        store
    }

    fn deadline_ticks(&self) -> u64 {
        (self.limits.call_timeout.as_millis() / EPOCH_TICK.as_millis()).max(1) as u64 + 1
    }

    fn classify(&self, store: &mut Store<PluginState>, error: wasmtime::Error) -> Fault {
        if let Some(requested) = store.data_mut().memory.refused.take() {
            return Fault::OutOfMemory { requested, cap: self.limits.memory_bytes };
        }
        if matches!(error.downcast_ref::<wasmtime::Trap>(), Some(wasmtime::Trap::Interrupt)) {
            return Fault::Timeout { limit: self.limits.call_timeout };
        }
        let stderr = store.data().stderr_tail.lock().map(|t| t.iter().cloned().collect()).unwrap_or_default();
        let message = match error.downcast_ref::<wasmtime::Trap>() {
            Some(trap) => trap.to_string(),
            None => format!("{error:#}").lines().next().unwrap_or_default().to_string(),
        };
        Fault::Trap { message, stderr }
    }

    /// Instantiates the plugin and brings it up to date: `init`, then every observed outcome.
    async fn instantiate(&mut self) -> Result<Live, (&'static str, CallError)> {
        let mut store = self.new_store();
        let ticks = self.deadline_ticks();
        store.set_epoch_deadline(ticks);
        let bindings = match self.plugin.pre.instantiate_async(&mut store).await {
            Ok(b) => b,
            Err(e) => return Err(("instantiate", CallError::Fault(self.classify(&mut store, e)))),
        };
        store.set_epoch_deadline(ticks);
        match bindings.alcf_hpo_strategy().call_init(&mut store, &self.study).await {
            Ok(Ok(())) => {}
            Ok(Err(m)) => return Err(("init", CallError::Refused(m))),
            Err(e) => return Err(("init", CallError::Fault(self.classify(&mut store, e)))),
        }
        if !self.history.is_empty() {
            // Replaying a long history may take longer than one suggestion: scale the deadline.
            let scale = 1 + self.history.len() as u64 / 1000;
            store.set_epoch_deadline(ticks * scale);
            match bindings.alcf_hpo_strategy().call_observe(&mut store, &self.history).await {
                Ok(Ok(())) => {}
                Ok(Err(m)) => return Err(("observe", CallError::Refused(m))),
                Err(e) => return Err(("observe", CallError::Fault(self.classify(&mut store, e)))),
            }
        }
        Ok(Live { store, bindings })
    }

    /// Records a contained fault; errors out once the restart budget is spent.
    fn contain(&mut self, call: &'static str, fault: Fault) -> Result<(), PluginError> {
        self.live = None;
        self.restarts += 1;
        let err = PluginError::Fault { plugin: self.name.clone(), call, fault: fault.clone() };
        if self.restarts > self.limits.max_restarts {
            tracing::error!("{err}");
            return Err(PluginError::GaveUp {
                plugin: self.name.clone(),
                call,
                fault,
                restarts: self.limits.max_restarts,
            });
        }
        let message = format!(
            "{err}; it was restarted from the study history (restart {} of {})",
            self.restarts, self.limits.max_restarts
        );
        tracing::warn!("{message}");
        self.faults.push(message);
        Ok(())
    }

    /// Runs `f` on a live instance, rebuilding it after faults (bounded by `max_restarts`).
    async fn with_live<T>(
        &mut self,
        call: &'static str,
        f: impl AsyncFnMut(&mut Live, u64) -> Result<Result<T, String>, wasmtime::Error>,
    ) -> Result<T, PluginError> {
        let mut f = f;
        loop {
            let mut live = match self.live.take() {
                Some(l) => l,
                None => match self.instantiate().await {
                    Ok(l) => l,
                    Err((c, CallError::Refused(message))) => {
                        return Err(PluginError::Refused { plugin: self.name.clone(), call: c, message });
                    }
                    Err((c, CallError::Fault(fault))) => {
                        self.contain(c, fault)?;
                        continue;
                    }
                },
            };
            let ticks = self.deadline_ticks();
            live.store.set_epoch_deadline(ticks);
            match f(&mut live, ticks).await {
                Ok(Ok(v)) => {
                    self.live = Some(live);
                    return Ok(v);
                }
                Ok(Err(message)) => {
                    self.live = Some(live);
                    return Err(PluginError::Refused { plugin: self.name.clone(), call, message });
                }
                Err(e) => {
                    let fault = self.classify(&mut live.store, e);
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
        store.set_epoch_deadline(self.deadline_ticks());
        let fault = |me: &Self, store: &mut Store<PluginState>, e| PluginError::Fault {
            plugin: me.name.clone(),
            call: "describe",
            fault: me.classify(store, e),
        };
        let bindings = match self.plugin.pre.instantiate_async(&mut store).await {
            Ok(b) => b,
            Err(e) => return Err(fault(self, &mut store, e)),
        };
        let info = match bindings.alcf_hpo_strategy().call_describe(&mut store).await {
            Ok(i) => i,
            Err(e) => return Err(fault(self, &mut store, e)),
        };
        Ok(PluginInfo {
            name: info.name,
            version: info.version,
            description: info.description,
            capabilities: info.capabilities,
        })
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
        let raw = self
            .with_live("suggest", async |live, _| {
                live.bindings.alcf_hpo_strategy().call_suggest(&mut live.store, count, &pending).await
            })
            .await?;
        Ok(raw.into_iter().map(|a| a.into_iter().map(|x| (x.name, value_from_wit(x.value))).collect()).collect())
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
        let result = self
            .with_live("observe", async |live, _| {
                live.bindings.alcf_hpo_strategy().call_observe(&mut live.store, &batch).await
            })
            .await;
        match result {
            Err(PluginError::GaveUp { .. }) | Err(PluginError::Refused { .. }) => result,
            // A contained fault dropped the instance; the rebuild replays `history`, so nothing is lost.
            _ => Ok(()),
        }
    }

    /// Loads past outcomes without calling the plugin (used on resume: the first call replays them).
    pub fn preload(&mut self, outcomes: &[Observation]) {
        self.history.extend(outcomes.iter().map(observation_to_wit));
        self.live = None;
    }
}

fn study_to_wit(s: &StudyInfo) -> wit::Study {
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
        direction: match s.direction {
            Direction::Minimize => wit::Direction::Minimize,
            Direction::Maximize => wit::Direction::Maximize,
        },
        objective: s.objective.clone(),
        seed: s.seed,
        budget: s.budget,
        parallelism: s.parallelism,
        options: s.options.to_string(),
    }
}

fn value_to_wit(v: &Value) -> wit::Value {
    match v {
        Value::Float(x) => wit::Value::Float(*x),
        Value::Int(x) => wit::Value::Int(*x),
        Value::Choice(x) => wit::Value::Choice(x.clone()),
    }
}

fn value_from_wit(v: wit::Value) -> Value {
    match v {
        wit::Value::Float(x) => Value::Float(x),
        wit::Value::Int(x) => Value::Int(x),
        wit::Value::Choice(x) => Value::Choice(x),
    }
}

fn assignment_to_wit(values: &[(String, Value)]) -> Vec<wit::Assignment> {
    values.iter().map(|(n, v)| wit::Assignment { name: n.clone(), value: value_to_wit(v) }).collect()
}

fn observation_to_wit(o: &Observation) -> wit::Outcome {
    wit::Outcome {
        trial: wit::Trial { id: o.trial, params: assignment_to_wit(&o.params.values) },
        status: match o.status {
            ObservedStatus::Completed => wit::Status::Completed,
            ObservedStatus::Failed => wit::Status::Failed,
            ObservedStatus::Pruned => wit::Status::Pruned,
        },
        value: o.value,
        metrics: o.metrics.clone(),
    }
}
