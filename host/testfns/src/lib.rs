//! Standard test functions for minimization, with their bounds and known global minima.
//!
//! | name | dim | domain | minimum |
//! |---|---|---|---|
//! | `branin` | 2 | x1 ∈ [−5, 10], x2 ∈ [0, 15] | 0.397887 at (−π, 12.275), (π, 2.275), (9.42478, 2.475) |
//! | `hartmann3` | 3 | [0, 1]³ | −3.86278 at (0.114614, 0.555649, 0.852547) |
//! | `hartmann6` | 6 | [0, 1]⁶ | −3.32237 at (0.20169, 0.150011, 0.476874, 0.275332, 0.311652, 0.6573) |
//! | `ackley<d>` | d | [−32.768, 32.768]^d | 0 at 0 |
//! | `rosenbrock<d>` | d ≥ 2 | [−5, 10]^d | 0 at (1, …, 1) |
//! | `levy<d>` | d | [−10, 10]^d | 0 at (1, …, 1) |
//! | `styblinski_tang<d>` | d | [−5, 5]^d | −39.16616570377142·d at (−2.903534, …) |
//! | `mixed` | 4 | x ∈ [−5, 5] float, lr ∈ [1e−5, 1e−1] log float, n ∈ [−5, 5] int, c ∈ {a, b, c, d} | 0 at x = 1.5, lr = 1e−3, n = 2, c = "b" |
//!
//! [`by_name`] accepts `ackley5` or (`ackley`, Some(5)); without a dimension the defaults are
//! ackley 5, rosenbrock 4, levy 5, styblinski_tang 5. `eval` takes values in `params` order.
//!
//! [`multi`] has the two-objective problems (ZDT1–3, `zdt1_d5`) with their Pareto fronts.

pub mod bbob;
pub mod multi;
pub mod suite;

use std::f64::consts::PI;
use std::fmt;
use std::sync::Arc;

/// Where a parameter lives.
#[derive(Clone, Debug, PartialEq)]
pub enum ParamKind {
    Float { low: f64, high: f64, log: bool },
    Int { low: i64, high: i64, log: bool },
    Choice(Vec<String>),
}

#[derive(Clone, Debug, PartialEq)]
pub struct ParamSpec {
    pub name: String,
    pub kind: ParamKind,
}

/// One argument value.
#[derive(Clone, Debug, PartialEq)]
pub enum ParamValue {
    Float(f64),
    Int(i64),
    Choice(String),
}

impl ParamValue {
    fn num(&self) -> f64 {
        match self {
            ParamValue::Float(v) => *v,
            ParamValue::Int(v) => *v as f64,
            ParamValue::Choice(_) => f64::NAN,
        }
    }
}

/// A function of values in `params` order (shared: a BBOB instance carries its rotations).
pub type Evaluator = Arc<dyn Fn(&[ParamValue]) -> f64 + Send + Sync>;

/// A test function (to be minimized).
#[derive(Clone)]
pub struct TestFunction {
    /// Canonical name, with the dimension for the scalable ones (`ackley5`).
    pub name: String,
    pub params: Vec<ParamSpec>,
    /// The global minimum value.
    pub optimum: f64,
    /// A global minimizer, in `params` order.
    pub argmin: Vec<ParamValue>,
    /// Evaluates the function at values given in `params` order: what a trial observes.
    pub eval: Evaluator,
    /// The noiseless value, for a noisy function (`eval` is then an observation of it); regret
    /// is measured on this.
    pub truth: Option<Evaluator>,
}

impl fmt::Debug for TestFunction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TestFunction")
            .field("name", &self.name)
            .field("params", &self.params)
            .field("optimum", &self.optimum)
            .field("argmin", &self.argmin)
            .finish_non_exhaustive()
    }
}

impl TestFunction {
    pub fn dim(&self) -> usize {
        self.params.len()
    }
    /// `value − optimum` (simple regret of a best value).
    pub fn regret(&self, value: f64) -> f64 {
        value - self.optimum
    }
    /// The noiseless value at `v` (`eval` itself for a function without noise).
    pub fn true_value(&self, v: &[ParamValue]) -> f64 {
        match &self.truth {
            Some(t) => t(v),
            None => (self.eval)(v),
        }
    }
    /// Evaluates at float coordinates (only for all-float functions).
    pub fn eval_f64(&self, x: &[f64]) -> f64 {
        let v: Vec<ParamValue> = x.iter().map(|&x| ParamValue::Float(x)).collect();
        (self.eval)(&v)
    }
}

/// The name given to [`by_name`] is not a known function (or its dimension is invalid).
#[derive(Clone, Debug, PartialEq)]
pub struct UnknownFunction(pub String);

impl fmt::Display for UnknownFunction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} (known: {}, the two-objective zdt1, zdt2, zdt3 [_dN], and bbob_fF_iI_dD[_mixed][_add<σ>|_mul<β>]: BBOB function F in 1..=24, instance I, dimension D, a mixed space, noise)",
            self.0,
            NAMES.join(", ")
        )
    }
}
impl std::error::Error for UnknownFunction {}

/// Names accepted by [`by_name`] (the scalable ones also with a dimension suffix, e.g. `levy5`).
pub const NAMES: &[&str] =
    &["branin", "hartmann3", "hartmann6", "ackley", "rosenbrock", "levy", "styblinski_tang", "mixed"];

/// The six functions of the quality benchmark (docs/benchmarks.md), in its order.
pub const BENCHMARK: &[&str] = &["branin", "hartmann6", "ackley5", "rosenbrock4", "levy5", "styblinski_tang5"];

/// Looks a function up by name, e.g. `by_name("ackley5", None)` or `by_name("ackley", Some(5))`.
pub fn by_name(name: &str, dim: Option<usize>) -> Result<TestFunction, UnknownFunction> {
    let lower = name.trim().to_ascii_lowercase().replace('-', "_");
    if let Some(rest) = lower.strip_prefix("bbob_f") {
        return bbob_by_name(name, rest, dim);
    }
    let base = lower.trim_end_matches(|c: char| c.is_ascii_digit());
    let suffix = &lower[base.len()..];
    let base = base.trim_end_matches('_');
    let suffix_dim = if suffix.is_empty() {
        None
    } else {
        Some(suffix.parse::<usize>().map_err(|_| UnknownFunction(format!("bad dimension in `{name}`")))?)
    };
    // hartmann3/6 carry their dimension in the name.
    let fixed = |f: TestFunction| -> Result<TestFunction, UnknownFunction> {
        match dim {
            Some(d) if d != f.dim() => Err(UnknownFunction(format!("`{name}` has dimension {}, not {d}", f.dim()))),
            _ => Ok(f),
        }
    };
    if base == "hartmann" {
        return match suffix_dim {
            Some(3) => fixed(hartmann3()),
            Some(6) => fixed(hartmann6()),
            _ => Err(UnknownFunction(format!("`{name}`: hartmann comes as hartmann3 or hartmann6"))),
        };
    }
    if base == "branin" && suffix_dim.is_none() {
        return fixed(branin());
    }
    if base == "mixed" && suffix_dim.is_none() {
        return fixed(mixed());
    }
    let d = match (suffix_dim, dim) {
        (Some(a), Some(b)) if a != b => {
            return Err(UnknownFunction(format!("`{name}` names dimension {a} but {b} was asked for")));
        }
        (Some(a), _) | (None, Some(a)) => Some(a),
        (None, None) => None,
    };
    let scalable = |default: usize, min: usize, make: fn(usize) -> TestFunction| {
        let d = d.unwrap_or(default);
        if d < min || d > 1000 {
            Err(UnknownFunction(format!("`{name}`: dimension {d} is out of range ({min}..=1000)")))
        } else {
            Ok(make(d))
        }
    };
    match base {
        "ackley" => scalable(5, 1, ackley),
        "rosenbrock" => scalable(4, 2, rosenbrock),
        "levy" => scalable(5, 1, levy),
        "styblinski_tang" | "styblinskitang" => scalable(5, 1, styblinski_tang),
        _ => Err(UnknownFunction(format!("unknown test function `{name}`"))),
    }
}

/// `bbob_f<F>_i<I>_d<D>` with the suite's variant parts ([`suite`]); `rest` is what follows
/// `bbob_f`.
fn bbob_by_name(name: &str, rest: &str, dim: Option<usize>) -> Result<TestFunction, UnknownFunction> {
    suite::BbobSpec::parse(name, rest, dim)?.build()
}

/// BBOB function `function` (1..=24), instance `instance`, in `dim` dimensions, as a test
/// function over [-5, 5]^dim, named with COCO's problem id (`bbob_f021_i03_d10`).
pub fn bbob_function(function: u8, dim: usize, instance: u32) -> Result<TestFunction, String> {
    suite::BbobSpec { function, instance: Some(instance), dim, mixed: false, noise: suite::Noise::None }
        .build()
        .map_err(|e| e.0)
}

fn floats(prefix: &str, d: usize, low: f64, high: f64) -> Vec<ParamSpec> {
    (0..d)
        .map(|i| ParamSpec { name: format!("{prefix}{i}"), kind: ParamKind::Float { low, high, log: false } })
        .collect()
}

fn xs(v: &[ParamValue]) -> Vec<f64> {
    v.iter().map(ParamValue::num).collect()
}

fn at(x: &[f64]) -> Vec<ParamValue> {
    x.iter().map(|&v| ParamValue::Float(v)).collect()
}

pub fn branin() -> TestFunction {
    fn f(v: &[ParamValue]) -> f64 {
        let (x1, x2) = (v[0].num(), v[1].num());
        let b = 5.1 / (4.0 * PI * PI);
        let c = 5.0 / PI;
        let t = 1.0 / (8.0 * PI);
        (x2 - b * x1 * x1 + c * x1 - 6.0).powi(2) + 10.0 * (1.0 - t) * x1.cos() + 10.0
    }
    TestFunction {
        name: "branin".into(),
        params: vec![
            ParamSpec { name: "x1".into(), kind: ParamKind::Float { low: -5.0, high: 10.0, log: false } },
            ParamSpec { name: "x2".into(), kind: ParamKind::Float { low: 0.0, high: 15.0, log: false } },
        ],
        optimum: 0.397_887_357_729_738_2,
        argmin: at(&[PI, 2.275]),
        eval: Arc::new(f),
        truth: None,
    }
}

const H3_A: [[f64; 3]; 4] = [[3.0, 10.0, 30.0], [0.1, 10.0, 35.0], [3.0, 10.0, 30.0], [0.1, 10.0, 35.0]];
const H3_P: [[f64; 3]; 4] =
    [[3689.0, 1170.0, 2673.0], [4699.0, 4387.0, 7470.0], [1091.0, 8732.0, 5547.0], [381.0, 5743.0, 8828.0]];
const H6_A: [[f64; 6]; 4] = [
    [10.0, 3.0, 17.0, 3.5, 1.7, 8.0],
    [0.05, 10.0, 17.0, 0.1, 8.0, 14.0],
    [3.0, 3.5, 1.7, 10.0, 17.0, 8.0],
    [17.0, 8.0, 0.05, 10.0, 0.1, 14.0],
];
const H6_P: [[f64; 6]; 4] = [
    [1312.0, 1696.0, 5569.0, 124.0, 8283.0, 5886.0],
    [2329.0, 4135.0, 8307.0, 3736.0, 1004.0, 9991.0],
    [2348.0, 1451.0, 3522.0, 2883.0, 3047.0, 6650.0],
    [4047.0, 8828.0, 8732.0, 5743.0, 1091.0, 381.0],
];
const H_ALPHA: [f64; 4] = [1.0, 1.2, 3.0, 3.2];

fn hartmann<const D: usize>(x: &[f64], a: &[[f64; D]; 4], p: &[[f64; D]; 4]) -> f64 {
    -(0..4)
        .map(|i| {
            let s: f64 = (0..D).map(|j| a[i][j] * (x[j] - 1e-4 * p[i][j]).powi(2)).sum();
            H_ALPHA[i] * (-s).exp()
        })
        .sum::<f64>()
}

pub fn hartmann3() -> TestFunction {
    fn f(v: &[ParamValue]) -> f64 {
        hartmann(&xs(v), &H3_A, &H3_P)
    }
    TestFunction {
        name: "hartmann3".into(),
        params: floats("x", 3, 0.0, 1.0),
        optimum: -3.862_782_147_820_756,
        argmin: at(&[0.114_614, 0.555_649, 0.852_547]),
        eval: Arc::new(f),
        truth: None,
    }
}

pub fn hartmann6() -> TestFunction {
    fn f(v: &[ParamValue]) -> f64 {
        hartmann(&xs(v), &H6_A, &H6_P)
    }
    TestFunction {
        name: "hartmann6".into(),
        params: floats("x", 6, 0.0, 1.0),
        optimum: -3.322_368_011_415_515,
        argmin: at(&[0.201_69, 0.150_011, 0.476_874, 0.275_332, 0.311_652, 0.6573]),
        eval: Arc::new(f),
        truth: None,
    }
}

pub fn ackley(d: usize) -> TestFunction {
    fn f(v: &[ParamValue]) -> f64 {
        let x = xs(v);
        let n = x.len() as f64;
        let s1 = x.iter().map(|v| v * v).sum::<f64>() / n;
        let s2 = x.iter().map(|v| (2.0 * PI * v).cos()).sum::<f64>() / n;
        (-20.0 * (-0.2 * s1.sqrt()).exp() - s2.exp() + 20.0 + std::f64::consts::E).max(0.0)
    }
    TestFunction {
        name: format!("ackley{d}"),
        params: floats("x", d, -32.768, 32.768),
        optimum: 0.0,
        argmin: at(&vec![0.0; d]),
        eval: Arc::new(f),
        truth: None,
    }
}

pub fn rosenbrock(d: usize) -> TestFunction {
    fn f(v: &[ParamValue]) -> f64 {
        let x = xs(v);
        x.windows(2).map(|w| 100.0 * (w[1] - w[0] * w[0]).powi(2) + (1.0 - w[0]).powi(2)).sum()
    }
    TestFunction {
        name: format!("rosenbrock{d}"),
        params: floats("x", d, -5.0, 10.0),
        optimum: 0.0,
        argmin: at(&vec![1.0; d]),
        eval: Arc::new(f),
        truth: None,
    }
}

pub fn levy(d: usize) -> TestFunction {
    fn f(v: &[ParamValue]) -> f64 {
        let w: Vec<f64> = xs(v).iter().map(|x| 1.0 + (x - 1.0) / 4.0).collect();
        let n = w.len();
        let mut s = (PI * w[0]).sin().powi(2);
        for wi in &w[..n - 1] {
            s += (wi - 1.0).powi(2) * (1.0 + 10.0 * (PI * wi + 1.0).sin().powi(2));
        }
        s + (w[n - 1] - 1.0).powi(2) * (1.0 + (2.0 * PI * w[n - 1]).sin().powi(2))
    }
    TestFunction {
        name: format!("levy{d}"),
        params: floats("x", d, -10.0, 10.0),
        optimum: 0.0,
        argmin: at(&vec![1.0; d]),
        eval: Arc::new(f),
        truth: None,
    }
}

/// Minimizer coordinate of Styblinski–Tang.
pub const STYBLINSKI_TANG_X: f64 = -2.903_534_027_771_177_6;
const STYBLINSKI_TANG_MIN_1D: f64 = -39.166_165_703_771_42;

pub fn styblinski_tang(d: usize) -> TestFunction {
    fn f(v: &[ParamValue]) -> f64 {
        xs(v).iter().map(|x| x.powi(4) - 16.0 * x * x + 5.0 * x).sum::<f64>() / 2.0
    }
    TestFunction {
        name: format!("styblinski_tang{d}"),
        params: floats("x", d, -5.0, 5.0),
        optimum: STYBLINSKI_TANG_MIN_1D * d as f64,
        argmin: at(&vec![STYBLINSKI_TANG_X; d]),
        eval: Arc::new(f),
        truth: None,
    }
}

/// A mixed float / log-float / int / categorical function:
/// `(x − 1.5)² + (log10 lr + 3)² + 0.5·(n − 2)² + penalty(c)`, penalty a: 1, b: 0, c: 2, d: 0.5.
pub fn mixed() -> TestFunction {
    fn f(v: &[ParamValue]) -> f64 {
        let x = v[0].num();
        let lr = v[1].num();
        let n = v[2].num();
        let pen = match &v[3] {
            ParamValue::Choice(c) => match c.as_str() {
                "a" => 1.0,
                "b" => 0.0,
                "c" => 2.0,
                "d" => 0.5,
                _ => f64::NAN,
            },
            _ => f64::NAN,
        };
        (x - 1.5).powi(2) + (lr.log10() + 3.0).powi(2) + 0.5 * (n - 2.0).powi(2) + pen
    }
    TestFunction {
        name: "mixed".into(),
        params: vec![
            ParamSpec { name: "x".into(), kind: ParamKind::Float { low: -5.0, high: 5.0, log: false } },
            ParamSpec { name: "lr".into(), kind: ParamKind::Float { low: 1e-5, high: 1e-1, log: true } },
            ParamSpec { name: "n".into(), kind: ParamKind::Int { low: -5, high: 5, log: false } },
            ParamSpec {
                name: "c".into(),
                kind: ParamKind::Choice(vec!["a".into(), "b".into(), "c".into(), "d".into()]),
            },
        ],
        optimum: 0.0,
        argmin: vec![
            ParamValue::Float(1.5),
            ParamValue::Float(1e-3),
            ParamValue::Int(2),
            ParamValue::Choice("b".into()),
        ],
        eval: Arc::new(f),
        truth: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(f: &TestFunction, tol: f64) {
        let v = (f.eval)(&f.argmin);
        assert!((v - f.optimum).abs() < tol, "{}: f(argmin) = {v}, optimum {}", f.name, f.optimum);
        // The minimizer is inside the bounds, and a nearby corner of the box is worse.
        for (p, a) in f.params.iter().zip(&f.argmin) {
            if let (ParamKind::Float { low, high, .. }, ParamValue::Float(x)) = (&p.kind, a) {
                assert!(low <= x && x <= high);
            }
        }
        let mut rng = 12345u64;
        for _ in 0..200 {
            let x: Vec<ParamValue> = f
                .params
                .iter()
                .map(|p| {
                    rng = rng.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                    let u = (rng >> 11) as f64 / (1u64 << 53) as f64;
                    match &p.kind {
                        ParamKind::Float { low, high, log: false } => ParamValue::Float(low + u * (high - low)),
                        ParamKind::Float { low, high, log: true } => {
                            ParamValue::Float((low.ln() + u * (high.ln() - low.ln())).exp())
                        }
                        ParamKind::Int { low, high, .. } => ParamValue::Int(low + (u * (high - low + 1) as f64) as i64),
                        ParamKind::Choice(c) => ParamValue::Choice(c[(u * c.len() as f64) as usize % c.len()].clone()),
                    }
                })
                .collect();
            assert!((f.eval)(&x) >= f.optimum - 1e-9, "{}: value below the optimum", f.name);
        }
    }

    #[test]
    fn optima() {
        check(&branin(), 1e-6);
        let b = branin();
        assert!((b.eval_f64(&[-PI, 12.275]) - b.optimum).abs() < 1e-6);
        assert!((b.eval_f64(&[9.424_78, 2.475]) - b.optimum).abs() < 1e-5);
        check(&hartmann3(), 1e-5);
        check(&hartmann6(), 1e-5);
        for d in [1, 2, 5, 10] {
            check(&ackley(d), 1e-12);
            check(&levy(d), 1e-12);
            check(&styblinski_tang(d), 1e-9);
        }
        check(&rosenbrock(2), 1e-12);
        check(&rosenbrock(4), 1e-12);
        check(&mixed(), 1e-12);
    }

    #[test]
    fn names() {
        assert_eq!(by_name("ackley5", None).unwrap().dim(), 5);
        assert_eq!(by_name("ackley", Some(3)).unwrap().name, "ackley3");
        assert_eq!(by_name("Styblinski-Tang", None).unwrap().name, "styblinski_tang5");
        assert_eq!(by_name("levy_5", None).unwrap().dim(), 5);
        assert_eq!(by_name("hartmann6", Some(6)).unwrap().dim(), 6);
        assert!(by_name("hartmann6", Some(3)).is_err());
        assert!(by_name("ackley5", Some(4)).is_err());
        assert!(by_name("rosenbrock1", None).is_err());
        assert!(by_name("sphere", None).unwrap_err().to_string().contains("known:"));
        for n in BENCHMARK.iter().chain(NAMES) {
            by_name(n, None).unwrap();
        }
        assert_eq!(mixed().regret(0.5), 0.5);
    }

    #[test]
    fn bbob_problems_by_name() {
        let f = by_name("bbob_f001_i01_d02", None).unwrap();
        assert_eq!((f.name.as_str(), f.dim(), f.optimum), ("bbob_f001_i01_d02", 2, 79.48));
        assert_eq!((f.eval)(&f.argmin), f.optimum);
        let g = by_name("bbob_f21_i3", Some(10)).unwrap();
        assert_eq!((g.name.as_str(), g.dim()), ("bbob_f021_i03_d10", 10));
        assert!(g.eval_f64(&[0.0; 10]) >= g.optimum);
        assert_eq!(by_name("BBOB_F21_I3_D10", None).unwrap().name, g.name);
        for bad in ["bbob_f21_i3", "bbob_f25_i1_d2", "bbob_f1_d2", "bbob_f1_i1_d1", "bbob_fx_i1_d2", "bbob_f1_i1_d2_x"]
        {
            assert!(by_name(bad, None).is_err(), "{bad}");
        }
        assert!(by_name("bbob_f1_i1_d2", Some(3)).unwrap_err().0.contains("names dimension 2 but 3"));
    }
}
