//! One host per study: an exclusive lock on the study directory for the life of a run, so two
//! hosts never drive the same study (a forgotten run in another terminal, or on another login node
//! that shares the home filesystem).

use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error("cannot create study directory {path}: {source}")]
    Create { path: PathBuf, source: std::io::Error },
    #[error("cannot open {path}: {source}")]
    Open { path: PathBuf, source: std::io::Error },
    #[error(
        "study {dir} is in use by another alcf-host process; wait for it to finish or stop it (Ctrl-C) first"
    )]
    Busy { dir: PathBuf },
}

/// Held for the life of a run; the lock is released when it is dropped (or the process dies).
pub struct StudyLock {
    _file: std::fs::File,
}

impl StudyLock {
    pub fn acquire(dir: &Path) -> Result<StudyLock, LockError> {
        std::fs::create_dir_all(dir).map_err(|source| LockError::Create { path: dir.into(), source })?;
        let path = dir.join("lock");
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(|source| LockError::Open { path: path.clone(), source })?;
        #[cfg(unix)]
        {
            use std::os::fd::AsRawFd;
            // SAFETY: flock on a file descriptor we own; the lock is released when the file closes.
            let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
            if rc != 0 {
                return Err(LockError::Busy { dir: dir.into() });
            }
        }
        Ok(StudyLock { _file: file })
    }
}
