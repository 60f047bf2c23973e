//! `alcf-host auth login | status | logout` as library calls: the CLI only prints.

use std::path::PathBuf;

use super::store::{self, Identity, StoreFile};
use super::{AuthConfig, AuthError, SERVICES, Service, alcf, env_token, env_var, now, oauth, pkce};

/// A login waiting for the code the user pastes. Holds the PKCE verifier (no Debug).
pub struct PendingLogin {
    verifier: String,
    url: String,
    services: Vec<Service>,
}

/// Starts a login for `services` (every service when empty): a fresh PKCE verifier and state.
pub fn begin_login(cfg: &AuthConfig, services: &[Service]) -> Result<PendingLogin, AuthError> {
    let services: Vec<Service> = if services.is_empty() { SERVICES.to_vec() } else { services.to_vec() };
    let verifier = pkce::verifier()?;
    let state = pkce::random_urlsafe(16)?;
    let url = oauth::authorize_url(cfg, &services, &pkce::challenge(&verifier), &state);
    Ok(PendingLogin { verifier, url, services })
}

pub struct LoginOutcome {
    pub identity: Option<Identity>,
    pub services: Vec<Service>,
    pub store: PathBuf,
}

impl PendingLogin {
    /// The URL to open in a browser.
    pub fn url(&self) -> &str {
        &self.url
    }

    pub fn services(&self) -> &[Service] {
        &self.services
    }

    /// Trades the pasted `code` for tokens and saves them, next to tokens of other services
    /// already stored.
    pub async fn finish(self, cfg: &AuthConfig, code: &str) -> Result<LoginOutcome, AuthError> {
        let code = code.trim();
        if code.is_empty() {
            return Err(AuthError::Login {
                detail: "no authorization code was pasted: run `alcf-host auth login` again and paste the code \
                         Globus shows after you log in"
                    .into(),
            });
        }
        let http = oauth::client()?;
        let answer = match oauth::exchange_code(&http, cfg, code, &self.verifier).await {
            Ok(a) => a,
            Err(oauth::CallError::Auth(e)) => return Err(e),
            Err(oauth::CallError::Refused(oauth::Refusal::InvalidGrant(d) | oauth::Refusal::Other(d))) => {
                return Err(AuthError::Login {
                    detail: format!(
                        "Globus refused the authorization code ({d}): a code works once and only for the login \
                         that showed it; run `alcf-host auth login` again and paste the new code"
                    ),
                });
            }
        };
        let identity = answer.id_token.as_deref().and_then(oauth::identity_from_id_token);
        let tokens = answer.into_stored(now());
        for svc in &self.services {
            if !tokens.iter().any(|t| t.resource_server == svc.resource_server) {
                return Err(AuthError::Login {
                    detail: format!(
                        "Globus granted no token for {} ({}): run `alcf-host auth login` again and allow every \
                         requested access",
                        svc.name, svc.resource_server
                    ),
                });
            }
        }
        let path = cfg.store_path();
        // A broken store or one of another client is replaced, not merged: this login fixes it.
        let mut store = match store::load(&path) {
            Ok(Some(s)) if s.client_id == cfg.client_id => s,
            _ => StoreFile::new(&cfg.client_id),
        };
        if identity.is_some() {
            store.identity = identity.clone();
        }
        for t in tokens {
            store.tokens.insert(t.resource_server.clone(), t);
        }
        store::save(&path, &store)?;
        Ok(LoginOutcome { identity: store.identity.clone(), services: self.services, store: path })
    }
}

/// Where a service's token comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    Env { var: String },
    Store { path: PathBuf },
    Alcf { path: PathBuf },
    None,
}

impl Source {
    pub fn label(&self) -> &'static str {
        match self {
            Source::Env { .. } => "env",
            Source::Store { .. } => "alcf-host store",
            Source::Alcf { .. } => "ALCF tokens.json",
            Source::None => "none",
        }
    }
}

/// What `auth status` shows for one service. Holds no token.
#[derive(Debug, Clone)]
pub struct ServiceStatus {
    pub service: Service,
    pub source: Source,
    pub identity: Option<Identity>,
    pub scope: Option<String>,
    pub expires_at_seconds: Option<i64>,
    pub refresh_token: bool,
    /// A file that could not be read (ALCF's): said here so the other services still show.
    pub problem: Option<String>,
}

/// Every service's token source and expiry, from the files alone (no network, no refresh).
pub fn status(cfg: &AuthConfig) -> Result<Vec<ServiceStatus>, AuthError> {
    let store = store::load(&cfg.store_path())?;
    let mut out = Vec::new();
    for svc in SERVICES {
        let mut st = ServiceStatus {
            service: svc,
            source: Source::None,
            identity: None,
            scope: None,
            expires_at_seconds: None,
            refresh_token: false,
            problem: None,
        };
        if env_token(&svc).is_some() {
            st.source = Source::Env { var: env_var(&svc) };
        } else if let Some(t) = store.as_ref().and_then(|s| s.tokens.get(svc.resource_server)) {
            st.source = Source::Store { path: cfg.store_path() };
            st.identity = store.as_ref().and_then(|s| s.identity.clone());
            st.scope = Some(t.scope.clone());
            st.expires_at_seconds = Some(t.expires_at_seconds);
            st.refresh_token = t.refresh_token.is_some();
        } else if svc.resource_server == super::SOPHIA.resource_server
            && let Some(path) = cfg.alcf_path()
        {
            match alcf::load(&path, svc.resource_server) {
                Ok(Some(t)) => {
                    st.source = Source::Alcf { path };
                    st.scope = Some(t.scope);
                    st.expires_at_seconds = Some(t.expires_at_seconds);
                    st.refresh_token = t.refresh_token.is_some();
                }
                Ok(None) => {}
                Err(e) => st.problem = Some(e.to_string()),
            }
        }
        out.push(st);
    }
    Ok(out)
}

pub struct LogoutOutcome {
    pub store: PathBuf,
    /// Whether there was a store to delete.
    pub deleted: bool,
    /// Tokens Globus confirmed revoked.
    pub revoked: usize,
    /// Tokens that could not be revoked (they stay valid until they expire), and why.
    pub failed: Vec<String>,
}

/// Revokes every stored access and refresh token, then deletes the store, even when Globus
/// cannot be reached (the outcome says which tokens stay valid until they expire).
pub async fn logout(cfg: &AuthConfig) -> Result<LogoutOutcome, AuthError> {
    let path = cfg.store_path();
    let mut out = LogoutOutcome { store: path.clone(), deleted: false, revoked: 0, failed: Vec::new() };
    let store = match store::load(&path) {
        Ok(s) => s,
        Err(e) => {
            out.failed.push(format!("cannot read the tokens to revoke them: {e}"));
            None
        }
    };
    if let Some(store) = store {
        let http = oauth::client()?;
        let mut network_down: Option<String> = None;
        for t in store.tokens.values() {
            let service = super::SERVICES
                .iter()
                .find(|s| s.resource_server == t.resource_server)
                .map_or(t.resource_server.as_str(), |s| s.name);
            let mut kinds = vec![("access", t.access_token.as_str())];
            if let Some(r) = &t.refresh_token {
                kinds.push(("refresh", r.as_str()));
            }
            for (kind, token) in kinds {
                if let Some(e) = &network_down {
                    out.failed.push(format!("{service} {kind} token: {e}"));
                    continue;
                }
                match oauth::revoke(&http, cfg, &store.client_id, token).await {
                    Ok(true) => out.revoked += 1,
                    Ok(false) => out.failed.push(format!("{service} {kind} token: Globus did not confirm")),
                    Err(e) => {
                        // One unreachable server is enough to know: do not wait out a timeout per token.
                        out.failed.push(format!("{service} {kind} token: {e}"));
                        network_down = Some("not tried (Globus Auth unreachable)".into());
                    }
                }
            }
        }
    }
    out.deleted = store::delete(&path)?;
    Ok(out)
}
