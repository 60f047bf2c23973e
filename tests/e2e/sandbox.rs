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
    assert!(t.contains("plugin `hostile`") && t.contains("suggest") && t.contains("1.0 s deadline per call"), "{t}");
    assert!(t.contains("host calls not counted"), "{t}");
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
    // The guest's own message and location, not the runtime's `unreachable` trap.
    assert!(t.contains("it panicked at tests/guests/hostile/src/lib.rs:") && t.contains(": hostile panic"), "{t}");
    assert!(!t.contains("wasm trap"), "{t}");
    assert_study_intact(dir.path(), "panic");
}

#[test]
fn a_panic_in_init_is_reported_as_init_and_given_up() {
    let (out, dir) = run_mode("init_panic", "", "", 1);
    let t = text(&out);
    assert!(!out.status.success());
    assert!(t.contains("restart 1 of 1"), "one restart before giving up: {t}");
    assert!(t.contains("given up after 1 restarts; last failure in init"), "{t}");
    assert!(t.contains("it panicked at") && t.contains("hostile panic in init"), "{t}");
    assert!(trial_states(&dir.path().join("studies/init_panic")).is_empty());
    assert_study_intact(dir.path(), "init_panic");
}

#[test]
fn a_trap_in_observe_is_contained_then_given_up() {
    let (out, dir) = run_mode("observe_trap", "", "", 1);
    let t = text(&out);
    assert!(!out.status.success(), "{t}");
    // The first observe traps (restart 1 of 1); the rebuild replays it and traps again.
    assert!(t.contains("failed in observe") && t.contains("restart 1 of 1"), "{t}");
    assert!(t.contains("last failure in observe") && t.contains("hostile panic in observe"), "{t}");
    // The trial it was told about is recorded, and nothing else ran.
    let trials = trial_states(&dir.path().join("studies/observe_trap"));
    assert_eq!(trials.len(), 1, "{trials:?}");
    assert_study_intact(dir.path(), "observe_trap");
}

#[test]
fn a_slow_init_runs_into_its_deadline() {
    let start = Instant::now();
    let (out, dir) = run_mode("slow_init", "", "suggest_timeout_s = 0.5", 1);
    let t = text(&out);
    assert!(!out.status.success());
    assert!(start.elapsed() < Duration::from_secs(20));
    assert!(t.contains("last failure in init") && t.contains("0.5 s deadline per call"), "{t}");
    assert_study_intact(dir.path(), "slow_init");
}

#[test]
fn an_options_error_is_a_config_error_without_restarts() {
    for (mode, expected) in [
        ("bad_option", "`bad_option` is never a valid option"),
        ("no_such_mode", "unknown mode `no_such_mode` (known: good, loop"),
    ] {
        let (out, dir) = run_mode(mode, "", "", 1);
        let t = text(&out);
        assert!(!out.status.success(), "{mode}: {t}");
        assert!(t.contains("plugin `hostile` does not accept its options: hostile: "), "{mode}: {t}");
        assert!(t.contains(expected) && t.contains("[strategy.options]"), "{mode}: {t}");
        assert!(!t.contains("restarted") && !t.contains("fix the plugin"), "{mode}: {t}");
        assert_eq!(out.status.code(), Some(1), "a configuration error: {t}");
        // Found before the study was created: a typo leaves nothing behind.
        assert!(!dir.path().join("studies").join(mode).join("study.db").exists(), "{mode}: a study was created");
        assert!(t.contains("no study was created"), "{mode}: {t}");
    }
}

/// Console bytes and host.log bytes of a flooding run.
fn flood_run(extra_options: &str, strategy_extra: &str) -> (String, u64, String) {
    let (out, dir) = run_mode("flood", extra_options, strategy_extra, 1);
    let console = text(&out);
    let log = dir.path().join("studies/flood/host.log");
    let size = std::fs::metadata(&log).unwrap().len();
    let log_text = std::fs::read_to_string(&log).unwrap();
    assert_study_intact(dir.path(), "flood");
    (console, size, log_text)
}

/// The documented limits: host.log stays under 10 MB and the terminal under 20 KB, however a
/// plugin floods (docs/ARCHITECTURE.md, "Every plugin call is limited").
const MAX_FLOOD_LOG: u64 = 10 << 20;
const MAX_FLOOD_CONSOLE: usize = 20 << 10;

#[test]
fn a_plugin_flooding_until_its_deadline_cannot_fill_the_log_or_the_terminal() {
    let (console, log_bytes, log) = flood_run("", "suggest_timeout_s = 1");
    eprintln!("flood until the deadline: host.log {log_bytes} bytes, console {} bytes", console.len());
    assert!(log_bytes < MAX_FLOOD_LOG, "host.log is {log_bytes} bytes");
    assert!(console.len() < MAX_FLOOD_CONSOLE, "console output is {} bytes: {console}", console.len());
    assert!(console.contains("lines (") && console.contains("bytes) suppressed"), "{console}");
    assert!(console.contains("deadline per call"), "{console}");
    assert!(log.contains("plugin `hostile`: ") && log.contains("bytes) suppressed"), "the log says so too");
    // All three streams got through until the budget ran out.
    for stream in ["log flood 0 ", "stdout flood 0 ", "stderr flood 0 "] {
        assert!(log.contains(stream), "{stream} missing from host.log");
    }
}

#[test]
fn a_100_mb_error_string_is_cut_before_it_reaches_the_terminal_or_the_log() {
    let (console, log_bytes, log) = flood_run("flood_ms = 200", "");
    eprintln!("flood then a 100 MB error: host.log {log_bytes} bytes, console {} bytes", console.len());
    assert!(log_bytes < MAX_FLOOD_LOG, "host.log is {log_bytes} bytes");
    assert!(console.len() < MAX_FLOOD_CONSOLE, "console output is {} bytes", console.len());
    assert!(console.contains("… [cut: 104857600 bytes in all]"), "{}", &console[..console.len().min(4000)]);
    assert!(log.contains("… [cut: 104857600 bytes in all]"));
    assert!(console.contains("bytes) suppressed"), "{}", &console[..console.len().min(4000)]);
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
    // Reported once, as a notice, even though every round calls it.
    let notice = "plugin `hostile` called llm.chat, which is not granted: add \"llm\" to strategy.allow";
    assert_eq!(t.matches(notice).count(), 1, "{t}");
}

#[test]
fn ungranted_log_and_storage_are_reported_once() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = hostile_config(dir.path(), "crash_once", "", "", 1);
    let text_cfg = std::fs::read_to_string(&cfg).unwrap().replace(r#"allow = ["log", "storage"]"#, "allow = []");
    std::fs::write(&cfg, text_cfg).unwrap();
    let out = alcf(&["run", "--config", cfg.to_str().unwrap(), "--quiet"], &dir.path().join("cache"));
    let t = text(&out);
    for call in ["log", "storage.get"] {
        let cap = call.split('.').next().unwrap();
        let notice = format!("plugin `hostile` called {call}, which is not granted: add \"{cap}\" to strategy.allow");
        assert_eq!(t.matches(&notice).count(), 1, "{notice} once in: {t}");
    }
    // storage.set returned its error (naming the grant) to the plugin, which returned it.
    assert!(t.contains("storage is not granted to plugin `hostile`"), "{t}");
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
    assert!(t.contains("alcf:hpo@0.3.0") && t.contains("alcf:hpo@0.2.0"), "both versions named: {t}");

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
fn a_plugin_built_against_abi_0_1_0_still_runs_adapted_and_calls_llm() {
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    let out = alcf(&["plugin", "inspect", guest("abi_010").to_str().unwrap(), "--json"], &cache);
    assert!(out.status.success(), "{}", text(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["abi_version"], "0.1.0");
    assert!(v["imports"].as_array().unwrap().iter().any(|i| i == "alcf:hpo/llm@0.1.0"), "{v}");
    let cfg = dir.path().join("study.toml");
    std::fs::write(
        &cfg,
        format!(
            "[study]\nname = \"old\"\ntrials = 4\nroot = \"s\"\n[strategy]\nplugin = \"{}\"\nallow = [\"log\", \"llm\"]\n[executor]\nkind = \"bench\"\nfunction = \"branin\"\n",
            guest("abi_010").display()
        ),
    )
    .unwrap();
    let out = alcf(&["run", "--config", cfg.to_str().unwrap(), "--quiet"], &cache);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(trial_states(&dir.path().join("s/old")).len(), 4);
    // No [llm] section: the old plugin's llm.chat reaches the host and gets `not-configured`.
    let log = std::fs::read_to_string(dir.path().join("s/old/host.log")).unwrap();
    assert!(log.contains("abi_010: llm.chat answered Err(LlmError::NotConfigured"), "{log}");
}

#[test]
fn inspect_describes_a_plugin_and_caches_its_compilation() {
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    let out = alcf(&["plugin", "inspect", plugin("random").to_str().unwrap(), "--json"], &cache);
    assert!(out.status.success(), "{}", text(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["name"], "random");
    assert_eq!(v["abi_version"], "0.2.0");
    assert_eq!(v["exports"], serde_json::json!(["alcf:hpo/strategy@0.2.0"]));
    assert!(v["imports"].as_array().unwrap().iter().all(|i| {
        let i = i.as_str().unwrap();
        i.starts_with("wasi:") || i.starts_with("alcf:hpo/")
    }));
    let entries = std::fs::read_dir(&cache).unwrap().count();
    assert_eq!(entries, 1, "one compiled artifact cached");
}

/// The plugin runtime driven as a library (what the campaign and `compare` do), for what the CLI
/// cannot configure: backends, quotas, a slow LLM service.
mod runtime {
    use std::sync::Arc;
    use std::time::{Duration, Instant};

    use alcf_host::config::Direction;
    use alcf_host::plugin::PluginRuntime;
    use alcf_host::plugin::capability::llm::{BoxFuture, ChatResponse, LlmBackend, LlmCall, LlmError};
    use alcf_host::plugin::capability::{Capabilities, Capability, Grants, Notice, Storage, StorageQuota};
    use alcf_host::plugin::strategy::{
        Fault, Observation, ObservedStatus, PluginError, PluginLimits, SandboxedStrategy, StudyInfo,
    };
    use alcf_host::space::{Domain, Param, SearchSpace, Value};
    use alcf_tests::{ensure_built, guest, plugin};

    fn space(d: usize) -> SearchSpace {
        SearchSpace::new(
            (0..d)
                .map(|i| Param { name: format!("x{i}"), domain: Domain::Float { low: 0.0, high: 1.0, log: false } })
                .collect(),
        )
        .unwrap()
    }

    fn study(options: serde_json::Value, d: usize) -> StudyInfo {
        StudyInfo {
            name: "lib".into(),
            space: space(d),
            direction: Direction::Minimize,
            objective: "value".into(),
            objectives: Vec::new(),
            seed: 1,
            budget: None,
            parallelism: 1,
            options,
        }
    }

    fn limits(call_timeout: Duration, max_restarts: u32) -> PluginLimits {
        PluginLimits { memory_bytes: 512 << 20, call_timeout, max_restarts }
    }

    fn hostile(options: serde_json::Value, limits: PluginLimits, caps: &Capabilities) -> SandboxedStrategy {
        ensure_built();
        let runtime = PluginRuntime::shared(None).unwrap();
        let loaded = Arc::new(runtime.load(&guest("hostile")).unwrap());
        SandboxedStrategy::with_capabilities(loaded, &study(options, 2), limits, caps)
    }

    fn block_on<F: std::future::Future>(f: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(f)
    }

    /// An LLM service that answers after `delay`.
    struct SlowLlm {
        delay: Duration,
    }

    impl LlmBackend for SlowLlm {
        fn chat(&self, call: LlmCall) -> BoxFuture<'_, Result<ChatResponse, LlmError>> {
            Box::pin(async move {
                tokio::time::sleep(self.delay).await;
                Ok(ChatResponse {
                    content: format!("slow answer to {} messages", call.request.messages.len()),
                    model: "slow".into(),
                    prompt_tokens: 1,
                    completion_tokens: 1,
                })
            })
        }
    }

    fn llm_caps(delay: Duration, timeout: Duration) -> Capabilities {
        Capabilities::new(Grants::from_list(&["llm".into(), "log".into()]), Storage::memory())
            .with_llm(Arc::new(SlowLlm { delay }))
            .with_llm_timeout(timeout)
    }

    #[test]
    fn time_in_a_slow_host_call_is_not_the_plugins() {
        // The service takes 1.5 s, three times the plugin's 0.5 s deadline: the plugin must get
        // its answer, not a timeout.
        let caps = llm_caps(Duration::from_millis(1500), Duration::from_secs(30));
        let mut s = hostile(serde_json::json!({"mode": "llm"}), limits(Duration::from_millis(500), 0), &caps);
        let start = Instant::now();
        let r = block_on(s.suggest(1, &[]));
        assert!(start.elapsed() >= Duration::from_millis(1500));
        match r {
            Err(PluginError::Refused { message, .. }) => {
                assert!(
                    message.contains("llm probe: Ok(") && message.contains("slow answer to 1 messages"),
                    "{message}"
                )
            }
            other => panic!("expected the plugin's own error carrying the answer, got {other:?}"),
        }
        assert!(s.take_faults().is_empty());
    }

    #[test]
    fn a_host_call_past_its_own_timeout_is_an_error_not_a_trap() {
        let caps = llm_caps(Duration::from_secs(10), Duration::from_millis(300));
        let mut s = hostile(serde_json::json!({"mode": "llm"}), limits(Duration::from_secs(5), 0), &caps);
        let start = Instant::now();
        match block_on(s.suggest(1, &[])) {
            Err(PluginError::Refused { message, .. }) => {
                assert!(message.contains("Unavailable") && message.contains("within 0.3 s"), "{message}")
            }
            other => panic!("expected an `unavailable` error returned to the plugin, got {other:?}"),
        }
        assert!(start.elapsed() < Duration::from_secs(5), "the host waited {:?}", start.elapsed());
    }

    #[test]
    fn a_guest_loop_still_trips_the_deadline_with_host_time_excluded() {
        let caps = llm_caps(Duration::from_secs(1), Duration::from_secs(30));
        let mut s = hostile(serde_json::json!({"mode": "loop"}), limits(Duration::from_millis(300), 0), &caps);
        let start = Instant::now();
        match block_on(s.suggest(1, &[])) {
            Err(PluginError::GaveUp { call: "suggest", fault: Fault::Timeout { limit }, restarts: 0, .. }) => {
                assert_eq!(limit, Duration::from_millis(300))
            }
            other => panic!("expected a timeout, got {other:?}"),
        }
        let took = start.elapsed();
        assert!(took >= Duration::from_millis(300) && took < Duration::from_secs(5), "{took:?}");
    }

    #[test]
    fn max_restarts_restarts_are_allowed_and_the_next_fault_gives_up() {
        let caps = Capabilities::new(Grants::default(), Storage::memory());
        let mut s = hostile(serde_json::json!({"mode": "panic"}), limits(Duration::from_secs(5), 2), &caps);
        match block_on(s.suggest(1, &[])) {
            Err(PluginError::GaveUp { restarts: 2, fault: Fault::Trap { .. }, .. }) => {}
            other => panic!("expected a give-up after 2 restarts, got {other:?}"),
        }
        let faults = s.take_faults();
        assert_eq!(faults.iter().map(|f| (f.restart, f.max_restarts)).collect::<Vec<_>>(), [(1, 2), (2, 2)]);
        assert!(faults.iter().all(|f| f.call == "suggest"));
        assert!(faults[0].to_string().contains("hostile panic") && faults[0].to_string().contains("restart 1 of 2"));
        assert!(s.take_faults().is_empty(), "taken once");
        // The hostile plugin logs in init without the grant: one notice, whatever the restarts.
        let notices = s.take_notices();
        assert_eq!(notices, [Notice::Ungranted { plugin: "hostile".into(), capability: Capability::Log, call: "log" }]);
    }

    #[test]
    fn storage_quotas_hold_against_a_guest_over_the_study_database() {
        let dir = tempfile::tempdir().unwrap();
        let meta = alcf_host::study::StudyMeta {
            name: "quota".into(),
            objective: "value".into(),
            direction: "minimize".into(),
            seed: 1,
            space: space(2).to_json(),
            executor: "bench".into(),
            plugin: "hostile.wasm".into(),
            plugin_sha256: "0".into(),
            created_at: 0.0,
        };
        let db = Arc::new(alcf_host::study::StudyDb::create(dir.path(), &meta).unwrap());
        let quota = StorageQuota { max_key_bytes: 64, max_value_bytes: 4096, max_total_bytes: 40_000 };
        let caps = Capabilities::new(Grants::from_list(&["storage".into()]), Storage::Study(db.clone()))
            .with_storage_quota(quota);
        let mut s = hostile(
            serde_json::json!({"mode": "storage_quota", "fill_bytes": 4000}),
            limits(Duration::from_secs(10), 0),
            &caps,
        );
        let message = match block_on(s.suggest(1, &[])) {
            Err(PluginError::Refused { message, .. }) => message,
            other => panic!("expected the probe's report, got {other:?}"),
        };
        assert!(message.contains("key=Err(\"storage key is 300 bytes; the limit is 64\")"), "{message}");
        assert!(message.contains("value=Err(\"storage value is 1048577 bytes; the limit is 4096\")"), "{message}");
        assert!(message.contains("full=Err(\"plugin storage is full ("), "{message}");
        // Nine 4005-byte entries fit in 40 000 bytes; the tenth does not, and nothing over the quota was stored.
        let used = db.storage_bytes().unwrap();
        assert!(used <= 40_000 && used > 40_000 - 4005, "{used}");
        assert_eq!(db.storage_get("big").unwrap(), None);
    }

    #[test]
    fn a_real_plugins_unknown_option_is_an_options_error_listing_the_known_ones() {
        ensure_built();
        let runtime = PluginRuntime::shared(None).unwrap();
        let loaded = Arc::new(runtime.load(&plugin("gp_ucb")).unwrap());
        let caps = Capabilities::new(Grants::default(), Storage::memory());
        let mut s = SandboxedStrategy::with_capabilities(
            loaded,
            &study(serde_json::json!({"bta": 2.0}), 2),
            limits(Duration::from_secs(30), 3),
            &caps,
        );
        match block_on(s.suggest(1, &[])) {
            Err(PluginError::Options { plugin, message }) => {
                assert_eq!(plugin, "gp_ucb");
                assert!(message.starts_with("unknown option `bta` (known: acquisition, n_init,"), "{message}");
            }
            other => panic!("expected an options error, got {other:?}"),
        }
        assert_eq!(s.restarts(), 0);
        assert!(s.take_faults().is_empty());
    }

    /// gp_ucb's kernels (`dot`, `axpy` as f64x2 SIMD in the wasm build, and the Cholesky routines
    /// on them) give the same bits in the sandbox as natively.
    #[test]
    fn gp_ucb_simd_kernels_in_the_sandbox_equal_native_bit_for_bit() {
        ensure_built();
        let runtime = PluginRuntime::shared(None).unwrap();
        let loaded = Arc::new(runtime.load(&guest("kernels")).unwrap());
        let caps = Capabilities::new(Grants::default(), Storage::memory());
        let mut s = SandboxedStrategy::with_capabilities(
            loaded,
            &study(serde_json::json!({}), 1),
            limits(Duration::from_secs(60), 0),
            &caps,
        );
        let wasm = match block_on(s.suggest(1, &[])) {
            Err(PluginError::Refused { message, .. }) => message,
            other => panic!("expected the kernel report, got {other:?}"),
        };
        assert_eq!(wasm, format!("kernels: {}", kernels::report()));
    }

    /// gp_ucb as a whole in the sandbox against native on the same history. Not bit-for-bit: the
    /// guest's `exp`/`ln` (wasi-libc) differ from glibc's in the last bits (docs/benchmarks.md), so
    /// the first suggestion agrees to ~1e-13 and later ones drift; any difference in the algorithm
    /// would show at once.
    #[test]
    fn gp_ucb_in_the_sandbox_suggests_what_native_does() {
        use alcf_plugin_sdk as sdk;
        use alcf_plugin_sdk::Strategy as _;
        ensure_built();
        let d = 4;
        let f = |x: &[f64]| x.iter().enumerate().map(|(i, v)| (v - 0.1 * (i + 1) as f64).powi(2)).sum::<f64>();
        let mut rng = sdk::Rng::new(7);
        let points: Vec<Vec<f64>> = (0..40).map(|_| rng.unit_point(d)).collect();

        let runtime = PluginRuntime::shared(None).unwrap();
        let loaded = Arc::new(runtime.load(&plugin("gp_ucb")).unwrap());
        let caps = Capabilities::new(Grants::default(), Storage::memory());
        let host_study = study(serde_json::json!({}), d);
        let mut sandboxed =
            SandboxedStrategy::with_capabilities(loaded, &host_study, limits(Duration::from_secs(120), 0), &caps);

        let sdk_space: Vec<sdk::Param> = (0..d).map(|i| sdk::Param::float(&format!("x{i}"), 0.0, 1.0)).collect();
        let mut native_study = sdk::Study::new(sdk_space).with_seed(1);
        native_study.name = "lib".into();
        native_study.objective = "value".into();
        native_study.options = "{}".into();
        let mut native = gp_ucb::GpUcb::new(&native_study).unwrap();

        let params =
            |x: &[f64]| x.iter().enumerate().map(|(i, v)| (format!("x{i}"), Value::Float(*v))).collect::<Vec<_>>();
        let observe_both = |sandboxed: &mut SandboxedStrategy, native: &mut gp_ucb::GpUcb, id: u64, x: &[f64]| {
            let value = f(x);
            let host = Observation {
                trial: id,
                params: host_study.space.validate(&params(x)).unwrap(),
                status: ObservedStatus::Completed,
                value: Some(value),
                metrics: vec![("value".into(), value)],
                curve: Vec::new(),
            };
            block_on(sandboxed.observe(&[host])).unwrap();
            let p: sdk::Params = x
                .iter()
                .enumerate()
                .map(|(i, v)| sdk::Assignment { name: format!("x{i}"), value: sdk::Value::Float(*v) })
                .collect();
            native
                .observe(&[sdk::Outcome {
                    trial: sdk::Trial { id, params: p },
                    status: sdk::Status::Completed,
                    value: Some(value),
                    metrics: vec![("value".into(), value)],
                    curve: Vec::new(),
                }])
                .unwrap();
        };
        block_on(sandboxed.suggest(0, &[])).unwrap();
        for (id, x) in points.iter().enumerate() {
            observe_both(&mut sandboxed, &mut native, id as u64, x);
        }
        for step in 0..3u64 {
            let wasm: Vec<f64> = block_on(sandboxed.suggest(1, &[]))
                .unwrap()
                .remove(0)
                .into_iter()
                .map(|(_, v)| match v {
                    Value::Float(x) => x,
                    other => panic!("{other:?}"),
                })
                .collect();
            let nat: Vec<f64> =
                native.suggest(1, &[]).unwrap().remove(0).iter().map(|a| a.value.as_f64().unwrap()).collect();
            // The last-bit differences grow as they feed the hyperparameter fit and the acquisition
            // optimizer: tight on the first suggestion, looser after.
            let tol = if step == 0 { 1e-9 } else { 1e-4 };
            for (w, n) in wasm.iter().zip(&nat) {
                assert!((w - n).abs() <= tol * n.abs().max(1e-3), "step {step}: sandbox {wasm:?} vs native {nat:?}");
            }
            observe_both(&mut sandboxed, &mut native, 100 + step, &nat);
        }
    }
}
