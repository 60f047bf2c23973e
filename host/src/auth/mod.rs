//! Globus login and the token store, shared by every Globus service alcf-host talks to (the
//! Sophia inference gateway, Globus Compute).
//!
//! Where a token comes from, in order: an environment variable (`ALCF_HOST_SOPHIA_TOKEN`, for
//! batch jobs that cannot log in), our store `<config_dir>/tokens.json` (written by `alcf-host auth
//! login`, refreshed here), and for Sophia ALCF's own `inference_auth_token.py` file, read but never
//! written. Tokens never appear in logs or messages: [`AccessToken`] prints as redacted, and no
//! stored type derives a Debug that would show one.

mod alcf;
mod login;
mod oauth;
mod pkce;
mod store;

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

pub use login::{LoginOutcome, LogoutOutcome, PendingLogin, ServiceStatus, Source, begin_login, logout, status};
pub use store::Identity;

/// A Globus resource server alcf-host needs a token for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Service {
    pub name: &'static str,
    pub resource_server: &'static str,
    pub scope: &'static str,
}

pub const SOPHIA: Service = Service {
    name: "sophia",
    resource_server: "681c10cc-f684-4540-bcd7-0b4df3bc26ef",
    scope: "https://auth.globus.org/scopes/681c10cc-f684-4540-bcd7-0b4df3bc26ef/action_all",
};

pub const COMPUTE: Service = Service {
    name: "compute",
    resource_server: "facd7ccc-c5f4-42aa-916b-a0e270e2c2a9",
    scope: "https://auth.globus.org/scopes/facd7ccc-c5f4-42aa-916b-a0e270e2c2a9/all",
};

pub const SERVICES: [Service; 2] = [SOPHIA, COMPUTE];

pub type TokenFuture<'a, T> = std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send + 'a>>;

/// Where a client's access token comes from: a user's Globus login ([`ServiceTokens`]), nothing
/// (a local server), or a test's fixed token. Errors are texts that end with the next step.
pub trait TokenSource: Send + Sync {
    /// None: send no Authorization header (a local vLLM).
    fn token(&self) -> TokenFuture<'_, Result<Option<String>, String>>;
    /// After a 401 for `rejected`: a fresh token, or an error text that ends with the next step.
    fn refresh(&self, rejected: String) -> TokenFuture<'_, Result<String, String>>;
}

/// No credentials (a local server): no Authorization header, and a 401 answered with the next
/// step, which the holder names (e.g. "set auth = \"globus\" and run `alcf-host auth login`").
pub struct NoToken(pub &'static str);

impl TokenSource for NoToken {
    fn token(&self) -> TokenFuture<'_, Result<Option<String>, String>> {
        Box::pin(async { Ok(None) })
    }

    fn refresh(&self, _rejected: String) -> TokenFuture<'_, Result<String, String>> {
        let why = self.0;
        Box::pin(async move { Err(why.to_string()) })
    }
}

/// One service's tokens from the user's Globus login (env override, our store, ALCF's file).
pub struct ServiceTokens {
    pub credentials: Credentials,
    pub service: Service,
}

impl ServiceTokens {
    pub fn from_env(service: Service) -> ServiceTokens {
        ServiceTokens { credentials: Credentials::new(AuthConfig::from_env()), service }
    }
}

impl TokenSource for ServiceTokens {
    fn token(&self) -> TokenFuture<'_, Result<Option<String>, String>> {
        Box::pin(async move {
            self.credentials
                .access_token(&self.service)
                .await
                .map(|t| Some(t.secret().to_string()))
                .map_err(|e| e.to_string())
        })
    }

    fn refresh(&self, rejected: String) -> TokenFuture<'_, Result<String, String>> {
        Box::pin(async move {
            let rejected = AccessToken::new(rejected);
            self.credentials
                .refresh_after_rejection(&self.service, &rejected)
                .await
                .map(|t| t.secret().to_string())
                .map_err(|e| e.to_string())
        })
    }
}

/// ALCF's inference app: its redirect page and session policy are what `inference_auth_token.py`
/// uses, so tokens from either tool are interchangeable.
pub const ALCF_CLIENT_ID: &str = "58fdd3bc-e1c3-4ce5-80ea-8d6b87cfb944";

/// A token this close to expiry is refreshed before use: a chat request can take minutes.
const REFRESH_MARGIN_S: i64 = 300;

/// The service named `name` (`sophia`, `compute`).
pub fn service_named(name: &str) -> Option<Service> {
    SERVICES.iter().copied().find(|s| s.name == name)
}

/// The environment variable that overrides `service`'s token, e.g. `ALCF_HOST_SOPHIA_TOKEN`.
pub fn env_var(service: &Service) -> String {
    format!("ALCF_HOST_{}_TOKEN", service.name.to_ascii_uppercase())
}

fn env_token(service: &Service) -> Option<String> {
    std::env::var(env_var(service)).ok().map(|v| v.trim().to_string()).filter(|v| !v.is_empty())
}

#[derive(Debug, Clone)]
pub struct AuthConfig {
    pub auth_url: String,
    pub client_id: String,
    pub config_dir: PathBuf,
    pub home: Option<PathBuf>,
}

impl AuthConfig {
    pub fn from_env() -> AuthConfig {
        let var = |k: &str| std::env::var_os(k).filter(|v| !v.is_empty());
        let home = var("HOME").map(PathBuf::from);
        let config_dir = var("ALCF_HOST_CONFIG_DIR")
            .map(PathBuf::from)
            .or_else(|| var("XDG_CONFIG_HOME").map(|x| PathBuf::from(x).join("alcf-host")))
            .or_else(|| home.as_ref().map(|h| h.join(".config/alcf-host")))
            // No HOME at all (a stripped batch environment): the working directory, visibly.
            .unwrap_or_else(|| PathBuf::from(".alcf-host"));
        AuthConfig {
            auth_url: std::env::var("ALCF_HOST_GLOBUS_AUTH_URL")
                .ok()
                .filter(|v| !v.is_empty())
                .unwrap_or_else(|| "https://auth.globus.org".to_string()),
            client_id: ALCF_CLIENT_ID.to_string(),
            config_dir,
            home,
        }
    }

    /// Our token store's path.
    pub fn store_path(&self) -> PathBuf {
        store::path(&self.config_dir)
    }

    /// Makes our token file private if group or others may read it; the warning to show, if any.
    pub fn fix_store_mode(&self) -> Option<String> {
        store::fix_mode(&self.store_path())
    }

    /// ALCF's tokens.json, when HOME is known.
    pub fn alcf_path(&self) -> Option<PathBuf> {
        self.home.as_deref().map(alcf::path)
    }
}

/// An access token. Printing it (Debug or Display) shows only `AccessToken(…redacted)`.
#[derive(Clone, PartialEq, Eq)]
pub struct AccessToken(String);

impl AccessToken {
    /// Wraps a token text, e.g. one a service just rejected, for [`Credentials::refresh_after_rejection`].
    pub fn new(secret: String) -> AccessToken {
        AccessToken(secret)
    }

    pub fn secret(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for AccessToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AccessToken(…redacted)")
    }
}

impl std::fmt::Display for AccessToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AccessToken(…redacted)")
    }
}

/// Every message ends with what to do next.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("not logged in to Globus for {service}: run `alcf-host auth login`")]
    NotLoggedIn { service: String },
    #[error(
        "the Globus access token for {service} has expired and there is no refresh token: run `alcf-host auth login`"
    )]
    Expired { service: String },
    #[error("the Globus refresh token for {service} was revoked or has expired ({detail}): run `alcf-host auth login`")]
    RefreshRevoked { service: String, detail: String },
    #[error(
        "the access token in ${var} was rejected and cannot be refreshed: renew ${var}, or unset it and run `alcf-host auth login`"
    )]
    EnvRejected { var: String },
    #[error("cannot reach Globus Auth at {url}: {detail} (check the network; the study retries)")]
    Network { url: String, detail: String },
    #[error(
        "Globus Auth at {url} sent {detail}: run `alcf-host auth login` (and check ALCF_HOST_GLOBUS_AUTH_URL if set)"
    )]
    Protocol { url: String, detail: String },
    #[error("token file {}: {detail} (fix or delete it, then run `alcf-host auth login`)", path.display())]
    Store { path: PathBuf, detail: String },
    #[error("cannot write token file {}: {detail} (check the directory's permissions and free space, or set ALCF_HOST_CONFIG_DIR)", path.display())]
    StoreWrite { path: PathBuf, detail: String },
    #[error("ALCF token file {}: {detail} (fix or delete it, or run `alcf-host auth login`)", path.display())]
    AlcfFile { path: PathBuf, detail: String },
    #[error("login failed: {detail}")]
    Login { detail: String },
    #[error("cannot read random bytes from /dev/urandom: {detail} (check that /dev/urandom is readable)")]
    Random { detail: String },
    #[error("{detail} (check the system's CA certificates)")]
    Setup { detail: String },
}

pub(crate) fn now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64)
}

/// Tokens for every service, shared by all callers of a process. Clones share one state.
#[derive(Clone)]
pub struct Credentials {
    inner: Arc<Inner>,
}

struct Inner {
    cfg: AuthConfig,
    /// Held across a refresh so concurrent callers share it (single flight), and so the read,
    /// refresh and write of the store are one step.
    refresh: tokio::sync::Mutex<()>,
    http: Mutex<Option<reqwest::Client>>,
}

/// Where a token was found.
enum Found {
    Store { store: store::StoreFile, token: store::StoredToken },
    Alcf { store: Option<store::StoreFile>, token: store::StoredToken },
}

impl Credentials {
    pub fn new(cfg: AuthConfig) -> Credentials {
        Credentials { inner: Arc::new(Inner { cfg, refresh: tokio::sync::Mutex::new(()), http: Mutex::new(None) }) }
    }

    pub fn config(&self) -> &AuthConfig {
        &self.inner.cfg
    }

    fn http(&self) -> Result<reqwest::Client, AuthError> {
        let mut guard = self.inner.http.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(c) = guard.as_ref() {
            return Ok(c.clone());
        }
        let c = oauth::client()?;
        *guard = Some(c.clone());
        Ok(c)
    }

    /// Our store's token for `service`, else ALCF's (Sophia only).
    fn find(&self, service: &Service) -> Result<Option<Found>, AuthError> {
        let cfg = &self.inner.cfg;
        let store = store::load(&cfg.store_path())?;
        if let Some(token) = store.as_ref().and_then(|s| s.tokens.get(service.resource_server)).cloned() {
            return Ok(Some(Found::Store {
                store: store.unwrap_or_else(|| store::StoreFile::new(&cfg.client_id)),
                token,
            }));
        }
        if service.resource_server == SOPHIA.resource_server
            && let Some(path) = cfg.alcf_path()
            && let Some(token) = alcf::load(&path, service.resource_server)?
        {
            return Ok(Some(Found::Alcf { store, token }));
        }
        Ok(None)
    }

    /// Whether a token for `service` is there at all (env override, our store, ALCF's file), without
    /// asking Globus whether it still works: for checks made before a study exists. `Err` is the
    /// error [`access_token`](Self::access_token) would give, with its next step.
    pub fn check_login(&self, service: &Service) -> Result<(), AuthError> {
        if env_token(service).is_some() {
            return Ok(());
        }
        match self.find(service)? {
            Some(_) => Ok(()),
            None => Err(AuthError::NotLoggedIn { service: service.name.into() }),
        }
    }

    /// A valid access token for `service`: env override, else our store (refreshed first when it
    /// expires within 5 minutes), else ALCF's inference_auth_token.py tokens.json (Sophia only;
    /// refreshed into OUR store, never written back to ALCF's file). Single-flight: concurrent
    /// callers share one refresh.
    pub async fn access_token(&self, service: &Service) -> Result<AccessToken, AuthError> {
        if let Some(t) = env_token(service) {
            return Ok(AccessToken(t));
        }
        let _flight = self.inner.refresh.lock().await;
        let found = self.find(service)?.ok_or_else(|| AuthError::NotLoggedIn { service: service.name.into() })?;
        let token = match &found {
            Found::Store { token, .. } | Found::Alcf { token, .. } => token,
        };
        let left = token.expires_at_seconds - now();
        if left > REFRESH_MARGIN_S {
            return Ok(AccessToken(token.access_token.clone()));
        }
        if token.refresh_token.is_none() {
            // Still usable for a while: better than failing now; the 401 path says what to do.
            if left > 0 {
                return Ok(AccessToken(token.access_token.clone()));
            }
            return Err(AuthError::Expired { service: service.name.into() });
        }
        let still_valid = (left > 0).then(|| AccessToken(token.access_token.clone()));
        match (self.refresh_found(service, found).await, still_valid) {
            // Globus unreachable for a moment: the old token still works for a few minutes.
            (Err(AuthError::Network { url, detail }), Some(old)) => {
                tracing::warn!(
                    "cannot refresh the Globus token for {} at {url} ({detail}); using the current one, which \
                     expires in {left} s",
                    service.name
                );
                Ok(old)
            }
            (result, _) => result,
        }
    }

    /// After the service answered 401 to `rejected`: refresh once (even if not yet expired) and
    /// return the new token. If another caller already refreshed (stored token != rejected), return
    /// the stored one without a second refresh. An env-var token cannot be refreshed: AuthError
    /// says to renew the variable.
    pub async fn refresh_after_rejection(
        &self,
        service: &Service,
        rejected: &AccessToken,
    ) -> Result<AccessToken, AuthError> {
        if env_token(service).is_some() {
            return Err(AuthError::EnvRejected { var: env_var(service) });
        }
        let _flight = self.inner.refresh.lock().await;
        let found = self.find(service)?.ok_or_else(|| AuthError::NotLoggedIn { service: service.name.into() })?;
        let token = match &found {
            Found::Store { token, .. } | Found::Alcf { token, .. } => token,
        };
        if token.access_token != rejected.0 && token.expires_at_seconds > now() {
            return Ok(AccessToken(token.access_token.clone()));
        }
        if token.refresh_token.is_none() {
            return Err(AuthError::Expired { service: service.name.into() });
        }
        self.refresh_found(service, found).await
    }

    /// Refreshes `found`'s token and saves the answer in our store. Called with the flight lock.
    async fn refresh_found(&self, service: &Service, found: Found) -> Result<AccessToken, AuthError> {
        let cfg = &self.inner.cfg;
        let (mut store, old, client_id) = match found {
            Found::Store { store, token } => {
                let id = store.client_id.clone();
                (store, token, id)
            }
            // ALCF's file belongs to ALCF's app, which is our client id unless configured otherwise.
            Found::Alcf { store, token } => {
                let store = match store {
                    Some(s) if s.client_id == cfg.client_id => s,
                    _ => store::StoreFile::new(&cfg.client_id),
                };
                (store, token, cfg.client_id.clone())
            }
        };
        let Some(refresh_token) = old.refresh_token.as_deref() else {
            return Err(AuthError::Expired { service: service.name.into() });
        };
        let http = self.http()?;
        let url = format!("{}/v2/oauth2/token", cfg.auth_url.trim_end_matches('/'));
        let answer = match oauth::refresh(&http, cfg, &client_id, refresh_token).await {
            Ok(a) => a,
            Err(oauth::CallError::Auth(e)) => return Err(e),
            Err(oauth::CallError::Refused(oauth::Refusal::InvalidGrant(detail))) => {
                return Err(AuthError::RefreshRevoked { service: service.name.into(), detail });
            }
            Err(oauth::CallError::Refused(oauth::Refusal::Other(detail))) => {
                return Err(AuthError::Protocol { url, detail: format!("a refusal to refresh ({detail})") });
            }
        };
        let mut fresh = None;
        for mut t in answer.into_stored(now()) {
            if t.refresh_token.is_none() {
                // Globus may not rotate refresh tokens: the old one stays valid.
                t.refresh_token = store.tokens.get(&t.resource_server).and_then(|o| o.refresh_token.clone());
            }
            if t.resource_server == service.resource_server {
                if t.refresh_token.is_none() {
                    t.refresh_token = old.refresh_token.clone();
                }
                fresh = Some(t.access_token.clone());
            }
            store.tokens.insert(t.resource_server.clone(), t);
        }
        let Some(fresh) = fresh else {
            return Err(AuthError::Protocol {
                url,
                detail: format!("a refreshed token that is not for {} ({})", service.name, service.resource_server),
            });
        };
        store::save(&cfg.store_path(), &store)?;
        tracing::info!("refreshed the Globus access token for {}", service.name);
        Ok(AccessToken(fresh))
    }
}

/// Credentials are shared across tasks and threads.
const _: fn() = || {
    fn check<T: Send + Sync + Clone>() {}
    check::<Credentials>();
};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn access_tokens_print_redacted() {
        let t = AccessToken("tok-very-secret".into());
        assert_eq!(format!("{t:?}"), "AccessToken(…redacted)");
        assert_eq!(format!("{t}"), "AccessToken(…redacted)");
        assert_eq!(t.secret(), "tok-very-secret");
    }

    #[test]
    fn services_and_env_vars() {
        assert_eq!(service_named("sophia"), Some(SOPHIA));
        assert_eq!(service_named("compute"), Some(COMPUTE));
        assert_eq!(service_named("x"), None);
        assert_eq!(env_var(&SOPHIA), "ALCF_HOST_SOPHIA_TOKEN");
        assert_eq!(env_var(&COMPUTE), "ALCF_HOST_COMPUTE_TOKEN");
    }

    #[tokio::test]
    async fn no_store_means_not_logged_in() {
        let dir = tempfile::tempdir().unwrap();
        let creds = Credentials::new(AuthConfig {
            auth_url: "http://127.0.0.1:9".into(),
            client_id: ALCF_CLIENT_ID.into(),
            config_dir: dir.path().join("cfg"),
            home: Some(dir.path().to_path_buf()),
        });
        // COMPUTE: nobody sets ALCF_HOST_COMPUTE_TOKEN in the unit-test environment.
        let e = creds.access_token(&COMPUTE).await.unwrap_err().to_string();
        assert_eq!(e, "not logged in to Globus for compute: run `alcf-host auth login`");
    }
}
