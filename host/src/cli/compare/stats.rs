//! Small statistics for `compare`: quantiles, mean and standard deviation, ranks with ties, and the
//! area under a best-so-far curve. Plain functions on slices, so they are easy to test.

/// The `q`-quantile (0 ≤ q ≤ 1) with linear interpolation between order statistics (the usual
/// "type 7" definition of R and NumPy). `None` for an empty slice; NaNs are ignored.
pub fn quantile(values: &[f64], q: f64) -> Option<f64> {
    let mut v: Vec<f64> = values.iter().copied().filter(|x| !x.is_nan()).collect();
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let pos = q.clamp(0.0, 1.0) * (v.len() - 1) as f64;
    let lo = pos.floor() as usize;
    let hi = pos.ceil() as usize;
    let frac = pos - lo as f64;
    Some(if lo == hi { v[lo] } else { v[lo] + (v[hi] - v[lo]) * frac })
}

pub fn median(values: &[f64]) -> Option<f64> {
    quantile(values, 0.5)
}

pub fn mean(values: &[f64]) -> Option<f64> {
    if values.is_empty() { None } else { Some(values.iter().sum::<f64>() / values.len() as f64) }
}

/// Sample standard deviation (n − 1 in the denominator); 0 for a single value.
pub fn sd(values: &[f64]) -> Option<f64> {
    let m = mean(values)?;
    if values.len() < 2 {
        return Some(0.0);
    }
    let ss: f64 = values.iter().map(|x| (x - m) * (x - m)).sum();
    Some((ss / (values.len() - 1) as f64).sqrt())
}

/// Ranks (1 = best) of `values`, where lower is better; tied values share the mean of the ranks
/// they span (e.g. two tied for first both get 1.5). `None` entries get `None`.
pub fn ranks(values: &[Option<f64>]) -> Vec<Option<f64>> {
    let mut order: Vec<(usize, f64)> = values.iter().enumerate().filter_map(|(i, v)| v.map(|v| (i, v))).collect();
    order.sort_by(|a, b| a.1.total_cmp(&b.1));
    let mut out = vec![None; values.len()];
    let mut i = 0;
    while i < order.len() {
        let mut j = i;
        while j + 1 < order.len() && order[j + 1].1 == order[i].1 {
            j += 1;
        }
        // Positions i..=j (0-based) are ranks i+1..=j+1: their mean.
        let rank = (i + j) as f64 / 2.0 + 1.0;
        for item in &order[i..=j] {
            out[item.0] = Some(rank);
        }
        i = j + 1;
    }
    out
}

/// Smallest regret used on log scales: regrets at or below it (an exact hit, or a tiny negative
/// value from rounding of the known optimum) count as this.
pub const REGRET_FLOOR: f64 = 1e-12;

/// Area under a best-so-far curve, normalized by its length: the mean of `transform(y)` over the
/// trials that have a value (trials before the first completed one are skipped). With `log` the
/// transform is `log10(max(y, REGRET_FLOOR))` (for regret curves), otherwise the identity.
pub fn curve_auc(curve: &[Option<f64>], log: bool) -> Option<f64> {
    let ys: Vec<f64> = curve.iter().flatten().map(|&y| if log { y.max(REGRET_FLOOR).log10() } else { y }).collect();
    mean(&ys)
}

#[cfg(test)]
/// The running best of `values` (lower is better), `None` until the first value.
pub fn best_so_far(values: &[Option<f64>]) -> Vec<Option<f64>> {
    let mut best: Option<f64> = None;
    values
        .iter()
        .map(|v| {
            if let Some(v) = v {
                best = Some(best.map_or(*v, |b| b.min(*v)));
            }
            best
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-12
    }

    #[test]
    fn quantiles_interpolate() {
        assert_eq!(median(&[]), None);
        assert_eq!(median(&[3.0]), Some(3.0));
        assert_eq!(median(&[3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), Some(2.5));
        // NumPy: np.quantile([1, 2, 3, 4, 10], [0.25, 0.75]) == [2, 4]
        assert_eq!(quantile(&[10.0, 1.0, 2.0, 3.0, 4.0], 0.25), Some(2.0));
        assert_eq!(quantile(&[10.0, 1.0, 2.0, 3.0, 4.0], 0.75), Some(4.0));
        // np.quantile([1, 2, 3, 4], 0.25) == 1.75
        assert!(close(quantile(&[1.0, 2.0, 3.0, 4.0], 0.25).unwrap(), 1.75));
        assert_eq!(median(&[f64::NAN, 1.0, 3.0]), Some(2.0));
    }

    #[test]
    fn mean_and_sample_sd() {
        assert_eq!(mean(&[]), None);
        assert_eq!(mean(&[1.0, 2.0, 3.0, 6.0]), Some(3.0));
        // sd([2, 4, 4, 4, 5, 5, 7, 9]) with n-1: sqrt(32/7)
        let s = sd(&[2.0, 4.0, 4.0, 4.0, 5.0, 5.0, 7.0, 9.0]).unwrap();
        assert!(close(s, (32.0f64 / 7.0).sqrt()));
        assert_eq!(sd(&[5.0]), Some(0.0));
    }

    #[test]
    fn ranks_share_ties_and_skip_missing() {
        let r = ranks(&[Some(0.3), Some(0.1), Some(0.3), None, Some(0.2)]);
        assert_eq!(r, vec![Some(3.5), Some(1.0), Some(3.5), None, Some(2.0)]);
        assert_eq!(ranks(&[Some(1.0), Some(1.0), Some(1.0)]), vec![Some(2.0); 3]);
        assert_eq!(ranks(&[]), Vec::<Option<f64>>::new());
    }

    #[test]
    fn best_so_far_and_auc() {
        let values = [None, Some(5.0), Some(7.0), Some(1.0), None, Some(3.0)];
        let best = best_so_far(&values);
        assert_eq!(best, vec![None, Some(5.0), Some(5.0), Some(1.0), Some(1.0), Some(1.0)]);
        // Linear: mean of 5, 5, 1, 1, 1 = 2.6
        assert!(close(curve_auc(&best, false).unwrap(), 2.6));
        // Log: mean of log10(100), log10(10), log10(1e-20 -> floor) = (2 + 1 - 12) / 3
        let auc = curve_auc(&[Some(100.0), Some(10.0), Some(1e-20)], true).unwrap();
        assert!(close(auc, -3.0));
        assert_eq!(curve_auc(&[None, None], true), None);
        // A negative regret (the known optimum is rounded) is floored, not a NaN.
        assert!(close(curve_auc(&[Some(-1e-9)], true).unwrap(), -12.0));
    }
}
