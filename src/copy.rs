//! `copy`: snapshots from one repository into another (any two sinks),
//! moving only the blobs the destination lacks.
//!
//! Every blob is read through the source's verifying reader (its bytes must
//! hash to its id) and packed anew in the destination, so the destination's
//! own frame and pack sizes apply. Between two plain repositories a copied
//! snapshot keeps its id: its record is stored byte for byte, after every
//! pack and index file it needs (docs/FORMAT.md, "Read and write
//! ordering"). Where blob ids differ (either repository is encrypted), each
//! blob gets the destination's id, the manifest is written again with those
//! ids, and the record is written anew with `copied_from` (FORMAT.md
//! section 15). Copying a snapshot again finds it there and does nothing.

use std::collections::HashSet;

use serde::Serialize;

use crate::progress::Progress;
use crate::repo::chunker::Chunker;
use crate::repo::id::{IdMap, ObjectId};
use crate::repo::index::Index;
use crate::repo::manifest::ManifestWriter;
use crate::repo::packer::{self, Packer};
use crate::repo::reader::BlobReader;
use crate::repo::snapshot::{Snapshot, SnapshotRecord};
use crate::repo::{RepoError, Repository};
use crate::sink::ObjectKind;

#[derive(Debug, Default, Serialize)]
pub struct CopyReport {
    /// Short ids of the snapshots copied now.
    pub copied: Vec<String>,
    /// Their ids in the destination, in the same order: the same ids
    /// between plain repositories, new ones where records were written anew.
    pub new_ids: Vec<String>,
    /// Short ids of those the destination already had.
    pub present: Vec<String>,
    /// Blobs and their bytes read from the source and stored in the destination.
    pub blobs: u64,
    pub bytes: u64,
    /// Stored (compressed) bytes added to the destination.
    pub bytes_stored: u64,
}

/// Copies `snapshots` (of `from`, whose index is `from_index`) into `to`.
pub fn copy(
    from: &Repository,
    from_index: &Index,
    to: &Repository,
    snapshots: &[Snapshot],
    progress: &Progress,
) -> Result<CopyReport, RepoError> {
    let mut report = CopyReport::default();
    let transcode = from.is_encrypted() || to.is_encrypted();
    let there = Present::in_repo(to, transcode)?;
    let (todo, present): (Vec<&Snapshot>, Vec<&Snapshot>) = snapshots.iter().partition(|s| !there.holds(s));
    report.present = present.iter().map(|s| s.id.short()).collect();
    if todo.is_empty() {
        return Ok(report);
    }
    let to_index = to.load_index()?;
    let (stats, records) = std::thread::scope(|scope| -> Result<_, RepoError> {
        let (packer, writer) = packer::start(to, &to_index);
        let writer = scope.spawn(move || writer.run());
        let copied = match transcode {
            true => transcode_all(from, from_index, &packer, &todo, progress, &mut report).map(Some),
            false => copy_blobs(from, from_index, &packer, &todo, progress, &mut report).map(|()| None),
        };
        // The writer ends once the packer is gone; its error comes first,
        // as it is usually why the copying stopped.
        drop(packer);
        let written = writer.join().map_err(|_| RepoError::ThreadPanicked)?;
        let stats = written?;
        Ok((stats, copied?))
    })?;
    report.bytes_stored = stats.bytes_stored;
    match records {
        // Records last, byte for byte: the same id in both repositories.
        None => {
            for snapshot in todo {
                let name = snapshot.id.to_hex();
                let bytes = from.read_verified(ObjectKind::Snapshot, &name)?;
                to.write_content_named(ObjectKind::Snapshot, snapshot.id, bytes)?;
                report.copied.push(snapshot.id.short());
                report.new_ids.push(snapshot.id.to_hex());
            }
        }
        Some(records) => write_records(to, &there, records, &mut report)?,
    }
    Ok(report)
}

/// The snapshots a destination holds already: by name, and (where records
/// are written anew) by the source each was copied from.
struct Present {
    names: HashSet<ObjectId>,
    /// Destination names by the source snapshot they copy.
    copies: IdMap<ObjectId>,
}

impl Present {
    fn in_repo(to: &Repository, transcode: bool) -> Result<Present, RepoError> {
        let mut present = Present {
            names: to
                .snapshot_names()?
                .iter()
                .filter_map(|n| n.parse().ok())
                .collect(),
            copies: IdMap::default(),
        };
        if transcode {
            for s in to.load_snapshots()? {
                if let Some(source) = s.record.copied_from {
                    present.copies.insert(source, s.id);
                }
            }
        }
        Ok(present)
    }

    fn holds(&self, s: &Snapshot) -> bool {
        self.names.contains(&s.id)
            || self.copies.contains_key(&s.id)
            || s.record
                .copied_from
                .is_some_and(|origin| self.names.contains(&origin))
    }
}

/// Writes the new records, oldest first, each reference to another
/// snapshot (`parent`, a run's `pre`, a safety snapshot's `restores`, a
/// repair's `from`) pointing at that snapshot's copy where there is one.
fn write_records(
    to: &Repository,
    there: &Present,
    mut records: Vec<(ObjectId, SnapshotRecord)>,
    report: &mut CopyReport,
) -> Result<(), RepoError> {
    records.sort_by_key(|a| a.1.time);
    let mut copies = there.copies.clone();
    for (source, mut record) in records {
        // References to other snapshots follow them to their copies.
        let moved = |id: ObjectId| {
            copies
                .get(&id)
                .copied()
                .or(there.names.contains(&id).then_some(id))
        };
        record.parent = record.parent.and_then(moved);
        if let Some(run) = &mut record.run {
            run.pre = run.pre.and_then(moved);
        }
        if let Some(rollback) = &mut record.rollback {
            // Required: left naming the original when it was not copied.
            rollback.restores = moved(rollback.restores).unwrap_or(rollback.restores);
        }
        if let Some(repaired) = &mut record.repaired {
            repaired.from = moved(repaired.from).unwrap_or(repaired.from);
        }
        record.copied_from = Some(source);
        let id = to.write_snapshot(&record)?;
        copies.insert(source, id);
        report.copied.push(source.short());
        report.new_ids.push(id.to_hex());
    }
    Ok(())
}

/// Stores every blob the snapshots need under the destination's ids and
/// writes their manifests again with those ids; the records to write.
fn transcode_all(
    from: &Repository,
    from_index: &Index,
    packer: &Packer<'_>,
    snapshots: &[&Snapshot],
    progress: &Progress,
    report: &mut CopyReport,
) -> Result<Vec<(ObjectId, SnapshotRecord)>, RepoError> {
    let mut data_frames = packer.frame_builder();
    let mut manifest_frames = packer.frame_builder();
    let mut data = BlobReader::new(from, from_index);
    let mut manifest = BlobReader::new(from, from_index);
    let mut renamed: IdMap<ObjectId> = IdMap::default();
    let mut records = Vec::new();
    for snapshot in snapshots {
        let mut writer = ManifestWriter::new(Chunker::for_manifest(), packer.crypto().clone());
        let mut emit = |id: ObjectId, bytes: &[u8]| packer.add(&mut manifest_frames, id, bytes).map(|_| ());
        for entry in manifest.manifest(&snapshot.id.short(), &snapshot.record.manifest) {
            let mut entry = entry?;
            // The blob ids change; a file's `hash` (recorded for files of
            // several blobs) is the same in both repositories.
            for id in entry.blobs.iter_mut() {
                if let Some(new) = renamed.get(id) {
                    *id = *new;
                    continue;
                }
                if crate::interrupt::is_set() {
                    return Err(RepoError::Interrupted);
                }
                let new = data.read_with(id, |blob| -> Result<ObjectId, RepoError> {
                    let new = packer.crypto().blob_id(blob);
                    progress.add(blob.len() as u64);
                    report.bytes += blob.len() as u64;
                    report.blobs += u64::from(packer.add(&mut data_frames, new, blob)?);
                    Ok(new)
                })??;
                renamed.insert(*id, new);
                *id = new;
            }
            writer.push::<RepoError>(&entry, &mut emit)?;
        }
        let mut record = snapshot.record.clone();
        record.manifest = writer.finish(&mut emit)?;
        records.push((snapshot.id, record));
    }
    packer.flush(&mut data_frames)?;
    packer.flush(&mut manifest_frames)?;
    Ok(records)
}

/// Stores every blob the snapshots need that the destination lacks: their
/// manifests' blobs and their files' blobs.
fn copy_blobs(
    from: &Repository,
    from_index: &Index,
    packer: &Packer<'_>,
    snapshots: &[&Snapshot],
    progress: &Progress,
    report: &mut CopyReport,
) -> Result<(), RepoError> {
    let mut frames = packer.frame_builder();
    let mut data = BlobReader::new(from, from_index);
    let mut manifest = BlobReader::new(from, from_index);
    let mut one = |id: &ObjectId, report: &mut CopyReport| -> Result<(), RepoError> {
        if crate::interrupt::is_set() {
            return Err(RepoError::Interrupted);
        }
        if packer.has(id) {
            return Ok(());
        }
        let added = data.read_with(id, |blob| {
            progress.add(blob.len() as u64);
            report.bytes += blob.len() as u64;
            packer.add(&mut frames, *id, blob)
        })??;
        report.blobs += u64::from(added);
        Ok(())
    };
    for snapshot in snapshots {
        for id in &snapshot.record.manifest {
            one(id, report)?;
        }
        for entry in manifest.manifest(&snapshot.id.short(), &snapshot.record.manifest) {
            for id in &entry?.blobs {
                one(id, report)?;
            }
        }
    }
    packer.flush(&mut frames)
}
