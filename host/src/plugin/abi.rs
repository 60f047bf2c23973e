//! A strategy's exports whichever ABI it was built against: the current one (called as they are)
//! or 0.1 (called through [`super::legacy`]'s conversions). The rest of the host speaks only the
//! current records.

use wasmtime::Store;
use wasmtime::component::InstancePre;

use super::bindings::alcf::hpo::types as wit;
use super::bindings::{StrategyPlugin, StrategyPluginPre};
use super::legacy;
use super::sandbox::PluginState;

/// A linked, not yet instantiated plugin.
#[derive(Clone)]
pub(crate) enum Pre {
    Current(StrategyPluginPre<PluginState>),
    V01(legacy::bindings::StrategyPluginPre<PluginState>),
}

/// An instance's exports.
pub(crate) enum Exports {
    Current(StrategyPlugin),
    V01(legacy::bindings::StrategyPlugin),
}

impl Pre {
    /// Typed access to a linked component built against ABI `version` (already checked).
    pub fn new(pre: InstancePre<PluginState>, version: &str) -> wasmtime::Result<Pre> {
        if version.starts_with(&format!("{}.", legacy::VERSION)) {
            Ok(Pre::V01(legacy::bindings::StrategyPluginPre::new(pre)?))
        } else {
            Ok(Pre::Current(StrategyPluginPre::new(pre)?))
        }
    }

    pub fn engine(&self) -> &wasmtime::Engine {
        match self {
            Pre::Current(p) => p.engine(),
            Pre::V01(p) => p.engine(),
        }
    }

    pub async fn instantiate_async(&self, store: &mut Store<PluginState>) -> wasmtime::Result<Exports> {
        Ok(match self {
            Pre::Current(p) => Exports::Current(p.instantiate_async(store).await?),
            Pre::V01(p) => Exports::V01(p.instantiate_async(store).await?),
        })
    }
}

type Guest<T> = wasmtime::Result<Result<T, String>>;

impl Exports {
    pub async fn describe(&self, store: &mut Store<PluginState>) -> wasmtime::Result<wit::Info> {
        match self {
            Exports::Current(b) => b.alcf_hpo_strategy().call_describe(store).await,
            Exports::V01(b) => b.alcf_hpo_strategy().call_describe(store).await.map(legacy::info),
        }
    }

    pub async fn init(&self, store: &mut Store<PluginState>, study: &wit::Study) -> Guest<()> {
        match self {
            Exports::Current(b) => b.alcf_hpo_strategy().call_init(store, study).await,
            Exports::V01(b) => b.alcf_hpo_strategy().call_init(store, &legacy::study(study)).await,
        }
    }

    pub async fn suggest(
        &self,
        store: &mut Store<PluginState>,
        count: u32,
        pending: &[wit::Trial],
    ) -> Guest<Vec<Vec<wit::Assignment>>> {
        match self {
            Exports::Current(b) => b.alcf_hpo_strategy().call_suggest(store, count, pending).await,
            Exports::V01(b) => {
                let r = b.alcf_hpo_strategy().call_suggest(store, count, &legacy::trials(pending)).await;
                r.map(|r| r.map(legacy::suggestions))
            }
        }
    }

    pub async fn observe(&self, store: &mut Store<PluginState>, outcomes: &[wit::Outcome]) -> Guest<()> {
        match self {
            Exports::Current(b) => b.alcf_hpo_strategy().call_observe(store, outcomes).await,
            Exports::V01(b) => b.alcf_hpo_strategy().call_observe(store, &legacy::outcomes(outcomes)).await,
        }
    }

    /// 0.1 has no `judge`: every trial continues.
    pub async fn judge(&self, store: &mut Store<PluginState>, reports: &[wit::Report]) -> Guest<Vec<wit::Verdict>> {
        match self {
            Exports::Current(b) => b.alcf_hpo_strategy().call_judge(store, reports).await,
            Exports::V01(_) => Ok(Ok(vec![wit::Verdict::Continue; reports.len()])),
        }
    }
}
