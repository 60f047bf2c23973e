//! The `alcf-host` command line: parses arguments, hands off to `cli`, and maps outcomes to exit
//! codes (documented in README.md, "Exit status").

mod cli;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use alcf_host::campaign::{StopReason, Summary};
use cli::run::RunOptions;

/// The exit statuses of `alcf-host`. Scripts (and a PBS job that runs the host) can tell from
/// them whether to resume, fix the config, or look at the plugin.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Exit {
    /// The run reached its budget or time, or the strategy finished, and a trial completed.
    Ok = 0,
    /// An error before or outside the run: the config, a plugin that cannot load, a busy study;
    /// or a configuration error the run found (plugin options, an objective no trial writes).
    Error = 1,
    /// The command line itself is wrong (clap's own status).
    Usage = 2,
    /// The plugin failed beyond its restarts, or kept proposing invalid trials.
    Plugin = 3,
    /// Trials could not be started: the executor or the trial program.
    Executor = 4,
    /// The run ended normally, but not one trial of the study has completed.
    NoneCompleted = 5,
    /// Interrupted (Ctrl-C, SIGTERM or SIGHUP once): resumable with --resume.
    Interrupted = 130,
    /// Cancelled (the second Ctrl-C): running trials were stopped; they re-run on --resume.
    Cancelled = 131,
}

fn exit_of(summary: &Summary) -> Exit {
    match summary.reason {
        StopReason::Budget | StopReason::Time | StopReason::StrategyDone => {
            if summary.tally.completed == 0 && summary.tally.total > 0 { Exit::NoneCompleted } else { Exit::Ok }
        }
        StopReason::Interrupted => Exit::Interrupted,
        StopReason::Cancelled => Exit::Cancelled,
        StopReason::PluginFailed(_) => Exit::Plugin,
        StopReason::PluginOptions(_) | StopReason::ObjectiveMissing(_) => Exit::Error,
        StopReason::ExecutorFailed(_) => Exit::Executor,
    }
}

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
        /// Print the summary (summary.json) instead of the table.
        #[arg(long)]
        json: bool,
    },
    /// The bench functions outside a study (for other tools to optimize the very same ones).
    Bench {
        #[command(subcommand)]
        command: BenchCommand,
    },
    /// Open the SSH master connection the pbs executor uses (asks for your passcode once).
    Connect {
        /// An SSH destination as in ~/.ssh/config, e.g. aurora [default: the config's executor.host].
        host: Option<String>,
        /// Take the host and control socket from this config's [executor].
        #[arg(long, value_name = "FILE")]
        config: Option<PathBuf>,
        /// How long the master stays open after its last use (ssh's ControlPersist).
        #[arg(long, default_value = "12h")]
        persist: String,
        /// Only check whether a master is open (exit status 1 if not).
        #[arg(long, conflicts_with = "exit")]
        check: bool,
        /// Close the master.
        #[arg(long)]
        exit: bool,
    },
    /// Work with plugin files.
    Plugin {
        #[command(subcommand)]
        command: PluginCommand,
    },
    /// Log in to Globus (Sophia's LLMs, Globus Compute), show the login, log out.
    Auth {
        #[command(subcommand)]
        command: cli::auth::AuthCommand,
    },
    /// Look at recorded studies.
    Study {
        #[command(subcommand)]
        command: StudyCommand,
    },
    /// Write a commented study config (local, PBS or Globus Compute) by questions or flags, then
    /// check it with `doctor`.
    Init(cli::init::InitOptions),
    /// Write a study's HTML report (self-contained; a PNG and an SVG of each figure beside it).
    Report {
        name: String,
        #[arg(long, value_name = "DIR")]
        root: Option<PathBuf>,
        /// Where the report goes [default: <study>/report/].
        #[arg(long, value_name = "DIR")]
        out: Option<PathBuf>,
    },
    /// A local web page of every study under a root, each shown live (read-only).
    Dashboard {
        #[arg(long, value_name = "DIR")]
        root: Option<PathBuf>,
        /// The port [default: 8765; 0 picks a free one].
        #[arg(long, default_value_t = 8765)]
        port: u16,
        /// The address to listen on; anything but loopback requires a token (made when not given).
        #[arg(long, default_value = "127.0.0.1")]
        listen: String,
        /// An access token every URL must carry (`?token=…`).
        #[arg(long)]
        token: Option<String>,
    },
    /// Check everything a study depends on (config, plugin, cache, disk, the executor's machine,
    /// logins, the LLM); each check with a verdict and the fix. Exit status 1 if any failed.
    Doctor {
        /// The study's configuration [default: only this machine's checks and the logins].
        #[arg(long, value_name = "FILE")]
        config: Option<PathBuf>,
        /// The strategy plugin [default: the config's].
        #[arg(long, value_name = "FILE.wasm")]
        strategy: Option<PathBuf>,
        /// Where studies go [default: the config's, or ./studies].
        #[arg(long, value_name = "DIR")]
        root: Option<PathBuf>,
        /// The checks as a JSON array.
        #[arg(long)]
        json: bool,
    },
    /// Print a shell completion script: `alcf-host completions bash > ~/.local/share/bash-completion/completions/alcf-host`.
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Write man pages (alcf-host.1 and one per subcommand) into a directory.
    Man {
        /// Where the pages go (created if missing), e.g. ~/.local/share/man/man1.
        #[arg(long, value_name = "DIR", default_value = "man")]
        out: PathBuf,
    },
}

#[derive(Subcommand)]
enum BenchCommand {
    /// A function's parameters, known optimum and minimizer, as JSON.
    Describe {
        /// bench:NAME[:DIM], e.g. bench:branin or bench:bbob_f21_d10_mixed with --instance.
        objective: String,
        /// The instance of a BBOB family (compare runs instance = seed).
        #[arg(long)]
        instance: Option<u32>,
    },
    /// Evaluate points: one JSON object of parameter values per line on stdin, one
    /// {"value", "true_value"} per line on stdout (true_value: without the noise).
    Eval {
        objective: String,
        #[arg(long)]
        instance: Option<u32>,
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
    /// Write a new plugin project (uniform random search to start from) that builds anywhere: it
    /// carries the SDK and the WIT.
    New {
        /// Plugin name: lower-case letters, digits and `_` (names the directory and the .wasm).
        name: String,
        #[arg(long, value_enum, default_value = "python")]
        lang: cli::plugin::scaffold::Lang,
        /// Directory to create the project in [default: the current directory].
        #[arg(long, value_name = "DIR")]
        dir: Option<PathBuf>,
        /// Overwrite the files of an existing, non-empty project directory.
        #[arg(long)]
        force: bool,
    },
    /// Build a plugin project (Rust or Python) into NAME.wasm and check that this host loads it.
    /// Python: installs componentize-py into the project's .venv on first use.
    Build {
        /// The project directory (holding Cargo.toml or app.py).
        #[arg(default_value = ".")]
        dir: PathBuf,
        /// Where to write the component [default: DIR/NAME.wasm].
        #[arg(long, short, value_name = "FILE")]
        out: Option<PathBuf>,
        /// Rust: build with the debug profile.
        #[arg(long)]
        debug: bool,
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
        /// Only the best N completed trials, best first.
        #[arg(long, value_name = "N")]
        top: Option<usize>,
    },
    /// Every trial as one flat table (parameters, metrics, durations, per-epoch curves) for pandas.
    Export {
        name: String,
        #[arg(long, value_enum, default_value = "csv")]
        format: cli::export::ExportFormat,
        /// Write to this file instead of stdout.
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
        #[arg(long, value_name = "DIR")]
        root: Option<PathBuf>,
    },
    /// The best trial's parameters, as JSON or as command-line flags ready to paste.
    Best {
        name: String,
        #[arg(long, value_enum, default_value = "json")]
        format: cli::export::BestFormat,
        #[arg(long, value_name = "DIR")]
        root: Option<PathBuf>,
    },
    /// Delete a study's directory (its database, logs and local trial files); asks first.
    Delete {
        name: String,
        /// Do not ask.
        #[arg(long)]
        yes: bool,
        #[arg(long, value_name = "DIR")]
        root: Option<PathBuf>,
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
    /// Every LLM call of a study: as sent, as answered, tokens, latency, retries, replays.
    LlmLog {
        name: String,
        #[arg(long, value_name = "DIR")]
        root: Option<PathBuf>,
        /// Every call's request messages and answer in full.
        #[arg(long)]
        full: bool,
        /// One JSON object per call (request and response as JSON), in a JSON array.
        #[arg(long)]
        json: bool,
    },
}

/// `alcf-host.1` and `alcf-host-<sub>.1` (and `alcf-host-<sub>-<subsub>.1`) in `dir`.
fn write_man_pages(dir: &std::path::Path) -> anyhow::Result<()> {
    use anyhow::Context;
    use clap::CommandFactory;
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    fn write(cmd: clap::Command, name: String, dir: &std::path::Path, n: &mut usize) -> anyhow::Result<()> {
        let cmd = cmd.name(name.clone());
        let mut page = Vec::new();
        clap_mangen::Man::new(cmd.clone()).render(&mut page)?;
        let path = dir.join(format!("{name}.1"));
        std::fs::write(&path, page).with_context(|| format!("cannot write {}", path.display()))?;
        *n += 1;
        for sub in cmd.get_subcommands().filter(|s| s.get_name() != "help") {
            write(sub.clone(), format!("{name}-{}", sub.get_name()), dir, n)?;
        }
        Ok(())
    }
    let mut n = 0;
    write(Cli::command(), "alcf-host".into(), dir, &mut n)?;
    cli::console(&format!("wrote {n} man pages to {} (man -l {}/alcf-host.1)", dir.display(), dir.display()));
    Ok(())
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() { Exit::Usage as u8 } else { Exit::Ok as u8 });
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            cli::console(&format!("error: cannot start the async runtime: {e}"));
            return ExitCode::from(Exit::Error as u8);
        }
    };
    cli::logging::init();
    let result: anyhow::Result<Exit> = runtime.block_on(async {
        match cli.command {
            Command::Run(opts) => {
                let summary = cli::run::run(opts).await?;
                if let StopReason::PluginFailed(m)
                | StopReason::PluginOptions(m)
                | StopReason::ExecutorFailed(m)
                | StopReason::ObjectiveMissing(m) = &summary.reason
                {
                    cli::console(&format!("error: {m}"));
                }
                Ok(exit_of(&summary))
            }
            Command::Compare {
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
                json,
            } => {
                let opts = cli::compare::CompareOptions {
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
                    json,
                };
                cli::compare::compare(opts).await.map(|_| Exit::Ok)
            }
            Command::Bench { command: BenchCommand::Describe { objective, instance } } => {
                cli::bench::describe(&objective, instance).map(|_| Exit::Ok)
            }
            Command::Bench { command: BenchCommand::Eval { objective, instance } } => {
                cli::bench::eval(&objective, instance).map(|_| Exit::Ok)
            }
            Command::Connect { host, config, persist, check, exit } => {
                cli::connect::connect(cli::connect::ConnectOptions { host, config, persist, check, exit })
                    .map(|_| Exit::Ok)
            }
            Command::Plugin { command: PluginCommand::Inspect { file, json } } => {
                cli::plugin::inspect(&file, json).await.map(|_| Exit::Ok)
            }
            Command::Plugin { command: PluginCommand::New { name, lang, dir, force } } => {
                cli::plugin::scaffold::new_project(cli::plugin::scaffold::NewOptions { name, lang, dir, force })
                    .map(|_| Exit::Ok)
            }
            Command::Plugin { command: PluginCommand::Build { dir, out, debug } } => {
                cli::plugin::build_project::build(cli::plugin::build_project::BuildOptions { dir, out, debug })
                    .map(|_| Exit::Ok)
            }
            Command::Auth { command } => cli::auth::run(command).await.map(|_| Exit::Ok),
            Command::Study { command: StudyCommand::List { root, json } } => {
                cli::study::study_list(&root.unwrap_or_else(cli::default_root), json).map(|_| Exit::Ok)
            }
            Command::Study { command: StudyCommand::Show { name, root, json, log, top } } => {
                cli::study::study_show(&root.unwrap_or_else(cli::default_root), &name, json, log, top).map(|_| Exit::Ok)
            }
            Command::Study { command: StudyCommand::Export { name, format, out, root } } => {
                cli::export::study_export(&root.unwrap_or_else(cli::default_root), &name, format, out.as_ref())
                    .map(|_| Exit::Ok)
            }
            Command::Study { command: StudyCommand::Best { name, format, root } } => {
                cli::export::study_best(&root.unwrap_or_else(cli::default_root), &name, format).map(|_| Exit::Ok)
            }
            Command::Study { command: StudyCommand::Delete { name, yes, root } } => {
                cli::study::study_delete(&root.unwrap_or_else(cli::default_root), &name, yes).map(|_| Exit::Ok)
            }
            Command::Report { name, root, out } => {
                cli::report::study_report(&root.unwrap_or_else(cli::default_root), &name, out.as_deref())
                    .map(|_| Exit::Ok)
            }
            Command::Dashboard { root, port, listen, token } => {
                let root = root.unwrap_or_else(cli::default_root);
                cli::dashboard::dashboard(cli::dashboard::DashboardOptions { root, listen, port, token })
                    .await
                    .map(|_| Exit::Ok)
            }
            Command::Init(opts) => Ok(if cli::init::init(opts).await? { Exit::Ok } else { Exit::Error }),
            Command::Doctor { config, strategy, root, json } => {
                let ok = cli::doctor::doctor(cli::doctor::DoctorOptions { config, strategy, root, json }).await?;
                Ok(if ok { Exit::Ok } else { Exit::Error })
            }
            Command::Completions { shell } => {
                use clap::CommandFactory;
                clap_complete::generate(shell, &mut Cli::command(), "alcf-host", &mut std::io::stdout());
                Ok(Exit::Ok)
            }
            Command::Man { out } => write_man_pages(&out).map(|_| Exit::Ok),
            Command::Study { command: StudyCommand::Enqueue { name, params, root } } => {
                cli::study::study_enqueue(&root.unwrap_or_else(cli::default_root), &name, &params).map(|_| Exit::Ok)
            }
            Command::Study { command: StudyCommand::Unlock { name, root } } => {
                cli::study::study_unlock(&root.unwrap_or_else(cli::default_root), &name).map(|_| Exit::Ok)
            }
            Command::Study { command: StudyCommand::LlmLog { name, root, full, json } } => {
                cli::study::study_llm_log(&root.unwrap_or_else(cli::default_root), &name, full, json).map(|_| Exit::Ok)
            }
        }
    });
    // A plugin call still running (a `suggest` that an interrupt made moot) must not hold the
    // process: its answer is not needed, and nothing is lost by leaving it.
    runtime.shutdown_timeout(std::time::Duration::from_millis(500));
    match result {
        Ok(exit) => ExitCode::from(exit as u8),
        // `alcf-host study show X | head` closes the pipe early: not an error.
        Err(e) if e.downcast_ref::<std::io::Error>().is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe) => {
            ExitCode::SUCCESS
        }
        Err(e) => {
            cli::console(&format!("error: {e:#}"));
            ExitCode::from(Exit::Error as u8)
        }
    }
}
