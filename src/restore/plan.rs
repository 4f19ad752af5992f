//! The plan: a snapshot's manifest and what is on disk where it is restored,
//! walked side by side in manifest order (as a backup matches its parent),
//! so that every path is sorted into create, replace, metadata-only,
//! unchanged, or on disk but not in the snapshot.

use std::cmp::Ordering;
use std::ffi::OsString;
use std::io;
use std::iter::Peekable;
use std::path::{Path, PathBuf};

use crate::collect::tree::{self, Excludes, TreeItem, TreeWalk};
use crate::meta::{bytes_to_path, running_as_root, Stat};
use crate::repo::crypto::Crypto;
use crate::repo::manifest::{path_cmp, Entry, EntryKind, MetadataMatcher, RawLine};
use crate::repo::RepoError;

/// Where one root of the snapshot is written.
pub struct Target {
    pub prefix: String,
    /// The directory opened by path; everything below it is reached
    /// through descriptors.
    pub base: PathBuf,
    /// Names from `base` to the root itself: the prefix's components for
    /// `--target`, the root's own name in place.
    pub lead: Vec<OsString>,
    /// The root's path on disk: `base` and `lead`.
    pub dest: PathBuf,
    /// Left alone: neither compared, nor deleted.
    pub excludes: Excludes,
    /// Not restored this time (`--root`).
    pub selected: bool,
}

impl Target {
    pub fn new(prefix: String, base: PathBuf, lead: Vec<OsString>, excludes: Excludes) -> Target {
        let mut dest = base.clone();
        dest.extend(&lead);
        Target {
            prefix,
            base,
            lead,
            dest,
            excludes,
            selected: true,
        }
    }

    /// The path on disk of the manifest path `path` (under this root).
    pub fn dest_of(&self, path: &[u8]) -> PathBuf {
        let mut p = self.dest.clone();
        if let Some(rest) = path.get(self.prefix.len() + 1..) {
            p.push(bytes_to_path(rest));
        }
        p
    }

    fn holds(&self, path: &[u8]) -> bool {
        under(path, self.prefix.as_bytes())
    }
}

/// Whether `path` is `prefix` or lies below it.
pub fn under(path: &[u8], prefix: &[u8]) -> bool {
    path.strip_prefix(prefix)
        .is_some_and(|rest| rest.is_empty() || rest.first() == Some(&b'/'))
}

/// One path of the plan.
pub enum Step {
    /// A snapshot entry (its manifest line, parsed only when needed: see
    /// [`Sorter`]), and what is at its place now.
    Entry {
        root: usize,
        line: RawLine,
        live: Option<Stat>,
    },
    /// On disk under a root, not in the snapshot.
    Extra { root: usize, path: Vec<u8>, stat: Stat },
    /// Could not be read on disk; left as it is.
    Unreadable { path: PathBuf, error: io::Error },
    /// An entry of a root not being restored (another `--root`), or with
    /// its path when it lies under no root at all (a damaged manifest).
    Skipped { outside: Option<Vec<u8>> },
}

/// What the plan's walk found on disk, in walk order, with the index of
/// the target each item lies under: kept so that the safety snapshot does
/// not walk the roots a second time. Within a memory budget: past it, the
/// items are dropped and the safety snapshot walks again (a tree of more
/// than about 50,000 entries; memory stays flat).
pub struct Tape {
    pub items: Vec<(usize, TreeItem)>,
    /// Every item is there: the budget was never exceeded.
    pub complete: bool,
    /// The snapshot's manifest lines as the plan read them.
    pub lines: KeptLines,
    budget: usize,
    used: usize,
}

/// The lines of the snapshot's manifest, kept (within [`Tape::BUDGET`]) so
/// that the safety snapshot can take the snapshot being restored as its
/// parent without reading its manifest again, and what that would cost: a
/// backup reuses a parent line only when the file's metadata (ctime and
/// inode too) is written exactly as in it, and reads every other file.
pub struct KeptLines {
    pub lines: Vec<RawLine>,
    /// Every line is there.
    pub complete: bool,
    /// Bytes of live files whose metadata differs from their line: what a
    /// backup with these lines as its parent reads.
    pub reread: u64,
    used: usize,
}

impl KeptLines {
    fn new() -> KeptLines {
        KeptLines {
            lines: Vec::new(),
            complete: true,
            reread: 0,
            used: 0,
        }
    }

    /// Keeps `line`; `same`: the live file at its path is written exactly
    /// as in it (see [`Sorter::same_bytes`]). The lines share the tape's
    /// budget with its items (`taped` bytes so far) and give way first:
    /// not walking the roots again saves more than not reading a manifest.
    fn keep(&mut self, line: RawLine, live: Option<&Stat>, same: bool, taped: usize) {
        if let Some(live) = live.filter(|l| l.is_file() && !same) {
            self.reread = self.reread.saturating_add(live.size);
        }
        if !self.complete {
            return;
        }
        // The line, its slot in the vector, and as much again for the
        // vector's slack.
        let size = 2 * std::mem::size_of::<RawLine>() + line.raw.capacity();
        self.used = self.used.saturating_add(size);
        if self.used.saturating_add(taped) > Tape::BUDGET {
            self.give_up();
            return;
        }
        self.lines.push(line);
    }

    /// A live file the snapshot does not have: a backup with these lines as
    /// its parent reads it whole.
    fn extra(&mut self, stat: &Stat) {
        if stat.is_file() {
            self.reread = self.reread.saturating_add(stat.size);
        }
    }

    fn give_up(&mut self) {
        self.complete = false;
        self.lines = Vec::new();
        self.used = 0;
    }
}

impl Tape {
    /// About 8 MiB of items.
    const BUDGET: usize = 8 << 20;

    /// A tape for a walk expected to find about `expected` items.
    pub fn new(expected: u64) -> Tape {
        let item = std::mem::size_of::<(usize, TreeItem)>();
        let fits = Self::BUDGET / item;
        let capacity = usize::try_from(expected)
            .unwrap_or(usize::MAX)
            .saturating_add(64)
            .min(fits);
        Tape {
            items: Vec::with_capacity(capacity),
            complete: true,
            lines: KeptLines::new(),
            budget: Self::BUDGET,
            used: 0,
        }
    }

    fn record(&mut self, root: usize, item: TreeItem) {
        if !self.complete {
            return;
        }
        let heap = match &item {
            TreeItem::Entry(w) => w.path.capacity(),
            TreeItem::Unreadable { path, .. } => path.as_os_str().len(),
        };
        self.used = self
            .used
            .saturating_add(std::mem::size_of::<(usize, TreeItem)>() + heap);
        if self.used.saturating_add(self.lines.used) > self.budget {
            self.lines.give_up();
        }
        if self.used > self.budget {
            self.complete = false;
            self.items = Vec::new();
            return;
        }
        self.items.push((root, item));
    }
}

/// The manifest and the live roots, merged in manifest order.
pub struct Merge<'a, I: Iterator<Item = Result<RawLine, RepoError>>> {
    manifest: Peekable<I>,
    targets: &'a [Target],
    current: usize,
    walk: Option<Peekable<TreeWalk<'a>>>,
    started: bool,
    /// Every walked item, when recording (see [`Tape`]).
    tape: Option<Tape>,
}

pub fn merge<I: Iterator<Item = Result<RawLine, RepoError>>>(
    manifest: I,
    targets: &[Target],
) -> Merge<'_, I> {
    Merge {
        manifest: manifest.peekable(),
        targets,
        current: 0,
        walk: None,
        started: false,
        tape: None,
    }
}

impl<'a, I: Iterator<Item = Result<RawLine, RepoError>>> Merge<'a, I> {
    /// Starts walking the current root's place on disk, if anything is there.
    fn start_walk(&mut self) {
        let target: &'a Target = &self.targets[self.current];
        self.started = true;
        self.walk = None;
        if target.selected && std::fs::symlink_metadata(&target.dest).is_ok() {
            self.walk = Some(tree::walk(&target.dest, &target.prefix, &target.excludes).peekable());
        }
    }

    fn next_live(&mut self) -> Option<Step> {
        let root = self.current;
        let item = self.walk.as_mut()?.next()?;
        let Some(tape) = self.tape.as_mut() else {
            return Some(match item {
                TreeItem::Entry(w) => Step::Extra {
                    root,
                    path: w.path,
                    stat: w.stat,
                },
                TreeItem::Unreadable { path, error } => Step::Unreadable { path, error },
            });
        };
        let step = match &item {
            TreeItem::Entry(w) => Step::Extra {
                root,
                path: w.path.clone(),
                stat: w.stat,
            },
            TreeItem::Unreadable { path, error } => Step::Unreadable {
                path: path.clone(),
                error: io::Error::new(error.kind(), error.to_string()),
            },
        };
        tape.record(root, item);
        Some(step)
    }

    /// The walked entry at the same path as the manifest's next line.
    fn next_same(&mut self) -> Option<Stat> {
        let item = self.walk.as_mut().and_then(Iterator::next)?;
        let stat = match &item {
            TreeItem::Entry(w) => Some(w.stat),
            TreeItem::Unreadable { .. } => None,
        };
        if let Some(tape) = self.tape.as_mut() {
            tape.record(self.current, item);
        }
        stat
    }

    /// Keeps every walked item on `tape` (see [`Tape`]).
    pub fn recording(mut self, tape: Tape) -> Self {
        self.tape = Some(tape);
        self
    }

    /// Keeps the snapshot's `line` on the tape, if recording (see
    /// [`KeptLines::keep`]).
    fn keep_line(&mut self, line: RawLine, live: Option<&Stat>, same: impl FnOnce(&RawLine) -> bool) {
        if let Some(tape) = self.tape.as_mut() {
            let same = same(&line);
            tape.lines.keep(line, live, same, tape.used);
        }
    }

    /// Notes a live entry the snapshot does not have (see
    /// [`KeptLines::extra`]).
    fn note_extra(&mut self, stat: &Stat) {
        if let Some(tape) = self.tape.as_mut() {
            tape.lines.extra(stat);
        }
    }

    /// What was recorded.
    pub fn into_tape(self) -> Option<Tape> {
        self.tape
    }
}

impl<I: Iterator<Item = Result<RawLine, RepoError>>> Iterator for Merge<'_, I> {
    type Item = Result<Step, RepoError>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            let Some(target) = self.targets.get(self.current) else {
                // Past the last root: anything left is outside them all.
                return self
                    .manifest
                    .next()
                    .map(|e| e.map(|e| outside(e.path().to_vec())));
            };
            if !self.started {
                self.start_walk();
            }
            let entry_here = match self.manifest.peek() {
                Some(Err(_)) => {
                    return self
                        .manifest
                        .next()
                        .map(|e| e.map(|e| outside(e.path().to_vec())))
                }
                Some(Ok(e)) if target.holds(e.path()) => Some(e.path()),
                Some(Ok(e)) if path_cmp(e.path(), target.prefix.as_bytes()) == Ordering::Less => {
                    return self
                        .manifest
                        .next()
                        .map(|e| e.map(|e| outside(e.path().to_vec())));
                }
                _ => None,
            };
            if !target.selected {
                if entry_here.is_some() {
                    self.manifest.next();
                    return Some(Ok(Step::Skipped { outside: None }));
                }
                self.current += 1;
                self.started = false;
                continue;
            }
            let live_path = match self.walk.as_mut().and_then(|w| w.peek()) {
                Some(TreeItem::Entry(w)) => Some(Some(w.path.as_slice())),
                Some(TreeItem::Unreadable { .. }) => Some(None),
                None => None,
            };
            let order = match (entry_here, live_path) {
                (None, None) => {
                    self.current += 1;
                    self.started = false;
                    continue;
                }
                (_, Some(None)) | (None, Some(_)) => Ordering::Greater,
                (Some(_), None) => Ordering::Less,
                (Some(e), Some(Some(l))) => path_cmp(e, l),
            };
            let root = self.current;
            return match order {
                Ordering::Greater => self.next_live().map(Ok),
                Ordering::Less => self.manifest.next().map(|e| {
                    e.map(|line| Step::Entry {
                        root,
                        line,
                        live: None,
                    })
                }),
                Ordering::Equal => {
                    let live = self.next_same();
                    self.manifest
                        .next()
                        .map(|e| e.map(|line| Step::Entry { root, line, live }))
                }
            };
        }
    }
}

fn outside(path: Vec<u8>) -> Step {
    Step::Skipped { outside: Some(path) }
}

/// Sorts manifest lines against what is on disk, parsing a line only when
/// the bytes do not already say the file is the one the snapshot saw.
pub struct Sorter {
    matcher: MetadataMatcher,
    checksum: bool,
    crypto: Crypto,
}

/// A sorted entry: `None` for a file left unchanged on the fast path.
pub type Sorted = (Option<Entry>, io::Result<Action>);

impl Sorter {
    /// `crypto`: how the repository names blobs (to test a live file's
    /// hash against a one-blob entry).
    pub fn new(checksum: bool, crypto: &Crypto) -> Sorter {
        Sorter {
            matcher: MetadataMatcher::default(),
            checksum,
            crypto: crypto.clone(),
        }
    }

    /// A regular file whose lstat (mode, owner, mtime, ctime, inode, size)
    /// is written exactly as in the line is the very file the snapshot saw,
    /// untouched since: unchanged, without parsing the line. Anything else
    /// is parsed and classified.
    pub fn sort(
        &mut self,
        line: &RawLine,
        live: Option<&Stat>,
        dest: &dyn Fn() -> PathBuf,
    ) -> Result<Sorted, RepoError> {
        if !self.checksum && self.same_bytes(line, live) {
            return Ok((None, Ok(Action::Unchanged)));
        }
        let entry = line.entry()?;
        let action = classify(&entry, live, self.checksum, &self.crypto, &dest());
        Ok((Some(entry), action))
    }
}

impl Sorter {
    /// Whether `live` is a regular file whose lstat is written exactly as
    /// in `line` (see [`Sorter::sort`]).
    pub fn same_bytes(&mut self, line: &RawLine, live: Option<&Stat>) -> bool {
        live.filter(|l| l.is_file())
            .and_then(|l| l.entry(line.path().to_vec()))
            .is_some_and(|now| self.matcher.rest_after(line, &now).is_some())
    }
}

/// What a restore does with one snapshot entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Nothing is there.
    Create,
    /// Something else is there (other content, another kind): it is lost
    /// unless a safety snapshot keeps it.
    Replace,
    /// The same content; owner, mode or mtime differ.
    Metadata,
    Unchanged,
}

/// The kind an entry is on disk (a hard link is a file).
fn disk_kind(kind: EntryKind) -> EntryKind {
    match kind {
        EntryKind::Hardlink => EntryKind::File,
        k => k,
    }
}

/// Whether what `live` says differs from the entry in what a restore sets.
pub fn metadata_differs(entry: &Entry, live: &Stat) -> bool {
    let owner = running_as_root() && (entry.uid != live.uid || entry.gid != live.gid);
    let mode = entry.kind != EntryKind::Symlink && entry.mode & 0o7777 != live.mode;
    let time = entry.mtime != live.mtime || entry.mtime_nsec != live.mtime_nsec;
    owner || mode || time
}

/// Sorts one entry. Files whose size and mtime match are taken as
/// unchanged (restic's `--overwrite if-changed`) unless `checksum`; other
/// files of the same size are hashed. Hard links are settled by the writer.
pub fn classify(
    entry: &Entry,
    live: Option<&Stat>,
    checksum: bool,
    crypto: &Crypto,
    dest: &Path,
) -> io::Result<Action> {
    let Some(live) = live else {
        return Ok(Action::Create);
    };
    if live.kind != Some(disk_kind(entry.kind)) {
        return Ok(Action::Replace);
    }
    let same_content = match entry.kind {
        EntryKind::Dir | EntryKind::Fifo | EntryKind::Hardlink => true,
        EntryKind::Chardev | EntryKind::Blockdev => live.rdev == entry.rdev,
        EntryKind::Symlink => {
            entry.target.as_ref().map(|t| t.as_bytes().to_vec())
                == Some(crate::meta::os_bytes(std::fs::read_link(dest)?.as_os_str()))
        }
        EntryKind::File => {
            live.size == entry.size
                && ((!checksum && live.mtime == entry.mtime && live.mtime_nsec == entry.mtime_nsec)
                    || entry
                        .content_id()
                        .map(|c| hash_file(dest, live).map(|h| c.is(&h, crypto)))
                        .transpose()?
                        .unwrap_or(false))
        }
    };
    Ok(if !same_content {
        Action::Replace
    } else if metadata_differs(entry, live) {
        Action::Metadata
    } else {
        Action::Unchanged
    })
}

/// The blake3 hash of the file at `path`, which must still be `live`
/// (opened without following a link or blocking on a fifo).
pub fn hash_file(path: &Path, live: &Stat) -> io::Result<crate::repo::id::ObjectId> {
    let mut file = crate::meta::open_same(path, live.identity(), false)?;
    let mut hasher = blake3::Hasher::new();
    io::copy(&mut file, &mut hasher)?;
    Ok(crate::repo::id::ObjectId::from_hash(hasher.finalize()))
}

/// One path of a snapshot and its place on disk, sorted (see [`visit`]).
pub enum Visit<'l> {
    /// A file that is byte-for-byte the one the snapshot saw (not parsed).
    Unchanged { root: usize, path: &'l [u8] },
    /// An entry, and what to do with it (or why that could not be told).
    Entry {
        root: usize,
        entry: Entry,
        live: Option<Stat>,
        action: io::Result<Action>,
    },
    /// On disk under a root, not in the snapshot.
    Extra { root: usize, path: Vec<u8>, stat: Stat },
    /// Could not be read on disk.
    Unreadable { path: PathBuf, error: io::Error },
    /// A manifest entry under no root at all (a damaged manifest).
    Outside { path: Vec<u8> },
}

/// Merges `snapshot`'s manifest with the disk under `targets` and hands
/// every selected path, sorted, to `f`, in manifest order. Stops at the
/// first error `f` returns, or when cairn is interrupted.
// The snapshot, where it goes, which part, how to compare, and what to
// keep of the walk: each is needed.
#[allow(clippy::too_many_arguments)]
pub fn visit<E: From<RepoError>>(
    repo: &crate::repo::Repository,
    index: &crate::repo::index::Index,
    snapshot: &crate::repo::snapshot::Snapshot,
    targets: &[Target],
    selection: &crate::select::Selection,
    checksum: bool,
    tape: Option<&mut Tape>,
    f: &mut dyn FnMut(Visit<'_>) -> Result<(), E>,
) -> Result<(), E> {
    let mut reader = crate::repo::reader::BlobReader::new(repo, index);
    let short = snapshot.id.short();
    let lines = reader.manifest(&short, &snapshot.record.manifest).raw_lines();
    visit_lines(lines, repo, targets, selection, checksum, tape, f)
}

/// [`visit`] of the manifest's `lines`.
fn visit_lines<E: From<RepoError>>(
    lines: impl Iterator<Item = Result<RawLine, RepoError>>,
    repo: &crate::repo::Repository,
    targets: &[Target],
    selection: &crate::select::Selection,
    checksum: bool,
    mut tape: Option<&mut Tape>,
    f: &mut dyn FnMut(Visit<'_>) -> Result<(), E>,
) -> Result<(), E> {
    let mut sorter = Sorter::new(checksum, repo.crypto());
    let mut steps = merge(lines, targets);
    if let Some(tape) = tape.as_deref_mut() {
        steps = steps.recording(std::mem::replace(tape, Tape::new(0)));
    }
    while let Some(step) = steps.next() {
        if crate::interrupt::is_set() {
            return Err(RepoError::Interrupted.into());
        }
        let step = step?;
        if let Step::Extra { stat, .. } = &step {
            steps.note_extra(stat);
        }
        match step {
            Step::Entry { root, line, live } if selection.matches(line.path()) => {
                let dest = || targets[root].dest_of(line.path());
                let sorted = sorter.sort(&line, live.as_ref(), &dest)?;
                let same = sorted.0.is_none();
                match sorted {
                    (None, _) => f(Visit::Unchanged {
                        root,
                        path: line.path(),
                    })?,
                    (Some(entry), action) => f(Visit::Entry {
                        root,
                        entry,
                        live,
                        action,
                    })?,
                }
                steps.keep_line(line, live.as_ref(), |l| {
                    same || (checksum && sorter.same_bytes(l, live.as_ref()))
                });
            }
            Step::Entry { line, live, .. } => {
                steps.keep_line(line, live.as_ref(), |l| sorter.same_bytes(l, live.as_ref()));
            }
            Step::Extra { root, path, stat } if selection.matches(&path) => {
                f(Visit::Extra { root, path, stat })?
            }
            Step::Unreadable { path, error } => f(Visit::Unreadable { path, error })?,
            Step::Skipped { outside: Some(path) } => f(Visit::Outside { path })?,
            _ => {}
        }
    }
    if let (Some(tape), Some(recorded)) = (tape, steps.into_tape()) {
        *tape = recorded;
    }
    Ok(())
}

/// What a writer must look at again after a plan: an entry to act on, or a
/// path on disk that the snapshot does not have.
#[derive(Debug, Clone)]
pub enum PlanItem {
    /// With what the plan found to do (`None`: it could not tell).
    Entry {
        root: usize,
        entry: Entry,
        planned: Option<Action>,
    },
    Extra {
        root: usize,
        path: Vec<u8>,
    },
}

/// Collects the plan's items: every entry that is not unchanged, every
/// hard link (its first name may be replaced), every extra path, and the
/// directories above each of them (their mtime changes when their contents
/// do, and is set back at the end). Gives up past [`Changes::MAX`] items,
/// and the writer then walks the whole tree again.
pub struct Changes {
    items: Option<Vec<PlanItem>>,
    /// The directories above the current path: root, entry, planned
    /// action, and whether it is kept already.
    dirs: Vec<(usize, Entry, Option<Action>, bool)>,
}

impl Changes {
    const MAX: usize = 50_000;

    pub fn new(keep: bool) -> Changes {
        Changes {
            items: keep.then(Vec::new),
            dirs: Vec::new(),
        }
    }

    /// Drops the directories of the stack that are not above `path`.
    fn keep_dirs_above(&mut self, root: usize, path: &[u8]) {
        self.dirs
            .retain(|(r, d, _, _)| *r == root && under(path, d.path.as_bytes()) && path != d.path.as_bytes());
    }

    /// Keeps the directories above `path` that are not kept yet.
    fn ancestors(&mut self, root: usize, path: &[u8]) {
        self.keep_dirs_above(root, path);
        let Some(items) = self.items.as_mut() else { return };
        for (r, d, planned, kept) in self.dirs.iter_mut().filter(|(_, _, _, kept)| !*kept) {
            items.push(PlanItem::Entry {
                root: *r,
                entry: d.clone(),
                planned: *planned,
            });
            *kept = true;
        }
        if items.len() > Changes::MAX {
            self.items = None;
        }
    }

    pub fn entry(&mut self, root: usize, entry: Entry, action: Option<Action>) {
        if self.items.is_none() {
            return;
        }
        let path = entry.path.as_bytes().to_vec();
        let act = action != Some(Action::Unchanged) || entry.kind == EntryKind::Hardlink;
        if act {
            self.ancestors(root, &path);
            if let Some(items) = self.items.as_mut() {
                items.push(PlanItem::Entry {
                    root,
                    entry: entry.clone(),
                    planned: action,
                });
            }
        } else {
            self.keep_dirs_above(root, &path);
        }
        if entry.kind == EntryKind::Dir {
            self.dirs.push((root, entry, action, act));
        }
    }

    pub fn extra(&mut self, root: usize, path: &[u8]) {
        if self.items.is_none() {
            return;
        }
        self.ancestors(root, path);
        if let Some(items) = self.items.as_mut() {
            items.push(PlanItem::Extra {
                root,
                path: path.to_vec(),
            });
        }
    }

    pub fn into_items(self) -> Option<Vec<PlanItem>> {
        self.items
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unreadable(len: usize) -> TreeItem {
        TreeItem::Unreadable {
            path: PathBuf::from("x".repeat(len)),
            error: io::Error::other("test"),
        }
    }

    #[test]
    fn a_tape_past_its_budget_drops_everything() {
        let mut tape = Tape::new(3);
        tape.record(0, unreadable(10));
        tape.record(1, unreadable(10));
        assert!(tape.complete);
        assert_eq!(tape.items.len(), 2);
        // Items of a megabyte each: the ninth passes 8 MiB.
        for _ in 0..8 {
            tape.record(0, unreadable(1 << 20));
        }
        assert!(!tape.complete);
        assert!(tape.items.is_empty());
        tape.record(0, unreadable(1));
        assert!(
            tape.items.is_empty(),
            "nothing is recorded once the budget is passed"
        );
    }

    fn line(path: &str) -> RawLine {
        let raw = format!("{{\"path\":\"{path}\",\"type\":\"file\",\"mode\":420,\"size\":3}}\n");
        let mut lines = crate::repo::manifest::ManifestParser::new()
            .feed_raw(raw.as_bytes())
            .unwrap();
        lines.pop().unwrap()
    }

    fn file(size: u64) -> Stat {
        Stat {
            kind: Some(EntryKind::File),
            mode: 0o644,
            uid: 0,
            gid: 0,
            mtime: 0,
            mtime_nsec: 0,
            ctime: 0,
            ctime_nsec: 0,
            dev: 0,
            ino: 0,
            nlink: 1,
            size,
            rdev: 0,
        }
    }

    #[test]
    fn kept_lines_count_what_a_backup_would_read_again_and_stop_at_the_budget() {
        let mut kept = KeptLines::new();
        kept.keep(line("r/same"), Some(&file(100)), true, 0);
        kept.keep(line("r/touched"), Some(&file(7)), false, 0);
        kept.keep(line("r/gone"), None, false, 0);
        let mut dir = file(4096);
        dir.kind = Some(EntryKind::Dir);
        kept.keep(line("r/now-a-dir"), Some(&dir), false, 0);
        assert!(kept.complete);
        assert_eq!(kept.lines.len(), 4);
        assert_eq!(
            kept.reread, 7,
            "only a live file not written as in its line is read again"
        );
        let long = "x".repeat(1 << 20);
        for _ in 0..8 {
            kept.keep(line(&format!("r/{long}")), Some(&file(1)), false, 0);
        }
        assert!(!kept.complete);
        assert!(kept.lines.is_empty());
        assert_eq!(
            kept.reread, 15,
            "what would be read is still counted past the budget"
        );
    }

    #[test]
    fn kept_lines_give_way_to_the_tape() {
        let mut kept = KeptLines::new();
        kept.keep(line("r/a"), Some(&file(1)), true, Tape::BUDGET / 2);
        assert!(kept.complete);
        kept.keep(line("r/b"), Some(&file(1)), true, Tape::BUDGET);
        assert!(!kept.complete, "the tape's bytes count against the same budget");
        assert!(kept.lines.is_empty());

        // And the tape's items count the lines: the lines go first.
        let mut tape = Tape::new(3);
        tape.lines.keep(line("r/a"), Some(&file(1)), true, tape.used);
        assert!(tape.lines.complete);
        let item = std::mem::size_of::<(usize, TreeItem)>();
        tape.record(0, unreadable(Tape::BUDGET - item - 10));
        assert!(tape.complete, "the items fit alone");
        assert!(!tape.lines.complete && tape.lines.lines.is_empty());
    }

    #[test]
    fn a_live_file_the_snapshot_lacks_counts_as_read_again() {
        let mut kept = KeptLines::new();
        kept.extra(&file(5));
        let mut dir = file(4096);
        dir.kind = Some(EntryKind::Dir);
        kept.extra(&dir);
        assert_eq!(kept.reread, 5);
    }
}
