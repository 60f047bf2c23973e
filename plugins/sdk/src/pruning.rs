//! Pruners: rules that stop hopeless trials early from their intermediate reports, for
//! [`crate::Strategy::judge`]. Plain Rust, so any strategy can embed one, and the `asha`,
//! `hyperband` and `median_stop` plugins are thin wrappers that sample at random.
//!
//! Every pruner learns from two sources, and only from them: the reports it is asked to judge
//! (running trials), and the curves of finished trials ([`crate::Outcome::curve`], replayed on
//! resume). So a resumed study rebuilds the same state, and a decision follows from what was seen,
//! never from the clock.
//!
//! Values are compared as "lower is better" (maximized objectives are negated on the way in).

use std::collections::{BTreeMap, HashMap};

use crate::json::Options;
use crate::types::{Direction, Outcome, Report, Study, Verdict};

/// A pruning rule.
pub trait Pruner {
    /// A finished trial: its curve joins the evidence.
    fn observe(&mut self, outcome: &Outcome);
    /// One running trial's report.
    fn judge(&mut self, report: &Report) -> Verdict;
}

/// Reads the objective out of metrics, as a "lower is better" number.
#[derive(Clone, Debug)]
pub struct Objective {
    name: String,
    sign: f64,
}

impl Objective {
    pub fn of(study: &Study) -> Objective {
        Objective::named(study, &study.objective)
    }

    /// Another metric of the reports, in the study's direction (e.g. `val_acc` per epoch for an
    /// objective, like `curve_auc`, that only the final result has).
    pub fn named(study: &Study, metric: &str) -> Objective {
        let sign = if study.direction == Direction::Maximize { -1.0 } else { 1.0 };
        Objective { name: metric.to_string(), sign }
    }

    /// The `metric` option, else the objective.
    pub fn from_options(study: &Study, o: &Options) -> Result<Objective, String> {
        Ok(Objective::named(study, &o.string("metric", &study.objective)?))
    }

    /// The objective in `metrics`, when it is there and finite.
    pub fn read(&self, metrics: &[(String, f64)]) -> Option<f64> {
        metrics.iter().find(|(k, _)| *k == self.name).map(|(_, v)| self.sign * v).filter(|v| v.is_finite())
    }
}

/// Asynchronous successive halving (Li et al., "A System for Massively Parallel Hyperparameter
/// Tuning", MLSys 2020), as a pruner: rung `k` sits at step `min_resource * eta^(s + k) - 1`
/// (0-based, so with `min_resource` 1 and `eta` 3: after epochs 1, 3, 9, ...). A trial reaching a
/// rung is recorded there and goes on only if its value is among the best `1/eta` of every value
/// recorded at that rung so far (while fewer than `eta` are, only the best goes on). Trials are
/// never held back to wait for others: the asynchronous rule, which keeps every slot busy.
#[derive(Clone, Debug)]
pub struct Asha {
    objective: Objective,
    min_resource: u32,
    eta: u32,
    /// The bracket's early-stopping rate `s`: its first rung is `eta^s` times later.
    rate: u32,
    /// Rung -> trial id -> value there (a trial is recorded once per rung: a re-sent report
    /// after a resume does not count twice).
    rungs: BTreeMap<u32, HashMap<u64, f64>>,
}

impl Asha {
    pub fn new(objective: Objective, min_resource: u32, eta: u32, rate: u32) -> Result<Asha, String> {
        if min_resource == 0 {
            return Err("options: `min_resource` must be at least 1 (epochs before the first rung)".into());
        }
        if eta < 2 {
            return Err("options: `reduction_factor` must be at least 2".into());
        }
        Ok(Asha { objective, min_resource, eta, rate, rungs: BTreeMap::new() })
    }

    /// Options `min_resource` (1), `reduction_factor` (3), `min_early_stopping_rate` (0).
    pub fn from_options(study: &Study, o: &Options) -> Result<Asha, String> {
        Asha::new(
            Objective::from_options(study, o)?,
            small(o, "min_resource", 1)?,
            small(o, "reduction_factor", 3)?,
            small(o, "min_early_stopping_rate", 0)?,
        )
    }

    /// The rung whose boundary is `step`, if any.
    pub fn rung_at(&self, step: u32) -> Option<u32> {
        let epochs = step as u64 + 1;
        let mut boundary = self.min_resource as u64 * (self.eta as u64).pow(self.rate);
        let mut rung = 0;
        while boundary <= epochs {
            if boundary == epochs {
                return Some(rung);
            }
            boundary = boundary.saturating_mul(self.eta as u64);
            rung += 1;
        }
        None
    }

    /// Records `value` of `trial` at `rung`; whether it is promotable there.
    fn record(&mut self, rung: u32, trial: u64, value: f64) -> bool {
        let at = self.rungs.entry(rung).or_default();
        at.entry(trial).or_insert(value);
        let mut values: Vec<f64> = at.values().copied().collect();
        values.sort_by(f64::total_cmp);
        // The best 1/eta go on; while fewer than eta are recorded, only the best.
        let keep = (values.len() / self.eta as usize).max(1);
        let mine = at[&trial];
        mine <= values[keep - 1]
    }
}

impl Pruner for Asha {
    fn observe(&mut self, outcome: &Outcome) {
        for (step, metrics) in outcome.curve.iter().enumerate() {
            if let (Some(rung), Some(v)) = (self.rung_at(step as u32), self.objective.read(metrics)) {
                self.rungs.entry(rung).or_default().entry(outcome.trial.id).or_insert(v);
            }
        }
    }

    fn judge(&mut self, report: &Report) -> Verdict {
        let (Some(rung), Some(v)) = (self.rung_at(report.step), self.objective.read(&report.metrics)) else {
            return Verdict::Continue;
        };
        if self.record(rung, report.trial.id, v) { Verdict::Continue } else { Verdict::Prune }
    }
}

/// Hyperband (Li et al., JMLR 2018) over asynchronous brackets, as Optuna's `HyperbandPruner`:
/// `brackets` ASHA brackets with early-stopping rates 0, 1, ..., each trial in one of them,
/// chosen from its id with the weights Hyperband gives its brackets (more trials where more are
/// stopped early). Hedges ASHA's bet on how early curves can be trusted.
#[derive(Clone, Debug)]
pub struct Hyperband {
    brackets: Vec<Asha>,
    /// Cumulative weights, for the bracket of a trial.
    cumulative: Vec<f64>,
}

impl Hyperband {
    /// `max_resource` epochs per trial; as many brackets as rungs fit below it.
    pub fn new(objective: Objective, min_resource: u32, max_resource: u32, eta: u32) -> Result<Hyperband, String> {
        if max_resource < min_resource.max(1) {
            return Err("options: `max_resource` must be at least `min_resource`".into());
        }
        // s_max + 1 brackets, s_max = floor(log_eta(max / min)).
        let ratio = max_resource as f64 / min_resource.max(1) as f64;
        let s_max = (ratio.ln() / (eta.max(2) as f64).ln() + 1e-9).floor() as u32;
        let mut brackets = Vec::new();
        let mut weights = Vec::new();
        for s in 0..=s_max {
            brackets.push(Asha::new(objective.clone(), min_resource, eta, s)?);
            // Hyperband's n_i = ceil((s_max + 1) / (s_max + 1 - i) * eta^(s_max - i)) for the
            // bracket that stops earliest (i = rate).
            let n = ((s_max + 1) as f64 / (s_max + 1 - s) as f64 * (eta as f64).powi((s_max - s) as i32)).ceil();
            weights.push(n);
        }
        let total: f64 = weights.iter().sum();
        let mut acc = 0.0;
        let cumulative = weights.iter().map(|w| {
            acc += w / total;
            acc
        });
        Ok(Hyperband { brackets, cumulative: cumulative.collect() })
    }

    /// Options `min_resource` (1), `max_resource` (required: the epochs a full trial runs),
    /// `reduction_factor` (3).
    pub fn from_options(study: &Study, o: &Options) -> Result<Hyperband, String> {
        if o.get("max_resource").is_none() {
            return Err(Options::invalid("max_resource", "is required (the epochs a full trial runs)"));
        }
        let max = small(o, "max_resource", 0)?;
        Hyperband::new(
            Objective::from_options(study, o)?,
            small(o, "min_resource", 1)?,
            max,
            small(o, "reduction_factor", 3)?,
        )
    }

    pub fn brackets(&self) -> usize {
        self.brackets.len()
    }

    /// The bracket of a trial: fixed by its id, so a resume puts it in the same one.
    pub fn bracket_of(&self, trial: u64) -> usize {
        let mut state = trial ^ 0x6879_7065_7262_616e;
        let u = (crate::rng::splitmix64(&mut state) >> 11) as f64 / (1u64 << 53) as f64;
        self.cumulative.iter().position(|c| u < *c).unwrap_or(self.brackets.len() - 1)
    }
}

impl Pruner for Hyperband {
    fn observe(&mut self, outcome: &Outcome) {
        let b = self.bracket_of(outcome.trial.id);
        self.brackets[b].observe(outcome);
    }

    fn judge(&mut self, report: &Report) -> Verdict {
        let b = self.bracket_of(report.trial.id);
        self.brackets[b].judge(report)
    }
}

/// The median stopping rule (Golovin et al., "Google Vizier", KDD 2017; Optuna's
/// `MedianPruner`): a trial is stopped at a step when its value there is worse than the median
/// of the values other trials had at the same step, once `startup_trials` trials have reported
/// that step and after `warmup_steps` steps.
#[derive(Clone, Debug)]
pub struct MedianStop {
    objective: Objective,
    startup_trials: usize,
    warmup_steps: u32,
    /// Step -> trial id -> value.
    steps: BTreeMap<u32, HashMap<u64, f64>>,
}

impl MedianStop {
    pub fn new(objective: Objective, startup_trials: usize, warmup_steps: u32) -> MedianStop {
        MedianStop { objective, startup_trials, warmup_steps, steps: BTreeMap::new() }
    }

    /// Options `startup_trials` (5), `warmup_steps` (0).
    pub fn from_options(study: &Study, o: &Options) -> Result<MedianStop, String> {
        Ok(MedianStop::new(
            Objective::from_options(study, o)?,
            o.usize("startup_trials", 5)?,
            small(o, "warmup_steps", 0)?,
        ))
    }
}

impl Pruner for MedianStop {
    fn observe(&mut self, outcome: &Outcome) {
        for (step, metrics) in outcome.curve.iter().enumerate() {
            if let Some(v) = self.objective.read(metrics) {
                self.steps.entry(step as u32).or_default().entry(outcome.trial.id).or_insert(v);
            }
        }
    }

    fn judge(&mut self, report: &Report) -> Verdict {
        let Some(v) = self.objective.read(&report.metrics) else { return Verdict::Continue };
        let at = self.steps.entry(report.step).or_default();
        let mut others: Vec<f64> = at.iter().filter(|(t, _)| **t != report.trial.id).map(|(_, v)| *v).collect();
        at.entry(report.trial.id).or_insert(v);
        if report.step < self.warmup_steps || others.len() < self.startup_trials {
            return Verdict::Continue;
        }
        others.sort_by(f64::total_cmp);
        let n = others.len();
        let median = if n % 2 == 1 { others[n / 2] } else { 0.5 * (others[n / 2 - 1] + others[n / 2]) };
        if v > median { Verdict::Prune } else { Verdict::Continue }
    }
}

/// An option that is a small non-negative integer (epochs, steps, a factor).
fn small(o: &Options, key: &str, default: u32) -> Result<u32, String> {
    let v = o.usize(key, default as usize)?;
    u32::try_from(v).map_err(|_| Options::invalid(key, "is too large"))
}

/// Every option a pruner reads: for `Options::check_known`.
pub const OPTIONS: &[&str] = &[
    "rule",
    "metric",
    "min_resource",
    "max_resource",
    "reduction_factor",
    "min_early_stopping_rate",
    "startup_trials",
    "warmup_steps",
];

/// The pruner the `rule` option names (`"asha"`, `"hyperband"`, `"median"`; `default` when it is
/// not set), with its own options read from the same object.
pub fn from_options(study: &Study, o: &Options, default: &str) -> Result<Box<dyn Pruner>, String> {
    let rule = o.string("rule", default)?;
    Ok(match rule.as_str() {
        "asha" => Box::new(Asha::from_options(study, o)?),
        "hyperband" => Box::new(Hyperband::from_options(study, o)?),
        "median" => Box::new(MedianStop::from_options(study, o)?),
        other => {
            return Err(Options::invalid(
                "rule",
                &format!("is `{other}`, not a known rule (known: asha, hyperband, median)"),
            ));
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::{Status, Trial};

    fn study() -> Study {
        Study {
            name: "s".into(),
            objective: "loss".into(),
            parallelism: 4,
            objectives: vec![crate::types::Objective { name: "loss".into(), direction: Direction::Minimize }],
            ..Study::new(vec![]).with_seed(1)
        }
    }

    fn report(trial: u64, step: u32, loss: f64) -> Report {
        Report { trial: Trial { id: trial, params: vec![] }, step, metrics: vec![("loss".into(), loss)] }
    }

    fn finished(trial: u64, curve: &[f64]) -> Outcome {
        Outcome {
            trial: Trial { id: trial, params: vec![] },
            status: Status::Completed,
            value: curve.last().copied(),
            metrics: vec![("loss".into(), *curve.last().unwrap())],
            curve: curve.iter().map(|v| vec![("loss".into(), *v)]).collect(),
        }
    }

    #[test]
    fn asha_rungs_sit_at_geometric_epochs() {
        let a = Asha::new(Objective::of(&study()), 1, 3, 0).unwrap();
        let rungs: Vec<(u32, u32)> = (0..30).filter_map(|s| a.rung_at(s).map(|r| (s, r))).collect();
        assert_eq!(rungs, vec![(0, 0), (2, 1), (8, 2), (26, 3)], "after epochs 1, 3, 9, 27");
        let b = Asha::new(Objective::of(&study()), 2, 2, 1).unwrap();
        let rungs: Vec<u32> = (0..20).filter(|s| b.rung_at(*s).is_some()).collect();
        assert_eq!(rungs, vec![3, 7, 15], "min 2 * 2^1 = epoch 4, then 8, 16");
        assert!(Asha::new(Objective::of(&study()), 0, 3, 0).unwrap_err().starts_with("options:"));
        assert!(Asha::new(Objective::of(&study()), 1, 1, 0).unwrap_err().contains("reduction_factor"));
    }

    #[test]
    fn asha_keeps_the_best_third_at_each_rung_and_counts_a_trial_once() {
        let mut a = Asha::new(Objective::of(&study()), 1, 3, 0).unwrap();
        // The first at a rung goes on; a worse second does not (fewer than eta: only the best).
        assert_eq!(a.judge(&report(1, 0, 5.0)), Verdict::Continue);
        assert_eq!(a.judge(&report(2, 0, 6.0)), Verdict::Prune);
        assert_eq!(a.judge(&report(3, 0, 4.0)), Verdict::Continue);
        // Six recorded: the best two go on.
        for (t, v) in [(4, 7.0), (5, 8.0)] {
            assert_eq!(a.judge(&report(t, 0, v)), Verdict::Prune);
        }
        assert_eq!(a.judge(&report(6, 0, 4.5)), Verdict::Continue, "4.5 is second best of six");
        // A step between rungs is never judged; the same report again changes nothing.
        assert_eq!(a.judge(&report(2, 1, 100.0)), Verdict::Continue);
        assert_eq!(a.judge(&report(6, 0, 4.5)), Verdict::Continue);
        assert_eq!(a.rungs[&0].len(), 6);
    }

    #[test]
    fn asha_learns_from_finished_curves_and_maximizes_by_negating() {
        let mut a = Asha::new(Objective::of(&study()), 1, 2, 0).unwrap();
        a.observe(&finished(1, &[3.0, 2.0, 1.5, 1.0]));
        a.observe(&finished(2, &[4.0, 3.0, 2.5, 2.0]));
        assert_eq!(a.judge(&report(3, 0, 3.5)), Verdict::Prune, "worse than the best half of 3.0 and 4.0");
        assert_eq!(a.judge(&report(4, 1, 1.9)), Verdict::Continue, "the best at rung 1 (epoch 2)");
        let mut max = study();
        max.direction = Direction::Maximize;
        let mut m = Asha::new(Objective::of(&max), 1, 2, 0).unwrap();
        m.observe(&finished(1, &[0.5]));
        m.observe(&finished(2, &[0.6]));
        assert_eq!(m.judge(&report(3, 0, 0.9)), Verdict::Continue, "higher is better when maximizing");
        assert_eq!(m.judge(&report(4, 0, 0.1)), Verdict::Prune);
    }

    #[test]
    fn median_stop_waits_for_startup_trials_then_stops_the_worse_half() {
        let mut m = MedianStop::new(Objective::of(&study()), 3, 1);
        for t in 1..=3 {
            m.observe(&finished(t, &[10.0 * t as f64, t as f64]));
        }
        assert_eq!(m.judge(&report(9, 0, 1000.0)), Verdict::Continue, "warm-up step");
        assert_eq!(m.judge(&report(9, 1, 2.5)), Verdict::Prune, "median of 1, 2, 3 is 2");
        assert_eq!(m.judge(&report(8, 1, 1.5)), Verdict::Continue);
        let mut early = MedianStop::new(Objective::of(&study()), 5, 0);
        early.observe(&finished(1, &[1.0]));
        assert_eq!(early.judge(&report(2, 0, 9.0)), Verdict::Continue, "too few trials to judge");
        // A report without the objective is never pruned.
        assert_eq!(m.judge(&Report { metrics: vec![("acc".into(), 0.1)], ..report(7, 1, 0.0) }), Verdict::Continue);
    }

    #[test]
    fn hyperband_brackets_are_fixed_per_trial_and_weighted_to_early_stopping() {
        let h = Hyperband::new(Objective::of(&study()), 1, 27, 3).unwrap();
        assert_eq!(h.brackets(), 4, "s_max = log3(27) = 3");
        let mut counts = [0usize; 4];
        for t in 0..4000 {
            assert_eq!(h.bracket_of(t), h.bracket_of(t));
            counts[h.bracket_of(t)] += 1;
        }
        assert!(counts[0] > counts[1] && counts[1] > counts[2] && counts[2] > counts[3], "{counts:?}");
        assert!(Hyperband::new(Objective::of(&study()), 4, 2, 3).is_err());
    }

    #[test]
    fn pruners_are_chosen_by_option_and_unknown_ones_refused() {
        let s = study();
        let o = Options::parse(r#"{"rule": "median", "startup_trials": 1}"#).unwrap();
        assert!(from_options(&s, &o, "asha").is_ok());
        let o = Options::parse(r#"{"rule": "hyperband"}"#).unwrap();
        assert!(from_options(&s, &o, "asha").err().unwrap().contains("max_resource"));
        let o = Options::parse(r#"{"rule": "hyperband", "max_resource": 27}"#).unwrap();
        assert!(from_options(&s, &o, "asha").is_ok());
        let o = Options::parse(r#"{"rule": "sha"}"#).unwrap();
        let e = from_options(&s, &o, "asha").err().unwrap();
        assert!(e.starts_with("options:") && e.contains("known: asha, hyperband, median"), "{e}");
    }
}
