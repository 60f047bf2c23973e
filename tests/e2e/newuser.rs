//! What a new user hit, each tried as they did: a bare config file name, a program that is not
//! there, an objective the program never writes, a diverged (NaN) trial, a GPU per parallel trial,
//! a dropped SSH session, trials they choose themselves, and exit statuses that mean something.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use alcf_tests::{host_bin, plugin, text, trial_states, try_trial_states};

/// Writes `train.sh` (the given body after a shebang) and `study.toml` into `dir`.
fn project(dir: &Path, body: &str, study: &str, executor_extra: &str) -> PathBuf {
    let script = dir.join("train.sh");
    std::fs::write(&script, format!("#!/bin/sh\n{body}\n")).unwrap();
    std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let cfg = dir.join("study.toml");
    std::fs::write(
        &cfg,
        format!(
            r#"
[study]
name = "s"
direction = "minimize"
root = "studies"
{study}

[strategy]
plugin = "{plugin}"

[executor]
kind = "local"
command = ["{{config_dir}}/train.sh", "{{x}}"]
timeout_s = 60
{executor_extra}

[space]
x = {{ type = "float", low = 0.0, high = 1.0 }}
"#,
            plugin = plugin("random").display(),
        ),
    )
    .unwrap();
    cfg
}

/// `alcf-host ARGS` run from `dir`, as a user in that directory would.
fn run_in(dir: &Path, args: &[&str]) -> Output {
    Command::new(host_bin())
        .args(args)
        .current_dir(dir)
        .env("ALCF_HOST_CACHE", dir.join("cache"))
        .output()
        .expect("run alcf-host")
}

const WRITES_LOSS: &str = r#"printf '{"loss": %s}' "$1" > result.json"#;

#[test]
fn a_bare_config_file_name_finds_the_program_beside_it() {
    let dir = tempfile::tempdir().unwrap();
    project(dir.path(), WRITES_LOSS, "objective = \"loss\"\ntrials = 3", "");
    let out = run_in(dir.path(), &["run", "--config", "study.toml", "--quiet"]);
    assert!(out.status.success(), "{}", text(&out));
    let trials = trial_states(&dir.path().join("studies/s"));
    assert_eq!(trials.len(), 3);
    assert!(trials.iter().all(|(_, s, _)| s == "completed"), "{trials:?}");
}

#[test]
fn a_missing_program_is_a_config_error_before_any_study_exists() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = project(dir.path(), WRITES_LOSS, "objective = \"loss\"\ntrials = 3", "");
    std::fs::remove_file(dir.path().join("train.sh")).unwrap();
    let out = run_in(dir.path(), &["run", "--config", cfg.file_name().unwrap().to_str().unwrap()]);
    let t = text(&out);
    assert_eq!(out.status.code(), Some(1), "{t}");
    assert!(t.contains("executor.command[0]") && t.contains("train.sh"), "{t}");
    assert!(!dir.path().join("studies/s/study.db").exists(), "no study is created for a config that cannot run");
}

#[test]
fn an_objective_no_trial_writes_stops_after_three_and_is_fixed_on_resume() {
    let dir = tempfile::tempdir().unwrap();
    let cfg =
        project(dir.path(), r#"printf '{"acc": %s}' "$1" > result.json"#, "objective = \"loss\"\ntrials = 10", "");
    let out = run_in(dir.path(), &["run", "--config", "study.toml", "--quiet"]);
    let t = text(&out);
    assert_eq!(out.status.code(), Some(1), "{t}");
    assert!(t.contains("reported no objective `loss`") && t.contains("acc") && t.contains("study.objective"), "{t}");
    let trials = trial_states(&dir.path().join("studies/s"));
    assert_eq!(trials.len(), 3, "it stopped after three, not at the budget: {trials:?}");

    // The advised fix: name the right objective, and resume.
    let text_cfg = std::fs::read_to_string(&cfg).unwrap().replace("objective = \"loss\"", "objective = \"acc\"");
    std::fs::write(&cfg, text_cfg).unwrap();
    let out = run_in(dir.path(), &["run", "--config", "study.toml", "--resume"]);
    let t = text(&out);
    assert!(out.status.success(), "{t}");
    assert!(t.contains("the study now optimizes `acc`"), "{t}");
    let trials = trial_states(&dir.path().join("studies/s"));
    assert_eq!(trials.len(), 10);
    assert_eq!(trials.iter().filter(|(_, s, _)| s == "completed").count(), 7, "{trials:?}");
}

#[test]
fn a_nan_objective_fails_the_trial_with_the_reason_and_the_status_says_none_completed() {
    let dir = tempfile::tempdir().unwrap();
    let body = r#"echo '{"epoch": 1, "loss": 0.5}' > metrics.jsonl; echo '{"loss": NaN}' > result.json"#;
    project(dir.path(), body, "objective = \"loss\"\ntrials = 2", "");
    let out = run_in(dir.path(), &["run", "--config", "study.toml", "--quiet"]);
    let t = text(&out);
    assert_eq!(out.status.code(), Some(5), "every trial failed: {t}");
    let trials = trial_states(&dir.path().join("studies/s"));
    assert!(
        trials.iter().all(|(_, s, v)| s == "failed" && v.is_none()),
        "the 0.5 of metrics.jsonl is not used: {trials:?}"
    );
    let show = run_in(dir.path(), &["study", "show", "s", "--root", "studies"]);
    assert!(text(&show).contains("NaN"), "{}", text(&show));
}

#[test]
fn each_parallel_trial_gets_its_own_slot_in_env_and_argv() {
    let dir = tempfile::tempdir().unwrap();
    let body = r#"sleep 0.2; printf '{"loss": %s, "gpu": %s}' "$1" "$GPU" > result.json"#;
    project(dir.path(), body, "objective = \"loss\"\ntrials = 6\nparallel = 3", "env = { GPU = \"{slot}\" }");
    let out = run_in(dir.path(), &["run", "--config", "study.toml", "--quiet"]);
    assert!(out.status.success(), "{}", text(&out));
    let show = run_in(dir.path(), &["study", "show", "s", "--root", "studies", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&show.stdout).unwrap();
    let gpus: Vec<f64> =
        v["trials"].as_array().unwrap().iter().map(|t| t["metrics"]["gpu"].as_f64().unwrap()).collect();
    assert_eq!(gpus.len(), 6);
    assert!(gpus.iter().all(|g| [0.0, 1.0, 2.0].contains(g)), "{gpus:?}");
    assert_eq!(gpus[..3].iter().map(|g| *g as u32).collect::<std::collections::BTreeSet<_>>().len(), 3, "{gpus:?}");

    // A placeholder in env that nothing expands is an error, not passed literally.
    let dir = tempfile::tempdir().unwrap();
    project(dir.path(), body, "objective = \"loss\"\ntrials = 1", "env = { GPU = \"{gpu_id}\" }");
    let out = run_in(dir.path(), &["run", "--config", "study.toml", "--quiet"]);
    let t = text(&out);
    assert_eq!(out.status.code(), Some(1), "{t}");
    assert!(t.contains("executor.env.GPU") && t.contains("gpu_id"), "{t}");
}

#[test]
fn sighup_stops_submitting_and_lets_running_trials_finish() {
    let dir = tempfile::tempdir().unwrap();
    project(dir.path(), &format!("sleep 1; {WRITES_LOSS}"), "objective = \"loss\"\ntrials = 20\nparallel = 2", "");
    let child = Command::new(host_bin())
        .args(["run", "--config", "study.toml", "--quiet"])
        .current_dir(dir.path())
        .env("ALCF_HOST_CACHE", dir.path().join("cache"))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let study = dir.path().join("studies/s");
    let start = Instant::now();
    while try_trial_states(&study).map_or(0, |t| t.iter().filter(|(_, s, _)| s == "running").count()) < 2 {
        assert!(start.elapsed() < Duration::from_secs(60), "no trial started");
        std::thread::sleep(Duration::from_millis(20));
    }
    // SAFETY: plain kill(2) on our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGHUP) };
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(130), "{}", String::from_utf8_lossy(&out.stderr));
    let trials = trial_states(&study);
    assert!(trials.len() < 20 && trials.iter().all(|(_, s, _)| s == "completed"), "{trials:?}");
}

#[test]
fn enqueued_trials_run_first_and_are_told_to_the_strategy() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = project(dir.path(), WRITES_LOSS, "objective = \"loss\"\ntrials = 4", "");
    let text_cfg = std::fs::read_to_string(&cfg)
        .unwrap()
        .replace("[strategy]", "[[study.enqueue]]\nx = 0.25\n\n[[study.enqueue]]\nx = 0.75\n\n[strategy]");
    std::fs::write(&cfg, text_cfg).unwrap();
    let out = run_in(dir.path(), &["run", "--config", "study.toml", "--quiet"]);
    assert!(out.status.success(), "{}", text(&out));
    let trials = trial_states(&dir.path().join("studies/s"));
    assert_eq!(trials.len(), 4);
    assert_eq!((trials[0].2, trials[1].2), (Some(0.25), Some(0.75)), "{trials:?}");

    // And from the command line, into a study that exists: it runs next, on --resume.
    let out = run_in(dir.path(), &["study", "enqueue", "s", "--root", "studies", "--params", r#"{"x": 0.5}"#]);
    assert!(out.status.success(), "{}", text(&out));
    let out = run_in(dir.path(), &["run", "--config", "study.toml", "--quiet", "--resume", "--trials", "5"]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(trial_states(&dir.path().join("studies/s"))[4].2, Some(0.5));
}
