//! Exclude patterns and the paths a walk must leave out.

use std::ffi::OsStr;
use std::fs;
use std::path::{Path, PathBuf};

use globset::{Glob, GlobBuilder, GlobSet, GlobSetBuilder};

use crate::meta::bytes_to_path;

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
    pub(super) absolute: Vec<PathBuf>,
    pub(super) identities: Vec<(u64, u64)>,
    /// Honour `.gitignore` and `.ignore` files found in the tree.
    pub gitignore: bool,
    /// Do not descend into directories on another filesystem than the root.
    pub one_file_system: bool,
    /// Leave out a directory that holds a file of one of these names.
    pub markers: Vec<std::ffi::OsString>,
}

/// A pattern that is not a valid glob: which kind, the pattern, and why
/// (the glob library's reason alone: its message repeats the pattern).
#[derive(Debug, thiserror::Error)]
#[error("bad {what} pattern {pattern:?}: {reason}")]
pub struct PatternError {
    pub what: &'static str,
    pub pattern: String,
    pub reason: String,
}

impl PatternError {
    pub fn new(pattern: &str, source: &globset::Error) -> PatternError {
        PatternError {
            what: "exclude",
            pattern: pattern.to_string(),
            reason: source.kind().to_string(),
        }
    }
}

pub fn glob(pattern: &str) -> Result<Glob, PatternError> {
    // On Windows `\` separates path components, as `/` does; globset
    // compares candidates with `/` there.
    #[cfg(windows)]
    let text = &pattern.replace('\\', "/");
    #[cfg(not(windows))]
    let text = pattern;
    GlobBuilder::new(text)
        .literal_separator(true)
        .backslash_escape(cfg!(not(windows)))
        .build()
        .map_err(|source| PatternError::new(pattern, &source))
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
            b.build().map_err(|source| PatternError::new(pattern, &source))
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
            // (0, 0) is "unknown" (Windows): it would match every directory.
            let identity = crate::meta::identity(&meta);
            if identity != (0, 0) {
                self.identities.push(identity);
            }
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
    pub(super) fn is_excluded_child(&self, name: &OsStr, relative: &[u8]) -> bool {
        (!self.names.is_empty() && self.names.is_match(name))
            || (!self.paths.is_empty() && self.paths.is_match(bytes_to_path(relative)))
    }
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
