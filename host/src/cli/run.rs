//! `alcf-host run`: resolve the config and flags into a study, open or create it, and drive its
//! campaign with a progress display and the study's own host.log.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, bail};
use tracing::Instrument;

use alcf_host::campaign::event::{Fanout, LogObserver, Observer};
use alcf_host::campaign::{Campaign, CampaignSettings, Interrupts, StopReason, Summary};
use alcf_host::config::{Config, Direction, ExecutorConfig};
use alcf_host::executor::bench::{self, BenchExecutor};

use alcf_host::executor::{self, Executor};
use alcf_host::plugin::agent::SandboxedAgent;
use alcf_host::plugin::capability::Capabilities;
use alcf_host::plugin::sandbox::{Grants, Storage};
use alcf_host::plugin::strategy::{PluginError, PluginLimits, SandboxedStrategy, StudyInfo};
use alcf_host::plugin::{Loaded, PluginRuntime, default_cache_dir};
use alcf_host::space::{Assignment, SearchSpace};
use alcf_host::study::{StudyDb, StudyLock, StudyMeta, TrialRow};
use alcf_host::trial::{TrialRules, TrialService, describe_params};

use crate::cli::progress::Progress;
use crate::cli::{check_study_name, console, default_root, logging};

/// `alcf-host run` options (also its command-line flags).
#[derive(Debug, Clone, Default, clap::Args)]
pub struct RunOptions {
    /// Strategy plugin, e.g. plugins/gp_ucb.wasm (overrides [strategy] plugin).
    #[arg(long, value_name = "FILE.wasm")]
    pub strategy: Option<PathBuf>,
    /// Study configuration (TOML); see config/quickstart.toml and docs/config.md.
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

/// Everything a run needs, resolved from the config file, the flags and (on resume) the study.
struct Plan {
    name: String,
    dir: PathBuf,
    space: SearchSpace,
    objective: String,
    direction: Direction,
    /// Every objective of a multi-objective study (the first is `objective`); empty for one.
    objectives: Vec<(String, Direction)>,
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
        config.executor = Some(ExecutorConfig::Bench { function: name.to_string(), dim, delay: None, epochs: None });
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
        config.max_time = Some(alcf_host::config::parse_duration(t).map_err(|m| anyhow::anyhow!("--max-time: {m}"))?);
    }
    if let Some(s) = &opts.strategy {
        config.strategy.plugin = Some(s.clone());
    }

    let Some(executor_cfg) = config.executor.clone() else {
        bail!(
            "nothing to run: give --objective bench:NAME, or a --config with an [executor] section (see config/quickstart.toml)"
        );
    };
    // What the executor implies: its space (bench functions bring their own), a default objective
    // and the stem of a default study name.
    let mut bench_objectives = Vec::new();
    let (space, default_objective, stem) = match &executor_cfg {
        ExecutorConfig::Bench { function, dim, delay, .. } => {
            let b = BenchExecutor::new(function, *dim, *delay)?;
            // A multi-objective problem (bench:zdt1_d5) brings its objectives, all minimized.
            bench_objectives =
                b.objectives().unwrap_or_default().iter().map(|m| (m.clone(), Direction::Minimize)).collect();
            let space = config.space.clone().unwrap_or_else(|| b.space());
            (space, Some(bench::METRIC.to_string()), b.function().name.clone())
        }
        ExecutorConfig::Local(_) => {
            let Some(space) = config.space.clone() else {
                bail!(
                    "the local executor needs a search space: add a [space] table or study.space = \"file\" to the config"
                );
            };
            (space, None, "local".to_string())
        }
        ExecutorConfig::Pbs(_) => {
            let Some(space) = config.space.clone() else {
                bail!(
                    "the pbs executor needs a search space: add a [space] table or study.space = \"file\" to the config"
                );
            };
            (space, None, "pbs".to_string())
        }
        ExecutorConfig::Globus(_) => {
            let Some(space) = config.space.clone() else {
                bail!(
                    "the globus executor needs a search space: add a [space] table or study.space = \"file\" to the config"
                );
            };
            (space, None, "globus".to_string())
        }
    };
    if config.objective.is_none() && bench_objectives.len() > 1 {
        config.objective = Some(bench_objectives[0].0.clone());
        config.direction = Some(Direction::Minimize);
        config.objectives = bench_objectives;
    }
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
    let executor = executor::from_config(&executor_cfg, &space, config.parallel, &name)?;
    // Before any study exists: a missing program is a config error, not three failed trials.
    executor.preflight()?;
    let executor_desc = executor.describe();
    let root = opts.root.clone().or(config.root.clone()).unwrap_or_else(default_root);
    let dir = root.join(&name);
    let seed = config.seed;
    let objectives = if config.is_multi_objective() { config.objectives.clone() } else { Vec::new() };
    Ok(Plan { name, dir, space, objective, direction, objectives, seed, config, executor, executor_desc })
}

/// Runs one study: the `run` command, and each study of `compare --config`.
pub async fn run(opts: RunOptions) -> anyhow::Result<Summary> {
    let plan = plan(&opts)?;
    let plugin_path = plan.config.strategy.plugin.clone().ok_or_else(|| {
        anyhow::anyhow!("no strategy plugin: pass --strategy plugins/NAME.wasm or set [strategy] plugin in the config")
    })?;

    let exists = plan.dir.join(alcf_host::study::DB_FILE).exists();
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
    let runtime = PluginRuntime::shared(default_cache_dir())?;
    let loaded = match runtime.load_any(&plugin_path)? {
        Loaded::Strategy(p) => Driver::Strategy(Arc::new(p)),
        Loaded::Agent(a) => Driver::Agent(Arc::new(a)),
    };
    let pruner = match &plan.config.pruner {
        Some(p) => Some(load_pruner(&plan, p, &runtime).await?),
        None => None,
    };
    if let Driver::Strategy(strategy) = &loaded {
        check_multi_objective(&plan, &plan.objectives, strategy.clone(), &plugin_path).await?;
    }
    match &loaded {
        Driver::Strategy(loaded) if !exists => check_options(&plan, loaded.clone()).await?,
        Driver::Strategy(_) => {}
        Driver::Agent(_) => check_agent(&plan, &plugin_path)?,
    }
    let lock = StudyLock::acquire(&plan.dir)?;
    // Every log line of this study, the plugin's included, goes to its own host.log.
    let span = logging::study_span(&plan.dir.join("host.log"));
    run_locked(opts, plan, plugin_path, loaded, pruner, exists, lock).instrument(span).await
}

/// The plugin that drives a study: a strategy the campaign asks, or an agent that runs its own loop.
enum Driver {
    Strategy(Arc<alcf_host::plugin::LoadedPlugin>),
    Agent(Arc<alcf_host::plugin::LoadedAgent>),
}

impl Driver {
    fn summary(&self) -> &alcf_host::plugin::ComponentSummary {
        match self {
            Driver::Strategy(p) => &p.summary,
            Driver::Agent(a) => &a.summary,
        }
    }
}

/// An agent needs the `jobs` grant and decides itself which trials to stop (`jobs.cancel`).
fn check_agent(plan: &Plan, plugin: &Path) -> anyhow::Result<()> {
    let file = plan.config.source.as_ref().map_or("the config".to_string(), |p| p.display().to_string());
    if !Grants::from_list(&plan.config.strategy.allow).jobs {
        bail!(
            "{} is an agent plugin: it runs trials through the `jobs` capability, which is not granted. Add \"jobs\" to strategy.allow in {file}",
            plugin.display()
        );
    }
    if plan.config.pruner.is_some() {
        bail!(
            "{} is an agent plugin: it stops trials itself (jobs.cancel), so a [pruner] cannot serve it. Remove [pruner] from {file}",
            plugin.display()
        );
    }
    Ok(())
}

/// `[pruner]`: loads the plugin, checks that it prunes and accepts its options (before any study
/// exists, so a wrong one leaves nothing behind).
async fn load_pruner(
    plan: &Plan,
    cfg: &alcf_host::config::PrunerConfig,
    runtime: &PluginRuntime,
) -> anyhow::Result<Arc<alcf_host::plugin::LoadedPlugin>> {
    let file = plan.config.source.as_ref().map_or("the config".to_string(), |p| p.display().to_string());
    let loaded = Arc::new(runtime.load(&cfg.plugin).with_context(|| format!("[pruner] plugin in {file}"))?);
    let study = pruner_info(plan, plan.space.clone(), plan.objective.clone(), plan.direction, plan.seed, cfg);
    let mut probe =
        SandboxedStrategy::new(loaded.clone(), &study, plugin_limits(plan, 0), pruner_grants(), Storage::memory());
    let info = probe.describe().await?;
    if plan.objectives.len() > 1 && !info.multi_objective {
        bail!(
            "[pruner] plugin `{}` ({}) judges one objective, but this study has {} ({}); none of the shipped pruners handles several: remove [pruner] from {file}; no study was created",
            info.name,
            cfg.plugin.display(),
            plan.objectives.len(),
            objective_names(&plan.objectives)
        );
    }
    if !info.prunes {
        bail!(
            "[pruner] plugin {} does not prune (its describe says prunes = false): name a pruning plugin there, e.g. plugins/pruner.wasm, in {file}",
            cfg.plugin.display()
        );
    }
    if let Err(PluginError::Options { plugin, message }) = probe.suggest(0, &[]).await {
        bail!(
            "plugin `{plugin}` does not accept its options: {message}. Fix [pruner] options in {file}; no study was created"
        );
    }
    Ok(loaded)
}

/// Shipped strategies that say `multi_objective` in their info, for the refusal below.
const MULTI_OBJECTIVE_PLUGINS: &str = "plugins/genetic.wasm (NSGA-II), plugins/random.wasm, plugins/random_py.wasm";

fn objective_names(objectives: &[(String, Direction)]) -> String {
    objectives.iter().map(|(m, d)| format!("{} {m}", d.as_str())).collect::<Vec<_>>().join(", ")
}

/// A study with several objectives needs a strategy whose info says `multi_objective`: refused
/// before any study exists, with the shipped plugins that qualify.
async fn check_multi_objective(
    plan: &Plan,
    objectives: &[(String, Direction)],
    loaded: Arc<alcf_host::plugin::LoadedPlugin>,
    plugin: &Path,
) -> anyhow::Result<()> {
    if objectives.len() < 2 {
        return Ok(());
    }
    let study = StudyInfo {
        objectives: objectives.to_vec(),
        ..study_info(plan, plan.space.clone(), objectives[0].0.clone(), objectives[0].1, plan.seed)
    };
    let grants = Grants::from_list(&plan.config.strategy.allow);
    let mut probe = SandboxedStrategy::new(loaded, &study, plugin_limits(plan, 0), grants, Storage::memory());
    let info = probe.describe().await?;
    if !info.multi_objective {
        let file = plan.config.source.as_ref().map_or("the config".to_string(), |p| p.display().to_string());
        bail!(
            "strategy `{}` ({}) optimizes one objective, but study `{}` has {} ({}): use a multi-objective strategy (shipped: {MULTI_OBJECTIVE_PLUGINS}) or keep one objective in {file}; no study was created",
            info.name,
            plugin.display(),
            plan.name,
            objectives.len(),
            objective_names(objectives)
        );
    }
    Ok(())
}

/// A pruner logs; it has no storage of its own (the study's belongs to the strategy) and no LLM.
fn pruner_grants() -> Grants {
    Grants::from_list(&["log".to_string()])
}

fn pruner_info(
    plan: &Plan,
    space: SearchSpace,
    objective: String,
    direction: Direction,
    seed: u64,
    cfg: &alcf_host::config::PrunerConfig,
) -> StudyInfo {
    StudyInfo { options: cfg.options.clone(), ..study_info(plan, space, objective, direction, seed) }
}

async fn run_locked(
    opts: RunOptions,
    plan: Plan,
    plugin_path: PathBuf,
    loaded: Driver,
    pruner: Option<Arc<alcf_host::plugin::LoadedPlugin>>,
    exists: bool,
    lock: StudyLock,
) -> anyhow::Result<Summary> {
    let summary = loaded.summary();
    tracing::info!(
        plugin = %plugin_path.display(),
        sha256 = %summary.sha256,
        cached = summary.cached,
        ms = summary.load_time.as_secs_f64() * 1e3,
        "plugin loaded"
    );
    let (db, space, objective, direction, seed) = if exists {
        open_existing(&opts, &plan, summary)?
    } else {
        let meta = StudyMeta {
            name: plan.name.clone(),
            objective: plan.objective.clone(),
            direction: plan.direction.as_str().to_string(),
            seed: plan.seed,
            space: plan.space.to_json(),
            executor: plan.executor_desc.clone(),
            plugin: plugin_path.display().to_string(),
            plugin_sha256: summary.sha256.clone(),
            created_at: alcf_host::study::now(),
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
    // A stale lock taken over from a dead holder is worth a line in the study's record.
    db.note_lock(&lock)?;
    // Checked against the study's own space (a bench study's comes from its function).
    for params in plan.config.check_enqueue(&space)? {
        db.enqueue(&params, "config")?;
    }
    let objectives = study_objectives(&opts, &plan, &db, exists)?;
    if objectives != plan.objectives
        && let Driver::Strategy(strategy) = &loaded
    {
        check_multi_objective(&plan, &objectives, strategy.clone(), &plugin_path).await?;
    }
    // The first of several objectives is the study's `objective` (each trial's value).
    let (objective, direction) = objectives.first().cloned().unwrap_or((objective, direction));
    let db = Arc::new(db);

    let study = StudyInfo {
        objectives: objectives.clone(),
        ..study_info(&plan, space.clone(), objective.clone(), direction, seed)
    };
    let limits = plugin_limits(&plan, plan.config.strategy.max_restarts);
    let progress = Progress::new(&objective, !opts.quiet);
    let caps = capabilities(&plan, db.clone(), opts.quiet, Arc::new(progress.printer())).await?;
    let pruner = match (pruner, &plan.config.pruner) {
        (Some(loaded), Some(cfg)) => {
            let info = StudyInfo {
                objectives: objectives.clone(),
                ..pruner_info(&plan, space.clone(), objective.clone(), direction, seed, cfg)
            };
            let caps = Capabilities::new(pruner_grants(), Storage::memory());
            Some(SandboxedStrategy::with_capabilities(loaded, &info, limits.clone(), &caps))
        }
        _ => None,
    };
    let rules = TrialRules {
        study: plan.name.clone(),
        trials_dir: plan.dir.join("trials"),
        objective: objective.clone(),
        direction,
        budget: plan.config.trials,
        retries: plan.config.retries,
    };
    let mut loaded_trials = TrialService::load(db.clone(), space, rules)?;
    loaded_trials.service.set_objectives(&objectives);
    if !opts.quiet {
        console(&format!(
            "{} study `{}` in {} — strategy {}, {}, {}",
            if exists { "Resuming" } else { "Starting" },
            plan.name,
            plan.dir.display(),
            plugin_path.display(),
            plan.executor_desc,
            if objectives.is_empty() {
                format!("{} {objective}", direction.as_str())
            } else {
                objective_names(&objectives)
            }
        ));
    }
    let observers: Vec<Box<dyn Observer>> = vec![Box::new(LogObserver), Box::new(progress)];
    let settings = CampaignSettings { max_time: plan.config.max_time, parallel: plan.config.parallel };
    let mut campaign = match loaded {
        Driver::Strategy(loaded) => Campaign::new(
            loaded_trials,
            SandboxedStrategy::with_capabilities(loaded, &study, limits.clone(), &caps),
            plan.executor.clone(),
            settings,
            Box::new(Fanout(observers)),
            Interrupts::listen(),
        ),
        Driver::Agent(loaded) => {
            let (jobs, calls) = alcf_host::campaign::agent::jobs_channel();
            let agent = SandboxedAgent::new(loaded, &study, limits.clone(), &caps.with_jobs(jobs));
            Campaign::new_agent(
                loaded_trials,
                agent,
                calls,
                plan.executor.clone(),
                settings,
                Box::new(Fanout(observers)),
                Interrupts::listen(),
            )
        }
    };
    if let Some(p) = pruner {
        campaign = campaign.with_pruner(p);
    }
    let summary = campaign.run().await?;
    if !opts.quiet {
        let trials = db.trials()?;
        print_summary(&plan.name, &plan.dir, &summary, &objective, &trials);
        let reference = plan.config.hypervolume_reference.as_deref().filter(|_| objectives == plan.objectives);
        let front = if objectives.len() > 1 { alcf_host::multi::front(&trials, &objectives, reference) } else { None };
        if let Some(front) = front {
            console(&format!(
                "Pareto front: {} of {} completed trials, hypervolume {} (reference point ({}): {})",
                front.members.len(),
                front.points,
                Assignment::format_float(front.hypervolume),
                front.reference.iter().map(|r| Assignment::format_float(*r)).collect::<Vec<_>>().join(", "),
                front.source.describe()
            ));
        }
    }
    Ok(summary)
}

/// The plugin's capabilities: its grants, the study's storage and, with `[llm]` and the "llm"
/// grant, the LLM service. A missing login is said once here, not once per plugin call.
async fn capabilities(
    plan: &Plan,
    db: Arc<StudyDb>,
    quiet: bool,
    printer: Arc<dyn Fn(&str) + Send + Sync>,
) -> anyhow::Result<Capabilities> {
    let grants = Grants::from_list(&plan.config.strategy.allow);
    let granted = grants.llm;
    let caps = Capabilities::new(grants, Storage::Study(db.clone()));
    let file = plan.config.source.as_ref().map_or("the config".to_string(), |p| p.display().to_string());
    match (&plan.config.llm, granted) {
        (Some(cfg), true) => {
            let service =
                alcf_host::llm::connect(cfg, db).with_context(|| format!("[llm] in {file}"))?.with_notify(printer);
            if let Err(e) = service.preflight().await
                && !quiet
            {
                console(&format!(
                    "warning: {e}. Until then the strategy's LLM calls fail and it falls back to its own model"
                ));
            }
            Ok(caps.with_llm(Arc::new(service)).with_llm_timeout(cfg.call_timeout()))
        }
        (None, true) => {
            if !quiet {
                console(&format!(
                    "warning: strategy.allow grants \"llm\" but {file} has no [llm] section: the plugin's LLM calls return not-configured (docs/llm.md)"
                ));
            }
            Ok(caps)
        }
        (Some(_), false) => {
            if !quiet {
                console(&format!(
                    "warning: {file} has an [llm] section but strategy.allow does not grant \"llm\": the plugin cannot call it"
                ));
            }
            Ok(caps)
        }
        (None, false) => Ok(caps),
    }
}

/// What the plugin is told about the study in `init`.
fn study_info(plan: &Plan, space: SearchSpace, objective: String, direction: Direction, seed: u64) -> StudyInfo {
    StudyInfo {
        name: plan.name.clone(),
        space,
        direction,
        objective,
        objectives: plan.objectives.clone(),
        seed,
        budget: plan.config.trials,
        parallelism: plan.config.parallel,
        options: plan.config.strategy.options.clone(),
    }
}

fn plugin_limits(plan: &Plan, max_restarts: u32) -> PluginLimits {
    PluginLimits {
        memory_bytes: plan.config.strategy.memory_bytes,
        call_timeout: plan.config.strategy.suggest_timeout,
        max_restarts,
    }
}

/// Plugin options the plugin refuses are the config's error: found before a study exists, so a
/// typo leaves nothing behind and costs no restarts. The plugin is instantiated once, in memory.
async fn check_options(plan: &Plan, loaded: Arc<alcf_host::plugin::LoadedPlugin>) -> anyhow::Result<()> {
    let study = study_info(plan, plan.space.clone(), plan.objective.clone(), plan.direction, plan.seed);
    let limits = plugin_limits(plan, 0);
    let grants = Grants::from_list(&plan.config.strategy.allow);
    let mut probe = SandboxedStrategy::new(loaded, &study, limits, grants, Storage::memory());
    match probe.suggest(0, &[]).await {
        Err(e @ PluginError::Options { .. }) => {
            let file = plan.config.source.as_ref().map_or("the config".to_string(), |p| p.display().to_string());
            bail!("{e}. Fix [strategy] options in {file}; no study was created")
        }
        // Anything else is the plugin's to answer for, under the campaign's restart rules.
        _ => Ok(()),
    }
}

/// The study's objectives when it has several (empty for one): a new study records the config's;
/// a resumed one keeps its own, as `open_existing` keeps its objective, unless no trial has
/// completed. The hypervolume's reference point follows the config.
fn study_objectives(
    opts: &RunOptions,
    plan: &Plan,
    db: &StudyDb,
    exists: bool,
) -> anyhow::Result<Vec<(String, Direction)>> {
    let reference = plan.config.hypervolume_reference.as_deref();
    if !exists {
        alcf_host::multi::store(db, &plan.objectives, reference)?;
        return Ok(plan.objectives.clone());
    }
    let stored = alcf_host::multi::objectives_of(db)?;
    if stored == plan.objectives {
        alcf_host::multi::store(db, &stored, reference)?;
        return Ok(stored);
    }
    let describe =
        |o: &[(String, Direction)]| if o.is_empty() { "one objective".to_string() } else { objective_names(o) };
    let completed = db.trials()?.iter().filter(|t| t.state == alcf_host::study::TrialState::Completed).count();
    let (note, kept) = if completed == 0 {
        if plan.objectives.is_empty() {
            db.delete_meta(alcf_host::multi::OBJECTIVES_KEY)?;
        } else {
            alcf_host::multi::store(db, &plan.objectives, reference)?;
            db.set_meta("objective", &plan.objectives[0].0)?;
            db.set_meta("direction", plan.objectives[0].1.as_str())?;
        }
        let note = format!(
            "the objectives changed from {} to {}; no trial has completed, so the study now optimizes {}",
            describe(&stored),
            describe(&plan.objectives),
            describe(&plan.objectives)
        );
        (note, plan.objectives.clone())
    } else {
        let note = format!(
            "the objectives in the config ({}) are not the study's; its {} are kept because {completed} trial(s) completed with them (start a new study with --study NAME for the new ones)",
            describe(&plan.objectives),
            describe(&stored)
        );
        (note, stored)
    };
    tracing::warn!("{note}");
    db.event("config-changed", None, &note)?;
    if !opts.quiet {
        console(&format!("warning: {note}"));
    }
    Ok(kept)
}

/// Opens a study for `--resume`. A study keeps what it was created with; a changed config is
/// reported, never silently mixed in — except a changed objective while no trial has completed:
/// then every trial failed, most likely for the very objective the user just fixed.
fn open_existing(
    opts: &RunOptions,
    plan: &Plan,
    loaded: &alcf_host::plugin::ComponentSummary,
) -> anyhow::Result<(StudyDb, SearchSpace, String, Direction, u64)> {
    let db = StudyDb::open(&plan.dir)?;
    let meta = db.meta()?;
    let space = SearchSpace::from_json(&meta.space)
        .map_err(|m| anyhow::anyhow!("{}: stored space: {m}", db.path().display()))?;
    let mut notes = Vec::new();
    if space != plan.space {
        notes.push("the search space in the config differs from the study's; the study's is used".to_string());
    }
    if meta.executor != plan.executor_desc {
        notes.push(format!("the executor changed: study `{}`, now `{}`", meta.executor, plan.executor_desc));
        db.set_meta("executor", &plan.executor_desc)?;
    }
    let mut objective = meta.objective.clone();
    if meta.objective != plan.objective {
        let completed = db.trials()?.iter().filter(|t| t.state == alcf_host::study::TrialState::Completed).count();
        if completed == 0 {
            notes.push(format!(
                "the objective changed from `{}` to `{}`; no trial has completed, so the study now optimizes `{}`",
                meta.objective, plan.objective, plan.objective
            ));
            db.set_meta("objective", &plan.objective)?;
            objective = plan.objective.clone();
        } else {
            notes.push(format!(
                "the objective in the config (`{}`) is not the study's; `{}` is kept because {completed} trial(s) completed with it (start a new study with --study NAME to optimize `{}`)",
                plan.objective, meta.objective, plan.objective
            ));
        }
    }
    if meta.plugin_sha256 != loaded.sha256 {
        notes.push(format!(
            "the plugin changed since the study was created ({} -> {}); finished trials are replayed into the new build",
            &meta.plugin_sha256[..12.min(meta.plugin_sha256.len())],
            &loaded.sha256[..12]
        ));
        db.set_meta("plugin_sha256", &loaded.sha256)?;
    }
    for note in notes {
        tracing::warn!("{note}");
        db.event("config-changed", None, &note)?;
        if !opts.quiet {
            console(&format!("warning: {note}"));
        }
    }
    let direction = Direction::parse(&meta.direction).unwrap_or(plan.direction);
    Ok((db, space, objective, direction, meta.seed))
}

fn print_summary(name: &str, dir: &Path, s: &Summary, objective: &str, trials: &[TrialRow]) {
    let why = match &s.reason {
        StopReason::Budget => "trial budget reached".to_string(),
        StopReason::Time => "time budget reached".to_string(),
        StopReason::Interrupted => "interrupted; continue with --resume".to_string(),
        StopReason::Cancelled => "cancelled; running trials re-run on --resume".to_string(),
        StopReason::StrategyDone => "the strategy has nothing more to suggest".to_string(),
        StopReason::PluginFailed(m)
        | StopReason::PluginOptions(m)
        | StopReason::ExecutorFailed(m)
        | StopReason::ObjectiveMissing(m) => format!("stopped: {m}"),
    };
    let t = &s.tally;
    let pruned = if t.pruned > 0 { format!(", {} pruned", t.pruned) } else { String::new() };
    console(&format!(
        "Study `{name}`: {} completed{pruned}, {} failed ({} this run, {:.1} s) — {why}",
        t.completed,
        t.failed,
        t.this_run,
        s.elapsed.as_secs_f64()
    ));
    if let Some((id, v)) = t.best
        && let Some(row) = trials.iter().find(|r| r.id == id)
    {
        console(&format!("Best trial #{id}: {objective} = {v}  {}", describe_params(&row.params)));
    }
    console(&format!(
        "Details: alcf-host study show {name} --root {}",
        dir.parent().unwrap_or(Path::new(".")).display()
    ));
}
