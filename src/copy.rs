//! `copy`: snapshots from one repository into another (any two sinks),
//! moving only the blobs the destination lacks.
//!
//! Every blob is read through the source's verifying reader (its bytes must
//! hash to its id) and packed anew in the destination, so the destination's
//! own frame and pack sizes apply. A copied snapshot keeps its id: its record
//! is stored byte for byte, after every pack and index file it needs
//! (docs/FORMAT.md, "Read and write ordering"). Copying it again finds it
//! there and does nothing.

use std::collections::HashSet;

use serde::Serialize;

use crate::progress::Progress;
use crate::repo::id::ObjectId;
use crate::repo::index::Index;
use crate::repo::packer::{self, Packer};
use crate::repo::reader::BlobReader;
use crate::repo::snapshot::Snapshot;
use crate::repo::{RepoError, Repository};
use crate::sink::ObjectKind;

#[derive(Debug, Default, Serialize)]
pub struct CopyReport {
    /// Short ids of the snapshots copied now.
    pub copied: Vec<String>,
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
    let there: HashSet<String> = to.snapshot_names()?.into_iter().collect();
    let (todo, present): (Vec<&Snapshot>, Vec<&Snapshot>) =
        snapshots.iter().partition(|s| !there.contains(&s.id.to_hex()));
    report.present = present.iter().map(|s| s.id.short()).collect();
    if todo.is_empty() {
        return Ok(report);
    }
    let to_index = to.load_index()?;
    let stats = std::thread::scope(|scope| -> Result<_, RepoError> {
        let (packer, writer) = packer::start(to, &to_index);
        let writer = scope.spawn(move || writer.run());
        let copied = copy_blobs(from, from_index, &packer, &todo, progress, &mut report);
        // The writer ends once the packer is gone; its error comes first,
        // as it is usually why the copying stopped.
        drop(packer);
        let written = writer.join().map_err(|_| RepoError::ThreadPanicked)?;
        let stats = written?;
        copied?;
        Ok(stats)
    })?;
    report.bytes_stored = stats.bytes_stored;
    // Records last, byte for byte: the same id in both repositories.
    for snapshot in todo {
        let name = snapshot.id.to_hex();
        let bytes = from.read_verified(ObjectKind::Snapshot, &name)?;
        to.write_content_named(ObjectKind::Snapshot, snapshot.id, bytes)?;
        report.copied.push(snapshot.id.short());
    }
    Ok(report)
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
