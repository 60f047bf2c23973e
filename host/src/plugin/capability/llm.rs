//! The `llm` capability: chat completions through an [`LlmBackend`] the host configures
//! (credentials stay in the host). No real backend exists yet: without one, a granted call returns
//! `not-configured`.
//!
//! A call is bounded on the host side ([`super::Capabilities::with_llm_timeout`]): a backend that
//! does not answer in time gives the plugin an `unavailable` error, never a trap. The time spent in
//! the call does not count against the plugin's own per-call deadline.

use std::future::Future;
use std::pin::Pin;
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

/// An LLM service. Boxed futures keep the trait object-safe (one backend chosen at run time).
pub trait LlmBackend: Send + Sync {
    fn chat(&self, request: ChatRequest) -> BoxFuture<'_, Result<ChatResponse, LlmError>>;
}

fn request_from_wit(r: wit::ChatRequest) -> ChatRequest {
    ChatRequest {
        model: r.model,
        messages: r.messages.into_iter().map(|m| Message { role: m.role, content: m.content }).collect(),
        temperature: r.temperature,
        max_tokens: r.max_tokens,
        json: r.json,
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

impl wit::Host for PluginState {
    async fn chat(&mut self, request: wit::ChatRequest) -> Result<wit::ChatResponse, wit::LlmError> {
        if !self.caps.check(Capability::Llm, "llm.chat") {
            return Err(wit::LlmError::NotGranted(self.caps.not_granted(Capability::Llm)));
        }
        let Some(backend) = self.caps.llm().cloned() else {
            return Err(wit::LlmError::NotConfigured("llm is not configured for this study".into()));
        };
        let timeout = self.caps.llm_timeout();
        let started = Instant::now();
        let result = tokio::time::timeout(timeout, backend.chat(request_from_wit(request))).await;
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
