//! A small box-constrained L-BFGS minimizer (projected directions, Armijo backtracking).
//!
//! Coordinates at a bound whose gradient points outward are frozen for the step; the quasi-Newton
//! direction is computed on the free coordinates and the trial point projected onto the box.
//! Good enough for the smooth, low-dimensional problems here (kernel hyperparameters,
//! acquisition functions); not a general-purpose L-BFGS-B.

/// Result of a minimization.
#[derive(Clone, Debug)]
pub struct Minimum {
    pub x: Vec<f64>,
    pub f: f64,
    pub evals: usize,
}

/// Minimizes `f` (returning value and gradient) from `x0` within [lower, upper].
/// Non-finite values are treated as +∞ (the line search backs off).
pub fn minimize(
    mut f: impl FnMut(&[f64], &mut [f64]) -> f64,
    x0: &[f64],
    lower: &[f64],
    upper: &[f64],
    max_iter: usize,
    tol: f64,
) -> Minimum {
    let n = x0.len();
    let m = 6;
    let proj = |x: &mut [f64]| {
        for i in 0..n {
            x[i] = x[i].clamp(lower[i], upper[i]);
        }
    };
    let mut x = x0.to_vec();
    proj(&mut x);
    let mut g = vec![0.0; n];
    let mut fx = f(&x, &mut g);
    let mut evals = 1;
    if !fx.is_finite() {
        return Minimum { x, f: f64::INFINITY, evals };
    }
    let mut s_hist: Vec<Vec<f64>> = Vec::new();
    let mut y_hist: Vec<Vec<f64>> = Vec::new();
    let mut gn = vec![0.0; n];
    let mut xn = vec![0.0; n];
    for _ in 0..max_iter {
        // Free coordinates.
        let free: Vec<bool> =
            (0..n).map(|i| !((x[i] <= lower[i] && g[i] > 0.0) || (x[i] >= upper[i] && g[i] < 0.0))).collect();
        let pg: Vec<f64> = (0..n).map(|i| if free[i] { g[i] } else { 0.0 }).collect();
        let pgn = pg.iter().map(|v| v.abs()).fold(0.0, f64::max);
        if pgn < tol {
            break;
        }
        // Two-loop recursion.
        let mut q = pg.clone();
        let k = s_hist.len();
        let mut alpha = vec![0.0; k];
        let mut rho = vec![0.0; k];
        for j in (0..k).rev() {
            let sy: f64 = (0..n).map(|i| s_hist[j][i] * y_hist[j][i]).sum();
            rho[j] = 1.0 / sy;
            alpha[j] = rho[j] * (0..n).map(|i| s_hist[j][i] * q[i]).sum::<f64>();
            for i in 0..n {
                q[i] -= alpha[j] * y_hist[j][i];
            }
        }
        if k > 0 {
            let yy: f64 = y_hist[k - 1].iter().map(|v| v * v).sum();
            let sy: f64 = (0..n).map(|i| s_hist[k - 1][i] * y_hist[k - 1][i]).sum();
            let gamma = sy / yy;
            for v in q.iter_mut() {
                *v *= gamma;
            }
        } else {
            // First step: a unit-ish step along the steepest descent.
            let scale = 1.0 / pgn.max(1e-12);
            for v in q.iter_mut() {
                *v *= scale.min(1.0) * 0.5;
            }
        }
        for j in 0..k {
            let b = rho[j] * (0..n).map(|i| y_hist[j][i] * q[i]).sum::<f64>();
            for i in 0..n {
                q[i] += s_hist[j][i] * (alpha[j] - b);
            }
        }
        let mut d: Vec<f64> = (0..n).map(|i| if free[i] { -q[i] } else { 0.0 }).collect();
        let mut slope: f64 = (0..n).map(|i| d[i] * g[i]).sum();
        if slope >= 0.0 || !slope.is_finite() {
            // Not a descent direction: reset memory, steepest descent.
            s_hist.clear();
            y_hist.clear();
            d = pg.iter().map(|v| -v / pgn.max(1e-12) * 0.5).collect();
            slope = (0..n).map(|i| d[i] * g[i]).sum();
        }
        // Backtracking line search on the projected path.
        let mut t = 1.0;
        let mut fnew;
        let mut accepted = false;
        for _ in 0..20 {
            for i in 0..n {
                xn[i] = (x[i] + t * d[i]).clamp(lower[i], upper[i]);
            }
            fnew = f(&xn, &mut gn);
            evals += 1;
            let decrease: f64 = (0..n).map(|i| g[i] * (xn[i] - x[i])).sum();
            if fnew.is_finite() && fnew <= fx + 1e-4 * decrease {
                accepted = true;
                let s: Vec<f64> = (0..n).map(|i| xn[i] - x[i]).collect();
                let y: Vec<f64> = (0..n).map(|i| gn[i] - g[i]).collect();
                let sy: f64 = (0..n).map(|i| s[i] * y[i]).sum();
                if sy > 1e-12 {
                    if s_hist.len() == m {
                        s_hist.remove(0);
                        y_hist.remove(0);
                    }
                    s_hist.push(s);
                    y_hist.push(y);
                }
                let df = fx - fnew;
                x.copy_from_slice(&xn);
                g.copy_from_slice(&gn);
                fx = fnew;
                if df.abs() < 1e-10 * (1.0 + fx.abs()) {
                    return Minimum { x, f: fx, evals };
                }
                break;
            }
            t *= 0.3;
        }
        if !accepted {
            break;
        }
    }
    Minimum { x, f: fx, evals }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rosenbrock_and_bounds() {
        let f = |x: &[f64], g: &mut [f64]| {
            let (a, b) = (x[0], x[1]);
            g[0] = -2.0 * (1.0 - a) - 400.0 * a * (b - a * a);
            g[1] = 200.0 * (b - a * a);
            (1.0 - a).powi(2) + 100.0 * (b - a * a).powi(2)
        };
        let m = minimize(f, &[-1.2, 1.0], &[-5.0, -5.0], &[5.0, 5.0], 500, 1e-10);
        assert!((m.x[0] - 1.0).abs() < 1e-4 && (m.x[1] - 1.0).abs() < 1e-4, "{m:?}");
        // Bound active: minimum of (x-3)² on [0, 2] is at 2.
        let m = minimize(
            |x: &[f64], g: &mut [f64]| {
                g[0] = 2.0 * (x[0] - 3.0);
                (x[0] - 3.0).powi(2)
            },
            &[0.5],
            &[0.0],
            &[2.0],
            50,
            1e-12,
        );
        assert!((m.x[0] - 2.0).abs() < 1e-12);
    }
}
