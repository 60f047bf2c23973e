//! A plugin's store data: its WASI context (which grants nothing), its memory cap, its grants and
//! the host capabilities it may call.

use std::collections::{HashMap, VecDeque};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use wasmtime::ResourceLimiter;
use wasmtime::component::ResourceTable;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use super::bindings::alcf::hpo::{llm, log, storage, types};
use crate::study::StudyDb;

/// Limits on plugin storage, so a plugin cannot fill the study database.
const MAX_KEY_BYTES: usize = 256;
const MAX_VALUE_BYTES: usize = 1 << 20;
const MAX_STORAGE_BYTES: u64 = 64 << 20;
/// Longest log line kept from a plugin; longer ones are cut.
const MAX_LINE: usize = 4096;
/// Lines of guest stderr kept for fault reports.
const STDERR_TAIL: usize = 20;

/// Where a plugin's `storage` capability keeps its data.
#[derive(Clone)]
pub enum Storage {
    /// The study database: survives restarts, shared by every instance of the study's plugin.
    Study(Arc<StudyDb>),
    /// In memory, for runs that keep no study (benchmarks, `plugin inspect`).
    Memory(Arc<Mutex<HashMap<String, Vec<u8>>>>),
}

impl Storage {
    pub fn memory() -> Storage {
        Storage::Memory(Arc::default())
    }
}

/// The capabilities a plugin was granted (`strategy.allow` in the config).
#[derive(Clone, Debug, Default)]
pub struct Grants {
    pub log: bool,
    pub storage: bool,
    pub llm: bool,
}

impl Grants {
    pub fn from_list(allow: &[String]) -> Grants {
        let has = |c: &str| allow.iter().any(|a| a == c);
        Grants { log: has("log"), storage: has("storage"), llm: has("llm") }
    }
}

/// A memory cap that remembers why it refused, so a fault report can say "asked for 4 GiB, cap 512 MiB"
/// instead of the guest's bare `unreachable` trap.
pub struct MemoryCap {
    pub max_bytes: usize,
    pub refused: Option<usize>,
}

impl ResourceLimiter for MemoryCap {
    fn memory_growing(&mut self, _current: usize, desired: usize, _maximum: Option<usize>) -> wasmtime::Result<bool> {
        if desired > self.max_bytes {
            self.refused = Some(desired);
            return Ok(false);
        }
        Ok(true)
    }

    fn table_growing(&mut self, _current: usize, desired: usize, _maximum: Option<usize>) -> wasmtime::Result<bool> {
        Ok(desired <= 1_000_000)
    }
}

/// Guest stdout/stderr, forwarded line by line to the host log tagged with the plugin's name.
/// The last stderr lines are kept: a Rust guest's panic message lands there, and fault reports quote it.
#[derive(Clone)]
pub struct GuestOutput {
    plugin: Arc<str>,
    stream: &'static str,
    partial: Arc<Mutex<Vec<u8>>>,
    tail: Arc<Mutex<VecDeque<String>>>,
}

impl GuestOutput {
    pub fn new(plugin: Arc<str>, stream: &'static str, tail: Arc<Mutex<VecDeque<String>>>) -> GuestOutput {
        GuestOutput { plugin, stream, partial: Arc::default(), tail }
    }

    fn emit(&self, line: &[u8]) {
        let text = String::from_utf8_lossy(&line[..line.len().min(MAX_LINE)]);
        let text = text.trim_end();
        tracing::info!(target: "plugin", plugin = %self.plugin, stream = self.stream, "{text}");
        if self.stream == "stderr" {
            let mut tail = self.tail.lock().unwrap_or_else(|p| p.into_inner());
            if tail.len() == STDERR_TAIL {
                tail.pop_front();
            }
            tail.push_back(text.to_string());
        }
    }

    fn write_bytes(&self, buf: &[u8]) {
        let mut partial = self.partial.lock().unwrap_or_else(|p| p.into_inner());
        for &b in buf {
            if b == b'\n' || partial.len() >= MAX_LINE {
                self.emit(&partial);
                partial.clear();
                if b == b'\n' {
                    continue;
                }
            }
            partial.push(b);
        }
    }
}

impl IsTerminal for GuestOutput {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for GuestOutput {
    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

impl tokio::io::AsyncWrite for GuestOutput {
    fn poll_write(self: Pin<&mut Self>, _cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        self.write_bytes(buf);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

pub struct PluginState {
    pub plugin: Arc<str>,
    wasi: WasiCtx,
    table: ResourceTable,
    pub memory: MemoryCap,
    pub grants: Grants,
    storage: Storage,
    pub stderr_tail: Arc<Mutex<VecDeque<String>>>,
}

impl PluginState {
    pub fn new(plugin: Arc<str>, grants: Grants, storage: Storage, memory_bytes: u64, seed: u64) -> PluginState {
        let stderr_tail = Arc::new(Mutex::new(VecDeque::new()));
        let mut wasi = WasiCtx::builder();
        wasi.stdout(GuestOutput::new(plugin.clone(), "stdout", stderr_tail.clone()));
        wasi.stderr(GuestOutput::new(plugin.clone(), "stderr", stderr_tail.clone()));
        // Randomness from WASI is seeded by the study: a plugin that (even indirectly, e.g. through
        // HashMap) uses it still behaves the same on every replay.
        let mut bytes = Vec::with_capacity(256);
        let mut x = seed ^ 0x9e37_79b9_7f4a_7c15;
        for _ in 0..32 {
            x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = x;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            bytes.extend_from_slice(&(z ^ (z >> 31)).to_le_bytes());
        }
        wasi.secure_random(wasmtime_wasi::Deterministic::new(bytes.clone()));
        wasi.insecure_random(wasmtime_wasi::Deterministic::new(bytes));
        wasi.insecure_random_seed(u128::from(seed));
        PluginState {
            plugin,
            wasi: wasi.build(),
            table: ResourceTable::new(),
            memory: MemoryCap { max_bytes: usize::try_from(memory_bytes).unwrap_or(usize::MAX), refused: None },
            grants,
            storage,
            stderr_tail,
        }
    }

    fn not_granted(&self, cap: &str) -> String {
        format!("{cap} is not granted to plugin `{}`: add \"{cap}\" to strategy.allow in the study config", self.plugin)
    }
}

impl WasiView for PluginState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView { ctx: &mut self.wasi, table: &mut self.table }
    }
}

impl types::Host for PluginState {}

impl log::Host for PluginState {
    fn log(&mut self, level: types::Level, message: String) {
        if !self.grants.log {
            return;
        }
        let message = &message[..message.floor_char_boundary(MAX_LINE)];
        let plugin = &*self.plugin;
        match level {
            types::Level::Trace => tracing::trace!(target: "plugin", plugin, "{message}"),
            types::Level::Debug => tracing::debug!(target: "plugin", plugin, "{message}"),
            types::Level::Info => tracing::info!(target: "plugin", plugin, "{message}"),
            types::Level::Warn => tracing::warn!(target: "plugin", plugin, "{message}"),
            types::Level::Error => tracing::error!(target: "plugin", plugin, "{message}"),
        }
    }
}

impl storage::Host for PluginState {
    fn get(&mut self, key: String) -> Option<Vec<u8>> {
        if !self.grants.storage {
            tracing::warn!(target: "plugin", plugin = %self.plugin, "{}", self.not_granted("storage"));
            return None;
        }
        match &self.storage {
            Storage::Study(db) => db.storage_get(&key).unwrap_or_else(|e| {
                tracing::error!("plugin storage read failed: {e}");
                None
            }),
            Storage::Memory(map) => map.lock().unwrap_or_else(|p| p.into_inner()).get(&key).cloned(),
        }
    }

    fn set(&mut self, key: String, value: Vec<u8>) -> Result<(), String> {
        if !self.grants.storage {
            return Err(self.not_granted("storage"));
        }
        if key.len() > MAX_KEY_BYTES {
            return Err(format!("storage key is {} bytes; the limit is {MAX_KEY_BYTES}", key.len()));
        }
        if value.len() > MAX_VALUE_BYTES {
            return Err(format!("storage value is {} bytes; the limit is {MAX_VALUE_BYTES}", value.len()));
        }
        match &self.storage {
            Storage::Study(db) => {
                let used = db.storage_bytes().map_err(|e| e.to_string())?;
                if used + (key.len() + value.len()) as u64 > MAX_STORAGE_BYTES {
                    return Err(format!("plugin storage is full ({used} bytes of {MAX_STORAGE_BYTES})"));
                }
                db.storage_set(&key, &value).map_err(|e| e.to_string())
            }
            Storage::Memory(map) => {
                let mut map = map.lock().unwrap_or_else(|p| p.into_inner());
                let used: usize = map.iter().map(|(k, v)| k.len() + v.len()).sum();
                if (used + key.len() + value.len()) as u64 > MAX_STORAGE_BYTES {
                    return Err(format!("plugin storage is full ({used} bytes of {MAX_STORAGE_BYTES})"));
                }
                map.insert(key, value);
                Ok(())
            }
        }
    }

    fn delete(&mut self, key: String) -> Result<(), String> {
        if !self.grants.storage {
            return Err(self.not_granted("storage"));
        }
        match &self.storage {
            Storage::Study(db) => db.storage_delete(&key).map_err(|e| e.to_string()),
            Storage::Memory(map) => {
                map.lock().unwrap_or_else(|p| p.into_inner()).remove(&key);
                Ok(())
            }
        }
    }
}

impl llm::Host for PluginState {
    async fn chat(&mut self, _request: llm::ChatRequest) -> Result<llm::ChatResponse, llm::LlmError> {
        if !self.grants.llm {
            return Err(llm::LlmError::NotGranted(self.not_granted("llm")));
        }
        Err(llm::LlmError::NotConfigured("llm is not configured for this study".into()))
    }
}
