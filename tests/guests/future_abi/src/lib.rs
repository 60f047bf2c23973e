//! A well-behaved random strategy, except that it was built against `alcf:hpo@0.2.0`
//! (tests/guests/future_abi/wit, a copy of the ABI with only the package version changed).
//! The host must refuse to load it, naming both its own ABI version and this one.

use std::sync::Mutex;

wit_bindgen::generate!({
    world: "strategy-plugin",
    path: "wit",
});

use alcf::hpo::types::{Domain, Value};
use exports::alcf::hpo::strategy::{Assignment, Guest, Info, Outcome, Study, Trial};

static STATE: Mutex<Option<(Study, u64)>> = Mutex::new(None);

fn next(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

fn sample(domain: &Domain, rng: &mut u64) -> Value {
    let u = (next(rng) >> 11) as f64 / (1u64 << 53) as f64;
    match domain {
        Domain::Float(r) if r.log => {
            Value::Float((r.low.ln() + u * (r.high.ln() - r.low.ln())).exp().clamp(r.low, r.high))
        }
        Domain::Float(r) => Value::Float((r.low + u * (r.high - r.low)).clamp(r.low, r.high)),
        Domain::Int(r) => {
            let span = (r.high as i128 - r.low as i128 + 1) as u128;
            Value::Int((r.low as i128 + (next(rng) as u128 % span) as i128) as i64)
        }
        Domain::Choice(options) => Value::Choice(options[(next(rng) % options.len() as u64) as usize].clone()),
    }
}

struct FutureAbi;

impl Guest for FutureAbi {
    fn describe() -> Info {
        Info {
            name: "future_abi".into(),
            version: "0.2.0".into(),
            description: "random search built against alcf:hpo@0.2.0 (ABI version test)".into(),
            capabilities: vec![],
        }
    }

    fn init(study: Study) -> Result<(), String> {
        let seed = study.seed;
        *STATE.lock().unwrap() = Some((study, seed));
        Ok(())
    }

    fn suggest(count: u32, _pending: Vec<Trial>) -> Result<Vec<Vec<Assignment>>, String> {
        let mut guard = STATE.lock().unwrap();
        let (study, rng) = guard.as_mut().ok_or("suggest before init")?;
        Ok((0..count)
            .map(|_| {
                study.space.iter().map(|p| Assignment { name: p.name.clone(), value: sample(&p.domain, rng) }).collect()
            })
            .collect())
    }

    fn observe(_outcomes: Vec<Outcome>) -> Result<(), String> {
        Ok(())
    }
}

export!(FutureAbi);
