//! Driving a strategy natively, the way the host does: for tests and native benchmarks.

use crate::Strategy;
use crate::types::*;

/// One finished trial of a native run.
#[derive(Clone, Debug)]
pub struct Record {
    pub params: Params,
    /// `None`: the objective function reported a failure.
    pub value: Option<f64>,
}

/// Runs `strategy` for `n` trials with up to `parallel` trials pending at once. Trials finish in
/// the order they were started (the oldest pending finishes first); `objective` returns the
/// value in the study's direction, or `None` for a failed trial. Panics (in tests) when a
/// suggestion is missing a parameter, and fails when one exactly duplicates a pending trial.
pub fn run<S: Strategy>(
    strategy: &mut S,
    study: &Study,
    n: usize,
    parallel: usize,
    mut objective: impl FnMut(&Params) -> Option<f64>,
) -> Result<Vec<Record>, String> {
    let parallel = parallel.max(1);
    let mut pending: std::collections::VecDeque<Trial> = Default::default();
    let mut records = Vec::with_capacity(n);
    let mut next_id = 0u64;
    while records.len() < n {
        let started = records.len() + pending.len();
        let want = (parallel - pending.len()).min(n - started);
        if want > 0 {
            let pend: Vec<Trial> = pending.iter().cloned().collect();
            let sugg = strategy.suggest(want, &pend)?;
            if sugg.is_empty() && pending.is_empty() {
                return Err("strategy suggested nothing".into());
            }
            for params in sugg.into_iter().take(want) {
                for p in &study.space {
                    assert!(params.iter().any(|a| a.name == p.name), "suggestion lacks `{}`", p.name);
                }
                if pending.iter().any(|t| t.params == params) {
                    return Err(format!("suggestion {params:?} duplicates a pending trial"));
                }
                pending.push_back(Trial { id: next_id, params });
                next_id += 1;
            }
        }
        if let Some(t) = pending.pop_front() {
            let value = objective(&t.params);
            let outcome = Outcome {
                status: if value.is_some() { Status::Completed } else { Status::Failed },
                value,
                metrics: value.map(|v| vec![(study.objective.clone(), v)]).unwrap_or_default(),
                curve: Vec::new(),
                trial: t.clone(),
            };
            strategy.observe(&[outcome])?;
            records.push(Record { params: t.params, value });
        }
    }
    Ok(records)
}

/// Best value of a run (in the study's direction), `None` when every trial failed.
pub fn best(records: &[Record], direction: Direction) -> Option<f64> {
    let vals = records.iter().filter_map(|r| r.value);
    match direction {
        Direction::Minimize => vals.fold(None, |a: Option<f64>, v| Some(a.map_or(v, |a| a.min(v)))),
        Direction::Maximize => vals.fold(None, |a: Option<f64>, v| Some(a.map_or(v, |a| a.max(v)))),
    }
}
