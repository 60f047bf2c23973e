//! One call to the remote side: the agent (`agent.py`, protocol in `AGENT.md`) run through the
//! user's SSH ControlMaster, or through `sh -c` when the host runs on a login node itself.
//!
//! Why a single agent call per cycle: every SSH command is a channel through the user's master,
//! sshd caps them (`MaxSessions`, 10 by default), and each costs a round trip to Aurora. So the
//! executor batches everything a poll cycle needs (every qstat, every trial's files) into one
//! request, and the agent runs it there.
//!
//! The agent's source travels with every request (a few kB), so the remote side never runs an
//! older agent than the host's and nothing has to be installed there.
//!
//! Invariants:
//! - The master is the user's: this module resumes it ([`openssh::Session::resume`]) and never
//!   calls `close()` (that would end the user's login and cost them a new passcode). SFTP is not
//!   used at all: files travel inside the agent's request and response.
//! - SSH's own exit status 255 is indistinguishable from a remote one, so the agent frames its
//!   response (`ALCF-AGENT 1` … `ALCF-AGENT-END`): a response without its frame is a transport
//!   failure, never a remote result.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::AsyncWriteExt;

/// The agent's source, sent with every request.
pub const AGENT_SOURCE: &str = include_str!("agent.py");

/// `python3 -c BOOT`: reads `<length>\n`, that many bytes of agent source, and runs it; the agent
/// reads the request from the rest of stdin (`AGENT.md`, "BOOT").
const BOOT: &str =
    r#"import sys;n=int(sys.stdin.buffer.readline());exec(compile(sys.stdin.buffer.read(n),"alcf-agent.py","exec"))"#;

const FRAME_START: &str = "ALCF-AGENT 1\n";
const FRAME_END: &str = "\nALCF-AGENT-END";

/// How a call could fail. None of these says anything about a job: nothing is lost.
#[derive(Debug, Clone, thiserror::Error)]
pub enum RemoteError {
    /// No live ControlMaster at the socket: only the user can open one (it costs a passcode).
    #[error(
        "no SSH master connection to {host} (control socket {}): open one with `alcf-host connect {host}` \
         (it asks for your passcode once); the study waits and resumes by itself",
        control.display()
    )]
    NoMaster { host: String, control: PathBuf },
    /// The command did not come back whole (a dropped connection, a laptop that slept).
    #[error("the connection to {host} failed: {message}")]
    Unreachable { host: String, message: String },
    /// The remote side answered, but not as an agent: no Python there, or the agent crashed.
    #[error("the remote helper failed on {host}: {message}")]
    Agent { host: String, message: String },
}

impl RemoteError {
    /// Whether waiting can fix it by itself (the user may still have to open a master).
    pub fn is_agent_failure(&self) -> bool {
        matches!(self, RemoteError::Agent { .. })
    }
}

/// Where the agent runs.
#[derive(Clone)]
pub enum Transport {
    /// Through the user's master socket.
    Ssh { host: String, control: PathBuf, session: Arc<openssh::Session> },
    /// On this machine (`host = "local"` on a login node): `sh -c`.
    Local,
}

impl Transport {
    /// Resumes the master at `control` (nothing is checked until the first call).
    pub fn ssh(host: &str, control: &Path) -> Transport {
        let session = openssh::Session::resume(control.to_path_buf().into_boxed_path(), None);
        Transport::Ssh { host: host.to_string(), control: control.to_path_buf(), session: Arc::new(session) }
    }

    pub fn host(&self) -> &str {
        match self {
            Transport::Ssh { host, .. } => host,
            Transport::Local => "this machine",
        }
    }
}

/// The remote side of one study: a transport, the interpreter and the study's remote directory.
pub struct Remote {
    transport: Transport,
    python: String,
    root: String,
    pbs_bin: String,
    calls: AtomicU64,
    timeout: Duration,
}

/// What one call returned: the remote clock and one result per op.
#[derive(Debug, Clone)]
pub struct Reply {
    pub now: f64,
    pub results: Vec<Value>,
}

impl Remote {
    pub fn new(transport: Transport, python: &str, root: &str, pbs_bin: &str) -> Remote {
        Remote {
            transport,
            python: python.to_string(),
            root: root.to_string(),
            pbs_bin: pbs_bin.to_string(),
            calls: AtomicU64::new(0),
            // A call carries at most a few qstats per job and some files; minutes mean a hung
            // connection, not a slow one.
            timeout: Duration::from_secs(300),
        }
    }

    pub fn transport(&self) -> &Transport {
        &self.transport
    }

    pub fn root(&self) -> &str {
        &self.root
    }

    /// Remote commands run so far (for the round-trips benchmark and logs).
    pub fn calls(&self) -> u64 {
        self.calls.load(Ordering::Relaxed)
    }

    /// Runs `ops` in one remote command.
    pub async fn call(&self, ops: Vec<Value>) -> Result<Reply, RemoteError> {
        let request = json!({"v": 1, "root": self.root, "pbs_bin": self.pbs_bin, "ops": ops});
        let mut stdin = format!("{}\n", AGENT_SOURCE.len()).into_bytes();
        stdin.extend_from_slice(AGENT_SOURCE.as_bytes());
        stdin.extend_from_slice(request.to_string().as_bytes());
        self.calls.fetch_add(1, Ordering::Relaxed);
        let cmdline = format!("{} -c '{}'", shell_word(&self.python), BOOT);
        let out = tokio::time::timeout(self.timeout, self.run(&cmdline, stdin)).await.map_err(|_| {
            RemoteError::Unreachable {
                host: self.transport.host().to_string(),
                message: format!("no answer within {} s", self.timeout.as_secs()),
            }
        })??;
        match self.parse(out) {
            // A cut-off answer through a master: tell a dead master (the user's to fix) from a
            // connection that dropped once.
            Err(RemoteError::Unreachable { message, .. }) if matches!(self.transport, Transport::Ssh { .. }) => {
                Err(self.ssh_failure(message).await)
            }
            r => r,
        }
    }

    async fn run(&self, cmdline: &str, stdin: Vec<u8>) -> Result<std::process::Output, RemoteError> {
        match &self.transport {
            Transport::Local => {
                let mut child = tokio::process::Command::new("sh")
                    .arg("-c")
                    .arg(cmdline)
                    .stdin(Stdio::piped())
                    .stdout(Stdio::piped())
                    .stderr(Stdio::piped())
                    .kill_on_drop(true)
                    .spawn()
                    .map_err(|e| self.agent_error(format!("cannot run sh: {e}")))?;
                let write = feed(child.stdin.take(), stdin);
                let (_, out) = tokio::join!(write, child.wait_with_output());
                out.map_err(|e| self.agent_error(format!("sh failed: {e}")))
            }
            Transport::Ssh { host, control, session } => {
                if !control.exists() {
                    return Err(RemoteError::NoMaster { host: host.clone(), control: control.clone() });
                }
                let spawned = session
                    .raw_command(cmdline)
                    .stdin(openssh::Stdio::piped())
                    .stdout(openssh::Stdio::piped())
                    .stderr(openssh::Stdio::piped())
                    .spawn()
                    .await;
                let mut child = match spawned {
                    Ok(c) => c,
                    Err(e) => return Err(self.ssh_failure(e.to_string()).await),
                };
                let write = feed(child.stdin().take(), stdin);
                let (_, out) = tokio::join!(write, child.wait_with_output());
                match out {
                    Ok(out) => Ok(out),
                    Err(e) => Err(self.ssh_failure(e.to_string()).await),
                }
            }
        }
    }

    /// A command through the master failed: a dead master is the user's to fix, anything else
    /// is a connection problem that may pass.
    async fn ssh_failure(&self, message: String) -> RemoteError {
        let Transport::Ssh { host, control, session } = &self.transport else {
            return self.agent_error(message);
        };
        match session.check().await {
            Ok(()) => RemoteError::Unreachable { host: host.clone(), message },
            Err(_) => RemoteError::NoMaster { host: host.clone(), control: control.clone() },
        }
    }

    fn agent_error(&self, message: String) -> RemoteError {
        RemoteError::Agent { host: self.transport.host().to_string(), message }
    }

    fn parse(&self, out: std::process::Output) -> Result<Reply, RemoteError> {
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        let framed = stdout
            .find(FRAME_START)
            .and_then(|start| {
                let body = &stdout[start + FRAME_START.len()..];
                body.find(FRAME_END).map(|end| &body[..end])
            })
            .map(str::to_string);
        let Some(body) = framed else {
            let status = out.status.code();
            let host = self.transport.host().to_string();
            let detail = last_lines(&stderr, 12);
            return Err(match status {
                // ssh's own failure (or a dropped connection): the remote side never answered.
                Some(255) | None => RemoteError::Unreachable {
                    host,
                    message: format!("the remote command was cut off{}", prefixed(&detail)),
                },
                Some(127) => RemoteError::Agent {
                    host,
                    message: format!(
                        "`{}` was not found there; set `executor.python` to a Python 3.6+ interpreter{}",
                        self.python,
                        prefixed(&detail)
                    ),
                },
                Some(code) => RemoteError::Agent { host, message: format!("exit status {code}{}", prefixed(&detail)) },
            });
        };
        let value: Value = serde_json::from_str(&body).map_err(|e| {
            self.agent_error(format!("its response is not JSON ({e}){}", prefixed(&last_lines(&stderr, 6))))
        })?;
        let now = value.get("now").and_then(Value::as_f64).unwrap_or(0.0);
        let results = match value.get("results") {
            Some(Value::Array(r)) => r.clone(),
            _ => return Err(self.agent_error("its response has no results".into())),
        };
        Ok(Reply { now, results })
    }
}

/// Writes the request to the command's stdin and closes it, while the caller reads its output
/// (a large request and a large answer must not wait on each other). A write error means the
/// command ended early; its output says why.
async fn feed<W: tokio::io::AsyncWrite + Unpin>(pipe: Option<W>, data: Vec<u8>) {
    if let Some(mut p) = pipe {
        let _ = p.write_all(&data).await;
        let _ = p.shutdown().await;
    }
}

fn prefixed(detail: &str) -> String {
    if detail.is_empty() { String::new() } else { format!(": {detail}") }
}

fn last_lines(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.trim_end().lines().collect();
    let mut s = lines[lines.len().saturating_sub(n)..].join("\n");
    if s.len() > 4000 {
        let mut cut = s.len() - 4000;
        while !s.is_char_boundary(cut) {
            cut += 1;
        }
        s = s[cut..].to_string();
    }
    s
}

/// A word for the remote shell: plain interpreter names and paths stay as they are, anything else
/// is single-quoted.
fn shell_word(word: &str) -> String {
    if !word.is_empty() && word.chars().all(|c| c.is_ascii_alphanumeric() || "/._-+".contains(c)) {
        word.to_string()
    } else {
        format!("'{}'", word.replace('\'', r"'\''"))
    }
}

/// A raw PBS command result from the agent (`{"status", "stdout", "stderr"}`).
#[derive(Debug, Clone, Default, serde::Deserialize)]
pub struct Cmd {
    pub status: i32,
    #[serde(default)]
    pub stdout: String,
    #[serde(default)]
    pub stderr: String,
}

/// The `error` of a result, if the op failed.
pub fn op_error(result: &Value) -> Option<String> {
    result.get("error").and_then(Value::as_str).map(str::to_string)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shell_words() {
        assert_eq!(shell_word("python3"), "python3");
        assert_eq!(shell_word("/usr/bin/python3.6"), "/usr/bin/python3.6");
        assert_eq!(shell_word("my python"), "'my python'");
        assert_eq!(shell_word("a'b"), r"'a'\''b'");
    }

    #[tokio::test]
    async fn a_local_call_runs_the_agent_and_reads_its_frame() {
        let dir = tempfile::tempdir().unwrap();
        let remote = Remote::new(Transport::Local, "python3", dir.path().to_str().unwrap(), "");
        let reply =
            remote.call(vec![json!({"op": "digest", "paths": ["x"]}), json!({"op": "no-such-op"})]).await.unwrap();
        assert_eq!(reply.results.len(), 2);
        assert_eq!(reply.results[0]["digests"]["x"], Value::Null);
        assert!(op_error(&reply.results[1]).is_some(), "{:?}", reply.results[1]);
        assert!(reply.now > 1.7e9);
        assert_eq!(remote.calls(), 1);
    }

    #[tokio::test]
    async fn a_missing_interpreter_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let remote = Remote::new(Transport::Local, "no-such-python3", dir.path().to_str().unwrap(), "");
        let err = remote.call(vec![]).await.unwrap_err();
        assert!(err.is_agent_failure() && err.to_string().contains("executor.python"), "{err}");
    }

    #[tokio::test]
    async fn a_dead_master_names_the_command_that_opens_one() {
        let dir = tempfile::tempdir().unwrap();
        let remote = Remote::new(Transport::ssh("aurora", &dir.path().join("no-socket")), "python3", "/x", "");
        let err = remote.call(vec![]).await.unwrap_err();
        assert!(matches!(err, RemoteError::NoMaster { .. }), "{err}");
        assert!(err.to_string().contains("alcf-host connect aurora"), "{err}");
    }
}
