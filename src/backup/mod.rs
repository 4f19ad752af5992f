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
//!
//! `walk` feeds the pipeline, `store` is the workers, `assemble` puts the
//! manifest together; this module wires them and writes the snapshot.

mod assemble;
mod parent;
mod store;
mod walk;

use std::collections::HashSet;
use std::path::{Component, Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use chrono::{DateTime, FixedOffset, Local};
use crossbeam_channel::{bounded, unbounded};

use crate::collect::tree::{self, Excludes, PatternError, TreeItem};
use crate::interrupt;
use crate::meta::{self, os_bytes};
use crate::profile::resolve::RootSpec;
use crate::progress::Progress;
use crate::repo::chunker::Chunker;
use crate::repo::id::ObjectId;
use crate::repo::manifest::{Entry, RawBytes, RawLine};
use crate::repo::packer::{self};
use crate::repo::snapshot::{Root, Snapshot, SnapshotRecord, SnapshotStats};
use crate::repo::{RepoError, Repository};

/// Entries walked but not yet in the manifest, at most: the walk waits when
/// it is this far ahead of a slow file, which bounds the reorder buffer.
const IN_FLIGHT: usize = 8192;

/// Warnings kept in the snapshot record; the rest are counted.
const MAX_RECORDED_WARNINGS: usize = 1000;

#[derive(Debug, Clone, Default)]
pub struct BackupOptions {
    /// Trees to save, each under `tree/<its name>`.
    pub paths: Vec<PathBuf>,
    /// Sources with fixed prefixes, from a profile.
    pub roots: Vec<RootSpec>,
    /// The profile the snapshot is made for.
    pub profile: Option<String>,
    /// Facts the profile's collectors found.
    pub facts: std::collections::BTreeMap<String, String>,
    /// What the profile named that is absent here.
    pub notes: Vec<String>,
    /// Absolute paths to leave out whatever the patterns say (the repository).
    pub skip: Vec<PathBuf>,
    pub excludes: Vec<String>,
    pub tags: Vec<String>,
    pub time: Option<DateTime<FixedOffset>>,
    /// Marks a safety snapshot taken before an in-place restore.
    pub rollback: Option<crate::repo::snapshot::Rollback>,
    /// Marks one side of a `cairn run` pair.
    pub run: Option<crate::repo::snapshot::RunInfo>,
}

#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    #[error(transparent)]
    Repo(#[from] RepoError),
    #[error(transparent)]
    Pattern(#[from] PatternError),
    #[error("nothing to back up: give at least one path")]
    NoPaths,
    #[error("nothing to back up: {0} cannot be found")]
    NoSources(String),
    #[error("nothing to back up: {0} is the repository itself (or inside it); a repository is not backed up into itself")]
    OnlyRepository(String),
    #[error("not enough space for this backup in {location}: it is expected to add about {needed}, and {free} is free; free some space or back up into another repository")]
    NoSpace {
        location: String,
        needed: String,
        free: String,
    },
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
    /// Contents made by a collector: stored as they are, nothing is opened.
    content: Option<Arc<Vec<u8>>>,
    /// The device the walk saw the file on (the inode is in the entry).
    dev: u64,
    entry: Entry,
    status: FileStatus,
}

enum Done {
    Entry {
        entry: Entry,
        status: Option<FileStatus>,
        warning: Option<String>,
        /// The entry's manifest line, when it is the parent's unchanged.
        line: Option<Vec<u8>>,
    },
    /// Not saved; `path` is set when it was a file other names may link to.
    Skipped {
        path: Option<Vec<u8>>,
        warning: Option<String>,
    },
}

#[derive(Clone)]
struct Source {
    abs: PathBuf,
    prefix: String,
    collector: String,
    excludes: Excludes,
    /// Made by a collector rather than read from `abs`.
    content: Option<Arc<Vec<u8>>>,
    /// Recorded instead of `abs` as where the root came from.
    origin: Option<String>,
    /// The exclude patterns and tree options, as recorded in the root.
    patterns: Vec<String>,
    markers: Vec<String>,
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
    run_with_index(repo, opts, progress, None)
}

/// [`run`] with the repository's index already loaded by the caller (an
/// in-place restore taking its safety snapshot), so that it is not held
/// twice.
pub fn run_with_index(
    repo: &Repository,
    opts: &BackupOptions,
    progress: &Progress,
    loaded: Option<&crate::repo::index::Index>,
) -> Result<BackupOutcome, BackupError> {
    run_inner(repo, opts, progress, loaded, None)
}

/// Roots already walked, for [`run_walked`]. An in-place restore's plan
/// walks the roots and reads the snapshot it restores anyway; its safety
/// snapshot need do neither again.
pub struct Walked<'a> {
    /// In walk order, what a walk of `opts.roots` found, each item with the
    /// index of its root in `opts.roots` (which must be in manifest order).
    pub items: Vec<(usize, crate::collect::tree::TreeItem)>,
    /// The parent to match against instead of the newest snapshot of the
    /// same roots, with its manifest's lines, already read.
    pub parent: Option<(&'a Snapshot, Vec<RawLine>)>,
}

/// [`run_with_index`] of roots already walked (see [`Walked`]).
pub fn run_walked(
    repo: &Repository,
    opts: &BackupOptions,
    index: &crate::repo::index::Index,
    walked: Walked,
) -> Result<BackupOutcome, BackupError> {
    run_inner(repo, opts, &Progress::hidden(), Some(index), Some(walked))
}

fn run_inner(
    repo: &Repository,
    opts: &BackupOptions,
    progress: &Progress,
    loaded: Option<&crate::repo::index::Index>,
    replay: Option<Walked>,
) -> Result<BackupOutcome, BackupError> {
    let started = Instant::now();
    if opts.paths.is_empty() && opts.roots.is_empty() {
        return Err(BackupError::NoPaths);
    }
    let make_excludes = |extra: &[String]| -> Result<Excludes, PatternError> {
        let patterns: Vec<String> = opts.excludes.iter().chain(extra).cloned().collect();
        let mut excludes = Excludes::new(&patterns)?;
        for path in &opts.skip {
            excludes.skip_absolute(absolute(path));
        }
        Ok(excludes)
    };
    let sources = sources(&opts.paths, &opts.roots, &opts.excludes, &make_excludes)?;
    let sources = leave_out_the_repository(sources, &opts.skip)?;
    // Some missing sources make a partial snapshot; all of them, no snapshot.
    if sources
        .iter()
        .all(|s| s.content.is_none() && std::fs::symlink_metadata(&s.abs).is_err())
    {
        let names: Vec<String> = sources.iter().map(|s| s.abs.display().to_string()).collect();
        return Err(BackupError::NoSources(names.join(", ")));
    }
    let roots = recorded_roots(&sources);
    // The walk is the longest part of a backup of an unchanged tree: it
    // starts first, and only reads, so the checks below may still stop it.
    // Whether any snapshot exists says whether this backup is likely to
    // find most files unchanged.
    let snapshot_names = repo.snapshot_names()?;
    // A walk given is numbered by `opts.roots`: it is used only when the
    // sources are those roots, in that order.
    let same_order = opts.paths.is_empty()
        && sources.len() == opts.roots.len()
        && sources.iter().zip(&opts.roots).all(|(s, r)| s.prefix == r.prefix);
    let (walked, known) = match replay {
        Some(r) if same_order => (walk::replay(r.items, sources.len()), r.parent),
        _ => (walk::start(&sources, !snapshot_names.is_empty()), None),
    };
    let snapshots = repo.load_snapshots_named(&snapshot_names)?;
    tracing::debug!("{} snapshots loaded", snapshots.len());
    let host = crate::repo::lock::hostname();
    let (parent, parent_lines) = match known {
        Some((snapshot, lines)) => (Some(snapshot), Some(lines)),
        None => (find_parent(&snapshots, &host, &roots), None),
    };
    check_space(repo, &sources, &snapshots, parent.map(|p| p.record.stats.bytes))?;
    let own_index;
    let index = match loaded {
        Some(index) => index,
        None => {
            own_index = repo.load_index()?;
            &own_index
        }
    };
    tracing::debug!(
        "index loaded: {} blobs, {:?} CPU on this thread",
        index.len(),
        crate::progress::thread_cpu()
    );
    if let Some(p) = parent {
        tracing::info!("parent snapshot {}", p.id.short());
    }
    if progress.is_visible() {
        count_in_background(&sources, progress);
    }

    let matched = parent::Parent {
        snapshot: parent,
        lines: parent_lines,
    };
    let (manifest, mut tally) = pipeline(repo, index, matched, &sources, walked, progress)?;

    tally.stats.duration_secs = started.elapsed().as_secs_f64();
    let record = make_record(opts, host, roots, manifest, parent, &tally);
    // Packs and index are complete; only now may a snapshot refer to them.
    let id = repo.write_snapshot(&record)?;
    Ok(BackupOutcome {
        id,
        record,
        warnings: tally.warnings,
    })
}

/// Sources that are the repository itself, or lie inside it, are left out
/// with a warning (`cairn backup R` stored the repository into itself, and
/// again each run); the walk leaves the repository out of the others.
fn leave_out_the_repository(sources: Vec<Source>, skip: &[PathBuf]) -> Result<Vec<Source>, BackupError> {
    let real = |p: &Path| std::fs::canonicalize(p).unwrap_or_else(|_| absolute(p));
    let skip: Vec<PathBuf> = skip.iter().map(|k| real(k)).collect();
    let (inside, kept): (Vec<Source>, Vec<Source>) = sources
        .into_iter()
        .partition(|s| s.content.is_none() && skip.iter().any(|k| real(&s.abs).starts_with(k)));
    if kept.is_empty() && !inside.is_empty() {
        let names: Vec<String> = inside.iter().map(|s| s.abs.display().to_string()).collect();
        return Err(BackupError::OnlyRepository(names.join(", ")));
    }
    for s in &inside {
        tracing::warn!("{} is the repository, or inside it: left out", s.abs.display());
    }
    Ok(kept)
}

/// How each source is recorded in the snapshot.
fn recorded_roots(sources: &[Source]) -> Vec<Root> {
    sources
        .iter()
        .map(|s| Root {
            collector: s.collector.clone(),
            path: match &s.origin {
                Some(origin) => RawBytes(origin.as_bytes().to_vec()),
                None => RawBytes(os_bytes(s.abs.as_os_str())),
            },
            prefix: s.prefix.clone(),
            excludes: s.patterns.clone(),
            gitignore: s.excludes.gitignore,
            one_file_system: s.excludes.one_file_system,
            exclude_if_present: s.markers.clone(),
        })
        .collect()
}

/// The snapshot record of a finished backup; warnings past
/// [`MAX_RECORDED_WARNINGS`] are counted, not kept.
fn make_record(
    opts: &BackupOptions,
    host: String,
    roots: Vec<Root>,
    manifest: Vec<ObjectId>,
    parent: Option<&Snapshot>,
    tally: &Tally,
) -> SnapshotRecord {
    let mut recorded = tally.warnings.clone();
    if recorded.len() > MAX_RECORDED_WARNINGS {
        let more = recorded.len() - MAX_RECORDED_WARNINGS;
        recorded.truncate(MAX_RECORDED_WARNINGS);
        recorded.push(format!("... and {more} more warnings"));
    }
    SnapshotRecord {
        version: crate::repo::snapshot::RECORD_VERSION,
        time: opts.time.unwrap_or_else(|| Local::now().fixed_offset()),
        host,
        user: crate::repo::lock::username(),
        profile: opts.profile.clone(),
        tags: opts.tags.clone(),
        roots,
        manifest,
        parent: parent.map(|p| p.id),
        partial: tally.partial,
        warnings: recorded,
        notes: opts.notes.clone(),
        facts: opts.facts.clone(),
        stats: tally.stats.clone(),
        tool_version: format!("cairn {}", env!("CARGO_PKG_VERSION")),
        rollback: opts.rollback.clone(),
        run: opts.run.clone(),
        repaired: None,
        copied_from: None,
    }
}

/// Walk, workers, assembler and pack writer, wired together: returns the
/// manifest's blobs and what was found on the way.
fn pipeline(
    repo: &Repository,
    index: &crate::repo::index::Index,
    parent: parent::Parent,
    sources: &[Source],
    walked: walk::WalkFeed,
    progress: &Progress,
) -> Result<(Vec<ObjectId>, Tally), RepoError> {
    std::thread::scope(|s| -> Result<(Vec<ObjectId>, Tally), RepoError> {
        let (packer, writer) = packer::start(repo, index);
        let packer = Arc::new(packer);
        let writer = s.spawn(move || writer.run());
        let (job_tx, job_rx) = bounded::<FileJob>(64);
        let (done_tx, done_rx) = unbounded::<Vec<(u64, Done)>>();
        let (permit_tx, permit_rx) = bounded::<()>(IN_FLIGHT);
        let threads = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
        let workers: Vec<_> = (0..threads)
            .map(|_| {
                let (jobs, done, packer, chunker) = (
                    job_rx.clone(),
                    done_tx.clone(),
                    packer.clone(),
                    repo.chunker().clone(),
                );
                s.spawn(move || store::store_files(jobs, done, &packer, &chunker, progress))
            })
            .collect();
        drop(job_rx);
        let assembler = {
            let packer = packer.clone();
            s.spawn(move || assemble::assemble(done_rx, permit_rx, &packer, Chunker::for_manifest()))
        };
        let mut walk_tally = Tally::default();
        let outlets = walk::Outlets {
            jobs: &job_tx,
            done: &done_tx,
            permits: &permit_tx,
            progress,
        };
        let walked = walk::walk_sources(repo, index, parent, sources, walked, outlets, &mut walk_tally);
        tracing::debug!(
            "walk done, {:?} CPU on this thread",
            crate::progress::thread_cpu()
        );
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
    })
}

/// Absolute, lexically normalised source paths and their manifest prefixes
/// (`tree/<name>`, with `-2`, `-3` ... when names repeat), sorted by prefix so
/// that the roots are walked in manifest order.
fn sources(
    paths: &[PathBuf],
    fixed: &[RootSpec],
    global: &[String],
    make_excludes: &dyn Fn(&[String]) -> Result<Excludes, PatternError>,
) -> Result<Vec<Source>, PatternError> {
    let with_global = |extra: &[String]| -> Vec<String> { global.iter().chain(extra).cloned().collect() };
    let mut out = Vec::new();
    let mut taken: HashSet<String> = fixed.iter().map(|r| r.prefix.clone()).collect();
    for root in fixed {
        out.push(Source {
            abs: absolute(&root.path),
            prefix: root.prefix.clone(),
            collector: root.collector.clone(),
            excludes: {
                let mut excludes = make_excludes(&root.excludes)?;
                excludes.gitignore = root.gitignore;
                excludes.one_file_system = root.one_file_system;
                excludes.markers = root.exclude_if_present.iter().map(Into::into).collect();
                excludes
            },
            content: root.content.clone().map(Arc::new),
            origin: root.origin.clone(),
            patterns: with_global(&root.excludes),
            markers: root.exclude_if_present.clone(),
        });
    }
    for p in paths {
        let abs = absolute(p);
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
        out.push(Source {
            abs,
            prefix,
            collector: "tree".into(),
            excludes: make_excludes(&[])?,
            content: None,
            origin: None,
            patterns: with_global(&[]),
            markers: Vec::new(),
        });
    }
    out.sort_by(|a, b| crate::repo::manifest::path_cmp(a.prefix.as_bytes(), b.prefix.as_bytes()));
    Ok(out)
}

/// The path made absolute and normalised (see [`normalize`]).
fn absolute(path: &Path) -> PathBuf {
    normalize(&std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf()))
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

/// Refuses to start a backup that cannot fit. What a backup adds is bounded
/// by what it reads, stored at the ratio this repository has shown so far
/// (compressed, after dedup), plus a margin for index and manifest. The
/// bound is taken cheaply first (the parent snapshot's size, or the space in
/// use on the sources' filesystems) and by walking the sources only when
/// that is not enough. The pack writer checks again before every pack, so a
/// bound that proves too small still stops cleanly (`RepoError::NoSpace`).
fn check_space(
    repo: &Repository,
    sources: &[Source],
    snapshots: &[Snapshot],
    guess: Option<u64>,
) -> Result<(), BackupError> {
    let Some(free) = repo.sink().free_space() else {
        return Ok(());
    };
    let ratio = stored_ratio(snapshots);
    // Beside the packs: index files, the manifest, the record, and tar's
    // padding (a fixed 4 MiB refused a 200 KB backup on a 3 MiB share).
    let stored = |bytes: u64| {
        let packed = (bytes as f64 * ratio) as u64;
        packed.saturating_add(256 << 10).saturating_add(packed / 32)
    };
    if guess.is_some_and(|g| free > stored(g.saturating_mul(2))) {
        return Ok(());
    }
    // Nothing on the sources' filesystems can be larger than what is in use
    // on them: when that fits, no walk is needed.
    let mut devices = HashSet::new();
    let mut used = 0u64;
    for s in sources.iter().filter(|s| s.content.is_none()) {
        if let Ok(meta) = std::fs::metadata(&s.abs) {
            if devices.insert(meta::identity(&meta).0) {
                used =
                    used.saturating_add(meta::fs_space(&s.abs).map(|space| space.used).unwrap_or(u64::MAX));
            }
        }
    }
    if free > stored(used) {
        return Ok(());
    }
    let needed = stored(source_bytes(sources));
    if needed > free {
        return Err(BackupError::NoSpace {
            location: repo.sink().location(),
            needed: indicatif::HumanBytes(needed).to_string(),
            free: indicatif::HumanBytes(free).to_string(),
        });
    }
    Ok(())
}

/// Bytes stored per byte added, over the snapshots that added data: what
/// compression and frame packing did here so far. 1 without history; at
/// most 1.05 (incompressible data still costs its tar and zstd framing).
fn stored_ratio(snapshots: &[Snapshot]) -> f64 {
    let (added, stored) = snapshots.iter().fold((0u64, 0u64), |(a, s), snap| {
        (
            a.saturating_add(snap.record.stats.bytes_added),
            s.saturating_add(snap.record.stats.bytes_stored),
        )
    });
    if added < (1 << 20) {
        return 1.0;
    }
    (stored as f64 / added as f64).clamp(0.01, 1.05)
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
fn count_in_background(sources: &[Source], progress: &Progress) {
    let sources: Vec<Source> = sources.to_vec();
    let progress = progress.clone();
    std::thread::spawn(move || progress.set_total(source_bytes(&sources)));
}

/// The size of every file the sources hold (each hard-linked file once),
/// and of the contents collectors made.
fn source_bytes(sources: &[Source]) -> u64 {
    let mut total = 0;
    let mut links = HashSet::new();
    for s in sources {
        if let Some(content) = &s.content {
            total += content.len() as u64;
            continue;
        }
        for item in tree::walk(&s.abs, &s.prefix, &s.excludes) {
            if let TreeItem::Entry(tree::Walked { stat, .. }) = item {
                let first_name = stat.hardlink_key().is_none_or(|key| links.insert(key));
                if stat.is_file() && first_name {
                    total += stat.size;
                }
            }
        }
    }
    total
}
