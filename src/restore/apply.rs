//! Writing a plan. Either the manifest and the disk are merged again, or
//! (an in-place restore) only the plan's items are looked at again; in both
//! cases what is on disk now decides, so a change since the plan is seen.
//! Every entry that differs is put in place through directory descriptors
//! (`handles`, `fsops`): files by parallel workers at a temporary name,
//! verified and renamed (`write`); links, special files and directories on
//! this thread; removals and directory metadata last, deepest first.

use std::collections::HashSet;
use std::ffi::OsStr;
use std::hash::{Hash, Hasher};
use std::io;
use std::sync::Mutex;

use crossbeam_channel::{bounded, Sender};

use super::fsops::is_temp_name;
use super::handles::Handles;
use super::plan::{self, classify, Action, PlanItem, Target, Visit};
use super::prefetch::{self, Frames};
use super::write::{write_file, write_special, FileJob, Shared};
use super::{path_key, RestoreError, RestoreSummary};
use crate::interrupt;
use crate::meta;
use crate::progress::Progress;
use crate::repo::index::Index;
use crate::repo::manifest::{Entry, EntryKind};
use crate::repo::reader::{BlobReader, Preloaded};
use crate::repo::snapshot::Snapshot;
use crate::repo::{RepoError, Repository};
use crate::select::Selection;

/// Files handed to a worker at once: consecutive files share frames, so
/// keeping them together lets the worker's frame cache serve them.
const BATCH_BYTES: u64 = 4 << 20;
const BATCH_FILES: usize = 64;

/// Names of things left in place that are kept in the summary, at most.
const MAX_LISTED: usize = 1000;

#[derive(Debug, Clone, Copy, Default)]
pub struct ApplyOptions {
    /// Remove what is under the roots but not in the snapshot.
    pub delete: bool,
    /// Compare files by content hash, not size and mtime.
    pub checksum: bool,
    /// fsync every file before it is renamed into place (an existing file
    /// is always synced before it is replaced).
    pub fsync: bool,
    /// Little of the snapshot is written: read frames sparsely.
    pub sparse: bool,
}

/// What the writer keeps for after the merge.
#[derive(Default)]
struct Later {
    dirs: Vec<(usize, Entry)>,
    hardlinks: Vec<(usize, Entry)>,
    /// Entries whose place holds a directory that must go first.
    deferred: Vec<(usize, Entry)>,
    extras: Vec<(usize, Vec<u8>, bool)>,
}

/// Writes `snapshot` over `targets` as `selection` and `opts` say.
// The snapshot, where it goes, which part, and how: each is needed.
#[allow(clippy::too_many_arguments)]
pub fn apply(
    repo: &Repository,
    index: &Index,
    snapshot: &Snapshot,
    targets: &[Target],
    selection: &Selection,
    items: Option<Vec<PlanItem>>,
    opts: ApplyOptions,
    preloaded: &Preloaded,
    progress: &Progress,
) -> Result<RestoreSummary, RestoreError> {
    let shared = Shared {
        summary: Mutex::new(RestoreSummary::default()),
        present: Mutex::new(HashSet::new()),
        pending: Mutex::new(Vec::new()),
        items_mode: items.is_some(),
        failed: Mutex::new(HashSet::new()),
        lost: Mutex::new(HashSet::new()),
    };
    let mut later = Later::default();
    let mut bases = Vec::new();
    std::thread::scope(|s| -> Result<(), RestoreError> {
        let (workers, txs) = spawn_workers(s, repo, index, opts, preloaded, &shared, progress);
        let mut writer = Writer {
            handles: Handles::new(targets),
            shared: &shared,
            later: &mut later,
            batches: Batches::new(txs, index),
            opts,
            crypto: repo.crypto().clone(),
            skip_under: None,
        };
        let merged = match items.map(|items| writer.replay(targets, items)) {
            Some(Ok(false)) => Ok(()),
            Some(Err(e)) => Err(e),
            // No plan items, or the disk changed under them.
            Some(Ok(true)) | None => writer.merge(repo, index, snapshot, targets, selection),
        };
        tracing::debug!("merge done");
        writer.flush();
        bases = std::mem::take(&mut writer.handles.bases);
        drop(writer);
        let mut panicked = false;
        for w in workers {
            panicked |= w.join().is_err();
        }
        if panicked {
            return Err(RestoreError::WorkerPanicked);
        }
        merged
    })?;
    if interrupt::is_set() {
        // Written but not in place: the old files stay, their temporary
        // copies go.
        shared.discard_pending();
        return Err(RepoError::Interrupted.into());
    }
    tracing::debug!("files written");
    shared.commit(progress);
    tracing::debug!("merge and file writes done");
    let mut handles = Handles::new(targets);
    handles.bases = bases;
    finish(repo, index, &mut handles, later, &shared, opts, progress);
    // The earliest time recorded for a base is the one from before.
    for (dir, secs, nsecs) in handles.bases.iter().rev() {
        let _ = dir.set_times_nofollow(OsStr::new("."), *secs, *nsecs);
    }
    Ok(shared.summary.into_inner().unwrap_or_else(|e| e.into_inner()))
}

type Worker<'scope> = std::thread::ScopedJoinHandle<'scope, ()>;

/// The workers that write files' contents: as many as cores, or as
/// requests the store wants in flight (a network store: each waits on its
/// reads, and a fetcher in front of each reads ahead). Returns them and the
/// queue of each.
fn spawn_workers<'scope, 'env>(
    s: &'scope std::thread::Scope<'scope, 'env>,
    repo: &'env Repository,
    index: &'env Index,
    opts: ApplyOptions,
    preloaded: &'env Preloaded,
    shared: &'env Shared,
    progress: &'env Progress,
) -> (Vec<Worker<'scope>>, Vec<Queue>) {
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    let threads = cores.max(repo.sink().capabilities().concurrency.min(16));
    let ahead = repo.sink().capabilities().concurrency > 1;
    let mut queues = Vec::with_capacity(threads);
    let workers = (0..threads)
        .map(|_| {
            let (tx, rx) = bounded::<(Vec<FileJob>, Frames)>(2);
            let worker = s.spawn(move || {
                let mut reader = BlobReader::new(repo, index).with_preloaded(preloaded);
                if opts.sparse {
                    reader = reader.sparse();
                }
                for (batch, frames) in rx {
                    reader.prefetched(frames);
                    for job in batch {
                        if interrupt::is_set() {
                            return;
                        }
                        let result = write_file(&mut reader, &job, opts.fsync, progress);
                        shared.written_or_pending(job, result, progress);
                    }
                }
            });
            let fetcher = ahead
                .then(|| prefetch::spawn(s, repo, index, preloaded, tx.clone()))
                .flatten();
            queues.push(match fetcher {
                Some(fetcher) => Queue::Ahead(fetcher),
                None => Queue::Direct(tx),
            });
            worker
        })
        .collect();
    (workers, queues)
}

/// The merge's side of the restore: decides, and makes everything but
/// files' contents.
struct Writer<'a, 'b> {
    handles: Handles<'a>,
    shared: &'b Shared,
    later: &'b mut Later,
    batches: Batches<'a>,
    opts: ApplyOptions,
    /// How the repository names blobs (to test live files against entries).
    crypto: crate::repo::crypto::Crypto,
    /// A directory about to be replaced by a non-directory: what the walk
    /// finds inside it goes with it.
    skip_under: Option<(usize, Vec<u8>)>,
}

impl Writer<'_, '_> {
    fn merge(
        &mut self,
        repo: &Repository,
        index: &Index,
        snapshot: &Snapshot,
        targets: &[Target],
        selection: &Selection,
    ) -> Result<(), RestoreError> {
        plan::visit(
            repo,
            index,
            snapshot,
            targets,
            selection,
            self.opts.checksum,
            None,
            &mut |v| {
                match v {
                    Visit::Unchanged { path, .. } => {
                        self.shared.present(path);
                        self.shared.summary().unchanged += 1;
                    }
                    Visit::Entry {
                        root,
                        entry,
                        live,
                        action: Ok(action),
                    } => self.entry(root, entry, live, action),
                    Visit::Entry {
                        entry,
                        action: Err(e),
                        ..
                    } => self.shared.fail(entry.path.as_bytes(), &e),
                    Visit::Extra { root, path, stat } => self.extra(root, path, stat),
                    Visit::Unreadable { path, error } => {
                        let msg = format!("cannot read {}: {error}; left as it is", path.display());
                        self.shared.summary().warnings.push(msg);
                    }
                    Visit::Outside { path } => self
                        .shared
                        .fail_with(&path, "lies outside every root of the snapshot; skipped"),
                }
                Ok::<(), RestoreError>(())
            },
        )?;
        Ok(())
    }

    /// Visits only the plan's items, each looked at again as it is now.
    /// Returns whether the disk changed under the plan: a directory the plan
    /// found in place is not any more, and what was in it must be looked at
    /// again (by a whole merge).
    fn replay(&mut self, targets: &[Target], items: Vec<PlanItem>) -> Result<bool, RestoreError> {
        let remade = |a: Option<Action>| matches!(a, Some(Action::Create | Action::Replace));
        let mut stale = false;
        for item in items {
            if interrupt::is_set() {
                return Err(RepoError::Interrupted.into());
            }
            match item {
                PlanItem::Entry { root, entry, planned } => {
                    let path = entry.path.as_bytes();
                    let dest = targets[root].dest_of(path);
                    let action = self.handles.live(root, path).and_then(|live| {
                        Ok((
                            live,
                            classify(&entry, live.as_ref(), self.opts.checksum, &self.crypto, &dest)?,
                        ))
                    });
                    match action {
                        Ok((live, action)) => {
                            stale |= entry.kind == EntryKind::Dir && remade(Some(action)) && !remade(planned);
                            self.entry(root, entry, live, action)
                        }
                        Err(e) => self.shared.fail(entry.path.as_bytes(), &e),
                    }
                }
                PlanItem::Extra { root, path } => match self.handles.live(root, &path) {
                    Ok(Some(stat)) => self.extra(root, path, stat),
                    Ok(None) => {}
                    Err(e) => self.shared.fail(&path, &e),
                },
            }
        }
        Ok(stale)
    }

    fn entry(&mut self, root: usize, entry: Entry, live: Option<meta::Stat>, action: Action) {
        let path = entry.path.as_bytes().to_vec();
        let live_dir = live.as_ref().is_some_and(|l| l.is_dir());
        match (entry.kind, action) {
            (EntryKind::Dir, Action::Create | Action::Replace) => {
                if let Err(e) = self.make_dir(root, &path, live.is_some()) {
                    return self.shared.fail(&path, &e);
                }
                self.later.dirs.push((root, entry));
            }
            (EntryKind::Dir, _) => self.later.dirs.push((root, entry)),
            (EntryKind::Hardlink, _) => self.later.hardlinks.push((root, entry)),
            (_, Action::Replace) if live_dir => {
                self.skip_under = Some((root, path));
                self.later.deferred.push((root, entry));
            }
            (_, Action::Unchanged) => {
                self.shared.present(&path);
                self.shared.summary().unchanged += 1;
            }
            (_, Action::Metadata) => {
                let result = self.set_metadata(root, &entry, live);
                match result {
                    Ok(warnings) => {
                        self.shared.warn(&path, warnings);
                        self.shared.present(&path);
                        self.shared.summary().metadata += 1;
                    }
                    Err(e) => self.shared.fail(&path, &e),
                }
            }
            (EntryKind::File, _) => {
                if let Some(blob) = super::missing_blob(self.batches.index, &entry) {
                    return self.shared.lose(&path, &format!("blob {blob} is in no index"));
                }
                match self.handles.parent_of(root, &path) {
                    Ok((dir, name)) => self.queue(FileJob {
                        root,
                        dir,
                        name,
                        entry,
                        replacing: live.is_some(),
                    }),
                    Err(e) => self.shared.fail(&path, &e),
                }
            }
            (_, _) => {
                let result = self
                    .handles
                    .parent_of(root, &path)
                    .and_then(|(dir, name)| write_special(&dir, &name, &entry));
                self.shared.special_written(&entry, result);
            }
        }
    }

    fn make_dir(&mut self, root: usize, path: &[u8], replacing: bool) -> io::Result<()> {
        let (dir, name) = self.handles.parent_of(root, path)?;
        if replacing {
            dir.unlink(&name)?;
        }
        match dir.mkdir(&name) {
            Err(e)
                if e.kind() == io::ErrorKind::AlreadyExists
                    && dir.stat(&name)?.is_some_and(|s| s.is_dir()) =>
            {
                Ok(())
            }
            other => other,
        }
    }

    /// Owner, mode and mtime of something whose content is right.
    fn set_metadata(
        &mut self,
        root: usize,
        entry: &Entry,
        live: Option<meta::Stat>,
    ) -> io::Result<Vec<String>> {
        let (dir, name) = self.handles.parent_of(root, entry.path.as_bytes())?;
        let mut warnings = Vec::new();
        if entry.kind == EntryKind::File {
            let file = dir.open_read(&name)?;
            let now = meta::Stat::from_metadata(&file.metadata()?);
            if !now.is_file() || Some(now.identity()) != live.map(|l| l.identity()) {
                return Err(io::Error::other("changed while being restored"));
            }
            meta::apply_metadata_to_file(&file, entry, &mut warnings)?;
        } else {
            dir.set_meta_nofollow(&name, entry, &mut warnings)?;
        }
        Ok(warnings)
    }

    fn extra(&mut self, root: usize, path: Vec<u8>, stat: meta::Stat) {
        if let Some((r, dir)) = &self.skip_under {
            if *r == root && plan::under(&path, dir) {
                return;
            }
        }
        let name = path.rsplit(|b| *b == b'/').next().unwrap_or_default();
        // Temporary names of a killed restore are always cleared.
        if self.opts.delete || is_temp_name(name) {
            self.later.extras.push((root, path, stat.is_dir()));
        } else {
            let mut s = self.shared.summary();
            s.left_count += 1;
            if s.left.len() < MAX_LISTED {
                s.left.push(String::from_utf8_lossy(&path).into_owned());
            }
        }
    }

    fn queue(&mut self, job: FileJob) {
        // Scattered files share no frames: hand them over at once, so
        // writing them overlaps with the rest of the merge.
        let files = if self.opts.sparse { 1 } else { BATCH_FILES };
        self.batches.push(job, files);
    }

    fn flush(&mut self) {
        self.batches.flush();
    }
}

/// Where a worker's batches go: straight to it, or to its fetcher first.
enum Queue {
    Direct(Sender<(Vec<FileJob>, Frames)>),
    Ahead(Sender<Vec<FileJob>>),
}

impl Queue {
    /// Hands a batch over; a worker that stopped (interrupted) takes none.
    fn send(&self, batch: Vec<FileJob>) {
        match self {
            Queue::Direct(tx) => drop(tx.send((batch, Vec::new()))),
            Queue::Ahead(tx) => drop(tx.send(batch)),
        }
    }
}

/// Files to write, in batches, one queue per worker. A file goes to the
/// worker its first frame belongs to, so a frame holding many small files
/// is fetched and decoded by one worker, not by each that gets some of them
/// (a full restore of a source tree fetched each frame 2.5 times).
struct Batches<'a> {
    index: &'a Index,
    queues: Vec<(Queue, Vec<FileJob>, u64)>,
    /// The next worker for a file without blobs.
    turn: usize,
}

impl<'a> Batches<'a> {
    fn new(txs: Vec<Queue>, index: &'a Index) -> Batches<'a> {
        Batches {
            index,
            queues: txs.into_iter().map(|tx| (tx, Vec::new(), 0)).collect(),
            turn: 0,
        }
    }

    fn worker_of(&mut self, job: &FileJob) -> usize {
        let n = self.queues.len().max(1);
        match job
            .entry
            .blobs
            .first()
            .and_then(|id| frame_share(self.index, id, n))
        {
            Some(share) => share,
            None => {
                self.turn = (self.turn + 1) % n;
                self.turn
            }
        }
    }

    fn push(&mut self, job: FileJob, files: usize) {
        let w = self.worker_of(&job);
        let Some((tx, batch, bytes)) = self.queues.get_mut(w) else {
            return;
        };
        *bytes = bytes.saturating_add(job.entry.size);
        batch.push(job);
        if *bytes >= BATCH_BYTES || batch.len() >= files {
            *bytes = 0;
            tx.send(std::mem::take(batch));
        }
    }

    fn flush(&mut self) {
        for (tx, batch, bytes) in &mut self.queues {
            *bytes = 0;
            if !batch.is_empty() {
                tx.send(std::mem::take(batch));
            }
        }
    }
}

/// Which of `n` shares the frame holding `id` falls to (none when no index
/// lists it): work split this way never decodes a frame twice.
pub(super) fn frame_share(index: &Index, id: &crate::repo::id::ObjectId, n: usize) -> Option<usize> {
    let (pack, loc) = index.get(id)?;
    let mut h = std::hash::DefaultHasher::new();
    (pack, loc.frame_offset).hash(&mut h);
    Some((h.finish() % n.max(1) as u64) as usize)
}

/// After the merge: what had to wait for the files (kind changes, hard
/// links), then removals deepest first, then directories' metadata.
fn finish(
    repo: &Repository,
    index: &Index,
    handles: &mut Handles,
    later: Later,
    shared: &Shared,
    opts: ApplyOptions,
    progress: &Progress,
) {
    let targets = handles.targets;
    let mut reader = BlobReader::new(repo, index);
    for (root, entry) in later.deferred {
        let path = entry.path.as_bytes().to_vec();
        let result = handles.parent_of(root, &path).and_then(|(dir, name)| {
            dir.remove_tree(&name)?;
            Ok((dir, name))
        });
        match (result, entry.kind) {
            (Err(e), _) => shared.fail(&path, &e),
            (Ok((dir, name)), EntryKind::File) => {
                let job = FileJob {
                    root,
                    dir,
                    name,
                    entry,
                    replacing: true,
                };
                let result = write_file(&mut reader, &job, opts.fsync, progress);
                shared.written_or_pending(job, result, progress);
                shared.commit(progress);
            }
            (Ok((dir, name)), _) => shared.special_written(&entry, write_special(&dir, &name, &entry)),
        }
    }
    for (root, entry) in later.hardlinks {
        let result = link(handles, targets, root, &entry, shared);
        match result {
            Ok(true) => shared.summary().files += 1,
            Ok(false) => shared.summary().unchanged += 1,
            Err(_) if first_lost(&entry, shared) => {
                shared.lose(entry.path.as_bytes(), "a hard link to a file whose data is lost")
            }
            Err(e) => shared.fail(entry.path.as_bytes(), &e),
        }
    }
    for (root, path, is_dir) in later.extras.into_iter().rev() {
        match remove(handles, root, &path, is_dir) {
            Ok(true) => shared.summary().deleted += 1,
            Ok(false) => {}
            Err(e) if is_dir && e.raw_os_error() == Some(libc::ENOTEMPTY) => shared.warn(
                &path,
                vec!["kept: it holds entries the snapshot leaves out (excluded)".into()],
            ),
            Err(e) => shared.fail(&path, &e),
        }
    }
    for (root, entry) in later.dirs.into_iter().rev() {
        let mut warnings = Vec::new();
        match dir_metadata(handles, root, &entry, &mut warnings) {
            Ok(true) => shared.summary().dirs += 1,
            Ok(false) => shared.summary().unchanged += 1,
            Err(e) => shared.fail(entry.path.as_bytes(), &e),
        }
        shared.warn(entry.path.as_bytes(), warnings);
    }
}

/// Removes an extra entry (its children went first); whether it was there.
fn remove(handles: &mut Handles, root: usize, path: &[u8], is_dir: bool) -> io::Result<bool> {
    let (dir, name) = match handles.parent_of(root, path) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
        other => other?,
    };
    let result = if is_dir {
        dir.rmdir(&name)
    } else {
        dir.unlink(&name)
    };
    match result {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(e),
    }
}

/// Sets a directory's recorded metadata through its handle when it
/// differs; whether it did.
fn dir_metadata(
    handles: &mut Handles,
    root: usize,
    entry: &Entry,
    warnings: &mut Vec<String>,
) -> io::Result<bool> {
    let (dir, name) = handles.parent_of(root, entry.path.as_bytes())?;
    let file = dir.open_read(&name)?;
    let now = meta::Stat::from_metadata(&file.metadata()?);
    if !now.is_dir() {
        return Err(io::Error::other("is no longer a directory"));
    }
    if !plan::metadata_differs(entry, &now) {
        return Ok(false);
    }
    meta::apply_metadata_to_file(&file, entry, warnings)?;
    Ok(true)
}

/// Whether a hard link's first name was not restored because its data
/// is lost.
fn first_lost(entry: &Entry, shared: &Shared) -> bool {
    let first = entry.target.as_ref().map(|t| t.as_bytes()).unwrap_or_default();
    shared
        .lost
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .contains(&path_key(first))
}

/// Makes a hard link to the entry's first name unless it is one already;
/// whether it wrote anything.
fn link(
    handles: &mut Handles,
    targets: &[Target],
    root: usize,
    entry: &Entry,
    shared: &Shared,
) -> io::Result<bool> {
    let first = entry.target.as_ref().map(|t| t.as_bytes()).unwrap_or_default();
    let key = path_key(first);
    let present = shared
        .present
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .contains(&key)
        || (shared.items_mode
            && !shared
                .failed
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .contains(&key));
    let first_root = targets
        .iter()
        .position(|t| plan::under(first, t.prefix.as_bytes()));
    let (Some(first_root), true) = (first_root, present) else {
        return Err(io::Error::other("its first name was not restored"));
    };
    let (fdir, fname) = handles.parent_of(first_root, first)?;
    let first_stat = fdir.stat(&fname)?;
    let (dir, name) = handles.parent_of(root, entry.path.as_bytes())?;
    let here = dir.stat(&name)?;
    match (first_stat, here) {
        (Some(a), Some(b)) if a.identity() == b.identity() => return Ok(false),
        (_, Some(b)) if b.is_dir() => dir.remove_tree(&name)?,
        _ => {}
    }
    let tmp = dir.link_temp(&fdir, &fname, &name)?;
    dir.rename(&tmp, &name).inspect_err(|_| {
        let _ = dir.unlink(&tmp);
    })?;
    Ok(true)
}
