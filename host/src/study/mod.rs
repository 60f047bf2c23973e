//! The study database: one SQLite file per study directory.
//!
//! Invariants:
//! - A trial row is written (state `pending`) before its job is submitted, and the job id is
//!   stored before the host waits on it. A crash at any point therefore leaves every started job
//!   findable on resume.
//! - A finished trial (completed, failed, pruned) is never modified again.
//! - Writes are single transactions in WAL mode with `synchronous=NORMAL`: a committed write
//!   survives the host process being killed; only an OS crash or power loss can take back the
//!   last few commits (SQLite's documented WAL trade-off), never corrupt the file.
//!
//! This module knows nothing about plugins or executors; it stores what it is given.

pub mod lock;

pub use lock::{LockError, StudyLock};

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use rusqlite::{Connection, OptionalExtension, params};
use serde_json::{Map, Value as Json};

use crate::space::Metrics;

pub const DB_FILE: &str = "study.db";
/// 2: `trial.job_handle` (an executor's serializable handle) and the `cancelled` state.
const SCHEMA_VERSION: i64 = 2;

#[derive(Debug, thiserror::Error)]
pub enum StudyError {
    #[error("study database {path}: {source}")]
    Sqlite { path: PathBuf, source: rusqlite::Error },
    #[error("no study at {0}: start one with `alcf-host run` (without --resume), or check --study and --root")]
    NotFound(PathBuf),
    #[error("a study already exists at {0}: continue it with --resume, or pick another --study name")]
    Exists(PathBuf),
    #[error(
        "{path} was written by a newer alcf-host (schema {found}, this build reads {SCHEMA_VERSION}); upgrade alcf-host"
    )]
    Schema { path: PathBuf, found: i64 },
    #[error("{0}")]
    Corrupt(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TrialState {
    Pending,
    Running,
    Completed,
    Failed,
    Pruned,
    /// Its job was cancelled (the second Ctrl-C): not finished, never re-attached; a resume re-runs it.
    Cancelled,
}

impl TrialState {
    pub fn as_str(self) -> &'static str {
        match self {
            TrialState::Pending => "pending",
            TrialState::Running => "running",
            TrialState::Completed => "completed",
            TrialState::Failed => "failed",
            TrialState::Pruned => "pruned",
            TrialState::Cancelled => "cancelled",
        }
    }

    fn parse(s: &str) -> Option<TrialState> {
        Some(match s {
            "pending" => TrialState::Pending,
            "running" => TrialState::Running,
            "completed" => TrialState::Completed,
            "failed" => TrialState::Failed,
            "pruned" => TrialState::Pruned,
            "cancelled" => TrialState::Cancelled,
            _ => return None,
        })
    }

    pub fn is_finished(self) -> bool {
        matches!(self, TrialState::Completed | TrialState::Failed | TrialState::Pruned)
    }
}

/// What a study is, fixed when it is created.
#[derive(Debug, Clone, PartialEq)]
pub struct StudyMeta {
    pub name: String,
    pub objective: String,
    pub direction: String,
    pub seed: u64,
    /// The search space as [`crate::space::SearchSpace::to_json`] writes it.
    pub space: Json,
    /// The executor kind and its settings, for `study show`.
    pub executor: String,
    /// The plugin file and its content hash when the study was created.
    pub plugin: String,
    pub plugin_sha256: String,
    pub created_at: f64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct TrialRow {
    pub id: u64,
    pub params: Map<String, Json>,
    pub state: TrialState,
    /// Starts at 1; a trial re-run after an interruption gets the next number.
    pub attempt: u32,
    pub job_id: Option<String>,
    /// The executor's handle on the job, as it serialized it (JSON).
    pub job_handle: Option<String>,
    pub created_at: f64,
    pub started_at: Option<f64>,
    pub finished_at: Option<f64>,
    pub value: Option<f64>,
    pub metrics: Metrics,
    pub curve: Vec<Metrics>,
    pub failure: Option<String>,
    pub log_tail: Option<String>,
}

/// How a trial ended, to be recorded.
#[derive(Debug, Clone, PartialEq)]
pub struct Finish {
    pub state: TrialState,
    pub value: Option<f64>,
    pub metrics: Metrics,
    pub curve: Vec<Metrics>,
    pub failure: Option<String>,
    pub log_tail: Option<String>,
}

impl Finish {
    /// A failure with nothing else to record (the trial never ran, or its executor gave up on it).
    pub fn failed(reason: String) -> Finish {
        Finish {
            state: TrialState::Failed,
            value: None,
            metrics: Metrics::new(),
            curve: Vec::new(),
            failure: Some(reason),
            log_tail: None,
        }
    }
}

/// One entry of the study's event log.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    pub at: f64,
    pub kind: String,
    pub trial: Option<u64>,
    pub message: String,
}

pub struct StudyDb {
    path: PathBuf,
    conn: Mutex<Connection>,
}

pub fn now() -> f64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs_f64()).unwrap_or(0.0)
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS trial (
    id INTEGER PRIMARY KEY,
    params TEXT NOT NULL,
    state TEXT NOT NULL,
    attempt INTEGER NOT NULL DEFAULT 1,
    job_id TEXT,
    job_handle TEXT,
    created_at REAL NOT NULL,
    started_at REAL,
    finished_at REAL,
    value REAL,
    metrics TEXT,
    curve TEXT,
    failure TEXT,
    log_tail TEXT
);
CREATE INDEX IF NOT EXISTS trial_state ON trial(state);
CREATE TABLE IF NOT EXISTS storage (key TEXT PRIMARY KEY, value BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS event (
    id INTEGER PRIMARY KEY,
    at REAL NOT NULL,
    kind TEXT NOT NULL,
    trial INTEGER,
    message TEXT NOT NULL
);
";

impl StudyDb {
    /// Creates a new study in `dir` (created if missing). Refuses to overwrite an existing one.
    pub fn create(dir: &Path, meta: &StudyMeta) -> Result<StudyDb, StudyError> {
        let path = dir.join(DB_FILE);
        if path.exists() {
            return Err(StudyError::Exists(dir.to_path_buf()));
        }
        std::fs::create_dir_all(dir)
            .map_err(|e| StudyError::Corrupt(format!("cannot create {}: {e}", dir.display())))?;
        let db = StudyDb::connect(path)?;
        db.write_meta(meta)?;
        Ok(db)
    }

    /// A study that lives in memory only: in-process comparisons, which keep no study directory.
    pub fn in_memory(meta: &StudyMeta) -> Result<StudyDb, StudyError> {
        let path = PathBuf::from(":memory:");
        let err = |source| StudyError::Sqlite { path: path.clone(), source };
        let conn = Connection::open_in_memory().map_err(err)?;
        conn.execute_batch(SCHEMA).map_err(err)?;
        let db = StudyDb { path, conn: Mutex::new(conn) };
        db.write_meta(meta)?;
        Ok(db)
    }

    fn write_meta(&self, meta: &StudyMeta) -> Result<(), StudyError> {
        let db = self;
        db.with(|c| {
            let tx = c.unchecked_transaction()?;
            let mut put = tx.prepare("INSERT INTO meta(key, value) VALUES (?1, ?2)")?;
            put.execute(params!["schema_version", SCHEMA_VERSION.to_string()])?;
            put.execute(params!["name", meta.name])?;
            put.execute(params!["objective", meta.objective])?;
            put.execute(params!["direction", meta.direction])?;
            put.execute(params!["seed", meta.seed.to_string()])?;
            put.execute(params!["space", meta.space.to_string()])?;
            put.execute(params!["executor", meta.executor])?;
            put.execute(params!["plugin", meta.plugin])?;
            put.execute(params!["plugin_sha256", meta.plugin_sha256])?;
            put.execute(params!["created_at", meta.created_at.to_string()])?;
            drop(put);
            tx.commit()
        })
    }

    pub fn open(dir: &Path) -> Result<StudyDb, StudyError> {
        let path = dir.join(DB_FILE);
        if !path.exists() {
            return Err(StudyError::NotFound(dir.to_path_buf()));
        }
        let db = StudyDb::connect(path)?;
        let version: i64 = db.meta_value("schema_version")?.and_then(|v| v.parse().ok()).unwrap_or(0);
        if version > SCHEMA_VERSION {
            return Err(StudyError::Schema { path: db.path.clone(), found: version });
        }
        Ok(db)
    }

    fn connect(path: PathBuf) -> Result<StudyDb, StudyError> {
        let err = |source| StudyError::Sqlite { path: path.clone(), source };
        let conn = Connection::open(&path).map_err(err)?;
        // WAL + NORMAL: commits are durable against process death and cost no fsync each.
        conn.pragma_update(None, "journal_mode", "WAL").map_err(err)?;
        conn.pragma_update(None, "synchronous", "NORMAL").map_err(err)?;
        conn.busy_timeout(std::time::Duration::from_secs(10)).map_err(err)?;
        conn.execute_batch(SCHEMA).map_err(err)?;
        migrate(&conn).map_err(err)?;
        Ok(StudyDb { path, conn: Mutex::new(conn) })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn with<T>(&self, f: impl FnOnce(&Connection) -> rusqlite::Result<T>) -> Result<T, StudyError> {
        // A poisoned lock means another thread panicked mid-call; SQLite rolled back its transaction,
        // so the connection itself is still consistent.
        let conn = self.conn.lock().unwrap_or_else(|p| p.into_inner());
        f(&conn).map_err(|source| StudyError::Sqlite { path: self.path.clone(), source })
    }

    fn meta_value(&self, key: &str) -> Result<Option<String>, StudyError> {
        self.with(|c| {
            c.prepare_cached("SELECT value FROM meta WHERE key = ?1")?.query_row([key], |r| r.get(0)).optional()
        })
    }

    pub fn meta(&self) -> Result<StudyMeta, StudyError> {
        let get = |k: &str| -> Result<String, StudyError> {
            self.meta_value(k)?
                .ok_or_else(|| StudyError::Corrupt(format!("{}: meta key `{k}` missing", self.path.display())))
        };
        let space = serde_json::from_str(&get("space")?)
            .map_err(|e| StudyError::Corrupt(format!("{}: stored space: {e}", self.path.display())))?;
        Ok(StudyMeta {
            name: get("name")?,
            objective: get("objective")?,
            direction: get("direction")?,
            seed: get("seed")?.parse().unwrap_or(0),
            space,
            executor: get("executor")?,
            plugin: get("plugin")?,
            plugin_sha256: get("plugin_sha256")?,
            created_at: get("created_at")?.parse().unwrap_or(0.0),
        })
    }

    pub fn set_meta(&self, key: &str, value: &str) -> Result<(), StudyError> {
        self.with(|c| {
            c.prepare_cached("INSERT INTO meta(key, value) VALUES (?1, ?2) ON CONFLICT(key) DO UPDATE SET value = ?2")?
                .execute(params![key, value])
                .map(drop)
        })
    }

    /// Writes a new trial in state `pending` and returns its id.
    pub fn insert_trial(&self, params: &Map<String, Json>) -> Result<u64, StudyError> {
        let text = Json::Object(params.clone()).to_string();
        self.with(|c| {
            c.prepare_cached("INSERT INTO trial(params, state, created_at) VALUES (?1, 'pending', ?2)")?
                .execute(params![text, now()])?;
            Ok(c.last_insert_rowid() as u64)
        })
    }

    /// Records the job of a pending trial. An error here must stop the caller from waiting on the
    /// job as if it were recorded: a crash would leave a job nobody can find by id.
    pub fn mark_running(&self, id: u64, job_id: &str, job_handle: &str) -> Result<(), StudyError> {
        let n = self.with(|c| {
            c.prepare_cached(
                "UPDATE trial SET state = 'running', job_id = ?2, job_handle = ?3, started_at = ?4
                 WHERE id = ?1 AND state = 'pending'",
            )?
            .execute(params![id as i64, job_id, job_handle, now()])
        })?;
        if n != 1 {
            return Err(StudyError::Corrupt(format!(
                "{}: trial {id} is not pending, so job {job_id} cannot be recorded on it",
                self.path.display()
            )));
        }
        Ok(())
    }

    /// Marks running trials as cancelled (their jobs were stopped on purpose).
    pub fn mark_cancelled(&self, ids: &[u64]) -> Result<(), StudyError> {
        self.with(|c| {
            let tx = c.unchecked_transaction()?;
            {
                let mut stmt = tx.prepare_cached(
                    "UPDATE trial SET state = 'cancelled', finished_at = ?2 WHERE id = ?1 AND state IN ('pending', 'running')",
                )?;
                let t = now();
                for id in ids {
                    stmt.execute(params![*id as i64, t])?;
                }
            }
            tx.commit()
        })
    }

    /// Records finished trials, all in one transaction. Trials already finished are left untouched.
    pub fn finish_trials(&self, done: &[(u64, Finish)]) -> Result<(), StudyError> {
        self.with(|c| {
            let tx = c.unchecked_transaction()?;
            {
                let mut stmt = tx.prepare_cached(
                    "UPDATE trial SET state = ?2, value = ?3, metrics = ?4, curve = ?5, failure = ?6, log_tail = ?7,
                     finished_at = ?8 WHERE id = ?1 AND state IN ('pending', 'running')",
                )?;
                let t = now();
                for (id, f) in done {
                    let metrics = serde_json::to_string(&f.metrics).unwrap_or_default();
                    let curve = if f.curve.is_empty() { None } else { serde_json::to_string(&f.curve).ok() };
                    stmt.execute(params![
                        *id as i64,
                        f.state.as_str(),
                        f.value,
                        metrics,
                        curve,
                        f.failure,
                        f.log_tail,
                        t
                    ])?;
                }
            }
            tx.commit()
        })
    }

    /// Puts an interrupted trial back to `pending` for another attempt; returns the new attempt number.
    pub fn reset_for_rerun(&self, id: u64) -> Result<u32, StudyError> {
        self.with(|c| {
            c.prepare_cached(
                "UPDATE trial SET state = 'pending', job_id = NULL, job_handle = NULL, started_at = NULL,
                 finished_at = NULL, attempt = attempt + 1 WHERE id = ?1 AND state IN ('pending', 'running', 'cancelled')",
            )?
            .execute([id as i64])?;
            c.prepare_cached("SELECT attempt FROM trial WHERE id = ?1")?.query_row([id as i64], |r| r.get(0))
        })
    }

    pub fn trials(&self) -> Result<Vec<TrialRow>, StudyError> {
        let rows = self.with(|c| {
            let mut stmt = c.prepare_cached(
                "SELECT id, params, state, attempt, job_id, created_at, started_at, finished_at, value, metrics, curve,
                        failure, log_tail, job_handle FROM trial ORDER BY id",
            )?;
            let rows = stmt.query_map([], |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, String>(2)?,
                    r.get::<_, u32>(3)?,
                    r.get::<_, Option<String>>(4)?,
                    r.get::<_, f64>(5)?,
                    r.get::<_, Option<f64>>(6)?,
                    r.get::<_, Option<f64>>(7)?,
                    r.get::<_, Option<f64>>(8)?,
                    r.get::<_, Option<String>>(9)?,
                    r.get::<_, Option<String>>(10)?,
                    r.get::<_, Option<String>>(11)?,
                    r.get::<_, Option<String>>(12)?,
                    r.get::<_, Option<String>>(13)?,
                ))
            })?;
            rows.collect::<rusqlite::Result<Vec<_>>>()
        })?;
        let corrupt = |what: String| StudyError::Corrupt(format!("{}: {what}", self.path.display()));
        rows.into_iter()
            .map(
                |(
                    id,
                    params,
                    state,
                    attempt,
                    job_id,
                    created_at,
                    started_at,
                    finished_at,
                    value,
                    metrics,
                    curve,
                    failure,
                    log_tail,
                    job_handle,
                )| {
                    let params = match serde_json::from_str(&params) {
                        Ok(Json::Object(m)) => m,
                        _ => return Err(corrupt(format!("trial {id}: params are not a JSON object"))),
                    };
                    Ok(TrialRow {
                        id: id as u64,
                        params,
                        state: TrialState::parse(&state)
                            .ok_or_else(|| corrupt(format!("trial {id}: state `{state}`")))?,
                        attempt,
                        job_id,
                        job_handle,
                        created_at,
                        started_at,
                        finished_at,
                        value,
                        metrics: metrics.and_then(|m| serde_json::from_str(&m).ok()).unwrap_or_default(),
                        curve: curve.and_then(|m| serde_json::from_str(&m).ok()).unwrap_or_default(),
                        failure,
                        log_tail,
                    })
                },
            )
            .collect()
    }

    pub fn storage_get(&self, key: &str) -> Result<Option<Vec<u8>>, StudyError> {
        self.with(|c| {
            c.prepare_cached("SELECT value FROM storage WHERE key = ?1")?.query_row([key], |r| r.get(0)).optional()
        })
    }

    pub fn storage_set(&self, key: &str, value: &[u8]) -> Result<(), StudyError> {
        self.with(|c| {
            c.prepare_cached(
                "INSERT INTO storage(key, value) VALUES (?1, ?2) ON CONFLICT(key) DO UPDATE SET value = ?2",
            )?
            .execute(params![key, value])
            .map(drop)
        })
    }

    pub fn storage_delete(&self, key: &str) -> Result<(), StudyError> {
        self.with(|c| c.prepare_cached("DELETE FROM storage WHERE key = ?1")?.execute([key]).map(drop))
    }

    /// Total bytes of plugin storage, for the quota check.
    pub fn storage_bytes(&self) -> Result<u64, StudyError> {
        self.with(|c| {
            c.prepare_cached("SELECT COALESCE(SUM(LENGTH(key) + LENGTH(value)), 0) FROM storage")?
                .query_row([], |r| r.get::<_, i64>(0))
                .map(|n| n as u64)
        })
    }

    /// Appends to the study's event log (plugin faults, resumes, interruptions).
    pub fn event(&self, kind: &str, trial: Option<u64>, message: &str) -> Result<(), StudyError> {
        self.with(|c| {
            c.prepare_cached("INSERT INTO event(at, kind, trial, message) VALUES (?1, ?2, ?3, ?4)")?
                .execute(params![now(), kind, trial.map(|t| t as i64), message])
                .map(drop)
        })
    }

    pub fn events(&self) -> Result<Vec<Event>, StudyError> {
        self.with(|c| {
            let mut stmt = c.prepare_cached("SELECT at, kind, trial, message FROM event ORDER BY id")?;
            let rows = stmt.query_map([], |r| {
                Ok(Event {
                    at: r.get(0)?,
                    kind: r.get(1)?,
                    trial: r.get::<_, Option<i64>>(2)?.map(|t| t as u64),
                    message: r.get(3)?,
                })
            })?;
            rows.collect()
        })
    }
}

/// Brings a study written by an older alcf-host up to this schema, in place.
fn migrate(conn: &Connection) -> rusqlite::Result<()> {
    let has_handle: bool = conn
        .prepare("SELECT 1 FROM pragma_table_info('trial') WHERE name = 'job_handle'")?
        .exists([])?;
    if !has_handle {
        conn.execute_batch("ALTER TABLE trial ADD COLUMN job_handle TEXT")?;
    }
    let version: Option<String> =
        conn.query_row("SELECT value FROM meta WHERE key = 'schema_version'", [], |r| r.get(0)).optional()?;
    if version.as_deref().and_then(|v| v.parse::<i64>().ok()).is_some_and(|v| v < SCHEMA_VERSION) {
        conn.execute("UPDATE meta SET value = ?1 WHERE key = 'schema_version'", [SCHEMA_VERSION.to_string()])?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta() -> StudyMeta {
        StudyMeta {
            name: "t".into(),
            objective: "value".into(),
            direction: "minimize".into(),
            seed: 7,
            space: serde_json::json!([{"name": "x", "type": "float", "low": 0.0, "high": 1.0, "log": false}]),
            executor: "bench".into(),
            plugin: "random.wasm".into(),
            plugin_sha256: "00".into(),
            created_at: 1.0,
        }
    }

    #[test]
    fn trial_lifecycle_survives_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let db = StudyDb::create(dir.path(), &meta()).unwrap();
        assert!(matches!(StudyDb::create(dir.path(), &meta()), Err(StudyError::Exists(_))));
        let mut p = Map::new();
        p.insert("x".into(), Json::from(0.5));
        let a = db.insert_trial(&p).unwrap();
        let b = db.insert_trial(&p).unwrap();
        db.mark_running(a, "job-1", r#"{"id":"job-1"}"#).unwrap();
        db.mark_running(b, "job-2", r#"{"id":"job-2"}"#).unwrap();
        let done = Finish {
            state: TrialState::Completed,
            value: Some(0.25),
            metrics: [("value".to_string(), 0.25)].into(),
            curve: vec![],
            failure: None,
            log_tail: None,
        };
        db.finish_trials(&[(a, done.clone())]).unwrap();
        // A finished trial is never modified again.
        db.finish_trials(&[(a, Finish { value: Some(9.0), ..done })]).unwrap();
        assert_eq!(db.reset_for_rerun(b).unwrap(), 2);
        db.storage_set("k", b"v").unwrap();
        db.event("resume", None, "hello").unwrap();
        drop(db);

        let db = StudyDb::open(dir.path()).unwrap();
        assert_eq!(db.meta().unwrap(), meta());
        let trials = db.trials().unwrap();
        assert_eq!(trials[0].state, TrialState::Completed);
        assert_eq!(trials[0].value, Some(0.25));
        assert_eq!(trials[0].job_id.as_deref(), Some("job-1"));
        assert_eq!(trials[1].state, TrialState::Pending);
        assert_eq!(trials[1].attempt, 2);
        assert_eq!(trials[1].job_id, None);
        assert_eq!(db.storage_get("k").unwrap().as_deref(), Some(&b"v"[..]));
        assert_eq!(db.storage_bytes().unwrap(), 2);
        assert_eq!(db.events().unwrap().len(), 1);
    }

    #[test]
    fn missing_study_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let e = StudyDb::open(&dir.path().join("nope")).err().unwrap().to_string();
        assert!(e.contains("no study at") && e.contains("nope"), "{e}");
    }
}
