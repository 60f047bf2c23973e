//! The operator's edges of the CLI: `study export` loaded by the real pandas (scripts/setup-pydata.sh
//! installs it from PyPI), `study best` ready to paste, `study show --top`, `study delete`, shell
//! completions and man pages.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Once;

use alcf_tests::{alcf, plugin, repo, text};

static SETUP: Once = Once::new();

fn pandas_python() -> PathBuf {
    SETUP.call_once(|| {
        let status = Command::new("bash").arg("scripts/setup-pydata.sh").current_dir(repo()).status().unwrap();
        assert!(status.success(), "scripts/setup-pydata.sh failed");
    });
    let venv = std::env::var_os("ALCF_PYDATA").map_or_else(|| repo().join("target/pydata"), PathBuf::from);
    venv.join("bin/python")
}

/// A finished 20-trial bench study under `root` named `name`.
fn bench_study(root: &Path, cache: &Path, name: &str) {
    let out = alcf(
        &[
            "run",
            "--strategy",
            plugin("random").to_str().unwrap(),
            "--objective",
            "bench:branin",
            "--trials",
            "20",
            "--study",
            name,
            "--root",
            root.to_str().unwrap(),
            "--quiet",
        ],
        cache,
    );
    assert!(out.status.success(), "{}", text(&out));
}

#[test]
fn export_loads_into_pandas_and_best_and_top_agree() {
    let dir = tempfile::tempdir().unwrap();
    let (root, cache) = (dir.path().join("studies"), dir.path().join("cache"));
    bench_study(&root, &cache, "b");
    let r = root.to_str().unwrap();
    let csv = dir.path().join("b.csv");
    let json = dir.path().join("b.json");
    for (format, path) in [("csv", &csv), ("json", &json)] {
        let out =
            alcf(&["study", "export", "b", "--root", r, "--format", format, "--out", path.to_str().unwrap()], &cache);
        assert!(out.status.success(), "{}", text(&out));
    }
    let out = alcf(&["study", "best", "b", "--root", r], &cache);
    assert!(out.status.success(), "{}", text(&out));
    let best: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let out = alcf(&["study", "best", "b", "--root", r, "--format", "flags"], &cache);
    let flags = String::from_utf8(out.stdout).unwrap();
    assert!(flags.starts_with("--x1 ") && flags.contains(" --x2 "), "{flags}");
    let out = alcf(&["study", "show", "b", "--root", r, "--json", "--top", "3"], &cache);
    let top: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(top["trials"].as_array().unwrap().len(), 3);
    assert_eq!(top["trials"][0]["params"], best, "the top trial is the best");

    let check = r#"
import json, sys
import pandas as pd
csv = pd.read_csv(sys.argv[1])
js = pd.read_json(sys.argv[2])
# pandas' default float parsers may miss the last digit; the round-trip ones give the exact values.
exact = pd.read_csv(sys.argv[1], float_precision="round_trip")
exact_js = pd.read_json(sys.argv[2], precise_float=True)
print(json.dumps({
    "rows": [len(csv), len(js)],
    "columns": list(csv.columns),
    "value_dtype": str(csv["value"].dtype),
    "x1_close": bool(((csv["param.x1"] - js["param.x1"]).abs() <= 1e-12 * csv["param.x1"].abs().max()).all()),
    "x1_equal": bool((exact["param.x1"] == exact_js["param.x1"]).all()),
    "min_value": float(csv["value"].min()),
    "best_x1": float(exact.loc[exact["value"].idxmin(), "param.x1"]),
    "duration_ok": bool((csv["duration_s"] >= 0).all()),
    "states": sorted(set(csv["state"])),
}))
"#;
    let out = Command::new(pandas_python()).args(["-c", check]).arg(&csv).arg(&json).output().unwrap();
    assert!(out.status.success(), "pandas: {}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["rows"], serde_json::json!([20, 20]), "{v}");
    assert_eq!(v["value_dtype"], "float64", "{v}");
    assert_eq!(v["x1_close"], true, "{v}");
    assert_eq!(v["x1_equal"], true, "{v}");
    assert_eq!(v["duration_ok"], true, "{v}");
    assert_eq!(v["states"], serde_json::json!(["completed"]), "{v}");
    assert_eq!(v["best_x1"].as_f64(), best["x1"].as_f64(), "{v}");
    let columns: Vec<&str> = v["columns"].as_array().unwrap().iter().map(|c| c.as_str().unwrap()).collect();
    assert_eq!(&columns[..5], ["id", "state", "attempt", "source", "value"]);
    assert!(columns.contains(&"param.x1") && columns.contains(&"param.x2"), "{columns:?}");
    assert!(columns.iter().any(|c| c.starts_with("metric.")), "{columns:?}");
    assert_eq!(&columns[columns.len() - 2..], ["epochs", "curve"]);
}

#[test]
fn delete_asks_unless_yes() {
    let dir = tempfile::tempdir().unwrap();
    let (root, cache) = (dir.path().join("studies"), dir.path().join("cache"));
    bench_study(&root, &cache, "gone");
    let r = root.to_str().unwrap();
    // Not a terminal and no --yes: refused, nothing deleted.
    let out = alcf(&["study", "delete", "gone", "--root", r], &cache);
    assert!(!out.status.success());
    assert!(text(&out).contains("--yes"), "{}", text(&out));
    assert!(root.join("gone/study.db").exists());
    let out = alcf(&["study", "delete", "gone", "--root", r, "--yes"], &cache);
    assert!(out.status.success(), "{}", text(&out));
    assert!(!root.join("gone").exists());
    let out = alcf(&["study", "show", "gone", "--root", r], &cache);
    assert!(!out.status.success());
}

#[test]
fn completions_and_man_pages() {
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    for shell in ["bash", "zsh", "fish"] {
        let out = alcf(&["completions", shell], &cache);
        assert!(out.status.success(), "{}", text(&out));
        let script = String::from_utf8(out.stdout).unwrap();
        assert!(script.contains("export") && script.contains("llm-log"), "{shell}: {script}");
    }
    // bash really loads it.
    let out = alcf(&["completions", "bash"], &cache);
    let file = dir.path().join("alcf-host.bash");
    std::fs::write(&file, &out.stdout).unwrap();
    let status = Command::new("bash")
        .args(["-c", &format!("source {} && complete -p alcf-host", file.display())])
        .status()
        .unwrap();
    assert!(status.success());
    let man = dir.path().join("man");
    let out = alcf(&["man", "--out", man.to_str().unwrap()], &cache);
    assert!(out.status.success(), "{}", text(&out));
    let page = std::fs::read_to_string(man.join("alcf-host-study-export.1")).unwrap();
    assert!(page.starts_with(".ie") || page.contains(".TH"), "{page}");
    assert!(page.contains("pandas"), "{page}");
    assert!(man.join("alcf-host.1").exists() && man.join("alcf-host-run.1").exists());
}

/// `compare --json` prints the summary (what summary.json holds) instead of the table.
#[test]
fn compare_prints_its_summary_as_json() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("cmp");
    let (r, q) = (plugin("random"), plugin("qmc"));
    let result = alcf(
        &[
            "compare",
            "--strategy",
            r.to_str().unwrap(),
            "--strategy",
            q.to_str().unwrap(),
            "--objective",
            "bench:branin",
            "--trials",
            "6",
            "--repeats",
            "2",
            "--out",
            out.to_str().unwrap(),
            "--json",
        ],
        &dir.path().join("cache"),
    );
    assert!(result.status.success(), "{}", text(&result));
    let printed: serde_json::Value = serde_json::from_slice(&result.stdout).unwrap();
    let file: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("summary.json")).unwrap()).unwrap();
    assert_eq!(printed, file);
}
