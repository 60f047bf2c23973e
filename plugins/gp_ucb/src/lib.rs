//! # gp_ucb — Gaussian-process Bayesian optimization
//!
//! - **Model**: [`gp::Gp`], Matérn-5/2 with one length scale per parameter, categorical
//!   parameters through a Hamming-style kernel term, standardized outputs; hyperparameters by
//!   MAP (log marginal likelihood + weak priors) with multi-start L-BFGS and analytic gradients,
//!   warm-started from the previous fit.
//! - **Refit policy**: hyperparameters are refit when the data grew by `refit_every` points
//!   (default: max(1, n/16), so every point early on, every ~60 at n = 1000), on at most
//!   `max_fit_points` (default 200: the best quarter + a seeded random rest). Between refits the
//!   Cholesky factor grows by one row per observation (O(n²)), never refactored.
//! - **Large histories**: above `max_model_points` (default 2000) observations the model is
//!   local, as in TuRBO's trust regions: `local_points` (default 1000) rows, the best quarter by
//!   value and the rest nearest the incumbent in the kernel's scaled distance, refactored at every
//!   suggestion (O(m³) with m = 1000 instead of O(n³) and O(n²) per prediction).
//! - **Acquisition**: UCB (lower confidence bound for minimization) `μ − √β_t σ` with the GP-UCB
//!   schedule `β_t = s · 2 ln(d t² π² / 0.6)` (t = trials so far + 1, s = `beta_scale`,
//!   default 0.02: the theoretical s = 1 over-explores badly in 100-trial budgets; 0.02 gives
//!   √β ≈ 0.6 at t = 10 and 0.74 at t = 100 in 6-D), or log-EI with `{"acquisition": "logei"}`. Maximized by a global search
//!   (scrambled Halton candidates + Gaussian perturbations of the best points at several scales)
//!   followed by projected L-BFGS from the best candidates on numeric coordinates and a sweep
//!   over the categories of each categorical parameter.
//! - **Batches / pending trials**: kriging believer — every pending trial and every point already
//!   chosen in this batch is added to a copy of the model with its posterior mean as a fantasy
//!   value, which collapses the variance there; a point that still decodes to a pending one is
//!   replaced by the next-best candidate, so parallel workers never get duplicates.
//! - **Initial design**: the first `n_init` (default min(10, 2d + 2)) trials come from a
//!   scrambled Halton sequence (seeded by the study seed).
//! - **Failures**: failed/pruned trials are imputed with the worst observed value (`"failed":
//!   "worst"`, default) so the model steers away from them, or ignored (`"failed": "ignore"`).
//! - Numerics: noise variance ≥ 1e-8 (standardized units), escalating jitter when a Cholesky
//!   factorization fails, constant objectives handled by the standardization.

pub mod acq;
pub mod gp;
pub mod lbfgs;
pub mod linalg;

use alcf_plugin_sdk::*;
use gp::{Gp, Hyper};

/// Which acquisition function to maximize.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Acquisition {
    /// μ − √β σ (as a bound to minimize; maximized as −μ + √β σ).
    Ucb,
    /// ln EI.
    LogEi,
}

/// Options (from `study.options`).
#[derive(Clone, Debug)]
pub struct Config {
    pub acquisition: Acquisition,
    pub n_init: usize,
    pub beta_scale: f64,
    /// A fixed β instead of the schedule.
    pub beta: Option<f64>,
    /// Refit hyperparameters after this many new points (None: max(1, n/16)).
    pub refit_every: Option<usize>,
    pub max_fit_points: usize,
    /// Above this many observations the model is local: built on `local_points` of them (the
    /// best quarter and the incumbent's nearest neighbours), rebuilt at every suggestion.
    pub max_model_points: usize,
    pub local_points: usize,
    /// Acquisition candidates per suggestion (None: adapt to the data size).
    pub candidates: Option<usize>,
    pub impute_failed: bool,
}

impl Config {
    pub const KNOWN: &'static [&'static str] = &[
        "acquisition",
        "n_init",
        "beta_scale",
        "beta",
        "refit_every",
        "max_fit_points",
        "max_model_points",
        "local_points",
        "candidates",
        "failed",
    ];

    pub fn from_options(o: &Options, d: usize) -> Result<Config, String> {
        let acquisition = match o.string("acquisition", "ucb")?.to_ascii_lowercase().as_str() {
            "ucb" | "lcb" => Acquisition::Ucb,
            "logei" | "log_ei" | "ei" => Acquisition::LogEi,
            other => return Err(Options::invalid("acquisition", &format!("is `{other}`; use \"ucb\" or \"logei\""))),
        };
        let beta = match o.get("beta") {
            None | Some(Json::Null) => None,
            _ => Some(o.f64("beta", 0.0)?),
        };
        let refit_every = match o.get("refit_every") {
            None | Some(Json::Null) => None,
            _ => Some(o.usize("refit_every", 1)?.max(1)),
        };
        let candidates = match o.get("candidates") {
            None | Some(Json::Null) => None,
            _ => Some(o.usize("candidates", 1000)?.max(8)),
        };
        let impute_failed = match o.string("failed", "worst")?.as_str() {
            "worst" => true,
            "ignore" => false,
            other => return Err(Options::invalid("failed", &format!("is `{other}`; use \"worst\" or \"ignore\""))),
        };
        Ok(Config {
            acquisition,
            n_init: o.usize("n_init", (2 * d + 2).min(10))?,
            beta_scale: o.f64("beta_scale", 0.02)?,
            beta,
            refit_every,
            max_fit_points: o.usize("max_fit_points", 200)?.max(16),
            max_model_points: o.usize("max_model_points", 2000)?.max(16),
            local_points: o.usize("local_points", 1000)?.max(16),
            candidates,
            impute_failed,
        })
    }
}

/// The GP model over a study's history with its refit policy: the reusable core of gp_ucb
/// (region_ucb builds on it).
#[derive(Clone, Debug)]
pub struct GpCore {
    pub space: Space,
    pub cfg: Config,
    pub history: History,
    cat: Vec<bool>,
    /// Observation order: (point, Some(y) | None for failed).
    data: Vec<(Vec<f64>, Option<f64>)>,
    gp: Option<Gp>,
    /// `data[..in_model]` is in `gp`.
    in_model: usize,
    last_fit_n: usize,
    hyper: Option<Hyper>,
    fits: usize,
    rng: Rng,
    seed: u64,
    calls: u64,
}

impl GpCore {
    pub fn new(study: &Study, cfg: Config) -> Result<GpCore, String> {
        let space = Space::new(&study.space)?;
        if space.dim() == 0 {
            return Err("the search space has no parameters".into());
        }
        let cat = (0..space.dim()).map(|j| space.is_choice(j)).collect();
        Ok(GpCore {
            space,
            cfg,
            history: History::new(study.direction),
            cat,
            data: Vec::new(),
            gp: None,
            in_model: 0,
            last_fit_n: 0,
            hyper: None,
            fits: 0,
            rng: Rng::derive(study.seed, 0x6770),
            seed: study.seed,
            calls: 0,
        })
    }

    pub fn observe(&mut self, outcomes: &[Outcome]) -> Result<(), String> {
        let before_ok = self.history.len();
        let before_failed = self.history.failed.len();
        self.history.observe(&self.space, outcomes)?;
        // Re-walk the new entries in outcome order.
        let (mut i_ok, mut i_f) = (before_ok, before_failed);
        for o in outcomes {
            let ok = matches!((o.status, o.value), (Status::Completed, Some(v)) if v.is_finite());
            if ok {
                self.data.push((self.history.x[i_ok].clone(), Some(self.history.y[i_ok])));
                i_ok += 1;
            } else {
                self.data.push((self.history.failed[i_f].clone(), None));
                i_f += 1;
            }
        }
        Ok(())
    }

    /// Training rows: completed, plus failed imputed with the worst value.
    fn rows(&self, upto: usize) -> (Vec<f64>, Vec<f64>) {
        let worst = self.history.y.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let mut x = Vec::new();
        let mut y = Vec::new();
        for (p, v) in &self.data[..upto] {
            match v {
                Some(v) => {
                    x.extend_from_slice(p);
                    y.push(*v);
                }
                None if self.cfg.impute_failed && worst.is_finite() => {
                    x.extend_from_slice(p);
                    y.push(worst);
                }
                None => {}
            }
        }
        (x, y)
    }

    fn refit_every(&self, n: usize) -> usize {
        self.cfg.refit_every.unwrap_or((n / 16).max(1))
    }

    /// Brings the model up to date with the history (refit or incremental update).
    /// Returns false when there is not enough data for a model (fewer than 2 completed trials).
    pub fn update_model(&mut self) -> bool {
        if self.history.len() < 2 {
            return false;
        }
        let n = self.data.len();
        if self.gp.is_some() && self.in_model == n {
            return true;
        }
        let need_fit = self.gp.is_none() || n - self.last_fit_n >= self.refit_every(self.last_fit_n);
        if !need_fit && n > self.cfg.max_model_points {
            // A local model has no incremental update: its rows change with the incumbent.
            if let Some(hyper) = self.hyper.clone() {
                let (x, y) = self.rows(n);
                self.gp = self.build_model(&x, &y, hyper);
                self.in_model = n;
                if self.gp.is_some() {
                    return true;
                }
            }
        }
        if !need_fit {
            let worst = self.history.y.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            let gp = self.gp.as_mut().unwrap();
            let mut ok = true;
            for (p, v) in &self.data[self.in_model..n] {
                let y = match v {
                    Some(v) => *v,
                    None if self.cfg.impute_failed => worst,
                    None => continue,
                };
                ok &= gp.add(p, y);
            }
            self.in_model = n;
            if ok {
                return true;
            }
        }
        self.fit();
        self.gp.is_some()
    }

    fn fit(&mut self) {
        let d = self.space.dim();
        let n_all = self.data.len();
        let (x, y) = self.rows(n_all);
        let n = y.len();
        // Subset for the hyperparameter fit.
        let (fx, fy) = if n > self.cfg.max_fit_points {
            let m = self.cfg.max_fit_points;
            let mut order: Vec<usize> = (0..n).collect();
            order.sort_by(|&a, &b| y[a].total_cmp(&y[b]));
            let n_best = m / 4;
            let mut chosen: Vec<usize> = order[..n_best].to_vec();
            let mut rest: Vec<usize> = order[n_best..].to_vec();
            let mut r = Rng::derive(self.seed, 0x5b5e7 ^ n as u64);
            r.shuffle(&mut rest);
            chosen.extend_from_slice(&rest[..m - n_best]);
            chosen.sort_unstable();
            let fx: Vec<f64> = chosen.iter().flat_map(|&i| x[i * d..(i + 1) * d].iter().copied()).collect();
            let fy: Vec<f64> = chosen.iter().map(|&i| y[i]).collect();
            (fx, fy)
        } else {
            (x.clone(), y.clone())
        };
        let (m, s) = gp::standardization(&fy);
        let fys: Vec<f64> = fy.iter().map(|v| (v - m) / s).collect();
        let mut starts = Vec::new();
        if let Some(h) = &self.hyper {
            starts.push(h.clone());
        }
        let fresh = self.fits < 3 || self.fits.is_multiple_of(8);
        if fresh || starts.is_empty() {
            starts.push(Hyper::default_for(d));
        }
        let n_random = if self.fits < 2 {
            2
        } else if fresh {
            1
        } else {
            0
        };
        let max_iter = if fresh { 60 } else { 30 };
        let hyper = gp::fit_hyper(&fx, fy.len(), d, &fys, &self.cat, &starts, n_random, max_iter, &mut self.rng);
        self.fits += 1;
        self.gp = self.build_model(&x, &y, hyper.clone());
        self.hyper = Some(hyper);
        self.in_model = n_all;
        self.last_fit_n = n_all;
    }

    /// The posterior over rows `x`, `y` (all of them, or above `max_model_points` a local
    /// subset), with the default hyperparameters if `hyper` fails to factorize.
    fn build_model(&self, x: &[f64], y: &[f64], hyper: Hyper) -> Option<Gp> {
        let d = self.space.dim();
        let (lx, ly);
        let (x, y) = if y.len() > self.cfg.max_model_points {
            (lx, ly) = self.local_rows(x, y, &hyper);
            (&lx[..], &ly[..])
        } else {
            (x, y)
        };
        Gp::new(x, d, y, &self.cat, hyper).or_else(|| Gp::new(x, d, y, &self.cat, Hyper::default_for(d)))
    }

    /// The rows of a local model (the route past a few thousand observations, where a full GP's
    /// O(n³) factorization and O(n²) per prediction are too slow; as TuRBO's trust region, the
    /// model is exact where the search is): the best quarter of `local_points` by value, for where
    /// good regions are, and the rest nearest to the incumbent in the kernel's scaled distance.
    fn local_rows(&self, x: &[f64], y: &[f64], hyper: &Hyper) -> (Vec<f64>, Vec<f64>) {
        let d = self.space.dim();
        let n = y.len();
        let m = self.cfg.local_points.min(n);
        let mut order: Vec<usize> = (0..n).collect();
        order.sort_by(|&a, &b| y[a].total_cmp(&y[b]).then(a.cmp(&b)));
        let mut chosen = vec![false; n];
        for &i in &order[..m / 4] {
            chosen[i] = true;
        }
        let w: Vec<f64> = hyper.log_w.iter().map(|v| v.exp()).collect();
        let best = &x[order[0] * d..(order[0] + 1) * d];
        let mut near: Vec<(f64, usize)> = (0..n)
            .filter(|&i| !chosen[i])
            .map(|i| (gp::sqdist(best, &x[i * d..(i + 1) * d], &w, &self.cat), i))
            .collect();
        near.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
        for &(_, i) in near.iter().take(m - m / 4) {
            chosen[i] = true;
        }
        let mut lx = Vec::with_capacity(m * d);
        let mut ly = Vec::with_capacity(m);
        for i in (0..n).filter(|&i| chosen[i]) {
            lx.extend_from_slice(&x[i * d..(i + 1) * d]);
            ly.push(y[i]);
        }
        (lx, ly)
    }

    /// The current model (after [`GpCore::update_model`]).
    pub fn model(&self) -> Option<&Gp> {
        self.gp.as_ref()
    }

    /// Posterior mean and standard deviation at `x`, in the history's units (lower is better).
    pub fn predict(&self, x: &[f64]) -> Option<(f64, f64)> {
        let gp = self.gp.as_ref()?;
        let (m, v) = gp.predict(x);
        Some((m * gp.y_std + gp.y_mean, v.sqrt() * gp.y_std))
    }

    /// [`GpCore::predict`] at many points (bit-identical, the triangular solves in blocks).
    pub fn predict_many(&self, xs: &[Vec<f64>]) -> Option<Vec<(f64, f64)>> {
        let gp = self.gp.as_ref()?;
        Some(gp.predict_many(xs).into_iter().map(|(m, v)| (m * gp.y_std + gp.y_mean, v.sqrt() * gp.y_std)).collect())
    }

    /// ARD length scales ℓ_j of the current model in unit-cube units (the kernel weighs squared
    /// distances by w_j = 1/ℓ_j²), or `None` before there is a model.
    pub fn lengthscales(&self) -> Option<Vec<f64>> {
        self.gp.as_ref().map(|g| g.hyper.log_w.iter().map(|lw| (-0.5 * lw).exp()).collect())
    }

    /// Relevance of each parameter, 1/ℓ_j normalized to sum to 1 (a short length scale means the
    /// objective changes quickly along that parameter), or `None` before there is a model.
    pub fn importance(&self) -> Option<Vec<f64>> {
        let inv: Vec<f64> = self.lengthscales()?.iter().map(|l| 1.0 / l).collect();
        let total: f64 = inv.iter().sum();
        (total.is_finite() && total > 0.0).then(|| inv.iter().map(|v| v / total).collect())
    }

    fn candidate_budget(&self, n: usize) -> usize {
        if let Some(c) = self.cfg.candidates {
            return c;
        }
        let d = self.space.dim() as f64;
        let cost = (n * n) as f64 / 2.0 + 12.0 * n as f64 * d + 100.0;
        ((4e7 / cost) as usize).clamp(160, 2000)
    }

    /// Proposes `count` unit-cube points given pending ones (kriging believer), or `None` when
    /// there is no model yet. The first proposal is the acquisition maximizer.
    pub fn propose(&mut self, count: usize, pending: &[Vec<f64>]) -> Option<Vec<Vec<f64>>> {
        if !self.update_model() {
            return None;
        }
        self.calls += 1;
        if count == 1 && pending.is_empty() {
            // Nothing to fantasize: the model itself, not a copy (at n = 1000 the copy and the
            // fantasy update cost as much as a tenth of the whole suggestion).
            let model = self.gp.take()?;
            let x = self.pick(&model, &[], self.history.n_finished() + 1, 0);
            self.gp = Some(model);
            return Some(vec![x]);
        }
        let mut model = self.gp.as_ref()?.clone();
        let mut taken: Vec<Vec<f64>> = Vec::new();
        for p in pending {
            let (mu, _) = model.predict(p);
            model.add(p, mu * model.y_std + model.y_mean);
            taken.push(p.clone());
        }
        let mut out = Vec::with_capacity(count);
        for k in 0..count {
            let t = self.history.n_finished() + pending.len() + k + 1;
            let x = self.pick(&model, &taken, t, k as u64);
            let (mu, _) = model.predict(&x);
            model.add(&x, mu * model.y_std + model.y_mean);
            taken.push(x.clone());
            out.push(x);
        }
        Some(out)
    }

    /// The acquisition maximizer under `model` that is neither taken nor already observed (or,
    /// failing that, not taken; or a random free point).
    fn pick(&mut self, model: &Gp, taken: &[Vec<f64>], t: usize, salt: u64) -> Vec<f64> {
        let ranked = self.maximize(model, t, salt);
        let pick = ranked
            .iter()
            .find(|(_, x)| {
                !taken.iter().any(|p| self.space.same_point(p, x, 1e-9))
                    && !self.history.all_points().any(|p| self.space.same_point(p, x, 1e-9))
            })
            .or_else(|| ranked.iter().find(|(_, x)| !taken.iter().any(|p| self.space.same_point(p, x, 1e-9))))
            .map(|(_, x)| x.clone());
        match pick {
            Some(x) => x,
            None => self.random_free(taken),
        }
    }

    /// The core's random stream (hyperparameter restarts, random fallbacks): a strategy built on
    /// the core that draws its design fallbacks from it too stays identical to gp_ucb.
    pub fn rng_mut(&mut self) -> &mut Rng {
        &mut self.rng
    }

    /// A random point that is not in `taken` (if one is found in 1000 draws).
    pub fn random_free(&mut self, taken: &[Vec<f64>]) -> Vec<f64> {
        let mut x = self.space.sample(&mut self.rng);
        for _ in 0..1000 {
            if !taken.iter().any(|p| self.space.same_point(p, &x, 1e-12)) {
                break;
            }
            x = self.space.sample(&mut self.rng);
        }
        x
    }

    fn acq_value(&self, model: &Gp, mu: f64, var: f64, kappa: f64, best: f64) -> f64 {
        let s = var.sqrt();
        match self.cfg.acquisition {
            Acquisition::Ucb => -mu + kappa * s,
            Acquisition::LogEi => acq::log_ei(mu, s.max(1e-9 * model.signal_variance().sqrt()), best).0,
        }
    }

    /// Ranked (acquisition, point) pairs, best first.
    fn maximize(&mut self, model: &Gp, t: usize, salt: u64) -> Vec<(f64, Vec<f64>)> {
        let d = self.space.dim();
        let n = model.n();
        let kappa = self.cfg.beta.unwrap_or_else(|| acq::beta(t, d, self.cfg.beta_scale)).max(0.0).sqrt();
        let best = model.y.iter().copied().fold(f64::INFINITY, f64::min);
        let budget = self.candidate_budget(n);
        let mut rng = Rng::derive(self.seed, (self.calls << 8) ^ salt ^ 0xACC);
        // Global: Halton (fresh scrambling per call) and perturbations of the best observed points.
        let n_local = if self.history.is_empty() { 0 } else { budget * 2 / 5 };
        let mut halton = Halton::new(d, rng.next_u64());
        let mut cands: Vec<Vec<f64>> = halton.take(budget - n_local).into_iter().map(|x| self.space.snap(&x)).collect();
        let mut order: Vec<usize> = (0..self.history.len()).collect();
        order.sort_by(|&a, &b| self.history.y[a].total_cmp(&self.history.y[b]));
        let top: Vec<&Vec<f64>> = order.iter().take(5).map(|&i| &self.history.x[i]).collect();
        if !top.is_empty() {
            let scales = [0.001, 0.01, 0.05, 0.15];
            for i in 0..n_local {
                let base = if i % 2 == 0 { top[0] } else { top[(i / 2) % top.len()] };
                let s = scales[(i / 2) % scales.len()];
                let x: Vec<f64> = (0..d)
                    .map(|j| {
                        if self.cat[j] {
                            if rng.bool(0.15) { rng.f64() } else { base[j] }
                        } else {
                            (base[j] + s * rng.normal()).clamp(0.0, 1.0)
                        }
                    })
                    .collect();
                cands.push(self.space.snap(&x));
            }
        }
        // Only the best of the candidates matter (the list is cut to KEEP below, the L-BFGS starts
        // come from its head), and only they are scored in full.
        const KEEP: usize = 64;
        let n_starts = if n > 400 { 2 } else { 4 };
        let distinct = |list: &[(f64, Vec<f64>)]| {
            let mut starts: Vec<Vec<f64>> = Vec::new();
            for (_, x) in list {
                if starts.len() >= n_starts {
                    break;
                }
                if !starts.iter().any(|s| s.iter().zip(x).map(|(a, b)| (a - b).abs()).sum::<f64>() < 1e-3) {
                    starts.push(x.clone());
                }
            }
            starts
        };
        let ranked = |keep: usize| -> Vec<(f64, Vec<f64>)> {
            let mut scored: Vec<(f64, Vec<f64>)> = model
                .best_by(&cands, keep, |mu, var| self.acq_value(model, mu, var, kappa, best))
                .into_iter()
                .map(|(c, a)| (a, cands[c].clone()))
                .collect();
            scored.sort_by(|a, b| b.0.total_cmp(&a.0));
            scored
        };
        let mut scored = ranked(KEEP);
        let mut starts = distinct(&scored);
        if starts.len() < n_starts && scored.len() < cands.len() {
            // The head of the list holds too few distinct points: score everything, as before.
            scored = ranked(cands.len());
            starts = distinct(&scored);
        }
        // Local: projected L-BFGS on numeric coordinates from the best few distinct candidates.
        let max_iter = if n > 400 { 15 } else { 30 };
        let has_numeric = self.cat.iter().any(|c| !c);
        let mut improved = Vec::new();
        if has_numeric {
            for s in &starts {
                let lo: Vec<f64> = (0..d).map(|j| if self.cat[j] { s[j] } else { 0.0 }).collect();
                let hi: Vec<f64> = (0..d).map(|j| if self.cat[j] { s[j] } else { 1.0 }).collect();
                let mut dmu = vec![0.0; d];
                let mut dvar = vec![0.0; d];
                let acqf = self.cfg.acquisition;
                let sfloor = 1e-9 * model.signal_variance().sqrt();
                let m = lbfgs::minimize(
                    |x, g| {
                        let (mu, var) = model.predict_grad(x, &mut dmu, &mut dvar);
                        let s = var.sqrt().max(sfloor);
                        let (val, cm, cs) = match acqf {
                            Acquisition::Ucb => (-mu + kappa * s, -1.0, kappa),
                            Acquisition::LogEi => acq::log_ei(mu, s, best),
                        };
                        for j in 0..d {
                            g[j] = -(cm * dmu[j] + cs * dvar[j] / (2.0 * s));
                        }
                        -val
                    },
                    s,
                    &lo,
                    &hi,
                    max_iter,
                    1e-9,
                );
                let x = self.space.snap(&m.x);
                let (mu, var) = model.predict(&x);
                improved.push((self.acq_value(model, mu, var, kappa, best), x));
            }
        }
        scored.extend(improved);
        scored.sort_by(|a, b| b.0.total_cmp(&a.0));
        // Categorical sweep around the best point.
        if let Some((v0, x0)) = scored.first().cloned() {
            let mut bx = x0;
            let mut bv = v0;
            for j in 0..d {
                if !self.cat[j] {
                    continue;
                }
                for c in 0..self.space.n_choices(j) {
                    let mut x = bx.clone();
                    x[j] = self.space.choice_coord(j, c);
                    let (mu, var) = model.predict(&x);
                    let v = self.acq_value(model, mu, var, kappa, best);
                    if v > bv {
                        bv = v;
                        bx = x;
                    }
                }
            }
            if bv > v0 {
                scored.insert(0, (bv, bx));
            }
        }
        scored.truncate(64);
        scored
    }
}

/// The gp_ucb strategy: Halton initial design, then [`GpCore::propose`].
pub struct GpUcb {
    pub core: GpCore,
    halton: Halton,
}

/// Next point of the initial design that does not repeat a taken one.
pub fn next_design_point(space: &Space, halton: &mut Halton, rng: &mut Rng, taken: &[Vec<f64>]) -> Vec<f64> {
    for _ in 0..100 {
        let x = space.snap(&halton.next_point());
        if !taken.iter().any(|p| space.same_point(p, &x, 1e-12)) {
            return x;
        }
    }
    for _ in 0..1000 {
        let x = space.sample(rng);
        if !taken.iter().any(|p| space.same_point(p, &x, 1e-12)) {
            return x;
        }
    }
    space.sample(rng)
}

impl Strategy for GpUcb {
    fn info() -> PluginInfo {
        PluginInfo::new(
            "gp_ucb",
            env!("CARGO_PKG_VERSION"),
            "Gaussian-process BO: Matérn-5/2 ARD, UCB (GP-UCB β schedule) or log-EI, kriging-believer batches",
        )
        .with_capabilities(&["log"])
    }

    fn new(study: &Study) -> Result<Self, String> {
        let o = Options::parse(&study.options)?;
        o.check_known(Config::KNOWN)?;
        let cfg = Config::from_options(&o, study.space.len())?;
        let core = GpCore::new(study, cfg)?;
        let halton = Halton::new(core.space.dim(), study.seed);
        Ok(GpUcb { core, halton })
    }

    fn suggest(&mut self, count: usize, pending: &[Trial]) -> Result<Vec<Params>, String> {
        let space = self.core.space.clone();
        let mut taken = encode_trials(&space, pending);
        let n_pending = taken.len();
        let mut out = Vec::with_capacity(count);
        let mut k = 0;
        // Initial design (and fallback while fewer than 2 trials completed).
        while k < count
            && (self.core.history.n_finished() + n_pending + k < self.core.cfg.n_init || self.core.history.len() < 2)
        {
            // Finished trials count as taken: after a resume the design skips what was run.
            let mut all = taken.clone();
            all.extend(self.core.history.all_points().cloned());
            let x = next_design_point(&space, &mut self.halton, &mut self.core.rng, &all);
            taken.push(x.clone());
            out.push(space.decode(&x));
            k += 1;
        }
        if k < count {
            match self.core.propose(count - k, &taken) {
                Some(xs) => out.extend(xs.iter().map(|x| space.decode(x))),
                None => {
                    for _ in k..count {
                        let x = self.core.random_free(&taken);
                        taken.push(x.clone());
                        out.push(space.decode(&x));
                    }
                }
            }
        }
        Ok(out)
    }

    fn observe(&mut self, outcomes: &[Outcome]) -> Result<(), String> {
        self.core.observe(outcomes)
    }
}

#[cfg(feature = "export")]
export_strategy!(GpUcb);

#[cfg(test)]
mod tests;
