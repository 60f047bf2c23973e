//! The quality suite's problems: BBOB functions ([`crate::bbob`]) as instances of a family, in
//! mixed spaces and with noise.
//!
//! A name is `bbob_f<F>[_i<I>]_d<D>` followed by any of
//!
//! - `_mixed`: the coordinates become the kinds of parameter a training run has, by position
//!   `j mod 4`: a float on [-5, 5] (0), a log-scaled float on [1e-4, 1] (1), an integer (2:
//!   the grid of step 0.5 through the optimum, about 21 values) and a category of six labels
//!   (3: the optimum's coordinate and five others, in an order shuffled per instance, so a label's
//!   position says nothing). Every kind keeps the optimum reachable, so the optimum value is
//!   BBOB's `f_opt` and a regret of 0 is attainable.
//! - `_add<σ>`: additive Gaussian noise, `y = f + σ·z`;
//! - `_mul<β>`: multiplicative noise on the distance to the optimum value,
//!   `y = f_opt + (f − f_opt)·exp(β·z)` (COCO's noisy suite's form, as training losses are
//!   noisy in proportion to their size).
//!
//! The noise `z ~ N(0, 1)` is a hash of the instance and the point, so the same point gives the
//! same value (as a training run with a fixed seed does) and a run is reproducible; regret is
//! measured on the noiseless value ([`TestFunction::true_value`]).
//!
//! Without `_i<I>` the name is a *family*: instance `I` is chosen by whoever runs it
//! ([`BbobSpec::with_instance`]); `alcf-host compare` runs instance = seed in each repeat, so a
//! held-out set of instances is just a set of other seeds.

use std::sync::Arc;

use crate::bbob::{self, Problem};
use crate::{Evaluator, ParamKind, ParamSpec, ParamValue, TestFunction, UnknownFunction};

/// Noise on a suite problem's observations.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Noise {
    None,
    /// `f + σ·z`.
    Additive(f64),
    /// `f_opt + (f − f_opt)·exp(β·z)`.
    Multiplicative(f64),
}

/// A parsed suite name.
#[derive(Clone, Debug, PartialEq)]
pub struct BbobSpec {
    pub function: u8,
    /// `None`: a family, instantiated by [`BbobSpec::with_instance`].
    pub instance: Option<u32>,
    pub dim: usize,
    pub mixed: bool,
    pub noise: Noise,
}

/// Log-scaled coordinates live on [10^LOG_LOW, 10^LOG_HIGH].
const LOG_LOW: f64 = -4.0;
const LOG_HIGH: f64 = 0.0;
/// Grid step of integer coordinates, in BBOB units.
const INT_STEP: f64 = 0.5;
/// Labels of a categorical coordinate.
const LABELS: [&str; 6] = ["a", "b", "c", "d", "e", "f"];

/// A BBOB family (a suite name without `_i<I>`), `None` for any other name (a BBOB instance
/// included); the error is a malformed BBOB name.
pub fn family(name: &str, dim: Option<usize>) -> Result<Option<BbobSpec>, UnknownFunction> {
    let lower = name.trim().to_ascii_lowercase().replace('-', "_");
    let Some(rest) = lower.strip_prefix("bbob_f") else { return Ok(None) };
    let spec = BbobSpec::parse(name, rest, dim)?;
    Ok(spec.instance.is_none().then_some(spec))
}

impl BbobSpec {
    /// Parses `rest`, what follows `bbob_f` in `name` (lower case); `dim` is a dimension asked
    /// for separately (`bench:NAME:DIM`).
    pub fn parse(name: &str, rest: &str, dim: Option<usize>) -> Result<BbobSpec, UnknownFunction> {
        let bad = |why: &str| UnknownFunction(format!("`{name}`: {why}"));
        let mut parts = rest.split('_').peekable();
        let function: u8 = parts.next().and_then(|f| f.parse().ok()).ok_or_else(|| bad("bad BBOB function number"))?;
        if !(1..=24).contains(&function) {
            return Err(bad(&format!("BBOB functions are f1..f24, not f{function}")));
        }
        let mut instance = None;
        if let Some(i) = parts.peek().and_then(|p| p.strip_prefix('i')) {
            instance = Some(i.parse::<u32>().map_err(|_| bad("bad instance number"))?);
            parts.next();
        }
        let mut named = None;
        if let Some(d) = parts.peek().and_then(|p| p.strip_prefix('d')) {
            named = Some(d.parse::<usize>().map_err(|_| bad("bad dimension"))?);
            parts.next();
        }
        let mut spec = BbobSpec { function, instance, dim: 0, mixed: false, noise: Noise::None };
        for part in parts {
            if part == "mixed" {
                spec.mixed = true;
            } else if let Some(level) = part.strip_prefix("add").or_else(|| part.strip_prefix("mul")) {
                let level: f64 = level
                    .parse()
                    .ok()
                    .filter(|l: &f64| l.is_finite() && *l > 0.0)
                    .ok_or_else(|| bad(&format!("`{part}`: give the noise level, e.g. _add1 or _mul0.3")))?;
                if spec.noise != Noise::None {
                    return Err(bad("one noise at a time (_add<σ> or _mul<β>)"));
                }
                spec.noise =
                    if part.starts_with("add") { Noise::Additive(level) } else { Noise::Multiplicative(level) };
            } else {
                return Err(bad(&format!(
                    "unknown part `{part}` (expected bbob_fF[_iI]_dD[_mixed][_add<σ>|_mul<β>], e.g. bbob_f21_i3_d10_mixed_add1)"
                )));
            }
        }
        spec.dim = match (named, dim) {
            (Some(a), Some(b)) if a != b => return Err(bad(&format!("names dimension {a} but {b} was asked for"))),
            (Some(a), _) | (None, Some(a)) => a,
            (None, None) => return Err(bad("name the dimension: bbob_fF_iI_dD, e.g. bbob_f21_i3_d10")),
        };
        if !(2..=1000).contains(&spec.dim) {
            return Err(bad(&format!("dimension {} is out of range (2..=1000)", spec.dim)));
        }
        Ok(spec)
    }

    /// The same problem, instance `instance`.
    pub fn with_instance(&self, instance: u32) -> BbobSpec {
        BbobSpec { instance: Some(instance), ..self.clone() }
    }

    /// The canonical name: COCO's id (`bbob_f021_i03_d10`; a family without `_iII`), then the
    /// variant parts.
    pub fn name(&self) -> String {
        let mut s = format!("bbob_f{:03}", self.function);
        if let Some(i) = self.instance {
            s += &format!("_i{i:02}");
        }
        s += &format!("_d{:02}", self.dim);
        if self.mixed {
            s += "_mixed";
        }
        match self.noise {
            Noise::None => {}
            Noise::Additive(l) => s += &format!("_add{l}"),
            Noise::Multiplicative(l) => s += &format!("_mul{l}"),
        }
        s
    }

    /// The test function (an instance is needed).
    pub fn build(&self) -> Result<TestFunction, UnknownFunction> {
        let Some(instance) = self.instance else {
            return Err(UnknownFunction(format!(
                "`{}` is a family of instances: name one (bbob_f{}_i1_d{}…), or compare on the family, which runs instance = seed in each repeat",
                self.name(),
                self.function,
                self.dim
            )));
        };
        let p = Arc::new(Problem::new(self.function, self.dim, instance).map_err(UnknownFunction)?);
        let (params, argmin, to_x): (Vec<ParamSpec>, Vec<ParamValue>, Arc<Coordinates>) = if self.mixed {
            let c = Coordinates::mixed(&p);
            (c.params(), c.argmin(&p.x_opt), Arc::new(c))
        } else {
            let c = Coordinates::continuous(p.dim);
            (c.params(), p.x_opt.iter().map(|&v| ParamValue::Float(v)).collect(), Arc::new(c))
        };
        let truth: Evaluator = {
            let (p, to_x) = (Arc::clone(&p), Arc::clone(&to_x));
            Arc::new(move |v: &[ParamValue]| match to_x.x(v) {
                Some(x) => p.eval(&x),
                None => f64::NAN,
            })
        };
        let (eval, truth) = match self.noise {
            Noise::None => (truth, None),
            noise => {
                let seed = noise_seed(self.function, self.dim, instance);
                let f_opt = p.f_opt;
                let t = Arc::clone(&truth);
                let eval: Evaluator = Arc::new(move |v: &[ParamValue]| {
                    let f = t(v);
                    let z = gaussian(point_hash(seed, v));
                    match noise {
                        Noise::Additive(s) => f + s * z,
                        Noise::Multiplicative(b) => f_opt + (f - f_opt) * (b * z).exp(),
                        Noise::None => f,
                    }
                });
                (eval, Some(truth))
            }
        };
        Ok(TestFunction { name: self.name(), params, optimum: p.f_opt, argmin, eval, truth })
    }
}

/// What each parameter of a suite problem is, and how it maps to a BBOB coordinate.
enum Kind {
    Float,
    /// `x = -5 + 10·(log10 v − LOG_LOW)/(LOG_HIGH − LOG_LOW)`.
    Log,
    /// `x = offset + INT_STEP·n`, n in 0..=last.
    Int {
        offset: f64,
        last: i64,
    },
    /// `values[k]` is the coordinate of label `LABELS[k]`.
    Choice {
        values: Vec<f64>,
    },
}

struct Coordinates {
    kinds: Vec<Kind>,
}

impl Coordinates {
    fn continuous(dim: usize) -> Coordinates {
        Coordinates { kinds: (0..dim).map(|_| Kind::Float).collect() }
    }

    fn mixed(p: &Problem) -> Coordinates {
        let mut rng = SplitMix(noise_seed(p.function, p.dim, p.instance) ^ 0x006d_6978_6564);
        let kinds = p
            .x_opt
            .iter()
            .enumerate()
            .map(|(j, &xo)| match j % 4 {
                0 => Kind::Float,
                1 => Kind::Log,
                2 => {
                    // The grid through the optimum's coordinate, inside [-5, 5].
                    let offset = bbob::LOWER + (xo - bbob::LOWER).rem_euclid(INT_STEP);
                    let last = ((bbob::UPPER - offset) / INT_STEP + 1e-9).floor() as i64;
                    Kind::Int { offset, last }
                }
                _ => {
                    // Six values spread over the box, the one nearest the optimum replaced by it.
                    let n = LABELS.len();
                    let mut values: Vec<f64> = (0..n)
                        .map(|k| bbob::LOWER + (k as f64 + 0.5) * (bbob::UPPER - bbob::LOWER) / n as f64)
                        .collect();
                    let nearest =
                        (0..n).min_by(|&a, &b| (values[a] - xo).abs().total_cmp(&(values[b] - xo).abs())).unwrap_or(0);
                    values[nearest] = xo;
                    for k in (1..n).rev() {
                        let m = (rng.next() % (k as u64 + 1)) as usize;
                        values.swap(k, m);
                    }
                    Kind::Choice { values }
                }
            })
            .collect();
        Coordinates { kinds }
    }

    fn params(&self) -> Vec<ParamSpec> {
        self.kinds
            .iter()
            .enumerate()
            .map(|(j, k)| ParamSpec {
                name: format!("x{j}"),
                kind: match k {
                    Kind::Float => ParamKind::Float { low: bbob::LOWER, high: bbob::UPPER, log: false },
                    Kind::Log => ParamKind::Float { low: 10f64.powf(LOG_LOW), high: 10f64.powf(LOG_HIGH), log: true },
                    Kind::Int { last, .. } => ParamKind::Int { low: 0, high: *last, log: false },
                    Kind::Choice { .. } => ParamKind::Choice(LABELS.iter().map(|s| s.to_string()).collect()),
                },
            })
            .collect()
    }

    /// The BBOB point of parameter values (`None` when one is of the wrong kind or label).
    fn x(&self, v: &[ParamValue]) -> Option<Vec<f64>> {
        if v.len() != self.kinds.len() {
            return None;
        }
        self.kinds
            .iter()
            .zip(v)
            .map(|(k, v)| match (k, v) {
                (Kind::Float, ParamValue::Float(x)) => Some(*x),
                (Kind::Log, ParamValue::Float(x)) => {
                    Some(bbob::LOWER + (bbob::UPPER - bbob::LOWER) * (x.log10() - LOG_LOW) / (LOG_HIGH - LOG_LOW))
                }
                (Kind::Int { offset, .. }, ParamValue::Int(n)) => Some(offset + INT_STEP * *n as f64),
                (Kind::Choice { values }, ParamValue::Choice(c)) => {
                    LABELS.iter().position(|l| l == c).map(|k| values[k])
                }
                _ => None,
            })
            .collect()
    }

    /// The parameter values of the BBOB optimum.
    fn argmin(&self, x_opt: &[f64]) -> Vec<ParamValue> {
        self.kinds
            .iter()
            .zip(x_opt)
            .map(|(k, &xo)| match k {
                Kind::Float => ParamValue::Float(xo),
                Kind::Log => ParamValue::Float(
                    10f64.powf(LOG_LOW + (LOG_HIGH - LOG_LOW) * (xo - bbob::LOWER) / (bbob::UPPER - bbob::LOWER)),
                ),
                Kind::Int { offset, .. } => ParamValue::Int(((xo - offset) / INT_STEP).round() as i64),
                Kind::Choice { values } => {
                    let k = values.iter().position(|&v| v == xo).unwrap_or(0);
                    ParamValue::Choice(LABELS[k].to_string())
                }
            })
            .collect()
    }
}

fn noise_seed(function: u8, dim: usize, instance: u32) -> u64 {
    (u64::from(instance) << 32) ^ ((dim as u64) << 8) ^ u64::from(function) ^ 0x005e_ed0f_b0b0
}

/// A 64-bit hash of a point's exact values (floats by their bits, labels by their bytes).
fn point_hash(seed: u64, v: &[ParamValue]) -> u64 {
    let mut h = SplitMix(seed);
    let mut acc = h.next();
    for p in v {
        let word = match p {
            ParamValue::Float(x) => x.to_bits(),
            ParamValue::Int(n) => *n as u64 ^ 0x1000_0000_0000_0001,
            ParamValue::Choice(c) => {
                c.bytes().fold(0xcbf2_9ce4_8422_2325u64, |a, b| (a ^ u64::from(b)).wrapping_mul(0x100_0000_01b3))
            }
        };
        acc = SplitMix(acc ^ word).next();
    }
    acc
}

/// A standard normal draw from a hash (Box–Muller on two 53-bit uniforms).
fn gaussian(hash: u64) -> f64 {
    let mut r = SplitMix(hash);
    let u1 = ((r.next() >> 11) as f64 + 0.5) / (1u64 << 53) as f64;
    let u2 = (r.next() >> 11) as f64 / (1u64 << 53) as f64;
    (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
}

struct SplitMix(u64);

impl SplitMix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::by_name;

    #[test]
    fn names_round_trip_and_refuse_nonsense() {
        for (name, canonical) in [
            ("bbob_f21_i3_d10", "bbob_f021_i03_d10"),
            ("bbob_f021_i03_d10_mixed", "bbob_f021_i03_d10_mixed"),
            ("bbob_f1_i1_d5_add1", "bbob_f001_i01_d05_add1"),
            ("bbob_f8_i2_d2_mixed_mul0.3", "bbob_f008_i02_d02_mixed_mul0.3"),
        ] {
            assert_eq!(by_name(name, None).unwrap().name, canonical);
        }
        let family = BbobSpec::parse("bbob_f21_d5_mixed", "21_d5_mixed", None).unwrap();
        assert_eq!((family.instance, family.name()), (None, "bbob_f021_d05_mixed".to_string()));
        assert_eq!(family.with_instance(7).build().unwrap().name, "bbob_f021_i07_d05_mixed");
        let err = by_name("bbob_f21_d5", None).unwrap_err().0;
        assert!(err.contains("family of instances"), "{err}");
        for bad in ["bbob_f1_i1_d2_add", "bbob_f1_i1_d2_add-1", "bbob_f1_i1_d2_add1_mul1", "bbob_f1_i1_d2_noisy"] {
            assert!(by_name(bad, None).is_err(), "{bad}");
        }
    }

    #[test]
    fn mixed_spaces_reach_the_optimum_and_cover_every_kind() {
        for f in 1..=24u8 {
            for d in [2, 5, 10] {
                let t = BbobSpec { function: f, instance: Some(3), dim: d, mixed: true, noise: Noise::None }
                    .build()
                    .unwrap();
                let at = (t.eval)(&t.argmin);
                assert!((at - t.optimum).abs() <= 1e-9 * t.optimum.abs().max(1.0), "{}: {at} vs {}", t.name, t.optimum);
                // The continuous problem at the same point agrees (the mapping is the identity there).
                let plain = crate::bbob_function(f, d, 3).unwrap();
                assert_eq!(plain.optimum, t.optimum);
                let kinds: Vec<_> = t.params.iter().map(|p| std::mem::discriminant(&p.kind)).collect();
                if d >= 4 {
                    assert_eq!(kinds.iter().collect::<std::collections::HashSet<_>>().len(), 3, "{}", t.name);
                }
                for (p, a) in t.params.iter().zip(&t.argmin) {
                    match (&p.kind, a) {
                        (ParamKind::Float { low, high, .. }, ParamValue::Float(x)) => assert!(low <= x && x <= high),
                        (ParamKind::Int { low, high, .. }, ParamValue::Int(n)) => assert!(low <= n && n <= high),
                        (ParamKind::Choice(c), ParamValue::Choice(l)) => assert!(c.contains(l)),
                        other => panic!("{}: {other:?}", t.name),
                    }
                }
            }
        }
        // A label's position is shuffled per instance.
        let order = |i| match &Coordinates::mixed(&Problem::new(1, 4, i).unwrap()).kinds[3] {
            Kind::Choice { values } => values.clone(),
            _ => unreachable!(),
        };
        assert_ne!(order(1), order(2));
    }

    #[test]
    fn noise_is_reproducible_centred_and_scaled_and_regret_uses_the_truth() {
        let plain = by_name("bbob_f1_i1_d5", None).unwrap();
        for (name, sigma) in [("bbob_f1_i1_d5_add2", 2.0), ("bbob_f1_i1_d5_mul0.5", 0.5)] {
            let t = by_name(name, None).unwrap();
            let mut zs = Vec::new();
            for k in 0..4000 {
                let mut r = SplitMix(k);
                let x: Vec<ParamValue> = (0..5)
                    .map(|_| ParamValue::Float(-5.0 + 10.0 * (r.next() >> 11) as f64 / (1u64 << 53) as f64))
                    .collect();
                let (y, truth) = ((t.eval)(&x), t.true_value(&x));
                assert_eq!(truth, (plain.eval)(&x));
                assert_eq!(y, (t.eval)(&x), "the same point gives the same value");
                zs.push(if name.contains("add") {
                    (y - truth) / sigma
                } else {
                    ((y - t.optimum) / (truth - t.optimum)).ln() / sigma
                });
            }
            let mean = zs.iter().sum::<f64>() / zs.len() as f64;
            let sd = (zs.iter().map(|z| (z - mean).powi(2)).sum::<f64>() / zs.len() as f64).sqrt();
            assert!(mean.abs() < 0.06 && (sd - 1.0).abs() < 0.06, "{name}: mean {mean}, sd {sd}");
        }
        // The noiseless problem's truth is its value.
        assert!(plain.truth.is_none());
        assert_eq!(plain.true_value(&plain.argmin), plain.optimum);
    }
}
