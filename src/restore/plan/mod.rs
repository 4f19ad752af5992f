//! The plan: a snapshot's manifest and what is on disk where it is restored,
//! walked side by side in manifest order (as a backup matches its parent),
//! so that every path is sorted into create, replace, metadata-only,
//! unchanged, or on disk but not in the snapshot.

use std::cmp::Ordering;
use std::ffi::OsString;
use std::io;
use std::iter::Peekable;
use std::path::PathBuf;

use crate::collect::tree::{self, Excludes, TreeItem, TreeWalk};
use crate::meta::{bytes_to_path, Stat};
use crate::repo::manifest::{path_cmp, Entry, EntryKind, RawLine};
use crate::repo::RepoError;

mod sort;
mod tape;

pub use sort::{classify, hash_file, metadata_differs, Action, Sorted, Sorter};
pub use tape::{KeptLines, Tape};

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

/// Entries the walk's helper thread may queue (some 200 bytes each): the
/// walk runs on a thread of its own, and the helper takes the root's last
/// children, so its `fstatat` and `getdents` calls run beside the merge.
const WALK_HELPER_QUEUE: usize = 6144;

/// A root's walk: on a thread of its own, or on this one when no thread
/// could be started.
enum LiveWalk<'a> {
    Ahead(tree::Ahead),
    Here(TreeWalk<'a>),
}

impl Iterator for LiveWalk<'_> {
    type Item = TreeItem;

    fn next(&mut self) -> Option<TreeItem> {
        match self {
            LiveWalk::Ahead(walk) => walk.next(),
            LiveWalk::Here(walk) => walk.next(),
        }
    }
}

/// The manifest and the live roots, merged in manifest order.
pub struct Merge<'a, I: Iterator<Item = Result<RawLine, RepoError>>> {
    manifest: Peekable<I>,
    targets: &'a [Target],
    current: usize,
    walk: Option<Peekable<LiveWalk<'a>>>,
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
            let (dest, prefix) = (target.dest.clone(), target.prefix.clone());
            let walk = match tree::Ahead::start(dest, prefix, target.excludes.clone(), WALK_HELPER_QUEUE) {
                Ok(ahead) => LiveWalk::Ahead(ahead),
                Err(e) => {
                    tracing::debug!("walking {} on this thread: {e}", target.dest.display());
                    LiveWalk::Here(tree::walk(&target.dest, &target.prefix, &target.excludes))
                }
            };
            self.walk = Some(walk.peekable());
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
