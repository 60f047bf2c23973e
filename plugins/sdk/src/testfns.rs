//! The host's standard test functions (`alcf-testfns`) as SDK studies, for native tests and
//! benchmark harnesses of strategies. Behind the `testfns` feature, which only dev-dependencies
//! enable: plugins built for wasm never contain it.

use alcf_testfns::{ParamKind, ParamValue};
pub use alcf_testfns::{TestFunction, by_name};

use crate::{Domain, Param, Params, Study, Value};

/// A study over `f`'s search space.
pub fn study_for(f: &TestFunction, seed: u64, options: &str) -> Study {
    let space = f
        .params
        .iter()
        .map(|p| Param {
            name: p.name.clone(),
            domain: match &p.kind {
                ParamKind::Float { low, high, log } => Domain::Float { low: *low, high: *high, log: *log },
                ParamKind::Int { low, high, log } => Domain::Int { low: *low, high: *high, log: *log },
                ParamKind::Choice(c) => Domain::Choice(c.clone()),
            },
        })
        .collect();
    Study::new(space).with_seed(seed).with_options(options)
}

/// `f` at an assignment (parameters looked up by name). Panics on a missing parameter: a test
/// harness wants to hear about that.
pub fn eval(f: &TestFunction, params: &Params) -> f64 {
    let args: Vec<ParamValue> = f
        .params
        .iter()
        .map(|spec| {
            let a = params.iter().find(|a| a.name == spec.name).unwrap_or_else(|| panic!("no `{}`", spec.name));
            match &a.value {
                Value::Float(x) => ParamValue::Float(*x),
                Value::Int(x) => ParamValue::Int(*x),
                Value::Choice(c) => ParamValue::Choice(c.clone()),
            }
        })
        .collect();
    (f.eval)(&args)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_known_minimizer_scores_the_optimum() {
        let f = by_name("mixed", None).unwrap();
        let study = study_for(&f, 3, "{}");
        assert_eq!(study.space.len(), f.params.len());
        let at_min: Params = f
            .params
            .iter()
            .zip(&f.argmin)
            .map(|(p, v)| crate::Assignment {
                name: p.name.clone(),
                value: match v {
                    ParamValue::Float(x) => Value::Float(*x),
                    ParamValue::Int(x) => Value::Int(*x),
                    ParamValue::Choice(c) => Value::Choice(c.clone()),
                },
            })
            .collect();
        assert!((eval(&f, &at_min) - f.optimum).abs() < 1e-9);
    }
}
