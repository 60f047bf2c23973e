//! Chat completions through the host's `llm` import, and the proposal machinery every LLM-using
//! strategy shares ([`proposals`]).
//!
//! Inside wasm, [`chat`] and [`chat_structured`] call the host (ask for the `"llm"` capability in
//! [`crate::PluginInfo`]; the user grants it with `allow = ["llm"]`). Natively (unit tests, native
//! benchmarks) there is no host: a thread-local backend set by [`set_native_backend`] answers,
//! and without one every call fails with [`LlmError::NotConfigured`].
//!
//! Every failure is an [`LlmError`] value, never a trap: a strategy falls back to its own model.

pub mod proposals;

use crate::json::Json;
use std::fmt;

/// One chat message.
#[derive(Clone, Debug, PartialEq)]
pub struct Message {
    /// "system", "user" or "assistant".
    pub role: String,
    pub content: String,
}

impl Message {
    pub fn system(content: &str) -> Message {
        Message { role: "system".into(), content: content.into() }
    }
    pub fn user(content: &str) -> Message {
        Message { role: "user".into(), content: content.into() }
    }
}

/// A chat completion request (WIT `chat-request`).
#[derive(Clone, Debug, PartialEq, Default)]
pub struct ChatRequest {
    /// `None`: the study's configured model.
    pub model: Option<String>,
    pub messages: Vec<Message>,
    pub temperature: Option<f64>,
    pub max_tokens: Option<u32>,
    /// Ask the service for a JSON object response.
    pub json: bool,
}

/// The service's answer (WIT `chat-response`).
#[derive(Clone, Debug, PartialEq, Default)]
pub struct ChatResponse {
    pub content: String,
    pub model: String,
    pub prompt_tokens: u32,
    pub completion_tokens: u32,
}

/// Why a call gave no answer (WIT `llm-error`); each carries the host's message.
#[derive(Clone, Debug, PartialEq)]
pub enum LlmError {
    /// The plugin's grants do not include "llm", or a cap was reached ("llm cap reached: …").
    NotGranted(String),
    /// No LLM service is configured for this study.
    NotConfigured(String),
    /// Credentials are missing or expired (`alcf-host auth login`).
    Auth(String),
    /// Rate limited, cold model or maintenance.
    Unavailable(String),
    /// The service rejected the request (e.g. a model not in the allowed list).
    InvalidRequest(String),
}

impl LlmError {
    /// The WIT case name: "not-granted", "not-configured", "auth", "unavailable", "invalid-request".
    pub fn kind(&self) -> &'static str {
        match self {
            LlmError::NotGranted(_) => "not-granted",
            LlmError::NotConfigured(_) => "not-configured",
            LlmError::Auth(_) => "auth",
            LlmError::Unavailable(_) => "unavailable",
            LlmError::InvalidRequest(_) => "invalid-request",
        }
    }
    pub fn message(&self) -> &str {
        match self {
            LlmError::NotGranted(m)
            | LlmError::NotConfigured(m)
            | LlmError::Auth(m)
            | LlmError::Unavailable(m)
            | LlmError::InvalidRequest(m) => m,
        }
    }
}

impl fmt::Display for LlmError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.kind(), self.message())
    }
}

impl std::error::Error for LlmError {}

/// One chat completion.
pub fn chat(request: &ChatRequest) -> Result<ChatResponse, LlmError> {
    call(request, None)
}

/// A chat completion whose answer is constrained to the JSON Schema `schema`, sent as
/// `response_format` `json_schema` under `name` (1-64 letters, digits, `_` or `-`). The answer is
/// JSON but its values still need checking (a model may bend numeric bounds).
pub fn chat_structured(request: &ChatRequest, name: &str, schema: &Json) -> Result<ChatResponse, LlmError> {
    let schema = schema.to_string();
    call(request, Some((name, &schema)))
}

/// A native stand-in for the host's LLM service: gets the request and, for
/// [`chat_structured`], `(name, schema as JSON text)`.
pub type NativeBackend = Box<dyn FnMut(&ChatRequest, Option<(&str, &str)>) -> Result<ChatResponse, LlmError>>;

#[cfg(not(target_arch = "wasm32"))]
thread_local! {
    static BACKEND: std::cell::RefCell<Option<NativeBackend>> = const { std::cell::RefCell::new(None) };
}

/// Sets this thread's native backend (tests and native benchmarks; no effect inside wasm).
pub fn set_native_backend(backend: NativeBackend) {
    #[cfg(not(target_arch = "wasm32"))]
    BACKEND.with(|b| *b.borrow_mut() = Some(backend));
    #[cfg(target_arch = "wasm32")]
    drop(backend);
}

/// Removes this thread's native backend: calls fail with [`LlmError::NotConfigured`] again.
pub fn clear_native_backend() {
    #[cfg(not(target_arch = "wasm32"))]
    BACKEND.with(|b| *b.borrow_mut() = None);
}

#[cfg(not(target_arch = "wasm32"))]
fn call(request: &ChatRequest, structured: Option<(&str, &str)>) -> Result<ChatResponse, LlmError> {
    // Taken out for the call so that a backend which itself calls `chat` gets NotConfigured
    // instead of a RefCell panic.
    let taken = BACKEND.with(|b| b.borrow_mut().take());
    let Some(mut backend) = taken else {
        return Err(LlmError::NotConfigured("no native LLM backend is set (llm::set_native_backend)".into()));
    };
    let answer = backend(request, structured);
    BACKEND.with(|b| {
        let mut slot = b.borrow_mut();
        if slot.is_none() {
            *slot = Some(backend);
        }
    });
    answer
}

#[cfg(target_arch = "wasm32")]
fn call(request: &ChatRequest, structured: Option<(&str, &str)>) -> Result<ChatResponse, LlmError> {
    use crate::bindings::alcf::hpo::llm as w;
    let req = w::ChatRequest {
        model: request.model.clone(),
        messages: request
            .messages
            .iter()
            .map(|m| w::Message { role: m.role.clone(), content: m.content.clone() })
            .collect(),
        temperature: request.temperature,
        max_tokens: request.max_tokens,
        json: request.json,
    };
    let answer = match structured {
        None => w::chat(&req),
        Some((name, schema)) => w::chat_structured(&req, name, schema),
    };
    match answer {
        Ok(r) => Ok(ChatResponse {
            content: r.content,
            model: r.model,
            prompt_tokens: r.prompt_tokens,
            completion_tokens: r.completion_tokens,
        }),
        Err(e) => Err(match e {
            w::LlmError::NotGranted(m) => LlmError::NotGranted(m),
            w::LlmError::NotConfigured(m) => LlmError::NotConfigured(m),
            w::LlmError::Auth(m) => LlmError::Auth(m),
            w::LlmError::Unavailable(m) => LlmError::Unavailable(m),
            w::LlmError::InvalidRequest(m) => LlmError::InvalidRequest(m),
        }),
    }
}

/// Compact JSON text. Non-finite numbers (which JSON cannot carry) are written as `null`;
/// integral numbers below 2^53 without a fraction, others in Rust's shortest round-trip form.
impl fmt::Display for Json {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Json::Null => f.write_str("null"),
            Json::Bool(b) => write!(f, "{b}"),
            Json::Number(v) => write_number(f, *v),
            Json::String(s) => write_string(f, s),
            Json::Array(a) => {
                f.write_str("[")?;
                for (i, v) in a.iter().enumerate() {
                    if i > 0 {
                        f.write_str(",")?;
                    }
                    write!(f, "{v}")?;
                }
                f.write_str("]")
            }
            Json::Object(m) => {
                f.write_str("{")?;
                for (i, (k, v)) in m.iter().enumerate() {
                    if i > 0 {
                        f.write_str(",")?;
                    }
                    write_string(f, k)?;
                    write!(f, ":{v}")?;
                }
                f.write_str("}")
            }
        }
    }
}

fn write_number(f: &mut fmt::Formatter<'_>, v: f64) -> fmt::Result {
    if !v.is_finite() {
        f.write_str("null")
    } else if v.fract() == 0.0 && v.abs() < 9.007_199_254_740_992e15 {
        write!(f, "{}", v as i64)
    } else {
        // Debug is the shortest representation that parses back to the same f64, with an
        // exponent for very large/small magnitudes ("1e-7"): valid JSON either way.
        write!(f, "{v:?}")
    }
}

fn write_string(f: &mut fmt::Formatter<'_>, s: &str) -> fmt::Result {
    f.write_str("\"")?;
    for c in s.chars() {
        match c {
            '"' => f.write_str("\\\"")?,
            '\\' => f.write_str("\\\\")?,
            '\n' => f.write_str("\\n")?,
            '\r' => f.write_str("\\r")?,
            '\t' => f.write_str("\\t")?,
            c if (c as u32) < 0x20 => write!(f, "\\u{:04x}", c as u32)?,
            c => write!(f, "{c}")?,
        }
    }
    f.write_str("\"")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    #[test]
    fn json_text_round_trips_and_never_writes_nan() {
        let mut m = BTreeMap::new();
        m.insert("a\"b".to_string(), Json::Array(vec![Json::Number(3.0), Json::Number(1e-7), Json::Number(-0.25)]));
        m.insert("n".to_string(), Json::Number(f64::NAN));
        m.insert("s".to_string(), Json::String("x\ny\u{1}é".into()));
        m.insert("t".to_string(), Json::Bool(true));
        m.insert("z".to_string(), Json::Null);
        let j = Json::Object(m);
        let text = j.to_string();
        assert_eq!(text, r#"{"a\"b":[3,1e-7,-0.25],"n":null,"s":"x\ny\u0001é","t":true,"z":null}"#);
        let back = Json::parse(&text).unwrap();
        assert_eq!(back.get("a\"b"), j.get("a\"b"));
        assert_eq!(back.get("s"), j.get("s"));
        assert_eq!(Json::Number(1e300).to_string(), "1e300");
        assert_eq!(Json::parse(&Json::Number(0.1 + 0.2).to_string()).unwrap(), Json::Number(0.1 + 0.2));
        assert_eq!(Json::Number(f64::INFINITY).to_string(), "null");
    }

    #[test]
    fn native_backend_answers_and_without_one_it_is_not_configured() {
        clear_native_backend();
        let req = ChatRequest { messages: vec![Message::user("hi")], ..Default::default() };
        assert!(matches!(chat(&req), Err(LlmError::NotConfigured(_))));
        set_native_backend(Box::new(|r: &ChatRequest, s: Option<(&str, &str)>| {
            if let Some((name, schema)) = s {
                assert_eq!(name, "n");
                assert_eq!(schema, r#"{"type":"object"}"#);
                return Err(LlmError::NotGranted("llm cap reached: 3 calls".into()));
            }
            // A backend that calls back in gets NotConfigured, not a panic.
            assert!(matches!(chat(r), Err(LlmError::NotConfigured(_))));
            Ok(ChatResponse { content: r.messages[0].content.to_uppercase(), model: "m".into(), ..Default::default() })
        }));
        assert_eq!(chat(&req).unwrap().content, "HI");
        let schema = Json::parse(r#"{"type":"object"}"#).unwrap();
        let e = chat_structured(&req, "n", &schema).unwrap_err();
        assert_eq!(e.kind(), "not-granted");
        assert_eq!(e.to_string(), "not-granted: llm cap reached: 3 calls");
        clear_native_backend();
        assert!(chat(&req).is_err());
    }
}
