//! Directory descriptors along manifest paths, for the writer: every
//! directory below a root's base is opened from its parent without
//! following a link (see `fsops`).

use std::ffi::{OsStr, OsString};
use std::io;
use std::sync::Arc;

use super::fsops::DirHandle;
use super::plan::Target;
use crate::meta::{self, bytes_to_path};

/// Directory descriptors along manifest paths: the chain of the last path
/// stays open, since manifest order visits siblings together.
pub(super) struct Handles<'a> {
    pub(super) targets: &'a [Target],
    root: Option<usize>,
    base: Option<Arc<DirHandle>>,
    chain: Vec<(OsString, Arc<DirHandle>)>,
    /// Each base directory with its mtime when first opened: it lies
    /// outside the roots, so a restore puts its mtime back at the end.
    pub(super) bases: Vec<(Arc<DirHandle>, i64, u32)>,
}

impl<'a> Handles<'a> {
    pub(super) fn new(targets: &'a [Target]) -> Handles<'a> {
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
    pub(super) fn parent_of(&mut self, root: usize, path: &[u8]) -> io::Result<(Arc<DirHandle>, OsString)> {
        self.open_parent(root, path, true)
    }

    /// What is at `path` now, without creating anything on the way.
    pub(super) fn live(&mut self, root: usize, path: &[u8]) -> io::Result<Option<meta::Stat>> {
        match self.open_parent(root, path, false) {
            Ok((dir, name)) => dir.stat(&name),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    pub(super) fn open_parent(
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
