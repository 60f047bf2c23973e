//! A REST client for Globus Compute: the four routes the executor needs (register a function,
//! submit a batch, batch status, endpoint status), every request through one sliding-window rate
//! limiter, the token from an [`auth::TokenSource`](crate::auth::TokenSource) with one refresh on
//! a 401. Formats: tests/globus/README.md (taken from globus-compute-sdk 4.19 and the service's
//! last public source).
//!
//! The client never retries on its own beyond that one refresh: a failed request comes back as a
//! [`ComputeError`] that says whether it is worth trying again ([`ComputeError::is_transient`]),
//! and the executor's poll cycle is the retry loop. So one failed call never costs a trial, and
//! nothing here sleeps longer than the rate limiter asks.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};
use tokio::time::Instant;

use super::wire;
use crate::auth::TokenSource;

/// The result serializer the host asks for: JSON, which it parses without Python.
pub const JSON_SERIALIZER: &str = "globus_compute_sdk.serialize.JSONData";
/// The service's limit on a request body and on one task's function code plus arguments.
pub const MAX_PAYLOAD: usize = 10 * 1024 * 1024;
/// Task ids per batch-status request: one request covers every task in flight of a real study.
pub const MAX_STATUS_IDS: usize = 1000;

/// Why a request did not give an answer the executor can use.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ComputeError {
    /// No usable token, or the service refused it twice: only the user can fix it.
    #[error("{0}")]
    Auth(String),
    /// 429: the service's rate limit; the next request waits `retry_after`.
    #[error("Globus Compute's rate limit was reached (next request in {} s)", retry_after.as_secs())]
    RateLimited { retry_after: Duration },
    /// The request did not complete: connection refused or dropped, a timeout, a cut-off body.
    #[error("cannot reach Globus Compute at {url}: {detail}")]
    Network { url: String, detail: String },
    /// The service answered with an error body (`code` and `reason` as it sent them).
    #[error("Globus Compute answered {status} {code}: {reason}")]
    Api { status: u16, code: String, reason: String },
    /// A 2xx answer the client cannot read.
    #[error("Globus Compute's answer to {route} is unreadable: {detail}")]
    Decode { route: &'static str, detail: String },
}

impl ComputeError {
    /// Worth trying again later without changing anything: rate limits, the network, server
    /// errors, and auth (the user can log in while the host waits).
    pub fn is_transient(&self) -> bool {
        match self {
            ComputeError::RateLimited { .. } | ComputeError::Network { .. } | ComputeError::Auth(_) => true,
            ComputeError::Api { status, .. } => *status >= 500 || *status == 408,
            ComputeError::Decode { .. } => true,
        }
    }

    /// The service's error code (`FUNCTION_NOT_FOUND`, `TASK_PAYLOAD_TOO_LARGE`, …).
    pub fn code(&self) -> Option<&str> {
        match self {
            ComputeError::Api { code, .. } => Some(code),
            _ => None,
        }
    }
}

/// What an endpoint says about itself.
#[derive(Debug, Clone, PartialEq)]
pub struct EndpointStatus {
    pub online: bool,
    /// `details` as the service sent them (workers, pending tasks, managers).
    pub details: Value,
}

/// One task's state from batch status.
#[derive(Debug, Clone, PartialEq)]
pub enum TaskState {
    /// Not done yet, with the service's word for where it is (`waiting-for-ep`, `running`, …).
    Pending(String),
    /// Done: the result as it was serialized (`"11\n…"` for JSON).
    Success(String),
    /// The function raised, or the endpoint lost its worker: the traceback text.
    Failed(String),
    /// The service has no such task: never existed, expired, or its result was already read
    /// once (results are read once) or abandoned 30 minutes after completion.
    Unknown(String),
}

/// Requests made, by route, for the benchmarks and the closing log line.
#[derive(Debug, Default)]
pub struct RequestCounts {
    pub register: AtomicU64,
    pub submit: AtomicU64,
    pub status: AtomicU64,
    pub endpoint: AtomicU64,
    /// Requests refused with 429.
    pub rate_limited: AtomicU64,
}

impl RequestCounts {
    pub fn total(&self) -> u64 {
        [&self.register, &self.submit, &self.status, &self.endpoint].iter().map(|c| c.load(Ordering::Relaxed)).sum()
    }
}

/// A sliding window over the times requests were sent: at most `max` in any `window`.
struct Limiter {
    max: usize,
    window: Duration,
    sent: VecDeque<Instant>,
    /// After a 429: nothing is sent before this.
    blocked_until: Option<Instant>,
}

impl Limiter {
    /// When the next request may go (now, or later); a slot is taken when it is now.
    fn take(&mut self, now: Instant) -> Option<Instant> {
        if let Some(t) = self.blocked_until {
            if t > now {
                return Some(t);
            }
            self.blocked_until = None;
        }
        while self.sent.front().is_some_and(|t| *t + self.window <= now) {
            self.sent.pop_front();
        }
        if self.sent.len() >= self.max {
            return self.sent.front().map(|t| *t + self.window);
        }
        self.sent.push_back(now);
        None
    }

    /// The request sent at `sent` got its answer `now`. The service counted it when it arrived,
    /// somewhere in between, so from here on it counts from `now`: a slow first request and a
    /// fast later one cannot both fall into one window of the service's.
    fn answered(&mut self, sent: Instant, now: Instant) {
        if let Some(i) = self.sent.iter().position(|t| *t == sent) {
            self.sent.remove(i);
        }
        let at = self.sent.iter().position(|t| *t > now).unwrap_or(self.sent.len());
        self.sent.insert(at, now);
    }
}

pub struct ComputeClient {
    base: String,
    http: reqwest::Client,
    tokens: Arc<dyn TokenSource>,
    limiter: Mutex<Limiter>,
    pub counts: RequestCounts,
}

impl ComputeClient {
    pub fn new(
        base_url: &str,
        tokens: Arc<dyn TokenSource>,
        max_requests: u32,
        window: Duration,
    ) -> Result<ComputeClient, String> {
        let base = base_url.trim_end_matches('/').to_string();
        let loopback = reqwest::Url::parse(&base)
            .map_err(|e| format!("executor.base_url {base:?}: {e}"))?
            .host_str()
            .is_some_and(|h| matches!(h, "127.0.0.1" | "localhost" | "[::1]"));
        let mut builder = reqwest::Client::builder()
            .user_agent(concat!("alcf-host/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(Duration::from_secs(15))
            .timeout(Duration::from_secs(120));
        if loopback {
            builder = builder.no_proxy();
        }
        let http = builder.build().map_err(|e| format!("cannot set up the HTTP client: {e}"))?;
        Ok(ComputeClient {
            base,
            http,
            tokens,
            limiter: Mutex::new(Limiter {
                max: max_requests.max(1) as usize,
                window,
                sent: VecDeque::new(),
                blocked_until: None,
            }),
            counts: RequestCounts::default(),
        })
    }

    pub fn base_url(&self) -> &str {
        &self.base
    }

    /// Waits for the rate limiter's next free slot and takes it; returns when it was taken.
    async fn slot(&self) -> Instant {
        loop {
            let now = Instant::now();
            let wait = self.limiter.lock().unwrap_or_else(|e| e.into_inner()).take(now);
            match wait {
                None => return now,
                Some(t) => tokio::time::sleep_until(t).await,
            }
        }
    }

    /// One request with the body `body` (GET when `None`), the answer's JSON on 2xx.
    async fn request(&self, route: &'static str, path: &str, body: Option<&Value>) -> Result<Value, ComputeError> {
        let url = format!("{}{path}", self.base);
        let mut token = self.tokens.token().await.map_err(ComputeError::Auth)?;
        let mut refreshed = false;
        loop {
            let sent = self.slot().await;
            match route {
                "register" => &self.counts.register,
                "submit" => &self.counts.submit,
                "batch_status" => &self.counts.status,
                _ => &self.counts.endpoint,
            }
            .fetch_add(1, Ordering::Relaxed);
            let mut req = match body {
                Some(b) => self.http.post(&url).json(b),
                None => self.http.get(&url),
            };
            if let Some(t) = &token {
                req = req.bearer_auth(t);
            }
            let network = |e: reqwest::Error| ComputeError::Network { url: url.clone(), detail: error_chain(&e) };
            let resp = req.send().await;
            self.limiter.lock().unwrap_or_else(|e| e.into_inner()).answered(sent, Instant::now());
            let resp = resp.map_err(network)?;
            let status = resp.status().as_u16();
            let retry_after = resp
                .headers()
                .get(reqwest::header::RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<f64>().ok())
                .filter(|s| s.is_finite() && *s >= 0.0)
                .map(|s| Duration::from_secs_f64(s.min(3600.0)));
            let text = resp.text().await.map_err(network)?;
            if (200..300).contains(&status) {
                return serde_json::from_str(&text).map_err(|e| ComputeError::Decode { route, detail: e.to_string() });
            }
            if status == 429 {
                self.counts.rate_limited.fetch_add(1, Ordering::Relaxed);
                let retry_after = retry_after.unwrap_or(Duration::from_secs(10)).max(Duration::from_secs(1));
                self.limiter.lock().unwrap_or_else(|e| e.into_inner()).blocked_until =
                    Some(Instant::now() + retry_after);
                return Err(ComputeError::RateLimited { retry_after });
            }
            let (code, reason) = error_body(&text);
            if status == 401
                && !refreshed
                && let Some(rejected) = token.take()
            {
                refreshed = true;
                token = Some(self.tokens.refresh(rejected).await.map_err(ComputeError::Auth)?);
                continue;
            }
            if status == 401 {
                return Err(ComputeError::Auth(format!(
                    "Globus Compute refused the token ({reason}): run `alcf-host auth login --service compute`"
                )));
            }
            if status == 403 {
                return Err(ComputeError::Auth(format!(
                    "Globus Compute refused the token ({reason}): it lacks the Globus Compute scope; run \
                     `alcf-host auth login --service compute`"
                )));
            }
            return Err(ComputeError::Api { status, code, reason });
        }
    }

    /// `POST /v3/functions`: the function as pure source; its id.
    pub async fn register_function(&self, name: &str, source: &str) -> Result<String, ComputeError> {
        let body = json!({
            "function_name": name,
            "function_code": wire::function_code(name, source),
            "description": "alcf-host trial function: runs one trial in its directory and returns its outcome as JSON",
            // What globus-compute-sdk's FunctionRegistrationData sends; `st` is the code serializer.
            "meta": {"serde_identifier": "st", "python_version": "3.8"},
            "public": false,
        });
        let answer = self.request("register", "/v3/functions", Some(&body)).await?;
        answer["function_uuid"]
            .as_str()
            .map(str::to_string)
            .ok_or_else(|| ComputeError::Decode { route: "register", detail: format!("no function_uuid in {answer}") })
    }

    /// `POST /v3/endpoints/{ep}/submit`: every payload as a task of `function`; the task ids in
    /// payload order. All or nothing: a refused request queued no task.
    pub async fn submit(
        &self,
        endpoint: &str,
        function: &str,
        payloads: Vec<String>,
    ) -> Result<Vec<String>, ComputeError> {
        let n = payloads.len();
        let body = json!({
            "tasks": {function: payloads},
            "create_queue": false,
            "result_serializers": [JSON_SERIALIZER],
        });
        let answer = self.request("submit", &format!("/v3/endpoints/{endpoint}/submit"), Some(&body)).await?;
        let ids: Vec<String> = answer["tasks"][function]
            .as_array()
            .map(|a| a.iter().filter_map(|v| v.as_str().map(str::to_string)).collect())
            .unwrap_or_default();
        if ids.len() != n {
            return Err(ComputeError::Decode {
                route: "submit",
                detail: format!("{} task ids for {n} tasks in {answer}", ids.len()),
            });
        }
        Ok(ids)
    }

    /// `POST /v2/batch_status`: each task's state. A result in the answer is the only copy: the
    /// service deletes it once returned.
    pub async fn batch_status(&self, ids: &[String]) -> Result<HashMap<String, TaskState>, ComputeError> {
        let answer = self.request("batch_status", "/v2/batch_status", Some(&json!({"task_ids": ids}))).await?;
        let results = answer["results"]
            .as_object()
            .ok_or_else(|| ComputeError::Decode { route: "batch_status", detail: format!("no results in {answer}") })?;
        Ok(results.iter().map(|(id, doc)| (id.clone(), task_state(doc))).collect())
    }

    /// `GET /v2/endpoints/{ep}/status`.
    pub async fn endpoint_status(&self, endpoint: &str) -> Result<EndpointStatus, ComputeError> {
        let answer = self.request("endpoint_status", &format!("/v2/endpoints/{endpoint}/status"), None).await?;
        let status = answer["status"].as_str().unwrap_or_default();
        Ok(EndpointStatus { online: status.eq_ignore_ascii_case("online"), details: answer["details"].clone() })
    }
}

/// A task document as the SDK reads it: `status` case-insensitive, pending unless success or
/// failed; `result`, else `exception`, else `reason` (an unknown task).
pub fn task_state(doc: &Value) -> TaskState {
    let status = doc["status"].as_str().unwrap_or_default().to_ascii_lowercase();
    let text = |k: &str| doc[k].as_str().map(str::to_string);
    match status.as_str() {
        "success" => match text("result") {
            Some(r) => TaskState::Success(r),
            None => TaskState::Unknown(text("reason").unwrap_or_else(|| "a success without a result".into())),
        },
        "failed" => match (text("exception"), text("reason")) {
            (Some(e), _) => TaskState::Failed(e),
            (None, Some(r)) => TaskState::Unknown(r),
            (None, None) => TaskState::Unknown("failed, with no exception and no reason".into()),
        },
        other => TaskState::Pending(if other.is_empty() { "pending".into() } else { other.to_string() }),
    }
}

/// `code` and `reason` of an error body, or the start of whatever came.
fn error_body(text: &str) -> (String, String) {
    match serde_json::from_str::<Value>(text) {
        Ok(v) => {
            let code = match &v["code"] {
                Value::String(s) => s.clone(),
                Value::Null => "UNKNOWN_ERROR".into(),
                other => other.to_string(),
            };
            let reason = v["reason"].as_str().or(v["message"].as_str()).unwrap_or("no reason given").to_string();
            (code, reason)
        }
        Err(_) => ("UNKNOWN_ERROR".into(), text.chars().take(300).collect::<String>().trim().to_string()),
    }
}

fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_limiter_keeps_a_sliding_window() {
        let t0 = Instant::now();
        let mut l = Limiter { max: 3, window: Duration::from_secs(10), sent: VecDeque::new(), blocked_until: None };
        assert_eq!(l.take(t0), None);
        assert_eq!(l.take(t0 + Duration::from_secs(1)), None);
        assert_eq!(l.take(t0 + Duration::from_secs(2)), None);
        // Full: the next slot opens when the first request leaves the window.
        assert_eq!(l.take(t0 + Duration::from_secs(3)), Some(t0 + Duration::from_secs(10)));
        assert_eq!(l.take(t0 + Duration::from_secs(10)), None);
        l.blocked_until = Some(t0 + Duration::from_secs(30));
        assert_eq!(l.take(t0 + Duration::from_secs(29)), Some(t0 + Duration::from_secs(30)));
        assert_eq!(l.take(t0 + Duration::from_secs(31)), None);
        // A request answered late counts from its answer.
        let mut l = Limiter { max: 1, window: Duration::from_secs(10), sent: VecDeque::new(), blocked_until: None };
        assert_eq!(l.take(t0), None);
        l.answered(t0, t0 + Duration::from_secs(3));
        assert_eq!(l.take(t0 + Duration::from_secs(11)), Some(t0 + Duration::from_secs(13)));
    }

    #[test]
    fn task_documents_read_as_the_sdk_reads_them() {
        assert_eq!(
            task_state(&json!({"task_id": "a", "status": "waiting-for-ep"})),
            TaskState::Pending("waiting-for-ep".into())
        );
        assert_eq!(
            task_state(&json!({"task_id": "a", "status": "success", "result": "11\n{}"})),
            TaskState::Success("11\n{}".into())
        );
        assert_eq!(
            task_state(&json!({"status": "FAILED", "exception": "Traceback"})),
            TaskState::Failed("Traceback".into())
        );
        assert_eq!(
            task_state(&json!({"status": "Failed", "reason": "Unknown task id"})),
            TaskState::Unknown("Unknown task id".into())
        );
        assert_eq!(task_state(&json!({})), TaskState::Pending("pending".into()));
    }

    #[test]
    fn error_bodies() {
        let body = r#"{"status": "Failed", "code": "FUNCTION_NOT_FOUND", "error_args": [], "reason": "Function x could not be resolved", "http_status_code": 404}"#;
        assert_eq!(error_body(body), ("FUNCTION_NOT_FOUND".into(), "Function x could not be resolved".into()));
        assert_eq!(error_body(r#"{"code": 0, "reason": "r"}"#), ("0".into(), "r".into()));
        assert_eq!(error_body("<html>bad gateway</html>").1, "<html>bad gateway</html>");
    }
}
