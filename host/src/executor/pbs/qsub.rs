//! Reading `qsub -f`: the new job's id, or why there is none.
//!
//! alcf.md "PBS Pro details": `qsub -f` prints the full job id on stdout. PBS commands exit with
//! `pbs_errno & 0xff`; ALCF's submit hook refuses a job without `-A` ("Account_Name is required to
//! be set") or without filesystems with 32; a full per-user queue limit is 38; resources beyond
//! the queue's limits 188; an unknown queue 170; no access to the queue 174; "rejected by all
//! possible destinations" 191; an unreachable server (or a lost SSH connection) 255.

use std::time::Duration;

use crate::executor::ExecutorError;

/// Why qsub gave no job id.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum QsubError {
    /// 32: ALCF's submit hook refused the job (a missing account or filesystems resource).
    #[error("PBS refused the job: {message} (qsub exit 32); check `executor.account` and `executor.filesystems`")]
    Refused { message: String },
    /// 38: the queue's per-user limit is reached; submit again when a job of this user ends.
    #[error("the queue's per-user job limit is reached: {message} (qsub exit 38)")]
    QueueFull { message: String },
    /// 188: the job asks for more than the queue allows (walltime, nodes).
    #[error(
        "the job exceeds the queue's limits: {message} (qsub exit 188); check `executor.walltime`, `executor.select` and `executor.queue`"
    )]
    OverLimits { message: String },
    /// 170.
    #[error("PBS has no such queue: {message} (qsub exit 170); check `executor.queue`")]
    UnknownQueue { message: String },
    /// 174.
    #[error("access to the queue is denied: {message} (qsub exit 174); check `executor.queue` and `executor.account`")]
    AccessDenied { message: String },
    /// 191: no destination queue takes the job (e.g. `prod` with too few nodes).
    #[error("no queue would take the job: {message} (qsub exit 191); check `executor.queue` and `executor.select`")]
    NoDestination { message: String },
    /// 255: the server was unreachable, or the connection was lost.
    #[error("qsub could not reach the PBS server or the connection was lost (exit 255): {message}")]
    Unreachable { message: String },
    /// Exit 0 without a job id on stdout. The job may exist: look it up by name before
    /// submitting the trial again.
    #[error("qsub succeeded but printed no job id (stdout: {stdout:?})")]
    NoJobId { stdout: String },
    #[error("qsub failed with exit status {status}: {message}")]
    Failed { status: i32, message: String },
}

impl QsubError {
    /// As the executor contract's error for trial `trial`: a config problem every trial would hit
    /// stops the run (`Fatal`); a full queue, a lost connection or an id that went missing pause
    /// submission (`Transient`); anything else fails this trial's start (`Submit`).
    pub fn into_executor_error(self, trial: u64, retry_after: Duration) -> ExecutorError {
        match self {
            QsubError::Refused { .. }
            | QsubError::OverLimits { .. }
            | QsubError::UnknownQueue { .. }
            | QsubError::AccessDenied { .. }
            | QsubError::NoDestination { .. } => ExecutorError::Fatal(self.to_string()),
            QsubError::QueueFull { .. } | QsubError::Unreachable { .. } | QsubError::NoJobId { .. } => {
                ExecutorError::Transient { message: self.to_string(), retry_after }
            }
            QsubError::Failed { .. } => ExecutorError::Submit { trial, message: self.to_string() },
        }
    }
}

/// The job id from one `qsub -f` call: its exit status (what the remote wrapper printed), stdout
/// and stderr.
pub fn interpret_qsub(status: i32, stdout: &str, stderr: &str) -> Result<String, QsubError> {
    let message = stderr.split_whitespace().collect::<Vec<_>>().join(" ");
    match status {
        0 => {
            // The id is the last line; anything before it is a site's notice.
            let id = stdout.lines().map(str::trim).rfind(|l| !l.is_empty()).unwrap_or("");
            if is_job_id(id) {
                Ok(id.to_string())
            } else {
                Err(QsubError::NoJobId { stdout: stdout.chars().take(300).collect() })
            }
        }
        32 => Err(QsubError::Refused { message }),
        38 => Err(QsubError::QueueFull { message }),
        188 => Err(QsubError::OverLimits { message }),
        170 => Err(QsubError::UnknownQueue { message }),
        174 => Err(QsubError::AccessDenied { message }),
        191 => Err(QsubError::NoDestination { message }),
        255 => Err(QsubError::Unreachable { message }),
        status => Err(QsubError::Failed { status, message }),
    }
}

/// `<sequence number>[optional array index].<server>`, e.g.
/// `2287864.aurora-pbs-0001.hostmgmt.cm.aurora.alcf.anl.gov` or `123[].server`.
pub fn is_job_id(id: &str) -> bool {
    let (seq, server) = id.split_once('.').unwrap_or((id, ""));
    let seq = seq
        .strip_suffix(']')
        .and_then(|s| s.split_once('['))
        .map_or(seq, |(n, index)| if index.bytes().all(|b| b.is_ascii_digit()) { n } else { "" });
    !seq.is_empty()
        && seq.bytes().all(|b| b.is_ascii_digit())
        && id.len() <= 256
        && server.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'))
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "2287864.aurora-pbs-0001.hostmgmt.cm.aurora.alcf.anl.gov";

    #[test]
    fn the_job_id() {
        assert_eq!(interpret_qsub(0, &format!("{ID}\n"), ""), Ok(ID.to_string()));
        assert_eq!(interpret_qsub(0, &format!("Site notice: maintenance Tuesday\n{ID}\n\n"), ""), Ok(ID.to_string()));
        assert!(matches!(interpret_qsub(0, "", ""), Err(QsubError::NoJobId { .. })));
        assert!(matches!(
            interpret_qsub(0, "Failed to recv data from background qsub\n", ""),
            Err(QsubError::NoJobId { .. })
        ));
        for ok in [ID, "1", "123[].server", "123[4].s-1"] {
            assert!(is_job_id(ok), "{ok}");
        }
        for bad in ["", ".s", "a.s", "12 3.s", "1.s;rm", "123[x].s", "1[.s"] {
            assert!(!is_job_id(bad), "{bad}");
        }
    }

    #[test]
    fn refusals_by_exit_status() {
        // alcf.md "PBS Pro details": the statuses and messages ALCF's qsub gives.
        let t = Duration::from_secs(60);
        let e = |status, stderr| interpret_qsub(status, "", stderr).unwrap_err();
        let fatal = |err: QsubError| matches!(err.into_executor_error(1, t), ExecutorError::Fatal(_));
        let transient = |err: QsubError| matches!(err.into_executor_error(1, t), ExecutorError::Transient { .. });
        let account = e(32, "qsub: Account_Name is required to be set.\n");
        assert_eq!(account, QsubError::Refused { message: "qsub: Account_Name is required to be set.".into() });
        assert!(account.to_string().contains("executor.account"));
        assert!(fatal(account));
        assert!(fatal(e(32, "qsub: Resource: filesystems is required to be set.")));
        let full = e(38, "qsub: would exceed queue debug's per-user limit");
        assert!(matches!(full, QsubError::QueueFull { .. }));
        assert!(transient(full));
        assert!(matches!(
            e(188, "qsub: Job violates queue and/or server resource limits"),
            QsubError::OverLimits { .. }
        ));
        assert!(fatal(e(188, "")));
        assert!(matches!(e(170, "qsub: Unknown queue"), QsubError::UnknownQueue { .. }));
        assert!(fatal(e(174, "qsub: Access to queue is denied")));
        assert!(fatal(e(191, "qsub: Job rejected by all possible destinations")));
        assert!(transient(e(255, "qsub: cannot connect to server aurora-pbs-0001 (errno=15010)")));
        assert!(transient(interpret_qsub(0, "", "").unwrap_err()));
        let other = e(2, "qsub: illegal -l value");
        assert_eq!(other, QsubError::Failed { status: 2, message: "qsub: illegal -l value".into() });
        assert!(matches!(other.into_executor_error(7, t), ExecutorError::Submit { trial: 7, .. }));
    }
}
