//! The trial lifecycle, in one place: validate a suggestion, write its row, hand out its
//! [`TrialSpec`], record its job, turn a run report into an outcome, finish it, count the budget.
//!
//! Every driver goes through [`TrialService`]: the campaign loop (and with it `compare`, which runs
//! the campaign on an in-memory study) and, later, the `jobs` capability of agent plugins. So the
//! rules below hold whoever starts trials:
//!
//! - A suggestion is validated against the search space before any row is written.
//! - A trial row exists (`pending`) before its job; the job's handle is stored before anyone waits
//!   on it, and a failure to store it is an error, not a log line.
//! - A finished row is never modified.
//! - The objective is read from the run report here, and only here: missing, NaN, infinite or
//!   non-numeric means the trial failed, with the reason. In a multi-objective study that holds
//!   for every objective ([`TrialService::set_objectives`]); `value` is the first one's.
//!
//! The service knows nothing about plugins' internals or executors' mechanics: it speaks
//! [`TrialSpec`], [`RunReport`] and [`JobHandle`], and the plugin-facing [`Observation`].

use std::path::PathBuf;
use std::sync::Arc;

use crate::config::Direction;
use crate::executor::{FailureCause, JobHandle, RunReport, TrialSpec, job_name};
use crate::plugin::strategy::{Observation, ObservedStatus};
use crate::space::{Assignment, InvalidAssignment, SearchSpace, Value};
use crate::study::{Finish, StudyDb, StudyError, TrialRow, TrialState};

/// What the service needs to know about its study.
#[derive(Clone, Debug)]
pub struct TrialRules {
    /// The study's name (part of every job name).
    pub study: String,
    /// Trial directories are `<trials_dir>/<id:06>`; empty for studies that keep no files.
    pub trials_dir: PathBuf,
    pub objective: String,
    pub direction: Direction,
    /// Total number of trials in the study, counting those from earlier runs.
    pub budget: Option<u32>,
    /// How many times a trial that failed for a system reason (node lost, walltime) is re-run.
    pub retries: u32,
}

/// A suggestion that did not pass validation; the trial was never created.
#[derive(Debug, thiserror::Error)]
#[error("invalid trial ({params}): {reason}")]
pub struct Invalid {
    pub params: String,
    pub reason: InvalidAssignment,
}

/// How a finished run was judged.
#[derive(Debug, Clone)]
pub struct Judged {
    pub finish: Finish,
    /// The trial failed because the objective was missing (other metrics were reported).
    pub objective_missing: bool,
    /// The failure was the system's and the retry policy allows another attempt.
    pub retry: bool,
}

/// What [`TrialService::finish`] recorded.
#[derive(Debug)]
pub struct Recorded {
    /// The finished trials as the strategy is told about them.
    pub observations: Vec<Observation>,
    /// The new best trial, when one of them improved it.
    pub improved: Option<(u64, f64)>,
}

/// The counts a progress display and a summary need.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Tally {
    /// Rows in the study (every state), i.e. what the budget counts.
    pub total: usize,
    pub completed: usize,
    pub failed: usize,
    pub pruned: usize,
    /// Trials created by this host process.
    pub this_run: usize,
    pub best: Option<(u64, f64)>,
}

pub struct TrialService {
    db: Arc<StudyDb>,
    space: SearchSpace,
    rules: TrialRules,
    tally: Tally,
    /// A multi-objective study's objectives after the first (which is `rules.objective`); empty
    /// for a single objective. See [`TrialService::set_objectives`].
    more_objectives: Vec<(String, Direction)>,
}

/// What a study holds when a run starts.
pub struct Loaded {
    pub service: TrialService,
    /// Every finished trial, in id order, for replay into a fresh strategy.
    pub history: Vec<Observation>,
    /// Trials an earlier host left pending, running or cancelled.
    pub unfinished: Vec<TrialRow>,
}

impl TrialService {
    /// Reads the study's trials: counts them, and splits them into history and unfinished work.
    pub fn load(db: Arc<StudyDb>, space: SearchSpace, rules: TrialRules) -> Result<Loaded, StudyError> {
        let rows = db.trials()?;
        let mut service = TrialService {
            db,
            space,
            rules,
            tally: Tally { total: rows.len(), ..Tally::default() },
            more_objectives: Vec::new(),
        };
        let mut history = Vec::new();
        let mut unfinished = Vec::new();
        for row in rows {
            if row.state.is_finished() {
                service.count(row.id, row.state, row.value);
                history.push(service.observation_of(&row)?);
            } else {
                unfinished.push(row);
            }
        }
        Ok(Loaded { service, history, unfinished })
    }

    pub fn db(&self) -> &Arc<StudyDb> {
        &self.db
    }

    pub fn space(&self) -> &SearchSpace {
        &self.space
    }

    pub fn rules(&self) -> &TrialRules {
        &self.rules
    }

    pub fn tally(&self) -> Tally {
        self.tally
    }

    /// Makes the study multi-objective: `objectives` is every objective in order, the first being
    /// `rules.objective`. A trial then completes only when it reports a finite value for each;
    /// its `value`, and the study's best, stay the first objective's.
    pub fn set_objectives(&mut self, objectives: &[(String, Direction)]) {
        self.more_objectives = objectives.iter().skip(1).cloned().collect();
    }

    /// Trials the budget still allows (`None`: no trial budget).
    pub fn budget_left(&self) -> Option<usize> {
        self.rules.budget.map(|b| (b as usize).saturating_sub(self.tally.total))
    }

    fn count(&mut self, id: u64, state: TrialState, value: Option<f64>) -> bool {
        match state {
            TrialState::Completed => self.tally.completed += 1,
            TrialState::Pruned => self.tally.pruned += 1,
            _ => self.tally.failed += 1,
        }
        if let (TrialState::Completed, Some(v)) = (state, value)
            && self.tally.best.is_none_or(|(_, b)| self.rules.direction.better(v, b))
        {
            self.tally.best = Some((id, v));
            return true;
        }
        false
    }

    /// Checks a plugin's suggestion against the space.
    pub fn validate(&self, raw: &[(String, Value)]) -> Result<Assignment, Invalid> {
        self.space.validate(raw).map_err(|reason| Invalid {
            params: raw.iter().map(|(n, v)| format!("{n}={v:?}")).collect::<Vec<_>>().join(", "),
            reason,
        })
    }

    /// The spec of one attempt of a trial.
    pub fn spec(&self, id: u64, attempt: u32, params: Assignment) -> TrialSpec {
        let params_json = params.to_json(&self.space);
        let dir = if self.rules.trials_dir.as_os_str().is_empty() {
            PathBuf::new()
        } else {
            self.rules.trials_dir.join(format!("{id:06}"))
        };
        TrialSpec {
            id,
            attempt,
            params,
            params_json,
            dir,
            job_name: job_name(&self.rules.study, id, attempt),
            slot: 0,
            parent: None,
        }
    }

    /// Writes a validated trial as `pending` and returns its first attempt's spec.
    pub fn create(&mut self, params: Assignment) -> Result<TrialSpec, StudyError> {
        let id = self.db.insert_trial(&params.to_json(&self.space))?;
        self.tally.total += 1;
        self.tally.this_run += 1;
        Ok(self.spec(id, 1, params))
    }

    /// Writes a validated trial that starts from `parent`'s directory (an agent's `jobs.submit`);
    /// the parent must be a trial of this study.
    pub fn create_child(&mut self, params: Assignment, parent: u64) -> Result<TrialSpec, StudyError> {
        let id = self.db.insert_child(&params.to_json(&self.space), Some(parent))?;
        self.tally.total += 1;
        self.tally.this_run += 1;
        Ok(TrialSpec { parent: Some(parent), ..self.spec(id, 1, params) })
    }

    /// Turns an enqueued configuration into a `pending` trial (one transaction) and returns its spec.
    pub fn create_enqueued(&mut self, queue_id: u64, params: Assignment) -> Result<TrialSpec, StudyError> {
        let id = self.db.take_queued(queue_id)?;
        self.tally.total += 1;
        self.tally.this_run += 1;
        Ok(self.spec(id, 1, params))
    }

    /// The spec of a row an earlier host left behind.
    pub fn spec_of(&self, row: &TrialRow) -> Result<TrialSpec, StudyError> {
        let params = Assignment::from_json(&self.space, &row.params)
            .map_err(|m| StudyError::Corrupt(format!("trial {}: {m}", row.id)))?;
        Ok(TrialSpec { parent: row.parent, ..self.spec(row.id, row.attempt, params) })
    }

    /// Stores the job of a submitted trial. Must succeed before anyone waits on the job.
    pub fn record_job(&self, trial: &TrialSpec, job: &JobHandle) -> Result<(), StudyError> {
        self.db.mark_running(trial.id, &job.id, &job.to_json())
    }

    /// Puts a trial back to `pending` as its next attempt.
    pub fn rerun(&self, trial: &TrialSpec) -> Result<TrialSpec, StudyError> {
        let attempt = self.db.reset_for_rerun(trial.id)?;
        Ok(TrialSpec { parent: trial.parent, ..self.spec(trial.id, attempt, trial.params.clone()) })
    }

    /// Judges a finished run: completed with its objective, or failed with the reason.
    pub fn judge(&self, trial: &TrialSpec, report: RunReport) -> Judged {
        let objective = &self.rules.objective;
        let failed = |reason: String, report: RunReport, missing: bool, retry: bool| Judged {
            finish: Finish {
                state: TrialState::Failed,
                value: None,
                metrics: report.metrics,
                curve: report.curve,
                failure: Some(reason),
                log_tail: report.log_tail,
            },
            objective_missing: missing,
            retry,
        };
        if let Some(f) = report.failure.clone() {
            let retry = f.cause == FailureCause::System && trial.attempt <= self.rules.retries;
            let reason = if f.cause == FailureCause::System && !retry && self.rules.retries > 0 {
                format!("{} (a system failure; {} retries used)", f.reason, self.rules.retries)
            } else {
                f.reason
            };
            return failed(reason, report, false, retry);
        }
        if let Some((_, raw)) = report.non_numeric.iter().find(|(k, _)| k == objective) {
            let reason = format!("objective `{objective}` in result.json is {raw}, not a finite number");
            return failed(reason, report, false, false);
        }
        // A multi-objective study's other objectives: each reported and finite, or the trial failed.
        for (name, _) in &self.more_objectives {
            if let Some((_, raw)) = report.non_numeric.iter().find(|(k, _)| k == name) {
                let reason = format!("objective `{name}` in result.json is {raw}, not a finite number");
                return failed(reason, report, false, false);
            }
            match report.metrics.get(name).copied() {
                Some(v) if v.is_finite() => {}
                Some(v) => return failed(format!("objective `{name}` is {v}"), report, false, false),
                None if !report.metrics.contains_key(objective) => break, // said below, for the first
                None => {
                    let names: Vec<&str> = report.metrics.keys().map(String::as_str).collect();
                    let reason = format!(
                        "the trial reported no objective `{name}` (it reported: {}); a multi-objective study needs every objective: fix study.objectives or the program",
                        names.join(", ")
                    );
                    return failed(reason, report, true, false);
                }
            }
        }
        match report.metrics.get(objective).copied() {
            Some(v) if v.is_finite() => Judged {
                finish: Finish {
                    state: TrialState::Completed,
                    value: Some(v),
                    metrics: report.metrics,
                    curve: report.curve,
                    failure: None,
                    log_tail: None,
                },
                objective_missing: false,
                retry: false,
            },
            Some(v) => failed(format!("objective `{objective}` is {v}"), report, false, false),
            None if report.metrics.is_empty() => failed(
                format!(
                    "the trial reported no metrics, so no objective `{objective}` (it must write result.json or metrics.jsonl)"
                ),
                report,
                true,
                false,
            ),
            None => {
                let names: Vec<&str> = report.metrics.keys().map(String::as_str).collect();
                let reason = format!(
                    "the trial reported no objective `{objective}` (it reported: {}); fix study.objective or the program",
                    names.join(", ")
                );
                failed(reason, report, true, false)
            }
        }
    }

    /// Records finished trials in one transaction. Returns what to tell the strategy, and the new
    /// best trial if one of them improved it.
    pub fn finish(&mut self, done: Vec<(TrialSpec, Finish)>) -> Result<Recorded, StudyError> {
        let rows: Vec<(u64, Finish)> = done.iter().map(|(t, f)| (t.id, f.clone())).collect();
        self.db.finish_trials(&rows)?;
        let mut improved = None;
        let mut observations = Vec::with_capacity(done.len());
        for (trial, finish) in done {
            if self.count(trial.id, finish.state, finish.value) {
                improved = self.tally.best;
            }
            observations.push(Observation {
                trial: trial.id,
                params: trial.params,
                status: status_of(finish.state),
                value: finish.value,
                metrics: finish.metrics.into_iter().collect(),
                curve: curve_of(&finish.curve),
            });
        }
        Ok(Recorded { observations, improved })
    }

    /// Records jobs that were stopped on purpose; a resume re-runs them as new attempts.
    pub fn cancelled(&self, ids: &[u64]) -> Result<(), StudyError> {
        self.db.mark_cancelled(ids)
    }

    fn observation_of(&self, row: &TrialRow) -> Result<Observation, StudyError> {
        let params = Assignment::from_json(&self.space, &row.params)
            .map_err(|m| StudyError::Corrupt(format!("trial {}: {m}", row.id)))?;
        Ok(Observation {
            trial: row.id,
            params,
            status: status_of(row.state),
            value: row.value,
            metrics: row.metrics.iter().map(|(k, v)| (k.clone(), *v)).collect(),
            curve: curve_of(&row.curve),
        })
    }
}

fn curve_of(curve: &[crate::space::Metrics]) -> Vec<Vec<(String, f64)>> {
    curve.iter().map(|m| m.iter().map(|(k, v)| (k.clone(), *v)).collect()).collect()
}

fn status_of(state: TrialState) -> ObservedStatus {
    match state {
        TrialState::Completed => ObservedStatus::Completed,
        TrialState::Pruned => ObservedStatus::Pruned,
        _ => ObservedStatus::Failed,
    }
}

/// The assignment of a trial as a short text, for tables.
pub fn describe_params(params: &serde_json::Map<String, serde_json::Value>) -> String {
    params
        .iter()
        .map(|(k, v)| match v {
            serde_json::Value::Number(n) => match n.as_f64() {
                Some(x) if n.is_f64() => format!("{k}={}", Assignment::format_float(x)),
                _ => format!("{k}={n}"),
            },
            serde_json::Value::String(s) => format!("{k}={s}"),
            other => format!("{k}={other}"),
        })
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::space::{Domain, Param};

    fn service(objectives: &[(&str, Direction)]) -> TrialService {
        let space = SearchSpace::new(vec![Param {
            name: "x".into(),
            domain: Domain::Float { low: 0.0, high: 1.0, log: false },
        }])
        .unwrap();
        let meta = crate::study::StudyMeta {
            name: "t".into(),
            objective: objectives[0].0.into(),
            direction: objectives[0].1.as_str().into(),
            seed: 0,
            space: space.to_json(),
            executor: "bench".into(),
            plugin: "p".into(),
            plugin_sha256: "0".into(),
            created_at: 0.0,
        };
        let db = Arc::new(StudyDb::in_memory(&meta).unwrap());
        let rules = TrialRules {
            study: "t".into(),
            trials_dir: PathBuf::new(),
            objective: objectives[0].0.into(),
            direction: objectives[0].1,
            budget: None,
            retries: 0,
        };
        let mut s = TrialService::load(db, space, rules).unwrap().service;
        let all: Vec<(String, Direction)> = objectives.iter().map(|(n, d)| (n.to_string(), *d)).collect();
        s.set_objectives(&all);
        s
    }

    fn judge(s: &TrialService, metrics: &[(&str, f64)]) -> Judged {
        let params = s.validate(&[("x".into(), Value::Float(0.5))]).unwrap();
        let report =
            RunReport { metrics: metrics.iter().map(|(k, v)| (k.to_string(), *v)).collect(), ..RunReport::default() };
        s.judge(&s.spec(1, 1, params), report)
    }

    #[test]
    fn every_objective_of_a_multi_objective_study_must_be_reported() {
        let s = service(&[("auc", Direction::Maximize), ("secs", Direction::Minimize)]);
        let ok = judge(&s, &[("auc", 0.9), ("secs", 12.0)]);
        assert_eq!((ok.finish.state, ok.finish.value), (TrialState::Completed, Some(0.9)));

        let j = judge(&s, &[("auc", 0.9), ("loss", 1.0)]);
        assert_eq!(j.finish.state, TrialState::Failed);
        assert!(j.objective_missing);
        let why = j.finish.failure.unwrap();
        assert!(why.contains("no objective `secs`") && why.contains("auc, loss"), "{why}");

        let j = judge(&s, &[("auc", 0.9), ("secs", f64::NAN)]);
        assert!(j.finish.failure.unwrap().contains("objective `secs` is NaN"));
        // The first objective missing is said as before, for the first.
        let j = judge(&s, &[("secs", 3.0)]);
        assert!(j.finish.failure.unwrap().contains("no objective `auc`"));
        // A single-objective study ignores other metrics.
        let single = service(&[("auc", Direction::Maximize)]);
        assert_eq!(judge(&single, &[("auc", 0.5)]).finish.state, TrialState::Completed);
    }
}
