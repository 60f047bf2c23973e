//! `alcf-host study list` and `study show`.

use std::path::{Path, PathBuf};

use anyhow::Context;

use alcf_host::config::Direction;
use alcf_host::study::{StudyDb, TrialRow, TrialState};

use crate::cli::check_study_name;
use crate::out;

/// One line per study under `root`.
pub fn study_list(root: &Path, json: bool) -> anyhow::Result<()> {
    let mut rows = Vec::new();
    let entries = match std::fs::read_dir(root) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            if json {
                out!("[]");
            } else {
                eprintln!("no studies under {} (start one with `alcf-host run`)", root.display());
            }
            return Ok(());
        }
        Err(e) => return Err(e).with_context(|| format!("cannot list {}", root.display())),
    };
    let mut dirs: Vec<PathBuf> = entries.filter_map(|e| e.ok()).map(|e| e.path()).collect();
    dirs.sort();
    for dir in dirs {
        if !dir.join(alcf_host::study::DB_FILE).exists() {
            continue;
        }
        let db = match StudyDb::open(&dir) {
            Ok(db) => db,
            Err(e) => {
                eprintln!("warning: {e}");
                continue;
            }
        };
        let meta = db.meta()?;
        let trials = db.trials()?;
        let direction = Direction::parse(&meta.direction).unwrap_or_default();
        let best = best_trial(&trials, direction).and_then(|b| b.value);
        rows.push((meta, trials, best));
    }
    if json {
        let v: Vec<_> = rows
            .iter()
            .map(|(m, t, b)| {
                serde_json::json!({
                    "name": m.name, "objective": m.objective, "direction": m.direction, "executor": m.executor,
                    "plugin": m.plugin, "trials": t.len(),
                    "completed": t.iter().filter(|t| t.state == TrialState::Completed).count(),
                    "failed": t.iter().filter(|t| t.state == TrialState::Failed).count(),
                    "best": b,
                })
            })
            .collect();
        out!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(());
    }
    out!(
        "{:<28} {:>7} {:>9} {:>7} {:>14}  {:<18} plugin",
        "study",
        "trials",
        "completed",
        "failed",
        "best",
        "objective"
    );
    for (m, t, b) in &rows {
        out!(
            "{:<28} {:>7} {:>9} {:>7} {:>14}  {:<18} {}",
            m.name,
            t.len(),
            t.iter().filter(|t| t.state == TrialState::Completed).count(),
            t.iter().filter(|t| t.state == TrialState::Failed).count(),
            b.map_or("-".into(), alcf_host::space::Assignment::format_float),
            format!("{} ({})", m.objective, &m.direction[..3]),
            m.plugin
        );
    }
    Ok(())
}

pub fn best_trial(trials: &[TrialRow], direction: Direction) -> Option<&TrialRow> {
    trials.iter().filter(|t| t.state == TrialState::Completed && t.value.is_some()).fold(
        None,
        |best: Option<&TrialRow>, t| match best {
            Some(b) if !direction.better(t.value.unwrap_or(f64::NAN), b.value.unwrap_or(f64::NAN)) => Some(b),
            _ => Some(t),
        },
    )
}

/// `alcf-host study show NAME`: the best trial and the trial table.
pub fn study_show(root: &Path, name: &str, json: bool) -> anyhow::Result<()> {
    check_study_name(name)?;
    let dir = root.join(name);
    let db = StudyDb::open(&dir)?;
    let meta = db.meta()?;
    let trials = db.trials()?;
    let direction = Direction::parse(&meta.direction).unwrap_or_default();
    let best = best_trial(&trials, direction);
    if json {
        let trial_json = |t: &TrialRow| {
            serde_json::json!({
                "id": t.id, "state": t.state.as_str(), "attempt": t.attempt, "job_id": t.job_id,
                "params": t.params, "value": t.value, "metrics": t.metrics,
                "created_at": t.created_at, "started_at": t.started_at, "finished_at": t.finished_at,
                "failure": t.failure, "log_tail": t.log_tail,
            })
        };
        let v = serde_json::json!({
            "name": meta.name, "objective": meta.objective, "direction": meta.direction, "seed": meta.seed,
            "executor": meta.executor, "plugin": meta.plugin, "plugin_sha256": meta.plugin_sha256,
            "space": meta.space, "created_at": meta.created_at,
            "best": best.map(trial_json),
            "trials": trials.iter().map(trial_json).collect::<Vec<_>>(),
            "events": db.events()?.iter().map(|e| serde_json::json!({"at": e.at, "kind": e.kind, "trial": e.trial, "message": e.message})).collect::<Vec<_>>(),
        });
        out!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(());
    }
    let count = |s: TrialState| trials.iter().filter(|t| t.state == s).count();
    out!("study:      {} ({})", meta.name, dir.display());
    out!("objective:  {} ({})", meta.objective, meta.direction);
    out!("strategy:   {}", meta.plugin);
    out!("executor:   {}", meta.executor);
    out!(
        "trials:     {} — {} completed, {} failed, {} running, {} pending",
        trials.len(),
        count(TrialState::Completed),
        count(TrialState::Failed),
        count(TrialState::Running),
        count(TrialState::Pending)
    );
    match best {
        Some(b) => out!(
            "best:       #{} {} = {}  {}",
            b.id,
            meta.objective,
            b.value.unwrap_or(f64::NAN),
            alcf_host::trial::describe_params(&b.params)
        ),
        None => out!("best:       (no completed trial yet)"),
    }
    out!("");
    out!("{:>6}  {:<10} {:>14} {:>9}  params", "trial", "state", meta.objective, "time (s)");
    for t in &trials {
        let secs = match (t.started_at, t.finished_at) {
            (Some(a), Some(b)) => format!("{:.1}", b - a),
            _ => "-".into(),
        };
        out!(
            "{:>6}  {:<10} {:>14} {:>9}  {}",
            t.id,
            t.state.as_str(),
            t.value.map_or("-".into(), alcf_host::space::Assignment::format_float),
            secs,
            alcf_host::trial::describe_params(&t.params)
        );
        if let Some(f) = &t.failure {
            out!("{:>6}  └ {}", "", f);
        }
    }
    Ok(())
}
