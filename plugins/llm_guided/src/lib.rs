//! # llm_guided — GP-UCB that hands a share of its trials to an LLM
//!
//! The GP of `gp_ucb` keeps control: it proposes every model-based trial, and on the trials the
//! schedule gives to the LLM the model is asked for proposals instead (one call per suggest for
//! the whole batch, at most `proposals_per_call` per call). The prompt shows the optimizer's
//! state — top 5 and last 20 trials, the trials in flight, the GP's own proposals for those
//! trials with predicted mean and std, and the parameter importance from the GP's ARD length
//! scales — and the answer is constrained by a JSON schema and then validated (see
//! `alcf_plugin_sdk::llm::proposals`). The evidence (Centaur, "When is an LLM worth it for
//! HPO?", 2026) is that such a hybrid with the LLM on ~30% of trials beats both alone, and that a
//! higher share hurts: hence the default.
//!
//! **Fallback**: an LLM error of any kind (not granted, cap reached, not configured, auth,
//! unavailable, rejected), an answer that is not valid JSON of the schema, or proposals that are
//! all invalid or repeats leave the GP's proposal in place for that trial, with a `warn!` naming
//! the reason (at most one per reason kind per 10 trials). With no LLM at all the plugin makes
//! exactly gp_ucb's suggestions.
//!
//! **Determinism**: which trials go to the LLM depends only on the trial's position (trials
//! started before it) and the seed; everything else on the seed, the history and the LLM's
//! answers, which the host records and replays on resume.
//!
//! Options:
//! - `llm_share` (0.3): share of model-based trials given to the LLM (`schedule = "share"`).
//! - `schedule` ("share"): `"share"`, or `"prototype"`, the Python prototype's exploration
//!   schedule: factor `max(0.2, 0.7 − 0.05·⌊t/10⌋)` (t: trials after the initial design), `+0.2`
//!   on a plateau (no improvement in 10 finished trials); the LLM gets the trial when the factor
//!   is above 0.5.
//! - `model` (none: the study's configured model), `temperature` (0.7), `max_tokens` (none: the
//!   service's default).
//! - `n_init` (gp_ucb's default, min(10, 2d + 2)): scrambled-Halton trials before any model.
//! - `rename`, `shift` (false): the guard against a model recognising a well-known function
//!   (names `x1…xn`; numeric values as an affine map of the unit cube).
//! - `proposals_per_call` (the number of LLM trials of the suggest, at most 8): proposals asked
//!   for per call; a batch needing more makes more calls, surplus proposals are dropped.
//! - `gp` ({}): gp_ucb's own options (`acquisition`, `beta_scale`, …) as an object.

use alcf_plugin_sdk::llm::proposals::{
    self, BestTrace, Fallback, FallbackLog, ModelSummary, PromptInput, Settings, TrialLog, View,
};
use alcf_plugin_sdk::*;
use gp_ucb::{Config, GpCore, next_design_point};

/// Which trials go to the LLM.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Schedule {
    /// This share of the model-based trials, spread evenly (seeded phase).
    Share(f64),
    /// The prototype's exploration factor above 0.5.
    Prototype,
}

/// The prototype's plateau: no improvement in this many finished trials.
pub const PLATEAU_TRIALS: usize = 10;
/// Default cap of `proposals_per_call`.
pub const DEFAULT_MAX_PER_CALL: usize = 8;

/// Counters of what happened, for tests and benchmarks.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct LlmStats {
    /// LLM calls made.
    pub calls: usize,
    /// Trials the schedule gave to the LLM.
    pub asked: usize,
    /// Trials that got an LLM proposal.
    pub used: usize,
    /// Trials that fell back to the GP.
    pub fallbacks: usize,
}

pub struct LlmGuided {
    pub core: GpCore,
    halton: Halton,
    view: View,
    trials: TrialLog,
    trace: BestTrace,
    fallbacks: FallbackLog,
    settings: Settings,
    schedule: Schedule,
    n_init: usize,
    per_call: Option<usize>,
    seed: u64,
    objective: String,
    direction: Direction,
    pub stats: LlmStats,
}

const KNOWN: &[&str] = &[
    "llm_share",
    "schedule",
    "model",
    "temperature",
    "max_tokens",
    "n_init",
    "rename",
    "shift",
    "proposals_per_call",
    "gp",
];

impl LlmGuided {
    fn wants_llm(&self, position: usize) -> bool {
        match self.schedule {
            Schedule::Share(share) => proposals::share_picks(self.seed, position, share),
            Schedule::Prototype => {
                proposals::prototype_factor(position.saturating_sub(self.n_init), self.trace.plateau(PLATEAU_TRIALS))
                    > 0.5
            }
        }
    }

    /// Asks the LLM for `slots.len()` proposals; returns the usable points (at most that many).
    /// `batch` holds pending trials and the batch's other points; `gp_points` the GP's proposals
    /// for these slots (shown as the model's predictions).
    fn ask_llm(&mut self, slots: &[usize], base: usize, batch: &[Vec<f64>], gp_points: &[Vec<f64>]) -> Vec<Vec<f64>> {
        let need = slots.len();
        let per_call = self.per_call.unwrap_or_else(|| need.min(DEFAULT_MAX_PER_CALL)).max(1);
        let n_calls = need.div_ceil(per_call);
        let model = ModelSummary {
            predictions: gp_points
                .iter()
                .filter_map(|x| {
                    let (m, s) = self.core.predict(x)?;
                    Some((x.clone(), self.core.history.to_study_value(m), s))
                })
                .collect(),
            importance: self.core.importance().unwrap_or_default(),
        };
        let mut filled: Vec<Vec<f64>> = Vec::new();
        let mut last_failure: Option<Fallback> = None;
        for _ in 0..n_calls {
            let mut in_flight = batch.to_vec();
            in_flight.extend(filled.iter().cloned());
            let mut known: Vec<Vec<f64>> = self.core.history.all_points().cloned().collect();
            known.extend(in_flight.iter().cloned());
            let input = PromptInput {
                objective: &self.objective,
                direction: self.direction,
                log: &self.trials,
                pending: &in_flight,
                model: Some(&model),
                count: per_call,
            };
            self.stats.calls += 1;
            match proposals::ask(&self.view, &input, &self.settings, &known) {
                Ok(a) => {
                    let room = need - filled.len();
                    let n_valid = a.points.len();
                    let take = n_valid.min(room);
                    info!(
                        "llm: trials {}..{}: {take} of {per_call} proposals used ({}, {}+{} tokens; {} rejected, {} repeats, {} clamped)",
                        base + slots[0],
                        base + slots[need - 1],
                        a.response.model,
                        a.response.prompt_tokens,
                        a.response.completion_tokens,
                        a.rejected.len(),
                        a.duplicates,
                        a.clamped,
                    );
                    filled.extend(a.points.into_iter().take(take));
                    if n_valid < per_call.min(room) {
                        let why = a.rejected.first().map(|r| format!(": {r}")).unwrap_or_default();
                        last_failure = Some(Fallback {
                            kind: "short-answer",
                            message: format!(
                                "{n_valid} new valid proposals of {} asked ({} rejected, {} repeats{why})",
                                per_call.min(room),
                                a.rejected.len(),
                                a.duplicates
                            ),
                        });
                    }
                }
                Err(f) => {
                    // A failed call is not retried in this suggest: its trials go to the GP.
                    last_failure = Some(f);
                    break;
                }
            }
            if filled.len() >= need {
                break;
            }
        }
        if filled.len() < need {
            let why = last_failure.unwrap_or(Fallback { kind: "short-answer", message: "too few proposals".into() });
            self.fallbacks.report(base + slots[filled.len()], &why, "the GP");
        }
        filled
    }
}

impl Strategy for LlmGuided {
    fn info() -> PluginInfo {
        PluginInfo::new(
            "llm_guided",
            env!("CARGO_PKG_VERSION"),
            "GP-UCB that hands a share of its trials (default 30%) to an LLM, validating its proposals and falling back to the GP",
        )
        .with_capabilities(&["log", "llm"])
    }

    fn new(study: &Study) -> Result<Self, String> {
        let o = Options::parse(&study.options)?;
        o.check_known(KNOWN)?;
        let gp_opts = match o.get("gp") {
            None | Some(Json::Null) => Options::default(),
            Some(g @ Json::Object(_)) => Options::parse(&g.to_string())?,
            Some(_) => return Err(Options::invalid("gp", "must be an object of gp_ucb options")),
        };
        gp_opts.check_known(Config::KNOWN).map_err(|e| e.replacen("unknown option `", "unknown option `gp.", 1))?;
        let d = study.space.len();
        let cfg = Config::from_options(&gp_opts, d)?;
        let n_init = o.usize("n_init", cfg.n_init)?;
        let schedule = match o.string("schedule", "share")?.as_str() {
            "share" => {
                let share = o.f64("llm_share", 0.3)?;
                if !(0.0..=1.0).contains(&share) {
                    return Err(Options::invalid("llm_share", "must be in [0, 1]"));
                }
                Schedule::Share(share)
            }
            "prototype" => {
                if o.get("llm_share").is_some() {
                    return Err(Options::invalid("llm_share", "applies to schedule \"share\" only"));
                }
                Schedule::Prototype
            }
            other => {
                return Err(Options::invalid("schedule", &format!("is `{other}`; use \"share\" or \"prototype\"")));
            }
        };
        let temperature = o.f64("temperature", 0.7)?;
        if !(0.0..=2.0).contains(&temperature) {
            return Err(Options::invalid("temperature", "must be in [0, 2]"));
        }
        let max_tokens = match o.get("max_tokens") {
            None | Some(Json::Null) => None,
            _ => {
                let m = o.usize("max_tokens", 0)?;
                if m == 0 || m > u32::MAX as usize {
                    return Err(Options::invalid("max_tokens", "must be a positive integer"));
                }
                Some(m as u32)
            }
        };
        let model = match o.get("model") {
            None | Some(Json::Null) => None,
            _ => {
                let m = o.string("model", "")?;
                if m.trim().is_empty() {
                    return Err(Options::invalid("model", "must not be empty (leave it out for the study's model)"));
                }
                Some(m)
            }
        };
        let per_call = match o.get("proposals_per_call") {
            None | Some(Json::Null) => None,
            _ => {
                let k = o.usize("proposals_per_call", 1)?;
                if !(1..=proposals::MAX_PER_CALL).contains(&k) {
                    return Err(Options::invalid(
                        "proposals_per_call",
                        &format!("must be in 1..={}", proposals::MAX_PER_CALL),
                    ));
                }
                Some(k)
            }
        };
        let core = GpCore::new(study, cfg)?;
        let view = View::new(&core.space, o.bool("rename", false)?, o.bool("shift", false)?, study.seed);
        Ok(LlmGuided {
            halton: Halton::new(core.space.dim(), study.seed),
            view,
            trials: TrialLog::default(),
            trace: BestTrace::default(),
            fallbacks: FallbackLog::default(),
            settings: Settings { model, temperature: Some(temperature), max_tokens },
            schedule,
            n_init,
            per_call,
            seed: study.seed,
            objective: study.objective.clone(),
            direction: study.direction,
            stats: LlmStats::default(),
            core,
        })
    }

    fn suggest(&mut self, count: usize, pending: &[Trial]) -> Result<Vec<Params>, String> {
        let space = self.core.space.clone();
        let mut taken = encode_trials(&space, pending);
        let base = self.core.history.n_finished() + taken.len();
        let mut out: Vec<Vec<f64>> = Vec::with_capacity(count);
        // Initial design (and while fewer than 2 trials completed), as gp_ucb.
        while out.len() < count && (base + out.len() < self.n_init || self.core.history.len() < 2) {
            let mut all = taken.clone();
            all.extend(self.core.history.all_points().cloned());
            let x = next_design_point(&space, &mut self.halton, self.core.rng_mut(), &all);
            taken.push(x.clone());
            out.push(x);
        }
        let first_model = out.len();
        if first_model == count {
            return Ok(out.iter().map(|x| space.decode(x)).collect());
        }
        // The GP proposes every model-based trial; the LLM may replace its proposals on the
        // trials the schedule gives it.
        let gp_points = match self.core.propose(count - first_model, &taken) {
            Some(v) => v,
            None => {
                let mut v = Vec::new();
                for _ in first_model..count {
                    let mut all = taken.clone();
                    all.extend(v.iter().cloned());
                    v.push(self.core.random_free(&all));
                }
                v
            }
        };
        let slots: Vec<usize> = (first_model..count).filter(|&k| self.wants_llm(base + k)).collect();
        let mut chosen = gp_points.clone();
        if !slots.is_empty() {
            self.stats.asked += slots.len();
            let mut batch = taken.clone();
            batch.extend(
                (first_model..count).filter(|k| !slots.contains(k)).map(|k| gp_points[k - first_model].clone()),
            );
            let slot_gp: Vec<Vec<f64>> = slots.iter().map(|&k| gp_points[k - first_model].clone()).collect();
            let llm = self.ask_llm(&slots, base, &batch, &slot_gp);
            self.stats.used += llm.len();
            self.stats.fallbacks += slots.len() - llm.len();
            // Slots without an LLM proposal keep a GP proposal of the LLM slots that no LLM
            // proposal repeats (there are always enough: each LLM point repeats at most one).
            let spare: Vec<Vec<f64>> = slot_gp
                .into_iter()
                .filter(|g| !llm.iter().any(|p| space.same_point(p, g, proposals::DUPLICATE_TOL)))
                .collect();
            let mut spare = spare.into_iter();
            let mut llm = llm.into_iter();
            for &k in &slots {
                if let Some(x) = llm.next().or_else(|| spare.next()) {
                    chosen[k - first_model] = x;
                }
            }
        }
        out.extend(chosen);
        Ok(out.iter().map(|x| space.decode(x)).collect())
    }

    fn observe(&mut self, outcomes: &[Outcome]) -> Result<(), String> {
        self.core.observe(outcomes)?;
        self.trials.observe(&self.core.space, outcomes);
        self.trace.observe(&self.core.history, outcomes);
        Ok(())
    }
}

export_strategy!(LlmGuided);

#[cfg(test)]
mod tests;
