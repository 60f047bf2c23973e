//! The `storage` capability: a per-study key-value store behind a [`StorageBackend`], with quotas
//! so a plugin cannot fill the study database.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use super::{Capability, lock};
use crate::plugin::bindings::alcf::hpo::storage as wit;
use crate::plugin::sandbox::PluginState;
use crate::study::StudyDb;

/// Limits on plugin storage, per study.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StorageQuota {
    pub max_key_bytes: usize,
    pub max_value_bytes: usize,
    /// Keys plus values of every entry.
    pub max_total_bytes: u64,
}

impl Default for StorageQuota {
    fn default() -> StorageQuota {
        StorageQuota { max_key_bytes: 256, max_value_bytes: 1 << 20, max_total_bytes: 64 << 20 }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("storage key is {len} bytes; the limit is {limit}")]
    KeyTooLong { len: usize, limit: usize },
    #[error("storage value is {len} bytes; the limit is {limit}")]
    ValueTooBig { len: usize, limit: usize },
    #[error("plugin storage is full ({used} bytes of {limit}; this entry needs {needed} more)")]
    Full { used: u64, needed: u64, limit: u64 },
    #[error("plugin storage failed: {0}")]
    Backend(#[source] Box<dyn std::error::Error + Send + Sync>),
}

/// Where a plugin's storage lives. Implementations only store; quotas are checked before.
pub trait StorageBackend: Send + Sync {
    fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StorageError>;
    fn set(&self, key: &str, value: &[u8]) -> Result<(), StorageError>;
    fn delete(&self, key: &str) -> Result<(), StorageError>;
    /// Keys plus values of every entry, in bytes.
    fn used_bytes(&self) -> Result<u64, StorageError>;
}

/// In memory, for runs that keep no study (benchmarks, `compare`, `plugin inspect`).
#[derive(Default)]
pub struct MemoryStorage {
    map: Mutex<HashMap<String, Vec<u8>>>,
}

impl StorageBackend for MemoryStorage {
    fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StorageError> {
        Ok(lock(&self.map).get(key).cloned())
    }
    fn set(&self, key: &str, value: &[u8]) -> Result<(), StorageError> {
        lock(&self.map).insert(key.to_string(), value.to_vec());
        Ok(())
    }
    fn delete(&self, key: &str) -> Result<(), StorageError> {
        lock(&self.map).remove(key);
        Ok(())
    }
    fn used_bytes(&self) -> Result<u64, StorageError> {
        Ok(lock(&self.map).iter().map(|(k, v)| (k.len() + v.len()) as u64).sum())
    }
}

/// The study database: survives restarts and resumes, shared by every instance of the study's plugin.
impl StorageBackend for StudyDb {
    fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StorageError> {
        self.storage_get(key).map_err(|e| StorageError::Backend(e.into()))
    }
    fn set(&self, key: &str, value: &[u8]) -> Result<(), StorageError> {
        self.storage_set(key, value).map_err(|e| StorageError::Backend(e.into()))
    }
    fn delete(&self, key: &str) -> Result<(), StorageError> {
        self.storage_delete(key).map_err(|e| StorageError::Backend(e.into()))
    }
    fn used_bytes(&self) -> Result<u64, StorageError> {
        self.storage_bytes().map_err(|e| StorageError::Backend(e.into()))
    }
}

/// The two built-in backends, by name (what the commands pick from); any other backend goes to
/// [`super::Capabilities::new`] as an `Arc<dyn StorageBackend>`.
#[derive(Clone)]
pub enum Storage {
    Study(Arc<StudyDb>),
    Memory(Arc<MemoryStorage>),
}

impl Storage {
    pub fn memory() -> Storage {
        Storage::Memory(Arc::default())
    }
}

impl From<Storage> for Arc<dyn StorageBackend> {
    fn from(s: Storage) -> Arc<dyn StorageBackend> {
        match s {
            Storage::Study(db) => db,
            Storage::Memory(m) => m,
        }
    }
}

impl StorageQuota {
    /// Checks a `set` against the quota, counting a replaced entry only once.
    pub fn check_set(&self, backend: &dyn StorageBackend, key: &str, value: &[u8]) -> Result<(), StorageError> {
        if key.len() > self.max_key_bytes {
            return Err(StorageError::KeyTooLong { len: key.len(), limit: self.max_key_bytes });
        }
        if value.len() > self.max_value_bytes {
            return Err(StorageError::ValueTooBig { len: value.len(), limit: self.max_value_bytes });
        }
        let used = backend.used_bytes()?;
        let replaced = backend.get(key)?.map_or(0, |v| (key.len() + v.len()) as u64);
        let needed = (key.len() + value.len()) as u64;
        if used.saturating_sub(replaced) + needed > self.max_total_bytes {
            return Err(StorageError::Full { used, needed, limit: self.max_total_bytes });
        }
        Ok(())
    }
}

impl PluginState {
    /// Runs a storage operation, its time counted as host time (not against the plugin's deadline).
    fn storage_op<T>(&mut self, op: impl FnOnce(&dyn StorageBackend, &StorageQuota) -> T) -> T {
        let started = Instant::now();
        let out = op(&**self.caps.storage(), self.caps.storage_quota());
        self.clock.add_host_time(started.elapsed());
        out
    }
}

impl wit::Host for PluginState {
    fn get(&mut self, key: String) -> Option<Vec<u8>> {
        if !self.caps.check(Capability::Storage, "storage.get") {
            return None;
        }
        self.storage_op(|b, _| b.get(&key)).unwrap_or_else(|e| {
            tracing::error!(plugin = %self.caps.plugin(), "{e}");
            None
        })
    }

    fn set(&mut self, key: String, value: Vec<u8>) -> Result<(), String> {
        if !self.caps.check(Capability::Storage, "storage.set") {
            return Err(self.caps.not_granted(Capability::Storage));
        }
        self.storage_op(|b, q| q.check_set(b, &key, &value).and_then(|()| b.set(&key, &value)))
            .map_err(|e| e.to_string())
    }

    fn delete(&mut self, key: String) -> Result<(), String> {
        if !self.caps.check(Capability::Storage, "storage.delete") {
            return Err(self.caps.not_granted(Capability::Storage));
        }
        self.storage_op(|b, _| b.delete(&key)).map_err(|e| e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotas() {
        let q = StorageQuota { max_key_bytes: 4, max_value_bytes: 8, max_total_bytes: 20 };
        let m = MemoryStorage::default();
        assert!(matches!(q.check_set(&m, "toolong", b""), Err(StorageError::KeyTooLong { len: 7, limit: 4 })));
        assert!(matches!(q.check_set(&m, "k", &[0; 9]), Err(StorageError::ValueTooBig { len: 9, limit: 8 })));
        q.check_set(&m, "a", &[0; 8]).unwrap();
        m.set("a", &[0; 8]).unwrap();
        q.check_set(&m, "b", &[0; 8]).unwrap();
        m.set("b", &[0; 8]).unwrap();
        // 18 used: a third entry does not fit, replacing one does.
        assert!(matches!(q.check_set(&m, "c", &[0; 2]), Err(StorageError::Full { used: 18, needed: 3, limit: 20 })));
        q.check_set(&m, "a", &[0; 8]).unwrap();
    }

    #[test]
    fn the_study_database_is_a_backend() {
        let dir = tempfile::tempdir().unwrap();
        let meta = crate::study::StudyMeta {
            name: "s".into(),
            objective: "v".into(),
            direction: "minimize".into(),
            seed: 0,
            space: "[]".into(),
            executor: "bench".into(),
            plugin: "p.wasm".into(),
            plugin_sha256: "0".into(),
            created_at: 0.0,
        };
        let db: Arc<dyn StorageBackend> = Storage::Study(Arc::new(StudyDb::create(dir.path(), &meta).unwrap())).into();
        db.set("k", b"value").unwrap();
        assert_eq!(db.get("k").unwrap().as_deref(), Some(&b"value"[..]));
        assert_eq!(db.used_bytes().unwrap(), 6);
        db.delete("k").unwrap();
        assert_eq!(db.get("k").unwrap(), None);
    }
}
