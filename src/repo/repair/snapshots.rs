//! `repair snapshots`: a snapshot that needs data the repository has lost
//! is rewritten without the files whose data is gone (and hard links to
//! them), keeping everything still stored and naming what was left out in
//! its record (tag `repaired`, field `repaired`). A snapshot whose manifest
//! itself is lost has nothing left to restore and is removed. Entries that
//! restore would refuse (see `repo::shape`) are left out the same way.
//!
//! Data counts as stored when the index lists it in a pack that is stored;
//! damage inside a pack is found by `check --read-data`, and `repair index
//! --read-all-packs` drops the blobs it finds damaged from the index, so
//! run those first.
//!
//! Order: new manifest blobs and their index, then the new records, then
//! the old records go. A crash in between leaves both records, and running
//! repair again writes the same new record (it is named by its content,
//! and nothing in it depends on when the repair ran).

use std::collections::HashSet;

use serde::Serialize;

use crate::repo::id::ObjectId;
use crate::repo::index::Index;
use crate::repo::manifest::{Entry, EntryKind, ManifestWriter};
use crate::repo::packer::{self, Packer};
use crate::repo::reader::BlobReader;
use crate::repo::shape::Shape;
use crate::repo::snapshot::{RepairInfo, Snapshot, SnapshotRecord, REPAIRED_TAG, REPAIR_LISTED};
use crate::repo::{RepoError, Repository};
use crate::sink::ObjectKind;

#[derive(Debug, Clone, Default)]
pub struct SnapshotsRepairOptions {
    pub dry_run: bool,
}

/// What `repair snapshots` found, and did (or would do, with `dry_run`).
#[derive(Debug, Default, Clone, Serialize)]
pub struct SnapshotRepair {
    pub snapshots: usize,
    pub repaired: Vec<Repaired>,
    /// Snapshots whose manifest is lost: removed.
    pub removed: Vec<Removed>,
    /// Records that cannot be read (left for `forget`), with why.
    pub unreadable: Vec<String>,
    pub dry_run: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct Repaired {
    pub snapshot: String,
    /// The rewritten record (not with `dry_run`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub new: Option<String>,
    pub lost_count: u64,
    pub lost: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Removed {
    pub snapshot: String,
    pub reason: String,
}

/// What one snapshot loses: the manifest paths left out and their bytes.
#[derive(Default)]
struct Losses {
    paths: HashSet<Vec<u8>>,
    listed: Vec<String>,
    files: u64,
    bytes: u64,
}

/// Rewrites or removes every snapshot that needs lost data.
pub fn repair_snapshots(
    repo: &Repository,
    index: &Index,
    opts: &SnapshotsRepairOptions,
) -> Result<SnapshotRepair, RepoError> {
    let mut report = SnapshotRepair {
        dry_run: opts.dry_run,
        ..Default::default()
    };
    let stored = repo.stored_packs()?;
    let present = |id: &ObjectId| index.locations(id).any(|(pack, _)| stored.contains(&pack));
    let mut todo = Vec::new();
    for name in repo.snapshot_names()? {
        report.snapshots += 1;
        let snapshot = match repo.read_snapshot(&name) {
            Ok(s) => s,
            Err(e) => {
                report.unreadable.push(crate::chain(&e));
                continue;
            }
        };
        match survey(repo, index, &snapshot, &present) {
            Ok(losses) if losses.paths.is_empty() => {}
            Ok(losses) => todo.push((snapshot, losses)),
            Err(reason) => report.removed.push(Removed {
                snapshot: snapshot.id.to_hex(),
                reason,
            }),
        }
    }
    if opts.dry_run {
        report.repaired = todo.iter().map(|(s, l)| repaired(s, l, None)).collect();
        return Ok(report);
    }
    let records = rewrite_all(repo, index, &todo)?;
    for ((snapshot, losses), record) in todo.iter().zip(records) {
        let new = repo.write_snapshot(&record)?;
        if new != snapshot.id {
            repo.delete_snapshot(&snapshot.id)?;
        }
        report.repaired.push(repaired(snapshot, losses, Some(new)));
    }
    for removed in &report.removed {
        repo.delete(ObjectKind::Snapshot, &removed.snapshot)?;
    }
    Ok(report)
}

fn repaired(snapshot: &Snapshot, losses: &Losses, new: Option<ObjectId>) -> Repaired {
    Repaired {
        snapshot: snapshot.id.to_hex(),
        new: new.map(|n| n.to_hex()),
        lost_count: losses.files,
        lost: losses.listed.clone(),
    }
}

/// The entries a snapshot loses, or why nothing of it is left (its
/// manifest cannot be read).
fn survey(
    repo: &Repository,
    index: &Index,
    snapshot: &Snapshot,
    present: &dyn Fn(&ObjectId) -> bool,
) -> Result<Losses, String> {
    if let Some(id) = snapshot.record.manifest.iter().find(|id| !present(id)) {
        return Err(format!("its manifest is lost (blob {id} is not stored)"));
    }
    let mut losses = Losses::default();
    let mut shape = Shape::default();
    let mut reader = BlobReader::new(repo, index);
    for entry in reader.manifest(&snapshot.id.short(), &snapshot.record.manifest) {
        let entry = entry.map_err(|e| format!("its manifest cannot be read: {}", e.manifest_cause()))?;
        // Entries restore would refuse go too (each is judged first, so
        // that what lies under one counts as absent).
        let refused = shape.wrong(&entry, index).is_some();
        if refused || is_lost(&entry, &losses, present) {
            losses.files += 1;
            losses.bytes = losses.bytes.saturating_add(entry.size);
            if losses.listed.len() < REPAIR_LISTED {
                losses.listed.push(entry.path.lossy());
            }
            losses.paths.insert(entry.path.as_bytes().to_vec());
        }
    }
    Ok(losses)
}

/// A file with a blob that is not stored, or a hard link to a lost file.
fn is_lost(entry: &Entry, losses: &Losses, present: &dyn Fn(&ObjectId) -> bool) -> bool {
    match entry.kind {
        EntryKind::File => entry.blobs.iter().any(|b| !present(b)),
        EntryKind::Hardlink => entry
            .target
            .as_ref()
            .is_some_and(|t| losses.paths.contains(t.as_bytes())),
        _ => false,
    }
}

/// The new records: each manifest written again without its lost entries
/// (one pack writer for all), in `todo`'s order.
fn rewrite_all(
    repo: &Repository,
    index: &Index,
    todo: &[(Snapshot, Losses)],
) -> Result<Vec<SnapshotRecord>, RepoError> {
    std::thread::scope(|scope| {
        let (packer, writer) = packer::start(repo, index);
        let writer = scope.spawn(move || writer.run());
        let records: Result<Vec<SnapshotRecord>, RepoError> = todo
            .iter()
            .map(|(snapshot, losses)| rewrite(repo, index, &packer, snapshot, losses))
            .collect();
        drop(packer);
        let written = writer.join().map_err(|_| RepoError::ThreadPanicked)?;
        written?;
        records
    })
}

fn rewrite(
    repo: &Repository,
    index: &Index,
    packer: &Packer<'_>,
    snapshot: &Snapshot,
    losses: &Losses,
) -> Result<SnapshotRecord, RepoError> {
    let mut frames = packer.frame_builder();
    let mut writer = ManifestWriter::new(
        crate::repo::chunker::Chunker::for_manifest(),
        repo.crypto().clone(),
    );
    let mut emit = |id: ObjectId, data: &[u8]| -> Result<(), RepoError> {
        packer.add(&mut frames, id, data).map(|_| ())
    };
    let mut reader = BlobReader::new(repo, index);
    for entry in reader.manifest(&snapshot.id.short(), &snapshot.record.manifest) {
        let entry = entry?;
        if !losses.paths.contains(entry.path.as_bytes()) {
            writer.push::<RepoError>(&entry, &mut emit)?;
        }
    }
    let manifest = writer.finish(&mut emit)?;
    packer.flush(&mut frames)?;
    let mut record = snapshot.record.clone();
    record.manifest = manifest;
    record.stats.files = record.stats.files.saturating_sub(losses.files);
    record.stats.bytes = record.stats.bytes.saturating_sub(losses.bytes);
    if !record.tags.iter().any(|t| t == REPAIRED_TAG) {
        record.tags.push(REPAIRED_TAG.to_string());
    }
    // A record repaired twice names the first one it replaced, and every
    // path lost on the way.
    let (from, mut lost, mut count) = match record.repaired.take() {
        Some(r) => (r.from, r.lost, r.lost_count),
        None => (snapshot.id, Vec::new(), 0),
    };
    count = count.saturating_add(losses.files);
    lost.extend(losses.listed.iter().cloned());
    lost.truncate(REPAIR_LISTED);
    record.repaired = Some(RepairInfo {
        from,
        lost_count: count,
        lost,
    });
    Ok(record)
}
