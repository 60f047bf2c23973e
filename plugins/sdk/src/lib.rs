//! # alcf-plugin-sdk
//!
//! The guest SDK for alcf-host strategy plugins (WIT package `alcf:hpo@0.2.0`, world
//! `strategy-plugin`). A plugin author implements [`Strategy`] and calls [`export_strategy!`]:
//!
//! ```
//! use alcf_plugin_sdk::*;
//! struct MyStrategy { space: Space, seed: u64, last_id: u64 }
//! impl Strategy for MyStrategy {
//!     fn info() -> PluginInfo { PluginInfo::new("mine", "0.1.0", "what it does") }
//!     fn new(study: &Study) -> Result<Self, String> {
//!         Ok(MyStrategy { space: Space::new(&study.space)?, seed: study.seed, last_id: 0 })
//!     }
//!     fn suggest(&mut self, count: usize, pending: &[Trial]) -> Result<Vec<Params>, String> {
//!         // A stream per next trial id: after a resume (fresh instance, replayed history) the
//!         // plugin continues where it was instead of repeating its first suggestions.
//!         let mut rng = Rng::derive(self.seed, pending.iter().map(|t| t.id).fold(self.last_id, u64::max) + 1);
//!         Ok((0..count).map(|_| self.space.decode(&self.space.sample(&mut rng))).collect())
//!     }
//!     fn observe(&mut self, outcomes: &[Outcome]) -> Result<(), String> {
//!         self.last_id = outcomes.iter().map(|o| o.trial.id).fold(self.last_id, u64::max);
//!         Ok(())
//!     }
//! }
//! export_strategy!(MyStrategy);
//! ```
//!
//! Helpers: [`Space`] (search space ⇄ unit cube), [`Rng`] (seeded xoshiro256++), [`History`]
//! (finished trials, lower is better), [`Halton`] (scrambled quasi-random points), [`Options`]
//! (the JSON plugin options), logging macros ([`info!`], [`warn!`], ...), and [`native`] (drive
//! a strategy natively, for tests and benchmarks), and [`llm`] (chat completions through the host's
//! `llm` import, a scripted native backend for tests, and [`llm::proposals`]: the prompt, schema,
//! validation and schedules shared by LLM-guided strategies). Everything but the export layer is
//! plain Rust that builds and tests on the host target.

extern crate self as alcf_plugin_sdk;

pub mod agent;
pub mod history;
pub mod json;
pub mod llm;
pub mod logging;
pub mod native;
pub mod normal;
pub mod pruning;
pub mod qmc;
pub mod rng;
pub mod space;
#[cfg(feature = "testfns")]
pub mod testfns;
pub mod types;

pub use history::{History, encode_trials};
pub use json::{Json, OPTIONS_ERROR_PREFIX, Options};
pub use qmc::Halton;
pub use rng::Rng;
pub use space::Space;
pub use types::*;

/// The ABI version this SDK builds plugins for.
pub const ABI_VERSION: &str = "alcf:hpo@0.2.0";

/// Generated bindings of the `strategy-plugin` world (an implementation detail of
/// [`export_strategy!`]; plugin code should not need them).
#[doc(hidden)]
pub mod bindings {
    wit_bindgen::generate!({
        world: "strategy-plugin",
        // The SDK carries its own copy of the WIT (checked equal to wit/hpo.wit by a test), so a vendored
        // or published copy of this crate builds anywhere.
        path: "wit",
        pub_export_macro: true,
        export_macro_name: "__export_strategy_plugin",
        default_bindings_module: "alcf_plugin_sdk::bindings",
        runtime_path: "alcf_plugin_sdk::__wit_bindgen_rt",
    });
}

/// Generated bindings of the `agent-plugin` world: its types and capabilities are the strategy
/// world's ([`bindings`]); `jobs` and the `agent` export are its own (behind [`export_agent!`]).
#[doc(hidden)]
pub mod agent_bindings {
    wit_bindgen::generate!({
        world: "agent-plugin",
        path: "wit",
        pub_export_macro: true,
        export_macro_name: "__export_agent_plugin",
        default_bindings_module: "alcf_plugin_sdk::agent_bindings",
        runtime_path: "alcf_plugin_sdk::__wit_bindgen_rt",
        with: {
            "alcf:hpo/types@0.2.0": crate::bindings::alcf::hpo::types,
            "alcf:hpo/log@0.2.0": crate::bindings::alcf::hpo::log,
            "alcf:hpo/storage@0.2.0": crate::bindings::alcf::hpo::storage,
            "alcf:hpo/llm@0.2.0": crate::bindings::alcf::hpo::llm,
        },
    });
}

#[doc(hidden)]
pub use wit_bindgen::rt as __wit_bindgen_rt;

/// A search strategy. One instance serves one study; the host calls `new` once (WIT `init`),
/// then `suggest` and `observe` in any interleaving. On resume the host replays every finished
/// trial through `observe` into a fresh instance, so a strategy needs no persistence of its own.
pub trait Strategy: Sized + 'static {
    /// Name, version, description and the capabilities the plugin wants (e.g. `["log"]`).
    fn info() -> PluginInfo;
    /// Builds the strategy for a study (validate the space and parse `study.options` here).
    fn new(study: &Study) -> Result<Self, String>;
    /// Proposes up to `count` assignments (each naming every parameter). `pending` are trials
    /// started but not finished: avoid proposing them again.
    fn suggest(&mut self, count: usize, pending: &[Trial]) -> Result<Vec<Params>, String>;
    /// Finished trials, in the order they finished.
    fn observe(&mut self, outcomes: &[Outcome]) -> Result<(), String> {
        let _ = outcomes;
        Ok(())
    }
    /// Running trials' intermediate reports, in the order they arrived: one [`Verdict`] each, in
    /// the same order. Called only when [`PluginInfo::prunes`] is set. After a resume the reports
    /// of trials still running come again: take decisions from what was seen (replayed outcomes
    /// and reports), not from the clock, and they come out the same.
    fn judge(&mut self, reports: &[Report]) -> Result<Vec<Verdict>, String> {
        Ok(vec![Verdict::Continue; reports.len()])
    }
}

/// Exports a [`Strategy`] implementation as the plugin's `strategy` interface.
///
/// Call it once, at the crate root of a `cdylib` crate. The instance lives in a thread-local
/// between calls; `suggest`/`observe` before a successful `init` return an error, not a trap.
/// The WebAssembly exports are only emitted on `wasm32` targets, so the crate also builds and
/// tests natively, and several strategy crates can be linked together natively.
#[macro_export]
macro_rules! export_strategy {
    ($strategy:ty) => {
        #[doc(hidden)]
        pub struct __AlcfStrategyExport;

        impl $crate::bindings::exports::alcf::hpo::strategy::Guest for __AlcfStrategyExport {
            fn describe() -> $crate::bindings::alcf::hpo::types::Info {
                $crate::__rt::describe::<$strategy>()
            }
            fn init(study: $crate::bindings::alcf::hpo::types::Study) -> ::core::result::Result<(), $crate::__rt::String> {
                $crate::__rt::init::<$strategy>(study)
            }
            fn suggest(
                count: u32,
                pending: $crate::__rt::Vec<$crate::bindings::alcf::hpo::types::Trial>,
            ) -> ::core::result::Result<
                $crate::__rt::Vec<$crate::__rt::Vec<$crate::bindings::alcf::hpo::types::Assignment>>,
                $crate::__rt::String,
            > {
                $crate::__rt::suggest::<$strategy>(count, pending)
            }
            fn observe(
                outcomes: $crate::__rt::Vec<$crate::bindings::alcf::hpo::types::Outcome>,
            ) -> ::core::result::Result<(), $crate::__rt::String> {
                $crate::__rt::observe::<$strategy>(outcomes)
            }
            fn judge(
                reports: $crate::__rt::Vec<$crate::bindings::alcf::hpo::types::Report>,
            ) -> ::core::result::Result<
                $crate::__rt::Vec<$crate::bindings::alcf::hpo::types::Verdict>,
                $crate::__rt::String,
            > {
                $crate::__rt::judge::<$strategy>(reports)
            }
        }

        #[cfg(target_arch = "wasm32")]
        $crate::bindings::__export_strategy_plugin!(__AlcfStrategyExport with_types_in $crate::bindings);
    };
}

/// Conversions and instance storage behind [`export_strategy!`].
#[doc(hidden)]
pub mod __rt {
    use crate::Strategy;
    use crate::bindings::alcf::hpo::types as b;
    use crate::types as t;
    use std::any::Any;
    use std::cell::RefCell;
    pub use std::string::String;
    pub use std::vec::Vec;

    thread_local! {
        static INSTANCE: RefCell<Option<Box<dyn Any>>> = const { RefCell::new(None) };
    }

    fn value_in(v: b::Value) -> t::Value {
        match v {
            b::Value::Float(x) => t::Value::Float(x),
            b::Value::Int(x) => t::Value::Int(x),
            b::Value::Choice(x) => t::Value::Choice(x),
        }
    }
    fn value_out(v: t::Value) -> b::Value {
        match v {
            t::Value::Float(x) => b::Value::Float(x),
            t::Value::Int(x) => b::Value::Int(x),
            t::Value::Choice(x) => b::Value::Choice(x),
        }
    }
    fn trial_in(tr: b::Trial) -> t::Trial {
        t::Trial {
            id: tr.id,
            params: tr.params.into_iter().map(|a| t::Assignment { name: a.name, value: value_in(a.value) }).collect(),
        }
    }
    fn direction_in(d: b::Direction) -> t::Direction {
        match d {
            b::Direction::Minimize => t::Direction::Minimize,
            b::Direction::Maximize => t::Direction::Maximize,
        }
    }
    pub fn study_in(s: b::Study) -> t::Study {
        t::Study {
            name: s.name,
            space: s
                .space
                .into_iter()
                .map(|p| t::Param {
                    name: p.name,
                    domain: match p.domain {
                        b::Domain::Float(r) => t::Domain::Float { low: r.low, high: r.high, log: r.log },
                        b::Domain::Int(r) => t::Domain::Int { low: r.low, high: r.high, log: r.log },
                        b::Domain::Choice(c) => t::Domain::Choice(c),
                    },
                })
                .collect(),
            conditions: s
                .conditions
                .into_iter()
                .map(|c| t::Condition { param: c.param, parent: c.parent, values: c.values })
                .collect(),
            direction: direction_in(s.direction),
            objective: s.objective,
            objectives: s
                .objectives
                .into_iter()
                .map(|o| t::Objective { name: o.name, direction: direction_in(o.direction) })
                .collect(),
            seed: s.seed,
            budget: s.budget,
            parallelism: s.parallelism,
            options: s.options,
        }
    }

    pub fn describe<S: Strategy>() -> b::Info {
        info_out(S::info())
    }

    pub fn info_out(i: t::PluginInfo) -> b::Info {
        b::Info {
            name: i.name,
            version: i.version,
            description: i.description,
            capabilities: i.capabilities,
            prunes: i.prunes,
            multi_objective: i.multi_objective,
        }
    }

    pub fn init<S: Strategy>(study: b::Study) -> Result<(), String> {
        let study = study_in(study);
        let s = S::new(&study)?;
        INSTANCE.with(|c| *c.borrow_mut() = Some(Box::new(s)));
        Ok(())
    }

    fn with_instance<S: Strategy, R>(call: &str, f: impl FnOnce(&mut S) -> Result<R, String>) -> Result<R, String> {
        INSTANCE.with(|c| {
            let mut guard = c.try_borrow_mut().map_err(|_| format!("{call} re-entered the plugin"))?;
            let s = guard
                .as_mut()
                .and_then(|b| b.downcast_mut::<S>())
                .ok_or_else(|| format!("{call} called before a successful init"))?;
            f(s)
        })
    }

    pub fn suggest<S: Strategy>(count: u32, pending: Vec<b::Trial>) -> Result<Vec<Vec<b::Assignment>>, String> {
        let pending: Vec<t::Trial> = pending.into_iter().map(trial_in).collect();
        let mut out = with_instance::<S, _>("suggest", |s| s.suggest(count as usize, &pending))?;
        out.truncate(count as usize);
        Ok(out.into_iter().map(params_out).collect())
    }

    fn outcome_in(o: b::Outcome) -> t::Outcome {
        t::Outcome {
            trial: trial_in(o.trial),
            status: match o.status {
                b::Status::Completed => t::Status::Completed,
                b::Status::Failed => t::Status::Failed,
                b::Status::Pruned => t::Status::Pruned,
            },
            value: o.value,
            metrics: o.metrics,
            curve: o.curve,
        }
    }

    fn params_out(p: t::Params) -> Vec<b::Assignment> {
        p.into_iter().map(|a| b::Assignment { name: a.name, value: value_out(a.value) }).collect()
    }

    pub fn observe<S: Strategy>(outcomes: Vec<b::Outcome>) -> Result<(), String> {
        let outcomes: Vec<t::Outcome> = outcomes.into_iter().map(outcome_in).collect();
        with_instance::<S, _>("observe", |s| s.observe(&outcomes))
    }

    /// The host's `jobs` import behind [`crate::agent::Jobs`].
    struct HostJobs;

    impl crate::agent::Jobs for HostJobs {
        fn submit(&mut self, params: &t::Params, parent: Option<u64>) -> Result<u64, String> {
            crate::agent_bindings::alcf::hpo::jobs::submit(&params_out(params.clone()), parent)
        }
        fn wait(&mut self, timeout: std::time::Duration) -> Result<Vec<t::Outcome>, String> {
            let ms = u32::try_from(timeout.as_millis()).unwrap_or(u32::MAX);
            Ok(crate::agent_bindings::alcf::hpo::jobs::wait(ms)?.into_iter().map(outcome_in).collect())
        }
        fn cancel(&mut self, trial: u64) -> Result<(), String> {
            crate::agent_bindings::alcf::hpo::jobs::cancel(trial)
        }
    }

    pub fn run_agent<A: crate::agent::Agent>(
        study: b::Study,
        history: Vec<b::Outcome>,
        running: Vec<b::Trial>,
        lineage: Vec<b::Lineage>,
    ) -> Result<(), String> {
        let standing = crate::agent::Standing {
            history: history.into_iter().map(outcome_in).collect(),
            running: running.into_iter().map(trial_in).collect(),
            parents: lineage.into_iter().map(|l| (l.trial, l.parent)).collect(),
        };
        A::run(&study_in(study), standing, &mut HostJobs)
    }

    pub fn judge<S: Strategy>(reports: Vec<b::Report>) -> Result<Vec<b::Verdict>, String> {
        let reports: Vec<t::Report> = reports
            .into_iter()
            .map(|r| t::Report { trial: trial_in(r.trial), step: r.step, metrics: r.metrics })
            .collect();
        let verdicts = with_instance::<S, _>("judge", |s| s.judge(&reports))?;
        if verdicts.len() != reports.len() {
            return Err(format!("judge returned {} verdicts for {} reports", verdicts.len(), reports.len()));
        }
        Ok(verdicts
            .into_iter()
            .map(|v| match v {
                t::Verdict::Continue => b::Verdict::Continue,
                t::Verdict::Prune => b::Verdict::Prune,
            })
            .collect())
    }

    /// Drops the stored instance (tests).
    pub fn reset() {
        INSTANCE.with(|c| *c.borrow_mut() = None);
    }
}
