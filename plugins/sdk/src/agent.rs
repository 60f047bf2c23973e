//! Agent plugins: a plugin that drives its own loop through the host's `jobs` capability
//! (WIT world `agent-plugin`), e.g. population-based training.
//!
//! An author implements [`Agent`] and calls [`crate::export_agent!`]. `run` gets the study as it
//! stands ([`Standing`]: finished trials, trials still running, each trial's parent) and a
//! [`Jobs`] handle; it returns when it is done. The host may start `run` again on a fresh
//! instance (after a fault, or on `--resume`) with the study as it then stands, so an agent
//! should take its decisions from the standing and its seed, never from memory of an earlier run:
//! then it picks up where it was and submits nothing twice.
//!
//! [`SimulatedJobs`] runs trials natively from a closure, to test an agent without the host.

use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;

use crate::types::*;

/// What a fresh `run` is given.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Standing {
    /// Every finished trial, in the order they finished.
    pub history: Vec<Outcome>,
    /// Trials started but not finished; their outcomes come through [`Jobs::wait`].
    pub running: Vec<Trial>,
    /// trial id -> the trial whose directory (checkpoint) it started from.
    pub parents: BTreeMap<u64, u64>,
}

/// The host's trial execution, as an agent uses it.
pub trait Jobs {
    /// Records and starts a trial (once a slot of the study's parallelism is free), started
    /// from `parent`'s directory when given (the program finds it as `ALCF_PARENT_DIR`); its id.
    /// Errors: an invalid parameter, a spent budget, a parent that has not finished.
    fn submit(&mut self, params: &Params, parent: Option<u64>) -> Result<u64, String>;
    /// Waits up to `timeout` for trials to finish; those that did, each once (possibly none).
    /// Returns at once when nothing is running.
    fn wait(&mut self, timeout: Duration) -> Result<Vec<Outcome>, String>;
    /// Stops a running trial: it is recorded pruned and comes back through `wait`.
    fn cancel(&mut self, trial: u64) -> Result<(), String>;
}

/// An agent: one `run` per instance.
pub trait Agent: 'static {
    /// Name, version, description and the capabilities it wants (at least `"jobs"`).
    fn info() -> PluginInfo;
    /// Drives the study until the budget is spent or the agent is done.
    fn run(study: &Study, standing: Standing, jobs: &mut dyn Jobs) -> Result<(), String>;
}

/// One trial of a [`SimulatedJobs`] run: its parameters, its parent, and the value its closure gave.
#[derive(Clone, Debug, PartialEq)]
pub struct SimulatedTrial {
    pub id: u64,
    pub params: Params,
    pub parent: Option<u64>,
    pub value: Option<f64>,
}

/// Native `jobs`: each submitted trial "runs" by calling `evaluate(params, parent's trial)`, and
/// trials finish in submission order, one per `wait`, as on a host with `parallel` slots. Refuses
/// what the host refuses: a spent budget, a parent that has not finished.
pub struct SimulatedJobs<F> {
    evaluate: F,
    objective: String,
    /// Trials it accepts in all (a spent budget is refused, as by the host).
    pub budget: usize,
    pub trials: Vec<SimulatedTrial>,
    running: VecDeque<usize>,
}

impl<F: FnMut(&Params, Option<&SimulatedTrial>) -> Option<f64>> SimulatedJobs<F> {
    pub fn new(study: &Study, budget: usize, evaluate: F) -> Self {
        SimulatedJobs {
            evaluate,
            objective: study.objective.clone(),
            budget,
            trials: Vec::new(),
            running: VecDeque::new(),
        }
    }

    /// The standing a host would give a fresh `run` now.
    pub fn standing(&self) -> Standing {
        let done = |t: &&SimulatedTrial| !self.running.iter().any(|&i| self.trials[i].id == t.id);
        Standing {
            history: self.trials.iter().filter(done).map(|t| self.outcome(t)).collect(),
            running: self
                .running
                .iter()
                .map(|&i| Trial { id: self.trials[i].id, params: self.trials[i].params.clone() })
                .collect(),
            parents: self.trials.iter().filter_map(|t| Some((t.id, t.parent?))).collect(),
        }
    }

    fn outcome(&self, t: &SimulatedTrial) -> Outcome {
        Outcome {
            trial: Trial { id: t.id, params: t.params.clone() },
            status: if t.value.is_some() { Status::Completed } else { Status::Failed },
            value: t.value,
            metrics: t.value.map(|v| vec![(self.objective.clone(), v)]).unwrap_or_default(),
            curve: Vec::new(),
        }
    }
}

impl<F: FnMut(&Params, Option<&SimulatedTrial>) -> Option<f64>> Jobs for SimulatedJobs<F> {
    fn submit(&mut self, params: &Params, parent: Option<u64>) -> Result<u64, String> {
        if self.trials.len() >= self.budget {
            return Err(format!("the study's budget of {} trials is spent", self.budget));
        }
        let parent_trial = match parent {
            None => None,
            Some(p) => {
                let found = self.trials.iter().position(|t| t.id == p);
                match found {
                    Some(i) if !self.running.contains(&i) => Some(self.trials[i].clone()),
                    _ => return Err(format!("parent trial {p} is not a finished trial of this study")),
                }
            }
        };
        let id = self.trials.len() as u64 + 1;
        let value = (self.evaluate)(params, parent_trial.as_ref());
        self.trials.push(SimulatedTrial { id, params: params.clone(), parent, value });
        self.running.push_back(self.trials.len() - 1);
        Ok(id)
    }

    fn wait(&mut self, _timeout: Duration) -> Result<Vec<Outcome>, String> {
        Ok(self.running.pop_front().map(|i| vec![self.outcome(&self.trials[i])]).unwrap_or_default())
    }

    fn cancel(&mut self, trial: u64) -> Result<(), String> {
        match self.running.iter().position(|&i| self.trials[i].id == trial) {
            Some(k) => {
                let i = self.running.remove(k).unwrap_or(k);
                self.trials[i].value = None;
                Ok(())
            }
            None => Err(format!("trial {trial} is not running")),
        }
    }
}

/// Exports an [`Agent`] as the plugin's `agent` interface (call once, at the crate root of a
/// `cdylib` crate). Like [`crate::export_strategy!`], the WebAssembly exports are only emitted
/// on `wasm32`, so the crate also builds and tests natively.
#[macro_export]
macro_rules! export_agent {
    ($agent:ty) => {
        #[doc(hidden)]
        pub struct __AlcfAgentExport;

        impl $crate::agent_bindings::exports::alcf::hpo::agent::Guest for __AlcfAgentExport {
            fn describe() -> $crate::bindings::alcf::hpo::types::Info {
                $crate::__rt::info_out(<$agent as $crate::agent::Agent>::info())
            }
            fn run(
                study: $crate::bindings::alcf::hpo::types::Study,
                history: $crate::__rt::Vec<$crate::bindings::alcf::hpo::types::Outcome>,
                running: $crate::__rt::Vec<$crate::bindings::alcf::hpo::types::Trial>,
                lineage: $crate::__rt::Vec<$crate::bindings::alcf::hpo::types::Lineage>,
            ) -> ::core::result::Result<(), $crate::__rt::String> {
                $crate::__rt::run_agent::<$agent>(study, history, running, lineage)
            }
        }

        #[cfg(target_arch = "wasm32")]
        $crate::agent_bindings::__export_agent_plugin!(__AlcfAgentExport with_types_in $crate::agent_bindings);
    };
}
