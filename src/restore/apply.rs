//! Writing a plan: the manifest and the disk are merged again (so what
//! changed since the plan is seen), and every entry that differs is put in
//! place through directory descriptors (see `fsops`). Files are written by
//! parallel workers to a temporary name, verified against their hash and
//! renamed over the old one; links, special files and directories are made
//! on this thread; directory metadata is set last, deepest first.

use std::collections::HashSet;
use std::ffi::{OsStr, OsString};
use std::io::{self, Write};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use crossbeam_channel::{bounded, Sender};

use super::fsops::{is_temp_name, DirHandle};
use super::plan::{self, classify, Action, PlanItem, Target, Visit};
use super::{path_key, RestoreError, RestoreSummary};
use crate::interrupt;
use crate::meta::{self, bytes_to_path};
use crate::progress::Progress;
use crate::repo::id::ObjectId;
use crate::repo::index::Index;
use crate::repo::manifest::{Entry, EntryKind};
use crate::repo::reader::BlobReader;
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

/// Directory descriptors along manifest paths: the chain of the last path
/// stays open, since manifest order visits siblings together.
struct Handles<'a> {
    targets: &'a [Target],
    root: Option<usize>,
    base: Option<Arc<DirHandle>>,
    chain: Vec<(OsString, Arc<DirHandle>)>,
    /// Each base directory with its mtime when first opened: it lies
    /// outside the roots, so a restore puts its mtime back at the end.
    bases: Vec<(Arc<DirHandle>, i64, u32)>,
}

impl<'a> Handles<'a> {
    fn new(targets: &'a [Target]) -> Handles<'a> {
        Handles {
            targets,
            root: None,
            base: None,
            chain: Vec::new(),
            bases: Vec::new(),
        }
    }

    /// The directory holding the entry at `path` (of root `root`), and the
    /// entry's name in it. Missing directories on the way (between the base
    /// and the root, or left out by `--include`) are created 0700: they
    /// have no metadata to apply.
    fn parent_of(&mut self, root: usize, path: &[u8]) -> io::Result<(Arc<DirHandle>, OsString)> {
        self.open_parent(root, path, true)
    }

    /// What is at `path` now, without creating anything on the way.
    fn live(&mut self, root: usize, path: &[u8]) -> io::Result<Option<meta::Stat>> {
        match self.open_parent(root, path, false) {
            Ok((dir, name)) => dir.stat(&name),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    fn open_parent(
        &mut self,
        root: usize,
        path: &[u8],
        create: bool,
    ) -> io::Result<(Arc<DirHandle>, OsString)> {
        let target = &self.targets[root];
        if self.root != Some(root) {
            self.chain.clear();
            self.base = None;
            self.root = Some(root);
        }
        let base = match &self.base {
            Some(b) => b.clone(),
            None => {
                std::fs::DirBuilder::new().recursive(true).create(&target.base)?;
                let b = Arc::new(DirHandle::open_path(&target.base)?);
                if let Ok(Some(st)) = b.stat(OsStr::new(".")) {
                    self.bases.push((b.clone(), st.mtime, st.mtime_nsec));
                }
                self.base = Some(b.clone());
                b
            }
        };
        let rest = path.get(target.prefix.len() + 1..).unwrap_or_default();
        let mut names: Vec<OsString> = target.lead.clone();
        names.extend(
            rest.split(|b| *b == b'/')
                .filter(|c| !c.is_empty())
                .map(|c| bytes_to_path(c).into_os_string()),
        );
        let name = names.pop().unwrap_or_default();
        let same = self
            .chain
            .iter()
            .zip(&names)
            .take_while(|((have, _), want)| have == *want)
            .count();
        self.chain.truncate(same);
        for component in names.iter().skip(same) {
            let parent = self
                .chain
                .last()
                .map(|(_, h)| h.clone())
                .unwrap_or_else(|| base.clone());
            let dir = match parent.open_dir(component) {
                Err(e) if e.kind() == io::ErrorKind::NotFound && create => {
                    parent.mkdir(component)?;
                    parent.open_dir(component)?
                }
                other => other?,
            };
            self.chain.push((component.clone(), Arc::new(dir)));
        }
        let parent = self.chain.last().map(|(_, h)| h.clone()).unwrap_or(base);
        Ok((parent, name))
    }
}

/// A file for a worker to write.
struct FileJob {
    root: usize,
    dir: Arc<DirHandle>,
    name: OsString,
    entry: Entry,
    /// Something is there now: sync before renaming over it.
    replacing: bool,
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

/// Shared between the writer thread and the workers.
struct Shared {
    summary: Mutex<RestoreSummary>,
    /// Files in place (written, or found unchanged), as path keys: a hard
    /// link may only point at one of these.
    present: Mutex<HashSet<u64>>,
    /// Files written at a temporary name, waiting to be synced and renamed.
    pending: Mutex<Vec<Pending>>,
    /// Only the plan's items are visited: a file that is not among them was
    /// unchanged, so is in place unless it failed.
    items_mode: bool,
    failed: Mutex<HashSet<u64>>,
}

/// A file written and verified at `tmp`, to be synced and renamed.
struct Pending {
    job: FileJob,
    tmp: OsString,
    warnings: Vec<String>,
}

/// Files synced at once: one `syncfs` for the batch instead of an fsync
/// per file (which costs a disk flush each), and at most this many
/// directory handles held open meanwhile.
const SYNC_BATCH: usize = 256;

impl Shared {
    fn summary(&self) -> std::sync::MutexGuard<'_, RestoreSummary> {
        self.summary.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn fail(&self, what: &[u8], e: &dyn std::fmt::Display) {
        self.failed
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(path_key(what));
        self.summary()
            .errors
            .push(format!("{}: {e}", String::from_utf8_lossy(what)));
    }

    fn warn(&self, what: &[u8], warnings: Vec<String>) {
        if !warnings.is_empty() {
            let path = String::from_utf8_lossy(what);
            self.summary()
                .warnings
                .extend(warnings.into_iter().map(|w| format!("{path}: {w}")));
        }
    }

    fn present(&self, path: &[u8]) {
        self.present
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(path_key(path));
    }
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
    progress: &Progress,
) -> Result<RestoreSummary, RestoreError> {
    let shared = Shared {
        summary: Mutex::new(RestoreSummary::default()),
        present: Mutex::new(HashSet::new()),
        pending: Mutex::new(Vec::new()),
        items_mode: items.is_some(),
        failed: Mutex::new(HashSet::new()),
    };
    let mut later = Later::default();
    let mut bases = Vec::new();
    std::thread::scope(|s| -> Result<(), RestoreError> {
        let (tx, rx) = bounded::<Vec<FileJob>>(4);
        let threads = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
        let workers: Vec<_> = (0..threads)
            .map(|_| {
                let rx = rx.clone();
                let shared = &shared;
                s.spawn(move || {
                    let mut reader = BlobReader::new(repo, index);
                    if opts.sparse {
                        reader = reader.sparse();
                    }
                    for batch in rx {
                        for job in batch {
                            if interrupt::is_set() {
                                return;
                            }
                            let result = write_file(&mut reader, &job, opts.fsync, progress);
                            shared.written_or_pending(job, result, progress);
                        }
                    }
                })
            })
            .collect();
        drop(rx);
        let mut writer = Writer {
            handles: Handles::new(targets),
            shared: &shared,
            later: &mut later,
            batch: Vec::new(),
            batch_bytes: 0,
            tx,
            opts,
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

impl Shared {
    /// Counts a file written, or queues it for `commit` (committing a full
    /// batch on this thread).
    fn written_or_pending(
        &self,
        job: FileJob,
        result: Result<(Vec<String>, Option<OsString>), RestoreError>,
        progress: &Progress,
    ) {
        match result {
            Ok((warnings, Some(tmp))) => {
                let full = {
                    let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
                    pending.push(Pending { job, tmp, warnings });
                    pending.len() >= SYNC_BATCH
                };
                if full {
                    self.commit(progress);
                }
            }
            Ok((warnings, None)) => self.file_written(job.root, &job.entry, Ok(warnings), progress),
            Err(e) => self.file_written(job.root, &job.entry, Err(e), progress),
        }
    }

    fn discard_pending(&self) {
        for p in std::mem::take(&mut *self.pending.lock().unwrap_or_else(|e| e.into_inner())) {
            let _ = p.job.dir.unlink(&p.tmp);
        }
    }

    /// Makes the pending files durable, then renames each into place: a
    /// crash leaves every file old or new, and the new one complete.
    fn commit(&self, progress: &Progress) {
        let batch = std::mem::take(&mut *self.pending.lock().unwrap_or_else(|e| e.into_inner()));
        if batch.is_empty() {
            return;
        }
        // One syncfs covers a root's whole filesystem; elsewhere each file
        // is fsynced.
        let once_per_root = cfg!(any(target_os = "linux", target_os = "android"));
        let mut synced_roots = HashSet::new();
        let mut failed = None;
        for p in &batch {
            if !once_per_root || synced_roots.insert(p.job.root) {
                if let Err(e) = p.job.dir.sync_filesystem(&p.tmp) {
                    failed = Some(e);
                }
            }
        }
        for p in batch {
            let result = match &failed {
                Some(e) => Err(io::Error::new(e.kind(), format!("cannot sync: {e}"))),
                None => p.job.dir.rename(&p.tmp, &p.job.name),
            };
            match result {
                Ok(()) => self.file_written(p.job.root, &p.job.entry, Ok(p.warnings), progress),
                Err(source) => {
                    let _ = p.job.dir.unlink(&p.tmp);
                    let e = RestoreError::Write {
                        path: PathBuf::from(&p.job.name),
                        source,
                    };
                    self.file_written(p.job.root, &p.job.entry, Err(e), progress);
                }
            }
        }
    }

    fn file_written(
        &self,
        root: usize,
        entry: &Entry,
        result: Result<Vec<String>, RestoreError>,
        progress: &Progress,
    ) {
        match result {
            Ok(warnings) => {
                self.warn(entry.path.as_bytes(), warnings);
                self.present(entry.path.as_bytes());
                let mut s = self.summary();
                s.files += 1;
                s.bytes += entry.size;
                s.written.push(super::Written {
                    root,
                    path: entry.path.as_bytes().to_vec(),
                    size: entry.size,
                    hash: entry.content_hash(),
                });
                progress.file_done();
            }
            Err(e) => self.fail(entry.path.as_bytes(), &e),
        }
    }
}

/// The merge's side of the restore: decides, and makes everything but
/// files' contents.
struct Writer<'a, 'b> {
    handles: Handles<'a>,
    shared: &'b Shared,
    later: &'b mut Later,
    batch: Vec<FileJob>,
    batch_bytes: u64,
    tx: Sender<Vec<FileJob>>,
    opts: ApplyOptions,
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
                        .fail(&path, &"lies outside every root of the snapshot; skipped"),
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
                        Ok((live, classify(&entry, live.as_ref(), self.opts.checksum, &dest)?))
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
            (EntryKind::File, _) => match self.handles.parent_of(root, &path) {
                Ok((dir, name)) => self.queue(FileJob {
                    root,
                    dir,
                    name,
                    entry,
                    replacing: live.is_some(),
                }),
                Err(e) => self.shared.fail(&path, &e),
            },
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
        self.batch_bytes += job.entry.size;
        self.batch.push(job);
        // Scattered files share no frames: hand them over at once, so
        // writing them overlaps with the rest of the merge.
        let files = if self.opts.sparse { 1 } else { BATCH_FILES };
        if self.batch_bytes >= BATCH_BYTES || self.batch.len() >= files {
            self.flush();
        }
    }

    fn flush(&mut self) {
        self.batch_bytes = 0;
        if !self.batch.is_empty() {
            let _ = self.tx.send(std::mem::take(&mut self.batch));
        }
    }
}

impl Shared {
    fn special_written(&self, entry: &Entry, result: io::Result<Vec<String>>) {
        match result {
            Ok(warnings) => {
                self.warn(entry.path.as_bytes(), warnings);
                let mut s = self.summary();
                if entry.kind == EntryKind::Symlink {
                    s.links += 1;
                } else {
                    s.other += 1;
                }
            }
            Err(e) => self.fail(entry.path.as_bytes(), &e),
        }
    }
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

/// Writes one file at a temporary name (0600), verifies it against the
/// manifest, applies its metadata through the handle, and renames it into
/// place, or, when it must be durable first (it replaces something, or the
/// restore is in place), leaves the rename to `Shared::commit`.
/// Returns the warnings, and the temporary name when the file still has to
/// be synced and renamed.
fn write_file(
    reader: &mut BlobReader,
    job: &FileJob,
    fsync: bool,
    progress: &Progress,
) -> Result<(Vec<String>, Option<OsString>), RestoreError> {
    let (dir, entry) = (&job.dir, &job.entry);
    let (tmp, mut file) = dir.create_temp(&job.name).map_err(|source| RestoreError::Write {
        path: PathBuf::from(&job.name),
        source,
    })?;
    let io_err = |source: io::Error| RestoreError::Write {
        path: PathBuf::from(&tmp),
        source,
    };
    let mut warnings = Vec::new();
    let result = (|| {
        let mut hasher = blake3::Hasher::new();
        let mut written = 0u64;
        for id in &entry.blobs {
            if interrupt::is_set() {
                return Err(RepoError::Interrupted.into());
            }
            reader.read_with(id, |data| -> Result<(), RestoreError> {
                written += data.len() as u64;
                hasher.update(data);
                file.write_all(data).map_err(io_err)?;
                progress.add(data.len() as u64);
                Ok(())
            })??;
        }
        let actual = ObjectId::from_hash(hasher.finalize());
        if written != entry.size || entry.content_hash().is_some_and(|h| h != actual) {
            return Err(RestoreError::Mismatch {
                detail: format!(
                    "{written} bytes hashing to {actual}, the manifest says {} bytes",
                    entry.size
                ),
            });
        }
        meta::apply_metadata_to_file(&file, entry, &mut warnings).map_err(io_err)?;
        drop(file);
        if fsync || job.replacing {
            // Synced in a batch, then renamed: see `Shared::commit`.
            return Ok(Some(tmp.clone()));
        }
        dir.rename(&tmp, &job.name)
            .map_err(|source| RestoreError::Write {
                path: PathBuf::from(&job.name),
                source,
            })?;
        Ok(None)
    })();
    if result.is_err() {
        let _ = dir.unlink(&tmp);
    }
    result.map(|pending| (warnings, pending))
}

/// Makes a symlink, fifo or device node at a temporary name (never opening
/// it), sets its metadata without following it, and renames it into place.
fn write_special(dir: &DirHandle, name: &OsStr, entry: &Entry) -> io::Result<Vec<String>> {
    let tmp = match entry.kind {
        EntryKind::Symlink => {
            let target = entry.target.as_ref().map(|t| t.as_bytes()).unwrap_or_default();
            dir.symlink_temp(target, name)?
        }
        kind => dir.mknod_temp(kind, entry.rdev, name)?,
    };
    let mut warnings = Vec::new();
    let result = dir
        .set_meta_nofollow(&tmp, entry, &mut warnings)
        .and_then(|()| dir.rename(&tmp, name));
    if result.is_err() {
        let _ = dir.unlink(&tmp);
    }
    result.map(|()| warnings)
}
