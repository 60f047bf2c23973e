//! A plugin's store data: its WASI context (which grants nothing), its memory cap, its per-call
//! clock, the bounded tail of its stderr, and the capabilities it may call
//! ([`super::capability`], which also implements the WIT imports on [`PluginState`]).

use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use wasmtime::component::ResourceTable;
use wasmtime::{ResourceLimiter, Store, UpdateDeadline};
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use super::EPOCH_TICK;
use super::bindings::alcf::hpo::types;
use super::capability::CapabilitySet;
use super::capability::log::{MAX_LINE, emit};

pub use super::capability::{Grants, Storage};

/// Lines of guest stderr kept for fault reports (each at most [`MAX_LINE`] bytes): enough for a
/// Python traceback of a dozen frames followed by the runtime's own panic.
pub const STDERR_TAIL_LINES: usize = 64;

/// How often (in epoch ticks) a running guest yields to the async executor, so a long `suggest`
/// does not starve other tasks on the same runtime (the deadline is re-checked each time).
const YIELD_TICKS: u64 = 10;

/// A memory cap that remembers why it refused, so a fault report can say "asked for 4 GiB, cap 512 MiB"
/// instead of the guest's bare `unreachable` trap.
pub struct MemoryCap {
    pub max_bytes: usize,
    pub refused: Option<usize>,
    /// The largest linear memory granted so far (what a plugin costs; `plugin build` and the
    /// benchmarks report it).
    pub peak: usize,
}

impl ResourceLimiter for MemoryCap {
    fn memory_growing(&mut self, _current: usize, desired: usize, _maximum: Option<usize>) -> wasmtime::Result<bool> {
        if desired > self.max_bytes {
            self.refused = Some(desired);
            return Ok(false);
        }
        self.peak = self.peak.max(desired);
        Ok(true)
    }

    fn table_growing(&mut self, _current: usize, desired: usize, _maximum: Option<usize>) -> wasmtime::Result<bool> {
        Ok(desired <= 1_000_000)
    }
}

/// The deadline of the current call: wall-clock time since the call started, minus the time spent
/// in host calls (`llm`, `storage`) and in yields to the executor, must stay under `limit`. Host
/// time is the host's to bound (each host call has its own timeout); the plugin is charged only
/// for its own time.
pub struct CallClock {
    started: Instant,
    limit: Duration,
    /// Nanoseconds of host time in this call; shared with the yield futures.
    host_ns: Arc<AtomicU64>,
}

impl CallClock {
    fn new() -> CallClock {
        CallClock { started: Instant::now(), limit: Duration::MAX, host_ns: Arc::default() }
    }

    fn start(&mut self, limit: Duration) {
        self.started = Instant::now();
        self.limit = limit;
        self.host_ns.store(0, Ordering::Relaxed);
    }

    /// A fresh allowance after a host call that hands control back to the plugin for a new
    /// stretch of its own work (an agent's `jobs` calls).
    pub(crate) fn restart(&mut self) {
        self.start(self.limit);
    }

    pub fn add_host_time(&self, d: Duration) {
        self.host_ns.fetch_add(u64::try_from(d.as_nanos()).unwrap_or(u64::MAX), Ordering::Relaxed);
    }

    pub fn host_time(&self) -> Duration {
        Duration::from_nanos(self.host_ns.load(Ordering::Relaxed))
    }

    /// Time charged to the plugin in this call.
    pub fn guest_time(&self) -> Duration {
        self.started.elapsed().saturating_sub(self.host_time())
    }

    fn remaining(&self) -> Option<Duration> {
        self.limit.checked_sub(self.guest_time()).filter(|d| !d.is_zero())
    }
}

fn ticks_for(d: Duration) -> u64 {
    let tick = EPOCH_TICK.as_nanos();
    u64::try_from(d.as_nanos().div_ceil(tick)).unwrap_or(u64::MAX).max(1)
}

/// Guest stdout/stderr, forwarded line by line to the host log (through the plugin's log budget)
/// tagged with the plugin's name. Every stderr line also goes to a bounded tail, budget or not: a
/// Rust panic message or a Python traceback lands there, and fault reports quote it.
#[derive(Clone)]
pub struct GuestOutput {
    caps: CapabilitySet,
    stream: &'static str,
    partial: Arc<Mutex<Vec<u8>>>,
    tail: Option<Arc<Mutex<VecDeque<String>>>>,
    /// The span the plugin was created in (the study's). WASI writes guest output from a task of
    /// its own, outside that span; entering it again sends the lines to the study's host.log.
    span: tracing::Span,
}

impl GuestOutput {
    fn emit(&self, line: &[u8]) {
        let text = String::from_utf8_lossy(line);
        if let Some(tail) = &self.tail {
            let mut tail = tail.lock().unwrap_or_else(|p| p.into_inner());
            if tail.len() == STDERR_TAIL_LINES {
                tail.pop_front();
            }
            tail.push_back(text.trim_end_matches('\r').to_string());
        }
        let _in_study = self.span.enter();
        emit(&self.caps, tracing::Level::INFO, Some(self.stream), text.trim_end());
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
    pub(crate) caps: CapabilitySet,
    wasi: WasiCtx,
    table: ResourceTable,
    pub memory: MemoryCap,
    pub(crate) clock: CallClock,
    stderr_tail: Arc<Mutex<VecDeque<String>>>,
    /// Unique per instance in this process (see [`crate::plugin::capability::llm::LlmCall`]).
    pub(crate) instance: u64,
}

/// Numbers plugin instances; only ever compared for equality.
static INSTANCES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

impl PluginState {
    pub fn new(caps: CapabilitySet, memory_bytes: u64, seed: u64) -> PluginState {
        let stderr_tail = Arc::new(Mutex::new(VecDeque::new()));
        let span = tracing::Span::current();
        let output = |stream, tail| GuestOutput {
            caps: caps.clone(),
            stream,
            partial: Arc::default(),
            tail,
            span: span.clone(),
        };
        let mut wasi = WasiCtx::builder();
        wasi.stdout(output("stdout", None));
        wasi.stderr(output("stderr", Some(stderr_tail.clone())));
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
            caps,
            wasi: wasi.build(),
            table: ResourceTable::new(),
            memory: MemoryCap {
                max_bytes: usize::try_from(memory_bytes).unwrap_or(usize::MAX),
                refused: None,
                peak: 0,
            },
            clock: CallClock::new(),
            stderr_tail,
            instance: INSTANCES.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
        }
    }

    /// The last lines the guest wrote to stderr, oldest first.
    pub fn stderr_tail(&self) -> Vec<String> {
        self.stderr_tail.lock().map(|t| t.iter().cloned().collect()).unwrap_or_default()
    }

    pub fn clock(&self) -> &CallClock {
        &self.clock
    }

    /// A store for this state: memory cap, and the per-call deadline on the epoch ticker.
    pub(crate) fn into_store(self, engine: &wasmtime::Engine) -> Store<PluginState> {
        let mut store = Store::new(engine, self);
        store.limiter(|s| &mut s.memory);
        store.epoch_deadline_callback(|ctx| {
            let clock = &ctx.data().clock;
            let Some(left) = clock.remaining() else {
                return Ok(UpdateDeadline::Interrupt);
            };
            // Yield to the executor now and then; the time away is not the plugin's.
            let host_ns = clock.host_ns.clone();
            let ticks = ticks_for(left).min(YIELD_TICKS);
            Ok(UpdateDeadline::YieldCustom(
                ticks,
                Box::pin(async move {
                    let away = Instant::now();
                    tokio::task::yield_now().await;
                    host_ns.fetch_add(u64::try_from(away.elapsed().as_nanos()).unwrap_or(0), Ordering::Relaxed);
                }),
            ))
        });
        store
    }
}

/// Starts a guest call on `store` with `limit` of plugin time. The stderr tail starts empty, so a
/// fault report quotes only what the guest wrote in the failing call.
pub(crate) fn arm(store: &mut Store<PluginState>, limit: Duration) {
    store.data().caps.begin_call();
    store.data().stderr_tail.lock().unwrap_or_else(|p| p.into_inner()).clear();
    store.data_mut().clock.start(limit);
    store.set_epoch_deadline(ticks_for(limit).min(YIELD_TICKS));
}

/// Ends a guest call: reports output suppressed during it.
pub(crate) fn disarm(store: &Store<PluginState>) {
    store.data().caps.end_call();
}

impl WasiView for PluginState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView { ctx: &mut self.wasi, table: &mut self.table }
    }
}

impl types::Host for PluginState {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_time_is_not_charged() {
        let mut c = CallClock::new();
        c.start(Duration::from_millis(50));
        std::thread::sleep(Duration::from_millis(80));
        assert!(c.remaining().is_none(), "80 ms of plugin time is past a 50 ms deadline");
        c.add_host_time(Duration::from_millis(60));
        let left = c.remaining().expect("only ~20 ms were the plugin's");
        assert!(left <= Duration::from_millis(30), "{left:?}");
    }

    #[test]
    fn ticks_round_up() {
        assert_eq!(ticks_for(Duration::ZERO), 1);
        assert_eq!(ticks_for(EPOCH_TICK), 1);
        assert_eq!(ticks_for(EPOCH_TICK + Duration::from_nanos(1)), 2);
    }
}
