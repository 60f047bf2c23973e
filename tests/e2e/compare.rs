//! `alcf-host compare`: strategies side by side on a bench function, with a report directory.

use alcf_tests::{alcf, guest, host_bin, plugin, text};

fn finite(v: &serde_json::Value) -> bool {
    v.as_f64().is_some_and(f64::is_finite)
}

#[test]
fn compare_writes_a_report_with_one_row_per_strategy() {
    host_bin(); // builds the host and every plugin
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("report");
    // Named strategies (the harness builds every plugin): random and qmc, both cheap in a debug host.
    let strategies = vec![plugin("random"), plugin("qmc")];
    for s in &strategies {
        assert!(s.exists(), "{} is not built", s.display());
    }
    let mut args: Vec<String> = vec!["compare".into()];
    for s in &strategies {
        args.extend(["--strategy".into(), s.display().to_string()]);
    }
    args.extend(
        ["--objective", "bench:branin", "--trials", "12", "--repeats", "3", "--parallel", "2", "--jobs", "2", "--out"]
            .map(String::from),
    );
    args.push(out.display().to_string());
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let result = alcf(&args, &dir.path().join("cache"));
    let t = text(&result);
    assert!(result.status.success(), "{t}");

    for f in ["summary.md", "summary.json", "trials.csv", "trials.json", "curves.png", "curves.svg"] {
        let p = out.join(f);
        assert!(p.metadata().is_ok_and(|m| m.len() > 0), "{f} missing or empty\n{t}");
    }
    assert!(std::fs::read(out.join("curves.png")).unwrap().starts_with(b"\x89PNG"));
    assert!(std::fs::read_to_string(out.join("curves.svg")).unwrap().contains("<svg"));

    let summary: serde_json::Value = serde_json::from_slice(&std::fs::read(out.join("summary.json")).unwrap()).unwrap();
    let rows = summary["strategies"].as_array().unwrap();
    assert_eq!(rows.len(), strategies.len(), "{summary:#}");
    for row in rows {
        assert_eq!(row["runs"], 3, "{row:#}");
        assert_eq!(row["failed"], 0, "{row:#}");
        for key in ["median", "mean", "sd", "mean_rank", "auc", "suggest_ms"] {
            assert!(finite(&row[key]), "{key} of {}: {}", row["name"], row[key]);
        }
        let rank = row["mean_rank"].as_f64().unwrap();
        assert!((1.0..=strategies.len() as f64).contains(&rank), "{row:#}");
        assert!(row["median"].as_f64().unwrap() >= -1e-9, "regret is never (much) below 0: {row:#}");
    }

    // The printed table and summary.md: a header, a rule, one row per strategy.
    let stdout = String::from_utf8_lossy(&result.stdout);
    let table: Vec<&str> = stdout.lines().filter(|l| l.starts_with('|')).collect();
    assert_eq!(table.len(), 2 + strategies.len(), "{stdout}");
    for s in &strategies {
        let name = s.file_stem().unwrap().to_string_lossy();
        assert!(table.iter().any(|l| l.starts_with(&format!("| {name} "))), "no row for {name}:\n{stdout}");
    }
    let md = std::fs::read_to_string(out.join("summary.md")).unwrap();
    assert_eq!(md.lines().filter(|l| l.starts_with('|')).count(), 2 + strategies.len(), "{md}");

    // Every trial of every run, with seeds shared across strategies.
    let csv = std::fs::read_to_string(out.join("trials.csv")).unwrap();
    assert_eq!(csv.lines().count(), 1 + strategies.len() * 3 * 12, "{csv}");
    let trials: serde_json::Value = serde_json::from_slice(&std::fs::read(out.join("trials.json")).unwrap()).unwrap();
    let seeds: std::collections::BTreeSet<u64> =
        trials.as_array().unwrap().iter().map(|t| t["seed"].as_u64().unwrap()).collect();
    assert_eq!(seeds.into_iter().collect::<Vec<_>>(), [0, 1, 2]);
}

/// A BBOB family runs instance = seed in each repeat; on a noisy function regret is measured on
/// the noiseless value of the incumbent; `alcf-host bench eval` gives another tool the very same
/// values.
#[test]
fn a_family_of_noisy_instances_is_compared_on_the_noiseless_regret() {
    host_bin();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("report");
    let random = plugin("random");
    let args = [
        "compare",
        "--strategy",
        random.to_str().unwrap(),
        "--objective",
        "bench:bbob_f8_d3_mixed_add1",
        "--trials",
        "8",
        "--repeats",
        "2",
        "--seed",
        "101",
        "--out",
        out.to_str().unwrap(),
        "--quiet",
    ];
    let result = alcf(&args, &dir.path().join("cache"));
    assert!(result.status.success(), "{}", text(&result));
    let summary: serde_json::Value = serde_json::from_slice(&std::fs::read(out.join("summary.json")).unwrap()).unwrap();
    assert_eq!(summary["objective"], "bench:bbob_f008_d03_mixed_add1");
    assert!(summary["metric"]["optimum"].is_null(), "a family has no single optimum: {summary:#}");
    let runs = summary["runs"].as_array().unwrap();
    let problems: Vec<&str> = runs.iter().map(|r| r["problem"].as_str().unwrap()).collect();
    assert_eq!(problems, ["bbob_f008_i101_d03_mixed_add1", "bbob_f008_i102_d03_mixed_add1"]);
    assert!(std::fs::read_to_string(out.join("summary.md")).unwrap().contains("A family of instances"));

    // The trials' noiseless values, checked point by point through `bench eval` (what
    // scripts/bench-suite.py runs Optuna with), and the regret of the incumbent.
    let trials: serde_json::Value = serde_json::from_slice(&std::fs::read(out.join("trials.json")).unwrap()).unwrap();
    for run in runs {
        let (seed, optimum) = (run["seed"].as_u64().unwrap(), run["optimum"].as_f64().unwrap());
        let rows: Vec<&serde_json::Value> =
            trials.as_array().unwrap().iter().filter(|t| t["seed"].as_u64() == Some(seed)).collect();
        assert_eq!(rows.len(), 8);
        let input: String = rows.iter().map(|t| format!("{}\n", t["params"])).collect();
        let mut child = std::process::Command::new(host_bin())
            .args(["bench", "eval", "bench:bbob_f8_d3_mixed_add1", "--instance", &seed.to_string()])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        use std::io::Write as _;
        child.stdin.take().unwrap().write_all(input.as_bytes()).unwrap();
        let answers = child.wait_with_output().unwrap();
        assert!(answers.status.success());
        let answers: Vec<serde_json::Value> =
            String::from_utf8(answers.stdout).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
        let (mut best, mut regret) = (f64::INFINITY, f64::NAN);
        for (t, a) in rows.iter().zip(&answers) {
            assert_eq!(t["value"], a["value"], "the trial observed what bench eval gives");
            assert_eq!(t["true_value"], a["true_value"]);
            assert_ne!(t["value"], t["true_value"], "the noise is there");
            let v = t["value"].as_f64().unwrap();
            if v < best {
                best = v;
                regret = a["true_value"].as_f64().unwrap() - optimum;
            }
            assert_eq!(t["regret"].as_f64().unwrap(), regret);
        }
    }
    let described = std::process::Command::new(host_bin())
        .args(["bench", "describe", "bench:bbob_f8_d3_mixed_add1", "--instance", "101"])
        .output()
        .unwrap();
    let d: serde_json::Value = serde_json::from_slice(&described.stdout).unwrap();
    assert_eq!(d["optimum"], runs[0]["optimum"]);
    let kinds: Vec<&str> = d["params"].as_array().unwrap().iter().map(|p| p["type"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["float", "float", "int"]);
    assert_eq!(d["params"][1]["log"], true);
    // A family without an instance is refused with the fix.
    let refused =
        std::process::Command::new(host_bin()).args(["bench", "describe", "bench:bbob_f8_d3"]).output().unwrap();
    assert!(!refused.status.success());
    assert!(text(&refused).contains("give --instance I"), "{}", text(&refused));
}

#[test]
fn compare_checks_every_strategy_before_running() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("report");
    let random = plugin("random");
    let args = [
        "compare",
        "--strategy",
        random.to_str().unwrap(),
        "--strategy",
        "/nonexistent/nope.wasm",
        "--objective",
        "bench:branin",
        "--out",
        out.to_str().unwrap(),
    ];
    let result = alcf(&args, &dir.path().join("cache"));
    let t = text(&result);
    assert!(!result.status.success(), "{t}");
    assert!(t.contains("/nonexistent/nope.wasm"), "{t}");
    assert!(!out.join("summary.json").exists(), "no work before every strategy loads");
}

#[test]
fn a_failing_plugin_is_recorded_per_repeat_and_the_rest_continues() {
    host_bin();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("report");
    let random = plugin("random");
    let hostile = format!("{}@{{\"mode\":\"panic\"}}", guest("hostile").display());
    let args = [
        "compare",
        "--strategy",
        random.to_str().unwrap(),
        "--strategy",
        &hostile,
        "--objective",
        "bench:branin",
        "--trials",
        "5",
        "--repeats",
        "2",
        "--out",
        out.to_str().unwrap(),
    ];
    let result = alcf(&args, &dir.path().join("cache"));
    let t = text(&result);
    assert!(result.status.success(), "a failed run is reported, not fatal: {t}");
    assert!(t.contains("hostile{mode=panic}: repeat 0 (seed 0) failed") && t.contains("panic"), "{t}");
    let summary: serde_json::Value = serde_json::from_slice(&std::fs::read(out.join("summary.json")).unwrap()).unwrap();
    let rows = summary["strategies"].as_array().unwrap();
    assert_eq!((rows[0]["runs"].as_u64(), rows[0]["failed"].as_u64()), (Some(2), Some(0)));
    assert_eq!((rows[1]["runs"].as_u64(), rows[1]["failed"].as_u64()), (Some(0), Some(2)));
    assert!(finite(&rows[0]["median"]) && rows[1]["median"].is_null(), "{summary:#}");
    let md = std::fs::read_to_string(out.join("summary.md")).unwrap();
    assert!(md.contains("## Failed runs") && md.contains("0/2 (2 failed)"), "{md}");
    assert!(out.join("curves.png").exists());
}

/// `compare --config` runs one durable study per (strategy, repeat) in one process: each must get
/// its own complete host.log, not only the first.
#[test]
fn compare_config_gives_every_study_its_own_log() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("bench.toml");
    std::fs::write(
        &cfg,
        "[study]\nname = \"cfg\"\ntrials = 4\n\n[executor]\nkind = \"bench\"\nfunction = \"branin\"\n",
    )
    .unwrap();
    let out = dir.path().join("report");
    let (r, q) = (plugin("random"), plugin("qmc"));
    let result = alcf(
        &[
            "compare",
            "--strategy",
            r.to_str().unwrap(),
            "--strategy",
            q.to_str().unwrap(),
            "--config",
            cfg.to_str().unwrap(),
            "--repeats",
            "2",
            "--quiet",
            "--out",
            out.to_str().unwrap(),
        ],
        &dir.path().join("cache"),
    );
    assert!(result.status.success(), "{}", text(&result));
    let studies: Vec<_> = std::fs::read_dir(out.join("studies")).unwrap().map(|e| e.unwrap().path()).collect();
    assert_eq!(studies.len(), 4, "{studies:?}");
    for study in &studies {
        let log = std::fs::read_to_string(study.join("host.log")).unwrap_or_default();
        assert!(log.contains("plugin loaded") && log.contains("campaign stopped"), "{}: {log}", study.display());
    }
    // Each study's HTML report, linked from summary.md.
    let md = std::fs::read_to_string(out.join("summary.md")).unwrap();
    assert!(md.contains("## Study reports"), "{md}");
    for study in &studies {
        let name = study.file_name().unwrap().to_string_lossy().into_owned();
        let rel = format!("studies/{name}/report/index.html");
        assert!(md.contains(&format!("[{name}]({rel})")), "{md}");
        assert!(out.join(&rel).exists(), "{rel}");
    }
}
