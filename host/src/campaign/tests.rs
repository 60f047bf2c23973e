//! The campaign loop against a scripted executor: budgets, refills, slots, interrupts, cancels,
//! paused executors, retries, invalid rounds and a missing objective. The strategy is the real
//! `random` plugin (or the hostile test guest), so these also exercise the sandbox boundary.

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::*;
use crate::config::Direction;
use crate::executor::{BoxFuture, Failure, MetricsSink};
use crate::plugin::PluginRuntime;
use crate::plugin::sandbox::{Grants, Storage};
use crate::plugin::strategy::{PluginLimits, StudyInfo};
use crate::space::{Domain, Param, SearchSpace};
use crate::study::{StudyDb, StudyMeta};
use crate::trial::TrialRules;

fn plugin(rel: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..").join(rel)
}

fn space() -> SearchSpace {
    SearchSpace::new(vec![
        Param { name: "x".into(), domain: Domain::Float { low: 0.0, high: 1.0, log: false } },
        Param { name: "n".into(), domain: Domain::Int { low: 1, high: 8, log: false } },
    ])
    .unwrap()
}

/// What a scripted trial does: after `delay`, report this.
type Script = dyn Fn(&TrialSpec) -> (Duration, Result<RunReport, ExecutorError>) + Send + Sync;

/// An executor whose trials end as a script says, recording what it was asked.
struct Scripted {
    script: Box<Script>,
    /// Submit calls answered with a transient error before the first that succeeds.
    transient_submits: Mutex<u32>,
    submitted: Mutex<Vec<Vec<(u64, u32, u32)>>>,
    cancelled: Mutex<Vec<String>>,
    running: Arc<Mutex<HashSet<u64>>>,
    peak: Arc<Mutex<usize>>,
    slots_seen: Arc<Mutex<Vec<(u64, u32)>>>,
    outlive: bool,
}

impl Scripted {
    fn new(
        script: impl Fn(&TrialSpec) -> (Duration, Result<RunReport, ExecutorError>) + Send + Sync + 'static,
    ) -> Scripted {
        Scripted {
            script: Box::new(script),
            transient_submits: Mutex::new(0),
            submitted: Mutex::default(),
            cancelled: Mutex::default(),
            running: Arc::default(),
            peak: Arc::default(),
            slots_seen: Arc::default(),
            outlive: false,
        }
    }
}

fn value(v: f64) -> Result<RunReport, ExecutorError> {
    Ok(RunReport { metrics: [("loss".to_string(), v)].into(), ..RunReport::default() })
}

impl Executor for Scripted {
    fn kind(&self) -> &'static str {
        "scripted"
    }

    fn describe(&self) -> String {
        "scripted".into()
    }

    fn jobs_outlive_host(&self) -> bool {
        self.outlive
    }

    fn submit(&self, batch: Vec<TrialSpec>) -> BoxFuture<Result<Vec<Result<JobHandle, ExecutorError>>, ExecutorError>> {
        let mut left = self.transient_submits.lock().unwrap();
        if *left > 0 {
            *left -= 1;
            return Box::pin(async {
                Err(ExecutorError::Transient {
                    message: "scheduler busy".into(),
                    retry_after: Duration::from_millis(20),
                })
            });
        }
        self.submitted.lock().unwrap().push(batch.iter().map(|t| (t.id, t.attempt, t.slot)).collect());
        let handles = batch.iter().map(|t| Ok(JobHandle::new(format!("job-{}-{}", t.id, t.attempt)))).collect();
        Box::pin(async move { Ok(handles) })
    }

    fn wait(
        &self,
        trial: TrialSpec,
        _job: JobHandle,
        _metrics: MetricsSink,
    ) -> BoxFuture<Result<RunReport, ExecutorError>> {
        let (delay, result) = (self.script)(&trial);
        let (running, peak, slots) = (self.running.clone(), self.peak.clone(), self.slots_seen.clone());
        {
            let mut r = running.lock().unwrap();
            r.insert(trial.id);
            let mut p = peak.lock().unwrap();
            *p = (*p).max(r.len());
            slots.lock().unwrap().push((trial.id, trial.slot));
        }
        Box::pin(async move {
            tokio::time::sleep(delay).await;
            running.lock().unwrap().remove(&trial.id);
            result
        })
    }

    fn cancel(&self, jobs: Vec<JobHandle>) -> BoxFuture<Result<(), ExecutorError>> {
        self.cancelled.lock().unwrap().extend(jobs.into_iter().map(|j| j.id));
        Box::pin(async { Ok(()) })
    }
}

/// Records every event.
#[derive(Clone, Default)]
struct Recorder(Arc<Mutex<Vec<Event>>>);

impl Observer for Recorder {
    fn event(&mut self, event: &Event) {
        self.0.lock().unwrap().push(event.clone());
    }
}

impl Recorder {
    fn events(&self) -> Vec<Event> {
        self.0.lock().unwrap().clone()
    }
}

struct Setup {
    dir: tempfile::TempDir,
    db: Arc<StudyDb>,
    recorder: Recorder,
    interrupts: Interrupts,
}

fn campaign(
    plugin_file: &str,
    options: serde_json::Value,
    executor: Arc<dyn Executor>,
    budget: u32,
    parallel: u32,
    retries: u32,
) -> (Campaign, Setup) {
    let dir = tempfile::tempdir().unwrap();
    let meta = StudyMeta {
        name: "t".into(),
        objective: "loss".into(),
        direction: "minimize".into(),
        seed: 7,
        space: space().to_json(),
        executor: "scripted".into(),
        plugin: plugin_file.into(),
        plugin_sha256: "x".into(),
        created_at: 0.0,
    };
    let db = Arc::new(StudyDb::create(dir.path(), &meta).unwrap());
    let runtime = PluginRuntime::new(None).unwrap();
    let loaded = Arc::new(runtime.load(&plugin(plugin_file)).unwrap());
    let study = StudyInfo {
        name: "t".into(),
        space: space(),
        direction: Direction::Minimize,
        objective: "loss".into(),
        objectives: Vec::new(),
        seed: 7,
        budget: Some(budget),
        parallelism: parallel,
        options,
    };
    let limits = PluginLimits { memory_bytes: 256 << 20, call_timeout: Duration::from_secs(5), max_restarts: 1 };
    let strategy = SandboxedStrategy::new(
        loaded,
        &study,
        limits,
        Grants::from_list(&["log".into(), "storage".into()]),
        Storage::Study(db.clone()),
    );
    let rules = TrialRules {
        study: "t".into(),
        trials_dir: dir.path().join("trials"),
        objective: "loss".into(),
        direction: Direction::Minimize,
        budget: Some(budget),
        retries,
    };
    let loaded = TrialService::load(db.clone(), space(), rules).unwrap();
    let recorder = Recorder::default();
    let interrupts = Interrupts::default();
    let c = Campaign::new(
        loaded,
        strategy,
        executor,
        CampaignSettings { max_time: None, parallel },
        Box::new(recorder.clone()),
        interrupts.clone(),
    );
    (c, Setup { dir, db, recorder, interrupts })
}

fn states(db: &StudyDb) -> Vec<TrialState> {
    db.trials().unwrap().iter().map(|t| t.state).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn budget_is_exact_and_refills_never_exceed_parallel() {
    // Uneven durations make trials finish out of order, so refills interleave with running trials.
    let exec = Arc::new(Scripted::new(|t| (Duration::from_millis(5 + (t.id * 7 % 13)), value(t.id as f64))));
    let (c, s) = campaign("plugins/random.wasm", serde_json::json!({}), exec.clone(), 20, 3, 0);
    let summary = c.run().await.unwrap();
    assert_eq!(summary.reason, StopReason::Budget);
    assert_eq!(summary.tally.completed, 20);
    assert_eq!(states(&s.db), vec![TrialState::Completed; 20]);
    assert!(*exec.peak.lock().unwrap() <= 3, "more than `parallel` trials ran at once");
    // Every suggest asked for at most the free slots, and the batches cover each trial once.
    for e in s.recorder.events() {
        if let Event::Suggested { asked, returned, .. } = e {
            assert!(asked <= 3 && returned <= asked as usize, "asked {asked}, returned {returned}");
        }
    }
    let ids: Vec<u64> = exec.submitted.lock().unwrap().iter().flatten().map(|t| t.0).collect();
    assert_eq!(ids, (1..=20).collect::<Vec<_>>());
    // Slots: in 0..parallel, and never shared by two trials running at the same time.
    let seen = exec.slots_seen.lock().unwrap().clone();
    assert!(seen.iter().all(|(_, slot)| *slot < 3), "{seen:?}");
    // The best trial is the minimum of the scripted values (trial id), i.e. trial 1.
    assert_eq!(summary.tally.best, Some((1, 1.0)));
    assert!(s.recorder.events().contains(&Event::BestImproved { trial: 1, value: 1.0 }));
    assert!(matches!(s.recorder.events().last(), Some(Event::Stopped { reason: StopReason::Budget })));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slots_are_unique_among_running_trials() {
    let exec = Arc::new(Scripted::new(|t| (Duration::from_millis(3 + (t.id * 5 % 11)), value(1.0))));
    let (c, _s) = campaign("plugins/random.wasm", serde_json::json!({}), exec.clone(), 16, 4, 0);
    c.run().await.unwrap();
    // Replay the submit order: a slot handed out again must have been freed by a finished trial.
    let batches = exec.submitted.lock().unwrap().clone();
    let all: Vec<(u64, u32, u32)> = batches.into_iter().flatten().collect();
    assert_eq!(all.len(), 16);
    assert!(all.iter().all(|(_, _, slot)| *slot < 4));
    let first_four: HashSet<u32> = all.iter().take(4).map(|t| t.2).collect();
    assert_eq!(first_four.len(), 4, "the first four trials share a slot: {all:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn first_interrupt_waits_for_running_trials_second_cancels() {
    let exec = Arc::new(Scripted::new(|_| (Duration::from_millis(300), value(1.0))));
    let (c, s) = campaign("plugins/random.wasm", serde_json::json!({}), exec.clone(), 50, 2, 0);
    let interrupts = s.interrupts.clone();
    let recorder = s.recorder.clone();
    let handle = tokio::spawn(c.run());
    // Interrupt once both first trials started (an event, not a sleep, says when).
    wait_for(&recorder, |e| e.iter().filter(|e| matches!(e, Event::TrialStarted { .. })).count() >= 2).await;
    interrupts.raise();
    let summary = handle.await.unwrap().unwrap();
    assert_eq!(summary.reason, StopReason::Interrupted);
    assert_eq!(states(&s.db), vec![TrialState::Completed; 2], "running trials are waited for, no new ones start");

    // A second campaign over the same study shows cancelling: its trials end up `cancelled`.
    let exec2 = Arc::new(Scripted::new(|_| (Duration::from_secs(30), value(1.0))));
    let (c, s) = campaign("plugins/random.wasm", serde_json::json!({}), exec2.clone(), 50, 2, 0);
    let recorder = s.recorder.clone();
    let interrupts = s.interrupts.clone();
    let handle = tokio::spawn(c.run());
    wait_for(&recorder, |e| e.iter().filter(|e| matches!(e, Event::TrialStarted { .. })).count() >= 2).await;
    interrupts.raise();
    interrupts.raise();
    let summary = tokio::time::timeout(Duration::from_secs(10), handle).await.unwrap().unwrap().unwrap();
    assert_eq!(summary.reason, StopReason::Cancelled);
    assert_eq!(states(&s.db), vec![TrialState::Cancelled; 2]);
    let mut cancelled = exec2.cancelled.lock().unwrap().clone();
    cancelled.sort();
    assert_eq!(cancelled, ["job-1-1", "job-2-1"]);
}

async fn wait_for(recorder: &Recorder, done: impl Fn(&[Event]) -> bool) {
    tokio::time::timeout(Duration::from_secs(20), async {
        while !done(&recorder.events()) {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .expect("the awaited event never came");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_busy_scheduler_pauses_submission_without_failing_trials() {
    let exec = Arc::new(Scripted::new(|_| (Duration::from_millis(1), value(2.0))));
    *exec.transient_submits.lock().unwrap() = 2;
    let (c, s) = campaign("plugins/random.wasm", serde_json::json!({}), exec.clone(), 6, 2, 0);
    let summary = c.run().await.unwrap();
    assert_eq!(summary.reason, StopReason::Budget);
    assert_eq!(states(&s.db), vec![TrialState::Completed; 6]);
    let pauses = s.recorder.events().iter().filter(|e| matches!(e, Event::ExecutorPaused { .. })).count();
    assert_eq!(pauses, 2, "each transient refusal pauses once");
    // The first trials were submitted (with their first attempt) only after the scheduler answered.
    assert_eq!(exec.submitted.lock().unwrap()[0].iter().map(|t| (t.0, t.1)).collect::<Vec<_>>(), [(1, 1), (2, 1)]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_system_failure_is_retried_under_the_policy_and_a_trial_failure_is_not() {
    let exec = Arc::new(Scripted::new(|t| {
        let r = match (t.id, t.attempt) {
            (1, 1) => Ok(RunReport { failure: Some(Failure::system("node lost")), ..RunReport::default() }),
            (2, _) => Ok(RunReport { failure: Some(Failure::trial("exited with status 1")), ..RunReport::default() }),
            _ => value(1.0),
        };
        (Duration::from_millis(1), r)
    }));
    let (c, s) = campaign("plugins/random.wasm", serde_json::json!({}), exec.clone(), 3, 1, 1);
    let summary = c.run().await.unwrap();
    assert_eq!(summary.reason, StopReason::Budget);
    let rows = s.db.trials().unwrap();
    assert_eq!((rows[0].state, rows[0].attempt), (TrialState::Completed, 2), "trial 1 re-ran after the node loss");
    assert_eq!((rows[1].state, rows[1].attempt), (TrialState::Failed, 1), "a trial's own failure is final");
    assert!(s.recorder.events().iter().any(|e| matches!(e, Event::TrialRetried { trial: 1, attempt: 2, .. })));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_job_is_rerun() {
    let exec = Arc::new(Scripted::new(|t| {
        let r = if t.attempt == 1 {
            Err(ExecutorError::Lost { job: "j".into(), message: "gone".into() })
        } else {
            value(3.0)
        };
        (Duration::from_millis(1), r)
    }));
    let (c, s) = campaign("plugins/random.wasm", serde_json::json!({}), exec, 2, 2, 0);
    let summary = c.run().await.unwrap();
    let rows: Vec<_> = s.db.trials().unwrap().iter().map(|t| (t.id, t.state, t.attempt)).collect();
    assert_eq!(
        rows,
        [(1, TrialState::Completed, 2), (2, TrialState::Completed, 2)],
        "{summary:?} {:?}",
        s.recorder.events()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_objective_stops_after_three_in_a_row() {
    let exec = Arc::new(Scripted::new(|_| {
        (Duration::from_millis(1), Ok(RunReport { metrics: [("acc".to_string(), 0.5)].into(), ..RunReport::default() }))
    }));
    let (c, s) = campaign("plugins/random.wasm", serde_json::json!({}), exec, 50, 1, 0);
    let summary = c.run().await.unwrap();
    let StopReason::ObjectiveMissing(message) = &summary.reason else { panic!("{:?}", summary.reason) };
    assert!(message.contains("`loss`") && message.contains("acc") && message.contains("--resume"), "{message}");
    assert_eq!(states(&s.db), vec![TrialState::Failed; 3], "stopped after three, not at the budget");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_suggestions_stop_after_three_rounds() {
    let exec = Arc::new(Scripted::new(|_| (Duration::from_millis(1), value(1.0))));
    let (c, s) =
        campaign("tests/guests/hostile.wasm", serde_json::json!({"mode": "out_of_range"}), exec.clone(), 10, 1, 0);
    let summary = c.run().await.unwrap();
    let StopReason::PluginFailed(message) = &summary.reason else { panic!("{:?}", summary.reason) };
    assert!(message.contains("invalid trials 3 times"), "{message}");
    assert!(s.db.trials().unwrap().is_empty(), "no row is written for an invalid suggestion");
    assert!(exec.submitted.lock().unwrap().is_empty());
    let errors = s.recorder.events().iter().filter(|e| matches!(e, Event::Notice { level: Level::Error, .. })).count();
    assert!(errors >= 3, "each discarded suggestion is reported");
    drop(s.dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trials_are_recorded_and_ctrl_c_answered_while_the_plugin_computes() {
    // Trial 1 ends at once, trial 2 after 300 ms; every suggest computes for 1.5 s. So trial 2
    // finishes while the second suggest (asked when trial 1 finished) is still computing.
    let exec = Arc::new(Scripted::new(|t| (Duration::from_millis(if t.id == 2 { 300 } else { 1 }), value(1.0))));
    let options = serde_json::json!({"mode": "slow_suggest", "slow_ms": "1500"});
    let (c, s) = campaign("tests/guests/hostile.wasm", options, exec, 10, 2, 0);
    let recorder = s.recorder.clone();
    let interrupts = s.interrupts.clone();
    let handle = tokio::spawn(c.run());
    wait_for(&recorder, |e| e.iter().any(|e| matches!(e, Event::TrialFinished { trial: 2, .. }))).await;
    let events = recorder.events();
    let suggested = events.iter().filter(|e| matches!(e, Event::Suggested { .. })).count();
    assert_eq!(suggested, 1, "trial 2 was recorded before the second suggest returned: {events:?}");
    assert_eq!(states(&s.db), [TrialState::Completed, TrialState::Completed], "recorded in the database too");

    // Ctrl-C now, with nothing running and a suggest in progress: the run ends without waiting
    // for the plugin, and nothing it would have proposed is written.
    let asked = std::time::Instant::now();
    interrupts.raise();
    let summary = tokio::time::timeout(Duration::from_secs(10), handle).await.unwrap().unwrap().unwrap();
    assert_eq!(summary.reason, StopReason::Interrupted);
    assert!(asked.elapsed() < Duration::from_millis(1000), "Ctrl-C waited for the plugin: {:?}", asked.elapsed());
    assert_eq!(s.db.trials().unwrap().len(), 2);
}
