//! `alcf-host plugin build DIR`: a Rust or Python plugin project into `NAME.wasm`, then a check
//! that this host loads it (which also fills the compile cache, so the first `run` starts fast).
//!
//! Rust: `cargo build --target wasm32-wasip2 --release` (wit-bindgen guests are components
//! already). Python: componentize-py against the project's WIT (or the host's, when the project
//! carries none) with the project's SDK copy (or the host's). componentize-py comes from
//! `$ALCF_COMPONENTIZE_PY`, else the project's `.venv`, which is made and filled from PyPI the
//! first time.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::{Context, bail};

use super::scaffold::{WIT, write_file, write_python_sdk};
use alcf_host::plugin::{PluginRuntime, default_cache_dir};

/// The componentize-py release the Python SDK is tested with.
pub const COMPONENTIZE_PY: &str = "componentize-py==0.25.1";
const TARGET: &str = "wasm32-wasip2";

/// What `plugin build` was asked for.
pub struct BuildOptions {
    pub dir: PathBuf,
    /// Default: `DIR/NAME.wasm`, NAME being the project directory's name.
    pub out: Option<PathBuf>,
    /// Rust only: the debug profile.
    pub debug: bool,
}

#[derive(Debug, PartialEq)]
enum Kind {
    Rust,
    Python,
}

fn kind(dir: &Path) -> anyhow::Result<Kind> {
    if !dir.is_dir() {
        bail!(
            "{} is not a directory: give the plugin project's directory (made by `alcf-host plugin new NAME`)",
            dir.display()
        );
    }
    if dir.join("Cargo.toml").is_file() {
        Ok(Kind::Rust)
    } else if dir.join("app.py").is_file() {
        Ok(Kind::Python)
    } else {
        bail!(
            "{} is not a plugin project: it has neither Cargo.toml (Rust) nor app.py (Python). \
             Make one with `alcf-host plugin new NAME --lang python|rust`",
            dir.display()
        )
    }
}

/// The project's name: its directory's name.
fn project_name(dir: &Path) -> anyhow::Result<String> {
    let abs = dir.canonicalize().with_context(|| format!("reading {}", dir.display()))?;
    abs.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .with_context(|| format!("{} has no directory name", abs.display()))
}

/// `alcf-host plugin build DIR`.
pub fn build(opts: BuildOptions) -> anyhow::Result<PathBuf> {
    let dir = &opts.dir;
    let kind = kind(dir)?;
    let started = Instant::now();
    let out = match kind {
        Kind::Rust => build_rust(dir, opts.out.as_deref(), opts.debug)?,
        Kind::Python => {
            let name = project_name(dir)?;
            let out = opts.out.clone().unwrap_or_else(|| dir.join(format!("{name}.wasm")));
            build_python(dir, &out)?;
            out
        }
    };
    let built = started.elapsed();
    // The check a user would do next, done now: and the compile it pays goes to the cache.
    let runtime = PluginRuntime::shared(default_cache_dir())?;
    let check = Instant::now();
    let plugin = runtime
        .load(&out)
        .with_context(|| format!("{} was built but this host cannot load it as a strategy plugin", out.display()))?;
    let s = &plugin.summary;
    crate::out!(
        "built {} ({:.1} MB, ABI alcf:hpo@{}) in {:.1} s; loads in this host ({} in {:.1} s, cached for later starts)",
        out.display(),
        s.size as f64 / 1e6,
        s.abi_version,
        built.as_secs_f64(),
        if s.cached { "from the compile cache" } else { "compiled" },
        check.elapsed().as_secs_f64()
    );
    Ok(out)
}

/// Runs `cmd`, its output going to our stderr (the user watches a build); fails naming `what`.
fn run_visible(mut cmd: Command, what: &str, next: &str) -> anyhow::Result<()> {
    let status = cmd
        .stdout(Stdio::inherit())
        .stderr(Stdio::inherit())
        .status()
        .with_context(|| format!("starting {what} ({cmd:?})"))?;
    if !status.success() {
        bail!("{what} failed ({status}); its output is above. {next}");
    }
    Ok(())
}

fn build_rust(dir: &Path, out: Option<&Path>, debug: bool) -> anyhow::Result<PathBuf> {
    let manifest = dir.join("Cargo.toml");
    let meta = Command::new("cargo")
        .args(["metadata", "--format-version", "1", "--no-deps", "--manifest-path"])
        .arg(&manifest)
        .output()
        .context("running `cargo metadata`: is Rust installed (https://rustup.rs)?")?;
    if !meta.status.success() {
        bail!("cargo cannot read {}: {}", manifest.display(), String::from_utf8_lossy(&meta.stderr).trim());
    }
    let meta: serde_json::Value = serde_json::from_slice(&meta.stdout).context("reading `cargo metadata`")?;
    let want = manifest.canonicalize()?;
    let package = meta["packages"]
        .as_array()
        .and_then(|ps| ps.iter().find(|p| p["manifest_path"].as_str().is_some_and(|m| Path::new(m) == want)))
        .with_context(|| format!("{} declares no [package]", manifest.display()))?;
    let name = package["name"].as_str().unwrap_or_default().to_string();
    let target_dir = PathBuf::from(meta["target_directory"].as_str().unwrap_or("target"));

    ensure_wasm_target()?;
    let profile = if debug { "debug" } else { "release" };
    let mut cmd = Command::new("cargo");
    cmd.args(["build", "--target", TARGET, "-p", &name, "--manifest-path"]).arg(&manifest);
    if !debug {
        cmd.arg("--release");
        if std::env::var_os("CARGO_PROFILE_RELEASE_STRIP").is_none() {
            cmd.env("CARGO_PROFILE_RELEASE_STRIP", "debuginfo");
        }
    }
    run_visible(cmd, "cargo build", "Fix the compile errors, then build again")?;
    let file = format!("{}.wasm", name.replace('-', "_"));
    let built = target_dir.join(TARGET).join(profile).join(&file);
    if !built.is_file() {
        bail!(
            "cargo built no {}: is `crate-type = [\"cdylib\", ...]` in {}'s [lib]?",
            built.display(),
            manifest.display()
        );
    }
    let out = out.map(Path::to_path_buf).unwrap_or_else(|| dir.join(&file));
    std::fs::copy(&built, &out).with_context(|| format!("copying {} to {}", built.display(), out.display()))?;
    Ok(out)
}

/// Adds the wasm32-wasip2 target through rustup when it is missing (without rustup, cargo's own
/// error says what is wrong).
fn ensure_wasm_target() -> anyhow::Result<()> {
    let Ok(list) = Command::new("rustup").args(["target", "list", "--installed"]).output() else {
        return Ok(());
    };
    if String::from_utf8_lossy(&list.stdout).lines().any(|l| l.trim() == TARGET) {
        return Ok(());
    }
    eprintln!("plugin build: installing the Rust target {TARGET} (once)");
    let mut cmd = Command::new("rustup");
    cmd.args(["target", "add", TARGET]);
    run_visible(cmd, "rustup target add", "Check the network, or run `rustup target add wasm32-wasip2` yourself")
}

fn build_python(dir: &Path, out: &Path) -> anyhow::Result<()> {
    let componentize = componentize_py(dir)?;
    let scratch = dir.join(".alcf-build");
    // The project's own WIT and SDK win (a project pins what it was written against); a project
    // that carries none (the plugins in this repository) gets the host's.
    let wit = if dir.join("wit").join("hpo.wit").is_file() {
        dir.join("wit")
    } else {
        write_file(&scratch.join("wit").join("hpo.wit"), WIT)?;
        scratch.join("wit")
    };
    let mut cmd = Command::new(&componentize);
    cmd.arg("-d").arg(&wit).args(["-w", "strategy-plugin", "componentize", "-p"]).arg(dir);
    if !dir.join("alcf_strategy").is_dir() {
        write_python_sdk(&scratch.join("sdk"))?;
        cmd.arg("-p").arg(scratch.join("sdk"));
    }
    cmd.arg("app").arg("-o").arg(out);
    run_visible(
        cmd,
        "componentize-py",
        "A Python error above names the file and line in app.py; fix it and build again",
    )
}

/// componentize-py: `$ALCF_COMPONENTIZE_PY`, the project's `.venv`, or a `.venv` made now.
fn componentize_py(dir: &Path) -> anyhow::Result<PathBuf> {
    if let Some(p) = std::env::var_os("ALCF_COMPONENTIZE_PY") {
        let p = PathBuf::from(p);
        if !p.is_file() {
            bail!(
                "ALCF_COMPONENTIZE_PY is {}, which does not exist: unset it or point it at a componentize-py",
                p.display()
            );
        }
        return Ok(p);
    }
    let venv = dir.join(".venv");
    let bin = venv.join("bin").join("componentize-py");
    if bin.is_file() {
        return Ok(bin);
    }
    eprintln!("plugin build: installing {COMPONENTIZE_PY} into {} (once)", venv.display());
    if !venv.join("bin").join("python").exists() {
        let mut cmd = Command::new("python3");
        cmd.arg("-m").arg("venv").arg(&venv);
        run_visible(
            cmd,
            "python3 -m venv",
            "Install Python 3.10+ with venv (Debian: apt install python3-venv; Aurora: module load python), \
             or set ALCF_COMPONENTIZE_PY to a componentize-py",
        )?;
    }
    let mut cmd = Command::new(venv.join("bin").join("python"));
    cmd.args(["-m", "pip", "install", "--disable-pip-version-check", "-q", COMPONENTIZE_PY]);
    run_visible(
        cmd,
        "pip install componentize-py",
        "Check that PyPI is reachable (or a proxy is set), or install componentize-py yourself and set ALCF_COMPONENTIZE_PY",
    )?;
    if !bin.is_file() {
        bail!("pip installed componentize-py but {} is missing", bin.display());
    }
    Ok(bin)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_and_refusals() {
        let tmp = tempfile::tempdir().unwrap();
        let e = kind(&tmp.path().join("nope")).unwrap_err().to_string();
        assert!(e.contains("is not a directory"), "{e}");
        let e = kind(tmp.path()).unwrap_err().to_string();
        assert!(e.contains("neither Cargo.toml (Rust) nor app.py (Python)") && e.contains("plugin new"), "{e}");
        std::fs::write(tmp.path().join("app.py"), "").unwrap();
        assert_eq!(kind(tmp.path()).unwrap(), Kind::Python);
        std::fs::write(tmp.path().join("Cargo.toml"), "").unwrap();
        assert_eq!(kind(tmp.path()).unwrap(), Kind::Rust);
    }
}
