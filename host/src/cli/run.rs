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

    let runtime = PluginRuntime::new(default_cache_dir())?;
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

