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

/// The `llm` capability's backend for one study.
pub struct LlmService {
    cfg: LlmConfig,
    client: ChatClient,
    tokens: Arc<dyn TokenSource>,
    log: Arc<StudyDb>,
    /// How many recorded answers each (plugin, instance, request) has been given so far.
    replayed: Mutex<HashMap<(Arc<str>, u64, String), u64>>,
}

impl LlmService {
    pub fn new(cfg: LlmConfig, client: ChatClient, tokens: Arc<dyn TokenSource>, log: Arc<StudyDb>) -> LlmService {
        LlmService { cfg, client, tokens, log, replayed: Mutex::default() }
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
        let on_wait = move |line: &str| tracing::warn!(target: "llm", plugin = %plugin, "{line}");
        let sent = self.client.send(&body, &on_wait).await;
        let result = match sent {
            Ok(x) => self.answered(&mut row, x, call.request.schema.is_some() || call.request.json),
            Err(e) => {
                row.outcome = LlmOutcome::Failed;
                Err(self.failed(&mut row, e))
            }
        };
        self.finish(row, result)
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
        let attempts = match &e {
            ClientError::Auth { attempts, .. }
            | ClientError::Unavailable { attempts, .. }
            | ClientError::Rejected { attempts, .. }
            | ClientError::Protocol { attempts, .. } => attempts.as_slice(),
            ClientError::Setup(_) => &[],
        };
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
