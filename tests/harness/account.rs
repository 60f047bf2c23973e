//! The remote account's home for the tests: what a login shell on the far side reads.
//!
//! PBS starts a job under the user's login shell and Debian's bash reads `~/.bashrc` for ssh
//! commands, so a test that let them read the machine's own dotfiles would depend on them. This
//! was learnt the hard way: a CI image whose `.bashrc` runs `pyenv init` makes every login run
//! `pyenv rehash`, which takes a lock file; a job killed mid-rehash (qdel, a walltime, a test
//! tearing down) leaves the lock behind, and from then on every login waits 60 s for it. Every
//! emulated job and every sshd session in the tests therefore gets a home of its own, whose
//! profile only puts the tests' Python first on `PATH`.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// Creates `parent/home` with a `.profile` (login shells: PBS jobs) and a `.bashrc` (ssh
/// commands) that put the directory of the tests' `python3` first on `PATH`.
pub fn remote_home(parent: &Path) -> PathBuf {
    let home = parent.join("home");
    std::fs::create_dir_all(&home).unwrap_or_else(|e| panic!("create {}: {e}", home.display()));
    let profile = format!(
        "# Written by the alcf-tests harness: the remote account's profile.\n\
         PATH={}:\"$PATH\"; export PATH\n",
        shell_quote(&python_dir().display().to_string())
    );
    for name in [".profile", ".bashrc"] {
        let path = home.join(name);
        std::fs::write(&path, &profile).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
    }
    home
}

/// The directory of the interpreter that `python3` on the tests' own `PATH` runs, found by asking
/// it (through a pyenv or conda shim, the shim's directory would not be the interpreter's).
pub fn python_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let out = std::process::Command::new("python3")
            .args(["-c", "import os, sys; print(os.path.dirname(sys.executable))"])
            .output()
            .expect("python3 runs (the PBS emulator and the trial programs need it)");
        assert!(out.status.success(), "python3: {}", String::from_utf8_lossy(&out.stderr));
        PathBuf::from(String::from_utf8(out.stdout).expect("a UTF-8 path").trim())
    })
}

/// One word for sh, in single quotes.
fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// The PBS emulator's `config.json` for a test under `parent`: 2 CPUs per emulated node (jobs
/// see NCPUS=2, as fits a CI machine) and jobs in [`remote_home`]`(parent)`.
pub fn emulator_config(parent: &Path) -> String {
    serde_json::json!({ "node_ncpus": 2, "job_home": remote_home(parent) }).to_string()
}
