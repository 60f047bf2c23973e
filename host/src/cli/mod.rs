//! The command line's side of alcf-host: what each command does with its parsed arguments, the
//! progress display and logging setup. Everything here may use `anyhow`; the library below it
//! returns typed errors.

pub mod auth;
pub mod bench;
pub mod compare;
pub mod connect;
pub mod dashboard;
pub mod doctor;
pub mod export;
pub mod init;
pub mod logging;
pub mod plugin;
pub mod progress;
pub mod report;
pub mod run;
pub mod study;

use std::path::PathBuf;

/// Writes a line to stdout, returning the error (a closed pipe, as in `| head`) instead of panicking.
#[macro_export]
macro_rules! out {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        writeln!(std::io::stdout().lock(), $($arg)*)?
    }};
}

/// Where studies live unless a config or flag says otherwise.
pub fn default_root() -> PathBuf {
    std::env::var_os("ALCF_STUDIES").map(PathBuf::from).unwrap_or_else(|| PathBuf::from("studies"))
}

pub fn check_study_name(name: &str) -> anyhow::Result<()> {
    if name.is_empty()
        || name.starts_with('.')
        || !name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
    {
        anyhow::bail!("study name `{name}` is not usable as a directory name: use letters, digits, `_`, `-` and `.`");
    }
    Ok(())
}

/// Writes a line to stderr. Never panics: after SIGHUP (the SSH session to a login node dropped)
/// the terminal is gone, and a run must go on without it.
pub fn console(line: &str) {
    use std::io::Write as _;
    let _ = writeln!(std::io::stderr().lock(), "{line}");
}
