//! An agent plugin as the campaign sees it: one long `run` call that drives the study through
//! `jobs`, under the same sandbox as a strategy (memory cap, WASI that grants nothing, a deadline
//! on each stretch of the plugin's own work between host calls), with faults contained.
//!
//! An agent keeps no state the host must save: a fresh instance is given every finished trial,
//! the trials still running and each trial's parent, so after a fault (or a resume) `run` starts
//! again from what the study holds. Restarts are bounded by `max_restarts`, as for strategies.

use std::sync::Arc;
use wasmtime::Store;

use super::LoadedAgent;
use super::bindings::alcf::hpo::types as wit;
use super::capability::{Capabilities, CapabilitySet, Notice};
use super::fault::{Fault, cut_message};
use super::sandbox::{PluginState, arm, disarm};
use super::strategy::{
    Contained, Observation, PluginError, PluginInfo, PluginLimits, StudyInfo, assignment_to_wit, classify,
    info_from_wit, observation_to_wit, study_to_wit,
};
use crate::space::Assignment;

/// What a fresh `run` is given: the study as it stands.
#[derive(Clone, Debug, Default)]
pub struct Standing {
    /// Every finished trial, in the order they finished.
    pub history: Vec<Observation>,
    /// Trials with a row that have not finished (running, or waiting for a slot).
    pub running: Vec<(u64, Assignment)>,
    /// (trial, parent) for every trial started from another's directory.
    pub lineage: Vec<(u64, u64)>,
}

pub struct SandboxedAgent {
    plugin: Arc<LoadedAgent>,
    name: String,
    limits: PluginLimits,
    caps: CapabilitySet,
    study: wit::Study,
    restarts: u32,
}

impl SandboxedAgent {
    pub fn new(
        plugin: Arc<LoadedAgent>,
        study: &StudyInfo,
        limits: PluginLimits,
        capabilities: &Capabilities,
    ) -> SandboxedAgent {
        let name = plugin.summary.path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
        SandboxedAgent {
            caps: capabilities.bind(name.as_str().into()),
            plugin,
            name,
            limits,
            study: study_to_wit(study),
            restarts: 0,
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Ungranted uses and suppressed output since the last call, oldest first.
    pub fn take_notices(&mut self) -> Vec<Notice> {
        self.caps.take_notices()
    }

    fn new_store(&self) -> Store<PluginState> {
        PluginState::new(self.caps.clone(), self.limits.memory_bytes, self.study.seed)
            .into_store(self.plugin.pre.engine())
    }

    /// The plugin's self-description, from a fresh instance.
    pub async fn describe(&mut self) -> Result<PluginInfo, PluginError> {
        let mut store = self.new_store();
        let limit = self.limits.call_timeout;
        let fault = |me: &Self, fault| PluginError::Fault { plugin: me.name.clone(), call: "describe", fault };
        arm(&mut store, limit);
        let bindings = self.plugin.pre.instantiate_async(&mut store).await;
        let bindings = match bindings {
            Ok(b) => b,
            Err(e) => {
                disarm(&store);
                let f = classify(&mut store, e, limit);
                return Err(fault(self, f));
            }
        };
        let info = bindings.alcf_hpo_agent().call_describe(&mut store).await;
        disarm(&store);
        match info {
            Ok(i) => Ok(info_from_wit(i)),
            Err(e) => {
                let f = classify(&mut store, e, limit);
                Err(fault(self, f))
            }
        }
    }

    /// One `run` of a fresh instance over `standing`. `Ok` when the agent returned (it is done);
    /// a fault is contained (`Err(Fault)`, the caller starts it again from the study as it then
    /// stands) until `max_restarts`, then `GaveUp`. An error the agent returns is `Refused`.
    pub async fn run(&mut self, standing: &Standing) -> Result<(), PluginError> {
        let mut store = self.new_store();
        let limit = self.limits.call_timeout;
        let history: Vec<wit::Outcome> = standing.history.iter().map(observation_to_wit).collect();
        let running: Vec<wit::Trial> = standing
            .running
            .iter()
            .map(|(id, a)| wit::Trial { id: *id, params: assignment_to_wit(&a.values) })
            .collect();
        let lineage: Vec<wit::Lineage> =
            standing.lineage.iter().map(|&(trial, parent)| wit::Lineage { trial, parent }).collect();
        // The first stretch reads the whole history: scale its allowance as a strategy's replay is.
        arm(&mut store, limit * (1 + history.len() as u32 / 1000));
        let result = async {
            let bindings = self.plugin.pre.instantiate_async(&mut store).await?;
            bindings.alcf_hpo_agent().call_run(&mut store, &self.study, &history, &running, &lineage).await
        }
        .await;
        disarm(&store);
        match result {
            Ok(Ok(())) => Ok(()),
            Ok(Err(message)) => {
                Err(PluginError::Refused { plugin: self.name.clone(), call: "run", message: cut_message(message) })
            }
            Err(e) => {
                let fault = classify(&mut store, e, limit);
                Err(self.contain(fault))
            }
        }
    }

    fn contain(&mut self, fault: Fault) -> PluginError {
        self.restarts += 1;
        if self.restarts > self.limits.max_restarts {
            let err = PluginError::GaveUp {
                plugin: self.name.clone(),
                call: "run",
                fault,
                restarts: self.limits.max_restarts,
            };
            tracing::error!("{err}");
            return err;
        }
        let contained = Contained {
            plugin: self.name.clone(),
            call: "run",
            fault: fault.clone(),
            restart: self.restarts,
            max_restarts: self.limits.max_restarts,
        };
        tracing::warn!("{contained}");
        PluginError::Fault { plugin: self.name.clone(), call: "run", fault }
    }
}

// The campaign runs the agent in a task of its own: it and its `run` future must be `Send`.
const _: () = {
    fn send<T: Send + 'static>() {}
    fn send_future<F: std::future::Future + Send>(_: F) {}
    #[allow(dead_code)]
    fn check(a: &'static mut SandboxedAgent, s: &'static Standing) {
        send::<SandboxedAgent>();
        send_future(a.run(s));
        send_future(a.describe());
    }
};
