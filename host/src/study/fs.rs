//! Which kind of filesystem a study directory is on, because two things depend on it:
//!
//! - SQLite's write-ahead log keeps its index in a shared-memory file (`study.db-shm`) that every
//!   process maps. Network filesystems do not keep such mappings coherent between clients (and
//!   some refuse `mmap` of shared files outright), so WAL there can corrupt the database. On a
//!   network filesystem the study uses a rollback journal instead (see [`super::Durability`]).
//! - `flock` is only advisory and, on several network filesystems, only node-local (Lustre mounted
//!   with `localflock`, BeeGFS without global file locks) or absent (Lustre without `flock`), so
//!   the study lock cannot rely on it there (see [`super::lock`]).
//!
//! Detection reads the filesystem's magic number with `statfs(2)` (Linux). Elsewhere, and for
//! filesystems this table does not know (FUSE mounts such as sshfs among them: FUSE does not say
//! what is behind it), the directory counts as local. `ALCF_STUDY_FS=network` (or `local`)
//! overrides the detection, for a network mount that is not recognized.

use std::path::Path;

/// A network filesystem the host knows to need the safe modes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NetFs {
    Nfs,
    Lustre,
    Gpfs,
    /// CIFS / SMB (all three Linux magic numbers).
    Cifs,
    BeeGfs,
    Ceph,
    Afs,
    /// Not detected but declared with `ALCF_STUDY_FS=network`.
    Declared,
}

impl NetFs {
    pub fn name(self) -> &'static str {
        match self {
            NetFs::Nfs => "NFS",
            NetFs::Lustre => "Lustre",
            NetFs::Gpfs => "GPFS",
            NetFs::Cifs => "CIFS/SMB",
            NetFs::BeeGfs => "BeeGFS",
            NetFs::Ceph => "CephFS",
            NetFs::Afs => "AFS",
            NetFs::Declared => "a network filesystem (ALCF_STUDY_FS=network)",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fs {
    Local,
    Network(NetFs),
}

/// The environment variable that overrides detection: `network` or `local`.
pub const FS_ENV: &str = "ALCF_STUDY_FS";

impl Fs {
    /// Classifies a `statfs` `f_type`. The numbers are those of Linux's `include/uapi/linux/magic.h`
    /// and of the out-of-tree filesystems' own headers (Lustre, GPFS, BeeGFS, OpenAFS).
    pub fn from_magic(magic: u64) -> Fs {
        // f_type is a signed word on some ABIs: compare the low 32 bits, where every magic lives.
        let net = match magic & 0xFFFF_FFFF {
            0x6969 => NetFs::Nfs,
            0x0BD0_0BD0 => NetFs::Lustre,
            0x4750_4653 => NetFs::Gpfs,                        // "GPFS"
            0xFF53_4D42 | 0xFE53_4D42 | 0x517B => NetFs::Cifs, // CIFS, SMB2, SMB (old smbfs)
            0x1983_0326 => NetFs::BeeGfs,
            0x00C3_6400 => NetFs::Ceph,
            0x5346_414F | 0x6B41_4653 => NetFs::Afs, // OpenAFS, kAFS
            _ => return Fs::Local,
        };
        Fs::Network(net)
    }

    /// The filesystem of `dir`, or of its nearest existing ancestor when it does not exist yet (a
    /// study about to be created), honouring [`FS_ENV`].
    pub fn detect(dir: &Path) -> Fs {
        match std::env::var(FS_ENV).as_deref().map(str::trim) {
            Ok("network") => return Fs::Network(NetFs::Declared),
            Ok("local") => return Fs::Local,
            _ => {}
        }
        let dir = if dir.as_os_str().is_empty() { Path::new(".") } else { dir };
        let existing = dir.ancestors().find(|a| !a.as_os_str().is_empty() && a.exists()).unwrap_or(Path::new("."));
        statfs_magic(existing).map_or(Fs::Local, Fs::from_magic)
    }

    pub fn is_network(self) -> bool {
        matches!(self, Fs::Network(_))
    }

    pub fn describe(self) -> &'static str {
        match self {
            Fs::Local => "a local filesystem",
            Fs::Network(n) => n.name(),
        }
    }
}

#[cfg(target_os = "linux")]
fn statfs_magic(path: &Path) -> Option<u64> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes()).ok()?;
    // SAFETY: statfs writes into a zeroed struct we own; `c` is a valid NUL-terminated path.
    let mut buf: libc::statfs = unsafe { std::mem::zeroed() };
    let rc = unsafe { libc::statfs(c.as_ptr(), &mut buf) };
    #[allow(clippy::unnecessary_cast)] // f_type's width differs between ABIs
    (rc == 0).then_some(buf.f_type as u64)
}

#[cfg(not(target_os = "linux"))]
fn statfs_magic(_path: &Path) -> Option<u64> {
    // macOS and the BSDs name filesystems instead of numbering them; studies there are on laptops.
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn magic_numbers_are_classified() {
        let cases = [
            (0x6969, Fs::Network(NetFs::Nfs)),
            (0x0BD0_0BD0, Fs::Network(NetFs::Lustre)),
            (0x4750_4653, Fs::Network(NetFs::Gpfs)),
            (0xFF53_4D42, Fs::Network(NetFs::Cifs)),
            (0xFE53_4D42, Fs::Network(NetFs::Cifs)),
            (0x517B, Fs::Network(NetFs::Cifs)),
            (0x1983_0326, Fs::Network(NetFs::BeeGfs)),
            (0x00C3_6400, Fs::Network(NetFs::Ceph)),
            (0x5346_414F, Fs::Network(NetFs::Afs)),
            (0xEF53, Fs::Local),      // ext4
            (0x5846_5342, Fs::Local), // xfs
            (0x0102_1994, Fs::Local), // tmpfs
            (0x6573_5546, Fs::Local), // fuse: unknown what is behind it
            (0x9123_683E, Fs::Local), // btrfs
        ];
        for (magic, want) in cases {
            assert_eq!(Fs::from_magic(magic), want, "{magic:#x}");
        }
        // A magic read through a signed 64-bit f_type (sign-extended) is still recognized.
        assert_eq!(Fs::from_magic(0xFF53_4D42u32 as i32 as i64 as u64), Fs::Network(NetFs::Cifs));
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn a_missing_directory_is_judged_by_its_ancestor() {
        let dir = tempfile::tempdir().unwrap();
        let here = statfs_magic(dir.path()).unwrap();
        assert_eq!(statfs_magic(&dir.path().join("a/b")), None);
        if std::env::var_os(FS_ENV).is_none() {
            assert_eq!(Fs::detect(&dir.path().join("a/b")), Fs::from_magic(here));
        }
    }
}
