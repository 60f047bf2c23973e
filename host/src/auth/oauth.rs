//! The Globus Auth protocol: the authorize URL, the token, refresh and revoke calls, and the
//! id_token's payload. No state here; [`super::Credentials`] and the login functions own it.

use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::Deserialize;

use super::store::{Identity, StoredToken};
use super::{AuthConfig, AuthError, Service};

/// The redirect URI registered for ALCF's inference app: Globus shows the code there for the user
/// to paste. It stays the real Globus page even when `auth_url` points at a test server.
pub const REDIRECT_URI: &str = "https://auth.globus.org/v2/web/auth-code";

/// The session policy ALCF's inference app requires (an ALCF identity).
pub const SESSION_POLICY: &str = "83732ff2-9c42-4548-b5ce-17e498c84f6a";

/// RFC 3986 unreserved characters stay; everything else is %XX (a space is %20, not `+`).
pub fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

pub fn scopes(services: &[Service]) -> String {
    let mut s = String::from("openid profile email");
    for svc in services {
        s.push(' ');
        s.push_str(svc.scope);
    }
    s
}

pub fn authorize_url(cfg: &AuthConfig, services: &[Service], challenge: &str, state: &str) -> String {
    let params = [
        ("client_id", cfg.client_id.as_str()),
        ("redirect_uri", REDIRECT_URI),
        ("scope", &scopes(services)),
        ("state", state),
        ("response_type", "code"),
        ("code_challenge", challenge),
        ("code_challenge_method", "S256"),
        ("access_type", "offline"),
        ("prompt", "login"),
        ("session_required_policies", SESSION_POLICY),
    ];
    let query: Vec<String> = params.iter().map(|(k, v)| format!("{k}={}", percent_encode(v))).collect();
    format!("{}/v2/oauth2/authorize?{}", cfg.auth_url.trim_end_matches('/'), query.join("&"))
}

/// One token object of Globus's answer. No Debug: it holds secrets.
#[derive(Deserialize)]
pub struct TokenResponse {
    pub access_token: String,
    #[serde(default)]
    pub expires_in: i64,
    pub resource_server: String,
    #[serde(default)]
    pub scope: String,
    #[serde(default)]
    pub refresh_token: Option<String>,
    #[serde(default)]
    pub id_token: Option<String>,
    #[serde(default)]
    pub other_tokens: Vec<TokenResponse>,
}

impl TokenResponse {
    /// This token and every token in `other_tokens`, as stored.
    pub fn into_stored(self, now: i64) -> Vec<StoredToken> {
        let mut out = vec![StoredToken {
            access_token: self.access_token,
            refresh_token: self.refresh_token,
            expires_at_seconds: now.saturating_add(self.expires_in.max(0)),
            scope: self.scope,
            resource_server: self.resource_server,
        }];
        for other in self.other_tokens {
            out.extend(other.into_stored(now));
        }
        out
    }
}

#[derive(Deserialize)]
struct ErrorBody {
    #[serde(default)]
    error: Option<String>,
    #[serde(default)]
    error_description: Option<String>,
}

/// What Globus said when it refused a request.
pub enum Refusal {
    /// `invalid_grant`: the code or refresh token is unknown, used, revoked or expired.
    InvalidGrant(String),
    Other(String),
}

pub enum CallError {
    Auth(AuthError),
    Refused(Refusal),
}

impl From<AuthError> for CallError {
    fn from(e: AuthError) -> Self {
        CallError::Auth(e)
    }
}

pub fn client() -> Result<reqwest::Client, AuthError> {
    reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(10))
        .timeout(Duration::from_secs(60))
        .user_agent(concat!("alcf-host/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| AuthError::Setup { detail: format!("cannot set up HTTPS: {e}") })
}

/// Describes a reqwest error without its URL's query (which never holds a secret here, but the
/// form body might be echoed by some proxies; we only print reqwest's own text).
fn network(url: &str, e: &reqwest::Error) -> AuthError {
    let mut detail = e.to_string();
    let mut src = std::error::Error::source(e);
    while let Some(s) = src {
        detail.push_str(": ");
        detail.push_str(&s.to_string());
        src = s.source();
    }
    AuthError::Network { url: url.to_string(), detail }
}

/// POSTs a form and parses a token answer.
async fn post_token(http: &reqwest::Client, url: &str, form: &[(&str, &str)]) -> Result<TokenResponse, CallError> {
    let resp = http.post(url).form(form).send().await.map_err(|e| network(url, &e))?;
    let status = resp.status();
    let body = resp.bytes().await.map_err(|e| network(url, &e))?;
    if status.is_success() {
        return serde_json::from_slice::<TokenResponse>(&body).map_err(|e| {
            CallError::Auth(AuthError::Protocol {
                url: url.to_string(),
                detail: format!("an answer that is not a token ({e})"),
            })
        });
    }
    let parsed: Option<ErrorBody> = serde_json::from_slice(&body).ok();
    let (code, desc) = parsed.map(|b| (b.error, b.error_description)).unwrap_or((None, None));
    let text = match (&code, &desc) {
        (Some(c), Some(d)) => format!("HTTP {} {c}: {d}", status.as_u16()),
        (Some(c), None) => format!("HTTP {} {c}", status.as_u16()),
        _ => format!("HTTP {}", status.as_u16()),
    };
    if status.as_u16() == 400 && code.as_deref() == Some("invalid_grant") {
        return Err(CallError::Refused(Refusal::InvalidGrant(text)));
    }
    if status.is_server_error() || status.as_u16() == 429 {
        return Err(CallError::Auth(AuthError::Network { url: url.to_string(), detail: text }));
    }
    Err(CallError::Refused(Refusal::Other(text)))
}

fn token_url(cfg: &AuthConfig) -> String {
    format!("{}/v2/oauth2/token", cfg.auth_url.trim_end_matches('/'))
}

pub async fn exchange_code(
    http: &reqwest::Client,
    cfg: &AuthConfig,
    code: &str,
    verifier: &str,
) -> Result<TokenResponse, CallError> {
    post_token(
        http,
        &token_url(cfg),
        &[
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", REDIRECT_URI),
            ("client_id", &cfg.client_id),
            ("code_verifier", verifier),
        ],
    )
    .await
}

pub async fn refresh(
    http: &reqwest::Client,
    cfg: &AuthConfig,
    client_id: &str,
    refresh_token: &str,
) -> Result<TokenResponse, CallError> {
    post_token(
        http,
        &token_url(cfg),
        &[("grant_type", "refresh_token"), ("refresh_token", refresh_token), ("client_id", client_id)],
    )
    .await
}

/// Revokes one token. Ok(true): Globus confirmed; Ok(false): it answered something else.
pub async fn revoke(http: &reqwest::Client, cfg: &AuthConfig, client_id: &str, token: &str) -> Result<bool, AuthError> {
    let url = format!("{}/v2/oauth2/token/revoke", cfg.auth_url.trim_end_matches('/'));
    let resp = http
        .post(&url)
        .form(&[("token", token), ("client_id", client_id)])
        .send()
        .await
        .map_err(|e| network(&url, &e))?;
    Ok(resp.status().is_success())
}

/// The identity in an id_token's payload. Not verified: it is only shown to the user, never
/// trusted for anything.
pub fn identity_from_id_token(id_token: &str) -> Option<Identity> {
    #[derive(Deserialize)]
    struct Claims {
        #[serde(default)]
        sub: String,
        #[serde(default)]
        preferred_username: String,
        #[serde(default)]
        email: Option<String>,
    }
    let payload = id_token.split('.').nth(1)?;
    let bytes = URL_SAFE_NO_PAD.decode(payload.trim_end_matches('=')).ok()?;
    let c: Claims = serde_json::from_slice(&bytes).ok()?;
    Some(Identity { sub: c.sub, username: c.preferred_username, email: c.email })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jwt_payload_gives_the_identity() {
        let payload = URL_SAFE_NO_PAD
            .encode(br#"{"sub":"1234-abcd","preferred_username":"ada@anl.gov","email":"ada@example.org","iss":"x"}"#);
        let jwt = format!("eyJhbGciOiJSUzUxMiJ9.{payload}.c2ln");
        let id = identity_from_id_token(&jwt).unwrap();
        assert_eq!(id.sub, "1234-abcd");
        assert_eq!(id.username, "ada@anl.gov");
        assert_eq!(id.email.as_deref(), Some("ada@example.org"));
        // Padded base64url is tolerated; garbage is not an identity (and does not panic).
        let padded = format!("h.{}==.s", URL_SAFE_NO_PAD.encode(br#"{"sub":"s1"}"#));
        assert_eq!(identity_from_id_token(&padded).unwrap().sub, "s1");
        assert!(identity_from_id_token("not a jwt").is_none());
        assert!(identity_from_id_token("a.!!!.c").is_none());
        assert!(identity_from_id_token("a.bm90IGpzb24.c").is_none());
    }

    #[test]
    fn the_authorize_url_is_encoded_and_complete() {
        let cfg = AuthConfig {
            auth_url: "http://127.0.0.1:9/".into(),
            client_id: "cid".into(),
            config_dir: "/nonexistent".into(),
            home: None,
        };
        let url = authorize_url(&cfg, &[super::super::SOPHIA], "chal", "st");
        assert!(url.starts_with("http://127.0.0.1:9/v2/oauth2/authorize?client_id=cid&"), "{url}");
        assert!(url.contains("redirect_uri=https%3A%2F%2Fauth.globus.org%2Fv2%2Fweb%2Fauth-code"), "{url}");
        assert!(url.contains(
            "scope=openid%20profile%20email%20https%3A%2F%2Fauth.globus.org%2Fscopes%2F681c10cc-f684-4540-bcd7-0b4df3bc26ef%2Faction_all"
        ));
        for p in [
            "state=st",
            "response_type=code",
            "code_challenge=chal",
            "code_challenge_method=S256",
            "access_type=offline",
            "prompt=login",
            "session_required_policies=83732ff2-9c42-4548-b5ce-17e498c84f6a",
        ] {
            assert!(url.contains(p), "{p} missing from {url}");
        }
    }
}
