//! The `tree` collector: a directory (or single file) walked depth-first with
//! siblings sorted by name, which is manifest order (see `path_cmp`).

use std::fs::{self, Metadata};
use std::io;
use std::path::{Path, PathBuf};

use globset::{Glob, GlobBuilder, GlobSet, GlobSetBuilder};

use crate::meta::os_bytes;

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

    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
            && self.paths.is_empty()
            && self.absolute.is_empty()
            && self.identities.is_empty()
    }

    pub fn is_excluded(&self, relative: &Path) -> bool {
        let name_hit = relative
            .file_name()
            .map(|n| self.names.is_match(n))
            .unwrap_or(false);
        name_hit || self.paths.is_match(relative)
    }
}

/// One walked item.
pub enum TreeItem {
    Entry {
        /// Manifest path: the root's prefix, then the relative path.
        path: Vec<u8>,
        abs: PathBuf,
        meta: Metadata,
    },
    /// Something could not be read; the walk goes on without it.
    Unreadable { path: PathBuf, error: io::Error },
}

/// Walks `root`, putting every path under `prefix`. Symlinks are never
/// followed, not even `root` itself.
///
/// Children are listed whole, sorted by name bytes, and stat'ed relative to
/// their directory's descriptor (`DirEntry::metadata` is `fstatat` on Unix),
/// which spares the kernel a walk of the full path for every file.
pub fn walk<'a>(root: &'a Path, prefix: &'a str, excludes: &'a Excludes) -> TreeWalk<'a> {
    TreeWalk {
        root,
        excludes,
        path: prefix.as_bytes().to_vec(),
        stack: Vec::new(),
        pending: Vec::new(),
        started: false,
        root_dev: 0,
    }
}

pub struct TreeWalk<'a> {
    root: &'a Path,
    excludes: &'a Excludes,
    /// The manifest path of the last entry, cut back as the walk climbs.
    path: Vec<u8>,
    stack: Vec<Level>,
    /// Items to hand out before walking on (a directory that could not be
    /// listed is reported right after the directory itself).
    pending: Vec<TreeItem>,
    started: bool,
    /// The root's device, for `one_file_system`.
    root_dev: u64,
}

/// One open directory: its children still to visit, and the manifest path
/// length of the directory itself.
struct Level {
    dir: PathBuf,
    children: std::vec::IntoIter<fs::DirEntry>,
    path_len: usize,
    /// This directory's `.gitignore`/`.ignore` rules, when asked for.
    ignore: Option<ignore::gitignore::Gitignore>,
}

impl TreeWalk<'_> {
    /// Lists a directory's children sorted by name; on failure, queues the
    /// error. The directory is opened without following a symlink and must
    /// still be the one the walk saw, so a directory swapped for a link
    /// cannot lead the walk outside the tree.
    /// Lists a directory's children sorted by name; on failure, queues the
    /// error. The directory is opened without following a symlink and must
    /// still be the one the walk saw, so a directory swapped for a link
    /// cannot lead the walk outside the tree. Returns false when the
    /// directory is to be left out whole (it holds a marker file).
    fn descend(&mut self, dir: &Path, seen: &Metadata) -> bool {
        if self.excludes.one_file_system && crate::meta::identity(seen).0 != self.root_dev {
            return true;
        }
        let listed = crate::meta::open_same(dir, crate::meta::identity(seen), true).and_then(|handle| {
            // On Linux the listing goes through the open handle itself.
            let source = if proc_fds() {
                PathBuf::from(format!("/proc/self/fd/{}", raw_fd(&handle)))
            } else {
                dir.to_path_buf()
            };
            let children = fs::read_dir(source)?.collect::<io::Result<Vec<fs::DirEntry>>>();
            drop(handle);
            children
        });
        match listed {
            Ok(mut children) => {
                if !self.excludes.markers.is_empty()
                    && children
                        .iter()
                        .any(|c| self.excludes.markers.contains(&c.file_name()))
                {
                    return false;
                }
                let ignore = self
                    .excludes
                    .gitignore
                    .then(|| ignore_rules(dir, &children))
                    .flatten();
                children.sort_by_cached_key(|c| c.file_name());
                self.stack.push(Level {
                    dir: dir.to_path_buf(),
                    children: children.into_iter(),
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
fn ignore_rules(dir: &Path, children: &[fs::DirEntry]) -> Option<ignore::gitignore::Gitignore> {
    let mut builder = ignore::gitignore::GitignoreBuilder::new(dir);
    let mut any = false;
    for name in [".gitignore", ".ignore"] {
        if children.iter().any(|c| c.file_name() == name) {
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
            return Some(match fs::symlink_metadata(self.root) {
                Ok(meta) => {
                    self.root_dev = crate::meta::identity(&meta).0;
                    if meta.is_dir() && !self.descend(self.root, &meta) {
                        return None;
                    }
                    TreeItem::Entry {
                        path: self.path.clone(),
                        abs: self.root.to_path_buf(),
                        meta,
                    }
                }
                Err(error) => TreeItem::Unreadable {
                    path: self.root.to_path_buf(),
                    error,
                },
            });
        }
        loop {
            let level = self.stack.last_mut()?;
            let Some(child) = level.children.next() else {
                self.stack.pop();
                continue;
            };
            let parent_len = level.path_len;
            let name = child.file_name();
            let abs = level.dir.join(&name);
            if !self.excludes.is_empty()
                && self
                    .excludes
                    .is_excluded(abs.strip_prefix(self.root).unwrap_or(&abs))
            {
                continue;
            }
            let meta = match child.metadata() {
                Ok(meta) => meta,
                Err(error) => return Some(TreeItem::Unreadable { path: abs, error }),
            };
            if meta.is_dir()
                && (self.excludes.identities.contains(&crate::meta::identity(&meta))
                    || self.excludes.absolute.contains(&abs))
            {
                continue;
            }
            self.path.truncate(parent_len);
            self.path.push(b'/');
            self.path.extend_from_slice(&os_bytes(&name));
            if self.excludes.gitignore && self.ignored(&abs, meta.is_dir()) {
                continue;
            }
            if meta.is_dir() && !self.descend(&abs, &meta) {
                continue;
            }
            return Some(TreeItem::Entry {
                path: self.path.clone(),
                abs,
                meta,
            });
        }
    }
}

/// Whether open descriptors can be listed by path (Linux with /proc mounted).
fn proc_fds() -> bool {
    static AVAILABLE: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *AVAILABLE.get_or_init(|| cfg!(target_os = "linux") && Path::new("/proc/self/fd").is_dir())
}

#[cfg(unix)]
fn raw_fd(file: &fs::File) -> i32 {
    use std::os::unix::io::AsRawFd;
    file.as_raw_fd()
}

#[cfg(not(unix))]
fn raw_fd(_file: &fs::File) -> i32 {
    -1
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
    fn bad_pattern_is_named() {
        let err = Excludes::new(&["a[".into()]).unwrap_err();
        assert!(err.to_string().contains("a["));
    }
}
