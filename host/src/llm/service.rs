//! The host's LLM service: what stands between a plugin's `llm.chat` and the network.
//!
//! For each call, in order: the model is checked against `[llm] models`; the request is turned into
//! the exact body that would be sent ([`client::chat_body`]) and hashed; a recorded answer to the
//! same body is replayed when this plugin instance has not yet used it (so a restarted plugin or a
//! resumed study decides exactly as before, and nothing is billed twice); the caps are checked
//! (they fail closed); the body is sent through [`ChatClient`] (retries, cold models, token
//! refresh); and the outcome is appended to the study's `llm_call` table before the plugin sees it.
//!
//! Invariant: the log holds request bodies and response bodies, never headers, so never a token.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use sha2::{Digest, Sha256};

use super::client::{self, Attempt, ChatClient, ClientError, Exchange, TokenSource};
use crate::config::LlmConfig;
use crate::plugin::capability::llm::{BoxFuture, ChatResponse, LlmBackend, LlmCall, LlmError};
use crate::study::StudyDb;
use crate::study::llm_log::{LlmCallRow, LlmOutcome};

/// (plugin, instance, request hash): an instance's identical requests, counted.
type RequestKey = (Arc<str>, u64, String);

/// Shows one line to the user.
pub type Notify = Arc<dyn Fn(&str) + Send + Sync>;

/// The `llm` capability's backend for one study.
pub struct LlmService {
    cfg: LlmConfig,
    client: ChatClient,
    tokens: Arc<dyn TokenSource>,
    log: Arc<StudyDb>,
    /// How many recorded answers each (plugin, instance, request) has been given so far.
    replayed: Mutex<HashMap<RequestKey, u64>>,
    /// Where wait lines ("model … is starting; waiting 30 s") are shown live, besides host.log.
    notify: Option<Notify>,
}

impl LlmService {
    pub fn new(cfg: LlmConfig, client: ChatClient, tokens: Arc<dyn TokenSource>, log: Arc<StudyDb>) -> LlmService {
        LlmService { cfg, client, tokens, log, replayed: Mutex::default(), notify: None }
    }

    /// Shows wait lines to the user as they happen (the terminal, above the progress bar).
    pub fn with_notify(mut self, notify: Notify) -> LlmService {
        self.notify = Some(notify);
        self
    }

    /// Whether credentials are at hand (refreshing them if needed), before the first plugin call.
    pub async fn preflight(&self) -> Result<(), String> {
        self.tokens.token().await.map(drop)
    }

    pub fn config(&self) -> &LlmConfig {
        &self.cfg
    }

    async fn call(&self, call: LlmCall) -> Result<ChatResponse, LlmError> {
        let model = call.request.model.clone().unwrap_or_else(|| self.cfg.model.clone());
        let body = client::chat_body(&model, &call.request);
        let request = serde_json::to_string(&body).unwrap_or_default();
        let hash = crate::plugin::hex(&Sha256::digest(request.as_bytes()));
        let mut row = LlmCallRow {
            id: 0,
            at: 0.0,
            plugin: call.plugin.to_string(),
            request_hash: hash.clone(),
            request,
            model: model.clone(),
            outcome: LlmOutcome::Refused,
            http_status: None,
            response: None,
            content: None,
            prompt_tokens: 0,
            completion_tokens: 0,
            latency_s: 0.0,
            retries: 0,
            attempts: None,
            error: None,
            replay_of: None,
        };

        if !self.cfg.models.contains(&model) {
            let e = LlmError::InvalidRequest(format!(
                "model `{model}` is not allowed for this study (allowed: {}); add it to `models` in {}",
                self.cfg.models.join(", "),
                self.cfg.at
            ));
            return self.finish(row, Err(e));
        }

        if let Some(recorded) = self.replay(&call, &hash)? {
            row.outcome = LlmOutcome::Replayed;
            row.replay_of = Some(recorded.id);
            row.content = recorded.content.clone();
            row.http_status = recorded.http_status;
            let answer = ChatResponse {
                content: recorded.content.unwrap_or_default(),
                model: model_of(recorded.response.as_deref()).unwrap_or(recorded.model),
                prompt_tokens: recorded.prompt_tokens as u32,
                completion_tokens: recorded.completion_tokens as u32,
            };
            tracing::debug!(target: "llm", plugin = %call.plugin, of = recorded.id, "replayed a recorded answer");
            return self.finish(row, Ok(answer));
        }

        let usage = self.log.llm_usage(&call.plugin).map_err(storage_error)?;
        if usage.calls >= u64::from(self.cfg.max_calls) {
            let e = LlmError::NotGranted(format!(
                "llm cap reached: plugin `{}` has made {} of max_calls = {} calls in this study; raise max_calls in {} to allow more",
                call.plugin, usage.calls, self.cfg.max_calls, self.cfg.at
            ));
            return self.finish(row, Err(e));
        }
        if usage.tokens >= self.cfg.max_tokens {
            let e = LlmError::NotGranted(format!(
                "llm cap reached: plugin `{}` has used {} of max_tokens = {} tokens in this study; raise max_tokens in {} to allow more",
                call.plugin, usage.tokens, self.cfg.max_tokens, self.cfg.at
            ));
            return self.finish(row, Err(e));
        }

        let plugin = call.plugin.clone();
        let notify = self.notify.clone();
        let on_wait = move |line: &str| {
            tracing::warn!(target: "llm", plugin = %plugin, "{line}");
            if let Some(n) = &notify {
                n(&format!("llm ({plugin}): {line}"));
            }
        };
        // Write-ahead: the row exists before the request leaves, so a host killed while the call
        // is in flight leaves a `sent` row (counted against the caps) instead of no trace of a
        // request the service may have billed.
        row.outcome = LlmOutcome::Sent;
        let id = self.log.record_llm_call(&row).map_err(storage_error)?;
        let sent = self.client.send(&body, &on_wait).await;
        let mut result = match sent {
            Ok(x) => self.answered(&mut row, x, call.request.schema.is_some() || call.request.json),
            Err(e) => {
                row.outcome = LlmOutcome::Failed;
                Err(self.failed(&mut row, e))
            }
        };
        if let Err(e) = &result {
            row.error = Some(e.to_string());
        }
        if let Err(e) = self.log.update_llm_call(id, &row) {
            // Not answered: an answer the log does not hold could not be replayed.
            result = Err(storage_error(e));
        }
        result
    }

    /// The `occurrence`-th identical request of this instance gets the `occurrence`-th recorded answer.
    fn replay(&self, call: &LlmCall, hash: &str) -> Result<Option<LlmCallRow>, LlmError> {
        let key = (call.plugin.clone(), call.instance, hash.to_string());
        let occurrence = *self.replayed.lock().unwrap_or_else(|p| p.into_inner()).get(&key).unwrap_or(&0);
        let found = self.log.llm_answer(&call.plugin, hash, occurrence).map_err(storage_error)?;
        // Counted whether or not an answer was found: a live answer is recorded under this same
        // occurrence, so the next identical request of this instance moves past it.
        *self.replayed.lock().unwrap_or_else(|p| p.into_inner()).entry(key).or_insert(0) += 1;
        Ok(found)
    }

    fn answered(&self, row: &mut LlmCallRow, x: Exchange, wants_json: bool) -> Result<ChatResponse, LlmError> {
        row.http_status = x.attempts.last().and_then(|a| a.status);
        row.response = Some(x.response.to_string());
        row.content = Some(x.content.clone());
        row.prompt_tokens = u64::from(x.prompt_tokens);
        row.completion_tokens = u64::from(x.completion_tokens);
        row.latency_s = x.latency.as_secs_f64();
        row.retries = x.attempts.len().saturating_sub(1) as u32;
        row.attempts = Some(attempts_json(&x.attempts));
        if wants_json && let Err(e) = serde_json::from_str::<serde_json::Value>(&x.content) {
            // Billed all the same: the tokens were spent.
            row.outcome = LlmOutcome::Failed;
            let cut = if x.finish_reason.as_deref() == Some("length") { " (cut off at max_tokens)" } else { "" };
            return Err(LlmError::Unavailable(format!(
                "the model's answer is not valid JSON{cut}: {e}; the call was recorded (alcf-host study llm-log)"
            )));
        }
        row.outcome = LlmOutcome::Ok;
        Ok(ChatResponse {
            content: x.content,
            model: x.model,
            prompt_tokens: x.prompt_tokens,
            completion_tokens: x.completion_tokens,
        })
    }

    fn failed(&self, row: &mut LlmCallRow, e: ClientError) -> LlmError {
        let attempts = e.attempts();
        row.http_status = attempts.iter().rev().find_map(|a| a.status);
        row.latency_s = attempts.iter().map(|a| a.seconds + a.waited_s).sum();
        row.retries = attempts.len().saturating_sub(1) as u32;
        row.attempts = Some(attempts_json(attempts));
        let message = e.to_string();
        match e {
            ClientError::Auth { .. } => LlmError::Auth(message),
            ClientError::Rejected { .. } => LlmError::InvalidRequest(message),
            ClientError::Unavailable { .. } | ClientError::Protocol { .. } => LlmError::Unavailable(message),
            ClientError::Setup(_) => LlmError::NotConfigured(message),
        }
    }

    /// Records the call, then hands its result to the plugin. A call that cannot be recorded is
    /// not answered: an unrecorded answer could not be replayed, and the audit log would lie.
    fn finish(&self, mut row: LlmCallRow, result: Result<ChatResponse, LlmError>) -> Result<ChatResponse, LlmError> {
        if let Err(e) = &result {
            row.error = Some(e.to_string());
        }
        self.log.record_llm_call(&row).map_err(storage_error)?;
        result
    }
}

impl LlmBackend for LlmService {
    fn chat(&self, call: LlmCall) -> BoxFuture<'_, Result<ChatResponse, LlmError>> {
        Box::pin(self.call(call))
    }
}

fn storage_error(e: crate::study::StudyError) -> LlmError {
    LlmError::Unavailable(format!("cannot use the study's LLM log: {e}; the call was not made"))
}

fn model_of(response: Option<&str>) -> Option<String> {
    let v: serde_json::Value = serde_json::from_str(response?).ok()?;
    v.get("model")?.as_str().map(str::to_string)
}

fn attempts_json(attempts: &[Attempt]) -> String {
    let list: Vec<serde_json::Value> = attempts
        .iter()
        .map(|a| {
            serde_json::json!({
                "status": a.status,
                "error": a.error,
                "seconds": (a.seconds * 1e3).round() / 1e3,
                "waited_s": (a.waited_s * 1e3).round() / 1e3,
            })
        })
        .collect();
    serde_json::Value::Array(list).to_string()
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::llm::client::tests::{GOOD, Gateway, Tokens, fast};
    use crate::plugin::capability::llm::{ChatRequest, JsonSchema, Message};
    use crate::study::StudyMeta;

    fn db() -> Arc<StudyDb> {
        Arc::new(StudyDb::in_memory(&StudyMeta::example()).unwrap())
    }

    fn service(gw: &Gateway, log: Arc<StudyDb>, edit: impl FnOnce(&mut LlmConfig)) -> LlmService {
        let mut cfg = LlmConfig {
            base_url: gw.url("/resource_server/sophia/vllm/v1"),
            jobs_url: None,
            cold_wait: Duration::from_secs(2),
            ..LlmConfig::default()
        };
        edit(&mut cfg);
        let tokens: Arc<dyn TokenSource> = Tokens::good();
        let client = ChatClient::new(fast(&cfg.base_url), tokens.clone()).unwrap();
        LlmService::new(cfg, client, tokens, log)
    }

    fn call(instance: u64, text: &str, schema: bool) -> LlmCall {
        let schema = schema.then(|| JsonSchema {
            name: "answer".into(),
            schema: serde_json::json!({"type": "object", "properties": {"x": {"type": "number"}}, "required": ["x"]}),
        });
        LlmCall {
            plugin: "p".into(),
            instance,
            request: ChatRequest {
                model: None,
                messages: vec![Message { role: "user".into(), content: text.into() }],
                temperature: Some(1.0),
                max_tokens: Some(64),
                json: false,
                schema,
            },
        }
    }

    fn block_on<F: std::future::Future>(f: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(f)
    }

    #[test]
    fn identical_requests_replay_in_order_per_instance_and_are_sent_once() {
        let gw = Gateway::start(&["--answer", "random", "--seed", "4"]);
        let log = db();
        let s = service(&gw, log.clone(), |_| {});
        block_on(async {
            // Instance 1 asks the same thing twice: two live calls, two answers.
            let a1 = s.chat(call(1, "same", true)).await.unwrap();
            let a2 = s.chat(call(1, "same", true)).await.unwrap();
            assert_eq!(gw.requests().await.len(), 2);
            // Instance 2 (a restart, or a resumed study) asks it three times: the first two are
            // the recorded answers in order, the third goes out.
            let b1 = s.chat(call(2, "same", true)).await.unwrap();
            let b2 = s.chat(call(2, "same", true)).await.unwrap();
            assert_eq!((b1.content.as_str(), b2.content.as_str()), (a1.content.as_str(), a2.content.as_str()));
            assert_eq!(gw.requests().await.len(), 2, "a replayed call reached the server");
            s.chat(call(2, "same", true)).await.unwrap();
            assert_eq!(gw.requests().await.len(), 3);
            // Another request is its own sequence.
            s.chat(call(2, "other", true)).await.unwrap();
            assert_eq!(gw.requests().await.len(), 4);
        });
        let rows = log.llm_calls().unwrap();
        let outcomes: Vec<&str> = rows.iter().map(|r| r.outcome.as_str()).collect();
        assert_eq!(outcomes, ["ok", "ok", "replayed", "replayed", "ok", "ok"]);
        assert_eq!((rows[2].replay_of, rows[3].replay_of), (Some(rows[0].id), Some(rows[1].id)));
        assert_eq!(log.llm_usage("p").unwrap().calls, 4, "replays are free");
        for r in &rows {
            assert!(!r.request.contains(GOOD), "a token in the log: {}", r.request);
            assert!(r.response.as_deref().is_none_or(|b| !b.contains(GOOD)));
        }
    }

    #[test]
    fn caps_fail_closed_and_hold_across_service_instances() {
        let gw = Gateway::start(&["--answer", "random"]);
        let log = db();
        let s = service(&gw, log.clone(), |c| c.max_calls = 2);
        block_on(async {
            s.chat(call(1, "a", false)).await.unwrap();
            s.chat(call(1, "b", false)).await.unwrap();
            match s.chat(call(1, "c", false)).await {
                Err(LlmError::NotGranted(m)) => assert!(m.contains("max_calls = 2"), "{m}"),
                other => panic!("expected the cap: {other:?}"),
            }
        });
        // A resumed study (a new service over the same log) is still at its cap.
        let s = service(&gw, log.clone(), |c| c.max_calls = 2);
        assert!(matches!(block_on(s.chat(call(9, "d", false))), Err(LlmError::NotGranted(_))));
        // But a recorded answer is replayed even at the cap: it costs nothing.
        assert!(block_on(s.chat(call(9, "a", false))).is_ok());
        let s = service(&gw, log.clone(), |c| c.max_tokens = 1);
        match block_on(s.chat(call(10, "e", false))) {
            Err(LlmError::NotGranted(m)) => assert!(m.contains("max_tokens = 1"), "{m}"),
            other => panic!("expected the token cap: {other:?}"),
        }
        block_on(async { assert_eq!(gw.requests().await.len(), 2) });
        let outcomes: Vec<&str> = log.llm_calls().unwrap().iter().map(|r| r.outcome.as_str()).collect();
        assert_eq!(outcomes, ["ok", "ok", "refused", "refused", "replayed", "refused"]);
    }

    #[test]
    fn a_model_outside_the_list_and_an_answer_that_is_not_json_are_errors() {
        let gw = Gateway::start(&["--answer", "random"]);
        let log = db();
        let s = service(&gw, log.clone(), |_| {});
        let mut other = call(1, "x", false);
        other.request.model = Some("someone/else".into());
        match block_on(s.chat(other)) {
            Err(LlmError::InvalidRequest(m)) => assert!(m.contains("someone/else") && m.contains("models"), "{m}"),
            r => panic!("{r:?}"),
        }
        block_on(async {
            gw.faults(serde_json::json!([{"malformed": true}])).await;
            match s.chat(call(1, "y", true)).await {
                Err(LlmError::Unavailable(m)) => assert!(m.contains("not valid JSON"), "{m}"),
                r => panic!("{r:?}"),
            }
            assert_eq!(gw.requests().await.len(), 1, "the refused model was not sent");
        });
        let rows = log.llm_calls().unwrap();
        assert_eq!(rows[1].outcome, LlmOutcome::Failed);
        assert!(rows[1].completion_tokens > 0, "a bad answer is billed all the same");
        // A failed answer is not replayed: a new instance asks again.
        assert!(block_on(s.chat(call(2, "y", true))).is_ok());
    }
}
