//! ALCF's own token file, written by its `inference_auth_token.py` (globus-sdk's JSON storage).
//! Read only: a refresh lands in our store, so ALCF's tool keeps working on its own file.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::AuthError;
use super::store::StoredToken;

/// `~/.globus/app/<ALCF's client id>/inference_app/tokens.json`.
pub fn path(home: &Path) -> PathBuf {
    home.join(".globus/app/58fdd3bc-e1c3-4ce5-80ea-8d6b87cfb944/inference_app/tokens.json")
}

#[derive(Deserialize)]
struct File {
    data: BTreeMap<String, BTreeMap<String, Entry>>,
}

#[derive(Deserialize)]
struct Entry {
    access_token: String,
    #[serde(default)]
    refresh_token: Option<String>,
    #[serde(default)]
    expires_at_seconds: Option<i64>,
    #[serde(default)]
    scope: Option<String>,
}

/// The token for `resource_server` in ALCF's file: the DEFAULT namespace first, then any other.
/// `Ok(None)`: no file, or no token for it.
pub fn load(path: &Path, resource_server: &str) -> Result<Option<StoredToken>, AuthError> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(AuthError::AlcfFile { path: path.to_path_buf(), detail: format!("cannot read it: {e}") }),
    };
    let file: File = serde_json::from_str(&text).map_err(|e| AuthError::AlcfFile {
        path: path.to_path_buf(),
        detail: format!("not a globus-sdk token file: {e}"),
    })?;
    let mut namespaces: Vec<&String> = file.data.keys().collect();
    namespaces.sort_by_key(|n| *n != "DEFAULT");
    for ns in namespaces {
        if let Some(e) = file.data[ns].get(resource_server) {
            return Ok(Some(StoredToken {
                access_token: e.access_token.clone(),
                refresh_token: e.refresh_token.clone(),
                expires_at_seconds: e.expires_at_seconds.unwrap_or(0),
                scope: e.scope.clone().unwrap_or_default(),
                resource_server: resource_server.to_string(),
            }));
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_default_namespace_first() {
        let dir = tempfile::tempdir().unwrap();
        let p = path(dir.path());
        assert!(load(&p, "rs").unwrap().is_none());
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(
            &p,
            r#"{"data":{"A":{"rs":{"access_token":"a","refresh_token":null,"expires_at_seconds":1,"scope":"s","resource_server":"rs","token_type":"Bearer"}},
                "DEFAULT":{"rs":{"access_token":"d","refresh_token":"r","expires_at_seconds":2,"scope":"s","resource_server":"rs","token_type":"Bearer"}}},
               "format_version":"2.0"}"#,
        )
        .unwrap();
        let t = load(&p, "rs").unwrap().unwrap();
        assert_eq!((t.access_token.as_str(), t.expires_at_seconds), ("d", 2));
        assert!(load(&p, "other").unwrap().is_none());
        std::fs::write(&p, "{}").unwrap();
        let e = load(&p, "rs").unwrap_err().to_string();
        assert!(e.contains("inference_app/tokens.json") && e.contains("alcf-host auth login"), "{e}");
    }
}
