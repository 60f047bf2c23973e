//! Acquisition functions (for minimization, in standardized units; larger is better).

use std::f64::consts::PI;

pub use alcf_plugin_sdk::normal::{cdf, erfc, pdf};

/// For h(z) = φ(z) + z Φ(z) (EI = σ h(z)): returns (ln h(z), Φ(z)/h(z), φ(z)/h(z)),
/// computed without cancellation for very negative z (continued fraction of the Mills ratio).
pub fn log_h(z: f64) -> (f64, f64, f64) {
    if z > -1.0 {
        let (p, c) = (pdf(z), cdf(z));
        let h = p + z * c;
        return (h.ln(), c / h, p / h);
    }
    let t = -z;
    // C(t) = t + 2/(t + 3/(t + 4/(t + ...))), evaluated backwards.
    let mut c = t;
    for k in (2..=60).rev() {
        c = t + k as f64 / c;
    }
    // h/φ = 1/(1 + tC); Φ/h = C; φ/h = 1 + tC.
    let q = 1.0 + t * c;
    let ln_phi = -0.5 * z * z - 0.5 * (2.0 * PI).ln();
    (ln_phi - q.ln(), c, q)
}

/// ln EI for minimization with incumbent `best` at (μ, σ); with d ln EI/dμ and d ln EI/dσ.
pub fn log_ei(mu: f64, sigma: f64, best: f64) -> (f64, f64, f64) {
    let z = (best - mu) / sigma;
    let (lh, r_cdf, r_pdf) = log_h(z);
    (sigma.ln() + lh, -r_cdf / sigma, r_pdf / sigma)
}

/// The GP-UCB exploration weight β_t (Srinivas et al. 2010, Theorem 1 for finite sets, with
/// |D| replaced by the dimension as is common), scaled down by `scale`:
/// `β_t = scale · 2 ln(d t² π² / (6 δ))`, δ = 0.1. The confidence bound is μ − √β_t σ.
pub fn beta(t: usize, d: usize, scale: f64) -> f64 {
    let t = t.max(1) as f64;
    let d = d.max(1) as f64;
    scale * 2.0 * (d * t * t * PI * PI / (6.0 * 0.1)).ln()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normal_and_log_ei() {
        assert!((cdf(0.0) - 0.5).abs() < 1e-7);
        assert!((cdf(1.96) - 0.975).abs() < 1e-4);
        // log_h agrees across the switch at z = -1 and matches direct values.
        for z in [-0.999, -1.001, -3.0, 0.5, 2.0] {
            let (lh, _, _) = log_h(z);
            let h = pdf(z) + z * cdf(z);
            assert!((lh - h.ln()).abs() < 1e-5, "z={z}: {lh} vs {}", h.ln());
        }
        // Very negative z: finite, decreasing, asymptotic h ≈ φ(z)/z².
        let (l1, _, _) = log_h(-30.0);
        let asym = (pdf(-30.0) / 900.0).ln();
        assert!((l1 - asym).abs() < 0.01);
        assert!(log_h(-40.0).0 < l1);
        // Derivatives against finite differences.
        for (mu, s) in [(0.3, 0.2), (5.0, 0.1), (-1.0, 1.0)] {
            let (_, dm, ds) = log_ei(mu, s, 0.0);
            let e = 1e-6;
            let fdm = (log_ei(mu + e, s, 0.0).0 - log_ei(mu - e, s, 0.0).0) / (2.0 * e);
            let fds = (log_ei(mu, s + e, 0.0).0 - log_ei(mu, s - e, 0.0).0) / (2.0 * e);
            assert!((fdm - dm).abs() < 1e-3 * (1.0 + dm.abs()), "{fdm} {dm}");
            assert!((fds - ds).abs() < 1e-3 * (1.0 + ds.abs()), "{fds} {ds}");
        }
        assert!(beta(100, 6, 0.2) > beta(10, 6, 0.2));
    }
}
