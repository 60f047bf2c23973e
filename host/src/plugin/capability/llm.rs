//! The `llm` capability: chat completions through an [`LlmBackend`] the host configures
//! (credentials stay in the host). No real backend exists yet: without one, a granted call returns
//! `not-configured`.
//!
//! A call is bounded on the host side ([`super::Capabilities::with_llm_timeout`]): a backend that
//! does not answer in time gives the plugin an `unavailable` error, never a trap. The time spent in
//! the call does not count against the plugin's own per-call deadline.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Instant;

use super::Capability;
use crate::plugin::bindings::alcf::hpo::llm as wit;
use crate::plugin::sandbox::PluginState;

#[derive(Clone, Debug, PartialEq)]
pub struct Message {
    /// "system", "user" or "assistant".
    pub role: String,
    pub content: String,
}

#[derive(Clone, Debug, PartialEq)]
pub struct ChatRequest {
    /// None: the study's configured model.
    pub model: Option<String>,
    pub messages: Vec<Message>,
    pub temperature: Option<f64>,
    pub max_tokens: Option<u32>,
    /// Ask for a JSON object response.
    pub json: bool,
    /// `chat-structured`: the answer must match this JSON Schema.
    pub schema: Option<JsonSchema>,
}

/// A `response_format` `json_schema` constraint: its name and the schema (parsed JSON).
#[derive(Clone, Debug, PartialEq)]
pub struct JsonSchema {
    pub name: String,
    pub schema: serde_json::Value,
}

#[derive(Clone, Debug, PartialEq)]
pub struct ChatResponse {
    pub content: String,
    pub model: String,
    pub prompt_tokens: u32,
    pub completion_tokens: u32,
}

/// The WIT `llm-error`, host side.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum LlmError {
    #[error("{0}")]
    NotGranted(String),
    #[error("{0}")]
    NotConfigured(String),
    #[error("{0}")]
    Auth(String),
    #[error("{0}")]
    Unavailable(String),
    #[error("{0}")]
    InvalidRequest(String),
}

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// One `llm.chat` or `llm.chat-structured` call, with who made it.
#[derive(Clone, Debug, PartialEq)]
pub struct LlmCall {
    /// The plugin's name (one study may record calls of several plugins).
    pub plugin: Arc<str>,
    /// Which instance of the plugin asked: unique in this process. A restarted plugin (or a resumed
    /// study) is a new instance, which the service uses to replay recorded answers in order.
    pub instance: u64,
    pub request: ChatRequest,
}

/// An LLM service. Boxed futures keep the trait object-safe (one backend chosen at run time).
pub trait LlmBackend: Send + Sync {
    fn chat(&self, call: LlmCall) -> BoxFuture<'_, Result<ChatResponse, LlmError>>;
}

fn request_from_wit(r: wit::ChatRequest) -> ChatRequest {
    ChatRequest {
        model: r.model,
        messages: r.messages.into_iter().map(|m| Message { role: m.role, content: m.content }).collect(),
        temperature: r.temperature,
        max_tokens: r.max_tokens,
        json: r.json,
        schema: None,
    }
}

fn error_to_wit(e: LlmError) -> wit::LlmError {
    match e {
        LlmError::NotGranted(m) => wit::LlmError::NotGranted(m),
        LlmError::NotConfigured(m) => wit::LlmError::NotConfigured(m),
        LlmError::Auth(m) => wit::LlmError::Auth(m),
        LlmError::Unavailable(m) => wit::LlmError::Unavailable(m),
        LlmError::InvalidRequest(m) => wit::LlmError::InvalidRequest(m),
    }
}

/// Checks `chat-structured`'s name and schema before anything is sent.
fn schema_from_wit(name: String, schema: &str) -> Result<JsonSchema, LlmError> {
    let name_ok =
        !name.is_empty() && name.len() <= 64 && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if !name_ok {
        return Err(LlmError::InvalidRequest(format!(
            "chat-structured: schema name {:?} must be 1-64 letters, digits, `_` or `-`",
            super::log::cut_line(&name)
        )));
    }
    let schema: serde_json::Value = serde_json::from_str(schema)
        .map_err(|e| LlmError::InvalidRequest(format!("chat-structured: the schema is not JSON: {e}")))?;
    if !schema.is_object() {
        return Err(LlmError::InvalidRequest("chat-structured: the schema must be a JSON object".into()));
    }
    Ok(JsonSchema { name, schema })
}

impl wit::Host for PluginState {
    async fn chat_structured(
        &mut self,
        request: wit::ChatRequest,
        name: String,
        schema: String,
    ) -> Result<wit::ChatResponse, wit::LlmError> {
        let schema = schema_from_wit(name, &schema).map_err(error_to_wit)?;
        let mut request = request_from_wit(request);
        request.schema = Some(schema);
        self.llm_call(request).await
    }

    async fn chat(&mut self, request: wit::ChatRequest) -> Result<wit::ChatResponse, wit::LlmError> {
        self.llm_call(request_from_wit(request)).await
    }
}

impl PluginState {
    async fn llm_call(&mut self, request: ChatRequest) -> Result<wit::ChatResponse, wit::LlmError> {
        if !self.caps.check(Capability::Llm, "llm.chat") {
            return Err(wit::LlmError::NotGranted(self.caps.not_granted(Capability::Llm)));
        }
        let Some(backend) = self.caps.llm().cloned() else {
            return Err(wit::LlmError::NotConfigured("llm is not configured for this study".into()));
        };
        let timeout = self.caps.llm_timeout();
        let started = Instant::now();
        let result = tokio::time::timeout(
            timeout,
            backend.chat(LlmCall { plugin: self.caps.plugin().clone(), instance: self.instance, request }),
        )
        .await;
        self.clock.add_host_time(started.elapsed());
        match result {
            Err(_) => Err(wit::LlmError::Unavailable(format!(
                "the llm service did not answer within {:.1} s (the host's limit per call); try again later",
                timeout.as_secs_f64()
            ))),
            Ok(Err(e)) => Err(error_to_wit(e)),
            Ok(Ok(r)) => Ok(wit::ChatResponse {
                content: r.content,
                model: r.model,
                prompt_tokens: r.prompt_tokens,
                completion_tokens: r.completion_tokens,
            }),
        }
    }
}
