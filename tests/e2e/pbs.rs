//! The `pbs` executor end to end: the real `alcf-host` binary, the PBS Pro emulator (tests/pbs)
//! really running job scripts and pilots, and, for the SSH tests, a real sshd on loopback with a
//! real ControlMaster opened by the test, exactly as a user opens one to Aurora.
//!
//! Every study here uses the emulator's `capacity` queue (2 running and 5 queued jobs per user,
//! as on Aurora) and a poll interval of 1 s, so a cycle is short but the same code runs.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use alcf_tests::sshd::{Sshd, SshdOptions};
use alcf_tests::{finish, host_bin, plugin, repo, text, trial_states, try_trial_states};

/// Where the executor's remote side runs.
#[derive(Clone)]
pub enum Host {
    /// `host = "local"`: the host is on a login node; no SSH.
    Local,
    /// Through an SSH master at this control socket, to this destination.
    Ssh { dest: String, control: PathBuf },
}

/// One study's world: a config directory, the remote directory, the emulator's state.
pub struct Rig {
    pub dir: tempfile::TempDir,
    pub emu_home: PathBuf,
    pub remote: PathBuf,
    pub host: Host,
}

/// What a test changes in the study's config.
pub struct Study<'a> {
    pub name: &'a str,
    pub trials: u32,
    pub parallel: u32,
    pub placement: &'a str,
    pub max_jobs: u32,
    pub slots: u32,
    pub walltime: &'a str,
    /// The trial command (TOML array); `{ledger}` stands for the run ledger's path.
    pub command: &'a str,
    /// Extra `[executor]` lines.
    pub executor: &'a str,
    /// Extra `[space]` lines.
    pub space: &'a str,
    /// Extra top-level TOML (e.g. `[[study.enqueue]]` tables).
    pub tail: &'a str,
}

impl Default for Study<'_> {
    fn default() -> Self {
        Study {
            name: "s",
            trials: 4,
            parallel: 4,
            placement: "pilot",
            max_jobs: 2,
            slots: 12,
            walltime: "00:10:00",
            command: r#"["python3", "{config_dir}/trial.py", "{trial_dir}", "{ledger}"]"#,
            executor: "",
            space: "",
            tail: "",
        }
    }
}

impl Rig {
    pub fn new(host: Host) -> Rig {
        let dir = tempfile::tempdir().unwrap();
        let emu_home = dir.path().join("pbs-emu");
        let remote = dir.path().join("remote");
        std::fs::create_dir_all(&emu_home).unwrap();
        std::fs::create_dir_all(&remote).unwrap();
        std::fs::write(emu_home.join("config.json"), alcf_tests::account::emulator_config(dir.path())).unwrap();
        std::fs::copy(repo().join("tests/pbs/trial.py"), dir.path().join("trial.py")).unwrap();
        Rig { dir, emu_home, remote, host }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn ledger(&self) -> PathBuf {
        self.path().join("ledger")
    }

    /// How often each trial (by directory name) really ran.
    pub fn runs(&self) -> BTreeMap<String, usize> {
        let mut runs = BTreeMap::new();
        for line in std::fs::read_to_string(self.ledger()).unwrap_or_default().lines() {
            *runs.entry(line.trim().to_string()).or_insert(0) += 1;
        }
        runs
    }

    pub fn study_dir(&self, name: &str) -> PathBuf {
        self.path().join("studies").join(name)
    }

    pub fn remote_study(&self, name: &str) -> PathBuf {
        self.remote.join(name)
    }

    pub fn config(&self, s: &Study) -> PathBuf {
        let (host, control) = match &self.host {
            Host::Local => ("local".to_string(), String::new()),
            Host::Ssh { dest, control } => {
                (dest.clone(), format!("control_path = {:?}\n", control.display().to_string()))
            }
        };
        // Two CPU lists that exist on every machine with 2 cores; taskset really runs.
        let cpu_lists: Vec<String> = (0..s.slots).map(|i| format!("\"{}\"", i % 2)).collect();
        let text = format!(
            r#"
[study]
name = "{name}"
objective = "loss"
direction = "minimize"
trials = {trials}
parallel = {parallel}
seed = 7
root = "studies"

[strategy]
plugin = "{plugin}"

[executor]
kind = "pbs"
host = "{host}"
{control}remote_dir = "{remote}"
pbs_bin = "{emulator}"
command = {command}
stage = ["trial.py"]
placement = "{placement}"
account = "TestProject"
queue = "capacity"
walltime = "{walltime}"
slots_per_node = {slots}
cpu_lists = [{cpu_lists}]
poll_interval_s = 1
max_jobs = {max_jobs}
pilot_idle = "30s"
pilot_margin = "1s"
{executor}

[space]
x = {{ type = "float", low = 0.0, high = 1.0 }}
{space}
{tail}
"#,
            name = s.name,
            trials = s.trials,
            parallel = s.parallel,
            plugin = plugin("random").display(),
            remote = self.remote.display(),
            emulator = repo().join("tests/pbs/emulator").display(),
            command = s.command.replace("{ledger}", &self.ledger().display().to_string()),
            placement = s.placement,
            walltime = s.walltime,
            slots = s.slots,
            cpu_lists = cpu_lists.join(", "),
            max_jobs = s.max_jobs,
            executor = s.executor,
            space = s.space,
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
            .env("PBS_EMU_HOME", &self.emu_home);
        c
    }

    pub fn run(&self, cfg: &Path, extra: &[&str]) -> Output {
        let mut args = vec!["run", "--config", cfg.to_str().unwrap(), "--quiet"];
        args.extend_from_slice(extra);
        self.command(&args).output().unwrap()
    }

    pub fn spawn(&self, cfg: &Path, extra: &[&str]) -> Child {
        let mut args = vec!["run", "--config", cfg.to_str().unwrap()];
        args.extend_from_slice(extra);
        self.command(&args).stdout(Stdio::null()).stderr(Stdio::piped()).spawn().unwrap()
    }

    pub fn study_show(&self, name: &str) -> serde_json::Value {
        let out = self.command(&["study", "show", name, "--root", "studies", "--json"]).output().unwrap();
        assert!(out.status.success(), "{}", text(&out));
        serde_json::from_slice(&out.stdout).unwrap()
    }

    /// `pbs-emu-ctl ARGS` against this rig's emulator.
    pub fn emu_ctl(&self, args: &[&str]) {
        let out = Command::new(repo().join("tests/pbs/emulator/pbs-emu-ctl"))
            .args(args)
            .env("PBS_EMU_HOME", &self.emu_home)
            .output()
            .unwrap();
        assert!(out.status.success(), "pbs-emu-ctl {args:?}: {}", text(&out));
    }

    /// Every job the emulator knows, as (id, name, state, exit status).
    pub fn jobs(&self) -> Vec<(String, String, String, Option<i64>)> {
        let out = Command::new(repo().join("tests/pbs/emulator/qstat"))
            .args(["-x", "-f", "-F", "json"])
            .env("PBS_EMU_HOME", &self.emu_home)
            .output()
            .unwrap();
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
        let mut jobs = Vec::new();
        if let Some(map) = v["Jobs"].as_object() {
            for (id, j) in map {
                let exit = j["Exit_status"].as_i64().or_else(|| j["Exit_status"].as_str().and_then(|s| s.parse().ok()));
                jobs.push((
                    id.clone(),
                    j["Job_Name"].as_str().unwrap_or("").to_string(),
                    j["job_state"].as_str().unwrap_or("").to_string(),
                    exit,
                ));
            }
        }
        jobs
    }

    /// Waits until `done(completed trials)` holds, or panics after `limit`.
    pub fn wait_for(&self, name: &str, limit: Duration, what: &str, done: impl Fn(usize) -> bool) {
        let start = Instant::now();
        loop {
            let completed = try_trial_states(&self.study_dir(name))
                .map(|t| t.iter().filter(|(_, s, _)| s == "completed").count())
                .unwrap_or(0);
            if done(completed) {
                return;
            }
            assert!(start.elapsed() < limit, "timed out waiting for {what} ({completed} completed)");
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

impl Drop for Rig {
    fn drop(&mut self) {
        // Kill whatever the emulator still runs (pilots waiting out their idle time).
        let _ = Command::new(repo().join("tests/pbs/emulator/pbs-emu-ctl"))
            .args(["kill-all", "5"])
            .env("PBS_EMU_HOME", &self.emu_home)
            .output();
    }
}

/// Ctrl-C, and again within the cancel window, as a user would; the run must end unsuccessfully.
fn ctrl_c_twice(child: &mut Child) -> String {
    let pid = child.id() as libc::pid_t;
    unsafe { libc::kill(pid, libc::SIGINT) };
    std::thread::sleep(Duration::from_millis(800));
    unsafe { libc::kill(pid, libc::SIGINT) };
    let (status, err) = finish(child);
    assert!(!status.success(), "{err}");
    err
}

pub fn completed(states: &[(u64, String, Option<f64>)]) -> usize {
    states.iter().filter(|(_, s, _)| s == "completed").count()
}

fn seen(rig: &Rig, study: &str, trial: u64) -> serde_json::Value {
    let p = rig.remote_study(study).join(format!("trials/{trial:06}/seen.json"));
    serde_json::from_str(&std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))).unwrap()
}

// ---- the studies, each run on both transports ----------------------------------------------

/// 24 trials on pilots of 12 slots, at most 2 pilots: the budget is reached, every trial ran once,
/// on a tile of its own (ZE_AFFINITY_MASK = its slot), and no more than 2 pilots were used.
pub fn pilots_run_a_study(rig: &Rig) {
    let cfg = rig.config(&Study { name: "pilots", trials: 24, parallel: 24, ..Study::default() });
    let out = rig.run(&cfg, &[]);
    assert!(out.status.success(), "{}", text(&out));
    let states = trial_states(&rig.study_dir("pilots"));
    assert_eq!(completed(&states), 24, "{states:?}\n{}", text(&out));
    let runs = rig.runs();
    assert_eq!(runs.len(), 24, "{runs:?}");
    assert!(runs.values().all(|n| *n == 1), "a trial ran twice: {runs:?}");
    let mut masks = std::collections::BTreeSet::new();
    for id in 1..=24 {
        let s = seen(rig, "pilots", id);
        let mask = s["env"]["ZE_AFFINITY_MASK"].as_str().unwrap().to_string();
        assert_eq!(Some(mask.as_str()), s["env"]["ALCF_SLOT"].as_str(), "{s}");
        assert_eq!(s["env"]["ZE_ENABLE_PCI_ID_DEVICE_ORDER"], "1", "{s}");
        assert_eq!(s["env"]["ALCF_TRIAL_ID"], id.to_string(), "{s}");
        assert_eq!(s["env"]["ALCF_TRIAL_DIR"].as_str(), s["argv"][1].as_str(), "{s}");
        let slot: u32 = mask.parse().unwrap();
        assert!(slot < 12, "{s}");
        masks.insert(slot);
    }
    assert!(masks.len() > 1, "every trial got the same tile: {masks:?}");
    let pilots: Vec<_> = rig.jobs().into_iter().filter(|j| j.1.starts_with("pilots.p")).collect();
    assert!(!pilots.is_empty() && pilots.len() <= 2, "{pilots:?}");
    let show = rig.study_show("pilots");
    assert_eq!(show["best"]["state"], "completed", "{show}");
    // The study told its pilots to stop: they end now, not after `pilot_idle` (30 s).
    let start = Instant::now();
    while rig.jobs().iter().any(|j| j.1.starts_with("pilots.p") && j.2 != "F") {
        assert!(start.elapsed() < Duration::from_secs(20), "pilots outlived the study: {:?}", rig.jobs());
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// per_trial placement: parameter values full of shell metacharacters arrive intact, as
/// arguments and in the environment, and nothing in them runs; a trial program that fails is
/// recorded with its exit status and its own stderr; one failed qstat is not a dead job.
pub fn per_trial_jobs_carry_values_intact(rig: &Rig) {
    let nasty = [
        "plain",
        "two words",
        "$(touch PWNED)",
        "`touch PWNED2`",
        "'single' \"double\"",
        "semi;colon && pipe | amp &",
        "back\\slash $HOME *",
    ];
    // JSON's string escapes are TOML's.
    let choices: Vec<String> = nasty.iter().map(|s| serde_json::to_string(s).unwrap()).collect();
    let mut tail = String::new();
    for (i, _) in nasty.iter().enumerate() {
        tail.push_str(&format!("[[study.enqueue]]\nx = 0.{i}\ntag = {}\nmode = \"ok\"\n", choices[i]));
    }
    tail.push_str("[[study.enqueue]]\nx = 0.5\ntag = \"plain\"\nmode = \"fail\"\n");
    let cfg = rig.config(&Study {
        name: "quoting",
        trials: nasty.len() as u32 + 1,
        parallel: 2,
        placement: "per_trial",
        max_jobs: 2,
        command: r#"["python3", "{config_dir}/trial.py", "{trial_dir}", "{ledger}", "--tag", "{tag}"]"#,
        executor: "env = { TRIAL_TAG = \"{tag}\" }",
        space: &format!(
            "tag = {{ type = \"choice\", values = [{}] }}\nmode = {{ type = \"choice\", values = [\"ok\", \"fail\"] }}",
            choices.join(", ")
        ),
        tail: &tail,
        ..Study::default()
    });
    let mut child = rig.spawn(&cfg, &["--quiet"]);
    // Once the first job is in, the emulator's next qstat fails as an unreachable server would.
    let start = Instant::now();
    while rig.jobs().is_empty() && start.elapsed() < Duration::from_secs(60) {
        std::thread::sleep(Duration::from_millis(100));
    }
    rig.emu_ctl(&["fail-next", "qstat", "1"]);
    let (status, err) = finish(&mut child);
    assert!(status.success(), "{err}");
    let states = trial_states(&rig.study_dir("quoting"));
    assert_eq!(completed(&states), nasty.len(), "{states:?}\n{err}");
    for (i, value) in nasty.iter().enumerate() {
        let s = seen(rig, "quoting", i as u64 + 1);
        assert_eq!(s["params"]["tag"], *value, "{s}");
        let argv = s["argv"].as_array().unwrap();
        assert_eq!(argv.last().unwrap(), *value, "{s}");
        assert_eq!(s["env"]["TRIAL_TAG"], *value, "{s}");
    }
    for found in walk(rig.path()) {
        assert!(!found.ends_with("PWNED") && !found.ends_with("PWNED2"), "a value ran as code: {}", found.display());
    }
    let failed = states.iter().find(|(_, s, _)| s == "failed").expect("the failing trial");
    let show = rig.study_show("quoting");
    let trial = show["trials"].as_array().unwrap().iter().find(|t| t["id"] == failed.0).unwrap().clone();
    let reason = trial["failure"].as_str().unwrap_or_default();
    assert!(reason.contains("exit status 3"), "{trial}");
    let tail = trial["log_tail"].as_str().unwrap_or_default();
    assert!(tail.contains("failing on purpose"), "{trial}");
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                out.extend(walk(&p));
            }
            out.push(p);
        }
    }
    out
}

/// The host is SIGKILLed with trials in flight; `--resume` re-attaches to the pilots' trials:
/// none is lost, none runs twice, and the study reaches its budget.
pub fn a_killed_host_resumes_its_pilots(rig: &Rig) {
    a_killed_host_resumes(rig, "pilot", 8);
}

/// The same with one PBS job per trial: `--resume` waits on the recorded job ids.
pub fn a_killed_host_resumes_its_jobs(rig: &Rig) {
    a_killed_host_resumes(rig, "per_trial", 4);
}

fn a_killed_host_resumes(rig: &Rig, placement: &str, parallel: u32) {
    let cfg = rig.config(&Study {
        name: "killed",
        trials: 16,
        parallel,
        placement,
        max_jobs: parallel.min(4),
        slots: 4,
        executor: "env = { TRIAL_SLEEP_S = \"1.5\" }",
        ..Study::default()
    });
    let mut child = rig.spawn(&cfg, &["--quiet"]);
    rig.wait_for("killed", Duration::from_secs(120), "4 completed trials", |n| n >= 4);
    child.kill().unwrap();
    child.wait().unwrap();
    let before = trial_states(&rig.study_dir("killed"));
    let out = rig.run(&cfg, &["--resume"]);
    assert!(out.status.success(), "{}", text(&out));
    let after = trial_states(&rig.study_dir("killed"));
    assert_eq!(completed(&after), 16, "{after:?}");
    for (id, state, value) in &before {
        if state == "completed" {
            let now = after.iter().find(|t| t.0 == *id).unwrap();
            assert_eq!((&now.1, now.2), (state, *value), "trial {id} changed after resume");
        }
    }
    let runs = rig.runs();
    let events = rig.study_show("killed")["events"].clone();
    assert!(runs.values().all(|n| *n == 1), "a trial ran twice: {runs:?}\n{events:#}");
    assert_eq!(runs.len(), 16, "{runs:?}");
}

/// A pilot killed by its walltime (Exit_status -29) leaves a trial half done: the trial goes back
/// to the queue, a new pilot runs it, and it completes without counting as a new attempt.
pub fn a_pilot_killed_by_walltime_requeues_its_trial(rig: &Rig) {
    let cfg = rig.config(&Study {
        name: "walltime",
        trials: 2,
        parallel: 2,
        slots: 2,
        max_jobs: 1,
        walltime: "00:00:08",
        executor: "env = { TRIAL_SLOW_S = \"60\" }",
        space: "mode = { type = \"choice\", values = [\"ok\", \"slow-once\"] }",
        tail: "[[study.enqueue]]\nx = 0.1\nmode = \"slow-once\"\n[[study.enqueue]]\nx = 0.2\nmode = \"ok\"\n",
        ..Study::default()
    });
    let out = rig.run(&cfg, &[]);
    assert!(out.status.success(), "{}", text(&out));
    let states = trial_states(&rig.study_dir("walltime"));
    assert_eq!(completed(&states), 2, "{states:?}\n{}", text(&out));
    let pilots: Vec<_> = rig.jobs().into_iter().filter(|j| j.1.starts_with("walltime.p")).collect();
    assert!(pilots.iter().any(|j| j.3 == Some(-29)), "no pilot was killed by its walltime: {pilots:?}");
    assert_eq!(rig.runs()["000001"], 2, "trial 1 ran once to be killed and once to finish");
    let show = rig.study_show("walltime");
    let t1 = &show["trials"].as_array().unwrap()[0];
    assert_eq!(t1["attempt"], 1, "a requeued trial is the same attempt: {t1}");
    let log = std::fs::read_to_string(rig.study_dir("walltime").join("host.log")).unwrap_or_default();
    assert!(log.contains("queued again"), "{log}");
}

/// More jobs than the queue takes: qsub's refusal (exit 38, the per-user limit) pauses
/// submission instead of failing trials, and the refused trials go in once jobs end.
pub fn a_full_queue_is_retried_not_failed(rig: &Rig) {
    // The emulator's capacity queue holds 5 jobs per user; 6 may be submitted at once.
    let cfg = rig.config(&Study {
        name: "full",
        trials: 8,
        parallel: 6,
        placement: "per_trial",
        max_jobs: 6,
        // Long enough that the first five jobs are still there when the sixth is submitted.
        executor: "env = { TRIAL_SLEEP_S = \"4\" }",
        ..Study::default()
    });
    let out = rig.run(&cfg, &[]);
    assert!(out.status.success(), "{}", text(&out));
    let states = trial_states(&rig.study_dir("full"));
    assert_eq!(completed(&states), 8, "{states:?}\n{}", text(&out));
    let log = std::fs::read_to_string(rig.study_dir("full").join("host.log")).unwrap_or_default();
    assert!(log.contains("per-user"), "no queue-limit refusal was seen: {log}");
    assert!(rig.runs().values().all(|n| *n == 1));
}

/// Ctrl-C twice: the first leaves the jobs running, the second (within the window) deletes them
/// with qdel and records their trials as cancelled, to be re-run by `--resume`.
pub fn ctrl_c_twice_cancels_the_jobs(rig: &Rig) {
    let cfg = rig.config(&Study {
        name: "cancel",
        trials: 2,
        parallel: 2,
        placement: "per_trial",
        executor: "env = { TRIAL_SLEEP_S = \"120\" }",
        ..Study::default()
    });
    let mut child = rig.spawn(&cfg, &["--quiet"]);
    let start = Instant::now();
    while rig.jobs().iter().filter(|j| j.2 == "R").count() < 2 {
        assert!(start.elapsed() < Duration::from_secs(60), "jobs never ran: {:?}", rig.jobs());
        std::thread::sleep(Duration::from_millis(200));
    }
    // Both trials are recorded running before the interrupt.
    while try_trial_states(&rig.study_dir("cancel")).unwrap_or_default().iter().filter(|t| t.1 == "running").count() < 2
    {
        assert!(start.elapsed() < Duration::from_secs(60));
        std::thread::sleep(Duration::from_millis(100));
    }
    let err = ctrl_c_twice(&mut child);
    let states = trial_states(&rig.study_dir("cancel"));
    assert!(states.iter().all(|t| t.1 == "cancelled"), "{states:?}\n{err}");
    let start = Instant::now();
    loop {
        let jobs = rig.jobs();
        if jobs.iter().all(|j| j.2 == "F") {
            assert!(jobs.iter().all(|j| j.3 != Some(0)), "a job ran to its end: {jobs:?}");
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(30), "qdel did not end the jobs: {jobs:?}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// A `[pruner]` beside the strategy: the median rule stops trials from the reports the executor
/// polls; each pruned trial's job (or its process in a pilot) is stopped within an epoch of the
/// decision, and the study records it pruned.
pub fn pruning_stops_remote_trials(rig: &Rig, placement: &str) {
    let tail = format!(
        "[pruner]\nplugin = {:?}\noptions = {{ rule = \"median\", startup_trials = 1 }}\n",
        alcf_tests::plugin("pruner").display().to_string()
    );
    let cfg = rig.config(&Study {
        name: "prune",
        trials: 8,
        parallel: 4,
        placement,
        max_jobs: if placement == "pilot" { 1 } else { 4 },
        slots: 4,
        // 8 epochs of 3 s: a decision seen within a poll (1 s) stops the trial (qdel, or the
        // pilot's next look at its queue, 1 s) before the epoch after next, even on a busy CI
        // machine.
        executor: "env = { TRIAL_SLEEP_S = \"24\", TRIAL_EPOCHS = \"8\" }",
        tail: &tail,
        ..Study::default()
    });
    let out = rig.run(&cfg, &[]);
    assert!(out.status.success(), "{}", text(&out));
    let show = rig.study_show("prune");
    let trials = show["trials"].as_array().unwrap();
    let pruned: Vec<u64> =
        trials.iter().filter(|t| t["state"] == "pruned").map(|t| t["id"].as_u64().unwrap()).collect();
    assert!(!pruned.is_empty(), "nothing was pruned: {show:#}");
    assert!(trials.iter().any(|t| t["state"] == "completed"), "{show:#}");
    let events = show["events"].as_array().unwrap();
    for id in &pruned {
        let decision = events.iter().find(|e| e["kind"] == "prune" && e["trial"] == *id).expect("a prune event");
        let step = serde_json::from_str::<serde_json::Value>(decision["message"].as_str().unwrap()).unwrap()["step"]
            .as_u64()
            .unwrap();
        let dir = rig.remote_study("prune").join(format!("trials/{id:06}"));
        let lines = std::fs::read_to_string(dir.join("metrics.jsonl")).unwrap_or_default().lines().count() as u64;
        assert!(lines <= step + 2, "trial {id} pruned at step {step} ran on to {lines} epochs");
        assert!(!dir.join("result.json").exists(), "trial {id} was pruned but finished");
    }
}

// ---- the tests: each scenario on a login node (`host = "local"`) and through SSH -------------

/// A rig whose remote side is reached through a loopback sshd, with the master opened the way a
/// user opens it to Aurora. The sshd's sessions find the emulator first on their `PATH`.
fn ssh_rig() -> (Rig, Sshd) {
    let mut rig = Rig::new(Host::Local);
    let sshd = Sshd::start_or_panic(SshdOptions::new().pbs_emulator(&rig.emu_home));
    let control = sshd.open_master().unwrap();
    rig.host = Host::Ssh { dest: sshd.host().to_string(), control };
    (rig, sshd)
}

macro_rules! both {
    ($($local:ident, $ssh:ident => $scenario:ident;)*) => {$(
        #[test]
        fn $local() {
            $scenario(&Rig::new(Host::Local));
        }
        #[test]
        fn $ssh() {
            let (rig, _sshd) = ssh_rig();
            $scenario(&rig);
        }
    )*};
}

both! {
    local_pilots_run_a_study, ssh_pilots_run_a_study => pilots_run_a_study;
    local_per_trial_jobs_carry_values_intact, ssh_per_trial_jobs_carry_values_intact => per_trial_jobs_carry_values_intact;
    local_killed_host_resumes_its_pilots, ssh_killed_host_resumes_its_pilots => a_killed_host_resumes_its_pilots;
}

#[test]
fn local_killed_host_resumes_its_jobs() {
    a_killed_host_resumes_its_jobs(&Rig::new(Host::Local));
}

#[test]
fn local_pilot_killed_by_walltime_requeues_its_trial() {
    a_pilot_killed_by_walltime_requeues_its_trial(&Rig::new(Host::Local));
}

#[test]
fn local_pruning_stops_per_trial_jobs() {
    pruning_stops_remote_trials(&Rig::new(Host::Local), "per_trial");
}

#[test]
fn ssh_pruning_stops_trials_in_pilots() {
    let (rig, _sshd) = ssh_rig();
    pruning_stops_remote_trials(&rig, "pilot");
}

#[test]
fn local_full_queue_is_retried_not_failed() {
    a_full_queue_is_retried_not_failed(&Rig::new(Host::Local));
}

#[test]
fn ssh_ctrl_c_twice_cancels_the_jobs() {
    let (rig, _sshd) = ssh_rig();
    ctrl_c_twice_cancels_the_jobs(&rig);
}

/// The master dies mid-run (the laptop lost its network, the master was killed): the study
/// pauses with the one command that fixes it, the jobs keep running on the far side, and once
/// the user opens a master again the study resumes by itself and reaches its budget.
#[test]
fn ssh_a_lost_master_pauses_and_resumes() {
    let (rig, sshd) = ssh_rig();
    let cfg = rig.config(&Study {
        name: "master",
        trials: 12,
        parallel: 4,
        slots: 4,
        max_jobs: 1,
        executor: "env = { TRIAL_SLEEP_S = \"1\" }",
        ..Study::default()
    });
    let mut child = rig.spawn(&cfg, &[]);
    rig.wait_for("master", Duration::from_secs(120), "2 completed trials", |n| n >= 2);
    sshd.kill_master().unwrap();
    // The trials keep running on the far side while the host cannot reach them.
    let before = completed(&trial_states(&rig.study_dir("master")));
    std::thread::sleep(Duration::from_secs(6));
    let log = std::fs::read_to_string(rig.study_dir("master").join("host.log")).unwrap_or_default();
    let dest = match &rig.host {
        Host::Ssh { dest, .. } => dest.clone(),
        Host::Local => unreachable!(),
    };
    assert!(log.contains(&format!("alcf-host connect {dest}")), "the pause does not say how to fix it: {log}");
    assert!(completed(&trial_states(&rig.study_dir("master"))) <= before + 4);
    sshd.open_master().unwrap();
    let (status, err) = finish(&mut child);
    assert!(status.success(), "{err}");
    assert_eq!(completed(&trial_states(&rig.study_dir("master"))), 12, "{err}");
    assert!(rig.runs().values().all(|n| *n == 1), "{:?}", rig.runs());
    assert!(err.contains("alcf-host connect"), "the console did not say how to fix it: {err}");
}

/// A pilot job PBS refuses (an unknown queue) stops the run with qsub's message and the field to
/// fix, instead of failing trial after trial; with the queue fixed, `--resume` runs them.
#[test]
fn local_a_refused_pilot_stops_the_run_and_resume_runs_it() {
    let rig = Rig::new(Host::Local);
    let study = Study { name: "refused", trials: 3, parallel: 3, slots: 4, max_jobs: 1, ..Study::default() };
    let cfg = rig.config(&study);
    let good = std::fs::read_to_string(&cfg).unwrap();
    std::fs::write(&cfg, good.replace("queue = \"capacity\"", "queue = \"nosuchq\"")).unwrap();
    let out = rig.run(&cfg, &[]);
    assert!(!out.status.success(), "{}", text(&out));
    let said = text(&out);
    assert!(said.contains("executor.queue") && said.contains("Unknown queue"), "{said}");
    let states = trial_states(&rig.study_dir("refused"));
    assert!(states.iter().all(|t| t.1 != "failed"), "trials were failed for a config error: {states:?}");
    std::fs::write(&cfg, good).unwrap();
    let out = rig.run(&cfg, &["--resume"]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(completed(&trial_states(&rig.study_dir("refused"))), 3);
    assert!(rig.runs().values().all(|n| *n == 1), "{:?}", rig.runs());
}

/// Ctrl-C twice with pilots: the running trials are stopped by their pilot (a stop request in the
/// queue, not a qdel of the pilot), recorded cancelled, and the pilots, told to stop, end.
#[test]
fn local_ctrl_c_twice_stops_pilot_trials() {
    let rig = Rig::new(Host::Local);
    let cfg = rig.config(&Study {
        name: "pcancel",
        trials: 3,
        parallel: 3,
        slots: 4,
        max_jobs: 1,
        executor: "env = { TRIAL_SLEEP_S = \"120\" }",
        ..Study::default()
    });
    let mut child = rig.spawn(&cfg, &["--quiet"]);
    let start = Instant::now();
    // All three trials have started on the pilot (each wrote seen.json).
    while (1..=3).any(|id| !rig.remote_study("pcancel").join(format!("trials/{id:06}/seen.json")).exists())
        || try_trial_states(&rig.study_dir("pcancel")).unwrap_or_default().iter().filter(|t| t.1 == "running").count()
            < 3
    {
        assert!(start.elapsed() < Duration::from_secs(90), "trials never started: {:?}", rig.jobs());
        std::thread::sleep(Duration::from_millis(200));
    }
    let err = ctrl_c_twice(&mut child);
    let states = trial_states(&rig.study_dir("pcancel"));
    assert!(states.iter().all(|t| t.1 == "cancelled"), "{states:?}\n{err}");
    let start = Instant::now();
    loop {
        let done: Vec<serde_json::Value> = (1..=3)
            .filter_map(|id| {
                let p = rig.remote_study("pcancel").join(format!("queue/done/pcancel.t{id}.a1.json"));
                std::fs::read_to_string(p).ok().and_then(|t| serde_json::from_str(&t).ok())
            })
            .collect();
        let pilots_done = rig.jobs().iter().all(|j| j.2 == "F");
        if done.len() == 3 && pilots_done {
            assert!(done.iter().all(|d| d["cancelled"] == true), "{done:?}");
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(40), "not stopped: {done:?} {:?}", rig.jobs());
        std::thread::sleep(Duration::from_millis(250));
    }
}
