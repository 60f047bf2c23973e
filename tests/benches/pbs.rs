//! The `pbs` executor's costs, through a real loopback sshd and ControlMaster to the PBS
//! emulator: SSH round trips per poll cycle with 12 and with 48 trials in flight, host CPU per
//! trial, and the time from a trial finishing on a tile to the next one starting on it.
//!
//!     cargo bench -p alcf-tests --bench pbs            # all of it, ~8 minutes on 2 cores
//!     cargo bench -p alcf-tests --bench pbs -- --runs 3
//!
//! It drives `PbsExecutor` directly (no strategy, no study database): the figures are the
//! executor's own. docs/benchmarks.md quotes them.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use alcf_host::config::{Config, ExecutorConfig};
use alcf_host::executor::pbs::executor::PbsExecutor;
use alcf_host::executor::{Executor, TrialSpec, job_name};
use alcf_host::space::{Assignment, SearchSpace, Value};
use alcf_tests::repo;
use alcf_tests::sshd::{Sshd, SshdOptions};

struct World {
    dir: tempfile::TempDir,
    emu_home: PathBuf,
    _sshd: Sshd,
    control: PathBuf,
}

impl World {
    fn new() -> World {
        let dir = tempfile::tempdir().unwrap();
        let emu_home = dir.path().join("pbs-emu");
        std::fs::create_dir_all(&emu_home).unwrap();
        std::fs::write(emu_home.join("config.json"), r#"{"node_ncpus": 2}"#).unwrap();
        std::fs::copy(repo().join("tests/pbs/trial.py"), dir.path().join("trial.py")).unwrap();
        let sshd = Sshd::start_or_panic(SshdOptions::new().pbs_emulator(&emu_home));
        let control = sshd.open_master().unwrap();
        World { dir, emu_home, _sshd: sshd, control }
    }

    /// A pilot executor: `slots` per pilot, `max_jobs` pilots, trials of `sleep` seconds.
    fn executor(
        &self,
        study: &str,
        slots: u32,
        max_jobs: u32,
        parallel: u32,
        sleep: f64,
        poll: u32,
    ) -> (PbsExecutor, SearchSpace) {
        let text = format!(
            r#"
[executor]
kind = "pbs"
host = "loopback"
control_path = "{control}"
remote_dir = "{remote}"
pbs_bin = "{emulator}"
command = ["python3", "{{config_dir}}/trial.py", "{{trial_dir}}"]
env = {{ TRIAL_SLEEP_S = "{sleep}" }}
stage = ["trial.py"]
account = "Bench"
queue = "capacity"
walltime = "00:30:00"
slots_per_node = {slots}
cpu_lists = [{cpus}]
poll_interval_s = {poll}
max_jobs = {max_jobs}
pilot_margin = "1s"
pilot_idle = "20s"

[space]
x = {{ type = "float", low = 0.0, high = 1.0 }}
"#,
            control = self.control.display(),
            remote = self.dir.path().join("remote").display(),
            emulator = repo().join("tests/pbs/emulator").display(),
            cpus = (0..slots).map(|i| format!("\"{}\"", i % 2)).collect::<Vec<_>>().join(", "),
        );
        let cfg_path = self.dir.path().join(format!("{study}.toml"));
        std::fs::write(&cfg_path, &text).unwrap();
        let config = Config::load(&cfg_path).unwrap();
        let space = config.space.clone().unwrap();
        let Some(ExecutorConfig::Pbs(pbs)) = config.executor else { panic!("not pbs") };
        (PbsExecutor::new(*pbs, &space, parallel, study).unwrap(), space)
    }

    fn kill_all(&self) {
        let _ = std::process::Command::new(repo().join("tests/pbs/emulator/pbs-emu-ctl"))
            .args(["kill-all", "5"])
            .env("PBS_EMU_HOME", &self.emu_home)
            .output();
    }
}

fn spec(study: &str, space: &SearchSpace, id: u64, dir: &Path) -> TrialSpec {
    let params = Assignment { values: vec![("x".into(), Value::Float((id % 10) as f64 / 10.0))] };
    TrialSpec {
        id,
        attempt: 1,
        params_json: params.to_json(space),
        params,
        dir: dir.join(format!("{id:06}")),
        job_name: job_name(study, id, 1),
        slot: (id - 1) as u32,
        parent: None,
    }
}

/// Runs `n` trials at once to completion; returns (wall time, host CPU time, counters).
async fn run_batch(exec: Arc<PbsExecutor>, study: &str, space: &SearchSpace, first: u64, n: u64) -> Duration {
    let batch: Vec<TrialSpec> = (first..first + n).map(|id| spec(study, space, id, Path::new("/unused"))).collect();
    let start = Instant::now();
    let handles = exec.submit(batch.clone()).await.expect("submit");
    let (tx, _rx) = tokio::sync::mpsc::unbounded_channel();
    let mut waits = tokio::task::JoinSet::new();
    for (spec, handle) in batch.into_iter().zip(handles) {
        let exec = exec.clone();
        let tx = tx.clone();
        waits.spawn(async move { exec.wait(spec, handle.expect("handle"), tx).await });
    }
    while let Some(r) = waits.join_next().await {
        let report = r.unwrap().expect("wait");
        assert!(report.failure.is_none(), "{:?}", report.failure);
    }
    start.elapsed()
}

/// CPU time of this process and of its children that ended (the `ssh` clients of each call).
fn cpu_time() -> (Duration, Duration) {
    let usage = |who| {
        let mut u: libc::rusage = unsafe { std::mem::zeroed() };
        unsafe { libc::getrusage(who, &mut u) };
        let t = |tv: libc::timeval| Duration::new(tv.tv_sec as u64, tv.tv_usec as u32 * 1000);
        t(u.ru_utime) + t(u.ru_stime)
    };
    (usage(libc::RUSAGE_SELF), usage(libc::RUSAGE_CHILDREN))
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

fn main() {
    let runs: usize = std::env::args().skip_while(|a| a != "--runs").nth(1).and_then(|v| v.parse().ok()).unwrap_or(3);
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!("pbs executor benchmark, {runs} runs each; load average at start: {}", load.trim());

    // 1. Round trips per poll cycle, 12 and 48 trials in flight, alternating.
    println!("\n## SSH round trips per poll cycle (trials of 8 s, poll every 1 s, pilots of 12 slots)");
    let mut per_cycle: std::collections::BTreeMap<u64, Vec<(f64, u64, u64)>> = Default::default();
    for r in 0..runs {
        for n in [12u64, 48] {
            let world = World::new();
            let study = format!("rt{n}r{r}");
            let (exec, space) = world.executor(&study, 12, (n / 12) as u32, n as u32, 8.0, 1);
            let exec = Arc::new(exec);
            rt.block_on(run_batch(exec.clone(), &study, &space, 1, n));
            let c = exec.cycle_counters();
            per_cycle.entry(n).or_default().push((c.calls as f64 / c.cycles as f64, c.max_calls, c.cycles));
            rt.block_on(exec.detach());
            world.kill_all();
        }
    }
    for (n, v) in &per_cycle {
        let mean = median(v.iter().map(|x| x.0).collect());
        let max = v.iter().map(|x| x.1).max().unwrap_or(0);
        let cycles = median(v.iter().map(|x| x.2 as f64).collect());
        println!(
            "{n:>3} in flight: median {mean:.2} calls per cycle (at most {max} in one cycle), median {cycles} cycles"
        );
    }

    // 2. Host CPU per trial: 48 trials of 0.2 s on 2 pilots of 12 slots, poll 1 s.
    println!("\n## host CPU per trial (48 trials of 0.2 s, 2 pilots of 12 slots, poll 1 s)");
    let mut cpu = Vec::new();
    let mut ssh_cpu = Vec::new();
    let mut wall = Vec::new();
    for r in 0..runs {
        let world = World::new();
        let study = format!("cpu{r}");
        let (exec, space) = world.executor(&study, 12, 2, 48, 0.2, 1);
        let exec = Arc::new(exec);
        let before = cpu_time();
        let w = rt.block_on(run_batch(exec.clone(), &study, &space, 1, 48));
        let after = cpu_time();
        cpu.push((after.0 - before.0).as_secs_f64() * 1000.0 / 48.0);
        ssh_cpu.push((after.1 - before.1).as_secs_f64() * 1000.0 / 48.0);
        wall.push(w.as_secs_f64());
        rt.block_on(exec.detach());
        world.kill_all();
    }
    println!(
        "median {:.2} ms host CPU per trial (runs: {:?}), plus {:.2} ms in the ssh clients; median {:.1} s wall for the 48",
        median(cpu.clone()),
        cpu.iter().map(|c| format!("{c:.2}")).collect::<Vec<_>>(),
        median(ssh_cpu),
        median(wall)
    );

    // 3. Tile turnaround: a trial ends on a slot; a pilot starts the next queued trial on it. With
    // no look-ahead (as many trials in flight as slots) the next trial exists only once the host
    // has seen the end (its next cycle) and the campaign submitted it; with look-ahead (more in
    // flight than slots, queued on the shared file system) the pilot takes one at once.
    for (label, in_flight) in
        [("no look-ahead: 4 in flight on 4 slots", 4u64), ("look-ahead: 8 in flight on 4 slots", 8)]
    {
        println!(
            "\n## from a trial finishing on a tile to the next trial starting on it ({label}; 1 pilot, trials of 1 s, poll 5 s)"
        );
        let mut gaps = Vec::new();
        for r in 0..runs {
            let world = World::new();
            let study = format!("turn{in_flight}r{r}");
            let (exec, space) = world.executor(&study, 4, 1, in_flight as u32, 1.0, 5);
            let exec = Arc::new(exec);
            rt.block_on(keep_in_flight(exec.clone(), &study, &space, in_flight, 16));
            let done = world.dir.path().join("remote").join(&study).join("queue/done");
            gaps.extend(slot_gaps(&done));
            rt.block_on(exec.detach());
            world.kill_all();
        }
        gaps.sort_by(|a, b| a.partial_cmp(b).unwrap());
        println!(
            "{} gaps: median {:.2} s, max {:.2} s (poll interval 5 s)",
            gaps.len(),
            median(gaps.clone()),
            gaps.last().copied().unwrap_or(0.0)
        );
    }
}

/// Keeps `in_flight` trials submitted until `total` have run, submitting one as each ends (as the
/// campaign does).
async fn keep_in_flight(exec: Arc<PbsExecutor>, study: &str, space: &SearchSpace, in_flight: u64, total: u64) {
    let (tx, _rx) = tokio::sync::mpsc::unbounded_channel();
    let mut waits = tokio::task::JoinSet::new();
    let start = |id: u64| {
        let (exec, tx, s) = (exec.clone(), tx.clone(), spec(study, space, id, Path::new("/unused")));
        async move {
            let h = exec.submit(vec![s.clone()]).await.unwrap().pop().unwrap().unwrap();
            exec.wait(s, h, tx).await
        }
    };
    let mut next = 1u64;
    while next <= in_flight {
        waits.spawn(start(next));
        next += 1;
    }
    while let Some(r) = waits.join_next().await {
        r.unwrap().unwrap();
        if next <= total {
            waits.spawn(start(next));
            next += 1;
        }
    }
}

/// From a pilot's done records: per slot, the time between one trial's end and the next's start.
fn slot_gaps(done: &Path) -> Vec<f64> {
    let mut by_slot: std::collections::BTreeMap<i64, Vec<(f64, f64)>> = Default::default();
    for e in std::fs::read_dir(done).unwrap().flatten() {
        let v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(e.path()).unwrap()).unwrap();
        by_slot
            .entry(v["slot"].as_i64().unwrap())
            .or_default()
            .push((v["started"].as_f64().unwrap(), v["ended"].as_f64().unwrap()));
    }
    let mut gaps = Vec::new();
    for runs in by_slot.values_mut() {
        runs.sort_by(|a, b| a.0.partial_cmp(&b.0).unwrap());
        for w in runs.windows(2) {
            gaps.push(w[1].0 - w[0].1);
        }
    }
    gaps
}
