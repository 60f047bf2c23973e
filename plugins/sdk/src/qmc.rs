//! Quasi-random sequences: a scrambled Halton sequence.
//!
//! Each dimension uses the next prime as its base; every digit is passed through a random
//! permutation of `0..base` drawn from the seed (digit scrambling, as in Owen's/Braaten–Weller
//! scrambling, with one permutation per digit position), which breaks the correlation between
//! high dimensions that plain Halton shows and makes the sequence differ per seed. Index 0 is
//! skipped. Points lie strictly inside (0, 1).

use crate::rng::Rng;

const DIGITS: usize = 40;

/// The first `n` primes.
pub fn primes(n: usize) -> Vec<u64> {
    let mut out = Vec::with_capacity(n);
    let mut c = 2u64;
    while out.len() < n {
        if out.iter().take_while(|&&p| p * p <= c).all(|&p| !c.is_multiple_of(p)) {
            out.push(c);
        }
        c += 1;
    }
    out
}

/// A scrambled Halton sequence in [0,1)^d.
#[derive(Clone, Debug)]
pub struct Halton {
    bases: Vec<u64>,
    /// perms[dim][digit] is a permutation of 0..base.
    perms: Vec<Vec<Vec<u32>>>,
    index: u64,
}

impl Halton {
    /// A sequence in `dim` dimensions; `seed` picks the scrambling (seed-dependent, deterministic).
    pub fn new(dim: usize, seed: u64) -> Self {
        let bases = primes(dim);
        let mut rng = Rng::derive(seed, 0x4A170);
        let perms = bases
            .iter()
            .map(|&b| {
                (0..DIGITS)
                    .map(|_| {
                        let mut p: Vec<u32> = (0..b as u32).collect();
                        rng.shuffle(&mut p);
                        p
                    })
                    .collect()
            })
            .collect();
        Halton { bases, perms, index: 1 }
    }

    pub fn dim(&self) -> usize {
        self.bases.len()
    }

    /// Skip `n` points.
    pub fn skip(&mut self, n: u64) {
        self.index += n;
    }

    /// The point at `index` (1-based in the underlying sequence), without advancing.
    pub fn point_at(&self, index: u64) -> Vec<f64> {
        self.bases
            .iter()
            .zip(&self.perms)
            .map(|(&b, perms)| {
                let mut i = index;
                let mut f = 1.0 / b as f64;
                let mut x = 0.0;
                let mut k = 0;
                // Scrambled digits continue past the last non-zero digit (zeros get permuted too),
                // for a fixed number of positions, so that every point is a proper random shift.
                while k < DIGITS && f > 1e-17 {
                    let d = (i % b) as usize;
                    x += perms[k][d] as f64 * f;
                    i /= b;
                    f /= b as f64;
                    k += 1;
                }
                x.clamp(1e-12, 1.0 - 1e-12)
            })
            .collect()
    }

    /// The next point.
    pub fn next_point(&mut self) -> Vec<f64> {
        let p = self.point_at(self.index);
        self.index += 1;
        p
    }

    /// The next `n` points.
    pub fn take(&mut self, n: usize) -> Vec<Vec<f64>> {
        (0..n).map(|_| self.next_point()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn primes_ok() {
        assert_eq!(primes(6), vec![2, 3, 5, 7, 11, 13]);
    }

    #[test]
    fn halton_is_even_and_seeded() {
        let mut h = Halton::new(5, 3);
        let pts = h.take(256);
        for d in 0..5 {
            // Every one of 8 equal bins of each coordinate gets close to 32 points.
            let mut bins = [0usize; 8];
            for p in &pts {
                assert!(p[d] > 0.0 && p[d] < 1.0);
                bins[(p[d] * 8.0) as usize] += 1;
            }
            assert!(bins.iter().all(|&c| (24..=40).contains(&c)), "dim {d}: {bins:?}");
        }
        let again = Halton::new(5, 3).take(256);
        assert_eq!(pts, again);
        assert_ne!(Halton::new(5, 4).take(4), pts[..4].to_vec());
    }
}
