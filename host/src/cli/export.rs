//! `alcf-host study export` and `study best`: a study's trials as one flat table (CSV or JSON
//! records, each loads into pandas with `read_csv` / `read_json`), and the best parameters ready
//! to paste (JSON for `params.json` or `study enqueue`, or command-line flags for the trainers).
//!
//! The table has one row per trial and these columns, in order: `id`, `state`, `attempt`,
//! `source`, `value` (the objective), `created_at`, `started_at`, `finished_at` (Unix seconds),
//! `duration_s`, `failure`, one `param.NAME` per parameter of the space (in its order), one
//! `metric.NAME` per metric any trial reported (sorted), `epochs` (the curve's length) and `curve`
//! (the per-epoch metrics: a JSON array; in CSV, its JSON text).

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, anyhow, bail};
use serde_json::{Map, Value as Json};

use alcf_host::config::Direction;
use alcf_host::study::{StudyDb, TrialRow};

use crate::cli::study::{best_trial, open_study};

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum ExportFormat {
    Csv,
    Json,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum BestFormat {
    /// The parameters as a JSON object (params.json, `study enqueue --params`).
    Json,
    /// `--name value` flags (`_` in a name becomes `-`), shell-quoted: alcf-trainer's and
    /// alcf_train.py's command lines.
    Flags,
}

/// `alcf-host study export NAME --format csv|json [--out FILE]`.
pub fn study_export(root: &Path, name: &str, format: ExportFormat, out: Option<&PathBuf>) -> anyhow::Result<()> {
    let (_, db) = open_study(root, name)?;
    let text = export_text(&db, format)?;
    match out {
        Some(path) => {
            std::fs::write(path, text).with_context(|| format!("cannot write {}", path.display()))?;
            crate::cli::console(&format!("wrote {} trials of study {name} to {}", db.trials()?.len(), path.display()));
            Ok(())
        }
        None => {
            std::io::stdout().lock().write_all(text.as_bytes())?;
            Ok(())
        }
    }
}

/// `alcf-host study best NAME [--format json|flags]`.
pub fn study_best(root: &Path, name: &str, format: BestFormat) -> anyhow::Result<()> {
    let (_, db) = open_study(root, name)?;
    let text = best_text(&db, name, format)?;
    writeln!(std::io::stdout().lock(), "{text}")?;
    Ok(())
}

pub(crate) fn best_text(db: &StudyDb, name: &str, format: BestFormat) -> anyhow::Result<String> {
    let meta = db.meta()?;
    let trials = db.trials()?;
    let direction = Direction::parse(&meta.direction).unwrap_or_default();
    let Some(best) = best_trial(&trials, direction) else {
        bail!("study {name} has no completed trial yet: `alcf-host study show {name}` lists its trials and failures");
    };
    crate::cli::console(&format!(
        "best of study {name}: trial #{} with {} = {}",
        best.id,
        meta.objective,
        best.value.map_or("?".into(), alcf_host::space::Assignment::format_float)
    ));
    Ok(match format {
        BestFormat::Json => serde_json::to_string(&best.params)?,
        BestFormat::Flags => {
            let mut words = Vec::new();
            for (k, v) in ordered_params(&meta.space, &best.params) {
                words.push(format!("--{}", k.replace('_', "-")));
                let value = match &v {
                    Json::String(s) => s.clone(),
                    other => other.to_string(),
                };
                words.push(
                    alcf_host::executor::pbs::quote::quote(&value, &format!("parameter {k}"))
                        .map_err(|e| anyhow!("{e}"))?,
                );
            }
            words.join(" ")
        }
    })
}

/// The space's parameter names in their order (the stored space is a JSON array of `{name, …}`).
fn param_names(space: &Json) -> Vec<String> {
    space
        .as_array()
        .map(|a| a.iter().filter_map(|p| p["name"].as_str().map(str::to_string)).collect())
        .unwrap_or_default()
}

/// `params` in the space's order (then any others, sorted).
fn ordered_params(space: &Json, params: &Map<String, Json>) -> Vec<(String, Json)> {
    let mut out: Vec<(String, Json)> =
        param_names(space).into_iter().filter_map(|n| params.get(&n).map(|v| (n, v.clone()))).collect();
    for (k, v) in params {
        if !out.iter().any(|(n, _)| n == k) {
            out.push((k.clone(), v.clone()));
        }
    }
    out
}

/// The table's header and rows.
fn table(db: &StudyDb) -> anyhow::Result<(Vec<String>, Vec<Vec<Json>>)> {
    let meta = db.meta()?;
    let trials = db.trials()?;
    let params = param_names(&meta.space);
    let mut metrics: Vec<String> = trials.iter().flat_map(|t| t.metrics.keys().cloned()).collect();
    metrics.sort();
    metrics.dedup();
    let mut header: Vec<String> = [
        "id",
        "state",
        "attempt",
        "source",
        "value",
        "created_at",
        "started_at",
        "finished_at",
        "duration_s",
        "failure",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    header.extend(params.iter().map(|p| format!("param.{p}")));
    header.extend(metrics.iter().map(|m| format!("metric.{m}")));
    header.extend(["epochs".to_string(), "curve".to_string()]);
    let num = |x: Option<f64>| x.filter(|v| v.is_finite()).map_or(Json::Null, Json::from);
    let rows = trials
        .iter()
        .map(|t: &TrialRow| {
            let mut row = vec![
                Json::from(t.id),
                Json::from(t.state.as_str()),
                Json::from(t.attempt),
                t.source.clone().map_or(Json::Null, Json::from),
                num(t.value),
                num(Some(t.created_at)),
                num(t.started_at),
                num(t.finished_at),
                num(t.started_at.zip(t.finished_at).map(|(a, b)| b - a)),
                t.failure.clone().map_or(Json::Null, Json::from),
            ];
            row.extend(params.iter().map(|p| t.params.get(p).cloned().unwrap_or(Json::Null)));
            row.extend(metrics.iter().map(|m| num(t.metrics.get(m).copied())));
            row.push(Json::from(t.curve.len()));
            row.push(serde_json::to_value(&t.curve).unwrap_or(Json::Null));
            row
        })
        .collect();
    Ok((header, rows))
}

pub(crate) fn export_text(db: &StudyDb, format: ExportFormat) -> anyhow::Result<String> {
    let (header, rows) = table(db)?;
    Ok(match format {
        ExportFormat::Json => {
            let records: Vec<Map<String, Json>> =
                rows.into_iter().map(|r| header.iter().cloned().zip(r).collect()).collect();
            let mut s = serde_json::to_string_pretty(&records)?;
            s.push('\n');
            s
        }
        ExportFormat::Csv => {
            let mut s = String::new();
            s.push_str(&header.iter().map(|h| csv_field(h)).collect::<Vec<_>>().join(","));
            s.push('\n');
            for r in rows {
                let cells: Vec<String> = r
                    .iter()
                    .map(|v| match v {
                        Json::Null => String::new(),
                        Json::String(t) => csv_field(t),
                        Json::Bool(b) => b.to_string(),
                        Json::Number(n) => n.to_string(),
                        other => csv_field(&other.to_string()),
                    })
                    .collect();
                s.push_str(&cells.join(","));
                s.push('\n');
            }
            s
        }
    })
}

/// RFC 4180: a field with a comma, a quote, a line break or outer spaces is quoted, its quotes doubled.
fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) || s.starts_with(' ') || s.ends_with(' ') {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_fields_are_quoted_only_when_needed() {
        assert_eq!(csv_field("plain"), "plain");
        assert_eq!(csv_field("a,b"), "\"a,b\"");
        assert_eq!(csv_field("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(csv_field("two\nlines"), "\"two\nlines\"");
    }
}
