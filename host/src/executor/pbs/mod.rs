//! The pure core of the `pbs` executor: what it writes for PBS Pro and how it reads what PBS
//! prints. Nothing here talks to a machine, so all of it is tested here, against the formats of
//! `shared/reference/alcf.md` ("Aurora PBS", "PBS Pro details", "Running 12 trials on one Aurora
//! node").
//!
//! # How the executor will use these pieces
//!
//! - **Configuration**: [`PbsConfig`] holds the `[executor]` values for PBS, with Aurora's as
//!   defaults; [`PbsConfig::validate`] refuses what qsub or ALCF's submit hook would refuse (a
//!   missing account, a malformed walltime) before any study exists.
//! - **Submit**: [`script::JobScript`] is built once from the config and the job template (the
//!   shipped [`script::DEFAULT_TEMPLATE`] or the user's file). Per trial, the executor renders the
//!   trial's argv with the local executor's [`argv::Template`](crate::executor::argv::Template)
//!   (with the remote trial directory as `{trial_dir}`), and [`script::JobScript::render`] turns it
//!   into the script: `#PBS` directives from checked values, everything else shell-quoted. The
//!   executor stages `params.json` into the remote trial directory, runs `qsub -f` on the script
//!   (foreground: no "Failed to recv data from background qsub"), and reads the id with
//!   [`qsub::interpret_qsub`], which also tells a config error (unknown queue, missing account) from
//!   a full queue (retry later) and a lost connection.
//! - **Wait**: every [`PbsConfig::poll_interval`] the executor runs `qstat -xf -F json <id>`, one
//!   id per call (several ids per call may return only the first), and never again for a job it
//!   has seen finish. [`qstat::interpret_qstat`] turns the exit status and output into jobs, a typed
//!   "finished" or "unknown id", or a transient error: one failed qstat is never a dead job. When
//!   the JSON is beyond repair, the executor asks again with the text format (`qstat -xf`), which
//!   the same function reads. [`qstat::JobRecord::phase`] says whether to keep waiting, and
//!   [`qstat::exit_failure`] turns the final `Exit_status` into the trial's [`Failure`](crate::executor::Failure).
//! - **Find** (after a crash): jobs are named [`job_name`](crate::executor::job_name); the
//!   executor lists the user's jobs (`qstat -x -f -F json -u USER`) and picks the one of that name
//!   with [`qstat::find_named`].
//!
//! Remote commands go through one SSH ControlMaster, and a remote exit status of 255 is also what
//! the `openssh` crate reports for a lost connection: the executor wraps each command so that it
//! prints the command's own status, and hands that status to the interpreters here.

pub mod executor;
pub mod qstat;
pub mod qsub;
pub mod quote;
pub mod remote;
pub mod script;

use std::path::PathBuf;
use std::time::Duration;

/// The PBS executor's settings. Plain data: the config file's owner maps `[executor]` onto it.
#[derive(Clone, Debug, PartialEq)]
pub struct PbsConfig {
    /// `#PBS -A`: the ALCF project to charge. Mandatory at ALCF (a job without it is refused with
    /// "Account_Name is required to be set"), and nobody's default, so it starts empty and
    /// [`validate`](Self::validate) asks for it.
    pub account: String,
    /// `#PBS -q`. `debug`: 1–2 nodes, at most 1 h, 1 job per user; `capacity`: 1–16 nodes, up to
    /// 7 days, 2 running and 5 queued per user; `prod` needs at least 256 nodes.
    pub queue: String,
    /// `#PBS -l select=…`: `1`, or a chunk spec such as `1:ncpus=208`.
    pub select: String,
    /// `#PBS -l walltime=HH:MM:SS`.
    pub walltime: String,
    /// `#PBS -l filesystems=…`: mandatory at ALCF; `home:flare` for jobs that use the home and
    /// Flare file systems.
    pub filesystems: String,
    /// `#PBS -l place=…`.
    pub place: String,
    /// Shell lines run in the job after `module load frameworks`, before the trial (`module load
    /// …`, `source venv/bin/activate`). They are code the user wrote on purpose, so they are
    /// inserted as they are; they are the only unquoted text in the script.
    pub setup: Vec<String>,
    /// The job script template; `None` is [`script::DEFAULT_TEMPLATE`].
    pub template: Option<PathBuf>,
    /// GPU devices per node that trials are pinned to: a trial's device is its slot modulo this.
    /// 12 on Aurora (6 GPUs × 2 tiles, each tile a device under `module load frameworks`).
    pub slots_per_node: u32,
    /// The variable that pins a trial to its device (`ZE_AFFINITY_MASK` on Aurora, with the flat
    /// device index 0..11); empty for none.
    pub affinity_var: String,
    /// One CPU list per slot (`taskset -c` syntax), cores next to that slot's tile; empty when
    /// the template does not bind CPUs.
    pub cpu_lists: Vec<String>,
    /// How often jobs are polled. Schedulers' users ask for 30–60 s or more between queries.
    pub poll_interval: Duration,
    /// Jobs submitted and not yet finished, at most (the queue's per-user limit).
    pub max_jobs: u32,
}

/// Aurora's socket-local CPU lists for 12 ranks, one per tile (cores 0 and 52 are the system's).
pub const AURORA_CPU_LISTS: [&str; 12] =
    ["1-8", "9-16", "17-24", "25-32", "33-40", "41-48", "53-60", "61-68", "69-76", "77-84", "85-92", "93-100"];

impl Default for PbsConfig {
    /// Aurora's debug queue: one node for at most an hour, one job at a time per user.
    fn default() -> Self {
        PbsConfig {
            account: String::new(),
            queue: "debug".into(),
            select: "1".into(),
            walltime: "01:00:00".into(),
            filesystems: "home:flare".into(),
            place: "scatter".into(),
            setup: Vec::new(),
            template: None,
            slots_per_node: 12,
            affinity_var: "ZE_AFFINITY_MASK".into(),
            cpu_lists: AURORA_CPU_LISTS.iter().map(|s| s.to_string()).collect(),
            poll_interval: Duration::from_secs(30),
            // debug allows 1 job per user; queued jobs count.
            max_jobs: 1,
        }
    }
}

/// A PBS setting that qsub, ALCF's submit hook or the job script could not use. Each names the
/// field and what to write instead.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PbsConfigError {
    #[error("`executor.account` is not set: give the ALCF project to charge (`account = \"MyProject\"`)")]
    NoAccount,
    #[error(
        "`executor.{field}` is {value:?}: {expected} (it goes on a `#PBS` line, where only plain \
         characters are safe)"
    )]
    BadValue { field: &'static str, value: String, expected: &'static str },
    #[error(
        "`executor.walltime` is {value:?}: write HH:MM:SS, e.g. \"01:00:00\" (minutes and seconds below 60, not all zero)"
    )]
    BadWalltime { value: String },
    #[error("`executor.slots_per_node` is 0: give the number of devices per node (12 on Aurora)")]
    NoSlots,
    #[error("`executor.cpu_lists` has {got} lists for {slots} slots per node: give one per slot, or none")]
    CpuListCount { got: usize, slots: u32 },
    #[error("`executor.cpu_lists[{index}]` is {value:?}: write cores and ranges such as \"1-8\" or \"1,3,5-7\"")]
    BadCpuList { index: usize, value: String },
    #[error("`executor.affinity_var` is {value:?}, which cannot be a shell variable name")]
    BadAffinityVar { value: String },
    #[error("`executor.setup[{index}]` {problem}; give one shell line per entry")]
    BadSetupLine { index: usize, problem: &'static str },
    #[error("`executor.poll_interval` is below 1 s: poll PBS every 30 s or more")]
    PollTooFast,
    #[error("`executor.max_jobs` is 0: at least one job must be allowed")]
    NoJobs,
}

impl PbsConfig {
    /// Checks every field the way qsub and ALCF's submit hook would, so a mistake is reported
    /// before a study exists instead of as a qsub refusal per trial.
    pub fn validate(&self) -> Result<(), PbsConfigError> {
        if self.account.is_empty() {
            return Err(PbsConfigError::NoAccount);
        }
        let bad =
            |field, value: &str, expected| Err(PbsConfigError::BadValue { field, value: value.to_string(), expected });
        if !is_name(&self.account, 64) {
            return bad(
                "account",
                &self.account,
                "a project name is letters, digits, `_`, `-` and `.`, starting with a letter or digit",
            );
        }
        // PBS queue names: at most 15 characters (PBS_MAXQUEUENAME), alphanumeric first.
        if !is_name(&self.queue, 15) {
            return bad(
                "queue",
                &self.queue,
                "a queue name is at most 15 letters, digits, `_`, `-` or `.`, e.g. \"debug\"",
            );
        }
        if !is_resource_value(&self.select) || !self.select.starts_with(|c: char| c.is_ascii_digit()) {
            return bad("select", &self.select, "a chunk count and resources, e.g. \"1\" or \"2:ncpus=208\"");
        }
        validate_walltime(&self.walltime)?;
        if !is_resource_value(&self.filesystems) || self.filesystems.contains(['=', '+']) {
            return bad("filesystems", &self.filesystems, "file systems separated by `:`, e.g. \"home:flare\"");
        }
        if !is_resource_value(&self.place) || self.place.contains(['=', '+']) {
            return bad("place", &self.place, "a placement such as \"scatter\" or \"scatter:excl\"");
        }
        for (index, line) in self.setup.iter().enumerate() {
            if line.contains('\0') {
                return Err(PbsConfigError::BadSetupLine { index, problem: "contains a NUL character" });
            }
            if line.contains(['\n', '\r']) {
                return Err(PbsConfigError::BadSetupLine { index, problem: "contains a line break" });
            }
        }
        if self.slots_per_node == 0 {
            return Err(PbsConfigError::NoSlots);
        }
        if !self.affinity_var.is_empty() && !quote::is_shell_identifier(&self.affinity_var) {
            return Err(PbsConfigError::BadAffinityVar { value: self.affinity_var.clone() });
        }
        if !self.cpu_lists.is_empty() && self.cpu_lists.len() != self.slots_per_node as usize {
            return Err(PbsConfigError::CpuListCount { got: self.cpu_lists.len(), slots: self.slots_per_node });
        }
        for (index, list) in self.cpu_lists.iter().enumerate() {
            if !is_cpu_list(list) {
                return Err(PbsConfigError::BadCpuList { index, value: list.clone() });
            }
        }
        if self.poll_interval < Duration::from_secs(1) {
            return Err(PbsConfigError::PollTooFast);
        }
        if self.max_jobs == 0 {
            return Err(PbsConfigError::NoJobs);
        }
        Ok(())
    }
}

/// `HH:MM:SS` with minutes and seconds below 60 and not all zero; hours may exceed 24 (`168:00:00`
/// is the capacity queue's 7 days). PBS accepts other forms (bare seconds), but one form keeps
/// the config readable and [`qstat::parse_duration`] reads them all back.
pub fn validate_walltime(value: &str) -> Result<Duration, PbsConfigError> {
    let bad = || PbsConfigError::BadWalltime { value: value.to_string() };
    let parts: Vec<&str> = value.split(':').collect();
    let [h, m, s] = parts.as_slice() else { return Err(bad()) };
    let digits = |p: &str, max_len: usize| {
        (!p.is_empty() && p.len() <= max_len && p.bytes().all(|b| b.is_ascii_digit()))
            .then(|| p.parse::<u64>().ok())
            .flatten()
    };
    let (Some(h), Some(m), Some(s)) =
        (digits(h, 6), digits(m, 2).filter(|_| m.len() == 2), digits(s, 2).filter(|_| s.len() == 2))
    else {
        return Err(bad());
    };
    if m >= 60 || s >= 60 || h + m + s == 0 {
        return Err(bad());
    }
    Ok(Duration::from_secs(h * 3600 + m * 60 + s))
}

/// A name PBS and a `#PBS` line take as it is: 1..=`max` of `[A-Za-z0-9_.-]`, starting with a
/// letter or digit (so it can never be read as an option).
fn is_name(value: &str, max: usize) -> bool {
    !value.is_empty()
        && value.len() <= max
        && value.starts_with(|c: char| c.is_ascii_alphanumeric())
        && value.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
}

/// A resource value on a `#PBS -l` line: letters, digits and `_ - . : = +`, nothing that PBS or a
/// shell would split or interpret (no spaces, quotes, `#`, `,`).
fn is_resource_value(value: &str) -> bool {
    !value.is_empty()
        && value.len() <= 256
        && value.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | ':' | '=' | '+'))
}

/// `taskset -c` syntax: comma-separated cores or `a-b` ranges.
fn is_cpu_list(value: &str) -> bool {
    let number = |s: &str| !s.is_empty() && s.len() <= 5 && s.bytes().all(|b| b.is_ascii_digit());
    !value.is_empty()
        && value.split(',').all(|item| match item.split_once('-') {
            Some((a, b)) => number(a) && number(b),
            None => number(item),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn aurora() -> PbsConfig {
        PbsConfig { account: "MyProject".into(), ..PbsConfig::default() }
    }

    #[test]
    fn defaults_are_auroras_and_valid_once_an_account_is_set() {
        let c = PbsConfig::default();
        // alcf.md "Aurora PBS": filesystems=home:flare, place=scatter; "Running 12 trials":
        // 12 tiles, ZE_AFFINITY_MASK, the 12 CPU lists; "PBS Pro details": poll 30-60 s.
        assert_eq!((c.queue.as_str(), c.filesystems.as_str(), c.place.as_str()), ("debug", "home:flare", "scatter"));
        assert_eq!((c.slots_per_node, c.affinity_var.as_str()), (12, "ZE_AFFINITY_MASK"));
        assert_eq!(c.cpu_lists.len(), 12);
        assert_eq!(
            (c.cpu_lists[0].as_str(), c.cpu_lists[6].as_str(), c.cpu_lists[11].as_str()),
            ("1-8", "53-60", "93-100")
        );
        assert!(
            !c.cpu_lists.iter().any(|l| l.split(['-', ',']).any(|n| n == "0" || n == "52")),
            "cores 0 and 52 are the system's"
        );
        assert_eq!(c.poll_interval, Duration::from_secs(30));
        assert_eq!(c.max_jobs, 1);
        assert_eq!(c.validate(), Err(PbsConfigError::NoAccount));
        assert_eq!(aurora().validate(), Ok(()));
    }

    #[test]
    fn walltimes() {
        assert_eq!(validate_walltime("01:00:00"), Ok(Duration::from_secs(3600)));
        assert_eq!(validate_walltime("168:00:00"), Ok(Duration::from_secs(168 * 3600)));
        assert_eq!(validate_walltime("0:00:30"), Ok(Duration::from_secs(30)));
        for bad in [
            "",
            "1:00",
            "3600",
            "01:60:00",
            "01:00:60",
            "00:00:00",
            "1:2:3",
            "aa:bb:cc",
            "-1:00:00",
            "01:00:00 ",
            "01:00:00:00",
            "+1:00:00",
        ] {
            assert_eq!(validate_walltime(bad), Err(PbsConfigError::BadWalltime { value: bad.into() }), "{bad:?}");
        }
    }

    #[test]
    fn values_pbs_would_refuse_are_refused_with_their_field() {
        let check = |f: &dyn Fn(&mut PbsConfig)| {
            let mut c = aurora();
            f(&mut c);
            c.validate()
        };
        let field = |r: Result<(), PbsConfigError>| match r {
            Err(PbsConfigError::BadValue { field, .. }) => field,
            other => panic!("{other:?}"),
        };
        assert_eq!(field(check(&|c| c.account = "my project".into())), "account");
        assert_eq!(field(check(&|c| c.account = "-V".into())), "account");
        assert_eq!(field(check(&|c| c.account = "a$(id)".into())), "account");
        assert_eq!(field(check(&|c| c.queue = "a_very_long_queue_name".into())), "queue");
        assert_eq!(field(check(&|c| c.queue = "debug scaling".into())), "queue");
        assert_eq!(field(check(&|c| c.select = "nodes=1".into())), "select");
        assert_eq!(field(check(&|c| c.select = "1 -V".into())), "select");
        assert_eq!(field(check(&|c| c.filesystems = "home,flare".into())), "filesystems");
        assert_eq!(field(check(&|c| c.place = "".into())), "place");
        assert_eq!(check(&|c| c.select = "2:ncpus=208".into()), Ok(()));
        assert_eq!(check(&|c| c.place = "scatter:excl".into()), Ok(()));
        assert_eq!(check(&|c| c.queue = "debug-scaling".into()), Ok(()));
        assert!(matches!(check(&|c| c.walltime = "1h".into()), Err(PbsConfigError::BadWalltime { .. })));
        assert_eq!(
            check(&|c| c.setup = vec!["ok".into(), "a\nb".into()]),
            Err(PbsConfigError::BadSetupLine { index: 1, problem: "contains a line break" })
        );
        assert_eq!(check(&|c| c.slots_per_node = 0), Err(PbsConfigError::NoSlots));
        assert_eq!(check(&|c| c.slots_per_node = 6), Err(PbsConfigError::CpuListCount { got: 12, slots: 6 }));
        assert_eq!(
            check(&|c| {
                c.slots_per_node = 6;
                c.cpu_lists.clear()
            }),
            Ok(())
        );
        assert_eq!(
            check(&|c| c.cpu_lists[3] = "1-8;id".into()),
            Err(PbsConfigError::BadCpuList { index: 3, value: "1-8;id".into() })
        );
        assert_eq!(check(&|c| c.cpu_lists[3] = "1,3,5-7".into()), Ok(()));
        assert_eq!(
            check(&|c| c.affinity_var = "ZE-MASK".into()),
            Err(PbsConfigError::BadAffinityVar { value: "ZE-MASK".into() })
        );
        assert_eq!(check(&|c| c.affinity_var.clear()), Ok(()));
        assert_eq!(check(&|c| c.poll_interval = Duration::from_millis(10)), Err(PbsConfigError::PollTooFast));
        assert_eq!(check(&|c| c.max_jobs = 0), Err(PbsConfigError::NoJobs));
        let msg = check(&|c| c.queue = "q q".into()).unwrap_err().to_string();
        assert!(msg.contains("executor.queue") && msg.contains("\"q q\""), "{msg}");
    }
}
