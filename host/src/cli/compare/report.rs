//! The comparison's numbers and files: per-strategy summaries, the table (stdout and
//! `summary.md`), `summary.json`, and every trial as `trials.csv` and `trials.json`.

use std::fmt::Write as _;
use std::path::Path;

use anyhow::Context;
use serde::Serialize;

use super::stats::{self, REGRET_FLOOR};
use super::{Comparison, Metric};
use alcf_host::config::Direction;
use alcf_host::space::Assignment;

/// A run of one strategy that failed (it is left out of the statistics).
#[derive(Debug, Clone, Serialize)]
pub struct Failure {
    pub repeat: u32,
    pub seed: u64,
    pub error: String,
}

/// One row of the table.
#[derive(Debug, Clone, Serialize)]
pub struct StrategySummary {
    pub name: String,
    pub path: String,
    pub sha256: String,
    /// Runs that finished without a plugin failure, and those that failed.
    pub runs: usize,
    pub failed: usize,
    pub failures: Vec<Failure>,
    /// The final regret (bench) or best value (config) of each repeat; `null` where the run failed.
    pub finals: Vec<Option<f64>>,
    pub median: Option<f64>,
    pub mean: Option<f64>,
    pub sd: Option<f64>,
    pub q25: Option<f64>,
    pub q75: Option<f64>,
    pub min: Option<f64>,
    pub max: Option<f64>,
    /// Mean over repeats of this strategy's rank among the strategies (1 = best; ties share).
    pub mean_rank: Option<f64>,
    /// Mean over runs of the normalized area under the best-so-far curve (see [`auc_definition`]).
    pub auc: Option<f64>,
    /// Mean wall time of one suggestion inside the sandbox, in milliseconds (bench only).
    pub suggest_ms: Option<f64>,
    /// Mean wall time of one observe call, in milliseconds (bench only).
    pub observe_ms: Option<f64>,
    /// Faults the sandbox contained by restarting the plugin (the runs went on).
    pub contained_faults: usize,
    /// LLM calls sent, tokens (prompt + completion) and seconds spent in them, summed over runs.
    pub llm_calls: u64,
    pub llm_tokens: u64,
    pub llm_s: f64,
    /// On a multi-objective problem: the median number of trials on a run's Pareto front.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub front: Option<f64>,
}

pub fn auc_definition(metric: &Metric) -> String {
    if let Metric::Hypervolume { .. } = metric {
        return "mean over trials t = 1..N of the hypervolume of the front of the first t trials (trials before the first completed one skipped), averaged over repeats".into();
    }
    if metric.is_regret() {
        format!(
            "mean over trials t = 1..N of log10(max(best-so-far regret at t, {REGRET_FLOOR:e})), averaged over repeats; lower is better"
        )
    } else {
        "mean over trials t = 1..N of the best-so-far objective value at t (trials before the first completed one skipped), averaged over repeats".into()
    }
}

fn final_definition(metric: &Metric) -> &'static str {
    if let Metric::Hypervolume { .. } = metric {
        return "hypervolume of the Pareto front of all the run's completed trials against the reference point (higher is better)";
    }
    if metric.is_regret() {
        "simple regret of the final best trial: f(x) of the trial with the best observed value minus the function's known minimum (f without its noise, on a noisy function)"
    } else {
        "best objective value over all trials of the study"
    }
}

/// Per-strategy statistics over the successful runs.
pub fn summarize(c: &Comparison) -> Vec<StrategySummary> {
    let n = c.strategies.len();
    let direction = c.metric.direction();
    // finals[s][r]
    let mut finals = vec![vec![None; c.repeats as usize]; n];
    for run in c.runs.iter().filter(|r| r.error.is_none()) {
        if let Some(slot) = finals[run.strategy].get_mut(run.repeat as usize) {
            *slot = run.final_metric(&c.metric);
        }
    }
    // Ranks within each repeat, among the strategies that have a result there.
    let mut rank_sum = vec![(0.0, 0usize); n];
    for r in 0..c.repeats as usize {
        let keyed: Vec<Option<f64>> =
            finals.iter().map(|row| row[r].map(|v| if direction == Direction::Maximize { -v } else { v })).collect();
        for (s, rank) in stats::ranks(&keyed).into_iter().enumerate() {
            if let Some(rank) = rank {
                rank_sum[s].0 += rank;
                rank_sum[s].1 += 1;
            }
        }
    }
    c.strategies
        .iter()
        .enumerate()
        .map(|(s, entry)| {
            let runs: Vec<_> = c.runs.iter().filter(|r| r.strategy == s).collect();
            let ok: Vec<_> = runs.iter().filter(|r| r.error.is_none()).collect();
            let vals: Vec<f64> = finals[s].iter().flatten().copied().collect();
            let aucs: Vec<f64> =
                ok.iter().filter_map(|r| stats::curve_auc(&r.curve(&c.metric), c.metric.is_regret())).collect();
            let suggestions: u32 = ok.iter().map(|r| r.suggestions).sum();
            let suggest_s: f64 = ok.iter().map(|r| r.suggest_s).sum();
            let observes: u32 = ok.iter().map(|r| r.observe_calls).sum();
            let observe_s: f64 = ok.iter().map(|r| r.observe_s).sum();
            StrategySummary {
                name: entry.name.clone(),
                path: entry.path.display().to_string(),
                sha256: entry.sha256.clone(),
                runs: ok.len(),
                failed: runs.len() - ok.len(),
                failures: runs
                    .iter()
                    .filter_map(|r| {
                        r.error.as_ref().map(|e| Failure { repeat: r.repeat, seed: r.seed, error: e.clone() })
                    })
                    .collect(),
                finals: finals[s].clone(),
                median: stats::median(&vals),
                mean: stats::mean(&vals),
                sd: stats::sd(&vals),
                q25: stats::quantile(&vals, 0.25),
                q75: stats::quantile(&vals, 0.75),
                min: vals.iter().copied().reduce(f64::min),
                max: vals.iter().copied().reduce(f64::max),
                mean_rank: (rank_sum[s].1 > 0).then(|| rank_sum[s].0 / rank_sum[s].1 as f64),
                auc: stats::mean(&aucs),
                suggest_ms: (suggestions > 0).then(|| suggest_s / f64::from(suggestions) * 1e3),
                observe_ms: (observes > 0).then(|| observe_s / f64::from(observes) * 1e3),
                contained_faults: runs.iter().map(|r| r.warnings.len()).sum(),
                llm_calls: runs.iter().map(|r| r.llm.calls).sum(),
                llm_tokens: runs.iter().map(|r| r.llm.prompt_tokens + r.llm.completion_tokens).sum(),
                llm_s: runs.iter().map(|r| r.llm.seconds).sum(),
                front: stats::median(&ok.iter().filter_map(|r| r.front_size.map(|n| n as f64)).collect::<Vec<_>>()),
            }
        })
        .collect()
}

fn num(x: Option<f64>) -> String {
    x.map_or_else(|| "-".into(), Assignment::format_float)
}

/// Time in ms with a sensible number of digits.
fn ms(x: Option<f64>) -> String {
    match x {
        None => "-".into(),
        Some(v) if v >= 100.0 => format!("{v:.0}"),
        Some(v) if v >= 1.0 => format!("{v:.2}"),
        Some(v) => format!("{v:.3}"),
    }
}

/// The summary table as Markdown with padded columns, readable as plain text too.
pub fn text_table(c: &Comparison, rows: &[StrategySummary]) -> String {
    let m = c.metric.label();
    let auc_head = if c.metric.is_regret() { "AUC (log10 regret)".to_string() } else { format!("AUC ({m})") };
    let header = vec![
        "strategy".to_string(),
        "runs".into(),
        format!("median {m}"),
        format!("mean ± sd {m}"),
        "mean rank".into(),
        auc_head,
        "suggest ms".into(),
    ];
    // LLM columns only when some strategy used the LLM: most comparisons have none.
    let llm = rows.iter().any(|r| r.llm_calls > 0);
    let fronts = matches!(c.metric, Metric::Hypervolume { .. });
    let mut header = header;
    if fronts {
        header.push("median front".into());
    }
    if llm {
        header.extend(["LLM calls".to_string(), "LLM tokens".into(), "LLM s".into()]);
    }
    let mut table: Vec<Vec<String>> = vec![header];
    for r in rows {
        let runs = if r.failed > 0 {
            format!("{}/{} ({} failed)", r.runs, r.runs + r.failed, r.failed)
        } else {
            format!("{}", r.runs)
        };
        table.push(vec![
            r.name.clone(),
            runs,
            num(r.median),
            match (r.mean, r.sd) {
                (Some(m), Some(s)) => format!("{} ± {}", Assignment::format_float(m), Assignment::format_float(s)),
                _ => "-".into(),
            },
            r.mean_rank.map_or("-".into(), |x| format!("{x:.2}")),
            r.auc.map_or("-".into(), |x| format!("{x:.3}")),
            ms(r.suggest_ms),
        ]);
        if fronts {
            table.last_mut().expect("just pushed").push(num(r.front));
        }
        if llm {
            let row = table.last_mut().expect("just pushed");
            row.extend([r.llm_calls.to_string(), r.llm_tokens.to_string(), format!("{:.1}", r.llm_s)]);
        }
    }
    let widths: Vec<usize> =
        (0..table[0].len()).map(|i| table.iter().map(|row| row[i].chars().count()).max().unwrap_or(0)).collect();
    let mut out = String::new();
    let line = |row: &[String], out: &mut String| {
        out.push('|');
        for (i, cell) in row.iter().enumerate() {
            let pad = widths[i] - cell.chars().count();
            // Text left, numbers right.
            if i == 0 {
                let _ = write!(out, " {cell}{} |", " ".repeat(pad));
            } else {
                let _ = write!(out, " {}{cell} |", " ".repeat(pad));
            }
        }
        out.push('\n');
    };
    line(&table[0], &mut out);
    out.push('|');
    for (i, w) in widths.iter().enumerate() {
        let _ = write!(out, "{}{}|", if i == 0 { ":" } else { "-" }, "-".repeat(*w) + if i == 0 { "-" } else { ":" });
    }
    out.push('\n');
    for row in &table[1..] {
        line(row, &mut out);
    }
    out
}

pub use alcf_host::machine::machine;

fn markdown(c: &Comparison, rows: &[StrategySummary]) -> String {
    let mut md = String::new();
    let m = c.metric.label();
    let _ = writeln!(md, "# Strategy comparison: {}\n", c.objective);
    let _ = writeln!(
        md,
        "{} strategies × {} repeats × {} trials, parallel {}, seeds {}..{} (repeat r uses seed {} + r for every strategy); {:.1} s on {} worker(s).\n",
        c.strategies.len(),
        c.repeats,
        c.trials,
        c.parallel,
        c.seed,
        c.seed + u64::from(c.repeats) - 1,
        c.seed,
        c.elapsed_s,
        c.jobs
    );
    match &c.metric {
        Metric::Regret { optimum: Some(optimum) } => {
            let _ = writeln!(md, "Known optimum: {optimum}.\n");
        }
        Metric::Regret { optimum: None } => {
            let _ = writeln!(
                md,
                "A family of instances: repeat r runs instance {} + r (its seed), the same for every strategy; regret is against each instance's own optimum.\n",
                c.seed
            );
        }
        Metric::Hypervolume { objectives, reference, front } => {
            let r: Vec<String> = reference.iter().map(|v| Assignment::format_float(*v)).collect();
            let _ = writeln!(
                md,
                "A multi-objective problem: {} minimized. Each run is scored by the hypervolume of the Pareto front of its completed trials against the reference point ({}) (the true front's is {}); **front** is the median number of trials on a run's front.\n",
                objectives.join(" and "),
                r.join(", "),
                Assignment::format_float(*front)
            );
        }
        Metric::Best { .. } => {}
    }
    if c.interrupted {
        let _ = writeln!(md, "**Interrupted**: only the runs that finished are included.\n");
    }
    md.push_str(&text_table(c, rows));
    let _ = writeln!(md);
    let _ = writeln!(md, "- **{m}**: {}.", final_definition(&c.metric));
    let _ = writeln!(md, "- **median / mean ± sd**: over repeats (sample sd); failed runs are left out.");
    let _ = writeln!(
        md,
        "- **mean rank**: within each repeat (same seed), strategies ranked by final {m} (1 = best, ties share), averaged over repeats; a failed run is not ranked."
    );
    let _ = writeln!(md, "- **AUC**: {}.", auc_definition(&c.metric));
    let _ = writeln!(
        md,
        "- **suggest ms**: host-measured wall time of `suggest` calls inside the sandbox, divided by the suggestions they returned (instantiating the plugin is not counted){}.",
        if c.metric.is_regret() { "" } else { "; not measured with --config" }
    );
    if rows.iter().any(|r| r.llm_calls > 0) {
        let _ = writeln!(
            md,
            "- **LLM calls / tokens / s**: calls sent to the LLM service (replayed answers not counted), prompt + completion tokens and seconds spent in those calls, summed over repeats (from each study's llm_call log; `alcf-host study llm-log STUDY` lists them)."
        );
    }
    let failures: Vec<_> = rows.iter().flat_map(|r| r.failures.iter().map(move |f| (&r.name, f))).collect();
    if !failures.is_empty() {
        let _ = writeln!(md, "\n## Failed runs\n");
        for (name, f) in failures {
            let _ = writeln!(md, "- {name}, repeat {} (seed {}): {}", f.repeat, f.seed, f.error.replace('\n', " "));
        }
    }
    let faults: usize = rows.iter().map(|r| r.contained_faults).sum();
    if faults > 0 {
        let _ = writeln!(
            md,
            "\n{faults} plugin fault(s) were contained by restarting the plugin; see summary.json and compare.log."
        );
    }
    let _ = writeln!(md, "\n## Best-so-far curves\n");
    let _ = writeln!(
        md,
        "Median over repeats with the interquartile band{}.\n\n![best-so-far curves](curves.png)\n",
        if c.metric.is_regret() { ", log-scale regret" } else { "" }
    );
    let _ = writeln!(md, "## Strategies\n");
    for r in rows {
        let _ = writeln!(md, "- {}: {} (sha256 {})", r.name, r.path, &r.sha256[..r.sha256.len().min(16)]);
    }
    let _ = writeln!(md, "\nFiles: summary.json, trials.csv, trials.json, curves.png, curves.svg.");
    md
}

fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) { format!("\"{}\"", s.replace('"', "\"\"")) } else { s.to_string() }
}

fn opt(x: Option<f64>) -> String {
    x.map_or_else(String::new, |v| format!("{v}"))
}

fn trials_csv(c: &Comparison) -> String {
    // One column per parameter, named after it (prefixed where it would clash with a fixed column).
    const FIXED: [&str; 10] =
        ["strategy", "repeat", "seed", "trial", "id", "value", "best", "regret", "suggest_ms", "run_failed"];
    let names: Vec<String> = c
        .runs
        .iter()
        .flat_map(|r| r.trials.first())
        .map(|t| t.params.keys().cloned().collect())
        .next()
        .unwrap_or_default();
    let mut out = String::new();
    let mut header: Vec<String> = FIXED[..5].iter().map(|s| s.to_string()).collect();
    header.extend(names.iter().map(|n| if FIXED.contains(&n.as_str()) { format!("param.{n}") } else { n.clone() }));
    header.extend(FIXED[5..].iter().map(|s| s.to_string()));
    out.push_str(&header.iter().map(|h| csv_field(h)).collect::<Vec<_>>().join(","));
    out.push('\n');
    for run in &c.runs {
        let strategy = &c.strategies[run.strategy].name;
        for t in &run.trials {
            let mut row = vec![
                csv_field(strategy),
                run.repeat.to_string(),
                run.seed.to_string(),
                t.trial.to_string(),
                t.id.to_string(),
            ];
            for n in &names {
                row.push(match t.params.get(n) {
                    Some(serde_json::Value::String(s)) => csv_field(s),
                    Some(v) => csv_field(&v.to_string()),
                    None => String::new(),
                });
            }
            row.push(opt(t.value));
            row.push(opt(t.best));
            row.push(opt(t.regret));
            row.push(opt(t.suggest_s.map(|s| s * 1e3)));
            row.push(run.error.is_some().to_string());
            out.push_str(&row.join(","));
            out.push('\n');
        }
    }
    out
}

fn trials_json(c: &Comparison) -> serde_json::Value {
    let rows: Vec<serde_json::Value> = c
        .runs
        .iter()
        .flat_map(|run| {
            let strategy = &c.strategies[run.strategy].name;
            run.trials.iter().map(move |t| {
                serde_json::json!({
                    "strategy": strategy, "repeat": run.repeat, "seed": run.seed, "trial": t.trial, "id": t.id,
                    "params": t.params, "value": t.value, "true_value": t.true_value, "best": t.best, "regret": t.regret,
                    "suggest_ms": t.suggest_s.map(|s| s * 1e3), "run_failed": run.error.is_some(),
                })
            })
        })
        .collect();
    serde_json::Value::Array(rows)
}

pub fn summary_json(c: &Comparison, rows: &[StrategySummary]) -> serde_json::Value {
    let runs: Vec<serde_json::Value> = c
        .runs
        .iter()
        .map(|r| {
            serde_json::json!({
                "strategy": c.strategies[r.strategy].name, "repeat": r.repeat, "seed": r.seed,
                "problem": r.problem, "optimum": r.optimum,
                "trials": r.trials.len(), "final": r.final_metric(&c.metric),
                "suggestions": r.suggestions, "suggest_s": r.suggest_s, "observe_calls": r.observe_calls,
                "observe_s": r.observe_s, "elapsed_s": r.elapsed_s, "error": r.error, "contained_faults": r.warnings,
                "llm_calls": r.llm.calls, "llm_replayed": r.llm.replayed, "llm_failed": r.llm.failed,
                "llm_prompt_tokens": r.llm.prompt_tokens, "llm_completion_tokens": r.llm.completion_tokens,
                "llm_s": r.llm.seconds,
            })
        })
        .collect();
    serde_json::json!({
        "objective": c.objective,
        "metric": c.metric,
        "trials": c.trials,
        "repeats": c.repeats,
        "parallel": c.parallel,
        "seed": c.seed,
        "jobs": c.jobs,
        "elapsed_s": c.elapsed_s,
        "interrupted": c.interrupted,
        "machine": machine(),
        "definitions": {
            "final": final_definition(&c.metric),
            "mean_rank": "rank among strategies within a repeat by final value (1 = best, ties share the mean rank), averaged over repeats; failed runs are not ranked",
            "auc": auc_definition(&c.metric),
            "suggest_ms": "wall time of suggest calls inside the sandbox per suggestion returned, in ms",
        },
        "strategies": rows,
        "runs": runs,
    })
}

fn write(path: &Path, text: &str) -> anyhow::Result<()> {
    std::fs::write(path, text).with_context(|| format!("cannot write {}", path.display()))
}

/// Writes summary.md, summary.json, trials.csv and trials.json into `dir`.
pub fn write_all(c: &Comparison, rows: &[StrategySummary], dir: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    write(&dir.join("summary.md"), &markdown(c, rows))?;
    write(&dir.join("summary.json"), &(serde_json::to_string_pretty(&summary_json(c, rows))? + "\n"))?;
    write(&dir.join("trials.csv"), &trials_csv(c))?;
    write(&dir.join("trials.json"), &(serde_json::to_string(&trials_json(c))? + "\n"))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::compare::{Finished, RunResult, StrategyEntry, push_trial};

    fn comparison(values: &[&[f64]]) -> Comparison {
        // values[s]: final value of strategy s per repeat (a one-trial run each); NaN = failed.
        let metric = Metric::Regret { optimum: Some(0.0) };
        let mut runs = Vec::new();
        for (s, vals) in values.iter().enumerate() {
            for (r, v) in vals.iter().enumerate() {
                let mut run = RunResult::new(s, r as u32, r as u64);
                run.optimum = Some(0.0);
                let mut params = serde_json::Map::new();
                params.insert("x".into(), serde_json::json!(0.5));
                let t =
                    Finished { id: 1, params, value: Some(*v), true_value: None, values: None, suggest_s: Some(0.002) };
                push_trial(&mut run, &metric, t);
                run.suggestions = 1;
                run.suggest_s = 0.002;
                if v.is_nan() {
                    run.error = Some("plugin `p` failed in suggest: boom, \"quoted\"".into());
                }
                runs.push(run);
            }
        }
        Comparison {
            objective: "bench:test".into(),
            metric,
            trials: 1,
            repeats: values[0].len() as u32,
            parallel: 1,
            seed: 0,
            jobs: 1,
            strategies: (0..values.len())
                .map(|s| StrategyEntry {
                    name: format!("s{s}"),
                    path: format!("s{s}.wasm").into(),
                    sha256: "ab".repeat(32),
                    options: None,
                })
                .collect(),
            runs,
            elapsed_s: 0.1,
            interrupted: false,
        }
    }

    #[test]
    fn ranks_medians_and_failures() {
        let c = comparison(&[&[1.0, 2.0, 3.0], &[2.0, 2.0, f64::NAN]]);
        let rows = summarize(&c);
        assert_eq!(rows[0].median, Some(2.0));
        assert_eq!(rows[0].runs, 3);
        // Repeat 0: s0 first; repeat 1: tie (1.5 each); repeat 2: s1 failed, s0 alone is first.
        assert_eq!(rows[0].mean_rank, Some((1.0 + 1.5 + 1.0) / 3.0));
        assert_eq!(rows[1].mean_rank, Some((2.0 + 1.5) / 2.0));
        assert_eq!((rows[1].runs, rows[1].failed), (2, 1));
        assert_eq!(rows[1].finals, [Some(2.0), Some(2.0), None]);
        assert_eq!(rows[1].failures[0].repeat, 2);
        assert!((rows[0].suggest_ms.unwrap() - 2.0).abs() < 1e-9);
        // AUC of one-point curves: mean of log10(final).
        let expect = (1f64.log10() + 2f64.log10() + 3f64.log10()) / 3.0;
        assert!((rows[0].auc.unwrap() - expect).abs() < 1e-12);

        let table = text_table(&c, &rows);
        assert_eq!(table.lines().count(), 4, "{table}");
        assert!(table.contains("2/3 (1 failed)"), "{table}");
        let md = markdown(&c, &rows);
        assert!(md.contains("## Failed runs") && md.contains("s1, repeat 2 (seed 2)"), "{md}");
    }

    #[test]
    fn machine_files_round_trip_floats_bit_for_bit() {
        // People copy best parameters and values from these files: each float must parse back to
        // the very same f64 (Display and serde_json print the shortest such text; `{:.6}` would not).
        const TRICKY: [f64; 4] = [0.1 + 0.2, 1e-300, 123456.789e10, 4.055474706295447e-187];
        let mut c = comparison(&[&TRICKY[..]]);
        for (run, x) in c.runs.iter_mut().zip(TRICKY) {
            run.trials[0].params.insert("x".into(), serde_json::json!(x));
        }
        let same =
            |got: f64, want: f64, what: &str| assert_eq!(got.to_bits(), want.to_bits(), "{what}: {got:e} vs {want:e}");

        let csv = trials_csv(&c);
        let mut lines = csv.lines();
        let header: Vec<&str> = lines.next().unwrap().split(',').collect();
        let col = |name: &str| header.iter().position(|h| *h == name).unwrap();
        let mut rows_seen = 0;
        for (line, x) in lines.zip(TRICKY) {
            let cells: Vec<&str> = line.split(',').collect();
            for name in ["x", "value", "best", "regret"] {
                same(cells[col(name)].parse().unwrap(), x, name);
            }
            rows_seen += 1;
        }
        assert_eq!(rows_seen, TRICKY.len());

        let text = serde_json::to_string(&trials_json(&c)).unwrap();
        let json: serde_json::Value = serde_json::from_str(&text).unwrap();
        for (t, x) in json.as_array().unwrap().iter().zip(TRICKY) {
            for name in ["value", "best", "regret"] {
                same(t[name].as_f64().unwrap(), x, name);
            }
            same(t["params"]["x"].as_f64().unwrap(), x, "params.x");
        }

        let rows = summarize(&c);
        let text = serde_json::to_string_pretty(&summary_json(&c, &rows)).unwrap();
        let summary: serde_json::Value = serde_json::from_str(&text).unwrap();
        let finals = summary["strategies"][0]["finals"].as_array().unwrap();
        assert_eq!(finals.len(), TRICKY.len());
        for (got, x) in finals.iter().zip(TRICKY) {
            same(got.as_f64().unwrap(), x, "finals");
        }
        same(summary["strategies"][0]["min"].as_f64().unwrap(), 1e-300, "min");
        for (run, x) in summary["runs"].as_array().unwrap().iter().zip(TRICKY) {
            same(run["final"].as_f64().unwrap(), x, "runs.final");
        }
    }

    #[test]
    fn csv_has_a_row_per_trial_and_quotes() {
        let c = comparison(&[&[1.0, 2.0], &[3.0, f64::NAN]]);
        let csv = trials_csv(&c);
        let lines: Vec<&str> = csv.lines().collect();
        assert_eq!(lines[0], "strategy,repeat,seed,trial,id,x,value,best,regret,suggest_ms,run_failed");
        assert_eq!(lines.len(), 5);
        assert_eq!(lines[1], "s0,0,0,1,1,0.5,1,1,1,2,false");
        assert!(lines[4].ends_with(",true"));
        assert_eq!(csv_field("a,\"b\""), "\"a,\"\"b\"\"\"");
        let json = trials_json(&c);
        assert_eq!(json.as_array().unwrap().len(), 4);
    }
}
