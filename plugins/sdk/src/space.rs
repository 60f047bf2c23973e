//! Mapping between a search space and the unit cube [0,1]^d, one coordinate per parameter.
//!
//! Encoding, per parameter kind (`u` is the coordinate):
//! - **float**: `low + u·(high − low)`; with `log`, uniform in ln(value): `exp(ln low + u·(ln high − ln low))`.
//! - **int**: the interval is cut into `high − low + 1` equal bins (equal in ln-space with `log`,
//!   the bin of `v` being [ln v, ln(v+1)) ), `u` decodes to the bin it falls into; a value encodes
//!   to its bin's centre (ln(v + ½) with `log`), so `decode(encode(v)) == v` and every `u` in
//!   [0,1] decodes inside [low, high].
//! - **choice** (index-based): `k` equal bins, `u` decodes to choice `⌊u·k⌋` (clamped), a choice
//!   encodes to its bin's centre `(i + ½)/k`. Algorithms that must not treat categories as
//!   ordered use [`Space::is_choice`] / [`Space::choice_index`] (the GP uses a Hamming-style
//!   kernel term on these coordinates, the genetic algorithm resamples them) or
//!   [`Space::one_hot`] for a one-hot feature vector.
//!
//! [`Space::snap`] maps any point to the canonical representative of the assignment it decodes
//! to (bin centres for ints and choices): use it before fitting models or comparing points.

use crate::types::{Assignment, Domain, Param, Params, Value};

/// A validated search space.
#[derive(Clone, Debug, PartialEq)]
pub struct Space {
    params: Vec<Param>,
}

/// The coordinate of a parameter a trial lacks (inactive in a conditional space).
pub const INACTIVE: f64 = 0.5;

impl Space {
    /// Validates bounds (low <= high, finite, low > 0 for float log, low >= 1 for int log,
    /// at least one choice, unique names).
    pub fn new(params: &[Param]) -> Result<Space, String> {
        for (i, p) in params.iter().enumerate() {
            if params[..i].iter().any(|q| q.name == p.name) {
                return Err(format!("parameter `{}` is declared twice", p.name));
            }
            match &p.domain {
                Domain::Float { low, high, log } => {
                    if !(low.is_finite() && high.is_finite() && low <= high) {
                        return Err(format!("parameter `{}`: bad float range [{low}, {high}]", p.name));
                    }
                    if *log && *low <= 0.0 {
                        return Err(format!("parameter `{}`: log scale needs low > 0", p.name));
                    }
                }
                Domain::Int { low, high, log } => {
                    if low > high {
                        return Err(format!("parameter `{}`: bad int range [{low}, {high}]", p.name));
                    }
                    if *log && *low < 1 {
                        return Err(format!("parameter `{}`: log scale needs low >= 1", p.name));
                    }
                }
                Domain::Choice(c) => {
                    if c.is_empty() {
                        return Err(format!("parameter `{}`: no choices", p.name));
                    }
                }
            }
        }
        Ok(Space { params: params.to_vec() })
    }

    pub fn params(&self) -> &[Param] {
        &self.params
    }

    /// Number of unit-cube coordinates (one per parameter).
    pub fn dim(&self) -> usize {
        self.params.len()
    }

    pub fn is_choice(&self, j: usize) -> bool {
        matches!(self.params[j].domain, Domain::Choice(_))
    }

    /// Number of categories of parameter `j` (0 when it is not a choice).
    pub fn n_choices(&self, j: usize) -> usize {
        match &self.params[j].domain {
            Domain::Choice(c) => c.len(),
            _ => 0,
        }
    }

    /// Number of distinct values of a discrete parameter (ints, choices); `None` for floats.
    pub fn n_values(&self, j: usize) -> Option<u64> {
        match &self.params[j].domain {
            Domain::Float { .. } => None,
            Domain::Int { low, high, .. } => Some((high - low) as u64 + 1),
            Domain::Choice(c) => Some(c.len() as u64),
        }
    }

    /// The category index that coordinate `u` of choice parameter `j` decodes to.
    pub fn choice_index(&self, j: usize, u: f64) -> usize {
        let k = self.n_choices(j).max(1);
        ((u.clamp(0.0, 1.0) * k as f64) as usize).min(k - 1)
    }

    /// The coordinate (bin centre) of category `i` of choice parameter `j`.
    pub fn choice_coord(&self, j: usize, i: usize) -> f64 {
        (i as f64 + 0.5) / self.n_choices(j).max(1) as f64
    }

    /// Decodes coordinate `u` of parameter `j`.
    pub fn decode_value(&self, j: usize, u: f64) -> Value {
        let u = if u.is_finite() { u.clamp(0.0, 1.0) } else { 0.5 };
        match &self.params[j].domain {
            Domain::Float { low, high, log } => {
                let v = if *log { (low.ln() + u * (high.ln() - low.ln())).exp() } else { low + u * (high - low) };
                Value::Float(v.clamp(*low, *high))
            }
            Domain::Int { low, high, log } => {
                let v = if *log {
                    let a = (*low as f64).ln();
                    let b = (*high as f64 + 1.0).ln();
                    (a + u * (b - a)).exp().floor() as i64
                } else {
                    let n = (high - low) as f64 + 1.0;
                    low + (u * n).floor() as i64
                };
                Value::Int(v.clamp(*low, *high))
            }
            Domain::Choice(c) => Value::Choice(c[self.choice_index(j, u)].clone()),
        }
    }

    /// Encodes value `v` of parameter `j`.
    pub fn encode_value(&self, j: usize, v: &Value) -> Result<f64, String> {
        let p = &self.params[j];
        let bad = || format!("parameter `{}`: value {v:?} does not fit {:?}", p.name, p.domain);
        let u = match (&p.domain, v) {
            (Domain::Float { low, high, log }, v) => {
                let x = v.as_f64().ok_or_else(bad)?;
                if high <= low {
                    0.5
                } else if *log {
                    if x <= 0.0 {
                        return Err(bad());
                    }
                    (x.ln() - low.ln()) / (high.ln() - low.ln())
                } else {
                    (x - low) / (high - low)
                }
            }
            (Domain::Int { low, high, log }, v) => {
                let x = v.as_f64().ok_or_else(bad)?.round();
                let x = x.clamp(*low as f64, *high as f64);
                if *log {
                    let a = (*low as f64).ln();
                    let b = (*high as f64 + 1.0).ln();
                    ((x + 0.5).ln() - a) / (b - a)
                } else {
                    (x - *low as f64 + 0.5) / ((high - low) as f64 + 1.0)
                }
            }
            (Domain::Choice(c), Value::Choice(s)) => {
                let i = c.iter().position(|x| x == s).ok_or_else(bad)?;
                (i as f64 + 0.5) / c.len() as f64
            }
            _ => return Err(bad()),
        };
        if !u.is_finite() {
            return Err(bad());
        }
        Ok(u.clamp(0.0, 1.0))
    }

    /// Decodes a unit-cube point into a full assignment (in the space's parameter order).
    pub fn decode(&self, x: &[f64]) -> Params {
        assert_eq!(x.len(), self.dim(), "point has the wrong dimension");
        (0..self.dim())
            .map(|j| Assignment { name: self.params[j].name.clone(), value: self.decode_value(j, x[j]) })
            .collect()
    }

    /// Encodes an assignment (any order) into the unit cube. A parameter it lacks (inactive in a
    /// conditional space: the host never drops any other) is at [`INACTIVE`], the middle.
    pub fn encode(&self, params: &[Assignment]) -> Result<Vec<f64>, String> {
        self.params
            .iter()
            .enumerate()
            .map(|(j, p)| match params.iter().find(|a| a.name == p.name) {
                Some(a) => self.encode_value(j, &a.value),
                // Inactive in a conditional space (the host validated the rest): the middle.
                None => Ok(INACTIVE),
            })
            .collect()
    }

    /// The canonical representative of the assignment `x` decodes to.
    pub fn snap(&self, x: &[f64]) -> Vec<f64> {
        (0..self.dim())
            .map(|j| match self.params[j].domain {
                Domain::Float { .. } => {
                    if x[j].is_finite() {
                        x[j].clamp(0.0, 1.0)
                    } else {
                        0.5
                    }
                }
                _ => self.encode_value(j, &self.decode_value(j, x[j])).unwrap_or(0.5),
            })
            .collect()
    }

    /// True when `a` and `b` decode to the same assignment, up to `tol` on float coordinates.
    pub fn same_point(&self, a: &[f64], b: &[f64], tol: f64) -> bool {
        (0..self.dim()).all(|j| match self.params[j].domain {
            Domain::Float { .. } => (a[j] - b[j]).abs() <= tol,
            _ => self.decode_value(j, a[j]) == self.decode_value(j, b[j]),
        })
    }

    /// Length of the one-hot feature vector: 1 per float/int, k per k-way choice.
    pub fn one_hot_dim(&self) -> usize {
        (0..self.dim()).map(|j| self.n_choices(j).max(1)).sum()
    }

    /// One-hot features of a unit-cube point: numeric coordinates copied, choices expanded.
    pub fn one_hot(&self, x: &[f64]) -> Vec<f64> {
        let mut out = Vec::with_capacity(self.one_hot_dim());
        for (j, &xj) in x.iter().enumerate().take(self.dim()) {
            let k = self.n_choices(j);
            if k == 0 {
                out.push(xj);
            } else {
                let i = self.choice_index(j, xj);
                out.extend((0..k).map(|c| if c == i { 1.0 } else { 0.0 }));
            }
        }
        out
    }

    /// Draws a uniformly random assignment as a (snapped) unit-cube point.
    pub fn sample(&self, rng: &mut crate::Rng) -> Vec<f64> {
        let x = rng.unit_point(self.dim());
        self.snap(&x)
    }

    /// Uniform random search's draw: `count` points, each redrawn (up to 100 times) while it
    /// decodes to the same assignment as one in `taken` or an earlier one of this call.
    pub fn sample_distinct(&self, rng: &mut crate::Rng, taken: &[Vec<f64>], count: usize) -> Vec<Vec<f64>> {
        let mut taken = taken.to_vec();
        let mut out = Vec::with_capacity(count);
        for _ in 0..count {
            let mut x = self.sample(rng);
            for _ in 0..100 {
                if !taken.iter().any(|t| self.same_point(t, &x, 0.0)) {
                    break;
                }
                x = self.sample(rng);
            }
            taken.push(x.clone());
            out.push(x);
        }
        out
    }

    /// Total number of distinct assignments, `None` when a float makes it infinite (or it overflows).
    pub fn cardinality(&self) -> Option<u64> {
        let mut n: u64 = 1;
        for j in 0..self.dim() {
            n = n.checked_mul(self.n_values(j)?)?;
        }
        Some(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn space() -> Space {
        Space::new(&[
            Param::float("x", -5.0, 10.0),
            Param::log_float("lr", 1e-5, 1e-1),
            Param::int("n", 1, 4),
            Param::log_int("bs", 16, 256),
            Param::choice("model", &["a", "b", "c"]),
        ])
        .unwrap()
    }

    #[test]
    fn decode_stays_in_bounds_and_roundtrips() {
        let s = space();
        let mut rng = crate::Rng::new(1);
        for i in 0..2000 {
            let mut x = rng.unit_point(5);
            if i < 2 {
                x = vec![i as f64; 5]; // the corners 0 and 1
            }
            let a = s.decode(&x);
            match a[0].value {
                Value::Float(v) => assert!((-5.0..=10.0).contains(&v)),
                _ => panic!(),
            }
            match a[1].value {
                Value::Float(v) => assert!((1e-5..=1e-1).contains(&v)),
                _ => panic!(),
            }
            match a[2].value {
                Value::Int(v) => assert!((1..=4).contains(&v)),
                _ => panic!(),
            }
            match a[3].value {
                Value::Int(v) => assert!((16..=256).contains(&v)),
                _ => panic!(),
            }
            let e = s.encode(&a).unwrap();
            assert_eq!(s.decode(&e), a);
            let sn = s.snap(&x);
            assert_eq!(s.decode(&sn), a);
            assert!(s.same_point(&x, &e, 1e-9));
        }
    }

    #[test]
    fn ints_are_evenly_binned() {
        let s = Space::new(&[Param::int("n", 1, 4)]).unwrap();
        let vals: Vec<_> =
            [0.0, 0.24, 0.26, 0.49, 0.51, 0.74, 0.76, 1.0].iter().map(|&u| s.decode_value(0, u)).collect();
        let ints: Vec<i64> = vals.iter().map(|v| if let Value::Int(i) = v { *i } else { 0 }).collect();
        assert_eq!(ints, vec![1, 1, 2, 2, 3, 3, 4, 4]);
        assert_eq!(s.encode_value(0, &Value::Int(1)).unwrap(), 0.125);
    }

    #[test]
    fn log_float_is_log_uniform() {
        let s = space();
        match s.decode_value(1, 0.5) {
            Value::Float(v) => assert!((v - 1e-3).abs() < 1e-12),
            _ => panic!(),
        }
    }

    #[test]
    fn one_hot_and_errors() {
        let s = space();
        let x = s.encode(&s.decode(&[0.5, 0.5, 0.5, 0.5, 0.9])).unwrap();
        let oh = s.one_hot(&x);
        assert_eq!(oh.len(), 7);
        assert_eq!(&oh[4..], &[0.0, 0.0, 1.0]);
        assert_eq!(s.encode(&[]).unwrap(), vec![INACTIVE; s.dim()], "a lacking parameter is inactive: the middle");
        assert!(s.encode_value(4, &Value::Choice("zz".into())).is_err());
        assert!(Space::new(&[Param::log_float("a", 0.0, 1.0)]).is_err());
        assert!(Space::new(&[Param::choice("c", &[])]).is_err());
        assert_eq!(space().cardinality(), None);
        assert_eq!(
            Space::new(&[Param::int("a", 0, 2), Param::choice("c", &["x", "y"])]).unwrap().cardinality(),
            Some(6)
        );
    }
}
