//! The `local` executor: each trial is a subprocess on this machine.
//!
//! A trial runs in its own directory, which it finds as its working directory and in
//! `ALCF_TRIAL_DIR`. The executor writes `params.json` there, renders the program's argv and the
//! configured environment from their templates ([`argv`](super::argv): each template element
//! becomes exactly one argument; values are substituted as text and never pass through a shell),
//! sends stdout/stderr to `stdout.log`/`stderr.log`, follows `metrics.jsonl` while the program runs
//! (each new line goes to the [`MetricsSink`]) and, when the program ends, reads the trial protocol
//! it wrote ([`protocol`](super::protocol)). Process groups, timeouts and the death signal are in
//! [`process`](super::process): local trials do not outlive the host.
//!
//! The trial's environment is the host's, plus `executor.env`, plus `ALCF_TRIAL_DIR`,
//! `ALCF_TRIAL_ID`, `ALCF_TRIAL_ATTEMPT` (1, 2, …), `ALCF_TRIAL_SLOT` (0..parallel-1) and
//! `ALCF_PARAMS` (the path of params.json).
//!
//! # Re-runs
//!
//! Every attempt of a trial uses the same directory. With `rerun = "fresh"` (the default) an earlier
//! attempt's directory is moved aside (`<dir>.attempt-1`, `-2`, …) and the program starts in an
//! empty one. With `rerun = "resume"` the directory is kept as the earlier attempt left it (its
//! checkpoint, `metrics.jsonl`, `result.json`); only its logs are renamed (`stdout.attempt-N.log`,
//! `stderr.attempt-N.log`, numbered in the order the runs happened) and `params.json` is rewritten,
//! so a program that continues from its own checkpoint (`alcf-trainer train --resume`) does.
//!
//! # How an ended process maps to a [`FailureCause`]
//!
//! | how it ended                                                     | cause       |
//! |------------------------------------------------------------------|-------------|
//! | exit status 0, `result.json` absent or valid                     | (no failure)|
//! | exit status 0 but a malformed `result.json`                      | `Trial`     |
//! | any other non-zero exit status, or a signal other than the two below (SIGSEGV, SIGABRT, …) | `Trial` |
//! | our timeout (`executor.timeout_s`), whatever the exit             | `Trial`     |
//! | exit status 75 (`EX_TEMPFAIL`: "stopped, resume me", as `alcf-trainer` uses it) | `System` |
//! | SIGKILL or SIGTERM from outside (the OOM killer, a shutdown, `kill`) | `System` |
//! | the host lost track of the process                                | `System`    |
//! | our [`Executor::cancel`], unless it had already exited 0          | `Cancelled` |
//!
//! `System` failures are worth retrying under the study's retry policy; a retry with
//! `rerun = "resume"` continues from the checkpoint.

use std::collections::HashMap;
use std::ffi::OsString;
use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::config::{LocalConfig, Rerun};
use crate::executor::argv::{EnvTemplate, Template, Vars};
pub use crate::executor::argv::{Field, LocalConfigError};
use crate::executor::process::{self, EX_TEMPFAIL, ExitResult, Process, ProgramProblem};
use crate::executor::protocol::{self, MetricsFileReader, STDERR_FILE, STDOUT_FILE};
use crate::executor::{
    BoxFuture, Executor, ExecutorError, Failure, FailureCause, JobHandle, MetricsLine, MetricsSink, RunReport,
    TrialSpec,
};
use crate::space::SearchSpace;

/// How long a trial may take to exit after SIGTERM before it gets SIGKILL.
const KILL_GRACE: Duration = Duration::from_secs(5);
/// How often a running trial's `metrics.jsonl` is looked at (one `stat` when unchanged). Short,
/// because a pruning decision waits for it: a pruned trial stops this long (plus one `judge`
/// call) after its report, well within an epoch.
const METRICS_POLL: Duration = Duration::from_millis(250);

/// The program of `executor.command[0]` cannot be run; found before any study is created.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PreflightError {
    #[error(
        "`executor.command[0]` (\"{written}\") is {}, which does not exist; fix the path in the config \
         (a relative path and `{{config_dir}}` start from the config file's directory, {})",
        resolved.display(), base.display()
    )]
    Missing { written: String, resolved: PathBuf, base: PathBuf },
    #[error(
        "`executor.command[0]` (\"{written}\") is {}, which is not a regular file; name the program itself",
        resolved.display()
    )]
    NotAFile { written: String, resolved: PathBuf },
    #[error(
        "`executor.command[0]` (\"{written}\") is {}, which is not executable; run `chmod +x {}`, \
         or put its interpreter first (command = [\"python3\", \"{written}\", …])",
        resolved.display(), resolved.display()
    )]
    NotExecutable { written: String, resolved: PathBuf },
    #[error(
        "`executor.command[0]` (\"{name}\") is not found in PATH ({path}); install it, or give its \
         absolute path or a path relative to the config file (\"./{name}\")"
    )]
    NotInPath { name: String, path: String },
    #[error(
        "`executor.command[{index}]` (\"{written}\") names a script, {}, which does not exist; fix the path \
         (a relative path and `{{config_dir}}` start from the config file's directory, {})",
        resolved.display(), base.display()
    )]
    MissingScript { index: usize, written: String, resolved: PathBuf, base: PathBuf },
}

/// File endings of the scripts an interpreter is given (`["python3", "train.py"]`): an argument
/// with one of them that names no file is a config error before any study exists, not a trial
/// that fails with "can't open file" on every attempt.
const SCRIPT_ENDINGS: [&str; 10] = [".py", ".sh", ".bash", ".jl", ".R", ".r", ".pl", ".rb", ".lua", ".js"];

/// A started trial, as `wait` and `cancel` need it.
#[derive(Clone)]
struct Job {
    process: Process,
    cancelled: Arc<AtomicBool>,
}

struct Inner {
    config: LocalConfig,
    template: Template,
    env: EnvTemplate,
    parallel: u32,
    /// Absolute: `{config_dir}` and the base of relative program paths.
    config_dir: PathBuf,
    jobs: Mutex<HashMap<String, Job>>,
    kill_grace: Duration,
    metrics_poll: Duration,
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

/// Where `executor.command[0]` points.
#[derive(Debug, PartialEq)]
enum Program {
    /// A path (absolute once resolved against the config directory).
    Path(PathBuf),
    /// A bare name such as `python3`, looked up in PATH when the trial starts.
    Bare(OsString),
}

impl LocalExecutor {
    /// Checks the `command` and `env` templates against the search space. `parallel` is the number
    /// of trial slots the campaign hands out (`{slot}` is below it).
    pub fn new(config: LocalConfig, space: &SearchSpace, parallel: u32) -> Result<Self, LocalConfigError> {
        Self::with_timing(config, space, parallel, KILL_GRACE, METRICS_POLL)
    }

    fn with_timing(
        config: LocalConfig,
        space: &SearchSpace,
        parallel: u32,
        kill_grace: Duration,
        metrics_poll: Duration,
    ) -> Result<Self, LocalConfigError> {
        let template = Template::parse(&config.command, space)?;
        let env = EnvTemplate::parse(&config.env, space)?;
        let config_dir = match &config.workdir {
            Some(w) => std::path::absolute(w).unwrap_or_else(|_| w.clone()),
            None => std::env::current_dir().unwrap_or_default(),
        };
        let inner = Inner {
            config,
            template,
            env,
            parallel: parallel.max(1),
            config_dir,
            jobs: Mutex::new(HashMap::new()),
            kill_grace,
            metrics_poll,
        };
        Ok(LocalExecutor { inner: Arc::new(inner) })
    }

    pub fn config(&self) -> &LocalConfig {
        &self.inner.config
    }

    /// Number of trials started by this executor that have not been waited for.
    pub fn running(&self) -> usize {
        self.inner.jobs().len()
    }

    /// Checks, before any study is created, that `executor.command[0]` names a program that can be
    /// started: a path must be an executable file, a bare name must be found in PATH (the `PATH`
    /// of `executor.env` when it sets one). A program that uses a per-trial placeholder
    /// (`{trial_dir}/run.sh`) cannot be checked before the trial exists and passes.
    pub fn preflight(&self) -> Result<(), PreflightError> {
        let inner = &self.inner;
        let written = inner.config.command.first().cloned().unwrap_or_default();
        for index in 1..inner.template.len() {
            let Some(arg) = inner.template.render_static(index, &inner.config_dir) else { continue };
            let text = arg.to_string_lossy();
            if text.starts_with('-') || text.contains('=') || !SCRIPT_ENDINGS.iter().any(|e| text.ends_with(e)) {
                continue;
            }
            let resolved = inner.config_dir.join(Path::new(&arg));
            if !resolved.exists() {
                return Err(PreflightError::MissingScript {
                    index,
                    written: inner.config.command[index].clone(),
                    resolved,
                    base: inner.config_dir.clone(),
                });
            }
        }
        match inner.program() {
            None => Ok(()),
            Some(Program::Path(resolved)) => process::check_program(&resolved).map_err(|problem| match problem {
                ProgramProblem::Missing => {
                    PreflightError::Missing { written, resolved, base: inner.config_dir.clone() }
                }
                ProgramProblem::NotAFile => PreflightError::NotAFile { written, resolved },
                ProgramProblem::NotExecutable => PreflightError::NotExecutable { written, resolved },
            }),
            Some(Program::Bare(name)) => match process::find_in_path(&name, inner.path_var().as_deref()) {
                Some(_) => Ok(()),
                None => Err(PreflightError::NotInPath {
                    name: name.to_string_lossy().into_owned(),
                    path: inner.path_var().map(|p| p.to_string_lossy().into_owned()).unwrap_or_else(|| "unset".into()),
                }),
            },
        }
    }
}

impl Executor for LocalExecutor {
    fn kind(&self) -> &'static str {
        "local"
    }

    /// `local: /abs/prog arg {lr} …`: the program resolved to an absolute path, `{config_dir}`
    /// substituted, per-trial placeholders as written; arguments with spaces or quotes are quoted.
    fn describe(&self) -> String {
        let inner = &self.inner;
        let mut words = Vec::with_capacity(inner.template.len());
        words.push(match inner.program() {
            Some(Program::Path(p)) => p.to_string_lossy().into_owned(),
            Some(Program::Bare(name)) => process::find_in_path(&name, inner.path_var().as_deref())
                .map(|p| p.to_string_lossy().into_owned())
                .unwrap_or_else(|| name.to_string_lossy().into_owned()),
            None => inner.template.describe_arg(0, &inner.config_dir),
        });
        for i in 1..inner.template.len() {
            words.push(match inner.script_arg(i, None) {
                Some(abs) => abs.to_string_lossy().into_owned(),
                None => inner.template.describe_arg(i, &inner.config_dir),
            });
        }
        let words: Vec<String> = words.iter().map(|w| quote(w)).collect();
        format!("local: {}", words.join(" "))
    }

    fn jobs_outlive_host(&self) -> bool {
        false
    }

    fn preflight(&self) -> Result<(), ExecutorError> {
        LocalExecutor::preflight(self).map_err(|e| ExecutorError::Fatal(e.to_string()))
    }

    fn submit(&self, batch: Vec<TrialSpec>) -> BoxFuture<Result<Vec<Result<JobHandle, ExecutorError>>, ExecutorError>> {
        let inner = self.inner.clone();
        // The trials are spawned when this future is polled, on the runtime worker thread that
        // polls it (see `process` for why that matters).
        Box::pin(async move { Ok(batch.iter().map(|trial| inner.start(trial)).collect()) })
    }

    fn wait(
        &self,
        trial: TrialSpec,
        job: JobHandle,
        metrics: MetricsSink,
    ) -> BoxFuture<Result<RunReport, ExecutorError>> {
        let inner = self.inner.clone();
        Box::pin(async move { inner.wait(trial, job, metrics).await })
    }

    fn cancel(&self, jobs: Vec<JobHandle>) -> BoxFuture<Result<(), ExecutorError>> {
        let inner = self.inner.clone();
        Box::pin(async move {
            let found: Vec<Job> = {
                let running = inner.jobs();
                jobs.iter().filter_map(|h| running.get(&h.id).cloned()).collect()
            };
            // All at once, so a batch takes one grace period, not one per trial.
            let mut stopping = tokio::task::JoinSet::new();
            for mut job in found {
                job.cancelled.store(true, Ordering::SeqCst);
                let grace = inner.kill_grace;
                // The trial's `wait` reports how it ended.
                stopping.spawn(async move { job.process.terminate(grace).await });
            }
            while stopping.join_next().await.is_some() {}
            Ok(())
        })
    }
}

impl Inner {
    fn jobs(&self) -> std::sync::MutexGuard<'_, HashMap<String, Job>> {
        // A panic while holding the lock cannot leave the map half-updated (insert/remove only).
        self.jobs.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// `executor.command[0]` as far as it is known before a trial exists; `None` when it uses a
    /// per-trial placeholder.
    fn program(&self) -> Option<Program> {
        self.template.render_static(0, &self.config_dir).map(|p| self.resolve_program(p))
    }

    /// A relative program path (one with a `/`) is taken from the config directory; a bare name is
    /// left to PATH, as a shell would.
    fn resolve_program(&self, program: OsString) -> Program {
        let path = PathBuf::from(program);
        if path.is_absolute() {
            return Program::Path(path);
        }
        if path.components().count() < 2 {
            return Program::Bare(path.into_os_string());
        }
        let joined = self.config_dir.join(&path);
        Program::Path(std::path::absolute(&joined).unwrap_or(joined))
    }

    /// The PATH a bare program name is looked up in: `executor.env.PATH` when it is set (and
    /// fixed), else the host's.
    fn path_var(&self) -> Option<OsString> {
        if self.config.env.contains_key("PATH") {
            return self.env.render_static("PATH", &self.config_dir);
        }
        std::env::var_os("PATH")
    }

    /// The program runs in the trial directory, so `["python3", "train.py"]` would not find a
    /// `train.py` that sits next to the configuration. A literal argument (no placeholder, not an
    /// option) that is a relative path naming an existing file in the config directory (and not in
    /// the trial directory, when there is one) is therefore passed as that file's absolute path.
    fn script_arg(&self, i: usize, trial_dir: Option<&Path>) -> Option<PathBuf> {
        self.config.workdir.as_ref()?;
        let lit = self.template.literal(i)?;
        let path = Path::new(lit);
        if lit.is_empty() || lit.starts_with('-') || lit.contains('=') || !path.is_relative() {
            return None;
        }
        if trial_dir.is_some_and(|d| d.join(path).exists()) {
            return None;
        }
        let candidate = self.config_dir.join(path);
        if candidate.is_file() { std::path::absolute(&candidate).ok() } else { None }
    }

    fn start(&self, trial: &TrialSpec) -> Result<JobHandle, ExecutorError> {
        let fail = |message: String| ExecutorError::Submit { trial: trial.id, message };
        if trial.slot >= self.parallel {
            // A campaign bug, but one that would put two trials on one GPU: refuse it.
            return Err(fail(format!(
                "slot {} is outside 0..{} (parallel = {})",
                trial.slot, self.parallel, self.parallel
            )));
        }
        let dir = std::path::absolute(&trial.dir)
            .map_err(|e| fail(format!("cannot resolve trial directory {}: {e}", trial.dir.display())))?;
        prepare_dir(&dir, self.config.rerun).map_err(fail)?;
        let params_path = protocol::write_params(&dir, &trial.params_json).map_err(|e| fail(e.to_string()))?;
        // Trial directories are siblings (`<study>/trials/<id>`).
        let parent_dir = trial.parent.and_then(|p| Some(dir.parent()?.join(format!("{p:06}"))));

        let vars = Vars {
            params: &trial.params,
            trial_dir: &dir,
            trial_id: trial.id,
            attempt: trial.attempt,
            slot: trial.slot,
            params_path: &params_path,
            config_dir: &self.config_dir,
            parent_dir: parent_dir.as_deref(),
        };
        let mut argv = self.template.render(&vars).map_err(|e| fail(e.to_string()))?;
        for (i, arg) in argv.iter_mut().enumerate().skip(1) {
            if let Some(abs) = self.script_arg(i, Some(&dir)) {
                *arg = abs.into_os_string();
            }
        }
        let mut env: Vec<(OsString, OsString)> =
            self.env.render(&vars).map_err(|e| fail(e.to_string()))?.into_iter().map(|(k, v)| (k.into(), v)).collect();
        // After `executor.env`, so a config cannot hide the protocol's own variables.
        env.extend(protocol::env_vars(&vars).into_iter().map(|(k, v)| (k.into(), v)));

        let mut argv = argv.into_iter();
        let program = match self.resolve_program(argv.next().unwrap_or_default()) {
            Program::Path(p) => p,
            Program::Bare(name) => PathBuf::from(name),
        };
        let log = |name: &str| {
            let path = dir.join(name);
            File::create(&path).map_err(|e| fail(format!("cannot create {}: {e}", path.display())))
        };
        let spawn = process::Spawn {
            program: program.clone(),
            args: argv.collect(),
            cwd: dir.clone(),
            env,
            stdout: log(STDOUT_FILE)?,
            stderr: log(STDERR_FILE)?,
        };
        let process = process::spawn(spawn).map_err(|e| fail(process::spawn_error(&program, &e)))?;
        let pid = process.pid();
        let id = pid.to_string();
        self.jobs().insert(id.clone(), Job { process, cancelled: Arc::new(AtomicBool::new(false)) });
        tracing::debug!(trial = trial.id, attempt = trial.attempt, slot = trial.slot, pid, dir = %dir.display(), "local trial started");
        Ok(JobHandle { id, data: serde_json::json!({ "pgid": pid }) })
    }

    async fn wait(&self, trial: TrialSpec, handle: JobHandle, sink: MetricsSink) -> Result<RunReport, ExecutorError> {
        let Some(job) = self.jobs().get(&handle.id).cloned() else {
            return Err(ExecutorError::Lost {
                job: handle.id,
                message: "this host process did not start it (local trials do not survive a host restart); \
                          the trial must be re-run"
                    .into(),
            });
        };
        let dir = std::path::absolute(&trial.dir).unwrap_or_else(|_| trial.dir.clone());
        let mut follower = Follower::new(&dir, trial.id, sink);
        let mut process = job.process.clone();
        let deadline = self.config.timeout.map(|limit| (limit, process.started() + limit));
        let mut ticks = tokio::time::interval(self.metrics_poll);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);

        let mut timed_out = None;
        let exit = loop {
            tokio::select! {
                biased;
                exit = process.wait() => break exit,
                _ = sleep_until(deadline.map(|(_, at)| at)) => {
                    let limit = deadline.map(|(limit, _)| limit).unwrap_or_default();
                    timed_out = Some(limit);
                    tracing::warn!(trial = trial.id, pid = process.pid(), "trial timed out after {} s; stopping it", limit.as_secs_f64());
                    break process.terminate(self.kill_grace).await;
                }
                _ = ticks.tick() => follower.poll(false).await,
            }
        };
        follower.poll(true).await;
        self.jobs().remove(&handle.id);

        let failure = classify(&exit, timed_out, job.cancelled.load(Ordering::SeqCst));
        tokio::task::spawn_blocking(move || protocol::read_report(&dir, failure)).await.map_err(|e| {
            ExecutorError::Lost { job: handle.id, message: format!("reading the trial's results failed: {e}") }
        })
    }
}

async fn sleep_until(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// Sends a running trial's new `metrics.jsonl` lines to the sink.
struct Follower {
    /// `None` once reading it went wrong in a way that will not get better (a panic).
    reader: Option<MetricsFileReader>,
    trial: u64,
    sink: MetricsSink,
    warned: bool,
}

impl Follower {
    fn new(dir: &Path, trial: u64, sink: MetricsSink) -> Follower {
        Follower { reader: Some(MetricsFileReader::new(dir)), trial, sink, warned: false }
    }

    /// `last`: the program has ended, so an unterminated last line is complete too.
    async fn poll(&mut self, last: bool) {
        let Some(mut reader) = self.reader.take() else { return };
        // Off the runtime threads: a trial directory may be on a network file system.
        let done = tokio::task::spawn_blocking(move || {
            let lines = if last { reader.finish() } else { reader.poll() };
            (reader, lines)
        })
        .await;
        let Ok((reader, lines)) = done else { return };
        self.reader = Some(reader);
        match lines {
            Ok(lines) => {
                for (index, metrics) in lines {
                    // A closed sink means nobody listens any more; the report still has the curve.
                    let _ = self.sink.send(MetricsLine { trial: self.trial, index, metrics });
                }
            }
            Err(e) if !self.warned => {
                self.warned = true;
                tracing::warn!(trial = self.trial, "cannot follow the trial's metrics: {e}");
            }
            Err(_) => {}
        }
    }
}

/// How the process ended, as a failure with its cause (see the module documentation).
fn classify(exit: &ExitResult, timed_out: Option<Duration>, cancelled: bool) -> Option<Failure> {
    let (reason, cause) = match (exit, timed_out) {
        (_, Some(limit)) => (format!("timed out after {} s", limit.as_secs_f64()), FailureCause::Trial),
        (Err(e), None) => (format!("lost the process: {e}"), FailureCause::System),
        (Ok(status), None) => {
            use std::os::unix::process::ExitStatusExt;
            let reason = process::describe_exit(*status)?;
            match (status.code(), status.signal()) {
                (Some(EX_TEMPFAIL), _) => {
                    (format!("{reason} (EX_TEMPFAIL: it stopped and asks to be resumed)"), FailureCause::System)
                }
                (_, Some(libc::SIGKILL | libc::SIGTERM)) => (reason, FailureCause::System),
                _ => (reason, FailureCause::Trial),
            }
        }
    };
    Some(if cancelled {
        Failure { reason: format!("cancelled ({reason})"), cause: FailureCause::Cancelled }
    } else {
        Failure { reason, cause }
    })
}

/// Makes the trial directory ready for a new attempt; see "Re-runs" in the module documentation.
fn prepare_dir(dir: &Path, rerun: Rerun) -> Result<(), String> {
    match fs::symlink_metadata(dir) {
        Err(_) => {}
        Ok(meta) if rerun == Rerun::Resume && meta.is_dir() => return keep_earlier_logs(dir),
        Ok(_) => move_aside(dir)?,
    }
    fs::create_dir_all(dir).map_err(|e| format!("cannot create trial directory {}: {e}", dir.display()))
}

/// `rerun = "fresh"`: the earlier attempt's directory becomes `<dir>.attempt-N`.
fn move_aside(dir: &Path) -> Result<(), String> {
    let name = dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "trial".into());
    let aside = (1..)
        .map(|n| dir.with_file_name(format!("{name}.attempt-{n}")))
        .find(|candidate| fs::symlink_metadata(candidate).is_err())
        .unwrap_or_else(|| dir.with_file_name(format!("{name}.attempt-x")));
    fs::rename(dir, &aside)
        .map_err(|e| format!("cannot move the earlier attempt {} aside to {}: {e}", dir.display(), aside.display()))?;
    tracing::info!("kept the earlier attempt of {} as {}", dir.display(), aside.display());
    Ok(())
}

/// `rerun = "resume"`: the directory stays; its logs become `stdout.attempt-N.log` and
/// `stderr.attempt-N.log`, with N the first number free for both.
fn keep_earlier_logs(dir: &Path) -> Result<(), String> {
    let (stdout, stderr) = (dir.join(STDOUT_FILE), dir.join(STDERR_FILE));
    if !stdout.exists() && !stderr.exists() {
        return Ok(());
    }
    let names = |n: u32| (dir.join(format!("stdout.attempt-{n}.log")), dir.join(format!("stderr.attempt-{n}.log")));
    let (out_to, err_to) = (1..)
        .map(names)
        .find(|(o, e)| fs::symlink_metadata(o).is_err() && fs::symlink_metadata(e).is_err())
        .unwrap_or_else(|| names(u32::MAX));
    for (from, to) in [(stdout, out_to), (stderr, err_to)] {
        if fs::symlink_metadata(&from).is_ok() {
            fs::rename(&from, &to)
                .map_err(|e| format!("cannot keep the earlier log {} as {}: {e}", from.display(), to.display()))?;
        }
    }
    tracing::info!("re-running in {} (rerun = \"resume\"); the earlier attempt's logs are kept", dir.display());
    Ok(())
}

/// A word of `describe` as a person would paste it into a shell.
fn quote(word: &str) -> String {
    let plain = !word.is_empty()
        && word.chars().all(|c| c.is_ascii_alphanumeric() || "-_./=:,+@%{}".contains(c) || !c.is_ascii());
    if plain { word.to_string() } else { format!("'{}'", word.replace('\'', r"'\''")) }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::executor::protocol::{METRICS_FILE, PARAMS_FILE, TAIL_LINES};
    use crate::space::{Choice, Domain, Metrics, Param, Value};
    use serde_json::Value as Json;
    use std::ffi::OsStr;
    use std::os::unix::fs::PermissionsExt;

    pub(crate) fn space() -> SearchSpace {
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

    pub(crate) fn trial(dir: &Path, id: u64, label: &str) -> TrialSpec {
        let s = space();
        let params = s
            .validate(&[
                ("lr".into(), Value::Float(0.001)),
                ("epochs".into(), Value::Int(7)),
                ("label".into(), Value::Choice(label.into())),
            ])
            .unwrap();
        let params_json = params.to_json(&s);
        TrialSpec {
            id,
            attempt: 1,
            params,
            params_json,
            dir: dir.join(format!("trial-{id}")),
            job_name: crate::executor::job_name("test", id, 1),
            slot: 0,
            parent: None,
        }
    }

    fn sh(script: &str, extra: &[&str]) -> LocalConfig {
        // The script is literal text: its braces are escaped from the template syntax.
        let script = script.replace('{', "{{").replace('}', "}}");
        let mut command = vec!["/bin/sh".to_string(), "-c".into(), script, "sh".into()];
        command.extend(extra.iter().map(|s| s.to_string()));
        LocalConfig { command, ..Default::default() }
    }

    fn executor(config: LocalConfig) -> LocalExecutor {
        LocalExecutor::with_timing(config, &space(), 4, Duration::from_millis(300), Duration::from_millis(20)).unwrap()
    }

    async fn submit_one(ex: &LocalExecutor, t: &TrialSpec) -> Result<JobHandle, ExecutorError> {
        let mut jobs = ex.submit(vec![t.clone()]).await.expect("a local submit never fails as a whole");
        assert_eq!(jobs.len(), 1);
        jobs.remove(0)
    }

    fn sink() -> MetricsSink {
        tokio::sync::mpsc::unbounded_channel().0
    }

    async fn run_with(ex: &LocalExecutor, t: &TrialSpec) -> RunReport {
        let job = submit_one(ex, t).await.unwrap();
        ex.wait(t.clone(), job, sink()).await.unwrap()
    }

    async fn run(config: LocalConfig, t: &TrialSpec) -> RunReport {
        run_with(&executor(config), t).await
    }

    fn reason(report: &RunReport) -> Option<&str> {
        report.failure.as_ref().map(|f| f.reason.as_str())
    }

    fn cause(report: &RunReport) -> Option<FailureCause> {
        report.failure.as_ref().map(|f| f.cause)
    }

    fn m(pairs: &[(&str, f64)]) -> Metrics {
        pairs.iter().map(|(k, v)| (k.to_string(), *v)).collect()
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
        let script = r#"printf '%s\n' "$ALCF_TRIAL_DIR" "$ALCF_TRIAL_ID" "$ALCF_PARAMS" "$EXTRA" "$(pwd -P)" "$1" \
            "$ALCF_TRIAL_ATTEMPT" "$ALCF_TRIAL_SLOT" "$CUDA_VISIBLE_DEVICES" "$ZE_AFFINITY_MASK" "$2" > env.txt"#;
        let mut config = sh(script, &["{params}", "{slot}/{attempt}"]);
        config.env.insert("EXTRA".into(), "extra value".into());
        config.env.insert("CUDA_VISIBLE_DEVICES".into(), "{slot}".into());
        config.env.insert("ZE_AFFINITY_MASK".into(), "{slot}.0".into());
        // The protocol's own variables cannot be overridden by the config.
        config.env.insert("ALCF_TRIAL_SLOT".into(), "wrong".into());
        let mut t = trial(tmp.path(), 5, "plain");
        t.slot = 3;
        t.attempt = 2;
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
        assert_eq!(lines[6..], ["2", "3", "3", "3.0", "3/2"]);
    }

    #[test]
    fn an_unknown_env_placeholder_is_a_config_error() {
        let mut config = sh("true", &[]);
        config.env.insert("CUDA_VISIBLE_DEVICES".into(), "{gpu}".into());
        let err = LocalExecutor::new(config, &space(), 1).unwrap_err();
        assert!(
            matches!(&err, LocalConfigError::UnknownPlaceholder { at: Field::Env(k), .. } if k == "CUDA_VISIBLE_DEVICES")
        );
        assert!(err.to_string().contains("executor.env.CUDA_VISIBLE_DEVICES"), "{err}");
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
        assert_eq!(
            report.curve,
            vec![m(&[("epoch", 1.0), ("val_acc", 0.25), ("loss", 2.5)]), m(&[("epoch", 2.0), ("val_acc", 0.5)])]
        );
        assert_eq!(report.metrics, m(&[("epoch", 2.0), ("val_acc", 0.55), ("loss", 2.5), ("test_acc", 0.5)]));
        assert_eq!(report.non_numeric, [("model".to_string(), "\"resnet18\"".to_string())]);
    }

    #[tokio::test]
    async fn a_non_finite_objective_does_not_fall_back_to_the_curve() {
        let tmp = tempfile::tempdir().unwrap();
        let t = trial(tmp.path(), 12, "plain");
        for (written, shown) in [
            ("NaN", "NaN"),
            ("Infinity", "Infinity"),
            ("-Infinity", "-Infinity"),
            (r#""abc""#, r#""abc""#),
            ("null", "null"),
        ] {
            let script = format!(
                "printf '%s\\n' '{{\"loss\": 2.0, \"acc\": 0.1}}' '{{\"loss\": 1.0, \"acc\": 0.2}}' > metrics.jsonl
                 printf '{{\"loss\": {written}, \"acc\": 0.3}}' > result.json"
            );
            let report = run(sh(&script, &[]), &t).await;
            assert_eq!(report.failure, None, "{written}");
            assert_eq!(report.metrics, m(&[("acc", 0.3)]), "{written}: loss must not fall back to 1.0");
            assert_eq!(report.non_numeric, [("loss".to_string(), shown.to_string())]);
            assert_eq!(report.curve.len(), 2);
        }
    }

    #[tokio::test]
    async fn malformed_result_fails_the_trial() {
        let tmp = tempfile::tempdir().unwrap();
        let script = r#"echo '{"epoch":1,"acc":0.5}' > metrics.jsonl; printf '{"acc": 0.6,' > result.json; echo bye"#;
        let t = trial(tmp.path(), 3, "plain");
        let report = run(sh(script, &[]), &t).await;
        let failure = report.failure.clone().unwrap();
        assert!(failure.reason.contains("result.json") && failure.reason.contains("EOF"), "{}", failure.reason);
        assert_eq!(failure.cause, FailureCause::Trial);
        assert_eq!(report.metrics.get("acc"), Some(&0.5));
        assert_eq!(report.log_tail.as_deref(), Some("bye"));
    }

    #[tokio::test]
    async fn non_zero_exit_and_signals_are_described() {
        let tmp = tempfile::tempdir().unwrap();
        let t = trial(tmp.path(), 4, "plain");
        let report = run(sh("echo out; for i in $(seq 1 100); do echo err $i >&2; done; exit 3", &[]), &t).await;
        assert_eq!(reason(&report), Some("exited with status 3"));
        assert_eq!(cause(&report), Some(FailureCause::Trial));
        let tail = report.log_tail.unwrap();
        assert_eq!(tail.lines().count(), TAIL_LINES);
        assert!(tail.starts_with("err 61") && tail.ends_with("err 100"), "{tail}");

        let report = run(sh("echo only stdout; kill -9 $$", &[]), &t).await;
        assert_eq!(reason(&report), Some("killed by signal 9 (SIGKILL)"));
        assert_eq!(cause(&report), Some(FailureCause::System), "killed from outside: e.g. the OOM killer");
        assert_eq!(report.log_tail.as_deref(), Some("only stdout"));
    }

    #[tokio::test]
    async fn failure_causes() {
        let tmp = tempfile::tempdir().unwrap();
        let t = trial(tmp.path(), 10, "plain");
        let cases = [
            ("exit 75", "exited with status 75 (EX_TEMPFAIL: it stopped and asks to be resumed)", FailureCause::System),
            ("kill -TERM $$", "killed by signal 15 (SIGTERM)", FailureCause::System),
            ("kill -SEGV $$", "killed by signal 11 (SIGSEGV", FailureCause::Trial),
            ("exit 1", "exited with status 1", FailureCause::Trial),
        ];
        for (script, expected, expected_cause) in cases {
            let report = run(sh(script, &[]), &t).await;
            let failure = report.failure.unwrap();
            assert!(failure.reason.starts_with(expected), "{script}: {}", failure.reason);
            assert_eq!(failure.cause, expected_cause, "{script}");
        }
        let report = run(sh("exit 0", &[]), &t).await;
        assert_eq!(report.failure, None);
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
        assert_eq!(reason(&report), Some("timed out after 0.4 s"));
        assert_eq!(cause(&report), Some(FailureCause::Trial), "our timeout is the trial's failure, not the system's");
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
        assert_eq!(reason(&report), Some("timed out after 0.4 s"));
        assert_eq!(cause(&report), Some(FailureCause::Trial));
    }

    #[tokio::test]
    async fn cancel_stops_a_running_trial() {
        let tmp = tempfile::tempdir().unwrap();
        let (t, mut t2) = (trial(tmp.path(), 7, "plain"), trial(tmp.path(), 17, "plain"));
        t2.slot = 1;
        let ex = LocalExecutor::new(sh("sleep 30", &[]), &space(), 2).unwrap();
        let jobs = ex.submit(vec![t.clone(), t2.clone()]).await.unwrap();
        let jobs: Vec<JobHandle> = jobs.into_iter().map(Result::unwrap).collect();
        assert_eq!(ex.running(), 2);
        assert_eq!(jobs[0].data, serde_json::json!({ "pgid": jobs[0].id.parse::<u32>().unwrap() }));
        let waiters: Vec<_> = [(&t, &jobs[0]), (&t2, &jobs[1])]
            .into_iter()
            .map(|(t, job)| {
                let (ex, t, job) = (ex.clone(), t.clone(), job.clone());
                tokio::spawn(async move { ex.wait(t, job, sink()).await })
            })
            .collect();
        let started = std::time::Instant::now();
        ex.cancel(jobs.clone()).await.unwrap();
        assert!(started.elapsed() < Duration::from_secs(4), "both stopped within one grace period");
        for waiter in waiters {
            let report = waiter.await.unwrap().unwrap();
            assert_eq!(reason(&report), Some("cancelled (killed by signal 15 (SIGTERM))"));
            assert_eq!(cause(&report), Some(FailureCause::Cancelled));
        }
        assert_eq!(ex.running(), 0);
        ex.cancel(jobs.clone()).await.unwrap();
        assert!(matches!(ex.wait(t.clone(), jobs[0].clone(), sink()).await, Err(ExecutorError::Lost { .. })));
        assert!(matches!(ex.wait(t, JobHandle::new("999999"), sink()).await, Err(ExecutorError::Lost { .. })));
    }

    #[tokio::test]
    async fn a_batch_reports_each_trial_on_its_own() {
        let tmp = tempfile::tempdir().unwrap();
        let ex = executor(sh("echo ok", &[]));
        let good = trial(tmp.path(), 20, "plain");
        let mut bad = trial(tmp.path(), 21, "plain");
        bad.slot = 4; // parallel is 4 in `executor`
        let jobs = ex.submit(vec![good.clone(), bad]).await.unwrap();
        assert_eq!(jobs.len(), 2);
        let err = jobs[1].as_ref().unwrap_err().to_string();
        assert!(err.contains("trial 21") && err.contains("slot 4"), "{err}");
        let report = ex.wait(good, jobs[0].clone().unwrap(), sink()).await.unwrap();
        assert_eq!(report.failure, None);
    }

    #[tokio::test]
    async fn metrics_are_streamed_while_the_trial_runs() {
        let tmp = tempfile::tempdir().unwrap();
        let t = trial(tmp.path(), 11, "plain");
        // The second line is written only once the test has seen the first one and says `go`, so
        // the first one can only have come while the program was running. The last line has no
        // newline: it arrives when the program has ended.
        let script = r#"
            echo '{"epoch": 1, "acc": 0.1}' >> metrics.jsonl
            printf '{"epoch": 2,' >> metrics.jsonl
            while [ ! -e go ]; do sleep 0.01; done
            echo ' "acc": 0.2}' >> metrics.jsonl
            printf '{"epoch": 3, "acc": 0.3}' >> metrics.jsonl"#;
        let ex = executor(sh(script, &[]));
        let job = submit_one(&ex, &t).await.unwrap();
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let waiter = tokio::spawn({
            let (ex, t, job) = (ex.clone(), t.clone(), job.clone());
            async move { ex.wait(t, job, tx).await }
        });
        let first = tokio::time::timeout(Duration::from_secs(10), rx.recv()).await.unwrap().unwrap();
        assert_eq!(first, MetricsLine { trial: 11, index: 0, metrics: m(&[("epoch", 1.0), ("acc", 0.1)]) });
        // The partial second line is not sent while it is incomplete.
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(rx.try_recv().is_err());
        assert_eq!(ex.running(), 1, "still running");
        fs::write(t.dir.join("go"), "").unwrap();
        let report = waiter.await.unwrap().unwrap();
        assert_eq!(report.failure, None);
        let rest: Vec<MetricsLine> = std::iter::from_fn(|| rx.try_recv().ok()).collect();
        assert_eq!(
            rest,
            [
                MetricsLine { trial: 11, index: 1, metrics: m(&[("epoch", 2.0), ("acc", 0.2)]) },
                MetricsLine { trial: 11, index: 2, metrics: m(&[("epoch", 3.0), ("acc", 0.3)]) },
            ]
        );
        assert_eq!(report.curve.len(), 3);
        assert_eq!(report.metrics, m(&[("epoch", 3.0), ("acc", 0.3)]));
        assert!(t.dir.join(METRICS_FILE).exists());
    }

    #[tokio::test]
    async fn a_program_that_cannot_start_names_itself() {
        let tmp = tempfile::tempdir().unwrap();
        let t = trial(tmp.path(), 8, "plain");
        let config = LocalConfig { command: vec!["/nonexistent/train".into(), "{lr}".into()], ..Default::default() };
        let ex = executor(config);
        let err = submit_one(&ex, &t).await.unwrap_err().to_string();
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
        let ex = executor(config);
        let err = submit_one(&ex, &t).await.unwrap_err().to_string();
        assert!(err.contains("not executable") && err.contains("executor.command"), "{err}");

        // Once executable, the relative path resolves against workdir, not the trial directory.
        fs::set_permissions(&script, fs::Permissions::from_mode(0o755)).unwrap();
        assert_eq!(run_with(&ex, &t).await.failure, None);
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
        let ex = executor(config);
        assert_eq!(run_with(&ex, &t).await.failure, None);
        let ran = fs::read_to_string(t.dir.join("ran.txt")).unwrap();
        let abs = std::path::absolute(&script).unwrap();
        assert_eq!(ran, format!("{}\nbin/nothing.sh\n--flag=bin/train.sh\n0.001\n", abs.display()));
    }

    #[test]
    fn preflight_finds_programs_that_cannot_run() {
        let tmp = tempfile::tempdir().unwrap();
        let cfg = |command: &[&str]| LocalConfig {
            command: command.iter().map(|s| s.to_string()).collect(),
            workdir: Some(tmp.path().into()),
            ..Default::default()
        };
        let check = |command: &[&str]| LocalExecutor::new(cfg(command), &space(), 1).unwrap().preflight();

        // `{config_dir}/train.py` that is not there: the message names the field, the resolved path and the fix.
        let err = check(&["{config_dir}/train.py", "{lr}"]).unwrap_err();
        let resolved = tmp.path().join("train.py");
        assert_eq!(
            err,
            PreflightError::Missing {
                written: "{config_dir}/train.py".into(),
                resolved: resolved.clone(),
                base: tmp.path().into()
            }
        );
        let msg = err.to_string();
        assert!(msg.contains("executor.command[0]") && msg.contains(resolved.to_str().unwrap()), "{msg}");
        assert!(msg.contains("does not exist") && msg.contains("fix the path"), "{msg}");
        assert!(matches!(check(&["./missing.sh"]), Err(PreflightError::Missing { .. })));

        // Present but not executable.
        fs::write(&resolved, "print('hi')\n").unwrap();
        let err = check(&["{config_dir}/train.py"]).unwrap_err();
        assert!(matches!(&err, PreflightError::NotExecutable { resolved: r, .. } if *r == resolved));
        let msg = err.to_string();
        assert!(msg.contains("chmod +x") && msg.contains("python3") && msg.contains("executor.command[0]"), "{msg}");
        assert!(matches!(check(&["train.py"]), Err(PreflightError::NotInPath { .. })), "a bare name is PATH's");

        // A directory.
        assert!(matches!(check(&["{config_dir}"]), Err(PreflightError::NotAFile { .. })));

        // The README's other pattern, an interpreter and its script: a missing script is named too.
        let err = check(&["sh", "{config_dir}/prepare.sh", "--lr", "{lr}"]).unwrap_err();
        assert!(matches!(&err, PreflightError::MissingScript { index: 1, .. }), "{err:?}");
        assert!(err.to_string().contains("executor.command[1]") && err.to_string().contains("prepare.sh"), "{err}");
        assert!(matches!(check(&["sh", "nothing.sh"]), Err(PreflightError::MissingScript { .. })));
        fs::write(tmp.path().join("prepare.sh"), "exit 0\n").unwrap();
        assert_eq!(check(&["sh", "prepare.sh", "--out=x.py"]), Ok(()), "options are not scripts");

        // A bare name that is not in PATH.
        let err = check(&["alcf-no-such-program-9f3c"]).unwrap_err();
        assert!(matches!(&err, PreflightError::NotInPath { name, .. } if name == "alcf-no-such-program-9f3c"));
        assert!(err.to_string().contains("PATH") && err.to_string().contains("executor.command[0]"), "{err}");
        let mut with_path = cfg(&["sh"]);
        with_path.env.insert("PATH".into(), tmp.path().join("nothing-here").to_string_lossy().into_owned());
        let err = LocalExecutor::new(with_path, &space(), 1).unwrap().preflight().unwrap_err();
        assert!(matches!(err, PreflightError::NotInPath { .. }), "executor.env.PATH is the one searched");

        // The good cases.
        fs::set_permissions(&resolved, fs::Permissions::from_mode(0o755)).unwrap();
        assert_eq!(check(&["{config_dir}/train.py"]), Ok(()));
        assert_eq!(check(&["./train.py"]), Ok(()));
        assert_eq!(check(&["/bin/sh", "-c", "true"]), Ok(()));
        assert_eq!(check(&["sh", "-c", "true"]), Ok(()));
        assert_eq!(check(&["{trial_dir}/run.sh"]), Ok(()), "cannot be known before the trial");
        // Through the trait, as the campaign sees it.
        let ex: Arc<dyn Executor> = Arc::new(LocalExecutor::new(cfg(&["./nope"]), &space(), 1).unwrap());
        assert!(matches!(ex.preflight(), Err(ExecutorError::Fatal(m)) if m.contains("executor.command[0]")));
    }

    #[test]
    fn describe_shows_the_expanded_command() {
        let tmp = tempfile::tempdir().unwrap();
        let bin = tmp.path().join("bin");
        fs::create_dir(&bin).unwrap();
        fs::write(bin.join("train"), "").unwrap();
        fs::write(tmp.path().join("train.py"), "").unwrap();
        let config = LocalConfig {
            command: [
                "bin/train",
                "--params",
                "{params}",
                "--data",
                "{config_dir}/data",
                "--lr={lr}",
                "two words",
                "{{x}}",
            ]
            .map(String::from)
            .to_vec(),
            workdir: Some(tmp.path().into()),
            ..Default::default()
        };
        let ex = LocalExecutor::new(config, &space(), 1).unwrap();
        let root = tmp.path().display();
        assert_eq!(
            ex.describe(),
            format!("local: {root}/bin/train --params {{params}} --data {root}/data --lr={{lr}} 'two words' {{{{x}}}}")
        );

        let config = LocalConfig {
            command: ["sh", "train.py", "{trial_dir}"].map(String::from).to_vec(),
            workdir: Some(tmp.path().into()),
            ..Default::default()
        };
        let ex = LocalExecutor::new(config, &space(), 1).unwrap();
        let sh = process::find_in_path(OsStr::new("sh"), std::env::var_os("PATH").as_deref()).unwrap();
        assert!(sh.is_absolute());
        assert_eq!(ex.describe(), format!("local: {} {root}/train.py {{trial_dir}}", sh.display()));
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

    #[tokio::test]
    async fn rerun_resume_continues_from_the_checkpoint() {
        let tmp = tempfile::tempdir().unwrap();
        // Attempt 1 checkpoints and stops as a preempted trainer does (exit 75); attempt 2 finds the
        // checkpoint in the same directory and finishes from it.
        let script = r#"
            if [ -e checkpoint ]; then
                echo "attempt $ALCF_TRIAL_ATTEMPT resumes from $(cat checkpoint)"
                echo '{"epoch": 2, "acc": 0.6}' >> metrics.jsonl
                echo '{"acc": 0.6}' > result.json
            else
                echo "attempt $ALCF_TRIAL_ATTEMPT starts"; echo "oops" >&2
                echo '{"epoch": 1, "acc": 0.3}' >> metrics.jsonl
                echo epoch-1 > checkpoint
                exit 75
            fi"#;
        let mut config = sh(script, &[]);
        config.rerun = Rerun::Resume;
        let ex = executor(config);
        let mut t = trial(tmp.path(), 13, "plain");
        let report = run_with(&ex, &t).await;
        assert_eq!(cause(&report), Some(FailureCause::System));
        assert!(reason(&report).unwrap().contains("75"));

        t.attempt = 2;
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let job = submit_one(&ex, &t).await.unwrap();
        let report = ex.wait(t.clone(), job, tx).await.unwrap();
        assert_eq!(report.failure, None);
        assert_eq!(report.metrics, m(&[("epoch", 2.0), ("acc", 0.6)]));
        assert_eq!(report.curve, [m(&[("epoch", 1.0), ("acc", 0.3)]), m(&[("epoch", 2.0), ("acc", 0.6)])]);
        assert_eq!(std::iter::from_fn(|| rx.try_recv().ok()).count(), 2, "the whole curve of the trial");

        let read = |name: &str| fs::read_to_string(t.dir.join(name)).unwrap();
        assert_eq!(read("stdout.log"), "attempt 2 resumes from epoch-1\n");
        assert_eq!(read("stdout.attempt-1.log"), "attempt 1 starts\n");
        assert_eq!(read("stderr.attempt-1.log"), "oops\n");
        assert_eq!(read("stderr.log"), "");
        assert!(t.dir.join(PARAMS_FILE).exists());
        assert!(!tmp.path().join("trial-13.attempt-1").exists(), "the directory was not moved aside");

        // A third run keeps both earlier logs.
        t.attempt = 3;
        assert_eq!(run_with(&ex, &t).await.failure, None);
        assert_eq!(read("stdout.attempt-2.log"), "attempt 2 resumes from epoch-1\n");
        assert_eq!(read("stdout.attempt-1.log"), "attempt 1 starts\n");
        assert_eq!(read("stdout.log"), "attempt 3 resumes from epoch-1\n");
    }

    #[test]
    fn describe_words_are_quoted_for_a_shell() {
        assert_eq!(quote("/a/b-c_d.e"), "/a/b-c_d.e");
        assert_eq!(quote("--lr={lr}"), "--lr={lr}");
        assert_eq!(quote("two words"), "'two words'");
        assert_eq!(quote("it's"), r"'it'\''s'");
        assert_eq!(quote(""), "''");
    }
}
