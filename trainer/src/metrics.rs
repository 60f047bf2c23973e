//! Evaluation metrics: exact rank-based ROC AUC (ties averaged), macro one-vs-rest AUC over the
//! classes, and the prototype's learning-curve objective.

/// ROC AUC of `scores` for the binary labels `positive`, exactly, via the Mann-Whitney U
/// statistic with tied scores given their average rank. `None` when either class is empty.
pub fn binary_auc(scores: &[f32], positive: &[bool]) -> Option<f64> {
    assert_eq!(scores.len(), positive.len());
    let n_pos = positive.iter().filter(|&&p| p).count();
    let n_neg = positive.len() - n_pos;
    if n_pos == 0 || n_neg == 0 {
        return None;
    }
    let mut order: Vec<usize> = (0..scores.len()).collect();
    order.sort_by(|&a, &b| scores[a].total_cmp(&scores[b]));
    let mut rank_sum_pos = 0.0f64;
    let mut i = 0;
    while i < order.len() {
        let mut j = i;
        while j + 1 < order.len() && scores[order[j + 1]] == scores[order[i]] {
            j += 1;
        }
        // Ranks i+1 ..= j+1 share their average.
        let avg_rank = (i + j + 2) as f64 / 2.0;
        let pos_in_tie = order[i..=j].iter().filter(|&&k| positive[k]).count();
        rank_sum_pos += avg_rank * pos_in_tie as f64;
        i = j + 1;
    }
    let np = n_pos as f64;
    Some((rank_sum_pos - np * (np + 1.0) / 2.0) / (np * n_neg as f64))
}

/// Macro-averaged one-vs-rest ROC AUC. `probs` is row-major [n, classes]; classes absent from
/// `labels` (or present in every row) are skipped. `None` when no class qualifies.
pub fn macro_ovr_auc(probs: &[f32], classes: usize, labels: &[i64]) -> Option<f64> {
    let n = labels.len();
    assert_eq!(probs.len(), n * classes);
    let mut sum = 0.0;
    let mut count = 0usize;
    let mut col = vec![0f32; n];
    let mut pos = vec![false; n];
    for k in 0..classes {
        for r in 0..n {
            col[r] = probs[r * classes + k];
            pos[r] = labels[r] == k as i64;
        }
        if let Some(a) = binary_auc(&col, &pos) {
            sum += a;
            count += 1;
        }
    }
    (count > 0).then(|| sum / count as f64)
}

/// The prototype's objective: trapezoid of per-epoch validation accuracy over epochs, divided by
/// the number of intervals (n - 1) = mean accuracy over the learning curve. For one epoch it is
/// that epoch's accuracy. `None` for an empty curve.
pub fn curve_auc(acc: &[f64]) -> Option<f64> {
    match acc.len() {
        0 => None,
        1 => Some(acc[0]),
        n => {
            let trap: f64 = acc.windows(2).map(|w| (w[0] + w[1]) / 2.0).sum();
            Some(trap / (n - 1) as f64)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-12
    }

    #[test]
    fn binary_auc_hand_checked() {
        // Pairs (pos, neg): 0.35>0.1, 0.35<0.4, 0.8>0.1, 0.8>0.4 -> 3/4.
        let a = binary_auc(&[0.1, 0.4, 0.35, 0.8], &[false, false, true, true]).unwrap();
        assert!(close(a, 0.75), "{a}");
        // Ties: pos 0.5 vs neg 0.5 counts 1/2; 0.5>0.2, 0.9>0.5, 0.9>0.2 -> 3.5/4.
        let a = binary_auc(&[0.5, 0.5, 0.2, 0.9], &[true, false, false, true]).unwrap();
        assert!(close(a, 0.875), "{a}");
        // All tied -> 0.5; perfect -> 1; reversed -> 0.
        assert!(close(binary_auc(&[1.0; 4], &[true, false, true, false]).unwrap(), 0.5));
        assert!(close(binary_auc(&[0.9, 0.1], &[true, false]).unwrap(), 1.0));
        assert!(close(binary_auc(&[0.1, 0.9], &[true, false]).unwrap(), 0.0));
        assert!(binary_auc(&[0.1, 0.9], &[true, true]).is_none());
    }

    #[test]
    fn macro_auc_hand_checked() {
        // 4 samples, 4 classes; class 3 never occurs and is skipped.
        // labels: 0, 1, 2, 1
        #[rustfmt::skip]
        let probs = [
            0.7, 0.1, 0.1, 0.1,   // y=0
            0.2, 0.5, 0.2, 0.1,   // y=1
            0.3, 0.3, 0.3, 0.1,   // y=2
            0.1, 0.2, 0.6, 0.1,   // y=1
        ];
        let labels = [0, 1, 2, 1];
        // class 0: pos {0.7} vs neg {0.2,0.3,0.1}: 3/3 = 1.
        // class 1: pos {0.5,0.2} vs neg {0.1,0.3}: 0.5>0.1, 0.5>0.3, 0.2>0.1, 0.2<0.3 -> 3/4.
        // class 2: pos {0.3} vs neg {0.1,0.2,0.6}: 2/3.
        // class 3: no positives -> skipped.  macro = (1 + 0.75 + 2/3) / 3.
        let a = macro_ovr_auc(&probs, 4, &labels).unwrap();
        assert!(close(a, (1.0 + 0.75 + 2.0 / 3.0) / 3.0), "{a}");
    }

    #[test]
    fn curve_auc_is_mean_over_the_curve() {
        assert_eq!(curve_auc(&[]), None);
        assert!(close(curve_auc(&[0.4]).unwrap(), 0.4));
        assert!(close(curve_auc(&[0.0, 1.0]).unwrap(), 0.5));
        // trapezoid: (0.1+0.3)/2 + (0.3+0.5)/2 = 0.6, / 2 intervals = 0.3
        assert!(close(curve_auc(&[0.1, 0.3, 0.5]).unwrap(), 0.3));
    }
}
