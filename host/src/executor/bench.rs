//! The `bench` executor: standard test functions evaluated in-process, with known optima, so
//! strategies can be compared quickly and their regret reported. An optional delay simulates
//! trial duration (for parallelism and resume tests) without using CPU, and `epochs` simulated
//! learning curves (for pruning).

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use alcf_testfns::{ParamKind, ParamValue, TestFunction};

use super::{
    BoxFuture, Executor, ExecutorError, Failure, FailureCause, JobHandle, MetricsLine, MetricsSink, RunReport,
    TrialSpec,
};
use crate::space::{Choice, Domain, Metrics, Param, SearchSpace, Value};

/// The metric name under which a bench trial reports its function value.
pub const METRIC: &str = "value";
/// The metric under which a noisy bench function reports its noiseless value.
pub const TRUE_METRIC: &str = "true_value";
/// The epoch number (1..=epochs) in each line of a simulated learning curve.
pub const EPOCH_METRIC: &str = "epoch";

/// `executor.function` (or `--objective bench:NAME`) names no test function.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
#[error("unknown bench function: {0}")]
pub struct UnknownFunction(pub alcf_testfns::UnknownFunction);

// Not `#[from]`: that would also make the inner error the `source`, and an error chain printed
// with its sources (`{:#}`) would say the same thing twice.
impl From<alcf_testfns::UnknownFunction> for UnknownFunction {
    fn from(e: alcf_testfns::UnknownFunction) -> Self {
        UnknownFunction(e)
    }
}

#[derive(Clone)]
pub struct BenchExecutor {
    function: TestFunction,
    /// The whole trial's time, or each epoch's when it has a curve.
    delay: Option<Duration>,
    /// Simulated learning curves: this many intermediate reports per trial ([`learning_curve`]).
    epochs: Option<u32>,
    /// Jobs `cancel` asked to stop, and the wake-up for their waits: a stopped trial ends at
    /// once, as a killed process does, not at the end of its epoch.
    cancelled: Arc<(Mutex<HashSet<String>>, tokio::sync::Notify)>,
    /// A multi-objective problem (`zdt1_d5`): trials report one metric per objective (`f1`,
    /// `f2`) and no learning curve; `function` is then its first objective.
    multi: Option<Arc<alcf_testfns::multi::MultiObjective>>,
}

/// A simulated learning curve for a trial whose final value is `value` (lower is better) on a
/// function whose minimum is `optimum`: epoch `e` of `epochs` reports
/// `value + slowness * ((epochs / e)^0.5 - 1)`, which falls to `value` at the last epoch, with
/// `slowness = u * (value - optimum + 0.1 * (1 + |optimum|))` and `u` in [0.1, 1] hashed from
/// the trial's parameters. Worse trials learn more slowly, as badly tuned training runs do, at
/// rates that differ tenfold between trials: early ranks say much about final ones, but not
/// everything (curves cross), so stopping early can stop the eventual best.
pub fn learning_curve(value: f64, optimum: f64, params: &[ParamValue], epochs: u32) -> Vec<f64> {
    let mut h: u64 = 0x9e37_79b9_7f4a_7c15;
    for p in params {
        let bits = match p {
            ParamValue::Float(x) => x.to_bits(),
            ParamValue::Int(x) => *x as u64,
            ParamValue::Choice(c) => {
                c.bytes().fold(0xcbf2_9ce4_8422_2325, |a, b| (a ^ b as u64).wrapping_mul(0x100_0000_01b3))
            }
        };
        h = splitmix(h ^ bits);
    }
    let u = 0.1 + 0.9 * ((h >> 11) as f64 / (1u64 << 53) as f64);
    let slowness = u * ((value - optimum).max(0.0) + 0.1 * (1.0 + optimum.abs()));
    let n = epochs.max(1) as f64;
    (1..=epochs.max(1)).map(|e| value + slowness * ((n / e as f64).sqrt() - 1.0)).collect()
}

/// Sleeps one epoch of `d`, or less when `job` is cancelled meanwhile (it stays in the set).
async fn epoch(d: Duration, cancelled: &(Mutex<HashSet<String>>, tokio::sync::Notify), job: &str) {
    let deadline = tokio::time::Instant::now() + d;
    loop {
        // Registered before the check, so a cancel between the two still wakes it.
        let woken = cancelled.1.notified();
        tokio::pin!(woken);
        woken.as_mut().enable();
        if cancelled.0.lock().map(|c| c.contains(job)).unwrap_or(false) {
            return;
        }
        tokio::select! {
            _ = tokio::time::sleep_until(deadline) => return,
            _ = &mut woken => {}
        }
    }
}

fn floats_of(v: &[ParamValue]) -> Vec<f64> {
    v.iter()
        .map(|p| match p {
            ParamValue::Float(x) => *x,
            ParamValue::Int(x) => *x as f64,
            ParamValue::Choice(_) => f64::NAN,
        })
        .collect()
}

fn splitmix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

impl BenchExecutor {
    pub fn new(name: &str, dim: Option<usize>, delay: Option<Duration>) -> Result<BenchExecutor, UnknownFunction> {
        if let Some(m) = alcf_testfns::multi::by_name(name, dim)? {
            return Ok(BenchExecutor::from_multi(m, delay));
        }
        let function = alcf_testfns::by_name(name, dim)?;
        Ok(BenchExecutor::from_function(function, delay))
    }

    pub fn from_function(function: TestFunction, delay: Option<Duration>) -> BenchExecutor {
        BenchExecutor { function, delay, epochs: None, cancelled: Arc::default(), multi: None }
    }

    /// A multi-objective problem; [`BenchExecutor::function`] is its first objective.
    pub fn from_multi(m: alcf_testfns::multi::MultiObjective, delay: Option<Duration>) -> BenchExecutor {
        let first = m.eval.clone();
        let function = TestFunction {
            name: m.name.clone(),
            params: m.params.clone(),
            optimum: 0.0,
            argmin: vec![ParamValue::Float(0.0); m.dim()],
            eval: Arc::new(move |v: &[ParamValue]| first(&floats_of(v))[0]),
            truth: None,
        };
        BenchExecutor { multi: Some(Arc::new(m)), ..BenchExecutor::from_function(function, delay) }
    }

    /// The metrics of a multi-objective problem's objectives (all minimized), in order; `None`
    /// for a single-objective function (its metric is [`METRIC`]).
    pub fn objectives(&self) -> Option<&[String]> {
        self.multi.as_deref().map(|m| m.objectives.as_slice())
    }

    /// The multi-objective problem, when it is one.
    pub fn multi(&self) -> Option<&alcf_testfns::multi::MultiObjective> {
        self.multi.as_deref()
    }

    /// Trials report a simulated learning curve of `epochs` lines ([`learning_curve`]), one per
    /// `delay`, and end with its last value.
    pub fn with_epochs(mut self, epochs: Option<u32>) -> BenchExecutor {
        self.epochs = epochs.filter(|e| *e > 0);
        self
    }

    pub fn function(&self) -> &TestFunction {
        &self.function
    }

    /// The function's own search space (bench studies need no `[space]` in the config).
    pub fn space(&self) -> SearchSpace {
        let params = self
            .function
            .params
            .iter()
            .map(|p| Param {
                name: p.name.clone(),
                domain: match &p.kind {
                    ParamKind::Float { low, high, log } => Domain::Float { low: *low, high: *high, log: *log },
                    ParamKind::Int { low, high, log } => Domain::Int { low: *low, high: *high, log: *log },
                    ParamKind::Choice(c) => Domain::Choice(
                        c.iter()
                            .map(|s| Choice { label: s.clone(), json: serde_json::Value::String(s.clone()) })
                            .collect(),
                    ),
                },
            })
            .collect();
        SearchSpace::new(params).expect("test functions define valid spaces")
    }

    /// The noiseless value at a recorded trial's parameters (as stored: JSON numbers and
    /// labels); `None` when they do not fit the function.
    pub fn true_value_of(&self, params: &serde_json::Map<String, serde_json::Value>) -> Option<f64> {
        let args = self
            .function
            .params
            .iter()
            .map(|p| {
                let v = params.get(&p.name)?;
                Some(match &p.kind {
                    ParamKind::Float { .. } => ParamValue::Float(v.as_f64()?),
                    ParamKind::Int { .. } => ParamValue::Int(v.as_i64()?),
                    ParamKind::Choice(_) => ParamValue::Choice(v.as_str()?.to_string()),
                })
            })
            .collect::<Option<Vec<_>>>()?;
        Some(self.function.true_value(&args))
    }

    /// Evaluates the function at a validated assignment.
    pub fn evaluate(&self, trial: &TrialSpec) -> Result<f64, ExecutorError> {
        Ok((self.function.eval)(&self.args(trial)?))
    }

    /// The function's arguments from a trial's parameters.
    fn args(&self, trial: &TrialSpec) -> Result<Vec<ParamValue>, ExecutorError> {
        let mut args = Vec::with_capacity(self.function.params.len());
        for p in &self.function.params {
            let v = trial.params.get(&p.name).ok_or_else(|| ExecutorError::Submit {
                trial: trial.id,
                message: format!("bench function {} needs parameter `{}`", self.function.name, p.name),
            })?;
            args.push(match v {
                Value::Float(x) => ParamValue::Float(*x),
                Value::Int(x) => ParamValue::Int(*x),
                Value::Choice(x) => ParamValue::Choice(x.clone()),
            });
        }
        Ok(args)
    }
}

impl Executor for BenchExecutor {
    fn kind(&self) -> &'static str {
        "bench"
    }

    fn describe(&self) -> String {
        format!("bench:{}", self.function.name)
    }

    fn jobs_outlive_host(&self) -> bool {
        false
    }

    fn submit(&self, batch: Vec<TrialSpec>) -> BoxFuture<Result<Vec<Result<JobHandle, ExecutorError>>, ExecutorError>> {
        // A trial that lacks one of the function's parameters (a `[space]` in the config that does
        // not match it) fails here, on its own, rather than in `wait`.
        let jobs = batch
            .iter()
            .map(|trial| self.evaluate(trial).map(|_| JobHandle::new(format!("bench-{}", trial.id))))
            .collect();
        Box::pin(async move { Ok(jobs) })
    }

    fn wait(
        &self,
        trial: TrialSpec,
        job: JobHandle,
        metrics: MetricsSink,
    ) -> BoxFuture<Result<RunReport, ExecutorError>> {
        if let Some(m) = self.multi.clone() {
            // One metric per objective, no curve: what a two-objective study reads.
            let values = self.args(&trial).map(|a| (m.eval)(&floats_of(&a)));
            let delay = self.delay;
            return Box::pin(async move {
                let values = values?;
                if let Some(d) = delay {
                    tokio::time::sleep(d).await;
                }
                Ok(RunReport { metrics: m.objectives.iter().cloned().zip(values).collect(), ..RunReport::default() })
            });
        }
        // Without `epochs` nothing is sent to the sink. A noisy function also reports its
        // noiseless value (TRUE_METRIC), which regret is measured on.
        let values = self.args(&trial).map(|a| {
            let value = (self.function.eval)(&a);
            let optimum = self.function.optimum;
            let curve = self.epochs.filter(|_| value.is_finite()).map(|n| learning_curve(value, optimum, &a, n));
            (value, self.function.truth.as_ref().map(|t| t(&a)).filter(|t| t.is_finite()), curve)
        });
        let delay = self.delay;
        let cancelled = self.cancelled.clone();
        Box::pin(async move {
            let (value, truth, curve) = values?;
            if let Some(curve) = curve {
                let mut lines: Vec<Metrics> = Vec::with_capacity(curve.len());
                for (i, v) in curve.iter().enumerate() {
                    if let Some(d) = delay {
                        epoch(d, &cancelled, &job.id).await;
                    }
                    if cancelled.0.lock().map(|mut c| c.remove(&job.id)).unwrap_or(false) {
                        let last = lines.last().cloned().unwrap_or_default();
                        let reason = format!("cancelled after {i} epochs");
                        let failure = Failure { reason, cause: FailureCause::Cancelled };
                        return Ok(RunReport {
                            metrics: last,
                            curve: lines,
                            failure: Some(failure),
                            ..RunReport::default()
                        });
                    }
                    let line: Metrics = [(METRIC.to_string(), *v), (EPOCH_METRIC.to_string(), (i + 1) as f64)].into();
                    let _ = metrics.send(MetricsLine { trial: trial.id, index: i, metrics: line.clone() });
                    lines.push(line);
                }
                let last = lines.last().cloned().unwrap_or_default();
                let mut report = RunReport { metrics: last, curve: lines, ..RunReport::default() };
                if let Some(t) = truth {
                    report.metrics.insert(TRUE_METRIC.to_string(), t);
                }
                return Ok(report);
            }
            if let Some(d) = delay {
                tokio::time::sleep(d).await;
            }
            let mut report = if value.is_finite() {
                RunReport { metrics: [(METRIC.to_string(), value)].into(), ..RunReport::default() }
            } else {
                RunReport { non_numeric: vec![(METRIC.to_string(), value.to_string())], ..RunReport::default() }
            };
            if let Some(t) = truth {
                report.metrics.insert(TRUE_METRIC.to_string(), t);
            }
            Ok(report)
        })
    }

    fn cancel(&self, jobs: Vec<JobHandle>) -> BoxFuture<Result<(), ExecutorError>> {
        if self.epochs.is_some()
            && let Ok(mut c) = self.cancelled.0.lock()
        {
            c.extend(jobs.into_iter().map(|j| j.id));
            self.cancelled.1.notify_waiters();
        }
        Box::pin(async { Ok(()) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(bench: &BenchExecutor, space: &SearchSpace, x: f64) -> TrialSpec {
        let proposed: Vec<(String, Value)> = space.names().map(|n| (n.to_string(), Value::Float(x))).collect();
        let params = space.validate(&proposed).unwrap();
        TrialSpec {
            id: 3,
            attempt: 1,
            params_json: params.to_json(space),
            params,
            dir: "/nonexistent".into(),
            job_name: crate::executor::job_name(&bench.function.name, 3, 1),
            slot: 0,
            parent: None,
        }
    }

    #[tokio::test]
    async fn evaluates_in_batches_without_metrics_lines() {
        let bench = BenchExecutor::new("branin", None, None).unwrap();
        assert_eq!(bench.describe(), "bench:branin");
        let space = bench.space();
        let t = spec(&bench, &space, 1.0);
        let jobs = bench.submit(vec![t.clone(), t.clone()]).await.unwrap();
        assert_eq!(jobs.len(), 2);
        let job = jobs.into_iter().next().unwrap().unwrap();
        assert_eq!(job, JobHandle::new("bench-3"));
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let report = bench.wait(t.clone(), job, tx).await.unwrap();
        assert_eq!(report.metrics.get(METRIC).copied(), bench.evaluate(&t).ok());
        assert_eq!(report.failure, None);
        assert!(rx.recv().await.is_none(), "no metrics lines, and the sender is gone");

        // A trial without the function's parameters fails on its own in the batch.
        let other = SearchSpace::new(vec![Param {
            name: "z".into(),
            domain: Domain::Float { low: 0.0, high: 1.0, log: false },
        }])
        .unwrap();
        let wrong = spec(&bench, &other, 0.5);
        let jobs = bench.submit(vec![t, wrong]).await.unwrap();
        assert!(jobs[0].is_ok());
        assert!(matches!(&jobs[1], Err(ExecutorError::Submit { trial: 3, message }) if message.contains("`x")));
    }

    #[tokio::test]
    async fn multi_objective_problems_report_one_metric_per_objective() {
        let bench = BenchExecutor::new("zdt1_d5", None, None).unwrap();
        assert_eq!(bench.describe(), "bench:zdt1_d5");
        assert_eq!(bench.objectives(), Some(&["f1".to_string(), "f2".to_string()][..]));
        assert!(BenchExecutor::new("branin", None, None).unwrap().objectives().is_none());
        let space = bench.space();
        assert_eq!(space.names().count(), 5);
        let t = spec(&bench, &space, 0.0);
        let (tx, _rx) = tokio::sync::mpsc::unbounded_channel();
        let report = bench.wait(t.clone(), JobHandle::new("bench-3"), tx).await.unwrap();
        // x = 0: on the front, f1 = 0 and f2 = 1.
        assert_eq!(report.metrics, [("f1".to_string(), 0.0), ("f2".to_string(), 1.0)].into());
        assert_eq!(bench.evaluate(&t).unwrap(), 0.0);
    }

    #[test]
    fn bbob_problems_are_bench_functions() {
        let b = BenchExecutor::new("bbob_f21_i3", Some(10), None).unwrap();
        assert_eq!((b.function.name.as_str(), b.function.dim()), ("bbob_f021_i03_d10", 10));
        let err = BenchExecutor::new("bbob_f21_i3", None, None).err().unwrap();
        assert!(err.to_string().contains("name the dimension"), "{err}");
        // The message carries the inner one, so it is not also the source: printed with its
        // sources (anyhow's `{:#}`), it would say the same thing twice.
        assert!(std::error::Error::source(&err).is_none());
    }

    #[tokio::test]
    async fn a_noisy_function_reports_its_noiseless_value_too() {
        let bench = BenchExecutor::new("bbob_f1_i2_d3_add5", None, None).unwrap();
        let plain = BenchExecutor::new("bbob_f1_i2_d3", None, None).unwrap();
        let space = bench.space();
        let t = spec(&bench, &space, 1.0);
        let (tx, _rx) = tokio::sync::mpsc::unbounded_channel();
        let report = bench.wait(t.clone(), JobHandle::new("bench-3"), tx).await.unwrap();
        let (value, truth) = (report.metrics[METRIC], report.metrics[TRUE_METRIC]);
        assert_eq!(truth, plain.evaluate(&t).unwrap());
        assert_ne!(value, truth);
        let stored = serde_json::json!({"x0": 1.0, "x1": 1.0, "x2": 1.0});
        assert_eq!(bench.true_value_of(stored.as_object().unwrap()), Some(truth));
        assert_eq!(bench.true_value_of(serde_json::json!({"x0": 1.0}).as_object().unwrap()), None);
        let (tx, _rx) = tokio::sync::mpsc::unbounded_channel();
        let report = plain.wait(t, JobHandle::new("bench-3"), tx).await.unwrap();
        assert!(!report.metrics.contains_key(TRUE_METRIC));
    }

    #[tokio::test]
    async fn learning_curves_are_streamed_end_at_the_value_and_stop_when_cancelled() {
        let bench = BenchExecutor::new("branin", None, None).unwrap().with_epochs(Some(6));
        let space = bench.space();
        let t = spec(&bench, &space, 1.0);
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let report = bench.wait(t.clone(), JobHandle::new("bench-3"), tx).await.unwrap();
        let value = bench.evaluate(&t).unwrap();
        assert_eq!(report.metrics[METRIC], value, "the last epoch is the function's value");
        assert_eq!(report.curve.len(), 6);
        let curve: Vec<f64> = report.curve.iter().map(|m| m[METRIC]).collect();
        assert!(curve.windows(2).all(|w| w[0] > w[1]), "a falling curve: {curve:?}");
        for i in 0..6 {
            let line = rx.recv().await.unwrap();
            assert_eq!((line.trial, line.index, line.metrics[EPOCH_METRIC]), (3, i, (i + 1) as f64));
        }
        // Curves of other trials fall at other rates.
        let other = learning_curve(value, bench.function.optimum, &[ParamValue::Float(0.3), ParamValue::Float(0.7)], 6);
        assert_eq!(other[5], value);
        assert_ne!(other[0], curve[0]);

        // Cancelled: the next epoch is not reported, and the report says so.
        let slow = BenchExecutor::new("branin", None, Some(Duration::from_millis(20))).unwrap().with_epochs(Some(50));
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let waiting = tokio::spawn(slow.wait(t.clone(), JobHandle::new("bench-3"), tx));
        rx.recv().await.unwrap();
        slow.cancel(vec![JobHandle::new("bench-3")]).await.unwrap();
        let report = waiting.await.unwrap().unwrap();
        let failure = report.failure.unwrap();
        assert_eq!(failure.cause, FailureCause::Cancelled, "{}", failure.reason);
        assert!(report.curve.len() < 5, "stopped within an epoch: {}", report.curve.len());
    }

    #[test]
    fn an_unknown_function_is_a_typed_error() {
        let Err(err) = BenchExecutor::new("branni", None, None) else { panic!("branni is no test function") };
        let msg = err.to_string();
        assert!(msg.starts_with("unknown bench function: ") && msg.contains("branin"), "{msg}");
        let build = crate::executor::BuildError::from(err);
        assert!(build.to_string().contains("branni"), "{build}");
    }
}
