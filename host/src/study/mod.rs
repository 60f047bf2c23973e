//! The study database: one SQLite file per study directory.
//!
//! Invariants:
//! - A trial row is written (state `pending`) before its job is submitted, and the job id is
//!   stored before the host waits on it. A crash at any point therefore leaves every started job
//!   findable on resume.
//! - A finished trial (completed, failed, pruned) is never modified again.
//! - Writes are single transactions. On a local filesystem in WAL mode with `synchronous=NORMAL`:
//!   a committed write survives the host process being killed; only an OS crash or power loss can
//!   take back the last few commits (SQLite's documented WAL trade-off), never corrupt the file.
//!   On a network filesystem (NFS, Lustre, GPFS, CIFS, BeeGFS: a login node's home or /lus) WAL is
//!   unsafe, because its index lives in shared memory that such filesystems do not keep coherent
//!   between clients; there the study uses a rollback journal (`journal_mode=DELETE`) with
//!   `synchronous=FULL`, which needs only the file itself. See [`Durability`] and [`fs`].
//! - Enqueued trials (chosen by the user) wait in the `queue` table; [`StudyDb::take_queued`] turns
//!   one into a pending trial in the same transaction that removes it, so a crash never runs one
//!   twice or loses one.
//!
//! This module knows nothing about plugins or executors; it stores what it is given.

pub mod fs;
pub mod llm_log;
pub mod lock;

pub use fs::{Fs, NetFs};
pub use lock::{Holder, LockError, StudyLock};

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};
use serde_json::{Map, Value as Json};

use crate::space::Metrics;

pub const DB_FILE: &str = "study.db";
/// 2: `trial.job_handle` (an executor's serializable handle) and the `cancelled` state.
/// 3: the `queue` table (enqueued trials) and `trial.source` (where a trial came from).
/// 4: `trial.parent` (the trial whose checkpoint an agent's trial started from).
const SCHEMA_VERSION: i64 = 4;

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
    #[error("enqueued trial #{0} is not in the queue (already taken?)")]
    NotQueued(u64),
    #[error(
        "study database {path}: SQLite would not switch to journal_mode={wanted} (it stays `{got}`); \
         is another process (an older alcf-host) holding the study open?"
    )]
    JournalMode { path: PathBuf, wanted: &'static str, got: String },
}

/// How the study database makes commits durable, chosen from the filesystem it is on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// Local filesystem: `journal_mode=WAL`, `synchronous=NORMAL`. Commits cost no fsync each and
    /// survive the host being killed; an OS crash may take back the last ones.
    Wal,
    /// Network filesystem: `journal_mode=DELETE`, `synchronous=FULL`. WAL's shared-memory index is
    /// not coherent across network clients; a rollback journal needs only the file, and FULL syncs
    /// it on every commit, since a client's write cache is one more place to lose a commit.
    Rollback,
    /// [`StudyDb::in_memory`]: nothing is kept.
    Memory,
}

impl Durability {
    pub fn for_fs(fs: Fs) -> Durability {
        if fs.is_network() { Durability::Rollback } else { Durability::Wal }
    }

    /// The SQLite settings, as recorded in the study's meta and events.
    pub fn pragmas(self) -> &'static str {
        match self {
            Durability::Wal => "journal_mode=WAL synchronous=NORMAL",
            Durability::Rollback => "journal_mode=DELETE synchronous=FULL",
            Durability::Memory => "journal_mode=MEMORY",
        }
    }
}

/// A trial the user chose, waiting to be run before the strategy is asked.
#[derive(Debug, Clone, PartialEq)]
pub struct Queued {
    pub id: u64,
    pub params: Map<String, Json>,
    /// Where it came from: `config` (`[[study.enqueue]]`) or `cli` (`alcf-host study enqueue`).
    pub source: String,
    pub created_at: f64,
}

/// What [`StudyDb::enqueue_detailed`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Enqueued {
    /// Added to the queue with this id.
    Queued(u64),
    /// The same parameters were already queued, with this id.
    AlreadyQueued(u64),
    /// The same parameters are already a trial, with this id.
    AlreadyTrial(u64),
}

impl Enqueued {
    pub fn id(self) -> u64 {
        match self {
            Enqueued::Queued(id) | Enqueued::AlreadyQueued(id) | Enqueued::AlreadyTrial(id) => id,
        }
    }
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

#[cfg(test)]
impl StudyMeta {
    /// A small study of one float parameter, for unit tests.
    pub(crate) fn example() -> StudyMeta {
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
    /// Where the trial came from when the user chose it (`config`, `cli`); `None`: the strategy.
    pub source: Option<String>,
    /// The trial whose directory (checkpoint) this one was started from, by an agent.
    pub parent: Option<u64>,
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
    fs: Fs,
    durability: Durability,
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
    log_tail TEXT,
    source TEXT,
    parent INTEGER
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
CREATE TABLE IF NOT EXISTS llm_call (
    id INTEGER PRIMARY KEY,
    at REAL NOT NULL,
    plugin TEXT NOT NULL,
    request_hash TEXT NOT NULL,
    request TEXT NOT NULL,
    model TEXT NOT NULL,
    outcome TEXT NOT NULL,
    http_status INTEGER,
    response TEXT,
    content TEXT,
    prompt_tokens INTEGER NOT NULL DEFAULT 0,
    completion_tokens INTEGER NOT NULL DEFAULT 0,
    latency_s REAL NOT NULL DEFAULT 0,
    retries INTEGER NOT NULL DEFAULT 0,
    attempts TEXT,
    error TEXT,
    replay_of INTEGER
);
CREATE INDEX IF NOT EXISTS llm_call_request ON llm_call(plugin, request_hash);
CREATE TABLE IF NOT EXISTS queue (
    id INTEGER PRIMARY KEY,
    params TEXT NOT NULL,
    source TEXT NOT NULL,
    created_at REAL NOT NULL
);
";

impl StudyDb {
    /// Creates a new study in `dir` (created if missing). Refuses to overwrite an existing one.
    pub fn create(dir: &Path, meta: &StudyMeta) -> Result<StudyDb, StudyError> {
        StudyDb::create_with(dir, meta, Fs::detect(dir))
    }

    /// As [`StudyDb::create`], on a filesystem already determined (or forced, in tests).
    pub fn create_with(dir: &Path, meta: &StudyMeta, fs: Fs) -> Result<StudyDb, StudyError> {
        let path = dir.join(DB_FILE);
        if path.exists() {
            return Err(StudyError::Exists(dir.to_path_buf()));
        }
        std::fs::create_dir_all(dir)
            .map_err(|e| StudyError::Corrupt(format!("cannot create {}: {e}", dir.display())))?;
        let db = StudyDb::connect(path, fs)?;
        db.write_meta(meta)?;
        db.record_durability()?;
        Ok(db)
    }

    /// A study that lives in memory only: in-process comparisons, which keep no study directory.
    pub fn in_memory(meta: &StudyMeta) -> Result<StudyDb, StudyError> {
        let path = PathBuf::from(":memory:");
        let err = |source| StudyError::Sqlite { path: path.clone(), source };
        let conn = Connection::open_in_memory().map_err(err)?;
        conn.execute_batch(SCHEMA).map_err(err)?;
        let db = StudyDb { path, conn: Mutex::new(conn), fs: Fs::Local, durability: Durability::Memory };
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
        StudyDb::open_with(dir, Fs::detect(dir))
    }

    /// Opens the study in `dir` in the mode that is safe on `fs` ([`Durability::for_fs`]).
    pub fn open_with(dir: &Path, fs: Fs) -> Result<StudyDb, StudyError> {
        let path = dir.join(DB_FILE);
        if !path.exists() {
            return Err(StudyError::NotFound(dir.to_path_buf()));
        }
        // The version is checked before anything is written: a newer schema is left untouched.
        let found = {
            let err = |source| StudyError::Sqlite { path: path.clone(), source };
            let conn = Connection::open_with_flags(&path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY).map_err(err)?;
            conn.busy_timeout(std::time::Duration::from_secs(10)).map_err(err)?;
            let v: Option<String> = conn
                .query_row("SELECT value FROM meta WHERE key = 'schema_version'", [], |r| r.get(0))
                .optional()
                .map_err(err)?;
            v.and_then(|v| v.parse::<i64>().ok()).unwrap_or(0)
        };
        if found > SCHEMA_VERSION {
            return Err(StudyError::Schema { path, found });
        }
        let db = StudyDb::connect(path, fs)?;
        db.record_durability()?;
        Ok(db)
    }

    /// Opens the study in `dir` to read only (the dashboard): no schema, journal or durability
    /// change, no write of any kind, and a short busy timeout, so a running host is never held up.
    pub fn open_read_only(dir: &Path) -> Result<StudyDb, StudyError> {
        let path = dir.join(DB_FILE);
        if !path.exists() {
            return Err(StudyError::NotFound(dir.to_path_buf()));
        }
        let err = |source| StudyError::Sqlite { path: path.clone(), source };
        let conn = Connection::open_with_flags(&path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY).map_err(err)?;
        conn.busy_timeout(std::time::Duration::from_secs(2)).map_err(err)?;
        let fs = Fs::detect(dir);
        Ok(StudyDb { path, conn: Mutex::new(conn), fs, durability: Durability::for_fs(fs) })
    }

    fn connect(path: PathBuf, fs: Fs) -> Result<StudyDb, StudyError> {
        let durability = Durability::for_fs(fs);
        let err = |source| StudyError::Sqlite { path: path.clone(), source };
        let conn = Connection::open(&path).map_err(err)?;
        conn.busy_timeout(std::time::Duration::from_secs(10)).map_err(err)?;
        let (mode, sync) = match durability {
            // WAL + NORMAL: commits are durable against process death and cost no fsync each.
            Durability::Wal => ("wal", "NORMAL"),
            // See `Durability::Rollback`. Switching an existing WAL study here checkpoints and
            // removes its -wal and -shm files.
            Durability::Rollback | Durability::Memory => ("delete", "FULL"),
        };
        let got: String = conn.pragma_update_and_check(None, "journal_mode", mode, |r| r.get(0)).map_err(err)?;
        if !got.eq_ignore_ascii_case(mode) {
            return Err(StudyError::JournalMode { path, wanted: mode, got });
        }
        conn.pragma_update(None, "synchronous", sync).map_err(err)?;
        conn.execute_batch(SCHEMA).map_err(err)?;
        migrate(&conn).map_err(err)?;
        if durability == Durability::Rollback {
            tracing::info!(
                "study {} is on {} (a network filesystem): SQLite uses a rollback journal \
                 (journal_mode=DELETE, synchronous=FULL), because WAL needs shared memory that network filesystems do not provide",
                path.parent().unwrap_or(&path).display(),
                fs.describe()
            );
        }
        Ok(StudyDb { path, conn: Mutex::new(conn), fs, durability })
    }

    /// Records the durability mode in the meta table, and in the event log whenever it is new or
    /// changed (a study copied from a laptop to Lustre), so `study show` can say how it was kept.
    fn record_durability(&self) -> Result<(), StudyError> {
        let now = format!("{} ({})", self.durability.pragmas(), self.fs.describe());
        if self.meta_value("durability")?.as_deref() != Some(now.as_str()) {
            self.set_meta("durability", &now)?;
            self.event("durability", None, &now)?;
        }
        Ok(())
    }

    /// Records in the event log that `lock` took over a dead holder's stale lock, if it did (the
    /// lock is taken before logging is set up, so the event log is where the note survives).
    pub fn note_lock(&self, lock: &StudyLock) -> Result<(), StudyError> {
        match lock.took_over() {
            Some(old) => self.event(
                "lock",
                None,
                &format!("took over the stale lock of {}: that process is gone (killed or crashed)", old.describe()),
            ),
            None => Ok(()),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The filesystem the study is on, as it was opened.
    pub fn fs(&self) -> Fs {
        self.fs
    }

    pub fn durability(&self) -> Durability {
        self.durability
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

    /// A meta value of the study's own keys (`executor.*`, `config_file`); `None` when unset.
    pub fn get_meta(&self, key: &str) -> Result<Option<String>, StudyError> {
        self.meta_value(key)
    }

    pub fn delete_meta(&self, key: &str) -> Result<(), StudyError> {
        self.with(|c| c.prepare_cached("DELETE FROM meta WHERE key = ?1")?.execute([key]).map(drop))
    }

    /// Puts a user-chosen trial in line (`source`: `config` or `cli`), unless the same parameters
    /// are already queued or already a trial. Returns the queue id of the new or identical queued
    /// entry, or the id of the identical trial (see [`StudyDb::enqueue_detailed`] to tell which).
    ///
    /// `params` must be validated against the space first, in its stored form
    /// ([`crate::space::Assignment::to_json`]), so that identical choices compare equal.
    pub fn enqueue(&self, params: &Map<String, Json>, source: &str) -> Result<u64, StudyError> {
        self.enqueue_detailed(params, source).map(Enqueued::id)
    }

    pub fn enqueue_detailed(&self, params: &Map<String, Json>, source: &str) -> Result<Enqueued, StudyError> {
        let key = canonical(params);
        let text = Json::Object(params.clone()).to_string();
        self.with(|c| {
            // IMMEDIATE: the look for duplicates and the insert are one step for concurrent enqueuers.
            let tx = rusqlite::Transaction::new_unchecked(c, TransactionBehavior::Immediate)?;
            let same = |sql: &str| -> rusqlite::Result<Option<u64>> {
                let mut stmt = tx.prepare_cached(sql)?;
                let mut rows = stmt.query([])?;
                while let Some(r) = rows.next()? {
                    let stored: String = r.get(1)?;
                    if serde_json::from_str::<Map<String, Json>>(&stored).is_ok_and(|m| canonical(&m) == key) {
                        return Ok(Some(r.get::<_, i64>(0)? as u64));
                    }
                }
                Ok(None)
            };
            if let Some(id) = same("SELECT id, params FROM queue ORDER BY id")? {
                return Ok(Enqueued::AlreadyQueued(id));
            }
            if let Some(id) = same("SELECT id, params FROM trial ORDER BY id")? {
                return Ok(Enqueued::AlreadyTrial(id));
            }
            tx.prepare_cached("INSERT INTO queue(params, source, created_at) VALUES (?1, ?2, ?3)")?
                .execute(params![text, source, now()])?;
            let id = tx.last_insert_rowid() as u64;
            tx.commit()?;
            Ok(Enqueued::Queued(id))
        })
    }

    /// The enqueued trials, first in line first.
    pub fn queued(&self) -> Result<Vec<Queued>, StudyError> {
        let rows = self.with(|c| {
            let mut stmt = c.prepare_cached("SELECT id, params, source, created_at FROM queue ORDER BY id")?;
            let rows = stmt.query_map([], |r| {
                Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?, r.get::<_, String>(2)?, r.get::<_, f64>(3)?))
            })?;
            rows.collect::<rusqlite::Result<Vec<_>>>()
        })?;
        rows.into_iter()
            .map(|(id, params, source, created_at)| match serde_json::from_str(&params) {
                Ok(Json::Object(params)) => Ok(Queued { id: id as u64, params, source, created_at }),
                _ => Err(StudyError::Corrupt(format!(
                    "{}: enqueued trial {id}: params are not a JSON object",
                    self.path.display()
                ))),
            })
            .collect()
    }

    /// Turns the enqueued trial `queue_id` into a pending trial (as [`StudyDb::insert_trial`], with
    /// its source recorded) and removes it from the queue, in one transaction. Returns the trial id.
    pub fn take_queued(&self, queue_id: u64) -> Result<u64, StudyError> {
        let taken = self.with(|c| {
            let tx = rusqlite::Transaction::new_unchecked(c, TransactionBehavior::Immediate)?;
            let Some((params, source)) = tx
                .prepare_cached("SELECT params, source FROM queue WHERE id = ?1")?
                .query_row([queue_id as i64], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))
                .optional()?
            else {
                return Ok(None);
            };
            tx.prepare_cached("INSERT INTO trial(params, state, created_at, source) VALUES (?1, 'pending', ?2, ?3)")?
                .execute(params![params, now(), source])?;
            let id = tx.last_insert_rowid() as u64;
            tx.prepare_cached("DELETE FROM queue WHERE id = ?1")?.execute([queue_id as i64])?;
            tx.commit()?;
            Ok(Some(id))
        })?;
        taken.ok_or(StudyError::NotQueued(queue_id))
    }

    /// Writes a new trial in state `pending` and returns its id.
    pub fn insert_trial(&self, params: &Map<String, Json>) -> Result<u64, StudyError> {
        self.insert_child(params, None)
    }

    /// A new `pending` trial started from `parent`'s directory (an agent's `jobs.submit`).
    pub fn insert_child(&self, params: &Map<String, Json>, parent: Option<u64>) -> Result<u64, StudyError> {
        let text = Json::Object(params.clone()).to_string();
        self.with(|c| {
            c.prepare_cached("INSERT INTO trial(params, state, created_at, parent) VALUES (?1, 'pending', ?2, ?3)")?
                .execute(params![text, now(), parent.map(|p| p as i64)])?;
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
                        failure, log_tail, job_handle, source, parent FROM trial ORDER BY id",
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
                    r.get::<_, Option<String>>(14)?,
                    r.get::<_, Option<i64>>(15)?,
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
                    source,
                    parent,
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
                        source,
                        parent: parent.map(|p| p as u64),
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

/// Parameters as one comparable text: keys sorted, values as serde_json prints them (shortest
/// round-trip floats), so the same choice compares equal however the map was ordered.
fn canonical(params: &Map<String, Json>) -> String {
    let sorted: std::collections::BTreeMap<&String, &Json> = params.iter().collect();
    serde_json::to_string(&sorted).unwrap_or_default()
}

/// Brings a study written by an older alcf-host up to this schema, in place.
fn migrate(conn: &Connection) -> rusqlite::Result<()> {
    let has_handle: bool =
        conn.prepare("SELECT 1 FROM pragma_table_info('trial') WHERE name = 'job_handle'")?.exists([])?;
    if !has_handle {
        conn.execute_batch("ALTER TABLE trial ADD COLUMN job_handle TEXT")?;
    }
    let has_source: bool = conn.prepare("SELECT 1 FROM pragma_table_info('trial') WHERE name = 'source'")?.exists([])?;
    if !has_source {
        conn.execute_batch("ALTER TABLE trial ADD COLUMN source TEXT")?;
    }
    let has_parent: bool = conn.prepare("SELECT 1 FROM pragma_table_info('trial') WHERE name = 'parent'")?.exists([])?;
    if !has_parent {
        conn.execute_batch("ALTER TABLE trial ADD COLUMN parent INTEGER")?;
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
        StudyMeta::example()
    }

    fn journal_mode(db: &StudyDb) -> String {
        db.with(|c| c.query_row("PRAGMA journal_mode", [], |r| r.get(0))).unwrap()
    }

    fn lifecycle_survives_reopen(fs: Fs) {
        let dir = tempfile::tempdir().unwrap();
        let db = StudyDb::create_with(dir.path(), &meta(), fs).unwrap();
        assert!(matches!(StudyDb::create_with(dir.path(), &meta(), fs), Err(StudyError::Exists(_))));
        let mut p = Map::new();
        p.insert("x".into(), Json::from(0.5));
        let a = db.insert_trial(&p).unwrap();
        let b = db.insert_trial(&p).unwrap();
        db.mark_running(a, "job-1", "{}").unwrap();
        db.mark_running(b, "job-2", "{}").unwrap();
        assert!(db.mark_running(a, "job-3", "{}").is_err(), "a running trial is not pending");
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
        db.mark_cancelled(&[a]).unwrap();
        assert_eq!(db.reset_for_rerun(b).unwrap(), 2);
        db.storage_set("k", b"v").unwrap();
        db.event("resume", None, "hello").unwrap();
        drop(db);

        let db = StudyDb::open_with(dir.path(), fs).unwrap();
        assert_eq!(db.durability(), Durability::for_fs(fs));
        assert_eq!(journal_mode(&db), if fs.is_network() { "delete" } else { "wal" });
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
        let events = db.events().unwrap();
        let kinds: Vec<_> = events.iter().map(|e| e.kind.as_str()).collect();
        // The mode is recorded once, at creation; reopening in the same mode adds nothing.
        assert_eq!(kinds, ["durability", "resume"]);
        assert!(events[0].message.contains(Durability::for_fs(fs).pragmas()), "{}", events[0].message);
        if fs.is_network() {
            assert!(!dir.path().join("study.db-wal").exists() && !dir.path().join("study.db-shm").exists());
        }
    }

    #[test]
    fn trial_lifecycle_survives_reopen() {
        lifecycle_survives_reopen(Fs::Local);
    }

    #[test]
    fn trial_lifecycle_survives_reopen_on_a_network_fs() {
        lifecycle_survives_reopen(Fs::Network(NetFs::Lustre));
    }

    #[test]
    fn a_study_moved_to_a_network_fs_leaves_wal_and_says_so() {
        let dir = tempfile::tempdir().unwrap();
        let db = StudyDb::create_with(dir.path(), &meta(), Fs::Local).unwrap();
        let mut p = Map::new();
        p.insert("x".into(), Json::from(0.1 + 0.2));
        db.insert_trial(&p).unwrap();
        drop(db);
        let db = StudyDb::open_with(dir.path(), Fs::Network(NetFs::Nfs)).unwrap();
        assert_eq!(journal_mode(&db), "delete");
        assert_eq!(db.trials().unwrap().len(), 1);
        let events = db.events().unwrap();
        assert_eq!(events.len(), 2);
        assert!(events[1].message.contains("journal_mode=DELETE") && events[1].message.contains("NFS"));
        assert!(!dir.path().join("study.db-wal").exists());
    }

    fn params(x: f64, k: &str) -> Map<String, Json> {
        let mut p = Map::new();
        p.insert("x".into(), Json::from(x));
        p.insert("k".into(), Json::from(k));
        p
    }

    #[test]
    fn queued_trials_are_taken_in_order_once() {
        let dir = tempfile::tempdir().unwrap();
        let db = StudyDb::create_with(dir.path(), &meta(), Fs::Local).unwrap();
        let q1 = db.enqueue(&params(0.1, "a"), "config").unwrap();
        let q2 = db.enqueue(&params(0.2, "a"), "cli").unwrap();
        // The same choice, in another key order, is not queued twice.
        let mut reordered = Map::new();
        reordered.insert("k".into(), Json::from("a"));
        reordered.insert("x".into(), Json::from(0.1));
        assert_eq!(db.enqueue_detailed(&reordered, "cli").unwrap(), Enqueued::AlreadyQueued(q1));

        let queue = db.queued().unwrap();
        assert_eq!(queue.iter().map(|q| (q.id, q.source.as_str())).collect::<Vec<_>>(), [(q1, "config"), (q2, "cli")]);
        assert_eq!(queue[0].params, params(0.1, "a"));

        let t1 = db.take_queued(queue[0].id).unwrap();
        assert!(matches!(db.take_queued(queue[0].id), Err(StudyError::NotQueued(id)) if id == q1));
        assert_eq!(db.queued().unwrap().len(), 1);
        // Now it is a trial: enqueuing it again points at the trial.
        assert_eq!(db.enqueue_detailed(&params(0.1, "a"), "cli").unwrap(), Enqueued::AlreadyTrial(t1));
        let s = db.insert_trial(&params(0.3, "b")).unwrap();
        assert_eq!(db.enqueue(&params(0.3, "b"), "cli").unwrap(), s);
        drop(db);

        let db = StudyDb::open_with(dir.path(), Fs::Local).unwrap();
        let t2 = db.take_queued(q2).unwrap();
        assert!(db.queued().unwrap().is_empty());
        let trials = db.trials().unwrap();
        let row = |id| trials.iter().find(|t| t.id == id).unwrap();
        assert_eq!((row(t1).state, row(t1).source.as_deref()), (TrialState::Pending, Some("config")));
        assert_eq!(row(t1).params, params(0.1, "a"));
        assert_eq!(row(t2).source.as_deref(), Some("cli"));
        assert_eq!(row(s).source, None, "a strategy's trial has no source");
    }

    #[test]
    fn a_taken_over_lock_is_recorded() {
        let dir = tempfile::tempdir().unwrap();
        let db = StudyDb::create_with(dir.path(), &meta(), Fs::Local).unwrap();
        let lock = StudyLock::acquire_on(dir.path(), Fs::Local).unwrap();
        db.note_lock(&lock).unwrap();
        assert_eq!(db.events().unwrap().len(), 1, "a clean acquire records nothing");
        // A holder killed with SIGKILL leaves its file; the next acquire takes it over.
        std::mem::forget(lock);
        let lock = StudyLock::acquire_on(dir.path(), Fs::Network(NetFs::Nfs));
        // Still alive (this very process), so not stale: refused, never taken over.
        assert!(matches!(lock, Err(LockError::Busy { .. })));
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let dead = Holder { pid: child.id(), ..Holder::this_process() };
        child.wait().unwrap();
        std::fs::write(dir.path().join(lock::LOCK_FILE), serde_json::to_string(&dead).unwrap()).unwrap();
        let lock = StudyLock::acquire_on(dir.path(), Fs::Network(NetFs::Nfs)).unwrap();
        db.note_lock(&lock).unwrap();
        let last = db.events().unwrap().pop().unwrap();
        assert_eq!(last.kind, "lock");
        assert!(last.message.contains(&format!("pid {}", dead.pid)), "{}", last.message);
    }

    #[test]
    fn a_version_2_study_is_migrated_to_4() {
        let dir = tempfile::tempdir().unwrap();
        drop(StudyDb::create_with(dir.path(), &meta(), Fs::Local).unwrap());
        {
            let c = Connection::open(dir.path().join(DB_FILE)).unwrap();
            c.execute_batch(
                "DROP TABLE queue; ALTER TABLE trial DROP COLUMN source; ALTER TABLE trial DROP COLUMN parent;
                 UPDATE meta SET value = '2' WHERE key = 'schema_version';
                 INSERT INTO trial(params, state, created_at) VALUES ('{\"x\":0.5}', 'completed', 1.0);",
            )
            .unwrap();
        }
        let db = StudyDb::open_with(dir.path(), Fs::Local).unwrap();
        assert_eq!(db.meta_value("schema_version").unwrap().as_deref(), Some("4"));
        assert_eq!(db.trials().unwrap()[0].source, None);
        assert_eq!(db.trials().unwrap()[0].parent, None);
        let child = db.insert_child(&params(0.25, "b"), Some(1)).unwrap();
        assert_eq!(db.trials().unwrap().iter().find(|t| t.id == child).unwrap().parent, Some(1));
        db.enqueue(&params(0.5, "a"), "cli").unwrap();
        assert_eq!(db.queued().unwrap().len(), 1);
    }

    #[test]
    fn a_newer_study_is_refused_untouched() {
        let dir = tempfile::tempdir().unwrap();
        drop(StudyDb::create_with(dir.path(), &meta(), Fs::Local).unwrap());
        let c = Connection::open(dir.path().join(DB_FILE)).unwrap();
        c.execute("UPDATE meta SET value = '99' WHERE key = 'schema_version'", []).unwrap();
        drop(c);
        assert!(matches!(StudyDb::open_with(dir.path(), Fs::Local), Err(StudyError::Schema { found: 99, .. })));
    }

    #[test]
    fn stored_floats_read_back_bit_for_bit() {
        // Parameters and metrics are JSON text in the database; best parameters are copied from
        // `study show --json`, so the text must parse back to the very same f64.
        let dir = tempfile::tempdir().unwrap();
        let db = StudyDb::create_with(dir.path(), &meta(), Fs::Local).unwrap();
        let mut xs = vec![0.1 + 0.2, 1e-300, 123456.789e10, f64::MIN_POSITIVE, 5e-324, f64::MAX, 1.0 / 3.0];
        // A deterministic spread of bit patterns, where a best-effort float parser goes wrong.
        let mut state = 0x9E37_79B9_7F4A_7C15u64;
        for _ in 0..2000 {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let x = f64::from_bits(state >> 2); // positive, finite
            if x.is_finite() {
                xs.push(x);
            }
        }
        for x in &xs {
            let mut p = Map::new();
            p.insert("x".into(), Json::from(*x));
            let id = db.insert_trial(&p).unwrap();
            let f = Finish { metrics: [("m".to_string(), *x)].into(), ..Finish::failed("f".into()) };
            db.finish_trials(&[(id, f)]).unwrap();
        }
        for (t, x) in db.trials().unwrap().iter().zip(&xs) {
            assert_eq!(t.params["x"].as_f64().unwrap().to_bits(), x.to_bits(), "{x:e}");
            assert_eq!(t.metrics["m"].to_bits(), x.to_bits(), "{x:e}");
        }
    }

    #[test]
    fn missing_study_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let e = StudyDb::open(&dir.path().join("nope")).err().unwrap().to_string();
        assert!(e.contains("no study at") && e.contains("nope"), "{e}");
    }
}
