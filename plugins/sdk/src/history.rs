//! The observed history, in unit-cube coordinates, with "lower is better" objectives.

use crate::space::Space;
use crate::types::{Direction, Outcome, Status, Trial};

/// Finished trials as unit-cube points (snapped, see [`Space::snap`]).
///
/// `y` holds the objective converted so that **lower is better** whatever the study's direction
/// (negated for maximization). Failed and pruned trials, and completed ones whose value is missing
/// or not finite, go to `failed` (their points are still known, e.g. to avoid re-suggesting them).
#[derive(Clone, Debug)]
pub struct History {
    direction: Direction,
    pub x: Vec<Vec<f64>>,
    pub y: Vec<f64>,
    pub ids: Vec<u64>,
    pub failed: Vec<Vec<f64>>,
    pub failed_ids: Vec<u64>,
}

impl History {
    pub fn new(direction: Direction) -> Self {
        History { direction, x: Vec::new(), y: Vec::new(), ids: Vec::new(), failed: Vec::new(), failed_ids: Vec::new() }
    }

    pub fn direction(&self) -> Direction {
        self.direction
    }

    /// Records outcomes. An outcome whose parameters do not fit the space is an error (and
    /// nothing of the batch after it is recorded).
    pub fn observe(&mut self, space: &Space, outcomes: &[Outcome]) -> Result<(), String> {
        for o in outcomes {
            let x = space.snap(&space.encode(&o.trial.params).map_err(|e| format!("trial {}: {e}", o.trial.id))?);
            match (o.status, o.value) {
                (Status::Completed, Some(v)) if v.is_finite() => {
                    let y = match self.direction {
                        Direction::Minimize => v,
                        Direction::Maximize => -v,
                    };
                    self.push(o.trial.id, x, y);
                }
                _ => {
                    self.failed.push(x);
                    self.failed_ids.push(o.trial.id);
                }
            }
        }
        Ok(())
    }

    /// Adds a completed point directly (`y`: lower is better).
    pub fn push(&mut self, id: u64, x: Vec<f64>, y: f64) {
        self.x.push(x);
        self.y.push(y);
        self.ids.push(id);
    }

    /// Number of completed trials with a value.
    pub fn len(&self) -> usize {
        self.y.len()
    }

    pub fn is_empty(&self) -> bool {
        self.y.is_empty()
    }

    /// Number of finished trials, failed included.
    pub fn n_finished(&self) -> usize {
        self.y.len() + self.failed.len()
    }

    /// Index and value of the best (lowest) completed trial.
    pub fn best(&self) -> Option<(usize, f64)> {
        self.y.iter().copied().enumerate().fold(None, |acc, (i, v)| match acc {
            Some((_, b)) if b <= v => acc,
            _ => Some((i, v)),
        })
    }

    /// Every known point, completed and failed.
    pub fn all_points(&self) -> impl Iterator<Item = &Vec<f64>> {
        self.x.iter().chain(self.failed.iter())
    }

    /// Objective value in the study's own direction (undoes the negation for maximization).
    pub fn to_study_value(&self, y: f64) -> f64 {
        match self.direction {
            Direction::Minimize => y,
            Direction::Maximize => -y,
        }
    }
}

/// Encodes pending trials (skipping any whose parameters do not fit the space) as snapped points.
pub fn encode_trials(space: &Space, trials: &[Trial]) -> Vec<Vec<f64>> {
    trials.iter().filter_map(|t| space.encode(&t.params).ok()).map(|x| space.snap(&x)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::*;

    #[test]
    fn direction_and_failures() {
        let space = Space::new(&[Param::float("x", 0.0, 2.0)]).unwrap();
        let mut h = History::new(Direction::Maximize);
        let o = |id, v: Option<f64>, st| Outcome {
            trial: Trial { id, params: vec![Assignment { name: "x".into(), value: Value::Float(id as f64 * 0.5) }] },
            status: st,
            value: v,
            metrics: vec![],
            curve: Vec::new(),
        };
        h.observe(
            &space,
            &[
                o(1, Some(3.0), Status::Completed),
                o(2, None, Status::Failed),
                o(3, Some(5.0), Status::Completed),
                o(4, Some(f64::NAN), Status::Completed),
                o(0, Some(9.0), Status::Pruned),
            ],
        )
        .unwrap();
        assert_eq!(h.y, vec![-3.0, -5.0]);
        assert_eq!(h.best(), Some((1, -5.0)));
        assert_eq!(h.to_study_value(-5.0), 5.0);
        assert_eq!(h.failed.len(), 3);
        assert_eq!(h.x[0], vec![0.25]);
        assert_eq!(h.all_points().count(), 5);
    }
}
