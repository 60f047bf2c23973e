//! `alcf-host dashboard [--root DIR] [--port P]`: a local web server that lists the studies under
//! a root and shows each one live: its report's views, rendered from the study database opened
//! read-only on every request, and re-rendered in the browser when the study changes (the page
//! polls a small version route every 2 s). The dashboard writes nothing and never holds a lock a
//! running host waits for.
//!
//! It binds 127.0.0.1 unless told otherwise; listening on any other address requires a token
//! (given, or made at start), which every URL then carries (`?token=…`).
//!
//! A deliberately small HTTP/1.1 server (GET and HEAD, one request per connection): the pages are
//! for one person's browser on their own machine.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use super::report::esc;
use alcf_host::study::{DB_FILE, StudyDb, TrialState};

pub struct DashboardOptions {
    pub root: PathBuf,
    pub listen: String,
    pub port: u16,
    pub token: Option<String>,
}

struct Server {
    root: PathBuf,
    token: Option<String>,
}

pub async fn dashboard(opts: DashboardOptions) -> anyhow::Result<()> {
    let loopback = matches!(opts.listen.as_str(), "127.0.0.1" | "localhost" | "::1");
    let token = match (&opts.token, loopback) {
        (Some(t), _) if t.is_empty() || !t.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_') => {
            bail!("--token: give letters, digits, `-` and `_` only");
        }
        (Some(t), _) => Some(t.clone()),
        (None, true) => None,
        // Anyone who can reach the port could read the studies: a token it is.
        (None, false) => Some(random_token()?),
    };
    let listener = TcpListener::bind((opts.listen.as_str(), opts.port))
        .await
        .with_context(|| format!("cannot listen on {}:{}", opts.listen, opts.port))?;
    let addr = listener.local_addr()?;
    let query = token.as_ref().map_or(String::new(), |t| format!("?token={t}"));
    // The first line on stdout is the URL (tests and scripts read it).
    println!("dashboard: http://{addr}/{query}");
    crate::cli::console(&format!(
        "serving the studies under {} (read-only); Ctrl-C stops the dashboard",
        opts.root.display()
    ));
    let server = Arc::new(Server { root: opts.root, token });
    loop {
        let (conn, _) = tokio::select! {
            a = listener.accept() => a?,
            _ = tokio::signal::ctrl_c() => return Ok(()),
        };
        let server = server.clone();
        tokio::spawn(async move {
            if let Err(e) = server.handle(conn).await {
                tracing::debug!("dashboard: {e}");
            }
        });
    }
}

fn random_token() -> anyhow::Result<String> {
    let mut buf = [0u8; 16];
    std::fs::File::open("/dev/urandom").and_then(|mut f| std::io::Read::read_exact(&mut f, &mut buf))?;
    Ok(buf.iter().map(|b| format!("{b:02x}")).collect())
}

struct Response {
    status: u16,
    kind: &'static str,
    body: Vec<u8>,
}

impl Response {
    fn html(body: String) -> Response {
        Response { status: 200, kind: "text/html; charset=utf-8", body: body.into_bytes() }
    }
    fn json(v: serde_json::Value) -> Response {
        Response { status: 200, kind: "application/json", body: v.to_string().into_bytes() }
    }
    fn error(status: u16, text: &str) -> Response {
        Response { status, kind: "text/plain; charset=utf-8", body: format!("{text}\n").into_bytes() }
    }
}

impl Server {
    async fn handle(self: Arc<Self>, mut conn: TcpStream) -> anyhow::Result<()> {
        let mut head = Vec::new();
        let mut buf = [0u8; 4096];
        // The request head, at most 16 KiB, within 10 s.
        let read = tokio::time::timeout(Duration::from_secs(10), async {
            while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 16 << 10 {
                let n = conn.read(&mut buf).await?;
                if n == 0 {
                    break;
                }
                head.extend_from_slice(&buf[..n]);
            }
            Ok::<_, std::io::Error>(())
        })
        .await;
        if read.is_err() {
            return Ok(());
        }
        let text = String::from_utf8_lossy(&head);
        let line = text.lines().next().unwrap_or("");
        let mut parts = line.split(' ');
        let (method, target) = (parts.next().unwrap_or(""), parts.next().unwrap_or("/"));
        let resp = if method != "GET" && method != "HEAD" {
            Response::error(405, "only GET and HEAD")
        } else {
            let (path, query) = target.split_once('?').unwrap_or((target, ""));
            let given = query.split('&').find_map(|kv| kv.strip_prefix("token="));
            match &self.token {
                Some(t) if given != Some(t.as_str()) => {
                    Response::error(403, "this dashboard wants its token: open the URL it printed (…/?token=…)")
                }
                _ => {
                    let server = self.clone();
                    let path = path.to_string();
                    tokio::task::spawn_blocking(move || server.route(&path))
                        .await
                        .unwrap_or_else(|e| Response::error(500, &format!("the page failed: {e}")))
                }
            }
        };
        let reason = match resp.status {
            200 => "OK",
            403 => "Forbidden",
            404 => "Not Found",
            405 => "Method Not Allowed",
            _ => "Internal Server Error",
        };
        let mut out = format!(
            "HTTP/1.1 {} {reason}\r\nContent-Type: {}\r\nContent-Length: {}\r\nCache-Control: no-store\r\nConnection: close\r\n\r\n",
            resp.status,
            resp.kind,
            resp.body.len()
        )
        .into_bytes();
        if method != "HEAD" {
            out.extend_from_slice(&resp.body);
        }
        conn.write_all(&out).await?;
        conn.shutdown().await?;
        Ok(())
    }

    fn query(&self) -> String {
        self.token.as_ref().map_or(String::new(), |t| format!("?token={t}"))
    }

    fn route(&self, path: &str) -> Response {
        let result = match path {
            "/" => self.index(),
            "/api/studies" => self.studies().map(Response::json),
            p => match p.strip_prefix("/study/") {
                Some(name) if valid(name) && !self.root.join(name).join(DB_FILE).exists() => {
                    return Response::error(
                        404,
                        &format!("no study {name} under {}: / lists them", self.root.display()),
                    );
                }
                Some(name) if valid(name) => self.study_page(name),
                _ => match p.strip_prefix("/api/study/").and_then(|r| r.strip_suffix("/version")) {
                    Some(name) if valid(name) => self.version(name).map(|v| Response::json(json!({"version": v}))),
                    _ => return Response::error(404, "no such page: / lists the studies"),
                },
            },
        };
        result.unwrap_or_else(|e| Response::error(500, &format!("{e:#}")))
    }

    fn names(&self) -> Vec<String> {
        super::study::known_studies(&self.root)
    }

    fn open(&self, name: &str) -> anyhow::Result<StudyDb> {
        StudyDb::open_read_only(&self.root.join(name)).map_err(Into::into)
    }

    fn studies(&self) -> anyhow::Result<serde_json::Value> {
        let mut out = Vec::new();
        for name in self.names() {
            let Ok(db) = self.open(&name) else { continue };
            let (Ok(meta), Ok(trials)) = (db.meta(), db.trials()) else { continue };
            let direction = alcf_host::config::Direction::parse(&meta.direction).unwrap_or_default();
            let best = crate::cli::study::best_trial(&trials, direction).and_then(|t| t.value);
            let count = |s: TrialState| trials.iter().filter(|t| t.state == s).count();
            let last = trials.iter().filter_map(|t| t.finished_at.or(t.started_at)).fold(meta.created_at, f64::max);
            out.push(json!({
                "name": name, "objective": meta.objective, "direction": meta.direction, "trials": trials.len(),
                "completed": count(TrialState::Completed), "failed": count(TrialState::Failed),
                "running": count(TrialState::Running), "best": best, "last_activity": last,
            }));
        }
        Ok(json!(out))
    }

    /// Changes whenever a trial is added, starts or ends.
    fn version(&self, name: &str) -> anyhow::Result<String> {
        let db = self.open(name)?;
        let trials = db.trials()?;
        let ended = trials.iter().filter(|t| t.state.is_finished()).count();
        let running = trials.iter().filter(|t| t.state == TrialState::Running).count();
        let last = trials.iter().filter_map(|t| t.finished_at.or(t.started_at)).fold(0.0, f64::max);
        Ok(format!("{}-{ended}-{running}-{last}", trials.len()))
    }

    fn index(&self) -> anyhow::Result<Response> {
        let q = self.query();
        let rows: String = self
            .studies()?
            .as_array()
            .into_iter()
            .flatten()
            .map(|s| {
                let name = s["name"].as_str().unwrap_or("");
                format!(
                    "<tr><td><a href=\"/study/{name}{q}\">{name}</a></td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                    s["objective"].as_str().unwrap_or(""),
                    s["trials"],
                    s["completed"],
                    s["failed"],
                    s["running"],
                    s["best"].as_f64().map_or("-".into(), alcf_host::space::Assignment::format_float)
                )
            })
            .collect();
        Ok(Response::html(format!(
            "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>alcf-host dashboard</title>\
             <style>body{{font-family:system-ui,sans-serif;margin:2em auto;max-width:1000px}}\
             td,th{{border-bottom:1px solid #ddd;padding:4px 10px;text-align:left}}</style></head><body>\
             <h1>Studies under {}</h1><table id=\"studies\"><tr><th>study</th><th>objective</th><th>trials</th>\
             <th>completed</th><th>failed</th><th>running</th><th>best</th></tr>{rows}</table>\
             <p>The list refreshes itself; a study's page follows it live.</p>\
             <script>setTimeout(function(){{location.reload();}}, 5000);</script></body></html>",
            esc(&self.root.display().to_string())
        )))
    }

    fn study_page(&self, name: &str) -> anyhow::Result<Response> {
        let db = self.open(name)?;
        let version = self.version(name)?;
        let q = self.query();
        let sep = if q.is_empty() { "?" } else { "&" };
        // Polls the version; a change re-renders the page (every view at once, from the database).
        let tail = format!(
            "<p class=\"files\"><a href=\"/{q}\">all studies</a> · live: this page follows the study</p>\n\
             <script>\n(function(){{var v={version:?};document.body.setAttribute('data-version',v);\
             function poll(){{fetch('/api/study/{name}/version{q}{sep}t='+Date.now()).then(function(r){{return r.json();}})\
             .then(function(j){{if(j.version!==v){{location.reload();}}else{{setTimeout(poll,2000);}}}})\
             .catch(function(){{setTimeout(poll,5000);}});}}setTimeout(poll,2000);}})();\n</script>\n"
        );
        Ok(Response::html(crate::cli::report::page(&db, &tail)?))
    }
}

fn valid(name: &str) -> bool {
    !name.is_empty()
        && !name.starts_with('.')
        && name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
}
