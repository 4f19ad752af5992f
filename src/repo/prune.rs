//! Prune: frees the space of blobs no snapshot uses any more.
//!
//! 1. Mark: every blob the remaining snapshots need (their manifests, and
//!    the content of every entry). A snapshot that cannot be read, or that
//!    needs a blob no index lists, stops prune before anything changes:
//!    it never deletes when it cannot tell what is used.
//! 2. Sort the packs: fully used ones stay; packs without a used blob go;
//!    partly used ones are repacked, those with the largest unused share
//!    first, until the unused bytes left are within `--max-unused` (as
//!    restic does), and at most `--max-repack-size` bytes are read.
//! 3. Write, in this order (FORMAT.md, section 10, rule 9): the repacked
//!    blobs into new packs and their index files; index files listing every
//!    pack that stays; then delete the old index files; then, last, the
//!    packs nothing lists any more. A crash between any two steps leaves a
//!    valid repository: duplicates at worst, never a listed pack missing.
//!
//! The caller holds the exclusive lock.

use std::collections::{BTreeMap, HashMap, HashSet};

use super::id::{IdSet, ObjectId};
use super::index::{Index, IndexBlob};
use super::pack::{blob_in_frame, BlobInFrame, CompressedFrame, FrameDecoder};
use super::reader::BlobReader;
use super::snapshot::Snapshot;
use super::{packer, RepoError, Repository};
use crate::interrupt;
use crate::sink::ObjectKind;

#[derive(Debug, Clone)]
pub struct PruneOptions {
    /// The unused share of the repository's data to tolerate (0.05 for
    /// 5%); `None`: any (only packs without a used blob are deleted).
    pub max_unused: Option<f64>,
    /// At most this many stored bytes of packs are repacked.
    pub max_repack_bytes: Option<u64>,
    pub dry_run: bool,
    /// Snapshots counted as already gone (`forget --prune --dry-run`: what
    /// prune would free once they are).
    pub without: Vec<ObjectId>,
}

impl Default for PruneOptions {
    fn default() -> Self {
        PruneOptions {
            max_unused: Some(0.05),
            max_repack_bytes: None,
            dry_run: false,
            without: Vec::new(),
        }
    }
}

/// What prune found, and did (or would do, with `dry_run`).
#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct PruneReport {
    pub snapshots: usize,
    pub blobs_used: usize,
    pub blobs_unused: usize,
    pub packs: usize,
    pub packs_deleted: usize,
    pub packs_repacked: usize,
    /// Packs no index lists (left by an interrupted backup).
    pub packs_unreferenced: usize,
    pub packs_written: u64,
    pub index_files_written: usize,
    pub index_files_deleted: usize,
    /// Stored bytes before and after.
    pub bytes_before: u64,
    pub bytes_after: u64,
    pub dry_run: bool,
}

/// One frame of a pack: its length, and its blobs, each with whether it
/// is used here.
#[derive(Debug, Default, Clone)]
struct FrameUse {
    length: u32,
    blobs: Vec<(IndexBlob, bool)>,
}

/// One pack as prune sees it.
#[derive(Debug, Default, Clone)]
struct PackUse {
    /// Stored size (from the listing).
    size: u64,
    used_blobs: Vec<ObjectId>,
    /// By frame offset.
    frames: BTreeMap<u64, FrameUse>,
    /// Uncompressed bytes of used and unused blobs: the unused share.
    used_bytes: u64,
    unused_bytes: u64,
}

/// What happens to each pack.
#[derive(Debug, Default)]
struct Decision {
    delete: Vec<ObjectId>,
    repack: Vec<ObjectId>,
    unreferenced: Vec<ObjectId>,
}

/// What prune found before changing anything.
struct Survey {
    index_names: Vec<String>,
    index: Index,
    packs: HashMap<ObjectId, PackUse>,
    decision: Decision,
    report: PruneReport,
}

/// Marks, sorts the packs and says what would be freed; changes nothing.
fn survey(repo: &Repository, opts: &PruneOptions) -> Result<Survey, RepoError> {
    let index_names: Vec<String> = repo
        .sink()
        .list(ObjectKind::Index)?
        .into_iter()
        .map(|o| o.name)
        .collect();
    let mut index = Index::default();
    for name in &index_names {
        // Prune must know every pack's blobs: it never guesses past a
        // damaged index file.
        let file = repo.read_index_file(name).map_err(|e| match e {
            RepoError::Corrupt { kind, name, detail } => RepoError::Corrupt {
                kind,
                name,
                detail: format!("{detail}; prune changed nothing (run `cairn repair index` first)"),
            },
            other => other,
        })?;
        index.add_file(&file);
    }
    // Every record, or none: a snapshot prune cannot read would lose its data.
    let mut snapshots = repo.load_snapshots_strict()?;
    snapshots.retain(|s| !opts.without.contains(&s.id));
    let used = mark(repo, &index, &snapshots)?;
    let stored: HashMap<ObjectId, u64> = repo
        .sink()
        .list(ObjectKind::Pack)?
        .into_iter()
        .filter_map(|o| Some((ObjectId::from_hex(o.name.as_bytes())?, o.size)))
        .collect();
    let packs = pack_use(&index, &used, &stored);
    let decision = decide(&packs, &stored, opts);
    let freed: u64 = gone(&decision)
        .map(|id| stored.get(id).copied().unwrap_or(0))
        .sum();
    let bytes_before: u64 = stored.values().sum();
    let report = PruneReport {
        snapshots: snapshots.len(),
        blobs_used: used.len(),
        blobs_unused: index.len().saturating_sub(used.len()),
        packs: stored.len(),
        packs_deleted: decision.delete.len(),
        packs_repacked: decision.repack.len(),
        packs_unreferenced: decision.unreferenced.len(),
        bytes_before,
        bytes_after: bytes_before.saturating_sub(freed),
        dry_run: opts.dry_run,
        ..Default::default()
    };
    Ok(Survey {
        index_names,
        index,
        packs,
        decision,
        report,
    })
}

pub fn prune(repo: &Repository, opts: &PruneOptions) -> Result<PruneReport, RepoError> {
    let Survey {
        index_names,
        index,
        packs,
        decision,
        mut report,
    } = survey(repo, opts)?;
    if opts.dry_run || gone(&decision).next().is_none() {
        return Ok(report);
    }
    let (written, repacked_bytes) = repack(repo, &index, &packs, &decision.repack)?;
    report.packs_written = written.packs;
    report.bytes_after = report.bytes_after.saturating_add(repacked_bytes);
    check_interrupt()?;
    // What the repack wrote is never deleted, though a pack or index file
    // of the same name (the same bytes, from an earlier prune that was
    // killed) was among those to go.
    let rewritten: HashSet<ObjectId> = written.pack_ids.iter().copied().collect();
    let dropped: HashSet<ObjectId> = gone(&decision)
        .filter(|id| !rewritten.contains(id))
        .copied()
        .collect();
    let mut keep_files = rewrite_index(repo, &index_names, &dropped)?;
    report.index_files_written = keep_files.len() + written.index_ids.len();
    keep_files.extend(written.index_ids.iter().map(ObjectId::to_hex));
    check_interrupt()?;
    for name in index_names.iter().filter(|n| !keep_files.contains(*n)) {
        repo.delete(ObjectKind::Index, name)?;
        report.index_files_deleted += 1;
    }
    for id in gone(&decision).filter(|id| dropped.contains(*id)) {
        check_interrupt()?;
        repo.delete(ObjectKind::Pack, &id.to_hex())?;
    }
    Ok(report)
}

fn gone(d: &Decision) -> impl Iterator<Item = &ObjectId> {
    d.delete.iter().chain(&d.repack).chain(&d.unreferenced)
}

fn check_interrupt() -> Result<(), RepoError> {
    match interrupt::is_set() {
        true => Err(RepoError::Interrupted),
        false => Ok(()),
    }
}

/// Every blob the snapshots need, read on as many threads as there are
/// cores. Stops at a snapshot that cannot be read whole, or that needs a
/// blob no index lists.
fn mark(repo: &Repository, index: &Index, snapshots: &[Snapshot]) -> Result<IdSet, RepoError> {
    let parts = on_every_core(snapshots, |mine| mark_some(repo, index, mine.into_iter()))?;
    let mut used = IdSet::default();
    for part in parts {
        used.extend(part);
    }
    if let Some(missing) = used.iter().find(|id| !index.contains(id)) {
        return Err(RepoError::MissingBlob(*missing));
    }
    Ok(used)
}

/// `work` on as many threads as there are cores, each given every n-th
/// item; waits for all of them, and returns their results in order or the
/// first error.
fn on_every_core<'a, T: Sync, R: Send>(
    items: &'a [T],
    work: impl Fn(Vec<&'a T>) -> Result<R, RepoError> + Sync,
) -> Result<Vec<R>, RepoError> {
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    let threads = cores.min(items.len()).max(1);
    let work = &work;
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let mine: Vec<&T> = items.iter().skip(t).step_by(threads).collect();
                s.spawn(move || work(mine))
            })
            .collect();
        let results: Vec<_> = handles
            .into_iter()
            .map(|h| h.join().unwrap_or(Err(RepoError::ThreadPanicked)))
            .collect();
        results.into_iter().collect()
    })
}

fn mark_some<'s>(
    repo: &Repository,
    index: &Index,
    snapshots: impl Iterator<Item = &'s Snapshot>,
) -> Result<IdSet, RepoError> {
    let mut used = IdSet::default();
    let mut reader = BlobReader::new(repo, index);
    for s in snapshots {
        check_interrupt()?;
        let short = s.id.short();
        used.extend(s.record.manifest.iter().copied());
        for entry in reader.manifest(&short, &s.record.manifest) {
            used.extend(entry?.blobs);
        }
    }
    Ok(used)
}

/// How much of each indexed pack is used. A blob stored twice counts as
/// used in the pack of its first copy only.
fn pack_use(index: &Index, used: &IdSet, stored: &HashMap<ObjectId, u64>) -> HashMap<ObjectId, PackUse> {
    let mut packs: HashMap<ObjectId, PackUse> = HashMap::new();
    for id in index.blob_ids() {
        for (copy, (pack, loc)) in index.locations(id).enumerate() {
            let p = packs.entry(pack).or_default();
            let used_here = copy == 0 && used.contains(id);
            let frame = p.frames.entry(loc.frame_offset).or_default();
            frame.length = loc.frame_length;
            frame.blobs.push((loc.to_index_blob(*id), used_here));
            if used_here {
                p.used_blobs.push(*id);
                p.used_bytes = p.used_bytes.saturating_add(u64::from(loc.length));
            } else {
                p.unused_bytes = p.unused_bytes.saturating_add(u64::from(loc.length));
            }
        }
    }
    for (id, p) in packs.iter_mut() {
        p.size = stored.get(id).copied().unwrap_or(0);
    }
    packs
}

/// Which packs go, which are repacked (see the module docs).
fn decide(
    packs: &HashMap<ObjectId, PackUse>,
    stored: &HashMap<ObjectId, u64>,
    opts: &PruneOptions,
) -> Decision {
    let mut d = Decision {
        unreferenced: stored
            .keys()
            .filter(|id| !packs.contains_key(id))
            .copied()
            .collect(),
        ..Default::default()
    };
    let mut partial: Vec<(&ObjectId, &PackUse)> = Vec::new();
    for (id, p) in packs {
        match (p.used_blobs.is_empty(), p.unused_bytes) {
            (true, _) => d.delete.push(*id),
            (false, 0) => {}
            (false, _) => partial.push((id, p)),
        }
    }
    let Some(max_unused) = opts.max_unused else {
        return sorted(d);
    };
    let used: u64 = packs.values().map(|p| p.used_bytes).sum();
    // restic's limit: unused at most `max_unused` of what the repository
    // holds after prune, used + unused.
    let fraction = max_unused.clamp(0.0, 0.99);
    let allowed = (used as f64 * fraction / (1.0 - fraction)) as u64;
    let mut unused: u64 = partial.iter().map(|(_, p)| p.unused_bytes).sum();
    partial.sort_by(|a, b| {
        let share = |p: &PackUse| p.unused_bytes as f64 / (p.used_bytes + p.unused_bytes).max(1) as f64;
        share(b.1).total_cmp(&share(a.1)).then(a.0.cmp(b.0))
    });
    let mut budget = opts.max_repack_bytes.unwrap_or(u64::MAX);
    for (id, p) in partial {
        if unused <= allowed || p.size > budget {
            continue;
        }
        budget -= p.size;
        unused = unused.saturating_sub(p.unused_bytes);
        d.repack.push(*id);
    }
    sorted(d)
}

fn sorted(mut d: Decision) -> Decision {
    d.delete.sort();
    d.repack.sort();
    d.unreferenced.sort();
    d
}

/// Writes the used blobs of `repack` into new packs and their index
/// files; returns what the writer wrote and the stored bytes it added.
fn repack(
    repo: &Repository,
    index: &Index,
    packs: &HashMap<ObjectId, PackUse>,
    repack: &[ObjectId],
) -> Result<(packer::PackWriterStats, u64), RepoError> {
    if repack.is_empty() {
        return Ok((Default::default(), 0));
    }
    // An empty index: the packer stores every blob it is given once, though
    // the repository's index lists it (in the pack about to go).
    let nothing = Index::default();
    let (packer, writer) = packer::start(repo, &nothing);
    std::thread::scope(|s| {
        let writer = s.spawn(move || writer.run());
        let copied = copy_in_parallel(repo, index, packs, repack, &packer);
        drop(packer);
        let written = writer.join().map_err(|_| RepoError::ThreadPanicked)?;
        copied?;
        let written = written?;
        let bytes = written.bytes_stored;
        Ok((written, bytes))
    })
}

/// [`copy_blobs`] on every core, each taking every n-th pack: compressing
/// is most of the work.
fn copy_in_parallel(
    repo: &Repository,
    index: &Index,
    packs: &HashMap<ObjectId, PackUse>,
    repack: &[ObjectId],
    packer: &packer::Packer,
) -> Result<(), RepoError> {
    on_every_core(repack, |mine| {
        let mine: Vec<ObjectId> = mine.into_iter().copied().collect();
        copy_blobs(repo, index, packs, &mine, packer)
    })
    .map(|_| ())
}

fn copy_blobs(
    repo: &Repository,
    index: &Index,
    packs: &HashMap<ObjectId, PackUse>,
    repack: &[ObjectId],
    packer: &packer::Packer,
) -> Result<(), RepoError> {
    let mut reader = BlobReader::new(repo, index);
    let mut decoder = FrameDecoder::new(repo.crypto());
    let mut frames = packer.frame_builder();
    for pack in repack {
        let Some(p) = packs.get(pack) else { continue };
        for (offset, frame) in &p.frames {
            check_interrupt()?;
            if frame.blobs.iter().all(|(_, used)| *used) {
                // Every blob still used: the frame goes over as it is,
                // verified but not compressed again.
                // A garbled transfer is read again (see READ_ATTEMPTS).
                let mut copied = verified_frame(repo, &mut decoder, *pack, *offset, frame);
                for _ in 1..super::READ_ATTEMPTS {
                    match copied {
                        Err(RepoError::Pack { .. }) => {
                            copied = verified_frame(repo, &mut decoder, *pack, *offset, frame)
                        }
                        _ => break,
                    }
                }
                packer.add_frame(copied?)?;
                continue;
            }
            for (blob, _) in frame.blobs.iter().filter(|(_, used)| *used) {
                let data = reader.read(&blob.id)?;
                packer.add(&mut frames, blob.id, &data)?;
            }
        }
    }
    packer.flush(&mut frames)
}

/// A frame read from its pack, every blob in it checked against its id.
fn verified_frame(
    repo: &Repository,
    decoder: &mut FrameDecoder,
    pack: ObjectId,
    offset: u64,
    frame: &FrameUse,
) -> Result<CompressedFrame, RepoError> {
    let err = |source| RepoError::Pack { pack, source };
    let raw = repo
        .sink()
        .read_range(ObjectKind::Pack, &pack.to_hex(), offset, u64::from(frame.length))?;
    let content = decoder.decode(&raw, offset).map_err(err)?;
    let mut blobs = Vec::with_capacity(frame.blobs.len());
    let mut payload = 0u64;
    for (blob, _) in &frame.blobs {
        blob_in_frame(&content, blob, repo.crypto()).map_err(err)?;
        payload = payload.saturating_add(u64::from(blob.length));
        blobs.push(BlobInFrame {
            id: blob.id,
            offset: blob.offset,
            length: blob.length,
        });
    }
    Ok(CompressedFrame {
        data: raw,
        blobs,
        payload,
    })
}

/// Writes index files listing every pack of the old ones that is not in
/// `dropped`, each once (with every blob any old file lists for it);
/// returns their names.
fn rewrite_index(
    repo: &Repository,
    old: &[String],
    dropped: &HashSet<ObjectId>,
) -> Result<HashSet<String>, RepoError> {
    let files = old
        .iter()
        .map(|name| repo.read_index_file(name))
        .collect::<Result<Vec<_>, _>>()?;
    let mut merged = super::consolidate::merge(files);
    merged.packs.retain(|p| !dropped.contains(&p.id));
    Ok(repo
        .write_index_files(merged.packs)?
        .iter()
        .map(ObjectId::to_hex)
        .collect())
}
