//! Multi-objective studies: the objectives as a study keeps them (its meta table), and the Pareto
//! front of its completed trials with the front's hypervolume (the arithmetic is `alcf-pareto`'s).
//!
//! A study is multi-objective when its meta holds more than one objective under
//! [`OBJECTIVES_KEY`]; its `objective` and `direction` are then the first of them, and each
//! trial's `value` is the first objective's value (so "best" is the first objective's best).

use serde_json::Value as Json;

use crate::config::Direction;
use crate::study::{StudyDb, StudyError, TrialRow, TrialState};

/// Meta key: the objectives as JSON, `[{"metric": "f1", "direction": "minimize"}, ...]`.
pub const OBJECTIVES_KEY: &str = "objectives";
/// Meta key: the configured hypervolume reference point as a JSON list of numbers.
pub const REFERENCE_KEY: &str = "hypervolume_reference";

/// The objectives as stored text.
pub fn objectives_json(objectives: &[(String, Direction)]) -> String {
    Json::Array(objectives.iter().map(|(m, d)| serde_json::json!({ "metric": m, "direction": d.as_str() })).collect())
        .to_string()
}

/// Parses [`objectives_json`]'s text; `None` when it is not that.
pub fn parse_objectives(text: &str) -> Option<Vec<(String, Direction)>> {
    let Json::Array(list) = serde_json::from_str(text).ok()? else { return None };
    list.iter()
        .map(|o| Some((o.get("metric")?.as_str()?.to_string(), Direction::parse(o.get("direction")?.as_str()?)?)))
        .collect()
}

/// Records a multi-objective study's objectives and reference point (nothing for one objective).
pub fn store(db: &StudyDb, objectives: &[(String, Direction)], reference: Option<&[f64]>) -> Result<(), StudyError> {
    if objectives.len() < 2 {
        return Ok(());
    }
    db.set_meta(OBJECTIVES_KEY, &objectives_json(objectives))?;
    match reference {
        Some(r) => db.set_meta(REFERENCE_KEY, &Json::from(r.to_vec()).to_string()),
        None => db.delete_meta(REFERENCE_KEY),
    }
}

/// The study's objectives when it has more than one; empty for a single-objective study.
pub fn objectives_of(db: &StudyDb) -> Result<Vec<(String, Direction)>, StudyError> {
    Ok(db.get_meta(OBJECTIVES_KEY)?.and_then(|t| parse_objectives(&t)).filter(|o| o.len() > 1).unwrap_or_default())
}

/// The configured reference point, if any.
pub fn reference_of(db: &StudyDb) -> Result<Option<Vec<f64>>, StudyError> {
    Ok(db.get_meta(REFERENCE_KEY)?.and_then(|t| serde_json::from_str::<Vec<f64>>(&t).ok()))
}

/// Where a hypervolume's reference point came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReferenceSource {
    /// `[study] hypervolume_reference` (or a benchmark problem's standard point).
    Given,
    /// The rule: per objective, the worst value among the completed trials moved away from the
    /// best by 10 % of their range ([`alcf_pareto::default_reference`]).
    Observed,
}

impl ReferenceSource {
    /// How a report says it.
    pub fn describe(self) -> &'static str {
        match self {
            ReferenceSource::Given => "configured",
            ReferenceSource::Observed => "the worst completed value of each objective, 10% of its range further",
        }
    }
}

/// The Pareto front of a set of trials and its hypervolume.
#[derive(Clone, Debug, PartialEq)]
pub struct Front {
    /// The non-dominated trials: (trial id, its value for each objective), along the first
    /// objective, best first (ties by id).
    pub members: Vec<(u64, Vec<f64>)>,
    /// The volume the front dominates up to `reference` (in loss space: maximized objectives
    /// negated), 0 when no member is better than the reference in every objective.
    pub hypervolume: f64,
    /// In the objectives' own units.
    pub reference: Vec<f64>,
    pub source: ReferenceSource,
    /// How many trials had a value for every objective.
    pub points: usize,
}

/// The front of `points` (trial id, value per objective); `None` without points.
pub fn front_of(
    points: &[(u64, Vec<f64>)],
    objectives: &[(String, Direction)],
    reference: Option<&[f64]>,
) -> Option<Front> {
    if points.is_empty() || objectives.is_empty() {
        return None;
    }
    let maximize: Vec<bool> = objectives.iter().map(|(_, d)| *d == Direction::Maximize).collect();
    let losses: Vec<Vec<f64>> = points.iter().map(|(_, v)| alcf_pareto::oriented(v, &maximize)).collect();
    let (loss_ref, source) = match reference {
        Some(r) => (alcf_pareto::oriented(r, &maximize), ReferenceSource::Given),
        None => (alcf_pareto::default_reference(&losses)?, ReferenceSource::Observed),
    };
    let mut front = alcf_pareto::pareto_front(&losses);
    front.sort_by(|&a, &b| losses[a][0].total_cmp(&losses[b][0]).then(points[a].0.cmp(&points[b].0)));
    let members = front.into_iter().map(|i| points[i].clone()).collect();
    Some(Front {
        members,
        hypervolume: alcf_pareto::hypervolume(&losses, &loss_ref),
        // `oriented` is its own inverse.
        reference: alcf_pareto::oriented(&loss_ref, &maximize),
        source,
        points: points.len(),
    })
}

/// Each completed trial's value for every objective (trials lacking one are left out).
pub fn points_of(trials: &[TrialRow], objectives: &[(String, Direction)]) -> Vec<(u64, Vec<f64>)> {
    trials
        .iter()
        .filter(|t| t.state == TrialState::Completed)
        .filter_map(|t| {
            let v: Option<Vec<f64>> =
                objectives.iter().map(|(m, _)| t.metrics.get(m).copied().filter(|x| x.is_finite())).collect();
            Some((t.id, v?))
        })
        .collect()
}

/// The Pareto front of a study's completed trials.
pub fn front(trials: &[TrialRow], objectives: &[(String, Direction)], reference: Option<&[f64]>) -> Option<Front> {
    front_of(&points_of(trials, objectives), objectives, reference)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fronts_in_the_objectives_units() {
        let objectives = vec![("auc".to_string(), Direction::Maximize), ("secs".to_string(), Direction::Minimize)];
        assert_eq!(parse_objectives(&objectives_json(&objectives)), Some(objectives.clone()));
        let points = vec![(1, vec![0.9, 30.0]), (2, vec![0.8, 10.0]), (3, vec![0.7, 20.0]), (4, vec![0.95, 40.0])];
        let f = front_of(&points, &objectives, Some(&[0.5, 50.0])).unwrap();
        let ids: Vec<u64> = f.members.iter().map(|m| m.0).collect();
        assert_eq!(ids, vec![4, 1, 2], "along auc, best first");
        assert_eq!(f.source, ReferenceSource::Given);
        assert_eq!(f.reference, vec![0.5, 50.0]);
        // Losses (-auc, secs) against (-0.5, 50): sweep over -auc ascending (4, 1, 2).
        let want = 0.45 * 10.0 + 0.4 * 10.0 + 0.3 * 20.0;
        assert!((f.hypervolume - want).abs() < 1e-12, "{}", f.hypervolume);
        // Without a reference: the worst values (0.7 and 40) moved 10 % of the range (0.25, 30).
        let f = front_of(&points, &objectives, None).unwrap();
        assert_eq!(f.source, ReferenceSource::Observed);
        assert!((f.reference[0] - 0.675).abs() < 1e-12 && (f.reference[1] - 43.0).abs() < 1e-12, "{:?}", f.reference);
        assert!(front_of(&[], &objectives, None).is_none());
    }
}
