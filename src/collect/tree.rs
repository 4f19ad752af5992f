//! The `tree` collector: a directory (or single file) walked depth-first with
//! siblings sorted by name, which is manifest order (see `path_cmp`).

use std::fs::Metadata;
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
        })
    }

    pub fn is_empty(&self) -> bool {
        self.names.is_empty() && self.paths.is_empty()
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

/// Walks `root`, putting every path under `prefix`. Symlinks are never followed.
pub fn walk<'a>(
    root: &'a Path,
    prefix: &'a str,
    excludes: &'a Excludes,
) -> impl Iterator<Item = TreeItem> + 'a {
    // The manifest path is kept as a buffer cut back to the parent's length
    // at each step of the depth-first walk, rather than rebuilt per entry.
    let mut path = prefix.as_bytes().to_vec();
    let mut lens: Vec<usize> = Vec::new();
    walkdir::WalkDir::new(root)
        .follow_links(false)
        .follow_root_links(false)
        .sort_by(|a, b| a.file_name().cmp(b.file_name()))
        .into_iter()
        .filter_entry(move |e| {
            e.depth() == 0
                || excludes.is_empty()
                || !excludes.is_excluded(e.path().strip_prefix(root).unwrap_or(e.path()))
        })
        .map(move |item| match item {
            Ok(e) => {
                let depth = e.depth();
                lens.truncate(depth);
                path.truncate(lens.last().copied().unwrap_or(prefix.len()));
                if depth > 0 {
                    path.push(b'/');
                    path.extend_from_slice(&os_bytes(e.file_name()));
                }
                lens.push(path.len());
                match e.metadata() {
                    Ok(meta) => TreeItem::Entry {
                        path: path.clone(),
                        abs: e.into_path(),
                        meta,
                    },
                    Err(err) => unreadable(e.path().to_path_buf(), err),
                }
            }
            Err(err) => {
                let path = err
                    .path()
                    .map(Path::to_path_buf)
                    .unwrap_or_else(|| root.to_path_buf());
                unreadable(path, err)
            }
        })
}

fn unreadable(path: PathBuf, err: walkdir::Error) -> TreeItem {
    let error = err
        .into_io_error()
        .unwrap_or_else(|| io::Error::other("filesystem loop"));
    TreeItem::Unreadable { path, error }
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
