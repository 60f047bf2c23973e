//! Every shipped strategy through the real host: mixed spaces, parallel pending trials, resume.

use std::collections::HashSet;
use std::path::Path;

use alcf_tests::{alcf, plugin, text};

// The Rust strategies, and the Python ones (componentize-py components).
const STRATEGIES: [&str; 8] = ["random", "qmc", "gp_ucb", "region_ucb", "genetic", "tpe", "random_py", "cmaes"];

/// All trial parameter sets of a study, as canonical JSON strings.
fn params(study: &Path) -> Vec<String> {
    let conn = rusqlite::Connection::open(study.join("study.db")).unwrap();
    let mut stmt = conn.prepare("SELECT params FROM trial ORDER BY id").unwrap();
    stmt.query_map([], |r| r.get::<_, String>(0)).unwrap().map(Result::unwrap).collect()
}

fn bench_config(
    dir: &Path,
    name: &str,
    strategy: &str,
    function: &str,
    trials: u32,
    parallel: u32,
) -> std::path::PathBuf {
    let path = dir.join(format!("{name}.toml"));
    std::fs::write(
        &path,
        format!(
            r#"
[study]
name = "{name}"
trials = {trials}
parallel = {parallel}
seed = 1
root = "studies"

[strategy]
plugin = "{plugin}"

[executor]
kind = "bench"
function = "{function}"
delay_s = 0.02      # trials overlap, so suggestions are made with trials pending
"#,
            plugin = plugin(strategy).display()
        ),
    )
    .unwrap();
    path
}

#[test]
fn every_strategy_runs_a_mixed_space_in_parallel_and_resumes_without_repeating() {
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    for s in STRATEGIES {
        let cfg = bench_config(dir.path(), s, s, "mixed", 24, 4);
        let out = alcf(&["run", "--config", cfg.to_str().unwrap(), "--quiet"], &cache);
        assert!(out.status.success(), "{s}: {}", text(&out));
        let out = alcf(&["run", "--config", cfg.to_str().unwrap(), "--quiet", "--resume", "--trials", "36"], &cache);
        assert!(out.status.success(), "{s} resume: {}", text(&out));
        let all = params(&dir.path().join("studies").join(s));
        assert_eq!(all.len(), 36, "{s}");
        let distinct: HashSet<&String> = all.iter().collect();
        assert_eq!(distinct.len(), all.len(), "{s} proposed a point twice: {all:#?}");
    }
}

#[test]
fn gp_ucb_never_duplicates_a_pending_point_with_parallel_8() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = bench_config(dir.path(), "gp8", "gp_ucb", "hartmann6", 48, 8);
    let out = alcf(&["run", "--config", cfg.to_str().unwrap(), "--quiet"], &dir.path().join("cache"));
    assert!(out.status.success(), "{}", text(&out));
    let all = params(&dir.path().join("studies/gp8"));
    assert_eq!(all.len(), 48);
    let distinct: HashSet<&String> = all.iter().collect();
    assert_eq!(distinct.len(), 48, "duplicate suggestions: {all:#?}");
}
