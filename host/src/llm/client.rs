//! An OpenAI-compatible chat-completions client with the retry rules of ALCF's Sophia gateway
//! (auroraGPT-ANL/inference-gateway): a cold model answers 408 after the gateway's own 300 s wait,
//! maintenance or a model not yet ready is 503, a pending task is 202 with Retry-After, rate limits are 429,
//! an expired token is 401. It also talks to a plain vLLM server (no token, same routes).
//!
//! Retry rules of [`ChatClient::send`]:
//! - 408, 202, 503: retried until `cold_wait` is spent, waiting Retry-After when given, else backoff; on 408 and
//!   503 the jobs route (if configured) says what the model is doing in the wait line.
//! - 429: Retry-After (seconds or HTTP date), else backoff; counts against `max_retries`.
//! - 500 / 502 / 504 (any 5xx), connection errors, attempt timeouts, bodies cut off or not JSON: backoff with
//!   full jitter, `max_retries`.
//! - 401: one refresh of the token, then resend; a second 401 is [`ClientError::Auth`].
//! - 400 / 404 / 422 and other 4xx: [`ClientError::Rejected`] with the server's message, not retried.
//!
//! The access token comes from a [`TokenSource`] and never appears in an error, a wait line or an
//! [`Attempt`]: every text that leaves this module passes through `redact` first.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};

use crate::plugin::capability::llm::ChatRequest;

/// Where the access token comes from (the main session adapts `auth::Credentials`).
pub use crate::auth::TokenSource;

#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// The OpenAI base, ending in `/v1`; requests go to `{base_url}/chat/completions`.
    pub base_url: String,
    /// Sophia's `GET /resource_server/{cluster}/jobs`: read on 408 / 503 to say what the model is doing.
    pub jobs_url: Option<String>,
    /// One request, sent to answer received. Default 330 s: the gateway itself waits 300 s before its 408.
    pub attempt_timeout: Duration,
    /// Total time spent on 408 / 202 / 503 (their attempts and the waits after them). Default 20 min: a
    /// cold model takes 10-15 min to load.
    pub cold_wait: Duration,
    /// Retries for 429, 5xx, network errors, attempt timeouts and cut-off bodies. Default 6.
    pub max_retries: u32,
    /// Backoff: full jitter, a uniform wait in [0, min(cap, base * 2^n)) before the n-th retry (from 0).
    pub backoff_base: Duration,
    pub backoff_cap: Duration,
}

impl ClientConfig {
    /// The defaults above for `base_url`, without a jobs route.
    pub fn new(base_url: impl Into<String>) -> ClientConfig {
        ClientConfig {
            base_url: base_url.into(),
            jobs_url: None,
            attempt_timeout: Duration::from_secs(330),
            cold_wait: Duration::from_secs(20 * 60),
            max_retries: 6,
            backoff_base: Duration::from_secs(1),
            backoff_cap: Duration::from_secs(60),
        }
    }
}

/// One chat completion that came back, with every attempt it took.
#[derive(Debug, Clone)]
pub struct Exchange {
    pub response: Value,
    pub content: String,
    pub model: String,
    pub prompt_tokens: u32,
    pub completion_tokens: u32,
    pub finish_reason: Option<String>,
    /// First send to final answer, waits included.
    pub latency: Duration,
    pub attempts: Vec<Attempt>,
}

/// One request sent. Texts never hold the token.
#[derive(Debug, Clone, PartialEq)]
pub struct Attempt {
    /// The HTTP status; None when no answer came (connection error, timeout).
    pub status: Option<u16>,
    /// What went wrong (None for the attempt that answered).
    pub error: Option<String>,
    /// From sending to the answer (or the failure).
    pub seconds: f64,
    /// How long the client waited after this attempt before the next one (0 for the last).
    pub waited_s: f64,
}

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// 401 after one refresh, no token, or the token source failed.
    #[error("{message}")]
    Auth { message: String, attempts: Vec<Attempt> },
    /// `max_retries` or `cold_wait` spent.
    #[error("{message}")]
    Unavailable { message: String, attempts: Vec<Attempt> },
    /// 400 / 404 / 422 (and other 4xx): the request itself is wrong; not retried.
    #[error("{message}")]
    Rejected { status: u16, message: String, attempts: Vec<Attempt> },
    /// 200 but no `choices[0].message.content`.
    #[error("{message}")]
    Protocol { message: String, attempts: Vec<Attempt> },
    /// The configuration cannot work (bad URL, HTTP client setup).
    #[error("{0}")]
    Setup(String),
}

impl ClientError {
    /// The attempts made before the error (for the audit record).
    pub fn attempts(&self) -> &[Attempt] {
        match self {
            ClientError::Auth { attempts, .. }
            | ClientError::Unavailable { attempts, .. }
            | ClientError::Rejected { attempts, .. }
            | ClientError::Protocol { attempts, .. } => attempts,
            ClientError::Setup(_) => &[],
        }
    }
}

/// The request body as sent: only fields the gateway accepts (model, messages, temperature, max_tokens,
/// response_format). `schema` → `{"type":"json_schema","json_schema":{"name","schema"}}`; `json` without a
/// schema → the same with name "json_object" and schema `{"type":"object"}`, which every vLLM guided decoder
/// understands the same way.
pub fn chat_body(model: &str, request: &ChatRequest) -> Value {
    let messages: Vec<Value> = request.messages.iter().map(|m| json!({"role": m.role, "content": m.content})).collect();
    let mut body = serde_json::Map::new();
    body.insert("model".into(), json!(model));
    body.insert("messages".into(), Value::Array(messages));
    if let Some(t) = request.temperature {
        body.insert("temperature".into(), json!(t));
    }
    if let Some(n) = request.max_tokens {
        body.insert("max_tokens".into(), json!(n));
    }
    let format = match (&request.schema, request.json) {
        (Some(s), _) => Some((s.name.clone(), s.schema.clone())),
        (None, true) => Some(("json_object".to_string(), json!({"type": "object"}))),
        (None, false) => None,
    };
    if let Some((name, schema)) = format {
        body.insert(
            "response_format".into(),
            json!({"type": "json_schema", "json_schema": {"name": name, "schema": schema}}),
        );
    }
    Value::Object(body)
}

pub struct ChatClient {
    cfg: ClientConfig,
    chat_url: String,
    /// "sophia" for `…/resource_server/sophia/…`, else the host: the prefix of wait lines and errors.
    label: String,
    http: reqwest::Client,
    tokens: Arc<dyn TokenSource>,
    jitter: Mutex<u64>,
}

/// What the retry loop does next.
enum Step {
    /// Wait this long (already recorded), telling `on_wait` this line.
    Wait(Duration, String),
    /// A failure counted against `max_retries`: status, text, the server's Retry-After.
    Retry(Option<u16>, String, Option<Duration>),
}

/// What one attempt gave.
enum Outcome {
    Answer(Value),
    Status {
        status: u16,
        retry_after: Option<Duration>,
        message: String,
    },
    /// No usable answer: connection error, timeout, body cut off, a 200 that is not JSON.
    Failed {
        status: Option<u16>,
        text: String,
    },
}

impl ChatClient {
    pub fn new(cfg: ClientConfig, tokens: Arc<dyn TokenSource>) -> Result<ChatClient, ClientError> {
        let base = parse_url("base_url", &cfg.base_url)?;
        if let Some(jobs) = &cfg.jobs_url {
            parse_url("jobs_url", jobs)?;
        }
        let label = label_of(&base);
        let mut builder = reqwest::Client::builder().user_agent(concat!("alcf-host/", env!("CARGO_PKG_VERSION")));
        // ALCF compute nodes reach the gateway through the site proxy (HTTPS_PROXY), so proxies are honoured,
        // except for a loopback server (a local vLLM, the test double), which a proxy cannot reach.
        if matches!(base.host_str(), Some("127.0.0.1" | "localhost" | "[::1]")) {
            builder = builder.no_proxy();
        }
        let http = builder.build().map_err(|e| {
            ClientError::Setup(format!("cannot set up the HTTP client: {} (check the TLS setup)", chain(&e)))
        })?;
        let seed = RandomState::new().build_hasher().finish() | 1;
        Ok(ChatClient {
            chat_url: format!("{}/chat/completions", cfg.base_url.trim_end_matches('/')),
            cfg,
            label,
            http,
            tokens,
            jitter: Mutex::new(seed),
        })
    }

    /// Sends one chat completion body, retrying as the module doc says; `on_wait` gets one line per wait, e.g.
    /// "sophia: model meta-llama/Llama-3.3-70B-Instruct is queued; waiting 30 s (408, 5 min of 20 spent)".
    pub async fn send(&self, body: &Value, on_wait: &(dyn Fn(&str) + Send + Sync)) -> Result<Exchange, ClientError> {
        let started = Instant::now();
        let model = body.get("model").and_then(Value::as_str).unwrap_or("(default)").to_string();
        let mut attempts: Vec<Attempt> = Vec::new();
        let mut token = match self.tokens.token().await {
            Ok(t) => t,
            Err(message) => return Err(ClientError::Auth { message: redact(&message, None), attempts }),
        };
        let mut refreshed = false;
        let mut retries = 0u32;
        let mut cold_tries = 0u32;
        let mut cold_spent = Duration::ZERO;
        loop {
            let t0 = Instant::now();
            let outcome = self.attempt(body, token.as_deref()).await;
            let took = t0.elapsed();
            let secret = token.as_deref();
            let mut record = |status: Option<u16>, error: Option<String>, waited: Duration| {
                attempts.push(Attempt {
                    status,
                    error: error.map(|e| redact(&e, secret)),
                    seconds: took.as_secs_f64(),
                    waited_s: waited.as_secs_f64(),
                })
            };
            let step = match outcome {
                Outcome::Answer(response) => {
                    record(Some(200), None, Duration::ZERO);
                    return self.exchange(response, &model, started, attempts);
                }
                Outcome::Status { status: 401, message, .. } => {
                    record(Some(401), Some(format!("401: {message}")), Duration::ZERO);
                    let message = redact(&message, secret);
                    let Some(rejected) = token.take() else {
                        return Err(ClientError::Auth {
                            message: format!(
                                "{} asks for an access token (401: {message}) but none is configured: run \
                                 `alcf-host auth login`",
                                self.label
                            ),
                            attempts,
                        });
                    };
                    if refreshed {
                        return Err(ClientError::Auth {
                            message: format!(
                                "{} rejected the access token even after a refresh (401: {message}): run \
                                 `alcf-host auth login`",
                                self.label
                            ),
                            attempts,
                        });
                    }
                    refreshed = true;
                    match self.tokens.refresh(rejected.clone()).await {
                        Ok(fresh) => token = Some(fresh),
                        Err(e) => {
                            return Err(ClientError::Auth { message: redact(&e, Some(&rejected)), attempts });
                        }
                    }
                    continue;
                }
                Outcome::Status { status: status @ (408 | 503 | 202), retry_after, message } => {
                    cold_tries += 1;
                    cold_spent += took;
                    let what = format!("{status}: {message}");
                    if cold_spent >= self.cfg.cold_wait {
                        record(Some(status), Some(what.clone()), Duration::ZERO);
                        let state = self.model_state(status, &model, secret).await;
                        return Err(ClientError::Unavailable {
                            message: redact(
                                &format!(
                                    "{}: model {model} did not answer within the cold-start wait of {} (last: {what}; \
                                     model {}): try again later, or choose a running model (GET {})",
                                    self.label,
                                    human(self.cfg.cold_wait),
                                    state.as_deref().unwrap_or("state unknown").trim_start_matches("is "),
                                    self.cfg.jobs_url.as_deref().unwrap_or("the gateway's jobs route"),
                                ),
                                secret,
                            ),
                            attempts,
                        });
                    }
                    let left = self.cfg.cold_wait - cold_spent;
                    let wait = retry_after.unwrap_or_else(|| self.backoff(cold_tries - 1)).min(left);
                    cold_spent += wait;
                    record(Some(status), Some(what), wait);
                    let doing = if status == 202 {
                        format!("request for model {model} is pending")
                    } else {
                        match self.model_state(status, &model, secret).await {
                            Some(state) => format!("model {model} {state}"),
                            None => format!("model {model} is not ready"),
                        }
                    };
                    let line = format!(
                        "{}: {doing}; waiting {} ({status}, {} of {} spent)",
                        self.label,
                        human(wait),
                        human(cold_spent),
                        human(self.cfg.cold_wait)
                    );
                    Step::Wait(wait, line)
                }
                Outcome::Status { status, message, .. } if (400..500).contains(&status) && status != 429 => {
                    record(Some(status), Some(format!("{status}: {message}")), Duration::ZERO);
                    let hint = match status {
                        404 => format!("check the model name `{model}` against the gateway's list-endpoints"),
                        _ => "fix the request; it is not retried".to_string(),
                    };
                    return Err(ClientError::Rejected {
                        status,
                        message: redact(
                            &format!("{} rejected the request ({status}): {message} ({hint})", self.label),
                            secret,
                        ),
                        attempts,
                    });
                }
                // 429, 5xx, and attempts that got no usable answer: backoff (or Retry-After), max_retries.
                Outcome::Status { status, retry_after, message } => {
                    Step::Retry(Some(status), format!("{status}: {message}"), retry_after)
                }
                Outcome::Failed { status, text } => Step::Retry(status, text, None),
            };
            let (wait, line) = match step {
                Step::Wait(wait, line) => (wait, line),
                Step::Retry(status, text, retry_after) => {
                    retries += 1;
                    if retries > self.cfg.max_retries {
                        record(status, Some(text.clone()), Duration::ZERO);
                        return Err(ClientError::Unavailable {
                            message: redact(
                                &format!(
                                    "{}: no answer after {} attempts (last: {text}): check the service \
                                     (GET its /resource_server/health) and try again later",
                                    self.label,
                                    attempts.len(),
                                ),
                                secret,
                            ),
                            attempts,
                        });
                    }
                    let wait = retry_after.unwrap_or_else(|| self.backoff(retries - 1));
                    record(status, Some(text.clone()), wait);
                    let line = format!(
                        "{}: {}; retrying in {} (retry {retries} of {})",
                        self.label,
                        redact(&text, secret),
                        human(wait),
                        self.cfg.max_retries
                    );
                    (wait, line)
                }
            };
            on_wait(&line);
            tokio::time::sleep(wait).await;
        }
    }

    async fn attempt(&self, body: &Value, token: Option<&str>) -> Outcome {
        let mut req = self.http.post(&self.chat_url).json(body);
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        let timeout = self.cfg.attempt_timeout;
        let run = async {
            let resp = match req.send().await {
                Ok(r) => r,
                Err(e) => return Outcome::Failed { status: None, text: format!("request failed: {}", chain(&e)) },
            };
            let status = resp.status().as_u16();
            let retry_after = resp
                .headers()
                .get(reqwest::header::RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| parse_retry_after(v, SystemTime::now()));
            let bytes = match resp.bytes().await {
                Ok(b) => b,
                Err(e) => {
                    return Outcome::Failed {
                        status: Some(status),
                        text: format!("{status}: answer cut off: {}", chain(&e)),
                    };
                }
            };
            let parsed: Option<Value> = serde_json::from_slice(&bytes).ok();
            if status == 200 {
                return match parsed {
                    Some(v) => Outcome::Answer(v),
                    None => Outcome::Failed {
                        status: Some(200),
                        text: format!("200 but the body is not JSON: {}", snippet(&String::from_utf8_lossy(&bytes))),
                    },
                };
            }
            let message = error_message(parsed.as_ref(), &bytes, status);
            Outcome::Status { status, retry_after, message }
        };
        match tokio::time::timeout(timeout, run).await {
            Ok(outcome) => outcome,
            Err(_) => Outcome::Failed { status: None, text: format!("no answer within {}", human(timeout)) },
        }
    }

    fn exchange(
        &self,
        response: Value,
        model: &str,
        started: Instant,
        attempts: Vec<Attempt>,
    ) -> Result<Exchange, ClientError> {
        let choice = response.get("choices").and_then(|c| c.get(0));
        let Some(content) = choice.and_then(|c| c.pointer("/message/content")).and_then(Value::as_str) else {
            return Err(ClientError::Protocol {
                message: format!(
                    "{} answered 200 without choices[0].message.content ({}): is base_url an OpenAI-compatible \
                     /v1 route, and does the model return text?",
                    self.label,
                    snippet(&response.to_string())
                ),
                attempts,
            });
        };
        let usage = |key: &str| {
            response.pointer(&format!("/usage/{key}")).and_then(Value::as_u64).map_or(0, |n| n.min(u32::MAX as u64))
                as u32
        };
        Ok(Exchange {
            content: content.to_string(),
            model: response.get("model").and_then(Value::as_str).unwrap_or(model).to_string(),
            prompt_tokens: usage("prompt_tokens"),
            completion_tokens: usage("completion_tokens"),
            finish_reason: choice.and_then(|c| c.get("finish_reason")).and_then(Value::as_str).map(str::to_string),
            latency: started.elapsed(),
            attempts,
            response,
        })
    }

    /// For `alcf-host doctor`: the gateway's health route (`…/resource_server/health` on Sophia's
    /// layout, `{base_url}/models` on a plain vLLM) answers 2xx.
    pub async fn health(&self) -> Result<String, String> {
        let base = self.cfg.base_url.trim_end_matches('/');
        let url = match base.split_once("/resource_server/") {
            Some((head, _)) => format!("{head}/resource_server/health"),
            None => format!("{base}/models"),
        };
        let mut req = self.http.get(&url).timeout(Duration::from_secs(30));
        if let Ok(Some(t)) = self.tokens.token().await {
            req = req.bearer_auth(t);
        }
        match req.send().await {
            Ok(r) if r.status().is_success() => Ok(url),
            Ok(r) => Err(format!("{url} answered {}", r.status())),
            Err(e) => Err(redact(&format!("{url}: {}", chain(&e)), None)),
        }
    }

    /// For `alcf-host doctor`: what the jobs route says about `model` (`is running`, `is queued`,
    /// `is not listed …`), or why it could not be read; `None` without a jobs route.
    pub async fn model_status(&self, model: &str) -> Option<Result<String, String>> {
        let url = self.cfg.jobs_url.as_deref()?;
        let mut req = self.http.get(url).timeout(Duration::from_secs(30));
        if let Ok(Some(t)) = self.tokens.token().await {
            req = req.bearer_auth(t);
        }
        Some(match req.send().await {
            Ok(r) if r.status().is_success() => match r.json::<Value>().await {
                Ok(jobs) => Ok(describe_model(&jobs, model)),
                Err(e) => Err(format!("{url}: unreadable answer: {e}")),
            },
            Ok(r) => Err(format!("{url} answered {}", r.status())),
            Err(e) => Err(format!("{url}: {}", chain(&e))),
        })
    }

    /// What the jobs route says about `model` on a 408 / 503 ("is queued", "is starting"); None when there is
    /// no jobs route or it failed (its failure never fails the chat request).
    async fn model_state(&self, status: u16, model: &str, token: Option<&str>) -> Option<String> {
        if status == 202 {
            return None;
        }
        let url = self.cfg.jobs_url.as_deref()?;
        let mut req = self.http.get(url).timeout(self.cfg.attempt_timeout.min(Duration::from_secs(30)));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        let resp = req.send().await.ok()?;
        if !resp.status().is_success() {
            return None;
        }
        let jobs: Value = resp.json().await.ok()?;
        Some(describe_model(&jobs, model))
    }

    /// Full jitter: uniform in [0, min(cap, base * 2^n)).
    fn backoff(&self, n: u32) -> Duration {
        let ceiling = self.cfg.backoff_base.saturating_mul(1u32.checked_shl(n.min(31)).unwrap_or(u32::MAX));
        let ceiling = ceiling.min(self.cfg.backoff_cap);
        let r = {
            let mut s = self.jitter.lock().unwrap_or_else(|p| p.into_inner());
            // xorshift64*: jitter only needs to spread retries apart, not be unpredictable.
            *s ^= *s >> 12;
            *s ^= *s << 25;
            *s ^= *s >> 27;
            s.wrapping_mul(0x2545_F491_4F6C_DD1D)
        };
        ceiling.mul_f64((r >> 11) as f64 / (1u64 << 53) as f64)
    }
}

/// The model's line in the gateway's `JobsByStatus` (resource_server_async/schemas/clusters.py): lists
/// `running`, `queued`, `stopped`, `others`, `private_batch_*` of entries with "Models" (comma-separated),
/// "Framework", "Cluster", and from the qstat function "Model Status" (running / starting / queued / other /
/// disconnected), "Job State", "Estimated Start Time".
fn describe_model(jobs: &Value, model: &str) -> String {
    const SECTIONS: [&str; 6] =
        ["running", "queued", "stopped", "others", "private_batch_running", "private_batch_queued"];
    for section in SECTIONS {
        let Some(entries) = jobs.get(section).and_then(Value::as_array) else { continue };
        for entry in entries {
            let models = entry.get("Models").and_then(Value::as_str).unwrap_or("");
            if !models.split(',').any(|m| m.trim().eq_ignore_ascii_case(model)) {
                continue;
            }
            let status = entry.get("Model Status").and_then(Value::as_str);
            return match (section, status) {
                ("queued", _) | (_, Some("queued")) => {
                    match entry.get("Estimated Start Time").and_then(Value::as_str) {
                        Some(t) => format!("is queued (estimated start {t})"),
                        None => "is queued".to_string(),
                    }
                }
                ("stopped", _) => "is stopped".to_string(),
                (_, Some(s)) => format!("is {s}"),
                (s, None) => format!("is listed as {s}"),
            };
        }
    }
    "is not listed in the jobs route (not started yet)".to_string()
}

fn parse_url(field: &str, url: &str) -> Result<reqwest::Url, ClientError> {
    let parsed = reqwest::Url::parse(url)
        .map_err(|e| ClientError::Setup(format!("llm {field} `{url}`: {e} (set it to an http(s) URL)")))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(ClientError::Setup(format!("llm {field} `{url}`: not http(s) (set it to an http(s) URL)")));
    }
    Ok(parsed)
}

fn label_of(base: &reqwest::Url) -> String {
    let segs: Vec<&str> = base.path_segments().into_iter().flatten().collect();
    let cluster = segs.windows(2).find(|w| w[0] == "resource_server" && !w[1].is_empty()).map(|w| w[1]);
    cluster.or(base.host_str()).unwrap_or("llm").to_string()
}

/// The gateway's `{"error":{"code","message"}}`, django-ninja's 422 `{"detail":[{"loc","msg"}]}`, or the
/// start of whatever else came.
fn error_message(parsed: Option<&Value>, raw: &[u8], status: u16) -> String {
    if let Some(v) = parsed {
        if let Some(err) = v.get("error") {
            if let Some(s) = err.as_str() {
                return s.to_string();
            }
            let msg = err.get("message").and_then(Value::as_str);
            let code = err.get("code").and_then(Value::as_str);
            match (code, msg) {
                (Some(c), Some(m)) => return format!("{c}: {m}"),
                (None, Some(m)) => return m.to_string(),
                _ => {}
            }
        }
        match v.get("detail") {
            Some(Value::String(s)) => return s.clone(),
            Some(Value::Array(items)) if !items.is_empty() => {
                let parts: Vec<String> = items
                    .iter()
                    .map(|d| {
                        let loc = d.get("loc").and_then(Value::as_array).map(|l| {
                            l.iter()
                                .map(|p| p.as_str().map_or_else(|| p.to_string(), str::to_string))
                                .collect::<Vec<_>>()
                        });
                        let msg = d.get("msg").and_then(Value::as_str).unwrap_or("invalid");
                        match loc {
                            Some(l) if !l.is_empty() => format!("{}: {msg}", l.join(".")),
                            _ => msg.to_string(),
                        }
                    })
                    .collect();
                return parts.join("; ");
            }
            _ => {}
        }
        if let Some(m) = v.get("message").and_then(Value::as_str) {
            return m.to_string();
        }
        if let Some(s) = v.get("status").and_then(Value::as_str) {
            return s.to_string(); // 202 {"status":"task_accepted_and_pending","task_id"}
        }
    }
    let text = String::from_utf8_lossy(raw);
    if text.trim().is_empty() {
        reqwest::StatusCode::from_u16(status)
            .ok()
            .and_then(|s| s.canonical_reason())
            .unwrap_or("no message")
            .to_string()
    } else {
        snippet(&text)
    }
}

/// `Retry-After`: delay seconds (fractions tolerated) or an IMF-fixdate HTTP date ("Sun, 06 Nov 1994 08:49:37
/// GMT"); a date in the past is no wait. Unreadable: None (the caller backs off instead).
fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let v = value.trim();
    if let Ok(secs) = v.parse::<f64>() {
        return (secs.is_finite() && secs >= 0.0).then(|| Duration::from_secs_f64(secs.min(86_400.0)));
    }
    let at = parse_http_date(v)?;
    let now = now.duration_since(UNIX_EPOCH).ok()?.as_secs() as i64;
    Some(Duration::from_secs(at.saturating_sub(now).max(0) as u64))
}

fn parse_http_date(v: &str) -> Option<i64> {
    let parts: Vec<&str> = v.split_whitespace().collect();
    let [_, day, mon, year, time, "GMT"] = parts.as_slice() else { return None };
    const MONTHS: [&str; 12] = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
    let month = MONTHS.iter().position(|m| m == mon)? as i64 + 1;
    let (day, year): (i64, i64) = (day.parse().ok()?, year.parse().ok()?);
    let hms: Vec<i64> = time.split(':').map(|p| p.parse().ok()).collect::<Option<_>>()?;
    let [h, m, s] = hms.as_slice() else { return None };
    // Howard Hinnant's days_from_civil (the inverse of utc::UtcTime::from_unix).
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(days * 86_400 + h * 3600 + m * 60 + s)
}

/// Removes the token from a text that may have echoed it (a proxy's error page, a token source's message).
fn redact(text: &str, token: Option<&str>) -> String {
    match token {
        Some(t) if t.len() >= 4 && text.contains(t) => text.replace(t, "…redacted"),
        _ => text.to_string(),
    }
}

/// An error with its causes ("error sending request: connection refused"): reqwest's top line alone says
/// little.
fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = s.source();
    }
    out
}

fn snippet(text: &str) -> String {
    let t = text.trim();
    match t.char_indices().nth(200) {
        Some((i, _)) => format!("{}…", &t[..i]),
        None => t.to_string(),
    }
}

/// "0.3 s", "30 s", "5 min".
fn human(d: Duration) -> String {
    let s = d.as_secs_f64();
    if s < 10.0 && s.fract() != 0.0 {
        format!("{s:.1} s")
    } else if s < 120.0 {
        format!("{} s", s.round() as u64)
    } else {
        format!("{} min", (s / 60.0).round() as u64)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use std::io::{BufRead, BufReader};
    use std::path::PathBuf;
    use std::process::{Child, Command, Stdio};

    use super::*;
    use crate::plugin::capability::llm::{JsonSchema, Message};

    const MODEL: &str = "meta-llama/Llama-3.3-70B-Instruct";
    pub(crate) const GOOD: &str = "good-token-4f1c9a77";

    /// The Sophia gateway double (tests/doubles/sophia_gateway.py) on a free loopback port; killed on drop.
    pub(crate) struct Gateway {
        child: Child,
        pub(crate) port: u16,
    }

    impl Gateway {
        pub(crate) fn start(args: &[&str]) -> Gateway {
            let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/doubles/sophia_gateway.py");
            let mut child = Command::new("python3")
                .arg(&script)
                .args(["--port", "0", "--token", GOOD])
                .args(args)
                .stdout(Stdio::piped())
                .spawn()
                .expect("python3 runs the gateway double");
            let mut line = String::new();
            BufReader::new(child.stdout.take().expect("stdout")).read_line(&mut line).expect("LISTENING line");
            let port = line.trim().strip_prefix("LISTENING ").and_then(|p| p.parse().ok()).expect("LISTENING <port>");
            Gateway { child, port }
        }
        pub(crate) fn url(&self, path: &str) -> String {
            format!("http://127.0.0.1:{}{path}", self.port)
        }
        fn config(&self) -> ClientConfig {
            ClientConfig {
                jobs_url: Some(self.url("/resource_server/sophia/jobs")),
                ..fast(&self.url("/resource_server/sophia/vllm/v1"))
            }
        }
        pub(crate) async fn faults(&self, faults: Value) {
            let r = reqwest::Client::new().post(self.url("/_control/faults")).json(&faults).send().await.unwrap();
            assert!(r.status().is_success());
        }
        pub(crate) async fn requests(&self) -> Vec<Value> {
            let r = reqwest::Client::new().get(self.url("/_control/requests")).send().await.unwrap();
            r.json().await.unwrap()
        }
    }

    impl Drop for Gateway {
        fn drop(&mut self) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }

    /// Short waits so each test takes well under 5 s.
    pub(crate) fn fast(base: &str) -> ClientConfig {
        ClientConfig {
            attempt_timeout: Duration::from_secs(3),
            cold_wait: Duration::from_secs(2),
            max_retries: 2,
            backoff_base: Duration::from_millis(10),
            backoff_cap: Duration::from_millis(40),
            ..ClientConfig::new(base)
        }
    }

    /// A token source with a scripted first token and refresh answer; records what `refresh` was given.
    pub(crate) struct Tokens {
        first: Option<String>,
        fresh: Result<String, String>,
        refreshed: Mutex<Vec<String>>,
    }

    impl Tokens {
        fn new(first: Option<&str>, fresh: Result<&str, &str>) -> Arc<Tokens> {
            Arc::new(Tokens {
                first: first.map(str::to_string),
                fresh: fresh.map(str::to_string).map_err(str::to_string),
                refreshed: Mutex::new(Vec::new()),
            })
        }
        pub(crate) fn good() -> Arc<Tokens> {
            Tokens::new(Some(GOOD), Err("no refresh expected: run `alcf-host auth login`"))
        }
        fn refreshed(&self) -> Vec<String> {
            self.refreshed.lock().unwrap().clone()
        }
    }

    impl TokenSource for Tokens {
        fn token(&self) -> crate::auth::TokenFuture<'_, Result<Option<String>, String>> {
            Box::pin(async move { Ok(self.first.clone()) })
        }
        fn refresh(&self, rejected: String) -> crate::auth::TokenFuture<'_, Result<String, String>> {
            self.refreshed.lock().unwrap().push(rejected);
            Box::pin(async move { self.fresh.clone() })
        }
    }

    fn request(json: bool, schema: Option<Value>) -> ChatRequest {
        ChatRequest {
            model: None,
            messages: vec![
                Message { role: "system".into(), content: "You propose hyperparameters.".into() },
                Message { role: "user".into(), content: "Propose one.".into() },
            ],
            temperature: Some(0.7),
            max_tokens: Some(256),
            json,
            schema: schema.map(|schema| JsonSchema { name: "proposals".into(), schema }),
        }
    }

    fn body() -> Value {
        chat_body(MODEL, &request(false, None))
    }

    /// Sends `body` and collects the wait lines.
    async fn send(client: &ChatClient, body: &Value) -> (Result<Exchange, ClientError>, Vec<String>) {
        let lines = Mutex::new(Vec::new());
        let on_wait = |l: &str| lines.lock().unwrap().push(l.to_string());
        let r = client.send(body, &on_wait).await;
        (r, lines.into_inner().unwrap())
    }

    fn statuses(attempts: &[Attempt]) -> Vec<Option<u16>> {
        attempts.iter().map(|a| a.status).collect()
    }

    #[tokio::test]
    async fn answer_carries_content_usage_and_one_attempt() {
        let gw = Gateway::start(&[]);
        let client = ChatClient::new(gw.config(), Tokens::good()).unwrap();
        let (r, lines) = send(&client, &body()).await;
        let ex = r.unwrap();
        assert!(ex.content.contains("Sophia gateway double"), "{}", ex.content);
        assert_eq!(ex.model, MODEL);
        // "You propose hyperparameters." + "Propose one." = 40 chars -> 10 tokens.
        assert_eq!(ex.prompt_tokens, 10);
        assert_eq!(ex.completion_tokens, (ex.content.chars().count() as u32).div_ceil(4));
        assert_eq!(ex.finish_reason.as_deref(), Some("stop"));
        assert_eq!(statuses(&ex.attempts), [Some(200)]);
        assert!(lines.is_empty());
        let log = gw.requests().await;
        assert_eq!(log.len(), 1);
        assert_eq!((&log[0]["authorization"], &log[0]["token_prefix"]), (&json!(true), &json!("good")));
    }

    #[tokio::test]
    async fn chat_body_sends_only_fields_the_gateway_accepts() {
        let schema = json!({"type": "object", "properties": {"x": {"type": "number", "minimum": 0, "maximum": 1}},
                            "required": ["x"]});
        let structured = chat_body(MODEL, &request(true, Some(schema.clone())));
        assert_eq!(
            structured["response_format"],
            json!({"type": "json_schema", "json_schema": {"name": "proposals", "schema": schema}})
        );
        let json_only = chat_body(MODEL, &request(true, None));
        assert_eq!(
            json_only["response_format"],
            json!({"type": "json_schema", "json_schema": {"name": "json_object", "schema": {"type": "object"}}})
        );
        let plain = chat_body(MODEL, &ChatRequest { temperature: None, max_tokens: None, ..request(false, None) });
        let keys: Vec<&String> = plain.as_object().unwrap().keys().collect();
        assert_eq!(keys, ["messages", "model"]);
        assert_eq!(structured["messages"][1], json!({"role": "user", "content": "Propose one."}));
        // The double validates like the gateway (extra fields forbidden): all three shapes pass.
        let gw = Gateway::start(&[]);
        let client = ChatClient::new(gw.config(), Tokens::good()).unwrap();
        for b in [&structured, &json_only, &plain] {
            send(&client, b).await.0.unwrap();
        }
        let (r, _) = send(&client, &structured).await;
        let x: Value = serde_json::from_str(&r.unwrap().content).unwrap();
        assert!((0.0..=1.0).contains(&x["x"].as_f64().unwrap()));
    }

    #[tokio::test]
    async fn cold_408_waits_and_names_the_models_state_from_jobs() {
        let gw = Gateway::start(&[]);
        gw.faults(json!([{"status": 408, "model_state": "queued"}, {"status": 408, "model_state": "starting"}])).await;
        let client = ChatClient::new(gw.config(), Tokens::good()).unwrap();
        let (r, lines) = send(&client, &body()).await;
        let ex = r.unwrap();
        assert_eq!(statuses(&ex.attempts), [Some(408), Some(408), Some(200)]);
        assert_eq!(lines.len(), 2, "{lines:?}");
        assert!(lines[0].starts_with(&format!("sophia: model {MODEL} is queued (estimated start ")), "{}", lines[0]);
        assert!(lines[0].contains("(408, ") && lines[0].ends_with("of 2 s spent)"), "{}", lines[0]);
        assert!(lines[1].contains("is starting; waiting"), "{}", lines[1]);
    }

    #[tokio::test]
    async fn a_failing_jobs_route_is_ignored() {
        let gw = Gateway::start(&[]);
        gw.faults(json!([{"status": 503}])).await;
        let cfg = ClientConfig { jobs_url: Some(gw.url("/resource_server/nowhere/jobs")), ..gw.config() };
        let client = ChatClient::new(cfg, Tokens::good()).unwrap();
        let (r, lines) = send(&client, &body()).await;
        assert_eq!(statuses(&r.unwrap().attempts), [Some(503), Some(200)]);
        assert!(lines[0].starts_with(&format!("sophia: model {MODEL} is not ready; waiting ")), "{lines:?}");
    }

    #[tokio::test]
    async fn cold_wait_spent_is_unavailable() {
        let gw = Gateway::start(&[]);
        gw.faults(json!(vec![json!({"status": 503}); 50])).await;
        let cfg = ClientConfig {
            cold_wait: Duration::from_millis(300),
            backoff_base: Duration::from_millis(100),
            backoff_cap: Duration::from_millis(100),
            ..gw.config()
        };
        let client = ChatClient::new(cfg, Tokens::good()).unwrap();
        let t = Instant::now();
        let (r, lines) = send(&client, &body()).await;
        let ClientError::Unavailable { message, attempts } = r.unwrap_err() else { panic!("not Unavailable") };
        assert!(t.elapsed() < Duration::from_secs(2));
        assert!(message.contains("did not answer within the cold-start wait"), "{message}");
        assert!(message.contains("cluster_under_maintenance"), "{message}");
        assert!(attempts.len() >= 2 && attempts.iter().all(|a| a.status == Some(503)), "{attempts:?}");
        assert_eq!(lines.len(), attempts.len() - 1);
        // Each wait is clamped to what is left of cold_wait.
        let waited: f64 = attempts.iter().map(|a| a.waited_s).sum();
        assert!(waited <= 0.3 + 1e-9, "{waited}");
    }

    #[tokio::test]
    async fn pending_202_honours_retry_after() {
        let gw = Gateway::start(&[]);
        gw.faults(json!([{"status": 202, "retry_after": 0.4}])).await;
        let client = ChatClient::new(gw.config(), Tokens::good()).unwrap();
        let t = Instant::now();
        let (r, lines) = send(&client, &body()).await;
        let ex = r.unwrap();
        // The backoff cap is 40 ms: only Retry-After explains a 0.4 s wait.
        assert!(t.elapsed() >= Duration::from_millis(400));
        assert_eq!(statuses(&ex.attempts), [Some(202), Some(200)]);
        assert!((ex.attempts[0].waited_s - 0.4).abs() < 1e-6);
        assert!(lines[0].contains("is pending; waiting 0.4 s (202"), "{}", lines[0]);
    }

    #[tokio::test]
    async fn rate_limit_429_honours_retry_after_and_counts_against_max_retries() {
        let gw = Gateway::start(&[]);
        gw.faults(json!([{"status": 429, "retry_after": 0.3}])).await;
        let client = ChatClient::new(gw.config(), Tokens::good()).unwrap();
        let t = Instant::now();
        let ex = send(&client, &body()).await.0.unwrap();
        assert!(t.elapsed() >= Duration::from_millis(300));
        assert_eq!(statuses(&ex.attempts), [Some(429), Some(200)]);

        gw.faults(json!(vec![json!({"status": 429, "retry_after": 0.05}); 3])).await;
        let (r, lines) = send(&client, &body()).await;
        let ClientError::Unavailable { message, attempts } = r.unwrap_err() else { panic!("not Unavailable") };
        assert_eq!(statuses(&attempts), [Some(429); 3]); // max_retries 2
        assert!(message.contains("no answer after 3 attempts") && message.contains("too_many_requests"), "{message}");
        assert!(lines[1].contains("(retry 2 of 2)"), "{lines:?}");
    }

    #[tokio::test]
    async fn server_errors_back_off_then_give_up_after_max_retries() {
        let gw = Gateway::start(&[]);
        gw.faults(json!([{"status": 500}, {"status": 502}])).await;
        let client = ChatClient::new(gw.config(), Tokens::good()).unwrap();
        let ex = send(&client, &body()).await.0.unwrap();
        assert_eq!(statuses(&ex.attempts), [Some(500), Some(502), Some(200)]);
        assert!(ex.attempts.iter().all(|a| a.waited_s < 0.04 + 1e-9));

        gw.faults(json!([{"status": 504}, {"status": 500}, {"status": 504}, {"status": 500}])).await;
        let ClientError::Unavailable { message, attempts } = send(&client, &body()).await.0.unwrap_err() else {
            panic!("not Unavailable")
        };
        assert_eq!(statuses(&attempts), [Some(504), Some(500), Some(504)]);
        assert!(message.contains("check the service"), "{message}");
    }

    #[tokio::test]
    async fn connection_errors_are_retried_then_unavailable() {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let client =
            ChatClient::new(fast(&format!("http://127.0.0.1:{port}/v1")), Tokens::new(None, Err("none"))).unwrap();
        let ClientError::Unavailable { attempts, message } = send(&client, &body()).await.0.unwrap_err() else {
            panic!("not Unavailable")
        };
        assert_eq!(statuses(&attempts), [None; 3]);
        assert!(message.contains("request failed"), "{message}");
        assert_eq!(client.label, "127.0.0.1");
    }

    #[tokio::test]
    async fn attempt_timeout_is_retried() {
        let gw = Gateway::start(&[]);
        gw.faults(json!([{"slow_s": 1.5}])).await;
        let cfg = ClientConfig { attempt_timeout: Duration::from_millis(400), ..gw.config() };
        let client = ChatClient::new(cfg, Tokens::good()).unwrap();
        let t = Instant::now();
        let ex = send(&client, &body()).await.0.unwrap();
        assert!(t.elapsed() < Duration::from_millis(1400));
        assert_eq!(statuses(&ex.attempts), [None, Some(200)]);
        assert!(ex.attempts[0].error.as_deref().unwrap().contains("no answer within 0.4 s"), "{:?}", ex.attempts);
    }

    #[tokio::test]
    async fn cut_off_and_non_json_bodies_are_retried() {
        let gw = Gateway::start(&[]);
        gw.faults(json!([{"truncate": true}, {"garbage": true}])).await;
        let client = ChatClient::new(gw.config(), Tokens::good()).unwrap();
        let ex = send(&client, &body()).await.0.unwrap();
        assert_eq!(statuses(&ex.attempts), [Some(200); 3]);
        let errors: Vec<&str> = ex.attempts.iter().filter_map(|a| a.error.as_deref()).collect();
        assert!(errors[0].contains("answer cut off"), "{errors:?}");
        assert!(errors[1].contains("not JSON"), "{errors:?}");
        assert_eq!(errors.len(), 2);
    }

    #[tokio::test]
    async fn malformed_content_is_the_callers_to_judge() {
        let gw = Gateway::start(&[]);
        gw.faults(json!([{"malformed": true}])).await;
        let client = ChatClient::new(gw.config(), Tokens::good()).unwrap();
        let body = chat_body(MODEL, &request(true, None));
        let ex = send(&client, &body).await.0.unwrap();
        assert!(serde_json::from_str::<Value>(&ex.content).is_err());
        assert_eq!(ex.attempts.len(), 1);
    }

    #[tokio::test]
    async fn a_401_refreshes_once_and_resends() {
        let gw = Gateway::start(&[]);
        let tokens = Tokens::new(Some("stale-token-0001"), Ok(GOOD));
        let client = ChatClient::new(gw.config(), tokens.clone()).unwrap();
        let ex = send(&client, &body()).await.0.unwrap();
        assert_eq!(statuses(&ex.attempts), [Some(401), Some(200)]);
        assert_eq!(tokens.refreshed(), ["stale-token-0001"]);
        let log = gw.requests().await;
        assert_eq!((&log[0]["token_prefix"], &log[1]["token_prefix"]), (&json!("stal"), &json!("good")));
    }

    #[tokio::test]
    async fn a_second_401_is_an_auth_error_that_says_log_in() {
        let gw = Gateway::start(&[]);
        // The stale token's 401 consumes no fault; the refreshed token's request gets this 401.
        gw.faults(json!([{"status": 401}])).await;
        let tokens = Tokens::new(Some("stale-token-0001"), Ok(GOOD));
        let client = ChatClient::new(gw.config(), tokens.clone()).unwrap();
        let ClientError::Auth { message, attempts } = send(&client, &body()).await.0.unwrap_err() else {
            panic!("not Auth")
        };
        assert!(message.contains("run `alcf-host auth login`") && message.contains("Access token expired."));
        assert_eq!(statuses(&attempts), [Some(401), Some(401)]);
        assert_eq!(tokens.refreshed().len(), 1);
    }

    #[tokio::test]
    async fn a_failed_refresh_passes_the_sources_message_on() {
        let gw = Gateway::start(&[]);
        let why = "the Globus refresh token was revoked or has expired: run `alcf-host auth login`";
        let client = ChatClient::new(gw.config(), Tokens::new(Some("stale-token-0001"), Err(why))).unwrap();
        let ClientError::Auth { message, attempts } = send(&client, &body()).await.0.unwrap_err() else {
            panic!("not Auth")
        };
        assert_eq!(message, why);
        assert_eq!(statuses(&attempts), [Some(401)]);
    }

    #[tokio::test]
    async fn no_token_sends_no_authorization_header() {
        let gw = Gateway::start(&[]);
        let tokens = Tokens::new(None, Ok(GOOD));
        let client = ChatClient::new(gw.config(), tokens.clone()).unwrap();
        let ClientError::Auth { message, .. } = send(&client, &body()).await.0.unwrap_err() else { panic!("not Auth") };
        assert!(message.contains("none is configured: run `alcf-host auth login`"), "{message}");
        assert!(tokens.refreshed().is_empty());
        assert_eq!(gw.requests().await[0]["authorization"], json!(false));
    }

    #[tokio::test]
    async fn rejected_requests_carry_the_gateways_message() {
        let gw = Gateway::start(&[]);
        let client = ChatClient::new(gw.config(), Tokens::good()).unwrap();
        let mut bad = body();
        bad["guided_json"] = json!({"type": "object"});
        let r = send(&client, &bad).await.0.unwrap_err();
        let ClientError::Rejected { status: 422, message, attempts } = r else { panic!("not a 422: {r:?}") };
        assert!(message.contains("guided_json: Extra inputs are not permitted"), "{message}");
        assert_eq!(attempts.len(), 1);

        let mut unknown = body();
        unknown["model"] = json!("no/Such-Model");
        let r = send(&client, &unknown).await.0.unwrap_err();
        let ClientError::Rejected { status: 404, message, .. } = r else { panic!("not a 404: {r:?}") };
        assert!(message.contains("endpoint_not_found") && message.contains("check the model name"), "{message}");

        gw.faults(json!([{"status": 400}])).await;
        let r = send(&client, &body()).await.0.unwrap_err();
        let ClientError::Rejected { status: 400, attempts, .. } = r else { panic!("not a 400: {r:?}") };
        assert_eq!(attempts.len(), 1);
    }

    #[tokio::test]
    async fn the_token_never_appears_in_errors_lines_or_attempts() {
        let secret = "s3cr3t-ACCESS-token-zz9";
        let gw = Gateway::start(&["--token", secret]);
        let tokens = Tokens::new(Some(secret), Err("cannot refresh: run `alcf-host auth login`"));
        let client = ChatClient::new(gw.config(), tokens).unwrap();
        gw.faults(json!([{"status": 408}, {"status": 500}, {"status": 429}, {"truncate": true}, {"status": 503},
                         {"status": 401}]))
            .await;
        let (r, lines) = send(&client, &body()).await;
        let err = r.unwrap_err();
        let mut bad = body();
        bad["top_k"] = json!(3);
        let (r2, _) = send(&client, &bad).await;
        let texts = format!("{err:?} {err} {lines:?} {:?}", r2.unwrap_err());
        assert!(!texts.contains(secret) && !texts.contains("s3cr3t"), "{texts}");
        assert!(redact(&format!("echo {secret}"), Some(secret)).ends_with("…redacted"));
    }

    #[test]
    fn backoff_is_full_jitter_below_the_capped_ceiling() {
        let cfg = ClientConfig {
            backoff_base: Duration::from_millis(100),
            backoff_cap: Duration::from_secs(1),
            ..ClientConfig::new("http://127.0.0.1:9/v1")
        };
        let client = ChatClient::new(cfg, Tokens::good()).unwrap();
        for n in [0u32, 1, 3, 4, 10, 40] {
            let ceiling = Duration::from_millis(100u64.saturating_mul(1 << n.min(20))).min(Duration::from_secs(1));
            let samples: Vec<Duration> = (0..400).map(|_| client.backoff(n)).collect();
            assert!(samples.iter().all(|d| *d < ceiling), "n={n}");
            // Full jitter: spread over the whole range, not bunched at the ceiling.
            assert!(samples.iter().any(|d| *d < ceiling / 4) && samples.iter().any(|d| *d > ceiling * 3 / 4));
        }
    }

    #[test]
    fn retry_after_is_seconds_or_an_http_date() {
        let now = UNIX_EPOCH + Duration::from_secs(784_111_777); // Sun, 06 Nov 1994 08:49:37 GMT
        assert_eq!(parse_retry_after("3", now), Some(Duration::from_secs(3)));
        assert_eq!(parse_retry_after(" 0.25 ", now), Some(Duration::from_millis(250)));
        assert_eq!(parse_retry_after("Sun, 06 Nov 1994 08:50:07 GMT", now), Some(Duration::from_secs(30)));
        assert_eq!(parse_retry_after("Sun, 06 Nov 1994 08:00:00 GMT", now), Some(Duration::ZERO));
        assert_eq!(parse_http_date("Thu, 01 Jan 1970 00:00:00 GMT"), Some(0));
        assert_eq!(parse_http_date("Tue, 01 Dec 2026 15:03:49 GMT"), Some(1_796_137_429));
        for bad in ["-1", "soon", "NaN", "Sun, 06 Nov 1994 08:50:07 PST", ""] {
            assert_eq!(parse_retry_after(bad, now), None, "{bad}");
        }
    }

    #[test]
    fn jobs_entries_name_the_models_state() {
        // The shape of the gateway's JobsByStatus with entries as its qstat function builds them.
        let jobs = json!({
            "running": [{"Models": "openai/gpt-oss-20b,openai/gpt-oss-120b", "Framework": "vllm", "Cluster": "sophia",
                         "Model Status": "running", "Job ID": "1.sophia", "Job State": "R"},
                        {"Models": "a/starting", "Framework": "vllm", "Cluster": "sophia", "Model Status": "starting"}],
            "queued": [{"Models": "a/queued", "Framework": "vllm", "Cluster": "sophia", "Model Status": "queued",
                        "Estimated Start Time": "Tue Dec 01 10:30:00 2026 (Chicago time)"}],
            "stopped": [{"Models": "a/stopped", "Framework": "vllm", "Cluster": "sophia"}],
            "others": [], "private_batch_running": [], "private_batch_queued": [],
            "cluster_status": {"free_nodes": 0}
        });
        assert_eq!(describe_model(&jobs, "openai/gpt-oss-120b"), "is running");
        assert_eq!(describe_model(&jobs, "A/Starting"), "is starting");
        assert_eq!(
            describe_model(&jobs, "a/queued"),
            "is queued (estimated start Tue Dec 01 10:30:00 2026 (Chicago time))"
        );
        assert_eq!(describe_model(&jobs, "a/stopped"), "is stopped");
        assert!(describe_model(&jobs, "a/absent").starts_with("is not listed"));
        assert!(describe_model(&json!({"detail": "oops"}), "x").starts_with("is not listed"));
    }

    #[test]
    fn a_200_without_content_is_a_protocol_error() {
        let client =
            ChatClient::new(fast("http://127.0.0.1:9/resource_server/sophia/vllm/v1"), Tokens::good()).unwrap();
        let r = client.exchange(json!({"choices": []}), MODEL, Instant::now(), Vec::new());
        let Err(ClientError::Protocol { message, .. }) = r else { panic!("not Protocol") };
        assert!(message.starts_with("sophia answered 200 without choices[0].message.content"), "{message}");
        let ex = client
            .exchange(json!({"choices": [{"message": {"content": "hi"}}]}), MODEL, Instant::now(), Vec::new())
            .unwrap();
        assert_eq!(
            (ex.content.as_str(), ex.model.as_str(), ex.prompt_tokens, ex.finish_reason),
            ("hi", MODEL, 0, None)
        );
    }

    #[test]
    fn error_bodies_of_every_shape_give_a_message() {
        let gateway = json!({"error": {"code": "request_timeout", "message": "waited 300 s", "info": {}}});
        assert_eq!(error_message(Some(&gateway), b"", 408), "request_timeout: waited 300 s");
        let ninja = json!({"detail": [{"loc": ["body", "payload", "n"], "msg": "too big", "type": "x"}]});
        assert_eq!(error_message(Some(&ninja), b"", 422), "body.payload.n: too big");
        assert_eq!(error_message(Some(&json!({"error": "nope"})), b"", 400), "nope");
        assert_eq!(error_message(None, b"<html>Bad Gateway</html>", 502), "<html>Bad Gateway</html>");
        assert_eq!(error_message(None, b"", 503), "Service Unavailable");
    }

    #[test]
    fn bad_urls_are_setup_errors_naming_the_field() {
        let Err(ClientError::Setup(m)) = ChatClient::new(ClientConfig::new("not a url"), Tokens::good()) else {
            panic!("not Setup")
        };
        assert!(m.starts_with("llm base_url `not a url`"), "{m}");
        let cfg = ClientConfig { jobs_url: Some("ftp://x/jobs".into()), ..ClientConfig::new("https://h/v1") };
        let Err(ClientError::Setup(m)) = ChatClient::new(cfg, Tokens::good()) else { panic!("not Setup") };
        assert!(m.contains("jobs_url"), "{m}");
    }

    #[test]
    fn labels_and_durations_read_well() {
        let url = reqwest::Url::parse("https://inference-api.alcf.anl.gov/resource_server/sophia/vllm/v1").unwrap();
        assert_eq!(label_of(&url), "sophia");
        assert_eq!(label_of(&reqwest::Url::parse("http://localhost:8000/v1").unwrap()), "localhost");
        assert_eq!(human(Duration::from_millis(300)), "0.3 s");
        assert_eq!(human(Duration::from_secs(30)), "30 s");
        assert_eq!(human(Duration::from_secs(300)), "5 min");
    }
}
