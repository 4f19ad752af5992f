//! A local cache of a remote repository's index files and snapshot records
//! (as restic's): they are immutable and named by the hash of their bytes,
//! so a copy here is as good as the store's once its bytes hash to its
//! name. Every command reads all of them; over a network that is most of
//! its latency.
//!
//! The cache lives in `$CAIRN_CACHE_DIR` (else the user's cache directory,
//! `~/.cache/cairn`), one directory per repository location, files 0600 in
//! directories 0700. A damaged or foreign file there is ignored and
//! replaced; objects the store no longer lists are removed from it.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::{Bytes, Capabilities, ObjectInfo, ObjectKind, Sink, SinkError};
use crate::repo::id::ObjectId;

pub struct CacheSink {
    inner: Arc<dyn Sink>,
    dir: PathBuf,
}

impl CacheSink {
    /// A cache in front of `inner`, or `inner` itself when there is no
    /// place for one.
    pub fn wrap(inner: Arc<dyn Sink>) -> Arc<dyn Sink> {
        let base = std::env::var_os("CAIRN_CACHE_DIR")
            .map(PathBuf::from)
            .or_else(|| dirs::cache_dir().map(|d| d.join("cairn")));
        match base {
            Some(base) => {
                let key = blake3::hash(inner.location().as_bytes()).to_hex();
                let dir = base.join(&key[..32]);
                Arc::new(CacheSink { inner, dir })
            }
            None => inner,
        }
    }

    fn cached(kind: ObjectKind) -> bool {
        matches!(kind, ObjectKind::Index | ObjectKind::Snapshot)
    }

    fn path(&self, kind: ObjectKind, name: &str) -> PathBuf {
        self.dir.join(kind.key(name))
    }

    /// The cached bytes, if they are there and hash to their name.
    fn get(&self, kind: ObjectKind, name: &str) -> Option<Vec<u8>> {
        let bytes = fs::read(self.path(kind, name)).ok()?;
        (ObjectId::of(&bytes).to_hex() == name).then_some(bytes)
    }

    /// Keeps a copy; failing to is never an error (the cache is optional).
    fn put(&self, kind: ObjectKind, name: &str, bytes: &[u8]) {
        if ObjectId::of(bytes).to_hex() != name {
            return;
        }
        let path = self.path(kind, name);
        if let Some(parent) = path.parent() {
            if create_private_dir(parent).is_err() {
                return;
            }
        }
        let temp = path.with_extension(format!("tmp-{:016x}", super::local::random_u64()));
        if crate::private::write_new(&temp, bytes, false).is_ok() && fs::rename(&temp, &path).is_ok() {
            return;
        }
        let _ = fs::remove_file(&temp);
    }

    /// Forgets cached objects the store no longer lists (pruned).
    fn forget_others(&self, kind: ObjectKind, listed: &[ObjectInfo]) {
        let dir = self.dir.join(kind.dir());
        let Ok(entries) = fs::read_dir(&dir) else { return };
        for entry in entries.flatten() {
            let file = entry.file_name();
            let file = file.to_string_lossy();
            let name = file.strip_suffix(kind.suffix()).unwrap_or(&file);
            if !listed.iter().any(|o| o.name == name) {
                let _ = fs::remove_file(entry.path());
            }
        }
    }
}

fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    let mut builder = fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(0o700);
    }
    builder.create(dir)
}

impl Sink for CacheSink {
    fn location(&self) -> String {
        self.inner.location()
    }

    fn capabilities(&self) -> Capabilities {
        self.inner.capabilities()
    }

    fn list(&self, kind: ObjectKind) -> Result<Vec<ObjectInfo>, SinkError> {
        let listed = self.inner.list(kind)?;
        if Self::cached(kind) {
            self.forget_others(kind, &listed);
        }
        Ok(listed)
    }

    fn read(&self, kind: ObjectKind, name: &str) -> Result<Vec<u8>, SinkError> {
        if !Self::cached(kind) {
            return self.inner.read(kind, name);
        }
        if let Some(bytes) = self.get(kind, name) {
            return Ok(bytes);
        }
        let bytes = self.inner.read(kind, name)?;
        self.put(kind, name, &bytes);
        Ok(bytes)
    }

    fn read_range(
        &self,
        kind: ObjectKind,
        name: &str,
        offset: u64,
        length: u64,
    ) -> Result<Vec<u8>, SinkError> {
        self.inner.read_range(kind, name, offset, length)
    }

    fn write(&self, kind: ObjectKind, name: &str, data: Bytes) -> Result<u64, SinkError> {
        let size = self.inner.write(kind, name, data.clone())?;
        if Self::cached(kind) {
            self.put(kind, name, &data);
        }
        Ok(size)
    }

    fn delete(&self, kind: ObjectKind, name: &str) -> Result<(), SinkError> {
        if Self::cached(kind) {
            let _ = fs::remove_file(self.path(kind, name));
        }
        self.inner.delete(kind, name)
    }

    fn free_space(&self) -> Option<u64> {
        self.inner.free_space()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sink::LocalSink;

    #[test]
    fn cached_objects_are_served_locally_and_checked() {
        let store = tempfile::tempdir().unwrap();
        let cache_dir = tempfile::tempdir().unwrap();
        let inner: Arc<dyn Sink> = Arc::new(LocalSink::new(store.path()));
        let sink = CacheSink {
            inner,
            dir: cache_dir.path().join("repo"),
        };
        let bytes = br#"{"a snapshot record": true}"#.to_vec();
        let name = ObjectId::of(&bytes).to_hex();
        sink.write_bytes(ObjectKind::Snapshot, &name, &bytes).unwrap();
        let cached = sink.path(ObjectKind::Snapshot, &name);
        assert_eq!(fs::read(&cached).unwrap(), bytes);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(fs::metadata(&cached).unwrap().permissions().mode() & 0o777, 0o600);
        }
        // Served from the cache even when the store's copy is gone...
        fs::remove_file(store.path().join(ObjectKind::Snapshot.key(&name))).unwrap();
        assert_eq!(sink.read(ObjectKind::Snapshot, &name).unwrap(), bytes);
        // ...but a damaged cached copy is not served.
        fs::write(&cached, b"damaged").unwrap();
        assert!(sink.read(ObjectKind::Snapshot, &name).unwrap_err().is_not_found());
        // What the store no longer lists leaves the cache.
        sink.list(ObjectKind::Snapshot).unwrap();
        assert!(!cached.exists());
    }
}
