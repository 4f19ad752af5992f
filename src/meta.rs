//! File metadata: reading it into manifest entries and putting it back.

use std::fs::Metadata;
use std::io;
use std::path::Path;

use crate::repo::manifest::{Entry, EntryKind, RawBytes, Xattr};

/// What `lstat` says of a filesystem object: the fields a manifest entry,
/// hard-link detection and the same-object checks need. The walk fills it
/// straight from `fstatat`, without going through `std::fs::Metadata`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stat {
    /// `None` for kinds that are not saved (sockets).
    pub kind: Option<EntryKind>,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub mtime: i64,
    pub mtime_nsec: u32,
    pub ctime: i64,
    pub ctime_nsec: u32,
    pub dev: u64,
    pub ino: u64,
    pub nlink: u64,
    pub size: u64,
    pub rdev: u64,
}

/// The kind of object a Unix mode's file-type bits name; `None` for kinds
/// that are not saved (sockets).
#[cfg(unix)]
// mode_t differs between platforms; the casts are not no-ops everywhere.
#[allow(clippy::unnecessary_cast)]
fn kind_of_mode(mode: u32) -> Option<EntryKind> {
    match mode & libc::S_IFMT as u32 {
        m if m == libc::S_IFDIR as u32 => Some(EntryKind::Dir),
        m if m == libc::S_IFREG as u32 => Some(EntryKind::File),
        m if m == libc::S_IFLNK as u32 => Some(EntryKind::Symlink),
        m if m == libc::S_IFIFO as u32 => Some(EntryKind::Fifo),
        m if m == libc::S_IFCHR as u32 => Some(EntryKind::Chardev),
        m if m == libc::S_IFBLK as u32 => Some(EntryKind::Blockdev),
        _ => None,
    }
}

impl Stat {
    #[cfg(unix)]
    // stat field types differ between platforms; the casts are not no-ops everywhere.
    #[allow(clippy::unnecessary_cast)]
    pub fn from_libc(st: &libc::stat) -> Stat {
        Stat {
            kind: kind_of_mode(st.st_mode as u32),
            mode: st.st_mode as u32 & 0o7777,
            uid: st.st_uid as u32,
            gid: st.st_gid as u32,
            mtime: st.st_mtime as i64,
            mtime_nsec: st.st_mtime_nsec as u32,
            ctime: st.st_ctime as i64,
            ctime_nsec: st.st_ctime_nsec as u32,
            dev: st.st_dev as u64,
            ino: st.st_ino as u64,
            nlink: st.st_nlink as u64,
            size: st.st_size as u64,
            rdev: st.st_rdev as u64,
        }
    }

    pub fn from_metadata(meta: &Metadata) -> Stat {
        #[cfg(unix)]
        {
            use std::os::unix::fs::MetadataExt;
            Stat {
                kind: kind_of_mode(meta.mode()),
                mode: meta.mode() & 0o7777,
                uid: meta.uid(),
                gid: meta.gid(),
                mtime: meta.mtime(),
                mtime_nsec: meta.mtime_nsec() as u32,
                ctime: meta.ctime(),
                ctime_nsec: meta.ctime_nsec() as u32,
                dev: meta.dev(),
                ino: meta.ino(),
                nlink: meta.nlink(),
                size: meta.len(),
                rdev: meta.rdev(),
            }
        }
        #[cfg(not(unix))]
        {
            let ft = meta.file_type();
            let kind = if ft.is_dir() {
                Some(EntryKind::Dir)
            } else if ft.is_file() {
                Some(EntryKind::File)
            } else if ft.is_symlink() {
                Some(EntryKind::Symlink)
            } else {
                None
            };
            let mtime = meta
                .modified()
                .ok()
                .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                .unwrap_or_default();
            Stat {
                kind,
                // No mode bits here: directories are searchable, files
                // writable unless read-only.
                mode: match (ft.is_dir(), meta.permissions().readonly()) {
                    (true, _) => 0o755,
                    (false, true) => 0o444,
                    (false, false) => 0o644,
                },
                uid: 0,
                gid: 0,
                mtime: mtime.as_secs() as i64,
                mtime_nsec: mtime.subsec_nanos(),
                ctime: 0,
                ctime_nsec: 0,
                dev: 0,
                ino: 0,
                nlink: 1,
                size: meta.len(),
                rdev: 0,
            }
        }
    }

    pub fn is_dir(&self) -> bool {
        self.kind == Some(EntryKind::Dir)
    }

    pub fn is_file(&self) -> bool {
        self.kind == Some(EntryKind::File)
    }

    /// Device and inode.
    pub fn identity(&self) -> (u64, u64) {
        (self.dev, self.ino)
    }

    /// Hard-link identity of a file with more than one name.
    pub fn hardlink_key(&self) -> Option<(u64, u64)> {
        (cfg!(unix) && self.is_file() && self.nlink > 1).then_some((self.dev, self.ino))
    }

    /// The manifest entry at `path`; contents, hash and target are filled in
    /// later. `None` for kinds that are not saved.
    pub fn entry(&self, path: Vec<u8>) -> Option<Entry> {
        let kind = self.kind?;
        Some(Entry {
            path: RawBytes(path),
            kind,
            mode: self.mode,
            uid: self.uid,
            gid: self.gid,
            mtime: self.mtime,
            mtime_nsec: self.mtime_nsec,
            ctime: self.ctime,
            ctime_nsec: self.ctime_nsec,
            ino: self.ino,
            size: if kind == EntryKind::File { self.size } else { 0 },
            hash: None,
            blobs: Vec::new(),
            target: None,
            rdev: if matches!(kind, EntryKind::Chardev | EntryKind::Blockdev) {
                self.rdev
            } else {
                0
            },
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
    let file = options.open(path);
    #[cfg(unix)]
    let file = file.map_err(|e| match e.raw_os_error() {
        Some(libc::ELOOP) => replaced(),
        _ => e,
    });
    let file = file?;
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
        // Asked for every entry a restore compares: taken once.
        static ROOT: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
        // SAFETY: geteuid has no preconditions.
        *ROOT.get_or_init(|| unsafe { libc::geteuid() == 0 })
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
    #[cfg(not(unix))]
    {
        xattrs_unsupported(entry, warnings);
        let mut perms = file.metadata()?.permissions();
        perms.set_readonly(entry.mode & 0o222 == 0);
        file.set_permissions(perms)?;
    }
    let mtime = file_time(entry.mtime, entry.mtime_nsec)?;
    filetime::set_file_handle_times(file, Some(mtime), Some(mtime))
}

/// The latest time a manifest may record: the end of the year 9999.
const LATEST_SECS: i64 = 253_402_300_799;

/// A recorded modification time as a file time, or an error when it is out
/// of range (a crafted manifest: seconds past the year 9999 either way, or
/// nanoseconds of a second or more), which the restore reports as a
/// warning about that entry's metadata.
pub fn checked_time(secs: i64, nsecs: u32) -> io::Result<(i64, u32)> {
    if (-LATEST_SECS..=LATEST_SECS).contains(&secs) && nsecs < 1_000_000_000 {
        return Ok((secs, nsecs));
    }
    Err(io::Error::new(
        io::ErrorKind::InvalidData,
        format!("the recorded modification time {secs}.{nsecs:09} s is out of range; not set"),
    ))
}

fn file_time(secs: i64, nsecs: u32) -> io::Result<filetime::FileTime> {
    let (secs, nsecs) = checked_time(secs, nsecs)?;
    Ok(filetime::FileTime::from_unix_time(secs, nsecs))
}

/// Owner and extended attributes are best effort: a restore as non-root, or
/// onto a filesystem without xattrs, must not drop the file's contents over
/// them. Their failures become warnings; mode and mtime failures are errors.
#[cfg(unix)]
fn owner_warning(entry: &Entry, e: &io::Error) -> String {
    format!("cannot set owner {}:{}: {e}", entry.uid, entry.gid)
}

#[cfg(any(target_os = "linux", target_os = "macos", target_os = "freebsd"))]
fn xattr_warning(x: &crate::repo::manifest::Xattr, e: &io::Error) -> String {
    format!("cannot set extended attribute {}: {e}", x.name.lossy())
}

/// Where extended attributes cannot be set, one warning says they were
/// left out (Windows: the owner and mode bits have no counterpart either,
/// but for the read-only bit).
#[cfg(not(any(target_os = "linux", target_os = "macos", target_os = "freebsd")))]
fn xattrs_unsupported(entry: &Entry, warnings: &mut Vec<String>) {
    if !entry.xattrs.is_empty() {
        warnings.push(format!(
            "{} extended attributes not restored: not supported on this system",
            entry.xattrs.len()
        ));
    }
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
    #[cfg(not(unix))]
    if !is_link {
        xattrs_unsupported(entry, warnings);
        let mut perms = std::fs::symlink_metadata(path)?.permissions();
        perms.set_readonly(entry.mode & 0o222 == 0);
        std::fs::set_permissions(path, perms)?;
    }
    let mtime = file_time(entry.mtime, entry.mtime_nsec)?;
    if is_link {
        set_times_nofollow(path, mtime)
    } else {
        filetime::set_file_times(path, mtime, mtime)
    }
}

/// Sets access and modification time of `path` itself, never of what a
/// link points to.
pub fn set_times_nofollow(path: &Path, time: filetime::FileTime) -> io::Result<()> {
    #[cfg(windows)]
    {
        // Only the right to write attributes: a directory (or a read-only
        // file) cannot be opened for writing.
        use std::os::windows::fs::OpenOptionsExt;
        const FILE_WRITE_ATTRIBUTES: u32 = 0x0100;
        const FILE_FLAG_OPEN_REPARSE_POINT: u32 = 0x0020_0000;
        const FILE_FLAG_BACKUP_SEMANTICS: u32 = 0x0200_0000;
        let file = std::fs::OpenOptions::new()
            .access_mode(FILE_WRITE_ATTRIBUTES)
            .custom_flags(FILE_FLAG_OPEN_REPARSE_POINT | FILE_FLAG_BACKUP_SEMANTICS)
            .open(path)?;
        filetime::set_file_handle_times(&file, Some(time), Some(time))
    }
    #[cfg(not(windows))]
    filetime::set_symlink_file_times(path, time, time)
}
