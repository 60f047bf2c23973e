//! Our token store, `<config_dir>/tokens.json`: private (dir 0700, file 0600) and written
//! atomically, so a crash or a second process never sees half a file.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::AuthError;

pub const FORMAT_VERSION: u32 = 1;

/// Who logged in, from the id_token (display only: it is not verified).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Identity {
    #[serde(default)]
    pub sub: String,
    #[serde(default)]
    pub username: String,
    #[serde(default)]
    pub email: Option<String>,
}

/// One resource server's tokens. No Debug: it holds secrets.
#[derive(Clone, Serialize, Deserialize)]
pub struct StoredToken {
    pub access_token: String,
    #[serde(default)]
    pub refresh_token: Option<String>,
    pub expires_at_seconds: i64,
    #[serde(default)]
    pub scope: String,
    pub resource_server: String,
}

impl std::fmt::Debug for StoredToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoredToken")
            .field("access_token", &"…redacted")
            .field("refresh_token", &self.refresh_token.as_ref().map(|_| "…redacted"))
            .field("expires_at_seconds", &self.expires_at_seconds)
            .field("scope", &self.scope)
            .field("resource_server", &self.resource_server)
            .finish()
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StoreFile {
    pub format_version: u32,
    pub client_id: String,
    pub identity: Option<Identity>,
    #[serde(default)]
    pub tokens: BTreeMap<String, StoredToken>,
}

impl StoreFile {
    pub fn new(client_id: &str) -> StoreFile {
        StoreFile {
            format_version: FORMAT_VERSION,
            client_id: client_id.to_string(),
            identity: None,
            tokens: BTreeMap::new(),
        }
    }
}

pub fn path(config_dir: &Path) -> PathBuf {
    config_dir.join("tokens.json")
}

fn store_error(path: &Path, detail: impl std::fmt::Display) -> AuthError {
    AuthError::Store { path: path.to_path_buf(), detail: detail.to_string() }
}

/// Reads the store; `None` when there is none. A file that others may read is not refused (the
/// tokens are already exposed; refusing would only stop the study): it is warned about and made
/// private.
pub fn load(path: &Path) -> Result<Option<StoreFile>, AuthError> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(store_error(path, format!("cannot read it: {e}"))),
    };
    if let Some(w) = fix_mode(path) {
        // Inside a study this lands in its host.log; the CLI checks first and prints it.
        tracing::warn!("{w}");
    }
    let store: StoreFile =
        serde_json::from_str(&text).map_err(|e| store_error(path, format!("not a valid token file: {e}")))?;
    if store.format_version != FORMAT_VERSION {
        return Err(store_error(
            path,
            format!(
                "format_version {} is not {FORMAT_VERSION} (written by another alcf-host version?)",
                store.format_version
            ),
        ));
    }
    for (key, t) in &store.tokens {
        if key != &t.resource_server {
            return Err(store_error(path, format!("tokens.{key} holds resource_server {:?}", t.resource_server)));
        }
    }
    Ok(Some(store))
}

/// Makes the token file 0600 when group or others may access it; returns the warning to show.
pub fn fix_mode(path: &Path) -> Option<String> {
    let mode = std::fs::metadata(path).ok()?.permissions().mode() & 0o777;
    if mode & 0o077 == 0 {
        return None;
    }
    let fixed = std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600));
    Some(match fixed {
        Ok(()) => format!(
            "token file {} had mode {mode:o}, readable by others: setting it to 600 (if others could log in here, \
             run `alcf-host auth logout` and `alcf-host auth login`)",
            path.display()
        ),
        Err(e) => format!(
            "token file {} has mode {mode:o}, readable by others, and cannot be made private ({e}): run \
             `chmod 600 {}`",
            path.display(),
            path.display()
        ),
    })
}

/// Writes the store atomically: a 0600 temporary file in the same directory, fsync, rename, fsync
/// of the directory.
pub fn save(path: &Path, store: &StoreFile) -> Result<(), AuthError> {
    let write_error = |detail: String| AuthError::StoreWrite { path: path.to_path_buf(), detail };
    let dir = path.parent().ok_or_else(|| write_error("it has no parent directory".into()))?;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| write_error(format!("cannot create {}: {e}", dir.display())))?;
    // The directory is ours (alcf-host's own config dir); an existing one may predate this rule.
    let _ = std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700));
    let text = serde_json::to_string_pretty(store).map_err(|e| write_error(e.to_string()))?;
    let tmp = dir.join(format!(".tokens.json.tmp-{}", std::process::id()));
    let _ = std::fs::remove_file(&tmp);
    let result = (|| -> std::io::Result<()> {
        let mut f = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(&tmp)?;
        f.write_all(text.as_bytes())?;
        f.write_all(b"\n")?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)?;
        std::fs::File::open(dir)?.sync_all()
    })();
    if let Err(e) = result {
        let _ = std::fs::remove_file(&tmp);
        return Err(write_error(e.to_string()));
    }
    Ok(())
}

/// Deletes the store; `false` when there was none.
pub fn delete(path: &Path) -> Result<bool, AuthError> {
    match std::fs::remove_file(path) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(AuthError::StoreWrite { path: path.to_path_buf(), detail: format!("cannot delete it: {e}") }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> StoreFile {
        let mut s = StoreFile::new("client");
        s.identity = Some(Identity { sub: "s".into(), username: "u@anl.gov".into(), email: None });
        s.tokens.insert(
            "rs".into(),
            StoredToken {
                access_token: "AT-secret".into(),
                refresh_token: Some("RT-secret".into()),
                expires_at_seconds: 10,
                scope: "x".into(),
                resource_server: "rs".into(),
            },
        );
        s
    }

    #[test]
    fn save_is_private_and_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        let p = path(&dir.path().join("cfg"));
        save(&p, &sample()).unwrap();
        assert_eq!(std::fs::metadata(&p).unwrap().permissions().mode() & 0o777, 0o600);
        assert_eq!(std::fs::metadata(p.parent().unwrap()).unwrap().permissions().mode() & 0o777, 0o700);
        let back = load(&p).unwrap().unwrap();
        assert_eq!(back.tokens["rs"].access_token, "AT-secret");
        assert_eq!(back.identity.unwrap().username, "u@anl.gov");
        // Nothing left behind but the file itself.
        assert_eq!(std::fs::read_dir(p.parent().unwrap()).unwrap().count(), 1);
    }

    #[test]
    fn a_readable_store_is_made_private() {
        let dir = tempfile::tempdir().unwrap();
        let p = path(dir.path());
        save(&p, &sample()).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
        let w = fix_mode(&p).unwrap();
        assert!(w.contains("had mode 644") && w.contains("setting it to 600"), "{w}");
        assert_eq!(std::fs::metadata(&p).unwrap().permissions().mode() & 0o777, 0o600);
        assert!(fix_mode(&p).is_none());
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o640)).unwrap();
        load(&p).unwrap().unwrap();
        assert_eq!(std::fs::metadata(&p).unwrap().permissions().mode() & 0o777, 0o600);
    }

    #[test]
    fn bad_files_name_the_file_and_the_next_step() {
        let dir = tempfile::tempdir().unwrap();
        let p = path(dir.path());
        assert!(load(&p).unwrap().is_none());
        std::fs::write(&p, "{not json").unwrap();
        let e = load(&p).unwrap_err().to_string();
        assert!(e.contains("tokens.json") && e.contains("alcf-host auth login"), "{e}");
        std::fs::write(&p, r#"{"format_version":7,"client_id":"c","identity":null,"tokens":{}}"#).unwrap();
        let e = load(&p).unwrap_err().to_string();
        assert!(e.contains("format_version 7"), "{e}");
    }

    #[test]
    fn debug_hides_tokens() {
        let s = format!("{:?}", sample());
        assert!(!s.contains("secret"), "{s}");
    }
}
