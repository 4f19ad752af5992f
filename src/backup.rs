//! The backup pipeline:
//!
//! ```text
//! walk (this thread) --files--> workers: read, chunk, hash, dedup, compress frames
//!        |                         |                           |
//!        +--ready entries--> assembler: reorder, manifest --> pack writer --> sink
//! ```
//!
//! Queues are bounded, so memory stays flat whatever the size of the tree.
//! Entries are numbered as they are walked; the assembler puts them back in
//! walk order, which is manifest order. Files whose size, mtime, ctime and
//! inode match the parent snapshot are not read at all.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs::File;
use std::io;
use std::path::{Component, Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use chrono::{DateTime, FixedOffset, Local};
use crossbeam_channel::{bounded, unbounded, Receiver, Sender};

use crate::collect::tree::{self, Excludes, PatternError, TreeItem};
use crate::interrupt;
use crate::meta::{self, os_bytes};
use crate::progress::Progress;
use crate::repo::chunker::Chunker;
use crate::repo::id::ObjectId;
use crate::repo::index::Index;
use crate::repo::manifest::{Entry, EntryKind, ManifestWriter, RawBytes};
use crate::repo::pack::FrameBuilder;
use crate::repo::packer::{self, Packer};
use crate::repo::reader::BlobReader;
use crate::repo::snapshot::{Root, Snapshot, SnapshotRecord, SnapshotStats};
use crate::repo::{RepoError, Repository};

/// Warnings kept in the snapshot record; the rest are counted.
const MAX_RECORDED_WARNINGS: usize = 1000;

#[derive(Debug, Clone, Default)]
pub struct BackupOptions {
    pub paths: Vec<PathBuf>,
    pub excludes: Vec<String>,
    pub tags: Vec<String>,
    pub time: Option<DateTime<FixedOffset>>,
}

#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    #[error(transparent)]
    Repo(#[from] RepoError),
    #[error(transparent)]
    Pattern(#[from] PatternError),
    #[error("nothing to back up: give at least one path")]
    NoPaths,
}

pub struct BackupOutcome {
    pub id: ObjectId,
    pub record: SnapshotRecord,
    /// Every warning, including those beyond what the record keeps.
    pub warnings: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum FileStatus {
    New,
    Changed,
    Unchanged,
}

struct FileJob {
    seq: u64,
    abs: PathBuf,
    entry: Entry,
    status: FileStatus,
}

enum Done {
    Entry {
        entry: Entry,
        status: Option<FileStatus>,
        warning: Option<String>,
    },
    /// Not saved; `path` is set when it was a file other names may link to.
    Skipped {
        path: Option<Vec<u8>>,
        warning: Option<String>,
    },
}

struct Source {
    abs: PathBuf,
    prefix: String,
}

/// What the walk and the assembler found, besides the manifest.
#[derive(Default)]
struct Tally {
    stats: SnapshotStats,
    warnings: Vec<String>,
    partial: bool,
}

pub fn run(
    repo: &Repository,
    opts: &BackupOptions,
    progress: &Progress,
) -> Result<BackupOutcome, BackupError> {
    let started = Instant::now();
    if opts.paths.is_empty() {
        return Err(BackupError::NoPaths);
    }
    let excludes = Excludes::new(&opts.excludes)?;
    let sources = sources(&opts.paths);
    let roots: Vec<Root> = sources
        .iter()
        .map(|s| Root {
            collector: "tree".into(),
            path: RawBytes(os_bytes(s.abs.as_os_str())),
            prefix: s.prefix.clone(),
        })
        .collect();
    let index = repo.load_index()?;
    tracing::debug!("index loaded: {} blobs", index.len());
    let snapshots = repo.load_snapshots()?;
    tracing::debug!("{} snapshots loaded", snapshots.len());
    let host = crate::repo::lock::hostname();
    let parent = find_parent(&snapshots, &host, &roots);
    if let Some(p) = parent {
        tracing::info!("parent snapshot {}", p.id.short());
    }
    if progress.is_visible() {
        count_in_background(&sources, &excludes, progress);
    }

    let (manifest, mut tally) = std::thread::scope(|s| -> Result<(Vec<ObjectId>, Tally), RepoError> {
        let (packer, writer) = packer::start(repo, &index);
        let packer = Arc::new(packer);
        let writer = s.spawn(move || writer.run());
        let (job_tx, job_rx) = bounded::<FileJob>(64);
        let (done_tx, done_rx) = unbounded::<Vec<(u64, Done)>>();
        let threads = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
        let workers: Vec<_> = (0..threads)
            .map(|_| {
                let (jobs, done, packer, chunker) = (
                    job_rx.clone(),
                    done_tx.clone(),
                    packer.clone(),
                    repo.chunker().clone(),
                );
                s.spawn(move || store_files(jobs, done, &packer, &chunker, progress))
            })
            .collect();
        drop(job_rx);
        let assembler = {
            let packer = packer.clone();
            s.spawn(move || assemble(done_rx, &packer, Chunker::for_manifest()))
        };
        let mut walk_tally = Tally::default();
        let walked = walk_sources(
            repo,
            &index,
            parent,
            &sources,
            &excludes,
            &job_tx,
            &done_tx,
            progress,
            &mut walk_tally,
        );
        tracing::debug!("walk done");
        drop(job_tx);
        drop(done_tx);
        let worker_results: Vec<Result<(), RepoError>> = workers
            .into_iter()
            .map(|w| w.join().unwrap_or(Err(RepoError::ThreadPanicked)))
            .collect();
        let assembled = assembler.join().unwrap_or(Err(RepoError::ThreadPanicked));
        tracing::debug!("manifest done");
        let (blobs_added, bytes_added) = (
            packer.blobs_added.load(Ordering::Relaxed),
            packer.bytes_added.load(Ordering::Relaxed),
        );
        // The last reference closes the frame queue, which lets the writer
        // finish the last pack and write the index.
        drop(packer);
        let written = writer.join().unwrap_or(Err(RepoError::ThreadPanicked));
        tracing::debug!("packs and index written");
        if interrupt::is_set() {
            return Err(RepoError::Interrupted);
        }
        let written = written?;
        worker_results
            .into_iter()
            .collect::<Result<Vec<()>, RepoError>>()?;
        walked?;
        let (manifest, mut tally) = assembled?;
        tally.stats.blobs_added = blobs_added;
        tally.stats.bytes_added = bytes_added;
        tally.stats.bytes_stored = written.bytes_stored;
        tally.partial |= walk_tally.partial;
        walk_tally.warnings.append(&mut tally.warnings);
        tally.warnings = walk_tally.warnings;
        Ok((manifest, tally))
    })?;

    tally.stats.duration_secs = started.elapsed().as_secs_f64();
    let mut recorded = tally.warnings.clone();
    if recorded.len() > MAX_RECORDED_WARNINGS {
        let more = recorded.len() - MAX_RECORDED_WARNINGS;
        recorded.truncate(MAX_RECORDED_WARNINGS);
        recorded.push(format!("... and {more} more warnings"));
    }
    let record = SnapshotRecord {
        version: 1,
        time: opts.time.unwrap_or_else(|| Local::now().fixed_offset()),
        host,
        user: crate::repo::lock::username(),
        profile: None,
        tags: opts.tags.clone(),
        roots,
        manifest,
        parent: parent.map(|p| p.id),
        partial: tally.partial,
        warnings: recorded,
        stats: tally.stats,
        tool_version: format!("cairn {}", env!("CARGO_PKG_VERSION")),
    };
    // Packs and index are complete; only now may a snapshot refer to them.
    let id = repo.write_snapshot(&record)?;
    Ok(BackupOutcome {
        id,
        record,
        warnings: tally.warnings,
    })
}

/// Absolute, lexically normalised source paths and their manifest prefixes
/// (`tree/<name>`, with `-2`, `-3` ... when names repeat), sorted by prefix so
/// that the roots are walked in manifest order.
fn sources(paths: &[PathBuf]) -> Vec<Source> {
    let mut taken: HashSet<String> = HashSet::new();
    let mut out: Vec<Source> = paths
        .iter()
        .map(|p| {
            let abs = normalize(&std::path::absolute(p).unwrap_or_else(|_| p.clone()));
            let name = abs
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_else(|| "root".to_string());
            // Checked against every prefix taken so far, so `a-2` given as a
            // source never collides with the second `a`.
            let prefix = (1..)
                .map(|n| {
                    if n == 1 {
                        format!("tree/{name}")
                    } else {
                        format!("tree/{name}-{n}")
                    }
                })
                .find(|candidate| !taken.contains(candidate))
                .unwrap_or_default();
            taken.insert(prefix.clone());
            Source { abs, prefix }
        })
        .collect();
    out.sort_by(|a, b| crate::repo::manifest::path_cmp(a.prefix.as_bytes(), b.prefix.as_bytes()));
    out
}

/// Removes `.` and resolves `..` without touching the filesystem (a symlink
/// given as a source is saved as the link, as restic does).
fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => {
                out.pop();
            }
            other => out.push(other.as_os_str()),
        }
    }
    out
}

/// The newest snapshot of the same sources from this host.
fn find_parent<'a>(snapshots: &'a [Snapshot], host: &str, roots: &[Root]) -> Option<&'a Snapshot> {
    let key = |roots: &[Root]| {
        let mut paths: Vec<&[u8]> = roots.iter().map(|r| r.path.as_bytes()).collect();
        paths.sort();
        paths.into_iter().map(<[u8]>::to_vec).collect::<Vec<_>>()
    };
    let ours = key(roots);
    snapshots
        .iter()
        .rev()
        .find(|s| s.record.host == host && key(&s.record.roots) == ours)
}

/// Sums the sizes to back up on a side thread, so the progress bar gets a
/// total and an ETA without delaying the start.
fn count_in_background(sources: &[Source], excludes: &Excludes, progress: &Progress) {
    let sources: Vec<(PathBuf, String)> = sources
        .iter()
        .map(|s| (s.abs.clone(), s.prefix.clone()))
        .collect();
    let (excludes, progress) = (excludes.clone(), progress.clone());
    std::thread::spawn(move || {
        let mut total = 0;
        let mut links = HashSet::new();
        for (abs, prefix) in &sources {
            for item in tree::walk(abs, prefix, &excludes) {
                if let TreeItem::Entry { meta, .. } = item {
                    let first_name = meta::hardlink_key(&meta).is_none_or(|key| links.insert(key));
                    if meta.is_file() && first_name {
                        total += meta.len();
                    }
                }
            }
        }
        progress.set_total(total);
    });
}

/// Follows the parent's manifest alongside the walk; both are in manifest order.
struct ParentCursor<'r> {
    entries: Option<Box<dyn Iterator<Item = Result<Entry, RepoError>> + 'r>>,
    peeked: Option<Entry>,
}

impl ParentCursor<'_> {
    fn find(&mut self, path: &[u8]) -> Option<Entry> {
        use std::cmp::Ordering::*;
        loop {
            if self.peeked.is_none() {
                match self.entries.as_mut()?.next() {
                    Some(Ok(e)) => self.peeked = Some(e),
                    Some(Err(e)) => {
                        tracing::warn!("parent snapshot unusable, reading every file: {e}");
                        self.entries = None;
                        return None;
                    }
                    None => {
                        self.entries = None;
                        return None;
                    }
                }
            }
            let peeked = self.peeked.as_ref()?;
            match crate::repo::manifest::path_cmp(peeked.path.as_bytes(), path) {
                Less => self.peeked = None,
                Equal => return self.peeked.take(),
                Greater => return None,
            }
        }
    }
}

#[allow(clippy::too_many_arguments)]
fn walk_sources(
    repo: &Repository,
    index: &Index,
    parent: Option<&Snapshot>,
    sources: &[Source],
    excludes: &Excludes,
    jobs: &Sender<FileJob>,
    done: &Sender<Vec<(u64, Done)>>,
    progress: &Progress,
    tally: &mut Tally,
) -> Result<(), RepoError> {
    // The parent's manifest is read and parsed on a thread of its own, ahead
    // of the walk, so parsing overlaps with the walk's system calls.
    std::thread::scope(|s| {
        let (tx, rx) = bounded::<Vec<Result<Entry, RepoError>>>(8);
        if let Some(p) = parent {
            s.spawn(move || {
                let mut reader = BlobReader::new(repo, index);
                let mut batch = Vec::with_capacity(256);
                for entry in reader.manifest(&p.id.short(), &p.record.manifest) {
                    batch.push(entry);
                    if batch.len() == 256
                        && tx
                            .send(std::mem::replace(&mut batch, Vec::with_capacity(256)))
                            .is_err()
                    {
                        return;
                    }
                }
                let _ = tx.send(batch);
            });
        } else {
            drop(tx);
        }
        let cursor = ParentCursor {
            entries: parent.map(|_| Box::new(rx.into_iter().flatten()) as Box<dyn Iterator<Item = _>>),
            peeked: None,
        };
        walk_with_parent(index, cursor, sources, excludes, jobs, done, progress, tally)
    })
}

#[allow(clippy::too_many_arguments)]
fn walk_with_parent(
    index: &Index,
    mut cursor: ParentCursor,
    sources: &[Source],
    excludes: &Excludes,
    jobs: &Sender<FileJob>,
    done: &Sender<Vec<(u64, Done)>>,
    progress: &Progress,
    tally: &mut Tally,
) -> Result<(), RepoError> {
    let mut links: HashMap<(u64, u64), RawBytes> = HashMap::new();
    let mut seq = 0u64;
    let mut batch = DoneBatch {
        tx: done,
        entries: Vec::with_capacity(DoneBatch::SIZE),
    };
    let mut send_done = |seq: u64, d: Done| batch.push(seq, d);
    for source in sources {
        for item in tree::walk(&source.abs, &source.prefix, excludes) {
            if interrupt::is_set() {
                return Err(RepoError::Interrupted);
            }
            let (path, abs, meta) = match item {
                TreeItem::Entry { path, abs, meta } => (path, abs, meta),
                TreeItem::Unreadable { path, error } => {
                    let what = if error.kind() == io::ErrorKind::NotFound && path == source.abs {
                        "source path does not exist".to_string()
                    } else {
                        error.to_string()
                    };
                    tally.warnings.push(format!("{}: {what}", path.display()));
                    tally.partial = true;
                    continue;
                }
            };
            let this = seq;
            seq += 1;
            let Some(mut entry) = meta::entry_from_metadata(path, &meta) else {
                if !send_done(
                    this,
                    Done::Skipped {
                        path: None,
                        warning: None,
                    },
                ) {
                    return Ok(());
                }
                continue;
            };
            let ready = match entry.kind {
                EntryKind::File => {
                    if let Some(key) = meta::hardlink_key(&meta) {
                        if let Some(first) = links.get(&key) {
                            entry.kind = EntryKind::Hardlink;
                            entry.target = Some(first.clone());
                            entry.size = 0;
                            send_done(
                                this,
                                Done::Entry {
                                    entry,
                                    status: None,
                                    warning: None,
                                },
                            );
                            continue;
                        }
                        links.insert(key, entry.path.clone());
                    }
                    let previous = cursor.find(entry.path.as_bytes());
                    match previous {
                        Some(prev) if unchanged(&prev, &entry, index) => {
                            entry.hash = prev.hash;
                            entry.blobs = prev.blobs;
                            entry.xattrs = prev.xattrs;
                            progress.add(entry.size);
                            progress.file_done();
                            Done::Entry {
                                entry,
                                status: Some(FileStatus::Unchanged),
                                warning: None,
                            }
                        }
                        previous => {
                            let status = if previous.is_some() {
                                FileStatus::Changed
                            } else {
                                FileStatus::New
                            };
                            if jobs
                                .send(FileJob {
                                    seq: this,
                                    abs,
                                    entry,
                                    status,
                                })
                                .is_err()
                            {
                                return Ok(());
                            }
                            continue;
                        }
                    }
                }
                EntryKind::Symlink => match std::fs::read_link(&abs) {
                    Ok(target) => {
                        entry.target = Some(RawBytes(os_bytes(target.as_os_str())));
                        Done::Entry {
                            entry,
                            status: None,
                            warning: None,
                        }
                    }
                    Err(e) => {
                        tally.partial = true;
                        Done::Skipped {
                            path: None,
                            warning: Some(format!("{}: {e}", abs.display())),
                        }
                    }
                },
                _ => {
                    let warning = match meta::read_xattrs(&abs) {
                        Ok(x) => {
                            entry.xattrs = x;
                            None
                        }
                        Err(e) => Some(format!("{}: cannot read extended attributes: {e}", abs.display())),
                    };
                    Done::Entry {
                        entry,
                        status: None,
                        warning,
                    }
                }
            };
            if !send_done(this, ready) {
                return Ok(());
            }
        }
    }
    batch.flush();
    Ok(())
}

/// Entries the walk finished itself, sent on in batches: one message per
/// entry would cost a thread wake-up per file of an unchanged tree.
struct DoneBatch<'a> {
    tx: &'a Sender<Vec<(u64, Done)>>,
    entries: Vec<(u64, Done)>,
}

impl DoneBatch<'_> {
    const SIZE: usize = 256;

    /// False once the receiver is gone: it stopped on an error of its own,
    /// which the caller reports, and the walk just ends.
    fn push(&mut self, seq: u64, d: Done) -> bool {
        self.entries.push((seq, d));
        self.entries.len() < Self::SIZE || self.flush()
    }

    fn flush(&mut self) -> bool {
        let entries = std::mem::replace(&mut self.entries, Vec::with_capacity(Self::SIZE));
        entries.is_empty() || self.tx.send(entries).is_ok()
    }
}

/// Whether a file can reuse its parent-snapshot entry without being read.
fn unchanged(prev: &Entry, now: &Entry, index: &Index) -> bool {
    prev.kind == EntryKind::File
        && prev.size == now.size
        && prev.mtime == now.mtime
        && prev.mtime_nsec == now.mtime_nsec
        && prev.ctime == now.ctime
        && prev.ctime_nsec == now.ctime_nsec
        && prev.ino == now.ino
        && prev.content_hash().is_some()
        && prev.blobs.iter().all(|b| index.contains(b))
}

fn store_files(
    jobs: Receiver<FileJob>,
    done: Sender<Vec<(u64, Done)>>,
    packer: &Packer,
    chunker: &Chunker,
    progress: &Progress,
) -> Result<(), RepoError> {
    let mut frames = packer.frame_builder();
    let mut bufs = Buffers::default();
    for job in jobs {
        if interrupt::is_set() {
            return Err(RepoError::Interrupted);
        }
        let seq = job.seq;
        let d = store_file(job, packer, &mut frames, chunker, &mut bufs, progress)?;
        progress.file_done();
        if done.send(vec![(seq, d)]).is_err() {
            break;
        }
    }
    packer.flush(&mut frames)
}

/// A worker's reusable chunking window; it grows to the largest file seen,
/// at most twice the maximum chunk size, and is zeroed only when it grows.
#[derive(Default)]
struct Buffers {
    window: Vec<u8>,
}

enum StoreError {
    Source(io::Error),
    Repo(RepoError),
}

impl From<io::Error> for StoreError {
    fn from(e: io::Error) -> Self {
        StoreError::Source(e)
    }
}

impl From<RepoError> for StoreError {
    fn from(e: RepoError) -> Self {
        StoreError::Repo(e)
    }
}

/// Reads one file into blobs. A source that cannot be read is a warning and
/// the file is left out; only repository errors end the backup.
fn store_file(
    job: FileJob,
    packer: &Packer,
    frames: &mut FrameBuilder,
    chunker: &Chunker,
    bufs: &mut Buffers,
    progress: &Progress,
) -> Result<Done, RepoError> {
    let FileJob {
        abs,
        mut entry,
        status,
        ..
    } = job;
    let skipped = |e: io::Error| Done::Skipped {
        path: Some(entry.path.as_bytes().to_vec()),
        warning: Some(format!("{}: {e}", abs.display())),
    };
    let mut file = match File::open(&abs) {
        Ok(f) => f,
        Err(e) => return Ok(skipped(e)),
    };
    let mut blobs = Vec::new();
    let mut hasher = blake3::Hasher::new();
    let mut only_chunk = None;
    let read = chunker
        .chunk_reader::<StoreError>(&mut file, entry.size, &mut bufs.window, |chunk, whole| {
            let id = ObjectId::of(chunk);
            // A file that is one chunk is hashed once: its id is the file's hash.
            if whole {
                only_chunk = Some(id);
            } else {
                hasher.update(chunk);
            }
            packer.add(frames, id, chunk)?;
            blobs.push(id);
            progress.add(chunk.len() as u64);
            Ok(())
        })
        .map(|n| {
            (
                n,
                only_chunk.unwrap_or_else(|| ObjectId::from_hash(hasher.finalize())),
            )
        });
    let (size, hash) = match read {
        Ok(r) => r,
        Err(StoreError::Source(e)) => return Ok(skipped(e)),
        Err(StoreError::Repo(e)) => return Err(e),
    };
    let mut warning = None;
    let after = file
        .metadata()
        .ok()
        .and_then(|m| meta::entry_from_metadata(Vec::new(), &m));
    let changed = after
        .is_none_or(|a| a.size != entry.size || a.mtime != entry.mtime || a.mtime_nsec != entry.mtime_nsec)
        || size != entry.size;
    if changed {
        warning = Some(format!(
            "{}: changed while it was being read; saved as read",
            abs.display()
        ));
    }
    match meta::read_xattrs(&abs) {
        Ok(x) => entry.xattrs = x,
        Err(e) => warning = Some(format!("{}: cannot read extended attributes: {e}", abs.display())),
    }
    entry.size = size;
    // A one-blob file's hash is its blob's id; the manifest leaves it out.
    entry.hash = if blobs.len() == 1 { None } else { Some(hash) };
    entry.blobs = blobs;
    Ok(Done::Entry {
        entry,
        status: Some(status),
        warning,
    })
}

/// Puts finished entries back in walk order and writes the manifest.
fn assemble(
    done: Receiver<Vec<(u64, Done)>>,
    packer: &Packer,
    chunker: Chunker,
) -> Result<(Vec<ObjectId>, Tally), RepoError> {
    let mut tally = Tally::default();
    let mut frames = packer.frame_builder();
    let mut writer = ManifestWriter::new(chunker);
    let mut emit = |id: ObjectId, data: &[u8]| packer.add(&mut frames, id, data).map(|_| ());
    let mut pending: BTreeMap<u64, Done> = BTreeMap::new();
    let mut skipped_files: HashSet<Vec<u8>> = HashSet::new();
    let mut next = 0u64;
    for (seq, d) in done.into_iter().flatten() {
        pending.insert(seq, d);
        while let Some(d) = pending.remove(&next) {
            next += 1;
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
                } => {
                    tally.warnings.extend(warning);
                    count(&mut tally.stats, &entry, status);
                    writer.push::<RepoError>(&entry, &mut emit)?;
                }
            }
        }
    }
    let manifest = writer.finish(&mut emit)?;
    packer.flush(&mut frames)?;
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
