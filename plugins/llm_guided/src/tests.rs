use super::*;
use alcf_plugin_sdk::llm::{self, ChatRequest, ChatResponse, LlmError};
use std::cell::RefCell;
use std::rc::Rc;

/// One recorded call: the request, the schema name and the schema text.
type Calls = Rc<RefCell<Vec<(ChatRequest, String, String)>>>;

fn space() -> Vec<Param> {
    vec![Param::float("alpha", 0.0, 1.0), Param::float("beta", -5.0, 5.0), Param::choice("cell", &["pine", "oak"])]
}

fn study(options: &str) -> Study {
    Study::new(space()).with_seed(11).with_options(options)
}

fn objective(p: &Params) -> Option<f64> {
    let a = p[0].value.as_f64()?;
    let b = p[1].value.as_f64()?;
    let c = if p[2].value == Value::Choice("oak".into()) { 0.3 } else { 0.0 };
    Some((a - 0.3).powi(2) + 0.05 * (b - 1.0).powi(2) + c)
}

/// The prompt's JSON state block (exactly one fenced block in the last user message).
fn state_of(req: &ChatRequest) -> Json {
    let user = &req.messages.last().unwrap().content;
    assert_eq!(user.matches("```json").count(), 1, "{user}");
    let block = user.split("```json\n").nth(1).unwrap().split("\n```").next().unwrap();
    Json::parse(block).unwrap()
}

/// Installs a backend answering `answer(state, call index)`; returns the record of calls.
fn script(mut answer: impl FnMut(&Json, usize) -> Result<String, LlmError> + 'static) -> Calls {
    let calls: Calls = Rc::default();
    let rec = calls.clone();
    llm::set_native_backend(Box::new(move |req: &ChatRequest, structured: Option<(&str, &str)>| {
        let (name, schema) = structured.expect("proposals are asked with chat_structured");
        let i = rec.borrow().len();
        rec.borrow_mut().push((req.clone(), name.to_string(), schema.to_string()));
        let content = answer(&state_of(req), i)?;
        Ok(ChatResponse { content, model: "scripted".into(), prompt_tokens: 10, completion_tokens: 5 })
    }));
    calls
}

/// `count` distinct valid proposals, different for every call `i`.
fn fresh(count: usize, i: usize) -> String {
    let items: Vec<String> = (0..count)
        .map(|k| {
            let a = ((i * 8 + k) as f64 * 0.6180339887) % 1.0;
            format!(r#"{{"alpha": {a}, "beta": {}, "cell": "pine"}}"#, (k as f64) - 2.0)
        })
        .collect();
    format!(r#"{{"proposals": [{}]}}"#, items.join(","))
}

fn count_of(state: &Json) -> usize {
    state.get("count").and_then(|c| c.as_f64()).unwrap() as usize
}

fn params(a: f64, b: f64, c: &str) -> Params {
    vec![
        Assignment { name: "alpha".into(), value: Value::Float(a) },
        Assignment { name: "beta".into(), value: Value::Float(b) },
        Assignment { name: "cell".into(), value: Value::Choice(c.into()) },
    ]
}

/// An instance that has seen 8 finished trials (one failed).
fn with_history(options: &str) -> LlmGuided {
    let mut s = LlmGuided::new(&study(options)).unwrap();
    let outcomes: Vec<Outcome> = (0..8)
        .map(|i| {
            let p = params(i as f64 / 8.0, i as f64 - 4.0, if i % 2 == 0 { "pine" } else { "oak" });
            let value = if i == 5 { None } else { objective(&p) };
            Outcome {
                trial: Trial { id: i, params: p },
                status: if value.is_some() { Status::Completed } else { Status::Failed },
                value,
                metrics: vec![],
                curve: Vec::new(),
            }
        })
        .collect();
    s.observe(&outcomes).unwrap();
    s
}

/// The LLM's answer is not used: the suggestion is the GP's, exactly.
fn assert_falls_back(answer: impl FnMut(&Json, usize) -> Result<String, LlmError> + 'static) {
    let opts = r#"{"llm_share": 1, "n_init": 4}"#;
    llm::clear_native_backend();
    let gp = with_history(r#"{"llm_share": 0, "n_init": 4}"#).suggest(1, &[]).unwrap();
    let calls = script(answer);
    let mut s = with_history(opts);
    let got = s.suggest(1, &[]).unwrap();
    llm::clear_native_backend();
    assert_eq!(calls.borrow().len(), 1);
    assert_eq!(got, gp);
    assert_eq!(s.stats, LlmStats { calls: 1, asked: 1, used: 0, fallbacks: 1 });
}

#[test]
fn without_an_llm_it_is_exactly_gp_ucb() {
    llm::clear_native_backend();
    let st = study(r#"{"llm_share": 0.5}"#);
    let mut s = LlmGuided::new(&st).unwrap();
    let a = native::run(&mut s, &st, 24, 2, objective).unwrap();
    let mut g = gp_ucb::GpUcb::new(&study("{}")).unwrap();
    let b = native::run(&mut g, &st, 24, 2, objective).unwrap();
    assert_eq!(a.iter().map(|r| &r.params).collect::<Vec<_>>(), b.iter().map(|r| &r.params).collect::<Vec<_>>());
    assert!(s.stats.asked > 3 && s.stats.fallbacks == s.stats.asked && s.stats.used == 0, "{:?}", s.stats);
}

#[test]
fn a_valid_answer_is_used() {
    let calls = script(|_, i| {
        Ok(format!(r#"{{"proposals": [{{"alpha": {}, "beta": 1.5, "cell": "oak"}}]}}"#, 0.01 * (i + 1) as f64))
    });
    let st = study(r#"{"llm_share": 1, "n_init": 4}"#);
    let mut s = LlmGuided::new(&st).unwrap();
    let r = native::run(&mut s, &st, 10, 1, objective).unwrap();
    llm::clear_native_backend();
    assert_eq!(calls.borrow().len(), 6);
    for (i, rec) in r[4..].iter().enumerate() {
        let a = rec.params[0].value.as_f64().unwrap();
        assert!((a - 0.01 * (i + 1) as f64).abs() < 1e-12, "{:?}", rec.params);
        assert_eq!(rec.params[1].value, Value::Float(1.5));
        assert_eq!(rec.params[2].value, Value::Choice("oak".into()));
    }
    assert_eq!(s.stats, LlmStats { calls: 6, asked: 6, used: 6, fallbacks: 0 });
}

#[test]
fn out_of_bounds_values_are_clamped() {
    let _calls = script(|_, _| Ok(r#"{"proposals": [{"alpha": 7, "beta": -99.5, "cell": "pine"}]}"#.into()));
    let mut s = with_history(r#"{"llm_share": 1, "n_init": 4}"#);
    let got = s.suggest(1, &[]).unwrap();
    llm::clear_native_backend();
    assert_eq!(got, vec![params(1.0, -5.0, "pine")]);
    assert_eq!(s.stats.used, 1);
}

#[test]
fn repeats_of_known_trials_are_rejected() {
    // The best trial, echoed back as shown in the prompt.
    assert_falls_back(|st, _| {
        let Some(Json::Array(best)) = st.get("best") else { panic!("no best") };
        Ok(format!(r#"{{"proposals": [{}]}}"#, best[0].get("params").unwrap()))
    });
    // A failed trial is known too.
    assert_falls_back(|_, _| Ok(r#"{"proposals": [{"alpha": 0.625, "beta": 1, "cell": "oak"}]}"#.into()));
}

#[test]
fn malformed_or_invalid_answers_fall_back_to_the_gp() {
    assert_falls_back(|_, _| Ok("Sure! Try alpha = 0.5 and beta = 2.".into()));
    assert_falls_back(|_, _| Ok(r#"{"proposals": [{"alpha": 0.5, "beta": 2, "cell": "birch"}]}"#.into()));
    assert_falls_back(|_, _| Ok(r#"{"proposals": [{"alpha": "0.5", "beta": 2, "cell": "oak"}]}"#.into()));
    assert_falls_back(|_, _| Ok(r#"{"proposals": [{"alpha": 0.5, "beta": 2, "cell": "oak", "why": "x"}]}"#.into()));
    assert_falls_back(|_, _| Ok(r#"{"proposals": []}"#.into()));
}

#[test]
fn llm_errors_fall_back_to_the_gp() {
    assert_falls_back(|_, _| Err(LlmError::NotGranted("llm cap reached: 100 calls".into())));
    assert_falls_back(|_, _| Err(LlmError::Auth("run `alcf-host auth login`".into())));
    assert_falls_back(|_, _| Err(LlmError::Unavailable("model is starting".into())));
    assert_falls_back(|_, _| Err(LlmError::InvalidRequest("model not allowed".into())));
}

#[test]
fn the_share_is_30_percent_and_seeded() {
    let st = study(r#"{"gp": {"refit_every": 20, "candidates": 64}}"#);
    let _calls = script(|st, i| Ok(fresh(count_of(st), i)));
    let mut s = LlmGuided::new(&st).unwrap();
    native::run(&mut s, &st, 8 + 100, 1, objective).unwrap();
    llm::clear_native_backend();
    assert!((29..=31).contains(&s.stats.asked), "{:?}", s.stats);
    assert_eq!(s.stats.used, s.stats.asked);
    // Which positions go to the LLM depends on the seed.
    let picks = |seed| {
        let s = LlmGuided::new(&study("{}").with_seed(seed)).unwrap();
        (8..40).map(|p| s.wants_llm(p)).collect::<Vec<_>>()
    };
    assert_ne!(picks(1), picks(2));
    assert_eq!(picks(3), picks(3));
}

#[test]
fn the_prompt_carries_best_recent_pending_and_model() {
    let calls = script(|st, i| Ok(fresh(count_of(st), i)));
    let st = study(r#"{"llm_share": 1, "n_init": 4}"#);
    let mut s = LlmGuided::new(&st).unwrap();
    native::run(&mut s, &st, 30, 3, objective).unwrap();
    llm::clear_native_backend();
    let calls = calls.borrow();
    let (req, name, schema) = calls.last().unwrap();
    assert_eq!(name, "proposals");
    assert_eq!(req.messages[0].role, "system");
    assert_eq!(req.temperature, Some(0.7));
    assert_eq!(req.model, None);
    let st = state_of(req);
    let n = count_of(&st);
    assert!(schema.contains(&format!("\"maxItems\":{n}")), "{schema}");
    assert_eq!(st.get("direction").unwrap().as_str(), Some("minimize"));
    assert_eq!(st.get("objective").unwrap().as_str(), Some("objective"));
    let list = |k: &str| match st.get(k) {
        Some(Json::Array(v)) => v.clone(),
        other => panic!("{k}: {other:?}"),
    };
    assert_eq!(list("parameters").len(), 3);
    assert_eq!(list("best").len(), 5);
    assert_eq!(list("recent").len(), 20);
    // parallel 3: two trials in flight when one more is asked for.
    assert_eq!(list("pending").len() + n, 3);
    let model = st.get("model").unwrap();
    let Some(Json::Array(preds)) = model.get("predictions") else { panic!() };
    assert_eq!(preds.len(), n);
    assert!(preds[0].get("mean").unwrap().as_f64().is_some() && preds[0].get("std").unwrap().as_f64().unwrap() >= 0.0);
    let Some(Json::Object(imp)) = model.get("importance") else { panic!() };
    assert_eq!(imp.keys().cloned().collect::<Vec<_>>(), vec!["alpha", "beta", "cell"]);
    assert!((imp.values().map(|v| v.as_f64().unwrap()).sum::<f64>() - 1.0).abs() < 0.01);
    // Best is sorted best-first, with the study's values.
    let best = list("best");
    let v: Vec<f64> = best.iter().map(|b| b.get("value").unwrap().as_f64().unwrap()).collect();
    assert!(v.windows(2).all(|w| w[0] <= w[1]), "{v:?}");
}

#[test]
fn rename_and_shift_hide_the_space_and_map_answers_back() {
    // Answers the middle of every shown range and the second choice.
    let calls = script(|st, _| {
        let Some(Json::Array(ps)) = st.get("parameters") else { panic!() };
        let mut items = Vec::new();
        for p in ps {
            let name = p.get("name").unwrap().as_str().unwrap();
            let v = match p.get("choices") {
                Some(Json::Array(c)) => c[1].to_string(),
                _ => format!(
                    "{}",
                    (p.get("low").unwrap().as_f64().unwrap() + p.get("high").unwrap().as_f64().unwrap()) / 2.0
                ),
            };
            items.push(format!("\"{name}\": {v}"));
        }
        Ok(format!(r#"{{"proposals": [{{{}}}]}}"#, items.join(",")))
    });
    let mut s = with_history(r#"{"llm_share": 1, "n_init": 4, "rename": true, "shift": true}"#);
    let got = s.suggest(1, &[]).unwrap();
    llm::clear_native_backend();
    assert_eq!(got, vec![params(0.5, 0.0, "oak")]);
    let calls = calls.borrow();
    let (req, _, schema) = &calls[0];
    for text in [&req.messages[0].content, &req.messages[1].content, schema] {
        for secret in ["alpha", "beta", "cell", "pine", "oak"] {
            assert!(!text.contains(secret), "`{secret}` leaks: {text}");
        }
    }
}

#[test]
fn a_batch_shares_one_call_and_short_answers_fill_from_the_gp() {
    // Four LLM trials in one suggest: one call for four proposals.
    let calls = script(|st, i| Ok(fresh(count_of(st), i)));
    let mut s = with_history(r#"{"llm_share": 1, "n_init": 4}"#);
    let got = s.suggest(4, &[]).unwrap();
    assert_eq!(calls.borrow().len(), 1);
    assert!(calls.borrow()[0].2.contains("\"maxItems\":4"));
    assert_eq!(s.stats.used, 4);
    assert_eq!(got.len(), 4);
    // With proposals_per_call 2: two calls of two.
    let calls = script(|st, i| Ok(fresh(count_of(st), i)));
    let mut s = with_history(r#"{"llm_share": 1, "n_init": 4, "proposals_per_call": 2}"#);
    s.suggest(4, &[]).unwrap();
    assert_eq!(calls.borrow().len(), 2);
    assert_eq!(s.stats.used, 4);
    // One valid proposal of four, the second repeating the GP's shown prediction: the rest
    // comes from the GP's proposals, without duplicates.
    let _calls = script(|st, _| {
        let Some(Json::Array(preds)) = st.get("model").unwrap().get("predictions") else { panic!() };
        Ok(format!(
            r#"{{"proposals": [{}, {{"alpha": 2}}, {}]}}"#,
            preds[1].get("params").unwrap(),
            preds[1].get("params").unwrap()
        ))
    });
    let mut s = with_history(r#"{"llm_share": 1, "n_init": 4}"#);
    let got = s.suggest(4, &[]).unwrap();
    llm::clear_native_backend();
    assert_eq!(s.stats, LlmStats { calls: 1, asked: 4, used: 1, fallbacks: 3 });
    for i in 0..4 {
        for j in 0..i {
            assert_ne!(got[i], got[j]);
        }
    }
}

#[test]
fn deterministic_given_seed_history_and_answers() {
    let run = || {
        let _calls = script(|st, i| {
            // Every third call fails: fallbacks are part of the replayed behaviour.
            if i % 3 == 2 {
                return Err(LlmError::Unavailable("busy".into()));
            }
            Ok(fresh(count_of(st), i))
        });
        let st = study(r#"{"llm_share": 0.5, "n_init": 4}"#);
        let mut s = LlmGuided::new(&st).unwrap();
        let r = native::run(&mut s, &st, 24, 4, objective).unwrap();
        llm::clear_native_backend();
        (r.into_iter().map(|r| r.params).collect::<Vec<_>>(), s.stats)
    };
    let (a, sa) = run();
    let (b, sb) = run();
    assert_eq!(a, b);
    assert_eq!(sa, sb);
    assert!(sa.used > 0 && sa.fallbacks > 0, "{sa:?}");
}

#[test]
fn the_prototype_schedule() {
    let s = LlmGuided::new(&study(r#"{"schedule": "prototype", "n_init": 4}"#)).unwrap();
    assert!(s.wants_llm(4) && s.wants_llm(43));
    assert!(!s.wants_llm(44) && !s.wants_llm(100));
    // On a plateau (10 trials without improvement) +0.2: t = 60 gives 0.4 + 0.2 > 0.5.
    let mut s = s;
    let outcomes: Vec<Outcome> = (0..12)
        .map(|i| Outcome {
            trial: Trial { id: i, params: params(0.1 * (i % 10) as f64, 0.0, "pine") },
            status: Status::Completed,
            value: Some(1.0),
            metrics: vec![],
            curve: Vec::new(),
        })
        .collect();
    s.observe(&outcomes).unwrap();
    assert!(s.wants_llm(64) && !s.wants_llm(84));
}

#[test]
fn options_are_checked() {
    let err = |o: &str| match LlmGuided::new(&study(o)) {
        Ok(_) => panic!("{o} was accepted"),
        Err(e) => e,
    };
    assert!(err(r#"{"llm_shares": 0.3}"#).starts_with("options: unknown option `llm_shares`"));
    assert!(err(r#"{"llm_share": 1.5}"#).starts_with("options: `llm_share`"));
    assert!(err(r#"{"schedule": "always"}"#).starts_with("options: `schedule`"));
    assert!(err(r#"{"temperature": 3}"#).starts_with("options: `temperature`"));
    assert!(err(r#"{"max_tokens": 0}"#).starts_with("options: `max_tokens`"));
    assert!(err(r#"{"proposals_per_call": 0}"#).starts_with("options: `proposals_per_call`"));
    assert!(err(r#"{"model": ""}"#).starts_with("options: `model`"));
    assert!(err(r#"{"gp": {"bta": 1}}"#).starts_with("options: unknown option `gp.bta`"));
    assert!(err(r#"{"gp": 3}"#).starts_with("options: `gp`"));
    assert!(err(r#"{"rename": "yes"}"#).starts_with("options: `rename`"));
    let ok = LlmGuided::new(&study(
        r#"{"llm_share": 0.2, "model": "m", "temperature": 0, "max_tokens": 800, "n_init": 3, "rename": true,
            "shift": false, "proposals_per_call": 4, "gp": {"acquisition": "logei"}}"#,
    ))
    .unwrap();
    assert_eq!(ok.settings, Settings { model: Some("m".into()), temperature: Some(0.0), max_tokens: Some(800) });
    assert_eq!(LlmGuided::info().capabilities, vec!["log", "llm"]);
}
