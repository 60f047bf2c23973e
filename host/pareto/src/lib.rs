//! # alcf-pareto — the Pareto arithmetic of multi-objective studies, in one place
//!
//! Used by the host (`study show`, `compare`) and by strategy plugins (NSGA-II in
//! `plugins/genetic`), natively and in wasm32: no dependencies, no I/O, no randomness.
//!
//! Every point is a vector of **losses**: lower is better in every coordinate. Turn a study's
//! values into losses with [`oriented`] (a maximized objective is negated).
//!
//! - [`dominates`]: `a` is no worse than `b` everywhere and better somewhere. Equal points do not
//!   dominate each other, so duplicates share a front.
//! - [`non_dominated_sort`]: Deb's fast non-dominated sort into fronts (front 0 is the Pareto
//!   front of the set), O(M·N²).
//! - [`crowding_distance`]: NSGA-II's crowding distance within one front (boundaries infinite,
//!   each objective normalized by its range in the front).
//! - [`survivors`]: NSGA-II's survival: whole fronts in rank order, the last one cut by crowding.
//! - [`hypervolume`]: the exact volume dominated by the points and bounded by a reference point:
//!   a sweep for two objectives, slicing along the last objective (HSO) for three and more.
//!   Points that do not strictly dominate the reference contribute nothing.
//! - [`default_reference`]: the reference point used when none is given: per objective, the worst
//!   value plus 10 % of the range of values (plus 10 % of max(1, |worst|) when all values are
//!   equal).

/// `values` as losses: coordinate `j` negated where `maximize[j]` (missing entries: minimized).
pub fn oriented(values: &[f64], maximize: &[bool]) -> Vec<f64> {
    values.iter().enumerate().map(|(j, v)| if maximize.get(j).copied().unwrap_or(false) { -v } else { *v }).collect()
}

/// Whether `a` Pareto-dominates `b` (both losses): `a[j] <= b[j]` for every `j` and `a[j] < b[j]`
/// for at least one.
pub fn dominates(a: &[f64], b: &[f64]) -> bool {
    let mut strictly = false;
    for (x, y) in a.iter().zip(b) {
        if x > y {
            return false;
        }
        if x < y {
            strictly = true;
        }
    }
    strictly
}

/// The fronts of `points`, best first: `fronts[0]` holds the indices of the non-dominated points,
/// `fronts[1]` those dominated only by points of `fronts[0]`, and so on. Indices within a front
/// are ascending.
pub fn non_dominated_sort(points: &[Vec<f64>]) -> Vec<Vec<usize>> {
    let n = points.len();
    let mut dominated_by_me: Vec<Vec<usize>> = vec![Vec::new(); n];
    let mut count = vec![0usize; n];
    for i in 0..n {
        for j in i + 1..n {
            if dominates(&points[i], &points[j]) {
                dominated_by_me[i].push(j);
                count[j] += 1;
            } else if dominates(&points[j], &points[i]) {
                dominated_by_me[j].push(i);
                count[i] += 1;
            }
        }
    }
    let mut fronts = Vec::new();
    let mut current: Vec<usize> = (0..n).filter(|&i| count[i] == 0).collect();
    while !current.is_empty() {
        let mut next = Vec::new();
        for &i in &current {
            for &j in &dominated_by_me[i] {
                count[j] -= 1;
                if count[j] == 0 {
                    next.push(j);
                }
            }
        }
        next.sort_unstable();
        fronts.push(current);
        current = next;
    }
    fronts
}

/// The indices of the non-dominated points of `points` (ascending).
pub fn pareto_front(points: &[Vec<f64>]) -> Vec<usize> {
    (0..points.len()).filter(|&i| !points.iter().any(|q| dominates(q, &points[i]))).collect()
}

/// Each point's front number (0 = non-dominated) in [`non_dominated_sort`].
pub fn ranks(points: &[Vec<f64>]) -> Vec<usize> {
    let mut rank = vec![0; points.len()];
    for (r, front) in non_dominated_sort(points).iter().enumerate() {
        for &i in front {
            rank[i] = r;
        }
    }
    rank
}

/// The crowding distance of each point of `front` (indices into `points`), in `front`'s order:
/// infinite for a point at either end of an objective's range, else the sum over objectives of the
/// gap between its two neighbours in that objective divided by the front's range in it.
pub fn crowding_distance(points: &[Vec<f64>], front: &[usize]) -> Vec<f64> {
    let n = front.len();
    let mut distance = vec![0.0; n];
    if n <= 2 {
        return vec![f64::INFINITY; n];
    }
    let m = points[front[0]].len();
    let mut order: Vec<usize> = (0..n).collect();
    // `j` is the objective: one column of every member's point.
    #[allow(clippy::needless_range_loop)]
    for j in 0..m {
        let value = |k: usize| points[front[k]][j];
        // Ties broken by position, so the result never depends on the sort's stability.
        order.sort_by(|&a, &b| value(a).total_cmp(&value(b)).then(a.cmp(&b)));
        let (lo, hi) = (value(order[0]), value(order[n - 1]));
        distance[order[0]] = f64::INFINITY;
        distance[order[n - 1]] = f64::INFINITY;
        let range = hi - lo;
        if range <= 0.0 || !range.is_finite() {
            continue;
        }
        for w in 1..n - 1 {
            distance[order[w]] += (value(order[w + 1]) - value(order[w - 1])) / range;
        }
    }
    distance
}

/// Each point's front number and its crowding distance within that front (NSGA-II's
/// crowded-comparison keys: lower rank first, then larger distance).
pub fn rank_and_crowding(points: &[Vec<f64>]) -> (Vec<usize>, Vec<f64>) {
    let mut rank = vec![0; points.len()];
    let mut crowding = vec![0.0; points.len()];
    for (r, front) in non_dominated_sort(points).iter().enumerate() {
        for (&i, d) in front.iter().zip(crowding_distance(points, front)) {
            rank[i] = r;
            crowding[i] = d;
        }
    }
    (rank, crowding)
}

/// NSGA-II's survival: the indices of `size` points of `points`, taking whole fronts in order and
/// the most isolated points (largest crowding distance, then lowest index) of the front that does
/// not fit whole. Fewer when there are fewer points.
pub fn survivors(points: &[Vec<f64>], size: usize) -> Vec<usize> {
    let mut chosen = Vec::with_capacity(size.min(points.len()));
    for front in non_dominated_sort(points) {
        if chosen.len() + front.len() <= size {
            chosen.extend_from_slice(&front);
            continue;
        }
        let d = crowding_distance(points, &front);
        let mut order: Vec<usize> = (0..front.len()).collect();
        order.sort_by(|&a, &b| d[b].total_cmp(&d[a]).then(front[a].cmp(&front[b])));
        chosen.extend(order.iter().take(size - chosen.len()).map(|&k| front[k]));
        break;
    }
    chosen
}

/// The hypervolume dominated by `points` (losses) and bounded by `reference`: the measure of
/// `{ y : some p <= y < reference }`. Exact. Points that are not strictly below `reference` in
/// every objective add nothing; no points give 0.
pub fn hypervolume(points: &[Vec<f64>], reference: &[f64]) -> f64 {
    let inside: Vec<&[f64]> = points
        .iter()
        .map(Vec::as_slice)
        .filter(|p| p.len() == reference.len() && p.iter().zip(reference).all(|(x, r)| x < r))
        .collect();
    hv(inside, reference)
}

fn hv(mut points: Vec<&[f64]>, reference: &[f64]) -> f64 {
    let d = reference.len();
    if points.is_empty() || d == 0 {
        return 0.0;
    }
    match d {
        1 => reference[0] - points.iter().map(|p| p[0]).fold(f64::INFINITY, f64::min),
        2 => {
            // Sweep in the first objective; a point adds the strip it improves in the second.
            points.sort_by(|a, b| a[0].total_cmp(&b[0]).then(a[1].total_cmp(&b[1])));
            let mut volume = 0.0;
            let mut best = reference[1];
            for p in points {
                if p[1] < best {
                    volume += (reference[0] - p[0]) * (best - p[1]);
                    best = p[1];
                }
            }
            volume
        }
        _ => {
            // Slices along the last objective: between consecutive values of it, the volume is the
            // slab's depth times the (d-1)-dimensional hypervolume of the points below the slab.
            let last = d - 1;
            points.sort_by(|a, b| a[last].total_cmp(&b[last]));
            let mut volume = 0.0;
            for i in 0..points.len() {
                let top = if i + 1 < points.len() { points[i + 1][last] } else { reference[last] };
                let depth = top - points[i][last];
                if depth > 0.0 {
                    let below: Vec<&[f64]> = points[..=i].iter().map(|p| &p[..last]).collect();
                    volume += depth * hv(below, &reference[..last]);
                }
            }
            volume
        }
    }
}

/// The reference point used when none is configured (see the crate's documentation): per
/// objective, the worst (largest) loss plus 10 % of the losses' range. `None` without points.
pub fn default_reference(points: &[Vec<f64>]) -> Option<Vec<f64>> {
    let m = points.first()?.len();
    Some(
        (0..m)
            .map(|j| {
                let lo = points.iter().map(|p| p[j]).fold(f64::INFINITY, f64::min);
                let hi = points.iter().map(|p| p[j]).fold(f64::NEG_INFINITY, f64::max);
                let range = hi - lo;
                if range > 0.0 { hi + 0.1 * range } else { hi + 0.1 * hi.abs().max(1.0) }
            })
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pts(v: &[&[f64]]) -> Vec<Vec<f64>> {
        v.iter().map(|p| p.to_vec()).collect()
    }

    /// Exact hypervolume by inclusion–exclusion over every subset (small sets only).
    fn hv_brute(points: &[Vec<f64>], r: &[f64]) -> f64 {
        let n = points.len();
        let mut total = 0.0;
        for mask in 1u32..(1 << n) {
            let mut vol = 1.0;
            for j in 0..r.len() {
                let worst = (0..n).filter(|i| mask & (1 << i) != 0).map(|i| points[i][j]).fold(f64::MIN, f64::max);
                vol *= (r[j] - worst).max(0.0);
            }
            total += if mask.count_ones() % 2 == 1 { vol } else { -vol };
        }
        total
    }

    /// A small deterministic generator for the property tests.
    fn lcg(state: &mut u64) -> f64 {
        *state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        (*state >> 11) as f64 / (1u64 << 53) as f64
    }

    #[test]
    fn dominance() {
        assert!(dominates(&[1.0, 2.0], &[1.0, 3.0]));
        assert!(!dominates(&[1.0, 3.0], &[1.0, 2.0]));
        assert!(!dominates(&[1.0, 2.0], &[1.0, 2.0]));
        assert!(!dominates(&[0.0, 3.0], &[1.0, 2.0]));
        assert_eq!(oriented(&[1.0, 2.0, 3.0], &[false, true]), vec![1.0, -2.0, 3.0]);
    }

    #[test]
    fn sorting_into_fronts() {
        let p = pts(&[&[1.0, 5.0], &[2.0, 2.0], &[5.0, 1.0], &[3.0, 3.0], &[4.0, 4.0], &[2.0, 2.0], &[6.0, 6.0]]);
        assert_eq!(non_dominated_sort(&p), vec![vec![0, 1, 2, 5], vec![3], vec![4], vec![6]]);
        assert_eq!(pareto_front(&p), vec![0, 1, 2, 5]);
        assert_eq!(ranks(&p), vec![0, 0, 0, 1, 2, 0, 3]);
        assert!(non_dominated_sort(&[]).is_empty());
    }

    #[test]
    fn crowding_and_survival() {
        let p = pts(&[&[0.0, 3.0], &[1.0, 2.0], &[2.0, 1.0], &[3.0, 0.0]]);
        let d = crowding_distance(&p, &[0, 1, 2, 3]);
        assert_eq!(d[0], f64::INFINITY);
        assert_eq!(d[3], f64::INFINITY);
        assert!((d[1] - 4.0 / 3.0).abs() < 1e-12 && (d[2] - 4.0 / 3.0).abs() < 1e-12);
        // Uneven spacing: the point in the larger gap is the more isolated one.
        let q = pts(&[&[0.0, 10.0], &[1.0, 9.0], &[2.0, 8.0], &[8.0, 2.0], &[10.0, 0.0], &[11.0, 11.0]]);
        let (rank, crowd) = rank_and_crowding(&q);
        assert_eq!(rank, vec![0, 0, 0, 0, 0, 1]);
        assert!(crowd[3] > crowd[1]);
        // Three survivors: the two ends, then the most isolated inner point.
        assert_eq!(survivors(&q, 3), vec![0, 4, 3]);
        assert_eq!(survivors(&q, 6).len(), 6);
        assert_eq!(survivors(&q, 10).len(), 6);
    }

    #[test]
    fn hypervolume_known_values() {
        let r = [4.0, 4.0];
        assert_eq!(hypervolume(&pts(&[&[1.0, 3.0], &[2.0, 2.0], &[3.0, 1.0]]), &r), 6.0);
        // Dominated and outside points change nothing; duplicates neither.
        let more = pts(&[&[1.0, 3.0], &[2.0, 2.0], &[3.0, 1.0], &[3.0, 3.0], &[5.0, 0.0], &[2.0, 2.0]]);
        assert_eq!(hypervolume(&more, &r), 6.0);
        assert_eq!(hypervolume(&[], &r), 0.0);
        assert_eq!(hypervolume(&pts(&[&[0.0, 0.0, 0.0]]), &[1.0, 2.0, 3.0]), 6.0);
        // Two boxes in 3D, 4 and 2, overlapping in a unit cube.
        assert_eq!(hypervolume(&pts(&[&[0.0, 0.0, 1.0], &[1.0, 1.0, 0.0]]), &[2.0, 2.0, 2.0]), 5.0);
        // ZDT1's front f2 = 1 − √f1 with reference (1, 1): ∫₀¹ √x dx = 2/3.
        let n = 20_000;
        let front: Vec<Vec<f64>> = (0..=n)
            .map(|i| {
                let f1 = i as f64 / n as f64;
                vec![f1, 1.0 - f1.sqrt()]
            })
            .collect();
        assert!((hypervolume(&front, &[1.0, 1.0]) - 2.0 / 3.0).abs() < 1e-3);
    }

    #[test]
    fn hypervolume_matches_inclusion_exclusion() {
        let mut s = 7u64;
        for d in 2..=4 {
            for _ in 0..60 {
                let n = 1 + (lcg(&mut s) * 8.0) as usize;
                let p: Vec<Vec<f64>> =
                    (0..n).map(|_| (0..d).map(|_| (lcg(&mut s) * 10.0).round() / 10.0).collect()).collect();
                let r = vec![1.05; d];
                let (a, b) = (hypervolume(&p, &r), hv_brute(&p, &r));
                assert!((a - b).abs() < 1e-9, "d={d} {p:?}: {a} vs {b}");
            }
        }
    }

    #[test]
    fn reference_rule() {
        let p = pts(&[&[1.0, 3.0], &[2.0, 2.0], &[3.0, 1.0]]);
        let r = default_reference(&p).unwrap();
        assert!((r[0] - 3.2).abs() < 1e-12 && (r[1] - 3.2).abs() < 1e-12);
        assert_eq!(default_reference(&pts(&[&[5.0, -20.0]])).unwrap(), vec![5.5, -18.0]);
        assert_eq!(default_reference(&[]), None);
    }
}
