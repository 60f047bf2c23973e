//! Reading `qstat`: job records from `qstat -xf -F json` (or its text form, `qstat -xf`), what a
//! job's state means for a waiting executor, what its `Exit_status` means for the trial, and what
//! qstat's own exit status means.
//!
//! PBS output is input: nothing here panics on it, every field is optional, and unknown fields
//! are ignored. Facts from `shared/reference/alcf.md`, "PBS Pro details" and "Aurora PBS":
//!
//! - JSON is `{"Jobs": {"<id>": {"job_state": "F", "Exit_status": 0, …}}}`; "numbers may be bare
//!   or strings": older servers print anything numeric bare, which can be invalid JSON (`005`,
//!   `.123`); newer ones print numbers. Known bugs: bad `\` escapes. So the JSON is repaired
//!   before parsing ([`repair_json`]), every value is read as text, and text `qstat -xf` is the
//!   fallback when even that fails.
//! - "several ids in one call may return only the first": query one id per call.
//! - qstat exits 35 for "Job has finished, use -x" and 153 for "Unknown Job Id"; a server briefly
//!   unreachable exits 255 (errno 15010), the same status a lost SSH connection gives.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::Value as Json;

use crate::executor::{ExecutorError, Failure};

/// One job as qstat reports it. Times are PBS's own text (`Tue Dec  1 10:00:00 2026`, the
/// server's local time), kept for people to read.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct JobRecord {
    /// The full id (`2287864.aurora-pbs-0001.hostmgmt.cm.aurora.alcf.anl.gov`).
    pub id: String,
    /// `Job_Name`: the trial's [`job_name`](crate::executor::job_name) for jobs this host submitted.
    pub name: Option<String>,
    pub state: Option<JobState>,
    pub substate: Option<i64>,
    pub exit_status: Option<i64>,
    pub queue: Option<String>,
    /// When the job entered the queue, started, and was reported ended.
    pub qtime: Option<String>,
    pub stime: Option<String>,
    pub obittime: Option<String>,
    /// PBS's remark (`Job run at … on (x4102c5s0b0n0…)`, why it is held, why it ended).
    pub comment: Option<String>,
    pub run_count: Option<i64>,
    /// `resources_used.walltime`.
    pub used_walltime: Option<Duration>,
    /// `Resource_List.walltime`: what the job asked for.
    pub walltime: Option<Duration>,
    /// `Resource_List.select`.
    pub select: Option<String>,
}

/// `job_state`, per PBS Pro's `qstat` documentation (alcf.md: "States B E F H M Q R S T U W X").
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum JobState {
    /// B: an array job with at least one subjob running.
    ArrayBegun,
    /// E: exiting after having run.
    Exiting,
    /// F: finished (history, `-x`).
    Finished,
    /// H: held.
    Held,
    /// M: moved to another server.
    Moved,
    /// Q: queued.
    Queued,
    /// R: running.
    Running,
    /// S: suspended.
    Suspended,
    /// T: being moved to a new location.
    Transit,
    /// U: suspended because the workstation is busy.
    UserBusy,
    /// W: waiting for its start time.
    Waiting,
    /// X: a subjob that finished or was deleted.
    SubjobDone,
    /// A state this code does not know, as printed.
    Other(String),
}

/// What a job's state means for an executor waiting on it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// Not started yet (Q, H, W, T): keep waiting.
    Queued,
    /// Started and not ended (R, E, B): keep waiting, follow its metrics.
    Running,
    /// Stopped for now (S, U): keep waiting.
    Suspended,
    /// Ended (F, X): read its exit status and its trial files.
    Ended,
    /// Moved to another server (M): it is no longer this server's to report.
    Moved,
    /// A state not known here: keep waiting, and say so.
    Unknown,
}

impl JobState {
    pub fn from_code(code: &str) -> JobState {
        match code.trim() {
            "B" => JobState::ArrayBegun,
            "E" => JobState::Exiting,
            "F" => JobState::Finished,
            "H" => JobState::Held,
            "M" => JobState::Moved,
            "Q" => JobState::Queued,
            "R" => JobState::Running,
            "S" => JobState::Suspended,
            "T" => JobState::Transit,
            "U" => JobState::UserBusy,
            "W" => JobState::Waiting,
            "X" => JobState::SubjobDone,
            other => JobState::Other(other.to_string()),
        }
    }

    pub fn phase(&self) -> Phase {
        match self {
            JobState::Queued | JobState::Held | JobState::Waiting | JobState::Transit => Phase::Queued,
            JobState::Running | JobState::Exiting | JobState::ArrayBegun => Phase::Running,
            JobState::Suspended | JobState::UserBusy => Phase::Suspended,
            JobState::Finished | JobState::SubjobDone => Phase::Ended,
            JobState::Moved => Phase::Moved,
            JobState::Other(_) => Phase::Unknown,
        }
    }
}

impl JobRecord {
    /// The phase of the job; a record without a state is [`Phase::Unknown`].
    pub fn phase(&self) -> Phase {
        self.state.as_ref().map_or(Phase::Unknown, JobState::phase)
    }

    /// How the job ended: `None` while it has not; `Some(None)` for success; `Some(Some(failure))`
    /// otherwise. A finished job without an exit status never ran (deleted while queued, refused
    /// by a hook): that is the system's failure, with PBS's comment as the reason.
    pub fn outcome(&self) -> Option<Option<Failure>> {
        if self.phase() != Phase::Ended {
            return None;
        }
        Some(match self.exit_status {
            Some(status) => exit_failure(status),
            None => {
                let why = self.comment.as_deref().map(|c| format!(": {c}")).unwrap_or_default();
                Some(Failure::system(format!("the job ended without an exit status (it never ran){why}")))
            }
        })
    }
}

/// A job's `Exit_status` as the trial's failure (`None`: success).
///
/// - 0: success.
/// - negative: PBS could not run the job or killed it (`JOB_EXEC_*`, OpenPBS `job.h`; -29 is the
///   walltime limit): the system's failure, with the code's meaning.
/// - 256+N: the job's top process died of signal N (alcf.md: "killed by signal N: 256+N (e.g. 271
///   = SIGTERM)"; the job script `exec`s the trial, so that is the trial program): the system's
///   (qdel, a node going down, the OOM killer) — except the signals a program raises against
///   itself by crashing (SIGSEGV, SIGABRT, SIGBUS, SIGFPE, SIGILL, SIGSYS, SIGTRAP), which would
///   happen again on a re-run: the trial's.
/// - 75: the trial stopped and asks to be resumed (EX_TEMPFAIL; `alcf-trainer` on SIGTERM): the
///   system's, so it is re-run.
/// - 1..=255 otherwise: the trial's own exit status. 128+N is noted as a likely signal inside the
///   job (a shell reports a child killed by N that way).
pub fn exit_failure(status: i64) -> Option<Failure> {
    match status {
        0 => None,
        s if s < 0 => Some(Failure::system(match pbs_exec_code(s) {
            Some((name, meaning)) => format!("PBS ended the job: {meaning} (Exit_status {s}, {name})"),
            None => format!("PBS ended the job (Exit_status {s}, a PBS code this host does not know)"),
        })),
        75 => Some(Failure::system("the trial stopped and asked to be resumed (exit status 75)")),
        s @ 1..=255 => {
            let signal = (s > 128).then(|| signal_name(s - 128)).flatten();
            Some(Failure::trial(match signal {
                Some(sig) => format!("exit status {s} (128+{}: likely {sig} inside the job)", s - 128),
                None => format!("exit status {s}"),
            }))
        }
        s @ 257..=383 => {
            let n = s - 256;
            let name = signal_name(n).map(|sig| format!(" ({sig})")).unwrap_or_default();
            let reason = format!("killed by signal {n}{name} (Exit_status {s})");
            Some(if is_crash_signal(n) { Failure::trial(reason) } else { Failure::system(reason) })
        }
        s => Some(Failure::system(format!("the job ended with Exit_status {s}, which PBS does not define"))),
    }
}

/// OpenPBS `src/include/job.h`, `JOB_EXEC_*` (alcf.md: "full list -1..-30"; -8 and -9 are unused).
pub fn pbs_exec_code(status: i64) -> Option<(&'static str, &'static str)> {
    Some(match status {
        -1 => ("JOB_EXEC_FAIL1", "the job could not start, before its files were set up"),
        -2 => ("JOB_EXEC_FAIL2", "the job could not start, after its files were set up"),
        -3 => ("JOB_EXEC_RETRY", "the job could not start and is to be retried"),
        -4 => ("JOB_EXEC_INITABT", "the job was aborted when its node's PBS daemon restarted"),
        -5 => ("JOB_EXEC_INITRST", "the job was aborted when its node's PBS daemon restarted (checkpointed)"),
        -6 => ("JOB_EXEC_INITRMG", "the job was aborted when its node's PBS daemon restarted (may migrate)"),
        -7 => ("JOB_EXEC_BADRESRT", "the job's restart failed"),
        -10 => ("JOB_EXEC_FAILUID", "the job's user or group id is invalid on the node"),
        -11 => ("JOB_EXEC_RERUN", "the job was rerun"),
        -12 => ("JOB_EXEC_CHKP", "the job was checkpointed and killed"),
        -13 => ("JOB_EXEC_FAIL_PASSWORD", "the job failed on a bad password"),
        -14 => ("JOB_EXEC_RERUN_SIS_FAIL", "the job was rerun after a sister node failed"),
        -15 => ("JOB_EXEC_QUERST", "the job was requeued to restart from a checkpoint"),
        -16 => ("JOB_EXEC_FAILHOOK_RERUN", "a hook refused to start the job; it is requeued"),
        -17 => ("JOB_EXEC_FAILHOOK_DELETE", "a hook refused to start the job; it is deleted"),
        -18 => ("JOB_EXEC_HOOK_RERUN", "a hook asked for the job to be requeued"),
        -19 => ("JOB_EXEC_HOOK_DELETE", "a hook asked for the job to be deleted"),
        -20 => ("JOB_EXEC_RERUN_MS_FAIL", "the connection to the job's first node failed"),
        -21 => ("JOB_EXEC_FAIL_SECURITY", "a security check of PBS's directory failed on the node"),
        -22 => ("JOB_EXEC_HOOKERROR", "a hook failed or timed out"),
        -23 => ("JOB_EXEC_FAIL_KRB5", "no Kerberos credentials were supplied"),
        -24 => ("JOB_EXEC_KILL_NCPUS_BURST", "the job used more CPUs than it asked for (burst)"),
        -25 => ("JOB_EXEC_KILL_NCPUS_SUM", "the job used more CPUs than it asked for (sum)"),
        -26 => ("JOB_EXEC_KILL_VMEM", "the job used more virtual memory than it asked for"),
        -27 => ("JOB_EXEC_KILL_MEM", "the job used more memory than it asked for"),
        -28 => ("JOB_EXEC_KILL_CPUT", "the job used more CPU time than it asked for"),
        -29 => ("JOB_EXEC_KILL_WALLTIME", "the job ran past its walltime"),
        -30 => ("JOB_EXEC_JOINJOB", "the job's nodes could not be joined"),
        _ => return None,
    })
}

/// Linux signal names by number. Aurora's compute nodes are Linux; the host may not be (macOS
/// numbers signals differently, e.g. SIGUSR1 is 30 there), so this is a table, not `libc`.
pub fn signal_name(n: i64) -> Option<String> {
    const NAMES: [&str; 31] = [
        "SIGHUP",
        "SIGINT",
        "SIGQUIT",
        "SIGILL",
        "SIGTRAP",
        "SIGABRT",
        "SIGBUS",
        "SIGFPE",
        "SIGKILL",
        "SIGUSR1",
        "SIGSEGV",
        "SIGUSR2",
        "SIGPIPE",
        "SIGALRM",
        "SIGTERM",
        "SIGSTKFLT",
        "SIGCHLD",
        "SIGCONT",
        "SIGSTOP",
        "SIGTSTP",
        "SIGTTIN",
        "SIGTTOU",
        "SIGURG",
        "SIGXCPU",
        "SIGXFSZ",
        "SIGVTALRM",
        "SIGPROF",
        "SIGWINCH",
        "SIGIO",
        "SIGPWR",
        "SIGSYS",
    ];
    match n {
        1..=31 => Some(NAMES[(n - 1) as usize].to_string()),
        34 => Some("SIGRTMIN".into()),
        35..=64 => Some(format!("SIGRTMIN+{}", n - 34)),
        _ => None,
    }
}

/// Signals a program gets from its own fault (a crash), not from someone else.
fn is_crash_signal(n: i64) -> bool {
    // SIGILL 4, SIGTRAP 5, SIGABRT 6, SIGBUS 7, SIGFPE 8, SIGSEGV 11, SIGSYS 31.
    matches!(n, 4..=8 | 11 | 31)
}

// ---- qstat's own exit status ----------------------------------------------------------------

/// What one qstat call said.
#[derive(Clone, Debug, PartialEq)]
pub enum QstatOutcome {
    /// The jobs it printed (possibly none).
    Jobs(Vec<JobRecord>),
    /// Exit 35, "Job has finished, use -x or -H": only a query without `-x` gets it; ask again
    /// with `-x` for the exit status.
    Finished { message: String },
    /// Exit 153, "Unknown Job Id": the server has no such job (history is kept two weeks; a job
    /// refused by all destinations can get an id and vanish). Not by itself proof that the job is
    /// lost: the caller decides, e.g. after seeing it twice, a poll interval apart.
    Unknown { message: String },
}

impl QstatOutcome {
    /// The record of job `id`, if it was printed (matched as [`same_job`]).
    pub fn job(&self, id: &str) -> Option<&JobRecord> {
        match self {
            QstatOutcome::Jobs(jobs) => jobs.iter().find(|j| same_job(&j.id, id)),
            _ => None,
        }
    }
}

/// A qstat call that told nothing about the job. Every one is transient: retry after a while.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum QstatError {
    /// Exit 255: the PBS server was unreachable (errno 15010), or the connection was lost.
    #[error("qstat could not reach the PBS server or the connection was lost (exit 255){}", detail(.message))]
    Unreachable { message: String },
    #[error("qstat failed with exit status {status}{}", detail(.message))]
    Failed { status: i32, message: String },
    /// The output could not be read. `json`: it was JSON, so asking for the text format
    /// (`qstat -xf` without `-F json`) may work.
    #[error("cannot read qstat's output ({}): {message}", format_name(*.json))]
    Unreadable { json: bool, message: String },
}

fn format_name(json: bool) -> &'static str {
    if json { "JSON" } else { "text" }
}

fn detail(message: &str) -> String {
    if message.is_empty() { String::new() } else { format!(": {message}") }
}

impl QstatError {
    /// Whether the same query in the text format may succeed where JSON failed.
    pub fn wants_text_format(&self) -> bool {
        matches!(self, QstatError::Unreadable { json: true, .. })
    }

    /// As the executor contract's error: nothing is lost, retry after `retry_after`.
    pub fn into_transient(self, retry_after: Duration) -> ExecutorError {
        ExecutorError::Transient { message: self.to_string(), retry_after }
    }
}

/// Interprets one qstat call: its exit status (what the remote wrapper printed), stdout and stderr.
pub fn interpret_qstat(status: i32, stdout: &str, stderr: &str) -> Result<QstatOutcome, QstatError> {
    let message = one_line(stderr);
    match status {
        0 => parse_qstat(stdout).map(QstatOutcome::Jobs),
        // pbs_errno & 0xff: PBSE_HISTJOBID 15139 -> 35, PBSE_UNKJOBID 15001 -> 153.
        35 => Ok(QstatOutcome::Finished { message }),
        153 => Ok(QstatOutcome::Unknown { message }),
        255 => Err(QstatError::Unreachable { message }),
        status => Err(QstatError::Failed { status, message }),
    }
}

/// stderr as one line, for messages (the last few hundred characters: qstat says one thing).
fn one_line(text: &str) -> String {
    let line = text.split_whitespace().collect::<Vec<_>>().join(" ");
    let skip = line.chars().count().saturating_sub(300);
    line.chars().skip(skip).collect()
}

/// Jobs from qstat's output, JSON (`-F json`) or text, told apart by the first character.
pub fn parse_qstat(output: &str) -> Result<Vec<JobRecord>, QstatError> {
    let trimmed = output.trim_start();
    if trimmed.starts_with('{') {
        parse_json(trimmed)
    } else if trimmed.is_empty() {
        Ok(Vec::new())
    } else {
        parse_text(trimmed)
    }
}

/// Jobs from `qstat -F json` output, repaired first ([`repair_json`]).
pub fn parse_json(output: &str) -> Result<Vec<JobRecord>, QstatError> {
    let unreadable = |message: String| QstatError::Unreadable { json: true, message };
    let value: Json = serde_json::from_str(&repair_json(output)).map_err(|e| unreadable(e.to_string()))?;
    let Json::Object(top) = value else { return Err(unreadable("not a JSON object".into())) };
    let jobs = match top.get("Jobs") {
        // A query that matched no job prints only the server's fields.
        None | Some(Json::Null) => return Ok(Vec::new()),
        Some(Json::Object(jobs)) => jobs,
        Some(_) => return Err(unreadable("`Jobs` is not an object".into())),
    };
    Ok(jobs
        .iter()
        .map(|(id, attrs)| {
            let mut flat = Attrs::new();
            if let Json::Object(attrs) = attrs {
                for (key, value) in attrs {
                    match value {
                        Json::Object(inner) => {
                            for (sub, v) in inner {
                                if let Some(text) = json_text(v) {
                                    flat.insert(format!("{key}.{sub}"), text);
                                }
                            }
                        }
                        v => {
                            if let Some(text) = json_text(v) {
                                flat.insert(key.clone(), text);
                            }
                        }
                    }
                }
            }
            record(id, &flat)
        })
        .collect())
}

fn json_text(v: &Json) -> Option<String> {
    match v {
        Json::String(s) => Some(s.clone()),
        Json::Number(n) => Some(n.to_string()),
        Json::Bool(b) => Some(if *b { "True".into() } else { "False".into() }),
        Json::Null | Json::Array(_) | Json::Object(_) => None,
    }
}

/// Jobs from text `qstat -f` output: `Job Id: <id>` blocks of `    name = value` lines; a long
/// value goes on in lines that start with a tab, which continue it verbatim. Nested attributes are
/// dotted (`Resource_List.walltime`), as in the JSON records after flattening.
pub fn parse_text(output: &str) -> Result<Vec<JobRecord>, QstatError> {
    let mut jobs: Vec<(String, Attrs)> = Vec::new();
    let mut last_key: Option<String> = None;
    for line in output.lines() {
        let line = line.strip_suffix('\r').unwrap_or(line);
        if let Some(id) = line.strip_prefix("Job Id:") {
            jobs.push((id.trim().to_string(), Attrs::new()));
            last_key = None;
            continue;
        }
        let Some((_, attrs)) = jobs.last_mut() else { continue };
        if let Some(more) = line.strip_prefix('\t') {
            if let Some(value) = last_key.as_ref().and_then(|k| attrs.get_mut(k)) {
                value.push_str(more);
            }
            continue;
        }
        if line.trim().is_empty() {
            last_key = None;
            continue;
        }
        if let Some((key, value)) = line.split_once(" = ") {
            let key = key.trim().to_string();
            attrs.insert(key.clone(), value.to_string());
            last_key = Some(key);
        } else if line.starts_with(' ') {
            // A continuation indented with spaces: some versions do.
            if let Some(value) = last_key.as_ref().and_then(|k| attrs.get_mut(k)) {
                value.push_str(line.trim_start());
            }
        }
    }
    if jobs.is_empty() {
        return Err(QstatError::Unreadable { json: false, message: "no `Job Id:` line".into() });
    }
    Ok(jobs.iter().map(|(id, attrs)| record(id, attrs)).collect())
}

type Attrs = BTreeMap<String, String>;

fn record(id: &str, a: &Attrs) -> JobRecord {
    let text = |k: &str| a.get(k).map(|s| s.trim().to_string()).filter(|s| !s.is_empty());
    let int = |k: &str| a.get(k).and_then(|s| parse_int(s));
    JobRecord {
        id: id.trim().to_string(),
        name: text("Job_Name"),
        state: text("job_state").map(|s| JobState::from_code(&s)),
        substate: int("substate"),
        exit_status: int("Exit_status"),
        queue: text("queue"),
        qtime: text("qtime"),
        stime: text("stime"),
        obittime: text("obittime"),
        comment: text("comment"),
        run_count: int("run_count"),
        used_walltime: a.get("resources_used.walltime").and_then(|s| parse_duration(s)),
        walltime: a.get("Resource_List.walltime").and_then(|s| parse_duration(s)),
        select: text("Resource_List.select"),
    }
}

/// An integer as PBS prints it: bare or quoted, possibly with leading zeros (`005`) or a sign.
pub fn parse_int(text: &str) -> Option<i64> {
    text.trim().parse().ok()
}

/// A PBS duration: `HH:MM:SS`, `MM:SS` or seconds, each part an integer (hours may exceed 24), the
/// last part possibly with a fraction (which is dropped). `None` for anything else.
pub fn parse_duration(text: &str) -> Option<Duration> {
    let parts: Vec<&str> = text.trim().split(':').collect();
    if parts.is_empty() || parts.len() > 3 {
        return None;
    }
    let mut seconds: u64 = 0;
    for (i, part) in parts.iter().enumerate() {
        let whole = if i == parts.len() - 1 {
            match part.split_once('.') {
                Some((w, frac)) if frac.bytes().all(|b| b.is_ascii_digit()) => w,
                Some(_) => return None,
                None => part,
            }
        } else {
            part
        };
        let digits = if whole.is_empty() && i == parts.len() - 1 && part.starts_with('.') { "0" } else { whole };
        if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let n: u64 = digits.parse().ok()?;
        seconds = seconds.checked_mul(60)?.checked_add(n)?;
    }
    Some(Duration::from_secs(seconds))
}

/// Whether two spellings name the same job: equal, or one is the other cut at a `.` (qsub prints
/// `2287864.aurora-pbs-0001.hostmgmt.cm.aurora.alcf.anl.gov`, a person types `2287864`).
pub fn same_job(a: &str, b: &str) -> bool {
    let (short, long) = if a.len() <= b.len() { (a, b) } else { (b, a) };
    !short.is_empty() && long.strip_prefix(short).is_some_and(|rest| rest.is_empty() || rest.starts_with('.'))
}

/// The jobs named `name` (after a crash, the job of a trial whose handle was never stored), most
/// recently queued last as qstat lists them. More than one means the trial was submitted twice;
/// the caller keeps the one that is not ended, or the last.
pub fn find_named<'a>(jobs: &'a [JobRecord], name: &str) -> Vec<&'a JobRecord> {
    jobs.iter().filter(|j| j.name.as_deref() == Some(name)).collect()
}

/// Makes PBS's JSON parseable, keeping the text of every value (alcf.md, "PBS Pro details").
///
/// - Outside strings, every bare word except `true`, `false` and `null` becomes a string: that
///   turns invalid numbers (`005`, `.123`) into text and keeps valid ones exactly as printed
///   (a `Job_Name` of `1e5` stays `1e5`); every field is read as text anyway.
/// - Inside strings, a `\` that starts no valid escape is kept as a literal backslash, raw control
///   characters are escaped, and a `"` that is not followed by `:`, `,`, `}`, `]` or the end is
///   taken for a quote inside the value (PBS does not always escape them).
pub fn repair_json(text: &str) -> String {
    let chars: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len() + 16);
    let mut i = 0;
    let next_significant = |from: usize| chars[from..].iter().copied().find(|c| !c.is_whitespace());
    while i < chars.len() {
        let c = chars[i];
        match c {
            '{' | '}' | '[' | ']' | ':' | ',' => out.push(c),
            c if c.is_whitespace() => out.push(c),
            '"' => {
                out.push('"');
                i += 1;
                while i < chars.len() {
                    let c = chars[i];
                    match c {
                        '\\' => match chars.get(i + 1) {
                            Some(n @ ('"' | '\\' | '/' | 'b' | 'f' | 'n' | 'r' | 't')) => {
                                out.push('\\');
                                out.push(*n);
                                i += 1;
                            }
                            Some('u')
                                if chars.get(i + 2..i + 6).is_some_and(|h| h.iter().all(char::is_ascii_hexdigit)) =>
                            {
                                out.push('\\');
                            }
                            _ => out.push_str("\\\\"),
                        },
                        '"' => {
                            if matches!(next_significant(i + 1), None | Some(':' | ',' | '}' | ']')) {
                                break;
                            }
                            out.push_str("\\\"");
                        }
                        c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
                        c => out.push(c),
                    }
                    i += 1;
                }
                out.push('"');
            }
            _ => {
                let start = i;
                while i < chars.len()
                    && !matches!(chars[i], '{' | '}' | '[' | ']' | ':' | ',' | '"')
                    && !chars[i].is_whitespace()
                {
                    i += 1;
                }
                let word: String = chars[start..i].iter().collect();
                if matches!(word.as_str(), "true" | "false" | "null") {
                    out.push_str(&word);
                } else {
                    out.push_str(&Json::String(word).to_string());
                }
                continue;
            }
        }
        i += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::executor::FailureCause;

    const ID: &str = "2287864.aurora-pbs-0001.hostmgmt.cm.aurora.alcf.anl.gov";

    /// A finished job as a newer server prints it (numbers as numbers), trimmed of the fields
    /// nothing reads, plus one field this code does not know.
    const FINISHED_JSON: &str = r#"{
    "timestamp":1764583200,
    "pbs_version":"2022.1.6.20240822224400",
    "pbs_server":"aurora-pbs-0001.hostmgmt.cm.aurora.alcf.anl.gov",
    "Jobs":{
        "2287864.aurora-pbs-0001.hostmgmt.cm.aurora.alcf.anl.gov":{
            "Job_Name":"mystudy.t12.a1",
            "Job_Owner":"user@aurora-uan-0010.hostmgmt.cm.aurora.alcf.anl.gov",
            "resources_used":{
                "cpupercent":97,
                "cput":"00:10:01",
                "mem":"2043636kb",
                "ncpus":208,
                "walltime":"00:10:12"
            },
            "job_state":"F",
            "queue":"debug",
            "server":"aurora-pbs-0001.hostmgmt.cm.aurora.alcf.anl.gov",
            "Checkpoint":"u",
            "ctime":"Tue Dec  1 09:58:01 2026",
            "Keep_Files":"doe",
            "qtime":"Tue Dec  1 09:58:01 2026",
            "Rerunable":"True",
            "Resource_List":{
                "filesystems":"home:flare",
                "ncpus":208,
                "nodect":1,
                "place":"scatter",
                "select":"1",
                "walltime":"01:00:00"
            },
            "stime":"Tue Dec  1 09:58:30 2026",
            "obittime":"Tue Dec  1 10:08:42 2026",
            "substate":92,
            "comment":"Job run at Tue Dec 01 at 09:58 on (x4102c5s0b0n0:ncpus=208) and finished",
            "run_count":1,
            "Exit_status":0,
            "Submit_arguments":"job.sh",
            "some_future_field":{"nested":[1,2,3]}
        }
    }
}"#;

    fn finished() -> JobRecord {
        JobRecord {
            id: ID.into(),
            name: Some("mystudy.t12.a1".into()),
            state: Some(JobState::Finished),
            substate: Some(92),
            exit_status: Some(0),
            queue: Some("debug".into()),
            qtime: Some("Tue Dec  1 09:58:01 2026".into()),
            stime: Some("Tue Dec  1 09:58:30 2026".into()),
            obittime: Some("Tue Dec  1 10:08:42 2026".into()),
            comment: Some("Job run at Tue Dec 01 at 09:58 on (x4102c5s0b0n0:ncpus=208) and finished".into()),
            run_count: Some(1),
            used_walltime: Some(Duration::from_secs(612)),
            walltime: Some(Duration::from_secs(3600)),
            select: Some("1".into()),
        }
    }

    #[test]
    fn a_finished_job_in_json() {
        let jobs = parse_json(FINISHED_JSON).unwrap();
        assert_eq!(jobs, vec![finished()]);
        assert_eq!(jobs[0].phase(), Phase::Ended);
        assert_eq!(jobs[0].outcome(), Some(None));
    }

    #[test]
    fn an_older_servers_invalid_json_is_repaired() {
        // alcf.md: numbers bare even when invalid (`005`, `.123`), bad `\` escapes; plus raw
        // control characters and an unescaped quote inside a value.
        let text = "{\"Jobs\":{\"7.srv\":{\"Job_Name\":005,\"job_state\":\"R\",\"Exit_status\":-29,\
            \"resources_used\":{\"cpupercent\":.123,\"walltime\":\"00:00:05\"},\
            \"Resource_List\":{\"walltime\":\"1:00:00\",\"select\":\"1:ncpus=208\"},\
            \"comment\":\"path C:\\dir\\x \"quoted\" and\ta tab\nand a newline\",\"run_count\":\"2\",\
            \"Variable_List\":{\"PBS_O_PATH\":\"/bin\\:/usr/bin\"}}}}";
        assert!(serde_json::from_str::<Json>(text).is_err(), "the sample is invalid JSON");
        let jobs = parse_json(text).unwrap();
        assert_eq!(jobs.len(), 1);
        let j = &jobs[0];
        assert_eq!(j.id, "7.srv");
        assert_eq!(j.name.as_deref(), Some("005"), "the text of a bare number is kept");
        assert_eq!(j.state, Some(JobState::Running));
        assert_eq!(j.exit_status, Some(-29));
        assert_eq!(j.run_count, Some(2), "a number as a string");
        assert_eq!(j.used_walltime, Some(Duration::from_secs(5)));
        assert_eq!(j.walltime, Some(Duration::from_secs(3600)));
        assert_eq!(j.select.as_deref(), Some("1:ncpus=208"));
        assert_eq!(j.comment.as_deref(), Some("path C:\\dir\\x \"quoted\" and\ta tab\nand a newline"));
        // Valid JSON is unchanged in meaning: numbers become their own text.
        assert_eq!(
            repair_json(r#"{"a":[1,-2.5e3,true,null,"x\"y\u00e9"]}"#),
            r#"{"a":["1","-2.5e3",true,null,"x\"y\u00e9"]}"#
        );
    }

    #[test]
    fn broken_output_is_an_error_never_a_panic() {
        for text in [
            "{",
            "{\"Jobs\":",
            "{\"Jobs\":[1]}",
            "{\"Jobs\":{\"1.s\":{\"a\":\"\\",
            "{\"\u{0}\":\u{7f}}",
            "{\"Jobs\":{\"1.s\"",
            "{\"Jobs\":{\"1.s\":{\"x\":\"\\u12\"}}}",
        ] {
            match parse_qstat(text) {
                Err(e) => assert!(e.wants_text_format(), "{text:?}: {e}"),
                // What repair makes of it is still a job list, never a panic.
                Ok(jobs) => assert!(jobs.iter().all(|j| j.state.is_none()), "{text:?}"),
            }
        }
        assert!(matches!(parse_qstat("[]"), Err(QstatError::Unreadable { json: false, .. })));
        assert!(matches!(parse_qstat("garbage"), Err(QstatError::Unreadable { json: false, .. })));
        assert_eq!(parse_qstat("  \n"), Ok(vec![]));
        assert_eq!(parse_qstat(r#"{"timestamp":1,"pbs_server":"s"}"#), Ok(vec![]), "no job matched");
        // A job whose attributes are not an object is a record without fields.
        assert_eq!(
            parse_qstat(r#"{"Jobs":{"1.s":"?"}}"#).unwrap(),
            vec![JobRecord { id: "1.s".into(), ..Default::default() }]
        );
    }

    #[test]
    fn the_text_format_reads_the_same_job() {
        // `qstat -xf` text: four-space indent, tab continuation lines that go on verbatim.
        let text = format!(
            "Job Id: {ID}\n    Job_Name = mystudy.t12.a1\n    Job_Owner = user@aurora-uan-0010\n\
             \x20   resources_used.cpupercent = 97\n    resources_used.walltime = 00:10:12\n\
             \x20   job_state = F\n    queue = debug\n    qtime = Tue Dec  1 09:58:01 2026\n\
             \x20   Resource_List.select = 1\n    Resource_List.walltime = 01:00:00\n\
             \x20   stime = Tue Dec  1 09:58:30 2026\n    obittime = Tue Dec  1 10:08:42 2026\n\
             \x20   substate = 92\n    Variable_List = PBS_O_HOME=/home/user,PBS_O_LANG=en_US.UTF-8,\n\
             \tPBS_O_LOGNAME=user\n    comment = Job run at Tue Dec 01 at 09:58 on (x4102c5s0b0n0:ncpus=2\n\
             \t08) and finished\n    run_count = 1\n    Exit_status = 0\n    Submit_arguments = job.sh\n\n\
             Job Id: 2287865.aurora-pbs-0001\n    job_state = Q\n    comment = Not Running: Job would \
             exceed queue debug's per-user limit\n\n"
        );
        let jobs = parse_qstat(&text).unwrap();
        assert_eq!(jobs.len(), 2);
        assert_eq!(jobs[0], finished());
        assert_eq!(jobs[1].phase(), Phase::Queued);
        assert_eq!(jobs[1].outcome(), None);
        assert!(jobs[1].comment.as_deref().unwrap().ends_with("per-user limit"));
        let outcome = QstatOutcome::Jobs(jobs);
        assert_eq!(outcome.job("2287865").map(|j| j.id.as_str()), Some("2287865.aurora-pbs-0001"));
        assert_eq!(outcome.job("2287864.aurora-pbs-0001").map(|j| j.exit_status), Some(Some(0)));
        assert!(outcome.job("228786").is_none());
    }

    #[test]
    fn states_and_phases() {
        // alcf.md "Aurora PBS": States B E F H M Q R S T U W X.
        let phases: Vec<Phase> = "BEFHMQRSTUWX".chars().map(|c| JobState::from_code(&c.to_string()).phase()).collect();
        use Phase::*;
        assert_eq!(
            phases,
            [Running, Running, Ended, Queued, Moved, Queued, Running, Suspended, Queued, Suspended, Queued, Ended]
        );
        assert_eq!(JobState::from_code("Z"), JobState::Other("Z".into()));
        assert_eq!(JobRecord::default().phase(), Phase::Unknown);
        let deleted = JobRecord {
            state: Some(JobState::Finished),
            comment: Some("Job deleted as result of dependency".into()),
            ..Default::default()
        };
        let f = deleted.outcome().unwrap().unwrap();
        assert_eq!(f.cause, FailureCause::System);
        assert!(f.reason.contains("never ran") && f.reason.contains("dependency"), "{}", f.reason);
        let x = JobRecord { state: Some(JobState::SubjobDone), exit_status: Some(3), ..Default::default() };
        assert_eq!(x.outcome(), Some(Some(Failure::trial("exit status 3"))));
    }

    #[test]
    fn exit_statuses_become_failures_a_person_can_read() {
        let f = |s| exit_failure(s).unwrap();
        assert_eq!(exit_failure(0), None);
        // alcf.md "PBS Pro details": -29 = JOB_EXEC_KILL_WALLTIME; 271 = SIGTERM.
        let wall = f(-29);
        assert_eq!(wall.cause, FailureCause::System);
        assert_eq!(
            wall.reason,
            "PBS ended the job: the job ran past its walltime (Exit_status -29, JOB_EXEC_KILL_WALLTIME)"
        );
        assert!(f(-1).reason.contains("JOB_EXEC_FAIL1"));
        assert!(f(-27).reason.contains("memory"));
        for code in (-30..=-1).filter(|c| !matches!(c, -8 | -9)) {
            assert!(pbs_exec_code(code).is_some(), "{code}");
        }
        assert!(f(-8).reason.contains("does not know") && f(-8).cause == FailureCause::System);
        assert!(f(-31).reason.contains("does not know"));
        let term = f(271);
        assert_eq!(
            (term.cause, term.reason.as_str()),
            (FailureCause::System, "killed by signal 15 (SIGTERM) (Exit_status 271)")
        );
        assert_eq!(f(265).reason, "killed by signal 9 (SIGKILL) (Exit_status 265)");
        assert_eq!(f(265).cause, FailureCause::System);
        // A crash is the trial's: a re-run would crash again.
        assert_eq!(f(267).cause, FailureCause::Trial);
        assert!(f(267).reason.contains("SIGSEGV"));
        assert_eq!(f(262).cause, FailureCause::Trial);
        assert!(f(256 + 40).reason.contains("SIGRTMIN+6"));
        assert_eq!(f(256 + 100).reason, "killed by signal 100 (Exit_status 356)");
        assert_eq!(f(75), Failure::system("the trial stopped and asked to be resumed (exit status 75)"));
        assert_eq!(f(1), Failure::trial("exit status 1"));
        assert_eq!(f(255), Failure::trial("exit status 255"));
        assert_eq!(f(128), Failure::trial("exit status 128"));
        assert_eq!(f(137), Failure::trial("exit status 137 (128+9: likely SIGKILL inside the job)"));
        assert_eq!(f(256).cause, FailureCause::System, "256 is no signal");
        assert_eq!(f(100_000).cause, FailureCause::System);
        assert_eq!(f(i64::MIN).cause, FailureCause::System);
        assert_eq!(f(i64::MAX).cause, FailureCause::System);
        assert_eq!(signal_name(0), None);
        assert_eq!(signal_name(31).as_deref(), Some("SIGSYS"));
        assert_eq!(signal_name(10).as_deref(), Some("SIGUSR1"), "Linux numbering, whatever the host");
    }

    #[test]
    fn qstats_own_exit_status() {
        // alcf.md "PBS Pro details": 35 finished without -x, 153 unknown id, 255 unreachable.
        let gone = interpret_qstat(
            35,
            "",
            &format!("qstat: {ID} Job has finished, use -x or -H to obtain historical job information\n"),
        );
        assert!(matches!(&gone, Ok(QstatOutcome::Finished { message }) if message.contains("use -x")));
        let unknown = interpret_qstat(153, "", "qstat: Unknown Job Id 1.aurora-pbs-0001\n");
        assert_eq!(unknown, Ok(QstatOutcome::Unknown { message: "qstat: Unknown Job Id 1.aurora-pbs-0001".into() }));
        assert_eq!(unknown.unwrap().job("1"), None);
        let down =
            interpret_qstat(255, "", "qstat: cannot connect to server aurora-pbs-0001 (errno=15010)").unwrap_err();
        assert!(matches!(&down, QstatError::Unreachable { message } if message.contains("15010")));
        let e = down.into_transient(Duration::from_secs(30));
        assert!(matches!(&e, ExecutorError::Transient { retry_after, .. } if *retry_after == Duration::from_secs(30)));
        assert!(e.to_string().contains("exit 255") && e.to_string().contains("retrying in 30 s"), "{e}");
        let other = interpret_qstat(1, "", "").unwrap_err();
        assert_eq!(other, QstatError::Failed { status: 1, message: String::new() });
        assert!(!other.wants_text_format());
        assert_eq!(other.to_string(), "qstat failed with exit status 1");
        assert_eq!(interpret_qstat(0, FINISHED_JSON, "").unwrap().job(ID), Some(&finished()));
        assert!(interpret_qstat(0, "{\"Jobs\":", "").unwrap_err().wants_text_format());
        let long = "x ".repeat(1000);
        assert!(
            matches!(interpret_qstat(2, "", &long), Err(QstatError::Failed { message, .. }) if message.chars().count() <= 300)
        );
    }

    #[test]
    fn durations_ids_and_names() {
        assert_eq!(parse_duration("01:00:00"), Some(Duration::from_secs(3600)));
        assert_eq!(parse_duration("168:00:00"), Some(Duration::from_secs(168 * 3600)));
        assert_eq!(parse_duration("10:05"), Some(Duration::from_secs(605)));
        assert_eq!(parse_duration(" 3600 "), Some(Duration::from_secs(3600)));
        assert_eq!(parse_duration("00:00:05.75"), Some(Duration::from_secs(5)));
        assert_eq!(parse_duration(".5"), Some(Duration::ZERO));
        for bad in
            ["", "1:2:3:4", "a:00:00", "-1", "1::2", "5.x", "99999999999999999999:00:00", "184467440737095516:00:00"]
        {
            assert_eq!(parse_duration(bad), None, "{bad:?}");
        }
        assert_eq!(parse_int("005"), Some(5));
        assert_eq!(parse_int(" -29 "), Some(-29));
        assert_eq!(parse_int("1.5"), None);
        assert!(same_job(ID, "2287864") && same_job("2287864.aurora-pbs-0001", ID) && same_job(ID, ID));
        assert!(!same_job(ID, "228786") && !same_job(ID, "") && !same_job("1.a", "1.b"));
        let jobs = vec![
            JobRecord { id: "1.s".into(), name: Some("s.t1.a1".into()), ..Default::default() },
            JobRecord { id: "2.s".into(), name: Some("s.t1.a10".into()), ..Default::default() },
            JobRecord { id: "3.s".into(), name: Some("s.t1.a1".into()), ..Default::default() },
            JobRecord { id: "4.s".into(), ..Default::default() },
        ];
        let ids: Vec<&str> = find_named(&jobs, "s.t1.a1").iter().map(|j| j.id.as_str()).collect();
        assert_eq!(ids, ["1.s", "3.s"]);
        assert!(find_named(&jobs, "s.t2.a1").is_empty());
    }
}
