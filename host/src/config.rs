//! The study configuration file (TOML) and its validation.
//!
//! Every error names the file, the line and the field, and says what to change. Paths inside a
//! configuration are relative to the file that names them, so a config can be run from anywhere.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use crate::space::{Choice, Domain, InvalidAssignment, Param, SearchSpace};

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    /// `toml`'s message already names the line, column and field, with the offending text.
    #[error("{path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("{path}, line {line}: field `{field}`: {message}")]
    Invalid { path: PathBuf, line: usize, field: String, message: String },
    #[error("{0}")]
    Usage(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    #[default]
    Minimize,
    Maximize,
}

impl Direction {
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::Minimize => "minimize",
            Direction::Maximize => "maximize",
        }
    }

    pub fn parse(s: &str) -> Option<Direction> {
        match s {
            "minimize" => Some(Direction::Minimize),
            "maximize" => Some(Direction::Maximize),
            _ => None,
        }
    }

    /// Whether `a` is strictly better than `b`.
    pub fn better(self, a: f64, b: f64) -> bool {
        match self {
            Direction::Minimize => a < b,
            Direction::Maximize => a > b,
        }
    }
}

// ---- the file as written -------------------------------------------------------------------

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    #[serde(default)]
    study: FileStudy,
    strategy: Option<FileStrategy>,
    pruner: Option<Spanned<FilePruner>>,
    executor: Option<Spanned<FileExecutor>>,
    space: Option<toml::Table>,
    llm: Option<Spanned<FileLlm>>,
}

/// `[pruner]`: a second plugin that judges running trials while `[strategy]` proposes them.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FilePruner {
    plugin: String,
    options: Option<toml::Table>,
}

/// `[llm]`: the chat-completions service behind the `llm` capability, and its caps.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileLlm {
    base_url: Option<String>,
    jobs_url: Option<String>,
    model: Option<String>,
    models: Option<Vec<String>>,
    auth: Option<String>,
    max_calls: Option<u32>,
    max_tokens: Option<u64>,
    cold_wait: Option<Spanned<String>>,
    attempt_timeout_s: Option<Spanned<f64>>,
    max_retries: Option<u32>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct FileStudy {
    name: Option<String>,
    objective: Option<Spanned<String>>,
    direction: Option<Spanned<Direction>>,
    /// A multi-objective study: `[{ metric = "curve_auc", direction = "maximize" }, ...]`.
    objectives: Option<Spanned<Vec<Spanned<FileObjective>>>>,
    /// The hypervolume's reference point, one value per objective (in the objectives' units).
    hypervolume_reference: Option<Spanned<Vec<f64>>>,
    trials: Option<u32>,
    max_time: Option<Spanned<String>>,
    parallel: Option<Spanned<u32>>,
    seed: Option<u64>,
    space: Option<Spanned<String>>,
    root: Option<String>,
    retries: Option<u32>,
    enqueue: Option<Vec<Spanned<toml::Table>>>,
}

/// One entry of `[study] objectives`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileObjective {
    metric: String,
    direction: Option<Direction>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileStrategy {
    plugin: Option<String>,
    allow: Option<Spanned<Vec<String>>>,
    memory_mib: Option<Spanned<u64>>,
    suggest_timeout_s: Option<Spanned<f64>>,
    max_restarts: Option<u32>,
    options: Option<toml::Table>,
}

#[derive(Debug, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase", deny_unknown_fields)]
enum FileExecutor {
    Bench {
        function: String,
        dim: Option<usize>,
        /// Simulated trial duration in seconds, for testing parallelism and resume (per epoch
        /// with `epochs`).
        delay_s: Option<f64>,
        /// Simulated learning curves: each trial reports this many epochs.
        epochs: Option<u32>,
    },
    Local {
        command: Vec<String>,
        timeout_s: Option<f64>,
        #[serde(default)]
        env: BTreeMap<String, String>,
        #[serde(default)]
        rerun: Rerun,
    },
    Pbs(Box<FilePbs>),
    Globus(Box<FileGlobus>),
}

/// `kind = "globus"`: see docs/config.md and docs/globus.md.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileGlobus {
    endpoint: String,
    remote_dir: String,
    code_dir: Option<String>,
    command: Vec<String>,
    #[serde(default)]
    env: BTreeMap<String, String>,
    #[serde(default)]
    setup: Vec<String>,
    timeout_s: Option<f64>,
    #[serde(default)]
    rerun: Rerun,
    poll_interval_s: Option<f64>,
    base_url: Option<String>,
    max_requests: Option<u32>,
    rate_window_s: Option<f64>,
    log_tail_lines: Option<u32>,
}

/// `kind = "pbs"`: see docs/config.md and docs/aurora.md.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FilePbs {
    host: String,
    control_path: Option<String>,
    remote_dir: String,
    python: Option<String>,
    pbs_bin: Option<String>,
    command: Vec<String>,
    #[serde(default)]
    env: BTreeMap<String, String>,
    #[serde(default)]
    stage: Vec<String>,
    #[serde(default)]
    rerun: Rerun,
    timeout_s: Option<f64>,
    #[serde(default)]
    placement: Placement,
    account: Option<String>,
    queue: Option<String>,
    select: Option<String>,
    walltime: Option<String>,
    filesystems: Option<String>,
    place: Option<String>,
    #[serde(default)]
    setup: Vec<String>,
    template: Option<String>,
    slots_per_node: Option<u32>,
    affinity_var: Option<String>,
    cpu_lists: Option<Vec<String>>,
    poll_interval_s: Option<f64>,
    max_jobs: Option<u32>,
    trial_estimate: Option<String>,
    pilot_idle: Option<String>,
    pilot_margin: Option<String>,
    max_requeues: Option<u32>,
}

// ---- the validated configuration ------------------------------------------------------------

/// Sophia's OpenAI-compatible vLLM route (../shared/reference/alcf.md).
pub const SOPHIA_BASE_URL: &str = "https://inference-api.alcf.anl.gov/resource_server/sophia/vllm/v1";
/// The seed project's model.
pub const DEFAULT_LLM_MODEL: &str = "meta-llama/Llama-3.3-70B-Instruct";

/// How the host authenticates to the LLM service.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LlmAuth {
    /// A Globus access token for Sophia (`alcf-host auth login`, ALCF's tokens.json, or
    /// `ALCF_HOST_SOPHIA_TOKEN`).
    Globus,
    /// No Authorization header (a vLLM server of your own, e.g. through an SSH tunnel).
    None,
}

/// `[llm]`, validated. The caps hold per plugin and per study, across resumes.
#[derive(Debug, Clone, PartialEq)]
pub struct LlmConfig {
    /// Ends in `/v1`; requests go to `{base_url}/chat/completions`.
    pub base_url: String,
    /// The cluster's jobs route (model states while a model is cold); derived from Sophia's URL layout.
    pub jobs_url: Option<String>,
    /// The model a request without one gets.
    pub model: String,
    /// Models a plugin may ask for (the default model is always among them).
    pub models: Vec<String>,
    pub auth: LlmAuth,
    /// Calls sent to the service per plugin per study (replayed answers are free).
    pub max_calls: u32,
    /// Prompt plus completion tokens per plugin per study.
    pub max_tokens: u64,
    /// Total time one call keeps retrying a cold model (408), a pending answer (202) or maintenance (503).
    pub cold_wait: Duration,
    /// One HTTP attempt; the gateway itself waits 300 s for a cold model before its 408.
    pub attempt_timeout: Duration,
    /// Retries of rate limits (429), server errors, dropped connections and cut-off answers.
    pub max_retries: u32,
    /// Where `[llm]` is written, for errors that point at it.
    pub at: String,
}

impl Default for LlmConfig {
    fn default() -> Self {
        LlmConfig {
            base_url: SOPHIA_BASE_URL.into(),
            jobs_url: jobs_url_for(SOPHIA_BASE_URL),
            model: DEFAULT_LLM_MODEL.into(),
            models: vec![DEFAULT_LLM_MODEL.into()],
            auth: LlmAuth::Globus,
            max_calls: 200,
            max_tokens: 2_000_000,
            cold_wait: Duration::from_secs(20 * 60),
            attempt_timeout: Duration::from_secs(330),
            max_retries: 6,
            at: "[llm]".into(),
        }
    }
}

impl LlmConfig {
    /// How long one capability call may take in all: every retry and wait included, plus slack.
    pub fn call_timeout(&self) -> Duration {
        self.cold_wait + self.attempt_timeout * (self.max_retries + 2)
    }
}

/// `…/resource_server/{cluster}/{framework}/v1` -> `…/resource_server/{cluster}/jobs`.
pub fn jobs_url_for(base_url: &str) -> Option<String> {
    let trimmed = base_url.trim_end_matches('/');
    let (head, cluster_and_rest) = trimmed.split_once("/resource_server/")?;
    let parts: Vec<&str> = cluster_and_rest.split('/').collect();
    match parts.as_slice() {
        [cluster, _framework, "v1"] => Some(format!("{head}/resource_server/{cluster}/jobs")),
        _ => None,
    }
}

/// Capabilities a plugin may be granted.
pub const CAPABILITIES: [&str; 4] = ["log", "storage", "llm", "jobs"];

#[derive(Debug, Clone)]
pub struct StrategyConfig {
    pub plugin: Option<PathBuf>,
    pub allow: Vec<String>,
    pub memory_bytes: u64,
    pub suggest_timeout: Duration,
    pub max_restarts: u32,
    /// Plugin options as a JSON object.
    pub options: serde_json::Value,
}

impl Default for StrategyConfig {
    fn default() -> Self {
        StrategyConfig {
            plugin: None,
            allow: vec!["log".into(), "storage".into()],
            memory_bytes: 512 << 20,
            suggest_timeout: Duration::from_secs(30),
            max_restarts: 3,
            options: serde_json::json!({}),
        }
    }
}

/// `[pruner]`: the plugin that decides which running trials stop early (its `judge`), beside the
/// strategy that proposes them. It runs under `[strategy]`'s limits, with the `log` grant only.
#[derive(Debug, Clone, PartialEq)]
pub struct PrunerConfig {
    pub plugin: PathBuf,
    /// Plugin options as a JSON object.
    pub options: serde_json::Value,
}

#[derive(Debug, Clone, PartialEq)]
pub enum ExecutorConfig {
    Bench { function: String, dim: Option<usize>, delay: Option<Duration>, epochs: Option<u32> },
    Local(LocalConfig),
    Pbs(Box<PbsExecutorConfig>),
    Globus(Box<GlobusExecutorConfig>),
}

/// Globus Compute's web service.
pub const GLOBUS_COMPUTE_URL: &str = "https://compute.api.globus.org";

/// The `[executor]` section for `kind = "globus"`: trials as Globus Compute tasks on the user's
/// endpoint (on an Aurora login node, which submits PBS jobs itself).
#[derive(Clone, Debug, PartialEq)]
pub struct GlobusExecutorConfig {
    /// The endpoint's UUID (`globus-compute-endpoint list`), lower-case.
    pub endpoint: String,
    /// The shared-file-system directory on the endpoint's side that holds one directory per study.
    pub remote_dir: String,
    /// What `{config_dir}` stands for on the endpoint: where the user put the training code.
    pub code_dir: String,
    /// As the local executor's; `{trial_dir}` and `{params}` are the trial's on the endpoint.
    pub command: Vec<String>,
    pub env: BTreeMap<String, String>,
    /// Shell lines run before the command, in the same shell (`module load frameworks`).
    pub setup: Vec<String>,
    /// Wall-clock limit per trial, enforced on the endpoint (exit status 124).
    pub timeout: Option<Duration>,
    pub rerun: Rerun,
    /// How often the endpoint and the tasks in flight are asked about (2 requests per cycle).
    pub poll_interval: Duration,
    /// The service's base URL; https, or http to a loopback address (tests).
    pub base_url: String,
    /// Requests per `rate_window`, at most, from this host (the service allows 20 per 10 s).
    pub max_requests: u32,
    pub rate_window: Duration,
    /// Lines of the trial's log returned with its result.
    pub log_tail_lines: u32,
}

/// How trials are placed on PBS jobs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Placement {
    /// A PBS job holds a node and runs up to `slots_per_node` trials at once, fed from a queue on
    /// the shared file system (the default: Aurora's queues allow 1 or 2 running jobs per user).
    #[default]
    Pilot,
    /// One PBS job per trial (the debug queue, multi-node trials).
    PerTrial,
}

/// The `[executor]` section for `kind = "pbs"`: trials as PBS jobs, through SSH or on a login node.
#[derive(Clone, Debug, PartialEq)]
pub struct PbsExecutorConfig {
    /// An SSH destination as in `~/.ssh/config` (`aurora`), or `local` when the host itself runs
    /// on a login node.
    pub host: String,
    /// The ControlMaster socket; `None`: `~/.ssh/alcf-host/<host>.sock`, what `alcf-host connect`
    /// opens.
    pub control_path: Option<PathBuf>,
    /// The shared-file-system directory that holds one directory per study.
    pub remote_dir: String,
    /// The remote Python 3.6+ that runs the agent and the pilot.
    pub python: String,
    /// A directory holding qsub/qstat/qdel, when they are not on the remote `PATH`.
    pub pbs_bin: String,
    /// As the local executor's: `{config_dir}` is the study's staged copy of the config
    /// directory on the remote side, `{trial_dir}` and `{params}` the remote trial's.
    pub command: Vec<String>,
    pub env: BTreeMap<String, String>,
    /// Files and directories, relative to the config directory, uploaded once per study (re-sent
    /// only when their content changes) to `<study>/files/`; one outside the config directory
    /// (`../trainer/python/alcf_train.py`) goes there under its own name.
    pub stage: Vec<String>,
    pub rerun: Rerun,
    pub timeout: Option<Duration>,
    pub placement: Placement,
    /// `#PBS` values, the template, slots, poll interval and job limit.
    pub pbs: crate::executor::pbs::PbsConfig,
    /// How long a trial is expected to take: a pilot never starts one that could not finish
    /// before its walltime.
    pub trial_estimate: Duration,
    /// A pilot with nothing to run for this long ends (and frees its node).
    pub pilot_idle: Duration,
    /// The end of a pilot's walltime kept free: no trial is started that would run into it.
    pub pilot_margin: Duration,
    /// How often a trial is put back in the queue after the pilot running it died.
    pub max_requeues: u32,
    /// Absolute directory of the configuration file.
    pub workdir: PathBuf,
}

/// The `[executor]` section for `kind = "local"`: each trial is a subprocess on this machine.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct LocalConfig {
    /// argv template, e.g. `["python3", "train.py", "--lr", "{lr}", "--out", "{trial_dir}"]`.
    /// Placeholders: any search-space parameter, `{trial_dir}` (absolute), `{trial_id}`, `{attempt}`,
    /// `{slot}`, `{config_dir}` (absolute directory of the study config) and `{params}` (absolute
    /// path of params.json); `{{` and `}}` are literal braces.
    pub command: Vec<String>,
    /// Wall-clock limit per trial, counted from its start.
    pub timeout: Option<Duration>,
    /// Extra environment for the trial program, on top of the host's own. Values may use the
    /// placeholders of `command` (`CUDA_VISIBLE_DEVICES = "{slot}"`).
    pub env: BTreeMap<String, String>,
    /// Absolute directory of the configuration file: the base for a relative program path such as
    /// `./train.sh` and the value of `{config_dir}`. `None` means the host's working directory.
    pub workdir: Option<PathBuf>,
    /// What a re-run attempt of a trial finds in its directory.
    pub rerun: Rerun,
}

/// What a re-run attempt of a trial (after a crash, a cancel or a lost job) finds in its directory.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Rerun {
    /// The earlier attempt's directory is moved aside (`000007.attempt-1`); the program starts clean.
    #[default]
    Fresh,
    /// The directory is kept as the earlier attempt left it (its logs are renamed
    /// `stdout.attempt-N.log`), so a program that continues from its own checkpoint there
    /// (`alcf-trainer train --resume`) picks up where it stopped.
    Resume,
}

#[derive(Debug, Clone)]
pub struct Config {
    /// The file this came from, if any.
    pub source: Option<PathBuf>,
    pub name: Option<String>,
    pub objective: Option<String>,
    pub direction: Option<Direction>,
    /// `[study] objectives`: every objective in order, the first also in `objective` and
    /// `direction`. Empty when the config names its objective with `objective`/`direction`; more
    /// than one entry makes the study multi-objective.
    pub objectives: Vec<(String, Direction)>,
    /// `[study] hypervolume_reference`: the reference point of a multi-objective study's
    /// hypervolume, one value per objective; `None`: the rule of `study show` (docs/config.md).
    pub hypervolume_reference: Option<Vec<f64>>,
    pub trials: Option<u32>,
    pub max_time: Option<Duration>,
    pub parallel: u32,
    pub seed: u64,
    pub root: Option<PathBuf>,
    pub space: Option<SearchSpace>,
    pub strategy: StrategyConfig,
    /// `[pruner]`: present only when the config has the section.
    pub pruner: Option<PrunerConfig>,
    pub executor: Option<ExecutorConfig>,
    /// `[llm]`: present only when the config has the section.
    pub llm: Option<LlmConfig>,
    /// How many times a trial that failed for a system reason (node lost, walltime, preempted) is
    /// run again (`[study] retries`, default 1). Failures of the trial program itself are final.
    pub retries: u32,
    /// `[[study.enqueue]]`: trials the user chose, to run first, as parameter name -> value. When
    /// the config has a search space they are validated against it at load and in their stored
    /// form ([`crate::space::Assignment::to_json`]); otherwise (a bench function's space) they are
    /// as written, to be checked with [`Config::check_enqueue`].
    pub enqueue: Vec<serde_json::Map<String, serde_json::Value>>,
    /// Where each `enqueue` entry was written, for errors found once the space is known.
    enqueue_at: Vec<EnqueueAt>,
}

/// The line of an `[[study.enqueue]]` entry and of each of its keys.
#[derive(Debug, Clone, Default)]
struct EnqueueAt {
    line: usize,
    keys: BTreeMap<String, usize>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            source: None,
            name: None,
            objective: None,
            direction: None,
            objectives: Vec::new(),
            hypervolume_reference: None,
            trials: None,
            max_time: None,
            parallel: 1,
            seed: 0,
            root: None,
            space: None,
            strategy: StrategyConfig::default(),
            pruner: None,
            executor: None,
            llm: None,
            retries: 1,
            enqueue: Vec::new(),
            enqueue_at: Vec::new(),
        }
    }
}

/// Checks and fills in `kind = "pbs"`; the PBS values themselves are checked by
/// [`PbsConfig::validate`](crate::executor::pbs::PbsConfig::validate) when the executor is built.
fn pbs_config(
    p: FilePbs,
    base: &Path,
    span: std::ops::Range<usize>,
    text: &str,
    path: &Path,
) -> Result<PbsExecutorConfig, ConfigError> {
    let lines = Lines(text);
    let invalid = |key: &str, message: String| {
        let line = key_line(text, span.clone(), key.trim_start_matches("executor."), &lines);
        ConfigError::Invalid { path: path.into(), line, field: key.to_string(), message }
    };
    if p.command.is_empty() {
        return Err(invalid("executor.command", "must name a program".into()));
    }
    if p.host.trim().is_empty() || p.host.starts_with('-') || p.host.contains(char::is_whitespace) {
        return Err(invalid(
            "executor.host",
            format!(
                "{:?} is not an SSH destination: give the host as in ~/.ssh/config (\"aurora\"), or \"local\" on a login node",
                p.host
            ),
        ));
    }
    if !p.remote_dir.starts_with('/') {
        return Err(invalid(
            "executor.remote_dir",
            format!(
                "{:?} must be an absolute path on the PBS machine, e.g. \"/lus/flare/projects/MyProject/me/alcf-host\"",
                p.remote_dir
            ),
        ));
    }
    for s in &p.stage {
        let rel = Path::new(s);
        let outside = rel.is_absolute() || rel.components().any(|c| matches!(c, std::path::Component::ParentDir));
        if s.is_empty() || (outside && rel.file_name().is_none()) {
            return Err(invalid(
                "executor.stage",
                format!(
                    "{s:?}: give a file or directory, relative to the config's directory (one outside it is staged under its own name)"
                ),
            ));
        }
    }
    let mut pbs = crate::executor::pbs::PbsConfig::default();
    let set = |target: &mut String, v: Option<String>| {
        if let Some(v) = v {
            *target = v;
        }
    };
    set(&mut pbs.account, p.account);
    set(&mut pbs.queue, p.queue);
    set(&mut pbs.select, p.select);
    set(&mut pbs.walltime, p.walltime);
    set(&mut pbs.filesystems, p.filesystems);
    set(&mut pbs.place, p.place);
    set(&mut pbs.affinity_var, p.affinity_var);
    pbs.setup = p.setup;
    pbs.template = p.template.map(|t| base.join(t));
    if let Some(n) = p.slots_per_node {
        pbs.slots_per_node = n;
        if p.cpu_lists.is_none() && n as usize != pbs.cpu_lists.len() {
            // Aurora's 12 lists fit only 12 slots; another machine names its own (or none).
            pbs.cpu_lists.clear();
        }
    }
    if let Some(c) = p.cpu_lists {
        pbs.cpu_lists = c;
    }
    if let Some(s) = p.poll_interval_s {
        if !(s.is_finite() && (1.0..=3600.0).contains(&s)) {
            return Err(invalid(
                "executor.poll_interval_s",
                "must be between 1 and 3600 seconds (30 or more on a shared scheduler)".into(),
            ));
        }
        pbs.poll_interval = Duration::from_secs_f64(s);
    }
    if let Some(m) = p.max_jobs {
        pbs.max_jobs = m;
    }
    let duration = |key: &str, v: Option<String>, default: Duration| match v {
        None => Ok(default),
        Some(t) => parse_duration(&t).map_err(|m| invalid(key, m)),
    };
    let trial_estimate = duration("executor.trial_estimate", p.trial_estimate, Duration::ZERO)?;
    let pilot_idle = duration("executor.pilot_idle", p.pilot_idle, Duration::from_secs(300))?;
    let pilot_margin = duration("executor.pilot_margin", p.pilot_margin, Duration::from_secs(60))?;
    let timeout = match p.timeout_s {
        Some(t) if !(t > 0.0 && t.is_finite()) => return Err(invalid("executor.timeout_s", "must be positive".into())),
        t => t.map(Duration::from_secs_f64),
    };
    let control_path = p.control_path.map(|c| expand_home(&c));
    Ok(PbsExecutorConfig {
        host: p.host,
        control_path,
        remote_dir: p.remote_dir.trim_end_matches('/').to_string(),
        python: p.python.unwrap_or_else(|| "python3".into()),
        pbs_bin: p.pbs_bin.unwrap_or_default(),
        command: p.command,
        env: p.env,
        stage: p.stage,
        rerun: p.rerun,
        timeout,
        placement: p.placement,
        pbs,
        trial_estimate,
        pilot_idle,
        pilot_margin,
        max_requeues: p.max_requeues.unwrap_or(2),
        workdir: base.to_path_buf(),
    })
}

/// Checks and fills in `kind = "globus"`.
fn globus_config(
    g: FileGlobus,
    span: std::ops::Range<usize>,
    text: &str,
    path: &Path,
) -> Result<GlobusExecutorConfig, ConfigError> {
    let lines = Lines(text);
    let invalid = |key: &str, message: String| {
        let line = key_line(text, span.clone(), key.trim_start_matches("executor."), &lines);
        ConfigError::Invalid { path: path.into(), line, field: key.to_string(), message }
    };
    if g.command.is_empty() || g.command[0].is_empty() {
        return Err(invalid("executor.command", "must name a program".into()));
    }
    let endpoint = g.endpoint.trim().to_ascii_lowercase();
    if !is_uuid(&endpoint) {
        return Err(invalid(
            "executor.endpoint",
            format!(
                "{:?} is not an endpoint id: give the UUID that `globus-compute-endpoint list` prints on Aurora",
                g.endpoint
            ),
        ));
    }
    let absolute = |key: &str, dir: &str| {
        if dir.starts_with('/') && !dir.contains(['\n', '\0']) {
            Ok(dir.trim_end_matches('/').to_string())
        } else {
            Err(invalid(
                key,
                format!(
                    "{dir:?} must be an absolute path on the endpoint's file system, e.g. \"/lus/flare/projects/MyProject/me/alcf-host\""
                ),
            ))
        }
    };
    let remote_dir = absolute("executor.remote_dir", &g.remote_dir)?;
    let code_dir = match &g.code_dir {
        Some(d) => absolute("executor.code_dir", d)?,
        None => remote_dir.clone(),
    };
    for (i, line) in g.setup.iter().enumerate() {
        if line.contains(['\n', '\r', '\0']) {
            return Err(invalid(
                "executor.setup",
                format!("entry {i} holds a line break or NUL: give one shell line per entry"),
            ));
        }
    }
    let timeout = match g.timeout_s {
        Some(t) if !(t > 0.0 && t.is_finite()) => return Err(invalid("executor.timeout_s", "must be positive".into())),
        t => t.map(Duration::from_secs_f64),
    };
    let poll_interval = match g.poll_interval_s {
        None => Duration::from_secs(15),
        Some(s) if s.is_finite() && (0.05..=3600.0).contains(&s) => Duration::from_secs_f64(s),
        Some(_) => {
            return Err(invalid(
                "executor.poll_interval_s",
                "must be between 0.05 and 3600 seconds (15 suits Globus Compute's 20 requests per 10 s)".into(),
            ));
        }
    };
    let base_url = g.base_url.unwrap_or_else(|| GLOBUS_COMPUTE_URL.to_string()).trim_end_matches('/').to_string();
    let loopback = ["http://127.0.0.1:", "http://127.0.0.1/", "http://localhost:", "http://[::1]:"];
    if !(base_url.starts_with("https://") || loopback.iter().any(|p| format!("{base_url}/").starts_with(p))) {
        return Err(invalid(
            "executor.base_url",
            format!(
                "{base_url:?}: give an https:// URL (plain http only to 127.0.0.1, for tests); the default is {GLOBUS_COMPUTE_URL}"
            ),
        ));
    }
    let max_requests = g.max_requests.unwrap_or(20);
    if max_requests == 0 {
        return Err(invalid("executor.max_requests", "must be at least 1 (the service allows 20 per 10 s)".into()));
    }
    let rate_window = match g.rate_window_s {
        None => Duration::from_secs(10),
        Some(s) if s.is_finite() && (0.1..=3600.0).contains(&s) => Duration::from_secs_f64(s),
        Some(_) => return Err(invalid("executor.rate_window_s", "must be between 0.1 and 3600 seconds".into())),
    };
    Ok(GlobusExecutorConfig {
        endpoint,
        remote_dir,
        code_dir,
        command: g.command,
        env: g.env,
        setup: g.setup,
        timeout,
        rerun: g.rerun,
        poll_interval,
        base_url,
        max_requests,
        rate_window,
        log_tail_lines: g.log_tail_lines.unwrap_or(50).clamp(1, 1000),
    })
}

/// A UUID in its 8-4-4-4-12 hex form.
pub fn is_uuid(s: &str) -> bool {
    let groups: Vec<&str> = s.split('-').collect();
    groups.len() == 5
        && groups.iter().zip([8, 4, 4, 4, 12]).all(|(g, n)| g.len() == n && g.chars().all(|c| c.is_ascii_hexdigit()))
}

/// `~/x` as the user's home; anything else as written.
pub fn expand_home(path: &str) -> PathBuf {
    match (path.strip_prefix("~/"), std::env::var_os("HOME")) {
        (Some(rest), Some(home)) => PathBuf::from(home).join(rest),
        _ => PathBuf::from(path),
    }
}

/// Maps byte offsets of a file to 1-based line numbers.
struct Lines<'a>(&'a str);

impl Lines<'_> {
    fn line(&self, offset: usize) -> usize {
        self.0[..offset.min(self.0.len())].bytes().filter(|b| *b == b'\n').count() + 1
    }
}

impl Config {
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read { path: path.into(), source })?;
        Config::parse(&text, path)
    }

    pub fn parse(text: &str, path: &Path) -> Result<Config, ConfigError> {
        let file: FileConfig =
            toml::from_str(text).map_err(|e| ConfigError::Parse { path: path.into(), message: e.to_string() })?;
        let lines = Lines(text);
        // Absolute, so `{config_dir}` of `--config study.toml` (a bare file name) is a real directory.
        let base = std::path::absolute(path)
            .ok()
            .and_then(|p| p.parent().map(Path::to_path_buf))
            .or_else(|| std::env::current_dir().ok())
            .unwrap_or_default();
        let invalid = |span: std::ops::Range<usize>, field: &str, message: String| ConfigError::Invalid {
            path: path.into(),
            line: lines.line(span.start),
            field: field.into(),
            message,
        };

        let mut config = Config { source: Some(path.into()), ..Config::default() };
        let s = file.study;
        config.name = s.name;
        config.objective = s.objective.as_ref().map(|o| o.get_ref().clone());
        config.direction = s.direction.as_ref().map(|d| *d.get_ref());
        if let Some(list) = s.objectives {
            let span = list.span();
            if let Some(key) = s.objective.as_ref().map(Spanned::span).or(s.direction.as_ref().map(Spanned::span)) {
                return Err(invalid(
                    key,
                    "study.objectives",
                    "give the objectives either as `objectives = [{ metric = \"...\", direction = \"...\" }, ...]` or as `objective` and `direction`, not both: remove `objective` and `direction`".into(),
                ));
            }
            let list = list.into_inner();
            if list.is_empty() {
                return Err(invalid(
                    span,
                    "study.objectives",
                    "is empty: list each objective, e.g. objectives = [{ metric = \"curve_auc\", direction = \"maximize\" }, { metric = \"train_seconds\", direction = \"minimize\" }]".into(),
                ));
            }
            for (i, entry) in list.into_iter().enumerate() {
                let at = entry.span();
                let o = entry.into_inner();
                let field = format!("study.objectives[{i}]");
                if o.metric.trim().is_empty() {
                    return Err(invalid(at, &format!("{field}.metric"), "must name a metric the trial writes".into()));
                }
                let Some(direction) = o.direction else {
                    return Err(invalid(
                        at,
                        &format!("{field}.direction"),
                        format!(
                            "is missing: say whether `{}` is to be maximized or minimized (direction = \"maximize\" or \"minimize\")",
                            o.metric
                        ),
                    ));
                };
                if config.objectives.iter().any(|(m, _)| *m == o.metric) {
                    return Err(invalid(at, &format!("{field}.metric"), format!("`{}` is listed twice", o.metric)));
                }
                config.objectives.push((o.metric, direction));
            }
            config.objective = Some(config.objectives[0].0.clone());
            config.direction = Some(config.objectives[0].1);
        }
        if let Some(r) = s.hypervolume_reference {
            let (span, r) = (r.span(), r.into_inner());
            let n = config.objectives.len();
            if n < 2 {
                return Err(invalid(
                    span,
                    "study.hypervolume_reference",
                    "is for multi-objective studies: list their objectives in `objectives = [...]`, or remove it"
                        .into(),
                ));
            }
            if r.len() != n {
                return Err(invalid(
                    span,
                    "study.hypervolume_reference",
                    format!(
                        "has {} value(s) but the study has {n} objectives ({}): give one per objective, in their order",
                        r.len(),
                        config.objectives.iter().map(|(m, _)| m.as_str()).collect::<Vec<_>>().join(", ")
                    ),
                ));
            }
            if r.iter().any(|v| !v.is_finite()) {
                return Err(invalid(span, "study.hypervolume_reference", "must be finite numbers".into()));
            }
            config.hypervolume_reference = Some(r);
        }
        config.trials = s.trials;
        config.seed = s.seed.unwrap_or(0);
        config.root = s.root.map(|r| base.join(r));
        config.retries = s.retries.unwrap_or(1);
        if let Some(p) = s.parallel {
            if *p.get_ref() == 0 {
                return Err(invalid(p.span(), "study.parallel", "must be at least 1".into()));
            }
            config.parallel = p.into_inner();
        }
        if let Some(t) = s.max_time {
            let span = t.span();
            config.max_time = Some(parse_duration(t.get_ref()).map_err(|m| invalid(span, "study.max_time", m))?);
        }

        // The space: inline, or from a separate reusable file.
        match (s.space, file.space) {
            (Some(_), Some(_)) => {
                return Err(ConfigError::Usage(format!(
                    "{}: give the search space either inline as [space] or as study.space = \"file\", not both",
                    path.display()
                )));
            }
            (Some(file_ref), None) => {
                let space_path = base.join(file_ref.get_ref());
                let space_text = std::fs::read_to_string(&space_path).map_err(|e| {
                    invalid(file_ref.span(), "study.space", format!("cannot read {}: {e}", space_path.display()))
                })?;
                config.space = Some(parse_space_file(&space_text, &space_path)?);
            }
            (None, Some(table)) => config.space = Some(space_from_table(table, text, path)?),
            (None, None) => {}
        }

        for entry in s.enqueue.unwrap_or_default() {
            let span = entry.span();
            let table = entry.into_inner();
            let at = EnqueueAt {
                line: lines.line(span.start),
                keys: table.keys().map(|k| (k.clone(), key_line(text, span.clone(), k, &lines))).collect(),
            };
            let i = config.enqueue.len();
            let json = match serde_json::to_value(&table) {
                Ok(serde_json::Value::Object(m)) => m,
                _ => {
                    return Err(ConfigError::Invalid {
                        path: path.into(),
                        line: at.line,
                        field: format!("study.enqueue[{i}]"),
                        message: "must be a table of parameter values".into(),
                    });
                }
            };
            config.enqueue.push(json);
            config.enqueue_at.push(at);
        }
        if let Some(space) = &config.space {
            config.enqueue = config.check_enqueue(space)?;
        }

        if let Some(st) = file.strategy {
            let mut sc = StrategyConfig { plugin: st.plugin.map(|p| base.join(p)), ..StrategyConfig::default() };
            if let Some(allow) = st.allow {
                for cap in allow.get_ref() {
                    if !CAPABILITIES.contains(&cap.as_str()) {
                        return Err(invalid(
                            allow.span(),
                            "strategy.allow",
                            format!("unknown capability `{cap}`; known: {}", CAPABILITIES.join(", ")),
                        ));
                    }
                }
                sc.allow = allow.into_inner();
            }
            if let Some(m) = st.memory_mib {
                if *m.get_ref() < 16 || *m.get_ref() > 64 * 1024 {
                    return Err(invalid(m.span(), "strategy.memory_mib", "must be between 16 and 65536".into()));
                }
                sc.memory_bytes = m.into_inner() << 20;
            }
            if let Some(t) = st.suggest_timeout_s {
                let v = *t.get_ref();
                if !(v > 0.0 && v <= 86_400.0) {
                    return Err(invalid(t.span(), "strategy.suggest_timeout_s", "must be in (0, 86400]".into()));
                }
                sc.suggest_timeout = Duration::from_secs_f64(v);
            }
            if let Some(r) = st.max_restarts {
                sc.max_restarts = r;
            }
            if let Some(o) = st.options {
                sc.options = serde_json::to_value(o)
                    .map_err(|e| ConfigError::Parse { path: path.into(), message: format!("strategy.options: {e}") })?;
            }
            config.strategy = sc;
        }
        if let Some(p) = file.pruner {
            let span = p.span();
            let p = p.into_inner();
            if p.plugin.trim().is_empty() {
                return Err(invalid(span, "pruner.plugin", "must name a plugin (e.g. \"plugins/pruner.wasm\")".into()));
            }
            let options = match p.options {
                Some(o) => serde_json::to_value(o)
                    .map_err(|e| ConfigError::Parse { path: path.into(), message: format!("pruner.options: {e}") })?,
                None => serde_json::json!({}),
            };
            config.pruner = Some(PrunerConfig { plugin: base.join(p.plugin), options });
        }

        if let Some(ex) = file.executor {
            let span = ex.span();
            config.executor = Some(match ex.into_inner() {
                FileExecutor::Bench { function, dim, delay_s, epochs } => {
                    if epochs == Some(0) {
                        return Err(invalid(span, "executor.epochs", "must be at least 1".into()));
                    }
                    let delay = delay_s.map(|d| Duration::from_secs_f64(d.max(0.0)));
                    ExecutorConfig::Bench { function, dim, delay, epochs }
                }
                FileExecutor::Local { command, timeout_s, env, rerun } => {
                    if command.is_empty() {
                        return Err(invalid(span, "executor.command", "must name a program".into()));
                    }
                    let timeout = match timeout_s {
                        Some(t) if t <= 0.0 => {
                            return Err(invalid(span, "executor.timeout_s", "must be positive".into()));
                        }
                        t => t.map(Duration::from_secs_f64),
                    };
                    ExecutorConfig::Local(LocalConfig { command, timeout, env, workdir: Some(base.clone()), rerun })
                }
                FileExecutor::Pbs(p) => ExecutorConfig::Pbs(Box::new(pbs_config(*p, &base, span, text, path)?)),
                FileExecutor::Globus(g) => ExecutorConfig::Globus(Box::new(globus_config(*g, span, text, path)?)),
            });
        }
        if let Some(llm) = file.llm {
            let span = llm.span();
            let at = format!("{}, line {}: [llm]", path.display(), lines.line(span.start));
            config.llm = Some(llm_config(llm.into_inner(), at, |field, m| invalid(span.clone(), field, m))?);
        }
        Ok(config)
    }
}

impl Config {
    /// Whether the study has more than one objective.
    pub fn is_multi_objective(&self) -> bool {
        self.objectives.len() > 1
    }

    /// Validates the `[[study.enqueue]]` entries against `space` and returns them in stored form.
    /// An error names the file, the line and `study.enqueue[i].PARAM`.
    pub fn check_enqueue(
        &self,
        space: &SearchSpace,
    ) -> Result<Vec<serde_json::Map<String, serde_json::Value>>, ConfigError> {
        let path = self.source.clone().unwrap_or_default();
        self.enqueue
            .iter()
            .enumerate()
            .map(|(i, params)| {
                let at = self.enqueue_at.get(i).cloned().unwrap_or_default();
                space.validate_json(params).map(|a| a.to_json(space)).map_err(|e| {
                    let name = match &e {
                        InvalidAssignment::Missing { name }
                        | InvalidAssignment::Unknown { name, .. }
                        | InvalidAssignment::Repeated { name }
                        | InvalidAssignment::WrongType { name, .. }
                        | InvalidAssignment::OutOfRange { name, .. }
                        | InvalidAssignment::NotFinite { name, .. } => name.clone(),
                    };
                    // A missing parameter has no line of its own: the entry's is the place to add it.
                    let line = at.keys.get(&name).copied().unwrap_or(at.line.max(1));
                    ConfigError::Invalid {
                        path: path.clone(),
                        line,
                        field: format!("study.enqueue[{i}].{name}"),
                        message: e.to_string(),
                    }
                })
            })
            .collect()
    }
}

/// The line where `key = ...` is first written in the entry that starts at `span` of `text`, or
/// the entry's first line. The span of an `[[array]]` table is its header only, so the entry's
/// keys are looked for up to the next table header.
fn key_line(text: &str, span: std::ops::Range<usize>, key: &str, lines: &Lines<'_>) -> usize {
    let start = span.start.min(text.len());
    let after = span.end.clamp(start, text.len());
    let end = text[after..].find("\n[").map_or(text.len(), |i| after + i);
    let region = &text[start..end];
    let mut from = 0;
    while let Some(found) = region[from..].find(key) {
        let at = from + found;
        let before_ok = region[..at].chars().next_back().is_none_or(|c| c.is_whitespace() || c == '{' || c == ',');
        let after = region[at + key.len()..].trim_start_matches([' ', '\t']);
        if before_ok && after.starts_with('=') {
            return lines.line(start + at);
        }
        from = at + key.len();
    }
    lines.line(start)
}

fn llm_config(f: FileLlm, at: String, invalid: impl Fn(&str, String) -> ConfigError) -> Result<LlmConfig, ConfigError> {
    let mut c = LlmConfig { at, ..LlmConfig::default() };
    if let Some(url) = f.base_url {
        let url = url.trim_end_matches('/').to_string();
        if !(url.starts_with("https://") || url.starts_with("http://")) {
            return Err(invalid("llm.base_url", format!("`{url}` must be an http(s) URL ending in /v1")));
        }
        if url.starts_with("http://") && !is_loopback_url(&url) {
            return Err(invalid(
                "llm.base_url",
                format!("`{url}` is plain http to a remote host: the access token would travel in clear; use https"),
            ));
        }
        c.jobs_url = jobs_url_for(&url);
        c.base_url = url;
    }
    if let Some(j) = f.jobs_url {
        c.jobs_url = if j.is_empty() { None } else { Some(j) };
    }
    if let Some(m) = f.model {
        if m.trim().is_empty() {
            return Err(invalid("llm.model", "must name a model, e.g. meta-llama/Llama-3.3-70B-Instruct".into()));
        }
        c.model = m;
    }
    c.models = f.models.unwrap_or_default();
    if !c.models.contains(&c.model) {
        c.models.insert(0, c.model.clone());
    }
    c.auth = match f.auth.as_deref() {
        None | Some("globus") => LlmAuth::Globus,
        Some("none") => LlmAuth::None,
        Some(other) => return Err(invalid("llm.auth", format!("unknown `{other}`; use \"globus\" or \"none\""))),
    };
    if let Some(n) = f.max_calls {
        c.max_calls = n;
    }
    if let Some(n) = f.max_tokens {
        c.max_tokens = n;
    }
    if let Some(w) = f.cold_wait {
        c.cold_wait = parse_duration(w.get_ref()).map_err(|m| invalid("llm.cold_wait", m))?;
    }
    if let Some(t) = f.attempt_timeout_s {
        let v = *t.get_ref();
        if !(v > 0.0 && v <= 3600.0) {
            return Err(invalid("llm.attempt_timeout_s", "must be in (0, 3600]".into()));
        }
        c.attempt_timeout = Duration::from_secs_f64(v);
    }
    if let Some(r) = f.max_retries {
        c.max_retries = r.min(100);
    }
    Ok(c)
}

/// `http://127.0.0.1:…`, `http://localhost…` or `http://[::1]…`.
fn is_loopback_url(url: &str) -> bool {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    ["127.", "localhost", "[::1]"].iter().any(|p| rest.starts_with(p))
}

/// Reads a reusable search-space file: a TOML file with a `[space]` table (or the parameters at top level).
pub fn parse_space_file(text: &str, path: &Path) -> Result<SearchSpace, ConfigError> {
    let mut table: toml::Table =
        toml::from_str(text).map_err(|e| ConfigError::Parse { path: path.into(), message: e.to_string() })?;
    let table = match table.remove("space") {
        Some(toml::Value::Table(t)) if table.is_empty() => t,
        Some(_) => {
            return Err(ConfigError::Usage(format!(
                "{}: a space file holds only a [space] table of parameters",
                path.display()
            )));
        }
        None => table,
    };
    space_from_table(table, text, path)
}

#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "lowercase", deny_unknown_fields)]
enum ParamDef {
    Float {
        low: f64,
        high: f64,
        #[serde(default)]
        log: bool,
        when: Option<toml::Table>,
    },
    Int {
        low: i64,
        high: i64,
        #[serde(default)]
        log: bool,
        when: Option<toml::Table>,
    },
    Choice {
        values: Vec<toml::Value>,
        when: Option<toml::Table>,
    },
}

/// `when = { model = "cnn" }` or `when = { model = ["cnn", "vgg16"] }`: the parent and the
/// labels it must have (numbers and booleans as their labels, as for choices).
fn condition_of(when: toml::Table) -> Result<crate::space::Condition, String> {
    let usage =
        "write `when = { PARENT = \"VALUE\" }` or `when = { PARENT = [\"A\", \"B\"] }`, PARENT a choice parameter";
    let mut entries = when.into_iter();
    let (Some((parent, values)), None) = (entries.next(), entries.next()) else {
        return Err(format!("`when` names exactly one parent parameter; {usage}"));
    };
    let values = match values {
        toml::Value::Array(v) => v,
        one => vec![one],
    };
    let mut labels = Vec::with_capacity(values.len());
    for v in values {
        let json = serde_json::to_value(&v).unwrap_or(serde_json::Value::Null);
        labels.push(Choice::from_json(json).map_err(|m| format!("`when`: {m}; {usage}"))?.label);
    }
    Ok(crate::space::Condition { parent, values: labels })
}

fn space_from_table(table: toml::Table, text: &str, path: &Path) -> Result<SearchSpace, ConfigError> {
    let lines = Lines(text);
    let line_of = |name: &str| {
        // Tables lose their spans once deserialized as a whole; find the key's line in the text instead.
        text.find(&format!("\n{name} ")).or_else(|| text.find(&format!("\n{name}="))).map_or(1, |o| lines.line(o + 1))
    };
    let mut params = Vec::with_capacity(table.len());
    let mut conditions = Vec::new();
    for (name, value) in table {
        let field = format!("space.{name}");
        let def: ParamDef = value.try_into().map_err(|e: toml::de::Error| ConfigError::Invalid {
            path: path.into(),
            line: line_of(&name),
            field: field.clone(),
            message: format!(
                "{}; write e.g. {{ type = \"float\", low = 0.0, high = 1.0, log = false }}, \
                 {{ type = \"int\", low = 1, high = 10 }} or {{ type = \"choice\", values = [\"a\", \"b\"] }}",
                e.message()
            ),
        })?;
        let (domain, when) = match def {
            ParamDef::Float { low, high, log, when } => (Domain::Float { low, high, log }, when),
            ParamDef::Int { low, high, log, when } => (Domain::Int { low, high, log }, when),
            ParamDef::Choice { values, when } => {
                let mut choices = Vec::with_capacity(values.len());
                for v in values {
                    let json = serde_json::to_value(&v).unwrap_or(serde_json::Value::Null);
                    choices.push(Choice::from_json(json).map_err(|m| ConfigError::Invalid {
                        path: path.into(),
                        line: line_of(&name),
                        field: field.clone(),
                        message: m,
                    })?);
                }
                (Domain::Choice(choices), when)
            }
        };
        if let Some(when) = when {
            let c = condition_of(when).map_err(|message| ConfigError::Invalid {
                path: path.into(),
                line: line_of(&name),
                field: format!("{field}.when"),
                message,
            })?;
            conditions.push((name.clone(), c));
        }
        params.push(Param { name, domain });
    }
    SearchSpace::new(params).and_then(|s| s.with_conditions(conditions)).map_err(|e| {
        let (line, field) = match &e {
            crate::space::SpaceError::BadParam { name, .. } | crate::space::SpaceError::Duplicate(name) => {
                (line_of(name), format!("space.{name}"))
            }
            crate::space::SpaceError::BadCondition { name, .. } => (line_of(name), format!("space.{name}.when")),
            crate::space::SpaceError::Empty => (1, "space".into()),
        };
        ConfigError::Invalid { path: path.into(), line, field, message: e.to_string() }
    })
}

/// Parses "90s", "15m", "2h", "1d", "1h30m" or a bare number of seconds.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    if let Ok(secs) = t.parse::<f64>() {
        return if secs > 0.0 { Ok(Duration::from_secs_f64(secs)) } else { Err("must be positive".into()) };
    }
    let mut total = 0.0;
    let mut number = String::new();
    for c in t.chars() {
        if c.is_ascii_digit() || c == '.' {
            number.push(c);
            continue;
        }
        let unit = match c {
            's' => 1.0,
            'm' => 60.0,
            'h' => 3600.0,
            'd' => 86400.0,
            _ => return Err(format!("`{text}` is not a duration; write e.g. 90s, 15m, 2h or 1h30m")),
        };
        let n: f64 = number.parse().map_err(|_| format!("`{text}` is not a duration; write e.g. 90s, 15m, 2h"))?;
        total += n * unit;
        number.clear();
    }
    if !number.is_empty() || total <= 0.0 {
        return Err(format!("`{text}` is not a duration; write e.g. 90s, 15m, 2h or 1h30m"));
    }
    Ok(Duration::from_secs_f64(total))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn llm_section_defaults_and_errors() {
        let c = Config::parse("[llm]\n", Path::new("l.toml")).unwrap();
        let l = c.llm.unwrap();
        assert_eq!(l.base_url, SOPHIA_BASE_URL);
        assert_eq!(l.jobs_url.as_deref(), Some("https://inference-api.alcf.anl.gov/resource_server/sophia/jobs"));
        assert_eq!((l.model.as_str(), l.models.len(), l.auth), (DEFAULT_LLM_MODEL, 1, LlmAuth::Globus));
        assert!(Config::parse("[study]\n", Path::new("l.toml")).unwrap().llm.is_none());

        let text = "[llm]\nbase_url = \"http://127.0.0.1:9/resource_server/sophia/vllm/v1/\"\nmodel = \"a\"\nmodels = [\"b\"]\nauth = \"none\"\ncold_wait = \"90s\"\nmax_calls = 3\n";
        let l = Config::parse(text, Path::new("l.toml")).unwrap().llm.unwrap();
        assert_eq!(l.base_url, "http://127.0.0.1:9/resource_server/sophia/vllm/v1");
        assert_eq!(l.jobs_url.as_deref(), Some("http://127.0.0.1:9/resource_server/sophia/jobs"));
        assert_eq!(l.models, ["a", "b"]);
        assert_eq!((l.auth, l.cold_wait, l.max_calls), (LlmAuth::None, Duration::from_secs(90), 3));
        assert!(l.call_timeout() > l.cold_wait);

        let err = |t: &str| Config::parse(t, Path::new("l.toml")).unwrap_err().to_string();
        let e = err("[study]\nname = \"x\"\n\n[llm]\nbase_url = \"http://sophia.example/v1\"\n");
        assert!(e.contains("l.toml, line 4: field `llm.base_url`") && e.contains("use https"), "{e}");
        let e = err("[llm]\nauth = \"token\"\n");
        assert!(e.contains("llm.auth") && e.contains("\"globus\" or \"none\""), "{e}");
        let e = err("[llm]\ncold_wait = \"soon\"\n");
        assert!(e.contains("llm.cold_wait"), "{e}");
        let e = err("[llm]\nmax_cals = 3\n");
        assert!(e.contains("max_cals"), "{e}");
        assert_eq!(jobs_url_for("https://x/v1"), None);
    }

    #[test]
    fn full_config_parses() {
        let text = r#"
[study]
name = "demo"
objective = "val_acc"
direction = "maximize"
trials = 20
parallel = 4
max_time = "1h30m"

[strategy]
plugin = "../plugins/random.wasm"
allow = ["log", "llm"]
options = { beta = 2.0 }

[executor]
kind = "local"
command = ["python3", "train.py", "--lr", "{lr}"]
timeout_s = 60

[space]
lr = { type = "float", low = 1e-5, high = 1e-1, log = true }
model = { type = "choice", values = ["a", "b"] }
batch = { type = "choice", values = [32, 64] }
epochs = { type = "int", low = 1, high = 5 }
"#;
        let c = Config::parse(text, Path::new("/cfg/demo.toml")).unwrap();
        assert_eq!(c.parallel, 4);
        assert_eq!(c.max_time, Some(Duration::from_secs(5400)));
        assert_eq!(c.strategy.plugin.as_deref(), Some(Path::new("/cfg/../plugins/random.wasm")));
        assert_eq!(c.strategy.options["beta"], 2.0);
        let space = c.space.unwrap();
        let names: Vec<_> = space.names().collect();
        assert_eq!(names, ["lr", "model", "batch", "epochs"], "file order is kept");
        assert!(matches!(c.executor, Some(ExecutorConfig::Local { .. })));
    }

    #[test]
    fn errors_name_file_line_and_field() {
        let e = Config::parse("[study]\ntrails = 3\n", Path::new("x.toml")).unwrap_err().to_string();
        assert!(e.contains("x.toml") && e.contains("line 2") && e.contains("trails"), "{e}");

        let text = "[study]\nname = \"a\"\n\n[space]\nlr = { type = \"float\", low = 1.0, high = 0.5 }\n";
        let e = Config::parse(text, Path::new("y.toml")).unwrap_err().to_string();
        assert!(e.contains("y.toml, line 5: field `space.lr`"), "{e}");

        let text = "[space]\nx = { type = \"floaty\", low = 1.0, high = 2.0 }\n";
        let e = Config::parse(text, Path::new("z.toml")).unwrap_err().to_string();
        assert!(e.contains("line 2") && e.contains("space.x"), "{e}");

        let text = "[strategy]\nallow = [\"network\"]\n";
        let e = Config::parse(text, Path::new("w.toml")).unwrap_err().to_string();
        assert!(e.contains("line 2") && e.contains("strategy.allow") && e.contains("network"), "{e}");

        let text = "[study]\nparallel = 0\n";
        let e = Config::parse(text, Path::new("v.toml")).unwrap_err().to_string();
        assert!(e.contains("line 2") && e.contains("study.parallel"), "{e}");
    }

    #[test]
    fn multi_objective_studies() {
        let text = "[study]\nobjectives = [\n  { metric = \"curve_auc\", direction = \"maximize\" },\n  { metric = \"train_seconds\", direction = \"minimize\" },\n]\nhypervolume_reference = [0.0, 600.0]\n";
        let c = Config::parse(text, Path::new("m.toml")).unwrap();
        assert!(c.is_multi_objective());
        assert_eq!(
            c.objectives,
            vec![("curve_auc".to_string(), Direction::Maximize), ("train_seconds".to_string(), Direction::Minimize)]
        );
        assert_eq!((c.objective.as_deref(), c.direction), (Some("curve_auc"), Some(Direction::Maximize)));
        assert_eq!(c.hypervolume_reference, Some(vec![0.0, 600.0]));
        let single = Config::parse("[study]\nobjective = \"loss\"\n", Path::new("s.toml")).unwrap();
        assert!(!single.is_multi_objective() && single.objectives.is_empty());

        let err = |t: &str| Config::parse(t, Path::new("m.toml")).unwrap_err().to_string();
        let e = err("[study]\nobjective = \"a\"\nobjectives = [{ metric = \"b\", direction = \"minimize\" }]\n");
        assert!(e.contains("m.toml, line 2: field `study.objectives`") && e.contains("not both"), "{e}");
        let e =
            err("[study]\nobjectives = [\n { metric = \"a\", direction = \"maximize\" },\n { metric = \"b\" },\n]\n");
        assert!(e.contains("line 4: field `study.objectives[1].direction`") && e.contains("\"maximize\""), "{e}");
        let e = err("[study]\nobjectives = [{ metric = \"a\", direction = \"up\" }]\n");
        assert!(e.contains("line 2") && e.contains("up"), "{e}");
        let e = err("[study]\nobjectives = []\n");
        assert!(e.contains("line 2: field `study.objectives`") && e.contains("is empty"), "{e}");
        let e = err(
            "[study]\nobjectives = [{ metric = \"a\", direction = \"minimize\" }, { metric = \"a\", direction = \"maximize\" }]\n",
        );
        assert!(e.contains("study.objectives[1].metric") && e.contains("twice"), "{e}");
        let two = "[study]\nobjectives = [{ metric = \"a\", direction = \"minimize\" }, { metric = \"b\", direction = \"maximize\" }]\n";
        let e = err(&format!("{two}hypervolume_reference = [1.0]\n"));
        assert!(e.contains("line 3: field `study.hypervolume_reference`") && e.contains("(a, b)"), "{e}");
        let e = err("[study]\nobjective = \"a\"\nhypervolume_reference = [1.0]\n");
        assert!(e.contains("line 3") && e.contains("multi-objective"), "{e}");
    }

    const SPACE: &str = "
[space]
lr = { type = \"float\", low = 1e-5, high = 1e-1, log = true }
batch = { type = \"choice\", values = [32, 64] }
epochs = { type = \"int\", low = 1, high = 5 }
";

    #[test]
    fn retries_and_enqueued_trials_parse() {
        let c = Config::parse("[study]\nname = \"a\"\n", Path::new("a.toml")).unwrap();
        assert_eq!((c.retries, c.enqueue.len()), (1, 0));

        let text = format!(
            "[study]\nretries = 3\n\n[[study.enqueue]]\nlr = 0.01\nbatch = 64\nepochs = 2\n\n\
             [[study.enqueue]]\nepochs = 5\nlr = 1e-3\nbatch = \"32\"\n{SPACE}"
        );
        let c = Config::parse(&text, Path::new("b.toml")).unwrap();
        assert_eq!(c.retries, 3);
        assert_eq!(c.enqueue.len(), 2);
        // Stored form: typed choice values, whichever way they were written.
        assert_eq!(
            serde_json::Value::Object(c.enqueue[0].clone()),
            serde_json::json!({"lr": 0.01, "batch": 64, "epochs": 2})
        );
        assert_eq!(c.enqueue[1]["batch"], serde_json::json!(32));

        let e = Config::parse("[study]\nretries = -1\n", Path::new("r.toml")).unwrap_err().to_string();
        assert!(e.contains("r.toml") && e.contains("retries"), "{e}");
    }

    #[test]
    fn enqueued_trials_are_checked_against_the_space() {
        let bad = |entries: &str| {
            let text = format!("[study]\nname = \"a\"\n\n{entries}{SPACE}");
            Config::parse(&text, Path::new("q.toml")).unwrap_err().to_string()
        };
        // Out of range: the line of the parameter.
        let e = bad(
            "[[study.enqueue]]\nlr = 0.01\nbatch = 64\nepochs = 2\n\n[[study.enqueue]]\nlr = 0.5\nbatch = 64\nepochs = 2\n",
        );
        assert!(e.contains("q.toml, line 10: field `study.enqueue[1].lr`") && e.contains("out of range"), "{e}");
        // Missing: the entry's line.
        let e = bad("[[study.enqueue]]\nlr = 0.01\nbatch = 64\n");
        assert!(e.contains("line 4: field `study.enqueue[0].epochs`") && e.contains("missing"), "{e}");
        // Extra.
        let e = bad("[[study.enqueue]]\nlr = 0.01\nbatch = 64\nepochs = 2\nmomentum = 0.9\n");
        assert!(
            e.contains("line 8: field `study.enqueue[0].momentum`") && e.contains("not in the search space"),
            "{e}"
        );
        // Wrong type.
        let e = bad("[[study.enqueue]]\nlr = 0.01\nbatch = 64\nepochs = 2.5\n");
        assert!(e.contains("line 7: field `study.enqueue[0].epochs`") && e.contains("wrong type"), "{e}");
        // The inline form names the line too.
        let text = format!("[study]\nname = \"a\"\nenqueue = [{{ lr = 0.01, batch = 64, epochs = 9 }}]\n{SPACE}");
        let e = Config::parse(&text, Path::new("i.toml")).unwrap_err().to_string();
        assert!(e.contains("i.toml, line 3: field `study.enqueue[0].epochs`"), "{e}");

        // Without a space in the config (a bench function), they are checked once the space is known.
        let text = "[study]\n[[study.enqueue]]\nx1 = 0.5\nx2 = 9.0\n";
        let c = Config::parse(text, Path::new("bench.toml")).unwrap();
        let space = SearchSpace::new(vec![
            Param { name: "x1".into(), domain: Domain::Float { low: 0.0, high: 1.0, log: false } },
            Param { name: "x2".into(), domain: Domain::Float { low: 0.0, high: 1.0, log: false } },
        ])
        .unwrap();
        let e = c.check_enqueue(&space).unwrap_err().to_string();
        assert!(e.contains("bench.toml, line 4: field `study.enqueue[0].x2`"), "{e}");
    }

    #[test]
    fn globus_executor_sections() {
        let base = "[executor]\nkind = \"globus\"\nendpoint = \"5C6F1A2E-0000-4000-8000-00000000A0A0\"\n\
                    remote_dir = \"/lus/flare/p/me/\"\ncommand = [\"python3\", \"{config_dir}/t.py\"]\n";
        let c = Config::parse(base, Path::new("g.toml")).unwrap();
        let Some(ExecutorConfig::Globus(g)) = c.executor else { panic!("not globus") };
        assert_eq!(g.endpoint, "5c6f1a2e-0000-4000-8000-00000000a0a0");
        assert_eq!((g.remote_dir.as_str(), g.code_dir.as_str()), ("/lus/flare/p/me", "/lus/flare/p/me"));
        assert_eq!(
            (g.base_url.as_str(), g.max_requests, g.poll_interval),
            (GLOBUS_COMPUTE_URL, 20, Duration::from_secs(15))
        );
        let bad = |extra: &str, from: &str, to: &str| {
            let text = format!("{}{extra}", base.replace(from, to));
            Config::parse(&text, Path::new("g.toml")).unwrap_err().to_string()
        };
        let e = bad("", "5C6F1A2E-0000-4000-8000-00000000A0A0", "my-endpoint");
        assert!(e.contains("line 3: field `executor.endpoint`") && e.contains("globus-compute-endpoint list"), "{e}");
        let e = bad("", "/lus/flare/p/me/", "flare/p");
        assert!(e.contains("field `executor.remote_dir`") && e.contains("absolute"), "{e}");
        let e = bad("base_url = \"http://compute.example.org\"\n", "", "");
        assert!(e.contains("field `executor.base_url`") && e.contains("https://"), "{e}");
        assert!(Config::parse(&format!("{base}base_url = \"http://127.0.0.1:8123\"\n"), Path::new("g.toml")).is_ok());
        let e = bad("max_requests = 0\n", "", "");
        assert!(e.contains("field `executor.max_requests`"), "{e}");
        let e = bad("setup = [\"a\\nb\"]\n", "", "");
        assert!(e.contains("field `executor.setup`") && e.contains("line break"), "{e}");
        let e = bad("queue = \"debug\"\n", "", "");
        assert!(e.contains("queue"), "{e}");
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("90").unwrap(), Duration::from_secs(90));
        assert_eq!(parse_duration("2h").unwrap(), Duration::from_secs(7200));
        assert_eq!(parse_duration("1h30m").unwrap(), Duration::from_secs(5400));
        assert!(parse_duration("soon").is_err());
        assert!(parse_duration("5x").is_err());
    }
}
