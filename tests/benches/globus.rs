//! The `globus` executor's costs through the loopback Globus Compute double
//! (tests/globus/compute_api.py, 12 workers on tiles 0..11): HTTP requests per trial with 12
//! trials in flight and with 1, and the host's CPU time per trial (the whole `alcf-host run`
//! process: start-up, plugin, study database, HTTP; the compile cache warm), alternating the two
//! settings run by run.
//!
//!     cargo bench -p alcf-tests --bench globus              # ~2 minutes on 2 cores
//!     cargo bench -p alcf-tests --bench globus -- --runs 5
//!
//! Trials sleep 3 s and the executor polls every 1 s: a trial lives about 3 poll cycles, as a
//! 45 s trial does at the default 15 s. Requests per trial scale with that ratio (each cycle is
//! one endpoint status and one batch status for every task in flight); docs/benchmarks.md says
//! how to read it for longer trials.

use std::process::Command;
use std::time::{Duration, Instant};

use alcf_tests::doubles::Double;
use alcf_tests::{host_bin, plugin, trial_states};

const TOKEN: &str = "bench-token";

const TRIAL: &str = r#"
import json, os, sys, time
time.sleep(float(sys.argv[2]))
x = float(sys.argv[1])
with open("metrics.jsonl", "w") as f:
    for e in range(3):
        f.write(json.dumps({"epoch": e, "loss": (x - 0.3) ** 2 + 1.0 / (e + 1)}) + "\n")
with open("result.json", "w") as f:
    json.dump({"loss": (x - 0.3) ** 2}, f)
"#;

struct Run {
    requests: usize,
    by_route: [usize; 4],
    trials: usize,
    cpu: Duration,
    wall: Duration,
}

// The child is reaped by `wait4` (for its rusage), which clippy cannot see.
#[allow(clippy::zombie_processes)]
fn run(parallel: u32, trials: u32, sleep: f64, cache: &std::path::Path) -> Run {
    let dir = tempfile::tempdir().unwrap();
    let work = dir.path().join("endpoint");
    std::fs::create_dir_all(&work).unwrap();
    std::fs::write(dir.path().join("trial.py"), TRIAL).unwrap();
    let tiles: Vec<String> = (0..12).map(|i| i.to_string()).collect();
    let api = Double::compute(&[
        "--token",
        TOKEN,
        "--workers",
        "12",
        "--accelerators",
        &tiles.join(","),
        "--rate",
        "1000/10",
        "--work-dir",
        work.to_str().unwrap(),
    ]);
    let cfg = dir.path().join("bench.toml");
    std::fs::write(
        &cfg,
        format!(
            r#"
[study]
name = "bench"
objective = "loss"
trials = {trials}
parallel = {parallel}
root = "studies"

[strategy]
plugin = "{plugin}"

[executor]
kind = "globus"
endpoint = "5c6f1a2e-0000-4000-8000-00000000b0b0"
base_url = "{url}"
remote_dir = "{flare}"
code_dir = "{code}"
command = ["python3", "{{config_dir}}/trial.py", "{{x}}", "{sleep}"]
poll_interval_s = 1
max_requests = 1000

[space]
x = {{ type = "float", low = 0.0, high = 1.0 }}
"#,
            plugin = plugin("random").display(),
            url = api.url(),
            flare = dir.path().join("flare").display(),
            code = dir.path().display(),
        ),
    )
    .unwrap();
    let start = Instant::now();
    let child = Command::new(host_bin())
        .args(["run", "--config", cfg.to_str().unwrap(), "--quiet"])
        .current_dir(dir.path())
        .env("ALCF_HOST_CACHE", cache)
        .env("ALCF_HOST_CONFIG_DIR", dir.path().join("config"))
        .env("ALCF_HOST_COMPUTE_TOKEN", TOKEN)
        .spawn()
        .unwrap();
    let (status, cpu) = wait_with_rusage(child.id() as libc::pid_t);
    let wall = start.elapsed();
    assert!(status == 0, "alcf-host run exited with {status}");
    let states = trial_states(&dir.path().join("studies/bench"));
    let done = states.iter().filter(|(_, s, _)| s == "completed").count();
    assert_eq!(done, trials as usize, "{states:?}");
    let reqs = api.requests();
    let count = |suffix: &str| reqs.iter().filter(|r| r["path"].as_str().is_some_and(|p| p.ends_with(suffix))).count();
    let by_route = [count("/v3/functions"), count("/submit"), count("/batch_status"), count("/status")];
    Run { requests: reqs.len(), by_route, trials: done, cpu, wall }
}

/// Waits for `pid`; its exit status and its CPU time (user + system).
fn wait_with_rusage(pid: libc::pid_t) -> (i32, Duration) {
    let mut status = 0;
    let mut u: libc::rusage = unsafe { std::mem::zeroed() };
    let r = unsafe { libc::wait4(pid, &mut status, 0, &mut u) };
    assert_eq!(r, pid, "wait4");
    let t = |tv: libc::timeval| Duration::new(tv.tv_sec as u64, tv.tv_usec as u32 * 1000);
    (libc::WEXITSTATUS(status), t(u.ru_utime) + t(u.ru_stime))
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

fn main() {
    let runs: usize = std::env::args().skip_while(|a| a != "--runs").nth(1).and_then(|v| v.parse().ok()).unwrap_or(3);
    alcf_tests::ensure_built();
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!("globus executor benchmark, {runs} runs each, alternating; load average at start: {}", load.trim());
    println!("trials of 3 s, poll every 1 s, 12 workers on the double\n");
    // One compile cache for every run, warmed first: the figures are a resumed user's, not a
    // first run's wasm compile.
    let cache = tempfile::tempdir().unwrap();
    run(1, 1, 0.0, cache.path());
    let settings = [(12u32, 36u32), (1, 6)];
    let mut results: Vec<Vec<Run>> = vec![Vec::new(), Vec::new()];
    for _ in 0..runs {
        for (i, (parallel, trials)) in settings.iter().enumerate() {
            results[i].push(run(*parallel, *trials, 3.0, cache.path()));
        }
    }
    for ((parallel, trials), rs) in settings.iter().zip(&results) {
        let per_trial = median(rs.iter().map(|r| r.requests as f64 / r.trials as f64).collect());
        let cpu = median(rs.iter().map(|r| r.cpu.as_secs_f64() * 1e3 / r.trials as f64).collect());
        let wall = median(rs.iter().map(|r| r.wall.as_secs_f64()).collect());
        let routes = &rs[rs.len() / 2].by_route;
        println!(
            "{parallel:>2} in flight, {trials} trials: median {per_trial:.2} HTTP requests per trial \
             (one run: {} register, {} submit, {} batch status, {} endpoint status); median {cpu:.1} ms host CPU \
             per trial; median {wall:.1} s wall",
            routes[0], routes[1], routes[2], routes[3],
        );
        println!(
            "   runs: {:?}",
            rs.iter()
                .map(|r| format!(
                    "{:.2} req/trial, {:.1} ms",
                    r.requests as f64 / r.trials as f64,
                    r.cpu.as_secs_f64() * 1e3 / r.trials as f64
                ))
                .collect::<Vec<_>>()
        );
    }
}
