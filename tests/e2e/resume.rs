//! A host killed with SIGKILL mid-run loses nothing: on --resume, completed trials are kept (not
//! re-run), interrupted ones are re-run, and the study reaches its budget.

use std::collections::HashMap;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use alcf_tests::{alcf, host_bin, plugin, text, trial_states, try_trial_states, wait_until};

const BUDGET: usize = 16;

/// A local-executor study whose trial program is a shell script: it sleeps, writes result.json,
/// and appends its trial id to a ledger, so the test can count how often each trial really ran.
fn write_config(dir: &Path) -> std::path::PathBuf {
    let script = dir.join("trial.sh");
    std::fs::write(
        &script,
        r#"#!/bin/sh
# $1 = x, $2 = ledger
sleep 0.3
printf '{"epoch": 1, "y": %s}\n' "$1" >> metrics.jsonl
printf '{"y": %s}' "$1" > result.json.tmp && mv result.json.tmp result.json
echo "$ALCF_TRIAL_ID" >> "$2"
"#,
    )
    .unwrap();
    let cfg = dir.join("study.toml");
    std::fs::write(
        &cfg,
        format!(
            r#"
[study]
name = "killed"
objective = "y"
direction = "minimize"
trials = {BUDGET}
parallel = 3
root = "studies"

[strategy]
plugin = "{plugin}"

[executor]
kind = "local"
command = ["/bin/sh", "{script}", "{{x}}", "{ledger}"]
timeout_s = 60

[space]
x = {{ type = "float", low = -1.0, high = 1.0 }}
"#,
            plugin = plugin("random").display(),
            script = script.display(),
            ledger = dir.join("ledger").display(),
        ),
    )
    .unwrap();
    cfg
}

fn ledger(dir: &Path) -> HashMap<u64, usize> {
    let mut runs = HashMap::new();
    for line in std::fs::read_to_string(dir.join("ledger")).unwrap_or_default().lines() {
        *runs.entry(line.trim().parse::<u64>().unwrap()).or_insert(0) += 1;
    }
    runs
}

/// Starts `alcf-host run` on a config in the background.
fn spawn_run(cfg: &Path, cache: &Path, stderr: Stdio) -> std::process::Child {
    Command::new(host_bin())
        .args(["run", "--config", cfg.to_str().unwrap(), "--quiet"])
        .env("ALCF_HOST_CACHE", cache)
        .stdout(Stdio::null())
        .stderr(stderr)
        .spawn()
        .unwrap()
}

#[test]
fn sigkill_mid_run_then_resume_loses_nothing_and_reaches_the_budget() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(dir.path());
    let cache = dir.path().join("cache");
    let study = dir.path().join("studies/killed");

    let mut child = spawn_run(&cfg, &cache, Stdio::null());
    // Kill once a few trials are done and others are running.
    wait_for(&study, "completed", 4, &mut child);
    // SAFETY: plain kill(2) on our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGKILL) };
    child.wait().unwrap();

    let before = trial_states(&study);
    let completed_before: HashMap<u64, Option<f64>> =
        before.iter().filter(|(_, s, _)| s == "completed").map(|(id, _, v)| (*id, *v)).collect();
    assert!(completed_before.len() >= 4);
    assert!(before.len() < BUDGET, "the kill came too late to test anything");
    // Trials die with the host (PR_SET_PDEATHSIG); wait until none is left, so an orphan could not
    // write the ledger after it was read.
    wait_until_no_process_runs_in(&study.join("trials"));
    let runs_before = ledger(dir.path());

    // A second start without --resume refuses to clobber the study.
    let out = alcf(&["run", "--config", cfg.to_str().unwrap(), "--quiet"], &cache);
    assert!(!out.status.success());
    assert!(text(&out).contains("--resume"), "{}", text(&out));

    let out = alcf(&["run", "--config", cfg.to_str().unwrap(), "--quiet", "--resume"], &cache);
    assert!(out.status.success(), "{}", text(&out));

    let after = trial_states(&study);
    assert_eq!(after.len(), BUDGET, "the study reaches its budget");
    assert!(after.iter().all(|(_, s, _)| s == "completed"), "{after:?}");
    let runs_after = ledger(dir.path());
    for (id, value) in &completed_before {
        let now = after.iter().find(|(i, _, _)| i == id).unwrap();
        assert_eq!(now.2, *value, "trial {id} kept its value");
        assert_eq!(runs_after.get(id), runs_before.get(id), "completed trial {id} was not run again");
    }
    // Every trial ran to completion exactly once, except those interrupted by the kill.
    for (id, _, _) in &after {
        assert!(runs_after.get(id).copied().unwrap_or(0) >= 1, "trial {id} never ran");
    }

    // The event log tells what happened.
    let out =
        alcf(&["study", "show", "killed", "--root", dir.path().join("studies").to_str().unwrap(), "--json"], &cache);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let kinds: Vec<&str> = v["events"].as_array().unwrap().iter().map(|e| e["kind"].as_str().unwrap()).collect();
    assert!(kinds.contains(&"resume"), "{kinds:?}");
}

#[test]
fn resume_with_a_bench_study_extends_it() {
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    let root = dir.path().join("studies");
    let p = plugin("random");
    let run = |trials: &str, resume: bool| {
        let mut a = vec![
            "run",
            "--strategy",
            p.to_str().unwrap(),
            "--objective",
            "bench:branin",
            "--trials",
            trials,
            "--parallel",
            "4",
            "--study",
            "ext",
            "--quiet",
            "--root",
            root.to_str().unwrap(),
        ];
        if resume {
            a.push("--resume");
        }
        alcf(&a, &cache)
    };
    assert!(run("20", false).status.success());
    let out = run("50", true);
    assert!(out.status.success(), "{}", text(&out));
    let trials = trial_states(&root.join("ext"));
    assert_eq!(trials.len(), 50);
    // Resume replays the history into a fresh instance: the random plugin continues its sequence
    // rather than repeating the first 20 points.
    let values: std::collections::HashSet<u64> = trials.iter().map(|(_, _, v)| v.unwrap().to_bits()).collect();
    assert_eq!(values.len(), 50, "no point was proposed twice");
}

/// Waits until no process has its working directory under `dir` (every trial process is gone).
fn wait_until_no_process_runs_in(dir: &Path) {
    let dir = dir.canonicalize().unwrap_or_else(|_| dir.to_path_buf());
    let start = Instant::now();
    loop {
        let busy = std::fs::read_dir("/proc")
            .unwrap()
            .filter_map(|e| e.ok())
            .any(|e| std::fs::read_link(e.path().join("cwd")).is_ok_and(|cwd| cwd.starts_with(&dir)));
        if !busy {
            return;
        }
        assert!(start.elapsed() < Duration::from_secs(30), "trial processes outlived the killed host");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Reads the child's stderr until a line contains `needle`; returns everything read so far.
fn read_until(stderr: &mut impl std::io::BufRead, needle: &str) -> String {
    let mut seen = String::new();
    loop {
        let mut line = String::new();
        let n = stderr.read_line(&mut line).unwrap();
        seen.push_str(&line);
        assert!(n > 0, "stderr ended before `{needle}`: {seen}");
        if line.contains(needle) {
            return seen;
        }
    }
}

/// Waits until the study has at least `n` trials in `state`.
fn wait_for(study: &Path, state: &str, n: usize, child: &mut std::process::Child) {
    wait_until(child, Duration::from_secs(60), &format!("{n} {state} trials"), || {
        try_trial_states(study).map_or(0, |t| t.iter().filter(|(_, s, _)| s == state).count()) >= n
    });
}

#[test]
fn ctrl_c_stops_submitting_and_waits_for_running_trials() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(dir.path());
    let cache = dir.path().join("cache");
    let study = dir.path().join("studies/killed");
    let mut child = spawn_run(&cfg, &cache, Stdio::piped());
    wait_for(&study, "running", 2, &mut child);
    // SAFETY: plain kill(2) on our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(130), "an interrupted run says so in its exit status: {stderr}");
    assert!(stderr.contains("Interrupted: no new trials"), "{stderr}");
    let trials = trial_states(&study);
    assert!(trials.len() < BUDGET, "it kept submitting");
    assert!(trials.iter().all(|(_, s, _)| s == "completed"), "running trials were waited for: {trials:?}");

    let out = alcf(&["run", "--config", cfg.to_str().unwrap(), "--quiet", "--resume"], &cache);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(trial_states(&study).len(), BUDGET);
}

#[test]
fn second_ctrl_c_cancels_running_trials_which_rerun_on_resume() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(dir.path());
    let text_cfg = std::fs::read_to_string(&cfg).unwrap().replace("sleep 0.3", "sleep 30");
    std::fs::write(
        dir.path().join("trial.sh"),
        std::fs::read_to_string(dir.path().join("trial.sh")).unwrap().replace("sleep 0.3", "sleep 30"),
    )
    .unwrap();
    std::fs::write(&cfg, text_cfg).unwrap();
    let cache = dir.path().join("cache");
    let study = dir.path().join("studies/killed");
    let mut child = spawn_run(&cfg, &cache, Stdio::piped());
    wait_for(&study, "running", 3, &mut child);
    let start = Instant::now();
    let mut stderr = std::io::BufReader::new(child.stderr.take().unwrap());
    // SAFETY: plain kill(2) on our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    // The second Ctrl-C only after the host said it took the first: an event, not a sleep.
    let mut seen = read_until(&mut stderr, "Interrupted: no new trials");
    // SAFETY: as above.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    std::io::Read::read_to_string(&mut stderr, &mut seen).unwrap();
    let status = child.wait().unwrap();
    assert!(start.elapsed() < Duration::from_secs(20), "cancel did not stop the 30 s trials");
    assert_eq!(status.code(), Some(131), "a cancelled run says so in its exit status: {seen}");
    assert!(seen.contains("Cancelling 3 running trial(s)"), "{seen}");
    let trials = trial_states(&study);
    assert_eq!(trials.len(), 3);
    assert!(trials.iter().all(|(_, s, _)| s == "cancelled"), "cancelled trials are recorded as such: {trials:?}");
    assert!(!dir.path().join("ledger").exists(), "no cancelled trial reached its end");

    // On resume the cancelled trials run again, as new attempts, and finish.
    std::fs::write(
        dir.path().join("trial.sh"),
        std::fs::read_to_string(dir.path().join("trial.sh")).unwrap().replace("sleep 30", "sleep 0.1"),
    )
    .unwrap();
    let out = alcf(&["run", "--config", cfg.to_str().unwrap(), "--quiet", "--resume", "--trials", "3"], &cache);
    assert!(out.status.success(), "{}", text(&out));
    let trials = trial_states(&study);
    assert!(trials.iter().all(|(_, s, _)| s == "completed"), "{trials:?}");
    assert_eq!(ledger(dir.path()).len(), 3, "each cancelled trial ran once more");
}

#[test]
fn time_budget_stops_submitting() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(dir.path());
    let out =
        alcf(&["run", "--config", cfg.to_str().unwrap(), "--quiet", "--max-time", "1s"], &dir.path().join("cache"));
    let t = text(&out);
    assert!(out.status.success(), "{t}");
    let trials = trial_states(&dir.path().join("studies/killed"));
    assert!(!trials.is_empty() && trials.len() < BUDGET, "{trials:?}");
    assert!(trials.iter().all(|(_, s, _)| s == "completed"), "{trials:?}");
}

#[test]
fn resume_with_a_changed_config_keeps_the_study_and_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(dir.path());
    let cache = dir.path().join("cache");
    let text_cfg = std::fs::read_to_string(&cfg).unwrap().replace(&format!("trials = {BUDGET}"), "trials = 3");
    std::fs::write(&cfg, &text_cfg).unwrap();
    assert!(alcf(&["run", "--config", cfg.to_str().unwrap(), "--quiet"], &cache).status.success());
    std::fs::write(
        &cfg,
        text_cfg.replace("low = -1.0", "low = -2.0").replace("objective = \"y\"", "objective = \"z\""),
    )
    .unwrap();
    let out = alcf(&["run", "--config", cfg.to_str().unwrap(), "--resume", "--trials", "5"], &cache);
    let t = text(&out);
    assert!(out.status.success(), "{t}");
    assert!(t.contains("warning: the search space in the config differs from the study's"), "{t}");
    assert!(
        t.contains("warning: the objective in the config (`z`) is not the study's; `y` is kept because 3 trial(s) completed with it"),
        "{t}"
    );
    let trials = trial_states(&dir.path().join("studies/killed"));
    assert_eq!(trials.len(), 5);
    assert!(
        trials.iter().all(|(_, s, v)| s == "completed" && v.is_some_and(|v| (-1.0..=1.0).contains(&v))),
        "{trials:?}"
    );
}
