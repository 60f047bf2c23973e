//! A plugin built against the previous ABI patch release, `alcf:hpo@0.1.0` (wit/ is that ABI as
//! released). It proposes the study space's midpoint nudged by the trial count, and in its first
//! `suggest` calls `llm.chat` (0.1.0 has no `chat-structured`) and logs the answer, so a test can
//! see that a 0.1.1 host links and serves an old plugin's imports.

use std::sync::Mutex;

wit_bindgen::generate!({
    world: "strategy-plugin",
    path: "wit",
});

use alcf::hpo::llm::{ChatRequest, Message};
use alcf::hpo::types::{Domain, Level, Value};
use exports::alcf::hpo::strategy::{Assignment, Guest, Info, Outcome, Study, Trial};

static STATE: Mutex<Option<(Study, u64)>> = Mutex::new(None);

struct Abi010;

fn point(domain: &Domain, k: u64) -> Value {
    let u = ((k * 37) % 100) as f64 / 100.0;
    match domain {
        Domain::Float(r) => Value::Float(r.low + u * (r.high - r.low)),
        Domain::Int(r) => Value::Int(r.low + ((r.high - r.low) as f64 * u) as i64),
        Domain::Choice(c) => Value::Choice(c[(k as usize) % c.len()].clone()),
    }
}

impl Guest for Abi010 {
    fn describe() -> Info {
        Info {
            name: "abi_010".into(),
            version: "0.1.0".into(),
            description: "built against alcf:hpo@0.1.0; calls llm.chat once (ABI compatibility test)".into(),
            capabilities: vec!["log".into(), "llm".into()],
        }
    }

    fn init(study: Study) -> Result<(), String> {
        *STATE.lock().unwrap() = Some((study, 0));
        Ok(())
    }

    fn suggest(count: u32, _pending: Vec<Trial>) -> Result<Vec<Vec<Assignment>>, String> {
        let mut guard = STATE.lock().unwrap();
        let (study, k) = guard.as_mut().ok_or("suggest before init")?;
        if *k == 0 && count > 0 {
            let answer = alcf::hpo::llm::chat(&ChatRequest {
                model: None,
                messages: vec![Message { role: "user".into(), content: "hello from a 0.1.0 plugin".into() }],
                temperature: None,
                max_tokens: Some(16),
                json: false,
            });
            alcf::hpo::log::log(Level::Info, &format!("abi_010: llm.chat answered {answer:?}"));
        }
        Ok((0..count)
            .map(|_| {
                *k += 1;
                study.space.iter().map(|p| Assignment { name: p.name.clone(), value: point(&p.domain, *k) }).collect()
            })
            .collect())
    }

    fn observe(_outcomes: Vec<Outcome>) -> Result<(), String> {
        Ok(())
    }
}

export!(Abi010);
