//! The `llm` capability end to end: `alcf-host run` with llm_guided against the Sophia gateway
//! double (tests/doubles/sophia_gateway.py) on a bench function. What is checked: the study
//! reaches its budget; it survives every error the gateway gives; a resumed study replays
//! recorded answers and sends no request twice; ungranted and over-cap plugins get their typed
//! errors and fall back; and the access token appears nowhere in the study.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use alcf_tests::doubles::{Double, files_containing};
use alcf_tests::{alcf, host_bin, plugin, text, trial_states, wait_until};

const TOKEN: &str = "sophia-test-token-7f3a9c";

struct Study {
    dir: tempfile::TempDir,
    cfg: PathBuf,
}

impl Study {
    /// A bench study (branin, 2 at a time) of llm_guided over the gateway double at `base`.
    /// `extra_llm` lines go into [llm]; `allow` is strategy.allow.
    fn new(name: &str, trials: u32, base: &str, allow: &str, extra_llm: &str, delay_s: f64) -> Study {
        let dir = tempfile::tempdir().unwrap();
        let cfg = dir.path().join("study.toml");
        std::fs::write(
            &cfg,
            format!(
                r#"
[study]
name = "{name}"
trials = {trials}
parallel = 2
seed = 3
root = "studies"

[strategy]
plugin = "{plugin}"
allow = {allow}
[strategy.options]
llm_share = 0.5
n_init = 4

[executor]
kind = "bench"
function = "branin"
delay_s = {delay_s}

[llm]
base_url = "{base}"
model = "meta-llama/Llama-3.3-70B-Instruct"
cold_wait = "20s"
max_retries = 3
attempt_timeout_s = 10
{extra_llm}
"#,
                plugin = plugin("llm_guided").display(),
            ),
        )
        .unwrap();
        Study { dir, cfg }
    }

    fn study_dir(&self, name: &str) -> PathBuf {
        self.dir.path().join("studies").join(name)
    }

    fn cache(&self) -> PathBuf {
        self.dir.path().join("cache")
    }

    fn command(&self, resume: bool) -> Command {
        let mut c = Command::new(host_bin());
        c.args(["run", "--config", self.cfg.to_str().unwrap(), "--quiet"]);
        if resume {
            c.arg("--resume");
        }
        c.env("ALCF_HOST_CACHE", self.cache())
            .env("ALCF_HOST_SOPHIA_TOKEN", TOKEN)
            .env("ALCF_HOST_CONFIG_DIR", self.dir.path().join("config"))
            .env("HOME", self.dir.path());
        c
    }

    fn run(&self) -> std::process::Output {
        self.command(false).output().unwrap()
    }

    fn llm_log(&self, name: &str, args: &[&str]) -> String {
        let root = self.dir.path().join("studies");
        let mut all = vec!["study", "llm-log", name, "--root", root.to_str().unwrap()];
        all.extend_from_slice(args);
        let out = alcf(&all, &self.cache());
        assert!(out.status.success(), "llm-log: {}", text(&out));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

/// (outcome, error) of every llm_call row.
fn calls(study_dir: &Path) -> Vec<(String, Option<String>)> {
    let conn = rusqlite::Connection::open(study_dir.join("study.db")).unwrap();
    let mut stmt = conn.prepare("SELECT outcome, error FROM llm_call ORDER BY id").unwrap();
    stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?))).unwrap().collect::<Result<_, _>>().unwrap()
}

fn completed(study_dir: &Path) -> usize {
    trial_states(study_dir).iter().filter(|t| t.1 == "completed").count()
}

fn host_log(study_dir: &Path) -> String {
    std::fs::read_to_string(study_dir.join("host.log")).unwrap_or_default()
}

#[test]
fn llm_guided_reaches_its_budget_through_the_gateway() {
    let gw = Double::gateway(&["--token", TOKEN, "--answer", "perturb-best", "--seed", "1"]);
    let s = Study::new("guided", 16, &gw.vllm_base(), r#"["log", "llm"]"#, "", 0.0);
    let out = s.run();
    assert!(out.status.success(), "{}", text(&out));
    let dir = s.study_dir("guided");
    assert_eq!(completed(&dir), 16, "{}", text(&out));

    let requests = gw.requests();
    assert!(requests.len() >= 2, "llm_guided asked the LLM only {} times", requests.len());
    let rows = calls(&dir);
    assert_eq!(rows.len(), requests.len(), "one llm_call row per request the server saw: {rows:?}");
    assert!(rows.iter().all(|(o, _)| o == "ok"), "{rows:?}");
    for r in &requests {
        let body = &r["body"];
        let keys: Vec<&str> = body.as_object().unwrap().keys().map(String::as_str).collect();
        for k in &keys {
            assert!(
                ["model", "messages", "temperature", "max_tokens", "response_format"].contains(k),
                "field `{k}` sent: the gateway forbids fields it does not know ({keys:?})"
            );
        }
        assert_eq!(body["response_format"]["type"], "json_schema", "{body}");
    }
    let log = s.llm_log("guided", &[]);
    assert!(log.contains(&format!("{} LLM calls sent (0 failed)", requests.len())), "{log}");
    let full = s.llm_log("guided", &["--full"]);
    assert!(full.contains("--- answer ---") && full.contains("proposals"), "{full}");
    let root = s.dir.path().join("studies");
    let show = text(&alcf(&["study", "show", "guided", "--root", root.to_str().unwrap()], &s.cache()));
    assert!(show.contains(&format!("llm:        {} calls (0 failed, 0 replayed)", requests.len())), "{show}");
    let json: serde_json::Value = serde_json::from_str(&s.llm_log("guided", &["--json"])).unwrap();
    assert_eq!(json.as_array().unwrap().len(), requests.len());
    assert!(json[0]["request"]["messages"].is_array() && json[0]["prompt_tokens"].as_u64().unwrap() > 0);
}

#[test]
fn a_study_survives_every_gateway_error() {
    let gw = Double::gateway(&["--token", TOKEN, "--answer", "perturb-best"]);
    gw.faults(serde_json::json!([
        {"status": 408, "delay_s": 0.2},
        {"status": 429, "retry_after": 1},
        {"status": 503},
        {"status": 202, "retry_after": 1},
        {"status": 500},
        {"slow_s": 1.0},
        {"truncate": true},
        {"malformed": true},
        {"status": 401},
        {"status": 422},
    ]));
    let s = Study::new("weather", 20, &gw.vllm_base(), r#"["log", "llm"]"#, "", 0.0);
    let out = s.run();
    assert!(out.status.success(), "{}", text(&out));
    let dir = s.study_dir("weather");
    assert_eq!(completed(&dir), 20, "every trial completes, whatever the LLM did: {}", text(&out));
    let rows = calls(&dir);
    let failed: Vec<_> = rows.iter().filter(|(o, _)| o == "failed").collect();
    // Retried faults end in an answer; the malformed answer, the 401 (an env token cannot be
    // refreshed) and the 422 end the call, and the plugin falls back to its GP.
    assert!(rows.iter().any(|(o, _)| o == "ok"), "{rows:?}");
    let errors: Vec<&str> = failed.iter().filter_map(|(_, e)| e.as_deref()).collect();
    assert!(errors.iter().any(|e| e.contains("not valid JSON")), "{errors:?}");
    assert!(errors.iter().any(|e| e.contains("alcf-host auth login")), "{errors:?}");
    let log = host_log(&dir);
    assert!(log.contains("falls back") || log.contains("fallback") || log.contains("GP"), "{log}");
}

#[test]
fn a_resumed_study_replays_and_sends_nothing_twice() {
    let gw = Double::gateway(&["--token", TOKEN, "--answer", "perturb-best", "--seed", "2"]);
    let s = Study::new("resumed", 24, &gw.vllm_base(), r#"["log", "llm"]"#, "", 0.25);
    let dir = s.study_dir("resumed");
    let mut child = s.command(false).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
    wait_until(&mut child, Duration::from_secs(120), "2 LLM calls and 8 completed trials", || {
        gw.requests().len() >= 2 && completed(&dir) >= 8
    });
    child.kill().unwrap();
    child.wait().unwrap();
    let before = gw.requests().len();
    let out = s.command(true).output().unwrap();
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(completed(&dir), 24);
    let requests = gw.requests();
    assert!(requests.len() > before, "the resumed run asked the LLM again");
    // The log is written ahead of each request: the one call the kill may have caught in flight
    // stays `sent` (its answer died with the host), and only that request may be sent again.
    let conn = rusqlite::Connection::open(dir.join("study.db")).unwrap();
    let in_flight: Vec<serde_json::Value> = conn
        .prepare("SELECT request FROM llm_call WHERE outcome = 'sent'")
        .unwrap()
        .query_map([], |r| r.get::<_, String>(0))
        .unwrap()
        .map(|r| serde_json::from_str(&r.unwrap()).unwrap())
        .collect();
    assert!(in_flight.len() <= 1, "one host had at most one call in flight: {in_flight:?}");
    // Answered requests only: a retried attempt (none are provoked here) would repeat a body legitimately.
    let bodies: Vec<&serde_json::Value> = requests.iter().filter(|r| r["status"] == 200).map(|r| &r["body"]).collect();
    for (i, b) in bodies.iter().enumerate() {
        let again = bodies[..i].contains(b);
        assert!(
            !again || in_flight.contains(b),
            "a request whose answer was recorded was sent twice: the server must never be billed twice"
        );
    }
    // Every request the server saw is in the log. The log may hold one more: a `sent` row is
    // written before its request leaves, so a kill between the two leaves a row the server
    // never saw (the row says "maybe sent"; it counts against the caps all the same).
    let rows = calls(&dir);
    let logged = rows.iter().filter(|(o, _)| o == "ok" || o == "failed" || o == "sent").count();
    assert!(
        requests.len() <= logged && logged - requests.len() <= in_flight.len(),
        "every request the server saw is in the log, and only a `sent` row may be extra: {} requests, {rows:?}",
        requests.len()
    );
}

#[test]
fn ungranted_and_over_cap_plugins_get_their_typed_errors() {
    let gw = Double::gateway(&["--token", TOKEN, "--answer", "random"]);
    // Not granted: the plugin's calls never leave the host; the run says so and completes.
    let s = Study::new("ungranted", 10, &gw.vllm_base(), r#"["log"]"#, "", 0.0);
    let out = s.command(false).args::<[&str; 0], &str>([]).output().unwrap();
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(completed(&s.study_dir("ungranted")), 10);
    assert_eq!(gw.requests().len(), 0, "an ungranted plugin reached the LLM");
    let log = host_log(&s.study_dir("ungranted"));
    assert!(log.contains("llm.chat") && log.contains("not granted"), "{log}");

    // Over the cap: exactly max_calls requests reach the server, the rest are refused with the cap named.
    let s = Study::new("capped", 24, &gw.vllm_base(), r#"["log", "llm"]"#, "max_calls = 2", 0.0);
    let out = s.run();
    assert!(out.status.success(), "{}", text(&out));
    let dir = s.study_dir("capped");
    assert_eq!(completed(&dir), 24);
    assert_eq!(gw.requests().len(), 2, "max_calls = 2 must let exactly 2 calls through");
    let rows = calls(&dir);
    let refused: Vec<_> = rows.iter().filter(|(o, _)| o == "refused").collect();
    assert!(!refused.is_empty(), "{rows:?}");
    assert!(refused.iter().all(|(_, e)| e.as_deref().unwrap_or("").contains("max_calls = 2")), "{refused:?}");

    // A model outside [llm] models is refused before sending.
    let s = Study::new(
        "model",
        8,
        &gw.vllm_base(),
        r#"["log", "llm"]"#,
        "models = [\"meta-llama/Llama-3.3-70B-Instruct\"]",
        0.0,
    );
    let text_cfg =
        std::fs::read_to_string(&s.cfg).unwrap().replace("n_init = 4", "n_init = 4\nmodel = \"other/model\"");
    std::fs::write(&s.cfg, text_cfg).unwrap();
    let before = gw.requests().len();
    let out = s.run();
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(gw.requests().len(), before, "a model not allowed reached the server");
    let rows = calls(&s.study_dir("model"));
    assert!(rows.iter().any(|(o, e)| o == "refused" && e.as_deref().unwrap_or("").contains("not allowed")), "{rows:?}");
}

#[test]
fn the_token_appears_nowhere_in_the_study() {
    let gw = Double::gateway(&["--token", TOKEN, "--answer", "perturb-best"]);
    gw.faults(serde_json::json!([{"status": 401}, {"status": 429, "retry_after": 0}]));
    let s = Study::new("secret", 12, &gw.vllm_base(), r#"["log", "llm"]"#, "", 0.0);
    let out = s.run();
    assert!(out.status.success(), "{}", text(&out));
    assert!(!text(&out).contains(TOKEN), "the token was printed");
    assert!(gw.requests().iter().all(|r| r["authorization"] == true), "every request carried the token");
    let leaks = files_containing(s.dir.path(), TOKEN.as_bytes());
    // The config directory is where tokens live; nothing else may hold one.
    let leaks: Vec<_> = leaks.into_iter().filter(|p| !p.starts_with(s.dir.path().join("config"))).collect();
    assert!(leaks.is_empty(), "the token was written to {leaks:?}");
    for args in [&[][..], &["--full"][..], &["--json"][..]] {
        assert!(!s.llm_log("secret", args).contains(TOKEN));
    }
}

#[test]
fn a_globus_login_is_refreshed_for_sophia_and_a_revoked_one_says_to_log_in() {
    const SOPHIA_RS: &str = "681c10cc-f684-4540-bcd7-0b4df3bc26ef";
    let user = crate::auth::User::new();
    // 60-second access tokens: inside the 5-minute margin, so the first use refreshes; the refresh
    // hands out 48-hour ones.
    let globus = crate::auth::Globus::start(user.dir.path(), 60);
    let (_, out) = user.login(&globus, &[]);
    assert!(out.status.success(), "{}", text(&out));
    let logged_in = user.stored_access(SOPHIA_RS);
    assert_eq!(globus.http("POST", "/_control/ttl", r#"{"access_ttl": 172800}"#).0, 200);
    let gw = Double::gateway(&["--auth-state", globus.state().to_str().unwrap(), "--answer", "perturb-best"]);

    let s = Study::new("globus", 12, &gw.vllm_base(), r#"["log", "llm"]"#, "", 0.0);
    let run = |resume: bool| {
        let mut c = user.cmd(&globus, &["run", "--config", s.cfg.to_str().unwrap(), "--quiet"]);
        if resume {
            c.arg("--resume");
        }
        c.env("ALCF_HOST_CACHE", s.cache()).stdin(Stdio::null()).output().unwrap()
    };
    let out = run(false);
    assert!(out.status.success(), "{}", text(&out));
    let dir = s.study_dir("globus");
    assert_eq!(completed(&dir), 12);
    let refreshed = user.stored_access(SOPHIA_RS);
    assert_ne!(refreshed, logged_in, "the near-expiry token was refreshed before use");
    let requests = gw.requests();
    assert!(!requests.is_empty() && requests.iter().all(|r| r["status"] == 200), "{requests:?}");
    assert!(requests.iter().all(|r| r["token_prefix"] == refreshed[..4]), "every call used the refreshed token");
    assert!(calls(&dir).iter().all(|(o, _)| o == "ok"));
    assert!(files_containing(&dir, refreshed.as_bytes()).is_empty(), "the token is in the study");

    // The refresh token revoked and the access token expired: the run says what to do, the
    // plugin falls back, and the study still reaches its (raised) budget.
    assert_eq!(globus.http("POST", "/_control/revoke_refresh", "{}").0, 200);
    let store = user.config_dir().join("tokens.json");
    let mut v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&store).unwrap()).unwrap();
    v["tokens"][SOPHIA_RS]["expires_at_seconds"] = serde_json::json!(1);
    std::fs::write(&store, v.to_string()).unwrap();
    let cfg_text = std::fs::read_to_string(&s.cfg).unwrap().replace("trials = 12", "trials = 20");
    std::fs::write(&s.cfg, cfg_text).unwrap();
    let before = gw.requests().len();
    let mut c = user.cmd(&globus, &["run", "--config", s.cfg.to_str().unwrap(), "--resume"]);
    let out = c.env("ALCF_HOST_CACHE", s.cache()).stdin(Stdio::null()).output().unwrap();
    let t = text(&out);
    assert!(out.status.success(), "{t}");
    assert!(t.contains("alcf-host auth login"), "the run must say to log in again: {t}");
    assert_eq!(completed(&dir), 20);
    assert_eq!(gw.requests().len(), before, "no call was sent without a valid token");
    let rows = calls(&dir);
    assert!(rows.iter().any(|(o, e)| o == "failed" && e.as_deref().unwrap_or("").contains("auth login")), "{rows:?}");
}

#[test]
fn a_cold_model_waits_outside_the_plugins_deadline_and_ctrl_c_still_answers() {
    let gw = Double::gateway(&["--token", TOKEN, "--answer", "perturb-best"]);
    // Every chat request answers 408 after 0.3 s: the model stays cold for the whole test.
    gw.faults(serde_json::json!(vec![serde_json::json!({"status": 408, "delay_s": 0.3}); 200]));
    let s = Study::new("cold", 40, &gw.vllm_base(), r#"["log", "llm"]"#, "", 0.5);
    // A 1-second plugin deadline: if the wait counted against it, the plugin would be killed.
    let text_cfg = std::fs::read_to_string(&s.cfg)
        .unwrap()
        .replace("cold_wait = \"20s\"", "cold_wait = \"120s\"")
        .replace("allow = [\"log\", \"llm\"]", "allow = [\"log\", \"llm\"]\nsuggest_timeout_s = 1");
    std::fs::write(&s.cfg, text_cfg).unwrap();
    let dir = s.study_dir("cold");
    let mut child = s.command(false).stdout(Stdio::null()).stderr(Stdio::piped()).spawn().unwrap();
    wait_until(&mut child, Duration::from_secs(60), "the plugin asking the LLM", || gw.requests().len() >= 4);
    // The LLM call is waiting now; trials started before it finish and are recorded meanwhile.
    let waiting_since = completed(&dir);
    std::thread::sleep(Duration::from_millis(1500));
    assert!(child.try_wait().unwrap().is_none());
    let states = trial_states(&dir);
    assert!(
        states.iter().all(|t| t.1 != "running") && completed(&dir) >= waiting_since,
        "trials finishing during the wait are recorded: {states:?}"
    );
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let stopped = Instant::now();
    let out = child.wait_with_output().unwrap();
    assert!(stopped.elapsed() < Duration::from_secs(10), "Ctrl-C took {:?}", stopped.elapsed());
    assert_eq!(out.status.code(), Some(130), "{}", String::from_utf8_lossy(&out.stderr));
    let log = host_log(&dir);
    assert!(log.contains("408"), "the wait is in host.log: {log}");
    assert!(!log.contains("deadline"), "the plugin's deadline ran during the host's wait: {log}");
}
