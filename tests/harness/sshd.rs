//! A real OpenSSH server on 127.0.0.1, and a real ControlMaster to it, for the end-to-end tests.
//!
//! The `pbs` executor talks to Aurora only through the user's ControlMaster socket (`openssh`'s
//! `Session::resume`). This fixture gives the tests the same thing on loopback: Debian's
//! `/usr/sbin/sshd` with a private config, host key and user key in a temporary directory, a
//! client `ssh_config` a user could have written, and a master opened the way a user opens one
//! (`ssh -M -fN` with `ControlPersist`).
//!
//! ```no_run
//! use alcf_tests::sshd::{Sshd, SshdOptions};
//! let sshd = Sshd::start_or_panic(SshdOptions::new().env("GREETING", "hi"));
//! let ctl = sshd.open_master().unwrap();      // what the product resumes
//! let out = sshd.run("echo $GREETING");      // through the master only
//! assert_eq!(out.stdout, b"hi\n");
//! # drop(ctl);
//! ```
//!
//! Things learnt the hard way (all handled here):
//! - sshd must be started by absolute path, and as root it refuses to start without its
//!   privilege-separation directory `/run/sshd` (created here if missing). As another user it
//!   needs none, but can only log in that same user, which is all the fixture does.
//! - `StrictModes yes` rejects an `authorized_keys` under `/tmp` (world-writable parent), so the
//!   keys file sits at an absolute path in the temporary directory with `StrictModes no`.
//! - Only the first `SetEnv` line counts: every variable goes on one line.
//! - With `UsePAM no`, a root sshd refuses an account whose shadow password starts with `!`
//!   ("account is locked", as `useradd` leaves new users); the fixture then uses `UsePAM yes`.
//! - Commands run under the user's shell, and Debian's bash reads `~/.bashrc` for ssh commands:
//!   the machine's own `.bashrc` (pyenv, conda) would run in every session. Sessions get a home
//!   of their own instead (`SetEnv HOME=`, [`crate::account::remote_home`]); sshd still starts
//!   them in the password database's home directory.
//! - A master killed by SIGKILL leaves its socket file behind (`Connection refused`), and a new
//!   `ssh -M` on that path silently runs without multiplexing: `open_master` removes a stale one.
//! - `ssh -S ctl host cmd` falls back to a fresh connection when the master is gone; on Aurora
//!   that needs a passcode. [`Sshd::command`] forbids the fallback (`ProxyCommand=false`), so a
//!   command through a dead master fails with 255 as it would there.

use std::fs;
use std::io::Write;
use std::net::{TcpListener, TcpStream};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The server binary (Debian's openssh-server).
pub const SSHD: &str = "/usr/sbin/sshd";
/// The `Host` alias of the fixture's client config.
pub const HOST: &str = "loopback";
const INSTALL_HINT: &str = "install openssh-server (apt-get install openssh-server)";
/// Start attempts, each with a new port (another process may take the probed port first).
const START_ATTEMPTS: usize = 5;

/// What the server gives every session.
#[derive(Clone, Debug)]
pub struct SshdOptions {
    env: Vec<(String, String)>,
    /// sshd's `MaxSessions`: channels allowed at once through one connection (one master).
    pub max_sessions: u32,
    /// How long one start attempt may take before it is an error.
    pub start_timeout: Duration,
}

impl Default for SshdOptions {
    fn default() -> Self {
        SshdOptions { env: Vec::new(), max_sessions: 10, start_timeout: Duration::from_secs(20) }
    }
}

impl SshdOptions {
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets `name=value` in every session (sshd's `SetEnv`; it overrides sshd's own `PATH`).
    pub fn env(mut self, name: &str, value: impl AsRef<std::ffi::OsStr>) -> Self {
        let value = value.as_ref().to_str().expect("environment values are UTF-8").to_string();
        self.env.retain(|(n, _)| n != name);
        self.env.push((name.to_string(), value));
        self
    }

    /// The PBS emulator as the sessions' scheduler: its directory first on `PATH`, and
    /// `PBS_EMU_HOME` (its state directory).
    pub fn pbs_emulator(self, pbs_emu_home: &Path) -> Self {
        let path = format!("{}:/usr/local/bin:/usr/bin:/bin", pbs_emulator_dir().display());
        self.env("PATH", path).env("PBS_EMU_HOME", pbs_emu_home)
    }
}

/// `tests/pbs/emulator` (qsub, qstat, qdel, pbs-emu-ctl).
pub fn pbs_emulator_dir() -> PathBuf {
    crate::repo().join("tests").join("pbs").join("emulator")
}

/// What is missing to run the fixture, if anything.
pub fn missing() -> Option<String> {
    if !Path::new(SSHD).is_file() {
        return Some(format!("{SSHD} is missing: {INSTALL_HINT}"));
    }
    for tool in ["ssh", "ssh-keygen"] {
        if !on_path(tool) {
            return Some(format!("`{tool}` is not on PATH: install openssh-client (apt-get install openssh-client)"));
        }
    }
    None
}

/// Whether sshd and the ssh client tools are installed.
pub fn sshd_available() -> bool {
    missing().is_none()
}

fn on_path(tool: &str) -> bool {
    std::env::var_os("PATH").is_some_and(|path| std::env::split_paths(&path).any(|dir| dir.join(tool).is_file()))
}

/// A running loopback sshd. Dropping it ends every master it opened and the server with all
/// its sessions, and removes its directory.
pub struct Sshd {
    child: Child,
    port: u16,
    user: String,
    ssh_config: PathBuf,
    ctl: PathBuf,
    log: PathBuf,
    /// Pids of the masters opened (they are not our children: `ssh -f` forks and its parent exits).
    masters: Mutex<Vec<Proc>>,
    started_in: Duration,
    dir: tempfile::TempDir,
}

impl std::fmt::Debug for Sshd {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sshd")
            .field("port", &self.port)
            .field("user", &self.user)
            .field("dir", &self.dir.path())
            .finish()
    }
}

enum StartError {
    /// Worth another attempt on another port.
    Retry(String),
    Fatal(String),
}

impl Sshd {
    /// Starts a server for the current user and waits until a key login through it works.
    pub fn start(opts: SshdOptions) -> Result<Sshd, String> {
        if let Some(what) = missing() {
            return Err(what);
        }
        let began = Instant::now();
        let user = current_user()?;
        let root = unsafe { libc::geteuid() } == 0;
        if root {
            // sshd's privilege separation directory; Debian's package creates it only when the
            // service starts.
            let run = Path::new("/run/sshd");
            if !run.is_dir() {
                fs::create_dir_all(run).map_err(|e| format!("create {}: {e}", run.display()))?;
                fs::set_permissions(run, fs::Permissions::from_mode(0o755)).map_err(|e| e.to_string())?;
            }
        }
        let dir = temp_dir()?;
        let d = dir.path();
        let home = crate::account::remote_home(d);
        keygen(&d.join("host_ed25519"))?;
        keygen(&d.join("id_ed25519"))?;
        let public = fs::read_to_string(d.join("id_ed25519.pub")).map_err(|e| e.to_string())?;
        write_private(&d.join("authorized_keys"), &public)?;
        let host_pub = fs::read_to_string(d.join("host_ed25519.pub")).map_err(|e| e.to_string())?;
        let host_key: Vec<&str> = host_pub.split_whitespace().take(2).collect();
        let use_pam = root && account_locked(&user);

        let mut last = String::new();
        for _ in 0..START_ATTEMPTS {
            let port = free_port()?;
            write_private(&d.join("sshd_config"), &sshd_config(d, port, &user, use_pam, &opts, &home)?)?;
            write_private(&d.join("known_hosts"), &format!("[127.0.0.1]:{port} {}\n", host_key.join(" ")))?;
            write_private(&d.join("ssh_config"), &ssh_config(d, port, &user))?;
            let log = d.join("sshd.log");
            let _ = fs::remove_file(&log);
            let stderr = fs::File::create(d.join("sshd.stderr")).map_err(|e| e.to_string())?;
            let mut child = Command::new(SSHD)
                .arg("-D")
                .arg("-E")
                .arg(&log)
                .arg("-f")
                .arg(d.join("sshd_config"))
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(stderr)
                .spawn()
                .map_err(|e| format!("start {SSHD}: {e}"))?;
            match wait_ready(&mut child, port, d, &user, opts.start_timeout) {
                Ok(()) => {
                    return Ok(Sshd {
                        child,
                        port,
                        user,
                        ssh_config: d.join("ssh_config"),
                        ctl: d.join("ctl"),
                        log,
                        masters: Mutex::new(Vec::new()),
                        started_in: began.elapsed(),
                        dir,
                    });
                }
                Err(StartError::Fatal(e)) => {
                    stop_tree(&mut child, Vec::new());
                    return Err(e);
                }
                Err(StartError::Retry(e)) => {
                    stop_tree(&mut child, Vec::new());
                    last = e;
                }
            }
        }
        Err(format!("sshd did not start in {START_ATTEMPTS} attempts; last: {last}"))
    }

    /// As [`Sshd::start`], panicking with the reason (e.g. "install openssh-server") on failure.
    pub fn start_or_panic(opts: SshdOptions) -> Sshd {
        Sshd::start(opts).unwrap_or_else(|e| panic!("loopback sshd: {e}"))
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The user sessions run as (the current user).
    pub fn user(&self) -> &str {
        &self.user
    }

    /// The `Host` alias in [`Sshd::ssh_config`]: `ssh -F <ssh_config> loopback …`.
    pub fn host(&self) -> &str {
        HOST
    }

    /// The fixture's private directory (keys, configs, logs, the control socket).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// A client config as a user's `~/.ssh/config` would have it: host alias, port, user, key,
    /// pinned host key (`StrictHostKeyChecking yes`) and `ControlPath`. It also has
    /// `BatchMode yes`, so nothing in a test ever waits at a prompt.
    pub fn ssh_config(&self) -> &Path {
        &self.ssh_config
    }

    /// Where [`Sshd::open_master`] puts the master's socket.
    pub fn control_path(&self) -> &Path {
        &self.ctl
    }

    /// The sshd's pid.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The sshd and all its descendants now: the per-connection servers and the commands they run.
    pub fn server_pids(&self) -> Vec<u32> {
        let root = self.child.id() as i32;
        std::iter::once(root).chain(descendants(root).into_iter().map(|p| p.pid)).map(|p| p as u32).collect()
    }

    /// How long [`Sshd::start`] took.
    pub fn started_in(&self) -> Duration {
        self.started_in
    }

    /// The sessions' `$HOME`: the fixture's own, with the profile [`crate::account`] writes.
    pub fn home(&self) -> PathBuf {
        self.dir.path().join("home")
    }

    /// sshd's log (`LogLevel VERBOSE`).
    pub fn log_text(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// `ssh -F <ssh_config>`: add options, the host and a command.
    pub fn ssh(&self) -> Command {
        let mut cmd = Command::new("ssh");
        cmd.arg("-F").arg(&self.ssh_config);
        cmd
    }

    /// Opens a ControlMaster as a user does (`ssh -M -S <ctl> -o ControlPersist=yes -fN`), waits
    /// until `ssh -O check` answers, and returns the socket's path. A live master is reused; a
    /// stale socket (its master killed) is removed first.
    pub fn open_master(&self) -> Result<PathBuf, String> {
        if self.ctl.exists() {
            if self.master_alive() {
                return Ok(self.ctl.clone());
            }
            fs::remove_file(&self.ctl).map_err(|e| format!("remove stale {}: {e}", self.ctl.display()))?;
        }
        let log_path = self.dir().join("master.log");
        let log = fs::OpenOptions::new().create(true).append(true).open(&log_path).map_err(|e| e.to_string())?;
        // stdout and stderr go to a file, not a pipe: the backgrounded master keeps them open.
        let status = self
            .ssh()
            .arg("-M")
            .arg("-S")
            .arg(&self.ctl)
            .args(["-o", "ControlPersist=yes", "-fN", HOST])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .status()
            .map_err(|e| format!("run ssh -M: {e}"))?;
        let log_text = || fs::read_to_string(&log_path).unwrap_or_default();
        if !status.success() {
            return Err(format!("ssh -M -fN failed ({status}):\n{}", log_text()));
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(pid) = self.master_pid() {
                self.masters.lock().unwrap().extend(Proc::of(pid as i32));
                return Ok(self.ctl.clone());
            }
            if Instant::now() > deadline {
                return Err(format!("the master does not answer `ssh -O check`:\n{}", log_text()));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn check(&self) -> Output {
        self.ssh()
            .arg("-S")
            .arg(&self.ctl)
            .args(["-O", "check", HOST])
            .stdin(Stdio::null())
            .output()
            .expect("run ssh -O check")
    }

    /// `ssh -O check` succeeds.
    pub fn master_alive(&self) -> bool {
        self.check().status.success()
    }

    /// The master's pid, from `ssh -O check` (`Master running (pid=N)`); `None` if it is not alive.
    pub fn master_pid(&self) -> Option<u32> {
        let out = self.check();
        if !out.status.success() {
            return None;
        }
        let err = String::from_utf8_lossy(&out.stderr);
        let start = err.find("pid=")? + 4;
        err[start..].chars().take_while(char::is_ascii_digit).collect::<String>().parse().ok()
    }

    /// Ends the master gracefully (`ssh -O exit`): its socket goes away with it.
    pub fn exit_master(&self) -> Result<(), String> {
        let pid = self.master_pid().ok_or("no master is running")?;
        let out = self
            .ssh()
            .arg("-S")
            .arg(&self.ctl)
            .args(["-O", "exit", HOST])
            .stdin(Stdio::null())
            .output()
            .map_err(|e| e.to_string())?;
        if !out.status.success() {
            return Err(format!("ssh -O exit: {} {}", out.status, String::from_utf8_lossy(&out.stderr)));
        }
        if let Some(p) = Proc::of(pid as i32) {
            p.wait_gone(Duration::from_secs(10))?;
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        while self.ctl.exists() {
            if Instant::now() > deadline {
                return Err("the master exited but left its socket".into());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(())
    }

    /// Kills the master with SIGKILL, as a crash or the OOM killer would: its socket file stays,
    /// and connecting to it is refused. Returns the pid killed.
    pub fn kill_master(&self) -> Result<u32, String> {
        let pid = self.master_pid().ok_or("no master is running")?;
        if let Some(p) = Proc::of(pid as i32) {
            p.signal(libc::SIGKILL);
            p.wait_gone(Duration::from_secs(10))?;
        }
        Ok(pid)
    }

    /// `ssh -S <ctl> loopback -- <cmd>`, through the master only: if the master is gone it fails
    /// with 255 instead of logging in afresh. Stdio is the caller's to set.
    pub fn command(&self, cmd: &str) -> Command {
        let mut c = self.ssh();
        c.arg("-S").arg(&self.ctl).args(["-o", "ControlMaster=no", "-o", "ProxyCommand=false", "-T", HOST, "--", cmd]);
        c
    }

    /// Runs `cmd` through the master (stdin empty) and returns what it did.
    pub fn run(&self, cmd: &str) -> Output {
        self.command(cmd).stdin(Stdio::null()).output().expect("run ssh")
    }

    /// Runs `cmd` through the master with `input` on its stdin.
    pub fn run_with_stdin(&self, cmd: &str, input: &[u8]) -> Output {
        let mut child = self
            .command(cmd)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run ssh");
        let mut stdin = child.stdin.take().unwrap();
        std::thread::scope(|s| {
            // Written from another thread: the command may fill its stdout before reading it all.
            s.spawn(move || {
                let _ = stdin.write_all(input);
            });
            child.wait_with_output().expect("wait for ssh")
        })
    }
}

impl Drop for Sshd {
    fn drop(&mut self) {
        // Listed first: once the master goes, its server-side process exits and the commands
        // still running under it are re-parented out of the tree.
        let sessions = descendants(self.child.id() as i32);
        if self.ctl.exists() {
            let _ = self.ssh().arg("-S").arg(&self.ctl).args(["-O", "exit", HOST]).output();
        }
        let masters = std::mem::take(&mut *self.masters.lock().unwrap_or_else(|e| e.into_inner()));
        for m in masters {
            if m.wait_gone(Duration::from_secs(2)).is_err() {
                m.signal(libc::SIGKILL);
                let _ = m.wait_gone(Duration::from_secs(2));
            }
        }
        stop_tree(&mut self.child, sessions);
    }
}

fn wait_ready(child: &mut Child, port: u16, d: &Path, user: &str, timeout: Duration) -> Result<(), StartError> {
    // sshd.stderr holds what sshd says before it opens its log (bad options, say).
    let log_text = || {
        let stderr = fs::read_to_string(d.join("sshd.stderr")).unwrap_or_default();
        stderr + &fs::read_to_string(d.join("sshd.log")).unwrap_or_default()
    };
    let deadline = Instant::now() + timeout;
    let mut last = String::from("no answer yet");
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            let log = log_text();
            let e = format!("sshd exited ({status}) while starting:\n{log}");
            return Err(if log.contains("Address already in use") || log.contains("Cannot bind any address") {
                StartError::Retry(e)
            } else {
                StartError::Fatal(e)
            });
        }
        if Instant::now() > deadline {
            return Err(StartError::Fatal(format!(
                "sshd on port {} not ready after {timeout:?}: {last}\nsshd log:\n{}",
                port,
                log_text()
            )));
        }
        if TcpStream::connect(("127.0.0.1", port)).is_err() {
            std::thread::sleep(Duration::from_millis(20));
            continue;
        }
        // Something listens: log in with the key, without any master.
        let out = Command::new("ssh")
            .arg("-F")
            .arg(d.join("ssh_config"))
            .args(["-o", "ControlPath=none", "-T", HOST, "true"])
            .stdin(Stdio::null())
            .output()
            .map_err(|e| StartError::Fatal(format!("run ssh: {e}")))?;
        if out.status.success() {
            return Ok(());
        }
        last = format!("ssh: {} {}", out.status, String::from_utf8_lossy(&out.stderr).trim());
        let log = log_text();
        if last.contains("Host key verification failed") || last.contains("IDENTIFICATION HAS CHANGED") {
            // Another server took the port between the probe and sshd's bind.
            return Err(StartError::Retry(last));
        }
        if log.contains("account is locked") || log.contains("not allowed because") {
            return Err(StartError::Fatal(format!("sshd refuses the login of {}: {last}\n{log}", user)));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Stops the server, every process under it, and `also` (processes that were under it).
fn stop_tree(child: &mut Child, also: Vec<Proc>) {
    let root = child.id() as i32;
    let mut procs = also;
    if let Ok(None) = child.try_wait() {
        // Listed before the server dies: afterwards its children are re-parented.
        procs.extend(Proc::of(root));
        procs.extend(descendants(root));
    }
    for p in &procs {
        p.signal(libc::SIGTERM);
    }
    let deadline = Instant::now() + Duration::from_secs(3);
    while procs.iter().any(Proc::alive) && Instant::now() < deadline {
        // Reap the server as soon as it is done so that `alive` sees it gone.
        let _ = child.try_wait();
        std::thread::sleep(Duration::from_millis(20));
    }
    for p in &procs {
        p.signal(libc::SIGKILL);
    }
    let _ = child.wait();
}

/// A private temporary directory with a short path: a Unix socket path has at most 107 bytes,
/// and ssh binds the control socket under a name 17 characters longer than `ControlPath`.
fn temp_dir() -> Result<tempfile::TempDir, String> {
    let base = std::env::temp_dir();
    let base = if base.as_os_str().len() > 60 { PathBuf::from("/tmp") } else { base };
    tempfile::Builder::new().prefix("sshd-").tempdir_in(base).map_err(|e| format!("create a temporary directory: {e}"))
}

fn keygen(path: &Path) -> Result<(), String> {
    let out = Command::new("ssh-keygen")
        .args(["-q", "-N", "", "-t", "ed25519", "-C", "alcf-tests", "-f"])
        .arg(path)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("run ssh-keygen: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!("ssh-keygen: {} {}", out.status, String::from_utf8_lossy(&out.stderr)))
    }
}

fn write_private(path: &Path, text: &str) -> Result<(), String> {
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| format!("write {}: {e}", path.display()))?;
    f.write_all(text.as_bytes()).map_err(|e| format!("write {}: {e}", path.display()))
}

/// A port that was free a moment ago (sshd may lose it to another process: see `Retry`).
fn free_port() -> Result<u16, String> {
    let l = TcpListener::bind(("127.0.0.1", 0)).map_err(|e| format!("bind 127.0.0.1:0: {e}"))?;
    Ok(l.local_addr().map_err(|e| e.to_string())?.port())
}

/// A path or value as one double-quoted sshd_config/ssh_config token.
fn quote(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

fn path_token(p: &Path) -> String {
    // `%` starts a token in AuthorizedKeysFile, ControlPath and IdentityFile.
    quote(&p.display().to_string().replace('%', "%%"))
}

fn sshd_config(
    d: &Path,
    port: u16,
    user: &str,
    use_pam: bool,
    opts: &SshdOptions,
    home: &Path,
) -> Result<String, String> {
    let mut setenv = Vec::new();
    let home = ("HOME".to_string(), home.to_str().ok_or("the fixture's directory is not UTF-8")?.to_string());
    let home = if opts.env.iter().any(|(n, _)| n == "HOME") { None } else { Some(&home) };
    for (name, value) in home.into_iter().chain(&opts.env) {
        let valid_name = name.chars().next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !valid_name || value.contains(['\n', '\r', '\0']) {
            return Err(format!("cannot pass {name:?}={value:?} through sshd's SetEnv"));
        }
        setenv.push(quote(&format!("{name}={value}")));
    }
    Ok(format!(
        "# Written by the alcf-tests loopback sshd fixture.\n\
         ListenAddress 127.0.0.1\n\
         Port {port}\n\
         HostKey {host_key}\n\
         PidFile {pid}\n\
         AuthorizedKeysFile {keys}\n\
         StrictModes no\n\
         PubkeyAuthentication yes\n\
         PasswordAuthentication no\n\
         KbdInteractiveAuthentication no\n\
         UsePAM {pam}\n\
         PermitRootLogin prohibit-password\n\
         AllowUsers {user}\n\
         MaxSessions {max_sessions}\n\
         PrintMotd no\n\
         PrintLastLog no\n\
         X11Forwarding no\n\
         Subsystem sftp internal-sftp\n\
         LogLevel VERBOSE\n\
         {setenv}",
        host_key = path_token(&d.join("host_ed25519")),
        pid = path_token(&d.join("sshd.pid")),
        keys = path_token(&d.join("authorized_keys")),
        pam = if use_pam { "yes" } else { "no" },
        max_sessions = opts.max_sessions,
        // sshd keeps only the first SetEnv line.
        setenv = if setenv.is_empty() { String::new() } else { format!("SetEnv {}\n", setenv.join(" ")) },
    ))
}

fn ssh_config(d: &Path, port: u16, user: &str) -> String {
    format!(
        "# Written by the alcf-tests loopback sshd fixture.\n\
         Host {HOST}\n\
         \x20 HostName 127.0.0.1\n\
         \x20 Port {port}\n\
         \x20 User {user}\n\
         \x20 IdentityFile {id}\n\
         \x20 IdentitiesOnly yes\n\
         \x20 UserKnownHostsFile {known}\n\
         \x20 GlobalKnownHostsFile /dev/null\n\
         \x20 StrictHostKeyChecking yes\n\
         \x20 ControlPath {ctl}\n\
         \x20 ServerAliveInterval 60\n\
         \x20 ConnectTimeout 10\n\
         \x20 BatchMode yes\n",
        id = path_token(&d.join("id_ed25519")),
        known = path_token(&d.join("known_hosts")),
        ctl = path_token(&d.join("ctl")),
    )
}

/// The effective user's name (from the password database, not `$USER`).
fn current_user() -> Result<String, String> {
    let uid = unsafe { libc::geteuid() };
    let mut pw: libc::passwd = unsafe { std::mem::zeroed() };
    let mut result: *mut libc::passwd = std::ptr::null_mut();
    let mut buf = vec![0 as libc::c_char; 16 * 1024];
    let rc = unsafe { libc::getpwuid_r(uid, &mut pw, buf.as_mut_ptr(), buf.len(), &mut result) };
    if rc != 0 || result.is_null() {
        return Err(format!("uid {uid} has no entry in the password database (rc {rc})"));
    }
    let name = unsafe { std::ffi::CStr::from_ptr(pw.pw_name) };
    Ok(name.to_string_lossy().into_owned())
}

/// Whether the account's shadow password is locked (`!…`); only root can tell (and only a root
/// sshd checks).
fn account_locked(user: &str) -> bool {
    fs::read_to_string("/etc/shadow").is_ok_and(|shadow| {
        shadow.lines().any(|l| {
            let mut f = l.split(':');
            f.next() == Some(user) && f.next().is_some_and(|p| p.starts_with('!'))
        })
    })
}

/// A process, told apart from a later one with the same pid by its start time.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Proc {
    pid: i32,
    start: u64,
}

/// (state, ppid, start time) from /proc/PID/stat.
fn stat(pid: i32) -> Option<(String, i32, u64)> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // pid (comm) state ppid … starttime (field 22); comm may hold spaces and parentheses.
    let rest: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    Some((rest.first()?.to_string(), rest.get(1)?.parse().ok()?, rest.get(19)?.parse().ok()?))
}

impl Proc {
    fn of(pid: i32) -> Option<Proc> {
        stat(pid).map(|(_, _, start)| Proc { pid, start })
    }

    /// Still this process, and not a zombie.
    fn alive(&self) -> bool {
        stat(self.pid).is_some_and(|(state, _, start)| start == self.start && state != "Z")
    }

    fn signal(&self, sig: libc::c_int) {
        if self.alive() {
            unsafe { libc::kill(self.pid, sig) };
        }
    }

    fn wait_gone(&self, timeout: Duration) -> Result<(), String> {
        let deadline = Instant::now() + timeout;
        while self.alive() {
            if Instant::now() > deadline {
                return Err(format!("process {} still runs after {timeout:?}", self.pid));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        Ok(())
    }
}

/// All processes below `root`, from /proc.
fn descendants(root: i32) -> Vec<Proc> {
    let mut parent_of = Vec::new();
    if let Ok(entries) = fs::read_dir("/proc") {
        for e in entries.flatten() {
            let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else { continue };
            if let Some((_, ppid, start)) = stat(pid) {
                parent_of.push((Proc { pid, start }, ppid));
            }
        }
    }
    let mut out: Vec<Proc> = Vec::new();
    let mut frontier = vec![root];
    while let Some(p) = frontier.pop() {
        for &(child, parent) in &parent_of {
            if parent == p && !out.contains(&child) {
                out.push(child);
                frontier.push(child.pid);
            }
        }
    }
    out
}
