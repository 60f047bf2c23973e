//! `alcf-host study list`, `show`, `enqueue`, `unlock` and `llm-log`.
//!
//! Machine output (`--json`) prints floats as serde_json does: the shortest text that parses back
//! to the same f64, so best parameters can be copied from it. Tables round to four digits for
//! reading.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, anyhow, bail};
use serde_json::Value as Json;

use alcf_host::config::Direction;
use alcf_host::space::{Assignment, SearchSpace};
use alcf_host::study::{Enqueued, Holder, StudyDb, StudyError, StudyLock, TrialRow, TrialState};
use alcf_host::trial::describe_params;

use crate::cli::check_study_name;

/// Log lines shown under a failed trial without `--log`.
const LOG_LINES: usize = 10;

/// One line per study under `root`.
pub fn study_list(root: &Path, json: bool) -> anyhow::Result<()> {
    list_to(&mut std::io::stdout().lock(), root, json)
}

/// `alcf-host study show NAME`: the best trial, the trial table, failures with their log tails.
/// With `top`, only the best `top` completed trials, best first.
pub fn study_show(root: &Path, name: &str, json: bool, log: bool, top: Option<usize>) -> anyhow::Result<()> {
    show_to(&mut std::io::stdout().lock(), root, name, json, log, top)
}

/// `alcf-host study delete NAME`: removes the study's directory, after asking (unless `yes`).
/// Refused while a host runs it.
pub fn study_delete(root: &Path, name: &str, yes: bool) -> anyhow::Result<()> {
    let (dir, db) = open_study(root, name)?;
    let trials = db.trials()?.len();
    drop(db);
    if let Some(h) = StudyLock::holder_of(&dir) {
        bail!(
            "study {name} is in use by {}: stop that run first (or, if its host is gone, `alcf-host study unlock {name}`)",
            h.describe()
        );
    }
    if !yes {
        use std::io::IsTerminal;
        if !std::io::stdin().is_terminal() {
            bail!("study delete {name}: give --yes to delete without asking (stdin is not a terminal)");
        }
        eprint!("delete study {name} ({trials} trials, {})? This cannot be undone. [y/N] ", dir.display());
        let mut answer = String::new();
        std::io::stdin().read_line(&mut answer)?;
        if !matches!(answer.trim(), "y" | "Y" | "yes" | "YES" | "Yes") {
            crate::cli::console(&format!("study {name} kept"));
            return Ok(());
        }
    }
    std::fs::remove_dir_all(&dir).with_context(|| format!("cannot delete {}", dir.display()))?;
    crate::cli::console(&format!("deleted study {name} ({trials} trials) at {}", dir.display()));
    Ok(())
}

/// `alcf-host study enqueue NAME --params JSON`: a trial of the user's choosing, run before the
/// strategy's next suggestion.
pub fn study_enqueue(root: &Path, name: &str, params: &str) -> anyhow::Result<()> {
    enqueue_to(&mut std::io::stdout().lock(), root, name, params)
}

/// `alcf-host study unlock NAME`: releases the lock of a host that is gone.
pub fn study_unlock(root: &Path, name: &str) -> anyhow::Result<()> {
    unlock_to(&mut std::io::stdout().lock(), root, name)
}

/// `alcf-host study llm-log NAME`: the study's LLM audit log.
pub fn study_llm_log(root: &Path, name: &str, full: bool, json: bool) -> anyhow::Result<()> {
    llm_log_to(&mut std::io::stdout().lock(), root, name, full, json)
}

/// Names of the studies under `root` (directories with a study database), sorted.
/// The studies under `root` (directories holding a study database), sorted.
pub(crate) fn known_studies(root: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(root)
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok())
        .filter(|e| e.path().join(alcf_host::study::DB_FILE).exists())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// Opens study `name` under `root`; an unknown one is an error that lists the known ones.
pub(crate) fn open_study(root: &Path, name: &str) -> anyhow::Result<(PathBuf, StudyDb)> {
    check_study_name(name)?;
    let dir = root.join(name);
    match StudyDb::open(&dir) {
        Ok(db) => Ok((dir, db)),
        Err(e @ StudyError::NotFound(_)) => {
            let known = known_studies(root);
            if known.is_empty() {
                Err(anyhow!(
                    "{e}\nthere are no studies under {} yet; `alcf-host run --config FILE` starts one (named by its [study] name)",
                    root.display()
                ))
            } else {
                Err(anyhow!("{e}\nstudies under {}: {}", root.display(), known.join(", ")))
            }
        }
        Err(e) => Err(e.into()),
    }
}

fn count(trials: &[TrialRow], s: TrialState) -> usize {
    trials.iter().filter(|t| t.state == s).count()
}

fn list_to(w: &mut dyn Write, root: &Path, json: bool) -> anyhow::Result<()> {
    let mut rows = Vec::new();
    if let Err(e) = std::fs::read_dir(root) {
        if e.kind() == std::io::ErrorKind::NotFound {
            if json {
                writeln!(w, "[]")?;
            } else {
                eprintln!("no studies under {} (start one with `alcf-host run`)", root.display());
            }
            return Ok(());
        }
        return Err(e).with_context(|| format!("cannot list {}", root.display()));
    }
    for name in known_studies(root) {
        let db = match StudyDb::open(&root.join(&name)) {
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
        rows.push((meta, trials, best, db.queued()?.len()));
    }
    if json {
        let v: Vec<_> = rows
            .iter()
            .map(|(m, t, b, q)| {
                serde_json::json!({
                    "name": m.name, "objective": m.objective, "direction": m.direction, "executor": m.executor,
                    "plugin": m.plugin, "trials": t.len(),
                    "completed": count(t, TrialState::Completed),
                    "failed": count(t, TrialState::Failed),
                    "cancelled": count(t, TrialState::Cancelled),
                    "queued": q,
                    "best": b,
                })
            })
            .collect();
        writeln!(w, "{}", serde_json::to_string_pretty(&v)?)?;
        return Ok(());
    }
    writeln!(
        w,
        "{:<28} {:>7} {:>9} {:>7} {:>9} {:>14}  {:<18} plugin",
        "study", "trials", "completed", "failed", "cancelled", "best", "objective"
    )?;
    for (m, t, b, _) in &rows {
        writeln!(
            w,
            "{:<28} {:>7} {:>9} {:>7} {:>9} {:>14}  {:<18} {}",
            m.name,
            t.len(),
            count(t, TrialState::Completed),
            count(t, TrialState::Failed),
            count(t, TrialState::Cancelled),
            b.map_or("-".into(), Assignment::format_float),
            format!("{} ({})", m.objective, m.direction.get(..3).unwrap_or(&m.direction)),
            m.plugin
        )?;
    }
    Ok(())
}

/// The best `n` completed trials, best first (ties by id).
fn top_trials(trials: &[TrialRow], direction: Direction, n: usize) -> Vec<TrialRow> {
    let mut done: Vec<&TrialRow> =
        trials.iter().filter(|t| t.state == TrialState::Completed && t.value.is_some_and(f64::is_finite)).collect();
    done.sort_by(|a, b| {
        let (x, y) = (a.value.unwrap_or(f64::NAN), b.value.unwrap_or(f64::NAN));
        let order = x.partial_cmp(&y).unwrap_or(std::cmp::Ordering::Equal);
        let order = if direction.better(1.0, 0.0) { order.reverse() } else { order };
        order.then(a.id.cmp(&b.id))
    });
    done.into_iter().take(n).cloned().collect()
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

fn show_to(
    w: &mut dyn Write,
    root: &Path,
    name: &str,
    json: bool,
    log: bool,
    top: Option<usize>,
) -> anyhow::Result<()> {
    let (dir, db) = open_study(root, name)?;
    let meta = db.meta()?;
    let all_trials = db.trials()?;
    let queued = db.queued()?;
    let direction = Direction::parse(&meta.direction).unwrap_or_default();
    let best = best_trial(&all_trials, direction);
    let top_rows = top.map(|n| top_trials(&all_trials, direction, n));
    let trials: &[TrialRow] = top_rows.as_deref().unwrap_or(&all_trials);
    // A multi-objective study: its Pareto front and hypervolume (`value` and best are the first's).
    let objectives = alcf_host::multi::objectives_of(&db)?;
    let reference = alcf_host::multi::reference_of(&db)?;
    let front = if objectives.is_empty() {
        None
    } else {
        alcf_host::multi::front(&all_trials, &objectives, reference.as_deref())
    };
    if json {
        let trial_json = |t: &TrialRow| {
            serde_json::json!({
                "id": t.id, "state": t.state.as_str(), "attempt": t.attempt, "job_id": t.job_id,
                "params": t.params, "value": t.value, "metrics": t.metrics,
                "created_at": t.created_at, "started_at": t.started_at, "finished_at": t.finished_at,
                "failure": t.failure, "log_tail": t.log_tail, "source": t.source,
            })
        };
        let v = serde_json::json!({
            "name": meta.name, "objective": meta.objective, "direction": meta.direction, "seed": meta.seed,
            "executor": meta.executor, "plugin": meta.plugin, "plugin_sha256": meta.plugin_sha256,
            "space": meta.space, "created_at": meta.created_at,
            "durability": db.durability().pragmas(),
            "best": best.map(trial_json),
            "trials": trials.iter().map(trial_json).collect::<Vec<_>>(),
            "queued": queued.iter().map(|q| serde_json::json!({"id": q.id, "params": q.params, "source": q.source, "created_at": q.created_at})).collect::<Vec<_>>(),
            "events": db.events()?.iter().map(|e| serde_json::json!({"at": e.at, "kind": e.kind, "trial": e.trial, "message": e.message})).collect::<Vec<_>>(),
            "llm": db.llm_totals()?,
        });
        let mut v = v;
        if !objectives.is_empty() {
            v["objectives"] = serde_json::json!(
                objectives
                    .iter()
                    .map(|(m, d)| serde_json::json!({"metric": m, "direction": d.as_str()}))
                    .collect::<Vec<_>>()
            );
            v["pareto_front"] = match &front {
                Some(f) => serde_json::json!({
                    "trials": f.members.iter().map(|(id, values)| serde_json::json!({"id": id, "values": values})).collect::<Vec<_>>(),
                    "hypervolume": f.hypervolume,
                    "reference": f.reference,
                    "reference_source": match f.source { alcf_host::multi::ReferenceSource::Given => "configured", alcf_host::multi::ReferenceSource::Observed => "observed" },
                }),
                None => Json::Null,
            };
        }
        writeln!(w, "{}", serde_json::to_string_pretty(&v)?)?;
        return Ok(());
    }
    writeln!(w, "study:      {} ({})", meta.name, dir.display())?;
    if objectives.is_empty() {
        writeln!(w, "objective:  {} ({})", meta.objective, meta.direction)?;
    } else {
        let list: Vec<String> = objectives.iter().map(|(m, d)| format!("{m} ({})", d.as_str())).collect();
        writeln!(w, "objectives: {}", list.join(", "))?;
    }
    writeln!(w, "strategy:   {}", meta.plugin)?;
    writeln!(w, "executor:   {}", meta.executor)?;
    let mut parts = vec![format!("{} completed", count(&all_trials, TrialState::Completed))];
    for (state, always) in [
        (TrialState::Failed, true),
        (TrialState::Pruned, false),
        (TrialState::Cancelled, true),
        (TrialState::Running, true),
        (TrialState::Pending, true),
    ] {
        let n = count(&all_trials, state);
        if always || n > 0 {
            parts.push(format!("{n} {}", state.as_str()));
        }
    }
    writeln!(w, "trials:     {} — {}", all_trials.len(), parts.join(", "))?;
    let llm = db.llm_totals()?;
    if llm.calls + llm.replayed > 0 {
        writeln!(
            w,
            "llm:        {} calls ({} failed, {} replayed), {} + {} tokens, {:.1} s — alcf-host study llm-log {}",
            llm.calls, llm.failed, llm.replayed, llm.prompt_tokens, llm.completion_tokens, llm.seconds, meta.name
        )?;
    }
    if let Some(h) = StudyLock::holder_of(&dir) {
        writeln!(w, "in use by:  {}", h.describe())?;
    }
    match best {
        Some(b) => writeln!(
            w,
            "best:       #{} {} = {}  {}",
            b.id,
            meta.objective,
            b.value.unwrap_or(f64::NAN),
            describe_params(&b.params)
        )?,
        None => writeln!(w, "best:       (no completed trial yet)")?,
    }
    if !objectives.is_empty() {
        write_front(w, &objectives, front.as_ref(), &all_trials)?;
    }
    writeln!(w)?;
    writeln!(w, "{:>6}  {:<10} {:>14} {:>9}  params", "trial", "state", meta.objective, "time (s)")?;
    for t in trials {
        let secs = match (t.started_at, t.finished_at) {
            (Some(a), Some(b)) => format!("{:.1}", b - a),
            _ => "-".into(),
        };
        let from = t.source.as_deref().map_or(String::new(), |s| format!("  (enqueued, {s})"));
        writeln!(
            w,
            "{:>6}  {:<10} {:>14} {:>9}  {}{from}",
            t.id,
            t.state.as_str(),
            t.value.map_or("-".into(), Assignment::format_float),
            secs,
            describe_params(&t.params)
        )?;
        if let Some(f) = &t.failure {
            writeln!(w, "{:>6}  └ {}", "", f)?;
        }
        if t.state == TrialState::Failed
            && let Some(tail) = t.log_tail.as_deref().filter(|s| !s.trim().is_empty())
        {
            let lines: Vec<&str> = tail.trim_end().lines().collect();
            let skipped = if log { 0 } else { lines.len().saturating_sub(LOG_LINES) };
            if skipped > 0 {
                writeln!(w, "{:>10}│ … {skipped} earlier lines (--log shows them)", "")?;
            }
            for line in &lines[skipped..] {
                writeln!(w, "{:>10}│ {line}", "")?;
            }
        }
    }
    if !queued.is_empty() {
        writeln!(w)?;
        writeln!(w, "queued (run before the strategy's next suggestion):")?;
        for q in &queued {
            writeln!(w, "{:>6}  {:<10} {}", format!("#{}", q.id), q.source, describe_params(&q.params))?;
        }
    }
    Ok(())
}

/// The Pareto front of a multi-objective study: its size, hypervolume and reference point, then
/// one row per non-dominated trial.
fn write_front(
    w: &mut dyn Write,
    objectives: &[(String, Direction)],
    front: Option<&alcf_host::multi::Front>,
    trials: &[TrialRow],
) -> anyhow::Result<()> {
    let Some(f) = front else {
        writeln!(w, "pareto:     (no completed trial with every objective yet)")?;
        return Ok(());
    };
    let reference: Vec<String> = f.reference.iter().map(|r| Assignment::format_float(*r)).collect();
    writeln!(
        w,
        "pareto:     {} of {} completed trials on the front, hypervolume {} (reference point ({}): {})",
        f.members.len(),
        f.points,
        Assignment::format_float(f.hypervolume),
        reference.join(", "),
        f.source.describe()
    )?;
    write!(w, "{:>6}", "trial")?;
    for (m, _) in objectives {
        write!(w, "  {m:>14}")?;
    }
    writeln!(w, "  params")?;
    for (id, values) in &f.members {
        write!(w, "{id:>6}")?;
        for v in values {
            write!(w, "  {:>14}", Assignment::format_float(*v))?;
        }
        let params = trials.iter().find(|t| t.id == *id).map(|t| describe_params(&t.params)).unwrap_or_default();
        writeln!(w, "  {params}")?;
    }
    Ok(())
}

fn enqueue_to(w: &mut dyn Write, root: &Path, name: &str, params: &str) -> anyhow::Result<()> {
    let (dir, db) = open_study(root, name)?;
    // SQLite's own locking is what makes a second writer safe next to a running host; on a
    // network filesystem it cannot be trusted between clients, so the writer must be on the host.
    if db.fs().is_network()
        && let Some(h) = StudyLock::holder_of(&dir).filter(|h| h.host != Holder::this_process().host)
    {
        bail!(
            "study {name} is in use by {}, and on {} two hosts must not write the study at once; \
             run `alcf-host study enqueue` on {}",
            h.describe(),
            db.fs().describe(),
            h.host
        );
    }
    let meta = db.meta()?;
    let space = SearchSpace::from_json(&meta.space).map_err(|e| anyhow!("study {name}: its stored space: {e}"))?;
    let example = r#"e.g. --params '{"lr": 0.01, "batch": 64}'"#;
    let json: Json =
        serde_json::from_str(params).map_err(|e| anyhow!("--params is not JSON ({e}); write {example}"))?;
    let Json::Object(map) = json else {
        bail!("--params must be a JSON object of parameter values; {example}");
    };
    let assignment = space.validate_json(&map).map_err(|e| anyhow!("--params: {e}"))?;
    match db.enqueue_detailed(&assignment.to_json(&space), "cli")? {
        Enqueued::Queued(id) => writeln!(
            w,
            "queued as #{id}: it runs before the strategy's next suggestion (in the running host, or on the next `alcf-host run --resume`)"
        )?,
        Enqueued::AlreadyQueued(id) => writeln!(w, "already queued as #{id}")?,
        Enqueued::AlreadyTrial(id) => writeln!(w, "already trial #{id} of study {name}; not queued again")?,
    }
    Ok(())
}

fn unlock_to(w: &mut dyn Write, root: &Path, name: &str) -> anyhow::Result<()> {
    let (dir, db) = open_study(root, name)?;
    match StudyLock::force_unlock(&dir)? {
        Some(h) => {
            let message = format!("lock of {} released by hand", h.describe());
            db.event("unlock", None, &message)?;
            writeln!(w, "study {name}: {message}")?;
        }
        None => writeln!(w, "study {name} is not locked")?,
    }
    Ok(())
}

fn llm_log_to(w: &mut dyn Write, root: &Path, name: &str, full: bool, json: bool) -> anyhow::Result<()> {
    let (_, db) = open_study(root, name)?;
    let calls = db.llm_calls()?;
    if json {
        let parse = |t: &Option<String>| t.as_deref().and_then(|t| serde_json::from_str::<Json>(t).ok());
        let rows: Vec<Json> = calls
            .iter()
            .map(|c| {
                serde_json::json!({
                    "id": c.id, "at": c.at, "plugin": c.plugin, "model": c.model, "outcome": c.outcome.as_str(),
                    "http_status": c.http_status, "latency_s": c.latency_s, "retries": c.retries,
                    "prompt_tokens": c.prompt_tokens, "completion_tokens": c.completion_tokens,
                    "replay_of": c.replay_of, "error": c.error, "content": c.content,
                    "request": serde_json::from_str::<Json>(&c.request).unwrap_or(Json::Null),
                    "response": parse(&c.response), "attempts": parse(&c.attempts),
                })
            })
            .collect();
        writeln!(w, "{}", serde_json::to_string_pretty(&rows)?)?;
        return Ok(());
    }
    if calls.is_empty() {
        writeln!(
            w,
            "study `{name}` has made no LLM calls (a plugin calls the LLM only when strategy.allow has \"llm\")"
        )?;
        return Ok(());
    }
    let t = db.llm_totals()?;
    writeln!(
        w,
        "study `{name}`: {} LLM calls sent ({} failed), {} replayed from the log; {} prompt + {} completion tokens; {:.1} s in calls",
        t.calls, t.failed, t.replayed, t.prompt_tokens, t.completion_tokens, t.seconds
    )?;
    writeln!(
        w,
        "{:>4}  {:<19}  {:<14}  {:<28}  {:<8}  {:>4}  {:>8}  {:>7}  {:>11}",
        "id", "time (UTC)", "plugin", "model", "outcome", "http", "latency", "retries", "tokens i/o"
    )?;
    for c in &calls {
        let u = alcf_host::utc::UtcTime::from_unix(c.at as i64);
        let outcome = match c.replay_of {
            Some(of) => format!("replay:{of}"),
            None => c.outcome.as_str().to_string(),
        };
        writeln!(
            w,
            "{:>4}  {:04}-{:02}-{:02} {:02}:{:02}:{:02}  {:<14}  {:<28}  {:<8}  {:>4}  {:>7.2}s  {:>7}  {:>11}",
            c.id,
            u.year,
            u.month,
            u.day,
            u.hour,
            u.minute,
            u.second,
            cut(&c.plugin, 14),
            cut(&c.model, 28),
            outcome,
            c.http_status.map_or("-".to_string(), |s| s.to_string()),
            c.latency_s,
            c.retries,
            format!("{}/{}", c.prompt_tokens, c.completion_tokens)
        )?;
        if let Some(e) = &c.error
            && !full
        {
            writeln!(w, "      {}", cut(e, 200))?;
        }
        if full {
            let request: Json = serde_json::from_str(&c.request).unwrap_or(Json::Null);
            for m in request["messages"].as_array().into_iter().flatten() {
                writeln!(w, "      --- {} ---", m["role"].as_str().unwrap_or("?"))?;
                for line in m["content"].as_str().unwrap_or("").lines() {
                    writeln!(w, "      {line}")?;
                }
            }
            if let Some(f) = request.get("response_format") {
                writeln!(w, "      --- response_format ---\n      {f}")?;
            }
            match (&c.content, &c.error) {
                (_, Some(e)) => writeln!(w, "      --- error ---\n      {e}")?,
                (Some(content), None) => {
                    writeln!(w, "      --- answer ---")?;
                    for line in content.lines() {
                        writeln!(w, "      {line}")?;
                    }
                }
                (None, None) => {}
            }
            writeln!(w)?;
        }
    }
    Ok(())
}

/// At most `n` characters, with an ellipsis when cut.
fn cut(s: &str, n: usize) -> String {
    if s.chars().count() <= n { s.to_string() } else { format!("{}…", s.chars().take(n - 1).collect::<String>()) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alcf_host::study::{Finish, Fs, StudyMeta};
    use serde_json::Map;

    const TRICKY: [f64; 5] = [0.1 + 0.2, 1e-300, 123456.789e10, 4.055474706295447e-187, 1.0 / 3.0];

    fn study(root: &Path, name: &str) -> StudyDb {
        let meta = StudyMeta {
            name: name.into(),
            objective: "loss".into(),
            direction: "minimize".into(),
            seed: 1,
            space: serde_json::json!([{"name": "x", "type": "float", "low": 0.0, "high": 1e10, "log": false},
                                      {"name": "n", "type": "int", "low": 1, "high": 8, "log": false}]),
            executor: "local: python3 train.py --x {x}".into(),
            plugin: "random.wasm".into(),
            plugin_sha256: "00".into(),
            created_at: 0.0,
        };
        StudyDb::create_with(&root.join(name), &meta, Fs::Local).unwrap()
    }

    fn run(f: impl FnOnce(&mut dyn Write) -> anyhow::Result<()>) -> anyhow::Result<String> {
        let mut out = Vec::new();
        f(&mut out)?;
        Ok(String::from_utf8(out).unwrap())
    }

    #[test]
    fn json_floats_parse_back_bit_for_bit() {
        let root = tempfile::tempdir().unwrap();
        let db = study(root.path(), "s");
        for x in TRICKY {
            let mut p = Map::new();
            p.insert("x".into(), Json::from(x));
            p.insert("n".into(), Json::from(2));
            let id = db.insert_trial(&p).unwrap();
            let f = Finish {
                state: TrialState::Completed,
                value: Some(x),
                metrics: [("loss".to_string(), x)].into(),
                curve: vec![],
                failure: None,
                log_tail: None,
            };
            db.finish_trials(&[(id, f)]).unwrap();
        }
        let text = run(|w| show_to(w, root.path(), "s", true, false, None)).unwrap();
        let v: Json = serde_json::from_str(&text).unwrap();
        for (t, x) in v["trials"].as_array().unwrap().iter().zip(TRICKY) {
            for got in [&t["params"]["x"], &t["value"], &t["metrics"]["loss"]] {
                assert_eq!(got.as_f64().unwrap().to_bits(), x.to_bits(), "{got} vs {x:e}");
            }
        }
        // The best is the smallest, 1e-300, exactly.
        assert_eq!(v["best"]["value"].as_f64().unwrap().to_bits(), 1e-300f64.to_bits());
        let text = run(|w| list_to(w, root.path(), true)).unwrap();
        let v: Json = serde_json::from_str(&text).unwrap();
        assert_eq!(v[0]["best"].as_f64().unwrap().to_bits(), 1e-300f64.to_bits());
        // And the text a person reads is valid Rust/Python float syntax for the same number.
        assert!(text.contains("1e-300"), "{text}");
    }

    #[test]
    fn show_prints_the_pareto_front_of_a_multi_objective_study() {
        let root = tempfile::tempdir().unwrap();
        let db = study(root.path(), "mo");
        let objectives = vec![("loss".to_string(), Direction::Minimize), ("acc".to_string(), Direction::Maximize)];
        alcf_host::multi::store(&db, &objectives, Some(&[1.0, 0.0])).unwrap();
        for (x, loss, acc) in [(1.0, 0.2, 0.5), (2.0, 0.5, 0.9), (3.0, 0.6, 0.4), (4.0, 0.1, 0.3)] {
            let mut p = Map::new();
            p.insert("x".into(), Json::from(x));
            p.insert("n".into(), Json::from(1));
            let id = db.insert_trial(&p).unwrap();
            let f = Finish {
                state: TrialState::Completed,
                value: Some(loss),
                metrics: [("loss".to_string(), loss), ("acc".to_string(), acc)].into(),
                curve: Vec::new(),
                failure: None,
                log_tail: None,
            };
            db.finish_trials(&[(id, f)]).unwrap();
        }
        let text = run(|w| show_to(w, root.path(), "mo", false, false, None)).unwrap();
        assert!(text.contains("objectives: loss (minimize), acc (maximize)"), "{text}");
        // Trial 3 is dominated by trial 2.
        assert!(text.contains("pareto:     3 of 4 completed trials on the front, hypervolume"), "{text}");
        assert!(text.contains("reference point (1, 0): configured"), "{text}");
        let v: Json =
            serde_json::from_str(&run(|w| show_to(w, root.path(), "mo", true, false, None)).unwrap()).unwrap();
        let ids: Vec<u64> =
            v["pareto_front"]["trials"].as_array().unwrap().iter().map(|t| t["id"].as_u64().unwrap()).collect();
        assert_eq!(ids, [4, 1, 2], "along the first objective, best first");
        // Losses (0.1, −0.3), (0.2, −0.5), (0.5, −0.9) up to (1, 0): 0.9·0.3 + 0.8·0.2 + 0.5·0.4.
        let hv = v["pareto_front"]["hypervolume"].as_f64().unwrap();
        assert!((hv - (0.27 + 0.16 + 0.2)).abs() < 1e-12, "{hv}");
    }

    #[test]
    fn top_export_and_best() {
        use crate::cli::export::{BestFormat, ExportFormat, best_text, export_text};
        let root = tempfile::tempdir().unwrap();
        let db = study(root.path(), "s");
        for (x, n, loss) in [(3.0, 1, 0.5), (1.0, 2, 0.25), (2.0, 3, 0.75)] {
            let mut p = Map::new();
            p.insert("x".into(), Json::from(x));
            p.insert("n".into(), Json::from(n));
            let id = db.insert_trial(&p).unwrap();
            let f = Finish {
                state: TrialState::Completed,
                value: Some(loss),
                metrics: [("loss".to_string(), loss), ("acc, top-1".to_string(), 1.0 - loss)].into(),
                curve: vec![[("loss".to_string(), loss * 2.0)].into(), [("loss".to_string(), loss)].into()],
                failure: None,
                log_tail: None,
            };
            db.finish_trials(&[(id, f)]).unwrap();
        }
        let mut p = Map::new();
        p.insert("x".into(), Json::from(9.0));
        p.insert("n".into(), Json::from(4));
        let id = db.insert_trial(&p).unwrap();
        db.finish_trials(&[(id, Finish::failed("exit status 2, \"bad\"".into()))]).unwrap();

        let text = run(|w| show_to(w, root.path(), "s", true, false, Some(2))).unwrap();
        let v: Json = serde_json::from_str(&text).unwrap();
        let ids: Vec<u64> = v["trials"].as_array().unwrap().iter().map(|t| t["id"].as_u64().unwrap()).collect();
        assert_eq!(ids, [2, 1], "the best two, best first");
        let text = run(|w| show_to(w, root.path(), "s", false, false, Some(1))).unwrap();
        assert!(text.contains("trials:     4 — 3 completed, 1 failed"), "the counts are the study's: {text}");

        let csv = export_text(&db, ExportFormat::Csv).unwrap();
        let lines: Vec<&str> = csv.lines().collect();
        assert_eq!(
            lines[0],
            "id,state,attempt,source,value,created_at,started_at,finished_at,duration_s,failure,param.x,param.n,\
             \"metric.acc, top-1\",metric.loss,epochs,curve"
        );
        assert_eq!(lines.len(), 5);
        assert!(lines[4].contains(",\"exit status 2, \"\"bad\"\"\","), "{}", lines[4]);
        assert!(lines[2].starts_with("2,completed,1,,0.25,"), "{}", lines[2]);
        assert!(lines[2].ends_with(",1.0,2,0.75,0.25,2,\"[{\"\"loss\"\":0.5},{\"\"loss\"\":0.25}]\""), "{}", lines[2]);
        let json: Json = serde_json::from_str(&export_text(&db, ExportFormat::Json).unwrap()).unwrap();
        assert_eq!(json[1]["param.x"], 1.0);
        assert_eq!(json[1]["curve"][1]["loss"], 0.25);
        assert_eq!(json[3]["value"], Json::Null);

        assert_eq!(best_text(&db, "s", BestFormat::Json).unwrap(), r#"{"n":2,"x":1.0}"#);
        assert_eq!(best_text(&db, "s", BestFormat::Flags).unwrap(), "--x 1.0 --n 2");
    }

    #[test]
    fn show_gives_failures_their_log_tail_and_counts_cancelled() {
        let root = tempfile::tempdir().unwrap();
        let db = study(root.path(), "s");
        let mut p = Map::new();
        p.insert("x".into(), Json::from(1.5));
        p.insert("n".into(), Json::from(3));
        let (a, b) = (db.insert_trial(&p).unwrap(), db.insert_trial(&p).unwrap());
        let tail: String = (1..=25).map(|i| format!("line {i}\n")).collect();
        db.finish_trials(&[(a, Finish { log_tail: Some(tail), ..Finish::failed("exit status 1".into()) })]).unwrap();
        db.mark_running(b, "job", "{}").unwrap();
        db.mark_cancelled(&[b]).unwrap();

        let text = run(|w| show_to(w, root.path(), "s", false, false, None)).unwrap();
        assert!(text.contains("executor:   local: python3 train.py --x {x}"), "{text}");
        assert!(text.contains("2 — 0 completed, 1 failed, 1 cancelled, 0 running, 0 pending"), "{text}");
        let failure = text.find("└ exit status 1").unwrap();
        let after = &text[failure..];
        assert!(after.contains("… 15 earlier lines (--log shows them)"), "{text}");
        assert!(
            after.contains("│ line 16\n") && after.contains("│ line 25\n") && !after.contains("│ line 15\n"),
            "{text}"
        );

        let text = run(|w| show_to(w, root.path(), "s", false, true, None)).unwrap();
        assert!(
            text.contains("│ line 1\n") && text.contains("│ line 25\n") && !text.contains("earlier lines"),
            "{text}"
        );
    }

    #[test]
    fn an_unknown_study_lists_the_known_ones() {
        let root = tempfile::tempdir().unwrap();
        let e = run(|w| show_to(w, root.path(), "ghost", false, false, None)).unwrap_err().to_string();
        assert!(e.contains("no study at") && e.contains("no studies under") && e.contains("alcf-host run"), "{e}");
        study(root.path(), "alpha");
        study(root.path(), "beta");
        let e = run(|w| show_to(w, root.path(), "ghost", false, false, None)).unwrap_err().to_string();
        assert!(e.contains("no study at") && e.contains(": alpha, beta"), "{e}");
        assert!(run(|w| show_to(w, root.path(), "../x", false, false, None)).is_err());
    }

    #[test]
    fn enqueue_validates_against_the_stored_space() {
        let root = tempfile::tempdir().unwrap();
        let db = study(root.path(), "s");
        let text = run(|w| enqueue_to(w, root.path(), "s", r#"{"x": 0.30000000000000004, "n": 4}"#)).unwrap();
        assert!(text.starts_with("queued as #1"), "{text}");
        let text = run(|w| enqueue_to(w, root.path(), "s", r#"{"n": 4, "x": 0.30000000000000004}"#)).unwrap();
        assert!(text.starts_with("already queued as #1"), "{text}");
        let q = db.queued().unwrap();
        assert_eq!(q[0].params["x"].as_f64().unwrap().to_bits(), (0.1f64 + 0.2).to_bits());
        assert_eq!(q[0].source, "cli");

        let err = |p: &str| run(|w| enqueue_to(w, root.path(), "s", p)).unwrap_err().to_string();
        assert!(err(r#"{"x": 0.5}"#).contains("parameter `n` is missing"));
        assert!(err(r#"{"x": 0.5, "n": 4, "m": 1}"#).contains("parameter `m` is not in the search space"));
        assert!(err(r#"{"x": 0.5, "n": 9}"#).contains("out of range"));
        assert!(err("[1, 2]").contains("JSON object"));
        assert!(err("{lr: 1}").contains("not JSON"));
        assert_eq!(db.queued().unwrap().len(), 1);
    }

    #[test]
    fn unlock_releases_a_remote_holder_and_records_it() {
        let root = tempfile::tempdir().unwrap();
        let db = study(root.path(), "s");
        let dir = root.path().join("s");
        let remote = Holder { pid: 1, host: "aurora-uan-0010".into(), since: 0, proc_start: None };
        std::fs::write(dir.join(alcf_host::study::lock::LOCK_FILE), serde_json::to_string(&remote).unwrap()).unwrap();
        let text = run(|w| show_to(w, root.path(), "s", false, false, None)).unwrap();
        assert!(text.contains("in use by:  alcf-host pid 1 on aurora-uan-0010"), "{text}");
        let text = run(|w| unlock_to(w, root.path(), "s")).unwrap();
        assert!(text.contains("released by hand"), "{text}");
        assert!(StudyLock::holder_of(&dir).is_none());
        assert_eq!(db.events().unwrap().last().unwrap().kind, "unlock");
        let text = run(|w| unlock_to(w, root.path(), "s")).unwrap();
        assert!(text.contains("is not locked"), "{text}");
        // A live holder here is not released.
        let _lock = StudyLock::acquire(&dir).unwrap();
        assert!(run(|w| unlock_to(w, root.path(), "s")).is_err());
    }
}
