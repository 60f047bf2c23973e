//! The plugin runtime: loads strategy components, sandboxes them, and calls them under limits.
//!
//! - One [`wasmtime::Engine`] per process ([`PluginRuntime::shared`]), with epoch interruption
//!   driven by one ticker on its own OS thread, so a runaway guest is stopped even while it never
//!   yields. (`PluginRuntime::new` makes a private engine, for tests and benchmarks.)
//! - Compiled components are cached on disk, keyed by the component's SHA-256 and the engine's
//!   compatibility hash (wasmtime version and compiler settings), so a second start skips Cranelift.
//! - Each plugin instance lives in its own [`wasmtime::Store`] with a memory cap and a deadline per
//!   call: wall-clock time in the plugin, not counting time in host calls (`sandbox::CallClock`).
//!   After any trap the store is dropped: [`strategy::SandboxedStrategy`] rebuilds it by replaying
//!   the study history.
//! - Host capabilities (`capability`) are granted per plugin from a registry of grants and backends.
//!
//! Plugins never see credentials, files, sockets, environment variables or arguments: WASI is
//! linked with a context that grants nothing, and host capabilities are granted per plugin.

mod abi;
pub mod agent;
pub mod capability;
pub mod fault;
mod legacy;
pub mod sandbox;
pub mod strategy;

use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};
use wasmtime::component::{Component, HasSelf, Linker, types::ComponentItem};
use wasmtime::{Config, Engine};

pub use sandbox::PluginState;

/// The ABI this host implements: the WIT package and its version.
pub const ABI_PACKAGE: &str = "alcf:hpo";
pub const ABI_VERSION: &str = "0.2.0";

/// How often the epoch ticker advances; deadlines are counted in these ticks.
pub const EPOCH_TICK: Duration = Duration::from_millis(10);

pub(crate) mod bindings {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "strategy-plugin",
        imports: { "alcf:hpo/llm.chat": async, "alcf:hpo/llm.chat-structured": async, default: tracing },
        exports: { default: async },
    });
}

/// The `agent-plugin` world: the same types and capabilities as a strategy's (shared with
/// [`bindings`]), plus `jobs`, and the `agent` export.
pub(crate) mod agent_bindings {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "agent-plugin",
        imports: {
            "alcf:hpo/jobs.submit": async,
            "alcf:hpo/jobs.wait": async,
            "alcf:hpo/jobs.cancel": async,
            default: tracing,
        },
        exports: { default: async },
        with: {
            "alcf:hpo/types": crate::plugin::bindings::alcf::hpo::types,
            "alcf:hpo/log": crate::plugin::bindings::alcf::hpo::log,
            "alcf:hpo/storage": crate::plugin::bindings::alcf::hpo::storage,
            "alcf:hpo/llm": crate::plugin::bindings::alcf::hpo::llm,
        },
    });
}

#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error(
        "cannot read plugin {path}: {source}. Check the path (built plugins land in plugins/*.wasm; build them with scripts/build-plugins.sh)"
    )]
    Read { path: PathBuf, source: std::io::Error },
    #[error(
        "{path} is not a WebAssembly component: {message}. Build plugins with `cargo build --target wasm32-wasip2 --release`"
    )]
    Invalid { path: PathBuf, message: String },
    #[error(
        "{path} is not a strategy plugin: it exports [{exports}], not `{ABI_PACKAGE}/strategy@{ABI_VERSION}`. Write it with the plugin SDK (docs/plugin-guide.md)"
    )]
    NotAStrategy { path: PathBuf, exports: String },
    #[error(
        "{path} was built against plugin ABI {ABI_PACKAGE}@{found}, but this alcf-host speaks {ABI_PACKAGE}@{ABI_VERSION} (and runs plugins built against 0.1.x). Rebuild the plugin against this host's wit/ (or use a host release that speaks {found})"
    )]
    AbiMismatch { path: PathBuf, found: String },
    #[error("{path} imports {imports}, which this host does not provide to {kind} plugins")]
    UnknownImports { path: PathBuf, imports: String, kind: &'static str },
    #[error(
        "{path} is an agent plugin (it exports `{ABI_PACKAGE}/agent`): an agent drives a whole study with `alcf-host run --strategy`; it cannot serve as a [pruner] or a strategy in compare"
    )]
    IsAnAgent { path: PathBuf },
    #[error(
        "{path} is an agent plugin built against {ABI_PACKAGE}@{found}; agents need {ABI_PACKAGE}@{ABI_VERSION}: rebuild it against this host's wit/"
    )]
    OldAgent { path: PathBuf, found: String },
    #[error("{path}: {message}")]
    Link { path: PathBuf, message: String },
}

/// What `plugin inspect` shows and what the study records about a plugin file.
#[derive(Debug, Clone)]
pub struct ComponentSummary {
    pub path: PathBuf,
    pub sha256: String,
    pub size: u64,
    /// The version of the ABI package the component was built against.
    pub abi_version: String,
    pub imports: Vec<String>,
    pub exports: Vec<String>,
    /// Whether the compiled code came from the on-disk cache.
    pub cached: bool,
    pub load_time: Duration,
}

/// A compiled, type-checked strategy component, ready to instantiate any number of times.
pub struct LoadedPlugin {
    pub summary: ComponentSummary,
    pre: abi::Pre,
}

/// A compiled, type-checked agent component (`agent-plugin` world).
pub struct LoadedAgent {
    pub summary: ComponentSummary,
    pre: agent_bindings::AgentPluginPre<PluginState>,
}

/// Either kind of plugin, as `alcf-host run --strategy` accepts.
pub enum Loaded {
    Strategy(LoadedPlugin),
    Agent(LoadedAgent),
}

/// The engine, the linker with every host capability, and the epoch ticker: made once per process
/// (or once per [`PluginRuntime::new`]).
struct EngineShared {
    engine: Engine,
    linker: Linker<PluginState>,
    ticker_stop: Arc<AtomicBool>,
}

impl Drop for EngineShared {
    fn drop(&mut self) {
        self.ticker_stop.store(true, Ordering::Relaxed);
    }
}

/// The WebAssembly engine could not be set up (an unsupported CPU, no threads left).
#[derive(Debug, thiserror::Error)]
#[error("cannot start the WebAssembly engine: {0}")]
pub struct EngineError(String);

impl EngineShared {
    fn build() -> Result<EngineShared, EngineError> {
        let failed = |e: wasmtime::Error| EngineError(format!("{e:#}"));
        let mut config = Config::new();
        config.epoch_interruption(true);
        config.wasm_component_model(true);
        let engine = Engine::new(&config).map_err(failed)?;

        let mut linker = Linker::<PluginState>::new(&engine);
        // WASI is linked (Rust guests import it even when they compute only) but its context grants
        // nothing: no preopened directories, no sockets, no environment, stdin closed.
        wasmtime_wasi::p2::add_to_linker_async(&mut linker).map_err(failed)?;
        // Every capability is linked; each call checks the plugin's grants (capability::CapabilitySet).
        bindings::StrategyPlugin::add_to_linker::<_, HasSelf<_>>(&mut linker, |s| s).map_err(failed)?;
        // `jobs`, for agent plugins (strategy plugins may not import it: `check_kind`).
        agent_bindings::alcf::hpo::jobs::add_to_linker::<_, HasSelf<_>>(&mut linker, |s| s).map_err(failed)?;
        // And under 0.1's names, for plugins built against it (`legacy`).
        legacy::bindings::StrategyPlugin::add_to_linker::<_, HasSelf<_>>(&mut linker, |s| s).map_err(failed)?;

        let ticker_stop = Arc::new(AtomicBool::new(false));
        let stop = ticker_stop.clone();
        let ticking = engine.weak();
        std::thread::Builder::new()
            .name("alcf-epoch-ticker".into())
            .spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    std::thread::sleep(EPOCH_TICK);
                    match ticking.upgrade() {
                        Some(engine) => engine.increment_epoch(),
                        None => break,
                    }
                }
            })
            .map_err(|e| EngineError(format!("cannot start the epoch ticker thread: {e}")))?;
        Ok(EngineShared { engine, linker, ticker_stop })
    }
}

static SHARED: OnceLock<Arc<EngineShared>> = OnceLock::new();

/// A handle on an engine plus where it caches compiled components. Cheap to clone.
#[derive(Clone)]
pub struct PluginRuntime {
    shared: Arc<EngineShared>,
    cache_dir: Option<PathBuf>,
}

/// Where compiled components are cached unless configured otherwise.
pub fn default_cache_dir() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("ALCF_HOST_CACHE") {
        return Some(PathBuf::from(dir));
    }
    let base = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))?;
    Some(base.join("alcf-host").join("components"))
}

impl PluginRuntime {
    /// The process-wide engine (built on first use, with its one ticker thread), caching compiled
    /// components in `cache_dir` (`None`: no cache). Every command and every `compare` worker
    /// shares it: one Cranelift configuration, one ticker, compiled code shared between loads.
    pub fn shared(cache_dir: Option<PathBuf>) -> Result<PluginRuntime, EngineError> {
        let shared = match SHARED.get() {
            Some(s) => s.clone(),
            None => {
                let built = Arc::new(EngineShared::build()?);
                // Two threads racing here each build one; the loser's is dropped (and its ticker stops).
                SHARED.get_or_init(|| built).clone()
            }
        };
        Ok(PluginRuntime { shared, cache_dir })
    }

    /// A private engine with its own ticker, stopped when the last handle is dropped (tests that
    /// must not share compiled code or epochs).
    pub fn new(cache_dir: Option<PathBuf>) -> Result<PluginRuntime, EngineError> {
        Ok(PluginRuntime { shared: Arc::new(EngineShared::build()?), cache_dir })
    }

    pub fn engine(&self) -> &Engine {
        &self.shared.engine
    }

    /// Reads, compiles (or loads from the cache), checks the ABI of, and links a strategy plugin.
    pub fn load(&self, path: &Path) -> Result<LoadedPlugin, LoadError> {
        let (component, summary) = self.compile(path)?;
        self.link_strategy(component, summary)
    }

    /// A strategy or an agent, whichever the component exports.
    pub fn load_any(&self, path: &Path) -> Result<Loaded, LoadError> {
        let (component, summary) = self.compile(path)?;
        if exports_agent(&summary) {
            return self.link_agent(component, summary).map(Loaded::Agent);
        }
        self.link_strategy(component, summary).map(Loaded::Strategy)
    }

    fn link_agent(&self, component: Component, summary: ComponentSummary) -> Result<LoadedAgent, LoadError> {
        let path = summary.path.clone();
        check_abi(&summary)?;
        if summary.abi_version.starts_with(&format!("{}.", legacy::VERSION)) {
            return Err(LoadError::OldAgent { path, found: summary.abi_version });
        }
        check_imports(&summary, &["log", "storage", "llm", "jobs", "types"], "agent")?;
        let link = |e: wasmtime::Error| LoadError::Link { path: path.clone(), message: format!("{e:#}") };
        let pre = self.shared.linker.instantiate_pre(&component).map_err(link)?;
        let pre = agent_bindings::AgentPluginPre::new(pre).map_err(link)?;
        Ok(LoadedAgent { summary, pre })
    }

    fn link_strategy(&self, component: Component, summary: ComponentSummary) -> Result<LoadedPlugin, LoadError> {
        let path = summary.path.as_path();
        check_strategy(&summary)?;
        let pre = self
            .shared
            .linker
            .instantiate_pre(&component)
            .map_err(|e| LoadError::Link { path: path.into(), message: format!("{e:#}") })?;
        let pre = abi::Pre::new(pre, &summary.abi_version)
            .map_err(|e| LoadError::Link { path: path.into(), message: format!("{e:#}") })?;
        Ok(LoadedPlugin { summary, pre })
    }

    /// Compiles any component and describes its imports and exports, without requiring it to be
    /// a strategy (used by `plugin inspect`).
    pub fn compile(&self, path: &Path) -> Result<(Component, ComponentSummary), LoadError> {
        let start = Instant::now();
        let bytes = std::fs::read(path).map_err(|source| LoadError::Read { path: path.into(), source })?;
        let sha256 = hex(&Sha256::digest(&bytes));
        let invalid = |e: wasmtime::Error| LoadError::Invalid { path: path.into(), message: format!("{e:#}") };

        let cache_file = self.cache_dir.as_ref().map(|dir| {
            let mut h = std::hash::DefaultHasher::new();
            self.shared.engine.precompile_compatibility_hash().hash(&mut h);
            dir.join(format!("{sha256}-{:016x}.cwasm", h.finish()))
        });
        let mut cached = false;
        let mut component = None;
        if let Some(file) = cache_file.as_ref().filter(|f| f.exists()) {
            // SAFETY: the cache holds only artifacts this host serialized itself, named by the
            // content hash of their source and the engine's compatibility hash; wasmtime still
            // checks the header and version, and a failure falls back to compiling.
            match unsafe { Component::deserialize_file(&self.shared.engine, file) } {
                Ok(c) => {
                    component = Some(c);
                    cached = true;
                }
                Err(e) => tracing::warn!("ignoring unreadable cache entry {}: {e:#}", file.display()),
            }
        }
        let component = match component {
            Some(c) => c,
            None => {
                // Reject core modules and garbage before Cranelift sees them, with a clear message.
                if !wasmparser_is_component(&bytes) {
                    return Err(LoadError::Invalid {
                        path: path.into(),
                        message: "the file is a core module or not WebAssembly at all".into(),
                    });
                }
                let c = Component::new(&self.shared.engine, &bytes).map_err(invalid)?;
                if let Some(file) = &cache_file {
                    store_in_cache(&c, file);
                }
                c
            }
        };

        let ty = component.component_type();
        let imports: Vec<String> = ty.imports(&self.shared.engine).map(|(name, _)| name.to_string()).collect();
        let exports: Vec<String> = ty
            .exports(&self.shared.engine)
            .filter(|(_, item)| {
                matches!(item.ty, ComponentItem::ComponentInstance(_) | ComponentItem::ComponentFunc(_))
            })
            .map(|(name, _)| name.to_string())
            .collect();
        let abi_version =
            exports.iter().chain(imports.iter()).find_map(|n| abi_version_of(n)).unwrap_or_else(|| "none".into());
        let summary = ComponentSummary {
            path: path.into(),
            sha256,
            size: bytes.len() as u64,
            abi_version,
            imports,
            exports,
            cached,
            load_time: start.elapsed(),
        };
        Ok((component, summary))
    }
}

/// The component-model preamble: magic, then version 0x0d with layer 1 (a core module has layer 0).
fn wasmparser_is_component(bytes: &[u8]) -> bool {
    bytes.len() >= 8 && bytes[..4] == *b"\0asm" && bytes[6..8] == [1, 0]
}

fn store_in_cache(component: &Component, file: &Path) {
    let write = || -> anyhow::Result<()> {
        let dir = file.parent().ok_or_else(|| anyhow::anyhow!("cache path has no parent"))?;
        std::fs::create_dir_all(dir)?;
        let bytes = component.serialize()?;
        // Write then rename, so a concurrent reader never sees half a file.
        let tmp = file.with_extension(format!("tmp{}", std::process::id()));
        std::fs::write(&tmp, bytes)?;
        std::fs::rename(&tmp, file)?;
        Ok(())
    };
    if let Err(e) = write() {
        tracing::warn!("could not cache compiled plugin at {}: {e:#}", file.display());
    }
}

/// `alcf:hpo/strategy@0.1.0` -> `0.1.0`.
fn abi_version_of(name: &str) -> Option<String> {
    let rest = name.strip_prefix(ABI_PACKAGE)?.strip_prefix('/')?;
    rest.split_once('@').map(|(_, v)| v.to_string())
}

/// Semver rule of the component model for 0.x: the same major and minor. 0.1.x is adapted
/// (`legacy`).
fn compatible(version: &str) -> bool {
    let key = |v: &str| v.split('.').take(2).collect::<Vec<_>>().join(".");
    key(version) == key(ABI_VERSION) || key(version) == legacy::VERSION
}

fn exports_agent(s: &ComponentSummary) -> bool {
    s.exports.iter().any(|e| e.starts_with(&format!("{ABI_PACKAGE}/agent@")))
}

/// Every name of the ABI package the component uses is of a version this host speaks.
fn check_abi(s: &ComponentSummary) -> Result<(), LoadError> {
    for name in s.exports.iter().chain(s.imports.iter()) {
        if let Some(v) = abi_version_of(name)
            && !compatible(&v)
        {
            return Err(LoadError::AbiMismatch { path: s.path.clone(), found: v });
        }
    }
    Ok(())
}

/// Imports only WASI and the listed interfaces of the ABI package.
fn check_imports(s: &ComponentSummary, allowed: &[&str], kind: &'static str) -> Result<(), LoadError> {
    let unknown: Vec<&str> = s
        .imports
        .iter()
        .map(String::as_str)
        .filter(|i| !(i.starts_with("wasi:") || allowed.iter().any(|c| i.starts_with(&format!("{ABI_PACKAGE}/{c}@")))))
        .collect();
    if !unknown.is_empty() {
        return Err(LoadError::UnknownImports { path: s.path.clone(), imports: unknown.join(", "), kind });
    }
    Ok(())
}

fn check_strategy(s: &ComponentSummary) -> Result<(), LoadError> {
    check_abi(s)?;
    if !s.exports.iter().any(|e| e.starts_with(&format!("{ABI_PACKAGE}/strategy@"))) {
        if exports_agent(s) {
            return Err(LoadError::IsAnAgent { path: s.path.clone() });
        }
        return Err(LoadError::NotAStrategy { path: s.path.clone(), exports: s.exports.join(", ") });
    }
    // `jobs` is the agent world's: a strategy proposes, the host runs.
    check_imports(s, &["log", "storage", "llm", "types"], "strategy")
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn abi_versions() {
        assert_eq!(abi_version_of("alcf:hpo/strategy@0.1.0").as_deref(), Some("0.1.0"));
        assert_eq!(abi_version_of("wasi:io/streams@0.2.6"), None);
        assert!(compatible("0.1.3"), "0.1 is adapted");
        assert!(compatible("0.2.0") && compatible("0.2.7"));
        assert!(!compatible("0.3.0"));
        assert!(!compatible("0.0.9"));
        assert!(!compatible("1.1.0"));
    }

    #[test]
    fn the_shared_runtime_is_one_engine_per_process() {
        let a = PluginRuntime::shared(None).unwrap();
        let b = PluginRuntime::shared(Some(std::env::temp_dir())).unwrap();
        assert!(Engine::same(a.engine(), b.engine()), "one engine, whatever the cache directory");
        let private = PluginRuntime::new(None).unwrap();
        assert!(!Engine::same(a.engine(), private.engine()));
        let handle = a.clone();
        drop(a);
        assert!(Engine::same(handle.engine(), b.engine()), "handles share it");
    }

    #[test]
    fn core_modules_and_garbage_are_refused() {
        let rt = PluginRuntime::new(None).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let core = dir.path().join("core.wasm");
        std::fs::write(&core, b"\0asm\x01\0\0\0").unwrap();
        let e = rt.load(&core).err().unwrap().to_string();
        assert!(e.contains("not a WebAssembly component"), "{e}");
        let missing = dir.path().join("missing.wasm");
        let e = rt.load(&missing).err().unwrap().to_string();
        assert!(e.contains("cannot read plugin") && e.contains("missing.wasm"), "{e}");
    }
}
