//! The `jobs` capability, for the `agent-plugin` world (plugins that drive their own loop).
//!
//! The backend is the campaign's (`campaign::agent`): a submitted trial goes through the same
//! trial service as a strategy's suggestion (validation, budget, rows before jobs, resume). Here
//! live the grant check, the bounds on what a plugin may send, and the plugin's clock: time in a
//! `jobs` call is the host's, and each return from one gives the plugin its full per-call time
//! again, so a long `run` is bounded per stretch of its own work, not in total.

use std::time::Duration;

use super::Capability;
use super::llm::BoxFuture;
use crate::plugin::agent_bindings::alcf::hpo::jobs as wit;
use crate::plugin::bindings::alcf::hpo::types as wt;
use crate::plugin::sandbox::PluginState;
use crate::plugin::strategy::{Observation, observation_to_wit, value_from_wit};
use crate::space::Value;

/// The longest single `wait` the host honours; a longer timeout is cut to this (the agent waits
/// again). Keeps an agent's `run` responsive to the campaign stopping.
pub const MAX_WAIT: Duration = Duration::from_secs(600);
/// Most parameters in one submission (a space has far fewer; anything above is garbage).
const MAX_PARAMS: usize = 1024;

#[derive(Debug, thiserror::Error)]
pub enum JobsError {
    #[error("the trial was refused: {0}")]
    Refused(String),
    #[error("no trial {0} in this study")]
    UnknownTrial(u64),
    #[error("{0}")]
    Backend(String),
}

/// Trial execution over the study's executor, as an agent sees it.
pub trait JobsBackend: Send + Sync {
    /// Validates `params` against the space, records the trial (started from `parent`'s
    /// directory when given) and starts it once a slot is free; returns its id.
    fn submit(&self, params: Vec<(String, Value)>, parent: Option<u64>) -> BoxFuture<'_, Result<u64, JobsError>>;
    /// Waits up to `timeout` for trials to finish; returns those that did (possibly none).
    fn wait(&self, timeout: Duration) -> BoxFuture<'_, Result<Vec<Observation>, JobsError>>;
    /// Stops a running trial; it is recorded pruned and returned by a later `wait`.
    fn cancel(&self, trial: u64) -> BoxFuture<'_, Result<(), JobsError>>;
}

impl PluginState {
    /// The backend, or the error a plugin gets without the grant or outside a campaign.
    fn jobs(&self, call: &'static str) -> Result<std::sync::Arc<dyn JobsBackend>, String> {
        if !self.caps.check(Capability::Jobs, call) {
            return Err(self.caps.not_granted(Capability::Jobs));
        }
        self.caps
            .jobs()
            .cloned()
            .ok_or_else(|| "jobs: no executor is attached (agents run under `alcf-host run`)".into())
    }
}

impl wit::Host for PluginState {
    async fn submit(&mut self, params: Vec<wt::Assignment>, parent: Option<u64>) -> Result<u64, String> {
        let backend = self.jobs("jobs.submit")?;
        if params.len() > MAX_PARAMS {
            return Err(format!("jobs.submit: {} parameters; a submission names each parameter once", params.len()));
        }
        let params = params.into_iter().map(|a| (crate::plugin::fault::cut_message(a.name), value_from_wit(a.value)));
        let result = backend.submit(params.collect(), parent).await;
        self.clock.restart();
        result.map_err(|e| e.to_string())
    }

    async fn wait(&mut self, timeout_ms: u32) -> Result<Vec<wt::Outcome>, String> {
        let backend = self.jobs("jobs.wait")?;
        let timeout = Duration::from_millis(u64::from(timeout_ms)).min(MAX_WAIT);
        let result = backend.wait(timeout).await;
        self.clock.restart();
        Ok(result.map_err(|e| e.to_string())?.iter().map(observation_to_wit).collect())
    }

    async fn cancel(&mut self, trial: u64) -> Result<(), String> {
        let backend = self.jobs("jobs.cancel")?;
        let result = backend.cancel(trial).await;
        self.clock.restart();
        result.map_err(|e| e.to_string())
    }
}
