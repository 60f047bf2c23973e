//! Studies of the real trainer: `alcf-host run` with the local executor runs `alcf-trainer` on a
//! tiny synthetic dataset.
//! - Pruning: the `pruner` plugin stops trials from their per-epoch `val_acc`; a pruned trial's
//!   process is stopped within an epoch of the decision and writes no result.
//! - Population-based training: the `pbt` agent starts trials from better trials' kept
//!   checkpoints (`--init-from-parent`, the host's `ALCF_PARENT_DIR`).

use std::path::{Path, PathBuf};
use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_alcf-trainer");

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

/// The host binary, built (or found fresh) in the workspace's target directory.
fn host_bin() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| repo().join("target"), PathBuf::from);
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let out = Command::new(cargo)
        .args(["build", "--quiet", "-p", "alcf-host", "--bin", "alcf-host"])
        .current_dir(repo())
        .env("CARGO_TARGET_DIR", &target)
        .output()
        .unwrap();
    assert!(out.status.success(), "cargo build -p alcf-host: {}", String::from_utf8_lossy(&out.stderr));
    target.join("debug").join("alcf-host")
}

fn plugin(name: &str) -> PathBuf {
    let p = repo().join("plugins").join(format!("{name}.wasm"));
    assert!(p.is_file(), "{} is missing: build the plugins first (bash scripts/build-plugins.sh)", p.display());
    p
}

/// A tiny synthetic dataset in the CIFAR-100 binary format.
fn synthetic(dir: &Path) -> PathBuf {
    let data = dir.join("data");
    let out = Command::new(BIN)
        .args(["gen-data", "--out"])
        .arg(&data)
        .args(["--train-per-class", "20", "--test-per-class", "2", "--seed", "4"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    data
}

/// `alcf-host run --config cfg` in `dir`; its output.
fn run_study(dir: &Path, cfg: &Path) -> String {
    let out = Command::new(host_bin())
        .args(["run", "--config"])
        .arg(cfg)
        .arg("--quiet")
        .current_dir(dir)
        .env("ALCF_HOST_CACHE", dir.join("cache"))
        .output()
        .unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{text}");
    text
}

#[test]
fn pbt_starts_real_training_runs_from_better_runs_checkpoints() {
    let dir = tempfile::tempdir().unwrap();
    let data = synthetic(dir.path());
    let cfg = dir.path().join("pbt.toml");
    std::fs::write(
        &cfg,
        format!(
            r#"[study]
name = "pbt"
objective = "val_acc"
direction = "maximize"
trials = 8
parallel = 4
seed = 5
root = "studies"

[strategy]
plugin = {pbt:?}
allow = ["jobs", "log"]
options = {{ population = 4 }}

[executor]
kind = "local"
command = [{bin:?}, "train", "--params", "{{params}}", "--data", {data:?},
           "--model", "cnn", "--width", "8", "--depth", "2", "--epochs", "1",
           "--val-split", "0.25", "--threads", "1", "--keep-checkpoint", "--init-from-parent"]
timeout_s = 600

[space]
lr = {{ type = "float", low = 1e-3, high = 0.3, log = true }}
weight_decay = {{ type = "float", low = 1e-6, high = 1e-2, log = true }}
"#,
            pbt = plugin("pbt").display().to_string(),
            bin = BIN,
            data = data.display().to_string(),
        ),
    )
    .unwrap();
    run_study(dir.path(), &cfg);
    let study = dir.path().join("studies/pbt");
    let db = study.join("study.db");
    let states = sqlite_rows(&db, "SELECT id, state FROM trial ORDER BY id");
    assert_eq!(states.len(), 8, "{states:?}");
    assert!(states.iter().all(|(_, s)| s == "completed"), "{states:?}");
    let parents = sqlite_rows(&db, "SELECT id, CAST(parent AS TEXT) FROM trial WHERE parent IS NOT NULL ORDER BY id");
    assert_eq!(parents.len(), 4, "the second generation starts from the first: {parents:?}");
    for (id, parent) in parents {
        let parent: u64 = parent.parse().unwrap();
        assert!(parent <= 4, "trial {id}'s parent {parent} is of the first generation");
        let log = std::fs::read_to_string(study.join(format!("trials/{id:06}/stderr.log"))).unwrap();
        assert!(
            log.contains(&format!(
                "starting from the weights of {}",
                study.join(format!("trials/{parent:06}")).display()
            )),
            "trial {id}: {log}"
        );
    }
}

#[test]
fn the_median_rule_stops_real_training_runs_early() {
    let dir = tempfile::tempdir().unwrap();
    let data = synthetic(dir.path());
    let cfg = dir.path().join("prune.toml");
    std::fs::write(
        &cfg,
        format!(
            r#"[study]
name = "prune"
objective = "curve_auc"
direction = "maximize"
trials = 8
parallel = 2
seed = 2
root = "studies"

[strategy]
plugin = {random:?}

[pruner]
plugin = {pruner:?}
# curve_auc exists only at the end: judge each epoch's validation accuracy.
options = {{ rule = "median", metric = "val_acc", startup_trials = 2 }}

[executor]
kind = "local"
command = [{bin:?}, "train", "--params", "{{params}}", "--data", {data:?},
           "--model", "cnn", "--width", "8", "--depth", "2", "--epochs", "6",
           "--val-split", "0.25", "--threads", "1", "--quiet"]
timeout_s = 600

[space]
lr = {{ type = "float", low = 1e-4, high = 0.5, log = true }}
optimizer = {{ type = "choice", values = ["sgd", "adamw"] }}
"#,
            random = plugin("random").display().to_string(),
            pruner = plugin("pruner").display().to_string(),
            bin = BIN,
            data = data.display().to_string(),
        ),
    )
    .unwrap();
    run_study(dir.path(), &cfg);

    let study = dir.path().join("studies/prune");
    let db = study.join("study.db");
    let states = sqlite_rows(&db, "SELECT id, state FROM trial ORDER BY id");
    assert_eq!(states.len(), 8, "{states:?}");
    let pruned: Vec<&(u64, String)> = states.iter().filter(|(_, s)| s == "pruned").collect();
    assert!(!pruned.is_empty(), "the median rule pruned nothing: {states:?}");
    assert!(states.iter().any(|(_, s)| s == "completed"), "{states:?}");
    let steps = sqlite_rows(&db, "SELECT trial, message FROM event WHERE kind = 'prune'");
    for (id, _) in pruned {
        let trial_dir = study.join(format!("trials/{id:06}"));
        let lines = std::fs::read_to_string(trial_dir.join("metrics.jsonl")).unwrap_or_default().lines().count();
        let step: u64 = steps
            .iter()
            .find(|(t, _)| t == id)
            .map(|(_, m)| serde_json::from_str::<serde_json::Value>(m).unwrap()["step"].as_u64().unwrap())
            .unwrap();
        // Decided on the report of epoch step + 1; at most the epoch in progress then ends.
        assert!(lines as u64 <= step + 2, "trial {id}: pruned at step {step} but {lines} epochs ran");
        assert!(lines < 6, "trial {id} ran to its end");
        assert!(!trial_dir.join("result.json").exists(), "trial {id} was pruned but wrote its result");
    }
}

/// Rows of (integer, text) of the study database, read with Python's sqlite3 (this crate links
/// no SQLite of its own).
fn sqlite_rows(db: &Path, sql: &str) -> Vec<(u64, String)> {
    let out = Command::new("python3")
        .args([
            "-c",
            "import sqlite3, sys, json; c = sqlite3.connect(sys.argv[1]); print(json.dumps(c.execute(sys.argv[2]).fetchall()))",
        ])
        .arg(db)
        .arg(sql)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let rows: Vec<(u64, String)> = serde_json::from_slice(&out.stdout).unwrap();
    rows
}
