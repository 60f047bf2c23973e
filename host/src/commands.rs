//! What each CLI command does, given its parsed arguments. The binary (main.rs) only parses
//! arguments and maps errors to exit codes.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, bail};

use crate::campaign::{Campaign, CampaignSettings, Interrupts, StopReason, Summary};
use crate::config::{Config, Direction, ExecutorConfig};
use crate::executor::Executor;
use crate::executor::bench::{self, BenchExecutor};
use crate::executor::local::{LocalConfig, LocalExecutor};
use crate::plugin::sandbox::{Grants, Storage};
use crate::plugin::strategy::{PluginLimits, SandboxedStrategy, StudyInfo};
use crate::plugin::{PluginRuntime, default_cache_dir};
use crate::progress::Progress;
use crate::space::SearchSpace;
use crate::study::{StudyDb, StudyMeta, TrialRow, TrialState};

/// Writes a line to stdout, returning the error (a closed pipe, as in `| head`) instead of panicking.
macro_rules! out {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        writeln!(std::io::stdout().lock(), $($arg)*)?
    }};
}

/// `alcf-host run` options (also its command-line flags).
#[derive(Debug, Clone, Default, clap::Args)]
pub struct RunOptions {
    /// Strategy plugin, e.g. plugins/gp_ucb.wasm (overrides [strategy] plugin).
    #[arg(long, value_name = "FILE.wasm")]
    pub strategy: Option<PathBuf>,
    /// Study configuration (TOML); see config/quickstart.toml.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// A built-in test function instead of a configured executor: bench:NAME[:DIM], e.g. bench:branin.
    #[arg(long, value_name = "bench:NAME")]
    pub objective: Option<String>,
    /// Total number of trials in the study (earlier runs included).
    #[arg(long)]
    pub trials: Option<u32>,
    /// Trials running at once.
    #[arg(long)]
    pub parallel: Option<u32>,
    #[arg(long)]
    pub seed: Option<u64>,
    /// Study name (directory under --root); default from the config or the objective and plugin.
    #[arg(long)]
    pub study: Option<String>,
    /// Directory holding studies [default: $ALCF_STUDIES or ./studies].
    #[arg(long, value_name = "DIR")]
    pub root: Option<PathBuf>,
    /// Continue an existing study: replay its finished trials, re-run interrupted ones.
    #[arg(long)]
    pub resume: bool,
    /// Stop submitting after this much wall time, e.g. 90m, 2h.
    #[arg(long, value_name = "DURATION")]
    pub max_time: Option<String>,
    /// No progress bar or summary.
    #[arg(long, short)]
    pub quiet: bool,
}

/// Where studies live unless a config or flag says otherwise.
pub fn default_root() -> PathBuf {
    std::env::var_os("ALCF_STUDIES").map(PathBuf::from).unwrap_or_else(|| PathBuf::from("studies"))
}

fn check_study_name(name: &str) -> anyhow::Result<()> {
    if name.is_empty()
        || name.starts_with('.')
        || !name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
    {
        bail!("study name `{name}` is not usable as a directory name: use letters, digits, `_`, `-` and `.`");
    }
    Ok(())
}

/// Holds an exclusive lock on a study directory for the life of a run, so two hosts never drive
/// the same study (e.g. a forgotten run in another terminal).
pub struct StudyLock {
    _file: std::fs::File,
}

impl StudyLock {
    pub fn acquire(dir: &Path) -> anyhow::Result<StudyLock> {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create study directory {}", dir.display()))?;
        let path = dir.join("lock");
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .with_context(|| format!("cannot open {}", path.display()))?;
        #[cfg(unix)]
        {
            use std::os::fd::AsRawFd;
            // SAFETY: flock on a file descriptor we own; the lock is released when the file closes.
            let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
            if rc != 0 {
                bail!(
                    "study {} is in use by another alcf-host process; wait for it to finish or stop it (Ctrl-C) first",
                    dir.display()
                );
            }
        }
        Ok(StudyLock { _file: file })
    }
}

/// Everything a run needs, resolved from the config file, the flags and (on resume) the study.
struct Plan {
    name: String,
    dir: PathBuf,
    space: SearchSpace,
    objective: String,
    direction: Direction,
    seed: u64,
    config: Config,
    executor: Arc<dyn Executor>,
    executor_desc: String,
}

fn plan(opts: &RunOptions) -> anyhow::Result<Plan> {
    let mut config = match &opts.config {
        Some(path) => Config::load(path)?,
        None => Config::default(),
    };
    if let Some(obj) = &opts.objective {
        let Some(rest) = obj.strip_prefix("bench:") else {
            bail!(
                "--objective takes `bench:NAME` (e.g. bench:branin, bench:ackley5); real objectives are set in the config's [study] objective"
            );
        };
        let (name, dim) = match rest.split_once(':') {
            Some((n, d)) => {
                (n, Some(d.parse::<usize>().with_context(|| format!("bad dimension in --objective {obj}"))?))
            }
            None => (rest, None),
        };
        config.executor = Some(ExecutorConfig::Bench { function: name.to_string(), dim, delay: None });
    }
    if let Some(t) = opts.trials {
        config.trials = Some(t);
    }
    if let Some(p) = opts.parallel {
        if p == 0 {
            bail!("--parallel must be at least 1");
        }
        config.parallel = p;
    }
    if let Some(s) = opts.seed {
        config.seed = s;
    }
    if let Some(t) = &opts.max_time {
        config.max_time = Some(crate::config::parse_duration(t).map_err(|m| anyhow::anyhow!("--max-time: {m}"))?);
    }
    if let Some(s) = &opts.strategy {
        config.strategy.plugin = Some(s.clone());
    }

    let Some(executor_cfg) = config.executor.clone() else {
        bail!(
            "nothing to run: give --objective bench:NAME, or a --config with an [executor] section (see config/quickstart.toml)"
        );
    };
    // What the executor implies: its space (bench functions bring their own), a description for the
    // study record, a default objective and the stem of a default study name.
    let (space, executor, executor_desc, default_objective, stem): (SearchSpace, Arc<dyn Executor>, _, _, _) =
        match &executor_cfg {
            ExecutorConfig::Bench { function, dim, delay } => {
                let b = BenchExecutor::new(function, *dim, *delay)?;
                let space = config.space.clone().unwrap_or_else(|| b.space());
                let name = b.function().name.clone();
                (space, Arc::new(b), format!("bench:{name}"), Some(bench::METRIC.to_string()), name)
            }
            ExecutorConfig::Local { command, timeout, env, workdir } => {
                let Some(space) = config.space.clone() else {
                    bail!(
                        "the local executor needs a search space: add a [space] table or study.space = \"file\" to the config"
                    );
                };
                let local = LocalExecutor::new(
                    LocalConfig {
                        command: command.clone(),
                        timeout: *timeout,
                        env: env.clone(),
                        workdir: Some(workdir.clone()),
                    },
                    &space,
                )?;
                (space, Arc::new(local), format!("local: {}", command.join(" ")), None, "local".to_string())
            }
        };
    let objective = config.objective.clone().or(default_objective).ok_or_else(|| {
        anyhow::anyhow!("the config names no objective: set [study] objective = \"METRIC\" (a key the trial writes)")
    })?;
    let direction = config.direction.unwrap_or(Direction::Minimize);
    let name = opts.study.clone().or(config.name.clone()).unwrap_or_else(|| {
        let plugin =
            config.strategy.plugin.as_ref().and_then(|p| p.file_stem()).map(|s| s.to_string_lossy().into_owned());
        format!("{stem}-{}", plugin.unwrap_or_else(|| "study".into()))
    });
    check_study_name(&name)?;
    let root = opts.root.clone().or(config.root.clone()).unwrap_or_else(default_root);
    let dir = root.join(&name);
    let seed = config.seed;
    Ok(Plan { name, dir, space, objective, direction, seed, config, executor, executor_desc })
}

/// Sends host logs to `host.log` in the study directory (and warnings to stderr).
fn init_logging(dir: &Path) -> anyhow::Result<()> {
    use tracing_subscriber::prelude::*;
    let file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("host.log"))
        .with_context(|| format!("cannot open {}", dir.join("host.log").display()))?;
    // Per-trial events are logged at debug: the study database is their record, and formatting two
    // lines per trial would double the host's per-trial cost. `ALCF_LOG=debug` shows them.
    let filter = tracing_subscriber::EnvFilter::try_from_env("ALCF_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,wasmtime=warn,cranelift=warn"));
    let file_layer =
        tracing_subscriber::fmt::layer().with_writer(std::sync::Mutex::new(file)).with_ansi(false).with_filter(filter);
    // Warnings reach the terminal through the progress display's own lines.
    let _ = tracing_subscriber::registry().with(file_layer).try_init();
    Ok(())
}

pub async fn run(opts: RunOptions) -> anyhow::Result<Summary> {
    let plan = plan(&opts)?;
    let plugin_path = plan.config.strategy.plugin.clone().ok_or_else(|| {
        anyhow::anyhow!("no strategy plugin: pass --strategy plugins/NAME.wasm or set [strategy] plugin in the config")
    })?;

    let exists = plan.dir.join(crate::study::DB_FILE).exists();
    if exists && !opts.resume {
        bail!(
            "study `{}` already exists at {}: continue it with --resume, or choose another name with --study",
            plan.name,
            plan.dir.display()
        );
    }
    if !exists && opts.resume {
        bail!("--resume: no study `{}` at {}; drop --resume to start it", plan.name, plan.dir.display());
    }
    let _lock = StudyLock::acquire(&plan.dir)?;
    init_logging(&plan.dir)?;

    let runtime = PluginRuntime::shared(default_cache_dir())?;
    let loaded = Arc::new(runtime.load(&plugin_path)?);
    tracing::info!(
        plugin = %plugin_path.display(),
        sha256 = %loaded.summary.sha256,
        cached = loaded.summary.cached,
        ms = loaded.summary.load_time.as_secs_f64() * 1e3,
        "plugin loaded"
    );

    let (db, space, objective, direction, seed) = if exists {
        let db = StudyDb::open(&plan.dir)?;
        let meta = db.meta()?;
        let space = SearchSpace::from_json(&meta.space)
            .map_err(|m| anyhow::anyhow!("{}: stored space: {m}", db.path().display()))?;
        // A study keeps what it was created with; a changed config is reported, never silently mixed in.
        let mut notes = Vec::new();
        if space != plan.space {
            notes.push("the search space in the config differs from the study's; the study's is used".to_string());
        }
        if meta.executor != plan.executor_desc {
            notes.push(format!("the executor changed: study `{}`, now `{}`", meta.executor, plan.executor_desc));
        }
        if meta.objective != plan.objective {
            notes.push(format!(
                "the objective in the config (`{}`) is not the study's; `{}` is used",
                plan.objective, meta.objective
            ));
        }
        if meta.plugin_sha256 != loaded.summary.sha256 {
            notes.push(format!(
                "the plugin changed since the study was created ({} -> {}); finished trials are replayed into the new build",
                &meta.plugin_sha256[..12.min(meta.plugin_sha256.len())],
                &loaded.summary.sha256[..12]
            ));
            db.set_meta("plugin_sha256", &loaded.summary.sha256)?;
        }
        for note in notes {
            tracing::warn!("{note}");
            db.event("config-changed", None, &note)?;
            if !opts.quiet {
                eprintln!("warning: {note}");
            }
        }
        let direction = Direction::parse(&meta.direction).unwrap_or(plan.direction);
        (db, space, meta.objective, direction, meta.seed)
    } else {
        let meta = StudyMeta {
            name: plan.name.clone(),
            objective: plan.objective.clone(),
            direction: plan.direction.as_str().to_string(),
            seed: plan.seed,
            space: plan.space.to_json(),
            executor: plan.executor_desc.clone(),
            plugin: plugin_path.display().to_string(),
            plugin_sha256: loaded.summary.sha256.clone(),
            created_at: crate::study::now(),
        };
        let db = StudyDb::create(&plan.dir, &meta)?;
        if let Some(src) = &plan.config.source {
            db.set_meta("config_file", &src.display().to_string())?;
            if let Ok(text) = std::fs::read_to_string(src) {
                db.set_meta("config_text", &text)?;
            }
        }
        (db, plan.space.clone(), plan.objective.clone(), plan.direction, plan.seed)
    };
    let db = Arc::new(db);

    let study = StudyInfo {
        name: plan.name.clone(),
        space: space.clone(),
        direction,
        objective: objective.clone(),
        seed,
        budget: plan.config.trials,
        parallelism: plan.config.parallel,
        options: plan.config.strategy.options.clone(),
    };
    let limits = PluginLimits {
        memory_bytes: plan.config.strategy.memory_bytes,
        call_timeout: plan.config.strategy.suggest_timeout,
        max_restarts: plan.config.strategy.max_restarts,
    };
    let strategy = SandboxedStrategy::new(
        loaded,
        &study,
        limits,
        Grants::from_list(&plan.config.strategy.allow),
        Storage::Study(db.clone()),
    );
    let progress = Progress::new(&objective, !opts.quiet);
    if !opts.quiet {
        eprintln!(
            "{} study `{}` in {} — strategy {}, {}, {} {}",
            if exists { "Resuming" } else { "Starting" },
            plan.name,
            plan.dir.display(),
            plugin_path.display(),
            plan.executor_desc,
            direction.as_str(),
            objective
        );
    }
    let campaign = Campaign {
        db: db.clone(),
        space,
        study_dir: plan.dir.clone(),
        strategy,
        executor: plan.executor.clone(),
        settings: CampaignSettings {
            objective: objective.clone(),
            direction,
            trials: plan.config.trials,
            max_time: plan.config.max_time,
            parallel: plan.config.parallel,
        },
        progress,
        interrupts: Interrupts::listen(),
    };
    let summary = campaign.run().await?;
    if !opts.quiet {
        print_summary(&plan.name, &plan.dir, &summary, &objective, &db.trials()?);
    }
    Ok(summary)
}

fn print_summary(name: &str, dir: &Path, s: &Summary, objective: &str, trials: &[TrialRow]) {
    let why = match &s.reason {
        StopReason::Budget => "trial budget reached".to_string(),
        StopReason::Time => "time budget reached".to_string(),
        StopReason::Interrupted => "interrupted; continue with --resume".to_string(),
        StopReason::Cancelled => "cancelled; running trials re-run on --resume".to_string(),
        StopReason::StrategyDone => "the strategy has nothing more to suggest".to_string(),
        StopReason::PluginFailed(m) | StopReason::ExecutorFailed(m) => format!("stopped: {m}"),
    };
    eprintln!(
        "Study `{name}`: {} completed, {} failed ({} this run, {:.1} s) — {why}",
        s.completed,
        s.failed,
        s.trials_this_run,
        s.elapsed.as_secs_f64()
    );
    if let Some((id, v)) = s.best
        && let Some(t) = trials.iter().find(|t| t.id == id)
    {
        eprintln!("Best trial #{id}: {objective} = {v}  {}", crate::campaign::describe_params(&t.params));
    }
    eprintln!("Details: alcf-host study show {name} --root {}", dir.parent().unwrap_or(Path::new(".")).display());
}

/// `alcf-host plugin inspect`: what a component is, what it asks for, and whether this host can run it.
pub async fn inspect(path: &Path, json: bool) -> anyhow::Result<()> {
    let runtime = PluginRuntime::shared(default_cache_dir())?;
    let (_, summary) = runtime.compile(path)?;
    let verdict = runtime.load(path).map(|_| ()).map_err(|e| e.to_string());
    let info = match &verdict {
        Ok(()) => {
            let loaded = Arc::new(runtime.load(path)?);
            let space = SearchSpace::new(vec![crate::space::Param {
                name: "x".into(),
                domain: crate::space::Domain::Float { low: 0.0, high: 1.0, log: false },
            }])?;
            let study = StudyInfo {
                name: "inspect".into(),
                space,
                direction: Direction::Minimize,
                objective: "value".into(),
                seed: 0,
                budget: None,
                parallelism: 1,
                options: serde_json::json!({}),
            };
            let limits = PluginLimits {
                memory_bytes: 512 << 20,
                call_timeout: std::time::Duration::from_secs(10),
                max_restarts: 0,
            };
            let mut s = SandboxedStrategy::new(loaded, &study, limits, Grants::default(), Storage::memory());
            Some(s.describe().await.map_err(|e| e.to_string()))
        }
        Err(_) => None,
    };
    if json {
        let mut v = serde_json::json!({
            "path": summary.path,
            "sha256": summary.sha256,
            "size": summary.size,
            "abi_version": summary.abi_version,
            "host_abi_version": crate::plugin::ABI_VERSION,
            "imports": summary.imports,
            "exports": summary.exports,
            "loadable": verdict.is_ok(),
        });
        if let Err(e) = &verdict {
            v["error"] = e.clone().into();
        }
        if let Some(Ok(i)) = &info {
            v["name"] = i.name.clone().into();
            v["version"] = i.version.clone().into();
            v["description"] = i.description.clone().into();
            v["capabilities"] = i.capabilities.clone().into();
        }
        out!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        out!("file:          {} ({} bytes, sha256 {})", summary.path.display(), summary.size, &summary.sha256[..16]);
        if let Some(Ok(i)) = &info {
            out!("name:          {} {}", i.name, i.version);
            out!("description:   {}", i.description);
            out!(
                "capabilities:  {}",
                if i.capabilities.is_empty() { "(none)".into() } else { i.capabilities.join(", ") }
            );
        }
        if let Some(Err(e)) = &info {
            out!("describe:      failed: {e}");
        }
        out!("ABI:           {} (host speaks {})", summary.abi_version, crate::plugin::ABI_VERSION);
        out!("exports:       {}", summary.exports.join(", "));
        out!("imports:");
        for i in &summary.imports {
            out!("  {i}");
        }
        match &verdict {
            Ok(()) => out!("status:        loadable strategy plugin"),
            Err(e) => out!("status:        NOT loadable: {e}"),
        }
    }
    verdict.map_err(|e| anyhow::anyhow!(e))
}

/// One line per study under `root`.
pub fn study_list(root: &Path, json: bool) -> anyhow::Result<()> {
    let mut rows = Vec::new();
    let entries = match std::fs::read_dir(root) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            if json {
                out!("[]");
            } else {
                eprintln!("no studies under {} (start one with `alcf-host run`)", root.display());
            }
            return Ok(());
        }
        Err(e) => return Err(e).with_context(|| format!("cannot list {}", root.display())),
    };
    let mut dirs: Vec<PathBuf> = entries.filter_map(|e| e.ok()).map(|e| e.path()).collect();
    dirs.sort();
    for dir in dirs {
        if !dir.join(crate::study::DB_FILE).exists() {
            continue;
        }
        let db = match StudyDb::open(&dir) {
            Ok(db) => db,
            Err(e) => {
                eprintln!("warning: {e}");
                continue;
            }
        };
        let meta = db.meta()?;
        let trials = db.trials()?;
        let direction = Direction::parse(&meta.direction).unwrap_or_default();
        let best = best_trial(&trials, direction).and_then(|b| b.value);
        rows.push((meta, trials, best));
    }
    if json {
        let v: Vec<_> = rows
            .iter()
            .map(|(m, t, b)| {
                serde_json::json!({
                    "name": m.name, "objective": m.objective, "direction": m.direction, "executor": m.executor,
                    "plugin": m.plugin, "trials": t.len(),
                    "completed": t.iter().filter(|t| t.state == TrialState::Completed).count(),
                    "failed": t.iter().filter(|t| t.state == TrialState::Failed).count(),
                    "best": b,
                })
            })
            .collect();
        out!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(());
    }
    out!(
        "{:<28} {:>7} {:>9} {:>7} {:>14}  {:<18} plugin",
        "study",
        "trials",
        "completed",
        "failed",
        "best",
        "objective"
    );
    for (m, t, b) in &rows {
        out!(
            "{:<28} {:>7} {:>9} {:>7} {:>14}  {:<18} {}",
            m.name,
            t.len(),
            t.iter().filter(|t| t.state == TrialState::Completed).count(),
            t.iter().filter(|t| t.state == TrialState::Failed).count(),
            b.map_or("-".into(), crate::space::Assignment::format_float),
            format!("{} ({})", m.objective, &m.direction[..3]),
            m.plugin
        );
    }
    Ok(())
}

pub fn best_trial(trials: &[TrialRow], direction: Direction) -> Option<&TrialRow> {
    trials.iter().filter(|t| t.state == TrialState::Completed && t.value.is_some()).fold(
        None,
        |best: Option<&TrialRow>, t| match best {
            Some(b) if !direction.better(t.value.unwrap_or(f64::NAN), b.value.unwrap_or(f64::NAN)) => Some(b),
            _ => Some(t),
        },
    )
}

/// `alcf-host study show NAME`: the best trial and the trial table.
pub fn study_show(root: &Path, name: &str, json: bool) -> anyhow::Result<()> {
    check_study_name(name)?;
    let dir = root.join(name);
    let db = StudyDb::open(&dir)?;
    let meta = db.meta()?;
    let trials = db.trials()?;
    let direction = Direction::parse(&meta.direction).unwrap_or_default();
    let best = best_trial(&trials, direction);
    if json {
        let trial_json = |t: &TrialRow| {
            serde_json::json!({
                "id": t.id, "state": t.state.as_str(), "attempt": t.attempt, "job_id": t.job_id,
                "params": t.params, "value": t.value, "metrics": t.metrics,
                "created_at": t.created_at, "started_at": t.started_at, "finished_at": t.finished_at,
                "failure": t.failure, "log_tail": t.log_tail,
            })
        };
        let v = serde_json::json!({
            "name": meta.name, "objective": meta.objective, "direction": meta.direction, "seed": meta.seed,
            "executor": meta.executor, "plugin": meta.plugin, "plugin_sha256": meta.plugin_sha256,
            "space": meta.space, "created_at": meta.created_at,
            "best": best.map(trial_json),
            "trials": trials.iter().map(trial_json).collect::<Vec<_>>(),
            "events": db.events()?.iter().map(|e| serde_json::json!({"at": e.at, "kind": e.kind, "trial": e.trial, "message": e.message})).collect::<Vec<_>>(),
        });
        out!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(());
    }
    let count = |s: TrialState| trials.iter().filter(|t| t.state == s).count();
    out!("study:      {} ({})", meta.name, dir.display());
    out!("objective:  {} ({})", meta.objective, meta.direction);
    out!("strategy:   {}", meta.plugin);
    out!("executor:   {}", meta.executor);
    out!(
        "trials:     {} — {} completed, {} failed, {} running, {} pending",
        trials.len(),
        count(TrialState::Completed),
        count(TrialState::Failed),
        count(TrialState::Running),
        count(TrialState::Pending)
    );
    match best {
        Some(b) => out!(
            "best:       #{} {} = {}  {}",
            b.id,
            meta.objective,
            b.value.unwrap_or(f64::NAN),
            crate::campaign::describe_params(&b.params)
        ),
        None => out!("best:       (no completed trial yet)"),
    }
    out!("");
    out!("{:>6}  {:<10} {:>14} {:>9}  params", "trial", "state", meta.objective, "time (s)");
    for t in &trials {
        let secs = match (t.started_at, t.finished_at) {
            (Some(a), Some(b)) => format!("{:.1}", b - a),
            _ => "-".into(),
        };
        out!(
            "{:>6}  {:<10} {:>14} {:>9}  {}",
            t.id,
            t.state.as_str(),
            t.value.map_or("-".into(), crate::space::Assignment::format_float),
            secs,
            crate::campaign::describe_params(&t.params)
        );
        if let Some(f) = &t.failure {
            out!("{:>6}  └ {}", "", f);
        }
    }
    Ok(())
}
