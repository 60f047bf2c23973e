//! The `alcf-host` command line: parses arguments and hands off to `alcf_host::commands`.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use alcf_host::commands::{self, RunOptions};

#[derive(Parser)]
#[command(
    name = "alcf-host",
    version,
    about = "Hyperparameter search on ALCF machines with sandboxed WebAssembly strategies"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run (or resume) a study: ask the strategy, run trials, record everything.
    Run(RunOptions),
    /// Compare strategies side by side: every strategy, R repeats with shared seeds, one report.
    Compare {
        /// A strategy plugin to compare; repeat the flag for each (e.g. plugins/random.wasm). With
        /// --objective, plugin options may follow as JSON: 'plugins/gp_ucb.wasm@{"acquisition":"logei"}'.
        #[arg(long = "strategy", value_name = "FILE.wasm", required = true)]
        strategies: Vec<PathBuf>,
        /// A built-in test function, run in-process on all cores: bench:NAME[:DIM], e.g. bench:branin.
        #[arg(long, value_name = "bench:NAME", conflicts_with = "config", required_unless_present = "config")]
        objective: Option<String>,
        /// Compare on real trials through this configuration's executor (one durable study per run).
        #[arg(long, value_name = "FILE")]
        config: Option<PathBuf>,
        /// Trials per run [default: 100 with --objective; the config's study.trials with --config].
        #[arg(long)]
        trials: Option<u32>,
        /// Runs per strategy; repeat r uses seed S+r for every strategy [default: 10].
        #[arg(long)]
        repeats: Option<u32>,
        /// Trials pending at once in each run (batch / asynchronous size) [default: 1, or the config's].
        #[arg(long)]
        parallel: Option<u32>,
        /// First seed S [default: 0, or the config's].
        #[arg(long)]
        seed: Option<u64>,
        /// Report directory [default: reports/compare-<objective>-<UTC time>]; with --config, give the
        /// same directory again to resume its studies.
        #[arg(long, value_name = "DIR")]
        out: Option<PathBuf>,
        /// Worker threads (bench) or studies at once (config) [default: all cores (bench), 1 (config)].
        #[arg(long)]
        jobs: Option<usize>,
        /// Print nothing but errors.
        #[arg(long, short)]
        quiet: bool,
    },
    /// Work with plugin files.
    Plugin {
        #[command(subcommand)]
        command: PluginCommand,
    },
    /// Look at recorded studies.
    Study {
        #[command(subcommand)]
        command: StudyCommand,
    },
}

#[derive(Subcommand)]
enum PluginCommand {
    /// Name, version, ABI version, capabilities and WIT imports of a plugin.
    Inspect {
        file: PathBuf,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
enum StudyCommand {
    /// All studies under the root directory.
    List {
        #[arg(long, value_name = "DIR")]
        root: Option<PathBuf>,
        #[arg(long)]
        json: bool,
    },
    /// The best trial and the trial table of one study.
    Show {
        name: String,
        #[arg(long, value_name = "DIR")]
        root: Option<PathBuf>,
        #[arg(long)]
        json: bool,
        /// Print each failed trial's whole stored log tail [default: its last 10 lines].
        #[arg(long)]
        log: bool,
    },
    /// Put a trial of your choosing first in line (validated against the study's space).
    Enqueue {
        name: String,
        /// Parameter values as a JSON object, e.g. '{"lr": 0.01, "batch": 64}'.
        #[arg(long, value_name = "JSON")]
        params: String,
        #[arg(long, value_name = "DIR")]
        root: Option<PathBuf>,
    },
    /// Release the lock of a study whose host is gone (refused while the holder runs on this host).
    Unlock {
        name: String,
        #[arg(long, value_name = "DIR")]
        root: Option<PathBuf>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Run(opts) => {
                let summary = commands::run(opts).await?;
                if let alcf_host::campaign::StopReason::PluginFailed(m)
                | alcf_host::campaign::StopReason::ExecutorFailed(m) = &summary.reason
                {
                    anyhow::bail!("{m}");
                }
                Ok(())
            }
            Command::Compare { strategies, objective, config, trials, repeats, parallel, seed, out, jobs, quiet } => {
                let opts = alcf_host::compare::CompareOptions {
                    strategies,
                    objective,
                    config,
                    trials,
                    repeats,
                    parallel,
                    seed,
                    out,
                    jobs,
                    quiet,
                };
                alcf_host::compare::compare(opts).await.map(|_| ())
            }
            Command::Plugin { command: PluginCommand::Inspect { file, json } } => commands::inspect(&file, json).await,
            Command::Study { command: StudyCommand::List { root, json } } => {
                commands::study_list(&root.unwrap_or_else(commands::default_root), json)
            }
            Command::Study { command: StudyCommand::Show { name, root, json, log } } => {
                cli::study::study_show(&root.unwrap_or_else(cli::default_root), &name, json, log)
            }
            Command::Study { command: StudyCommand::Enqueue { name, params, root } } => {
                cli::study::study_enqueue(&root.unwrap_or_else(cli::default_root), &name, &params)
            }
            Command::Study { command: StudyCommand::Unlock { name, root } } => {
                cli::study::study_unlock(&root.unwrap_or_else(cli::default_root), &name)
            }
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        // `alcf-host study show X | head` closes the pipe early: not an error.
        Err(e) if e.downcast_ref::<std::io::Error>().is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe) => {
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
