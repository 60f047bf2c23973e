//! What a campaign tells the world: a closed set of events. The campaign never prints; the
//! progress bar, the host log, `compare`'s collectors and (later) a dashboard are observers.

use std::time::Duration;

use crate::study::TrialState;

/// Why a run ended.
#[derive(Debug, Clone, PartialEq)]
pub enum StopReason {
    /// The trial budget is spent.
    Budget,
    /// The wall-time budget is spent.
    Time,
    /// The first Ctrl-C, SIGTERM or SIGHUP: no new trials; local trials were waited for, remote
    /// jobs were left running (a resume re-attaches to them).
    Interrupted,
    /// A second Ctrl-C: running trials were cancelled; a resume re-runs them.
    Cancelled,
    /// The strategy had nothing more to suggest.
    StrategyDone,
    /// The plugin failed beyond its restart budget or kept proposing invalid trials.
    PluginFailed(String),
    /// The plugin refused its options: a configuration error.
    PluginOptions(String),
    /// Trials could not be started, or the executor cannot work.
    ExecutorFailed(String),
    /// Several trials in a row ran but reported no objective: the config names the wrong one.
    ObjectiveMissing(String),
}

impl StopReason {
    pub fn is_error(&self) -> bool {
        matches!(
            self,
            StopReason::PluginFailed(_)
                | StopReason::PluginOptions(_)
                | StopReason::ExecutorFailed(_)
                | StopReason::ObjectiveMissing(_)
        )
    }
}

/// The closed set of things that happen in a campaign.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// The run begins; counts include trials of earlier runs.
    Started {
        budget: Option<u32>,
        completed: usize,
        failed: usize,
        pruned: usize,
        best: Option<f64>,
        replayed: usize,
    },
    /// A trial's job was submitted and recorded.
    TrialStarted {
        trial: u64,
        attempt: u32,
        job: String,
        params: String,
    },
    /// A running trial reported an intermediate metrics line.
    TrialProgress {
        trial: u64,
        index: usize,
    },
    /// A trial ended (completed or failed) and is recorded.
    TrialFinished {
        trial: u64,
        state: TrialState,
        value: Option<f64>,
        failure: Option<String>,
    },
    /// A trial was stopped early by a pruning decision and is recorded as pruned; `value` is
    /// the objective in the report it was pruned on.
    TrialPruned {
        trial: u64,
        step: u32,
        value: Option<f64>,
    },
    /// A trial will be run again (its job was lost, or it failed for a system reason).
    TrialRetried {
        trial: u64,
        attempt: u32,
        reason: String,
    },
    /// A finished trial is the best so far.
    BestImproved {
        trial: u64,
        value: f64,
    },
    /// The strategy answered a `suggest` call.
    Suggested {
        asked: u32,
        returned: usize,
        elapsed: Duration,
    },
    /// The strategy answered an `observe` call about `count` finished trials.
    Observed {
        count: usize,
        elapsed: Duration,
    },
    /// The strategy judged `reports` intermediate reports and pruned `pruned` trials.
    Judged {
        reports: usize,
        pruned: usize,
        elapsed: Duration,
    },
    /// The executor cannot take work for now (connection lost, scheduler busy); nothing is lost.
    ExecutorPaused {
        reason: String,
    },
    ExecutorResumed,
    /// The plugin faulted and was rebuilt from the study history.
    PluginRestarted {
        message: String,
    },
    /// Something a person should read that is not one of the above (an invalid suggestion, a
    /// plugin that refused a call, an interrupt).
    Notice {
        level: Level,
        message: String,
    },
    /// The run is over.
    Stopped {
        reason: StopReason,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    Info,
    Warn,
    Error,
}

/// Consumes campaign events. Called on the campaign's task, between its steps: keep it cheap.
pub trait Observer: Send {
    fn event(&mut self, event: &Event);
}

/// Observes nothing.
pub struct Silent;

impl Observer for Silent {
    fn event(&mut self, _: &Event) {}
}

/// Several observers, in order.
pub struct Fanout(pub Vec<Box<dyn Observer>>);

impl Observer for Fanout {
    fn event(&mut self, event: &Event) {
        for o in &mut self.0 {
            o.event(event);
        }
    }
}

/// Writes events to the log (`host.log` through tracing): per-trial ones at debug, the rest at
/// info or above. The study database is the record of trials; this is the narrative.
pub struct LogObserver;

impl Observer for LogObserver {
    fn event(&mut self, event: &Event) {
        match event {
            Event::Started { budget, completed, failed, replayed, .. } => {
                tracing::info!(?budget, completed, failed, replayed, "campaign started")
            }
            Event::TrialStarted { trial, attempt, job, params } => {
                tracing::debug!(trial, attempt, job = %job, params = %params, "trial started")
            }
            Event::TrialProgress { trial, index } => tracing::trace!(trial, index, "trial metrics line"),
            Event::TrialFinished { trial, state, value, failure } => match failure {
                Some(f) => tracing::warn!(trial, "trial {}: {f}", state.as_str()),
                None => tracing::debug!(trial, ?value, "trial {}", state.as_str()),
            },
            Event::TrialPruned { trial, step, value } => tracing::info!(trial, step, ?value, "trial pruned"),
            Event::TrialRetried { trial, attempt, reason } => {
                tracing::warn!(trial, attempt, "re-running trial: {reason}")
            }
            Event::BestImproved { trial, value } => tracing::info!(trial, value, "new best trial"),
            Event::Suggested { asked, returned, elapsed } => {
                tracing::debug!(asked, returned, ms = elapsed.as_secs_f64() * 1e3, "suggest")
            }
            Event::Observed { count, elapsed } => {
                tracing::debug!(count, ms = elapsed.as_secs_f64() * 1e3, "observe")
            }
            Event::Judged { reports, pruned, elapsed } => {
                tracing::debug!(reports, pruned, ms = elapsed.as_secs_f64() * 1e3, "judge")
            }
            Event::ExecutorPaused { reason } => tracing::warn!("executor paused: {reason}"),
            Event::ExecutorResumed => tracing::info!("executor resumed"),
            Event::PluginRestarted { message } => tracing::warn!("{message}"),
            Event::Notice { level: Level::Info, message } => tracing::info!("{message}"),
            Event::Notice { level: Level::Warn, message } => tracing::warn!("{message}"),
            Event::Notice { level: Level::Error, message } => tracing::error!("{message}"),
            Event::Stopped { reason } => tracing::info!(?reason, "campaign stopped"),
        }
    }
}
