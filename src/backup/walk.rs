//! The walk: sources in manifest order, merged with the parent snapshot's
//! manifest so that unchanged files are finished without being read.

use std::collections::HashMap;
use std::io;
use std::path::PathBuf;

use crossbeam_channel::Sender;

use crate::batch::{BatchSender, Feed};
use crate::collect::tree::{self, Excludes, TreeItem, Walked};
use crate::interrupt;
use crate::meta::{self, os_bytes};
use crate::progress::Progress;
use crate::repo::index::Index;
use crate::repo::manifest::{Entry, EntryKind, RawBytes};
use crate::repo::{RepoError, Repository};

use super::parent::{LineMatcher, Parent, ParentCursor, Verdict};
use super::{Done, FileJob, FileStatus, Source, Tally};

/// Walks the sources on a thread of its own, ahead of their use, in batches:
/// the walk's system calls then overlap with loading the index and with
/// comparing entries against the parent. Stops when the receiver is dropped.
/// With `incremental`, most files are expected to be unchanged, so the walk
/// is the work and takes a helper thread.
pub(super) fn start(sources: &[Source], incremental: bool) -> WalkFeed {
    // About 1.2 MiB of entries: half of a tree like Go's source.
    const HELPER_QUEUE: usize = 6144;
    // Sources with made contents are not walked (the walk skips them).
    let roots: Vec<(usize, PathBuf, String, Excludes)> = sources
        .iter()
        .enumerate()
        .filter(|(_, s)| s.content.is_none())
        .map(|(i, s)| (i, s.abs.clone(), s.prefix.clone(), s.excludes.clone()))
        .collect();
    let helper = if incremental { HELPER_QUEUE } else { 0 };
    feed(move |out| {
        let whole = roots.iter().all(|(i, abs, prefix, excludes)| {
            tree::walk(abs, prefix, excludes)
                .with_helper(helper)
                .all(|item| out.push((*i, item)))
        });
        tracing::debug!("tree walk done, {:?} CPU", crate::progress::thread_cpu());
        whole
    })
}

/// A walk already made, fed as [`start`] feeds one, from a thread of its
/// own through a bounded queue (items of sources that do not exist are
/// left out).
pub(super) fn replay(items: Vec<(usize, TreeItem)>, sources: usize) -> WalkFeed {
    feed(move |out| {
        items
            .into_iter()
            .filter(|(i, _)| *i < sources)
            .all(|item| out.push(item))
    })
}

/// The walk's entries, in batches, and whether the walk got to its end: a
/// walk thread that died half-way must not pass for the end of the tree,
/// or the snapshot would silently lack the rest.
pub(super) type WalkFeed = Feed<(usize, TreeItem)>;

/// A walk's items made by `make` on a thread of their own (see [`Feed`]);
/// one that could not be started is a walk that stopped.
fn feed(make: impl FnOnce(&mut BatchSender<'_, (usize, TreeItem)>) -> bool + Send + 'static) -> WalkFeed {
    Feed::spawn("cairn-walk", 32, 128, make).unwrap_or_else(|e| {
        tracing::debug!("cannot start the walk's thread: {e}");
        Feed::broken()
    })
}

/// Where the walk hands its work: files to read to the workers, finished
/// entries to the assembler, one permit per entry, progress to the user.
pub(super) struct Outlets<'a> {
    pub jobs: &'a Sender<FileJob>,
    pub done: &'a Sender<Vec<(u64, Done)>>,
    pub permits: &'a Sender<()>,
    pub progress: &'a Progress,
}

pub(super) fn walk_sources(
    repo: &Repository,
    index: &Index,
    parent: Parent,
    sources: &[Source],
    walked: WalkFeed,
    out: Outlets,
    tally: &mut Tally,
) -> Result<(), RepoError> {
    std::thread::scope(|s| {
        let cursor = ParentCursor::follow(s, repo, index, parent);
        walk_with_parent(index, cursor, sources, walked, out, tally)
    })
}

fn walk_with_parent(
    index: &Index,
    cursor: ParentCursor,
    sources: &[Source],
    walked: WalkFeed,
    out: Outlets,
    tally: &mut Tally,
) -> Result<(), RepoError> {
    let Outlets {
        jobs,
        done,
        permits,
        progress,
    } = out;
    let mut sorter = Sorter {
        index,
        cursor,
        matcher: LineMatcher::default(),
        links: HashMap::new(),
        jobs,
        progress,
    };
    let mut seq = 0u64;
    let mut batch = DoneBatch {
        out: BatchSender::new(done.clone(), DoneBatch::SIZE),
        permits,
    };
    // Sources with made contents go in at their place in manifest order:
    // before the first walked item of any later source.
    let mut generated: std::collections::VecDeque<(usize, &Source)> = sources
        .iter()
        .enumerate()
        .filter(|(_, s)| s.content.is_some())
        .collect();
    for batch_of_items in walked.batches().iter() {
        for (source_index, item) in batch_of_items {
            if !emit_generated(&mut generated, source_index, &mut batch, &mut seq, jobs) {
                return Ok(());
            }
            if interrupt::is_set() {
                return Err(RepoError::Interrupted);
            }
            let Walked { path, stat, place } = match item {
                TreeItem::Entry(walked) => walked,
                TreeItem::Unreadable { path, error } => {
                    unreadable(&sources[source_index], &path, &error, tally);
                    continue;
                }
            };
            if !batch.admit() {
                return Ok(());
            }
            let this = seq;
            seq += 1;
            let ready = match stat.entry(path) {
                None => Done::Skipped {
                    path: None,
                    warning: None,
                },
                Some(entry) => match sorter.sort(entry, &stat, &place, this, tally) {
                    Sorted::Ready(done) => done,
                    Sorted::Sent => continue,
                    Sorted::Stop => return Ok(()),
                },
            };
            if !batch.push(this, ready) {
                return Ok(());
            }
        }
    }
    if !walked.complete() {
        return Err(RepoError::WalkStopped);
    }
    if !emit_generated(&mut generated, usize::MAX, &mut batch, &mut seq, jobs) {
        return Ok(());
    }
    batch.flush();
    Ok(())
}

/// A walked path that could not be read: a warning, and a partial snapshot.
fn unreadable(source: &Source, path: &std::path::Path, error: &io::Error, tally: &mut Tally) {
    let what = if error.kind() == io::ErrorKind::NotFound && path == source.abs {
        "source path does not exist".to_string()
    } else {
        error.to_string()
    };
    tally.warnings.push(format!("{}: {what}", path.display()));
    tally.partial = true;
}

/// Hands the sources with made contents that come before source `up_to` to
/// the workers; `false` when the backup stops.
fn emit_generated(
    generated: &mut std::collections::VecDeque<(usize, &Source)>,
    up_to: usize,
    batch: &mut DoneBatch,
    seq: &mut u64,
    jobs: &Sender<FileJob>,
) -> bool {
    while let Some(&(_, source)) = generated.front().filter(|(i, _)| *i < up_to) {
        generated.pop_front();
        if !batch.admit() {
            return false;
        }
        let content = source.content.clone().unwrap_or_default();
        let entry = generated_entry(source.prefix.as_bytes().to_vec(), content.len() as u64);
        let job = FileJob {
            seq: *seq,
            abs: source.abs.clone(),
            content: Some(content),
            dev: 0,
            entry,
            status: FileStatus::New,
        };
        *seq += 1;
        if jobs.send(job).is_err() {
            return false;
        }
    }
    true
}

/// What became of one walked entry. Returned and matched at once, never
/// stored: boxing the entry would cost an allocation per walked path.
#[allow(clippy::large_enum_variant)]
enum Sorted {
    /// Finished here (unchanged, a hard link, a symlink, a directory...).
    Ready(Done),
    /// Handed to a worker to be read.
    Sent,
    /// The workers are gone: the backup stops.
    Stop,
}

/// Sorts walked entries against the parent snapshot: what is unchanged is
/// finished from the parent's line, what changed goes to the workers.
struct Sorter<'a> {
    index: &'a Index,
    cursor: ParentCursor<'a>,
    matcher: LineMatcher,
    /// The first path seen of each (device, inode) with several links.
    links: HashMap<(u64, u64), RawBytes>,
    jobs: &'a Sender<FileJob>,
    progress: &'a Progress,
}

fn ready(entry: Entry, status: Option<FileStatus>, line: Option<Vec<u8>>) -> Sorted {
    Sorted::Ready(Done::Entry {
        entry,
        status,
        warning: None,
        line,
    })
}

impl Sorter<'_> {
    fn sort(
        &mut self,
        mut entry: Entry,
        stat: &meta::Stat,
        place: &tree::Place,
        seq: u64,
        tally: &mut Tally,
    ) -> Sorted {
        match entry.kind {
            EntryKind::File => self.file(entry, stat, place, seq),
            EntryKind::Symlink => Sorted::Ready(symlink(entry, place, tally)),
            EntryKind::Dir => match self
                .cursor
                .find(entry.path.as_bytes())
                .map(|prev| self.matcher.dir(prev, &mut entry))
            {
                Some(Verdict::Unchanged { line }) => ready(entry, None, line),
                _ => {
                    let abs = place.abs(entry.path.as_bytes());
                    Sorted::Ready(read_xattrs_into(entry, &abs))
                }
            },
            _ => {
                let abs = place.abs(entry.path.as_bytes());
                Sorted::Ready(read_xattrs_into(entry, &abs))
            }
        }
    }

    /// A file: a hard link to one seen before, unchanged since the parent,
    /// or to be read by a worker.
    fn file(&mut self, mut entry: Entry, stat: &meta::Stat, place: &tree::Place, seq: u64) -> Sorted {
        if let Some(key) = stat.hardlink_key() {
            if let Some(first) = self.links.get(&key) {
                entry.kind = EntryKind::Hardlink;
                entry.target = Some(first.clone());
                entry.size = 0;
                return ready(entry, None, None);
            }
            self.links.insert(key, entry.path.clone());
        }
        let (index, matcher) = (self.index, &mut self.matcher);
        let verdict = self
            .cursor
            .find(entry.path.as_bytes())
            .map(|prev| matcher.file(prev, &mut entry, index));
        let status = match verdict {
            Some(Verdict::Unchanged { line }) => {
                self.progress.add(entry.size);
                self.progress.file_done();
                return ready(entry, Some(FileStatus::Unchanged), line);
            }
            Some(_) => FileStatus::Changed,
            None => FileStatus::New,
        };
        let job = FileJob {
            seq,
            abs: place.abs(entry.path.as_bytes()),
            content: None,
            dev: stat.dev,
            entry,
            status,
        };
        match self.jobs.send(job) {
            Ok(()) => Sorted::Sent,
            Err(_) => Sorted::Stop,
        }
    }
}

/// A symlink with its target; one that cannot be read is skipped with a
/// warning, and the snapshot is partial.
fn symlink(mut entry: Entry, place: &tree::Place, tally: &mut Tally) -> Done {
    let abs = place.abs(entry.path.as_bytes());
    match std::fs::read_link(&abs) {
        Ok(target) => {
            entry.target = Some(RawBytes(os_bytes(target.as_os_str())));
            Done::Entry {
                entry,
                status: None,
                warning: None,
                line: None,
            }
        }
        Err(e) => {
            tally.partial = true;
            Done::Skipped {
                path: None,
                warning: Some(format!("{}: {e}", abs.display())),
            }
        }
    }
}

/// The entry of contents a collector made: a private file, owned by whoever
/// runs the backup, timed now.
fn generated_entry(path: Vec<u8>, size: u64) -> Entry {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    #[cfg(unix)]
    // SAFETY: getuid and getgid have no preconditions.
    let (uid, gid) = unsafe { (libc::getuid(), libc::getgid()) };
    #[cfg(not(unix))]
    let (uid, gid) = (0, 0);
    Entry {
        path: RawBytes(path),
        kind: EntryKind::File,
        mode: 0o600,
        uid,
        gid,
        mtime: now.as_secs() as i64,
        mtime_nsec: now.subsec_nanos(),
        ctime: 0,
        ctime_nsec: 0,
        ino: 0,
        size,
        hash: None,
        blobs: Vec::new(),
        target: None,
        rdev: 0,
        xattrs: Vec::new(),
    }
}

/// A finished entry with its extended attributes read from `abs`.
fn read_xattrs_into(mut entry: Entry, abs: &std::path::Path) -> Done {
    let warning = match meta::read_xattrs(abs) {
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
        line: None,
    }
}

/// Entries the walk finished itself, sent on in batches, each entry
/// holding a permit.
struct DoneBatch<'a> {
    out: BatchSender<'a, (u64, Done)>,
    /// One token per entry not yet in the manifest; the assembler takes them
    /// back. Bounds how far the walk runs ahead of a slow file, so memory
    /// stays flat however many entries follow it.
    permits: &'a Sender<()>,
}

impl DoneBatch<'_> {
    const SIZE: usize = 256;

    /// Waits until another entry may be started. Before waiting, the entries
    /// held here are sent on: the assembler may be waiting for one of them.
    fn admit(&mut self) -> bool {
        match self.permits.try_send(()) {
            Ok(()) => true,
            Err(crossbeam_channel::TrySendError::Full(())) => {
                self.out.flush() && self.permits.send(()).is_ok()
            }
            Err(crossbeam_channel::TrySendError::Disconnected(())) => false,
        }
    }

    /// False once the receiver is gone: it stopped on an error of its own,
    /// which the caller reports, and the walk just ends.
    fn push(&mut self, seq: u64, d: Done) -> bool {
        self.out.push((seq, d))
    }

    fn flush(&mut self) -> bool {
        self.out.flush()
    }
}
