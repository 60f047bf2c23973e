//! `alcf-host report`: a self-contained HTML file with a PNG and an SVG of each figure beside it,
//! opened in headless Chromium (Debian's `chromium`, installed by .ci/run): every figure must
//! render, and a screenshot is taken.

use std::path::{Path, PathBuf};
use std::process::Command;

use alcf_tests::{alcf, chromium, plugin, text};

const FIGURES: [&str; 9] =
    ["best_trials", "best_time", "params", "parallel", "importance", "heatmap", "outcomes", "timeline", "curves"];

/// A local study whose trials write learning curves and fail for x > 0.8 (with a reason).
fn study(dir: &Path) -> PathBuf {
    let trial = r#"import json, sys
x, lr = float(sys.argv[1]), float(sys.argv[2])
if x > 0.8:
    sys.stderr.write("diverged at x=%s\n" % x)
    sys.exit(3)
with open("metrics.jsonl", "w") as f:
    for e in range(5):
        f.write(json.dumps({"epoch": e, "loss": (x - 0.3) ** 2 + 1.0 / (e + 1) + lr}) + "\n")
json.dump({"loss": (x - 0.3) ** 2 + lr}, open("result.json", "w"))
"#;
    std::fs::write(dir.join("trial.py"), trial).unwrap();
    let cfg = dir.join("r.toml");
    std::fs::write(
        &cfg,
        format!(
            "[study]\nname = \"r\"\nobjective = \"loss\"\ntrials = 30\nparallel = 3\nroot = \"studies\"\n\n\
             [strategy]\nplugin = \"{}\"\n\n[executor]\nkind = \"local\"\n\
             command = [\"python3\", \"{{config_dir}}/trial.py\", \"{{x}}\", \"{{lr}}\"]\n\n\
             [space]\nx = {{ type = \"float\", low = 0.0, high = 1.0 }}\n\
             lr = {{ type = \"float\", low = 1e-4, high = 1e-1, log = true }}\n\
             opt = {{ type = \"choice\", values = [\"sgd\", \"adamw\"] }}\n",
            plugin("random").display()
        ),
    )
    .unwrap();
    cfg
}

fn headless(dir: &Path, args: &[&str]) -> std::process::Output {
    Command::new(chromium())
        .args(["--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars"])
        .arg(format!("--user-data-dir={}", dir.join("chromium-profile").display()))
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn the_report_renders_every_figure_in_chromium() {
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    let cfg = study(dir.path());
    let out = Command::new(alcf_tests::host_bin())
        .args(["run", "--config", cfg.to_str().unwrap(), "--quiet"])
        .current_dir(dir.path())
        .env("ALCF_HOST_CACHE", &cache)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let root = dir.path().join("studies");
    let out = alcf(&["report", "r", "--root", root.to_str().unwrap()], &cache);
    assert!(out.status.success(), "{}", text(&out));
    let report = root.join("r/report");
    for f in FIGURES {
        let png = std::fs::read(report.join(format!("{f}.png"))).unwrap_or_else(|e| panic!("{f}.png: {e}"));
        assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n", "{f}.png");
        let svg = std::fs::read_to_string(report.join(format!("{f}.svg"))).unwrap();
        assert!(svg.contains("<svg") && svg.len() > 2000, "{f}.svg is nearly empty ({} bytes)", svg.len());
    }
    let html = std::fs::read_to_string(report.join("index.html")).unwrap();
    // Self-contained: nothing is fetched from anywhere.
    for needle in ["src=\"http", "href=\"http", "<link", "@import", "url(http"] {
        assert!(!html.contains(needle), "the report references {needle}");
    }
    assert!(html.contains("exited with status 3"), "the failure reasons are grouped in a table");
    assert!(html.contains("Best trials"));

    // Chromium: every figure has a box and drawn content (the report's own check), and a screenshot.
    let url = format!("file://{}", report.join("index.html").display());
    let dom = headless(dir.path(), &["--virtual-time-budget=5000", "--dump-dom", &url]);
    let dom = String::from_utf8_lossy(&dom.stdout).into_owned();
    assert!(
        dom.contains(&format!("data-figures-rendered=\"{}\"", FIGURES.len())),
        "not every figure rendered: {}",
        &dom[..dom.len().min(400)]
    );
    let shot = dir.path().join("report.png");
    let out = headless(dir.path(), &["--window-size=1100,3000", &format!("--screenshot={}", shot.display()), &url]);
    let png = std::fs::read(&shot).unwrap_or_else(|e| panic!("no screenshot ({e}): {}", text(&out)));
    assert!(png.len() > 50_000 && &png[..4] == b"\x89PNG", "a blank screenshot ({} bytes)", png.len());
    if let Some(keep) = std::env::var_os("ALCF_KEEP_SCREENSHOTS") {
        std::fs::copy(&shot, PathBuf::from(keep).join("report.png")).unwrap();
    }
}
