//! # region_ucb — region-based exploration with an upper confidence bound, blended with GP-UCB
//!
//! The prototype's agent, done right (without its LLM branch):
//! 1. **Regions**: the trials above the 70th percentile of quality (the best 30%), taken best
//!    first, each opening a region of radius 0.2 (of every parameter's unit range, L∞) unless it
//!    lies inside an existing one; at most 10 regions.
//! 2. **Region statistics**: every completed trial inside a region counts: n, mean and standard
//!    deviation of its standardized score (higher is better). A region's bound is
//!    `mean + c · std / √n` with `c = 1.96 · e / 0.5`; a region with a single trial borrows the
//!    global standard deviation.
//! 3. **Exploration factor** `e = max(0.2, 0.7 − 0.05 · ⌊t / 10⌋)` (t: trials after the initial
//!    design), `+0.2` (up to 1) while the search has plateaued (no improvement of the best value
//!    in the last `patience` = 15 trials).
//! 4. **Proposal**: with probability `gp_weight` (default 0.6, chosen on the BBOB suite's tuning
//!    instances; it was 0.3, docs/benchmarks.md) the global GP-UCB proposal of gp_ucb; otherwise
//!    the best of `candidates` (default 256) uniform points in the region with the highest bound,
//!    scored by the GP's lower confidence bound `μ − 2e·σ` (the GP guides the search inside the
//!    region). Pending trials enter the GP as kriging-believer fantasies and
//!    are never proposed again.
//!
//! 5. **LLM branch** (the prototype's, off unless `llm = true`): while the exploration factor is
//!    above 0.5 the trial's proposal is asked of the LLM through the SDK's shared proposal
//!    machinery (`alcf_plugin_sdk::llm::proposals`: the optimizer's state in the prompt, a JSON
//!    schema, validation, de-duplication); one call serves every such trial of a suggest (at most
//!    8 per call). Any failure — an LLM error, a cap, an invalid answer, repeats — falls back to
//!    steps 4's proposal for that trial, with a logged reason.
//!
//! Options: `n_init` (10), `gp_weight` (0.6), `radius` (0.2), `max_regions` (10),
//! `percentile` (70), `patience` (15), `candidates` (256), gp_ucb's options (prefixed
//! `gp_`: `gp_acquisition`, `gp_beta_scale`), and the LLM branch's: `llm` (false), `llm_model`
//! (none: the study's model), `llm_temperature` (0.7), `llm_max_tokens` (none).

use alcf_plugin_sdk::llm::proposals::{
    self, Fallback, FallbackLog, ModelSummary, PromptInput, Settings, TrialLog, View,
};
use alcf_plugin_sdk::*;
use gp_ucb::{Config, GpCore, next_design_point};

/// A promising region and the statistics of the trials inside it.
#[derive(Clone, Debug, PartialEq)]
pub struct Region {
    pub center: Vec<f64>,
    pub n: usize,
    /// Mean and standard deviation of the standardized score (higher is better) inside.
    pub mean: f64,
    pub std: f64,
}

impl Region {
    /// `mean + c·std/√n`; single-trial regions use `prior_std`.
    pub fn ucb(&self, c: f64, prior_std: f64) -> f64 {
        let s = if self.n < 2 { prior_std } else { self.std };
        self.mean + c * s / (self.n as f64).sqrt()
    }
}

fn inside(a: &[f64], b: &[f64], radius: f64) -> bool {
    a.iter().zip(b).all(|(x, y)| (x - y).abs() <= radius + 1e-12)
}

/// Builds regions from points `x` with objective `y` (lower is better).
pub fn regions(x: &[Vec<f64>], y: &[f64], radius: f64, max_regions: usize, percentile: f64) -> Vec<Region> {
    let n = y.len();
    if n == 0 {
        return Vec::new();
    }
    let mean = y.iter().sum::<f64>() / n as f64;
    let sd = (y.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / n as f64).sqrt();
    let sd = if sd > 1e-12 { sd } else { 1.0 };
    let score: Vec<f64> = y.iter().map(|v| (mean - v) / sd).collect();
    let mut order: Vec<usize> = (0..n).collect();
    order.sort_by(|&a, &b| y[a].total_cmp(&y[b]));
    let n_top = ((1.0 - percentile / 100.0) * n as f64).ceil().max(1.0) as usize;
    let mut out: Vec<Region> = Vec::new();
    for &i in order.iter().take(n_top) {
        if out.len() >= max_regions {
            break;
        }
        if out.iter().any(|r| inside(&r.center, &x[i], radius)) {
            continue;
        }
        let members: Vec<f64> = (0..n).filter(|&k| inside(&x[i], &x[k], radius)).map(|k| score[k]).collect();
        let m = members.len() as f64;
        let mu = members.iter().sum::<f64>() / m;
        let var =
            if members.len() > 1 { members.iter().map(|v| (v - mu).powi(2)).sum::<f64>() / (m - 1.0) } else { 0.0 };
        out.push(Region { center: x[i].clone(), n: members.len(), mean: mu, std: var.sqrt() });
    }
    out
}

/// The exploration factor after `t` model-based trials, on a plateau or not (the prototype's
/// schedule, shared with llm_guided through the SDK).
pub fn exploration_factor(t: usize, plateau: bool) -> f64 {
    proposals::prototype_factor(t, plateau)
}

/// The most proposals one LLM call asks for.
const LLM_PER_CALL: usize = 8;

/// The LLM branch: how to ask, and what the prompt shows.
struct LlmBranch {
    view: View,
    settings: Settings,
    trials: TrialLog,
    fallbacks: FallbackLog,
    objective: String,
    direction: Direction,
}

pub struct RegionUcb {
    core: GpCore,
    halton: Halton,
    rng: Rng,
    n_init: usize,
    gp_weight: f64,
    radius: f64,
    max_regions: usize,
    percentile: f64,
    patience: usize,
    candidates: usize,
    /// Best value after each completed trial, to detect plateaus.
    best_trace: Vec<f64>,
    /// `None` unless the `llm` option is on.
    llm: Option<LlmBranch>,
}

impl RegionUcb {
    fn plateau(&self) -> bool {
        let n = self.best_trace.len();
        n > self.patience && self.best_trace[n - 1] >= self.best_trace[n - 1 - self.patience]
    }

    fn region_proposal(&mut self, taken: &[Vec<f64>], e: f64) -> Option<Vec<f64>> {
        let h = &self.core.history;
        let regs = regions(&h.x, &h.y, self.radius, self.max_regions, self.percentile);
        let c = 1.96 * e / 0.5;
        let reg = regs.iter().max_by(|a, b| a.ucb(c, 1.0).total_cmp(&b.ucb(c, 1.0)))?.clone();
        if !self.core.update_model() {
            return None;
        }
        let d = self.core.space.dim();
        let kappa = 2.0 * e;
        let mut cands = Vec::with_capacity(self.candidates);
        for _ in 0..self.candidates {
            let x: Vec<f64> = (0..d)
                .map(|j| {
                    if self.core.space.is_choice(j) && self.rng.bool(0.7) {
                        reg.center[j]
                    } else {
                        (reg.center[j] + self.radius * (2.0 * self.rng.f64() - 1.0)).clamp(0.0, 1.0)
                    }
                })
                .collect();
            let x = self.core.space.snap(&x);
            if !taken.iter().any(|t| self.core.space.same_point(t, &x, 1e-9)) {
                cands.push(x);
            }
        }
        // All candidates at once: the GP's triangular solves in blocks (same values as one by one).
        let predictions = self.core.predict_many(&cands)?;
        let ysd = self.core.model().map(|m| m.y_std).unwrap_or(1.0);
        let mut best: Option<(f64, Vec<f64>)> = None;
        for (x, (mu, sd)) in cands.into_iter().zip(predictions) {
            let score = -(mu - kappa * sd) / ysd;
            if best.as_ref().is_none_or(|b| score > b.0) {
                best = Some((score, x));
            }
        }
        best.map(|b| b.1)
    }

    /// Asks the LLM for `count` proposals new to `taken` (pending and batch points); logs and
    /// returns nothing on failure.
    fn llm_proposals(&mut self, count: usize, taken: &[Vec<f64>], position: usize) -> Vec<Vec<f64>> {
        let Some(b) = self.llm.as_mut() else { return Vec::new() };
        let model = ModelSummary {
            predictions: Vec::new(),
            importance: if self.core.update_model() { self.core.importance().unwrap_or_default() } else { Vec::new() },
        };
        let mut known: Vec<Vec<f64>> = self.core.history.all_points().cloned().collect();
        known.extend(taken.iter().cloned());
        let input = PromptInput {
            objective: &b.objective,
            direction: b.direction,
            log: &b.trials,
            pending: taken,
            model: Some(&model),
            count,
        };
        match proposals::ask(&b.view, &input, &b.settings, &known) {
            Ok(a) => {
                info!(
                    "llm: trials {position}..: {} of {count} proposals used ({}, {}+{} tokens; {} rejected, {} repeats, {} clamped)",
                    a.points.len(),
                    a.response.model,
                    a.response.prompt_tokens,
                    a.response.completion_tokens,
                    a.rejected.len(),
                    a.duplicates,
                    a.clamped
                );
                a.points
            }
            Err(f) => {
                b.fallbacks.report(position, &f, "region UCB");
                Vec::new()
            }
        }
    }
}

impl Strategy for RegionUcb {
    fn info() -> PluginInfo {
        PluginInfo::new(
            "region_ucb",
            env!("CARGO_PKG_VERSION"),
            "Region-based UCB exploration around the best trials, blended with GP-UCB proposals",
        )
        .with_capabilities(&["log", "llm"])
    }

    fn new(study: &Study) -> Result<Self, String> {
        let o = Options::parse(&study.options)?;
        o.check_known(&[
            "n_init",
            "gp_weight",
            "radius",
            "max_regions",
            "percentile",
            "patience",
            "candidates",
            "gp_acquisition",
            "gp_beta_scale",
            "llm",
            "llm_model",
            "llm_temperature",
            "llm_max_tokens",
        ])?;
        let mut gp_opts = String::from("{");
        if let Some(a) = o.get("gp_acquisition").and_then(|v| v.as_str()) {
            gp_opts.push_str(&format!("\"acquisition\": \"{a}\""));
        }
        if let Some(b) = o.get("gp_beta_scale").and_then(|v| v.as_f64()) {
            if gp_opts.len() > 1 {
                gp_opts.push(',');
            }
            gp_opts.push_str(&format!("\"beta_scale\": {b}"));
        }
        gp_opts.push('}');
        let d = study.space.len();
        let cfg = Config::from_options(&Options::parse(&gp_opts)?, d)?;
        let core = GpCore::new(study, cfg)?;
        let llm = if o.bool("llm", false)? {
            let temperature = o.f64("llm_temperature", 0.7)?;
            if !(0.0..=2.0).contains(&temperature) {
                return Err(Options::invalid("llm_temperature", "must be in [0, 2]"));
            }
            let max_tokens = match o.get("llm_max_tokens") {
                None | Some(Json::Null) => None,
                _ => match o.usize("llm_max_tokens", 0)? {
                    m @ 1..=0xffff_ffff => Some(m as u32),
                    _ => return Err(Options::invalid("llm_max_tokens", "must be a positive integer")),
                },
            };
            let model = match o.get("llm_model") {
                None | Some(Json::Null) => None,
                _ => Some(o.string("llm_model", "")?).filter(|m| !m.trim().is_empty()),
            };
            Some(LlmBranch {
                view: View::new(&core.space, false, false, study.seed),
                settings: Settings { model, temperature: Some(temperature), max_tokens },
                trials: TrialLog::default(),
                fallbacks: FallbackLog::default(),
                objective: study.objective.clone(),
                direction: study.direction,
            })
        } else {
            for k in ["llm_model", "llm_temperature", "llm_max_tokens"] {
                if o.get(k).is_some() {
                    return Err(Options::invalid(k, "needs `llm = true`"));
                }
            }
            None
        };
        let percentile = o.f64("percentile", 70.0)?;
        if !(0.0..100.0).contains(&percentile) {
            return Err(Options::invalid("percentile", "must be in [0, 100)"));
        }
        Ok(RegionUcb {
            halton: Halton::new(core.space.dim(), study.seed),
            core,
            rng: Rng::derive(study.seed, 0x4e6),
            n_init: o.usize("n_init", 10)?,
            gp_weight: o.f64("gp_weight", 0.6)?.clamp(0.0, 1.0),
            radius: o.f64("radius", 0.2)?.clamp(1e-3, 1.0),
            max_regions: o.usize("max_regions", 10)?.max(1),
            percentile,
            patience: o.usize("patience", 15)?.max(1),
            candidates: o.usize("candidates", 256)?.max(1),
            best_trace: Vec::new(),
            llm,
        })
    }

    fn suggest(&mut self, count: usize, pending: &[Trial]) -> Result<Vec<Params>, String> {
        let space = self.core.space.clone();
        let mut taken = encode_trials(&space, pending);
        let mut out = Vec::with_capacity(count);
        let base = self.core.history.n_finished() + taken.len();
        let plateau = self.plateau();
        // The prototype's branch: trials whose exploration factor exceeds 0.5 go to the LLM.
        let llm_slot = |k: usize| {
            let started = base + k;
            started >= self.n_init && exploration_factor(started - self.n_init, plateau) > 0.5
        };
        let llm_slots: Vec<usize> = match &self.llm {
            Some(_) if self.core.history.len() >= 2 => (0..count).filter(|&k| llm_slot(k)).collect(),
            _ => Vec::new(),
        };
        let mut llm_queue: std::collections::VecDeque<Vec<f64>> = Default::default();
        // LLM slots covered by calls so far; a failed call is not retried in this suggest.
        let mut covered = 0;
        let mut llm_failed = false;
        for k in 0..count {
            let started = self.core.history.n_finished() + taken.len();
            let llm_index = llm_slots.iter().position(|&s| s == k);
            if let Some(i) = llm_index
                && i >= covered
                && !llm_failed
            {
                let n = (llm_slots.len() - i).min(LLM_PER_CALL);
                covered = i + n;
                llm_queue = self.llm_proposals(n, &taken, started).into();
                llm_failed = llm_queue.is_empty();
            }
            let from_llm = match llm_index {
                // Batch points chosen since the call may have taken an LLM proposal's place.
                Some(_) => std::iter::from_fn(|| llm_queue.pop_front())
                    .find(|x| !taken.iter().any(|t| space.same_point(t, x, proposals::DUPLICATE_TOL))),
                None => None,
            };
            if llm_index.is_some()
                && from_llm.is_none()
                && !llm_failed
                && let Some(b) = self.llm.as_mut()
            {
                let why = Fallback { kind: "short-answer", message: "too few new valid proposals".into() };
                b.fallbacks.report(started, &why, "region UCB");
            }
            let x = if let Some(x) = from_llm {
                x
            } else if started < self.n_init || self.core.history.len() < 2 {
                let mut all = taken.clone();
                all.extend(self.core.history.all_points().cloned());
                next_design_point(&space, &mut self.halton, &mut self.rng, &all)
            } else {
                let t = started - self.n_init;
                let e = exploration_factor(t, self.plateau());
                let use_gp = self.rng.bool(self.gp_weight);
                let region = if use_gp { None } else { self.region_proposal(&taken, e) };
                match region {
                    Some(x) => x,
                    None => match self.core.propose(1, &taken) {
                        Some(mut v) => v.remove(0),
                        None => self.core.random_free(&taken),
                    },
                }
            };
            out.push(space.decode(&x));
            taken.push(x);
        }
        Ok(out)
    }

    fn observe(&mut self, outcomes: &[Outcome]) -> Result<(), String> {
        self.core.observe(outcomes)?;
        if let Some(b) = self.llm.as_mut() {
            b.trials.observe(&self.core.space, outcomes);
        }
        for o in outcomes {
            let prev = self.best_trace.last().copied().unwrap_or(f64::INFINITY);
            let v = match (o.status, o.value) {
                // Lower is better: the same sign flip as History (its inverse is itself).
                (Status::Completed, Some(v)) if v.is_finite() => self.core.history.to_study_value(v),
                _ => f64::INFINITY,
            };
            self.best_trace.push(prev.min(v));
        }
        Ok(())
    }
}

export_strategy!(RegionUcb);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn region_statistics() {
        // Points: three close to (0.1, 0.1), one far; y lower is better.
        let x = vec![vec![0.1, 0.1], vec![0.2, 0.15], vec![0.9, 0.9], vec![0.05, 0.25], vec![0.5, 0.5]];
        let y = vec![1.0, 2.0, 3.0, 4.0, 5.0];
        let regs = regions(&x, &y, 0.2, 10, 50.0);
        // Top 50% = ceil(2.5) = 3 trials: indices 0, 1 (inside region 0), 2 -> two regions.
        assert_eq!(regs.len(), 2);
        assert_eq!(regs[0].center, vec![0.1, 0.1]);
        assert_eq!(regs[0].n, 3); // 0, 1, 3
        // Scores: mean 3, population sd √2: s = (3 − y)/√2 -> 1.414, 0.707, −0.707 for 0, 1, 3.
        let s = [2.0 / 2f64.sqrt(), 1.0 / 2f64.sqrt(), -1.0 / 2f64.sqrt()];
        let m = s.iter().sum::<f64>() / 3.0;
        let sd = (s.iter().map(|v| (v - m).powi(2)).sum::<f64>() / 2.0).sqrt();
        assert!((regs[0].mean - m).abs() < 1e-12 && (regs[0].std - sd).abs() < 1e-12);
        assert!((regs[0].ucb(1.96, 1.0) - (m + 1.96 * sd / 3f64.sqrt())).abs() < 1e-12);
        assert_eq!(regs[1].n, 1);
        assert_eq!(regs[1].ucb(2.0, 0.5), regs[1].mean + 1.0);
        assert_eq!(regions(&x, &y, 0.2, 1, 50.0).len(), 1);
        // Exploration factor: decays, floors at 0.2, rises on plateau.
        assert_eq!(exploration_factor(0, false), 0.7);
        assert!((exploration_factor(25, false) - 0.6).abs() < 1e-12);
        assert_eq!(exploration_factor(500, false), 0.2);
        assert!((exploration_factor(500, true) - 0.4).abs() < 1e-12);
    }

    #[test]
    fn deterministic_no_pending_duplicates_degenerate() {
        let f = alcf_testfns::hartmann3();
        let study = Study::new((0..3).map(|i| Param::float(&format!("x{i}"), 0.0, 1.0)).collect()).with_seed(5);
        let obj = |p: &Params| Some(f.eval_f64(&p.iter().map(|a| a.value.as_f64().unwrap()).collect::<Vec<_>>()));
        let run = || native::run(&mut RegionUcb::new(&study).unwrap(), &study, 40, 8, obj).unwrap();
        let a = run();
        assert_eq!(
            a.iter().map(|r| &r.params).collect::<Vec<_>>(),
            run().iter().map(|r| &r.params).collect::<Vec<_>>()
        );
        assert!(f.regret(native::best(&a, Direction::Minimize).unwrap()) < 0.2);
        native::run(&mut RegionUcb::new(&study).unwrap(), &study, 20, 2, |_| None).unwrap();
        native::run(&mut RegionUcb::new(&study).unwrap(), &study, 20, 2, |_| Some(1.0)).unwrap();
        let tiny = Study::new(vec![Param::int("a", 0, 3), Param::choice("c", &["x", "y"])]);
        native::run(&mut RegionUcb::new(&tiny).unwrap(), &tiny, 20, 4, |_| Some(0.0)).unwrap();
    }

    mod llm_branch {
        use super::*;
        use alcf_plugin_sdk::llm::{self, ChatRequest, ChatResponse, LlmError};
        use std::cell::RefCell;
        use std::rc::Rc;

        fn study(options: &str) -> Study {
            Study::new((0..3).map(|i| Param::float(&format!("x{i}"), 0.0, 1.0)).collect())
                .with_seed(5)
                .with_options(options)
        }

        fn run(options: &str, n: usize) -> Vec<Params> {
            let f = alcf_testfns::hartmann3();
            let obj = |p: &Params| Some(f.eval_f64(&p.iter().map(|a| a.value.as_f64().unwrap()).collect::<Vec<_>>()));
            let st = study(options);
            native::run(&mut RegionUcb::new(&st).unwrap(), &st, n, 3, obj)
                .unwrap()
                .into_iter()
                .map(|r| r.params)
                .collect()
        }

        /// A backend answering `answer(call index, count asked)`, counting calls.
        fn script(
            mut answer: impl FnMut(usize, usize) -> Result<String, LlmError> + 'static,
        ) -> Rc<RefCell<Vec<ChatRequest>>> {
            let calls: Rc<RefCell<Vec<ChatRequest>>> = Rc::default();
            let rec = calls.clone();
            llm::set_native_backend(Box::new(move |req: &ChatRequest, s: Option<(&str, &str)>| {
                assert_eq!(s.map(|s| s.0), Some("proposals"));
                let i = rec.borrow().len();
                rec.borrow_mut().push(req.clone());
                let user = &req.messages[1].content;
                let block = user.split("```json\n").nth(1).unwrap().split("\n```").next().unwrap();
                let k = Json::parse(block).unwrap().get("count").unwrap().as_f64().unwrap() as usize;
                Ok(ChatResponse {
                    content: answer(i, k)?,
                    model: "scripted".into(),
                    prompt_tokens: 1,
                    completion_tokens: 1,
                })
            }));
            calls
        }

        #[test]
        fn off_by_default_and_every_failure_falls_back_exactly() {
            let calls = script(|_, _| Ok("{}".into()));
            let plain = run("{}", 30);
            assert!(calls.borrow().is_empty(), "llm = false never calls the LLM");
            for answer in [Err(LlmError::NotGranted("llm cap reached".into())), Ok("not json".into())] {
                let calls = script(move |_, _| answer.clone());
                assert_eq!(run(r#"{"llm": true}"#, 30), plain);
                assert!(!calls.borrow().is_empty());
            }
            llm::clear_native_backend();
            assert_eq!(run(r#"{"llm": true}"#, 30), plain);
        }

        #[test]
        fn exploring_trials_take_the_llm_proposals() {
            let calls = script(|i, k| {
                let items: Vec<String> = (0..k)
                    .map(|j| {
                        let u = ((i * 8 + j) as f64 * 0.618_034) % 1.0;
                        format!(r#"{{"x0": {u}, "x1": 0.5, "x2": {}}}"#, 1.0 - u)
                    })
                    .collect();
                Ok(format!(r#"{{"proposals": [{}]}}"#, items.join(",")))
            });
            let got = run(r#"{"llm": true, "llm_temperature": 0.2}"#, 60);
            llm::clear_native_backend();
            // Trials 10..49 explore (factor > 0.5, unless a plateau extends it): they are the LLM's.
            for p in &got[10..50] {
                assert_eq!(p[1].value, Value::Float(0.5), "{p:?}");
            }
            assert!(got[..10].iter().all(|p| p[1].value != Value::Float(0.5)));
            let calls = calls.borrow();
            assert!(calls.len() >= 14 && calls.len() <= 40, "{}", calls.len());
            assert_eq!(calls[0].temperature, Some(0.2));
            assert!(calls[0].messages[1].content.contains("\"best\""));
        }

        #[test]
        fn llm_options_are_checked() {
            let err = |o: &str| RegionUcb::new(&study(o)).err().unwrap();
            assert!(err(r#"{"llm_model": "m"}"#).starts_with("options: `llm_model` needs"));
            assert!(err(r#"{"llm": true, "llm_temperature": 5}"#).starts_with("options: `llm_temperature`"));
            assert!(err(r#"{"llm": true, "llm_max_tokens": 0}"#).starts_with("options: `llm_max_tokens`"));
            assert!(err(r#"{"llm": 1}"#).starts_with("options: `llm`"));
            assert!(RegionUcb::new(&study(r#"{"llm": true, "llm_model": "m", "llm_max_tokens": 500}"#)).is_ok());
        }
    }
}
