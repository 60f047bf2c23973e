//! Search spaces and parameter assignments, and the validation of untrusted assignments.
//!
//! This module knows nothing about plugins, executors or storage: it is the vocabulary they share.
//! Every assignment a plugin proposes passes [`SearchSpace::validate`] before a trial row is written.

use std::collections::BTreeMap;
use std::fmt;

use serde_json::Value as Json;

/// One hyperparameter value.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    Float(f64),
    Int(i64),
    /// The label of a categorical option.
    Choice(String),
}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            // `{}` on f64 prints the shortest text that round-trips, which is what a trial program wants.
            Value::Float(v) => write!(f, "{v}"),
            Value::Int(v) => write!(f, "{v}"),
            Value::Choice(v) => f.write_str(v),
        }
    }
}

/// One option of a categorical parameter: its label in the plugin ABI and its typed form in
/// `params.json` (so `batch_size = [32, 64]` reaches the trial program as numbers).
#[derive(Clone, Debug, PartialEq)]
pub struct Choice {
    pub label: String,
    pub json: Json,
}

impl Choice {
    pub fn from_json(json: Json) -> Result<Choice, String> {
        let label = match &json {
            Json::String(s) => s.clone(),
            Json::Number(n) => n.to_string(),
            Json::Bool(b) => b.to_string(),
            other => return Err(format!("a choice must be a string, number or boolean, not {other}")),
        };
        Ok(Choice { label, json })
    }
}

#[derive(Clone, Debug, PartialEq)]
pub enum Domain {
    Float { low: f64, high: f64, log: bool },
    Int { low: i64, high: i64, log: bool },
    Choice(Vec<Choice>),
}

impl Domain {
    fn describe(&self) -> String {
        match self {
            Domain::Float { low, high, log } => {
                format!("float in [{low}, {high}]{}", if *log { " (log)" } else { "" })
            }
            Domain::Int { low, high, log } => {
                format!("int in [{low}, {high}]{}", if *log { " (log)" } else { "" })
            }
            Domain::Choice(c) => {
                let labels: Vec<&str> = c.iter().map(|c| c.label.as_str()).collect();
                format!("one of [{}]", labels.join(", "))
            }
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct Param {
    pub name: String,
    pub domain: Domain,
}

/// When a conditional parameter is active: its parent (a choice parameter defined before it, itself
/// active) has one of `values` (labels), as `width` only when `model = "cnn"`.
#[derive(Clone, Debug, PartialEq)]
pub struct Condition {
    pub parent: String,
    pub values: Vec<String>,
}

/// An ordered list of parameters, some of them conditional. The order is the configuration's and
/// is part of the study: strategies see it, and it fixes the column order of reports.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct SearchSpace {
    params: Vec<Param>,
    /// Conditional parameters by name.
    conditions: BTreeMap<String, Condition>,
}

/// A validated assignment: one value per parameter, in the space's order.
#[derive(Clone, Debug, PartialEq)]
pub struct Assignment {
    pub values: Vec<(String, Value)>,
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum SpaceError {
    #[error("parameter `{name}`: {reason}")]
    BadParam { name: String, reason: String },
    #[error("parameter `{0}` is defined twice")]
    Duplicate(String),
    #[error("the search space is empty: define at least one parameter")]
    Empty,
    #[error("parameter `{name}`: `when` {reason}")]
    BadCondition { name: String, reason: String },
}

/// Why a proposed assignment was refused. Each names the parameter and what was expected.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum InvalidAssignment {
    #[error("parameter `{name}` is missing")]
    Missing { name: String },
    #[error("parameter `{name}` is not in the search space (known: {known})")]
    Unknown { name: String, known: String },
    #[error("parameter `{name}` is given twice")]
    Repeated { name: String },
    #[error("parameter `{name}` = {value} has the wrong type: expected {expected}")]
    WrongType { name: String, value: String, expected: String },
    #[error("parameter `{name}` = {value} is out of range: expected {expected}")]
    OutOfRange { name: String, value: String, expected: String },
    #[error("parameter `{name}` is not a finite number ({value})")]
    NotFinite { name: String, value: String },
}

impl SearchSpace {
    pub fn new(params: Vec<Param>) -> Result<SearchSpace, SpaceError> {
        if params.is_empty() {
            return Err(SpaceError::Empty);
        }
        for (i, p) in params.iter().enumerate() {
            if params[..i].iter().any(|q| q.name == p.name) {
                return Err(SpaceError::Duplicate(p.name.clone()));
            }
            check_param(p)?;
        }
        Ok(SearchSpace { params, conditions: BTreeMap::new() })
    }

    /// The space with conditional parameters (`when` in the config). Each parent must be a choice
    /// parameter defined before its child (so conditions never form a cycle), and each value one
    /// of its labels.
    pub fn with_conditions(mut self, conditions: Vec<(String, Condition)>) -> Result<SearchSpace, SpaceError> {
        for (name, c) in conditions {
            let bad = |reason: String| SpaceError::BadCondition { name: name.clone(), reason };
            let Some(child) = self.params.iter().position(|p| p.name == name) else {
                return Err(bad("belongs to no parameter of the space".into()));
            };
            let Some(parent) = self.params.iter().position(|p| p.name == c.parent) else {
                return Err(bad(format!("names `{}`, which is not a parameter of the space", c.parent)));
            };
            if parent >= child {
                return Err(bad(format!("names `{}`, which must be defined before `{name}`", c.parent)));
            }
            let Domain::Choice(choices) = &self.params[parent].domain else {
                return Err(bad(format!("names `{}`, which is not a choice parameter", c.parent)));
            };
            if c.values.is_empty() {
                return Err(bad("lists no values".into()));
            }
            for v in &c.values {
                if !choices.iter().any(|o| &o.label == v) {
                    return Err(bad(format!(
                        "`{}` is not an option of `{}` ({})",
                        v,
                        c.parent,
                        self.params[parent].domain.describe()
                    )));
                }
            }
            if self.conditions.insert(name.clone(), c).is_some() {
                return Err(bad("is given twice".into()));
            }
        }
        Ok(self)
    }

    /// The condition of a conditional parameter.
    pub fn condition(&self, name: &str) -> Option<&Condition> {
        self.conditions.get(name)
    }

    /// Whether `name` is active given the values chosen so far (its parents come first).
    fn active(&self, name: &str, chosen: &[(String, Value)]) -> bool {
        let Some(c) = self.conditions.get(name) else { return true };
        match chosen.iter().find(|(n, _)| *n == c.parent) {
            Some((_, Value::Choice(label))) => c.values.contains(label),
            _ => false,
        }
    }

    pub fn params(&self) -> &[Param] {
        &self.params
    }

    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.params.iter().map(|p| p.name.as_str())
    }

    pub fn param(&self, name: &str) -> Option<&Param> {
        self.params.iter().find(|p| p.name == name)
    }

    /// Checks an untrusted assignment: every parameter exactly once, of the right type, in range.
    /// An integer-valued float for an int parameter is refused: a plugin that mixes them up has a bug
    /// the author should see. A conditional parameter whose condition does not hold is left out
    /// of the result, whether it was given or not (a strategy may propose every parameter).
    pub fn validate(&self, proposed: &[(String, Value)]) -> Result<Assignment, InvalidAssignment> {
        for (i, (name, _)) in proposed.iter().enumerate() {
            if proposed[..i].iter().any(|(n, _)| n == name) {
                return Err(InvalidAssignment::Repeated { name: name.clone() });
            }
            if self.param(name).is_none() {
                return Err(InvalidAssignment::Unknown {
                    name: name.clone(),
                    known: self.names().collect::<Vec<_>>().join(", "),
                });
            }
        }
        let mut values: Vec<(String, Value)> = Vec::with_capacity(self.params.len());
        for p in &self.params {
            if !self.active(&p.name, &values) {
                continue;
            }
            let Some((_, v)) = proposed.iter().find(|(n, _)| *n == p.name) else {
                return Err(InvalidAssignment::Missing { name: p.name.clone() });
            };
            check_value(p, v)?;
            values.push((p.name.clone(), v.clone()));
        }
        Ok(Assignment { values })
    }
}

impl SearchSpace {
    /// Checks an assignment written by a person as JSON (`[[study.enqueue]]`, `study enqueue
    /// --params`): every parameter exactly once, of the right type, in range. A whole number is
    /// accepted for a float parameter (`lr = 1`); a choice may be given as its value or its label.
    /// The result's [`Assignment::to_json`] is the stored form.
    pub fn validate_json(&self, json: &serde_json::Map<String, Json>) -> Result<Assignment, InvalidAssignment> {
        let mut proposed = Vec::with_capacity(json.len());
        for (name, j) in json {
            let Some(p) = self.param(name) else {
                return Err(InvalidAssignment::Unknown {
                    name: name.clone(),
                    known: self.names().collect::<Vec<_>>().join(", "),
                });
            };
            let wrong = || InvalidAssignment::WrongType {
                name: name.clone(),
                value: j.to_string(),
                expected: p.domain.describe(),
            };
            let v = match &p.domain {
                Domain::Float { .. } => Value::Float(j.as_f64().ok_or_else(wrong)?),
                Domain::Int { .. } => Value::Int(j.as_i64().ok_or_else(wrong)?),
                Domain::Choice(_) => Value::Choice(Choice::from_json(j.clone()).map_err(|_| wrong())?.label),
            };
            proposed.push((name.clone(), v));
        }
        self.validate(&proposed)
    }
}

fn check_param(p: &Param) -> Result<(), SpaceError> {
    let bad = |reason: String| SpaceError::BadParam { name: p.name.clone(), reason };
    if p.name.is_empty() || !p.name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-') {
        return Err(bad("names may use letters, digits, `_` and `-` only".into()));
    }
    match &p.domain {
        Domain::Float { low, high, log } => {
            if !low.is_finite() || !high.is_finite() {
                return Err(bad("low and high must be finite".into()));
            }
            if low >= high {
                return Err(bad(format!("low ({low}) must be below high ({high})")));
            }
            if *log && *low <= 0.0 {
                return Err(bad(format!("a log scale needs low > 0 (got {low})")));
            }
        }
        Domain::Int { low, high, log } => {
            if low > high {
                return Err(bad(format!("low ({low}) must not exceed high ({high})")));
            }
            if *log && *low < 1 {
                return Err(bad(format!("a log scale needs low >= 1 (got {low})")));
            }
        }
        Domain::Choice(choices) => {
            if choices.is_empty() {
                return Err(bad("a choice needs at least one option".into()));
            }
            for (i, c) in choices.iter().enumerate() {
                if choices[..i].iter().any(|d| d.label == c.label) {
                    return Err(bad(format!("option `{}` is listed twice", c.label)));
                }
            }
        }
    }
    Ok(())
}

fn check_value(p: &Param, v: &Value) -> Result<(), InvalidAssignment> {
    let name = p.name.clone();
    let wrong_type = || InvalidAssignment::WrongType {
        name: p.name.clone(),
        value: format!("{v:?}"),
        expected: p.domain.describe(),
    };
    let out_of_range =
        || InvalidAssignment::OutOfRange { name: p.name.clone(), value: v.to_string(), expected: p.domain.describe() };
    match (&p.domain, v) {
        (Domain::Float { low, high, .. }, Value::Float(x)) => {
            if !x.is_finite() {
                return Err(InvalidAssignment::NotFinite { name, value: x.to_string() });
            }
            if x < low || x > high {
                return Err(out_of_range());
            }
        }
        (Domain::Int { low, high, .. }, Value::Int(x)) => {
            if x < low || x > high {
                return Err(out_of_range());
            }
        }
        (Domain::Choice(choices), Value::Choice(label)) => {
            if !choices.iter().any(|c| &c.label == label) {
                return Err(out_of_range());
            }
        }
        _ => return Err(wrong_type()),
    }
    Ok(())
}

impl Assignment {
    /// The assignment as `params.json` holds it: name -> typed JSON value.
    pub fn to_json(&self, space: &SearchSpace) -> serde_json::Map<String, Json> {
        self.values
            .iter()
            .map(|(name, v)| {
                let json = match v {
                    Value::Float(x) => Json::from(*x),
                    Value::Int(x) => Json::from(*x),
                    Value::Choice(label) => space
                        .param(name)
                        .and_then(|p| match &p.domain {
                            Domain::Choice(c) => c.iter().find(|c| &c.label == label),
                            _ => None,
                        })
                        .map(|c| c.json.clone())
                        .unwrap_or_else(|| Json::String(label.clone())),
                };
                (name.clone(), json)
            })
            .collect()
    }

    /// Reads an assignment back from its stored JSON form (the inverse of [`Assignment::to_json`]).
    pub fn from_json(space: &SearchSpace, json: &serde_json::Map<String, Json>) -> Result<Assignment, String> {
        let mut values: Vec<(String, Value)> = Vec::with_capacity(space.params().len());
        for p in space.params() {
            if !space.active(&p.name, &values) {
                continue;
            }
            let j = json.get(&p.name).ok_or_else(|| format!("stored trial lacks parameter `{}`", p.name))?;
            let v = match &p.domain {
                Domain::Float { .. } => {
                    Value::Float(j.as_f64().ok_or_else(|| format!("`{}` is not a number", p.name))?)
                }
                Domain::Int { .. } => Value::Int(j.as_i64().ok_or_else(|| format!("`{}` is not an integer", p.name))?),
                Domain::Choice(_) => Value::Choice(Choice::from_json(j.clone())?.label),
            };
            values.push((p.name.clone(), v));
        }
        Ok(Assignment { values })
    }

    pub fn get(&self, name: &str) -> Option<&Value> {
        self.values.iter().find(|(n, _)| n == name).map(|(_, v)| v)
    }

    /// `name=value` pairs for logs and tables.
    pub fn summary(&self) -> String {
        let short = |v: &Value| match v {
            Value::Float(x) => Assignment::format_float(*x),
            other => other.to_string(),
        };
        self.values.iter().map(|(n, v)| format!("{n}={}", short(v))).collect::<Vec<_>>().join(" ")
    }

    /// Four significant digits, in scientific notation when that is shorter to read.
    pub fn format_float(x: f64) -> String {
        if x == 0.0 || (x.abs() >= 1e-3 && x.abs() < 1e5) {
            let s = format!("{x:.4}");
            let s = s.trim_end_matches('0');
            s.trim_end_matches('.').to_string()
        } else {
            format!("{x:.3e}")
        }
    }
}

impl SearchSpace {
    /// The space as stored in a study: a JSON list of parameter definitions (the config's syntax).
    pub fn to_json(&self) -> Json {
        Json::Array(
            self.params
                .iter()
                .map(|p| {
                    let mut j = match &p.domain {
                        Domain::Float { low, high, log } => {
                            serde_json::json!({"name": p.name, "type": "float", "low": low, "high": high, "log": log})
                        }
                        Domain::Int { low, high, log } => {
                            serde_json::json!({"name": p.name, "type": "int", "low": low, "high": high, "log": log})
                        }
                        Domain::Choice(c) => {
                            let values: Vec<Json> = c.iter().map(|c| c.json.clone()).collect();
                            serde_json::json!({"name": p.name, "type": "choice", "values": values})
                        }
                    };
                    if let Some(c) = self.conditions.get(&p.name) {
                        j["when"] = serde_json::json!({ c.parent.clone(): c.values });
                    }
                    j
                })
                .collect(),
        )
    }

    pub fn from_json(json: &Json) -> Result<SearchSpace, String> {
        let list = json.as_array().ok_or("a stored space is a JSON list")?;
        let mut params = Vec::with_capacity(list.len());
        let mut conditions = Vec::new();
        for p in list {
            let field = |k: &str| p.get(k).ok_or_else(|| format!("stored parameter lacks `{k}`: {p}"));
            let name = field("name")?.as_str().ok_or("parameter name is not a string")?.to_string();
            let log = p.get("log").and_then(Json::as_bool).unwrap_or(false);
            let domain = match field("type")?.as_str() {
                Some("float") => Domain::Float {
                    low: field("low")?.as_f64().ok_or("low is not a number")?,
                    high: field("high")?.as_f64().ok_or("high is not a number")?,
                    log,
                },
                Some("int") => Domain::Int {
                    low: field("low")?.as_i64().ok_or("low is not an integer")?,
                    high: field("high")?.as_i64().ok_or("high is not an integer")?,
                    log,
                },
                Some("choice") => Domain::Choice(
                    field("values")?
                        .as_array()
                        .ok_or("values is not a list")?
                        .iter()
                        .map(|v| Choice::from_json(v.clone()))
                        .collect::<Result<_, _>>()?,
                ),
                other => return Err(format!("unknown parameter type {other:?}")),
            };
            if let Some((parent, values)) = p.get("when").and_then(Json::as_object).and_then(|w| w.iter().next()) {
                let values = values.as_array().ok_or("`when` values are not a list")?;
                let values = values.iter().map(|v| v.as_str().map(str::to_string).ok_or("`when` value is not a label"));
                conditions.push((
                    name.clone(),
                    Condition { parent: parent.clone(), values: values.collect::<Result<_, _>>()? },
                ));
            }
            params.push(Param { name, domain });
        }
        SearchSpace::new(params).and_then(|s| s.with_conditions(conditions)).map_err(|e| e.to_string())
    }
}

/// Metrics as trial programs report them.
pub type Metrics = BTreeMap<String, f64>;

#[cfg(test)]
mod tests {
    use super::*;

    fn space() -> SearchSpace {
        SearchSpace::new(vec![
            Param { name: "lr".into(), domain: Domain::Float { low: 1e-5, high: 0.1, log: true } },
            Param { name: "epochs".into(), domain: Domain::Int { low: 1, high: 10, log: false } },
            Param {
                name: "batch".into(),
                domain: Domain::Choice(vec![
                    Choice::from_json(Json::from(32)).unwrap(),
                    Choice::from_json(Json::from(64)).unwrap(),
                ]),
            },
        ])
        .unwrap()
    }

    fn ok() -> Vec<(String, Value)> {
        vec![
            ("batch".into(), Value::Choice("64".into())),
            ("lr".into(), Value::Float(0.01)),
            ("epochs".into(), Value::Int(3)),
        ]
    }

    #[test]
    fn valid_assignment_is_reordered_to_space_order() {
        let a = space().validate(&ok()).unwrap();
        assert_eq!(a.values[0].0, "lr");
        assert_eq!(a.values[2], ("batch".into(), Value::Choice("64".into())));
        let json = a.to_json(&space());
        assert_eq!(json["batch"], Json::from(64));
        assert_eq!(Assignment::from_json(&space(), &json).unwrap(), a);
    }

    #[test]
    fn each_defect_is_named() {
        let s = space();
        let mut v = ok();
        v[1].1 = Value::Float(0.5);
        assert!(matches!(s.validate(&v), Err(InvalidAssignment::OutOfRange { name, .. }) if name == "lr"));
        let mut v = ok();
        v[2].1 = Value::Float(3.0);
        assert!(matches!(s.validate(&v), Err(InvalidAssignment::WrongType { name, .. }) if name == "epochs"));
        let mut v = ok();
        v.pop();
        assert_eq!(s.validate(&v), Err(InvalidAssignment::Missing { name: "epochs".into() }));
        let mut v = ok();
        v.push(("momentum".into(), Value::Float(0.9)));
        assert!(matches!(s.validate(&v), Err(InvalidAssignment::Unknown { name, .. }) if name == "momentum"));
        let mut v = ok();
        v.push(("lr".into(), Value::Float(0.02)));
        assert_eq!(s.validate(&v), Err(InvalidAssignment::Repeated { name: "lr".into() }));
        let mut v = ok();
        v[0].1 = Value::Choice("128".into());
        assert!(matches!(s.validate(&v), Err(InvalidAssignment::OutOfRange { name, .. }) if name == "batch"));
        let mut v = ok();
        v[1].1 = Value::Float(f64::NAN);
        assert!(matches!(s.validate(&v), Err(InvalidAssignment::NotFinite { .. })));
    }

    #[test]
    fn json_assignments_are_checked_like_plugin_ones() {
        let s = space();
        let json = |text: &str| match serde_json::from_str::<Json>(text).unwrap() {
            Json::Object(m) => m,
            _ => unreachable!(),
        };
        let a = s.validate_json(&json(r#"{"batch": 64, "lr": 0.01, "epochs": 3}"#)).unwrap();
        assert_eq!(a, s.validate(&ok()).unwrap());
        // A label for a numeric choice and a whole number for a float are what a person writes.
        let b = s.validate_json(&json(r#"{"batch": "64", "lr": 1e-2, "epochs": 3}"#)).unwrap();
        assert_eq!(b.to_json(&s)["batch"], Json::from(64));
        let err = |t: &str| s.validate_json(&json(t)).unwrap_err();
        assert_eq!(err(r#"{"batch": 64, "lr": 0.01}"#), InvalidAssignment::Missing { name: "epochs".into() });
        assert!(matches!(err(r#"{"batch": 64, "lr": 0.01, "epochs": 3, "wd": 1}"#),
            InvalidAssignment::Unknown { name, .. } if name == "wd"));
        assert!(matches!(err(r#"{"batch": 64, "lr": 0.01, "epochs": 3.0}"#),
            InvalidAssignment::WrongType { name, .. } if name == "epochs"));
        assert!(matches!(err(r#"{"batch": 64, "lr": "fast", "epochs": 3}"#),
            InvalidAssignment::WrongType { name, .. } if name == "lr"));
        assert!(matches!(err(r#"{"batch": 128, "lr": 0.01, "epochs": 3}"#),
            InvalidAssignment::OutOfRange { name, .. } if name == "batch"));
        assert!(matches!(err(r#"{"batch": 64, "lr": 0.5, "epochs": 3}"#),
            InvalidAssignment::OutOfRange { name, .. } if name == "lr"));
    }

    #[test]
    fn bad_spaces_are_refused() {
        let p = |d| Param { name: "x".into(), domain: d };
        assert!(SearchSpace::new(vec![p(Domain::Float { low: 0.0, high: 1.0, log: true })]).is_err());
        assert!(SearchSpace::new(vec![p(Domain::Float { low: 1.0, high: 1.0, log: false })]).is_err());
        assert!(SearchSpace::new(vec![p(Domain::Choice(vec![]))]).is_err());
        assert_eq!(SearchSpace::new(vec![]), Err(SpaceError::Empty));
        let twice =
            vec![p(Domain::Int { low: 0, high: 1, log: false }), p(Domain::Int { low: 0, high: 1, log: false })];
        assert_eq!(SearchSpace::new(twice), Err(SpaceError::Duplicate("x".into())));
    }
}
