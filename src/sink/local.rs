//! A repository in a directory on a local or mounted filesystem.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use super::{check_name, Bytes, Capabilities, ObjectInfo, ObjectKind, Sink, SinkError, CONFIG_NAME};

/// Temporary files start with this prefix; they are never listed or read.
const TEMP_PREFIX: &str = ".tmp-";

#[derive(Debug, Clone)]
pub struct LocalSink {
    root: PathBuf,
    /// The network filesystem the root is on (NFS, SMB, sshfs...), if any:
    /// then transient errors are retried and missing features tolerated.
    network: Option<&'static str>,
}

impl LocalSink {
    pub fn new(root: impl Into<PathBuf>) -> LocalSink {
        let root = root.into();
        let network = super::nas::network_filesystem(&root);
        LocalSink { root, network }
    }

    /// The network filesystem the repository is on, if it is on one.
    pub fn network(&self) -> Option<&'static str> {
        self.network
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    fn path(&self, kind: ObjectKind, name: &str) -> PathBuf {
        self.root.join(kind.key(name))
    }

    fn io_err(&self, op: &'static str, path: &Path, source: io::Error) -> SinkError {
        SinkError::Io {
            op,
            location: path.display().to_string(),
            source,
        }
    }

    /// Opens an object to read it: never through a symbolic link, never
    /// blocking (a fifo), and only a regular file no larger than its kind
    /// can be (a `config.json` linked to `/dev/zero` would read forever).
    fn open(&self, kind: ObjectKind, name: &str) -> Result<File, SinkError> {
        check_name(kind, name)?;
        let path = self.path(kind, name);
        let not_an_object = |why: &str| {
            self.io_err(
                "open",
                &path,
                io::Error::new(io::ErrorKind::InvalidData, why.to_string()),
            )
        };
        #[cfg(not(unix))]
        if std::fs::symlink_metadata(&path).is_ok_and(|m| m.file_type().is_symlink()) {
            return Err(not_an_object("a symbolic link, not an object"));
        }
        let mut options = fs::OpenOptions::new();
        options.read(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::custom_flags(&mut options, libc::O_NOFOLLOW | libc::O_NONBLOCK);
        let file = options.open(&path).map_err(|e| match e.kind() {
            io::ErrorKind::NotFound => SinkError::NotFound {
                kind,
                name: name.to_string(),
            },
            #[cfg(unix)]
            _ if e.raw_os_error() == Some(libc::ELOOP) => not_an_object("a symbolic link, not an object"),
            _ => self.io_err("open", &path, e),
        })?;
        let meta = file.metadata().map_err(|e| self.io_err("open", &path, e))?;
        if !meta.is_file() {
            return Err(not_an_object("not a regular file"));
        }
        if meta.len() > max_size(kind) {
            return Err(not_an_object(&format!(
                "{} bytes, more than a {kind} object can be",
                meta.len()
            )));
        }
        Ok(file)
    }

    fn list_dir(&self, dir: &Path, kind: ObjectKind, out: &mut Vec<ObjectInfo>) -> Result<(), SinkError> {
        let entries = match fs::read_dir(dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(self.io_err("list", dir, e)),
        };
        for entry in entries {
            let entry = entry.map_err(|e| self.io_err("list", dir, e))?;
            let file_name = entry.file_name();
            let Some(file_name) = file_name.to_str() else {
                continue;
            };
            let Some(name) = file_name.strip_suffix(kind.suffix()) else {
                continue;
            };
            if name.starts_with('.') || check_name(kind, name).is_err() {
                continue;
            }
            let listed =
                listed_object(name, entry.metadata()).map_err(|e| self.io_err("stat", &entry.path(), e))?;
            out.extend(listed);
        }
        Ok(())
    }
}

/// A listed directory entry as an object: `None` when it is not a regular
/// file, or when it was removed between the listing and its stat (a lock
/// released by its holder, an index removed by a prune running beside).
fn listed_object(name: &str, meta: io::Result<fs::Metadata>) -> io::Result<Option<ObjectInfo>> {
    match meta {
        Ok(meta) if meta.is_file() => Ok(Some(ObjectInfo {
            name: name.to_string(),
            size: meta.len(),
        })),
        Ok(_) => Ok(None),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// The largest object of each kind a repository may hold: what a reader
/// reads at most.
fn max_size(kind: ObjectKind) -> u64 {
    match kind {
        ObjectKind::Config | ObjectKind::Lock | ObjectKind::Key => 1 << 20,
        ObjectKind::Snapshot => 64 << 20,
        ObjectKind::Index => 1 << 30,
        ObjectKind::Pack => 4 << 30,
    }
}

impl Sink for LocalSink {
    fn location(&self) -> String {
        self.root.display().to_string()
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            atomic_write: true,
            exclusive_create: true,
            needs_retries: self.network.is_some(),
            // A network filesystem waits on round trips, as an object store.
            concurrency: if self.network.is_some() { 4 } else { 1 },
        }
    }

    fn list(&self, kind: ObjectKind) -> Result<Vec<ObjectInfo>, SinkError> {
        let mut out = Vec::new();
        match kind {
            ObjectKind::Config => {
                let path = self.path(kind, CONFIG_NAME);
                match fs::metadata(&path) {
                    Ok(meta) => out.push(ObjectInfo {
                        name: CONFIG_NAME.to_string(),
                        size: meta.len(),
                    }),
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                    Err(e) => return Err(self.io_err("stat", &path, e)),
                }
            }
            ObjectKind::Pack => {
                let dir = self.root.join(kind.dir());
                let shards = match fs::read_dir(&dir) {
                    Ok(shards) => shards,
                    Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(out),
                    Err(e) => return Err(self.io_err("list", &dir, e)),
                };
                for shard in shards {
                    let shard = shard.map_err(|e| self.io_err("list", &dir, e))?;
                    if shard.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                        self.list_dir(&shard.path(), kind, &mut out)?;
                    }
                }
            }
            _ => self.list_dir(&self.root.join(kind.dir()), kind, &mut out)?,
        }
        Ok(out)
    }

    fn read(&self, kind: ObjectKind, name: &str) -> Result<Vec<u8>, SinkError> {
        let file = self.open(kind, name)?;
        let mut buf = Vec::new();
        file.take(max_size(kind))
            .read_to_end(&mut buf)
            .map_err(|e| self.io_err("read", &self.path(kind, name), e))?;
        Ok(buf)
    }

    fn read_range(
        &self,
        kind: ObjectKind,
        name: &str,
        offset: u64,
        length: u64,
    ) -> Result<Vec<u8>, SinkError> {
        let mut file = self.open(kind, name)?;
        let path = self.path(kind, name);
        file.seek(SeekFrom::Start(offset))
            .map_err(|e| self.io_err("seek", &path, e))?;
        let mut buf = Vec::with_capacity(length.min(64 << 20) as usize);
        file.take(length)
            .read_to_end(&mut buf)
            .map_err(|e| self.io_err("read", &path, e))?;
        Ok(buf)
    }

    /// Crash safety: the bytes go to a temporary file in the target directory,
    /// which is fsynced and then hard-linked to the final name. `link` fails if
    /// the name exists, which gives create-only semantics without a race; the
    /// directory is fsynced so the new name survives a power cut.
    fn write(&self, kind: ObjectKind, name: &str, data: Bytes) -> Result<u64, SinkError> {
        check_name(kind, name)?;
        // Locks are advisory and short-lived: one lost to a power cut only
        // means no lock, so they skip the fsyncs every other object needs.
        let durable = kind != ObjectKind::Lock;
        let path = self.path(kind, name);
        let dir = path.parent().unwrap_or(&self.root).to_path_buf();
        if !dir.is_dir() {
            fs::create_dir_all(&dir).map_err(|e| self.io_err("create directory", &dir, e))?;
            // A new directory's name lives in its parent: make it durable too,
            // or a power cut could lose the directory with the object in it.
            let mut at = dir.as_path();
            while let Some(parent) = at.parent() {
                sync_dir(parent).map_err(|e| self.io_err("sync", parent, e))?;
                if parent == self.root || !parent.starts_with(&self.root) {
                    break;
                }
                at = parent;
            }
        }
        if path.exists() {
            return Err(SinkError::AlreadyExists {
                kind,
                name: name.to_string(),
            });
        }
        let temp = dir.join(format!("{TEMP_PREFIX}{name}-{:016x}", random_u64()));
        let result = (|| {
            let mut file = OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&temp)
                .map_err(|e| self.io_err("create", &temp, e))?;
            file.write_all(&data)
                .map_err(|e| self.io_err("write", &temp, e))?;
            let size = data.len() as u64;
            if durable {
                file.sync_all().map_err(|e| self.io_err("sync", &temp, e))?;
            }
            drop(file);
            publish(&temp, &path).map_err(|e| {
                if e.kind() == io::ErrorKind::AlreadyExists {
                    SinkError::AlreadyExists {
                        kind,
                        name: name.to_string(),
                    }
                } else {
                    self.io_err("link", &path, e)
                }
            })?;
            Ok(size)
        })();
        let _ = fs::remove_file(&temp);
        let size = result?;
        if durable {
            match sync_dir(&dir) {
                // Some network filesystems cannot fsync a directory; the
                // server orders its own metadata.
                Err(e) if self.network.is_some() && unsupported(&e) => {}
                other => other.map_err(|e| self.io_err("sync", &dir, e))?,
            }
        }
        Ok(size)
    }

    fn free_space(&self) -> Option<u64> {
        crate::meta::fs_space(&self.root).map(|space| space.available)
    }

    fn delete(&self, kind: ObjectKind, name: &str) -> Result<(), SinkError> {
        check_name(kind, name)?;
        let path = self.path(kind, name);
        match fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Err(SinkError::NotFound {
                kind,
                name: name.to_string(),
            }),
            Err(e) => Err(self.io_err("delete", &path, e)),
        }
    }
}

/// Gives the finished temporary file its name, failing if the name exists:
/// a hard link where the filesystem has them (exFAT, some SMB and FUSE
/// mounts do not), else a rename that refuses to replace (Linux), else a
/// check then a rename. The last can race with another writer of the same
/// name, which for content-named objects stores the same bytes.
fn publish(temp: &Path, path: &Path) -> io::Result<()> {
    match fs::hard_link(temp, path) {
        Err(e) if unsupported(&e) => rename_noreplace(temp, path),
        other => other,
    }
}

fn rename_noreplace(temp: &Path, path: &Path) -> io::Result<()> {
    #[cfg(any(target_os = "linux", target_os = "android"))]
    {
        use std::os::unix::ffi::OsStrExt;
        let c = |p: &Path| {
            std::ffi::CString::new(p.as_os_str().as_bytes())
                .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "path has a NUL byte"))
        };
        let (from, to) = (c(temp)?, c(path)?);
        // SAFETY: both are valid C strings; AT_FDCWD resolves them as paths.
        let r = unsafe {
            libc::renameat2(
                libc::AT_FDCWD,
                from.as_ptr(),
                libc::AT_FDCWD,
                to.as_ptr(),
                libc::RENAME_NOREPLACE,
            )
        };
        if r == 0 {
            return Ok(());
        }
        let e = io::Error::last_os_error();
        if !unsupported(&e) {
            return Err(e);
        }
    }
    if fs::symlink_metadata(path).is_ok() {
        return Err(io::Error::new(io::ErrorKind::AlreadyExists, "the name exists"));
    }
    fs::rename(temp, path)
}

/// An operation the filesystem does not have (as opposed to one that failed).
fn unsupported(e: &io::Error) -> bool {
    #[cfg(unix)]
    if let Some(code) = e.raw_os_error() {
        return matches!(
            code,
            libc::EPERM | libc::EINVAL | libc::ENOSYS | libc::EOPNOTSUPP | libc::EXDEV
        ) || code == libc::ENOTSUP;
    }
    e.kind() == io::ErrorKind::Unsupported
}

#[cfg(unix)]
fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

#[cfg(not(unix))]
fn sync_dir(_dir: &Path) -> io::Result<()> {
    Ok(())
}

/// Random bits for temporary and lock names; falls back to the clock if the OS
/// has no entropy to give, which only weakens uniqueness, never safety.
pub fn random_u64() -> u64 {
    getrandom::u64().unwrap_or_else(|_| {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0);
        nanos ^ ((std::process::id() as u64) << 32)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `list` failed with "cannot stat .../locks/X.json: No such file or
    /// directory" when another process released its lock between the
    /// listing and the stat.
    #[test]
    fn an_object_removed_between_listing_and_stat_is_left_out_not_an_error() {
        let gone = Err(io::Error::from(io::ErrorKind::NotFound));
        assert!(listed_object("lock", gone).unwrap().is_none());
        let denied = Err(io::Error::from(io::ErrorKind::PermissionDenied));
        assert!(listed_object("lock", denied).is_err());
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("f");
        fs::write(&file, b"abc").unwrap();
        let info = listed_object("f", fs::metadata(&file)).unwrap().unwrap();
        assert_eq!((info.name.as_str(), info.size), ("f", 3));
        assert!(listed_object("d", fs::metadata(dir.path())).unwrap().is_none());
    }
}
