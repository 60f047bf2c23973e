//! Small dense linear algebra on packed lower-triangular matrices (row i holds i+1 entries,
//! starting at i(i+1)/2), so a Cholesky factor grows by appending a row.

/// Dot product with four independent accumulators (vectorizes without fast-math): element i goes
/// to accumulator i mod 4, the accumulators are summed pairwise, then the tail (< 4) is added.
/// The plugin build ([`wasm::dot`]) computes exactly the same sums in the same order.
#[inline]
pub fn dot(a: &[f64], b: &[f64]) -> f64 {
    let n = a.len().min(b.len());
    let (a, b) = (&a[..n], &b[..n]);
    #[cfg(target_arch = "wasm32")]
    {
        // SAFETY: the slices bound every load; without simd128 in the host (wasmtime enables it
        // by default) the module fails validation at load time instead.
        unsafe { wasm::dot(a, b) }
    }
    #[cfg(not(target_arch = "wasm32"))]
    {
        let mut acc = [0.0f64; 4];
        let ca = a.chunks_exact(4);
        let cb = b.chunks_exact(4);
        let (ra, rb) = (ca.remainder(), cb.remainder());
        for (x, y) in ca.zip(cb) {
            acc[0] += x[0] * y[0];
            acc[1] += x[1] * y[1];
            acc[2] += x[2] * y[2];
            acc[3] += x[3] * y[3];
        }
        let mut s = (acc[0] + acc[1]) + (acc[2] + acc[3]);
        for (x, y) in ra.iter().zip(rb) {
            s += x * y;
        }
        s
    }
}

/// The inner loops of the plugin build, written for how wasmtime compiles them. Inside the sandbox
/// every loop iteration pays an epoch (deadline) check whose out-of-line call clobbers all vector
/// registers, so Cranelift keeps loop-carried floats in stack slots: each iteration reloads and
/// spills the accumulators, which puts a store-to-load round trip into the add chain. These loops
/// therefore do 32 (dot) or 16 (axpy) elements per iteration with f64x2 lanes, keeping every
/// accumulator's sequence of additions (and so the result) bit-identical to the native code.
/// Measured on the GP at 500/1000 points: the sandbox went from 3.1x native to about 2x with 16/8
/// elements per iteration and to about 1.3x with 32/16 (docs/benchmarks.md, "gp_ucb speed in the
/// sandbox").
#[cfg(target_arch = "wasm32")]
mod wasm {
    use core::arch::wasm32::*;

    /// [`super::dot`]: lanes of `lo` are accumulators 0 and 1, lanes of `hi` 2 and 3. The main
    /// loop takes 32 elements per iteration (one epoch check and one reload/spill of `lo`/`hi` per
    /// 32), then at most one block of 16, at most three of 4 and at most three scalars, all
    /// without a loop, so the short dots of the Cholesky kernels pay no per-iteration check.
    #[target_feature(enable = "simd128")]
    pub unsafe fn dot(a: &[f64], b: &[f64]) -> f64 {
        let n = a.len().min(b.len());
        let (pa, pb) = (a.as_ptr() as *const v128, b.as_ptr() as *const v128);
        let mut lo = f64x2_splat(0.0); // accumulators 0, 1
        let mut hi = f64x2_splat(0.0); // accumulators 2, 3
        let mut i = 0;
        unsafe {
            while i + 32 <= n {
                let k = i / 2;
                for j in 0..8 {
                    lo = f64x2_add(lo, f64x2_mul(v128_load(pa.add(k + 2 * j)), v128_load(pb.add(k + 2 * j))));
                    hi = f64x2_add(hi, f64x2_mul(v128_load(pa.add(k + 2 * j + 1)), v128_load(pb.add(k + 2 * j + 1))));
                }
                i += 32;
            }
            if i + 16 <= n {
                let k = i / 2;
                for j in 0..4 {
                    lo = f64x2_add(lo, f64x2_mul(v128_load(pa.add(k + 2 * j)), v128_load(pb.add(k + 2 * j))));
                    hi = f64x2_add(hi, f64x2_mul(v128_load(pa.add(k + 2 * j + 1)), v128_load(pb.add(k + 2 * j + 1))));
                }
                i += 16;
            }
            for _ in 0..3 {
                if i + 4 > n {
                    break;
                }
                let k = i / 2;
                lo = f64x2_add(lo, f64x2_mul(v128_load(pa.add(k)), v128_load(pb.add(k))));
                hi = f64x2_add(hi, f64x2_mul(v128_load(pa.add(k + 1)), v128_load(pb.add(k + 1))));
                i += 4;
            }
        }
        let mut s = (f64x2_extract_lane::<0>(lo) + f64x2_extract_lane::<1>(lo))
            + (f64x2_extract_lane::<0>(hi) + f64x2_extract_lane::<1>(hi));
        for _ in 0..3 {
            if i >= n {
                break;
            }
            s += a[i] * b[i];
            i += 1;
        }
        s
    }

    /// [`super::axpy`], element-wise as the native loop.
    #[target_feature(enable = "simd128")]
    pub unsafe fn axpy(a: f64, x: &[f64], y: &mut [f64]) {
        let n = x.len().min(y.len());
        let (px, py) = (x.as_ptr() as *const v128, y.as_mut_ptr() as *mut v128);
        let av = f64x2_splat(a);
        let mut i = 0;
        unsafe {
            while i + 16 <= n {
                let k = i / 2;
                for j in 0..2 {
                    let k = k + 4 * j;
                    let (x0, x1, x2, x3) = (
                        v128_load(px.add(k)),
                        v128_load(px.add(k + 1)),
                        v128_load(px.add(k + 2)),
                        v128_load(px.add(k + 3)),
                    );
                    let (y0, y1, y2, y3) = (
                        v128_load(py.add(k)),
                        v128_load(py.add(k + 1)),
                        v128_load(py.add(k + 2)),
                        v128_load(py.add(k + 3)),
                    );
                    v128_store(py.add(k), f64x2_add(y0, f64x2_mul(av, x0)));
                    v128_store(py.add(k + 1), f64x2_add(y1, f64x2_mul(av, x1)));
                    v128_store(py.add(k + 2), f64x2_add(y2, f64x2_mul(av, x2)));
                    v128_store(py.add(k + 3), f64x2_add(y3, f64x2_mul(av, x3)));
                }
                i += 16;
            }
            if i + 8 <= n {
                let k = i / 2;
                let (x0, x1, x2, x3) = (
                    v128_load(px.add(k)),
                    v128_load(px.add(k + 1)),
                    v128_load(px.add(k + 2)),
                    v128_load(px.add(k + 3)),
                );
                let (y0, y1, y2, y3) = (
                    v128_load(py.add(k)),
                    v128_load(py.add(k + 1)),
                    v128_load(py.add(k + 2)),
                    v128_load(py.add(k + 3)),
                );
                v128_store(py.add(k), f64x2_add(y0, f64x2_mul(av, x0)));
                v128_store(py.add(k + 1), f64x2_add(y1, f64x2_mul(av, x1)));
                v128_store(py.add(k + 2), f64x2_add(y2, f64x2_mul(av, x2)));
                v128_store(py.add(k + 3), f64x2_add(y3, f64x2_mul(av, x3)));
                i += 8;
            }
        }
        for (yi, xi) in y[i..n].iter_mut().zip(&x[i..n]) {
            *yi += a * xi;
        }
    }
}

/// `y += a·x`.
#[inline]
pub fn axpy(a: f64, x: &[f64], y: &mut [f64]) {
    #[cfg(target_arch = "wasm32")]
    {
        // SAFETY: as in `dot`.
        unsafe { wasm::axpy(a, x, y) }
    }
    #[cfg(not(target_arch = "wasm32"))]
    for (yi, xi) in y.iter_mut().zip(x) {
        *yi += a * xi;
    }
}

#[inline]
pub fn row_start(i: usize) -> usize {
    i * (i + 1) / 2
}

/// A lower-triangular Cholesky factor in packed row storage.
#[derive(Clone, Debug, Default)]
pub struct Cholesky {
    pub n: usize,
    pub l: Vec<f64>,
}

impl Cholesky {
    /// Factorizes the symmetric matrix whose lower triangle is given packed (`a`, n rows).
    /// Returns `None` when a pivot is not positive (the matrix is not numerically PD).
    pub fn factor(a: &[f64], n: usize) -> Option<Cholesky> {
        let mut l = vec![0.0; row_start(n)];
        for i in 0..n {
            let ri = row_start(i);
            for j in 0..=i {
                let rj = row_start(j);
                let s = a[ri + j] - dot(&l[ri..ri + j], &l[rj..rj + j]);
                if i == j {
                    if s <= 0.0 || !s.is_finite() {
                        return None;
                    }
                    l[ri + i] = s.sqrt();
                } else {
                    l[ri + j] = s / l[rj + j];
                }
            }
        }
        Some(Cholesky { n, l })
    }

    #[inline]
    pub fn row(&self, i: usize) -> &[f64] {
        let r = row_start(i);
        &self.l[r..r + i + 1]
    }

    /// Solves L z = b in place.
    pub fn solve_lower(&self, b: &mut [f64]) {
        for i in 0..self.n {
            let row = self.row(i);
            let s = b[i] - dot(&row[..i], &b[..i]);
            b[i] = s / row[i];
        }
    }

    /// Solves L z = b in place for several right-hand sides at once: each row of L is read once
    /// for all of them instead of once each (at n = 1000 the factor is 4 MB, so one solve per
    /// candidate streamed it from memory again and again). Every `b` gets exactly the operations
    /// [`Cholesky::solve_lower`] would do, in the same order, so the results are bit-identical.
    pub fn solve_lower_many(&self, bs: &mut [Vec<f64>]) {
        for i in 0..self.n {
            let row = self.row(i);
            for b in bs.iter_mut() {
                let s = b[i] - dot(&row[..i], &b[..i]);
                b[i] = s / row[i];
            }
        }
    }

    /// Solves Lᵀ x = z in place.
    pub fn solve_upper(&self, z: &mut [f64]) {
        for i in (0..self.n).rev() {
            let row = self.row(i);
            let xi = z[i] / row[i];
            z[i] = xi;
            axpy(-xi, &row[..i], &mut z[..i]);
        }
    }

    /// Solves (L Lᵀ) x = b in place.
    pub fn solve(&self, b: &mut [f64]) {
        self.solve_lower(b);
        self.solve_upper(b);
    }

    /// Appends a row/column to the factored matrix: `k` holds the new column's off-diagonal
    /// entries (length n) and `kdiag` its diagonal. Returns false (leaving self unchanged) when
    /// the extended matrix is not numerically positive definite.
    pub fn append(&mut self, k: &[f64], kdiag: f64) -> bool {
        let mut z = k[..self.n].to_vec();
        self.solve_lower(&mut z);
        let d = kdiag - dot(&z, &z);
        if d <= 0.0 || !d.is_finite() {
            return false;
        }
        self.l.extend_from_slice(&z);
        self.l.push(d.sqrt());
        self.n += 1;
        true
    }

    /// log det(L Lᵀ).
    pub fn log_det(&self) -> f64 {
        2.0 * (0..self.n).map(|i| self.l[row_start(i) + i].ln()).sum::<f64>()
    }

    /// The full inverse (L Lᵀ)⁻¹ as a dense row-major n×n matrix (symmetric).
    pub fn inverse(&self) -> Vec<f64> {
        let n = self.n;
        // Columns of L⁻¹ (lower triangular): column j has entries j..n, stored contiguously.
        let mut cols: Vec<Vec<f64>> = Vec::with_capacity(n);
        for j in 0..n {
            let mut c = vec![0.0; n - j];
            for i in j..n {
                let row = self.row(i);
                let s = if i == j { 1.0 } else { 0.0 } - dot(&row[j..i], &c[..i - j]);
                c[i - j] = s / row[i];
            }
            cols.push(c);
        }
        // (A⁻¹)_ab = Σ_{k >= max(a,b)} (L⁻¹)_ka (L⁻¹)_kb, for b <= a: dot of the tails from k = a.
        let mut inv = vec![0.0; n * n];
        for a in 0..n {
            let ca = &cols[a];
            for b in 0..=a {
                let cb = &cols[b][a - b..];
                let v = dot(ca, cb);
                inv[a * n + b] = v;
                inv[b * n + a] = v;
            }
        }
        inv
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spd(n: usize) -> (Vec<f64>, Vec<f64>) {
        // A = B Bᵀ + n I, dense and packed.
        let mut s = 1u64;
        let mut b = vec![0.0; n * n];
        for v in b.iter_mut() {
            s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            *v = ((s >> 11) as f64 / (1u64 << 53) as f64) - 0.5;
        }
        let mut a = vec![0.0; n * n];
        for i in 0..n {
            for j in 0..n {
                a[i * n + j] =
                    (0..n).map(|k| b[i * n + k] * b[j * n + k]).sum::<f64>() + if i == j { 1.0 } else { 0.0 };
            }
        }
        let packed = (0..n).flat_map(|i| (0..=i).map(move |j| (i, j))).map(|(i, j)| a[i * n + j]).collect();
        (a, packed)
    }

    #[test]
    fn factor_solve_inverse_append() {
        let n = 7;
        let (a, packed) = spd(n);
        let c = Cholesky::factor(&packed, n).unwrap();
        let b: Vec<f64> = (0..n).map(|i| i as f64 - 2.0).collect();
        let mut x = b.clone();
        c.solve(&mut x);
        for i in 0..n {
            let ax: f64 = (0..n).map(|j| a[i * n + j] * x[j]).sum();
            assert!((ax - b[i]).abs() < 1e-10);
        }
        let inv = c.inverse();
        for i in 0..n {
            for j in 0..n {
                let e: f64 = (0..n).map(|k| a[i * n + k] * inv[k * n + j]).sum();
                assert!((e - if i == j { 1.0 } else { 0.0 }).abs() < 1e-10);
            }
        }
        // Appending the last row to the factor of the leading (n-1) block gives the same factor.
        let mut c2 = Cholesky::factor(&packed[..row_start(n - 1)], n - 1).unwrap();
        let last: Vec<f64> = (0..n - 1).map(|j| a[(n - 1) * n + j]).collect();
        assert!(c2.append(&last, a[n * n - 1]));
        for (u, v) in c.l.iter().zip(&c2.l) {
            assert!((u - v).abs() < 1e-12);
        }
        let ld: f64 = c.log_det();
        assert!(ld.is_finite());
        // Not PD.
        assert!(Cholesky::factor(&[1.0, 2.0, 1.0], 2).is_none());
    }
}
