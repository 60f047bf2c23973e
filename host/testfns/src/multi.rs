//! Bi-objective test problems with known Pareto fronts (both objectives minimized): Zitzler, Deb
//! and Thiele's ZDT1, ZDT2 and ZDT3 ("Comparison of multiobjective evolutionary algorithms:
//! empirical results", Evolutionary Computation 8(2), 2000).
//!
//! | name | variables | f1 | f2 | Pareto front (g = 1) | hypervolume of the front, reference (11, 11) |
//! |---|---|---|---|---|---|
//! | `zdt1_d<n>` | x0..x{n-1} ∈ [0, 1] | x0 | g·(1 − √(f1/g)) | f2 = 1 − √f1, convex | 120 + 2/3 |
//! | `zdt2_d<n>` | same | x0 | g·(1 − (f1/g)²) | f2 = 1 − f1², concave | 120 + 1/3 |
//! | `zdt3_d<n>` | same | x0 | g·(1 − √(f1/g) − (f1/g)·sin(10π f1)) | five disconnected pieces | 128.7781 |
//!
//! with g = 1 + 9·Σ_{i≥1} x_i / (n − 1). The front is reached at x1 = … = x{n-1} = 0. Without a
//! dimension (`zdt1`) n = 30, the papers' choice; n ≥ 2. Objectives are named `f1` and `f2`.

use std::f64::consts::PI;
use std::sync::Arc;

use crate::{ParamKind, ParamSpec, UnknownFunction};

/// Names accepted by [`by_name`] (with `_d<n>` or a separate dimension).
pub const NAMES: &[&str] = &["zdt1", "zdt2", "zdt3"];

/// A function of values in `params` order returning one value per objective.
pub type MultiEvaluator = Arc<dyn Fn(&[f64]) -> Vec<f64> + Send + Sync>;

/// A multi-objective test problem (every objective minimized).
#[derive(Clone)]
pub struct MultiObjective {
    /// Canonical name with the dimension (`zdt1_d5`).
    pub name: String,
    pub params: Vec<ParamSpec>,
    /// The objectives' metric names, in order (`f1`, `f2`).
    pub objectives: Vec<String>,
    /// Evaluates every objective at values in `params` order.
    pub eval: MultiEvaluator,
    /// Which ZDT problem (1, 2 or 3): the shape of the front.
    kind: u8,
}

impl std::fmt::Debug for MultiObjective {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MultiObjective").field("name", &self.name).field("objectives", &self.objectives).finish()
    }
}

impl MultiObjective {
    pub fn dim(&self) -> usize {
        self.params.len()
    }

    /// `n + 1` points of the true Pareto front, `f1` evenly spaced in [0, 1], non-dominated
    /// (for ZDT3 only the points of its five pieces remain, so fewer).
    pub fn front(&self, n: usize) -> Vec<Vec<f64>> {
        let n = n.max(1);
        let curve: Vec<Vec<f64>> = (0..=n)
            .map(|i| {
                let f1 = i as f64 / n as f64;
                vec![f1, front_f2(self.kind, f1)]
            })
            .collect();
        // Sorted by f1 already: a point is on the front when its f2 is below every earlier one.
        let mut best = f64::INFINITY;
        curve
            .into_iter()
            .filter(|p| {
                let keep = p[1] < best;
                best = best.min(p[1]);
                keep
            })
            .collect()
    }

    /// The reference point of the literature's hypervolumes for the ZDT problems: (11, 11),
    /// beyond the worst value of either objective over the whole space (f1 ≤ 1, f2 ≤ 10).
    pub fn reference(&self) -> Vec<f64> {
        vec![11.0, 11.0]
    }

    /// The published hypervolume of the true front with reference point (11, 11).
    pub fn front_hypervolume_11(&self) -> f64 {
        match self.kind {
            1 => 120.0 + 2.0 / 3.0,
            2 => 120.0 + 1.0 / 3.0,
            _ => 128.778_1,
        }
    }
}

fn front_f2(kind: u8, f1: f64) -> f64 {
    match kind {
        1 => 1.0 - f1.sqrt(),
        2 => 1.0 - f1 * f1,
        _ => 1.0 - f1.sqrt() - f1 * (10.0 * PI * f1).sin(),
    }
}

/// ZDT `kind` (1, 2 or 3) in `n` variables.
pub fn zdt(kind: u8, n: usize) -> MultiObjective {
    let eval = move |x: &[f64]| {
        let f1 = x[0];
        let g = 1.0 + 9.0 * x[1..].iter().sum::<f64>() / (x.len() - 1) as f64;
        let r = f1 / g;
        let h = match kind {
            1 => 1.0 - r.sqrt(),
            2 => 1.0 - r * r,
            _ => 1.0 - r.sqrt() - r * (10.0 * PI * f1).sin(),
        };
        vec![f1, g * h]
    };
    MultiObjective {
        name: format!("zdt{kind}_d{n}"),
        params: (0..n)
            .map(|i| ParamSpec { name: format!("x{i}"), kind: ParamKind::Float { low: 0.0, high: 1.0, log: false } })
            .collect(),
        objectives: vec!["f1".into(), "f2".into()],
        eval: Arc::new(eval),
        kind,
    }
}

/// `zdt1`, `zdt1_d5`, `zdt1d5` or (`zdt1`, Some(5)); `Ok(None)` when `name` is no
/// multi-objective problem.
pub fn by_name(name: &str, dim: Option<usize>) -> Result<Option<MultiObjective>, UnknownFunction> {
    let lower = name.trim().to_ascii_lowercase().replace('-', "_");
    let Some(rest) = lower.strip_prefix("zdt") else { return Ok(None) };
    let (kind, suffix) = rest.split_at(rest.find(|c: char| !c.is_ascii_digit()).unwrap_or(rest.len()));
    let kind: u8 = match kind {
        "1" => 1,
        "2" => 2,
        "3" => 3,
        _ => return Err(UnknownFunction(format!("`{name}`: the ZDT problems here are zdt1, zdt2 and zdt3"))),
    };
    let suffix_dim = match suffix.trim_start_matches('_').strip_prefix('d') {
        _ if suffix.is_empty() => None,
        Some(d) => Some(d.parse::<usize>().map_err(|_| UnknownFunction(format!("bad dimension in `{name}`")))?),
        None => return Err(UnknownFunction(format!("`{name}`: write zdt{kind}_d<n>, e.g. zdt{kind}_d5"))),
    };
    let n = match (suffix_dim, dim) {
        (Some(a), Some(b)) if a != b => {
            return Err(UnknownFunction(format!("`{name}` names dimension {a} but {b} was asked for")));
        }
        (Some(a), _) | (None, Some(a)) => a,
        (None, None) => 30,
    };
    if !(2..=1000).contains(&n) {
        return Err(UnknownFunction(format!("`{name}`: dimension {n} is out of range (2..=1000)")));
    }
    Ok(Some(zdt(kind, n)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_and_fronts() {
        let z1 = by_name("zdt1_d5", None).unwrap().unwrap();
        assert_eq!(z1.name, "zdt1_d5");
        assert_eq!(z1.dim(), 5);
        // On the front: x1.. = 0 gives g = 1.
        assert_eq!((z1.eval)(&[0.25, 0.0, 0.0, 0.0, 0.0]), vec![0.25, 0.5]);
        // Off it: g = 1 + 9 * 4 / 4 = 10 at x = 1.
        let v = (z1.eval)(&[1.0, 1.0, 1.0, 1.0, 1.0]);
        assert!((v[1] - 10.0 * (1.0 - (0.1f64).sqrt())).abs() < 1e-12);
        let z2 = by_name("zdt2", Some(3)).unwrap().unwrap();
        assert_eq!((z2.eval)(&[0.5, 0.0, 0.0]), vec![0.5, 0.75]);
        assert_eq!(by_name("zdt3", None).unwrap().unwrap().dim(), 30);
        assert!(by_name("branin", None).unwrap().is_none());
        assert!(by_name("zdt4", None).is_err());
        assert!(by_name("zdt1_d1", None).is_err());
        assert!(by_name("zdt1_d5", Some(6)).is_err());
        // The published hypervolumes of the true fronts with reference (11, 11).
        for (name, tol) in [("zdt1", 1e-4), ("zdt2", 1e-4), ("zdt3", 1e-3)] {
            let z = by_name(name, None).unwrap().unwrap();
            let hv = alcf_pareto::hypervolume(&z.front(200_000), &[11.0, 11.0]);
            assert!((hv - z.front_hypervolume_11()).abs() < tol, "{name}: {hv}");
            // The front's points are what the problem computes at x1.. = 0.
            for p in z.front(50) {
                let mut x = vec![0.0; z.dim()];
                x[0] = p[0];
                let f = (z.eval)(&x);
                assert!((f[0] - p[0]).abs() < 1e-15 && (f[1] - p[1]).abs() < 1e-12);
            }
        }
        // ZDT3's front is disconnected: its f2 dips below 0 (to about −0.7733).
        let z3 = by_name("zdt3_d2", None).unwrap().unwrap();
        let low = z3.front(100_000).iter().map(|p| p[1]).fold(f64::INFINITY, f64::min);
        assert!((low + 0.7733).abs() < 1e-3, "{low}");
    }
}
