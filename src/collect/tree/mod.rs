//! The `tree` collector: a directory (or single file) walked depth-first with
//! siblings sorted by name, which is manifest order (see `path_cmp`).

mod ahead;
mod excludes;
mod split;

use std::ffi::OsStr;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

pub use self::ahead::Ahead;
pub use self::excludes::{glob, Excludes, PatternError};
use self::split::Tail;
use super::dir::{lstat, name_str, Dir, Names};
#[cfg(not(unix))]
use crate::meta::os_bytes;
use crate::meta::{bytes_to_path, Stat};

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

impl TreeWalk<'_> {
    /// The root itself, first: entered when it is a directory.
    fn root_item(&mut self) -> Option<TreeItem> {
        Some(match lstat(self.root) {
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
        })
    }

    /// Whether a child at `abs` is left out: a directory the backup must
    /// not enter (the repository, by path or identity), or ignored by a
    /// `.gitignore`.
    fn left_out(&self, abs: &Path, stat: &Stat) -> bool {
        if stat.is_dir()
            && (self.excludes.identities.contains(&stat.identity())
                || self.excludes.absolute.iter().any(|a| a == abs))
        {
            return true;
        }
        self.excludes.gitignore && self.ignored(abs, stat.is_dir())
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
            return self.root_item();
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
            if abs.as_ref().is_some_and(|abs| self.left_out(abs, &stat)) {
                continue;
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

/// A tree for walks to walk: `dirs` directories `d00`, `d01`... under
/// `root`, each with `files` one-byte files `f0`, `f1`...
#[cfg(test)]
fn dirs_of_files(root: &Path, dirs: usize, files: usize) {
    for d in 0..dirs {
        let sub = root.join(format!("d{d:02}"));
        std::fs::create_dir_all(&sub).unwrap();
        for f in 0..files {
            std::fs::write(sub.join(format!("f{f}")), b"x").unwrap();
        }
    }
}
