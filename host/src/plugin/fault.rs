//! What went wrong in a plugin, in words a user can act on: the fault kinds, the guest's own last
//! error (a Rust panic message or a Python traceback, read from the bounded stderr tail), and the
//! cutting of plugin-supplied strings before they reach a log, the terminal or the database.

use std::time::Duration;

/// Longest plugin-supplied message (an error string a call returns) kept; the rest is cut with its
/// full length noted, so a 100 MB error string costs a log line of about 2 KiB.
pub const MAX_MESSAGE: usize = 2048;
/// Most traceback lines quoted in a fault report (the header, the innermost frames, the exception).
const MAX_TRACEBACK_LINES: usize = 12;
/// Longest single line quoted from the guest's stderr.
const MAX_QUOTED_LINE: usize = 300;

/// Cuts a plugin-supplied string to [`MAX_MESSAGE`] bytes (at a character boundary), noting how long
/// it was: `"… [cut: 104857600 bytes in all]"`.
pub fn cut_message(s: String) -> String {
    cut_to(s, MAX_MESSAGE)
}

fn cut_to(mut s: String, max: usize) -> String {
    if s.len() <= max {
        return s;
    }
    let total = s.len();
    s.truncate(s.floor_char_boundary(max));
    s.push_str(&format!("… [cut: {total} bytes in all]"));
    s
}

/// The guest's own account of a trap, from its stderr.
#[derive(Debug, Clone, PartialEq)]
pub enum GuestError {
    /// A Rust panic: `panicked at src/lib.rs:12:5:` and the message after it.
    Panic { location: String, message: String },
    /// A Python exception: the traceback (header, frames, maybe shortened) ending in the exception line.
    Python { exception: String, traceback: Vec<String> },
}

impl std::fmt::Display for GuestError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            GuestError::Panic { location, message } => write!(f, "it panicked at {location}: {message}"),
            GuestError::Python { exception, traceback } => {
                write!(f, "it raised {exception}")?;
                for line in traceback {
                    write!(f, "\n    {line}")?;
                }
                Ok(())
            }
        }
    }
}

/// The guest's last error report in its stderr tail. A Python traceback wins over a Rust panic: a
/// componentize-py guest prints the traceback, then its runtime panics with a generic wrapper
/// ("Python function threw an unexpected exception") that says nothing about the cause.
pub fn guest_error(stderr: &[String]) -> Option<GuestError> {
    python_traceback(stderr).or_else(|| rust_panic(stderr))
}

fn quote(line: &str) -> String {
    cut_to(line.trim_end().to_string(), MAX_QUOTED_LINE)
}

fn python_traceback(lines: &[String]) -> Option<GuestError> {
    let start = lines.iter().rposition(|l| l.starts_with("Traceback (most recent call last):"))?;
    // Frames are indented; the exception line is the first one after the header that is not.
    let end = start + 1 + lines[start + 1..].iter().position(|l| !l.starts_with(' ') && !l.is_empty())?;
    let exception = quote(&lines[end]);
    let body = &lines[start + 1..end];
    let mut traceback = vec![quote(&lines[start])];
    let keep = MAX_TRACEBACK_LINES - 2;
    if body.len() > keep {
        traceback.push(format!("  … ({} lines of outer frames left out)", body.len() - keep + 1));
        traceback.extend(body[body.len() - keep + 1..].iter().map(|l| quote(l)));
    } else {
        traceback.extend(body.iter().map(|l| quote(l)));
    }
    traceback.push(exception.clone());
    Some(GuestError::Python { exception, traceback })
}

fn rust_panic(lines: &[String]) -> Option<GuestError> {
    let at = lines.iter().rposition(|l| l.contains(" panicked at "))?;
    let rest = &lines[at][lines[at].find(" panicked at ")? + " panicked at ".len()..];
    if let Some(location) = rest.trim_end().strip_suffix(':') {
        // Rust ≥ 1.73: `thread '<unnamed>' panicked at src/lib.rs:12:5:` then the message lines.
        let message: Vec<&str> = lines[at + 1..]
            .iter()
            .map(|l| l.trim_end())
            .take_while(|l| {
                !(l.starts_with("note: ") || l.starts_with("stack backtrace:") || l.starts_with("thread '"))
            })
            .take(8)
            .collect();
        return Some(GuestError::Panic { location: quote(location), message: cut_to(message.join("\n"), 1024) });
    }
    // Older std: `panicked at 'message', src/lib.rs:12:5`.
    let (message, location) = rest.rsplit_once(", ").unwrap_or((rest, "?"));
    Some(GuestError::Panic { location: quote(location), message: quote(message.trim_matches('\'')) })
}

/// Why a plugin call failed in a way the host contained.
#[derive(Debug, Clone, PartialEq)]
pub enum Fault {
    /// The plugin used up its time for the call (wall-clock time in the plugin; host calls excluded).
    Timeout {
        limit: Duration,
    },
    OutOfMemory {
        requested: usize,
        cap: u64,
    },
    /// Any other trap; `guest` is what the guest itself printed about it, when it did.
    Trap {
        message: String,
        guest: Option<Box<GuestError>>,
    },
}

impl std::fmt::Display for Fault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Fault::Timeout { limit } => write!(
                f,
                "it ran past its {:.1} s deadline per call (wall-clock time in the plugin, host calls not counted; raise strategy.suggest_timeout_s if it needs more)",
                limit.as_secs_f64()
            ),
            Fault::OutOfMemory { requested, cap } => write!(
                f,
                "it ran out of memory: it asked for {} MiB, above its cap of {} MiB (strategy.memory_mib)",
                requested >> 20,
                cap >> 20
            ),
            Fault::Trap { guest: Some(g), .. } => write!(f, "{g}"),
            Fault::Trap { message, guest: None } => write!(f, "it trapped: {message}"),
        }
    }
}

/// A fault the host contained by dropping the instance; the plugin is rebuilt from the history on
/// its next call. The campaign turns these into "plugin restarted" events.
#[derive(Debug, Clone, PartialEq)]
pub struct Contained {
    pub plugin: String,
    pub call: &'static str,
    pub fault: Fault,
    /// This was restart number `restart` (1-based) of at most `max_restarts`.
    pub restart: u32,
    pub max_restarts: u32,
}

impl std::fmt::Display for Contained {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "plugin `{}` failed in {}: {}; it was restarted from the study history (restart {} of {})",
            self.plugin, self.call, self.fault, self.restart, self.max_restarts
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(s: &str) -> Vec<String> {
        s.lines().map(String::from).collect()
    }

    #[test]
    fn long_messages_are_cut_with_their_length() {
        let m = cut_message("x".repeat(100 << 20));
        assert!(m.len() < MAX_MESSAGE + 64, "{}", m.len());
        assert!(m.ends_with("… [cut: 104857600 bytes in all]"), "{}", &m[m.len() - 40..]);
        assert_eq!(cut_message("short".into()), "short");
        let m = cut_message("é".repeat(MAX_MESSAGE));
        assert!(m.contains("[cut: 4096 bytes in all]"));
    }

    #[test]
    fn a_rust_panic_is_quoted_with_its_location() {
        let tail = lines(
            "some output\nthread '<unnamed>' panicked at src/lib.rs:12:5:\nindex out of bounds: the len is 3 but the index is 7\nnote: run with `RUST_BACKTRACE=1` environment variable to display a backtrace",
        );
        let g = guest_error(&tail).unwrap();
        assert_eq!(
            g.to_string(),
            "it panicked at src/lib.rs:12:5: index out of bounds: the len is 3 but the index is 7"
        );
        assert_eq!(guest_error(&lines("nothing useful\n")), None);
    }

    /// The exact stderr of a componentize-py 0.25.1 guest whose `suggest` raised (testdata/python_strategy).
    const COMPONENTIZE_PY_STDERR: &str = include_str!("testdata/python_strategy/stderr.txt");

    #[test]
    fn a_python_traceback_wins_over_the_runtime_wrapper() {
        let g = guest_error(&lines(COMPONENTIZE_PY_STDERR)).unwrap();
        let GuestError::Python { exception, traceback } = &g else { panic!("{g:?}") };
        assert_eq!(exception, "AttributeError: 'NoneType' object has no attribute 'value_for'");
        assert_eq!(traceback.first().map(String::as_str), Some("Traceback (most recent call last):"));
        assert_eq!(traceback.last(), Some(exception));
        let text = g.to_string();
        assert!(
            text.starts_with("it raised AttributeError: 'NoneType' object has no attribute 'value_for'\n"),
            "{text}"
        );
        assert!(text.contains("File \"/0/app.py\", line 10, in value_for"), "{text}");
        assert!(!text.contains("runtime/src/lib.rs") && !text.contains("unexpected exception"), "{text}");
    }

    #[test]
    fn a_long_traceback_keeps_its_innermost_frames() {
        let mut tail = vec!["Traceback (most recent call last):".to_string()];
        for i in 0..40 {
            tail.push(format!("  File \"/0/app.py\", line {i}, in f{i}"));
            tail.push(format!("    f{}()", i + 1));
        }
        tail.push("RecursionError: maximum recursion depth exceeded".into());
        tail.push("thread '<unnamed>' (1) panicked at runtime/src/lib.rs:1293:29:".into());
        tail.push("Python function threw an unexpected exception".into());
        let Some(GuestError::Python { exception, traceback }) = guest_error(&tail) else { panic!() };
        assert_eq!(exception, "RecursionError: maximum recursion depth exceeded");
        assert!(traceback.len() <= MAX_TRACEBACK_LINES, "{traceback:?}");
        assert!(traceback[1].contains("lines of outer frames left out"), "{traceback:?}");
        assert!(traceback.iter().any(|l| l.contains("in f39")), "the innermost frame is kept: {traceback:?}");
    }
}
