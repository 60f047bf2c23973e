//! The host's own cost per LLM call, excluding the server's time: the `llm` capability's service
//! (model check, request hashing, replay lookup, caps query, the audit-log insert into a real
//! study database, response parsing) against a bare HTTP POST of the same body to the same
//! loopback server (tests/doubles/sophia_gateway.py). Both go through reqwest on one
//! current-thread runtime; blocks of calls alternate between the two, and the figures are medians
//! of per-block means. A replayed call (answered from the log, nothing sent) is timed too.
//!
//!     cargo bench -p alcf-tests --bench llm                # ~1 minute on 2 cores
//!     cargo bench -p alcf-tests --bench llm -- --blocks 20 --per-block 25
//!
//! docs/benchmarks.md quotes the output.

use std::sync::Arc;
use std::time::{Duration, Instant};

use alcf_host::config::{LlmAuth, LlmConfig};
use alcf_host::llm::client::{ChatClient, TokenSource};
use alcf_host::llm::{LlmService, client_config};
use alcf_host::plugin::capability::llm::{BoxFuture, ChatRequest, LlmBackend, LlmCall, Message};
use alcf_host::study::{StudyDb, StudyMeta};
use alcf_tests::doubles::Double;

const TOKEN: &str = "bench-token";

struct Static;

impl TokenSource for Static {
    fn token(&self) -> BoxFuture<'_, Result<Option<String>, String>> {
        Box::pin(async { Ok(Some(TOKEN.to_string())) })
    }
    fn refresh(&self, _rejected: String) -> BoxFuture<'_, Result<String, String>> {
        Box::pin(async { Err("no refresh in the benchmark".to_string()) })
    }
}

fn cpu() -> Duration {
    let mut u: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut u) };
    let t = |tv: libc::timeval| Duration::new(tv.tv_sec as u64, tv.tv_usec as u32 * 1000);
    t(u.ru_utime) + t(u.ru_stime)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

fn request(i: usize) -> ChatRequest {
    ChatRequest {
        model: None,
        messages: vec![
            Message { role: "system".into(), content: "You propose hyperparameters as JSON.".into() },
            Message {
                role: "user".into(),
                content: format!("Propose 1 configuration (call {i}). ```json\n{{\"best\": []}}\n```"),
            },
        ],
        temperature: Some(0.7),
        max_tokens: Some(256),
        json: true,
        schema: None,
    }
}

fn arg(name: &str, default: usize) -> usize {
    std::env::args().skip_while(|a| a != name).nth(1).and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn main() {
    let blocks = arg("--blocks", 15);
    let per_block = arg("--per-block", 20);
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!(
        "llm host-overhead benchmark: {blocks} alternating blocks of {per_block} calls; load average at start: {}",
        load.trim()
    );
    let gw = Double::gateway(&["--token", TOKEN, "--answer", "random"]);
    let dir = tempfile::tempdir().unwrap();
    let meta = StudyMeta {
        name: "bench".into(),
        objective: "value".into(),
        direction: "minimize".into(),
        seed: 0,
        space: serde_json::json!([]),
        executor: "bench".into(),
        plugin: "bench".into(),
        plugin_sha256: "00".into(),
        created_at: 0.0,
    };
    let db = Arc::new(StudyDb::create(dir.path(), &meta).unwrap());
    let cfg = LlmConfig {
        base_url: gw.vllm_base(),
        jobs_url: None,
        auth: LlmAuth::Globus,
        max_calls: u32::MAX,
        max_tokens: u64::MAX,
        ..LlmConfig::default()
    };
    let tokens: Arc<dyn TokenSource> = Arc::new(Static);
    let service =
        LlmService::new(cfg.clone(), ChatClient::new(client_config(&cfg), tokens.clone()).unwrap(), tokens, db.clone());
    let bare = reqwest::Client::new();
    let url = format!("{}/chat/completions", cfg.base_url);
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let plugin: Arc<str> = "bench".into();

    let mut n = 0usize;
    let mut recorded = Vec::new();
    let (mut svc_wall, mut svc_cpu, mut raw_wall, mut raw_cpu, mut replay_wall) =
        (vec![], vec![], vec![], vec![], vec![]);
    rt.block_on(async {
        // Warm-up: connections, SQLite pages, the server's first request.
        for _ in 0..5 {
            n += 1;
            service.chat(LlmCall { plugin: plugin.clone(), instance: 0, request: request(n) }).await.unwrap();
        }
        for block in 0..blocks * 2 {
            let through_service = block % 2 == 0;
            let (w0, c0) = (Instant::now(), cpu());
            for _ in 0..per_block {
                n += 1;
                if through_service {
                    let call = LlmCall { plugin: plugin.clone(), instance: 0, request: request(n) };
                    service.chat(call).await.unwrap();
                    recorded.push(n);
                } else {
                    let body = alcf_host::llm::client::chat_body(&cfg.model, &request(n));
                    let resp = bare.post(&url).bearer_auth(TOKEN).json(&body).send().await.unwrap();
                    let v: serde_json::Value = resp.json().await.unwrap();
                    assert!(v["choices"][0]["message"]["content"].is_string());
                }
            }
            let wall = w0.elapsed().as_secs_f64() * 1e3 / per_block as f64;
            let cpu_ms = (cpu() - c0).as_secs_f64() * 1e3 / per_block as f64;
            if through_service {
                svc_wall.push(wall);
                svc_cpu.push(cpu_ms);
            } else {
                raw_wall.push(wall);
                raw_cpu.push(cpu_ms);
            }
        }
        // Replays: a fresh instance asks the first recorded requests again.
        for block in 0..blocks {
            let t0 = Instant::now();
            for i in 0..per_block {
                let k = recorded[block * per_block + i];
                let call = LlmCall { plugin: plugin.clone(), instance: 1 + block as u64, request: request(k) };
                service.chat(call).await.unwrap();
            }
            replay_wall.push(t0.elapsed().as_secs_f64() * 1e3 / per_block as f64);
        }
    });
    let sent = gw.requests().len();
    let (sw, rw, sc, rc) = (median(svc_wall), median(raw_wall), median(svc_cpu), median(raw_cpu));
    println!("through the service : {sw:.3} ms wall, {sc:.3} ms CPU per call (median of {blocks} block means)");
    println!("bare POST           : {rw:.3} ms wall, {rc:.3} ms CPU per call");
    println!("host overhead       : {:.3} ms wall, {:.3} ms CPU per call", sw - rw, sc - rc);
    println!("replayed call       : {:.3} ms wall per call (nothing sent)", median(replay_wall));
    println!("requests the server saw: {sent} (replays sent none)");
    assert_eq!(sent, 5 + blocks * 2 * per_block, "a replayed call reached the server");
}
