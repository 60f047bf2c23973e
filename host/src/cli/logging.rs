//! Logging: one subscriber for the process, which routes each line to the `host.log` of the study
//! it belongs to. A study's work runs inside a `study` span that names its log file; every event
//! inside that span — the campaign's, the executor's, the plugin's own lines — is appended there.
//! So `compare --config`, which runs many studies in one process (some at once), gives each its
//! own complete log, where a global file logger would have given the first one everything.

use std::fmt::Write as _;
use std::fs::File;
use std::io::Write as _;
use std::path::Path;
use std::sync::{Arc, Mutex};

use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id};
use tracing::{Event, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::time::{FormatTime, SystemTime};
use tracing_subscriber::layer::{Context, Layer};
use tracing_subscriber::prelude::*;
use tracing_subscriber::registry::LookupSpan;

/// Installs the process's subscriber. `ALCF_LOG` sets the filter (e.g. `ALCF_LOG=debug` shows
/// per-trial lines); without it, info and above, and wasmtime's and Cranelift's warnings.
pub fn init() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("ALCF_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,wasmtime=warn,cranelift=warn"));
    let _ = tracing_subscriber::registry().with(StudyLogs.with_filter(filter)).try_init();
}

/// The span whose events go to `log` (appended; created if missing). Error level, so that no
/// `ALCF_LOG` filter short of `off` disables the routing itself.
pub fn study_span(log: &Path) -> tracing::Span {
    tracing::error_span!("study", log = %log.display())
}

struct LogFile(Arc<Mutex<File>>);

struct StudyLogs;

#[derive(Default)]
struct LogPath(Option<String>);

impl Visit for LogPath {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "log" {
            self.0 = Some(format!("{value:?}"));
        }
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "log" {
            self.0 = Some(value.to_string());
        }
    }
}

/// `message` first, then `key=value` for the other fields.
struct Line {
    message: String,
    fields: String,
}

impl Visit for Line {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            let _ = write!(self.message, "{value:?}");
        } else {
            let _ = write!(self.fields, " {}={value:?}", field.name());
        }
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.message.push_str(value);
        } else {
            let _ = write!(self.fields, " {}={value:?}", field.name());
        }
    }
}

impl<S> Layer<S> for StudyLogs
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        if attrs.metadata().name() != "study" {
            return;
        }
        let mut path = LogPath::default();
        attrs.record(&mut path);
        let Some(path) = path.0 else { return };
        match std::fs::OpenOptions::new().create(true).append(true).open(&path) {
            Ok(file) => {
                if let Some(span) = ctx.span(id) {
                    span.extensions_mut().insert(LogFile(Arc::new(Mutex::new(file))));
                }
            }
            Err(e) => {
                let _ = writeln!(std::io::stderr(), "warning: cannot open {path}: {e}; this study logs nothing");
            }
        }
    }

    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        let Some(scope) = ctx.event_scope(event) else { return };
        let Some(file) = scope.into_iter().find_map(|span| span.extensions().get::<LogFile>().map(|f| f.0.clone()))
        else {
            return;
        };
        let meta = event.metadata();
        let mut text = String::with_capacity(128);
        let _ = SystemTime.format_time(&mut Writer::new(&mut text));
        let mut line = Line { message: String::new(), fields: String::new() };
        event.record(&mut line);
        let _ = writeln!(text, " {:>5} {}: {}{}", meta.level(), meta.target(), line.message, line.fields);
        let mut file = file.lock().unwrap_or_else(|p| p.into_inner());
        // One write per line: concurrent studies and tasks never interleave inside a line.
        let _ = file.write_all(text.as_bytes());
    }
}
