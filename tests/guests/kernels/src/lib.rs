//! gp_ucb's linear-algebra kernels, run where the plugin runs. The wasm build of `dot` and `axpy`
//! uses f64x2 lanes with the native code's order of additions, so every result must be
//! bit-identical to the native build's; [`report`] digests the bits of `dot`, `axpy` and the
//! Cholesky factor/solve/inverse built on them, over lengths that cover every remainder path.
//! (`log_det` is left out: it calls `ln`, which differs from glibc's in the last bits.)
//!
//! As a plugin its `suggest` returns the report as its error, so the host sees the guest's bits.

use alcf_plugin_sdk::*;
use gp_ucb::linalg::{Cholesky, axpy, dot, row_start};

/// FNV-1a over 64-bit words.
struct Digest(u64);

impl Digest {
    fn new() -> Digest {
        Digest(0xcbf2_9ce4_8422_2325)
    }
    fn add(&mut self, x: f64) {
        self.0 = (self.0 ^ x.to_bits()).wrapping_mul(0x0000_0100_0000_01b3);
    }
    fn add_all(&mut self, xs: &[f64]) {
        xs.iter().for_each(|x| self.add(*x));
    }
}

fn vector(rng: &mut Rng, n: usize) -> Vec<f64> {
    (0..n).map(|_| 2.0 * rng.f64() - 1.0).collect()
}

/// `case=digest` for each kernel, on inputs drawn from a fixed seed.
pub fn report() -> String {
    let mut rng = Rng::new(42);
    let (mut d_dot, mut d_axpy) = (Digest::new(), Digest::new());
    for n in 0..=140 {
        let (a, b) = (vector(&mut rng, n), vector(&mut rng, n));
        d_dot.add(dot(&a, &b));
        let (x, mut y) = (vector(&mut rng, n), vector(&mut rng, n));
        axpy(2.0 * rng.f64() - 1.0, &x, &mut y);
        d_axpy.add_all(&y);
    }
    let (mut d_factor, mut d_solve, mut d_inverse) = (Digest::new(), Digest::new(), Digest::new());
    for n in [1, 2, 3, 5, 8, 13, 21, 34, 55, 89] {
        // A = B Bᵀ + n I, packed lower triangle: symmetric positive definite.
        let b: Vec<Vec<f64>> = (0..n).map(|_| vector(&mut rng, n)).collect();
        let mut a = vec![0.0; row_start(n)];
        for i in 0..n {
            for j in 0..=i {
                a[row_start(i) + j] = dot(&b[i], &b[j]) + if i == j { n as f64 } else { 0.0 };
            }
        }
        let Some(chol) = Cholesky::factor(&a, n) else {
            return format!("factor failed at n = {n}");
        };
        d_factor.add_all(&chol.l);
        let mut rhs = vector(&mut rng, n);
        chol.solve(&mut rhs);
        d_solve.add_all(&rhs);
        d_inverse.add_all(&chol.inverse());
    }
    format!(
        "dot={:016x} axpy={:016x} factor={:016x} solve={:016x} inverse={:016x}",
        d_dot.0, d_axpy.0, d_factor.0, d_solve.0, d_inverse.0
    )
}

pub struct Kernels;

impl Strategy for Kernels {
    fn info() -> PluginInfo {
        PluginInfo::new("kernels", env!("CARGO_PKG_VERSION"), "reports gp_ucb's kernel results (sandbox tests)")
    }
    fn new(_study: &Study) -> Result<Self, String> {
        Ok(Kernels)
    }
    fn suggest(&mut self, _count: usize, _pending: &[Trial]) -> Result<Vec<Params>, String> {
        Err(format!("kernels: {}", report()))
    }
}

export_strategy!(Kernels);
