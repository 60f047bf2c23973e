//! The LLM behind the `llm` capability: an OpenAI-compatible client ([`client`]: retries, cold
//! models, token refresh) and the study-side service ([`service`]: allowed models, caps, the audit
//! log, replay).
//!
//! This module knows nothing about plugins beyond the capability's request type, and nothing about
//! how tokens are obtained beyond [`client::TokenSource`]: [`connect`] plugs in Globus
//! ([`crate::auth`]) or no token at all.

pub mod client;
pub mod service;

use std::sync::Arc;
use std::time::Duration;

use crate::auth::{self, ServiceTokens};
use crate::config::{LlmAuth, LlmConfig};
use crate::study::StudyDb;
use client::{ChatClient, ClientConfig, ClientError, TokenSource};
pub use service::LlmService;

/// The service for one study, from `[llm]`: its client, credentials and audit log.
pub fn connect(cfg: &LlmConfig, log: Arc<StudyDb>) -> Result<LlmService, ClientError> {
    let tokens: Arc<dyn TokenSource> = match cfg.auth {
        LlmAuth::Globus => Arc::new(ServiceTokens::from_env(auth::SOPHIA)),
        LlmAuth::None => Arc::new(auth::NoToken(
            "the LLM service asked for credentials, but [llm] auth = \"none\": set auth = \"globus\" and run `alcf-host auth login`",
        )),
    };
    let client = ChatClient::new(client_config(cfg), tokens.clone())?;
    Ok(LlmService::new(cfg.clone(), client, tokens, log))
}

pub fn client_config(cfg: &LlmConfig) -> ClientConfig {
    ClientConfig {
        base_url: cfg.base_url.clone(),
        jobs_url: cfg.jobs_url.clone(),
        attempt_timeout: cfg.attempt_timeout,
        cold_wait: cfg.cold_wait,
        max_retries: cfg.max_retries,
        backoff_base: Duration::from_secs(1),
        backoff_cap: Duration::from_secs(60),
    }
}
