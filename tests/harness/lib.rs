//! Helpers for the end-to-end tests: locate (and if needed build) the `alcf-host` binary and the
//! WebAssembly plugins, run the CLI, and read study databases.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Once;

pub mod account;
pub mod doubles;
pub mod sshd;

/// docs/plugin-guide.md, so that `cargo test` compiles (and runs) every Rust snippet in it as a
/// doctest against the SDK: a guide that does not compile fails CI.
#[cfg(doctest)]
#[doc = include_str!("../../docs/plugin-guide.md")]
pub struct PluginGuide;

/// The repository root.
pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("tests/ sits in the repository").to_path_buf()
}

fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from).map_or_else(
        || repo().join("target"),
        |p| {
            if p.is_absolute() { p } else { repo().join(p) }
        },
    )
}

static BUILD: Once = Once::new();
static BUILD_HOST: Once = Once::new();

/// Builds the `alcf-host` binary once per test process.
fn build_host() {
    BUILD_HOST.call_once(|| {
        let status = Command::new(env!("CARGO"))
            .args(["build", "-q", "-p", "alcf-host", "--bin", "alcf-host"])
            .current_dir(repo())
            .status()
            .expect("run cargo");
        assert!(status.success(), "building alcf-host failed");
    });
}

/// The host binary alone, for tests that need no plugins (no plugin build).
pub fn host_bin_only() -> PathBuf {
    build_host();
    target_dir().join("debug").join("alcf-host")
}

/// Builds the host binary and the plugins once per test process (cheap when they are fresh), so
/// `cargo test` alone is enough.
pub fn ensure_built() {
    BUILD.call_once(|| {
        build_host();
        let wanted = [
            plugin("random"),
            plugin("gp_ucb"),
            plugin("llm_guided"),
            plugin("random_py"),
            plugin("cmaes"),
            guest("hostile"),
            guest("kernels"),
            guest("future_abi"),
            guest("abi_010"),
            guest("not_a_plugin"),
        ];
        if std::env::var_os("ALCF_TEST_SKIP_PLUGIN_BUILD").is_none() || wanted.iter().any(|p| !p.exists()) {
            let status = Command::new("bash")
                .args(["scripts/build-plugins.sh", "--tests"])
                .current_dir(repo())
                .status()
                .expect("run scripts/build-plugins.sh");
            assert!(status.success(), "scripts/build-plugins.sh --tests failed");
        }
    });
}

pub fn host_bin() -> PathBuf {
    ensure_built();
    target_dir().join("debug").join("alcf-host")
}

pub fn plugin(name: &str) -> PathBuf {
    repo().join("plugins").join(format!("{name}.wasm"))
}

pub fn guest(name: &str) -> PathBuf {
    repo().join("tests").join("guests").join(format!("{name}.wasm"))
}

/// Runs `alcf-host` with the given arguments, with a private compile cache.
pub fn alcf(args: &[&str], cache: &Path) -> Output {
    Command::new(host_bin()).args(args).env("ALCF_HOST_CACHE", cache).output().expect("run alcf-host")
}

pub fn text(out: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

/// (id, state, value) of every trial in a study database.
pub fn trial_states(study_dir: &Path) -> Vec<(u64, String, Option<f64>)> {
    try_trial_states(study_dir).expect("read the study database")
}

/// As [`trial_states`], for a database that may still be being created by a running host.
pub fn try_trial_states(study_dir: &Path) -> rusqlite::Result<Vec<(u64, String, Option<f64>)>> {
    let conn = rusqlite::Connection::open_with_flags(
        study_dir.join("study.db"),
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    let mut stmt = conn.prepare("SELECT id, state, value FROM trial ORDER BY id")?;
    stmt.query_map([], |r| Ok((r.get::<_, i64>(0)? as u64, r.get(1)?, r.get(2)?)))?.collect()
}

/// Polls `condition` every 50 ms until it holds, while the spawned `child` keeps running: the
/// tests that kill a host mid-run use it to wait for the moment worth killing it at. Panics with
/// `what` once `within` has passed, and at once if the child exits first.
pub fn wait_until(
    child: &mut std::process::Child,
    within: std::time::Duration,
    what: &str,
    mut condition: impl FnMut() -> bool,
) {
    let deadline = std::time::Instant::now() + within;
    loop {
        if condition() {
            return;
        }
        assert!(std::time::Instant::now() < deadline, "{what}: not within {within:?}");
        assert!(child.try_wait().unwrap().is_none(), "{what}: the host exited first");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

/// Waits for a spawned run (stderr piped) to end: its status and what it wrote on stderr.
pub fn finish(child: &mut std::process::Child) -> (std::process::ExitStatus, String) {
    let status = child.wait().unwrap();
    let mut err = String::new();
    std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut err).unwrap();
    (status, err)
}

/// The headless browser the report and dashboard tests open pages in (Debian's `chromium`).
pub fn chromium() -> String {
    for c in ["chromium", "chromium-browser", "google-chrome"] {
        if std::process::Command::new(c).arg("--version").output().is_ok_and(|o| o.status.success()) {
            return c.to_string();
        }
    }
    panic!("no chromium on PATH: install Debian's `chromium` (.ci/run does)");
}
