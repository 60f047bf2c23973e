//! End-to-end runs of the `alcf-trainer` binary on a tiny synthetic dataset: the trial protocol,
//! a falling loss, resume equivalence, and validation before any work.

use serde_json::{Map, Value};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

const BIN: &str = env!("CARGO_BIN_EXE_alcf-trainer");

/// One synthetic dataset shared by the tests of this file (100 classes x 12 images).
fn dataset() -> &'static Path {
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    DIR.get_or_init(|| {
        let d = tempfile::tempdir().unwrap();
        let out = Command::new(BIN)
            .args(["gen-data", "--out"])
            .arg(d.path())
            .args(["--train-per-class", "12", "--test-per-class", "2", "--seed", "3"])
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        d
    })
    .path()
}

/// Small, fast settings; the caller adds more.
fn train_cmd(out: &Path) -> Command {
    let mut c = Command::new(BIN);
    c.arg("train")
        .arg("--data")
        .arg(dataset())
        .arg("--out")
        .arg(out)
        .args(["--model", "cnn", "--width", "8", "--depth", "2", "--batch-size", "32"])
        .args(["--val-split", "0.25", "--threads", "1", "--seed", "5", "--quiet"])
        .env_remove("ALCF_PARAMS")
        .env_remove("ALCF_TRIAL_DIR");
    c
}

fn run_ok(mut c: Command) -> Output {
    let out = c.output().unwrap();
    assert!(out.status.success(), "exit {:?}\nstderr:\n{}", out.status.code(), String::from_utf8_lossy(&out.stderr));
    out
}

fn metrics(dir: &Path) -> Vec<Map<String, Value>> {
    std::fs::read_to_string(dir.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad line {l}: {e}")))
        .collect()
}

fn result(dir: &Path) -> Map<String, Value> {
    serde_json::from_str(&std::fs::read_to_string(dir.join("result.json")).unwrap()).unwrap()
}

fn num(m: &Map<String, Value>, k: &str) -> f64 {
    m.get(k).and_then(Value::as_f64).unwrap_or_else(|| panic!("no number '{k}' in {m:?}"))
}

/// The values that must agree between an interrupted-and-resumed run and an uninterrupted one.
fn comparable(lines: &[Map<String, Value>]) -> Vec<Vec<(String, f64)>> {
    lines
        .iter()
        .map(|m| {
            ["epoch", "train_loss", "train_acc", "val_loss", "val_acc", "val_top5", "val_auc", "lr"]
                .iter()
                .map(|k| (k.to_string(), num(m, k)))
                .collect()
        })
        .collect()
}

fn tmp() -> (tempfile::TempDir, PathBuf) {
    let t = tempfile::tempdir().unwrap();
    let p = t.path().join("trial");
    (t, p)
}

#[test]
fn short_run_loss_falls_and_protocol_files_parse() {
    let (_t, out) = tmp();
    std::fs::create_dir_all(&out).unwrap();
    // Parameters come the way the host sends them: env ALCF_PARAMS / ALCF_TRIAL_DIR, cwd = trial dir.
    let params = out.join("params.json");
    std::fs::write(&params, r#"{"lr": 0.1, "epochs": 4, "optimizer": "sgd", "batch_size": "32", "dropout": 0.0}"#)
        .unwrap();
    let mut c = Command::new(BIN);
    c.current_dir(&out)
        .env("ALCF_TRIAL_DIR", &out)
        .env("ALCF_TRIAL_ID", "1")
        .env("ALCF_PARAMS", &params)
        .arg("train")
        .arg("--data")
        .arg(dataset())
        .args(["--model", "cnn", "--width", "16", "--depth", "3", "--val-split", "0.25"])
        .args(["--threads", "1"]);
    let o = run_ok(c);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(stderr.contains("epoch   4/4"), "{stderr}");

    let lines = metrics(&out);
    assert_eq!(lines.len(), 4);
    for (i, m) in lines.iter().enumerate() {
        assert_eq!(num(m, "epoch") as usize, i + 1);
        for k in ["train_loss", "val_loss", "val_acc", "val_top5", "val_auc", "epoch_time_s", "images_per_s"] {
            let v = num(m, k);
            assert!(v.is_finite() && v >= 0.0, "{k}={v}");
        }
        assert!(num(m, "val_acc") <= num(m, "val_top5"));
        assert!((0.0..=1.0).contains(&num(m, "val_auc")));
    }
    let first = num(&lines[0], "train_loss");
    let last = num(&lines[3], "train_loss");
    assert!(last < first * 0.9, "train loss {first} -> {last}");
    assert!(num(&lines[3], "val_acc") > 0.1, "far above chance (0.01)");

    let r = result(&out);
    let accs: Vec<f64> = lines.iter().map(|m| num(m, "val_acc")).collect();
    let curve = (accs.windows(2).map(|w| (w[0] + w[1]) / 2.0).sum::<f64>()) / 3.0;
    assert!((num(&r, "curve_auc") - curve).abs() < 1e-9);
    assert_eq!(num(&r, "val_acc"), accs[3]);
    assert_eq!(num(&r, "best_val_acc"), accs.iter().cloned().fold(0.0, f64::max));
    assert_eq!(num(&r, "epochs"), 4.0);
    assert_eq!(num(&r, "n_train"), 900.0);
    assert_eq!(num(&r, "n_val"), 300.0);
    for k in ["val_auc", "best_val_auc", "total_time_s", "train_time_s", "images_per_s"] {
        num(&r, k);
    }
    // Every value in result.json is a number.
    assert!(r.values().all(Value::is_number), "{r:?}");
    assert!(out.join("checkpoint/state.json").is_file());
}

#[test]
fn keep_checkpoint_keeps_the_final_weights() {
    let (_t, out) = tmp();
    let mut c = train_cmd(&out);
    c.args(["--epochs", "1", "--limit-train", "64", "--keep-checkpoint"]);
    run_ok(c);
    assert!(out.join("checkpoint/model-epoch1.ot").is_file());
    assert!(out.join("checkpoint/optim-epoch1.ot").is_file());
}

#[test]
fn resume_continues_at_the_right_epoch_with_the_same_result() {
    let (_ta, a) = tmp();
    let (_tb, b) = tmp();
    let common = ["--epochs", "3", "--lr", "0.05", "--dropout", "0.1", "--nesterov", "--limit-train", "600"];

    let mut full = train_cmd(&a);
    full.args(common);
    run_ok(full);

    // Interrupted after epoch 1 (exit 75, as a preempted job would be) ...
    let mut first = train_cmd(&b);
    first.args(common).args(["--resume", "--stop-after", "1"]);
    let o = first.output().unwrap();
    assert_eq!(o.status.code(), Some(75), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(metrics(&b).len(), 1);
    assert!(!b.join("result.json").exists());
    // ... and a line written after the checkpoint (killed in between) must not survive resume.
    let mut text = std::fs::read_to_string(b.join("metrics.jsonl")).unwrap();
    text.push_str("{\"epoch\":2,\"val_acc\":0.99}\n");
    std::fs::write(b.join("metrics.jsonl"), text).unwrap();

    let mut rest = train_cmd(&b);
    rest.args(common).args(["--resume", "--stop-after", "1"]);
    let o = rest.output().unwrap();
    assert_eq!(o.status.code(), Some(75));
    assert_eq!(metrics(&b).len(), 2, "continued at epoch 2, not 1");

    let mut rest = train_cmd(&b);
    rest.args(common).arg("--resume");
    run_ok(rest);

    let (ma, mb) = (metrics(&a), metrics(&b));
    assert_eq!(mb.len(), 3);
    assert_eq!(comparable(&ma), comparable(&mb));
    let (ra, rb) = (result(&a), result(&b));
    for k in ["val_acc", "val_auc", "curve_auc", "best_val_acc", "train_loss", "val_loss"] {
        assert_eq!(num(&ra, k), num(&rb, k), "{k}");
    }

    // A finished run keeps only its state file (unless --keep-checkpoint) ...
    let names = |d: &Path| -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(d.join("checkpoint"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    };
    assert_eq!(names(&a), vec!["state.json"]);
    // ... and resuming it answers with the same files without training again.
    let before = result(&b);
    std::fs::remove_file(b.join("result.json")).unwrap();
    let mut again = train_cmd(&b);
    again.args(common).arg("--resume");
    run_ok(again);
    assert_eq!(comparable(&metrics(&b)), comparable(&ma));
    let after = result(&b);
    assert_eq!(after.keys().collect::<Vec<_>>(), before.keys().collect::<Vec<_>>());
    for (k, v) in &before {
        // (the state file's JSON round trip may change the last bit of a float)
        let (x, y) = (v.as_f64().unwrap(), num(&after, k));
        assert!((x - y).abs() <= 1e-12 * x.abs().max(1.0), "{k}: {x} vs {y}");
    }
    // Resuming with other settings is refused.
    let mut other = train_cmd(&b);
    other.args(common).args(["--resume", "--label-smoothing", "0.1"]);
    let o = other.output().unwrap();
    assert!(!o.status.success());
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(e.contains("different settings") && e.contains("label_smoothing"), "{e}");
}

#[test]
fn invalid_values_are_refused_before_any_work() {
    let (_t, out) = tmp();
    let nodata = out.join("no-such-data");
    let cases: &[(&[&str], &str)] = &[
        (&["--lr", "-1"], "--lr"),
        (&["--dropout", "1.5"], "--dropout"),
        (&["--batch-size", "0"], "--batch-size"),
        (&["--model", "resnet9"], "resnet18"),
        (&["--device", "tpu"], "xpu:N"),
        (&["--val-split", "0.95"], "--val-split"),
    ];
    for (args, needle) in cases {
        let o = Command::new(BIN)
            .arg("train")
            .arg("--data")
            .arg(&nodata)
            .arg("--out")
            .arg(&out)
            .args(*args)
            .env_remove("ALCF_PARAMS")
            .output()
            .unwrap();
        assert!(!o.status.success(), "{args:?} accepted");
        let e = String::from_utf8_lossy(&o.stderr);
        assert!(e.contains(needle), "{args:?}: {e}");
        assert!(!e.contains("no CIFAR-100 data"), "validated after touching data: {e}");
    }
    std::fs::create_dir_all(&out).unwrap();
    let params = out.join("params.json");
    std::fs::write(&params, r#"{"lr": 0.1, "learning_rate": 0.2}"#).unwrap();
    let o = Command::new(BIN).arg("train").arg("--data").arg(&nodata).arg("--params").arg(&params).output().unwrap();
    assert!(!o.status.success());
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(e.contains("unknown parameter 'learning_rate'"), "{e}");
    // Explicit flags override params.json, which overrides defaults: a bad value in the file is
    // fixed by the flag.
    std::fs::write(&params, r#"{"lr": 99}"#).unwrap();
    let o = Command::new(BIN)
        .arg("train")
        .arg("--data")
        .arg(&nodata)
        .arg("--params")
        .arg(&params)
        .args(["--lr", "0.1"])
        .output()
        .unwrap();
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(e.contains("no CIFAR-100 data"), "flag did not override params.json: {e}");
}

#[test]
fn init_from_starts_from_a_kept_checkpoint_of_the_same_architecture() {
    let d = tempfile::tempdir().unwrap();
    let (parent, kept, child) = (d.path().join("parent"), d.path().join("kept"), d.path().join("child"));
    let mut c = train_cmd(&parent);
    c.args(["--epochs", "2", "--lr", "0.05"]);
    run_ok(c);
    let mut c = train_cmd(&kept);
    c.args(["--epochs", "2", "--lr", "0.05", "--keep-checkpoint"]);
    run_ok(c);
    // Without --keep-checkpoint a finished run keeps no weights to start from.
    let mut c = train_cmd(&child);
    c.args(["--epochs", "1", "--init-from"]).arg(&parent);
    let out = c.output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("holds no model weights") && err.contains("--keep-checkpoint"),
        "{err}"
    );
    // Another width cannot take these weights.
    let mut c = train_cmd(&child);
    c.args(["--epochs", "1", "--width", "16", "--init-from"]).arg(&kept);
    let out = c.output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("width"), "{err}");
    // From the kept weights, one more epoch at a lower rate starts where the parent ended: its
    // first validation loss is far below a fresh run's.
    let mut c = train_cmd(&child);
    c.args(["--epochs", "1", "--lr", "0.01", "--init-from"]).arg(&kept);
    run_ok(c);
    let fresh = d.path().join("fresh");
    let mut c = train_cmd(&fresh);
    c.args(["--epochs", "1", "--lr", "0.01"]);
    run_ok(c);
    let loss = |dir: &Path| metrics(dir)[0]["val_loss"].as_f64().unwrap();
    let parent_last = metrics(&kept)[1]["val_loss"].as_f64().unwrap();
    assert!(loss(&child) < loss(&fresh), "child {} fresh {} parent {parent_last}", loss(&child), loss(&fresh));
    // $ALCF_PARENT_DIR with --init-from-parent is the same as --init-from.
    let via_env = d.path().join("via_env");
    let mut c = train_cmd(&via_env);
    c.args(["--epochs", "1", "--lr", "0.01", "--init-from-parent"]).env("ALCF_PARENT_DIR", &kept);
    run_ok(c);
    assert_eq!(metrics(&via_env)[0]["val_loss"], metrics(&child)[0]["val_loss"], "the same start, the same epoch");
}
