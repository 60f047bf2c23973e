//! `alcf-host init`: writes a commented study config for local, PBS or Globus Compute execution,
//! then runs `doctor` on it. Every question has a flag; on a terminal the ones not given are asked
//! (with their defaults), elsewhere (or with `--yes`) the defaults are taken.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Kind {
    Local,
    Pbs,
    Globus,
}

#[derive(Debug, Default, clap::Args)]
pub struct InitOptions {
    /// Where the config goes.
    #[arg(long, value_name = "FILE", default_value = "study.toml")]
    pub out: PathBuf,
    /// Where trials run: this machine, PBS (over SSH or on a login node), or Globus Compute.
    #[arg(long, value_enum)]
    pub executor: Option<Kind>,
    /// The study's name.
    #[arg(long)]
    pub name: Option<String>,
    /// The trial program as one shell-like line, e.g. "python3 {config_dir}/train.py --lr {lr}".
    #[arg(long, value_name = "LINE")]
    pub command: Option<String>,
    /// A search-space file ([space] table) [default: config/cifar100-space.toml when it exists].
    #[arg(long, value_name = "FILE")]
    pub space: Option<PathBuf>,
    /// The metric the trial writes to result.json that the study optimizes.
    #[arg(long)]
    pub objective: Option<String>,
    #[arg(long, value_parser = ["minimize", "maximize"])]
    pub direction: Option<String>,
    /// The strategy plugin.
    #[arg(long, value_name = "FILE.wasm")]
    pub strategy: Option<PathBuf>,
    /// Capabilities granted to the plugin, comma-separated (log, storage, llm, jobs).
    #[arg(long, value_name = "LIST")]
    pub allow: Option<String>,
    /// Trials in all.
    #[arg(long)]
    pub trials: Option<u32>,
    /// Trials at once.
    #[arg(long)]
    pub parallel: Option<u32>,
    /// pbs: the SSH destination (as in ~/.ssh/config), or "local" on a login node.
    #[arg(long)]
    pub host: Option<String>,
    /// pbs: the ALCF project to charge.
    #[arg(long)]
    pub account: Option<String>,
    /// pbs: the queue.
    #[arg(long)]
    pub queue: Option<String>,
    /// pbs and globus: the directory on the shared file system for trial files.
    #[arg(long, value_name = "DIR")]
    pub remote_dir: Option<String>,
    /// globus: the endpoint's UUID (`globus-compute-endpoint list`).
    #[arg(long, value_name = "UUID")]
    pub endpoint: Option<String>,
    /// Ask nothing: take the defaults for what no flag gives.
    #[arg(long)]
    pub yes: bool,
    /// Overwrite an existing file.
    #[arg(long)]
    pub force: bool,
    /// Do not run `doctor` on the written config.
    #[arg(long)]
    pub no_doctor: bool,
}

/// One question: its flag's value, else the answer on a terminal, else the default.
struct Asker {
    interactive: bool,
}

impl Asker {
    fn text(&self, given: Option<String>, prompt: &str, default: &str) -> anyhow::Result<String> {
        if let Some(v) = given {
            return Ok(v);
        }
        if !self.interactive {
            return Ok(default.to_string());
        }
        let mut input = dialoguer::Input::<String>::new().with_prompt(prompt).allow_empty(default.is_empty());
        if !default.is_empty() {
            input = input.default(default.to_string());
        }
        Ok(input.interact_text()?)
    }

    fn choose(&self, given: Option<usize>, prompt: &str, items: &[&str], default: usize) -> anyhow::Result<usize> {
        if let Some(v) = given {
            return Ok(v);
        }
        if !self.interactive {
            return Ok(default);
        }
        Ok(dialoguer::Select::new().with_prompt(prompt).items(items).default(default).interact()?)
    }

    fn number(&self, given: Option<u32>, prompt: &str, default: u32) -> anyhow::Result<u32> {
        loop {
            let t = self.text(given.map(|g| g.to_string()), prompt, &default.to_string())?;
            match t.trim().parse::<u32>() {
                Ok(n) if n > 0 => return Ok(n),
                _ if !self.interactive => bail!("{prompt}: {t:?} is not a positive number"),
                _ => eprintln!("give a positive whole number"),
            }
        }
    }
}

pub async fn init(opts: InitOptions) -> anyhow::Result<bool> {
    if opts.out.exists() && !opts.force {
        bail!("{} exists: give another --out, or --force to overwrite it", opts.out.display());
    }
    let ask = Asker { interactive: !opts.yes && std::io::stdin().is_terminal() && std::io::stderr().is_terminal() };
    let kinds = ["local", "pbs", "globus"];
    let kind = ask.choose(
        opts.executor.map(|k| k as usize),
        "Where do trials run? (local: this machine; pbs: PBS jobs on Aurora; globus: a Globus Compute endpoint)",
        &kinds,
        0,
    )?;
    let kind = [Kind::Local, Kind::Pbs, Kind::Globus][kind];
    let name = ask.text(opts.name.clone(), "Study name", "my-study")?;
    super::check_study_name(&name)?;
    let command = ask.text(
        opts.command.clone(),
        "Trial program (placeholders: {trial_dir}, {params}, {config_dir}, and each parameter as {name})",
        "python3 {config_dir}/train.py --params {params} --out {trial_dir}",
    )?;
    let argv = split_words(&command)?;
    if argv.is_empty() {
        bail!("the trial program is empty: give --command \"program args…\"");
    }
    let default_space = std::path::absolute("config/cifar100-space.toml").ok().filter(|p| p.exists());
    let space = ask.text(
        opts.space.as_ref().map(|p| p.display().to_string()),
        "Search space file (a [space] table)",
        &default_space.as_ref().map_or(String::new(), |p| p.display().to_string()),
    )?;
    let objective =
        ask.text(opts.objective.clone(), "Objective (a key the trial writes to result.json)", "curve_auc")?;
    let dir_idx = match opts.direction.as_deref() {
        Some("minimize") => Some(0),
        Some("maximize") => Some(1),
        _ => None,
    };
    let direction = ["minimize", "maximize"][ask.choose(dir_idx, "Direction", &["minimize", "maximize"], 1)?];
    let default_plugin = std::path::absolute("plugins/gp_ucb.wasm").ok().filter(|p| p.exists());
    let strategy = ask.text(
        opts.strategy.as_ref().map(|p| p.display().to_string()),
        "Strategy plugin",
        &default_plugin.as_ref().map_or("plugins/gp_ucb.wasm".to_string(), |p| p.display().to_string()),
    )?;
    let allow =
        ask.text(opts.allow.clone(), "Capabilities to grant the plugin (log, storage, llm, jobs)", "log, storage")?;
    let allow: Vec<String> = allow.split(',').map(|s| s.trim().to_string()).filter(|s| !s.is_empty()).collect();
    for a in &allow {
        if !alcf_host::config::CAPABILITIES.contains(&a.as_str()) {
            bail!("unknown capability {a:?}; known: {}", alcf_host::config::CAPABILITIES.join(", "));
        }
    }
    let trials = ask.number(opts.trials, "Trials in all", 50)?;
    let parallel = ask.number(opts.parallel, "Trials at once", if kind == Kind::Local { 1 } else { 12 })?;

    let out_dir = std::path::absolute(&opts.out)?.parent().map(Path::to_path_buf).unwrap_or_default();
    let rel = |p: &str| relative_to(&out_dir, Path::new(p));
    let mut text = format!(
        "# Written by `alcf-host init`; every key is described in docs/config.md.\n\
         #   alcf-host doctor --config {out}      # checks it, with the fix for anything wrong\n\
         #   alcf-host run --config {out}\n\n\
         [study]\n\
         name = {name:?}\n\
         objective = {objective:?}    # a key of the trial's result.json (or its last metrics line)\n\
         direction = {direction:?}\n\
         trials = {trials}            # the budget; `--resume --trials N` raises it later\n\
         parallel = {parallel}            # trials at once\n\
         root = \"studies\"           # one directory per study, its database inside\n",
        out = opts.out.display(),
    );
    if space.is_empty() {
        text.push_str("\n[space]\n# one line per parameter, e.g.:\nlr = { type = \"float\", low = 1e-4, high = 1e-1, log = true }\nbatch_size = { type = \"choice\", values = [32, 64, 128] }\n");
    } else {
        text.push_str(&format!("space = {:?}   # the search space, a [space] table\n", rel(&space)));
    }
    text.push_str(&format!(
        "\n[strategy]\nplugin = {:?}\nallow = {:?}   # what the plugin may use: log, storage, llm, jobs\n",
        rel(&strategy),
        allow
    ));
    let command_toml = format!("[{}]", argv.iter().map(|a| format!("{a:?}")).collect::<Vec<_>>().join(", "));
    match kind {
        Kind::Local => text.push_str(&format!(
            "\n[executor]\nkind = \"local\"\n# One element per argument, never split or expanded by a shell.\ncommand = {command_toml}\n\
             # timeout_s = 3600        # a trial's wall-clock limit\n# env = {{ OMP_NUM_THREADS = \"4\" }}\n"
        )),
        Kind::Pbs => {
            let host = ask.text(opts.host.clone(), "SSH destination of the PBS machine (or \"local\" on a login node)", "aurora")?;
            let account = ask.text(opts.account.clone(), "ALCF project to charge", "MyProject")?;
            let queue = ask.text(opts.queue.clone(), "Queue", "debug")?;
            let remote = ask.text(
                opts.remote_dir.clone(),
                "Directory for trial files on the shared file system",
                "/lus/flare/projects/MyProject/me/alcf-host",
            )?;
            text.push_str(&format!(
                "\n[executor]\nkind = \"pbs\"\nhost = {host:?}           # `alcf-host connect {host}` opens its SSH master once\n\
                 remote_dir = {remote:?}\naccount = {account:?}\nqueue = {queue:?}            # debug: 1 job, 1 h; capacity: 2 running jobs, up to 7 days\n\
                 walltime = \"01:00:00\"\nfilesystems = \"home:flare\"\n\
                 # Runs on the compute node: {{config_dir}} is the study's staged copy of `stage`.\ncommand = {command_toml}\n\
                 # stage = [\"train.py\"]     # files next to this config, sent once per study\n\
                 setup = [\"module load frameworks\"]\n"
            ));
        }
        Kind::Globus => {
            let endpoint = ask.text(
                opts.endpoint.clone(),
                "Globus Compute endpoint UUID (`globus-compute-endpoint list` on Aurora)",
                "00000000-0000-0000-0000-000000000000",
            )?;
            let remote = ask.text(
                opts.remote_dir.clone(),
                "Directory for trial files on the shared file system",
                "/lus/flare/projects/MyProject/me/alcf-host",
            )?;
            text.push_str(&format!(
                "\n[executor]\nkind = \"globus\"\nendpoint = {endpoint:?}\nremote_dir = {remote:?}\n\
                 # code_dir = \"/lus/flare/projects/MyProject/me/hpo\"   # what {{config_dir}} means on the endpoint\n\
                 command = {command_toml}\nsetup = [\"module load frameworks\"]\n\
                 poll_interval_s = 15         # 2 requests per cycle; the service allows 20 per 10 s\n"
            ));
        }
    }
    // What was written must load: a mistake here is ours, not the user's.
    std::fs::write(&opts.out, &text).with_context(|| format!("cannot write {}", opts.out.display()))?;
    if let Err(e) = alcf_host::config::Config::load(&opts.out) {
        bail!("the written config does not load ({e}); fix the answer it names and run init again with --force");
    }
    crate::cli::console(&format!("wrote {}", opts.out.display()));
    if opts.no_doctor {
        return Ok(true);
    }
    crate::cli::console("checking it (alcf-host doctor):");
    super::doctor::doctor(super::doctor::DoctorOptions {
        config: Some(opts.out.clone()),
        strategy: None,
        root: None,
        json: false,
    })
    .await
}

/// `path` relative to `base` when it lies under it, else as given (absolute stays absolute).
fn relative_to(base: &Path, path: &Path) -> String {
    let abs = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
    let mut b = base.components().peekable();
    let mut a = abs.components().peekable();
    while let (Some(x), Some(y)) = (b.peek(), a.peek()) {
        if x != y {
            break;
        }
        b.next();
        a.next();
    }
    let ups = b.count();
    if ups > 3 {
        return abs.display().to_string();
    }
    let mut out = PathBuf::new();
    for _ in 0..ups {
        out.push("..");
    }
    for c in a {
        out.push(c);
    }
    out.display().to_string()
}

/// Splits a shell-like line into words: blanks separate, '…' and "…" quote (with \" and \\ inside
/// double quotes), nothing is expanded.
fn split_words(line: &str) -> anyhow::Result<Vec<String>> {
    let mut words = Vec::new();
    let mut cur = String::new();
    let mut in_word = false;
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            ' ' | '\t' | '\n' => {
                if in_word {
                    words.push(std::mem::take(&mut cur));
                    in_word = false;
                }
            }
            '\'' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('\'') => break,
                        Some(ch) => cur.push(ch),
                        None => bail!("--command: a ' is not closed"),
                    }
                }
            }
            '"' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('"') => break,
                        Some('\\') => match chars.next() {
                            Some(ch @ ('"' | '\\')) => cur.push(ch),
                            Some(ch) => {
                                cur.push('\\');
                                cur.push(ch);
                            }
                            None => bail!("--command: a \" is not closed"),
                        },
                        Some(ch) => cur.push(ch),
                        None => bail!("--command: a \" is not closed"),
                    }
                }
            }
            c => {
                in_word = true;
                cur.push(c);
            }
        }
    }
    if in_word {
        words.push(cur);
    }
    Ok(words)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_split_like_a_shell_without_expansion() {
        assert_eq!(split_words("python3 t.py --lr {lr}").unwrap(), ["python3", "t.py", "--lr", "{lr}"]);
        assert_eq!(split_words("a 'b c' \"d \\\"e\\\"\" $HOME").unwrap(), ["a", "b c", "d \"e\"", "$HOME"]);
        assert_eq!(split_words("  x  ''  ").unwrap(), ["x", ""]);
        assert!(split_words("a 'b").is_err());
    }

    #[test]
    fn paths_relative_to_the_config() {
        assert_eq!(relative_to(Path::new("/w/config"), Path::new("/w/config/space.toml")), "space.toml");
        assert_eq!(relative_to(Path::new("/w/config"), Path::new("/w/plugins/gp.wasm")), "../plugins/gp.wasm");
        assert_eq!(relative_to(Path::new("/a/b/c/d/e"), Path::new("/x/y.toml")), "/x/y.toml");
    }
}
