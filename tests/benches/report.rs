//! `alcf-host report` on a 1000-trial study (goal: under 2 s) and on a 100-trial one, alternating,
//! and the dashboard's page of each (goal: under 1 s for 1000 trials), with the release binary
//! (built here when missing or stale). The studies are written straight
//! into study databases: 6 parameters (log, linear, integer, choice), 20-epoch learning curves,
//! 8% failed trials with a few distinct reasons, 12 slots.
//!
//!     cargo bench -p alcf-tests --bench report               # ~2 minutes with a fresh release build
//!     cargo bench -p alcf-tests --bench report -- --runs 7

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use alcf_host::study::{Finish, Fs, StudyDb, StudyMeta, TrialState};
use alcf_tests::repo;

fn make_study(root: &Path, name: &str, n: u64) {
    let meta = StudyMeta {
        name: name.into(),
        objective: "val_acc".into(),
        direction: "maximize".into(),
        seed: 0,
        space: serde_json::json!([
            {"name": "lr", "type": "float", "low": 1e-5, "high": 1e-1, "log": true},
            {"name": "dropout", "type": "float", "low": 0.0, "high": 0.6, "log": false},
            {"name": "weight_decay", "type": "float", "low": 1e-6, "high": 1e-2, "log": true},
            {"name": "epochs", "type": "int", "low": 5, "high": 100, "log": false},
            {"name": "batch_size", "type": "choice", "values": [32, 64, 128, 256]},
            {"name": "model", "type": "choice", "values": ["resnet18", "resnet34", "resnet50", "vgg16", "densenet121"]},
        ]),
        executor: "bench".into(),
        plugin: "gp_ucb.wasm".into(),
        plugin_sha256: "00".into(),
        created_at: 1_700_000_000.0,
    };
    let db = StudyDb::create_with(&root.join(name), &meta, Fs::Local).unwrap();
    let mut s = 0x9e3779b97f4a7c15u64;
    let mut rnd = move || {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        (s >> 11) as f64 / (1u64 << 53) as f64
    };
    let models = ["resnet18", "resnet34", "resnet50", "vgg16", "densenet121"];
    let mut done = Vec::new();
    for i in 0..n {
        let lr = 10f64.powf(-5.0 + 4.0 * rnd());
        let mut p = serde_json::Map::new();
        p.insert("lr".into(), lr.into());
        p.insert("dropout".into(), (0.6 * rnd()).into());
        p.insert("weight_decay".into(), 10f64.powf(-6.0 + 4.0 * rnd()).into());
        p.insert("epochs".into(), (5 + (rnd() * 95.0) as i64).into());
        p.insert("batch_size".into(), [32, 64, 128, 256][(rnd() * 4.0) as usize % 4].into());
        p.insert("model".into(), models[(rnd() * 5.0) as usize % 5].into());
        let id = db.insert_trial(&p).unwrap();
        db.mark_running(id, &format!("{}.aurora-pbs", 1000 + i), "{}").unwrap();
        let quality = 1.0 - (lr.log10() + 2.5).abs() / 3.0;
        let f = if rnd() < 0.08 {
            Finish::failed(
                [
                    "exited with status 1",
                    "timed out: it ran past executor.timeout_s of 3300 s",
                    "killed by signal 9 (SIGKILL)",
                ][i as usize % 3]
                    .into(),
            )
        } else {
            let curve: Vec<_> = (0..20)
                .map(|e| {
                    [
                        ("epoch".to_string(), e as f64),
                        ("val_acc".to_string(), quality * (1.0 - (-0.2 * e as f64).exp())),
                    ]
                    .into()
                })
                .collect();
            Finish {
                state: TrialState::Completed,
                value: Some(quality),
                metrics: [("val_acc".to_string(), quality)].into(),
                curve,
                failure: None,
                log_tail: None,
            }
        };
        done.push((id, f));
    }
    db.finish_trials(&done).unwrap();
}

fn release_bin() -> std::path::PathBuf {
    let status =
        Command::new("cargo").args(["build", "--release", "-p", "alcf-host"]).current_dir(repo()).status().unwrap();
    assert!(status.success(), "cargo build --release -p alcf-host");
    repo().join("target/release/alcf-host")
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

fn main() {
    let runs: usize = std::env::args().skip_while(|a| a != "--runs").nth(1).and_then(|v| v.parse().ok()).unwrap_or(5);
    let bin = release_bin();
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("studies");
    make_study(&root, "t1000", 1000);
    make_study(&root, "t100", 100);
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!("alcf-host report, release binary, {runs} alternating runs; load average at start: {}", load.trim());
    let mut times: [Vec<f64>; 2] = [Vec::new(), Vec::new()];
    for _ in 0..runs {
        for (i, name) in ["t1000", "t100"].iter().enumerate() {
            let t = Instant::now();
            let out = Command::new(&bin)
                .args(["report", name, "--root", root.to_str().unwrap()])
                .env("ALCF_HOST_CACHE", dir.path().join("cache"))
                .output()
                .unwrap();
            let el: Duration = t.elapsed();
            assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
            times[i].push(el.as_secs_f64());
        }
    }
    // The dashboard's page of each study, fetched as a browser would (one GET, whole body).
    let mut dash = Command::new(&bin)
        .args(["dashboard", "--root", root.to_str().unwrap(), "--port", "0"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(&mut std::io::BufReader::new(dash.stdout.take().unwrap()), &mut line).unwrap();
    let host = line.trim().trim_start_matches("dashboard: http://").trim_end_matches('/').to_string();
    let mut pages: [Vec<f64>; 2] = [Vec::new(), Vec::new()];
    for _ in 0..runs {
        for (i, name) in ["t1000", "t100"].iter().enumerate() {
            let t = Instant::now();
            let mut s = std::net::TcpStream::connect(&host).unwrap();
            std::io::Write::write_all(&mut s, format!("GET /study/{name} HTTP/1.1\r\nHost: {host}\r\n\r\n").as_bytes())
                .unwrap();
            let mut body = Vec::new();
            std::io::Read::read_to_end(&mut s, &mut body).unwrap();
            assert!(body.starts_with(b"HTTP/1.1 200"), "{}", String::from_utf8_lossy(&body[..body.len().min(200)]));
            pages[i].push(t.elapsed().as_secs_f64());
        }
    }
    let _ = dash.kill();
    let _ = dash.wait();
    for (i, n) in [1000, 100].iter().enumerate() {
        println!(
            "dashboard page, {n:>5} trials: median {:.3} s (runs: {:?})",
            median(pages[i].clone()),
            pages[i].iter().map(|t| format!("{t:.3}")).collect::<Vec<_>>()
        );
    }
    for (i, (name, n)) in [("t1000", 1000), ("t100", 100)].iter().enumerate() {
        let size: u64 = std::fs::read_dir(root.join(name).join("report"))
            .unwrap()
            .filter_map(|e| e.ok()?.metadata().ok().map(|m| m.len()))
            .sum();
        println!(
            "{n:>5} trials: median {:.2} s wall (runs: {:?}); report directory {:.1} MB",
            median(times[i].clone()),
            times[i].iter().map(|t| format!("{t:.2}")).collect::<Vec<_>>(),
            size as f64 / 1e6
        );
    }
}
