//! The `local` executor: each trial is a subprocess on this machine.
//!
//! A trial runs in its own directory, which it finds as its working directory and in
//! `ALCF_TRIAL_DIR`. The executor writes `params.json` there, renders the program's argv from the
//! configured template (each template element becomes exactly one argument; values are substituted
//! as text and never pass through a shell), sends stdout/stderr to `stdout.log`/`stderr.log`, and
//! when the program ends reads the trial protocol it wrote: `metrics.jsonl` (one JSON object per
//! line) and `result.json` (final values).
//!
//! Each trial is the leader of its own process group, so a timeout or a cancel stops everything it
//! started, and leftover background processes are killed when it ends. On Linux a trial also dies
//! with the host (`PR_SET_PDEATHSIG`): local jobs do not outlive the host, and the campaign re-runs
//! interrupted trials on resume. The death signal covers the trial's main process only (processes
//! it starts itself may outlive a SIGKILLed host, writing into a directory that a resubmission has
//! moved aside), and it fires when the *thread* that spawned the trial exits: submit from a
//! runtime worker thread, not from a short-lived `spawn_blocking` thread.

use std::collections::{BTreeMap, HashMap};
use std::ffi::OsString;
use std::fs::{self, File};
use std::io::{self, Read, Seek, SeekFrom};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value as Json;
use tokio::sync::watch;
use tokio::time::Instant;

use crate::executor::{BoxFuture, Executor, ExecutorError, JobId, RunReport, TrialSpec};
use crate::space::{Metrics, SearchSpace};

/// Per-epoch metrics, one JSON object per line, written by the trial program.
pub const METRICS_FILE: &str = "metrics.jsonl";
/// Final metrics, one JSON object, written (atomically, by well-behaved programs) when the trial ends.
pub const RESULT_FILE: &str = "result.json";
/// The trial's parameters as a JSON object, written by the executor before the program starts.
pub const PARAMS_FILE: &str = "params.json";
pub const STDOUT_FILE: &str = "stdout.log";
pub const STDERR_FILE: &str = "stderr.log";

/// How long a trial may take to exit after SIGTERM before it gets SIGKILL.
const KILL_GRACE: Duration = Duration::from_secs(5);
/// Limits of [`RunReport::log_tail`].
const TAIL_LINES: usize = 40;
const TAIL_BYTES: usize = 4096;

/// The `[executor]` section of a study configuration for `kind = "local"`.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct LocalConfig {
    /// argv template, e.g. `["python3", "train.py", "--lr", "{lr}", "--out", "{trial_dir}"]`.
    /// Placeholders: any search-space parameter, `{trial_dir}` (absolute), `{trial_id}`, `{config_dir}`
    /// (absolute directory of the study config) and
    /// `{params}` (absolute path of params.json); `{{` and `}}` are literal braces.
    pub command: Vec<String>,
    /// Wall-clock limit per trial, counted from its start.
    pub timeout: Option<Duration>,
    /// Extra environment for the trial program, on top of the host's own.
    pub env: BTreeMap<String, String>,
    /// Base for a relative program path such as `./train.sh` (the configuration file's directory);
    /// `None` means the host's working directory. A bare name such as `python3` is looked up in PATH.
    /// A literal argument naming an existing file here (`train.py` in `["python3", "train.py"]`) is
    /// passed as its absolute path, since the program runs in the trial directory.
    pub workdir: Option<PathBuf>,
}

/// A `command` template that cannot work; each names the element and what to write instead.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum LocalConfigError {
    #[error(
        "`executor.command` is empty: give the program and its arguments, \
         e.g. command = [\"python3\", \"train.py\", \"--lr\", \"{{lr}}\"]"
    )]
    EmptyCommand,
    #[error(
        "`executor.command[{index}]` (\"{arg}\") uses the unknown placeholder `{{{name}}}`; \
         valid placeholders are {valid} (write `{{{{` and `}}}}` for literal braces)"
    )]
    UnknownPlaceholder { index: usize, arg: String, name: String, valid: String },
    #[error(
        "`executor.command[{index}]` (\"{arg}\") has a `{{` that is never closed; write `{{{{` for a literal brace"
    )]
    UnclosedBrace { index: usize, arg: String },
    #[error(
        "`executor.command[{index}]` (\"{arg}\") has a `}}` without a matching `{{`; write `}}}}` for a literal brace"
    )]
    UnmatchedBrace { index: usize, arg: String },
    #[error(
        "`executor.command[{index}]` (\"{arg}\"): `{{{name}}}` is ambiguous, because `{name}` is both a search-space \
         parameter and a built-in placeholder; rename the parameter"
    )]
    Ambiguous { index: usize, arg: String, name: String },
}

const BUILTINS: [&str; 4] = ["trial_dir", "trial_id", "params", "config_dir"];

#[derive(Clone, Debug, PartialEq)]
enum Piece {
    Lit(String),
    Param(String),
    TrialDir,
    TrialId,
    ParamsPath,
    ConfigDir,
}

/// A parsed `command`: one list of pieces per argument.
#[derive(Clone, Debug, PartialEq)]
struct Template {
    args: Vec<Vec<Piece>>,
}

impl Template {
    fn parse(command: &[String], space: &SearchSpace) -> Result<Template, LocalConfigError> {
        if command.is_empty() || command[0].is_empty() {
            return Err(LocalConfigError::EmptyCommand);
        }
        let args = command.iter().enumerate().map(|(i, arg)| parse_arg(i, arg, space)).collect::<Result<_, _>>()?;
        Ok(Template { args })
    }

    /// The argv for one trial: exactly one argument per template element.
    fn render(
        &self,
        trial: &TrialSpec,
        dir: &Path,
        params_path: &Path,
        config_dir: &Path,
    ) -> Result<Vec<OsString>, String> {
        self.args
            .iter()
            .map(|pieces| {
                let mut out = OsString::new();
                for piece in pieces {
                    match piece {
                        Piece::Lit(s) => out.push(s),
                        Piece::Param(name) => match trial.params.get(name) {
                            Some(v) => out.push(v.to_string()),
                            None => return Err(format!("the trial has no value for parameter `{name}`")),
                        },
                        Piece::TrialDir => out.push(dir),
                        Piece::TrialId => out.push(trial.id.to_string()),
                        Piece::ParamsPath => out.push(params_path),
                        Piece::ConfigDir => out.push(config_dir),
                    }
                }
                Ok(out)
            })
            .collect()
    }
}

fn parse_arg(index: usize, arg: &str, space: &SearchSpace) -> Result<Vec<Piece>, LocalConfigError> {
    let mut pieces = Vec::new();
    let mut lit = String::new();
    let mut chars = arg.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '{' if chars.peek() == Some(&'{') => {
                chars.next();
                lit.push('{');
            }
            '}' if chars.peek() == Some(&'}') => {
                chars.next();
                lit.push('}');
            }
            '}' => return Err(LocalConfigError::UnmatchedBrace { index, arg: arg.into() }),
            '{' => {
                let mut name = String::new();
                loop {
                    match chars.next() {
                        Some('}') => break,
                        Some('{') | None => return Err(LocalConfigError::UnclosedBrace { index, arg: arg.into() }),
                        Some(c) => name.push(c),
                    }
                }
                let is_param = space.param(&name).is_some();
                let builtin = match name.as_str() {
                    "trial_dir" => Some(Piece::TrialDir),
                    "trial_id" => Some(Piece::TrialId),
                    "params" => Some(Piece::ParamsPath),
                    "config_dir" => Some(Piece::ConfigDir),
                    _ => None,
                };
                let piece = match (is_param, builtin) {
                    (true, Some(_)) => return Err(LocalConfigError::Ambiguous { index, arg: arg.into(), name }),
                    (true, None) => Piece::Param(name),
                    (false, Some(b)) => b,
                    (false, None) => {
                        let valid =
                            space.names().chain(BUILTINS).map(|n| format!("{{{n}}}")).collect::<Vec<_>>().join(", ");
                        return Err(LocalConfigError::UnknownPlaceholder { index, arg: arg.into(), name, valid });
                    }
                };
                if !lit.is_empty() {
                    pieces.push(Piece::Lit(std::mem::take(&mut lit)));
                }
                pieces.push(piece);
            }
            c => lit.push(c),
        }
    }
    if !lit.is_empty() || pieces.is_empty() {
        pieces.push(Piece::Lit(lit));
    }
    Ok(pieces)
}

type ExitResult = Result<ExitStatus, String>;

/// A started trial, as `wait` and `cancel` need it.
#[derive(Clone)]
struct Job {
    /// The trial's process group id (= the pid of its leader, which is the job id).
    pgid: libc::pid_t,
    started: Instant,
    /// Set by a task that owns the child and reaps it.
    exit: watch::Receiver<Option<ExitResult>>,
    cancelled: Arc<AtomicBool>,
}

struct Inner {
    template: Template,
    config: LocalConfig,
    jobs: Mutex<HashMap<String, Job>>,
    kill_grace: Duration,
}

/// Runs each trial as a subprocess; see the module documentation.
#[derive(Clone)]
pub struct LocalExecutor {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for LocalExecutor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalExecutor").field("config", &self.inner.config).finish_non_exhaustive()
    }
}

impl LocalExecutor {
    /// Checks the command template against the search space.
    pub fn new(config: LocalConfig, space: &SearchSpace) -> Result<Self, LocalConfigError> {
        Self::with_grace(config, space, KILL_GRACE)
    }

    fn with_grace(config: LocalConfig, space: &SearchSpace, kill_grace: Duration) -> Result<Self, LocalConfigError> {
        let template = Template::parse(&config.command, space)?;
        Ok(LocalExecutor { inner: Arc::new(Inner { template, config, jobs: Mutex::new(HashMap::new()), kill_grace }) })
    }

    pub fn config(&self) -> &LocalConfig {
        &self.inner.config
    }

    /// Number of trials started by this executor that have not been waited for.
    pub fn running(&self) -> usize {
        self.inner.jobs.lock().unwrap().len()
    }
}

impl Executor for LocalExecutor {
    fn kind(&self) -> &'static str {
        "local"
    }

    fn jobs_outlive_host(&self) -> bool {
        false
    }

    fn submit(&self, trial: &TrialSpec) -> BoxFuture<Result<JobId, ExecutorError>> {
        let inner = self.inner.clone();
        let trial = trial.clone();
        Box::pin(async move { inner.submit(&trial) })
    }

    fn wait(&self, trial: &TrialSpec, job: &JobId) -> BoxFuture<Result<RunReport, ExecutorError>> {
        let inner = self.inner.clone();
        let dir = trial.dir.clone();
        let job = job.clone();
        Box::pin(async move { inner.wait(dir, job).await })
    }

    fn cancel(&self, job: &JobId) -> BoxFuture<Result<(), ExecutorError>> {
        let inner = self.inner.clone();
        let job = job.clone();
        Box::pin(async move {
            let found = inner.jobs.lock().unwrap().get(&job.0).cloned();
            if let Some(mut job) = found {
                job.cancelled.store(true, Ordering::SeqCst);
                // The trial's `wait` reports how it ended.
                let _ = terminate(&mut job, inner.kill_grace).await;
            }
            Ok(())
        })
    }
}

impl Inner {
    fn submit(&self, trial: &TrialSpec) -> Result<JobId, ExecutorError> {
        let fail = |message: String| ExecutorError::Submit { trial: trial.id, message };
        let dir = std::path::absolute(&trial.dir)
            .map_err(|e| fail(format!("cannot resolve trial directory {}: {e}", trial.dir.display())))?;
        prepare_dir(&dir).map_err(fail)?;

        let params_path = dir.join(PARAMS_FILE);
        let mut params = serde_json::to_string_pretty(&Json::Object(trial.params_json.clone()))
            .map_err(|e| fail(format!("cannot encode {PARAMS_FILE}: {e}")))?;
        params.push('\n');
        fs::write(&params_path, params).map_err(|e| fail(format!("cannot write {}: {e}", params_path.display())))?;

        // `{config_dir}`: where the study config lives, so a template can name files beside it.
        let config_dir = match &self.config.workdir {
            Some(w) => std::path::absolute(w).unwrap_or_else(|_| w.clone()),
            None => std::env::current_dir().unwrap_or_default(),
        };
        let mut argv = self.template.render(trial, &dir, &params_path, &config_dir).map_err(fail)?;
        self.resolve_script_args(&mut argv, &dir);
        let mut argv = argv.into_iter();
        let program = self.resolve_program(argv.next().expect("a parsed template is not empty"));
        let log = |name: &str| {
            let path = dir.join(name);
            File::create(&path).map_err(|e| fail(format!("cannot create {}: {e}", path.display())))
        };
        let (stdout, stderr) = (log(STDOUT_FILE)?, log(STDERR_FILE)?);

        let mut cmd = tokio::process::Command::new(&program);
        cmd.args(argv)
            .current_dir(&dir)
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(stderr)
            .envs(&self.config.env)
            .env("ALCF_TRIAL_DIR", &dir)
            .env("ALCF_TRIAL_ID", trial.id.to_string())
            .env("ALCF_PARAMS", &params_path)
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
        let mut child = cmd.spawn().map_err(|e| fail(spawn_error(&program, &e)))?;
        let pid = child.id().ok_or_else(|| fail("the process exited before its id could be read".into()))?;
        let pgid = pid as libc::pid_t;
        let (tx, rx) = watch::channel(None);
        tokio::spawn(async move {
            let status = child.wait().await.map_err(|e| e.to_string());
            // Leftovers the trial started in the background go with it.
            kill_group(pgid, libc::SIGKILL);
            let _ = tx.send(Some(status));
        });
        let job = Job { pgid, started: Instant::now(), exit: rx, cancelled: Arc::new(AtomicBool::new(false)) };
        let id = pid.to_string();
        self.jobs.lock().unwrap().insert(id.clone(), job);
        tracing::debug!(trial = trial.id, pid, dir = %dir.display(), "local trial started");
        Ok(JobId(id))
    }

    /// A relative program path (one with a `/`) is taken from `workdir`; a bare name is left to PATH.
    fn resolve_program(&self, program: OsString) -> PathBuf {
        let path = PathBuf::from(program);
        if path.is_absolute() || path.components().count() < 2 {
            return path;
        }
        match &self.config.workdir {
            Some(base) => std::path::absolute(base.join(&path)).unwrap_or_else(|_| base.join(&path)),
            None => std::path::absolute(&path).unwrap_or(path),
        }
    }

    /// The program runs in the trial directory, so `["python3", "train.py"]` would not find a
    /// `train.py` that sits next to the configuration. A literal argument (no placeholder, not an
    /// option) that is a relative path naming an existing file under `workdir` (and not in the trial
    /// directory) is therefore passed as that file's absolute path.
    fn resolve_script_args(&self, argv: &mut [OsString], dir: &Path) {
        let Some(base) = &self.config.workdir else { return };
        for (arg, pieces) in argv.iter_mut().zip(&self.template.args).skip(1) {
            let [Piece::Lit(lit)] = pieces.as_slice() else { continue };
            let path = Path::new(lit);
            if lit.starts_with('-') || lit.contains('=') || !path.is_relative() || dir.join(path).exists() {
                continue;
            }
            let candidate = base.join(path);
            if candidate.is_file()
                && let Ok(abs) = std::path::absolute(&candidate)
            {
                *arg = abs.into_os_string();
            }
        }
    }

    async fn wait(&self, dir: PathBuf, job_id: JobId) -> Result<RunReport, ExecutorError> {
        let Some(mut job) = self.jobs.lock().unwrap().get(&job_id.0).cloned() else {
            return Err(ExecutorError::Lost {
                job: job_id.0,
                message: "this host process did not start it (local trials do not survive a host restart); \
                          the trial must be re-run"
                    .into(),
            });
        };
        let mut timed_out = None;
        let exit = match self.config.timeout {
            None => wait_exit(&mut job.exit).await,
            Some(limit) => {
                tokio::select! {
                    biased;
                    exit = wait_exit(&mut job.exit) => exit,
                    _ = tokio::time::sleep_until(job.started + limit) => {
                        timed_out = Some(limit);
                        tracing::warn!(pid = job.pgid, "trial timed out after {} s; stopping it", limit.as_secs_f64());
                        terminate(&mut job, self.kill_grace).await
                    }
                }
            }
        };
        self.jobs.lock().unwrap().remove(&job_id.0);

        let cancelled = job.cancelled.load(Ordering::SeqCst);
        let failure = match (&exit, timed_out) {
            (_, Some(limit)) => Some(format!("timed out after {} s", limit.as_secs_f64())),
            (Err(e), None) => Some(format!("lost the process: {e}")),
            (Ok(status), None) => describe_exit(*status),
        };
        let failure = match failure {
            Some(f) if cancelled => Some(format!("cancelled ({f})")),
            f => f,
        };
        let report = tokio::task::spawn_blocking(move || read_report(&dir, failure))
            .await
            .map_err(|e| ExecutorError::Other(format!("reading the trial's results failed: {e}")))?;
        Ok(report)
    }
}

/// Makes a fresh trial directory, moving a leftover one from an interrupted attempt aside.
fn prepare_dir(dir: &Path) -> Result<(), String> {
    if fs::symlink_metadata(dir).is_ok() {
        let name = dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "trial".into());
        let mut n = 1;
        let aside = loop {
            let candidate = dir.with_file_name(format!("{name}.attempt-{n}"));
            if fs::symlink_metadata(&candidate).is_err() {
                break candidate;
            }
            n += 1;
        };
        fs::rename(dir, &aside).map_err(|e| {
            format!("cannot move the earlier attempt {} aside to {}: {e}", dir.display(), aside.display())
        })?;
        tracing::info!("kept the earlier attempt of {} as {}", dir.display(), aside.display());
    }
    fs::create_dir_all(dir).map_err(|e| format!("cannot create trial directory {}: {e}", dir.display()))
}

fn spawn_error(program: &Path, e: &io::Error) -> String {
    let what = match e.kind() {
        io::ErrorKind::NotFound => "was not found",
        io::ErrorKind::PermissionDenied => "is not executable (permission denied)",
        _ => "could not be started",
    };
    format!("the program `{}` {what} ({e}); fix `executor.command` in the config", program.display())
}

async fn wait_exit(rx: &mut watch::Receiver<Option<ExitResult>>) -> ExitResult {
    match rx.wait_for(Option::is_some).await {
        Ok(v) => v.clone().expect("checked by wait_for"),
        Err(_) => Err("the task watching the process ended".into()),
    }
}

/// SIGTERM to the whole group, SIGKILL after the grace period; returns how the leader ended.
async fn terminate(job: &mut Job, grace: Duration) -> ExitResult {
    if let Some(done) = job.exit.borrow().clone() {
        return done;
    }
    kill_group(job.pgid, libc::SIGTERM);
    match tokio::time::timeout(grace, wait_exit(&mut job.exit)).await {
        Ok(exit) => exit,
        Err(_) => {
            kill_group(job.pgid, libc::SIGKILL);
            wait_exit(&mut job.exit).await
        }
    }
}

fn kill_group(pgid: libc::pid_t, signal: libc::c_int) {
    // Never 0 or -1: kill(0, _) and kill(-1, _) would hit the host's own group or every process.
    if pgid > 1 {
        // SAFETY: plain syscall; a group that is already gone gives ESRCH, which is fine.
        unsafe { libc::kill(-pgid, signal) };
    }
}

/// "exited with status 3", "killed by signal 9 (SIGKILL)", or `None` for success.
fn describe_exit(status: ExitStatus) -> Option<String> {
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

fn signal_name(signal: libc::c_int) -> Option<&'static str> {
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

/// Reads the trial protocol and the log tail after the program ended.
fn read_report(dir: &Path, mut failure: Option<String>) -> RunReport {
    let (curve, mut metrics) = read_metrics_lines(&dir.join(METRICS_FILE));
    match read_result(&dir.join(RESULT_FILE)) {
        Ok(Some(result)) => metrics.extend(result),
        Ok(None) => {}
        Err(e) => {
            if failure.is_none() {
                failure = Some(e);
            }
        }
    }
    let log_tail = failure.as_ref().and_then(|_| log_tail(dir));
    RunReport { metrics, curve, failure, log_tail }
}

/// `metrics.jsonl`: the numeric fields of each line, and the last reported value of every metric.
/// A malformed line (e.g. one cut short by a kill) is skipped with a warning.
fn read_metrics_lines(path: &Path) -> (Vec<Metrics>, Metrics) {
    let mut curve = Vec::new();
    let mut last = Metrics::new();
    let text = match fs::read(path) {
        Ok(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
        Err(e) if e.kind() == io::ErrorKind::NotFound => return (curve, last),
        Err(e) => {
            tracing::warn!("cannot read {}: {e}", path.display());
            return (curve, last);
        }
    };
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        match parse_object(line) {
            Ok(obj) => {
                let numbers = numeric_fields(&obj);
                last.extend(numbers.iter().map(|(k, v)| (k.clone(), *v)));
                curve.push(numbers);
            }
            Err(e) => tracing::warn!("{}:{}: skipping a malformed metrics line: {e}", path.display(), i + 1),
        }
    }
    (curve, last)
}

/// `result.json`: `Ok(None)` when absent; an error (naming the file) when present but malformed.
fn read_result(path: &Path) -> Result<Option<Metrics>, String> {
    let bytes = match fs::read(path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("cannot read {}: {e}", path.display())),
    };
    let text = String::from_utf8_lossy(&bytes);
    parse_object(&text)
        .map(|obj| Some(numeric_fields(&obj)))
        .map_err(|e| format!("{} is not a valid JSON object: {e}", path.display()))
}

/// Parses one JSON object, tolerating the bare `NaN`/`Infinity` that Python's json module writes.
fn parse_object(text: &str) -> Result<serde_json::Map<String, Json>, String> {
    let parsed = serde_json::from_str::<Json>(text)
        .or_else(|e| serde_json::from_str::<Json>(&replace_nonfinite(text)).map_err(|_| e.to_string()))?;
    match parsed {
        Json::Object(obj) => Ok(obj),
        other => Err(format!("expected a JSON object, found `{}`", truncate(&other.to_string(), 60))),
    }
}

fn numeric_fields(obj: &serde_json::Map<String, Json>) -> Metrics {
    obj.iter().filter_map(|(k, v)| v.as_f64().filter(|x| x.is_finite()).map(|x| (k.clone(), x))).collect()
}

/// Replaces `NaN`, `Infinity` and `-Infinity` outside strings with `null`.
fn replace_nonfinite(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut in_string = false;
    let mut escaped = false;
    let mut rest = text;
    while let Some(c) = rest.chars().next() {
        if in_string {
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '"' {
                in_string = false;
            }
        } else if c == '"' {
            in_string = true;
        } else if let Some(token) = ["-Infinity", "Infinity", "NaN"].into_iter().find(|t| rest.starts_with(t)) {
            out.push_str("null");
            rest = &rest[token.len()..];
            continue;
        }
        out.push(c);
        rest = &rest[c.len_utf8()..];
    }
    out
}

fn truncate(s: &str, max: usize) -> String {
    match s.char_indices().nth(max) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.to_string(),
    }
}

/// The last lines of stderr.log, or of stdout.log when stderr is empty.
fn log_tail(dir: &Path) -> Option<String> {
    tail_of(&dir.join(STDERR_FILE)).or_else(|| tail_of(&dir.join(STDOUT_FILE)))
}

/// At most [`TAIL_LINES`] lines and about [`TAIL_BYTES`] bytes from the end of a file.
fn tail_of(path: &Path) -> Option<String> {
    let mut file = File::open(path).ok()?;
    let len = file.metadata().ok()?.len();
    let start = len.saturating_sub(4 * TAIL_BYTES as u64);
    file.seek(SeekFrom::Start(start)).ok()?;
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes).ok()?;
    let text = String::from_utf8_lossy(&bytes);
    let mut text = text.trim_end();
    if start > 0 {
        // Drop the partial first line.
        text = text.split_once('\n').map_or(text, |(_, rest)| rest);
    }
    if text.trim().is_empty() {
        return None;
    }
    let lines: Vec<&str> = text.lines().collect();
    let mut tail = lines[lines.len().saturating_sub(TAIL_LINES)..].join("\n");
    if tail.len() > TAIL_BYTES {
        let mut cut = tail.len() - TAIL_BYTES;
        while !tail.is_char_boundary(cut) {
            cut += 1;
        }
        // Prefer to start at a line boundary.
        if let Some(nl) = tail[cut..].find('\n')
            && nl < TAIL_BYTES / 2
        {
            cut += nl + 1;
        }
        tail = format!("…{}", &tail[cut..]);
    }
    Some(tail)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::space::{Choice, Domain, Param, Value};

    fn space() -> SearchSpace {
        let labels = ["plain", "two words", "it's \"quoted\"", "$(touch pwned)", "a; touch pwned2", "`id`", "*"];
        SearchSpace::new(vec![
            Param { name: "lr".into(), domain: Domain::Float { low: 1e-6, high: 1.0, log: true } },
            Param { name: "epochs".into(), domain: Domain::Int { low: 1, high: 100, log: false } },
            Param {
                name: "label".into(),
                domain: Domain::Choice(labels.iter().map(|l| Choice::from_json(Json::from(*l)).unwrap()).collect()),
            },
        ])
        .unwrap()
    }

    fn trial(dir: &Path, id: u64, label: &str) -> TrialSpec {
        let s = space();
        let params = s
            .validate(&[
                ("lr".into(), Value::Float(0.001)),
                ("epochs".into(), Value::Int(7)),
                ("label".into(), Value::Choice(label.into())),
            ])
            .unwrap();
        let params_json = params.to_json(&s);
        TrialSpec { id, params, params_json, dir: dir.join(format!("trial-{id}")) }
    }

    fn sh(script: &str, extra: &[&str]) -> LocalConfig {
        // The script is literal text: its braces are escaped from the template syntax.
        let script = script.replace('{', "{{").replace('}', "}}");
        let mut command = vec!["/bin/sh".to_string(), "-c".into(), script, "sh".into()];
        command.extend(extra.iter().map(|s| s.to_string()));
        LocalConfig { command, ..Default::default() }
    }

    async fn run(config: LocalConfig, t: &TrialSpec) -> RunReport {
        let ex = LocalExecutor::with_grace(config, &space(), Duration::from_millis(300)).unwrap();
        let job = ex.submit(t).await.unwrap();
        ex.wait(t, &job).await.unwrap()
    }

    #[test]
    fn template_parsing_and_rendering() {
        let s = space();
        let cmd = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let t = Template::parse(&cmd(&["prog", "--lr={lr}", "{{lit}}", "x}}{{", "{trial_id}-{label}"]), &s).unwrap();
        let tmp = Path::new("/tmp/t");
        let spec = trial(tmp, 42, "two words");
        let argv = t.render(&spec, &tmp.join("trial-42"), &tmp.join("trial-42/params.json"), tmp).unwrap();
        assert_eq!(argv, ["prog", "--lr=0.001", "{lit}", "x}{", "42-two words"].map(OsString::from));

        assert_eq!(Template::parse(&[], &s), Err(LocalConfigError::EmptyCommand));
        let err = Template::parse(&cmd(&["prog", "--x={momentum}"]), &s).unwrap_err();
        assert!(matches!(&err, LocalConfigError::UnknownPlaceholder { index: 1, name, .. } if name == "momentum"));
        let msg = err.to_string();
        assert!(msg.contains("`{momentum}`") && msg.contains("executor.command[1]"), "{msg}");
        assert!(msg.contains("{lr}, {epochs}, {label}, {trial_dir}, {trial_id}, {params}"), "{msg}");
        assert!(matches!(Template::parse(&cmd(&["p", "{lr"]), &s), Err(LocalConfigError::UnclosedBrace { .. })));
        assert!(matches!(Template::parse(&cmd(&["p", "a}b"]), &s), Err(LocalConfigError::UnmatchedBrace { .. })));
        assert!(matches!(Template::parse(&cmd(&["p", "{}"]), &s), Err(LocalConfigError::UnknownPlaceholder { .. })));

        let clash = SearchSpace::new(vec![Param {
            name: "params".into(),
            domain: Domain::Int { low: 0, high: 1, log: false },
        }])
        .unwrap();
        assert!(matches!(Template::parse(&cmd(&["p", "{params}"]), &clash), Err(LocalConfigError::Ambiguous { .. })));
    }

    #[tokio::test]
    async fn odd_values_arrive_verbatim_as_one_argument() {
        let tmp = tempfile::tempdir().unwrap();
        let script = r#"for a in "$@"; do printf '%s\0' "$a"; done > args.bin"#;
        let config = sh(script, &["{label}", "pre {label} post", "{lr}", "{trial_id}", "{{x}}", ""]);
        let labels = match &space().params()[2].domain {
            Domain::Choice(c) => c.iter().map(|c| c.label.clone()).collect::<Vec<_>>(),
            _ => unreachable!(),
        };
        for label in labels {
            let t = trial(tmp.path(), 1, &label);
            let report = run(config.clone(), &t).await;
            assert_eq!(report.failure, None);
            let args = fs::read(t.dir.join("args.bin")).unwrap();
            let args: Vec<&[u8]> = args.split(|b| *b == 0).collect();
            let expected = [label.as_str(), &format!("pre {label} post"), "0.001", "1", "{x}", "", ""];
            assert_eq!(args, expected.map(str::as_bytes), "label {label:?}");
            assert!(!t.dir.join("pwned").exists() && !t.dir.join("pwned2").exists());
        }
    }

    #[tokio::test]
    async fn params_json_env_and_cwd() {
        let tmp = tempfile::tempdir().unwrap();
        let script =
            r#"printf '%s\n' "$ALCF_TRIAL_DIR" "$ALCF_TRIAL_ID" "$ALCF_PARAMS" "$EXTRA" "$(pwd -P)" "$1" > env.txt"#;
        let mut config = sh(script, &["{params}"]);
        config.env.insert("EXTRA".into(), "extra value".into());
        let t = trial(tmp.path(), 5, "plain");
        let report = run(config, &t).await;
        assert_eq!(report.failure, None);
        let params: Json = serde_json::from_str(&fs::read_to_string(t.dir.join("params.json")).unwrap()).unwrap();
        assert_eq!(params, serde_json::json!({"lr": 0.001, "epochs": 7, "label": "plain"}));
        let env = fs::read_to_string(t.dir.join("env.txt")).unwrap();
        let lines: Vec<&str> = env.lines().collect();
        let dir = t.dir.canonicalize().unwrap();
        let params_path = t.dir.join("params.json");
        assert_eq!(lines[0], t.dir.to_str().unwrap());
        assert_eq!(lines[1], "5");
        assert_eq!(lines[2], params_path.to_str().unwrap());
        assert_eq!(lines[3], "extra value");
        assert_eq!(lines[4], dir.to_str().unwrap());
        assert_eq!(lines[5], params_path.to_str().unwrap());
    }

    #[tokio::test]
    async fn metrics_and_result_are_read() {
        let tmp = tempfile::tempdir().unwrap();
        let script = r#"
            printf '%s\n' '{"epoch":1,"val_acc":0.25,"loss":2.5,"note":"x"}' '{"epoch":2,"val_acc":' \
                '' '{"epoch":2,"val_acc":0.5,"loss":NaN,"best":true}' '[1,2]' > metrics.jsonl
            printf '{"val_acc": 0.55, "test_acc": 0.5, "model": "resnet18"}' > result.json.tmp
            mv result.json.tmp result.json
            echo noise >&2"#;
        let t = trial(tmp.path(), 2, "plain");
        let report = run(sh(script, &[]), &t).await;
        assert_eq!(report.failure, None);
        assert_eq!(report.log_tail, None);
        let m = |pairs: &[(&str, f64)]| pairs.iter().map(|(k, v)| (k.to_string(), *v)).collect::<Metrics>();
        assert_eq!(
            report.curve,
            vec![m(&[("epoch", 1.0), ("val_acc", 0.25), ("loss", 2.5)]), m(&[("epoch", 2.0), ("val_acc", 0.5)])]
        );
        assert_eq!(report.metrics, m(&[("epoch", 2.0), ("val_acc", 0.55), ("loss", 2.5), ("test_acc", 0.5)]));
    }

    #[tokio::test]
    async fn malformed_result_fails_the_trial() {
        let tmp = tempfile::tempdir().unwrap();
        let script = r#"echo '{"epoch":1,"acc":0.5}' > metrics.jsonl; printf '{"acc": 0.6,' > result.json; echo bye"#;
        let t = trial(tmp.path(), 3, "plain");
        let report = run(sh(script, &[]), &t).await;
        let failure = report.failure.unwrap();
        assert!(failure.contains("result.json") && failure.contains("EOF"), "{failure}");
        assert_eq!(report.metrics.get("acc"), Some(&0.5));
        assert_eq!(report.log_tail.as_deref(), Some("bye"));
    }

    #[tokio::test]
    async fn non_zero_exit_and_signals_are_described() {
        let tmp = tempfile::tempdir().unwrap();
        let t = trial(tmp.path(), 4, "plain");
        let report = run(sh("echo out; for i in $(seq 1 100); do echo err $i >&2; done; exit 3", &[]), &t).await;
        assert_eq!(report.failure.as_deref(), Some("exited with status 3"));
        let tail = report.log_tail.unwrap();
        assert_eq!(tail.lines().count(), TAIL_LINES);
        assert!(tail.starts_with("err 61") && tail.ends_with("err 100"), "{tail}");

        let report = run(sh("echo only stdout; kill -9 $$", &[]), &t).await;
        assert_eq!(report.failure.as_deref(), Some("killed by signal 9 (SIGKILL)"));
        assert_eq!(report.log_tail.as_deref(), Some("only stdout"));
    }

    fn gone(pid: &str) -> bool {
        // A zombie waiting for a reaper counts as gone.
        match fs::read_to_string(format!("/proc/{pid}/stat")) {
            Err(_) => true,
            Ok(stat) => stat.rsplit(')').next().is_some_and(|s| s.trim_start().starts_with('Z')),
        }
    }

    #[tokio::test]
    async fn timeout_kills_the_whole_group() {
        let tmp = tempfile::tempdir().unwrap();
        let t = trial(tmp.path(), 6, "plain");
        let mut config = sh("sleep 30 & echo $! > bg.pid; echo started >&2; sleep 30", &[]);
        config.timeout = Some(Duration::from_millis(400));
        let started = std::time::Instant::now();
        let report = run(config.clone(), &t).await;
        assert!(started.elapsed() < Duration::from_secs(3));
        assert_eq!(report.failure.as_deref(), Some("timed out after 0.4 s"));
        assert_eq!(report.log_tail.as_deref(), Some("started"));
        let bg = fs::read_to_string(t.dir.join("bg.pid")).unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(2);
        while !gone(bg.trim()) && std::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(gone(bg.trim()), "background child {bg} survived the timeout");

        // A program that ignores SIGTERM gets SIGKILL after the grace period.
        config.command[2] = "trap '' TERM; echo ready > ready; while :; do sleep 0.05; done".into();
        let report = run(config, &t).await;
        assert!(started.elapsed() < Duration::from_secs(5));
        assert_eq!(report.failure.as_deref(), Some("timed out after 0.4 s"));
    }

    #[tokio::test]
    async fn cancel_stops_a_running_trial() {
        let tmp = tempfile::tempdir().unwrap();
        let t = trial(tmp.path(), 7, "plain");
        let ex = LocalExecutor::new(sh("sleep 30", &[]), &space()).unwrap();
        let job = ex.submit(&t).await.unwrap();
        assert_eq!(ex.running(), 1);
        let waiter = tokio::spawn({
            let (ex, t, job) = (ex.clone(), t.clone(), job.clone());
            async move { ex.wait(&t, &job).await }
        });
        ex.cancel(&job).await.unwrap();
        let report = waiter.await.unwrap().unwrap();
        assert_eq!(report.failure.as_deref(), Some("cancelled (killed by signal 15 (SIGTERM))"));
        assert_eq!(ex.running(), 0);
        ex.cancel(&job).await.unwrap();
        assert!(matches!(ex.wait(&t, &job).await, Err(ExecutorError::Lost { .. })));
        assert!(matches!(ex.wait(&t, &JobId("999999".into())).await, Err(ExecutorError::Lost { .. })));
    }

    #[tokio::test]
    async fn a_program_that_cannot_start_names_itself() {
        let tmp = tempfile::tempdir().unwrap();
        let t = trial(tmp.path(), 8, "plain");
        let config = LocalConfig { command: vec!["/nonexistent/train".into(), "{lr}".into()], ..Default::default() };
        let ex = LocalExecutor::new(config, &space()).unwrap();
        let err = ex.submit(&t).await.unwrap_err().to_string();
        assert!(err.contains("/nonexistent/train") && err.contains("not found"), "{err}");
        assert!(err.contains("executor.command"), "{err}");

        let script = tmp.path().join("bin/train.sh");
        fs::create_dir_all(script.parent().unwrap()).unwrap();
        fs::write(&script, "#!/bin/sh\necho ran > ran.txt\n").unwrap();
        let config = LocalConfig {
            command: vec!["bin/train.sh".into()],
            workdir: Some(tmp.path().into()),
            ..Default::default()
        };
        let ex = LocalExecutor::new(config, &space()).unwrap();
        let err = ex.submit(&t).await.unwrap_err().to_string();
        assert!(err.contains("not executable") && err.contains("executor.command"), "{err}");

        // Once executable, the relative path resolves against workdir, not the trial directory.
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(&script, fs::Permissions::from_mode(0o755)).unwrap();
        let job = ex.submit(&t).await.unwrap();
        assert_eq!(ex.wait(&t, &job).await.unwrap().failure, None);
        assert!(t.dir.join("ran.txt").exists());

        // `["/bin/sh", "bin/train.sh", "{lr}"]`: the script argument is found next to the config too,
        // while arguments that are not existing files stay as they are.
        let config = LocalConfig {
            command: ["/bin/sh", "bin/train.sh", "bin/nothing.sh", "--flag=bin/train.sh", "{lr}"]
                .map(String::from)
                .to_vec(),
            workdir: Some(tmp.path().into()),
            ..Default::default()
        };
        fs::write(&script, "printf '%s\\n' \"$0\" \"$@\" > ran.txt\n").unwrap();
        let ex = LocalExecutor::new(config, &space()).unwrap();
        let job = ex.submit(&t).await.unwrap();
        assert_eq!(ex.wait(&t, &job).await.unwrap().failure, None);
        let ran = fs::read_to_string(t.dir.join("ran.txt")).unwrap();
        let abs = std::path::absolute(&script).unwrap();
        assert_eq!(ran, format!("{}\nbin/nothing.sh\n--flag=bin/train.sh\n0.001\n", abs.display()));
    }

    #[tokio::test]
    async fn resubmit_keeps_earlier_attempts() {
        let tmp = tempfile::tempdir().unwrap();
        let t = trial(tmp.path(), 9, "plain");
        let config = sh("echo attempt", &[]);
        for _ in 0..3 {
            run(config.clone(), &t).await;
        }
        for name in ["trial-9", "trial-9.attempt-1", "trial-9.attempt-2"] {
            let log = fs::read_to_string(tmp.path().join(name).join(STDOUT_FILE)).unwrap();
            assert_eq!(log, "attempt\n", "{name}");
            assert!(tmp.path().join(name).join(PARAMS_FILE).exists());
        }
        assert!(!tmp.path().join("trial-9.attempt-3").exists());
    }

    #[test]
    fn parsing_helpers() {
        assert_eq!(
            replace_nonfinite(r#"{"a":NaN,"b":-Infinity,"s":"NaN \" Infinity"}"#),
            r#"{"a":null,"b":null,"s":"NaN \" Infinity"}"#
        );
        let tmp = tempfile::tempdir().unwrap();
        let log = tmp.path().join("big.log");
        let long_line = "x".repeat(300);
        fs::write(&log, (0..200).map(|i| format!("{i} {long_line}\n")).collect::<String>()).unwrap();
        let tail = tail_of(&log).unwrap();
        assert!(tail.len() <= TAIL_BYTES + 4 && tail.ends_with(&format!("199 {long_line}")), "{}", tail.len());
        assert!(tail.starts_with("…1"), "{}", &tail[..20]);
        fs::write(&log, "\n  \n").unwrap();
        assert_eq!(tail_of(&log), None);
    }
}
