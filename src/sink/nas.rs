//! Repositories on network shares (NFS, SMB/CIFS, sshfs and other FUSE
//! mounts): recognised by the filesystem type, and never created in an
//! unmounted share's empty mount point.
//!
//! The layout is the local one ([`super::LocalSink`]); what differs is how
//! much the filesystem promises. On a network filesystem the local sink
//! retries transient errors (a stale handle, an interrupted call), and
//! tolerates a directory fsync that is not supported and hard links that do
//! not exist (it renames instead, see `LocalSink::write`).

use std::io;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum NasError {
    #[error("the NAS repository {path} cannot be reached (is the share mounted?)")]
    Missing {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{path} is on a local {fs} filesystem, not a network share: is the share mounted? (nothing was written; use kind = \"local\" for a local directory)")]
    NotMounted { path: PathBuf, fs: String },
}

/// The kind of network filesystem `path` is on, or `None` for a local one
/// (or where this cannot be told).
pub fn network_filesystem(path: &Path) -> Option<&'static str> {
    #[cfg(any(target_os = "linux", target_os = "android"))]
    {
        filesystem_type(path).ok().and_then(network_name)
    }
    #[cfg(windows)]
    {
        windows_network(path)
    }
    #[cfg(not(any(target_os = "linux", target_os = "android", windows)))]
    {
        let _ = path;
        None
    }
}

/// Windows: a UNC path (`\\nas\share`) by its spelling, or a drive letter
/// mapped to a share (`GetDriveTypeW` says `DRIVE_REMOTE`).
#[cfg(windows)]
fn windows_network(path: &Path) -> Option<&'static str> {
    use std::os::windows::ffi::OsStrExt;
    use std::path::{Component, Prefix};
    #[link(name = "kernel32")]
    extern "system" {
        fn GetDriveTypeW(root: *const u16) -> u32;
    }
    const DRIVE_REMOTE: u32 = 4;
    match path.components().next() {
        Some(Component::Prefix(p)) => match p.kind() {
            Prefix::UNC(..) | Prefix::VerbatimUNC(..) => Some("smb"),
            Prefix::Disk(letter) | Prefix::VerbatimDisk(letter) => {
                let root: Vec<u16> = std::ffi::OsStr::new(&format!("{}:\\", letter as char))
                    .encode_wide()
                    .chain(Some(0))
                    .collect();
                // SAFETY: `root` is a NUL-terminated UTF-16 string.
                (unsafe { GetDriveTypeW(root.as_ptr()) } == DRIVE_REMOTE).then_some("smb")
            }
            _ => None,
        },
        _ => None,
    }
}

/// `statfs(2)`'s `f_type` of the filesystem holding `path`.
#[cfg(any(target_os = "linux", target_os = "android"))]
fn filesystem_type(path: &Path) -> io::Result<i64> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "path has a NUL byte"))?;
    let mut buf = std::mem::MaybeUninit::<libc::statfs>::uninit();
    // SAFETY: `c` is a valid C string and `buf` is written by a successful call.
    if unsafe { libc::statfs(c.as_ptr(), buf.as_mut_ptr()) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: statfs succeeded, so `buf` is initialised.
    #[allow(clippy::unnecessary_cast)]
    Ok(unsafe { buf.assume_init() }.f_type as i64)
}

/// The name of a network filesystem's `f_type` (linux/magic.h).
#[cfg(any(target_os = "linux", target_os = "android"))]
fn network_name(f_type: i64) -> Option<&'static str> {
    Some(match f_type as u32 {
        0x6969 => "nfs",
        0x517B => "smb",
        0xFF53_4D42 => "cifs",
        0xFE53_4D42 => "smb2",
        0x6573_5546 => "fuse",
        0x0102_1997 => "9p",
        0x5346_414F => "afs",
        0x00C3_6400 => "ceph",
        0x7375_7245 => "coda",
        0x5346_5441 => "ocfs2",
        _ => return None,
    })
}

/// Refuses a NAS sink whose share is not mounted: the path must exist and be
/// on a network filesystem. Writes nothing.
pub fn check_share(path: &Path) -> Result<(), NasError> {
    std::fs::metadata(path).map_err(|source| NasError::Missing {
        path: path.to_path_buf(),
        source,
    })?;
    if network_filesystem(path).is_some() {
        return Ok(());
    }
    #[cfg(any(target_os = "linux", target_os = "android"))]
    {
        let fs = filesystem_type(path)
            .map(|t| format!("(type {t:#x})"))
            .unwrap_or_else(|_| "(unknown type)".into());
        Err(NasError::NotMounted {
            path: path.to_path_buf(),
            fs,
        })
    }
    #[cfg(windows)]
    {
        // Not a UNC path, nor a drive Windows calls remote: a local disk.
        Err(NasError::NotMounted {
            path: path.to_path_buf(),
            fs: "drive's".into(),
        })
    }
    #[cfg(not(any(target_os = "linux", target_os = "android", windows)))]
    {
        // Elsewhere a mounted share cannot be told from a local directory
        // here: an existing path is taken as mounted.
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(any(target_os = "linux", target_os = "android"))]
    #[test]
    fn network_magics_are_named_and_local_ones_are_not() {
        assert_eq!(network_name(0x6969), Some("nfs"));
        assert_eq!(network_name(0x6573_5546), Some("fuse"));
        assert_eq!(network_name(0xFF53_4D42u32 as i64), Some("cifs"));
        assert_eq!(network_name(0xEF53), None); // ext4
        assert_eq!(network_name(0x0102_1994), None); // tmpfs
    }

    #[cfg(windows)]
    #[test]
    fn unc_paths_are_network_shares_on_windows() {
        assert_eq!(network_filesystem(Path::new(r"\\nas\backups\cairn")), Some("smb"));
        assert_eq!(network_filesystem(Path::new(r"C:\Users")), None);
    }

    #[test]
    fn an_unmounted_share_is_refused_and_left_empty() {
        let dir = tempfile::tempdir().unwrap();
        let mount_point = dir.path().join("nas");
        let err = check_share(&mount_point).unwrap_err();
        assert!(matches!(err, NasError::Missing { .. }), "{err}");
        std::fs::create_dir(&mount_point).unwrap();
        #[cfg(any(target_os = "linux", target_os = "android", windows))]
        if network_filesystem(&mount_point).is_none() {
            let err = check_share(&mount_point).unwrap_err();
            assert!(err.to_string().contains("is the share mounted"), "{err}");
        }
        assert_eq!(std::fs::read_dir(&mount_point).unwrap().count(), 0);
    }
}
