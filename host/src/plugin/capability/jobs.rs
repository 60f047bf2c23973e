//! The `jobs` capability, for the `agent-plugin` world (plugins that drive their own loop).
//!
//! Only the backend contract exists: no world the host links imports `jobs` yet (strategy plugins
//! cannot, see `check_strategy`), so nothing implements or links this trait. An agent runtime will
//! implement it over the campaign's executor and study database, check [`super::Capability::Jobs`]
//! with [`super::CapabilitySet`] like the other capabilities, and count `wait` as host time.

use std::time::Duration;

use super::llm::BoxFuture;
use crate::plugin::strategy::Observation;
use crate::space::Assignment;

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
    /// Validates `params` against the space, records the trial and starts it; returns its id.
    fn submit(&self, params: Assignment) -> BoxFuture<'_, Result<u64, JobsError>>;
    /// Waits up to `timeout` for trials to finish; returns those that did (possibly none).
    fn wait(&self, timeout: Duration) -> BoxFuture<'_, Result<Vec<Observation>, JobsError>>;
    fn cancel(&self, trial: u64) -> BoxFuture<'_, Result<(), JobsError>>;
}
