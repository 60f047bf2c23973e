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
//! 4. **Proposal**: with probability `gp_weight` (default 0.3) the global GP-UCB proposal of
//!    gp_ucb; otherwise the best of `candidates` (default 256) uniform points in the region with
//!    the highest bound, scored by the GP's lower confidence bound `μ − 2e·σ` (the GP guides the
//!    search inside the region). Pending trials enter the GP as kriging-believer fantasies and
//!    are never proposed again.
//!
//! Options: `n_init` (10), `gp_weight` (0.3), `radius` (0.2), `max_regions` (10),
//! `percentile` (70), `patience` (15), `candidates` (256), and gp_ucb's options (prefixed
//! `gp_`: `gp_acquisition`, `gp_beta_scale`).

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

/// The exploration factor after `t` model-based trials, on a plateau or not.
pub fn exploration_factor(t: usize, plateau: bool) -> f64 {
    let e = (0.7 - 0.05 * (t / 10) as f64).max(0.2);
    if plateau { (e + 0.2).min(1.0) } else { e }
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
        let mut best: Option<(f64, Vec<f64>)> = None;
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
            if taken.iter().any(|t| self.core.space.same_point(t, &x, 1e-9)) {
                continue;
            }
            let (mu, sd) = self.core.predict(&x)?;
            let ysd = self.core.model().map(|m| m.y_std).unwrap_or(1.0);
            let score = -(mu - kappa * sd) / ysd;
            if best.as_ref().is_none_or(|b| score > b.0) {
                best = Some((score, x));
            }
        }
        best.map(|b| b.1)
    }
}

impl Strategy for RegionUcb {
    fn info() -> PluginInfo {
        PluginInfo::new(
            "region_ucb",
            env!("CARGO_PKG_VERSION"),
            "Region-based UCB exploration around the best trials, blended with GP-UCB proposals",
        )
        .with_capabilities(&["log"])
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
        let percentile = o.f64("percentile", 70.0)?;
        if !(0.0..100.0).contains(&percentile) {
            return Err(Options::invalid("percentile", "must be in [0, 100)"));
        }
        Ok(RegionUcb {
            halton: Halton::new(core.space.dim(), study.seed),
            core,
            rng: Rng::derive(study.seed, 0x4e6),
            n_init: o.usize("n_init", 10)?,
            gp_weight: o.f64("gp_weight", 0.3)?.clamp(0.0, 1.0),
            radius: o.f64("radius", 0.2)?.clamp(1e-3, 1.0),
            max_regions: o.usize("max_regions", 10)?.max(1),
            percentile,
            patience: o.usize("patience", 15)?.max(1),
            candidates: o.usize("candidates", 256)?.max(1),
            best_trace: Vec::new(),
        })
    }

    fn suggest(&mut self, count: usize, pending: &[Trial]) -> Result<Vec<Params>, String> {
        let space = self.core.space.clone();
        let mut taken = encode_trials(&space, pending);
        let mut out = Vec::with_capacity(count);
        for _ in 0..count {
            let started = self.core.history.n_finished() + taken.len();
            let x = if started < self.n_init || self.core.history.len() < 2 {
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
}
