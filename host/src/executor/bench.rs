//! The `bench` executor: standard test functions evaluated in-process, with known optima, so
//! strategies can be compared quickly and their regret reported. An optional delay simulates
//! trial duration (for parallelism and resume tests) without using CPU.

use std::time::Duration;

use alcf_testfns::{ParamKind, ParamValue, TestFunction};

use super::{BoxFuture, Executor, ExecutorError, JobId, RunReport, TrialSpec};
use crate::space::{Choice, Domain, Param, SearchSpace, Value};

/// The metric name under which a bench trial reports its function value.
pub const METRIC: &str = "value";

pub struct BenchExecutor {
    function: TestFunction,
    delay: Option<Duration>,
}

impl BenchExecutor {
    pub fn new(name: &str, dim: Option<usize>, delay: Option<Duration>) -> Result<BenchExecutor, ExecutorError> {
        let function = alcf_testfns::by_name(name, dim)
            .map_err(|e| ExecutorError::Other(format!("unknown bench function: {e}")))?;
        Ok(BenchExecutor { function, delay })
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

    /// Evaluates the function at a validated assignment.
    pub fn evaluate(&self, trial: &TrialSpec) -> Result<f64, ExecutorError> {
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
        Ok((self.function.eval)(&args))
    }
}

impl Executor for BenchExecutor {
    fn kind(&self) -> &'static str {
        "bench"
    }

    fn jobs_outlive_host(&self) -> bool {
        false
    }

    fn submit(&self, trial: &TrialSpec) -> BoxFuture<Result<JobId, ExecutorError>> {
        let job = JobId(format!("bench-{}", trial.id));
        Box::pin(async move { Ok(job) })
    }

    fn wait(&self, trial: &TrialSpec, _job: &JobId) -> BoxFuture<Result<RunReport, ExecutorError>> {
        let value = self.evaluate(trial);
        let delay = self.delay;
        Box::pin(async move {
            if let Some(d) = delay {
                tokio::time::sleep(d).await;
            }
            let value = value?;
            Ok(RunReport { metrics: [(METRIC.to_string(), value)].into(), ..RunReport::default() })
        })
    }

    fn cancel(&self, _job: &JobId) -> BoxFuture<Result<(), ExecutorError>> {
        Box::pin(async { Ok(()) })
    }
}
