//! `alcf-host compare`: runs several strategies on one objective, each several times with seeds
//! shared across strategies (repeat r uses seed S + r for every strategy), and writes a report:
//! a summary table (stdout, `summary.md`, `summary.json`), every trial (`trials.csv`,
//! `trials.json`) and best-so-far curves with bands (`curves.png`, `curves.svg`).
//!
//! Two ways to run:
//! - `--objective bench:NAME`: in-process, on an in-memory study, on all cores. Each
//!   (strategy, repeat) is a job; worker threads each run the campaign loop — the same one as
//!   `alcf-host run`, with the bench executor — on their own current-thread tokio runtime,
//!   sharing one [`PluginRuntime`] and the loaded plugins. With `--parallel K` the campaign keeps
//!   K trials pending; bench trials finish at once, so each round observes the K finished trials
//!   in one call and asks for K more, listing none pending. On a current-thread runtime the order
//!   of events is fixed, so a run is reproducible from its seed.
//! - `--config FILE`: real trials through the configured executor. Each (strategy, repeat) is a
//!   durable study `compare-<name>-<strategy>-r<r>` under the report directory's `studies/`, run by
//!   the campaign loop; running the same command again with `--out DIR` resumes them.
//!
//! Statistics live in [`stats`], the tables and raw files in [`report`], the plots in [`plot`].

pub mod plot;
pub mod report;
pub mod stats;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use anyhow::{Context, bail};
use serde::Serialize;

use alcf_host::campaign::event::{Event, Observer};
use alcf_host::campaign::{Campaign, CampaignSettings, Interrupts, StopReason};
use alcf_host::config::{Config, Direction, StrategyConfig};
use alcf_host::executor::bench::{self, BenchExecutor};
use alcf_host::plugin::sandbox::{Grants, Storage};
use alcf_host::plugin::strategy::{PluginLimits, SandboxedStrategy, StudyInfo};
use alcf_host::plugin::{LoadedPlugin, PluginRuntime, default_cache_dir};
use alcf_host::space::SearchSpace;
use alcf_host::study::{StudyDb, StudyMeta, TrialState};
use alcf_host::trial::{TrialRules, TrialService};
use tracing::Instrument;

use crate::cli::logging;

/// Trials per run and repeats per strategy when not given.
pub const DEFAULT_TRIALS: u32 = 100;
pub const DEFAULT_REPEATS: u32 = 10;

/// `alcf-host compare` options, after clap.
#[derive(Debug, Clone, Default)]
pub struct CompareOptions {
    pub strategies: Vec<PathBuf>,
    /// `bench:NAME[:DIM]`.
    pub objective: Option<String>,
    pub config: Option<PathBuf>,
    pub trials: Option<u32>,
    pub repeats: Option<u32>,
    pub parallel: Option<u32>,
    pub seed: Option<u64>,
    pub out: Option<PathBuf>,
    /// Worker threads (bench) or studies run at once (config).
    pub jobs: Option<usize>,
    pub quiet: bool,
    /// Print summary.json's content instead of the table.
    pub json: bool,
}

/// What the report's "final" figure is.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Metric {
    /// Simple regret: the noiseless value of the best trial − the bench function's known optimum
    /// (lower is better). `None`: a family of instances, one per repeat, each with its own.
    Regret { optimum: Option<f64> },
    /// The best objective value, in the study's direction.
    Best {
        #[serde(serialize_with = "direction_str")]
        direction: Direction,
    },
    /// A multi-objective bench problem (`bench:zdt1_d5`): the hypervolume of the front of the
    /// completed trials so far against `reference` (higher is better); `front` is the true
    /// front's hypervolume against it.
    Hypervolume { objectives: Vec<String>, reference: Vec<f64>, front: f64 },
}

impl Metric {
    pub fn is_regret(&self) -> bool {
        matches!(self, Metric::Regret { .. })
    }

    pub fn direction(&self) -> Direction {
        match self {
            Metric::Regret { .. } => Direction::Minimize,
            Metric::Best { direction } => *direction,
            Metric::Hypervolume { .. } => Direction::Maximize,
        }
    }

    /// Short column name: "regret", "best" or "hypervolume".
    pub fn label(&self) -> &'static str {
        match self {
            Metric::Regret { .. } => "regret",
            Metric::Best { .. } => "best",
            Metric::Hypervolume { .. } => "hypervolume",
        }
    }
}

fn direction_str<S: serde::Serializer>(d: &Direction, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(d.as_str())
}

/// One compared strategy.
#[derive(Debug, Clone, Serialize)]
pub struct StrategyEntry {
    /// File stem, with its options if any, made unique (`random`, `random#2`, `gp_ucb{acquisition=logei}`).
    pub name: String,
    pub path: PathBuf,
    pub sha256: String,
    /// Plugin options (`--strategy FILE.wasm@{JSON}`), given to the plugin as `study.options`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub options: Option<serde_json::Value>,
}

/// Splits `FILE.wasm@{"key": value}` into the file and its plugin options (a JSON object).
pub fn parse_strategy_arg(arg: &Path) -> anyhow::Result<(PathBuf, Option<serde_json::Value>)> {
    let text = arg.to_string_lossy();
    let Some(at) = text.find("@{") else { return Ok((arg.to_path_buf(), None)) };
    let options: serde_json::Value = serde_json::from_str(&text[at + 1..])
        .with_context(|| format!("--strategy {text}: the options after `@` must be a JSON object"))?;
    if !options.is_object() {
        bail!("--strategy {text}: the options after `@` must be a JSON object");
    }
    Ok((PathBuf::from(&text[..at]), Some(options)))
}

/// `{"a":1,"b":"x"}` as `a=1,b=x`, for labels.
fn options_label(options: &serde_json::Value) -> String {
    options
        .as_object()
        .map(|o| {
            o.iter()
                .map(|(k, v)| match v {
                    serde_json::Value::String(s) => format!("{k}={s}"),
                    v => format!("{k}={v}"),
                })
                .collect::<Vec<_>>()
                .join(",")
        })
        .unwrap_or_default()
}

/// One finished trial of a run, in completion order.
#[derive(Debug, Clone, Serialize)]
pub struct TrialResult {
    /// 1-based position in completion order (the x axis of the curves).
    pub trial: u32,
    /// The trial's id within its run (suggestion order; the study's trial id with --config).
    pub id: u64,
    pub params: serde_json::Map<String, serde_json::Value>,
    /// `None`: the trial failed.
    pub value: Option<f64>,
    /// Best value so far (in the study's direction).
    pub best: Option<f64>,
    /// Bench objectives: the noiseless value of the best trial so far (the incumbent, by
    /// observed value) − the optimum; `best − optimum` on a function without noise.
    pub regret: Option<f64>,
    /// The noiseless value of this trial, on a noisy bench function.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub true_value: Option<f64>,
    /// Each objective's value, on a multi-objective problem (`None`: the trial failed).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub values: Option<Vec<f64>>,
    /// Wall time of the `suggest` call that proposed this trial, divided by the number of
    /// suggestions it returned (seconds). Not measured with --config.
    pub suggest_s: Option<f64>,
}

/// One (strategy, repeat).
#[derive(Debug, Clone, Serialize)]
pub struct RunResult {
    /// Index into [`Comparison::strategies`].
    pub strategy: usize,
    pub repeat: u32,
    pub seed: u64,
    /// The bench problem this run optimized (for a family: its instance = the seed).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub problem: Option<String>,
    /// That problem's known optimum.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub optimum: Option<f64>,
    pub trials: Vec<TrialResult>,
    /// On a multi-objective problem: how many completed trials are on the run's Pareto front.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub front_size: Option<usize>,
    /// Total wall time of `suggest` calls and the number of suggestions they returned.
    pub suggest_s: f64,
    pub suggestions: u32,
    /// Total wall time of `observe` calls and their number.
    pub observe_s: f64,
    pub observe_calls: u32,
    pub elapsed_s: f64,
    /// Set when the plugin (or the run) failed: this run is left out of the statistics.
    pub error: Option<String>,
    /// Faults the sandbox contained (the plugin was restarted and the run went on).
    pub warnings: Vec<String>,
    /// What the strategy spent on the LLM (from the study's audit log; --config only).
    pub llm: alcf_host::study::llm_log::LlmTotals,
}

impl RunResult {
    fn new(strategy: usize, repeat: u32, seed: u64) -> RunResult {
        RunResult {
            strategy,
            repeat,
            seed,
            problem: None,
            optimum: None,
            trials: Vec::new(),
            front_size: None,
            suggest_s: 0.0,
            suggestions: 0,
            observe_s: 0.0,
            observe_calls: 0,
            elapsed_s: 0.0,
            error: None,
            warnings: Vec::new(),
            llm: Default::default(),
        }
    }

    /// The run's final figure: its last regret (bench) or best value (config).
    pub fn final_metric(&self, metric: &Metric) -> Option<f64> {
        let last = self.trials.last()?;
        if metric.is_regret() { last.regret } else { last.best }
    }

    /// The best-so-far curve in the report's metric, one point per trial.
    pub fn curve(&self, metric: &Metric) -> Vec<Option<f64>> {
        self.trials.iter().map(|t| if metric.is_regret() { t.regret } else { t.best }).collect()
    }
}

/// Everything a report is made of.
#[derive(Debug, Clone, Serialize)]
pub struct Comparison {
    /// `bench:branin`, or the config file.
    pub objective: String,
    pub metric: Metric,
    pub trials: u32,
    pub repeats: u32,
    pub parallel: u32,
    pub seed: u64,
    pub jobs: usize,
    pub strategies: Vec<StrategyEntry>,
    /// Sorted by (repeat, strategy).
    pub runs: Vec<RunResult>,
    pub elapsed_s: f64,
    /// Set when the comparison was interrupted before every run finished.
    pub interrupted: bool,
}

/// What a finished trial adds to its run's record.
struct Finished {
    id: u64,
    params: serde_json::Map<String, serde_json::Value>,
    /// The observed value (`None`: the trial failed).
    value: Option<f64>,
    /// The noiseless value, on a noisy bench function.
    true_value: Option<f64>,
    /// Each objective's value, on a multi-objective problem.
    values: Option<Vec<f64>>,
    suggest_s: Option<f64>,
}

/// Adds a trial to a run's record, keeping best-so-far and regret up to date. Regret follows the
/// incumbent, the trial with the best observed value, at its noiseless value: what a user who
/// picks the best trial would get (on a noisy function that can be worse than an earlier one).
fn push_trial(run: &mut RunResult, metric: &Metric, t: Finished) {
    let last = run.trials.last();
    let prev = last.and_then(|t| t.best);
    let improved = match (prev, t.value) {
        (Some(b), Some(v)) => metric.direction().better(v, b),
        (None, Some(_)) => true,
        (_, None) => false,
    };
    let best = match metric {
        // Every objective is minimized on the bench problems.
        Metric::Hypervolume { reference, .. } => {
            let points: Vec<Vec<f64>> =
                run.trials.iter().filter_map(|r| r.values.clone()).chain(t.values.clone()).collect();
            (!points.is_empty()).then(|| alcf_pareto::hypervolume(&points, reference))
        }
        _ if improved => t.value,
        _ => prev,
    };
    let regret = match (metric, run.optimum) {
        (Metric::Regret { .. }, Some(optimum)) if improved => t.true_value.or(t.value).map(|v| v - optimum),
        (Metric::Regret { .. }, Some(_)) => last.and_then(|t| t.regret),
        _ => None,
    };
    let trial = run.trials.len() as u32 + 1;
    run.trials.push(TrialResult {
        trial,
        id: t.id,
        params: t.params,
        value: t.value,
        best,
        regret,
        true_value: t.true_value,
        values: t.values,
        suggest_s: t.suggest_s,
    });
}

/// The size of a multi-objective run's Pareto front.
fn front_size(run: &RunResult) -> usize {
    let points: Vec<Vec<f64>> = run.trials.iter().filter_map(|r| r.values.clone()).collect();
    alcf_pareto::pareto_front(&points).len()
}

/// Labels from file stems (and options), made unique.
fn strategy_names(strategies: &[(PathBuf, Option<serde_json::Value>)]) -> Vec<String> {
    let mut names: Vec<String> = Vec::new();
    for (p, options) in strategies {
        let stem = p.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_else(|| "strategy".into());
        let mut stem: String = stem
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.') { c } else { '_' })
            .collect();
        if let Some(o) = options {
            stem = format!("{stem}{{{}}}", options_label(o));
        }
        let mut name = stem.clone();
        let mut k = 2;
        while names.contains(&name) {
            name = format!("{stem}#{k}");
            k += 1;
        }
        names.push(name);
    }
    names
}

/// `reports/compare-<objective>-<UTC timestamp>`.
fn default_out_dir(objective: &str) -> PathBuf {
    let clean: String = objective
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.') { c } else { '_' })
        .collect();
    PathBuf::from("reports").join(format!("compare-{clean}-{}", utc_timestamp()))
}

/// `YYYYMMDD-HHMMSS` in UTC, now.
fn utc_timestamp() -> String {
    let secs = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
    utc_timestamp_at(secs as i64)
}

/// `YYYYMMDD-HHMMSS` in UTC of `secs` after the Unix epoch, without a date library.
fn utc_timestamp_at(secs: i64) -> String {
    let t = alcf_host::utc::UtcTime::from_unix(secs);
    format!("{:04}{:02}{:02}-{:02}{:02}{:02}", t.year, t.month, t.day, t.hour, t.minute, t.second)
}

fn parse_bench(objective: &str) -> anyhow::Result<(String, Option<usize>)> {
    let Some(rest) = objective.strip_prefix("bench:") else {
        bail!(
            "--objective takes `bench:NAME` (e.g. bench:branin, bench:ackley5); compare on real trials with --config FILE"
        );
    };
    Ok(match rest.split_once(':') {
        Some((n, d)) => (
            n.to_string(),
            Some(d.parse::<usize>().with_context(|| format!("bad dimension in --objective {objective}"))?),
        ),
        None => (rest.to_string(), None),
    })
}

/// With --config every run is a study under `out/studies/`: each gets its HTML report
/// (`alcf-host report`), and summary.md links them.
fn link_study_reports(out: &Path) -> anyhow::Result<()> {
    let mut links = Vec::new();
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(out.join("studies"))
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.join(alcf_host::study::DB_FILE).exists())
        .collect();
    dirs.sort();
    for dir in dirs {
        let db = StudyDb::open(&dir)?;
        let html = crate::cli::report::write_report(&db, &dir.join("report"))?;
        let rel = html.strip_prefix(out).unwrap_or(&html).display().to_string();
        let name = dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        links.push(format!("- [{name}]({rel})"));
    }
    if !links.is_empty() {
        let path = out.join("summary.md");
        let mut text = std::fs::read_to_string(&path).unwrap_or_default();
        text.push_str("\n## Study reports\n\n");
        text.push_str(&links.join("\n"));
        text.push('\n');
        std::fs::write(&path, text).with_context(|| format!("cannot write {}", path.display()))?;
    }
    Ok(())
}

/// Runs the comparison and writes the report. Returns the report directory.
pub async fn compare(opts: CompareOptions) -> anyhow::Result<PathBuf> {
    if opts.strategies.is_empty() {
        bail!("give at least one --strategy FILE.wasm (usually two or more, to compare)");
    }
    let repeats = opts.repeats.unwrap_or(DEFAULT_REPEATS);
    if repeats == 0 {
        bail!("--repeats must be at least 1");
    }
    if opts.parallel == Some(0) {
        bail!("--parallel must be at least 1");
    }
    if opts.trials == Some(0) {
        bail!("--trials must be at least 1");
    }
    if opts.jobs == Some(0) {
        bail!("--jobs must be at least 1");
    }
    let comparison = match (&opts.objective, &opts.config) {
        (Some(_), Some(_)) => bail!("give either --objective bench:NAME or --config FILE, not both"),
        (None, None) => bail!("nothing to compare on: give --objective bench:NAME or --config FILE"),
        (Some(objective), None) => {
            let out = opts.out.clone().unwrap_or_else(|| default_out_dir(objective));
            let c = compare_bench(&opts, objective, repeats, &out)?;
            (c, out)
        }
        (None, Some(config)) => {
            let config_obj = Config::load(config)?;
            let name = config_obj
                .name
                .clone()
                .or_else(|| config.file_stem().map(|s| s.to_string_lossy().into_owned()))
                .unwrap_or_else(|| "config".into());
            let out = opts.out.clone().unwrap_or_else(|| default_out_dir(&name));
            let c = compare_config(&opts, config, &config_obj, &name, repeats, &out).await?;
            (c, out)
        }
    };
    let (comparison, out) = comparison;
    let summaries = report::summarize(&comparison);
    report::write_all(&comparison, &summaries, &out)?;
    plot::write_curves(&comparison, &out)?;
    if opts.config.is_some() {
        link_study_reports(&out)?;
    }
    if opts.json {
        println!("{}", serde_json::to_string_pretty(&report::summary_json(&comparison, &summaries))?);
    } else if !opts.quiet {
        print!("{}", report::text_table(&comparison, &summaries));
        for s in &summaries {
            for f in &s.failures {
                println!("{}: repeat {} (seed {}) failed: {}", s.name, f.repeat, f.seed, f.error);
            }
        }
        println!("Report: {}", out.display());
    }
    if comparison.interrupted {
        bail!(
            "interrupted: the report in {} covers the finished runs only; run the same command with --out {} to resume",
            out.display(),
            out.display()
        );
    }
    Ok(out)
}

/// Loads every strategy before any work starts, so a bad file is reported with its path up front.
fn load_all(runtime: &PluginRuntime, args: &[PathBuf]) -> anyhow::Result<(Vec<StrategyEntry>, Vec<Arc<LoadedPlugin>>)> {
    let parsed: Vec<(PathBuf, Option<serde_json::Value>)> =
        args.iter().map(|a| parse_strategy_arg(a)).collect::<anyhow::Result<_>>()?;
    let names = strategy_names(&parsed);
    let mut entries = Vec::new();
    let mut plugins = Vec::new();
    for ((path, options), name) in parsed.into_iter().zip(names) {
        let loaded = runtime.load(&path).with_context(|| format!("strategy {}", path.display()))?;
        entries.push(StrategyEntry { name, path, sha256: loaded.summary.sha256.clone(), options });
        plugins.push(Arc::new(loaded));
    }
    Ok((entries, plugins))
}

fn progress_bar(total: u64, quiet: bool) -> indicatif::ProgressBar {
    if quiet || !std::io::IsTerminal::is_terminal(&std::io::stderr()) {
        return indicatif::ProgressBar::hidden();
    }
    let bar = indicatif::ProgressBar::new(total);
    bar.set_style(
        indicatif::ProgressStyle::with_template("{elapsed_precise} [{bar:30.cyan/blue}] {pos}/{len} trials  {msg}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    bar
}

/// One unit of work: strategy `strategy`, repeat `repeat`.
#[derive(Clone, Copy, Debug)]
struct Job {
    strategy: usize,
    repeat: u32,
}

fn job_list(strategies: usize, repeats: u32) -> Vec<Job> {
    // Repeat-major: the first runs finished cover every strategy.
    (0..repeats).flat_map(|repeat| (0..strategies).map(move |strategy| Job { strategy, repeat })).collect()
}

/// Plugin limits for compare runs: the config defaults.
fn default_limits() -> (PluginLimits, Grants) {
    let d = StrategyConfig::default();
    (
        PluginLimits { memory_bytes: d.memory_bytes, call_timeout: d.suggest_timeout, max_restarts: d.max_restarts },
        Grants::from_list(&d.allow),
    )
}

fn compare_bench(opts: &CompareOptions, objective: &str, repeats: u32, out: &Path) -> anyhow::Result<Comparison> {
    let (name, dim) = parse_bench(objective)?;
    let problems = BenchProblems::new(&name, dim)?;
    let metric = match problems.fixed.as_ref().and_then(BenchExecutor::multi) {
        Some(m) => Metric::Hypervolume {
            objectives: m.objectives.clone(),
            reference: m.reference(),
            front: m.front_hypervolume_11(),
        },
        None => Metric::Regret { optimum: problems.fixed.as_ref().map(|b| b.function().optimum) },
    };
    let objective = format!("bench:{}", problems.name());
    let trials = opts.trials.unwrap_or(DEFAULT_TRIALS);
    let parallel = opts.parallel.unwrap_or(1);
    let seed = opts.seed.unwrap_or(0);
    let jobs_n = opts.jobs.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));

    let runtime = PluginRuntime::shared(default_cache_dir())?;
    let (strategies, plugins) = load_all(&runtime, &opts.strategies)?;
    std::fs::create_dir_all(out).with_context(|| format!("cannot create report directory {}", out.display()))?;
    // Plugin logs (and warnings) of a bench comparison go to `compare.log` in the report directory.
    let log = out.join("compare.log");
    let jobs = job_list(strategies.len(), repeats);
    let workers = jobs_n.min(jobs.len()).max(1);
    if !opts.quiet {
        eprintln!(
            "Comparing {} on {objective}: {repeats} repeats × {trials} trials, parallel {parallel}, seeds {seed}..{}, {workers} worker thread(s)",
            strategies.iter().map(|s| s.name.as_str()).collect::<Vec<_>>().join(", "),
            seed + u64::from(repeats) - 1
        );
    }
    let bar = progress_bar(jobs.len() as u64 * u64::from(trials), opts.quiet);
    let (limits, grants) = default_limits();
    let next = AtomicUsize::new(0);
    let results: Mutex<Vec<RunResult>> = Mutex::new(Vec::with_capacity(jobs.len()));
    let start = Instant::now();
    let setup_error: Mutex<Option<String>> = Mutex::new(None);
    std::thread::scope(|scope| {
        for w in 0..workers {
            let (jobs, next, results, plugins, strategies) = (&jobs, &next, &results, &plugins, &strategies);
            let (problems, metric, bar, limits, grants, setup_error, log) =
                (&problems, &metric, &bar, &limits, &grants, &setup_error, &log);
            let spawned = std::thread::Builder::new().name(format!("compare-{w}")).spawn_scoped(scope, move || {
                let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
                    Ok(rt) => rt,
                    Err(e) => {
                        *setup_error.lock().unwrap_or_else(|p| p.into_inner()) =
                            Some(format!("cannot start a runtime: {e}"));
                        return;
                    }
                };
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(job) = jobs.get(i).copied() else { break };
                    let seed = seed + u64::from(job.repeat);
                    let executor = match problems.for_seed(seed) {
                        Ok(e) => e,
                        Err(e) => {
                            let mut run = RunResult::new(job.strategy, job.repeat, seed);
                            run.error = Some(e.to_string());
                            results.lock().unwrap_or_else(|p| p.into_inner()).push(run);
                            continue;
                        }
                    };
                    let ctx = BenchJob {
                        plugin: plugins[job.strategy].clone(),
                        strategy: &strategies[job.strategy],
                        space: executor.space(),
                        executor: Arc::new(executor),
                        metric,
                        trials,
                        parallel,
                        seed,
                        limits: limits.clone(),
                        grants: grants.clone(),
                        bar,
                    };
                    let result = rt.block_on(run_bench_job(ctx, job).instrument(logging::study_span(log)));
                    if let Some(e) = &result.error {
                        bar.println(format!(
                            "warning: {} repeat {} (seed {}) failed: {e}",
                            strategies[job.strategy].name, job.repeat, result.seed
                        ));
                    }
                    results.lock().unwrap_or_else(|p| p.into_inner()).push(result);
                }
            });
            if let Err(e) = spawned {
                *setup_error.lock().unwrap_or_else(|p| p.into_inner()) =
                    Some(format!("cannot start a worker thread: {e}"));
            }
        }
    });
    bar.finish_and_clear();
    let mut runs = results.into_inner().unwrap_or_else(|p| p.into_inner());
    if runs.len() < jobs.len()
        && let Some(e) = setup_error.into_inner().unwrap_or_else(|p| p.into_inner())
    {
        bail!("{e}");
    }
    runs.sort_by_key(|r| (r.repeat, r.strategy));
    Ok(Comparison {
        objective,
        metric,
        trials,
        repeats,
        parallel,
        seed,
        jobs: workers,
        strategies,
        runs,
        elapsed_s: start.elapsed().as_secs_f64(),
        interrupted: false,
    })
}

/// The problem(s) of a bench comparison: one function, or a family of BBOB instances
/// (`bench:bbob_f21_d10`) whose instance in each repeat is that repeat's seed.
struct BenchProblems {
    fixed: Option<BenchExecutor>,
    family: Option<alcf_testfns::suite::BbobSpec>,
}

impl BenchProblems {
    fn new(name: &str, dim: Option<usize>) -> Result<BenchProblems, bench::UnknownFunction> {
        if let Some(spec) = alcf_testfns::suite::family(name, dim)? {
            return Ok(BenchProblems { fixed: None, family: Some(spec) });
        }
        Ok(BenchProblems { fixed: Some(BenchExecutor::new(name, dim, None)?), family: None })
    }

    fn name(&self) -> String {
        match (&self.fixed, &self.family) {
            (Some(b), _) => b.function().name.clone(),
            (None, Some(f)) => f.name(),
            (None, None) => String::new(),
        }
    }

    /// The problem a run with this seed optimizes.
    fn for_seed(&self, seed: u64) -> Result<BenchExecutor, bench::UnknownFunction> {
        match (&self.fixed, &self.family) {
            (Some(b), _) => Ok(b.clone()),
            (None, Some(f)) => {
                let instance = u32::try_from(seed).map_err(|_| {
                    alcf_testfns::UnknownFunction(format!(
                        "seed {seed}: a family's instance is the seed, which must fit in 32 bits"
                    ))
                })?;
                Ok(BenchExecutor::from_function(f.with_instance(instance).build()?, None))
            }
            (None, None) => unreachable!("BenchProblems::new sets one"),
        }
    }
}

/// What one bench job needs.
struct BenchJob<'a> {
    plugin: Arc<LoadedPlugin>,
    strategy: &'a StrategyEntry,
    /// This run's problem (its own instance, for a family).
    executor: Arc<BenchExecutor>,
    space: SearchSpace,
    metric: &'a Metric,
    trials: u32,
    parallel: u32,
    seed: u64,
    limits: PluginLimits,
    grants: Grants,
    bar: &'a indicatif::ProgressBar,
}

/// Runs one strategy on a bench function in-process, through the same campaign loop and trial
/// lifecycle as `alcf-host run`, on an in-memory study.
async fn run_bench_job(ctx: BenchJob<'_>, job: Job) -> RunResult {
    let start = Instant::now();
    let mut run = RunResult::new(job.strategy, job.repeat, ctx.seed);
    run.problem = Some(ctx.executor.function().name.clone());
    run.optimum = Some(ctx.executor.function().optimum);
    if let Err(e) = drive_bench(&ctx, job, &mut run).await {
        // There is no study to resume here: drop the campaign's advice about one.
        run.error = Some(e.split(". The study is intact").next().unwrap_or(&e).to_string());
    }
    run.elapsed_s = start.elapsed().as_secs_f64();
    // Trials never run (the plugin failed) still count on the bar, so it ends at 100 %.
    ctx.bar.inc(u64::from(ctx.trials).saturating_sub(run.trials.len() as u64));
    run
}

/// What a bench run's observer collects, in the order the campaign emitted it.
#[derive(Default)]
struct Collected {
    /// (trial id, value) in completion order.
    finished: Vec<(u64, Option<f64>)>,
    /// Seconds of the `suggest` call that proposed each trial, divided by what it returned.
    share: std::collections::HashMap<u64, f64>,
    last_share: f64,
    suggest_s: f64,
    suggestions: u32,
    observe_s: f64,
    observe_calls: u32,
    warnings: Vec<String>,
    stop: Option<StopReason>,
}

struct Collector {
    shared: Arc<Mutex<Collected>>,
    bar: indicatif::ProgressBar,
}

impl Observer for Collector {
    fn event(&mut self, event: &Event) {
        let mut c = self.shared.lock().unwrap_or_else(|p| p.into_inner());
        match event {
            Event::Suggested { returned, elapsed, .. } => {
                let secs = elapsed.as_secs_f64();
                c.suggest_s += secs;
                c.suggestions += *returned as u32;
                c.last_share = secs / (*returned).max(1) as f64;
            }
            Event::TrialStarted { trial, .. } => {
                let share = c.last_share;
                c.share.insert(*trial, share);
            }
            Event::TrialFinished { trial, value, .. } => {
                c.finished.push((*trial, *value));
                self.bar.inc(1);
            }
            Event::Observed { elapsed, .. } => {
                c.observe_s += elapsed.as_secs_f64();
                c.observe_calls += 1;
            }
            Event::PluginRestarted { message } => c.warnings.push(message.clone()),
            Event::Stopped { reason } => c.stop = Some(reason.clone()),
            _ => {}
        }
    }
}

async fn drive_bench(ctx: &BenchJob<'_>, job: Job, run: &mut RunResult) -> Result<(), String> {
    let bench_name = &ctx.executor.function().name;
    let name = format!("compare-{bench_name}-{}-r{}", ctx.strategy.name, job.repeat);
    // A multi-objective problem's objectives, all minimized; the first is each trial's value.
    let objectives: Vec<(String, Direction)> =
        ctx.executor.objectives().unwrap_or_default().iter().map(|m| (m.clone(), Direction::Minimize)).collect();
    let objective = objectives.first().map_or(bench::METRIC.to_string(), |o| o.0.clone());
    let study = StudyInfo {
        name: name.clone(),
        space: ctx.space.clone(),
        direction: Direction::Minimize,
        objective: objective.clone(),
        objectives: objectives.clone(),
        seed: ctx.seed,
        budget: Some(ctx.trials),
        parallelism: ctx.parallel,
        options: ctx.strategy.options.clone().unwrap_or_else(|| serde_json::json!({})),
    };
    let mut strategy =
        SandboxedStrategy::new(ctx.plugin.clone(), &study, ctx.limits.clone(), ctx.grants.clone(), Storage::memory());
    // Instantiate and `init` the plugin before timing suggestions, so the first one is not charged
    // for it: `suggest(0)` brings an instance up and asks for nothing (its answer is ignored).
    strategy.suggest(0, &[]).await.map_err(|e| e.to_string())?;
    if !objectives.is_empty() {
        let info = strategy.describe().await.map_err(|e| e.to_string())?;
        if !info.multi_objective {
            return Err(format!(
                "strategy `{}` optimizes one objective, but bench:{bench_name} has {}: compare multi-objective strategies on it (e.g. plugins/genetic.wasm, plugins/random.wasm)",
                info.name,
                objectives.len()
            ));
        }
    }
    let meta = StudyMeta {
        name: name.clone(),
        objective: objective.clone(),
        direction: Direction::Minimize.as_str().to_string(),
        seed: ctx.seed,
        space: ctx.space.to_json(),
        executor: format!("bench:{bench_name}"),
        plugin: ctx.strategy.path.display().to_string(),
        plugin_sha256: ctx.strategy.sha256.clone(),
        created_at: alcf_host::study::now(),
    };
    let db = Arc::new(StudyDb::in_memory(&meta).map_err(|e| e.to_string())?);
    let rules = TrialRules {
        study: name,
        trials_dir: PathBuf::new(),
        objective,
        direction: Direction::Minimize,
        budget: Some(ctx.trials),
        retries: 0,
    };
    let mut loaded = TrialService::load(db.clone(), ctx.space.clone(), rules).map_err(|e| e.to_string())?;
    loaded.service.set_objectives(&objectives);
    let shared = Arc::new(Mutex::new(Collected::default()));
    let collector = Collector { shared: shared.clone(), bar: ctx.bar.clone() };
    let campaign = Campaign::new(
        loaded,
        strategy,
        ctx.executor.clone(),
        CampaignSettings { max_time: None, parallel: ctx.parallel.max(1) },
        Box::new(collector),
        Interrupts::default(),
    );
    let summary = campaign.run().await.map_err(|e| e.to_string())?;
    let rows = db.trials().map_err(|e| e.to_string())?;
    let mut c = shared.lock().unwrap_or_else(|p| p.into_inner());
    let noisy = ctx.executor.function().truth.is_some();
    for (id, value) in c.finished.clone() {
        let row = rows.iter().find(|r| r.id == id);
        let params = row.map(|r| r.params.clone()).unwrap_or_default();
        let true_value = if noisy && value.is_some() { ctx.executor.true_value_of(&params) } else { None };
        let values = match row {
            Some(r) if !objectives.is_empty() && value.is_some() => {
                objectives.iter().map(|(m, _)| r.metrics.get(m).copied()).collect::<Option<Vec<f64>>>()
            }
            _ => None,
        };
        let suggest_s = c.share.get(&id).copied();
        push_trial(run, ctx.metric, Finished { id, params, value, true_value, values, suggest_s });
    }
    if !objectives.is_empty() {
        run.front_size = Some(front_size(run));
    }
    run.suggest_s = c.suggest_s;
    run.suggestions = c.suggestions;
    run.observe_s = c.observe_s;
    run.observe_calls = c.observe_calls;
    run.warnings.append(&mut c.warnings);
    match summary.reason {
        StopReason::PluginFailed(m)
        | StopReason::PluginOptions(m)
        | StopReason::ExecutorFailed(m)
        | StopReason::ObjectiveMissing(m) => Err(m),
        _ => Ok(()),
    }
}

async fn compare_config(
    opts: &CompareOptions,
    config_path: &Path,
    config: &Config,
    name: &str,
    repeats: u32,
    out: &Path,
) -> anyhow::Result<Comparison> {
    let direction = config.direction.unwrap_or(Direction::Minimize);
    let metric = Metric::Best { direction };
    let Some(trials) = opts.trials.or(config.trials) else {
        bail!("give --trials N (or [study] trials in {}): each compared study runs that many", config_path.display());
    };
    let parallel = opts.parallel.unwrap_or(config.parallel);
    let seed = opts.seed.unwrap_or(config.seed);
    // Each study already runs `parallel` trials at once: by default, one study at a time.
    let jobs_n = opts.jobs.unwrap_or(1);

    // Load (and so check) every plugin before any study starts.
    let runtime = PluginRuntime::shared(default_cache_dir())?;
    let (strategies, _plugins) = load_all(&runtime, &opts.strategies)?;
    drop(runtime);
    if let Some(s) = strategies.iter().find(|s| s.options.is_some()) {
        bail!(
            "--strategy {}: per-strategy options (`@{{...}}`) work with --objective only; with --config the plugin options come from its [strategy] options",
            s.path.display()
        );
    }
    let studies_root = out.join("studies");
    std::fs::create_dir_all(&studies_root).with_context(|| format!("cannot create {}", studies_root.display()))?;
    let jobs = job_list(strategies.len(), repeats);
    if !opts.quiet {
        eprintln!(
            "Comparing {} on {}: {repeats} repeats × {trials} trials, parallel {parallel}, seeds {seed}..{}, {} stud(ies) at once; studies in {}",
            strategies.iter().map(|s| s.name.as_str()).collect::<Vec<_>>().join(", "),
            config_path.display(),
            seed + u64::from(repeats) - 1,
            jobs_n,
            studies_root.display()
        );
    }
    let name: String =
        name.chars().map(|c| if c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.') { c } else { '_' }).collect();
    let start = Instant::now();
    let interrupted = Arc::new(AtomicBool::new(false));
    let semaphore = Arc::new(tokio::sync::Semaphore::new(jobs_n));
    let local = tokio::task::LocalSet::new();
    let mut runs = local
        .run_until(async {
            let mut set = tokio::task::JoinSet::new();
            for job in jobs.iter().copied() {
                let Ok(permit) = semaphore.clone().acquire_owned().await else { break };
                if interrupted.load(Ordering::SeqCst) {
                    break;
                }
                let strategy = strategies[job.strategy].clone();
                let study = format!("compare-{name}-{}-r{}", strategy.name.replace('#', "_"), job.repeat);
                let ctx = ConfigJob {
                    config: config_path.to_path_buf(),
                    study,
                    root: studies_root.clone(),
                    strategy: strategy.path.clone(),
                    trials,
                    parallel,
                    seed: seed + u64::from(job.repeat),
                    metric: metric.clone(),
                    quiet: opts.quiet,
                };
                let interrupted = interrupted.clone();
                set.spawn_local(async move {
                    let _permit = permit;
                    let (run, stopped) = run_config_job(ctx, job).await;
                    if stopped {
                        interrupted.store(true, Ordering::SeqCst);
                    }
                    run
                });
            }
            let mut runs = Vec::new();
            while let Some(r) = set.join_next().await {
                match r {
                    Ok(run) => runs.push(run),
                    Err(e) => tracing::error!("a compare study panicked: {e}"),
                }
            }
            runs
        })
        .await;
    runs.sort_by_key(|r| (r.repeat, r.strategy));
    Ok(Comparison {
        objective: config_path.display().to_string(),
        metric,
        trials,
        repeats,
        parallel,
        seed,
        jobs: jobs_n,
        strategies,
        runs,
        elapsed_s: start.elapsed().as_secs_f64(),
        interrupted: interrupted.load(Ordering::SeqCst),
    })
}

struct ConfigJob {
    config: PathBuf,
    study: String,
    root: PathBuf,
    strategy: PathBuf,
    trials: u32,
    parallel: u32,
    seed: u64,
    metric: Metric,
    quiet: bool,
}

/// Runs (or resumes) one study through the campaign loop and reads its trials back. The flag is
/// true when the user interrupted it.
async fn run_config_job(ctx: ConfigJob, job: Job) -> (RunResult, bool) {
    let start = Instant::now();
    let mut run = RunResult::new(job.strategy, job.repeat, ctx.seed);
    let dir = ctx.root.join(&ctx.study);
    let exists = dir.join(alcf_host::study::DB_FILE).exists();
    if !ctx.quiet {
        eprintln!("{} study {} ({})", if exists { "Resuming" } else { "Starting" }, ctx.study, dir.display());
    }
    let opts = crate::cli::run::RunOptions {
        strategy: Some(ctx.strategy.clone()),
        config: Some(ctx.config.clone()),
        objective: None,
        trials: Some(ctx.trials),
        parallel: Some(ctx.parallel),
        seed: Some(ctx.seed),
        study: Some(ctx.study.clone()),
        root: Some(ctx.root.clone()),
        resume: exists,
        max_time: None,
        quiet: true,
    };
    let mut stopped = false;
    match crate::cli::run::run(opts).await {
        Ok(summary) => match summary.reason {
            StopReason::PluginFailed(m)
            | StopReason::PluginOptions(m)
            | StopReason::ExecutorFailed(m)
            | StopReason::ObjectiveMissing(m) => run.error = Some(m),
            StopReason::Interrupted | StopReason::Cancelled => {
                stopped = true;
                run.error = Some("interrupted; rerun the command with the same --out to resume".into());
            }
            StopReason::Budget | StopReason::Time | StopReason::StrategyDone => {}
        },
        Err(e) => run.error = Some(format!("{e:#}")),
    }
    if let Err(e) = read_study(&dir, &ctx.metric, &mut run) {
        run.error.get_or_insert(format!("cannot read the study back: {e:#}"));
    }
    run.elapsed_s = start.elapsed().as_secs_f64();
    (run, stopped)
}

/// Fills a run's trials from a study database, in completion order.
fn read_study(dir: &Path, metric: &Metric, run: &mut RunResult) -> anyhow::Result<()> {
    let db = StudyDb::open(dir)?;
    let mut rows: Vec<_> = db.trials()?.into_iter().filter(|r| r.state.is_finished()).collect();
    rows.sort_by(|a, b| {
        a.finished_at.unwrap_or(f64::MAX).total_cmp(&b.finished_at.unwrap_or(f64::MAX)).then(a.id.cmp(&b.id))
    });
    for row in rows {
        let value = if row.state == TrialState::Completed { row.value } else { None };
        push_trial(
            run,
            metric,
            Finished { id: row.id, params: row.params.clone(), value, true_value: None, values: None, suggest_s: None },
        );
    }
    run.llm = db.llm_totals()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_clean() {
        let args =
            ["a/random.wasm", "b/random.wasm", "gp ucb.wasm", r#"x/gp_ucb.wasm@{"acquisition":"logei","beta":0.5}"#];
        let parsed: Vec<_> = args.iter().map(|a| parse_strategy_arg(Path::new(a)).unwrap()).collect();
        assert_eq!(parsed[3].0, PathBuf::from("x/gp_ucb.wasm"));
        assert_eq!(parsed[3].1.as_ref().unwrap()["beta"], 0.5);
        assert_eq!(strategy_names(&parsed), ["random", "random#2", "gp_ucb", "gp_ucb{acquisition=logei,beta=0.5}"]);
        assert!(parse_strategy_arg(Path::new("a.wasm@{nope")).is_err());
        assert!(parse_strategy_arg(Path::new("a.wasm@{}x")).is_err());
    }

    #[test]
    fn timestamp_shape() {
        // Known instants (`date -u -d @SECS`): day and month differ, so a swap cannot pass.
        assert_eq!(utc_timestamp_at(1_772_600_767), "20260304-050607"); // 2026-03-04T05:06:07Z
        assert_eq!(utc_timestamp_at(1_709_251_199), "20240229-235959"); // leap day, last second
        assert_eq!(utc_timestamp_at(0), "19700101-000000");
        assert_eq!(utc_timestamp_at(951_782_400), "20000229-000000"); // a leap year divisible by 400
        let t = utc_timestamp();
        assert_eq!(t.len(), 15, "{t}");
        assert!(t.starts_with("20") && t.as_bytes()[8] == b'-', "{t}");
    }

    #[test]
    fn trials_track_best_and_regret() {
        let finished = |value, true_value| Finished {
            id: 0,
            params: Default::default(),
            value,
            true_value,
            values: None,
            suggest_s: None,
        };
        let metric = Metric::Regret { optimum: Some(1.0) };
        let mut run = RunResult::new(0, 0, 0);
        run.optimum = Some(1.0);
        for v in [Some(5.0), None, Some(3.0), Some(4.0)] {
            push_trial(&mut run, &metric, finished(v, None));
        }
        let regrets: Vec<_> = run.trials.iter().map(|t| t.regret).collect();
        assert_eq!(regrets, [Some(4.0), Some(4.0), Some(2.0), Some(2.0)]);
        assert_eq!(run.final_metric(&metric), Some(2.0));

        // Noisy: regret follows the incumbent (best observed) at its true value, even when an
        // earlier trial was truly better.
        let mut run = RunResult::new(0, 0, 0);
        run.optimum = Some(0.0);
        for (v, t) in [(5.0, 4.0), (3.0, 6.0), (4.0, 1.0), (2.5, 3.0)] {
            push_trial(&mut run, &metric, finished(Some(v), Some(t)));
        }
        let regrets: Vec<_> = run.trials.iter().map(|t| t.regret).collect();
        assert_eq!(regrets, [Some(4.0), Some(6.0), Some(6.0), Some(3.0)]);

        let metric = Metric::Best { direction: Direction::Maximize };
        let mut run = RunResult::new(0, 0, 0);
        for v in [None, Some(0.3), Some(0.7), Some(0.5)] {
            push_trial(&mut run, &metric, finished(v, None));
        }
        assert_eq!(run.curve(&metric), [None, Some(0.3), Some(0.7), Some(0.7)]);
        assert!(run.trials.iter().all(|t| t.regret.is_none()));
    }

    #[test]
    fn multi_objective_runs_track_the_hypervolume_of_their_front() {
        let metric =
            Metric::Hypervolume { objectives: vec!["f1".into(), "f2".into()], reference: vec![4.0, 4.0], front: 0.0 };
        let mut run = RunResult::new(0, 0, 0);
        for values in [None, Some(vec![1.0, 3.0]), Some(vec![3.0, 1.0]), Some(vec![3.0, 3.0]), Some(vec![2.0, 2.0])] {
            let value = values.as_ref().map(|v| v[0]);
            let t = Finished { id: 0, params: Default::default(), value, true_value: None, values, suggest_s: None };
            push_trial(&mut run, &metric, t);
        }
        // (1, 3): 3; with (3, 1): 3 + 2; the dominated (3, 3) adds nothing; (2, 2): 6.
        assert_eq!(run.curve(&metric), [None, Some(3.0), Some(5.0), Some(5.0), Some(6.0)]);
        assert_eq!(run.final_metric(&metric), Some(6.0));
        assert_eq!(front_size(&run), 3);
        assert_eq!(metric.label(), "hypervolume");
        assert_eq!(metric.direction(), Direction::Maximize);
    }

    #[test]
    fn jobs_cover_every_pair_repeat_major() {
        let jobs = job_list(2, 3);
        let pairs: Vec<_> = jobs.iter().map(|j| (j.repeat, j.strategy)).collect();
        assert_eq!(pairs, [(0, 0), (0, 1), (1, 0), (1, 1), (2, 0), (2, 1)]);
    }
}
