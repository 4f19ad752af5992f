//! Which entries of a snapshot a command works on: `--include` and
//! `--exclude` globs, matched against the whole manifest path and against
//! the path inside its root (`src/**` matches `tree/project/src/main.rs`).

use std::path::Path;

use globset::GlobSet;

use crate::collect::tree::{glob, PatternError};

/// Include and exclude patterns; an entry is selected when it (or a
/// directory above it) matches an include, or there are none, and neither
/// it nor a directory above it matches an exclude.
#[derive(Debug, Clone, Default)]
pub struct Selection {
    include: Option<Patterns>,
    exclude: Option<Patterns>,
    prefixes: Vec<String>,
}

/// As for backup excludes: a pattern without `/` matches a name at any
/// depth, one with `/` a path (inside the root, or the whole manifest path).
#[derive(Debug, Clone)]
struct Patterns {
    names: GlobSet,
    paths: GlobSet,
}

fn build(patterns: &[String]) -> Result<Option<Patterns>, PatternError> {
    if patterns.is_empty() {
        return Ok(None);
    }
    let (mut names, mut paths) = (globset::GlobSetBuilder::new(), globset::GlobSetBuilder::new());
    for p in patterns {
        let p = p.trim_end_matches('/');
        if p.contains('/') {
            paths.add(glob(p.trim_start_matches('/'))?);
        } else {
            names.add(glob(p)?);
        }
    }
    let err = |source| PatternError::new(&patterns.join(" "), &source);
    Ok(Some(Patterns {
        names: names.build().map_err(err)?,
        paths: paths.build().map_err(err)?,
    }))
}

impl Selection {
    /// `prefixes` are the snapshot's root prefixes.
    pub fn new(
        include: &[String],
        exclude: &[String],
        prefixes: Vec<String>,
    ) -> Result<Selection, PatternError> {
        let include = build(include).map_err(|e| PatternError { what: "include", ..e })?;
        Ok(Selection {
            include,
            exclude: build(exclude)?,
            prefixes,
        })
    }

    pub fn is_everything(&self) -> bool {
        self.include.is_none() && self.exclude.is_none()
    }

    pub fn matches(&self, path: &[u8]) -> bool {
        if self.is_everything() {
            return true;
        }
        let path = String::from_utf8_lossy(path);
        let mut candidates = vec![path.to_string()];
        for prefix in &self.prefixes {
            if let Some(rest) = path
                .strip_prefix(prefix.as_str())
                .and_then(|r| r.strip_prefix('/'))
            {
                candidates.push(rest.to_string());
            }
        }
        let hit = |p: &Patterns| {
            candidates.iter().any(|c| matches_or_ancestor(&p.paths, c))
                || path.split('/').any(|name| p.names.is_match(name))
        };
        self.include.as_ref().is_none_or(hit) && !self.exclude.as_ref().is_some_and(hit)
    }
}

/// Whether the path or one of its ancestors matches.
fn matches_or_ancestor(set: &GlobSet, path: &str) -> bool {
    let mut p = Path::new(path);
    loop {
        if set.is_match(p) {
            return true;
        }
        match p.parent() {
            Some(parent) if !parent.as_os_str().is_empty() => p = parent,
            _ => return false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn include_and_exclude() {
        let s = |inc: &[&str], exc: &[&str]| {
            let v = |p: &[&str]| p.iter().map(|s| s.to_string()).collect::<Vec<_>>();
            Selection::new(&v(inc), &v(exc), vec!["tree/proj".into()]).unwrap()
        };
        let all = s(&[], &[]);
        assert!(all.matches(b"tree/proj/a"));
        let src = s(&["src/**"], &[]);
        assert!(src.matches(b"tree/proj/src/main.rs"));
        assert!(!src.matches(b"tree/proj/README"));
        let dir = s(&["tree/proj/src"], &["*.log"]);
        assert!(s(&["main.go"], &[]).matches(b"tree/proj/cmd/main.go"));
        assert!(dir.matches(b"tree/proj/src/deep/x.rs"));
        assert!(!dir.matches(b"tree/proj/src/deep/x.log"));
        let no_vendor = s(&[], &["vendor"]);
        assert!(!no_vendor.matches(b"tree/proj/vendor/a/b.go"));
        assert!(no_vendor.matches(b"tree/proj/main.go"));
        assert!(!no_vendor.matches(b"tree/proj/x/vendor/y"));
    }
}
