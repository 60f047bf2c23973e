//! `alcf-host auth login | status | logout`: Globus login for Sophia and Globus Compute.
//!
//! Login is the native-app flow ALCF's `inference_auth_token.py` uses: the user opens a URL, logs
//! in, and pastes the code Globus shows. That works on a login node without a browser (open the
//! URL on a laptop), which is why there is no local redirect server.

use std::io::{BufRead as _, IsTerminal as _};

use alcf_host::auth::{self, AuthConfig, Service, ServiceStatus, Source};
use anyhow::bail;
use clap::Subcommand;

use crate::out;

#[derive(Subcommand)]
pub enum AuthCommand {
    /// Log in to Globus (opens a URL; you paste the code it shows) and store the tokens.
    Login {
        /// Only print the URL; do not try to open a browser.
        #[arg(long)]
        no_browser: bool,
        /// A service to log in for; repeat for several [default: every service].
        #[arg(long = "service", value_name = "sophia|compute")]
        services: Vec<String>,
    },
    /// Where each service's token comes from, who it is for and when it expires (never the token).
    Status {
        #[arg(long)]
        json: bool,
    },
    /// Revoke the stored tokens at Globus and delete the token file.
    Logout,
}

pub async fn run(command: AuthCommand) -> anyhow::Result<()> {
    let cfg = AuthConfig::from_env();
    // Library warnings outside a study have no log to go to: say this one here.
    if let Some(w) = cfg.fix_store_mode() {
        crate::cli::console(&format!("warning: {w}"));
    }
    match command {
        AuthCommand::Login { no_browser, services } => login(&cfg, no_browser, &services).await,
        AuthCommand::Status { json } => status(&cfg, json),
        AuthCommand::Logout => logout(&cfg).await,
    }
}

fn parse_services(names: &[String]) -> anyhow::Result<Vec<Service>> {
    let mut out: Vec<Service> = Vec::new();
    for n in names {
        let Some(s) = auth::service_named(n.trim()) else {
            let known: Vec<&str> = auth::SERVICES.iter().map(|s| s.name).collect();
            bail!("--service {n:?} is not a Globus service alcf-host uses: use one of {}", known.join(", "));
        };
        if !out.contains(&s) {
            out.push(s);
        }
    }
    Ok(out)
}

async fn login(cfg: &AuthConfig, no_browser: bool, names: &[String]) -> anyhow::Result<()> {
    let services = parse_services(names)?;
    let pending = auth::begin_login(cfg, &services)?;
    let names: Vec<&str> = pending.services().iter().map(|s| s.name).collect();
    crate::cli::console(&format!("Log in to Globus for {} by opening this URL in a browser:", names.join(", ")));
    // On stdout, alone on its line, so it can be copied or piped.
    out!("{}", pending.url());
    let stdin_tty = std::io::stdin().is_terminal();
    if !no_browser && stdin_tty && has_display() {
        open_browser(pending.url());
    }
    crate::cli::console("Then paste the authorization code Globus shows and press Enter:");
    let mut line = String::new();
    let n = tokio::task::spawn_blocking(move || std::io::stdin().lock().read_line(&mut line).map(|n| (n, line)))
        .await
        .map_err(|e| anyhow::anyhow!("reading the code failed: {e}"))?;
    let (_, code) = n.map_err(|e| anyhow::anyhow!("cannot read the code from stdin: {e}"))?;
    let outcome = pending.finish(cfg, &code).await?;
    let who = outcome.identity.as_ref().map_or_else(|| "an unknown identity".to_string(), who);
    let names: Vec<&str> = outcome.services.iter().map(|s| s.name).collect();
    crate::cli::console(&format!(
        "logged in to Globus as {who} for {}; tokens in {}",
        names.join(", "),
        outcome.store.display()
    ));
    Ok(())
}

/// Whether a browser could show up: a display, a BROWSER command, or macOS (where `open` works
/// without DISPLAY).
fn has_display() -> bool {
    cfg!(target_os = "macos")
        || ["DISPLAY", "WAYLAND_DISPLAY", "BROWSER"].iter().any(|v| std::env::var_os(v).is_some_and(|x| !x.is_empty()))
}

/// Tries to open `url`; a failure only means the user opens it by hand.
fn open_browser(url: &str) {
    let browser = std::env::var("BROWSER").ok().filter(|b| !b.trim().is_empty());
    let program = browser.unwrap_or_else(|| if cfg!(target_os = "macos") { "open".into() } else { "xdg-open".into() });
    let child = std::process::Command::new(&program)
        .arg(url)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn();
    if let Ok(mut child) = child {
        // Reap it without waiting for it.
        std::thread::spawn(move || {
            let _ = child.wait();
        });
    }
}

fn who(id: &auth::Identity) -> String {
    match &id.email {
        Some(e) if !e.is_empty() && e != &id.username => format!("{} ({e})", id.username),
        _ if id.username.is_empty() => id.sub.clone(),
        _ => id.username.clone(),
    }
}

/// "47 h 12 min", "12 min", "40 s", "3 d 4 h" (hours up to 3 days: Globus access tokens last 48 h).
fn human(secs: i64) -> String {
    let s = secs.unsigned_abs();
    match s {
        0..60 => format!("{s} s"),
        60..3600 => format!("{} min", s / 60),
        3600..259_200 => format!("{} h {} min", s / 3600, s % 3600 / 60),
        _ => format!("{} d {} h", s / 86_400, s % 86_400 / 3600),
    }
}

fn expiry(st: &ServiceStatus, now: i64) -> Option<String> {
    let at = st.expires_at_seconds?;
    let left = at - now;
    Some(if left > 0 {
        format!("expires in {}", human(left))
    } else if st.refresh_token {
        format!("expired {} ago — refreshed on next use", human(left))
    } else {
        format!("expired {} ago — run `alcf-host auth login`", human(left))
    })
}

fn source_detail(source: &Source) -> String {
    match source {
        Source::Env { var } => format!("env (${var}, used as is; expiry unknown)"),
        Source::Store { path } => format!("alcf-host store ({})", path.display()),
        Source::Alcf { path } => format!("ALCF tokens.json ({}; refreshed into alcf-host's store)", path.display()),
        Source::None => "none — run `alcf-host auth login`".into(),
    }
}

fn status(cfg: &AuthConfig, json: bool) -> anyhow::Result<()> {
    let all = auth::status(cfg)?;
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64);
    if json {
        let v: Vec<serde_json::Value> = all
            .iter()
            .map(|st| {
                serde_json::json!({
                    "service": st.service.name,
                    "resource_server": st.service.resource_server,
                    "source": st.source.label(),
                    "file": match &st.source {
                        Source::Store { path } | Source::Alcf { path } => Some(path.display().to_string()),
                        _ => None,
                    },
                    "env_var": match &st.source { Source::Env { var } => Some(var.clone()), _ => None },
                    "identity": st.identity.as_ref().map(|i| serde_json::json!({
                        "sub": i.sub, "username": i.username, "email": i.email })),
                    "scopes": st.scope.as_ref().map(|s| s.split_whitespace().collect::<Vec<_>>()),
                    "expires_at_seconds": st.expires_at_seconds,
                    "expires_in_seconds": st.expires_at_seconds.map(|t| t - now),
                    "expiry": expiry(st, now),
                    "refresh_token": st.refresh_token,
                    "problem": st.problem,
                })
            })
            .collect();
        out!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(());
    }
    for st in &all {
        out!("{}: {}", st.service.name, source_detail(&st.source));
        if let Some(id) = &st.identity {
            out!("  who: {}", who(id));
        }
        if let Some(scope) = &st.scope {
            out!("  scopes: {scope}");
        }
        if let Some(e) = expiry(st, now) {
            out!("  access token: {e}");
        }
        if matches!(st.source, Source::Store { .. } | Source::Alcf { .. }) {
            out!("  refresh token: {}", if st.refresh_token { "yes" } else { "no" });
        }
        if let Some(p) = &st.problem {
            out!("  problem: {p}");
        }
    }
    Ok(())
}

async fn logout(cfg: &AuthConfig) -> anyhow::Result<()> {
    let outcome = auth::logout(cfg).await?;
    if !outcome.deleted && outcome.revoked == 0 && outcome.failed.is_empty() {
        out!("not logged in: there is no token file at {}", outcome.store.display());
        return Ok(());
    }
    out!("revoked {} token(s) at Globus; deleted {}", outcome.revoked, outcome.store.display());
    if !outcome.failed.is_empty() {
        for f in &outcome.failed {
            crate::cli::console(&format!("warning: not revoked: {f}"));
        }
        crate::cli::console("the tokens not revoked stay valid until they expire (at most 48 h for access tokens)");
    }
    if let Some(p) = cfg.alcf_path().filter(|p| p.exists()) {
        crate::cli::console(&format!(
            "note: ALCF's own token file {} is left alone; Sophia still uses it (delete it to log out there too)",
            p.display()
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_like_the_spec() {
        assert_eq!(human(47 * 3600 + 12 * 60 + 5), "47 h 12 min");
        assert_eq!(human(-3 * 3600), "3 h 0 min");
        assert_eq!(human(90), "1 min");
        assert_eq!(human(5), "5 s");
        assert_eq!(human(3 * 86_400 + 4 * 3600), "3 d 4 h");
    }
}
