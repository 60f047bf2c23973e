//! Pruning end to end: the real binary, the `pruner` plugin judging running trials' reports
//! (ABI 0.2 `judge`), the bench executor's simulated learning curves, and the study database.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use alcf_tests::{host_bin, plugin, text, trial_states, try_trial_states, wait_until};

/// A study of `trials` random trials on branin, each a 9-epoch learning curve, judged by `pruner`
/// (a `[pruner]` section) or by the strategy itself when `pruner` is empty.
fn config(dir: &Path, name: &str, trials: u32, strategy: &str, pruner: &str, epoch_s: f64) -> PathBuf {
    let text = format!(
        "[study]\nname = \"{name}\"\ntrials = {trials}\nparallel = 4\nseed = 11\nroot = \"studies\"\n\
         [strategy]\n{strategy}\n{pruner}\n\
         [executor]\nkind = \"bench\"\nfunction = \"branin\"\nepochs = 9\ndelay_s = {epoch_s}\n"
    );
    let path = dir.join(format!("{name}.toml"));
    std::fs::write(&path, text).unwrap();
    path
}

fn random() -> String {
    format!("plugin = {:?}", plugin("random").display().to_string())
}

fn pruner_section(options: &str) -> String {
    format!("[pruner]\nplugin = {:?}\noptions = {options}", plugin("pruner").display().to_string())
}

fn host(dir: &Path) -> Command {
    let mut c = Command::new(host_bin());
    c.current_dir(dir).env("ALCF_HOST_CACHE", dir.join("cache"));
    c
}

/// Each trial's recorded curve length and final metrics, from the database.
fn curves(study: &Path) -> BTreeMap<u64, (String, usize, String)> {
    let conn = rusqlite::Connection::open(study.join("study.db")).unwrap();
    let mut stmt = conn.prepare("SELECT id, state, curve, metrics FROM trial ORDER BY id").unwrap();
    let rows = stmt
        .query_map([], |r| {
            let curve: Option<String> = r.get(2)?;
            let n = curve.map_or(0, |c| serde_json::from_str::<Vec<serde_json::Value>>(&c).unwrap().len());
            Ok((r.get::<_, i64>(0)? as u64, (r.get(1)?, n, r.get::<_, Option<String>>(3)?.unwrap_or_default())))
        })
        .unwrap();
    rows.map(Result::unwrap).collect()
}

/// trial -> the step its prune event names.
fn prune_steps(study: &Path) -> BTreeMap<u64, u64> {
    let conn = rusqlite::Connection::open(study.join("study.db")).unwrap();
    let mut stmt = conn.prepare("SELECT trial, message FROM event WHERE kind = 'prune'").unwrap();
    let rows = stmt
        .query_map([], |r| {
            let m: String = r.get(1)?;
            let v: serde_json::Value = serde_json::from_str(&m).unwrap();
            Ok((r.get::<_, i64>(0)? as u64, v["step"].as_u64().unwrap()))
        })
        .unwrap();
    rows.map(Result::unwrap).collect()
}

#[test]
fn a_pruner_stops_trials_within_an_epoch_and_they_are_recorded_pruned() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), "asha", 24, &random(), &pruner_section("{ rule = \"asha\" }"), 0.03);
    let out = host(dir.path()).args(["run", "--config", cfg.to_str().unwrap()]).output().unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let study = dir.path().join("studies/asha");
    let states = trial_states(&study);
    assert_eq!(states.len(), 24, "the budget counts pruned trials");
    let pruned: Vec<u64> = states.iter().filter(|t| t.1 == "pruned").map(|t| t.0).collect();
    let completed = states.iter().filter(|t| t.1 == "completed").count();
    // ASHA with eta 3 over rungs at epochs 1, 3, 9 lets about one trial in nine finish.
    assert!(pruned.len() >= 12 && completed >= 1, "{states:?}");
    let steps = prune_steps(&study);
    let recorded = curves(&study);
    for id in &pruned {
        let step = steps[id];
        let (_, n, metrics) = &recorded[id];
        // Decided on the report of `step` (epoch step + 1); at most one more epoch ran.
        assert!((step + 1..=step + 2).contains(&(*n as u64)), "trial {id}: pruned at step {step}, curve of {n}");
        assert!(metrics.contains("\"value\""), "a pruned trial keeps its last metrics: {metrics}");
        assert!(matches!(step, 0 | 2), "ASHA judges only at its rungs (epochs 1 and 3): {step}");
    }
    for (id, (state, n, _)) in &recorded {
        if state == "completed" {
            assert_eq!(*n, 9, "trial {id} ran all its epochs");
        }
    }
    let t = text(&out);
    assert!(t.contains("pruned at step") && t.contains(&format!("{} pruned", pruned.len())), "{t}");
}

#[test]
fn a_strategy_that_prunes_judges_its_own_trials() {
    let dir = tempfile::tempdir().unwrap();
    let strategy = format!(
        "plugin = {:?}\noptions = {{ rule = \"median\", startup_trials = 2 }}",
        plugin("pruner").display().to_string()
    );
    let cfg = config(dir.path(), "median", 16, &strategy, "", 0.01);
    let out = host(dir.path()).args(["run", "--config", cfg.to_str().unwrap(), "--quiet"]).output().unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let states = trial_states(&dir.path().join("studies/median"));
    assert_eq!(states.len(), 16);
    assert!(states.iter().any(|t| t.1 == "pruned"), "{states:?}");
    assert!(states.iter().any(|t| t.1 == "completed"), "{states:?}");
}

#[test]
fn a_pruner_that_does_not_prune_or_refuses_its_options_is_a_config_error() {
    let dir = tempfile::tempdir().unwrap();
    let not = format!("[pruner]\nplugin = {:?}", plugin("random").display().to_string());
    let cfg = config(dir.path(), "notapruner", 4, &random(), &not, 0.0);
    let out = host(dir.path()).args(["run", "--config", cfg.to_str().unwrap()]).output().unwrap();
    assert!(!out.status.success());
    assert!(text(&out).contains("does not prune") && text(&out).contains("plugins/pruner.wasm"), "{}", text(&out));
    let cfg = config(dir.path(), "badrule", 4, &random(), &pruner_section("{ rule = \"sha\" }"), 0.0);
    let out = host(dir.path()).args(["run", "--config", cfg.to_str().unwrap()]).output().unwrap();
    assert!(!out.status.success());
    let t = text(&out);
    assert!(t.contains("`rule` is `sha`") && t.contains("Fix [pruner] options"), "{t}");
    assert!(!dir.path().join("studies/badrule").exists(), "no study is created for a config error");
}

/// SIGKILL with trials pruned and others running; `--resume` reaches the budget, and every trial
/// pruned before the kill is still pruned, with the same metrics.
#[test]
fn a_killed_host_resumes_and_pruned_trials_stay_pruned() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), "killed", 30, &random(), &pruner_section("{ rule = \"asha\" }"), 0.05);
    let study = dir.path().join("studies/killed");
    let mut child = host(dir.path())
        .args(["run", "--config", cfg.to_str().unwrap(), "--quiet"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_until(&mut child, Duration::from_secs(120), "4 pruned trials", || {
        try_trial_states(&study).unwrap_or_default().iter().filter(|t| t.1 == "pruned").count() >= 4
    });
    child.kill().unwrap();
    child.wait().unwrap();
    let before = curves(&study);
    let out =
        host(dir.path()).args(["run", "--config", cfg.to_str().unwrap(), "--resume", "--quiet"]).output().unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let after = curves(&study);
    assert_eq!(after.len(), 30, "the budget is reached");
    assert!(after.values().all(|(s, _, _)| s == "completed" || s == "pruned"), "{after:?}");
    for (id, (state, n, metrics)) in &before {
        if state == "pruned" {
            assert_eq!(&after[id], &(state.clone(), *n, metrics.clone()), "trial {id} changed after resume");
        }
    }
}
