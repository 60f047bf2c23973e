//! The trial protocol: the files a trial program and the host exchange through the trial directory.
//!
//! | file            | written by | content                                                        |
//! |-----------------|------------|----------------------------------------------------------------|
//! | `params.json`   | host       | the trial's parameters, one JSON object (name -> typed value)   |
//! | `metrics.jsonl` | program    | one JSON object per line, appended per epoch                    |
//! | `result.json`   | program    | final values, one flat JSON object, written once at the end     |
//! | `stdout.log`    | host       | the program's stdout                                            |
//! | `stderr.log`    | host       | the program's stderr                                            |
//!
//! Every executor speaks it: the local one reads the files in place, remote ones (PBS, Globus
//! Compute) fetch them, which is why each reader has a form that takes bytes or text as well as one
//! that takes a path.
//!
//! Numbers: Python's `json` module writes bare `NaN`, `Infinity` and `-Infinity`, which JSON does
//! not have; they are accepted. In `metrics.jsonl` only finite numbers are metrics (a curve point
//! that is NaN is no point). In `result.json` a key whose value is not a finite number is *reported*
//! in [`RunReport::non_numeric`] and removes that key from the merged metrics, so a trial that
//! diverged (`"loss": NaN`) is not scored with the last finite `loss` of its curve.

use std::fs::{self, File};
use std::io::{self, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use serde_json::Value as Json;

use crate::executor::{Failure, RunReport};
use crate::space::Metrics;

/// The trial's parameters as a JSON object, written by the executor before the program starts.
pub const PARAMS_FILE: &str = "params.json";
/// Per-epoch metrics, one JSON object per line, written by the trial program.
pub const METRICS_FILE: &str = "metrics.jsonl";
/// Final metrics, one JSON object, written (atomically, by well-behaved programs) when the trial ends.
pub const RESULT_FILE: &str = "result.json";
pub const STDOUT_FILE: &str = "stdout.log";
pub const STDERR_FILE: &str = "stderr.log";

/// The protocol's environment variables of one trial: its directory, id, attempt, slot, the
/// path of its `params.json`, and for a trial an agent started from another one's checkpoint,
/// `ALCF_PARENT_DIR` (that trial's directory). Every executor sets them after `executor.env`, so
/// a config cannot hide them.
pub fn env_vars(vars: &crate::executor::argv::Vars) -> Vec<(String, std::ffi::OsString)> {
    let mut env: Vec<(String, std::ffi::OsString)> = vec![
        ("ALCF_TRIAL_DIR".into(), vars.trial_dir.as_os_str().to_owned()),
        ("ALCF_TRIAL_ID".into(), vars.trial_id.to_string().into()),
        ("ALCF_TRIAL_ATTEMPT".into(), vars.attempt.to_string().into()),
        ("ALCF_TRIAL_SLOT".into(), vars.slot.to_string().into()),
        ("ALCF_PARAMS".into(), vars.params_path.as_os_str().to_owned()),
    ];
    if let Some(parent) = vars.parent_dir {
        env.push((PARENT_DIR_VAR.into(), parent.as_os_str().to_owned()));
    }
    env
}

/// Set for a trial started from another trial's directory (PBT's exploit step).
pub const PARENT_DIR_VAR: &str = "ALCF_PARENT_DIR";

/// Limits of [`RunReport::log_tail`].
pub const TAIL_LINES: usize = 40;
pub const TAIL_BYTES: usize = 4096;

/// A protocol file that could not be read or understood.
#[derive(Debug, thiserror::Error)]
pub enum ProtocolError {
    #[error("cannot read {}: {source}", path.display())]
    Read { path: PathBuf, source: io::Error },
    #[error("cannot write {}: {source}", path.display())]
    Write { path: PathBuf, source: io::Error },
    /// `file` is the path when read from disk, the bare file name when parsed from fetched bytes.
    #[error("{file} is not a valid JSON object: {message}")]
    Malformed { file: String, message: String },
}

// ---- params.json ----------------------------------------------------------------------------

/// The text of `params.json` (pretty-printed, with a final newline).
pub fn params_text(params: &serde_json::Map<String, Json>) -> String {
    // Serializing a map of JSON values cannot fail (keys are strings, numbers are finite by
    // construction of `Assignment::to_json`); the fallback is only there to never panic.
    let mut text = serde_json::to_string_pretty(params).unwrap_or_else(|_| "{}".into());
    text.push('\n');
    text
}

/// Writes `params.json` into `dir` and returns its path.
pub fn write_params(dir: &Path, params: &serde_json::Map<String, Json>) -> Result<PathBuf, ProtocolError> {
    let path = dir.join(PARAMS_FILE);
    fs::write(&path, params_text(params)).map_err(|source| ProtocolError::Write { path: path.clone(), source })?;
    Ok(path)
}

// ---- metrics.jsonl --------------------------------------------------------------------------

/// Parses `metrics.jsonl` as fed to it, a chunk at a time: only complete lines (ending in `\n`)
/// are parsed, so a line the program is still writing is not taken for a malformed one.
#[derive(Debug)]
pub struct MetricsStream {
    /// Bytes of the line not yet terminated.
    pending: Vec<u8>,
    /// Index the next metrics line gets (blank and malformed lines get none).
    next_index: usize,
    /// 1-based number of the next raw line, for warnings.
    line_no: usize,
    /// Whether a malformed line is worth a warning. A follower of a running trial sees the same
    /// lines again when the report is read at the end, which warns then.
    warn: bool,
}

impl Default for MetricsStream {
    fn default() -> Self {
        MetricsStream::new()
    }
}

impl MetricsStream {
    pub fn new() -> MetricsStream {
        MetricsStream { pending: Vec::new(), next_index: 0, line_no: 1, warn: true }
    }

    /// A stream that reports malformed lines at debug level only.
    pub fn quiet() -> MetricsStream {
        MetricsStream { warn: false, ..MetricsStream::new() }
    }

    /// Feeds bytes; returns the metrics of the lines completed by them, with their 0-based index
    /// among the stream's metrics lines.
    pub fn push(&mut self, bytes: &[u8]) -> Vec<(usize, Metrics)> {
        let mut out = Vec::new();
        let mut rest = bytes;
        while let Some(nl) = rest.iter().position(|b| *b == b'\n') {
            let line = if self.pending.is_empty() {
                self.parse_line(&rest[..nl])
            } else {
                self.pending.extend_from_slice(&rest[..nl]);
                let line = std::mem::take(&mut self.pending);
                self.parse_line(&line)
            };
            out.extend(line);
            rest = &rest[nl + 1..];
        }
        self.pending.extend_from_slice(rest);
        out
    }

    /// The stream is complete (the program ended): parses an unterminated last line.
    pub fn finish(&mut self) -> Option<(usize, Metrics)> {
        let line = std::mem::take(&mut self.pending);
        self.parse_line(&line)
    }

    /// Number of metrics lines returned so far.
    pub fn count(&self) -> usize {
        self.next_index
    }

    fn parse_line(&mut self, line: &[u8]) -> Option<(usize, Metrics)> {
        let line_no = self.line_no;
        self.line_no += 1;
        let text = String::from_utf8_lossy(line);
        let text = text.trim();
        if text.is_empty() {
            return None;
        }
        match parse_object(text) {
            Ok(obj) => {
                let index = self.next_index;
                self.next_index += 1;
                Some((index, finite_fields(&obj)))
            }
            Err(e) if self.warn => {
                tracing::warn!("{METRICS_FILE}:{line_no}: skipping a malformed metrics line: {e}");
                None
            }
            Err(e) => {
                tracing::debug!("{METRICS_FILE}:{line_no}: skipping a malformed metrics line: {e}");
                None
            }
        }
    }
}

/// A whole `metrics.jsonl` (e.g. fetched from a remote trial directory): the numeric fields of each
/// line, in order. A malformed line (e.g. one cut short by a kill) is skipped with a warning.
pub fn parse_metrics(bytes: &[u8]) -> Vec<Metrics> {
    let mut stream = MetricsStream::new();
    let mut curve: Vec<Metrics> = stream.push(bytes).into_iter().map(|(_, m)| m).collect();
    curve.extend(stream.finish().map(|(_, m)| m));
    curve
}

/// `metrics.jsonl` in `dir`; an absent file is an empty curve.
pub fn read_metrics(dir: &Path) -> Result<Vec<Metrics>, ProtocolError> {
    let path = dir.join(METRICS_FILE);
    match fs::read(&path) {
        Ok(bytes) => Ok(parse_metrics(&bytes)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(source) => Err(ProtocolError::Read { path, source }),
    }
}

/// The last reported value of every metric of a curve.
pub fn last_values(curve: &[Metrics]) -> Metrics {
    let mut last = Metrics::new();
    for line in curve {
        last.extend(line.iter().map(|(k, v)| (k.clone(), *v)));
    }
    last
}

/// Follows a growing `metrics.jsonl` on disk: each [`poll`](Self::poll) returns only the lines
/// completed since the last one. Cheap when nothing changed (one `stat`).
///
/// A program may rewrite the file instead of appending to it (`alcf-trainer --resume` replaces it
/// atomically with the epochs its checkpoint covers). When the file is replaced (another inode) or
/// shrinks, the reader starts over from its first line, so indices are sent again; a consumer keeps
/// the latest line of each index.
#[derive(Debug)]
pub struct MetricsFileReader {
    path: PathBuf,
    stream: MetricsStream,
    offset: u64,
    identity: Option<(u64, u64)>,
}

impl MetricsFileReader {
    /// A reader of `metrics.jsonl` in `dir`, positioned at its start (the file need not exist yet).
    pub fn new(dir: &Path) -> MetricsFileReader {
        MetricsFileReader { path: dir.join(METRICS_FILE), stream: MetricsStream::quiet(), offset: 0, identity: None }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The lines completed since the last call. An absent file has none yet.
    pub fn poll(&mut self) -> Result<Vec<(usize, Metrics)>, ProtocolError> {
        use std::os::unix::fs::MetadataExt;
        let read_err = |source| ProtocolError::Read { path: self.path.clone(), source };
        let meta = match fs::metadata(&self.path) {
            Ok(m) => m,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(read_err(e)),
        };
        let identity = (meta.dev(), meta.ino());
        if self.identity.is_some_and(|id| id != identity) || meta.len() < self.offset {
            self.stream = MetricsStream::quiet();
            self.offset = 0;
        }
        self.identity = Some(identity);
        if meta.len() == self.offset {
            return Ok(Vec::new());
        }
        let mut file = File::open(&self.path).map_err(read_err)?;
        file.seek(SeekFrom::Start(self.offset)).map_err(read_err)?;
        let mut bytes = Vec::with_capacity((meta.len() - self.offset) as usize);
        file.read_to_end(&mut bytes).map_err(read_err)?;
        self.offset += bytes.len() as u64;
        Ok(self.stream.push(&bytes))
    }

    /// The program ended: the remaining lines, including an unterminated last one.
    pub fn finish(&mut self) -> Result<Vec<(usize, Metrics)>, ProtocolError> {
        let mut lines = self.poll()?;
        lines.extend(self.stream.finish());
        Ok(lines)
    }
}

// ---- result.json ----------------------------------------------------------------------------

/// What `result.json` held.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ResultValues {
    /// The keys whose value is a finite number.
    pub metrics: Metrics,
    /// The other keys, with what their value was: `"NaN"`, `"Infinity"`, `"\"abc\""`, `"null"`.
    pub non_numeric: Vec<(String, String)>,
}

/// Parses the text of a `result.json`.
pub fn parse_result(bytes: &[u8]) -> Result<ResultValues, ProtocolError> {
    parse_result_named(bytes, RESULT_FILE)
}

/// `result.json` in `dir`: `Ok(None)` when absent.
pub fn read_result(dir: &Path) -> Result<Option<ResultValues>, ProtocolError> {
    let path = dir.join(RESULT_FILE);
    match fs::read(&path) {
        Ok(bytes) => parse_result_named(&bytes, &path.display().to_string()).map(Some),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(ProtocolError::Read { path, source }),
    }
}

fn parse_result_named(bytes: &[u8], file: &str) -> Result<ResultValues, ProtocolError> {
    let text = String::from_utf8_lossy(bytes);
    let obj = parse_object(&text).map_err(|message| ProtocolError::Malformed { file: file.into(), message })?;
    let mut values = ResultValues::default();
    for (key, value) in obj {
        match value.as_f64().filter(|x| x.is_finite()) {
            Some(x) => {
                values.metrics.insert(key, x);
            }
            None => values.non_numeric.push((key, describe_value(&value))),
        }
    }
    Ok(values)
}

// ---- the report -----------------------------------------------------------------------------

/// Builds the report of an ended trial from its curve and its `result.json` (`None` when absent,
/// `Some(Err)` when unreadable). `failure` is how the process ended; a malformed result fails an
/// otherwise successful trial. `log_tail` is only asked for when the trial failed.
pub fn report(
    curve: Vec<Metrics>,
    result: Option<Result<ResultValues, ProtocolError>>,
    mut failure: Option<Failure>,
    log_tail: impl FnOnce() -> Option<String>,
) -> RunReport {
    let mut metrics = last_values(&curve);
    let mut non_numeric = Vec::new();
    match result {
        Some(Ok(result)) => {
            // A final value replaces the curve's, and a final value that is not a number removes it:
            // the trial said what its result is, and it is not that earlier number.
            for (key, _) in &result.non_numeric {
                metrics.remove(key);
            }
            metrics.extend(result.metrics);
            non_numeric = result.non_numeric;
        }
        // A failure of the process says more than the result it left behind.
        Some(Err(e)) if failure.is_none() => failure = Some(Failure::trial(e.to_string())),
        Some(Err(_)) | None => {}
    }
    let log_tail = if failure.is_some() { log_tail() } else { None };
    RunReport { metrics, curve, failure, non_numeric, log_tail }
}

/// Reads the protocol files of an ended trial in `dir` and builds its report.
pub fn read_report(dir: &Path, failure: Option<Failure>) -> RunReport {
    let curve = read_metrics(dir).unwrap_or_else(|e| {
        tracing::warn!("{e}");
        Vec::new()
    });
    report(curve, read_result(dir).transpose(), failure, || log_tail(dir))
}

// ---- the log tail ---------------------------------------------------------------------------

/// The last lines of `stderr.log` in `dir`, or of `stdout.log` when stderr is empty.
pub fn log_tail(dir: &Path) -> Option<String> {
    tail_of(&dir.join(STDERR_FILE)).or_else(|| tail_of(&dir.join(STDOUT_FILE)))
}

/// At most [`TAIL_LINES`] lines and about [`TAIL_BYTES`] bytes from the end of a file.
pub fn tail_of(path: &Path) -> Option<String> {
    let mut file = File::open(path).ok()?;
    let len = file.metadata().ok()?.len();
    let start = len.saturating_sub(4 * TAIL_BYTES as u64);
    file.seek(SeekFrom::Start(start)).ok()?;
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes).ok()?;
    tail_text(&bytes, start > 0)
}

/// The tail of a log's last bytes (e.g. fetched with `tail -c`); `cut` says the bytes do not start
/// at the beginning of the log, so their first, partial line is dropped.
pub fn tail_text(bytes: &[u8], cut: bool) -> Option<String> {
    let text = String::from_utf8_lossy(bytes);
    let mut text = text.trim_end();
    if cut {
        text = text.split_once('\n').map_or(text, |(_, rest)| rest);
    }
    if text.trim().is_empty() {
        return None;
    }
    let lines: Vec<&str> = text.lines().collect();
    let mut tail = lines[lines.len().saturating_sub(TAIL_LINES)..].join("\n");
    if tail.len() > TAIL_BYTES {
        let mut cut = tail.len() - TAIL_BYTES;
        while !tail.is_char_boundary(cut) {
            cut += 1;
        }
        // Prefer to start at a line boundary.
        if let Some(nl) = tail[cut..].find('\n')
            && nl < TAIL_BYTES / 2
        {
            cut += nl + 1;
        }
        tail = format!("…{}", &tail[cut..]);
    }
    Some(tail)
}

// ---- JSON with Python's non-finite numbers --------------------------------------------------

/// What a bare non-finite token becomes before parsing: a string no program writes (it starts with
/// a NUL character), so that it can be told apart from `null` and reported as written.
const NONFINITE_MARK: &str = "\u{0}alcf-nonfinite:";

/// Parses one JSON object, accepting the bare `NaN`/`Infinity` that Python's json module writes.
fn parse_object(text: &str) -> Result<serde_json::Map<String, Json>, String> {
    let parsed = serde_json::from_str::<Json>(text)
        .or_else(|e| serde_json::from_str::<Json>(&replace_nonfinite(text)).map_err(|_| e.to_string()))?;
    match parsed {
        Json::Object(obj) => Ok(obj),
        other => Err(format!("expected a JSON object, found `{}`", truncate(&describe_value(&other), 60))),
    }
}

/// The finite numbers of an object (a metrics line).
fn finite_fields(obj: &serde_json::Map<String, Json>) -> Metrics {
    obj.iter().filter_map(|(k, v)| v.as_f64().filter(|x| x.is_finite()).map(|x| (k.clone(), x))).collect()
}

/// Replaces `NaN`, `Infinity` and `-Infinity` outside strings with marked strings ([`NONFINITE_MARK`]).
fn replace_nonfinite(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut in_string = false;
    let mut escaped = false;
    let mut rest = text;
    while let Some(c) = rest.chars().next() {
        if in_string {
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '"' {
                in_string = false;
            }
        } else if c == '"' {
            in_string = true;
        } else if let Some(token) = ["-Infinity", "Infinity", "NaN"].into_iter().find(|t| rest.starts_with(t)) {
            out.push_str(&Json::String(format!("{NONFINITE_MARK}{token}")).to_string());
            rest = &rest[token.len()..];
            continue;
        }
        out.push(c);
        rest = &rest[c.len_utf8()..];
    }
    out
}

/// A value as the program wrote it, for a person: `NaN`, `-Infinity`, `"abc"`, `null`, `[1,NaN]`
/// (cut to about 60 characters).
fn describe_value(value: &Json) -> String {
    fn write(value: &Json, out: &mut String) {
        match value {
            Json::String(s) => match s.strip_prefix(NONFINITE_MARK) {
                Some(token) => out.push_str(token),
                None => out.push_str(&value.to_string()),
            },
            Json::Array(items) => {
                out.push('[');
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    write(item, out);
                }
                out.push(']');
            }
            Json::Object(obj) => {
                out.push('{');
                for (i, (k, v)) in obj.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    out.push_str(&Json::String(k.clone()).to_string());
                    out.push(':');
                    write(v, out);
                }
                out.push('}');
            }
            other => out.push_str(&other.to_string()),
        }
    }
    let mut out = String::new();
    write(value, &mut out);
    truncate(&out, 60)
}

fn truncate(s: &str, max: usize) -> String {
    match s.char_indices().nth(max) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(pairs: &[(&str, f64)]) -> Metrics {
        pairs.iter().map(|(k, v)| (k.to_string(), *v)).collect()
    }

    #[test]
    fn parsing_helpers() {
        assert_eq!(
            replace_nonfinite(r#"{"a":NaN,"b":-Infinity,"s":"NaN \" Infinity"}"#),
            r#"{"a":"\u0000alcf-nonfinite:NaN","b":"\u0000alcf-nonfinite:-Infinity","s":"NaN \" Infinity"}"#
        );
        let tmp = tempfile::tempdir().unwrap();
        let log = tmp.path().join("big.log");
        let long_line = "x".repeat(300);
        fs::write(&log, (0..200).map(|i| format!("{i} {long_line}\n")).collect::<String>()).unwrap();
        let tail = tail_of(&log).unwrap();
        assert!(tail.len() <= TAIL_BYTES + 4 && tail.ends_with(&format!("199 {long_line}")), "{}", tail.len());
        assert!(tail.starts_with("…1"), "{}", &tail[..20]);
        fs::write(&log, "\n  \n").unwrap();
        assert_eq!(tail_of(&log), None);
        assert_eq!(tail_text(b"cut line\nwhole\n", true).as_deref(), Some("whole"));
        assert_eq!(tail_text(b"cut line\nwhole\n", false).as_deref(), Some("cut line\nwhole"));
    }

    #[test]
    fn non_finite_and_non_numeric_results_are_reported_by_what_they_were() {
        let text = br#"{"loss": NaN, "up": Infinity, "down": -Infinity, "acc": 0.5, "model": "resnet",
                        "none": null, "flag": true, "list": [1, NaN], "mark": "\u0000alcf"}"#;
        let r = parse_result(text).unwrap();
        assert_eq!(r.metrics, m(&[("acc", 0.5)]));
        let mut nn = r.non_numeric.clone();
        nn.sort();
        let expected = [
            ("down", "-Infinity"),
            ("flag", "true"),
            ("list", "[1,NaN]"),
            ("loss", "NaN"),
            ("mark", "\"\\u0000alcf\""),
            ("model", "\"resnet\""),
            ("none", "null"),
            ("up", "Infinity"),
        ]
        .map(|(k, v)| (k.to_string(), v.to_string()));
        assert_eq!(nn, expected);

        let err = parse_result(b"[1, 2]").unwrap_err().to_string();
        assert!(err.contains("result.json") && err.contains("expected a JSON object"), "{err}");
        let err = parse_result(br#"{"a": 1,"#).unwrap_err().to_string();
        assert!(err.contains("result.json") && err.contains("EOF"), "{err}");
    }

    #[test]
    fn a_non_numeric_result_overrides_the_curve() {
        let curve = parse_metrics(b"{\"loss\": 2.0, \"acc\": 0.1}\n{\"loss\": 1.5, \"acc\": 0.2}\n");
        let result = parse_result(br#"{"loss": NaN, "acc": "diverged", "auc": Infinity, "lr": 0.1}"#);
        let r = report(curve.clone(), Some(result), None, || panic!("no tail for a successful trial"));
        assert_eq!(r.failure, None);
        assert_eq!(r.metrics, m(&[("lr", 0.1)]), "neither loss nor acc falls back to metrics.jsonl");
        let keys: Vec<&str> = r.non_numeric.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(keys, ["acc", "auc", "loss"]);
        assert_eq!(r.curve, curve);

        // Without a result, the curve's last values stand.
        let r = report(curve.clone(), None, None, || None);
        assert_eq!(r.metrics, m(&[("loss", 1.5), ("acc", 0.2)]));
        assert!(r.non_numeric.is_empty());

        // A malformed result fails the trial, keeps the curve's values, and asks for the tail.
        let r = report(curve, Some(parse_result(b"{")), None, || Some("tail".into()));
        let failure = r.failure.unwrap();
        assert_eq!(failure.cause, crate::executor::FailureCause::Trial);
        assert!(failure.reason.contains("result.json"), "{}", failure.reason);
        assert_eq!(r.metrics.get("loss"), Some(&1.5));
        assert_eq!(r.log_tail.as_deref(), Some("tail"));
    }

    #[test]
    fn the_stream_returns_complete_lines_only() {
        let mut s = MetricsStream::new();
        assert_eq!(s.push(b"{\"epoch\": 1, \"acc\""), vec![]);
        assert_eq!(s.push(b": 0.5}\n{\"epoch\": 2,"), vec![(0, m(&[("epoch", 1.0), ("acc", 0.5)]))]);
        // Blank and malformed lines take no index.
        assert_eq!(
            s.push(b" \"acc\": 0.6}\n\n[1]\nnot json\n{\"epoch\": 3}"),
            vec![(1, m(&[("epoch", 2.0), ("acc", 0.6)]))]
        );
        assert_eq!(s.count(), 2);
        assert_eq!(s.finish(), Some((2, m(&[("epoch", 3.0)]))));
        assert_eq!(s.finish(), None);

        // Byte by byte, with a multi-byte character split across pushes.
        let text = "{\"é\": 1}\n{\"b\": NaN, \"c\": 2}\n";
        let mut s = MetricsStream::new();
        let lines: Vec<_> = text.as_bytes().iter().flat_map(|b| s.push(std::slice::from_ref(b))).collect();
        assert_eq!(lines, vec![(0, m(&[("é", 1.0)])), (1, m(&[("c", 2.0)]))]);
        assert_eq!(parse_metrics(text.as_bytes()), vec![m(&[("é", 1.0)]), m(&[("c", 2.0)])]);
    }

    #[test]
    fn the_file_reader_follows_appends_and_rewrites() {
        use std::io::Write;
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join(METRICS_FILE);
        let mut reader = MetricsFileReader::new(tmp.path());
        assert_eq!(reader.poll().unwrap(), vec![], "no file yet");

        let mut f = fs::OpenOptions::new().create(true).append(true).open(&path).unwrap();
        f.write_all(b"{\"epoch\": 1}\n{\"epoch\":").unwrap();
        assert_eq!(reader.poll().unwrap(), vec![(0, m(&[("epoch", 1.0)]))]);
        assert_eq!(reader.poll().unwrap(), vec![], "the partial line waits");
        f.write_all(b" 2}\n").unwrap();
        assert_eq!(reader.poll().unwrap(), vec![(1, m(&[("epoch", 2.0)]))]);
        assert_eq!(reader.poll().unwrap(), vec![]);

        // Replaced atomically (a resumed trainer): read again from the start.
        let tmp_file = tmp.path().join("m.tmp");
        fs::write(&tmp_file, "{\"epoch\": 1, \"acc\": 0.3}\n").unwrap();
        fs::rename(&tmp_file, &path).unwrap();
        assert_eq!(reader.poll().unwrap(), vec![(0, m(&[("epoch", 1.0), ("acc", 0.3)]))]);

        // Truncated in place to something shorter: from the start too.
        fs::write(&path, "{\"x\": 1}").unwrap();
        assert_eq!(reader.poll().unwrap(), vec![]);
        assert_eq!(reader.finish().unwrap(), vec![(0, m(&[("x", 1.0)]))]);
    }

    #[test]
    fn params_file_round_trips() {
        let tmp = tempfile::tempdir().unwrap();
        let params = serde_json::json!({"lr": 0.001, "model": "resnet18", "batch": 64});
        let path = write_params(tmp.path(), params.as_object().unwrap()).unwrap();
        assert_eq!(path, tmp.path().join(PARAMS_FILE));
        let text = fs::read_to_string(&path).unwrap();
        assert!(text.ends_with("}\n"));
        assert_eq!(serde_json::from_str::<Json>(&text).unwrap(), params);
        let err = write_params(&tmp.path().join("missing"), params.as_object().unwrap()).unwrap_err();
        assert!(err.to_string().contains("cannot write") && err.to_string().contains("missing"), "{err}");
    }
}
