//! The assembler: entries back in walk order, into the manifest.

use std::collections::{BTreeMap, HashSet};

use crossbeam_channel::Receiver;

use crate::repo::chunker::Chunker;
use crate::repo::id::ObjectId;
use crate::repo::manifest::{Entry, EntryKind, ManifestWriter};
use crate::repo::packer::Packer;
use crate::repo::snapshot::SnapshotStats;
use crate::repo::RepoError;

use super::{Done, FileStatus, Tally};

/// Puts finished entries back in walk order and writes the manifest.
pub(super) fn assemble(
    done: Receiver<Vec<(u64, Done)>>,
    permits: Receiver<()>,
    packer: &Packer,
    chunker: Chunker,
) -> Result<(Vec<ObjectId>, Tally), RepoError> {
    let mut tally = Tally::default();
    let mut frames = packer.frame_builder();
    let mut writer = ManifestWriter::new(chunker, packer.crypto().clone());
    let mut emit = |id: ObjectId, data: &[u8]| packer.add(&mut frames, id, data).map(|_| ());
    let mut pending: BTreeMap<u64, Done> = BTreeMap::new();
    let mut skipped_files: HashSet<Vec<u8>> = HashSet::new();
    let mut next = 0u64;
    for (seq, d) in done.into_iter().flatten() {
        // Most entries come in order (all of them when nothing is read):
        // those skip the reorder buffer.
        let mut ready = if seq == next {
            Some(d)
        } else {
            pending.insert(seq, d);
            None
        };
        while let Some(d) = ready.take().or_else(|| pending.remove(&next)) {
            next += 1;
            // Every entry holds a token taken by the walk (see `DoneBatch`).
            let _ = permits.try_recv();
            match d {
                Done::Skipped { path, warning } => {
                    if let Some(w) = warning {
                        tally.warnings.push(w);
                        tally.partial = true;
                    }
                    skipped_files.extend(path);
                }
                Done::Entry { entry, .. }
                    if entry.kind == EntryKind::Hardlink
                        && entry
                            .target
                            .as_ref()
                            .is_some_and(|t| skipped_files.contains(t.as_bytes())) =>
                {
                    // Another name of a file that could not be read: it
                    // cannot be read by this name either.
                    tally.warnings.push(format!(
                        "{}: not saved, it is a hard link to a file that could not be read",
                        entry.path.lossy()
                    ));
                    tally.partial = true;
                }
                Done::Entry {
                    entry,
                    status,
                    warning,
                    line,
                } => {
                    tally.warnings.extend(warning);
                    count(&mut tally.stats, &entry, status);
                    writer.push_line::<RepoError>(&entry, line.as_deref(), &mut emit)?;
                }
            }
        }
    }
    let manifest = writer.finish(&mut emit)?;
    packer.flush(&mut frames)?;
    tracing::debug!("manifest assembled, {:?} CPU", crate::progress::thread_cpu());
    Ok((manifest, tally))
}

fn count(stats: &mut SnapshotStats, entry: &Entry, status: Option<FileStatus>) {
    match entry.kind {
        EntryKind::File | EntryKind::Hardlink => {
            stats.files += 1;
            stats.bytes += entry.size;
        }
        EntryKind::Dir => stats.dirs += 1,
        _ => stats.other += 1,
    }
    match status {
        Some(FileStatus::New) => stats.files_new += 1,
        Some(FileStatus::Changed) => stats.files_changed += 1,
        Some(FileStatus::Unchanged) => stats.files_unchanged += 1,
        None => {}
    }
    if status.is_some() && status != Some(FileStatus::Unchanged) {
        stats.bytes_read += entry.size;
    }
}
