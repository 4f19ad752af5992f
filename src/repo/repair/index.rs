//! `repair index`: which packs hold which blobs, found again from the
//! packs themselves (tar headers name every blob; frames are independent).
//!
//! Index files that read well are trusted, except for the packs they list
//! that are no longer stored: those files are rewritten without them.
//! Damaged index files are dropped, and every stored pack no good index
//! file lists is read and indexed. `read_all_packs` trusts no index file:
//! every pack is read, and the index is written anew from what they hold.
//!
//! A pack whose bytes do not match its name (read three times, to rule out a
//! garbled transfer) is salvaged, as restic's `repair packs` does: the
//! blobs in it that verify are stored again in a new pack, and once the
//! new index is in place the damaged pack is deleted. What did not verify
//! is lost; `repair snapshots` then says which files that costs.

use std::collections::HashSet;

use serde::Serialize;

use crate::repo::id::ObjectId;
use crate::repo::index::{Index, IndexBlob, IndexFile, IndexPack};
use crate::repo::packer::{self, Packer};
use crate::repo::{pack, RepoError, Repository};
use crate::sink::ObjectKind;

#[derive(Debug, Clone, Default)]
pub struct IndexRepairOptions {
    /// Read every pack, not only those no good index file lists.
    pub read_all_packs: bool,
    pub dry_run: bool,
}

/// What `repair index` found, and did (or would do, with `dry_run`).
#[derive(Debug, Default, Clone, Serialize)]
pub struct IndexRepair {
    pub index_files: usize,
    /// Index files that do not read (dropped).
    pub damaged_index_files: Vec<String>,
    /// Packs an index file lists that are not stored (dropped from it).
    pub missing_packs: Vec<String>,
    pub packs_read: usize,
    /// Blobs found in the packs read.
    pub blobs_found: usize,
    /// What in the packs read could not be read, as `pack ID: what`.
    pub damaged: Vec<String>,
    /// Damaged packs whose good blobs were stored again; they are deleted.
    pub salvaged_packs: Vec<String>,
    pub blobs_salvaged: usize,
    pub index_files_written: usize,
    pub index_files_deleted: usize,
    pub dry_run: bool,
}

impl IndexRepair {
    pub fn changes_anything(&self) -> bool {
        self.index_files_written + self.index_files_deleted > 0
    }
}

/// An index file that read well, and what it lists.
struct Good {
    name: String,
    file: IndexFile,
}

/// Rebuilds the index as the module docs say.
pub fn repair_index(repo: &Repository, opts: &IndexRepairOptions) -> Result<IndexRepair, RepoError> {
    let mut report = IndexRepair {
        dry_run: opts.dry_run,
        ..Default::default()
    };
    let (good, damaged) = read_index_files(repo)?;
    report.index_files = good.len() + damaged.len();
    report.damaged_index_files = damaged.clone();
    let stored = repo.stored_packs()?;
    // The index files kept as they are, and the entries carried over from
    // those that are rewritten.
    let mut keep = Vec::new();
    let mut carried: Vec<IndexPack> = Vec::new();
    let mut replaced: Vec<String> = damaged;
    let mut missing = HashSet::new();
    for g in good {
        if opts.read_all_packs {
            replaced.push(g.name);
            continue;
        }
        let gone: Vec<ObjectId> = g
            .file
            .packs
            .iter()
            .map(|p| p.id)
            .filter(|id| !stored.contains(id))
            .collect();
        if gone.is_empty() {
            keep.push(g);
            continue;
        }
        missing.extend(gone);
        replaced.push(g.name);
        carried.extend(g.file.packs.into_iter().filter(|p| stored.contains(&p.id)));
    }
    report.missing_packs = sorted_hex(&missing);
    let indexed: HashSet<ObjectId> = keep
        .iter()
        .flat_map(|g| g.file.packs.iter().map(|p| p.id))
        .chain(carried.iter().map(|p| p.id))
        .collect();
    let mut to_read: Vec<ObjectId> = stored
        .iter()
        .filter(|id| !indexed.contains(id))
        .copied()
        .collect();
    to_read.sort();
    report.packs_read = to_read.len();
    let (read, written) = read_and_salvage(repo, &to_read, opts.dry_run)?;
    report.blobs_found = read.found.iter().map(|p| p.blobs.len()).sum();
    report.damaged = read.problems;
    report.blobs_salvaged = read.salvaged.iter().map(|p| p.blobs.len()).sum();
    report.salvaged_packs = read.salvaged.iter().map(|p| p.id.to_hex()).collect();
    let mut new_packs = carried;
    new_packs.extend(read.found.into_iter().filter(|p| !p.blobs.is_empty()));
    if new_packs.is_empty() && replaced.is_empty() && read.salvaged.is_empty() {
        return Ok(report);
    }
    new_packs.sort_by_key(|p| p.id);
    let damaged: HashSet<String> = report.damaged_index_files.iter().cloned().collect();
    write_then_delete(repo, new_packs, replaced, &damaged, &mut report)?;
    // Last, the damaged packs whose good blobs are stored again (never one
    // the salvage itself wrote).
    if !opts.dry_run {
        for pack in read.salvaged.iter().filter(|p| !written.contains(&p.id)) {
            repo.delete(ObjectKind::Pack, &pack.id.to_hex())?;
        }
    }
    Ok(report)
}

/// What reading the packs gave.
#[derive(Default)]
struct Read {
    /// Packs whose bytes match their name, with their blobs.
    found: Vec<IndexPack>,
    /// Damaged packs, with the blobs that were stored again from them.
    salvaged: Vec<IndexPack>,
    problems: Vec<String>,
}

/// Reads the packs; the good blobs of damaged ones go to a pack writer of
/// their own (not with `dry_run`). Returns what was read and the packs the
/// salvage wrote.
fn read_and_salvage(
    repo: &Repository,
    packs: &[ObjectId],
    dry_run: bool,
) -> Result<(Read, HashSet<ObjectId>), RepoError> {
    if dry_run {
        return Ok((read_packs(repo, packs, None)?, HashSet::new()));
    }
    // Every good blob is stored again, though another pack may hold it.
    let nothing = Index::default();
    let level = repo.config().compression.level;
    let other_level = if level == 3 { 4 } else { 3 };
    std::thread::scope(|scope| {
        let (packer, writer) = packer::start_at_level(repo, &nothing, other_level);
        let writer = scope.spawn(move || writer.run());
        let read = read_packs(repo, packs, Some(&packer));
        drop(packer);
        let stats = writer.join().map_err(|_| RepoError::ThreadPanicked)??;
        Ok((read?, stats.pack_ids.into_iter().collect()))
    })
}

/// Every index file, read: those that read well, and the names of those
/// that are damaged.
fn read_index_files(repo: &Repository) -> Result<(Vec<Good>, Vec<String>), RepoError> {
    let mut good = Vec::new();
    let mut damaged = Vec::new();
    for info in repo.sink().list(ObjectKind::Index)? {
        match repo.read_index_file(&info.name) {
            Ok(file) => good.push(Good {
                name: info.name,
                file,
            }),
            Err(e @ RepoError::Corrupt { .. }) => {
                tracing::warn!("{}", crate::chain(&e));
                damaged.push(info.name);
            }
            // Gone since the listing (merged by a backup before we locked).
            Err(RepoError::Sink(e)) if e.is_not_found() => {}
            Err(e) => return Err(e),
        }
    }
    Ok((good, damaged))
}

/// The new index files first, then the old ones go (FORMAT.md section 10):
/// a crash in between leaves entries listed twice, never a blob unlisted.
fn write_then_delete(
    repo: &Repository,
    packs: Vec<IndexPack>,
    replaced: Vec<String>,
    damaged: &HashSet<String>,
    report: &mut IndexRepair,
) -> Result<(), RepoError> {
    if report.dry_run {
        let blobs: usize = packs.iter().map(|p| p.blobs.len()).sum();
        report.index_files_written = match packs.len() {
            0 => 0,
            _ => blobs.div_ceil(crate::repo::BLOBS_PER_INDEX_FILE).max(1),
        };
        report.index_files_deleted = replaced.len();
        return Ok(());
    }
    let written: HashSet<String> = repo
        .write_index_files_avoiding(packs, damaged)?
        .iter()
        .map(ObjectId::to_hex)
        .collect();
    report.index_files_written = written.len();
    for name in replaced.iter().filter(|n| !written.contains(*n)) {
        repo.delete(ObjectKind::Index, name)?;
        report.index_files_deleted += 1;
    }
    Ok(())
}

/// Reads and scans packs on several threads.
fn read_packs(
    repo: &Repository,
    packs: &[ObjectId],
    salvage: Option<&Packer<'_>>,
) -> Result<Read, RepoError> {
    let states = crate::repo::workers::each_on_workers(repo, packs, Read::default, |read, id| {
        read_pack(repo, *id, salvage, read)
    })?;
    let mut all = Read::default();
    for r in states {
        all.found.extend(r.found);
        all.salvaged.extend(r.salvaged);
        all.problems.extend(r.problems);
    }
    all.problems.sort();
    Ok(all)
}

/// One pack's blobs, as [`pack::scan`] finds them. A pack whose bytes do
/// not match its name, read after read, is damaged: its good blobs go to
/// `salvage`. One gone since the listing is passed over.
fn read_pack(
    repo: &Repository,
    id: ObjectId,
    salvage: Option<&Packer<'_>>,
    read: &mut Read,
) -> Result<(), RepoError> {
    let (data, actual) = match repo.read_object(ObjectKind::Pack, &id.to_hex()) {
        Ok(read) => read,
        Err(RepoError::Sink(e)) if e.is_not_found() => return Ok(()),
        Err(e) => return Err(e),
    };
    let scanned = pack::scan(&data, repo.crypto());
    read.problems
        .extend(scanned.damaged.iter().map(|d| format!("pack {id}: {d}")));
    // A blob stored twice in one pack is listed once.
    let mut seen = HashSet::new();
    let blobs: Vec<IndexBlob> = scanned.blobs.into_iter().filter(|b| seen.insert(b.id)).collect();
    if actual == id {
        read.found.push(IndexPack { id, blobs });
        return Ok(());
    }
    read.problems.push(format!(
        "pack {id}: its bytes hash to {actual}; its good blobs are stored again"
    ));
    if let Some(packer) = salvage {
        store_again(packer, id, &data, &blobs)?;
    }
    read.salvaged.push(IndexPack { id, blobs });
    Ok(())
}

/// Stores the blobs of a damaged pack's bytes again, frame by frame.
fn store_again(packer: &Packer<'_>, id: ObjectId, data: &[u8], blobs: &[IndexBlob]) -> Result<(), RepoError> {
    let damaged = |source| RepoError::Pack { pack: id, source };
    let mut frames = packer.frame_builder();
    let mut decoder = pack::FrameDecoder::new(packer.crypto());
    let mut frame = Vec::new();
    let mut decoded_at = None;
    for b in blobs {
        if decoded_at != Some(b.frame_offset) {
            let start = usize::try_from(b.frame_offset).unwrap_or(usize::MAX);
            let raw = data
                .get(start..start.saturating_add(b.frame_length as usize))
                .unwrap_or(&[]);
            decoder
                .decode_into(raw, b.frame_offset, &mut frame)
                .map_err(damaged)?;
            decoded_at = Some(b.frame_offset);
        }
        let blob = pack::blob_in_frame(&frame, b, packer.crypto()).map_err(damaged)?;
        packer.add(&mut frames, b.id, blob)?;
    }
    packer.flush(&mut frames)
}

fn sorted_hex(ids: &HashSet<ObjectId>) -> Vec<String> {
    let mut out: Vec<String> = ids.iter().map(ObjectId::to_hex).collect();
    out.sort();
    out
}
