//! The `log` capability and the output budget that also bounds guest stdout/stderr.
//!
//! A plugin cannot fill the disk or the terminal: every line it writes (through `log`, stdout or
//! stderr) is counted against one budget per plugin, shared by its restarted instances. Over budget,
//! lines are dropped and counted; the count is written as one line ("plugin `X`: N lines (B bytes)
//! suppressed") and handed to the caller as a [`Notice::Suppressed`] when the call returns or when
//! the one-minute window ends, whichever comes first.
//!
//! Defaults ([`LogLimits::default`]): 200 lines / 64 KiB per call, 1000 lines / 256 KiB per minute,
//! lines cut at 4 KiB. So one plugin adds at most ~256 KiB (plus the log's own prefixes, ~100 bytes
//! a line) to host.log per minute, however it loops.

use std::time::{Duration, Instant};

use super::{Capability, CapabilitySet, Notice};
use crate::plugin::bindings::alcf::hpo::{log as wit, types};
use crate::plugin::sandbox::PluginState;

/// Longest line kept from a plugin (bytes); longer ones are cut at a character boundary.
pub const MAX_LINE: usize = 4096;

/// How much a plugin may write.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogLimits {
    pub call_lines: u64,
    pub call_bytes: u64,
    pub window_lines: u64,
    pub window_bytes: u64,
    pub window: Duration,
}

impl Default for LogLimits {
    fn default() -> LogLimits {
        LogLimits {
            call_lines: 200,
            call_bytes: 64 << 10,
            window_lines: 1000,
            window_bytes: 256 << 10,
            window: Duration::from_secs(60),
        }
    }
}

/// Lines and bytes dropped since the last report.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Suppressed {
    pub lines: u64,
    pub bytes: u64,
}

/// The running counts behind [`LogLimits`].
#[derive(Debug)]
pub struct LogBudget {
    limits: LogLimits,
    call_lines: u64,
    call_bytes: u64,
    window_start: Instant,
    window_lines: u64,
    window_bytes: u64,
    suppressed: Suppressed,
}

impl LogBudget {
    pub fn new(limits: LogLimits) -> LogBudget {
        LogBudget {
            limits,
            call_lines: 0,
            call_bytes: 0,
            window_start: Instant::now(),
            window_lines: 0,
            window_bytes: 0,
            suppressed: Suppressed::default(),
        }
    }

    pub fn begin_call(&mut self) {
        self.call_lines = 0;
        self.call_bytes = 0;
    }

    /// Counts a line of `bytes` written at `now`. Returns whether to write it, and the suppression
    /// report due because a window ended.
    pub fn admit(&mut self, bytes: usize, now: Instant) -> (bool, Option<Suppressed>) {
        let mut due = None;
        if now.saturating_duration_since(self.window_start) >= self.limits.window {
            due = self.take_suppressed();
            self.window_start = now;
            self.window_lines = 0;
            self.window_bytes = 0;
        }
        let b = bytes as u64;
        let l = &self.limits;
        let fits = self.call_lines < l.call_lines
            && self.call_bytes + b <= l.call_bytes
            && self.window_lines < l.window_lines
            && self.window_bytes + b <= l.window_bytes;
        if fits {
            self.call_lines += 1;
            self.call_bytes += b;
            self.window_lines += 1;
            self.window_bytes += b;
        } else {
            self.suppressed.lines += 1;
            self.suppressed.bytes += b;
        }
        (fits, due)
    }

    /// The suppression not yet reported, if any (and resets it).
    pub fn take_suppressed(&mut self) -> Option<Suppressed> {
        let s = std::mem::take(&mut self.suppressed);
        (s.lines > 0).then_some(s)
    }
}

/// Cuts `s` to at most [`MAX_LINE`] bytes at a character boundary.
pub fn cut_line(s: &str) -> &str {
    &s[..s.floor_char_boundary(MAX_LINE)]
}

pub(crate) fn report_suppressed(set: &CapabilitySet, s: Suppressed) {
    let notice = Notice::Suppressed { plugin: set.plugin().to_string(), lines: s.lines, bytes: s.bytes };
    tracing::warn!(target: "plugin", plugin = %set.plugin(), "{notice}");
    set.notify(notice);
}

/// Writes one plugin line to the host log if the budget allows. `stream` is "stdout"/"stderr" for
/// guest output, `None` for the `log` import.
pub(crate) fn emit(set: &CapabilitySet, level: tracing::Level, stream: Option<&'static str>, text: &str) {
    let (write, due) = set.log_budget().admit(text.len(), Instant::now());
    if let Some(s) = due {
        report_suppressed(set, s);
    }
    if !write {
        return;
    }
    let plugin = &**set.plugin();
    macro_rules! at {
        ($lvl:expr) => {
            match stream {
                Some(stream) => tracing::event!(target: "plugin", $lvl, plugin = %plugin, stream, "{text}"),
                None => tracing::event!(target: "plugin", $lvl, plugin = %plugin, "{text}"),
            }
        };
    }
    match level {
        tracing::Level::TRACE => at!(tracing::Level::TRACE),
        tracing::Level::DEBUG => at!(tracing::Level::DEBUG),
        tracing::Level::INFO => at!(tracing::Level::INFO),
        tracing::Level::WARN => at!(tracing::Level::WARN),
        _ => at!(tracing::Level::ERROR),
    }
}

impl wit::Host for PluginState {
    fn log(&mut self, level: types::Level, message: String) {
        if !self.caps.check(Capability::Log, "log") {
            return;
        }
        let level = match level {
            types::Level::Trace => tracing::Level::TRACE,
            types::Level::Debug => tracing::Level::DEBUG,
            types::Level::Info => tracing::Level::INFO,
            types::Level::Warn => tracing::Level::WARN,
            types::Level::Error => tracing::Level::ERROR,
        };
        emit(&self.caps, level, None, cut_line(&message));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> LogLimits {
        LogLimits {
            call_lines: 3,
            call_bytes: 100,
            window_lines: 5,
            window_bytes: 1000,
            window: Duration::from_secs(60),
        }
    }

    #[test]
    fn per_call_lines_and_bytes() {
        let t = Instant::now();
        let mut b = LogBudget::new(limits());
        assert!(b.admit(10, t).0 && b.admit(10, t).0 && b.admit(10, t).0);
        assert!(!b.admit(10, t).0, "fourth line of a call");
        b.begin_call();
        assert!(!b.admit(101, t).0, "over the per-call bytes");
        assert!(b.admit(100, t).0);
        assert_eq!(b.take_suppressed(), Some(Suppressed { lines: 2, bytes: 111 }));
        assert_eq!(b.take_suppressed(), None);
    }

    #[test]
    fn the_window_limits_across_calls_and_reports_when_it_ends() {
        let t = Instant::now();
        let mut b = LogBudget::new(limits());
        for _ in 0..3 {
            b.begin_call();
            b.admit(1, t);
            b.admit(1, t);
        }
        // 5 admitted, the sixth dropped by the window.
        assert_eq!(b.take_suppressed(), Some(Suppressed { lines: 1, bytes: 1 }));
        b.begin_call();
        assert!(!b.admit(1, t).0);
        let (ok, due) = b.admit(1, t + Duration::from_secs(61));
        assert!(ok, "a new window");
        assert_eq!(due, Some(Suppressed { lines: 1, bytes: 1 }), "the old window's drops are reported");
    }

    #[test]
    fn lines_are_cut_at_a_char_boundary() {
        let s = "é".repeat(MAX_LINE);
        let c = cut_line(&s);
        assert!(c.len() <= MAX_LINE && c.len() >= MAX_LINE - 1);
    }
}
