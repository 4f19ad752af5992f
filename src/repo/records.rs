//! Snapshot records: read, verified and opened; listed; written sealed.

use super::crypto::Domain;
use super::id::ObjectId;
use super::snapshot::{self, Snapshot, SnapshotRecord};
use super::{RepoError, Repository};
use crate::sink::ObjectKind;

/// Snapshot records kept once read, at most, by the size of their JSON. A
/// record is named by the hash of its bytes, so what was read never goes
/// stale; an in-place restore loads every record to resolve its reference,
/// and its safety snapshot loads them again (its parent, the repository's
/// ratio): from a bucket of a thousand snapshots, a thousand requests less.
/// Records past the bound are read again when asked for.
const CACHED_SNAPSHOT_BYTES: usize = 4 << 20;

/// Snapshot records read so far (see [`CACHED_SNAPSHOT_BYTES`]).
#[derive(Default)]
pub(super) struct SnapshotCache {
    records: std::collections::HashMap<String, Snapshot>,
    bytes: usize,
}

impl Repository {
    /// The snapshot record `name`, read and verified (once per process:
    /// see [`CACHED_SNAPSHOT_BYTES`]).
    pub fn read_snapshot(&self, name: &str) -> Result<Snapshot, RepoError> {
        let cache = || self.snapshots_read.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(snapshot) = cache().records.get(name) {
            return Ok(snapshot.clone());
        }
        let (snapshot, size) = self.read_snapshot_uncached(name)?;
        let mut cache = cache();
        if cache.bytes.saturating_add(size) <= CACHED_SNAPSHOT_BYTES {
            cache.bytes += size;
            cache.records.insert(name.to_string(), snapshot.clone());
        }
        Ok(snapshot)
    }

    /// A record read and verified, and the size of its JSON.
    fn read_snapshot_uncached(&self, name: &str) -> Result<(Snapshot, usize), RepoError> {
        let bytes = self.read_verified(ObjectKind::Snapshot, name)?;
        let bytes = self.open_sealed(ObjectKind::Snapshot, Domain::Snapshot, name, bytes)?;
        let record: SnapshotRecord = serde_json::from_slice(&bytes).map_err(|e| RepoError::Corrupt {
            kind: ObjectKind::Snapshot,
            name: name.to_string(),
            detail: format!("bad JSON: {e}"),
        })?;
        let id = name.parse().map_err(|_| RepoError::Corrupt {
            kind: ObjectKind::Snapshot,
            name: name.to_string(),
            detail: "name is not an object id".into(),
        })?;
        if record.version > snapshot::RECORD_VERSION {
            return Err(RepoError::NewerSnapshot {
                name: name.to_string(),
                version: record.version,
            });
        }
        Ok((Snapshot { id, record }, bytes.len()))
    }

    /// Every snapshot that can be read, oldest first. A damaged record, or
    /// one of a newer cairn, is passed over with a warning naming it: one
    /// bad record must not take every other snapshot down. (What must know
    /// every snapshot, prune, uses [`Repository::load_snapshots_strict`].)
    pub fn load_snapshots(&self) -> Result<Vec<Snapshot>, RepoError> {
        self.load_snapshots_named(&self.snapshot_names()?)
    }

    /// Every snapshot, oldest first; any record that cannot be read is an
    /// error.
    pub fn load_snapshots_strict(&self) -> Result<Vec<Snapshot>, RepoError> {
        let names = self.snapshot_names()?;
        let mut out = self.read_all(&names, |name| self.read_snapshot(name))?;
        out.sort_by(|a, b| a.record.time.cmp(&b.record.time).then(a.id.cmp(&b.id)));
        Ok(out)
    }

    /// The names of the snapshot records, unread.
    pub fn snapshot_names(&self) -> Result<Vec<String>, RepoError> {
        Ok(self
            .sink
            .list(ObjectKind::Snapshot)?
            .into_iter()
            .map(|info| info.name)
            .collect())
    }

    /// The snapshots of these names (from [`Repository::snapshot_names`]),
    /// oldest first.
    /// Passes over records that cannot be read, as [`Repository::load_snapshots`].
    pub fn load_snapshots_named(&self, names: &[String]) -> Result<Vec<Snapshot>, RepoError> {
        let read = self.read_all(names, |name| match self.read_snapshot(name) {
            Ok(s) => Ok(Some(s)),
            // Forgotten since the listing.
            Err(RepoError::Sink(e)) if e.is_not_found() => Ok(None),
            Err(e @ (RepoError::Corrupt { .. } | RepoError::NewerSnapshot { .. })) => {
                tracing::warn!("passed over: {}", crate::chain(&e));
                Ok(None)
            }
            Err(e) => Err(e),
        })?;
        let mut out: Vec<Snapshot> = read.into_iter().flatten().collect();
        out.sort_by(|a, b| a.record.time.cmp(&b.record.time).then(a.id.cmp(&b.id)));
        Ok(out)
    }

    /// Removes a snapshot record (`forget`, under the exclusive lock). The
    /// data only it used stays until prune.
    pub fn delete_snapshot(&self, id: &ObjectId) -> Result<(), RepoError> {
        self.delete(ObjectKind::Snapshot, &id.to_hex())
    }

    /// Deletes an object (forget, prune, index consolidation: under the
    /// exclusive lock). One already gone is no error: another process, or
    /// an earlier run that was stopped, deleted it first.
    pub fn delete(&self, kind: ObjectKind, name: &str) -> Result<(), RepoError> {
        match self.sink.delete(kind, name) {
            Err(e) if e.is_not_found() => Ok(()),
            other => Ok(other?),
        }
    }

    pub fn write_snapshot(&self, record: &SnapshotRecord) -> Result<ObjectId, RepoError> {
        let (id, bytes) = self.encode_snapshot(record)?;
        self.write_content_named(ObjectKind::Snapshot, id, bytes)?;
        Ok(id)
    }

    /// A record's stored bytes and the name they give it.
    pub fn encode_snapshot(&self, record: &SnapshotRecord) -> Result<(ObjectId, Vec<u8>), RepoError> {
        let bytes = serde_json::to_vec_pretty(record).map_err(|e| RepoError::Encode {
            what: "snapshot".into(),
            source: e,
        })?;
        let bytes = self.seal("a snapshot record", Domain::Snapshot, bytes)?;
        Ok((ObjectId::of(&bytes), bytes))
    }

    pub fn find_snapshot(&self, query: &str) -> Result<Snapshot, RepoError> {
        self.find_snapshot_filtered(query, &snapshot::Filter::default())
    }

    /// The snapshot `query` names among those `filter` lets through.
    pub fn find_snapshot_filtered(
        &self,
        query: &str,
        filter: &snapshot::Filter,
    ) -> Result<Snapshot, RepoError> {
        let snapshots = self.load_snapshots()?;
        Ok(snapshot::resolve_filtered(&snapshots, query, filter)?)
    }
}
