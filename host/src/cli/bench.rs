//! `alcf-host bench describe|eval`: the bench executor's test functions outside a study, so that
//! other tools (scripts/bench-optuna.py runs Optuna's samplers with it) optimize exactly the
//! functions `alcf-host compare` does: the same instance, space, noise and optimum.

use std::io::{BufRead, Write};

use anyhow::{Context, bail};
use serde_json::{Value, json};

use alcf_host::executor::bench::BenchExecutor;
use alcf_testfns::{ParamKind, ParamValue, TestFunction};

/// The function `bench:NAME[:DIM]` names (with `instance` for a BBOB family).
fn function(objective: &str, instance: Option<u32>) -> anyhow::Result<TestFunction> {
    let rest = objective.strip_prefix("bench:").unwrap_or(objective);
    let (name, dim) = match rest.split_once(':') {
        Some((n, d)) => (n, Some(d.parse::<usize>().with_context(|| format!("bad dimension in {objective}"))?)),
        None => (rest, None),
    };
    if let Some(family) = alcf_testfns::suite::family(name, dim)? {
        let Some(i) = instance else {
            bail!("{objective} is a family of instances: give --instance I");
        };
        return Ok(family.with_instance(i).build()?);
    }
    if instance.is_some() {
        bail!("--instance is for BBOB families (bench:bbob_f21_d10); {objective} is one function");
    }
    Ok(BenchExecutor::new(name, dim, None)?.function().clone())
}

fn value_json(v: &ParamValue) -> Value {
    match v {
        ParamValue::Float(x) => json!(x),
        ParamValue::Int(n) => json!(n),
        ParamValue::Choice(c) => json!(c),
    }
}

/// The function's parameters, optimum and minimizer as JSON.
pub fn describe(objective: &str, instance: Option<u32>) -> anyhow::Result<()> {
    let f = function(objective, instance)?;
    let params: Vec<Value> = f
        .params
        .iter()
        .map(|p| match &p.kind {
            ParamKind::Float { low, high, log } => {
                json!({"name": p.name, "type": "float", "low": low, "high": high, "log": log})
            }
            ParamKind::Int { low, high, log } => {
                json!({"name": p.name, "type": "int", "low": low, "high": high, "log": log})
            }
            ParamKind::Choice(c) => json!({"name": p.name, "type": "choice", "choices": c}),
        })
        .collect();
    let argmin: serde_json::Map<String, Value> =
        f.params.iter().zip(&f.argmin).map(|(p, v)| (p.name.clone(), value_json(v))).collect();
    let doc = json!({
        "name": f.name, "params": params, "optimum": f.optimum, "argmin": argmin, "noisy": f.truth.is_some(),
    });
    crate::out!("{}", serde_json::to_string_pretty(&doc)?);
    Ok(())
}

/// One JSON object of parameter values per input line, one `{"value", "true_value"}` per output
/// line, flushed at once (a driving process waits for each answer).
pub fn eval(objective: &str, instance: Option<u32>) -> anyhow::Result<()> {
    let f = function(objective, instance)?;
    let stdin = std::io::stdin();
    let mut out = std::io::stdout().lock();
    for (n, line) in stdin.lock().lines().enumerate() {
        let line = line.context("cannot read standard input")?;
        if line.trim().is_empty() {
            continue;
        }
        let point: serde_json::Map<String, Value> = serde_json::from_str(&line)
            .with_context(|| format!("line {}: expected a JSON object of parameters", n + 1))?;
        let args = f
            .params
            .iter()
            .map(|p| {
                let v = point.get(&p.name).with_context(|| format!("line {}: no parameter `{}`", n + 1, p.name))?;
                let bad = || anyhow::anyhow!("line {}: `{}` = {v} is not a {:?}", n + 1, p.name, p.kind);
                Ok(match &p.kind {
                    ParamKind::Float { .. } => ParamValue::Float(v.as_f64().ok_or_else(bad)?),
                    ParamKind::Int { .. } => ParamValue::Int(v.as_i64().ok_or_else(bad)?),
                    ParamKind::Choice(c) => {
                        let s = v.as_str().filter(|s| c.iter().any(|l| l == s)).ok_or_else(bad)?;
                        ParamValue::Choice(s.to_string())
                    }
                })
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        // Non-finite values as null (JSON has no NaN).
        let num = |x: f64| if x.is_finite() { json!(x) } else { Value::Null };
        let answer = json!({"value": num((f.eval)(&args)), "true_value": num(f.true_value(&args))});
        writeln!(out, "{answer}")?;
        out.flush()?;
    }
    Ok(())
}
