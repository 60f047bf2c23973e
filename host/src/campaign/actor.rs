//! The strategy runs on a thread of its own, so that a long `suggest` (a GP refit, a cold LLM) does
//! not stop the campaign from recording trials that finish meanwhile or from answering Ctrl-C, and
//! a guest computing for seconds never holds one of the host's async worker threads. Calls are
//! served one at a time, in the order they were sent, so the plugin sees exactly the sequence of
//! `suggest`, `observe` and `judge` calls that the campaign made. The thread runs a current-thread tokio
//! runtime of its own, for the async host calls (`llm.chat`) a plugin makes.

use std::time::{Duration, Instant};

use tokio::sync::mpsc;
use tracing::Instrument as _;

use crate::plugin::strategy::{Observation, PluginError, Progress, SandboxedStrategy, Verdict};
use crate::space::{Assignment, Value};

pub(super) enum Request {
    Suggest { count: u32, pending: Vec<(u64, Assignment)> },
    Observe { batch: Vec<Observation> },
    Judge { reports: Vec<Progress> },
}

pub(super) enum Reply {
    Suggested {
        asked: u32,
        result: Result<Vec<Vec<(String, Value)>>, PluginError>,
        elapsed: Duration,
        faults: Vec<Contained>,
    },
    Observed {
        count: usize,
        result: Result<(), PluginError>,
        elapsed: Duration,
        faults: Vec<Contained>,
    },
    Judged {
        reports: Vec<Progress>,
        result: Result<Vec<Verdict>, PluginError>,
        elapsed: Duration,
        faults: Vec<Contained>,
    },
}

pub(super) struct StrategyTask {
    pub replies: mpsc::UnboundedReceiver<Reply>,
}

/// What the runtime contained since the last call: faults it recovered from by a restart (a trap,
/// a timeout), then notices (an ungranted call, suppressed output), each as a line to report.
fn drain_faults(strategy: &mut SandboxedStrategy) -> Vec<Contained> {
    let mut out: Vec<Contained> = strategy.take_faults().iter().map(|f| Contained::Restart(f.to_string())).collect();
    out.extend(strategy.take_notices().iter().map(|n| Contained::Notice(n.to_string())));
    out
}

/// A fault the plugin was restarted after, or a notice about its behaviour.
pub(super) enum Contained {
    Restart(String),
    Notice(String),
}

impl StrategyTask {
    /// Starts the task; it ends once the request sender is dropped and its queue is served.
    pub fn spawn(strategy: SandboxedStrategy) -> (mpsc::UnboundedSender<Request>, StrategyTask) {
        let name = strategy.name().to_string();
        let (requests, inbox) = mpsc::unbounded_channel::<Request>();
        let (outbox, replies) = mpsc::unbounded_channel();
        // The thread inherits the caller's span, so plugin log lines land in the study's host.log.
        let span = tracing::Span::current();
        let spawned = std::thread::Builder::new().name(format!("strategy-{name}")).spawn(move || {
            // The future is made here, on its thread: it never crosses threads, so it need not be Send.
            match tokio::runtime::Builder::new_current_thread().enable_all().build() {
                Ok(rt) => rt.block_on(serve(strategy, inbox, outbox).instrument(span)),
                // The reply channel closes, and the campaign reports the plugin as failed.
                Err(e) => tracing::error!("cannot start the strategy's runtime: {e}"),
            }
        });
        if let Err(e) = spawned {
            tracing::error!("cannot start the strategy's thread: {e}");
        }
        (requests, StrategyTask { replies })
    }
}

async fn serve(
    mut strategy: SandboxedStrategy,
    mut inbox: mpsc::UnboundedReceiver<Request>,
    outbox: mpsc::UnboundedSender<Reply>,
) {
    while let Some(request) = inbox.recv().await {
        let reply = match request {
            Request::Suggest { count, pending } => {
                let start = Instant::now();
                let result = strategy.suggest(count, &pending).await;
                Reply::Suggested { asked: count, result, elapsed: start.elapsed(), faults: drain_faults(&mut strategy) }
            }
            Request::Observe { batch } => {
                let start = Instant::now();
                let result = strategy.observe(&batch).await;
                Reply::Observed {
                    count: batch.len(),
                    result,
                    elapsed: start.elapsed(),
                    faults: drain_faults(&mut strategy),
                }
            }
            Request::Judge { reports } => {
                let start = Instant::now();
                let result = strategy.judge(&reports).await;
                Reply::Judged { reports, result, elapsed: start.elapsed(), faults: drain_faults(&mut strategy) }
            }
        };
        if outbox.send(reply).is_err() {
            break;
        }
    }
}
