//! Plain Rust mirrors of the WIT types (`alcf:hpo/types@0.2.0`).
//!
//! Strategies work with these types only, so their algorithms compile and test natively without
//! any WebAssembly machinery. The export layer converts to and from the generated bindings.

/// One hyperparameter value.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    Float(f64),
    Int(i64),
    Choice(String),
}

impl Value {
    /// The value as a float (ints converted), `None` for a choice.
    pub fn as_f64(&self) -> Option<f64> {
        match self {
            Value::Float(v) => Some(*v),
            Value::Int(v) => Some(*v as f64),
            Value::Choice(_) => None,
        }
    }
}

/// A value bound to a parameter name.
#[derive(Clone, Debug, PartialEq)]
pub struct Assignment {
    pub name: String,
    pub value: Value,
}

/// One suggestion: a value for every parameter of the space.
pub type Params = Vec<Assignment>;

/// Where a parameter lives.
#[derive(Clone, Debug, PartialEq)]
pub enum Domain {
    /// Closed interval; `log`: uniform in log(value) (low > 0).
    Float { low: f64, high: f64, log: bool },
    /// Closed integer interval; `log` as for floats (low >= 1).
    Int { low: i64, high: i64, log: bool },
    /// Unordered categories.
    Choice(Vec<String>),
}

#[derive(Clone, Debug, PartialEq)]
pub struct Param {
    pub name: String,
    pub domain: Domain,
}

impl Param {
    pub fn float(name: &str, low: f64, high: f64) -> Self {
        Param { name: name.into(), domain: Domain::Float { low, high, log: false } }
    }
    pub fn log_float(name: &str, low: f64, high: f64) -> Self {
        Param { name: name.into(), domain: Domain::Float { low, high, log: true } }
    }
    pub fn int(name: &str, low: i64, high: i64) -> Self {
        Param { name: name.into(), domain: Domain::Int { low, high, log: false } }
    }
    pub fn log_int(name: &str, low: i64, high: i64) -> Self {
        Param { name: name.into(), domain: Domain::Int { low, high, log: true } }
    }
    pub fn choice(name: &str, choices: &[&str]) -> Self {
        Param { name: name.into(), domain: Domain::Choice(choices.iter().map(|s| s.to_string()).collect()) }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    Minimize,
    Maximize,
}

impl Direction {
    /// `value` turned so that lower is better.
    pub fn loss(self, value: f64) -> f64 {
        match self {
            Direction::Minimize => value,
            Direction::Maximize => -value,
        }
    }
}

/// A conditional parameter: `param` is active only when the choice parameter `parent` (itself
/// active) has one of `values`. A trial's params lack an inactive parameter; [`crate::Space`]
/// encodes a missing parameter as the middle of its range, so a strategy may ignore conditions
/// and propose every parameter (the host drops the inactive ones).
#[derive(Clone, Debug, PartialEq)]
pub struct Condition {
    pub param: String,
    pub parent: String,
    pub values: Vec<String>,
}

/// One objective of a study: the metric and which way is better.
#[derive(Clone, Debug, PartialEq)]
pub struct Objective {
    pub name: String,
    pub direction: Direction,
}

/// What a strategy is told about the study it serves.
#[derive(Clone, Debug, PartialEq)]
pub struct Study {
    pub name: String,
    pub space: Vec<Param>,
    /// The conditional parameters of `space` (empty when none is).
    pub conditions: Vec<Condition>,
    pub direction: Direction,
    pub objective: String,
    /// Every objective, `objective` and `direction` first: one entry unless the study is
    /// multi-objective (then the plugin must say [`PluginInfo::multi_objective`]).
    pub objectives: Vec<Objective>,
    pub seed: u64,
    pub budget: Option<u32>,
    pub parallelism: u32,
    /// Plugin options as a JSON object text ("{}" when none); see [`crate::Options`].
    pub options: String,
}

impl Study {
    /// A minimizing study over `space` with seed 0, no budget, parallelism 1 and no options:
    /// convenient in native tests. Adjust the public fields as needed.
    pub fn new(space: Vec<Param>) -> Self {
        Study {
            name: "study".into(),
            space,
            conditions: Vec::new(),
            direction: Direction::Minimize,
            objective: "objective".into(),
            objectives: vec![Objective { name: "objective".into(), direction: Direction::Minimize }],
            seed: 0,
            budget: None,
            parallelism: 1,
            options: "{}".into(),
        }
    }
    pub fn with_seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }
    pub fn with_options(mut self, options: &str) -> Self {
        self.options = options.into();
        self
    }
    pub fn with_direction(mut self, direction: Direction) -> Self {
        self.direction = direction;
        if let Some(first) = self.objectives.first_mut() {
            first.direction = direction;
        }
        self
    }
    /// A multi-objective study: `objectives` in order, the first becoming `objective` and
    /// `direction`.
    pub fn with_objectives(mut self, objectives: &[(&str, Direction)]) -> Self {
        self.objectives = objectives.iter().map(|(n, d)| Objective { name: n.to_string(), direction: *d }).collect();
        if let Some(first) = self.objectives.first() {
            self.objective = first.name.clone();
            self.direction = first.direction;
        }
        self
    }
}

/// A trial that was started: its id and parameters.
#[derive(Clone, Debug, PartialEq)]
pub struct Trial {
    pub id: u64,
    pub params: Params,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    Completed,
    Failed,
    Pruned,
}

/// A finished trial.
#[derive(Clone, Debug, PartialEq)]
pub struct Outcome {
    pub trial: Trial,
    pub status: Status,
    /// The objective as reported (not negated for maximization); `None` unless completed.
    pub value: Option<f64>,
    pub metrics: Vec<(String, f64)>,
    /// Its intermediate reports in order (one per epoch for the trainer); empty when it reported
    /// none. A pruned trial's last report is also its `metrics`.
    pub curve: Vec<Vec<(String, f64)>>,
}

impl Outcome {
    /// The value of each of `objectives` in this outcome's metrics, in order; `None` unless the
    /// trial completed and reported them all.
    pub fn values(&self, objectives: &[Objective]) -> Option<Vec<f64>> {
        if self.status != Status::Completed {
            return None;
        }
        objectives.iter().map(|o| self.metric(&o.name)).collect()
    }

    /// A metric of the final result.
    pub fn metric(&self, name: &str) -> Option<f64> {
        self.metrics.iter().find(|(k, _)| k == name).map(|(_, v)| *v)
    }

    /// The value of `metric` in each intermediate report, by step (`None` where a report lacks it).
    pub fn curve_of(&self, metric: &str) -> Vec<Option<f64>> {
        self.curve.iter().map(|m| m.iter().find(|(k, _)| k == metric).map(|(_, v)| *v)).collect()
    }
}

/// One intermediate report of a running trial, for [`crate::Strategy::judge`].
#[derive(Clone, Debug, PartialEq)]
pub struct Report {
    pub trial: Trial,
    /// 0 for the trial's first report, then counting up by one (its epoch, for the trainer).
    pub step: u32,
    pub metrics: Vec<(String, f64)>,
}

impl Report {
    pub fn metric(&self, name: &str) -> Option<f64> {
        self.metrics.iter().find(|(k, _)| k == name).map(|(_, v)| *v)
    }
}

/// What a strategy says of a report.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Let the trial run on.
    Continue,
    /// Stop it now; it is recorded pruned and observed with [`Status::Pruned`].
    Prune,
}

/// What `describe` returns.
#[derive(Clone, Debug, PartialEq)]
pub struct PluginInfo {
    pub name: String,
    pub version: String,
    pub description: String,
    /// Host capabilities the plugin wants: any of "log", "storage", "llm", "jobs".
    pub capabilities: Vec<String>,
    /// The host should call [`crate::Strategy::judge`] with running trials' reports.
    pub prunes: bool,
    /// The plugin optimizes every objective of [`Study::objectives`] at once; the host refuses a
    /// plugin without it for a study with more than one objective.
    pub multi_objective: bool,
}

impl PluginInfo {
    pub fn new(name: &str, version: &str, description: &str) -> Self {
        PluginInfo {
            name: name.into(),
            version: version.into(),
            description: description.into(),
            capabilities: Vec::new(),
            prunes: false,
            multi_objective: false,
        }
    }
    /// Says the plugin handles studies with several objectives ([`Study::objectives`]).
    pub fn multi_objective(mut self) -> Self {
        self.multi_objective = true;
        self
    }
    /// Asks the host for running trials' reports ([`crate::Strategy::judge`]).
    pub fn pruning(mut self) -> Self {
        self.prunes = true;
        self
    }
    pub fn with_capabilities(mut self, caps: &[&str]) -> Self {
        self.capabilities = caps.iter().map(|s| s.to_string()).collect();
        self
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    Trace,
    Debug,
    Info,
    Warn,
    Error,
}
