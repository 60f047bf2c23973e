//! Plugins in Python and plugin projects: `alcf-host plugin new` and `plugin build` as a new user
//! runs them (outside this repository), a Python strategy through the real host (run, resume, its
//! Rust twin), a raising Python plugin's report, and the Python SDK's space mapping against the
//! Rust SDK's.

use std::path::{Path, PathBuf};
use std::process::Command;

use alcf_plugin_sdk::{Param, Rng, Space, Value};
use alcf_tests::{alcf, host_bin, plugin, repo, text};

/// componentize-py for the tests that are not about installing it (scripts/setup-componentize-py.sh).
fn componentize_py() -> PathBuf {
    let out = Command::new("bash").arg("scripts/setup-componentize-py.sh").current_dir(repo()).output().unwrap();
    assert!(out.status.success(), "setup-componentize-py.sh: {}", text(&out));
    PathBuf::from(String::from_utf8_lossy(&out.stdout).lines().last().unwrap().trim())
}

/// One compile cache for every Python component of these tests: an 18 MB component costs seconds
/// to compile, and the cache is keyed by the file's hash, so sharing it changes no result.
fn shared_cache() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| repo().join("target"), PathBuf::from);
    target.join("e2e-python-cache")
}

fn params(study: &Path) -> Vec<serde_json::Value> {
    let conn = rusqlite::Connection::open(study.join("study.db")).unwrap();
    let mut stmt = conn.prepare("SELECT params FROM trial ORDER BY id").unwrap();
    stmt.query_map([], |r| r.get::<_, String>(0)).unwrap().map(|p| serde_json::from_str(&p.unwrap()).unwrap()).collect()
}

fn run_bench(strategy: &Path, root: &Path, study: &str, trials: &str, parallel: &str, extra: &[&str]) -> String {
    let mut args = vec![
        "run",
        "--strategy",
        strategy.to_str().unwrap(),
        "--objective",
        "bench:branin",
        "--trials",
        trials,
        "--parallel",
        parallel,
        "--seed",
        "7",
        "--root",
        root.to_str().unwrap(),
        "--study",
        study,
        "--quiet",
    ];
    args.extend_from_slice(extra);
    let out = alcf(&args, &shared_cache());
    assert!(out.status.success(), "{study}: {}", text(&out));
    text(&out)
}

#[test]
fn a_python_plugin_from_the_template_builds_runs_resumes_and_matches_its_rust_twin() {
    let tmp = tempfile::tempdir().unwrap();
    let out =
        alcf(&["plugin", "new", "tpl", "--lang", "python", "--dir", tmp.path().to_str().unwrap()], &shared_cache());
    assert!(out.status.success(), "{}", text(&out));
    let project = tmp.path().join("tpl");
    assert!(
        project.join("alcf_strategy").is_dir() && project.join("wit/hpo.wit").is_file(),
        "the SDK and WIT travel with it"
    );

    // The template's own tests pass natively in the new project (no WebAssembly, no repository).
    let unit = Command::new("python3").args(["-m", "unittest", "-v"]).current_dir(&project).output().unwrap();
    assert!(unit.status.success(), "template tests: {}", text(&unit));

    // The first build installs componentize-py into the project's .venv, as for a new user.
    let out = Command::new(host_bin())
        .args(["plugin", "build", project.to_str().unwrap()])
        .env("ALCF_HOST_CACHE", shared_cache())
        .env_remove("ALCF_COMPONENTIZE_PY")
        .output()
        .unwrap();
    assert!(out.status.success(), "plugin build: {}", text(&out));
    assert!(project.join(".venv/bin/componentize-py").is_file());
    let wasm = project.join("tpl.wasm");
    assert!(text(&out).contains("loads in this host"), "{}", text(&out));

    // A study, then a resume to twice the trials: nothing repeated, nothing lost.
    let root = tmp.path().join("studies");
    run_bench(&wasm, &root, "py", "12", "3", &[]);
    let first = params(&root.join("py"));
    assert_eq!(first.len(), 12);
    run_bench(&wasm, &root, "py", "24", "3", &["--resume"]);
    let all = params(&root.join("py"));
    assert_eq!(all.len(), 24);
    assert_eq!(&all[..12], &first[..], "the resumed study kept its first 12 trials");
    let distinct: std::collections::HashSet<String> = all.iter().map(|p| p.to_string()).collect();
    assert_eq!(distinct.len(), 24, "a point was repeated after the resume: {all:?}");
    let states = alcf_tests::trial_states(&root.join("py"));
    assert!(states.iter().all(|(_, s, _)| s == "completed"), "{states:?}");

    // One trial at a time, the Python template and the Rust random plugin use the same streams
    // and the same space mapping, so they suggest the same points.
    run_bench(&wasm, &root, "py1", "10", "1", &[]);
    run_bench(&plugin("random"), &root, "rs1", "10", "1", &[]);
    let (py, rs) = (params(&root.join("py1")), params(&root.join("rs1")));
    for (i, (p, r)) in py.iter().zip(&rs).enumerate() {
        for (k, v) in r.as_object().unwrap() {
            let (a, b) = (p[k].as_f64().unwrap(), v.as_f64().unwrap());
            assert!((a - b).abs() <= 1e-12 * b.abs().max(1.0), "trial {i} `{k}`: Python {a}, Rust {b}");
        }
    }
}

#[test]
fn a_raising_python_plugin_is_reported_in_its_own_words() {
    let tmp = tempfile::tempdir().unwrap();
    let project = tmp.path().join("pyfail");
    std::fs::create_dir_all(&project).unwrap();
    // Line 6 raises, two frames below suggest.
    std::fs::write(
        project.join("app.py"),
        r#"import alcf_strategy as hpo


def scale(points):
    total = sum(points)
    return [p / total for p in points]


class Failing(hpo.Strategy):
    name = "pyfail"
    version = "0.1.0"
    description = "raises in suggest"

    def suggest(self, count, pending):
        return [self.space.decode(scale([0.0] * self.space.dim)) for _ in range(count)]


Strategy = hpo.export(Failing)
"#,
    )
    .unwrap();
    let out = Command::new(host_bin())
        .args(["plugin", "build", project.to_str().unwrap()])
        .env("ALCF_HOST_CACHE", shared_cache())
        .env("ALCF_COMPONENTIZE_PY", componentize_py())
        .output()
        .unwrap();
    assert!(out.status.success(), "plugin build: {}", text(&out));
    let root = tmp.path().join("studies");
    let wasm = project.join("pyfail.wasm");
    let out = alcf(
        &[
            "run",
            "--strategy",
            wasm.to_str().unwrap(),
            "--objective",
            "bench:branin",
            "--trials",
            "5",
            "--root",
            root.to_str().unwrap(),
            "--quiet",
        ],
        &shared_cache(),
    );
    let t = text(&out);
    assert_eq!(out.status.code(), Some(3), "a plugin failure exits 3: {t}");
    assert!(t.contains("ZeroDivisionError"), "the exception is named: {t}");
    assert!(t.contains("app.py\", line 6, in scale"), "the file, line and function are named: {t}");
    assert!(t.contains("app.py\", line 15, in suggest"), "the frame above is named: {t}");
    assert!(!t.contains("Python function threw an unexpected exception"), "not the runtime's wrapper: {t}");
}

/// The Python SDK's `Space` and `Rng` (run natively by CPython) against the Rust SDK's, on the
/// same points: ints and choices exactly, floats to the last bit (both use the C library's log
/// and exp natively).
#[test]
fn the_python_sdk_maps_the_space_and_draws_like_the_rust_sdk() {
    let space_params = vec![
        Param::float("x", -5.0, 10.0),
        Param::log_float("lr", 1e-5, 1e-1),
        Param::int("n", 1, 4),
        Param::log_int("bs", 16, 256),
        Param::choice("model", &["a", "b", "c"]),
        Param::float("flat", 2.0, 2.0),
        Param::int("one", 3, 3),
    ];
    let space = Space::new(&space_params).unwrap();
    let mut rng = Rng::new(3);
    let mut points: Vec<Vec<f64>> = vec![vec![0.0; 7], vec![1.0; 7], vec![0.5; 7], vec![0.999_999_999; 7]];
    // Bin edges of the ints and choices, where a formula that differs in the last bit would show.
    points.push(vec![0.25, 0.5, 0.25, 0.5, 1.0 / 3.0, 0.0, 0.0]);
    points.push(vec![0.75, 0.75, 0.75, 0.75, 2.0 / 3.0, 1.0, 1.0]);
    points.extend((0..300).map(|_| rng.unit_point(7)));

    let kind = |p: &Param| match &p.domain {
        alcf_plugin_sdk::Domain::Float { low, high, log } => {
            serde_json::json!({"name": p.name, "kind": "float", "low": low, "high": high, "log": log})
        }
        alcf_plugin_sdk::Domain::Int { low, high, log } => {
            serde_json::json!({"name": p.name, "kind": "int", "low": low, "high": high, "log": log})
        }
        alcf_plugin_sdk::Domain::Choice(c) => serde_json::json!({"name": p.name, "kind": "choice", "choices": c}),
    };
    let draws = 50;
    let input = serde_json::json!({
        "space": space_params.iter().map(kind).collect::<Vec<_>>(),
        "points": points,
        "seed": 42,
        "draws": draws,
    });
    let mut child = Command::new("python3")
        .arg(repo().join("plugins/sdk-python/tests/space_cases.py"))
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(child.stdin.as_mut().unwrap(), input.to_string().as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "space_cases.py: {}", text(&out));
    let py: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();

    let value_json = |v: &Value| match v {
        Value::Float(x) => serde_json::json!(x),
        Value::Int(i) => serde_json::json!(i),
        Value::Choice(c) => serde_json::json!(c),
    };
    for (i, x) in points.iter().enumerate() {
        let decoded = space.decode(x);
        let want: serde_json::Map<String, serde_json::Value> =
            decoded.iter().map(|a| (a.name.clone(), value_json(&a.value))).collect();
        assert_eq!(py["decoded"][i], serde_json::Value::Object(want), "decode of point {i} {x:?}");
        let encoded = space.encode(&decoded).unwrap();
        assert_eq!(py["encoded"][i], serde_json::json!(encoded), "encode of point {i}");
        assert_eq!(py["snapped"][i], serde_json::json!(space.snap(x)), "snap of point {i}");
    }

    let mut r = Rng::new(42);
    let u64s: Vec<String> = (0..draws).map(|_| r.next_u64().to_string()).collect();
    assert_eq!(py["rng"]["u64"], serde_json::json!(u64s), "next_u64 streams");
    let mut r = Rng::new(42);
    let f64s: Vec<f64> = (0..draws).map(|_| r.f64()).collect();
    assert_eq!(py["rng"]["f64"], serde_json::json!(f64s), "f64 streams");
    let mut r = Rng::new(42);
    let normals: Vec<f64> = (0..draws).map(|_| r.normal()).collect();
    assert_eq!(py["rng"]["normal"], serde_json::json!(normals), "normal streams");
    let mut r = Rng::new(42);
    let below: Vec<usize> = (0..draws).map(|_| r.below(7)).collect();
    assert_eq!(py["rng"]["below7"], serde_json::json!(below), "below(7) streams");
    let mut r = Rng::derive(42, 5);
    let derived: Vec<String> = (0..5).map(|_| r.next_u64().to_string()).collect();
    assert_eq!(py["rng"]["derive_1_5"], serde_json::json!(derived), "derive(seed, 5) streams");
}

/// `plugin new --lang rust` outside any workspace: the crate tests natively and builds into a
/// component this host loads and runs, with nothing from this repository.
#[test]
fn a_rust_plugin_from_the_template_builds_outside_the_repository() {
    let tmp = tempfile::tempdir().unwrap();
    assert!(!tmp.path().starts_with(repo()), "the project must live outside the repository");
    let out =
        alcf(&["plugin", "new", "myrs", "--lang", "rust", "--dir", tmp.path().to_str().unwrap()], &shared_cache());
    assert!(out.status.success(), "{}", text(&out));
    let project = tmp.path().join("myrs");
    // Sharing the repository's target directory only saves compile time: the project resolves
    // its own dependencies (no lock file of ours) from its own manifest.
    let target = std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| repo().join("target"), PathBuf::from);
    let unit = Command::new(env!("CARGO"))
        .args(["test", "-q"])
        .current_dir(&project)
        .env("CARGO_TARGET_DIR", &target)
        .output()
        .unwrap();
    assert!(unit.status.success(), "cargo test in the new crate: {}", text(&unit));
    let out = Command::new(host_bin())
        .args(["plugin", "build", project.to_str().unwrap()])
        .current_dir(tmp.path())
        .env("ALCF_HOST_CACHE", shared_cache())
        .env("CARGO_TARGET_DIR", &target)
        .output()
        .unwrap();
    assert!(out.status.success(), "plugin build: {}", text(&out));
    let root = tmp.path().join("studies");
    run_bench(&project.join("myrs.wasm"), &root, "rs", "6", "2", &[]);
    let inspect = alcf(&["plugin", "inspect", project.join("myrs.wasm").to_str().unwrap()], &shared_cache());
    assert!(text(&inspect).contains("name:          myrs 0.1.0"), "{}", text(&inspect));
}

#[test]
fn plugin_build_refuses_what_is_not_a_project() {
    let tmp = tempfile::tempdir().unwrap();
    let out = alcf(&["plugin", "build", tmp.path().to_str().unwrap()], &shared_cache());
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out).contains("neither Cargo.toml (Rust) nor app.py (Python)"), "{}", text(&out));
    let out = alcf(&["plugin", "new", "Bad-Name", "--dir", tmp.path().to_str().unwrap()], &shared_cache());
    assert!(!out.status.success() && text(&out).contains("is not valid"), "{}", text(&out));
    std::fs::create_dir_all(tmp.path().join("taken")).unwrap();
    std::fs::write(tmp.path().join("taken/app.py"), "").unwrap();
    let out = alcf(&["plugin", "new", "taken", "--dir", tmp.path().to_str().unwrap()], &shared_cache());
    assert!(!out.status.success() && text(&out).contains("--force"), "{}", text(&out));
}

/// Every Python block of the guide and the README runs natively against the SDK: a block that
/// defines a plugin (`Strategy = hpo.export(...)`) also runs a short study through
/// `hpo.native.run`, so a guide that does not work fails CI.
#[test]
fn every_python_snippet_in_the_docs_runs() {
    let tmp = tempfile::tempdir().unwrap();
    let mut n = 0;
    for doc in ["docs/plugin-guide.md", "README.md"] {
        let page = std::fs::read_to_string(repo().join(doc)).unwrap();
        let mut rest = page.as_str();
        while let Some(start) = rest.find("```python\n") {
            let body = &rest[start + 10..];
            let end = body.find("\n```").expect("a closed python block");
            let file = tmp.path().join(format!("snippet_{n}.py"));
            std::fs::write(&file, &body[..end + 1]).unwrap();
            let driver = format!(
                r#"
import runpy, sys
sys.path.insert(0, {sdk:?})
import alcf_strategy as hpo
ns = runpy.run_path({file:?})
cls = ns.get("Strategy")
if cls is not None:
    P = hpo.Param
    study = hpo.Study.new([P.float("x", -5.0, 10.0), P.int("n", 1, 4), P.choice("c", ["a", "b"])], seed=3)
    records = hpo.native.run(cls, study, 12, 3, lambda p: (p["x"] - 1.0) ** 2)
    assert len(records) == 12, records
    print("ran", cls.name)
"#,
                sdk = repo().join("plugins/sdk-python").to_string_lossy(),
                file = file.to_string_lossy()
            );
            let out = Command::new("python3").arg("-c").arg(&driver).output().unwrap();
            assert!(out.status.success(), "{doc}, python block {n}:\n{}\n{}", &body[..end], text(&out));
            n += 1;
            rest = &body[end..];
        }
    }
    assert!(n >= 3, "the docs hold {n} python blocks");
    // The side-by-side example is the shipped plugins, verbatim (so CI builds and runs it).
    let guide = std::fs::read_to_string(repo().join("docs/plugin-guide.md")).unwrap();
    let py = std::fs::read_to_string(repo().join("plugins/random_py/app.py")).unwrap();
    assert!(
        guide.contains(&format!("```python\n{py}```")),
        "the guide's Python example is not plugins/random_py/app.py"
    );
    let rs = std::fs::read_to_string(repo().join("plugins/random/src/lib.rs")).unwrap();
    let rs = rs[..rs.find("#[cfg(test)]").unwrap()].trim_end();
    assert!(
        guide.contains(&format!("```rust\n{rs}\n```")),
        "the guide's Rust example is not plugins/random/src/lib.rs"
    );
}
