//! The standard normal distribution, for acquisition functions and Parzen estimators.
//! Plain arithmetic and `exp` only, so native and wasm builds agree to the last bit wherever
//! `exp` does.

use std::f64::consts::{PI, SQRT_2};

/// Complementary error function: the Numerical Recipes Chebyshev fit (`erfcc`), relative error
/// below 1.2e-7 everywhere, accurate in the tails (W. J. Cody's rational approximations would be
/// overkill for ranking candidates).
pub fn erfc(x: f64) -> f64 {
    let z = x.abs();
    let t = 1.0 / (1.0 + 0.5 * z);
    let ans = t
        * (-z * z - 1.265_512_23
            + t * (1.000_023_68
                + t * (0.374_091_96
                    + t * (0.096_784_18
                        + t * (-0.186_288_06
                            + t * (0.278_868_07
                                + t * (-1.135_203_98
                                    + t * (1.488_515_87 + t * (-0.822_152_23 + t * 0.170_872_77)))))))))
            .exp();
    if x >= 0.0 { ans } else { 2.0 - ans }
}

/// Standard normal density φ(z).
pub fn pdf(z: f64) -> f64 {
    (-0.5 * z * z).exp() / (2.0 * PI).sqrt()
}

/// Standard normal distribution function Φ(z).
pub fn cdf(z: f64) -> f64 {
    0.5 * erfc(-z / SQRT_2)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_values() {
        assert!((erfc(0.0) - 1.0).abs() < 1e-7);
        assert!((erfc(1.0) - 0.157_299_207_050_285_1).abs() < 1.2e-7 * 0.16);
        assert!((erfc(-1.0) - 1.842_700_792_949_715).abs() < 1e-7);
        // Tail: erfc(5) = 1.5375e-12, relative accuracy holds there too.
        assert!(((erfc(5.0) - 1.537_459_794_428_035e-12) / 1.537_459_794_428_035e-12).abs() < 1.2e-7);
        assert!((cdf(0.0) - 0.5).abs() < 1e-7);
        assert!((cdf(1.959_963_984_540_054) - 0.975).abs() < 1e-7);
        assert!((pdf(0.0) - 0.398_942_280_401_432_7).abs() < 1e-15);
        for i in -80..=80 {
            let z = i as f64 / 10.0;
            assert!((cdf(z) + cdf(-z) - 1.0).abs() < 1e-7, "symmetry at {z}");
        }
    }
}
