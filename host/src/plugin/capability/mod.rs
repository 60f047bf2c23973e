//! Host capabilities, one module each (`log`, `storage`, `llm`, `jobs`): its grant check, its quota
//! and its backend trait live together, so adding a backend or a capability touches one module.
//!
//! [`Capabilities`] is the registry a caller builds once per study: the grants (`strategy.allow`)
//! plus the backends. [`Capabilities::bind`] turns it into a [`CapabilitySet`] for one plugin: the
//! same registry with the plugin's name, its output budget and its notice sink, shared by every
//! instance of that plugin (restarts included), so a restarted plugin neither gets a fresh log
//! budget nor repeats its "not granted" notices. Each [`super::PluginState`] holds a clone.
//!
//! An ungranted call never traps. `llm.chat`, `storage.set` and `storage.delete` return an error
//! naming the grant; `log` (no return value in WIT 0.1) is dropped and `storage.get` (an option) is
//! "absent". In every case the first ungranted use of each capability is reported once per plugin:
//! a warning in the host log and a [`Notice::Ungranted`] for the caller to show.

pub mod jobs;
pub mod llm;
pub mod log;
pub mod storage;

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

pub use self::llm::{LlmBackend, LlmError};
pub use self::log::{LogBudget, LogLimits};
pub use self::storage::{MemoryStorage, Storage, StorageBackend, StorageError, StorageQuota};
pub use jobs::{JobsBackend, JobsError};

/// A host capability a plugin may be granted.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Capability {
    Log,
    Storage,
    Llm,
    Jobs,
}

impl Capability {
    pub const ALL: [Capability; 4] = [Capability::Log, Capability::Storage, Capability::Llm, Capability::Jobs];

    /// The name used in `strategy.allow`, in `info.capabilities` and in the WIT interface.
    pub fn name(self) -> &'static str {
        match self {
            Capability::Log => "log",
            Capability::Storage => "storage",
            Capability::Llm => "llm",
            Capability::Jobs => "jobs",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

impl std::fmt::Display for Capability {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// The capabilities a plugin was granted (`strategy.allow` in the config).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Grants {
    pub log: bool,
    pub storage: bool,
    pub llm: bool,
    /// Only meaningful for agent plugins (the `agent-plugin` world).
    pub jobs: bool,
}

impl Grants {
    pub fn from_list(allow: &[String]) -> Grants {
        let has = |c: Capability| allow.iter().any(|a| a == c.name());
        Grants {
            log: has(Capability::Log),
            storage: has(Capability::Storage),
            llm: has(Capability::Llm),
            jobs: has(Capability::Jobs),
        }
    }

    pub fn allows(&self, c: Capability) -> bool {
        match c {
            Capability::Log => self.log,
            Capability::Storage => self.storage,
            Capability::Llm => self.llm,
            Capability::Jobs => self.jobs,
        }
    }
}

/// Something the host noticed about a plugin that is not a fault: the caller shows it to the user
/// and records it (the campaign as a study event).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Notice {
    /// The first use of an ungranted capability (reported once per capability per plugin).
    Ungranted { plugin: String, capability: Capability, call: &'static str },
    /// Output over the log budget was dropped; reported when the budget window ends or the call returns.
    Suppressed { plugin: String, lines: u64, bytes: u64 },
}

impl std::fmt::Display for Notice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Notice::Ungranted { plugin, capability, call } => write!(
                f,
                "plugin `{plugin}` called {call}, which is not granted: add \"{capability}\" to strategy.allow"
            ),
            Notice::Suppressed { plugin, lines, bytes } => write!(
                f,
                "plugin `{plugin}`: {lines} lines ({bytes} bytes) suppressed: it wrote more than its log budget"
            ),
        }
    }
}

/// The registry: grants and backends for one study, from which each plugin's store state is made.
#[derive(Clone)]
pub struct Capabilities {
    pub grants: Grants,
    storage: Arc<dyn StorageBackend>,
    storage_quota: StorageQuota,
    llm: Option<Arc<dyn LlmBackend>>,
    llm_timeout: Duration,
    log_limits: LogLimits,
    jobs: Option<Arc<dyn JobsBackend>>,
}

/// How long one `llm.chat` may take before the host gives up on it (and the plugin gets an
/// `unavailable` error); the plugin's own deadline does not run meanwhile.
pub const DEFAULT_LLM_TIMEOUT: Duration = Duration::from_secs(120);

impl Capabilities {
    /// Grants plus a storage backend; no LLM service, default quotas and log budget.
    pub fn new(grants: Grants, storage: impl Into<Arc<dyn StorageBackend>>) -> Capabilities {
        Capabilities {
            grants,
            storage: storage.into(),
            storage_quota: StorageQuota::default(),
            llm: None,
            llm_timeout: DEFAULT_LLM_TIMEOUT,
            log_limits: LogLimits::default(),
            jobs: None,
        }
    }

    /// The campaign's trial execution behind `jobs` (agent plugins).
    pub fn with_jobs(mut self, backend: Arc<dyn JobsBackend>) -> Capabilities {
        self.jobs = Some(backend);
        self
    }

    /// The LLM service behind `llm.chat`. Without one, a granted call returns `not-configured`.
    pub fn with_llm(mut self, backend: Arc<dyn LlmBackend>) -> Capabilities {
        self.llm = Some(backend);
        self
    }

    /// The host-side limit on one `llm.chat` call.
    pub fn with_llm_timeout(mut self, timeout: Duration) -> Capabilities {
        self.llm_timeout = timeout;
        self
    }

    pub fn with_storage_quota(mut self, quota: StorageQuota) -> Capabilities {
        self.storage_quota = quota;
        self
    }

    pub fn with_log_limits(mut self, limits: LogLimits) -> Capabilities {
        self.log_limits = limits;
        self
    }

    /// The registry as seen by one plugin (shared by all its instances).
    pub fn bind(&self, plugin: Arc<str>) -> CapabilitySet {
        CapabilitySet {
            plugin,
            caps: self.clone(),
            log_budget: Arc::new(Mutex::new(LogBudget::new(self.log_limits.clone()))),
            notices: Arc::default(),
        }
    }
}

#[derive(Default)]
struct Notices {
    pending: Vec<Notice>,
    /// Capabilities whose ungranted use was already reported, by [`Capability::index`].
    reported: [bool; 4],
}

/// [`Capabilities`] bound to one plugin: what its store state calls into.
#[derive(Clone)]
pub struct CapabilitySet {
    plugin: Arc<str>,
    caps: Capabilities,
    log_budget: Arc<Mutex<LogBudget>>,
    notices: Arc<Mutex<Notices>>,
}

/// A poisoned lock only means another thread panicked mid-update of a counter: keep going.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl CapabilitySet {
    pub fn plugin(&self) -> &Arc<str> {
        &self.plugin
    }

    pub fn grants(&self) -> &Grants {
        &self.caps.grants
    }

    /// Whether `capability` is granted; the first refusal per capability is reported (log + notice).
    pub(crate) fn check(&self, capability: Capability, call: &'static str) -> bool {
        if self.caps.grants.allows(capability) {
            return true;
        }
        let mut n = lock(&self.notices);
        if !n.reported[capability.index()] {
            n.reported[capability.index()] = true;
            let notice = Notice::Ungranted { plugin: self.plugin.to_string(), capability, call };
            tracing::warn!(target: "plugin", plugin = %self.plugin, "{notice}");
            n.pending.push(notice);
        }
        false
    }

    /// The error message an ungranted call returns to the plugin (WIT `string` / `not-granted`).
    pub(crate) fn not_granted(&self, capability: Capability) -> String {
        format!(
            "{capability} is not granted to plugin `{}`: add \"{capability}\" to strategy.allow in the study config",
            self.plugin
        )
    }

    pub(crate) fn notify(&self, notice: Notice) {
        lock(&self.notices).pending.push(notice);
    }

    /// Notices since the last call, oldest first.
    pub fn take_notices(&self) -> Vec<Notice> {
        std::mem::take(&mut lock(&self.notices).pending)
    }

    pub(crate) fn log_budget(&self) -> MutexGuard<'_, LogBudget> {
        lock(&self.log_budget)
    }

    /// Starts a plugin call: the per-call log budget starts afresh.
    pub(crate) fn begin_call(&self) {
        self.log_budget().begin_call();
    }

    /// Ends a plugin call: reports output suppressed during it (one log line and one notice).
    pub(crate) fn end_call(&self) {
        let suppressed = self.log_budget().take_suppressed();
        if let Some(s) = suppressed {
            self::log::report_suppressed(self, s);
        }
    }

    pub(crate) fn storage(&self) -> &Arc<dyn StorageBackend> {
        &self.caps.storage
    }

    pub(crate) fn storage_quota(&self) -> &StorageQuota {
        &self.caps.storage_quota
    }

    pub(crate) fn llm(&self) -> Option<&Arc<dyn LlmBackend>> {
        self.caps.llm.as_ref()
    }

    pub(crate) fn llm_timeout(&self) -> Duration {
        self.caps.llm_timeout
    }

    pub(crate) fn jobs(&self) -> Option<&Arc<dyn JobsBackend>> {
        self.caps.jobs.as_ref()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grants_from_the_allow_list() {
        let g = Grants::from_list(&["log".into(), "jobs".into(), "nonsense".into()]);
        assert!(g.allows(Capability::Log) && g.allows(Capability::Jobs));
        assert!(!g.allows(Capability::Storage) && !g.allows(Capability::Llm));
    }

    #[test]
    fn an_ungranted_use_is_reported_once_per_capability() {
        let set = Capabilities::new(Grants::default(), Storage::memory()).bind("p".into());
        assert!(!set.check(Capability::Storage, "storage.get"));
        assert!(!set.check(Capability::Storage, "storage.set"));
        assert!(!set.check(Capability::Log, "log"));
        let notices = set.take_notices();
        assert_eq!(notices.len(), 2, "{notices:?}");
        assert_eq!(
            notices[0].to_string(),
            "plugin `p` called storage.get, which is not granted: add \"storage\" to strategy.allow"
        );
        assert!(set.take_notices().is_empty());
        // A clone (another instance of the same plugin) shares the record.
        assert!(!set.clone().check(Capability::Log, "log"));
        assert!(set.take_notices().is_empty());
    }
}
