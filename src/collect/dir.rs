//! An open directory, listed and stat'ed through its own descriptor.
//!
//! The walk opens each directory once, relative to its parent's descriptor
//! and without following a symlink, checks that it is the directory the
//! parent's listing showed, then lists it and `fstatat`s its children
//! through that same descriptor. No path is looked up from the root again,
//! which saves the kernel a path walk per file and leaves no window in which
//! a directory swapped for a symlink could lead the walk out of the tree.

use std::ffi::OsStr;
use std::io;
use std::path::Path;

use crate::meta::Stat;

/// The error for an object that is no longer the one the walk saw.
fn replaced() -> io::Error {
    io::Error::other("replaced by something else while being saved; skipped")
}

#[cfg(unix)]
pub use self::unix::{Dir, DirName, Names};

#[cfg(not(unix))]
pub use self::portable::{Dir, DirName, Names};

#[cfg(unix)]
mod unix {
    use std::ffi::{CStr, CString, OsStr};
    use std::io;
    use std::os::unix::ffi::OsStrExt;
    use std::path::Path;
    use std::ptr::NonNull;

    use super::replaced;
    use crate::meta::Stat;

    /// A child's name as the kernel gave it, ready to be passed back.
    pub type DirName = CStr;

    pub fn name_str(name: &DirName) -> &OsStr {
        OsStr::from_bytes(name.to_bytes())
    }

    /// A directory's children's names in one buffer, each NUL-terminated so
    /// it can be passed back to the kernel as it is: one allocation per
    /// directory rather than one per name.
    #[derive(Default, Clone)]
    pub struct Names {
        bytes: Vec<u8>,
        /// Where each name starts in `bytes`, and its length without the NUL.
        spans: Vec<(u32, u32)>,
    }

    impl Names {
        fn push(&mut self, name: &[u8]) -> io::Result<()> {
            let too_many = || io::Error::other("directory has too many names to list");
            let start = u32::try_from(self.bytes.len()).map_err(|_| too_many())?;
            let len = u32::try_from(name.len()).map_err(|_| too_many())?;
            self.spans.push((start, len));
            self.bytes.extend_from_slice(name);
            self.bytes.push(0);
            Ok(())
        }

        pub fn len(&self) -> usize {
            self.spans.len()
        }

        pub fn is_empty(&self) -> bool {
            self.spans.is_empty()
        }

        pub fn get(&self, i: usize) -> &DirName {
            let (start, len) = self.spans[i];
            let with_nul = &self.bytes[start as usize..start as usize + len as usize + 1];
            // The name and its NUL were pushed together; a name from the
            // kernel holds no NUL of its own.
            CStr::from_bytes_with_nul(with_nul).unwrap_or_default()
        }

        /// Sorts by name bytes: manifest order among siblings.
        pub fn sort(&mut self) {
            let bytes = &self.bytes;
            let name = |(start, len): (u32, u32)| &bytes[start as usize..start as usize + len as usize];
            self.spans.sort_unstable_by(|&a, &b| name(a).cmp(name(b)));
        }

        pub fn iter(&self) -> impl Iterator<Item = &DirName> {
            (0..self.len()).map(|i| self.get(i))
        }
    }

    pub struct Dir {
        stream: NonNull<libc::DIR>,
    }

    // SAFETY: a DIR stream may be used from any thread. Reading it takes
    // `&mut self`; the `&self` methods only use its descriptor for `fstatat`
    // and `openat`, which any number of threads may call at once.
    unsafe impl Send for Dir {}
    unsafe impl Sync for Dir {}

    const FLAGS: libc::c_int =
        libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC | libc::O_NONBLOCK;

    fn c_string(s: &OsStr) -> io::Result<CString> {
        CString::new(s.as_bytes())
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "name has a NUL byte"))
    }

    impl Dir {
        /// Opens the directory at `path`, which must still be `seen`.
        pub fn open(path: &Path, seen: (u64, u64)) -> io::Result<Dir> {
            let c = c_string(path.as_os_str())?;
            // SAFETY: `c` is a valid C string for the call.
            let fd = unsafe { libc::open(c.as_ptr(), FLAGS) };
            Dir::from_fd(fd, seen)
        }

        /// Opens the child `name`, which must still be `seen`.
        pub fn open_child(&self, name: &DirName, seen: (u64, u64)) -> io::Result<Dir> {
            // SAFETY: the descriptor is open while `self` lives; `name` is a C string.
            let fd = unsafe { libc::openat(self.fd(), name.as_ptr(), FLAGS) };
            Dir::from_fd(fd, seen)
        }

        fn from_fd(fd: libc::c_int, seen: (u64, u64)) -> io::Result<Dir> {
            if fd < 0 {
                let e = io::Error::last_os_error();
                // O_NOFOLLOW met a link, or O_DIRECTORY something else.
                return Err(match e.raw_os_error() {
                    Some(libc::ELOOP) | Some(libc::ENOTDIR) => replaced(),
                    _ => e,
                });
            }
            let mut st = std::mem::MaybeUninit::<libc::stat>::uninit();
            // SAFETY: `fd` is open; `st` is written by a successful call.
            let statted = unsafe { libc::fstat(fd, st.as_mut_ptr()) } == 0;
            let error = if !statted {
                Some(io::Error::last_os_error())
            } else {
                // SAFETY: fstat returned 0, so it filled the struct.
                let now = Stat::from_libc(unsafe { st.assume_init_ref() });
                (now.identity() != seen || !now.is_dir()).then(replaced)
            };
            if let Some(e) = error {
                // SAFETY: `fd` is ours and not used after this.
                unsafe { libc::close(fd) };
                return Err(e);
            }
            // SAFETY: `fd` is an open directory descriptor; on success the
            // stream owns it, on failure it is still ours to close.
            match NonNull::new(unsafe { libc::fdopendir(fd) }) {
                Some(stream) => Ok(Dir { stream }),
                None => {
                    let e = io::Error::last_os_error();
                    // SAFETY: as above.
                    unsafe { libc::close(fd) };
                    Err(e)
                }
            }
        }

        fn fd(&self) -> libc::c_int {
            // SAFETY: the stream is open while `self` lives.
            unsafe { libc::dirfd(self.stream.as_ptr()) }
        }

        /// The names of the children, without `.` and `..`, in the order
        /// the filesystem gives them.
        pub fn names(&mut self) -> io::Result<Names> {
            let mut out = Names::default();
            loop {
                clear_errno();
                // SAFETY: the stream is open and used by this thread only.
                let entry = unsafe { libc::readdir(self.stream.as_ptr()) };
                if entry.is_null() {
                    let e = io::Error::last_os_error();
                    return match e.raw_os_error() {
                        Some(0) | None => Ok(out),
                        Some(_) => Err(e),
                    };
                }
                // SAFETY: readdir returned an entry whose d_name is a C
                // string valid until the next readdir on this stream.
                let name = unsafe { CStr::from_ptr((*entry).d_name.as_ptr()) };
                let bytes = name.to_bytes();
                if bytes != b"." && bytes != b".." {
                    out.push(bytes)?;
                }
            }
        }

        /// `lstat` of the child `name`.
        pub fn stat(&self, name: &DirName) -> io::Result<Stat> {
            let mut st = std::mem::MaybeUninit::<libc::stat>::uninit();
            // SAFETY: the descriptor is open, `name` is a C string, and `st`
            // is written by a successful call.
            let rc = unsafe {
                libc::fstatat(
                    self.fd(),
                    name.as_ptr(),
                    st.as_mut_ptr(),
                    libc::AT_SYMLINK_NOFOLLOW,
                )
            };
            if rc != 0 {
                return Err(io::Error::last_os_error());
            }
            // SAFETY: fstatat returned 0, so it filled the struct.
            Ok(Stat::from_libc(unsafe { st.assume_init_ref() }))
        }
    }

    impl Drop for Dir {
        fn drop(&mut self) {
            // SAFETY: the stream is open and not used after this.
            unsafe { libc::closedir(self.stream.as_ptr()) };
        }
    }

    /// readdir reports its errors only through errno, leaving it as it was
    /// at the end of the stream.
    fn clear_errno() {
        #[cfg(any(target_os = "linux", target_os = "android"))]
        // SAFETY: errno is thread-local; writing it has no other effect.
        unsafe {
            *libc::__errno_location() = 0
        };
        #[cfg(any(target_os = "macos", target_os = "ios", target_os = "freebsd"))]
        // SAFETY: as above.
        unsafe {
            *libc::__error() = 0
        };
    }
}

#[cfg(not(unix))]
mod portable {
    use std::ffi::{OsStr, OsString};
    use std::io;
    use std::path::{Path, PathBuf};

    use super::replaced;
    use crate::meta::Stat;

    pub type DirName = OsStr;

    pub fn name_str(name: &DirName) -> &OsStr {
        name
    }

    #[derive(Default, Clone)]
    pub struct Names(Vec<OsString>);

    impl Names {
        pub fn len(&self) -> usize {
            self.0.len()
        }

        pub fn is_empty(&self) -> bool {
            self.0.is_empty()
        }

        pub fn get(&self, i: usize) -> &DirName {
            &self.0[i]
        }

        pub fn sort(&mut self) {
            self.0.sort_unstable();
        }

        pub fn iter(&self) -> impl Iterator<Item = &DirName> {
            self.0.iter().map(OsString::as_os_str)
        }
    }

    /// Without descriptor-relative calls, a directory is its path.
    pub struct Dir {
        path: PathBuf,
    }

    impl Dir {
        pub fn open(path: &Path, _seen: (u64, u64)) -> io::Result<Dir> {
            if !std::fs::symlink_metadata(path)?.is_dir() {
                return Err(replaced());
            }
            Ok(Dir {
                path: path.to_path_buf(),
            })
        }

        pub fn open_child(&self, name: &DirName, seen: (u64, u64)) -> io::Result<Dir> {
            Dir::open(&self.path.join(name), seen)
        }

        pub fn names(&mut self) -> io::Result<Names> {
            std::fs::read_dir(&self.path)?
                .map(|e| e.map(|e| e.file_name()))
                .collect::<io::Result<Vec<_>>>()
                .map(Names)
        }

        pub fn stat(&self, name: &DirName) -> io::Result<Stat> {
            std::fs::symlink_metadata(self.path.join(name)).map(|m| Stat::from_metadata(&m))
        }
    }
}

/// A child's name as an `OsStr`.
pub fn name_str(name: &DirName) -> &OsStr {
    #[cfg(unix)]
    {
        unix::name_str(name)
    }
    #[cfg(not(unix))]
    {
        portable::name_str(name)
    }
}

/// `lstat` of a path, in the walk's terms.
pub fn lstat(path: &Path) -> io::Result<Stat> {
    std::fs::symlink_metadata(path).map(|m| Stat::from_metadata(&m))
}
