//! File metadata: reading it into manifest entries and putting it back.

use std::fs::Metadata;
use std::io;
use std::path::Path;

use crate::repo::manifest::{Entry, EntryKind, RawBytes, Xattr};

/// An entry from `lstat` data; contents, hash and target are filled in later.
pub fn entry_from_metadata(path: Vec<u8>, meta: &Metadata) -> Option<Entry> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::{FileTypeExt, MetadataExt};
        let ft = meta.file_type();
        let kind = if ft.is_dir() {
            EntryKind::Dir
        } else if ft.is_file() {
            EntryKind::File
        } else if ft.is_symlink() {
            EntryKind::Symlink
        } else if ft.is_fifo() {
            EntryKind::Fifo
        } else if ft.is_char_device() {
            EntryKind::Chardev
        } else if ft.is_block_device() {
            EntryKind::Blockdev
        } else {
            return None; // sockets are not worth saving
        };
        Some(Entry {
            path: RawBytes(path),
            kind,
            mode: meta.mode() & 0o7777,
            uid: meta.uid(),
            gid: meta.gid(),
            mtime: meta.mtime(),
            mtime_nsec: meta.mtime_nsec() as u32,
            ctime: meta.ctime(),
            ctime_nsec: meta.ctime_nsec() as u32,
            ino: meta.ino(),
            size: if kind == EntryKind::File { meta.len() } else { 0 },
            hash: None,
            blobs: Vec::new(),
            target: None,
            rdev: if matches!(kind, EntryKind::Chardev | EntryKind::Blockdev) {
                meta.rdev()
            } else {
                0
            },
            xattrs: Vec::new(),
        })
    }
    #[cfg(not(unix))]
    {
        let ft = meta.file_type();
        let kind = if ft.is_dir() {
            EntryKind::Dir
        } else if ft.is_file() {
            EntryKind::File
        } else if ft.is_symlink() {
            EntryKind::Symlink
        } else {
            return None;
        };
        let mtime = meta
            .modified()
            .ok()
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .unwrap_or_default();
        Some(Entry {
            path: RawBytes(path),
            kind,
            mode: if meta.permissions().readonly() {
                0o444
            } else {
                0o644
            },
            uid: 0,
            gid: 0,
            mtime: mtime.as_secs() as i64,
            mtime_nsec: mtime.subsec_nanos(),
            ctime: 0,
            ctime_nsec: 0,
            ino: 0,
            size: if kind == EntryKind::File { meta.len() } else { 0 },
            hash: None,
            blobs: Vec::new(),
            target: None,
            rdev: 0,
            xattrs: Vec::new(),
        })
    }
}

/// The identity of a filesystem object: device and inode.
pub fn identity(meta: &Metadata) -> (u64, u64) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        (meta.dev(), meta.ino())
    }
    #[cfg(not(unix))]
    {
        let _ = meta;
        (0, 0)
    }
}

/// Opens what the walk saw at `path` for reading without following a
/// symlink or blocking on a fifo, and checks that it is still the same object
/// (device and inode): a file swapped for a link or another file between the
/// walk and the read must not bring outside contents into the snapshot.
pub fn open_same(path: &Path, seen: (u64, u64), dir: bool) -> io::Result<std::fs::File> {
    let mut options = std::fs::OpenOptions::new();
    options.read(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        let mut flags = libc::O_NOFOLLOW | libc::O_NONBLOCK;
        if dir {
            flags |= libc::O_DIRECTORY;
        }
        options.custom_flags(flags);
    }
    let file = options.open(path).map_err(|e| {
        #[cfg(unix)]
        if e.raw_os_error() == Some(libc::ELOOP) {
            return replaced();
        }
        e
    })?;
    let now = file.metadata()?;
    if identity(&now) != seen || now.is_dir() != dir || (!dir && !now.is_file()) {
        return Err(replaced());
    }
    Ok(file)
}

fn replaced() -> io::Error {
    io::Error::other("replaced by something else while being saved; skipped")
}

/// Space on a filesystem, in bytes.
#[derive(Debug, Clone, Copy)]
pub struct FsSpace {
    /// Free to this user.
    pub available: u64,
    /// In use: an upper bound of the size of any tree on it.
    pub used: u64,
}

/// The space of the filesystem holding `path`.
#[cfg(unix)]
// statvfs field types differ between platforms; the casts are not no-ops everywhere.
#[allow(clippy::unnecessary_cast)]
pub fn fs_space(path: &Path) -> Option<FsSpace> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes()).ok()?;
    let mut stat = std::mem::MaybeUninit::<libc::statvfs>::uninit();
    // SAFETY: `c` is a valid C string and `stat` is written by a successful call.
    if unsafe { libc::statvfs(c.as_ptr(), stat.as_mut_ptr()) } != 0 {
        return None;
    }
    // SAFETY: statvfs returned 0, so it filled the struct.
    let stat = unsafe { stat.assume_init() };
    let block = stat.f_frsize as u64;
    Some(FsSpace {
        available: stat.f_bavail as u64 * block,
        used: (stat.f_blocks as u64).saturating_sub(stat.f_bfree as u64) * block,
    })
}

#[cfg(not(unix))]
pub fn fs_space(_path: &Path) -> Option<FsSpace> {
    None
}

/// Hard-link identity of a file with more than one name.
pub fn hardlink_key(meta: &Metadata) -> Option<(u64, u64)> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        (meta.is_file() && meta.nlink() > 1).then(|| (meta.dev(), meta.ino()))
    }
    #[cfg(not(unix))]
    {
        let _ = meta;
        None
    }
}

/// Extended attributes, without following a symlink. A filesystem without
/// xattr support has none.
pub fn read_xattrs(path: &Path) -> io::Result<Vec<Xattr>> {
    #[cfg(any(target_os = "linux", target_os = "macos", target_os = "freebsd"))]
    {
        let mut out = Vec::new();
        let names = match xattr::list(path) {
            Ok(names) => names,
            Err(e) if unsupported(&e) => return Ok(out),
            Err(e) => return Err(e),
        };
        for name in names {
            if let Some(value) = xattr::get(path, &name)? {
                out.push(Xattr {
                    name: RawBytes(os_bytes(&name)),
                    value: RawBytes(value),
                });
            }
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }
    #[cfg(not(any(target_os = "linux", target_os = "macos", target_os = "freebsd")))]
    {
        let _ = path;
        Ok(Vec::new())
    }
}

#[cfg(any(target_os = "linux", target_os = "macos", target_os = "freebsd"))]
fn unsupported(e: &io::Error) -> bool {
    e.raw_os_error() == Some(libc::ENOTSUP) || e.kind() == io::ErrorKind::Unsupported
}

#[cfg(unix)]
pub fn os_bytes(s: &std::ffi::OsStr) -> Vec<u8> {
    use std::os::unix::ffi::OsStrExt;
    s.as_bytes().to_vec()
}

#[cfg(not(unix))]
pub fn os_bytes(s: &std::ffi::OsStr) -> Vec<u8> {
    s.to_string_lossy().replace('\\', "/").into_bytes()
}

#[cfg(unix)]
pub fn bytes_to_path(b: &[u8]) -> std::path::PathBuf {
    use std::os::unix::ffi::OsStrExt;
    std::path::PathBuf::from(std::ffi::OsStr::from_bytes(b))
}

#[cfg(not(unix))]
pub fn bytes_to_path(b: &[u8]) -> std::path::PathBuf {
    std::path::PathBuf::from(String::from_utf8_lossy(b).into_owned())
}

pub fn running_as_root() -> bool {
    #[cfg(unix)]
    {
        // SAFETY: geteuid has no preconditions.
        unsafe { libc::geteuid() == 0 }
    }
    #[cfg(not(unix))]
    {
        false
    }
}

/// The same as [`apply_metadata`] for a regular file still open for writing:
/// through the descriptor, with no path lookups.
pub fn apply_metadata_to_file(
    file: &std::fs::File,
    entry: &Entry,
    warnings: &mut Vec<String>,
) -> io::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        if running_as_root() {
            if let Err(e) = std::os::unix::fs::fchown(file, Some(entry.uid), Some(entry.gid)) {
                warnings.push(owner_warning(entry, &e));
            }
        }
        #[cfg(any(target_os = "linux", target_os = "macos", target_os = "freebsd"))]
        {
            use std::os::unix::ffi::OsStrExt;
            use xattr::FileExt;
            for x in &entry.xattrs {
                if let Err(e) =
                    file.set_xattr(std::ffi::OsStr::from_bytes(x.name.as_bytes()), x.value.as_bytes())
                {
                    warnings.push(xattr_warning(x, &e));
                }
            }
        }
        file.set_permissions(std::fs::Permissions::from_mode(entry.mode))?;
    }
    let mtime = filetime::FileTime::from_unix_time(entry.mtime, entry.mtime_nsec);
    filetime::set_file_handle_times(file, Some(mtime), Some(mtime))
}

/// Owner and extended attributes are best effort: a restore as non-root, or
/// onto a filesystem without xattrs, must not drop the file's contents over
/// them. Their failures become warnings; mode and mtime failures are errors.
fn owner_warning(entry: &Entry, e: &io::Error) -> String {
    format!("cannot set owner {}:{}: {e}", entry.uid, entry.gid)
}

fn xattr_warning(x: &crate::repo::manifest::Xattr, e: &io::Error) -> String {
    format!("cannot set extended attribute {}: {e}", x.name.lossy())
}

/// Puts an entry's owner, xattrs, mode and mtime on `path`, in that order:
/// chown clears set-id bits and a read-only mode forbids setting xattrs, so
/// the mode comes after both, and the mtime last because the others touch it.
pub fn apply_metadata(path: &Path, entry: &Entry, warnings: &mut Vec<String>) -> io::Result<()> {
    let is_link = entry.kind == EntryKind::Symlink;
    #[cfg(unix)]
    {
        use std::os::unix::ffi::OsStrExt;
        if running_as_root() {
            let c = std::ffi::CString::new(path.as_os_str().as_bytes())
                .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "path has a NUL byte"))?;
            // SAFETY: `c` is a valid NUL-terminated path for the call's duration.
            if unsafe { libc::lchown(c.as_ptr(), entry.uid, entry.gid) } != 0 {
                warnings.push(owner_warning(entry, &io::Error::last_os_error()));
            }
        }
    }
    #[cfg(any(target_os = "linux", target_os = "macos", target_os = "freebsd"))]
    if !is_link {
        use std::os::unix::ffi::OsStrExt;
        for x in &entry.xattrs {
            if let Err(e) = xattr::set(
                path,
                std::ffi::OsStr::from_bytes(x.name.as_bytes()),
                x.value.as_bytes(),
            ) {
                warnings.push(xattr_warning(x, &e));
            }
        }
    }
    #[cfg(unix)]
    if !is_link {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(entry.mode))?;
    }
    let mtime = filetime::FileTime::from_unix_time(entry.mtime, entry.mtime_nsec);
    if is_link {
        filetime::set_symlink_file_times(path, mtime, mtime)
    } else {
        filetime::set_file_times(path, mtime, mtime)
    }
}
