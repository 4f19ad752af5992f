//! Filesystem changes made relative to an open directory.
//!
//! A restore never writes through a path that could have been swapped for a
//! symlink: every directory is opened from its parent's descriptor without
//! following a link, and every change (create, rename, remove, owner, mode,
//! times) is made relative to that descriptor or through the open file.
//! New files are created 0600 and new directories 0700, so nothing is
//! readable by others before its recorded metadata is applied; special
//! files are made with `mknodat` and never opened.

use std::ffi::{OsStr, OsString};
use std::io;

use crate::repo::manifest::{Entry, EntryKind};
use crate::sink::local::random_u64;

/// A temporary name beside `name`: `.<name, at most 32 chars>.cairn-<16 hex>`,
/// random so that no leftover of another restore is in the way for long.
pub fn temp_name(name: &OsStr) -> OsString {
    let lossy = name.to_string_lossy();
    let short: String = lossy.chars().take(32).collect();
    OsString::from(format!(".{short}.cairn-{:016x}", random_u64()))
}

/// Whether `name` is one of [`temp_name`]'s: left by a restore that was
/// killed, and never part of a snapshot.
pub fn is_temp_name(name: &[u8]) -> bool {
    let Some(at) = name.len().checked_sub(23) else {
        return false;
    };
    name.first() == Some(&b'.')
        && name.len() > 24
        && &name[at..at + 7] == b".cairn-"
        && name[at + 7..]
            .iter()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
}

/// Tries fresh temporary names until `make` does not find one taken.
fn with_temp<T>(beside: &OsStr, mut make: impl FnMut(&OsStr) -> io::Result<T>) -> io::Result<(OsString, T)> {
    let mut attempts = 0;
    loop {
        let tmp = temp_name(beside);
        match make(&tmp) {
            Ok(value) => return Ok((tmp, value)),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists && attempts < 8 => attempts += 1,
            Err(e) => return Err(e),
        }
    }
}

#[cfg(unix)]
pub use self::unix::DirHandle;

#[cfg(unix)]
mod unix {
    use std::ffi::{CString, OsStr, OsString};
    use std::fs::File;
    use std::io;
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
    use std::os::unix::ffi::{OsStrExt, OsStringExt};
    use std::path::Path;

    use super::with_temp;
    use crate::meta::Stat;
    use crate::repo::manifest::EntryKind;

    fn c(name: &OsStr) -> io::Result<CString> {
        CString::new(name.as_bytes())
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "name has a NUL byte"))
    }

    fn check(rc: libc::c_int) -> io::Result<()> {
        if rc == 0 {
            Ok(())
        } else {
            Err(io::Error::last_os_error())
        }
    }

    const DIR_FLAGS: libc::c_int = libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC;

    /// An open directory that changes are made relative to.
    #[derive(Debug)]
    pub struct DirHandle {
        fd: OwnedFd,
    }

    impl DirHandle {
        fn from_raw(fd: libc::c_int) -> io::Result<DirHandle> {
            if fd < 0 {
                let e = io::Error::last_os_error();
                return Err(match e.raw_os_error() {
                    Some(libc::ELOOP) | Some(libc::ENOTDIR) => not_a_dir(),
                    _ => e,
                });
            }
            // SAFETY: `fd` was just opened and is owned by nothing else.
            Ok(DirHandle {
                fd: unsafe { OwnedFd::from_raw_fd(fd) },
            })
        }

        /// Opens a directory by path; the last component must not be a link.
        pub fn open_path(path: &Path) -> io::Result<DirHandle> {
            let p = c(path.as_os_str())?;
            // SAFETY: `p` is a valid C string for the call.
            DirHandle::from_raw(unsafe { libc::open(p.as_ptr(), DIR_FLAGS) })
        }

        /// Opens the child directory `name`, refusing a link or anything else.
        pub fn open_dir(&self, name: &OsStr) -> io::Result<DirHandle> {
            let n = c(name)?;
            // SAFETY: the descriptor is open; `n` is a C string.
            DirHandle::from_raw(unsafe { libc::openat(self.fd.as_raw_fd(), n.as_ptr(), DIR_FLAGS) })
        }

        /// `lstat` of `name`; `None` when there is nothing by that name.
        pub fn stat(&self, name: &OsStr) -> io::Result<Option<Stat>> {
            let n = c(name)?;
            let mut st = std::mem::MaybeUninit::<libc::stat>::uninit();
            // SAFETY: the descriptor is open, `n` is a C string, and `st` is
            // written by a successful call.
            let rc = unsafe {
                libc::fstatat(
                    self.fd.as_raw_fd(),
                    n.as_ptr(),
                    st.as_mut_ptr(),
                    libc::AT_SYMLINK_NOFOLLOW,
                )
            };
            if rc != 0 {
                let e = io::Error::last_os_error();
                return if e.kind() == io::ErrorKind::NotFound {
                    Ok(None)
                } else {
                    Err(e)
                };
            }
            // SAFETY: fstatat returned 0, so it filled the struct.
            Ok(Some(Stat::from_libc(unsafe { st.assume_init_ref() })))
        }

        /// Opens `name` for reading without following a link or blocking on
        /// a fifo (for metadata, hashing and directories' metadata).
        pub fn open_read(&self, name: &OsStr) -> io::Result<File> {
            let n = c(name)?;
            let flags = libc::O_RDONLY | libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC;
            // SAFETY: the descriptor is open; `n` is a C string.
            let fd = unsafe { libc::openat(self.fd.as_raw_fd(), n.as_ptr(), flags) };
            if fd < 0 {
                return Err(io::Error::last_os_error());
            }
            // SAFETY: `fd` was just opened and is owned by nothing else.
            Ok(unsafe { File::from_raw_fd(fd) })
        }

        /// A new file at a temporary name beside `name`, mode 0600.
        pub fn create_temp(&self, name: &OsStr) -> io::Result<(OsString, File)> {
            with_temp(name, |tmp| {
                let n = c(tmp)?;
                let flags =
                    libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL | libc::O_NOFOLLOW | libc::O_CLOEXEC;
                // SAFETY: the descriptor is open; `n` is a C string.
                let fd =
                    unsafe { libc::openat(self.fd.as_raw_fd(), n.as_ptr(), flags, 0o600 as libc::c_uint) };
                if fd < 0 {
                    return Err(io::Error::last_os_error());
                }
                // SAFETY: as above.
                Ok(unsafe { File::from_raw_fd(fd) })
            })
        }

        /// A symlink to `target` at a temporary name beside `name`.
        pub fn symlink_temp(&self, target: &[u8], name: &OsStr) -> io::Result<OsString> {
            let t = CString::new(target)
                .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "link target has a NUL byte"))?;
            with_temp(name, |tmp| {
                let n = c(tmp)?;
                // SAFETY: the descriptor is open; both are C strings.
                check(unsafe { libc::symlinkat(t.as_ptr(), self.fd.as_raw_fd(), n.as_ptr()) })
            })
            .map(|(tmp, ())| tmp)
        }

        /// A fifo or device node at a temporary name beside `name`, mode
        /// 0600; it is never opened.
        // mode_t and dev_t differ between platforms.
        #[allow(clippy::unnecessary_cast)]
        pub fn mknod_temp(&self, kind: EntryKind, rdev: u64, name: &OsStr) -> io::Result<OsString> {
            let file_type = match kind {
                EntryKind::Fifo => libc::S_IFIFO,
                EntryKind::Chardev => libc::S_IFCHR,
                _ => libc::S_IFBLK,
            };
            with_temp(name, |tmp| {
                let n = c(tmp)?;
                // SAFETY: the descriptor is open; `n` is a C string.
                check(unsafe {
                    libc::mknodat(
                        self.fd.as_raw_fd(),
                        n.as_ptr(),
                        file_type | 0o600 as libc::mode_t,
                        rdev as libc::dev_t,
                    )
                })
            })
            .map(|(tmp, ())| tmp)
        }

        /// A hard link to `from`'s `from_name` at a temporary name beside `name`.
        pub fn link_temp(&self, from: &DirHandle, from_name: &OsStr, name: &OsStr) -> io::Result<OsString> {
            let f = c(from_name)?;
            with_temp(name, |tmp| {
                let n = c(tmp)?;
                // SAFETY: both descriptors are open; both names are C strings.
                check(unsafe {
                    libc::linkat(
                        from.fd.as_raw_fd(),
                        f.as_ptr(),
                        self.fd.as_raw_fd(),
                        n.as_ptr(),
                        0,
                    )
                })
            })
            .map(|(tmp, ())| tmp)
        }

        /// A new directory, mode 0700 until its metadata is applied.
        pub fn mkdir(&self, name: &OsStr) -> io::Result<()> {
            let n = c(name)?;
            // SAFETY: the descriptor is open; `n` is a C string.
            check(unsafe { libc::mkdirat(self.fd.as_raw_fd(), n.as_ptr(), 0o700) })
        }

        /// Renames `from` over `to`, both in this directory.
        pub fn rename(&self, from: &OsStr, to: &OsStr) -> io::Result<()> {
            let (f, t) = (c(from)?, c(to)?);
            let fd = self.fd.as_raw_fd();
            // SAFETY: the descriptor is open; both names are C strings.
            check(unsafe { libc::renameat(fd, f.as_ptr(), fd, t.as_ptr()) })
        }

        /// Removes a non-directory.
        pub fn unlink(&self, name: &OsStr) -> io::Result<()> {
            let n = c(name)?;
            // SAFETY: the descriptor is open; `n` is a C string.
            check(unsafe { libc::unlinkat(self.fd.as_raw_fd(), n.as_ptr(), 0) })
        }

        /// Removes an empty directory.
        pub fn rmdir(&self, name: &OsStr) -> io::Result<()> {
            let n = c(name)?;
            // SAFETY: the descriptor is open; `n` is a C string.
            check(unsafe { libc::unlinkat(self.fd.as_raw_fd(), n.as_ptr(), libc::AT_REMOVEDIR) })
        }

        /// Makes everything written to this directory's filesystem durable
        /// with one `syncfs`.
        #[cfg(any(target_os = "linux", target_os = "android"))]
        pub fn sync_filesystem(&self) -> io::Result<()> {
            // SAFETY: the descriptor is open.
            check(unsafe { libc::syncfs(self.fd.as_raw_fd()) })
        }

        /// The names in this directory, without `.` and `..`.
        pub fn names(&self) -> io::Result<Vec<OsString>> {
            // A second descriptor for the stream: closedir closes it.
            // SAFETY: the descriptor is open; dup has no other precondition.
            let dup = unsafe { libc::fcntl(self.fd.as_raw_fd(), libc::F_DUPFD_CLOEXEC, 0) };
            if dup < 0 {
                return Err(io::Error::last_os_error());
            }
            // SAFETY: `dup` is an open directory descriptor that the stream takes.
            let stream = unsafe { libc::fdopendir(dup) };
            if stream.is_null() {
                let e = io::Error::last_os_error();
                // SAFETY: `dup` is still ours when fdopendir fails.
                unsafe { libc::close(dup) };
                return Err(e);
            }
            // SAFETY: a fresh stream on a dup'ed descriptor starts wherever
            // the original's offset is; rewind it.
            unsafe { libc::rewinddir(stream) };
            let mut out = Vec::new();
            loop {
                // SAFETY: the stream is open and used by this thread only.
                let entry = unsafe { libc::readdir(stream) };
                if entry.is_null() {
                    break;
                }
                // SAFETY: d_name is a C string valid until the next readdir.
                let name = unsafe { std::ffi::CStr::from_ptr((*entry).d_name.as_ptr()) }.to_bytes();
                if name != b"." && name != b".." {
                    out.push(OsString::from_vec(name.to_vec()));
                }
            }
            // SAFETY: the stream is open and not used after this.
            unsafe { libc::closedir(stream) };
            Ok(out)
        }

        /// Owner, without following a link.
        pub fn chown_nofollow(&self, name: &OsStr, uid: u32, gid: u32) -> io::Result<()> {
            let n = c(name)?;
            // SAFETY: the descriptor is open; `n` is a C string.
            check(unsafe {
                libc::fchownat(
                    self.fd.as_raw_fd(),
                    n.as_ptr(),
                    uid,
                    gid,
                    libc::AT_SYMLINK_NOFOLLOW,
                )
            })
        }

        /// Permission bits of a non-link, without following a link (a link
        /// in its place makes this fail rather than change its target).
        #[allow(clippy::unnecessary_cast)]
        pub fn chmod_nofollow(&self, name: &OsStr, mode: u32) -> io::Result<()> {
            let n = c(name)?;
            // SAFETY: the descriptor is open; `n` is a C string.
            check(unsafe {
                libc::fchmodat(
                    self.fd.as_raw_fd(),
                    n.as_ptr(),
                    (mode & 0o7777) as libc::mode_t,
                    libc::AT_SYMLINK_NOFOLLOW,
                )
            })
        }

        /// Access and modification time, without following a link.
        pub fn set_times_nofollow(&self, name: &OsStr, secs: i64, nsecs: u32) -> io::Result<()> {
            let n = c(name)?;
            let (secs, nsecs) = crate::meta::checked_time(secs, nsecs)?;
            let t = libc::timespec {
                tv_sec: secs as libc::time_t,
                tv_nsec: nsecs as _,
            };
            let times = [t, t];
            // SAFETY: the descriptor is open, `n` is a C string, `times` holds two timespecs.
            check(unsafe {
                libc::utimensat(
                    self.fd.as_raw_fd(),
                    n.as_ptr(),
                    times.as_ptr(),
                    libc::AT_SYMLINK_NOFOLLOW,
                )
            })
        }
    }

    fn not_a_dir() -> io::Error {
        io::Error::new(
            io::ErrorKind::AlreadyExists,
            "is in the way and is not a directory; not writing through it",
        )
    }
}

#[cfg(not(unix))]
pub use self::portable::DirHandle;

/// Path-based stand-ins where there are no directory descriptors: the same
/// operations, without the protection against swapped directories.
#[cfg(not(unix))]
mod portable {
    use std::ffi::{OsStr, OsString};
    use std::fs::{self, File, OpenOptions};
    use std::io;
    use std::path::{Path, PathBuf};

    use super::with_temp;
    use crate::meta::Stat;
    use crate::repo::manifest::EntryKind;

    #[derive(Debug)]
    pub struct DirHandle {
        path: PathBuf,
    }

    /// Windows refuses to rename over a read-only file or one that is open:
    /// clear the read-only bit, retry a few times, then say it is busy.
    #[cfg(windows)]
    fn windows_rename(from: &Path, to: &Path) -> io::Result<()> {
        let mut last = None;
        for attempt in 0..5 {
            match fs::rename(from, to) {
                Ok(()) => return Ok(()),
                // ERROR_ACCESS_DENIED (5), ERROR_SHARING_VIOLATION (32).
                Err(e)
                    if matches!(e.raw_os_error(), Some(5 | 32))
                        || e.kind() == io::ErrorKind::PermissionDenied =>
                {
                    if let Ok(meta) = fs::symlink_metadata(to) {
                        let mut perms = meta.permissions();
                        if perms.readonly() {
                            #[allow(clippy::permissions_set_readonly_false)]
                            perms.set_readonly(false);
                            let _ = fs::set_permissions(to, perms);
                        }
                    }
                    last = Some(e);
                    std::thread::sleep(std::time::Duration::from_millis(100 << attempt));
                }
                Err(e) => return Err(e),
            }
        }
        Err(io::Error::new(
            io::ErrorKind::ResourceBusy,
            format!(
                "{} is in use by another program ({})",
                to.display(),
                last.map(|e| e.to_string()).unwrap_or_default()
            ),
        ))
    }

    fn unsupported(what: &str) -> io::Error {
        io::Error::new(
            io::ErrorKind::Unsupported,
            format!("{what} cannot be restored here"),
        )
    }

    impl DirHandle {
        pub fn open_path(path: &Path) -> io::Result<DirHandle> {
            let meta = fs::symlink_metadata(path)?;
            if !meta.is_dir() {
                return Err(io::Error::new(io::ErrorKind::AlreadyExists, "is not a directory"));
            }
            Ok(DirHandle {
                path: path.to_path_buf(),
            })
        }
        pub fn open_dir(&self, name: &OsStr) -> io::Result<DirHandle> {
            DirHandle::open_path(&self.path.join(name))
        }
        pub fn stat(&self, name: &OsStr) -> io::Result<Option<Stat>> {
            match fs::symlink_metadata(self.path.join(name)) {
                Ok(m) => Ok(Some(Stat::from_metadata(&m))),
                Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
                Err(e) => Err(e),
            }
        }
        /// Opens a file or directory to read it and to set its metadata
        /// (Windows: a directory needs backup semantics to be opened, and
        /// times and attributes need the right to write attributes).
        pub fn open_read(&self, name: &OsStr) -> io::Result<File> {
            let mut options = OpenOptions::new();
            options.read(true);
            #[cfg(windows)]
            {
                use std::os::windows::fs::OpenOptionsExt;
                const GENERIC_READ: u32 = 0x8000_0000;
                const FILE_WRITE_ATTRIBUTES: u32 = 0x0100;
                const FILE_FLAG_OPEN_REPARSE_POINT: u32 = 0x0020_0000;
                const FILE_FLAG_BACKUP_SEMANTICS: u32 = 0x0200_0000;
                options
                    .access_mode(GENERIC_READ | FILE_WRITE_ATTRIBUTES)
                    .custom_flags(FILE_FLAG_OPEN_REPARSE_POINT | FILE_FLAG_BACKUP_SEMANTICS);
            }
            options.open(self.path.join(name))
        }
        pub fn create_temp(&self, name: &OsStr) -> io::Result<(OsString, File)> {
            with_temp(name, |tmp| {
                OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .open(self.path.join(tmp))
            })
        }
        pub fn symlink_temp(&self, _target: &[u8], _name: &OsStr) -> io::Result<OsString> {
            Err(unsupported("a symlink"))
        }
        pub fn mknod_temp(&self, _kind: EntryKind, _rdev: u64, _name: &OsStr) -> io::Result<OsString> {
            Err(unsupported("a special file"))
        }
        pub fn link_temp(&self, from: &DirHandle, from_name: &OsStr, name: &OsStr) -> io::Result<OsString> {
            with_temp(name, |tmp| {
                fs::hard_link(from.path.join(from_name), self.path.join(tmp))
            })
            .map(|(t, ())| t)
        }
        pub fn mkdir(&self, name: &OsStr) -> io::Result<()> {
            fs::create_dir(self.path.join(name))
        }
        pub fn rename(&self, from: &OsStr, to: &OsStr) -> io::Result<()> {
            let (from, to) = (self.path.join(from), self.path.join(to));
            #[cfg(windows)]
            return windows_rename(&from, &to);
            #[cfg(not(windows))]
            fs::rename(from, to)
        }
        pub fn unlink(&self, name: &OsStr) -> io::Result<()> {
            fs::remove_file(self.path.join(name))
        }
        pub fn rmdir(&self, name: &OsStr) -> io::Result<()> {
            fs::remove_dir(self.path.join(name))
        }
        pub fn names(&self) -> io::Result<Vec<OsString>> {
            fs::read_dir(&self.path)?
                .map(|e| e.map(|e| e.file_name()))
                .collect()
        }
        pub fn chown_nofollow(&self, _name: &OsStr, _uid: u32, _gid: u32) -> io::Result<()> {
            Ok(())
        }
        pub fn chmod_nofollow(&self, name: &OsStr, mode: u32) -> io::Result<()> {
            let mut perms = fs::symlink_metadata(self.path.join(name))?.permissions();
            perms.set_readonly(mode & 0o222 == 0);
            fs::set_permissions(self.path.join(name), perms)
        }
        pub fn set_times_nofollow(&self, name: &OsStr, secs: i64, nsecs: u32) -> io::Result<()> {
            let (secs, nsecs) = crate::meta::checked_time(secs, nsecs)?;
            let t = filetime::FileTime::from_unix_time(secs, nsecs);
            crate::meta::set_times_nofollow(&self.path.join(name), t)
        }
    }
}

impl DirHandle {
    /// Removes `name` and, for a directory, everything in it, without
    /// following any link.
    pub fn remove_tree(&self, name: &OsStr) -> io::Result<()> {
        match self.stat(name)? {
            None => Ok(()),
            Some(st) if st.is_dir() => {
                let dir = self.open_dir(name)?;
                for child in dir.names()? {
                    dir.remove_tree(&child)?;
                }
                self.rmdir(name)
            }
            Some(_) => self.unlink(name),
        }
    }

    /// Puts a special entry's owner (as root), mode and mtime on `name`
    /// without following it: for symlinks (no mode), fifos and devices.
    pub fn set_meta_nofollow(
        &self,
        name: &OsStr,
        entry: &Entry,
        warnings: &mut Vec<String>,
    ) -> io::Result<()> {
        if crate::meta::running_as_root() {
            if let Err(e) = self.chown_nofollow(name, entry.uid, entry.gid) {
                warnings.push(format!("cannot set owner {}:{}: {e}", entry.uid, entry.gid));
            }
        }
        if !entry.xattrs.is_empty() {
            warnings.push("extended attributes of links and special files are not restored".into());
        }
        if entry.kind != EntryKind::Symlink {
            self.chmod_nofollow(name, entry.mode)?;
        }
        self.set_times_nofollow(name, entry.mtime, entry.mtime_nsec)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn temp_names_are_recognised() {
        let t = temp_name(OsStr::new("main.go"));
        assert!(is_temp_name(t.to_string_lossy().as_bytes()), "{t:?}");
        let long = temp_name(OsStr::new(&"x".repeat(100)));
        assert!(is_temp_name(long.to_string_lossy().as_bytes()));
        for name in [
            "main.go",
            ".cairn-0123456789abcdef",
            ".a.cairn-0123456789ABCDEF",
            ".a.cairn-0123456789abcde",
        ] {
            assert!(!is_temp_name(name.as_bytes()), "{name}");
        }
        assert!(is_temp_name(b".a.cairn-0123456789abcdef"));
    }

    #[cfg(windows)]
    #[test]
    fn a_read_only_file_is_replaced_on_windows() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("go.exe");
        std::fs::write(&target, b"old").unwrap();
        let mut perms = std::fs::metadata(&target).unwrap().permissions();
        perms.set_readonly(true);
        std::fs::set_permissions(&target, perms).unwrap();
        std::fs::write(dir.path().join("new"), b"new").unwrap();
        let handle = DirHandle::open_path(dir.path()).unwrap();
        handle.rename(OsStr::new("new"), OsStr::new("go.exe")).unwrap();
        assert_eq!(std::fs::read(&target).unwrap(), b"new");
    }

    #[cfg(windows)]
    #[test]
    fn a_file_open_elsewhere_is_reported_busy_on_windows() {
        use std::os::windows::fs::OpenOptionsExt;
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("go.exe");
        std::fs::write(&target, b"old").unwrap();
        std::fs::write(dir.path().join("new"), b"new").unwrap();
        // Open with no sharing, as a running program's image is.
        let busy = std::fs::OpenOptions::new()
            .read(true)
            .share_mode(0)
            .open(&target)
            .unwrap();
        let handle = DirHandle::open_path(dir.path()).unwrap();
        let err = handle
            .rename(OsStr::new("new"), OsStr::new("go.exe"))
            .unwrap_err();
        assert!(err.to_string().contains("in use by another program"), "{err}");
        drop(busy);
        assert_eq!(std::fs::read(&target).unwrap(), b"old");
    }
}
