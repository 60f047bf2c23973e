//! Process supervision for trials that run on this machine.
//!
//! Each trial is the leader of its own process group, so a timeout or a cancel stops everything it
//! started, and leftover background processes are killed when it ends. On Linux a trial also dies
//! with the host (`PR_SET_PDEATHSIG`): local jobs do not outlive the host, and the campaign re-runs
//! interrupted trials on resume. The death signal covers the trial's main process only (processes
//! it starts itself may outlive a SIGKILLed host, writing into a directory that a resubmission has
//! moved aside or reuses), and it fires when the *thread* that spawned the trial exits: spawn from a
//! runtime worker thread, not from a short-lived `spawn_blocking` thread.

use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::Instant;

/// `EX_TEMPFAIL` from sysexits.h: "try again later". `alcf-trainer` exits with it when it stopped
/// on purpose (`--stop-after`, a walltime budget) and `--resume` will continue the run.
pub const EX_TEMPFAIL: i32 = 75;

/// How a supervised process ended: its status, or why it could not be waited for.
pub type ExitResult = Result<ExitStatus, String>;

/// What to start.
#[derive(Debug)]
pub struct Spawn {
    pub program: PathBuf,
    pub args: Vec<OsString>,
    pub cwd: PathBuf,
    /// On top of the host's own environment.
    pub env: Vec<(OsString, OsString)>,
    pub stdout: File,
    pub stderr: File,
}

/// A started process group. Clones share the same process.
#[derive(Clone, Debug)]
pub struct Process {
    pid: u32,
    started: Instant,
    /// Set by the task that owns the child and reaps it.
    exit: watch::Receiver<Option<ExitResult>>,
}

/// Starts a program as the leader of a new process group that dies with the host; see the module
/// documentation for where to call it from. A task reaps it and then kills what is left of its
/// group.
pub fn spawn(spec: Spawn) -> io::Result<Process> {
    let mut cmd = tokio::process::Command::new(&spec.program);
    cmd.args(&spec.args)
        .current_dir(&spec.cwd)
        .stdin(Stdio::null())
        .stdout(spec.stdout)
        .stderr(spec.stderr)
        .envs(spec.env)
        .process_group(0)
        .kill_on_drop(false);
    #[cfg(target_os = "linux")]
    {
        // SAFETY: the closure runs in the forked child before exec and only makes
        // async-signal-safe calls (prctl, getppid, raise).
        let host = unsafe { libc::getpid() };
        unsafe {
            cmd.pre_exec(move || {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong, 0, 0, 0) != 0 {
                    return Err(io::Error::last_os_error());
                }
                // The host died between fork and prctl: follow it now.
                if libc::getppid() != host {
                    libc::raise(libc::SIGKILL);
                }
                Ok(())
            });
        }
    }
    let mut child = cmd.spawn()?;
    let Some(pid) = child.id() else {
        // Only possible once the child was reaped, which nothing has done yet.
        return Err(io::Error::other("the process exited before its id could be read"));
    };
    let pgid = pid as libc::pid_t;
    let (tx, rx) = watch::channel(None);
    tokio::spawn(async move {
        let status = child.wait().await.map_err(|e| e.to_string());
        // Leftovers the trial started in the background go with it.
        kill_group(pgid, libc::SIGKILL);
        let _ = tx.send(Some(status));
    });
    Ok(Process { pid, started: Instant::now(), exit: rx })
}

impl Process {
    /// The leader's pid, which is also the process group id.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    pub fn started(&self) -> Instant {
        self.started
    }

    /// How it ended, if it has.
    pub fn exit_now(&self) -> Option<ExitResult> {
        self.exit.borrow().clone()
    }

    /// Resolves when the leader has exited and been reaped.
    pub async fn wait(&mut self) -> ExitResult {
        match self.exit.wait_for(Option::is_some).await {
            Ok(v) => v.clone().unwrap_or_else(|| Err("the exit status went missing".into())),
            Err(_) => Err("the task watching the process ended".into()),
        }
    }

    /// SIGTERM to the whole group, SIGKILL after the grace period; returns how the leader ended.
    pub async fn terminate(&mut self, grace: Duration) -> ExitResult {
        if let Some(done) = self.exit_now() {
            return done;
        }
        kill_group(self.pid as libc::pid_t, libc::SIGTERM);
        match tokio::time::timeout(grace, self.wait()).await {
            Ok(exit) => exit,
            Err(_) => {
                kill_group(self.pid as libc::pid_t, libc::SIGKILL);
                self.wait().await
            }
        }
    }
}

/// Sends `signal` to a process group.
pub fn kill_group(pgid: libc::pid_t, signal: libc::c_int) {
    // Never 0 or -1: kill(0, _) and kill(-1, _) would hit the host's own group or every process.
    if pgid > 1 {
        // SAFETY: plain syscall; a group that is already gone gives ESRCH, which is fine.
        unsafe { libc::kill(-pgid, signal) };
    }
}

/// "exited with status 3", "killed by signal 9 (SIGKILL)", or `None` for success.
pub fn describe_exit(status: ExitStatus) -> Option<String> {
    if let Some(code) = status.code() {
        return (code != 0).then(|| format!("exited with status {code}"));
    }
    let signal = status.signal()?;
    let core = if status.core_dumped() { ", core dumped" } else { "" };
    Some(match signal_name(signal) {
        Some(name) => format!("killed by signal {signal} ({name}{core})"),
        None => format!("killed by signal {signal}{core}"),
    })
}

pub fn signal_name(signal: libc::c_int) -> Option<&'static str> {
    Some(match signal {
        libc::SIGHUP => "SIGHUP",
        libc::SIGINT => "SIGINT",
        libc::SIGQUIT => "SIGQUIT",
        libc::SIGILL => "SIGILL",
        libc::SIGTRAP => "SIGTRAP",
        libc::SIGABRT => "SIGABRT",
        libc::SIGBUS => "SIGBUS",
        libc::SIGFPE => "SIGFPE",
        libc::SIGKILL => "SIGKILL",
        libc::SIGUSR1 => "SIGUSR1",
        libc::SIGSEGV => "SIGSEGV",
        libc::SIGUSR2 => "SIGUSR2",
        libc::SIGPIPE => "SIGPIPE",
        libc::SIGALRM => "SIGALRM",
        libc::SIGTERM => "SIGTERM",
        libc::SIGXCPU => "SIGXCPU",
        libc::SIGXFSZ => "SIGXFSZ",
        _ => return None,
    })
}

/// Why a spawn failed, for a person who has to fix `executor.command`.
pub fn spawn_error(program: &Path, e: &io::Error) -> String {
    let what = match e.kind() {
        io::ErrorKind::NotFound => "was not found",
        io::ErrorKind::PermissionDenied => "is not executable (permission denied)",
        _ => "could not be started",
    };
    format!("the program `{}` {what} ({e}); fix `executor.command` in the config", program.display())
}

/// What is wrong with a program path.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProgramProblem {
    Missing,
    NotAFile,
    NotExecutable,
}

/// Whether `path` names a file this process may execute.
pub fn check_program(path: &Path) -> Result<(), ProgramProblem> {
    let meta = std::fs::metadata(path).map_err(|_| ProgramProblem::Missing)?;
    if !meta.is_file() {
        return Err(ProgramProblem::NotAFile);
    }
    if executable(path) { Ok(()) } else { Err(ProgramProblem::NotExecutable) }
}

/// The first executable file named `name` in the directories of `path_var` (a `PATH` value), as
/// `execvp` would find it. An empty entry means the current directory, as POSIX says.
pub fn find_in_path(name: &OsStr, path_var: Option<&OsStr>) -> Option<PathBuf> {
    let path_var = path_var?;
    std::env::split_paths(path_var).find_map(|dir| {
        let dir = if dir.as_os_str().is_empty() { PathBuf::from(".") } else { dir };
        let candidate = dir.join(name);
        check_program(&candidate).is_ok().then(|| std::path::absolute(&candidate).unwrap_or(candidate))
    })
}

fn executable(path: &Path) -> bool {
    let Ok(c_path) = std::ffi::CString::new(path.as_os_str().as_bytes()) else { return false };
    // SAFETY: `c_path` is a valid NUL-terminated string that outlives the call. access(2) checks
    // with the real uid, as exec would for a set-uid-less host.
    unsafe { libc::access(c_path.as_ptr(), libc::X_OK) == 0 }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn exits_are_described_with_signal_names() {
        assert_eq!(describe_exit(ExitStatus::from_raw(0)), None);
        assert_eq!(describe_exit(ExitStatus::from_raw(3 << 8)).as_deref(), Some("exited with status 3"));
        assert_eq!(describe_exit(ExitStatus::from_raw(9)).as_deref(), Some("killed by signal 9 (SIGKILL)"));
        assert_eq!(
            describe_exit(ExitStatus::from_raw(11 | 0x80)).as_deref(),
            Some("killed by signal 11 (SIGSEGV, core dumped)")
        );
        assert_eq!(describe_exit(ExitStatus::from_raw(40)).as_deref(), Some("killed by signal 40"));
    }

    #[test]
    fn programs_are_checked_and_found() {
        let tmp = tempfile::tempdir().unwrap();
        let bin = tmp.path().join("bin");
        std::fs::create_dir(&bin).unwrap();
        let tool = bin.join("tool");
        std::fs::write(&tool, "#!/bin/sh\n").unwrap();
        assert_eq!(check_program(&tool), Err(ProgramProblem::NotExecutable));
        assert_eq!(find_in_path(OsStr::new("tool"), Some(bin.as_os_str())), None);
        std::fs::set_permissions(&tool, std::fs::Permissions::from_mode(0o755)).unwrap();
        assert_eq!(check_program(&tool), Ok(()));
        assert_eq!(check_program(&bin), Err(ProgramProblem::NotAFile));
        assert_eq!(check_program(&bin.join("nothing")), Err(ProgramProblem::Missing));

        let path = std::env::join_paths([tmp.path().join("empty"), bin.clone()]).unwrap();
        assert_eq!(find_in_path(OsStr::new("tool"), Some(&path)), Some(tool));
        assert_eq!(find_in_path(OsStr::new("nothing"), Some(&path)), None);
        assert_eq!(find_in_path(OsStr::new("tool"), None), None);
        assert_eq!(find_in_path(OsStr::new("bin"), Some(tmp.path().as_os_str())), None, "a directory is no program");
    }
}
