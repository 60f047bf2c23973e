//! The campaign's side of an agent plugin: the `jobs` backend (a channel into the loop) and the
//! agent's task.
//!
//! The agent runs in a task of its own; each `jobs` call becomes an [`AgentCall`] that the loop
//! answers between its other work, so a submitted trial takes the same path as a suggested one
//! (validated, a row before its job, the budget, the backlog while the executor is paused) and
//! a finished trial is recorded before the agent hears of it. The loop keeps what an agent has
//! not yet been told (`inbox`) and at most one `wait` in progress.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tracing::Instrument;

use crate::plugin::agent::{SandboxedAgent, Standing};
use crate::plugin::capability::llm::BoxFuture;
use crate::plugin::capability::{JobsBackend, JobsError};
use crate::plugin::strategy::{Observation, PluginError};
use crate::space::Value;

/// Refused submissions in a row that end the run: an agent that keeps sending what the trial
/// service refuses (a spent budget, an invalid space) would otherwise spin.
pub(super) const MAX_REFUSED: u32 = 100;
/// `wait` calls in a row with nothing running and nothing to report that end the run.
pub(super) const MAX_IDLE_WAITS: u32 = 1000;

type Reply<T> = oneshot::Sender<Result<T, JobsError>>;

/// One `jobs` call, for the loop to answer.
pub(super) enum AgentCall {
    Submit { params: Vec<(String, Value)>, parent: Option<u64>, reply: Reply<u64> },
    Wait { timeout: Duration, reply: Reply<Vec<Observation>> },
    Cancel { trial: u64, reply: Reply<()> },
}

/// The receiving end, handed to [`super::Campaign::new_agent`].
pub struct AgentCalls(mpsc::UnboundedReceiver<AgentCall>);

/// A `jobs` backend and the receiver of its calls: the backend goes into the agent's
/// capabilities, the receiver to the campaign.
pub fn jobs_channel() -> (Arc<dyn JobsBackend>, AgentCalls) {
    let (tx, rx) = mpsc::unbounded_channel();
    (Arc::new(ChannelJobs(tx)), AgentCalls(rx))
}

struct ChannelJobs(mpsc::UnboundedSender<AgentCall>);

impl ChannelJobs {
    async fn ask<T>(&self, call: impl FnOnce(Reply<T>) -> AgentCall) -> Result<T, JobsError> {
        let (tx, rx) = oneshot::channel();
        let over = || JobsError::Backend("the run is over".into());
        self.0.send(call(tx)).map_err(|_| over())?;
        rx.await.map_err(|_| over())?
    }
}

impl JobsBackend for ChannelJobs {
    fn submit(&self, params: Vec<(String, Value)>, parent: Option<u64>) -> BoxFuture<'_, Result<u64, JobsError>> {
        Box::pin(self.ask(move |reply| AgentCall::Submit { params, parent, reply }))
    }

    fn wait(&self, timeout: Duration) -> BoxFuture<'_, Result<Vec<Observation>, JobsError>> {
        Box::pin(self.ask(move |reply| AgentCall::Wait { timeout, reply }))
    }

    fn cancel(&self, trial: u64) -> BoxFuture<'_, Result<(), JobsError>> {
        Box::pin(self.ask(move |reply| AgentCall::Cancel { trial, reply }))
    }
}

/// What the agent's side of the loop woke up for.
pub(super) enum AgentEvent {
    Call(AgentCall),
    /// `run` ended: returned, refused, or faulted (contained or given up).
    Returned(Box<SandboxedAgent>, Result<(), PluginError>),
    /// The task running the agent panicked or was cancelled.
    Lost(String),
    /// The `wait` in progress reached its timeout with nothing to report.
    WaitOver,
}

type RunTask = JoinHandle<(Box<SandboxedAgent>, Result<(), PluginError>)>;

/// The agent's working state inside the loop.
pub(super) struct AgentRun {
    calls: mpsc::UnboundedReceiver<AgentCall>,
    task: Option<RunTask>,
    /// Finished trials the agent has not been given yet.
    inbox: Vec<Observation>,
    waiter: Option<(tokio::time::Instant, Reply<Vec<Observation>>)>,
    /// Every finished trial, for a fresh `run` after a fault.
    pub history: Vec<Observation>,
    pub finished: HashSet<u64>,
    /// `run` returned: the loop ends once what runs has finished.
    pub done: bool,
    pub refused: u32,
    pub idle_waits: u32,
}

impl AgentRun {
    pub fn new(calls: AgentCalls, history: Vec<Observation>) -> AgentRun {
        AgentRun {
            calls: calls.0,
            task: None,
            inbox: Vec::new(),
            waiter: None,
            finished: history.iter().map(|o| o.trial).collect(),
            history,
            done: false,
            refused: 0,
            idle_waits: 0,
        }
    }

    /// Starts a fresh `run` over `standing`; what a previous one was told or waited for is gone
    /// with it.
    pub fn start(&mut self, mut agent: Box<SandboxedAgent>, standing: Standing) {
        self.inbox.clear();
        self.waiter = None;
        // In the study's span: the agent's log lines go to the study's host.log.
        self.task = Some(tokio::spawn(
            async move {
                let result = agent.run(&standing).await;
                (agent, result)
            }
            .in_current_span(),
        ));
    }

    /// Recorded trials: to the `wait` in progress, or kept for the next.
    pub fn finished(&mut self, observations: &[Observation]) {
        self.history.extend_from_slice(observations);
        self.finished.extend(observations.iter().map(|o| o.trial));
        self.inbox.extend_from_slice(observations);
        if let Some((_, reply)) = self.waiter.take() {
            let _ = reply.send(Ok(std::mem::take(&mut self.inbox)));
        }
    }

    /// A `wait` call: answered now when there is news or nothing could bring any, else at the
    /// first finished trial or the timeout.
    pub fn wait(&mut self, timeout: Duration, reply: Reply<Vec<Observation>>, idle: bool) {
        if !self.inbox.is_empty() {
            self.idle_waits = 0;
            let _ = reply.send(Ok(std::mem::take(&mut self.inbox)));
        } else if idle || timeout.is_zero() {
            self.idle_waits += u32::from(idle);
            let _ = reply.send(Ok(Vec::new()));
        } else {
            self.idle_waits = 0;
            self.waiter = Some((tokio::time::Instant::now() + timeout, reply));
        }
    }

    /// Ends the `wait` in progress with nothing.
    pub fn wait_over(&mut self) {
        if let Some((_, reply)) = self.waiter.take() {
            let _ = reply.send(Ok(Vec::new()));
        }
    }

    /// Stops the agent's task (the run is over).
    pub fn abort(&mut self) {
        if let Some(t) = self.task.take() {
            t.abort();
        }
    }

    /// The next thing the loop must handle for the agent; never, once it is done.
    pub async fn next(&mut self) -> AgentEvent {
        let AgentRun { calls, task, waiter, .. } = self;
        let deadline = waiter.as_ref().map(|(d, _)| *d);
        tokio::select! {
            Some(call) = calls.recv() => AgentEvent::Call(call),
            joined = async { task.as_mut().expect("guarded").await }, if task.is_some() => {
                *task = None;
                match joined {
                    Ok((agent, result)) => AgentEvent::Returned(agent, result),
                    Err(e) => AgentEvent::Lost(e.to_string()),
                }
            }
            _ = async { tokio::time::sleep_until(deadline.expect("guarded")).await }, if deadline.is_some() => {
                AgentEvent::WaitOver
            }
            else => std::future::pending().await,
        }
    }
}

/// The agent's next event, or never without an agent.
pub(super) async fn next_event(agent: &mut Option<AgentRun>) -> AgentEvent {
    match agent {
        Some(a) => a.next().await,
        None => std::future::pending().await,
    }
}
