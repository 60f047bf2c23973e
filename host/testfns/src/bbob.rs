//! The 24 noiseless BBOB benchmark functions (COCO's `bbob` suite), bit-compatible with COCO.
//!
//! This is a from-reading reimplementation of COCO's reference C code (numbbo/coco,
//! `code-experiments/src`: `suite_bbob_legacy_code.c`, `suite_bbob.c`, the `f_*.c` files and
//! the `transform_vars_*.c` / `transform_obj_*.c` files), checked against the `cocoex` Python
//! package (see `scripts/bbob-fixture.py` and `tests/bbob.rs`). Every random quantity (optimum
//! location, objective offset, rotations, Gallagher peaks, sign vectors) is derived from the
//! legacy BBOB2009 generator exactly as COCO does, and every evaluation performs the same
//! floating-point operations in the same order, so values agree with COCO to the last bit on
//! the same platform libm (sin/cos/exp/log/pow are the only non-IEEE-exact operations used).
//!
//! # Instances
//!
//! `Problem::new(f, d, i)` is COCO's problem `bbob_f{f:03}_i{i:02}_d{d:02}`: the `bbob` suite
//! uses its instance numbers directly (`suite->instances[k]` is passed unchanged to
//! `coco_get_bbob_problem`), so there is no table from suite instance to seed. The seeds are
//! `rseed = f + 10000 * i` for the variables (except f4, which uses `3 + 10000 * i`, and f18,
//! which uses `17 + 10000 * i`, i.e. they share f3's and f17's optimum and rotations) and
//! `bbob2009_compute_fopt(f, i)` for the objective offset (with the same 4→3 and 18→17 seed
//! rule). Any `u32` instance is accepted; COCO's suite itself only lists some of them
//! (`year: 2009` = 1-5, `2010`–`2012` = 1-15, ..., `2023+` = 1-5,101-110).
//!
//! # Domain and optimum
//!
//! The region of interest is `[-5, 5]^d` ([`LOWER`], [`UPPER`]); the functions are defined
//! (with penalties where COCO has them) outside it too. `x_opt` is COCO's `best_parameter`
//! and `f_opt` its `best_value` (both bit-identical to COCO's). `eval(&x_opt) == f_opt`
//! exactly for every function except f20 (Schwefel): COCO computes its `best_value` at the
//! innermost raw function and propagates `best_parameter` outwards through the variable
//! transformations, and the round trip can move the value by a few ulps (seen: <= 3.6e-15, in
//! 8 of the 90 problems f20 x {2,3,5,10,20,40} x instances 1-15; COCO itself behaves the same).
//!
//! ```
//! use alcf_testfns::bbob::Problem;
//! let p = Problem::new(1, 2, 1).unwrap();
//! assert_eq!(p.name(), "bbob_f001_i01_d02");
//! assert_eq!(p.eval(&p.x_opt), p.f_opt);
//! assert_eq!(p.f_opt, 79.48);
//! ```

use std::f64::consts::PI;

/// Lower bound of the region of interest in every coordinate.
pub const LOWER: f64 = -5.0;
/// Upper bound of the region of interest in every coordinate.
pub const UPPER: f64 = 5.0;

/// Short names of f1..f24 (`NAMES[f - 1]`).
pub const NAMES: [&str; 24] = [
    "sphere",
    "ellipsoid_separable",
    "rastrigin_separable",
    "bueche_rastrigin",
    "linear_slope",
    "attractive_sector",
    "step_ellipsoid",
    "rosenbrock",
    "rosenbrock_rotated",
    "ellipsoid",
    "discus",
    "bent_cigar",
    "sharp_ridge",
    "different_powers",
    "rastrigin",
    "weierstrass",
    "schaffers_f7",
    "schaffers_f7_ill_conditioned",
    "griewank_rosenbrock",
    "schwefel",
    "gallagher_101",
    "gallagher_21",
    "katsuura",
    "lunacek_bi_rastrigin",
];

/// COCO's `coco_pi` (the same double as `PI`) and `coco_two_pi`.
const TWO_PI: f64 = 2.0 * PI;

type Matrix = Vec<Vec<f64>>;

/// One BBOB problem: function `function` (1..=24) in dimension `dim`, instance `instance`.
#[derive(Clone, Debug)]
pub struct Problem {
    /// BBOB function number, 1..=24.
    pub function: u8,
    /// Number of variables, >= 2.
    pub dim: usize,
    /// Instance number as used by COCO's suite (`bbob_f..._i{instance}_d...`).
    pub instance: u32,
    /// COCO's `best_parameter`: the location of the optimum.
    pub x_opt: Vec<f64>,
    /// COCO's `best_value`: `eval(&x_opt)`, the optimal value.
    pub f_opt: f64,
    spec: Spec,
}

/// Precomputed per-function data, following COCO's transformation chains.
#[derive(Clone, Debug)]
enum Spec {
    /// f1: sphere(x - xopt).
    Sphere { xopt: Vec<f64> },
    /// f2: ellipsoid(tosz(x - xopt)).
    EllipsoidSeparable { xopt: Vec<f64> },
    /// f3: rastrigin(cond10(tasy0.2(tosz(x - xopt)))).
    RastriginSeparable { xopt: Vec<f64> },
    /// f4: bueche_rastrigin(brs(tosz(x - xopt))) + 100 * penalty(x).
    BuecheRastrigin { xopt: Vec<f64> },
    /// f5: linear slope towards `best` (the corner ±5).
    LinearSlope { best: Vec<f64> },
    /// f6: power0.9(osc(attractive_sector(M (x - xopt)))).
    AttractiveSector { xopt: Vec<f64>, m: Matrix },
    /// f7: monolithic step ellipsoid.
    StepEllipsoid { xopt: Vec<f64>, rot1: Matrix, rot2: Matrix },
    /// f8: rosenbrock(factor * (x - xopt) + 1).
    Rosenbrock { xopt: Vec<f64>, factor: f64 },
    /// f9: rosenbrock(M x + 0.5).
    RosenbrockRotated { m: Matrix },
    /// f10: ellipsoid(tosz(R (x - xopt))).
    Ellipsoid { xopt: Vec<f64>, r: Matrix },
    /// f11: discus(tosz(R (x - xopt))).
    Discus { xopt: Vec<f64>, r: Matrix },
    /// f12: bent_cigar(R tasy0.5(R (x - xopt))).
    BentCigar { xopt: Vec<f64>, r: Matrix },
    /// f13: sharp_ridge(M (x - xopt)).
    SharpRidge { xopt: Vec<f64>, m: Matrix },
    /// f14: different_powers(R (x - xopt)).
    DifferentPowers { xopt: Vec<f64>, r: Matrix },
    /// f15: rastrigin(M tasy0.2(tosz(R1 (x - xopt)))).
    Rastrigin { xopt: Vec<f64>, r1: Matrix, m: Matrix },
    /// f16: weierstrass(M tosz(R1 (x - xopt))) + 10/d * penalty(x).
    Weierstrass { xopt: Vec<f64>, r1: Matrix, m: Matrix, w: Weier },
    /// f17, f18: schaffers(M tasy0.5(R1 (x - xopt))) + 10 * penalty(x).
    Schaffers { xopt: Vec<f64>, r1: Matrix, m: Matrix },
    /// f19: griewank_rosenbrock(M x + 0.5).
    GriewankRosenbrock { m: Matrix },
    /// f20: schwefel(100 * (cond10(zhat(2 * xhat(x)) - 2|xopt|) + 2|xopt|)).
    Schwefel { xopt: Vec<f64>, flip: Vec<bool> },
    /// f21, f22: Gallagher with 101 or 21 peaks.
    Gallagher(Box<Gallagher>),
    /// f23: katsuura(M (x - xopt)) + penalty(x).
    Katsuura { xopt: Vec<f64>, m: Matrix },
    /// f24: monolithic Lunacek bi-Rastrigin.
    Lunacek { xopt: Vec<f64>, rot1: Matrix, rot2: Matrix },
}

#[derive(Clone, Debug)]
struct Weier {
    f0: f64,
    ak: [f64; 12],
    bk: [f64; 12],
}

#[derive(Clone, Debug)]
struct Gallagher {
    rotation: Matrix,
    /// `x_local[i][j]`: coordinate i of peak j (in rotated space).
    x_local: Matrix,
    /// `arr_scales[j][i]`: scale of coordinate i for peak j.
    arr_scales: Matrix,
    peak_values: Vec<f64>,
}

impl Problem {
    /// Builds COCO's `bbob_f{function}_i{instance}_d{dim}`.
    ///
    /// Errors when `function` is not in 1..=24 or `dim < 2`.
    pub fn new(function: u8, dim: usize, instance: u32) -> Result<Problem, String> {
        if !(1..=24).contains(&function) {
            return Err(format!("bbob: function must be in 1..=24, got {function}"));
        }
        if dim < 2 {
            return Err(format!("bbob: dimension must be >= 2, got {dim}"));
        }
        let f = function as i64;
        let inst = instance as i64;
        let rseed = f + 10000 * inst;
        let rseed_3 = 3 + 10000 * inst;
        let rseed_17 = 17 + 10000 * inst;
        let fopt = compute_fopt(function, instance);
        let n = dim;
        let zeros = vec![0.0; n];

        // (spec, x_opt, value of the innermost raw function at its best parameter)
        let (spec, x_opt, raw_best) = match function {
            1 => {
                let xopt = compute_xopt(rseed, n);
                (Spec::Sphere { xopt: xopt.clone() }, xopt, 0.0)
            }
            2 => {
                let xopt = compute_xopt(rseed, n);
                (Spec::EllipsoidSeparable { xopt: xopt.clone() }, xopt, ellipsoid_raw(&zeros, 1.0e6))
            }
            3 => {
                let xopt = compute_xopt(rseed, n);
                (Spec::RastriginSeparable { xopt: xopt.clone() }, xopt, rastrigin_raw(&zeros))
            }
            4 => {
                let mut xopt = compute_xopt(rseed_3, n);
                for v in xopt.iter_mut().step_by(2) {
                    *v = v.abs();
                }
                (Spec::BuecheRastrigin { xopt: xopt.clone() }, xopt, bueche_rastrigin_raw(&zeros))
            }
            5 => {
                let xopt = compute_xopt(rseed, n);
                let best: Vec<f64> = xopt.iter().map(|&v| if v < 0.0 { LOWER } else { UPPER }).collect();
                let raw = linear_slope_raw(&best, &best);
                (Spec::LinearSlope { best: best.clone() }, best, raw)
            }
            6 => {
                let xopt = compute_xopt(rseed, n);
                let rot1 = compute_rotation(rseed + 1_000_000, n);
                let rot2 = compute_rotation(rseed, n);
                let m = scaled_product(&rot1, &rot2, 10.0f64.sqrt());
                let raw = obj_power(obj_oscillate(attractive_sector_raw(&zeros, &xopt)), 0.9);
                (Spec::AttractiveSector { xopt: xopt.clone(), m }, xopt, raw)
            }
            7 => {
                let xopt = compute_xopt(rseed, n);
                let rot1 = compute_rotation(rseed + 1_000_000, n);
                let rot2 = compute_rotation(rseed, n);
                // COCO sets best_value = fopt directly for this monolithic function.
                (Spec::StepEllipsoid { xopt: xopt.clone(), rot1, rot2 }, xopt, 0.0)
            }
            8 => {
                let mut xopt = compute_xopt(rseed, n);
                for v in xopt.iter_mut() {
                    *v *= 0.75;
                }
                let factor = coco_max(1.0, (n as f64).sqrt() / 8.0);
                let raw = rosenbrock_raw(&vec![1.0; n]);
                // best_parameter: 1 → (1 + -1) / factor + xopt = xopt.
                let best: Vec<f64> = xopt.iter().map(|&v| (1.0 + -1.0) / factor + v).collect();
                (Spec::Rosenbrock { xopt, factor }, best, raw)
            }
            9 => {
                let rot1 = compute_rotation(rseed, n);
                let factor = coco_max(1.0, (n as f64).sqrt() / 8.0);
                let m: Matrix = rot1.iter().map(|row| row.iter().map(|&v| factor * v).collect()).collect();
                let best = (0..n).map(|c| column_sum(&rot1, c) / (2.0 * factor)).collect();
                (Spec::RosenbrockRotated { m }, best, rosenbrock_raw(&vec![1.0; n]))
            }
            10 => {
                let xopt = compute_xopt(rseed, n);
                let r = compute_rotation(rseed + 1_000_000, n);
                (Spec::Ellipsoid { xopt: xopt.clone(), r }, xopt, ellipsoid_raw(&zeros, 1.0e6))
            }
            11 => {
                let xopt = compute_xopt(rseed, n);
                let r = compute_rotation(rseed + 1_000_000, n);
                (Spec::Discus { xopt: xopt.clone(), r }, xopt, discus_raw(&zeros))
            }
            12 => {
                let xopt = compute_xopt(rseed + 1_000_000, n);
                let r = compute_rotation(rseed + 1_000_000, n);
                (Spec::BentCigar { xopt: xopt.clone(), r }, xopt, bent_cigar_raw(&zeros))
            }
            13 => {
                let xopt = compute_xopt(rseed, n);
                let rot1 = compute_rotation(rseed + 1_000_000, n);
                let rot2 = compute_rotation(rseed, n);
                let m = scaled_product(&rot1, &rot2, 10.0f64.sqrt());
                (Spec::SharpRidge { xopt: xopt.clone(), m }, xopt, sharp_ridge_raw(&zeros))
            }
            14 => {
                let xopt = compute_xopt(rseed, n);
                let r = compute_rotation(rseed + 1_000_000, n);
                (Spec::DifferentPowers { xopt: xopt.clone(), r }, xopt, different_powers_raw(&zeros))
            }
            15 => {
                let xopt = compute_xopt(rseed, n);
                let r1 = compute_rotation(rseed + 1_000_000, n);
                let rot2 = compute_rotation(rseed, n);
                let m = scaled_product(&r1, &rot2, 10.0f64.sqrt());
                (Spec::Rastrigin { xopt: xopt.clone(), r1, m }, xopt, rastrigin_raw(&zeros))
            }
            16 => {
                let xopt = compute_xopt(rseed, n);
                let r1 = compute_rotation(rseed + 1_000_000, n);
                let rot2 = compute_rotation(rseed, n);
                let condition: f64 = 100.0;
                let m = scaled_product(&r1, &rot2, 1.0 / condition.sqrt());
                let w = Weier::new();
                let raw = weierstrass_raw(&zeros, &w);
                (Spec::Weierstrass { xopt: xopt.clone(), r1, m, w }, xopt, raw)
            }
            17 | 18 => {
                let seed = if function == 17 { rseed } else { rseed_17 };
                let conditioning: f64 = if function == 17 { 10.0 } else { 1000.0 };
                let xopt = compute_xopt(seed, n);
                let r1 = compute_rotation(seed + 1_000_000, n);
                let rot2 = compute_rotation(seed, n);
                let m: Matrix = (0..n)
                    .map(|i| {
                        let exponent = 1.0 * (i as f64) / (n as f64 - 1.0);
                        (0..n).map(|j| rot2[i][j] * conditioning.sqrt().powf(exponent)).collect()
                    })
                    .collect();
                (Spec::Schaffers { xopt: xopt.clone(), r1, m }, xopt, schaffers_raw(&zeros))
            }
            19 => {
                let rot1 = compute_rotation(rseed, n);
                let scales = coco_max(1.0, (n as f64).sqrt() / 8.0);
                let m: Matrix = rot1.iter().map(|row| row.iter().map(|&v| v * scales).collect()).collect();
                let best = (0..n).map(|c| column_sum(&m, c) / (2.0 * scales)).collect();
                (Spec::GriewankRosenbrock { m }, best, griewank_rosenbrock_raw(&vec![1.0; n]))
            }
            20 => {
                let u = unif(n, rseed);
                let xopt: Vec<f64> =
                    u.iter().map(|&v| (if v < 0.5 { -1.0 } else { 1.0 }) * 0.5 * 4.2096874637).collect();
                let flip: Vec<bool> = u.iter().map(|&v| v < 0.5).collect();
                let raw_best_param = 420.96874633;
                let raw = schwefel_raw(&vec![raw_best_param; n]);
                // Propagate the raw best parameter outwards as COCO's transformations do.
                let best = (0..n)
                    .map(|i| {
                        let tmp1 = -2.0 * xopt[i].abs();
                        let tmp2 = 2.0 * xopt[i].abs();
                        let mut b = raw_best_param / 100.0;
                        b += tmp1;
                        b += tmp2;
                        b /= 2.0;
                        if flip[i] { -b } else { b }
                    })
                    .collect();
                (Spec::Schwefel { xopt, flip }, best, raw)
            }
            21 | 22 => {
                let peaks = if function == 21 { 101 } else { 21 };
                let (g, best) = Gallagher::new(rseed, n, peaks);
                let raw = gallagher_raw(&best, &g);
                (Spec::Gallagher(Box::new(g)), best, raw)
            }
            23 => {
                let xopt = compute_xopt(rseed, n);
                let rot1 = compute_rotation(rseed + 1_000_000, n);
                let rot2 = compute_rotation(rseed, n);
                let m = scaled_product(&rot1, &rot2, 100.0f64.sqrt());
                (Spec::Katsuura { xopt: xopt.clone(), m }, xopt, katsuura_raw(&zeros))
            }
            24 => {
                // COCO draws (and discards) the usual xopt; the optimum is ±mu0/2 with signs
                // from a Gaussian draw.
                let rot1 = compute_rotation(rseed + 1_000_000, n);
                let rot2 = compute_rotation(rseed, n);
                let mu0 = 2.5;
                let signs = gauss(n, rseed);
                let xopt: Vec<f64> = signs.iter().map(|&g| if g < 0.0 { -(0.5 * mu0) } else { 0.5 * mu0 }).collect();
                let raw = lunacek_raw(&xopt, &xopt, &rot1, &rot2);
                (Spec::Lunacek { xopt: xopt.clone(), rot1, rot2 }, xopt, raw)
            }
            _ => unreachable!(),
        };
        let f_opt = raw_best + fopt;
        Ok(Problem { function, dim, instance, x_opt, f_opt, spec })
    }

    /// COCO's problem id, e.g. `bbob_f001_i01_d02`.
    pub fn name(&self) -> String {
        format!("bbob_f{:03}_i{:02}_d{:02}", self.function, self.instance, self.dim)
    }

    /// The short function name from [`NAMES`].
    pub fn function_name(&self) -> &'static str {
        NAMES[self.function as usize - 1]
    }

    /// The objective offset `f_opt - f(x_opt)` drawn for this instance (COCO's `fopt`).
    pub fn fopt_offset(&self) -> f64 {
        compute_fopt(self.function, self.instance)
    }

    /// Evaluates the problem at `x` (length `dim`), as COCO's `coco_evaluate_function` does:
    /// `f_opt` is included; an infinite coordinate gives its absolute value, a NaN gives NaN.
    ///
    /// # Panics
    /// When `x.len() != self.dim`.
    pub fn eval(&self, x: &[f64]) -> f64 {
        assert_eq!(x.len(), self.dim, "bbob: {} expects {} variables, got {}", self.name(), self.dim, x.len());
        if let Some(v) = x.iter().find(|v| v.is_infinite()) {
            return v.abs();
        }
        if has_nan(x) {
            return f64::NAN;
        }
        let fopt = compute_fopt(self.function, self.instance);
        match &self.spec {
            Spec::Sphere { xopt } => sphere_raw(&shift(x, xopt)) + fopt,
            Spec::EllipsoidSeparable { xopt } => ellipsoid_raw(&tosz(&shift(x, xopt)), 1.0e6) + fopt,
            Spec::RastriginSeparable { xopt } => {
                rastrigin_raw(&conditioning(&tasy(&tosz(&shift(x, xopt)), 0.2), 10.0)) + fopt
            }
            Spec::BuecheRastrigin { xopt } => {
                let pen = penalty(x);
                bueche_rastrigin_raw(&brs(&tosz(&shift(x, xopt)))) + fopt + 100.0 * pen
            }
            Spec::LinearSlope { best } => linear_slope_raw(x, best) + fopt,
            Spec::AttractiveSector { xopt, m } => {
                let z = rotate(&shift(x, xopt), m);
                obj_power(obj_oscillate(attractive_sector_raw(&z, xopt)), 0.9) + fopt
            }
            Spec::StepEllipsoid { xopt, rot1, rot2 } => step_ellipsoid_raw(x, xopt, rot1, rot2, fopt),
            Spec::Rosenbrock { xopt, factor } => {
                let z: Vec<f64> = shift(x, xopt).iter().map(|&v| factor * v - -1.0).collect();
                rosenbrock_raw(&z) + fopt
            }
            Spec::RosenbrockRotated { m } => rosenbrock_raw(&affine(x, m, 0.5)) + fopt,
            Spec::Ellipsoid { xopt, r } => ellipsoid_raw(&tosz(&rotate(&shift(x, xopt), r)), 1.0e6) + fopt,
            Spec::Discus { xopt, r } => discus_raw(&tosz(&rotate(&shift(x, xopt), r))) + fopt,
            Spec::BentCigar { xopt, r } => bent_cigar_raw(&rotate(&tasy(&rotate(&shift(x, xopt), r), 0.5), r)) + fopt,
            Spec::SharpRidge { xopt, m } => sharp_ridge_raw(&rotate(&shift(x, xopt), m)) + fopt,
            Spec::DifferentPowers { xopt, r } => different_powers_raw(&rotate(&shift(x, xopt), r)) + fopt,
            Spec::Rastrigin { xopt, r1, m } => {
                rastrigin_raw(&rotate(&tasy(&tosz(&rotate(&shift(x, xopt), r1)), 0.2), m)) + fopt
            }
            Spec::Weierstrass { xopt, r1, m, w } => {
                let pen = penalty(x);
                let z = rotate(&tosz(&rotate(&shift(x, xopt), r1)), m);
                weierstrass_raw(&z, w) + fopt + 10.0 / self.dim as f64 * pen
            }
            Spec::Schaffers { xopt, r1, m } => {
                let pen = penalty(x);
                let z = rotate(&tasy(&rotate(&shift(x, xopt), r1), 0.5), m);
                schaffers_raw(&z) + fopt + 10.0 * pen
            }
            Spec::GriewankRosenbrock { m } => {
                let z: Vec<f64> = affine(x, m, 0.0).iter().map(|&v| v - -0.5).collect();
                griewank_rosenbrock_raw(&z) + fopt
            }
            Spec::Schwefel { xopt, flip } => schwefel_raw(&schwefel_transform(x, xopt, flip)) + fopt,
            Spec::Gallagher(g) => gallagher_raw(x, g) + fopt,
            Spec::Katsuura { xopt, m } => {
                let pen = penalty(x);
                katsuura_raw(&rotate(&shift(x, xopt), m)) + fopt + 1.0 * pen
            }
            Spec::Lunacek { xopt, rot1, rot2 } => lunacek_raw(x, xopt, rot1, rot2) + fopt,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Legacy BBOB2009 random numbers (suite_bbob_legacy_code.c).

/// `bbob2009_unif`: `n` uniform numbers in (0, 1] from a shuffled Park–Miller generator.
fn unif(n: usize, inseed: i64) -> Vec<f64> {
    fn step(seed: i64) -> i64 {
        let tmp = (seed as f64 / 127773.0).floor() as i32 as i64;
        let mut s = 16807 * (seed - tmp * 127773) - 2836 * tmp;
        if s < 0 {
            s += 2147483647;
        }
        s
    }
    let mut inseed = inseed;
    if inseed < 0 {
        inseed = -inseed;
    }
    if inseed < 1 {
        inseed = 1;
    }
    let mut aktseed = inseed;
    let mut rgrand = [0i64; 32];
    for i in (0..40).rev() {
        aktseed = step(aktseed);
        if i < 32 {
            rgrand[i] = aktseed;
        }
    }
    let mut aktrand = rgrand[0];
    let mut r = Vec::with_capacity(n);
    for _ in 0..n {
        aktseed = step(aktseed);
        let idx = (aktrand as f64 / 67108865.0).floor() as i32 as usize;
        aktrand = rgrand[idx];
        rgrand[idx] = aktseed;
        let mut v = aktrand as f64 / 2.147483647e9;
        if v == 0.0 {
            v = 1e-99;
        }
        r.push(v);
    }
    r
}

/// `bbob2009_gauss`: `n` standard normal numbers (Box–Muller on `unif(2n)`).
fn gauss(n: usize, seed: i64) -> Vec<f64> {
    let u = unif(2 * n, seed);
    (0..n)
        .map(|i| {
            let g = (-2.0 * u[i].ln()).sqrt() * (2.0 * PI * u[n + i]).cos();
            if g == 0.0 { 1e-99 } else { g }
        })
        .collect()
}

/// `bbob2009_compute_rotation`: Gram–Schmidt on a Gaussian matrix; `b[row][col]`.
fn compute_rotation(seed: i64, dim: usize) -> Matrix {
    let g = gauss(dim * dim, seed);
    let mut b: Matrix = (0..dim).map(|i| (0..dim).map(|j| g[j * dim + i]).collect()).collect();
    for i in 0..dim {
        for j in 0..i {
            let mut prod = 0.0;
            for row in b.iter() {
                prod += row[i] * row[j];
            }
            for row in b.iter_mut() {
                row[i] -= prod * row[j];
            }
        }
        let mut prod = 0.0;
        for row in b.iter() {
            prod += row[i] * row[i];
        }
        for row in b.iter_mut() {
            row[i] /= prod.sqrt();
        }
    }
    b
}

/// `bbob2009_compute_xopt`: optimum on a 1e-4 grid in [-4, 4), never exactly 0.
fn compute_xopt(seed: i64, dim: usize) -> Vec<f64> {
    unif(dim, seed)
        .into_iter()
        .map(|u| {
            let x = 8.0 * (1e4 * u).floor() / 1e4 - 4.0;
            if x == 0.0 { -1e-5 } else { x }
        })
        .collect()
}

/// `bbob2009_compute_fopt`: objective offset in [-1000, 1000], rounded to 0.01.
fn compute_fopt(function: u8, instance: u32) -> f64 {
    let rseed: i64 = match function {
        4 => 3,
        18 => 17,
        f => f as i64,
    };
    let rrseed = rseed + 10000 * instance as i64;
    let gval = gauss(1, rrseed)[0];
    let gval2 = gauss(1, rrseed + 1)[0];
    legacy_fmin(1000.0, legacy_fmax(-1000.0, legacy_round(100.0 * 100.0 * gval / gval2) / 100.0))
}

fn legacy_fmin(a: f64, b: f64) -> f64 {
    if a < b { a } else { b }
}

fn legacy_fmax(a: f64, b: f64) -> f64 {
    if a > b { a } else { b }
}

/// `bbob2009_round` / `coco_double_round`: `floor(x + 0.5)`.
fn legacy_round(x: f64) -> f64 {
    (x + 0.5).floor()
}

/// `coco_double_max`.
fn coco_max(a: f64, b: f64) -> f64 {
    if a >= b { a } else { b }
}

/// `coco_double_min`.
fn coco_min(a: f64, b: f64) -> f64 {
    if a <= b { a } else { b }
}

fn has_nan(x: &[f64]) -> bool {
    x.iter().any(|v| v.is_nan())
}

/// `M[i][j] = sum_k rot1[i][k] * base^(k/(n-1)) * rot2[k][j]` (accumulated from 0, in k order).
fn scaled_product(rot1: &Matrix, rot2: &Matrix, base: f64) -> Matrix {
    let n = rot1.len();
    (0..n)
        .map(|i| {
            (0..n)
                .map(|j| {
                    let mut acc = 0.0;
                    for k in 0..n {
                        let exponent = 1.0 * (k as f64) / (n as f64 - 1.0);
                        acc += rot1[i][k] * base.powf(exponent) * rot2[k][j];
                    }
                    acc
                })
                .collect()
        })
        .collect()
}

fn column_sum(m: &Matrix, c: usize) -> f64 {
    let mut tmp = 0.0;
    for row in m {
        tmp += row[c];
    }
    tmp
}

// ---------------------------------------------------------------------------------------------
// Variable and objective transformations (transform_vars_*.c, transform_obj_*.c).

/// `transform_vars_shift`: `x - offset`.
fn shift(x: &[f64], offset: &[f64]) -> Vec<f64> {
    x.iter().zip(offset).map(|(a, b)| a - b).collect()
}

/// `transform_vars_affine`: `y_i = b + sum_j x_j * M_ij`, accumulated in j order.
fn affine(x: &[f64], m: &Matrix, b: f64) -> Vec<f64> {
    m.iter()
        .map(|row| {
            let mut acc = b;
            for (xj, mij) in x.iter().zip(row) {
                acc += xj * mij;
            }
            acc
        })
        .collect()
}

/// `transform_vars_affine` with `b = 0` (as set by `bbob2009_copy_rotation_matrix`).
fn rotate(x: &[f64], m: &Matrix) -> Vec<f64> {
    affine(x, m, 0.0)
}

/// `tosz_uv` with alpha 0.1 (`transform_vars_oscillate`).
fn tosz_uv(xi: f64) -> f64 {
    let alpha = 0.1;
    if xi > 0.0 {
        let tmp = xi.ln() / alpha;
        let base = (tmp + 0.49 * (tmp.sin() + (0.79 * tmp).sin())).exp();
        base.powf(alpha)
    } else if xi < 0.0 {
        let tmp = (-xi).ln() / alpha;
        let base = (tmp + 0.49 * ((0.55 * tmp).sin() + (0.31 * tmp).sin())).exp();
        -base.powf(alpha)
    } else {
        0.0
    }
}

fn tosz(x: &[f64]) -> Vec<f64> {
    x.iter().map(|&v| tosz_uv(v)).collect()
}

/// `transform_vars_asymmetric`.
fn tasy(x: &[f64], beta: f64) -> Vec<f64> {
    let n = x.len() as f64;
    x.iter()
        .enumerate()
        .map(|(i, &xi)| {
            if xi > 0.0 {
                let exponent = 1.0 + ((beta * i as f64) / (n - 1.0)) * xi.sqrt();
                xi.powf(exponent)
            } else {
                xi
            }
        })
        .collect()
}

/// `transform_vars_conditioning`: `alpha^(0.5 i/(n-1)) * x_i`.
fn conditioning(x: &[f64], alpha: f64) -> Vec<f64> {
    let n = x.len() as f64;
    x.iter().enumerate().map(|(i, &xi)| alpha.powf(0.5 * i as f64 / (n - 1.0)) * xi).collect()
}

/// `transform_vars_brs` (Bueche–Rastrigin scaling).
fn brs(x: &[f64]) -> Vec<f64> {
    let n = x.len() as f64;
    x.iter()
        .enumerate()
        .map(|(i, &xi)| {
            let mut factor = 10.0f64.sqrt().powf(i as f64 / (n - 1.0));
            if xi > 0.0 && i % 2 == 0 {
                factor *= 10.0;
            }
            factor * xi
        })
        .collect()
}

/// `transform_obj_penalize`'s sum of squared violations of [-5, 5] (before the factor).
fn penalty(x: &[f64]) -> f64 {
    let mut p = 0.0;
    for &xi in x {
        let c1 = xi - UPPER;
        let c2 = LOWER - xi;
        if c1 > 0.0 {
            p += c1 * c1;
        } else if c2 > 0.0 {
            p += c2 * c2;
        }
    }
    p
}

/// `transform_obj_oscillate`.
fn obj_oscillate(y: f64) -> f64 {
    let factor = 0.1;
    if y != 0.0 {
        let log_y = y.abs().ln() / factor;
        if y > 0.0 {
            (log_y + 0.49 * (log_y.sin() + (0.79 * log_y).sin())).exp().powf(factor)
        } else {
            -(log_y + 0.49 * ((0.55 * log_y).sin() + (0.31 * log_y).sin())).exp().powf(factor)
        }
    } else {
        y
    }
}

/// `transform_obj_power`.
fn obj_power(y: f64, exponent: f64) -> f64 {
    y.powf(exponent)
}

// ---------------------------------------------------------------------------------------------
// Raw functions (f_*.c).

fn sphere_raw(x: &[f64]) -> f64 {
    if has_nan(x) {
        return f64::NAN;
    }
    let mut r = 0.0;
    for &v in x {
        r += v * v;
    }
    r
}

fn ellipsoid_raw(x: &[f64], cond: f64) -> f64 {
    if has_nan(x) {
        return f64::NAN;
    }
    let n = x.len() as f64;
    let mut r = x[0] * x[0];
    for (i, &v) in x.iter().enumerate().skip(1) {
        let exponent = 1.0 * i as f64 / (n - 1.0);
        r += cond.powf(exponent) * v * v;
    }
    r
}

fn rastrigin_raw(x: &[f64]) -> f64 {
    if has_nan(x) {
        return f64::NAN;
    }
    let (mut sum1, mut sum2) = (0.0, 0.0);
    for &v in x {
        sum1 += (TWO_PI * v).cos();
        sum2 += v * v;
    }
    if sum2.is_infinite() {
        return sum2;
    }
    10.0 * (x.len() as f64 - sum1) + sum2
}

fn bueche_rastrigin_raw(x: &[f64]) -> f64 {
    if has_nan(x) {
        return f64::NAN;
    }
    let (mut tmp, mut tmp2) = (0.0, 0.0);
    for &v in x {
        tmp += (2.0 * PI * v).cos();
        tmp2 += v * v;
    }
    10.0 * (x.len() as f64 - tmp) + tmp2 + 0.0
}

fn linear_slope_raw(x: &[f64], best: &[f64]) -> f64 {
    if has_nan(x) {
        return f64::NAN;
    }
    let alpha: f64 = 100.0;
    let n = x.len() as f64;
    let mut r = 0.0;
    for (i, (&xi, &bi)) in x.iter().zip(best).enumerate() {
        let base = alpha.sqrt();
        let exponent = i as f64 / (n - 1.0);
        let si = if bi > 0.0 { base.powf(exponent) } else { -base.powf(exponent) };
        if xi * bi < 25.0 {
            r += 5.0 * si.abs() - si * xi;
        } else {
            r += 5.0 * si.abs() - si * bi;
        }
    }
    r
}

fn attractive_sector_raw(x: &[f64], xopt: &[f64]) -> f64 {
    if has_nan(x) {
        return f64::NAN;
    }
    let mut r = 0.0;
    for (&xi, &oi) in x.iter().zip(xopt) {
        if oi * xi > 0.0 {
            r += 100.0 * 100.0 * xi * xi;
        } else {
            r += xi * xi;
        }
    }
    r
}

fn step_ellipsoid_raw(x: &[f64], xopt: &[f64], rot1: &Matrix, rot2: &Matrix, fopt: f64) -> f64 {
    let condition: f64 = 100.0;
    let alpha = 10.0;
    let n = x.len();
    let nf = n as f64;
    let mut pen = 0.0;
    for &v in x {
        let tmp = v.abs() - 5.0;
        if tmp > 0.0 {
            pen += tmp * tmp;
        }
    }
    pen *= 1.0; // penalty_scale
    let mut z = vec![0.0; n];
    for i in 0..n {
        let c1 = (condition / 10.0).powf(i as f64 / (n - 1) as f64).sqrt();
        let mut acc = 0.0;
        for j in 0..n {
            acc += c1 * rot2[i][j] * (x[j] - xopt[j]);
        }
        z[i] = acc;
    }
    let x1 = z[0];
    for v in z.iter_mut() {
        if v.abs() > 0.5 {
            *v = legacy_round(*v);
        } else {
            *v = legacy_round(alpha * *v) / alpha;
        }
    }
    let mut r = 0.0;
    for (i, row) in rot1.iter().enumerate() {
        let mut xx = 0.0;
        for (rij, zj) in row.iter().zip(&z) {
            xx += rij * zj;
        }
        let exponent = i as f64 / (nf - 1.0);
        r += condition.powf(exponent) * xx * xx;
    }
    0.1 * coco_max(x1.abs() * 1.0e-4, r) + pen + fopt
}

fn rosenbrock_raw(x: &[f64]) -> f64 {
    if has_nan(x) {
        return f64::NAN;
    }
    let (mut s1, mut s2) = (0.0, 0.0);
    for w in x.windows(2) {
        let tmp = w[0] * w[0] - w[1];
        s1 += tmp * tmp;
        let tmp = w[0] - 1.0;
        s2 += tmp * tmp;
    }
    100.0 * s1 + s2
}

fn discus_raw(x: &[f64]) -> f64 {
    if has_nan(x) {
        return f64::NAN;
    }
    let condition = 1.0e6;
    let mut r = condition * x[0] * x[0];
    for &v in &x[1..] {
        r += v * v;
    }
    r
}

fn bent_cigar_raw(x: &[f64]) -> f64 {
    if has_nan(x) {
        return f64::NAN;
    }
    let condition = 1.0e6;
    let mut r = x[0] * x[0];
    for &v in &x[1..] {
        r += condition * v * v;
    }
    r
}

fn sharp_ridge_raw(x: &[f64]) -> f64 {
    if has_nan(x) {
        return f64::NAN;
    }
    let alpha = 100.0;
    let d_vars_40 = 1.0;
    let mut r = 0.0;
    for &v in &x[1..] {
        r += v * v;
    }
    r = alpha * (r / d_vars_40).sqrt();
    r += x[0] * x[0] / d_vars_40;
    r
}

fn different_powers_raw(x: &[f64]) -> f64 {
    if has_nan(x) {
        return f64::NAN;
    }
    let n = x.len() as f64;
    let mut sum = 0.0;
    for (i, &v) in x.iter().enumerate() {
        let exponent = 2.0 + (4.0 * i as f64) / (n - 1.0);
        sum += v.abs().powf(exponent);
    }
    sum.sqrt()
}

impl Weier {
    fn new() -> Weier {
        let mut w = Weier { f0: 0.0, ak: [0.0; 12], bk: [0.0; 12] };
        for i in 0..12 {
            w.ak[i] = 0.5f64.powf(i as f64);
            w.bk[i] = 3.0f64.powf(i as f64);
            w.f0 += w.ak[i] * (2.0 * PI * w.bk[i] * 0.5).cos();
        }
        w
    }
}

fn weierstrass_raw(x: &[f64], w: &Weier) -> f64 {
    if has_nan(x) {
        return f64::NAN;
    }
    let mut r = 0.0;
    for &v in x {
        for j in 0..12 {
            r += (2.0 * PI * (v + 0.5) * w.bk[j]).cos() * w.ak[j];
        }
    }
    10.0 * (r / x.len() as f64 - w.f0).powf(3.0)
}

fn schaffers_raw(x: &[f64]) -> f64 {
    if has_nan(x) {
        return f64::NAN;
    }
    let mut r = 0.0;
    for w in x.windows(2) {
        let tmp = w[0] * w[0] + w[1] * w[1];
        if tmp.is_infinite() && (50.0 * tmp.powf(0.1)).sin().is_nan() {
            return tmp;
        }
        r += tmp.powf(0.25) * (1.0 + (50.0 * tmp.powf(0.1)).sin().powf(2.0));
    }
    (r / (x.len() as f64 - 1.0)).powf(2.0)
}

fn griewank_rosenbrock_raw(x: &[f64]) -> f64 {
    if has_nan(x) {
        return f64::NAN;
    }
    let facftrue = 10.0;
    let mut r = 0.0;
    for w in x.windows(2) {
        let c1 = w[0] * w[0] - w[1];
        let c2 = 1.0 - w[0];
        let tmp = 100.0 * c1 * c1 + c2 * c2;
        r += tmp / 4000.0 - tmp.cos();
    }
    facftrue + facftrue * r / (x.len() - 1) as f64
}

/// The f20 variable transformations, outermost first: x_hat, scale 2, z_hat, shift 2|xopt|,
/// conditioning 10, shift -2|xopt|, scale 100.
fn schwefel_transform(x: &[f64], xopt: &[f64], flip: &[bool]) -> Vec<f64> {
    let n = x.len();
    let xh: Vec<f64> = x.iter().zip(flip).map(|(&v, &f)| if f { -v } else { v }).collect();
    let s: Vec<f64> = xh.iter().map(|&v| 2.0 * v).collect();
    let mut z = vec![0.0; n];
    z[0] = s[0];
    for i in 1..n {
        z[i] = s[i] + 0.25 * (s[i - 1] - 2.0 * xopt[i - 1].abs());
    }
    let tmp2: Vec<f64> = xopt.iter().map(|v| 2.0 * v.abs()).collect();
    let tmp1: Vec<f64> = xopt.iter().map(|v| -2.0 * v.abs()).collect();
    let z = shift(&z, &tmp2);
    let z = conditioning(&z, 10.0);
    let z = shift(&z, &tmp1);
    z.iter().map(|&v| 100.0 * v).collect()
}

fn schwefel_raw(x: &[f64]) -> f64 {
    if has_nan(x) {
        return f64::NAN;
    }
    let mut pen = 0.0;
    for &v in x {
        let tmp = v.abs() - 500.0;
        if tmp > 0.0 {
            pen += tmp * tmp;
        }
    }
    let mut sum = 0.0;
    for &v in x {
        sum += v * v.abs().sqrt().sin();
    }
    0.01 * (pen + 418.9828872724339 - sum / x.len() as f64)
}

impl Gallagher {
    /// Builds the peaks as `f_gallagher_bbob_problem_allocate`; returns the data and x_opt.
    fn new(rseed: i64, dim: usize, peaks: usize) -> (Gallagher, Vec<f64>) {
        let maxcondition: f64 = 1000.0;
        let mut maxcondition1: f64 = 1000.0;
        let fitvalues = [1.1, 9.1];
        let (b, c) = if peaks == 101 {
            maxcondition1 = maxcondition1.sqrt();
            (10.0, 5.0)
        } else {
            (9.8, 4.9)
        };
        let rotation = compute_rotation(rseed, dim);

        let random = unif(peaks - 1, rseed);
        let mut rperm: Vec<(f64, usize)> = random.iter().copied().zip(0..).collect();
        sort_perm(&mut rperm);
        let mut arr_condition = vec![0.0; peaks];
        arr_condition[0] = maxcondition1;
        let mut peak_values = vec![0.0; peaks];
        peak_values[0] = 10.0;
        for i in 1..peaks {
            arr_condition[i] = maxcondition.powf(rperm[i - 1].1 as f64 / (peaks - 2) as f64);
            peak_values[i] = (i - 1) as f64 / (peaks - 2) as f64 * (fitvalues[1] - fitvalues[0]) + fitvalues[0];
        }

        let mut arr_scales = vec![vec![0.0; dim]; peaks];
        for (i, scales) in arr_scales.iter_mut().enumerate() {
            let random = unif(dim, rseed + (1000 * i) as i64);
            let mut rperm: Vec<(f64, usize)> = random.iter().copied().zip(0..).collect();
            sort_perm(&mut rperm);
            for (j, s) in scales.iter_mut().enumerate() {
                *s = arr_condition[i].powf(rperm[j].1 as f64 / (dim - 1) as f64 - 0.5);
            }
        }

        let random = unif(dim * peaks, rseed);
        let scale_factor = 0.8;
        let mut best = vec![0.0; dim];
        let mut x_local = vec![vec![0.0; peaks]; dim];
        for i in 0..dim {
            best[i] = scale_factor * (b * random[i] - c);
            for j in 0..peaks {
                let mut acc = 0.0;
                for k in 0..dim {
                    acc += rotation[i][k] * (b * random[j * dim + k] - c);
                }
                if j == 0 {
                    acc *= scale_factor;
                }
                x_local[i][j] = acc;
            }
        }
        (Gallagher { rotation, x_local, arr_scales, peak_values }, best)
    }
}

/// Sorts (value, index) pairs by value, as `qsort` with `f_gallagher_compare_doubles`.
fn sort_perm(p: &mut [(f64, usize)]) {
    p.sort_by(|a, b| {
        let t = a.0 - b.0;
        if t > 0.0 {
            std::cmp::Ordering::Greater
        } else if t < 0.0 {
            std::cmp::Ordering::Less
        } else {
            std::cmp::Ordering::Equal
        }
    });
}

fn gallagher_raw(x: &[f64], g: &Gallagher) -> f64 {
    if has_nan(x) {
        return f64::NAN;
    }
    let n = x.len();
    let a = 0.1;
    let fac = -0.5 / n as f64;
    let mut f_pen = 0.0;
    for &v in x {
        let tmp = v.abs() - 5.0;
        if tmp > 0.0 {
            f_pen += tmp * tmp;
        }
    }
    let f_add = f_pen * 1.0; // penalty_scale
    let tmx = rotate(x, &g.rotation);
    let mut f = 0.0;
    for (i, scales) in g.arr_scales.iter().enumerate() {
        let mut tmp2 = 0.0;
        for j in 0..n {
            let tmp = tmx[j] - g.x_local[j][i];
            tmp2 += scales[j] * tmp * tmp;
        }
        tmp2 = g.peak_values[i] * (fac * tmp2).exp();
        f = coco_max(f, tmp2);
    }
    f = 10.0 - f;
    let mut f_true;
    if f > 0.0 {
        f_true = f.ln() / a;
        f_true = (f_true + 0.49 * (f_true.sin() + (0.79 * f_true).sin())).exp().powf(a);
    } else if f < 0.0 {
        f_true = (-f).ln() / a;
        f_true = -(f_true + 0.49 * ((0.55 * f_true).sin() + (0.31 * f_true).sin())).exp().powf(a);
    } else {
        f_true = f;
    }
    f_true *= f_true;
    f_true += f_add;
    f_true
}

fn katsuura_raw(x: &[f64]) -> f64 {
    if has_nan(x) {
        return f64::NAN;
    }
    let n = x.len() as f64;
    let mut r = 1.0;
    for (i, &v) in x.iter().enumerate() {
        let mut tmp = 0.0;
        for j in 1..33 {
            let tmp2 = 2.0f64.powf(j as f64);
            tmp += (tmp2 * v - legacy_round(tmp2 * v)).abs() / tmp2;
        }
        tmp = 1.0 + (i as f64 + 1.0) * tmp;
        r *= tmp.powf(10.0 / n.powf(1.2));
    }
    10.0 / n / n * (-1.0 + r)
}

fn lunacek_raw(x: &[f64], xopt: &[f64], rot1: &Matrix, rot2: &Matrix) -> f64 {
    if has_nan(x) {
        return f64::NAN;
    }
    let n = x.len();
    let nf = n as f64;
    let condition: f64 = 100.0;
    let mu0 = 2.5;
    let d = 1.0;
    let s = 1.0 - 0.5 / (((n + 20) as f64).sqrt() - 4.1);
    let mu1 = -((mu0 * mu0 - d) / s).sqrt();
    let mut pen = 0.0;
    for &v in x {
        let tmp = v.abs() - 5.0;
        if tmp > 0.0 {
            pen += tmp * tmp;
        }
    }
    let x_hat: Vec<f64> = x
        .iter()
        .zip(xopt)
        .map(|(&v, &o)| {
            let mut h = 2.0 * v;
            if o < 0.0 {
                h *= -1.0;
            }
            h
        })
        .collect();
    let mut tmpvect = vec![0.0; n];
    for i in 0..n {
        let c1 = condition.sqrt().powf(i as f64 / (n - 1) as f64);
        let mut acc = 0.0;
        for j in 0..n {
            acc += c1 * rot2[i][j] * (x_hat[j] - mu0);
        }
        tmpvect[i] = acc;
    }
    let z = rotate(&tmpvect, rot1);
    let (mut sum1, mut sum2, mut sum3) = (0.0, 0.0, 0.0);
    for i in 0..n {
        sum1 += (x_hat[i] - mu0) * (x_hat[i] - mu0);
        sum2 += (x_hat[i] - mu1) * (x_hat[i] - mu1);
        sum3 += (2.0 * PI * z[i]).cos();
    }
    coco_min(sum1, d * nf + s * sum2) + 10.0 * (nf - sum3) + 1e4 * pen
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fopt_known_values() {
        // From cocoex 2.8.2 (best_value of bbob_f001_i01_d02 and bbob_f002_i01_d05).
        assert_eq!(compute_fopt(1, 1), 79.48);
        assert_eq!(compute_fopt(2, 1), -209.88);
    }

    #[test]
    fn rotation_is_orthogonal() {
        let r = compute_rotation(12345, 7);
        for i in 0..7 {
            for j in 0..7 {
                let dot: f64 = (0..7).map(|k| r[k][i] * r[k][j]).sum();
                let want = if i == j { 1.0 } else { 0.0 };
                assert!((dot - want).abs() < 1e-12);
            }
        }
    }
}
