//! `alcf-host connect HOST`: opens the SSH master connection that the `pbs` executor resumes.
//!
//! Aurora logins cost a one-time passcode, so the host never logs in by itself: the user runs
//! this once (it asks for the passcode in the foreground, as `ssh` always does), `ControlPersist`
//! keeps the master for hours, and every `alcf-host run` sends its commands through it.

use std::path::{Path, PathBuf};
use std::process::Command;

use alcf_host::config::{Config, ExecutorConfig};
use alcf_host::executor::pbs::executor::{control_path, default_control_path};
use anyhow::{Context, bail};

pub struct ConnectOptions {
    /// An SSH destination; with `config`, the config's `executor.host` when absent.
    pub host: Option<String>,
    pub config: Option<PathBuf>,
    /// How long the master outlives its last use (ssh's ControlPersist), e.g. `12h`.
    pub persist: String,
    /// Just say whether a master is alive.
    pub check: bool,
    /// End the master (`ssh -O exit`).
    pub exit: bool,
}

pub fn connect(opts: ConnectOptions) -> anyhow::Result<()> {
    let (host, control) = target(&opts)?;
    if host == "local" {
        bail!("executor.host is \"local\": the executor runs PBS commands on this machine, with no SSH to connect");
    }
    let alive = master_alive(&host, &control);
    if opts.exit {
        if !alive {
            println!("no master connection to {host} at {}", control.display());
            return Ok(());
        }
        let status = ssh(&control).args(["-O", "exit", &host]).status().context("run ssh")?;
        if !status.success() {
            bail!("`ssh -O exit` failed for {host}");
        }
        println!("closed the master connection to {host}");
        return Ok(());
    }
    if alive {
        println!("{}", control.display());
        eprintln!("a master connection to {host} is open already; alcf-host uses it");
        return Ok(());
    }
    if opts.check {
        bail!("no master connection to {host} at {}: open one with `alcf-host connect {host}`", control.display());
    }
    if let Some(dir) = control.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))?;
        set_private(dir);
    }
    // A socket left by a master that died would make ssh refuse to create a new one.
    if control.exists() {
        let _ = std::fs::remove_file(&control);
    }
    eprintln!("opening a master connection to {host} (ssh asks for your passcode; it stays open for {})", opts.persist);
    let status = ssh(&control)
        .args(["-M", "-f", "-N"])
        .args(["-o", &format!("ControlPersist={}", opts.persist)])
        .args(["-o", "ServerAliveInterval=60", "-o", "ServerAliveCountMax=5"])
        .arg(&host)
        .status()
        .context("run ssh (is OpenSSH installed?)")?;
    if !status.success() {
        bail!(
            "ssh could not log in to {host} (exit status {}); check the host name and your passcode",
            status.code().unwrap_or(-1)
        );
    }
    if !master_alive(&host, &control) {
        bail!("ssh logged in, but no master is listening at {}", control.display());
    }
    println!("{}", control.display());
    eprintln!(
        "connected: `alcf-host run` sends its commands through this socket until it expires or you run `alcf-host connect {host} --exit`"
    );
    Ok(())
}

fn target(opts: &ConnectOptions) -> anyhow::Result<(String, PathBuf)> {
    if let Some(path) = &opts.config {
        let config = Config::load(path)?;
        let Some(ExecutorConfig::Pbs(pbs)) = &config.executor else {
            bail!("{}: its [executor] is not kind = \"pbs\"; nothing to connect to", path.display());
        };
        let mut pbs = (**pbs).clone();
        if let Some(h) = &opts.host {
            pbs.host = h.clone();
        }
        return Ok((pbs.host.clone(), control_path(&pbs)));
    }
    let Some(host) = opts.host.clone() else {
        bail!("give a host (`alcf-host connect aurora`) or --config FILE");
    };
    Ok((host.clone(), default_control_path(&host)))
}

fn ssh(control: &Path) -> Command {
    let mut c = Command::new("ssh");
    c.arg("-S").arg(control);
    c
}

fn master_alive(host: &str, control: &Path) -> bool {
    control.exists()
        && ssh(control)
            .args(["-O", "check", host])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
}

fn set_private(dir: &Path) {
    use std::os::unix::fs::PermissionsExt;
    let _ = std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700));
}
