//! LLM access for strategy plugins: the OpenAI-compatible client for the Sophia gateway (or a local vLLM).

pub mod client;
