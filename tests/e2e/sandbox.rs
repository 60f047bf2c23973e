//! Hostile and malformed plugins: each is contained, reported with the plugin, the call, the cause
//! and the next step, and leaves the host and the study intact.

use std::path::Path;
use std::time::{Duration, Instant};

use alcf_tests::{alcf, guest, plugin, text, trial_states};

/// Writes a bench study config that runs the hostile plugin in `mode`.
fn hostile_config(
    dir: &Path,
    mode: &str,
    extra_options: &str,
    strategy_extra: &str,
    parallel: u32,
) -> std::path::PathBuf {
    let path = dir.join(format!("{mode}.toml"));
    let text = format!(
        r#"
[study]
name = "{mode}"
trials = 6
parallel = {parallel}
root = "studies"

[strategy]
plugin = "{plugin}"
allow = ["log", "storage"]
max_restarts = 1
{strategy_extra}

[strategy.options]
mode = "{mode}"
{extra_options}

[executor]
kind = "bench"
function = "mixed"
"#,
        plugin = guest("hostile").display()
    );
    std::fs::write(&path, text).unwrap();
    path
}

fn run_mode(
    mode: &str,
    extra_options: &str,
    strategy_extra: &str,
    parallel: u32,
) -> (std::process::Output, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let cfg = hostile_config(dir.path(), mode, extra_options, strategy_extra, parallel);
    let out = alcf(&["run", "--config", cfg.to_str().unwrap(), "--quiet"], &dir.path().join("cache"));
    (out, dir)
}

/// The study survived: its database opens, `study show` reads it, and nothing half-written is in it.
fn assert_study_intact(dir: &Path, name: &str) {
    let study = dir.join("studies").join(name);
    for (id, state, value) in trial_states(&study) {
        assert!(
            state == "completed" && value.is_some() || state == "failed",
            "trial {id} left as {state} after the run ended"
        );
    }
    let out =
        alcf(&["study", "show", name, "--root", dir.join("studies").to_str().unwrap(), "--json"], &dir.join("cache"));
    assert!(out.status.success(), "study show failed: {}", text(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["name"], name);
}

#[test]
fn good_mode_is_the_control() {
    let (out, dir) = run_mode("good", "", "", 2);
    assert!(out.status.success(), "{}", text(&out));
    let trials = trial_states(&dir.path().join("studies/good"));
    assert_eq!(trials.len(), 6);
    assert!(trials.iter().all(|(_, s, _)| s == "completed"));
}

#[test]
fn infinite_loop_is_stopped_within_its_deadline() {
    let start = Instant::now();
    let (out, dir) = run_mode("loop", "", "suggest_timeout_s = 1", 1);
    let elapsed = start.elapsed();
    let t = text(&out);
    assert!(!out.status.success());
    // Two attempts (max_restarts = 1), each stopped after ~1 s; generous bound for a loaded machine.
    assert!(elapsed < Duration::from_secs(20), "took {elapsed:?}");
    assert!(t.contains("plugin `hostile`") && t.contains("suggest") && t.contains("1.0 s CPU deadline"), "{t}");
    assert!(t.contains("--resume"), "the error must say how to continue: {t}");
    assert_study_intact(dir.path(), "loop");
}

#[test]
fn four_gib_allocation_fails_against_the_memory_cap() {
    let (out, dir) = run_mode("alloc", "", "memory_mib = 256", 1);
    let t = text(&out);
    assert!(!out.status.success());
    assert!(
        t.contains("ran out of memory") && t.contains("cap of 256 MiB") && t.contains("strategy.memory_mib"),
        "{t}"
    );
    assert_study_intact(dir.path(), "alloc");
}

#[test]
fn panic_is_reported_with_its_message() {
    let (out, dir) = run_mode("panic", "", "", 1);
    let t = text(&out);
    assert!(!out.status.success());
    assert!(t.contains("panicked") && t.contains("hostile panic"), "{t}");
    assert_study_intact(dir.path(), "panic");
}

#[test]
fn a_crash_is_survived_by_replaying_history() {
    let (out, dir) = run_mode("crash_once", "", "", 2);
    let t = text(&out);
    assert!(out.status.success(), "{t}");
    assert!(t.contains("was restarted from the study history"), "{t}");
    let trials = trial_states(&dir.path().join("studies/crash_once"));
    assert_eq!(trials.len(), 6);
}

#[test]
fn filesystem_is_invisible() {
    let (out, _dir) = run_mode("fs", "", "", 1);
    let t = text(&out);
    assert!(t.contains("fs probe: read=NotFound"), "{t}");
    assert!(!t.contains("root:"), "the plugin read /etc/passwd: {t}");
}

#[test]
fn sockets_are_denied() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let port = listener.local_addr().unwrap().port();
    let (out, _dir) = run_mode("net", &format!("port = {port}"), "", 1);
    let t = text(&out);
    assert!(t.contains("net probe: Err") && t.contains("PermissionDenied"), "{t}");
    assert!(listener.accept().is_err(), "the plugin reached a socket on the host");
}

#[test]
fn invalid_suggestions_name_the_parameter_and_stop_cleanly() {
    let cases = [
        ("out_of_range", "is out of range"),
        ("wrong_type", "has the wrong type"),
        ("missing", "is missing"),
        ("extra", "`bogus` is not in the search space"),
        ("unknown_choice", "no-such-choice"),
        ("nan", "not a finite number"),
        ("too_many", "but was asked for at most 1"),
    ];
    for (mode, expected) in cases {
        let (out, dir) = run_mode(mode, "", "", 1);
        let t = text(&out);
        assert!(!out.status.success(), "{mode}: {t}");
        assert!(t.contains("plugin `hostile`"), "{mode}: {t}");
        assert!(t.contains(expected), "{mode}: expected `{expected}` in: {t}");
        assert!(t.contains("fix the plugin, then continue with --resume"), "{mode}: {t}");
        // No invalid trial was recorded.
        assert!(trial_states(&dir.path().join("studies").join(mode)).is_empty(), "{mode}");
        assert_study_intact(dir.path(), mode);
    }
}

#[test]
fn invalid_suggestions_among_valid_ones_are_discarded_and_the_valid_ones_run() {
    // The hostile plugin spoils the first suggestion of every batch: of the first batch of 3, two
    // valid trials run; later single-slot refills are all invalid, which ends the run cleanly.
    let (out, dir) = run_mode("out_of_range", "", "", 3);
    let t = text(&out);
    assert!(t.contains("suggested an invalid trial") && t.contains("`x` = 16 is out of range"), "{t}");
    let trials = trial_states(&dir.path().join("studies/out_of_range"));
    assert!(trials.len() >= 2, "{trials:?}");
    assert!(trials.iter().all(|(_, s, _)| s == "completed"), "{trials:?}");
    assert_study_intact(dir.path(), "out_of_range");
}

#[test]
fn ungranted_llm_names_the_missing_grant() {
    let (out, _dir) = run_mode("llm", "", "", 1);
    let t = text(&out);
    assert!(t.contains("llm is not granted to plugin `hostile`") && t.contains("strategy.allow"), "{t}");
}

#[test]
fn granted_llm_without_a_service_is_not_configured() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = hostile_config(dir.path(), "llm", "", "", 1);
    let text_cfg =
        std::fs::read_to_string(&cfg).unwrap().replace(r#"allow = ["log", "storage"]"#, r#"allow = ["log", "llm"]"#);
    std::fs::write(&cfg, text_cfg).unwrap();
    let out = alcf(&["run", "--config", cfg.to_str().unwrap(), "--quiet"], &dir.path().join("cache"));
    let t = text(&out);
    assert!(t.contains("llm is not configured for this study"), "{t}");
}

#[test]
fn guest_output_goes_to_the_study_log_tagged_with_the_plugin() {
    let (out, dir) = run_mode("stdout", "", "", 1);
    assert!(out.status.success(), "{}", text(&out));
    let log = std::fs::read_to_string(dir.path().join("studies/stdout/host.log")).unwrap();
    let line = log.lines().find(|l| l.contains("hello from stderr")).expect("stderr line in host.log");
    assert!(line.contains("plugin=hostile") && line.contains("stream=\"stderr\""), "{line}");
    assert!(log.contains("hello from stdout"));
}

#[test]
fn incompatible_abi_and_non_plugins_are_refused_by_inspect_and_run() {
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    let out = alcf(&["plugin", "inspect", guest("future_abi").to_str().unwrap()], &cache);
    let t = text(&out);
    assert!(!out.status.success());
    assert!(t.contains("alcf:hpo@0.2.0") && t.contains("alcf:hpo@0.1.0"), "both versions named: {t}");

    let out = alcf(
        &[
            "run",
            "--strategy",
            guest("not_a_plugin").to_str().unwrap(),
            "--objective",
            "bench:branin",
            "--trials",
            "2",
            "--root",
            dir.path().join("s").to_str().unwrap(),
        ],
        &cache,
    );
    let t = text(&out);
    assert!(!out.status.success());
    assert!(t.contains("is not a strategy plugin") && t.contains("wasi:cli/run"), "{t}");
}

#[test]
fn inspect_describes_a_plugin_and_caches_its_compilation() {
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    let out = alcf(&["plugin", "inspect", plugin("random").to_str().unwrap(), "--json"], &cache);
    assert!(out.status.success(), "{}", text(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["name"], "random");
    assert_eq!(v["abi_version"], "0.1.0");
    assert_eq!(v["exports"], serde_json::json!(["alcf:hpo/strategy@0.1.0"]));
    assert!(v["imports"].as_array().unwrap().iter().all(|i| {
        let i = i.as_str().unwrap();
        i.starts_with("wasi:") || i.starts_with("alcf:hpo/")
    }));
    let entries = std::fs::read_dir(&cache).unwrap().count();
    assert_eq!(entries, 1, "one compiled artifact cached");
}
