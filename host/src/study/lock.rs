//! One host per study: an exclusive lock on the study directory for the life of a run, so two
//! hosts never drive the same study (a forgotten run in another terminal, or on another login node
//! that shares the home filesystem).
//!
//! # The protocol
//!
//! The lock is the file `host.lock` in the study directory. A host takes it by creating the file
//! with `O_CREAT | O_EXCL` and then writes its [`Holder`] (pid, hostname, time, process start
//! time) into it; it releases it by deleting the file. A second host finds the file there and
//! reads who holds it.
//!
//! Why an exclusive create and not `flock` or `fcntl` alone: a study directory often lives on a
//! network filesystem shared by login nodes (a home directory on NFS or GPFS, a project on Lustre
//! or BeeGFS). There, `flock` may be emulated per client only (Lustre `-o localflock`, BeeGFS
//! without `tuneUseGlobalFileLocks`), refused (Lustre without `-o flock`), or mapped to byte-range
//! locks whose lock daemon may not be running (NFSv3's NLM); `fcntl` locks share all of these
//! failure modes. An exclusive create, by contrast, is decided by the server (NFSv3 and later,
//! Lustre's and BeeGFS's metadata servers, GPFS's token manager, SMB), so exactly one of two
//! hosts racing for the study wins. The same protocol runs on local filesystems too, so that the
//! NFS server itself (which sees the directory as local) and its clients still exclude each other.
//!
//! The cost of a file is that it outlives a holder that is killed. A lock is *stale* when its
//! holder is gone, and that can only be known on the holder's own host:
//! - on a local filesystem the holder also keeps an `flock` on its lock file; the kernel drops it
//!   when the process dies however it dies, so a free `flock` proves the holder is gone (and is
//!   immune to pid reuse);
//! - on a network filesystem `flock` proves nothing, so the holder's pid is checked (`kill(pid, 0)`)
//!   together with its process start time, so a new process that got the same pid is not taken for
//!   the holder.
//!
//! A stale lock is taken over with a note ([`StudyLock::took_over`]). Taking over is itself
//! serialized by an exclusive create of `host.lock.takeover`, and under it the lock file is read
//! again before it is deleted, so two hosts recovering at once cannot delete each other's new
//! lock. A lock held from another host is never taken over: its holder may be alive there, out of
//! our sight. The message says how to release it by hand: `alcf-host study unlock NAME`
//! ([`StudyLock::force_unlock`]).

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use super::fs::Fs;

pub const LOCK_FILE: &str = "host.lock";
const TAKEOVER_FILE: &str = "host.lock.takeover";

/// Who holds a study, as its lock file says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Holder {
    pub pid: u32,
    pub host: String,
    /// When it took the lock, in seconds since the Unix epoch.
    pub since: u64,
    /// The holder's start time in clock ticks after boot (`/proc/PID/stat` field 22; Linux only),
    /// which tells the holder from a later process that was given the same pid.
    #[serde(default)]
    pub proc_start: Option<u64>,
}

impl Holder {
    /// This process, now.
    pub fn this_process() -> Holder {
        let pid = std::process::id();
        Holder {
            pid,
            host: hostname(),
            since: SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs()),
            proc_start: proc_start(pid),
        }
    }

    /// "alcf-host pid 4242 on aurora-uan-0010 since 2026-12-01 10:02 UTC"
    pub fn describe(&self) -> String {
        format!("alcf-host pid {} on {} since {}", self.pid, self.host, utc_minute(self.since))
    }

    fn on_this_host(&self) -> bool {
        self.host == hostname()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error("cannot create study directory {path}: {source}")]
    Create { path: PathBuf, source: std::io::Error },
    #[error("cannot open {path}: {source}")]
    Open { path: PathBuf, source: std::io::Error },
    #[error("cannot write the study lock {path}: {source}")]
    Write { path: PathBuf, source: std::io::Error },
    #[error("{}", busy_message(.dir, .holder.as_ref(), *.remote))]
    Busy {
        dir: PathBuf,
        /// `None` when the lock file does not (yet) say who holds it.
        holder: Option<Holder>,
        /// The holder is on another host (so it cannot be checked from here).
        remote: bool,
    },
    #[error(
        "study {dir}: another alcf-host is taking over its stale lock right now (or died doing so, leaving {path}); \
         try again, and if this persists release it with `alcf-host study unlock {}`",
        study_name(.dir)
    )]
    Takeover { dir: PathBuf, path: PathBuf },
    #[error("study {dir} is in use by {}, which is still running on this host; stop it first (Ctrl-C)", .holder.describe())]
    Alive { dir: PathBuf, holder: Holder },
}

fn study_name(dir: &Path) -> String {
    dir.file_name().map_or_else(|| dir.display().to_string(), |n| n.to_string_lossy().into_owned())
}

fn busy_message(dir: &Path, holder: Option<&Holder>, remote: bool) -> String {
    let name = study_name(dir);
    match holder {
        Some(h) if remote => format!(
            "study {name} is in use by {}; stop it there (Ctrl-C) or wait for it. If that host is gone or \
             the process died there, release the lock with `alcf-host study unlock {name}`",
            h.describe()
        ),
        Some(h) => format!("study {name} is in use by {}; stop it there (Ctrl-C) or wait for it", h.describe()),
        None => format!(
            "study {name} is locked by another alcf-host, but its lock file {} does not say which; \
             if none is running on it, release the lock with `alcf-host study unlock {name}`",
            dir.join(LOCK_FILE).display()
        ),
    }
}

/// Held for the life of a run; the lock is released when it is dropped. A killed holder leaves its
/// lock file behind, which the next run on the same host takes over.
#[derive(Debug)]
pub struct StudyLock {
    dir: PathBuf,
    path: PathBuf,
    holder: Holder,
    fs: Fs,
    took_over: Option<Holder>,
    /// Keeps the `flock` (local filesystems) that proves this holder alive.
    _file: std::fs::File,
}

/// What a lock file found in place means.
enum Verdict {
    Held {
        holder: Option<Holder>,
        remote: bool,
    },
    Stale(Option<Holder>),
    /// It disappeared while we looked: try again.
    Gone,
}

impl StudyLock {
    /// Takes the lock of the study in `dir` (created if missing), on the filesystem found there.
    pub fn acquire(dir: &Path) -> Result<StudyLock, LockError> {
        std::fs::create_dir_all(dir).map_err(|source| LockError::Create { path: dir.into(), source })?;
        StudyLock::acquire_on(dir, Fs::detect(dir))
    }

    /// As [`StudyLock::acquire`], for a filesystem already determined (the study database's).
    pub fn acquire_on(dir: &Path, fs: Fs) -> Result<StudyLock, LockError> {
        std::fs::create_dir_all(dir).map_err(|source| LockError::Create { path: dir.into(), source })?;
        let path = dir.join(LOCK_FILE);
        let mut took_over = None;
        // Each round either wins, fails for good, or removed a stale lock / saw one vanish; the
        // bound only stops a pathological flapping of other hosts.
        for _ in 0..8 {
            match std::fs::OpenOptions::new().write(true).create_new(true).open(&path) {
                Ok(mut file) => {
                    if !fs.is_network() {
                        // Taken right after the create, before the holder is written: a contender that
                        // finds the file empty and the flock free for long is looking at a dead holder.
                        flock_try(&file);
                    }
                    let holder = Holder::this_process();
                    let text = serde_json::to_string(&holder).unwrap_or_default() + "\n";
                    if let Err(source) = file.write_all(text.as_bytes()).and_then(|()| file.sync_all()) {
                        let _ = std::fs::remove_file(&path);
                        return Err(LockError::Write { path, source });
                    }
                    if let Some(old) = &took_over {
                        tracing::warn!(
                            "study {}: took over the lock of {}: that process is gone (killed or crashed)",
                            dir.display(),
                            describe_opt(old)
                        );
                    }
                    return Ok(StudyLock {
                        dir: dir.into(),
                        path,
                        holder,
                        fs,
                        took_over: took_over.flatten(),
                        _file: file,
                    });
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => match judge(&path, fs) {
                    Verdict::Held { holder, remote } => {
                        return Err(LockError::Busy { dir: dir.into(), holder, remote });
                    }
                    Verdict::Gone => continue,
                    Verdict::Stale(old) => {
                        take_over(dir, &path, fs, old.as_ref())?;
                        took_over = Some(old);
                    }
                },
                Err(source) => return Err(LockError::Open { path, source }),
            }
        }
        Err(LockError::Busy { dir: dir.into(), holder: read_holder(&path), remote: false })
    }

    pub fn holder(&self) -> &Holder {
        &self.holder
    }

    pub fn fs(&self) -> Fs {
        self.fs
    }

    /// The dead holder whose stale lock this one replaced, for the study's event log.
    pub fn took_over(&self) -> Option<&Holder> {
        self.took_over.as_ref()
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Who holds the study in `dir`, if anyone (by its lock file; a stale one counts).
    pub fn holder_of(dir: &Path) -> Option<Holder> {
        read_holder(&dir.join(LOCK_FILE))
    }

    /// Removes the lock of `dir` by hand (`alcf-host study unlock`), for a holder on a host that is
    /// gone. Refuses when the holder is provably alive on this host. Returns the holder it removed.
    pub fn force_unlock(dir: &Path) -> Result<Option<Holder>, LockError> {
        let path = dir.join(LOCK_FILE);
        if !path.exists() {
            let _ = std::fs::remove_file(dir.join(TAKEOVER_FILE));
            return Ok(None);
        }
        let holder = read_holder(&path);
        if let Some(h) = &holder
            && h.on_this_host()
            && holder_alive(&path, h, Fs::detect(dir))
        {
            return Err(LockError::Alive { dir: dir.into(), holder: h.clone() });
        }
        for p in [&path, &dir.join(TAKEOVER_FILE)] {
            match std::fs::remove_file(p) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(source) => return Err(LockError::Write { path: p.to_path_buf(), source }),
            }
        }
        Ok(holder)
    }
}

impl Drop for StudyLock {
    fn drop(&mut self) {
        // Only our own lock file is deleted: after a forced unlock the file may be another host's.
        if read_holder(&self.path).as_ref() == Some(&self.holder) {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

fn describe_opt(h: &Option<Holder>) -> String {
    h.as_ref().map_or_else(|| "an alcf-host that died before writing its name".into(), Holder::describe)
}

fn read_holder(path: &Path) -> Option<Holder> {
    let text = std::fs::read_to_string(path).ok()?;
    serde_json::from_str(text.lines().next()?).ok()
}

/// Whether the lock file found at `path` is held, stale or gone.
fn judge(path: &Path, fs: Fs) -> Verdict {
    let file = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Verdict::Gone,
        // Unreadable (permissions): someone holds it, and we cannot say who.
        Err(_) => return Verdict::Held { holder: None, remote: false },
    };
    match read_holder(path) {
        Some(h) if !h.on_this_host() => Verdict::Held { holder: Some(h), remote: true },
        Some(h) => {
            if holder_alive(path, &h, fs) {
                Verdict::Held { holder: Some(h), remote: false }
            } else {
                Verdict::Stale(Some(h))
            }
        }
        None => {
            // Empty or garbled: a holder between create and write, or one that died there. Only a
            // local filesystem can tell (the flock is taken before the write), and only once the
            // file is old enough that a live holder would have written it.
            let old = file
                .metadata()
                .and_then(|m| m.modified())
                .is_ok_and(|t| t.elapsed().unwrap_or_default() > Duration::from_secs(5));
            if !fs.is_network() && old && flock_try(&file) {
                Verdict::Stale(None)
            } else {
                Verdict::Held { holder: None, remote: false }
            }
        }
    }
}

/// Whether a holder on this host is alive.
fn holder_alive(path: &Path, h: &Holder, fs: Fs) -> bool {
    // On a local filesystem a held flock is proof of life (the probe is a file of its own, so even
    // this process holding the lock counts). A free one is not proof of death on its own: a holder
    // that judged the directory a network one (ALCF_STUDY_FS) keeps none, so the pid decides then.
    let flocked = !fs.is_network() && std::fs::File::open(path).is_ok_and(|f| !flock_try(&f));
    flocked || pid_alive(h.pid, h.proc_start)
}

fn pid_alive(pid: u32, start: Option<u64>) -> bool {
    let Ok(p) = libc::pid_t::try_from(pid) else { return false };
    if p <= 0 {
        return false;
    }
    // SAFETY: signal 0 only checks that the process exists and may be signalled.
    let exists =
        unsafe { libc::kill(p, 0) } == 0 || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM);
    if !exists {
        return false;
    }
    match (start, proc_start(pid)) {
        (Some(recorded), Some(now)) => recorded == now,
        // Without start times the pid alone must do; wrongly "alive" is the safe mistake.
        _ => true,
    }
}

/// `/proc/PID/stat` field 22 (starttime). The command name (field 2) may hold spaces and
/// parentheses, so fields are counted after its last `)`.
fn proc_start(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(19)?.parse().ok()
}

/// Tries an exclusive, non-blocking flock; true when it was granted (and is now held by `file`).
fn flock_try(file: &std::fs::File) -> bool {
    #[cfg(unix)]
    {
        use std::os::fd::AsRawFd;
        // SAFETY: flock on a descriptor we own; the lock goes with the descriptor.
        unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) == 0 }
    }
    #[cfg(not(unix))]
    {
        let _ = file;
        false
    }
}

/// Removes a stale lock file, under the takeover mutex, if it still names `stale`.
fn take_over(dir: &Path, path: &Path, fs: Fs, stale: Option<&Holder>) -> Result<(), LockError> {
    let mutex = dir.join(TAKEOVER_FILE);
    let mut waited = Duration::ZERO;
    let guard = loop {
        match std::fs::OpenOptions::new().write(true).create_new(true).open(&mutex) {
            Ok(f) => break f,
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                // Another contender is recovering; it takes milliseconds.
                if waited >= Duration::from_secs(3) {
                    return Err(LockError::Takeover { dir: dir.into(), path: mutex });
                }
                std::thread::sleep(Duration::from_millis(50));
                waited += Duration::from_millis(50);
            }
            Err(source) => return Err(LockError::Open { path: mutex, source }),
        }
    };
    // Judged again under the mutex: the file may have been released and re-created meanwhile, and a
    // new holder's file must not be deleted. A dead holder's file cannot change under us (only a
    // mutex holder removes a dead holder's file).
    let still_stale = match judge(path, fs) {
        Verdict::Stale(h) => h.as_ref() == stale,
        Verdict::Gone | Verdict::Held { .. } => false,
    };
    let result = if still_stale {
        match std::fs::remove_file(path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(source) => Err(LockError::Write { path: path.into(), source }),
        }
    } else {
        Ok(())
    };
    drop(guard);
    let _ = std::fs::remove_file(&mutex);
    result
}

fn hostname() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: gethostname writes at most buf.len() bytes into buf.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    if rc != 0 {
        return "unknown-host".into();
    }
    let end = buf.iter().position(|b| *b == 0).unwrap_or(buf.len());
    String::from_utf8_lossy(&buf[..end]).into_owned()
}

/// `2026-12-01 10:02 UTC`, without a date library.
pub fn utc_minute(secs: u64) -> String {
    let t = crate::utc::UtcTime::from_unix(i64::try_from(secs).unwrap_or(i64::MAX));
    format!("{:04}-{:02}-{:02} {:02}:{:02} UTC", t.year, t.month, t.day, t.hour, t.minute)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::study::fs::NetFs;

    /// 2026-12-01 10:02:30 UTC.
    const DEC_1: u64 = 1_796_119_350;

    fn dead_pid() -> u32 {
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id();
        child.wait().unwrap();
        pid
    }

    fn write_holder(dir: &Path, h: &Holder) {
        std::fs::write(dir.join(LOCK_FILE), serde_json::to_string(h).unwrap() + "\n").unwrap();
    }

    #[test]
    fn times_are_civil_utc() {
        assert_eq!(utc_minute(0), "1970-01-01 00:00 UTC");
        assert_eq!(utc_minute(DEC_1), "2026-12-01 10:02 UTC");
        // 2024-02-29 23:59:59: a leap day, and day/month that cannot be swapped unnoticed.
        assert_eq!(utc_minute(1_709_251_199), "2024-02-29 23:59 UTC");
    }

    #[test]
    fn busy_names_the_holder() {
        let holder = Holder { pid: 4242, host: "aurora-uan-0010".into(), since: DEC_1, proc_start: None };
        let e = LockError::Busy { dir: "studies/cifar".into(), holder: Some(holder.clone()), remote: false };
        assert_eq!(
            e.to_string(),
            "study cifar is in use by alcf-host pid 4242 on aurora-uan-0010 since 2026-12-01 10:02 UTC; \
             stop it there (Ctrl-C) or wait for it"
        );
        let e = LockError::Busy { dir: "studies/cifar".into(), holder: Some(holder), remote: true };
        assert!(e.to_string().contains("`alcf-host study unlock cifar`"), "{e}");
    }

    #[test]
    fn a_second_host_is_refused_and_named_until_the_first_releases() {
        for fs in [Fs::Local, Fs::Network(NetFs::Nfs)] {
            let dir = tempfile::tempdir().unwrap();
            let first = StudyLock::acquire_on(dir.path(), fs).unwrap();
            assert_eq!(first.took_over(), None);
            let e = StudyLock::acquire_on(dir.path(), fs).unwrap_err();
            match &e {
                LockError::Busy { holder: Some(h), remote: false, .. } => assert_eq!(h, first.holder()),
                other => panic!("{fs:?}: {other}"),
            }
            assert!(e.to_string().contains(&format!("pid {}", std::process::id())), "{e}");
            // This process is alive on this host: a forced unlock is refused.
            assert!(matches!(StudyLock::force_unlock(dir.path()), Err(LockError::Alive { .. })));
            drop(first);
            assert!(!dir.path().join(LOCK_FILE).exists(), "released on drop");
            StudyLock::acquire_on(dir.path(), fs).unwrap();
        }
    }

    #[test]
    fn a_dead_holder_on_this_host_is_taken_over() {
        for fs in [Fs::Local, Fs::Network(NetFs::Lustre)] {
            let dir = tempfile::tempdir().unwrap();
            let pid = dead_pid();
            let stale = Holder { pid, host: hostname(), since: DEC_1, proc_start: None };
            write_holder(dir.path(), &stale);
            let lock = StudyLock::acquire_on(dir.path(), fs).unwrap();
            assert_eq!(lock.took_over(), Some(&stale), "{fs:?}");
            assert_eq!(StudyLock::holder_of(dir.path()).as_ref(), Some(lock.holder()));
            assert!(!dir.path().join(TAKEOVER_FILE).exists());
        }
    }

    #[test]
    fn a_reused_pid_is_not_the_holder() {
        // Our own pid, but with another process start time: the holder died and its pid was reused.
        let me = Holder::this_process();
        if me.proc_start.is_none() {
            return; // no /proc: nothing to tell them apart by
        }
        let dir = tempfile::tempdir().unwrap();
        let stale = Holder { proc_start: me.proc_start.map(|s| s + 1), ..me.clone() };
        write_holder(dir.path(), &stale);
        let lock = StudyLock::acquire_on(dir.path(), Fs::Network(NetFs::Nfs)).unwrap();
        assert_eq!(lock.took_over(), Some(&stale));
    }

    #[test]
    fn a_holder_on_another_host_is_never_taken_over() {
        for fs in [Fs::Local, Fs::Network(NetFs::Gpfs)] {
            let dir = tempfile::tempdir().unwrap();
            let remote = Holder { pid: dead_pid(), host: "aurora-uan-0010".into(), since: DEC_1, proc_start: None };
            write_holder(dir.path(), &remote);
            let e = StudyLock::acquire_on(dir.path(), fs).unwrap_err();
            assert!(matches!(&e, LockError::Busy { holder: Some(h), remote: true, .. } if *h == remote), "{e}");
            assert!(e.to_string().contains("aurora-uan-0010") && e.to_string().contains("study unlock"), "{e}");
            // Released by hand, it is free.
            assert_eq!(StudyLock::force_unlock(dir.path()).unwrap(), Some(remote));
            StudyLock::acquire_on(dir.path(), fs).unwrap();
        }
    }

    #[test]
    fn an_unnamed_lock_is_busy_on_a_network_fs() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(LOCK_FILE), "").unwrap();
        let e = StudyLock::acquire_on(dir.path(), Fs::Network(NetFs::Nfs)).unwrap_err();
        assert!(matches!(e, LockError::Busy { holder: None, .. }), "{e}");
        assert!(e.to_string().contains("does not say which"), "{e}");
    }
}
