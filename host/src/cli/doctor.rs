//! `alcf-host doctor [--config FILE]`: every check a study depends on, each with a verdict, what
//! was found and the exact fix. Checks that need something that failed before them say so and
//! are skipped; nothing is changed anywhere but a probe file (removed at once).

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Serialize;

use alcf_host::auth::{self, AuthConfig, Credentials, ServiceTokens, TokenSource};
use alcf_host::config::{Config, ExecutorConfig, LlmAuth};
use alcf_host::executor::globus::client::ComputeClient;
use alcf_host::executor::pbs::executor::PbsExecutor;
use alcf_host::executor::pbs::remote::Transport;
use alcf_host::plugin::{ABI_VERSION, PluginRuntime, default_cache_dir};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    Ok,
    Warn,
    Fail,
    /// Not checked: something it needs failed, or it cannot be checked before a run.
    Skip,
}

#[derive(Debug, Clone, Serialize)]
pub struct Check {
    pub name: &'static str,
    pub verdict: Verdict,
    pub found: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fix: Option<String>,
}

#[derive(Default)]
struct Report(Vec<Check>);

impl Report {
    fn add(&mut self, name: &'static str, verdict: Verdict, found: impl Into<String>, fix: Option<String>) {
        self.0.push(Check { name, verdict, found: found.into(), fix });
    }
    fn ok(&mut self, name: &'static str, found: impl Into<String>) {
        self.add(name, Verdict::Ok, found, None);
    }
    fn warn(&mut self, name: &'static str, found: impl Into<String>, fix: impl Into<String>) {
        self.add(name, Verdict::Warn, found, Some(fix.into()));
    }
    fn fail(&mut self, name: &'static str, found: impl Into<String>, fix: impl Into<String>) {
        self.add(name, Verdict::Fail, found, Some(fix.into()));
    }
    fn skip(&mut self, name: &'static str, found: impl Into<String>) {
        self.add(name, Verdict::Skip, found, None);
    }
}

pub struct DoctorOptions {
    pub config: Option<PathBuf>,
    pub strategy: Option<PathBuf>,
    pub root: Option<PathBuf>,
    pub json: bool,
}

/// Runs every check and prints them; `Ok(false)` when any failed.
pub async fn doctor(opts: DoctorOptions) -> anyhow::Result<bool> {
    let checks = run_checks(&opts).await;
    let failed = checks.iter().any(|c| c.verdict == Verdict::Fail);
    if opts.json {
        println!("{}", serde_json::to_string_pretty(&checks)?);
    } else {
        for c in &checks {
            let v = match c.verdict {
                Verdict::Ok => "ok  ",
                Verdict::Warn => "warn",
                Verdict::Fail => "FAIL",
                Verdict::Skip => "skip",
            };
            println!("{v}  {:<10} {}", c.name, c.found);
            if let Some(fix) = &c.fix {
                println!("      {:<10} fix: {fix}", "");
            }
        }
        let n = |v| checks.iter().filter(|c| c.verdict == v).count();
        println!(
            "{} ok, {} warnings, {} failed, {} skipped",
            n(Verdict::Ok),
            n(Verdict::Warn),
            n(Verdict::Fail),
            n(Verdict::Skip)
        );
    }
    Ok(!failed)
}

async fn run_checks(opts: &DoctorOptions) -> Vec<Check> {
    let mut r = Report::default();
    let config = match &opts.config {
        None => {
            r.skip("config", "no --config given: only the checks of this machine and the login");
            None
        }
        Some(path) => match Config::load(path) {
            Ok(c) => {
                let params = c.space.as_ref().map_or(0, |s| s.params().len());
                let kind = match &c.executor {
                    Some(ExecutorConfig::Bench { .. }) => "bench",
                    Some(ExecutorConfig::Local(_)) => "local",
                    Some(ExecutorConfig::Pbs(_)) => "pbs",
                    Some(ExecutorConfig::Globus(_)) => "globus",
                    None => "none",
                };
                r.ok("config", format!("{} parses: {params} parameters, executor {kind}", path.display()));
                Some(c)
            }
            Err(e) => {
                r.fail("config", e.to_string(), "fix the file, line and field the message names");
                None
            }
        },
    };
    check_plugin(&mut r, opts, config.as_ref());
    check_cache(&mut r);
    let root =
        opts.root.clone().or_else(|| config.as_ref().and_then(|c| c.root.clone())).unwrap_or_else(super::default_root);
    check_disk(&mut r, &root);
    if let Some(c) = &config {
        match (&c.executor, &c.space) {
            (None, _) => r.fail(
                "executor",
                "the config has no [executor]",
                "add one: kind = \"local\", \"pbs\" or \"globus\" (docs/config.md)",
            ),
            (Some(ExecutorConfig::Bench { .. }), _) => r.ok("executor", "bench: a test function, run in-process"),
            (Some(_), None) => r.fail(
                "space",
                "the config has no search space",
                "add a [space] table or study.space = \"file\" (config/cifar100-space.toml)",
            ),
            (Some(ex), Some(space)) => check_executor(&mut r, ex, space, c).await,
        }
        if let Some(llm) = &c.llm {
            check_llm(&mut r, llm, c).await;
        }
    }
    check_logins(&mut r, config.as_ref());
    r.0
}

fn check_plugin(r: &mut Report, opts: &DoctorOptions, config: Option<&Config>) {
    let Some(path) = opts.strategy.clone().or_else(|| config.and_then(|c| c.strategy.plugin.clone())) else {
        r.skip("plugin", "no strategy plugin named (--strategy, or [strategy] plugin in the config)");
        return;
    };
    let runtime = match PluginRuntime::shared(default_cache_dir()) {
        Ok(rt) => rt,
        Err(e) => return r.fail("plugin", format!("the plugin runtime cannot start: {e}"), "see the message"),
    };
    match runtime.load(&path) {
        Ok(p) => {
            let abi = &p.summary.abi_version;
            if abi == ABI_VERSION || abi == "0.1.0" {
                r.ok("plugin", format!("{} loads (ABI {abi}; this host speaks {ABI_VERSION})", path.display()));
            } else {
                r.fail(
                    "plugin",
                    format!("{} is built for ABI {abi}; this host speaks {ABI_VERSION}", path.display()),
                    "rebuild the plugin against this host's wit/hpo.wit (scripts/build-plugins.sh)",
                );
            }
        }
        Err(e) => r.fail(
            "plugin",
            e.to_string(),
            "build the plugins (`bash scripts/build-plugins.sh`) or give the right path",
        ),
    }
}

fn check_cache(r: &mut Report) {
    let Some(dir) = default_cache_dir() else {
        return r.warn("cache", "no compile cache directory (no HOME)", "set ALCF_HOST_CACHE to a writable directory");
    };
    let probe = dir.join(format!(".doctor-{}", std::process::id()));
    match std::fs::create_dir_all(&dir).and_then(|_| std::fs::write(&probe, b"ok")) {
        Ok(()) => {
            let _ = std::fs::remove_file(&probe);
            r.ok("cache", format!("{} is writable", dir.display()));
        }
        Err(e) => r.warn(
            "cache",
            format!("{} is not writable ({e}): every start compiles plugins again", dir.display()),
            "set ALCF_HOST_CACHE to a writable directory",
        ),
    }
}

fn check_disk(r: &mut Report, root: &Path) {
    let abs = std::path::absolute(root).unwrap_or_else(|_| root.to_path_buf());
    let mut at = abs.as_path();
    while !at.exists() {
        match at.parent() {
            Some(p) => at = p,
            None => break,
        }
    }
    let Some(free) = free_bytes(at) else {
        return r.skip("disk", format!("cannot read the free space of {}", at.display()));
    };
    let gib = free as f64 / (1u64 << 30) as f64;
    let found = format!("{gib:.1} GiB free for studies under {}", abs.display());
    if free < 100 << 20 {
        r.fail("disk", found, "free space, or put studies elsewhere ([study] root, --root)");
    } else if free < 1 << 30 {
        r.warn("disk", found, "a long study's database and logs need room: free space or move [study] root");
    } else {
        r.ok("disk", found);
    }
}

fn free_bytes(path: &Path) -> Option<u64> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes()).ok()?;
    let mut s: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: `c` is a valid NUL-terminated path and `s` a properly sized out-parameter.
    if unsafe { libc::statvfs(c.as_ptr(), &mut s) } != 0 {
        return None;
    }
    Some(s.f_bavail as u64 * s.f_frsize as u64)
}

async fn check_executor(r: &mut Report, ex: &ExecutorConfig, space: &alcf_host::space::SearchSpace, c: &Config) {
    let name = c.name.clone().unwrap_or_else(|| "doctor".into());
    let exec = match alcf_host::executor::from_config(ex, space, c.parallel, &name) {
        Ok(e) => e,
        Err(e) => return r.fail("executor", e.to_string(), "fix the [executor] field the message names"),
    };
    match exec.preflight() {
        Ok(()) => {}
        Err(e) => {
            // PBS's preflight is the SSH master, Globus's the login: their own checks below say it.
            if !matches!(ex, ExecutorConfig::Pbs(_) | ExecutorConfig::Globus(_)) {
                return r.fail("executor", e.to_string(), "fix what the message names, then run doctor again");
            }
        }
    }
    match ex {
        ExecutorConfig::Local(local) => check_local_program(r, local, space).await,
        ExecutorConfig::Pbs(pbs) => check_pbs(r, pbs, space, c, &name).await,
        ExecutorConfig::Globus(g) => check_globus(r, g).await,
        ExecutorConfig::Bench { .. } => {}
    }
}

/// Runs the trial program with `--help` (20 s at most) where the config's directory is.
async fn check_local_program(
    r: &mut Report,
    local: &alcf_host::config::LocalConfig,
    space: &alcf_host::space::SearchSpace,
) {
    let dir = local.workdir.clone().unwrap_or_else(|| PathBuf::from("."));
    let program = alcf_host::executor::argv::Template::parse(&local.command, space)
        .ok()
        .and_then(|t| t.render_static(0, &dir))
        .map(PathBuf::from);
    let Some(program) = program else {
        return r.skip("program", format!("{:?} depends on the trial; it is resolved per trial", local.command[0]));
    };
    let path = if program.components().count() > 1 && program.is_relative() { dir.join(&program) } else { program };
    let mut cmd = tokio::process::Command::new(&path);
    cmd.arg("--help").current_dir(&dir).stdin(std::process::Stdio::null()).kill_on_drop(true);
    match tokio::time::timeout(Duration::from_secs(20), cmd.output()).await {
        Err(_) => r.warn(
            "program",
            format!("`{} --help` did not end within 20 s", path.display()),
            "make sure the program starts quickly and knows --help (not needed for a run)",
        ),
        Ok(Err(e)) => r.fail(
            "program",
            format!("cannot run {}: {e}", path.display()),
            "fix executor.command[0] (a path relative to the config's directory, or a program on PATH)",
        ),
        Ok(Ok(out)) if out.status.success() => r.ok("program", format!("`{} --help` runs", path.display())),
        Ok(Ok(out)) => {
            let tail = String::from_utf8_lossy(&out.stderr);
            let tail = tail.trim().lines().last().unwrap_or("").to_string();
            r.warn(
                "program",
                format!("`{} --help` exited with {} {tail}", path.display(), out.status),
                "check the program runs on this machine (its interpreter, its modules)",
            )
        }
    }
}

async fn check_pbs(
    r: &mut Report,
    cfg: &alcf_host::config::PbsExecutorConfig,
    space: &alcf_host::space::SearchSpace,
    c: &Config,
    name: &str,
) {
    let exec = match PbsExecutor::new(cfg.clone(), space, c.parallel, name) {
        Ok(e) => e,
        Err(e) => return r.fail("pbs", e.to_string(), "fix the [executor] field the message names"),
    };
    if let Transport::Ssh { host, control, .. } = exec.transport() {
        let ok = std::process::Command::new("ssh")
            .arg("-S")
            .arg(control)
            .args(["-O", "check", host])
            .stdin(std::process::Stdio::null())
            .output()
            .map(|o| o.status.success())
            .unwrap_or(false);
        if ok {
            r.ok("ssh", format!("the SSH master to {host} is alive ({})", control.display()));
        } else {
            r.fail(
                "ssh",
                format!("no SSH master to {host} at {}", control.display()),
                format!("open one with `alcf-host connect {host}` (it asks for your passcode once)"),
            );
            for what in ["qstat", "queue", "remote dir"] {
                r.skip(what, "needs the SSH master");
            }
            return;
        }
    } else {
        r.ok("ssh", "host = \"local\": the host runs where PBS is");
    }
    let probe = match exec.probe().await {
        Ok(v) => v,
        Err(e) => {
            return r.fail(
                "qstat",
                format!("the remote side did not answer: {e}"),
                "check executor.python and the SSH master",
            );
        }
    };
    let cmd = |v: &serde_json::Value| {
        (v["status"].as_i64().unwrap_or(-1), v["stderr"].as_str().unwrap_or("").trim().to_string())
    };
    let (status, err) = cmd(&probe["server"]);
    if status == 0 {
        r.ok("qstat", "`qstat -B` answers");
    } else {
        r.fail(
            "qstat",
            format!("`qstat -B` exited with {status}: {err}"),
            "set executor.pbs_bin to the directory of qstat/qsub, or load PBS in your login shell",
        );
    }
    let (status, err) = cmd(&probe["queue"]);
    if status == 0 {
        r.ok("queue", format!("queue {} exists", cfg.pbs.queue));
    } else {
        r.fail(
            "queue",
            format!("`qstat -Q {}` exited with {status}: {err}", cfg.pbs.queue),
            "set executor.queue to a queue `qstat -Q` lists (Aurora: debug, capacity, prod)",
        );
    }
    r.skip(
        "account",
        format!(
            "account {:?}: PBS has no query for it; a wrong one is refused at the first qsub, with its message",
            cfg.pbs.account
        ),
    );
    match &probe["writable"] {
        serde_json::Value::Bool(true) => r.ok("remote dir", format!("{} is writable", cfg.remote_dir)),
        other => r.fail(
            "remote dir",
            format!("cannot write under {}: {}", cfg.remote_dir, other.as_str().unwrap_or("?")),
            "set executor.remote_dir to a directory of yours on the shared file system (/lus/flare/projects/…)",
        ),
    }
    if !probe["program"].is_null() {
        let (status, _) = cmd(&probe["program"]);
        if status == 0 {
            r.ok("program", format!("{} is found on the remote side", cfg.command[0]));
        } else {
            r.warn(
                "program",
                format!("{} is not on the remote PATH", cfg.command[0]),
                "give its absolute path, a {config_dir}/… path of a staged file, or load its module in executor.setup",
            );
        }
    }
}

async fn check_globus(r: &mut Report, g: &alcf_host::config::GlobusExecutorConfig) {
    let tokens = ServiceTokens::from_env(auth::COMPUTE);
    if let Err(e) = tokens.credentials.check_login(&auth::COMPUTE) {
        r.fail("globus", e.to_string(), "run `alcf-host auth login --service compute`");
        r.skip("endpoint", "needs a Globus Compute login");
        return;
    }
    let client = match ComputeClient::new(&g.base_url, std::sync::Arc::new(tokens), g.max_requests, g.rate_window) {
        Ok(c) => c,
        Err(e) => return r.fail("globus", e, "check executor.base_url"),
    };
    match client.endpoint_status(&g.endpoint).await {
        Ok(s) if s.online => {
            r.ok("globus", format!("a Globus Compute token is accepted by {}", g.base_url));
            r.ok("endpoint", format!("endpoint {} is online ({})", g.endpoint, s.details));
        }
        Ok(_) => {
            r.ok("globus", format!("a Globus Compute token is accepted by {}", g.base_url));
            r.fail(
                "endpoint",
                format!("endpoint {} is offline", g.endpoint),
                "on an Aurora login node: `globus-compute-endpoint start <name>` (docs/globus.md)",
            );
        }
        Err(alcf_host::executor::globus::client::ComputeError::Auth(m)) => {
            r.fail("globus", m, "run `alcf-host auth login --service compute`");
            r.skip("endpoint", "needs an accepted token");
        }
        Err(e) if e.code() == Some("ENDPOINT_NOT_FOUND") || e.code() == Some("INVALID_UUID") => {
            r.ok("globus", format!("a Globus Compute token is accepted by {}", g.base_url));
            r.fail("endpoint", e.to_string(), "set executor.endpoint from `globus-compute-endpoint list` on Aurora");
        }
        Err(e) => {
            r.fail("globus", e.to_string(), "check the network and executor.base_url, then run doctor again");
            r.skip("endpoint", "needs the service");
        }
    }
}

async fn check_llm(r: &mut Report, llm: &alcf_host::config::LlmConfig, c: &Config) {
    if !c.strategy.allow.iter().any(|a| a == "llm") {
        r.warn(
            "llm",
            "[llm] is configured but the strategy is not granted it",
            "add \"llm\" to [strategy] allow, or drop [llm]",
        );
    }
    let tokens: std::sync::Arc<dyn TokenSource> = match llm.auth {
        LlmAuth::Globus => {
            let t = ServiceTokens::from_env(auth::SOPHIA);
            if let Err(e) = t.credentials.check_login(&auth::SOPHIA) {
                r.fail("llm token", e.to_string(), "run `alcf-host auth login --service sophia`");
                return;
            }
            std::sync::Arc::new(t)
        }
        LlmAuth::None => std::sync::Arc::new(auth::NoToken("[llm] auth = \"none\": no token to refresh")),
    };
    match tokens.token().await {
        Ok(_) => r.ok("llm token", "a token for the LLM service is at hand"),
        Err(e) => return r.fail("llm token", e, "run `alcf-host auth login --service sophia`"),
    }
    let client = match alcf_host::llm::client::ChatClient::new(alcf_host::llm::client_config(llm), tokens) {
        Ok(c) => c,
        Err(e) => return r.fail("gateway", e.to_string(), "check [llm] base_url"),
    };
    match client.health().await {
        Ok(url) => r.ok("gateway", format!("{url} answers")),
        Err(e) => {
            r.fail("gateway", e, "check [llm] base_url and the network (ALCF's status page for Sophia)");
            return;
        }
    }
    match client.model_status(&llm.model).await {
        None => r.skip("model", format!("{}: no jobs route to ask (not Sophia's layout)", llm.model)),
        Some(Ok(state)) if state.starts_with("is running") => r.ok("model", format!("{} {state}", llm.model)),
        Some(Ok(state)) => r.warn(
            "model",
            format!("{} {state}", llm.model),
            "a cold model starts on the first request and can take minutes; the host waits up to [llm] cold_wait",
        ),
        Some(Err(e)) => r.warn("model", e, "the model's state is unknown; a run still works"),
    }
}

/// What `auth status` would say, for the services the config uses (or all without a config).
fn check_logins(r: &mut Report, config: Option<&Config>) {
    if config.is_some() {
        return; // the executor and [llm] checks above tried the tokens they need
    }
    let creds = Credentials::new(AuthConfig::from_env());
    for svc in auth::SERVICES {
        match creds.check_login(&svc) {
            Ok(()) => r.ok("login", format!("a Globus token for {} is stored", svc.name)),
            Err(_) => r.skip("login", format!("no Globus login for {} (needed only by studies that use it)", svc.name)),
        }
    }
}
