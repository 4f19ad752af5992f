//! The `tree` collector: a directory (or single file) walked depth-first with
//! siblings sorted by name, which is manifest order (see `path_cmp`).

use std::ffi::OsStr;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use globset::{Glob, GlobBuilder, GlobSet, GlobSetBuilder};

use super::dir::{lstat, name_str, Dir, Names};
use crate::batch::BatchSender;
#[cfg(not(unix))]
use crate::meta::os_bytes;
use crate::meta::{bytes_to_path, Stat};

/// Exclude patterns with gitignore-like meaning: a pattern without `/`
/// matches a name at any depth; one with `/` matches the path relative to the
/// root (a leading `/` is allowed); `*` stays within one name, `**` crosses
/// directories. An excluded directory is not entered.
#[derive(Debug, Clone, Default)]
pub struct Excludes {
    names: GlobSet,
    paths: GlobSet,
    /// Directories never to enter, whatever the patterns say, by path and
    /// by identity (a path spelled through a symlink still matches).
    absolute: Vec<PathBuf>,
    identities: Vec<(u64, u64)>,
    /// Honour `.gitignore` and `.ignore` files found in the tree.
    pub gitignore: bool,
    /// Do not descend into directories on another filesystem than the root.
    pub one_file_system: bool,
    /// Leave out a directory that holds a file of one of these names.
    pub markers: Vec<std::ffi::OsString>,
}

#[derive(Debug, thiserror::Error)]
#[error("bad exclude pattern {pattern:?}: {source}")]
pub struct PatternError {
    pub pattern: String,
    #[source]
    pub source: globset::Error,
}

pub fn glob(pattern: &str) -> Result<Glob, PatternError> {
    GlobBuilder::new(pattern)
        .literal_separator(true)
        .backslash_escape(true)
        .build()
        .map_err(|source| PatternError {
            pattern: pattern.to_string(),
            source,
        })
}

impl Excludes {
    pub fn new(patterns: &[String]) -> Result<Excludes, PatternError> {
        let mut names = GlobSetBuilder::new();
        let mut paths = GlobSetBuilder::new();
        for p in patterns {
            let trimmed = p.trim_end_matches('/');
            if trimmed.contains('/') {
                paths.add(glob(trimmed.trim_start_matches('/'))?);
            } else {
                names.add(glob(trimmed)?);
            }
        }
        let build = |b: GlobSetBuilder, pattern: &str| {
            b.build().map_err(|source| PatternError {
                pattern: pattern.to_string(),
                source,
            })
        };
        Ok(Excludes {
            names: build(names, &patterns.join(" "))?,
            paths: build(paths, &patterns.join(" "))?,
            absolute: Vec::new(),
            identities: Vec::new(),
            gitignore: false,
            one_file_system: false,
            markers: Vec::new(),
        })
    }

    /// Leaves out one absolute path (the repository, when it lies inside a
    /// source: saving it into itself would grow it with every backup).
    pub fn skip_absolute(&mut self, path: PathBuf) {
        if let Ok(meta) = fs::metadata(&path) {
            self.identities.push(crate::meta::identity(&meta));
        }
        self.absolute.push(path);
    }

    pub fn is_excluded(&self, relative: &Path) -> bool {
        let name_hit = relative
            .file_name()
            .map(|n| self.names.is_match(n))
            .unwrap_or(false);
        name_hit || self.paths.is_match(relative)
    }

    /// [`Excludes::is_excluded`] for a walked child: its name, and its path
    /// relative to the root as manifest bytes (only made a path when a
    /// pattern needs it).
    fn is_excluded_child(&self, name: &OsStr, relative: &[u8]) -> bool {
        (!self.names.is_empty() && self.names.is_match(name))
            || (!self.paths.is_empty() && self.paths.is_match(bytes_to_path(relative)))
    }
}

/// One walked item.
pub enum TreeItem {
    Entry(Walked),
    /// Something could not be read; the walk goes on without it.
    Unreadable {
        path: PathBuf,
        error: io::Error,
    },
}

/// An entry the walk found.
pub struct Walked {
    /// Manifest path: the root's prefix, then the relative path.
    pub path: Vec<u8>,
    pub stat: Stat,
    pub place: Place,
}

/// Where a walked entry lies on disk, made into a path only when asked for:
/// most entries of an unchanged tree never need one.
pub struct Place {
    /// The directory holding the entry, shared with its siblings (the root
    /// itself, for the root).
    dir: Arc<Path>,
    /// Where the entry's name starts in its manifest path; `None` for the root.
    name_at: Option<usize>,
}

impl Place {
    /// The path on disk of the entry whose manifest path is `path`.
    pub fn abs(&self, path: &[u8]) -> PathBuf {
        match self.name_at.and_then(|at| path.get(at..)) {
            Some(name) => self.dir.join(bytes_to_path(name)),
            None => self.dir.to_path_buf(),
        }
    }
}

/// Directories held open at once, at most: deeper levels are listed and then
/// closed, and their subdirectories opened by path (still without following
/// a link, still checked to be what the listing saw), so that a very deep
/// tree cannot run the process out of descriptors.
const MAX_OPEN_DIRS: usize = 256;

/// Walks `root`, putting every path under `prefix`. Symlinks are never
/// followed, not even `root` itself.
///
/// Children are listed whole, sorted by name bytes, and stat'ed through
/// their directory's descriptor (see [`Dir`]).
pub fn walk<'a>(root: &'a Path, prefix: &'a str, excludes: &'a Excludes) -> TreeWalk<'a> {
    TreeWalk {
        root,
        excludes,
        path: prefix.as_bytes().to_vec(),
        root_len: prefix.len(),
        stack: Vec::new(),
        pending: Vec::new(),
        started: false,
        root_dev: 0,
        tail: None,
        helper_queue: 0,
    }
}

pub struct TreeWalk<'a> {
    root: &'a Path,
    excludes: &'a Excludes,
    /// The manifest path of the last entry, cut back as the walk climbs.
    path: Vec<u8>,
    /// The length of the root's own manifest path (the prefix).
    root_len: usize,
    stack: Vec<Level>,
    /// Items to hand out before walking on (a directory that could not be
    /// listed is reported right after the directory itself).
    pending: Vec<TreeItem>,
    started: bool,
    /// The root's device, for `one_file_system`.
    root_dev: u64,
    /// The root's last children, walked on a helper thread while this walk
    /// goes through the first ones; handed out after them.
    tail: Option<Tail>,
    /// Entries the helper may queue; none, no helper.
    helper_queue: usize,
}

/// One listed directory: its children still to visit, and the manifest path
/// length of the directory itself.
#[derive(Clone)]
struct Level {
    dir: Arc<Path>,
    /// Open while the stack is shallower than [`MAX_OPEN_DIRS`].
    handle: Option<Arc<Dir>>,
    children: Names,
    /// The next child to visit, and the end of those this walk visits.
    next: usize,
    end: usize,
    path_len: usize,
    /// This directory's `.gitignore`/`.ignore` rules, when asked for.
    ignore: Option<ignore::gitignore::Gitignore>,
}

impl TreeWalk<'_> {
    /// Shares the root's children with a helper thread that may queue about
    /// `entries` entries (some 200 bytes each) ahead of this walk. Worth it
    /// when the walk is the work, as in a backup of a mostly unchanged tree;
    /// not when reading files is, where the queue would only fill up.
    pub fn with_helper(mut self, entries: usize) -> Self {
        self.helper_queue = entries;
        self
    }

    /// Lists a directory just opened (or not), children sorted by name; on
    /// failure, queues the error. Returns false when the directory is to be
    /// left out whole (it holds a marker file).
    fn descend(&mut self, dir: &Path, opened: io::Result<Dir>) -> bool {
        let listed = opened.and_then(|mut handle| Ok((handle.names()?, handle)));
        match listed {
            Ok((mut children, handle)) => {
                if !self.excludes.markers.is_empty()
                    && children
                        .iter()
                        .any(|c| self.excludes.markers.iter().any(|m| m.as_os_str() == name_str(c)))
                {
                    return false;
                }
                let ignore = self
                    .excludes
                    .gitignore
                    .then(|| ignore_rules(dir, &children))
                    .flatten();
                children.sort();
                let end = children.len();
                self.stack.push(Level {
                    dir: Arc::from(dir),
                    handle: (self.stack.len() < MAX_OPEN_DIRS).then(|| Arc::new(handle)),
                    children,
                    next: 0,
                    end,
                    path_len: self.path.len(),
                    ignore,
                });
            }
            Err(error) => self.pending.push(TreeItem::Unreadable {
                path: dir.to_path_buf(),
                error,
            }),
        }
        true
    }

    /// Shares the root's children with a helper thread: this walk takes
    /// them from the front, the helper from the back, each child whole
    /// (its subtree), until they meet. An unchanged tree costs little more
    /// than its `fstatat` and `getdents` calls, and two threads make them
    /// about twice as fast; meeting wherever they meet balances the two
    /// whatever the sizes of the subtrees. The helper's entries wait in
    /// bounded queues, and it stops taking children when enough are queued,
    /// so memory stays bounded.
    fn split_root(&mut self) {
        let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
        let Some(level) = self.stack.last() else {
            return;
        };
        if cores < 2
            || self.helper_queue == 0
            || self.stack.len() != 1
            || level.handle.is_none()
            || level.end < 2
        {
            return;
        }
        let helper = Helper {
            root: self.root.to_path_buf(),
            excludes: self.excludes.clone(),
            path: self.path.clone(),
            root_len: self.root_len,
            root_dev: self.root_dev,
            level: level.clone(),
            queue: self.helper_queue,
        };
        self.tail = Tail::start(helper);
    }

    /// Whether the `.gitignore`/`.ignore` rules of the directories above
    /// leave a path out; the deepest rule that speaks decides.
    fn ignored(&self, abs: &Path, is_dir: bool) -> bool {
        for level in self.stack.iter().rev() {
            if let Some(rules) = &level.ignore {
                match rules.matched(abs, is_dir) {
                    ignore::Match::Ignore(_) => return true,
                    ignore::Match::Whitelist(_) => return false,
                    ignore::Match::None => {}
                }
            }
        }
        false
    }
}

/// The rules of a directory's `.gitignore` and `.ignore` (the latter wins).
fn ignore_rules(dir: &Path, children: &Names) -> Option<ignore::gitignore::Gitignore> {
    let mut builder = ignore::gitignore::GitignoreBuilder::new(dir);
    let mut any = false;
    for name in [".gitignore", ".ignore"] {
        if children.iter().any(|c| name_str(c) == name) {
            any = true;
            // A malformed line is skipped, as git does.
            let _ = builder.add(dir.join(name));
        }
    }
    if any {
        builder.build().ok()
    } else {
        None
    }
}

impl Iterator for TreeWalk<'_> {
    type Item = TreeItem;

    fn next(&mut self) -> Option<TreeItem> {
        if let Some(item) = self.pending.pop() {
            return Some(item);
        }
        if !self.started {
            self.started = true;
            return Some(match lstat(self.root) {
                Ok(stat) => {
                    self.root_dev = stat.dev;
                    if stat.is_dir() && !self.descend(self.root, Dir::open(self.root, stat.identity())) {
                        return None;
                    }
                    if stat.is_dir() {
                        self.split_root();
                    }
                    TreeItem::Entry(Walked {
                        path: self.path.clone(),
                        stat,
                        place: Place {
                            dir: Arc::from(self.root),
                            name_at: None,
                        },
                    })
                }
                Err(error) => TreeItem::Unreadable {
                    path: self.root.to_path_buf(),
                    error,
                },
            });
        }
        loop {
            let at_root = self.stack.len() == 1;
            let Some(level) = self.stack.last_mut() else {
                return self.tail.as_mut()?.next();
            };
            if level.next == level.end {
                self.stack.pop();
                continue;
            }
            if at_root {
                if let Some(tail) = &self.tail {
                    if !tail.take(level.next) {
                        // The helper has the rest of the root.
                        level.end = level.next;
                        continue;
                    }
                }
            }
            let i = level.next;
            level.next += 1;
            let level = &self.stack[self.stack.len() - 1];
            let name = level.children.get(i);
            let os_name = name_str(name);
            self.path.truncate(level.path_len);
            self.path.push(b'/');
            push_name(&mut self.path, os_name);
            if self
                .excludes
                .is_excluded_child(os_name, &self.path[self.root_len + 1..])
            {
                continue;
            }
            let name_at = level.path_len + 1;
            let stat = match &level.handle {
                Some(handle) => handle.stat(name),
                None => lstat(&level.dir.join(os_name)),
            };
            let stat = match stat {
                Ok(stat) => stat,
                Err(error) => {
                    return Some(TreeItem::Unreadable {
                        path: level.dir.join(os_name),
                        error,
                    })
                }
            };
            // Only directories and ignore rules need the path on disk here.
            let abs = (stat.is_dir() || self.excludes.gitignore).then(|| level.dir.join(os_name));
            if let Some(abs) = &abs {
                if stat.is_dir()
                    && (self.excludes.identities.contains(&stat.identity())
                        || self.excludes.absolute.contains(abs))
                {
                    continue;
                }
                if self.excludes.gitignore && self.ignored(abs, stat.is_dir()) {
                    continue;
                }
            }
            let dir = level.dir.clone();
            let enter = stat.is_dir() && !(self.excludes.one_file_system && stat.dev != self.root_dev);
            if let (true, Some(abs)) = (enter, &abs) {
                let opened = match &level.handle {
                    Some(handle) => handle.open_child(name, stat.identity()),
                    None => Dir::open(abs, stat.identity()),
                };
                if !self.descend(abs, opened) {
                    continue;
                }
            }
            return Some(TreeItem::Entry(Walked {
                path: self.path.clone(),
                stat,
                place: Place {
                    dir,
                    name_at: Some(name_at),
                },
            }));
        }
    }
}

/// What the helper needs to walk root children on its own.
struct Helper {
    root: PathBuf,
    excludes: Excludes,
    path: Vec<u8>,
    root_len: usize,
    root_dev: u64,
    /// The root's level.
    level: Level,
    /// Entries queued before the helper stops taking children; a part it
    /// has taken can queue as many again.
    queue: usize,
}

/// The root's children as shared between the walk and its helper.
struct Split {
    state: Mutex<SplitState>,
    /// Entries the helper has queued and the walk not yet taken.
    queued: AtomicUsize,
}

struct SplitState {
    /// The walk has taken the children before `front`...
    front: usize,
    /// ...and the helper those from `back` on, each into its own queue.
    back: usize,
    parts: Vec<(usize, Part)>,
}

/// One root child the helper walks: its entries, and whether it got to the
/// end of them (a helper that died half-way must not look like an end).
struct Part {
    abs: PathBuf,
    entries: crossbeam_channel::Receiver<Vec<TreeItem>>,
    complete: Arc<std::sync::atomic::AtomicBool>,
}

/// The helper's side of a split root, handed out after the walk's own.
struct Tail {
    split: Arc<Split>,
    /// The helper's parts, in walk order, once the walk has come to them.
    parts: Option<std::vec::IntoIter<Part>>,
    part: Option<Part>,
    batch: std::vec::IntoIter<TreeItem>,
}

impl Tail {
    const BATCH: usize = 128;

    fn start(helper: Helper) -> Option<Tail> {
        let split = Arc::new(Split {
            state: Mutex::new(SplitState {
                front: helper.level.next,
                back: helper.level.end,
                parts: Vec::new(),
            }),
            queued: AtomicUsize::new(0),
        });
        let shared = split.clone();
        std::thread::Builder::new()
            .name("cairn-walk-tail".into())
            .spawn(move || Tail::help(helper, &shared))
            .ok()?;
        Some(Tail {
            split,
            parts: None,
            part: None,
            batch: Vec::new().into_iter(),
        })
    }

    /// Whether the walk may take root child `i`; false once the helper has it.
    fn take(&self, i: usize) -> bool {
        let mut state = self.split.state.lock().unwrap_or_else(|e| e.into_inner());
        if i >= state.back {
            return false;
        }
        state.front = i + 1;
        true
    }

    /// The helper: root children from the back, one subtree at a time.
    fn help(helper: Helper, split: &Split) {
        let Helper {
            root,
            excludes,
            path,
            root_len,
            root_dev,
            level,
            queue,
        } = helper;
        loop {
            let (child, tx, complete) = {
                let mut state = split.state.lock().unwrap_or_else(|e| e.into_inner());
                if split.queued.load(Ordering::Relaxed) >= queue
                    || state.back == 0
                    || state.back - 1 < state.front
                {
                    tracing::debug!(
                        "walk of the root's last children done, {:?} CPU",
                        crate::progress::thread_cpu()
                    );
                    return;
                }
                state.back -= 1;
                let (tx, rx) = crossbeam_channel::bounded(queue.div_ceil(Self::BATCH));
                let child = state.back;
                let complete = Arc::new(std::sync::atomic::AtomicBool::new(false));
                let part = Part {
                    abs: level.dir.join(name_str(level.children.get(child))),
                    entries: rx,
                    complete: complete.clone(),
                };
                state.parts.push((child, part));
                (child, tx, complete)
            };
            let mut part = level.clone();
            part.next = child;
            part.end = child + 1;
            let walk = TreeWalk {
                root: &root,
                excludes: &excludes,
                path: path.clone(),
                root_len,
                stack: vec![part],
                pending: Vec::new(),
                started: true,
                root_dev,
                tail: None,
                helper_queue: 0,
            };
            let mut out = BatchSender::new(tx, Self::BATCH).counting(&split.queued);
            for item in walk {
                if !out.push(item) {
                    return;
                }
            }
            if !out.flush() {
                return;
            }
            complete.store(true, Ordering::Release);
        }
    }

    fn next(&mut self) -> Option<TreeItem> {
        if self.parts.is_none() {
            // The walk has stopped taking children: the helper takes no more
            // (see `take`), so its parts are all known.
            let mut state = self.split.state.lock().unwrap_or_else(|e| e.into_inner());
            let mut parts = std::mem::take(&mut state.parts);
            drop(state);
            parts.sort_by_key(|(child, _)| *child);
            self.parts = Some(
                parts
                    .into_iter()
                    .map(|(_, part)| part)
                    .collect::<Vec<_>>()
                    .into_iter(),
            );
            tracing::debug!(
                "walk of the root's first children done, {:?} CPU",
                crate::progress::thread_cpu()
            );
        }
        loop {
            if let Some(item) = self.batch.next() {
                return Some(item);
            }
            if let Some(part) = &self.part {
                if let Ok(batch) = part.entries.recv() {
                    self.split.queued.fetch_sub(batch.len(), Ordering::Relaxed);
                    self.batch = batch.into_iter();
                    continue;
                }
                // The sender is gone: after the part's last entry, or not.
                if !part.complete.load(Ordering::Acquire) {
                    let path = part.abs.clone();
                    self.part = None;
                    return Some(TreeItem::Unreadable {
                        path,
                        error: io::Error::other("not walked: the thread walking it stopped early"),
                    });
                }
            }
            self.part = Some(self.parts.as_mut()?.next()?);
        }
    }
}

/// Appends a name to a manifest path.
#[cfg(unix)]
fn push_name(path: &mut Vec<u8>, name: &OsStr) {
    use std::os::unix::ffi::OsStrExt;
    path.extend_from_slice(name.as_bytes());
}

#[cfg(not(unix))]
fn push_name(path: &mut Vec<u8>, name: &OsStr) {
    path.extend_from_slice(&os_bytes(name));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exclude_semantics() {
        let ex = Excludes::new(&[
            "target".into(),
            "*.log".into(),
            "/docs/*.tmp".into(),
            "a/**/z".into(),
        ])
        .unwrap();
        assert!(ex.is_excluded(Path::new("target")));
        assert!(ex.is_excluded(Path::new("sub/target")));
        assert!(ex.is_excluded(Path::new("x/y.log")));
        assert!(ex.is_excluded(Path::new("docs/a.tmp")));
        assert!(!ex.is_excluded(Path::new("sub/docs/a.tmp")));
        assert!(ex.is_excluded(Path::new("a/b/c/z")));
        assert!(!ex.is_excluded(Path::new("src/main.rs")));
    }

    #[test]
    fn a_root_split_between_two_threads_walks_in_manifest_order() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        let mut expected = vec![b"tree/root".to_vec()];
        for d in 0..24 {
            let sub = format!("d{d:02}");
            for e in 0..3 {
                let leaf = root.join(&sub).join(format!("e{e}"));
                fs::create_dir_all(&leaf).unwrap();
                fs::write(leaf.join("f"), b"x").unwrap();
            }
            fs::write(root.join(format!("{sub}.txt")), b"y").unwrap();
        }
        for d in 0..24 {
            let sub = format!("tree/root/d{d:02}");
            expected.push(sub.clone().into_bytes());
            for e in 0..3 {
                expected.push(format!("{sub}/e{e}").into_bytes());
                expected.push(format!("{sub}/e{e}/f").into_bytes());
            }
            expected.push(format!("{sub}.txt").into_bytes());
        }
        expected.sort_by(|a, b| crate::repo::manifest::path_cmp(a, b));
        let excludes = Excludes::default();
        // Where the two meet depends on timing: walk a few times.
        for _ in 0..20 {
            let mut walk = walk(&root, "tree/root", &excludes).with_helper(1024);
            let first = walk.next();
            if std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1) > 1 {
                assert!(walk.tail.is_some(), "the root was not split");
            }
            let walked: Vec<Vec<u8>> = first
                .into_iter()
                .chain(walk)
                .map(|item| match item {
                    TreeItem::Entry(w) => w.path,
                    TreeItem::Unreadable { path, error } => panic!("{}: {error}", path.display()),
                })
                .collect();
            assert_eq!(walked, expected);
        }
    }

    #[test]
    fn a_helper_that_stops_half_way_is_reported_not_taken_for_the_end() {
        let (tx, rx) = crossbeam_channel::bounded(4);
        tx.send(Vec::new()).unwrap();
        drop(tx);
        let split = Arc::new(Split {
            state: Mutex::new(SplitState {
                front: 0,
                back: 0,
                parts: vec![(
                    0,
                    Part {
                        abs: PathBuf::from("/src/zzz"),
                        entries: rx,
                        complete: Arc::new(std::sync::atomic::AtomicBool::new(false)),
                    },
                )],
            }),
            queued: AtomicUsize::new(0),
        });
        let mut tail = Tail {
            split,
            parts: None,
            part: None,
            batch: Vec::new().into_iter(),
        };
        match tail.next() {
            Some(TreeItem::Unreadable { path, error }) => {
                assert_eq!(path, PathBuf::from("/src/zzz"));
                assert!(error.to_string().contains("stopped early"), "{error}");
            }
            _ => panic!("a truncated part passed for a whole one"),
        }
        assert!(tail.next().is_none());
    }

    #[test]
    fn bad_pattern_is_named() {
        let err = Excludes::new(&["a[".into()]).unwrap_err();
        assert!(err.to_string().contains("a["));
    }
}
