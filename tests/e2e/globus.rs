//! The `globus` executor's wire format against the real `globus-compute-sdk` (4.19.0, installed by
//! scripts/setup-globus-sdk.sh into its own venv, which this test runs when it is missing): what
//! the Rust side packs (the registered function, a task's arguments) must decode with the SDK's own
//! serializer and run, the SDK's own `Batch.add` payload must unpack on the Rust side to the same
//! values, and the SDK's serialized results (bare NaN included) must parse.

use std::path::PathBuf;
use std::process::Command;
use std::sync::Once;

use alcf_host::executor::globus::wire;
use alcf_tests::repo;

static SETUP: Once = Once::new();

/// The SDK venv's python, set up on first use.
fn sdk_python() -> PathBuf {
    SETUP.call_once(|| {
        let status = Command::new("bash").arg("scripts/setup-globus-sdk.sh").current_dir(repo()).status().unwrap();
        assert!(status.success(), "scripts/setup-globus-sdk.sh failed");
    });
    let venv = std::env::var_os("ALCF_GLOBUS_SDK").map_or_else(|| repo().join("target/globus-sdk"), PathBuf::from);
    venv.join("bin/python")
}

fn python(code: &str, input: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("input.txt");
    std::fs::write(&file, input).unwrap();
    let out = Command::new(sdk_python()).args(["-c", code]).arg(&file).output().unwrap();
    assert!(out.status.success(), "python: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn what_the_host_packs_is_what_the_sdk_makes_and_decodes() {
    let source = "def run_trial(cmd, trial_dir, walltime=None):\n    return {'cmd': cmd, 'dir': trial_dir, 'walltime': walltime, 'note': 'é日本'}\n";
    let args = serde_json::json!(["python3 train.py --lr 0.01 # é", "/flare/p/trials/00042"]);
    let kwargs = serde_json::json!({"walltime": 3600});
    let input = serde_json::json!({
        "code": wire::function_code("run_trial", source),
        "payload": wire::payload(&args, &kwargs),
        "source": source,
        "args": args,
        "kwargs": kwargs,
    });
    let out = python(
        r#"
import json, sys
from globus_compute_sdk.serialize import ComputeSerializer, JSONData, PureSourceTextInspect
from globus_compute_sdk.serialize.facade import ComputeSerializer as Facade
from globus_compute_sdk.sdk.batch import Batch
d = json.load(open(sys.argv[1], encoding="utf-8"))
ser = ComputeSerializer(strategy_code=PureSourceTextInspect(), strategy_data=JSONData())
# The function: the SDK unpacks our function_code and rebuilds a callable from our source.
[fn_buf] = ser.unpack_buffers(d["code"])
fn = ser.deserialize(fn_buf)
# The arguments: our payload equals what Batch.add makes with JSONData, and decodes to our values.
b = Batch(task_group_id=None, serializer=ser)
b.add("00000000-0000-0000-0000-000000000000", args=tuple(d["args"]), kwargs=d["kwargs"])
sdk_payload = b.prepare()["tasks"]["00000000-0000-0000-0000-000000000000"][0]
a_buf, k_buf = ser.unpack_buffers(d["payload"])
args, kwargs = ser.deserialize(a_buf), ser.deserialize(k_buf)
result = fn(*args, **kwargs)
print(json.dumps({"sdk_payload": sdk_payload, "result": result,
                  "serialized_result": ser.serialize({"returncode": 0, "loss": float("nan"), "note": "é"})}))
"#,
        &input.to_string(),
    );
    let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    // Batch.add's own payload (Python's json.dumps: ", " separators, \u escapes) unpacks on the
    // host's side to the same values; byte equality is not needed, the endpoint only decodes.
    let sdk = wire::unpack(v["sdk_payload"].as_str().unwrap()).unwrap();
    assert_eq!(sdk.len(), 2, "{sdk:?}");
    let decoded: Vec<serde_json::Value> =
        sdk.iter().map(|b| serde_json::from_str(b.strip_prefix("11\n").expect("JSONData header")).unwrap()).collect();
    assert_eq!(decoded, [args.clone(), kwargs.clone()]);
    assert_eq!(
        v["result"],
        serde_json::json!({"cmd": args[0], "dir": args[1], "walltime": 3600, "note": "é日本"}),
        "the SDK ran the host's function with the host's arguments"
    );
    let parsed = wire::json_result(v["serialized_result"].as_str().unwrap()).unwrap();
    assert_eq!(parsed, serde_json::json!({"returncode": 0, "loss": null, "note": "é"}));
}

/// The host's real trial function and a real task of the executor, decoded and run by the SDK's
/// own serializer (as an endpoint would): the function runs the trial program in its directory
/// with the setup lines and the environment, and its outcome, serialized by the SDK, is the
/// report the executor expects.
#[test]
fn the_sdk_runs_the_hosts_trial_function_and_its_outcome_reads_back() {
    use alcf_host::auth::{TokenFuture, TokenSource};
    use alcf_host::config::{Config, ExecutorConfig};
    use alcf_host::executor::globus::executor::{FUNCTION_NAME, GlobusExecutor, TRIAL_SOURCE, outcome_report};
    use alcf_host::executor::{TrialSpec, job_name};
    use alcf_host::space::{Assignment, Value};

    struct NoTokens;
    impl TokenSource for NoTokens {
        fn token(&self) -> TokenFuture<'_, Result<Option<String>, String>> {
            Box::pin(async { Ok(None) })
        }
        fn refresh(&self, _: String) -> TokenFuture<'_, Result<String, String>> {
            Box::pin(async { Err("no refresh".into()) })
        }
    }

    let dir = tempfile::tempdir().unwrap();
    let code = dir.path().join("code");
    std::fs::create_dir_all(&code).unwrap();
    std::fs::write(
        code.join("train.py"),
        r#"
import json, os, sys
x = float(sys.argv[sys.argv.index("--x") + 1])
json.dump({"setup": os.environ.get("FROM_SETUP"), "greeting": os.environ.get("GREETING"), "argv": sys.argv[1:],
           "params": json.load(open(os.environ["ALCF_PARAMS"]))}, open("seen.json", "w"))
with open("metrics.jsonl", "w") as f:
    for e in range(4):
        f.write(json.dumps({"epoch": e, "acc": 0.1 * e}) + "\n")
json.dump({"loss": (x - 0.3) ** 2, "acc": float("nan")}, open("result.json", "w"))
print("trained")
"#,
    )
    .unwrap();
    let cfg_path = dir.path().join("g.toml");
    std::fs::write(
        &cfg_path,
        format!(
            r#"
[executor]
kind = "globus"
endpoint = "5c6f1a2e-0000-4000-8000-00000000c0c0"
remote_dir = "{flare}"
code_dir = "{code}"
command = ["python3", "{{config_dir}}/train.py", "--x", "{{x}}", "--label", "it's a $HOME; `x`"]
env = {{ GREETING = "é {{x}}" }}
setup = ["export FROM_SETUP=yes"]
timeout_s = 60

[space]
x = {{ type = "float", low = 0.0, high = 1.0 }}
"#,
            flare = dir.path().join("flare").display(),
            code = code.display()
        ),
    )
    .unwrap();
    let config = Config::load(&cfg_path).unwrap();
    let space = config.space.clone().unwrap();
    let Some(ExecutorConfig::Globus(g)) = config.executor else { panic!("not globus") };
    let exec = GlobusExecutor::with_tokens(*g, &space, "sdk", std::sync::Arc::new(NoTokens)).unwrap();
    let params = Assignment { values: vec![("x".into(), Value::Float(0.25))] };
    let spec = TrialSpec {
        id: 7,
        attempt: 1,
        params_json: params.to_json(&space),
        params,
        dir: dir.path().join("unused"),
        job_name: job_name("sdk", 7, 1),
        slot: 0,
        parent: None,
    };
    let input = serde_json::json!({
        "code": wire::function_code(FUNCTION_NAME, TRIAL_SOURCE),
        "payload": exec.task_payload(&spec).unwrap(),
    });
    let out = python(
        r#"
import json, sys
from globus_compute_sdk.serialize import ComputeSerializer, JSONData, PureSourceTextInspect
d = json.load(open(sys.argv[1], encoding="utf-8"))
ser = ComputeSerializer(strategy_code=PureSourceTextInspect(), strategy_data=JSONData())
[fn_buf] = ser.unpack_buffers(d["code"])
fn = ser.deserialize(fn_buf)
a_buf, k_buf = ser.unpack_buffers(d["payload"])
outcome = fn(*ser.deserialize(a_buf), **ser.deserialize(k_buf))
print(ser.serialize(outcome))
"#,
        &input.to_string(),
    );
    let outcome = wire::json_result(out.trim_end_matches('\n')).unwrap();
    let trial_dir = dir.path().join("flare/sdk/trials/000007");
    let seen: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(trial_dir.join("seen.json")).unwrap()).unwrap();
    assert_eq!(seen["setup"], "yes", "{seen}");
    assert_eq!(seen["greeting"], "é 0.25", "{seen}");
    assert_eq!(seen["argv"], serde_json::json!(["--x", "0.25", "--label", "it's a $HOME; `x`"]), "{seen}");
    assert_eq!(seen["params"], serde_json::json!({"x": 0.25}), "{seen}");
    assert_eq!(outcome["job"], "sdk.t7.a1");
    let report = outcome_report(&outcome, Some(std::time::Duration::from_secs(60)), 7);
    assert_eq!(report.failure, None, "{outcome}");
    assert_eq!(report.metrics.get("loss").copied(), Some((0.25f64 - 0.3).powi(2)), "{report:?}");
    assert_eq!(report.curve.len(), 4, "{report:?}");
    // `acc` is NaN in result.json: listed as not a number, not silently taken from the curve.
    assert!(report.non_numeric.iter().any(|(k, v)| k == "acc" && v == "NaN"), "{report:?}");
    assert!(trial_dir.join("outcome.json").exists());
}

// ---- studies through the Globus Compute double ----------------------------------------------

mod study {
    use std::collections::BTreeMap;
    use std::path::{Path, PathBuf};
    use std::process::{Child, Command, Output, Stdio};
    use std::time::{Duration, Instant};

    use alcf_tests::doubles::Double;
    use alcf_tests::{finish, host_bin, plugin, text, trial_states, try_trial_states};

    const TOKEN: &str = "compute-test-token";

    /// The trial program, run by the double's workers: the trial protocol, plus a ledger line per
    /// run (trial, attempt, the tile it saw) so tests can count runs.
    const TRIAL: &str = r#"
import json, os, sys, time
a = dict(zip(sys.argv[1::2], sys.argv[2::2]))
x = float(a["--x"])
mode = a.get("--mode", "ok")
with open(a["--ledger"], "a") as f:
    f.write(json.dumps({"trial": int(os.environ["ALCF_TRIAL_ID"]), "attempt": int(os.environ["ALCF_TRIAL_ATTEMPT"]),
                        "tile": os.environ.get("ZE_AFFINITY_MASK"), "cwd": os.getcwd(),
                        "dir": os.environ["ALCF_TRIAL_DIR"]}) + "\n")
time.sleep(float(a.get("--sleep", "0")))
if mode == "slow":
    time.sleep(60)
if mode == "fail":
    sys.stderr.write("bad hyperparameters: x=%s\n" % x)
    sys.exit(3)
with open("metrics.jsonl", "w") as f:
    for e in range(3):
        f.write(json.dumps({"epoch": e, "loss": (x - 0.3) ** 2 + 1.0 / (e + 1)}) + "\n")
with open("result.json", "w") as f:
    json.dump({"loss": (x - 0.3) ** 2, "seen_tile": float(os.environ.get("ZE_AFFINITY_MASK", "-1"))}, f)
"#;

    pub struct Rig {
        dir: tempfile::TempDir,
        pub api: Double,
    }

    pub struct Study<'a> {
        pub name: &'a str,
        pub trials: u32,
        pub parallel: u32,
        /// Extra `[executor]` lines.
        pub executor: &'a str,
        /// The client's rate limit lines.
        pub rate: &'a str,
        /// Extra arguments of the trial program.
        pub args: &'a str,
        /// Extra `[study]` lines and tables after `[space]`.
        pub study: &'a str,
        pub tail: &'a str,
    }

    impl Default for Study<'_> {
        fn default() -> Self {
            Study {
                name: "gc",
                trials: 8,
                parallel: 4,
                executor: "",
                rate: "max_requests = 40\nrate_window_s = 1",
                args: "",
                study: "",
                tail: "",
            }
        }
    }

    impl Rig {
        /// A double with 4 workers on tiles 0..3, a fast rate window, and `args`.
        pub fn new(args: &[&str]) -> Rig {
            let dir = tempfile::tempdir().unwrap();
            let work = dir.path().join("endpoint");
            std::fs::create_dir_all(dir.path().join("code")).unwrap();
            std::fs::create_dir_all(&work).unwrap();
            std::fs::write(dir.path().join("code/trial.py"), TRIAL).unwrap();
            let mut all = vec!["--token", TOKEN, "--workers", "4", "--accelerators", "0,1,2,3", "--work-dir"];
            let work = work.display().to_string();
            all.push(&work);
            let has_rate = args.contains(&"--rate");
            if !has_rate {
                all.extend(["--rate", "40/1"]);
            }
            all.extend_from_slice(args);
            Rig { api: Double::compute(&all), dir }
        }

        pub fn path(&self) -> &Path {
            self.dir.path()
        }

        pub fn ledger(&self) -> Vec<serde_json::Value> {
            std::fs::read_to_string(self.path().join("ledger.jsonl"))
                .unwrap_or_default()
                .lines()
                .map(|l| serde_json::from_str(l).unwrap())
                .collect()
        }

        /// Runs per trial id.
        pub fn runs(&self) -> BTreeMap<u64, usize> {
            let mut m = BTreeMap::new();
            for l in self.ledger() {
                *m.entry(l["trial"].as_u64().unwrap()).or_default() += 1;
            }
            m
        }

        pub fn study_dir(&self, name: &str) -> PathBuf {
            self.path().join("studies").join(name)
        }

        /// The trial directory on the "shared file system".
        pub fn remote_trial(&self, name: &str, id: u64) -> PathBuf {
            self.path().join("flare").join(name).join(format!("trials/{id:06}"))
        }

        pub fn config(&self, s: &Study) -> PathBuf {
            let text = format!(
                r#"
[study]
name = "{name}"
objective = "loss"
direction = "minimize"
trials = {trials}
parallel = {parallel}
seed = 11
root = "studies"
{study}

[strategy]
plugin = "{plugin}"

[executor]
kind = "globus"
endpoint = "5c6f1a2e-0000-4000-8000-00000000a0a0"
base_url = "{url}"
remote_dir = "{flare}"
code_dir = "{code}"
command = ["python3", "{{config_dir}}/trial.py", "--x", "{{x}}", "--ledger", "{ledger}"{args}]
setup = ["export FROM_SETUP=1"]
poll_interval_s = 0.2
{rate}
{executor}

[space]
x = {{ type = "float", low = 0.0, high = 1.0 }}
{tail}
"#,
                name = s.name,
                trials = s.trials,
                parallel = s.parallel,
                study = s.study,
                plugin = plugin("random").display(),
                url = self.api.url(),
                flare = self.path().join("flare").display(),
                code = self.path().join("code").display(),
                ledger = self.path().join("ledger.jsonl").display(),
                args = s.args,
                executor = s.executor,
                rate = s.rate,
                tail = s.tail,
            );
            let path = self.path().join(format!("{}.toml", s.name));
            std::fs::write(&path, text).unwrap();
            path
        }

        fn command(&self, args: &[&str]) -> Command {
            let mut c = Command::new(host_bin());
            c.args(args)
                .current_dir(self.path())
                .env("ALCF_HOST_CACHE", self.path().join("cache"))
                .env("ALCF_HOST_CONFIG_DIR", self.path().join("config"))
                .env("ALCF_HOST_COMPUTE_TOKEN", TOKEN);
            c
        }

        pub fn run(&self, cfg: &Path, extra: &[&str]) -> Output {
            let mut args = vec!["run", "--config", cfg.to_str().unwrap(), "--quiet"];
            args.extend_from_slice(extra);
            self.command(&args).output().unwrap()
        }

        pub fn spawn(&self, cfg: &Path, extra: &[&str]) -> Child {
            let mut args = vec!["run", "--config", cfg.to_str().unwrap(), "--quiet"];
            args.extend_from_slice(extra);
            self.command(&args).stdout(Stdio::null()).stderr(Stdio::piped()).spawn().unwrap()
        }

        pub fn show(&self, name: &str) -> serde_json::Value {
            let out = self.command(&["study", "show", name, "--root", "studies", "--json"]).output().unwrap();
            assert!(out.status.success(), "{}", text(&out));
            serde_json::from_slice(&out.stdout).unwrap()
        }

        pub fn host_log(&self, name: &str) -> String {
            std::fs::read_to_string(self.study_dir(name).join("host.log")).unwrap_or_default()
        }

        pub fn wait_for(&self, limit: Duration, what: &str, done: impl Fn(&Rig) -> bool) {
            let start = Instant::now();
            while !done(self) {
                assert!(start.elapsed() < limit, "timed out waiting for {what}");
                std::thread::sleep(Duration::from_millis(100));
            }
        }

        pub fn completed(&self, name: &str) -> usize {
            try_trial_states(&self.study_dir(name)).map_or(0, |t| t.iter().filter(|(_, s, _)| s == "completed").count())
        }

        /// Requests to a route (by path suffix), with their status.
        pub fn requests_to(&self, suffix: &str) -> Vec<serde_json::Value> {
            self.api
                .requests()
                .into_iter()
                .filter(|r| r["path"].as_str().is_some_and(|p| p.ends_with(suffix)))
                .collect()
        }
    }

    /// 8 trials, 4 at a time, through the loopback API: the budget is reached, every trial ran
    /// once on a tile the endpoint's worker gave it, its curve and objective came back, the
    /// function was registered once, and each batch of trials was one submit request.
    #[test]
    fn a_study_reaches_its_budget_through_the_api() {
        let rig = Rig::new(&[]);
        let cfg = rig.config(&Study::default());
        let out = rig.run(&cfg, &[]);
        assert!(out.status.success(), "{}", text(&out));
        let states = trial_states(&rig.study_dir("gc"));
        assert_eq!(states.iter().filter(|(_, s, _)| s == "completed").count(), 8, "{states:?}");
        assert!(rig.runs().values().all(|n| *n == 1), "{:?}", rig.runs());
        for l in rig.ledger() {
            let tile = l["tile"].as_str().unwrap_or_else(|| panic!("no tile: {l}"));
            assert!(["0", "1", "2", "3"].contains(&tile), "{l}");
            // The trial ran in its own directory on the shared file system.
            let id = l["trial"].as_u64().unwrap();
            assert_eq!(Path::new(l["cwd"].as_str().unwrap()), rig.remote_trial("gc", id), "{l}");
            assert!(rig.remote_trial("gc", id).join("outcome.json").exists());
        }
        let show = rig.show("gc");
        for t in show["trials"].as_array().unwrap() {
            let x = t["params"]["x"].as_f64().unwrap();
            assert!((t["value"].as_f64().unwrap() - (x - 0.3f64).powi(2)).abs() < 1e-12, "{t}");
            assert!(t["metrics"]["seen_tile"].as_f64().unwrap() >= 0.0, "{t}");
        }
        assert_eq!(rig.requests_to("/v3/functions").len(), 1);
        let submits = rig.requests_to("/submit");
        assert!(submits.len() < 8, "{} submit requests for 8 trials", submits.len());
        let all = rig.api.requests();
        assert!(all.iter().all(|r| r["status"] == 200), "{all:?}");
        // The function id is kept in the study: a second study run of the same host registers none.
        let log = rig.host_log("gc");
        assert!(log.contains("registered the trial function as"), "{log}");
        assert!(log.contains("requests to Globus Compute"), "{log}");
    }

    /// The host is SIGKILLed with tasks in flight; while it is gone they finish on the endpoint,
    /// and `--resume` collects every one of them: no trial runs twice.
    #[test]
    fn a_killed_host_resumes_and_collects_every_task() {
        let rig = Rig::new(&[]);
        let cfg = rig.config(&Study { name: "killed", args: r#", "--sleep", "1.0""#, ..Study::default() });
        let mut child = rig.spawn(&cfg, &[]);
        rig.wait_for(Duration::from_secs(60), "2 completed trials", |r| r.completed("killed") >= 2);
        // Tasks in flight right now: submitted, not collected.
        rig.wait_for(Duration::from_secs(30), "tasks in flight", |r| {
            try_trial_states(&r.study_dir("killed")).is_ok_and(|t| t.iter().any(|(_, s, _)| s == "running"))
        });
        child.kill().unwrap();
        child.wait().unwrap();
        let before = trial_states(&rig.study_dir("killed"));
        let running = before.iter().filter(|(_, s, _)| s == "running").count();
        assert!(running > 0, "{before:?}");
        std::thread::sleep(Duration::from_millis(1500));
        let out = rig.run(&cfg, &["--resume"]);
        assert!(out.status.success(), "{}", text(&out));
        let after = trial_states(&rig.study_dir("killed"));
        assert_eq!(after.iter().filter(|(_, s, _)| s == "completed").count(), 8, "{after:?}");
        assert!(rig.runs().values().all(|n| *n == 1), "a trial ran twice: {:?}", rig.runs());
        // The function registered by the first process was reused by the second.
        assert_eq!(rig.requests_to("/v3/functions").len(), 1);
    }

    /// Results abandoned by the service while the host was away (a result TTL of 1 s here, 30
    /// minutes on the real service) are read back from the trials' outcome.json: no re-run. A
    /// trial whose outcome.json is gone too runs again.
    #[test]
    fn lost_results_are_recovered_or_rerun() {
        let rig = Rig::new(&["--result-ttl", "1"]);
        let cfg = rig.config(&Study {
            name: "lost",
            trials: 4,
            parallel: 4,
            args: r#", "--sleep", "1.5""#,
            ..Study::default()
        });
        let mut child = rig.spawn(&cfg, &[]);
        rig.wait_for(Duration::from_secs(30), "4 running trials", |r| {
            try_trial_states(&r.study_dir("lost"))
                .is_ok_and(|t| t.iter().filter(|(_, s, _)| s == "running").count() == 4)
        });
        child.kill().unwrap();
        child.wait().unwrap();
        // Every trial ends on the endpoint, then its result is abandoned.
        rig.wait_for(Duration::from_secs(30), "4 outcomes", |r| {
            (1..=4).all(|id| r.remote_trial("lost", id).join("outcome.json").exists())
        });
        std::thread::sleep(Duration::from_millis(2500));
        std::fs::remove_file(rig.remote_trial("lost", 2).join("outcome.json")).unwrap();
        let out = rig.run(&cfg, &["--resume"]);
        assert!(out.status.success(), "{}", text(&out));
        let states = trial_states(&rig.study_dir("lost"));
        assert_eq!(states.iter().filter(|(_, s, _)| s == "completed").count(), 4, "{states:?}");
        let runs = rig.runs();
        assert_eq!(runs[&2], 2, "trial 2 had no outcome.json left: it runs again: {runs:?}");
        assert!([1, 3, 4].iter().all(|id| runs[id] == 1), "recovered trials ran again: {runs:?}");
        let log = rig.host_log("lost");
        assert!(log.contains("is lost") && log.contains("30 minutes"), "{log}");
        assert_eq!(log.matches("recovered from its outcome.json").count(), 3, "{log}");
    }

    /// Ctrl-C once detaches (exit 130) and `--resume` collects the tasks that ran on; Ctrl-C twice
    /// records the running trials cancelled, says their tasks cannot be stopped, and a resume runs
    /// them again (after the cancelled runs end: one run per trial directory at a time).
    #[test]
    fn ctrl_c_detaches_and_twice_cancels() {
        let rig = Rig::new(&[]);
        let running = |name: &'static str| {
            move |r: &Rig| {
                try_trial_states(&r.study_dir(name))
                    .is_ok_and(|t| t.iter().filter(|(_, s, _)| s == "running").count() == 4)
            }
        };
        let sigint = |child: &Child| unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGINT) };

        let cfg = rig.config(&Study { name: "once", trials: 4, args: r#", "--sleep", "2""#, ..Study::default() });
        let mut child = rig.spawn(&cfg, &[]);
        rig.wait_for(Duration::from_secs(30), "4 running trials", running("once"));
        sigint(&child);
        let (status, err) = finish(&mut child);
        assert_eq!(status.code(), Some(130), "{err}");
        let out = rig.run(&cfg, &["--resume"]);
        assert!(out.status.success(), "{}", text(&out));
        assert_eq!(rig.completed("once"), 4);
        let once: Vec<u64> = rig
            .ledger()
            .iter()
            .filter(|l| l["dir"].as_str().unwrap().contains("/once/"))
            .map(|l| l["trial"].as_u64().unwrap())
            .collect();
        assert_eq!(once.len(), 4, "a detached trial ran again: {once:?}");

        let cfg = rig.config(&Study { name: "twice", trials: 4, args: r#", "--sleep", "2""#, ..Study::default() });
        let mut child = rig.spawn(&cfg, &[]);
        rig.wait_for(Duration::from_secs(30), "4 running trials", running("twice"));
        sigint(&child);
        std::thread::sleep(Duration::from_millis(500));
        sigint(&child);
        let (status, err) = finish(&mut child);
        assert!(!status.success(), "{err}");
        let states = trial_states(&rig.study_dir("twice"));
        assert!(states.iter().all(|(_, s, _)| s == "cancelled"), "{states:?}");
        assert!(rig.host_log("twice").contains("cannot stop a task once submitted"), "{}", rig.host_log("twice"));
        let out = rig.run(&cfg, &["--resume"]);
        assert!(out.status.success(), "{}", text(&out));
        assert_eq!(rig.completed("twice"), 4);
        let twice: Vec<serde_json::Value> =
            rig.ledger().into_iter().filter(|l| l["dir"].as_str().unwrap().contains("/twice/")).collect();
        assert_eq!(twice.iter().filter(|l| l["attempt"] == 2).count(), 4, "{twice:?}");
        // The cancelled run ended on the endpoint, and its directory was moved aside whole.
        assert!(rig.path().join("flare/twice/trials/000001.attempt-1/result.json").exists());
    }

    /// An endpoint that is offline pauses submission with the one line that says how to start
    /// it; once it is online the study goes on to its budget.
    #[test]
    fn an_offline_endpoint_pauses_and_continues() {
        let rig = Rig::new(&["--offline"]);
        let cfg = rig.config(&Study { name: "offline", trials: 4, ..Study::default() });
        let mut child = rig.spawn(&cfg, &[]);
        rig.wait_for(Duration::from_secs(30), "the pause", |r| {
            r.completed("offline") == 0
                && r.host_log("offline").contains("globus-compute-endpoint start")
                && r.requests_to("/status").len() >= 3
        });
        assert!(rig.requests_to("/submit").is_empty(), "submitted to an offline endpoint");
        let (status, body) = rig.api.post("/_control/endpoint", &serde_json::json!({"online": true}));
        assert_eq!(status, 200, "{body}");
        let (status, err) = finish(&mut child);
        assert!(status.success(), "{err}");
        assert_eq!(rig.completed("offline"), 4);
        let events = rig.show("offline")["events"].clone();
        let paused: Vec<&serde_json::Value> =
            events.as_array().unwrap().iter().filter(|e| e["kind"] == "executor-paused").collect();
        assert!(
            paused.iter().any(|e| e["message"].as_str().unwrap().contains("is offline: on an Aurora login node run")),
            "{events}"
        );
        assert!(events.as_array().unwrap().iter().any(|e| e["kind"] == "executor-resumed"), "{events}");
    }

    /// The service's limit (here 6 requests in any 2 s) is never passed: no request is refused
    /// but the one 429 injected, and after it nothing is sent before its Retry-After.
    #[test]
    fn rate_limits_are_respected() {
        let rig = Rig::new(&["--rate", "6/2"]);
        let cfg = rig.config(&Study {
            name: "rate",
            trials: 6,
            parallel: 3,
            rate: "max_requests = 6\nrate_window_s = 2",
            ..Study::default()
        });
        // The first request (an endpoint status) answers 429 with Retry-After: 2.
        rig.api.post("/_control/faults", &serde_json::json!([{"status": 429, "retry_after": 2}]));
        let out = rig.run(&cfg, &[]);
        assert!(out.status.success(), "{}", text(&out));
        assert_eq!(rig.completed("rate"), 6);
        let reqs = rig.api.requests();
        let refused: Vec<&serde_json::Value> = reqs.iter().filter(|r| r["status"] == 429).collect();
        assert_eq!(refused.len(), 1, "{refused:?}");
        let t = |r: &serde_json::Value| r["t"].as_f64().unwrap();
        assert!(
            t(&reqs[1]) - t(&reqs[0]) >= 1.9,
            "the next request came {} s after the 429",
            t(&reqs[1]) - t(&reqs[0])
        );
        let accepted: Vec<f64> = reqs.iter().filter(|r| r["status"] == 200).map(t).collect();
        for (i, start) in accepted.iter().enumerate() {
            let in_window = accepted[i..].iter().take_while(|u| **u < start + 2.0).count();
            assert!(in_window <= 6, "{in_window} requests within 2 s from t={start}");
        }
    }

    /// What goes wrong on the endpoint becomes a failed trial with a reason a person can read: a
    /// lost worker (a system failure, run again under `retries`), a timeout (exit status 124) and
    /// a trial program's own failure with its log tail.
    #[test]
    fn task_failures_become_readable_reasons() {
        let rig = Rig::new(&[]);
        let cfg = rig.config(&Study {
            name: "fail",
            trials: 3,
            parallel: 3,
            args: r#", "--mode", "{mode}""#,
            executor: "timeout_s = 3",
            study: "retries = 1\n[[study.enqueue]]\nx = 0.1\nmode = \"ok\"\n[[study.enqueue]]\nx = 0.2\nmode = \"slow\"\n[[study.enqueue]]\nx = 0.3\nmode = \"fail\"",
            tail: "mode = { type = \"choice\", values = [\"ok\", \"slow\", \"fail\"] }",
            ..Study::default()
        });
        // The first task to start loses its worker.
        rig.api.post("/_control/lose_worker", &serde_json::json!({"count": 1}));
        let out = rig.run(&cfg, &[]);
        assert!(out.status.success(), "{}", text(&out));
        let show = rig.show("fail");
        let trials = show["trials"].as_array().unwrap();
        let by_mode = |m: &str| trials.iter().find(|t| t["params"]["mode"] == m).unwrap_or_else(|| panic!("{show}"));
        let slow = by_mode("slow");
        assert_eq!(slow["state"], "failed", "{slow}");
        assert!(
            slow["failure"].as_str().unwrap().contains("timed out: it ran past executor.timeout_s of 3 s"),
            "{slow}"
        );
        let fail = by_mode("fail");
        assert_eq!(fail["failure"], "exited with status 3", "{fail}");
        assert!(fail["log_tail"].as_str().unwrap().contains("bad hyperparameters: x=0.3"), "{fail}");
        // One of them lost its worker first and was run again (attempt 2).
        let log = rig.host_log("fail");
        assert!(log.contains("WorkerLost"), "{log}");
        let events = show["events"].to_string();
        assert!(events.contains("lost the worker running it"), "{events}");
        assert!(trials.iter().any(|t| t["attempt"] == 2), "{show}");
        assert_eq!(by_mode("ok")["state"], "completed");
    }

    /// No login at all: the run stops before a study exists, with the next step. A token the
    /// service refuses: the run stops at its first request, not paused forever.
    #[test]
    fn a_missing_or_refused_token_says_how_to_log_in() {
        let rig = Rig::new(&[]);
        let cfg = rig.config(&Study { name: "auth", trials: 1, parallel: 1, ..Study::default() });
        let out = rig
            .command(&["run", "--config", cfg.to_str().unwrap(), "--quiet"])
            .env_remove("ALCF_HOST_COMPUTE_TOKEN")
            .output()
            .unwrap();
        assert!(!out.status.success(), "{}", text(&out));
        assert!(
            text(&out).contains("not logged in to Globus for compute: run `alcf-host auth login`"),
            "{}",
            text(&out)
        );
        assert!(!rig.study_dir("auth").exists(), "a study was created without a login");
        assert!(rig.api.requests().is_empty(), "requests without a login");
        let out = rig
            .command(&["run", "--config", cfg.to_str().unwrap(), "--quiet"])
            .env("ALCF_HOST_COMPUTE_TOKEN", "wrong")
            .output()
            .unwrap();
        assert!(!out.status.success(), "{}", text(&out));
        let t = text(&out);
        assert!(t.contains("ALCF_HOST_COMPUTE_TOKEN") || t.contains("alcf-host auth login"), "{t}");
        assert!(!t.contains("wrong\""), "the token is printed: {t}");
    }
}
