//! A deliberately misbehaving strategy plugin for the host's sandbox tests.
//!
//! It is built straight against the WIT with wit-bindgen (not the plugin SDK) so that it can send
//! values the SDK would never produce. Its behaviour is chosen by `study.options`, a JSON object
//! such as `{"mode":"loop"}` (and `{"mode":"net","port":1234}` for the socket probe). Every mode
//! acts in `suggest` unless its name says otherwise; see [`Mode`].

use std::sync::Mutex;

wit_bindgen::generate!({
    world: "strategy-plugin",
    path: "../../../wit",
});

use alcf::hpo::llm;
use alcf::hpo::log::{self, Level};
use alcf::hpo::storage;
use alcf::hpo::types::{Domain, Value};
use exports::alcf::hpo::strategy::{Assignment, Guest, Info, Outcome, Report, Study, Trial, Verdict};

/// What the plugin does; the name in `{"mode":"..."}` is the variant's name in snake case.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Mode {
    /// Valid uniform random suggestions: the control.
    Good,
    /// An infinite loop.
    Loop,
    /// Allocates and touches 4 GiB.
    Alloc,
    /// `panic!("hostile panic")`.
    Panic,
    /// Panics in `init`.
    InitPanic,
    /// Reads /etc/passwd and lists `/`; returns an error describing what happened.
    Fs,
    /// Connects to 127.0.0.1:<port>; returns an error describing what happened.
    Net,
    /// The first numeric parameter above its range.
    OutOfRange,
    /// An int for a float parameter, or a float for an int parameter.
    WrongType,
    /// Omits the first parameter.
    Missing,
    /// Adds a parameter `bogus`.
    Extra,
    /// A choice label that is not among the options.
    UnknownChoice,
    /// NaN for the first float parameter.
    Nan,
    /// Returns count + 1 suggestions.
    TooMany,
    /// Panics on the first suggest of the study (remembered in storage), then behaves like `good`.
    CrashOnce,
    /// Prints to stdout and stderr, then behaves like `good`.
    Stdout,
    /// Calls `llm::chat` and returns the result as an error.
    Llm,
    /// Panics in `observe`.
    ObserveTrap,
    /// An infinite loop in `init`.
    SlowInit,
    /// Floods `log`, stdout and stderr in a tight loop (one 100 MB `log` message among them) for
    /// `flood_ms` milliseconds, or until the deadline stops it; then returns a 100 MB error.
    Flood,
    /// Probes the storage quotas: a 300-byte key, a value of 1 MiB + 1, then values of `fill_bytes`
    /// (default 1 MiB) until storage is full; returns an error listing the three results.
    StorageQuota,
    /// Returns an `init` error marked as an options error (`options: ...`).
    BadOption,
    /// Computes for `slow_ms` milliseconds (default 1500) in every `suggest`, then behaves like
    /// `good`: a long GP refit or a cold LLM, for the campaign's concurrency tests.
    SlowSuggest,
}

const MODES: [(&str, Mode); 23] = [
    ("good", Mode::Good),
    ("loop", Mode::Loop),
    ("alloc", Mode::Alloc),
    ("panic", Mode::Panic),
    ("init_panic", Mode::InitPanic),
    ("fs", Mode::Fs),
    ("net", Mode::Net),
    ("out_of_range", Mode::OutOfRange),
    ("wrong_type", Mode::WrongType),
    ("missing", Mode::Missing),
    ("extra", Mode::Extra),
    ("unknown_choice", Mode::UnknownChoice),
    ("nan", Mode::Nan),
    ("too_many", Mode::TooMany),
    ("crash_once", Mode::CrashOnce),
    ("stdout", Mode::Stdout),
    ("llm", Mode::Llm),
    ("observe_trap", Mode::ObserveTrap),
    ("slow_init", Mode::SlowInit),
    ("flood", Mode::Flood),
    ("storage_quota", Mode::StorageQuota),
    ("bad_option", Mode::BadOption),
    ("slow_suggest", Mode::SlowSuggest),
];

struct State {
    mode: Mode,
    port: u16,
    flood_ms: Option<u64>,
    slow_ms: u64,
    fill_bytes: usize,
    study: Study,
    rng: u64,
}

static STATE: Mutex<Option<State>> = Mutex::new(None);

/// The string value of `"key"` in a flat JSON object (no serde: this plugin must stay tiny).
fn json_field<'a>(json: &'a str, key: &str) -> Option<&'a str> {
    let at = json.find(&format!("\"{key}\""))? + key.len() + 2;
    let rest = json[at..].trim_start().strip_prefix(':')?.trim_start();
    match rest.strip_prefix('"') {
        Some(s) => s.find('"').map(|end| &s[..end]),
        None => {
            let end = rest.find(|c: char| !(c.is_ascii_alphanumeric() || c == '.' || c == '-')).unwrap_or(rest.len());
            Some(&rest[..end])
        }
    }
}

fn parse_options(options: &str) -> Result<(Mode, u16), String> {
    let mode = match json_field(options, "mode") {
        None => Mode::Good,
        Some(name) => MODES.iter().find(|(n, _)| *n == name).map(|(_, m)| *m).ok_or_else(|| {
            let known: Vec<&str> = MODES.iter().map(|(n, _)| *n).collect();
            // An options error, by the convention of wit/hpo.wit (`init`).
            format!("options: hostile: unknown mode `{name}` (known: {})", known.join(", "))
        })?,
    };
    let port = json_field(options, "port").and_then(|p| p.parse().ok()).unwrap_or(9);
    Ok((mode, port))
}

fn flood(until_ms: Option<u64>) -> String {
    let big = || "B".repeat(100 << 20);
    let start = std::time::Instant::now();
    let filler = "x".repeat(200);
    let mut i = 0u64;
    loop {
        log::log(Level::Info, &format!("log flood {i} {filler}"));
        println!("stdout flood {i} {filler}");
        eprintln!("stderr flood {i} {filler}");
        // Well past any per-call budget before the expensive line, so the budget is hit first.
        if i == 1000 {
            log::log(Level::Error, &big());
        }
        i += 1;
        if until_ms.is_some_and(|ms| start.elapsed().as_millis() as u64 >= ms) {
            return big();
        }
    }
}

fn storage_quota(fill_bytes: usize) -> String {
    let key = storage::set(&"k".repeat(300), b"v");
    let value = storage::set("big", &vec![0u8; (1 << 20) + 1]);
    let mut full = Ok(());
    for i in 0..10_000 {
        full = storage::set(&format!("fill{i}"), &vec![1u8; fill_bytes]);
        if full.is_err() {
            break;
        }
    }
    format!("storage quota: key={key:?} value={value:?} full={full:?}")
}

/// splitmix64
fn next(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

fn unit(state: &mut u64) -> f64 {
    (next(state) >> 11) as f64 / (1u64 << 53) as f64
}

fn random_value(domain: &Domain, rng: &mut u64) -> Value {
    match domain {
        Domain::Float(r) => {
            let u = unit(rng);
            let x =
                if r.log { (r.low.ln() + u * (r.high.ln() - r.low.ln())).exp() } else { r.low + u * (r.high - r.low) };
            Value::Float(x.clamp(r.low, r.high))
        }
        Domain::Int(r) => {
            let span = (r.high as i128 - r.low as i128 + 1) as u128;
            Value::Int((r.low as i128 + (next(rng) as u128 % span) as i128) as i64)
        }
        Domain::Choice(options) => Value::Choice(options[(next(rng) % options.len() as u64) as usize].clone()),
    }
}

fn good(state: &mut State, count: u32) -> Vec<Vec<Assignment>> {
    (0..count)
        .map(|_| {
            state
                .study
                .space
                .iter()
                .map(|p| Assignment { name: p.name.clone(), value: random_value(&p.domain, &mut state.rng) })
                .collect()
        })
        .collect()
}

/// Index of the first parameter whose domain matches `pred`, else 0.
fn first(study: &Study, pred: fn(&Domain) -> bool) -> usize {
    study.space.iter().position(|p| pred(&p.domain)).unwrap_or(0)
}

fn fs_probe() -> String {
    let read = match std::fs::read_to_string("/etc/passwd") {
        Ok(s) => format!("READ {:?}", s.bytes().take(20).collect::<Vec<u8>>()),
        Err(e) => format!("{:?}", e.kind()),
    };
    let list = match std::fs::read_dir("/") {
        Ok(entries) => {
            let names: Vec<String> = entries
                .take(5)
                .map(|e| e.map(|e| e.file_name().to_string_lossy().into_owned()).unwrap_or_default())
                .collect();
            format!("LISTED {names:?}")
        }
        Err(e) => format!("{:?}", e.kind()),
    };
    format!("fs probe: read={read} list={list}")
}

fn alloc_4gib() -> usize {
    const CHUNK: usize = 64 << 20;
    let mut chunks: Vec<Vec<u8>> = Vec::new();
    for _ in 0..64 {
        let mut chunk = vec![0u8; CHUNK];
        for page in chunk.iter_mut().step_by(4096) {
            *page = 1;
        }
        chunks.push(std::hint::black_box(chunk));
    }
    std::hint::black_box(&chunks).len()
}

fn spin() -> ! {
    let mut n = 0u64;
    loop {
        n = std::hint::black_box(n.wrapping_add(1));
    }
}

struct Hostile;

impl Guest for Hostile {
    fn describe() -> Info {
        Info {
            name: "hostile".into(),
            version: "0.1.0".into(),
            description: "misbehaves on purpose, as study.options {\"mode\": ...} says (sandbox tests)".into(),
            capabilities: vec!["log".into(), "storage".into(), "llm".into()],
            prunes: false,
            multi_objective: false,
        }
    }

    fn judge(reports: Vec<Report>) -> Result<Vec<Verdict>, String> {
        Ok(vec![Verdict::Continue; reports.len()])
    }

    fn init(study: Study) -> Result<(), String> {
        let (mode, port) = parse_options(&study.options)?;
        log::log(Level::Info, &format!("hostile: mode {mode:?}"));
        match mode {
            Mode::InitPanic => panic!("hostile panic in init"),
            Mode::SlowInit => spin(),
            Mode::BadOption => return Err("options: hostile: `bad_option` is never a valid option".into()),
            _ => {}
        }
        let flood_ms = json_field(&study.options, "flood_ms").and_then(|v| v.parse().ok());
        let slow_ms = json_field(&study.options, "slow_ms").and_then(|v| v.parse().ok()).unwrap_or(1500);
        let fill_bytes = json_field(&study.options, "fill_bytes").and_then(|v| v.parse().ok()).unwrap_or(1 << 20);
        let rng = study.seed ^ 0x5eed;
        *STATE.lock().unwrap() = Some(State { mode, port, flood_ms, slow_ms, fill_bytes, study, rng });
        Ok(())
    }

    fn suggest(count: u32, _pending: Vec<Trial>) -> Result<Vec<Vec<Assignment>>, String> {
        let mut guard = STATE.lock().unwrap();
        let state = guard.as_mut().ok_or("hostile: suggest before init")?;
        let mut out = good(state, count.max(1));
        let study = &state.study;
        match state.mode {
            Mode::Good | Mode::ObserveTrap => {}
            Mode::SlowSuggest => {
                let start = std::time::Instant::now();
                while start.elapsed() < std::time::Duration::from_millis(state.slow_ms) {
                    std::hint::spin_loop();
                }
            }
            Mode::Loop => spin(),
            Mode::Alloc => return Err(format!("hostile: allocated {} chunks and was not stopped", alloc_4gib())),
            Mode::Panic | Mode::InitPanic | Mode::SlowInit | Mode::BadOption => panic!("hostile panic"),
            Mode::Flood => return Err(flood(state.flood_ms)),
            Mode::StorageQuota => return Err(storage_quota(state.fill_bytes)),
            Mode::Fs => return Err(fs_probe()),
            Mode::Net => {
                let result = std::net::TcpStream::connect(("127.0.0.1", state.port));
                return Err(format!("net probe: {result:?}"));
            }
            Mode::OutOfRange => {
                let i = first(study, |d| !matches!(d, Domain::Choice(_)));
                out[0][i].value = match &study.space[i].domain {
                    Domain::Float(r) => Value::Float(r.high + (r.high - r.low).abs() + 1.0),
                    Domain::Int(r) if r.high < i64::MAX => Value::Int(r.high + 1),
                    Domain::Int(r) => Value::Int(r.low - 1),
                    Domain::Choice(_) => Value::Choice("no-such-choice".into()),
                };
            }
            Mode::WrongType => {
                let i = first(study, |d| !matches!(d, Domain::Choice(_)));
                out[0][i].value = match &study.space[i].domain {
                    Domain::Float(r) => Value::Int(r.low as i64),
                    Domain::Int(r) => Value::Float(r.low as f64),
                    Domain::Choice(_) => Value::Int(0),
                };
            }
            Mode::Missing => {
                out[0].remove(0);
            }
            Mode::Extra => out[0].push(Assignment { name: "bogus".into(), value: Value::Float(1.0) }),
            Mode::UnknownChoice => {
                let i = first(study, |d| matches!(d, Domain::Choice(_)));
                out[0][i].value = Value::Choice("no-such-choice".into());
            }
            Mode::Nan => {
                let i = first(study, |d| matches!(d, Domain::Float(_)));
                out[0][i].value = Value::Float(f64::NAN);
            }
            Mode::TooMany => out = good(state, count + 1),
            Mode::CrashOnce => {
                if storage::get("crashed").is_none() {
                    storage::set("crashed", b"1")?;
                    panic!("hostile crash_once: crashing on the first suggest of this study");
                }
            }
            Mode::Stdout => {
                println!("hello from stdout");
                eprintln!("hello from stderr");
            }
            Mode::Llm => {
                let request = llm::ChatRequest {
                    model: None,
                    messages: vec![llm::Message { role: "user".into(), content: "Say hi.".into() }],
                    temperature: Some(0.0),
                    max_tokens: Some(8),
                    json: false,
                };
                return Err(format!("llm probe: {:?}", llm::chat(&request)));
            }
        }
        out.truncate(match state.mode {
            Mode::TooMany => count as usize + 1,
            _ => count as usize,
        });
        Ok(out)
    }

    fn observe(_outcomes: Vec<Outcome>) -> Result<(), String> {
        let mode = STATE.lock().unwrap().as_ref().map(|s| s.mode);
        if mode == Some(Mode::ObserveTrap) {
            panic!("hostile panic in observe");
        }
        Ok(())
    }
}

export!(Hostile);
