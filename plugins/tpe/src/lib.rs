//! # tpe — Tree-structured Parzen Estimator
//!
//! After `n_startup` quasi-random trials (default 10), the finished trials are split by objective:
//! the best `γ(n) = min(⌈0.1 n⌉, 25)` form the "good" set, the rest (plus failed trials, and
//! pending trials as a constant liar) the "bad" set. Each set gets a Parzen estimator — a mixture
//! with one component per trial plus a broad prior component (weight 1) — over the unit cube:
//! truncated Gaussians on [0, 1] for numeric parameters (ints are binned, log scales are already
//! uniform there), and for categorical ones a distribution putting 1 − ε on the trial's category
//! (ε = 0.2, spread evenly) and uniform for the prior. `n_candidates` (default 24) points are
//! drawn from l(x) (the good estimator) and the one maximizing ln l(x) − ln g(x) is suggested.
//!
//! Bandwidths: univariate (default, like Optuna) — per dimension, each component's σ is the larger
//! distance to its sorted neighbours (prior at 0.5 included; the extreme ones use their inner
//! neighbour only, Optuna's `consider_endpoints=False`), clipped to [1/min(100, n + 1), 1]
//! ("magic clip"); multivariate (`{"multivariate": true}`) — components are joint over all
//! parameters, σ = 0.2 · n^(−1/(d+4)) (Scott's rule), and candidates are scored jointly.
//!
//! Options: `n_startup`, `n_candidates`, `gamma` (fraction, default 0.1), `gamma_max` (25),
//! `multivariate` (false), `constant_liar` (true).

use alcf_plugin_sdk::*;

const LN_SQRT_2PI: f64 = 0.918_938_533_204_672_8;

fn erf_cdf(z: f64) -> f64 {
    // Φ(z) via erfc (Numerical Recipes Chebyshev fit, rel. error < 1.2e-7).
    let x = -z / std::f64::consts::SQRT_2;
    let a = x.abs();
    let t = 1.0 / (1.0 + 0.5 * a);
    let r = t
        * (-a * a - 1.265_512_23
            + t * (1.000_023_68
                + t * (0.374_091_96
                    + t * (0.096_784_18
                        + t * (-0.186_288_06
                            + t * (0.278_868_07
                                + t * (-1.135_203_98
                                    + t * (1.488_515_87 + t * (-0.822_152_23 + t * 0.170_872_77)))))))))
            .exp();
    0.5 * if x >= 0.0 { r } else { 2.0 - r }
}

fn logsumexp(v: &[f64]) -> f64 {
    let m = v.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    if !m.is_finite() {
        return m;
    }
    m + v.iter().map(|x| (x - m).exp()).sum::<f64>().ln()
}

/// One dimension of a Parzen estimator: components 0 (the prior) and 1..=n (one per trial).
#[derive(Clone, Debug)]
pub enum Kernel {
    /// Truncated Gaussians on [0, 1]; `log_z` is ln of each component's mass inside [0, 1].
    Numeric { mu: Vec<f64>, sigma: Vec<f64>, log_z: Vec<f64> },
    /// Categorical: per component, its category (None for the uniform prior).
    Choice { k: usize, cat: Vec<Option<usize>>, eps: f64 },
}

impl Kernel {
    pub fn numeric(mu: Vec<f64>, sigma: Vec<f64>) -> Kernel {
        let log_z =
            mu.iter().zip(&sigma).map(|(&m, &s)| (erf_cdf((1.0 - m) / s) - erf_cdf(-m / s)).max(1e-300).ln()).collect();
        Kernel::Numeric { mu, sigma, log_z }
    }

    pub fn len(&self) -> usize {
        match self {
            Kernel::Numeric { mu, .. } => mu.len(),
            Kernel::Choice { cat, .. } => cat.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// ln density of component `i` at coordinate `x` (categorical: probability of x's category).
    pub fn log_pdf(&self, i: usize, x: f64, space: &Space, j: usize) -> f64 {
        match self {
            Kernel::Numeric { mu, sigma, log_z } => {
                let z = (x - mu[i]) / sigma[i];
                -0.5 * z * z - LN_SQRT_2PI - sigma[i].ln() - log_z[i]
            }
            Kernel::Choice { k, cat, eps } => {
                let c = space.choice_index(j, x);
                match cat[i] {
                    None => -(*k as f64).ln(),
                    Some(_) if *k == 1 => 0.0,
                    Some(ci) if ci == c => (1.0 - eps).ln(),
                    Some(_) => (eps / (*k as f64 - 1.0)).ln(),
                }
            }
        }
    }

    /// Draws a coordinate from component `i`.
    pub fn sample(&self, i: usize, rng: &mut Rng, space: &Space, j: usize) -> f64 {
        match self {
            Kernel::Numeric { mu, sigma, .. } => {
                for _ in 0..100 {
                    let x = mu[i] + sigma[i] * rng.normal();
                    if (0.0..=1.0).contains(&x) {
                        return x;
                    }
                }
                mu[i].clamp(0.0, 1.0)
            }
            Kernel::Choice { k, cat, eps } => {
                let c = match cat[i] {
                    None => rng.below(*k),
                    Some(ci) => {
                        if *k == 1 || !rng.bool(*eps) {
                            ci
                        } else {
                            let o = rng.below(*k - 1);
                            if o >= ci { o + 1 } else { o }
                        }
                    }
                };
                space.choice_coord(j, c)
            }
        }
    }
}

/// A Parzen estimator over the unit cube (one kernel per parameter, shared component weights).
#[derive(Clone, Debug)]
pub struct Parzen {
    pub kernels: Vec<Kernel>,
    /// ln of the normalized component weights (component 0: the prior).
    pub log_w: Vec<f64>,
}

impl Parzen {
    /// Builds the estimator of `points` (unit-cube, snapped).
    pub fn new(space: &Space, points: &[&Vec<f64>], multivariate: bool) -> Parzen {
        let d = space.dim();
        let n = points.len();
        let prior_weight = 1.0;
        let total = prior_weight + n as f64;
        let mut log_w = vec![(prior_weight / total).ln()];
        log_w.extend(std::iter::repeat_n((1.0 / total).ln(), n));
        let kernels = (0..d)
            .map(|j| {
                if space.is_choice(j) {
                    let mut cat = vec![None];
                    cat.extend(points.iter().map(|p| Some(space.choice_index(j, p[j]))));
                    Kernel::Choice { k: space.n_choices(j), cat, eps: 0.2 }
                } else {
                    let mut mu = vec![0.5];
                    mu.extend(points.iter().map(|p| p[j]));
                    let mut sigma = vec![1.0; n + 1];
                    if multivariate {
                        let s = 0.2 * ((n.max(1)) as f64).powf(-1.0 / (d as f64 + 4.0));
                        for v in sigma.iter_mut().skip(1) {
                            *v = s;
                        }
                    } else {
                        // Neighbour distances in sorted order (prior mean included), magic clip.
                        let mut order: Vec<usize> = (0..=n).collect();
                        order.sort_by(|&a, &b| mu[a].total_cmp(&mu[b]));
                        let lo = 1.0 / (100f64.min(1.0 + n as f64));
                        for (r, &i) in order.iter().enumerate() {
                            if i == 0 {
                                continue;
                            }
                            // Like Optuna with consider_endpoints=False: the extreme points use
                            // their inner neighbour only, not the distance to the boundary.
                            let left = if r > 0 { Some(mu[i] - mu[order[r - 1]]) } else { None };
                            let right = if r < n { Some(mu[order[r + 1]] - mu[i]) } else { None };
                            let s = match (left, right) {
                                (Some(a), Some(b)) => a.max(b),
                                (Some(a), None) | (None, Some(a)) => a,
                                (None, None) => 1.0,
                            };
                            sigma[i] = s.clamp(lo, 1.0);
                        }
                    }
                    Kernel::numeric(mu, sigma)
                }
            })
            .collect();
        Parzen { kernels, log_w }
    }

    /// Joint ln density (components shared across parameters).
    pub fn log_pdf_joint(&self, space: &Space, x: &[f64]) -> f64 {
        let terms: Vec<f64> = (0..self.log_w.len())
            .map(|i| self.log_w[i] + (0..x.len()).map(|j| self.kernels[j].log_pdf(i, x[j], space, j)).sum::<f64>())
            .collect();
        logsumexp(&terms)
    }

    /// Marginal ln density of parameter `j` at `x`.
    pub fn log_pdf_1d(&self, space: &Space, j: usize, x: f64) -> f64 {
        let terms: Vec<f64> =
            (0..self.log_w.len()).map(|i| self.log_w[i] + self.kernels[j].log_pdf(i, x, space, j)).collect();
        logsumexp(&terms)
    }

    fn pick_component(&self, rng: &mut Rng) -> usize {
        let u = rng.f64();
        let mut acc = 0.0;
        for (i, lw) in self.log_w.iter().enumerate() {
            acc += lw.exp();
            if u < acc {
                return i;
            }
        }
        self.log_w.len() - 1
    }

    /// A joint sample (one component for all parameters).
    pub fn sample_joint(&self, space: &Space, rng: &mut Rng) -> Vec<f64> {
        let i = self.pick_component(rng);
        (0..self.kernels.len()).map(|j| self.kernels[j].sample(i, rng, space, j)).collect()
    }

    /// A sample of parameter `j` alone.
    pub fn sample_1d(&self, space: &Space, j: usize, rng: &mut Rng) -> f64 {
        let i = self.pick_component(rng);
        self.kernels[j].sample(i, rng, space, j)
    }
}

/// γ(n): size of the good set.
pub fn n_good(n: usize, gamma: f64, gamma_max: usize) -> usize {
    ((gamma * n as f64).ceil() as usize).min(gamma_max).max(1).min(n)
}

pub struct Tpe {
    space: Space,
    history: History,
    rng: Rng,
    halton: Halton,
    n_startup: usize,
    n_candidates: usize,
    gamma: f64,
    gamma_max: usize,
    multivariate: bool,
    constant_liar: bool,
}

impl Tpe {
    /// One TPE proposal given extra "bad" points (pending trials as a constant liar).
    fn propose(&mut self, extra_bad: &[Vec<f64>]) -> Vec<f64> {
        let n = self.history.len();
        let mut order: Vec<usize> = (0..n).collect();
        order.sort_by(|&a, &b| self.history.y[a].total_cmp(&self.history.y[b]));
        let ng = n_good(n, self.gamma, self.gamma_max);
        let good: Vec<&Vec<f64>> = order[..ng].iter().map(|&i| &self.history.x[i]).collect();
        let mut bad: Vec<&Vec<f64>> = order[ng..].iter().map(|&i| &self.history.x[i]).collect();
        bad.extend(self.history.failed.iter());
        bad.extend(extra_bad.iter());
        let l = Parzen::new(&self.space, &good, self.multivariate);
        let g = Parzen::new(&self.space, &bad, self.multivariate);
        let d = self.space.dim();
        if self.multivariate {
            let mut best = (f64::NEG_INFINITY, None);
            for _ in 0..self.n_candidates {
                let x = self.space.snap(&l.sample_joint(&self.space, &mut self.rng));
                let s = l.log_pdf_joint(&self.space, &x) - g.log_pdf_joint(&self.space, &x);
                if s > best.0 || best.1.is_none() {
                    best = (s, Some(x));
                }
            }
            best.1.unwrap()
        } else {
            (0..d)
                .map(|j| {
                    let mut best = (f64::NEG_INFINITY, 0.5);
                    for c in 0..self.n_candidates {
                        let x = self.space.snap(&{
                            let mut p = vec![0.5; d];
                            p[j] = l.sample_1d(&self.space, j, &mut self.rng);
                            p
                        })[j];
                        let s = l.log_pdf_1d(&self.space, j, x) - g.log_pdf_1d(&self.space, j, x);
                        if s > best.0 || c == 0 {
                            best = (s, x);
                        }
                    }
                    best.1
                })
                .collect()
        }
    }
}

impl Strategy for Tpe {
    fn info() -> PluginInfo {
        PluginInfo::new("tpe", env!("CARGO_PKG_VERSION"), "Tree-structured Parzen Estimator (Optuna-style)")
    }

    fn new(study: &Study) -> Result<Self, String> {
        let o = Options::parse(&study.options)?;
        o.check_known(&["n_startup", "n_candidates", "gamma", "gamma_max", "multivariate", "constant_liar"])?;
        let space = Space::new(&study.space)?;
        let gamma = o.f64("gamma", 0.1)?;
        if !(gamma > 0.0 && gamma <= 1.0) {
            return Err("plugin option `gamma` must be in (0, 1]".into());
        }
        Ok(Tpe {
            halton: Halton::new(space.dim(), study.seed),
            space,
            history: History::new(study.direction),
            rng: Rng::derive(study.seed, 0x7e),
            n_startup: o.usize("n_startup", 10)?,
            n_candidates: o.usize("n_candidates", 24)?.max(1),
            gamma,
            gamma_max: o.usize("gamma_max", 25)?.max(1),
            multivariate: o.bool("multivariate", false)?,
            constant_liar: o.bool("constant_liar", true)?,
        })
    }

    fn suggest(&mut self, count: usize, pending: &[Trial]) -> Result<Vec<Params>, String> {
        let mut taken = encode_trials(&self.space, pending);
        let mut out = Vec::with_capacity(count);
        for _ in 0..count {
            let mut x = if self.history.n_finished() + taken.len() < self.n_startup || self.history.is_empty() {
                // Skip design points already finished (a resumed study replays its history).
                let mut x = self.space.snap(&self.halton.next_point());
                for _ in 0..1000 {
                    if !self.history.all_points().any(|p| self.space.same_point(p, &x, 1e-12)) {
                        break;
                    }
                    x = self.space.snap(&self.halton.next_point());
                }
                x
            } else {
                let liars: Vec<Vec<f64>> = if self.constant_liar { taken.clone() } else { Vec::new() };
                self.propose(&liars)
            };
            let mut tries = 0;
            while taken.iter().any(|t| self.space.same_point(t, &x, 1e-12)) && tries < 200 {
                x = self.space.sample(&mut self.rng);
                tries += 1;
            }
            out.push(self.space.decode(&x));
            taken.push(x);
        }
        Ok(out)
    }

    fn observe(&mut self, outcomes: &[Outcome]) -> Result<(), String> {
        self.history.observe(&self.space, outcomes)
    }
}

export_strategy!(Tpe);

#[cfg(test)]
mod tests;
