//! What restore refuses in a manifest that parses: a file whose blobs do
//! not add up to its size, a hard link to a path that is not a file earlier
//! in the manifest, an entry under something that is not a directory.
//! `check` reports these without reading any file data; `repair snapshots`
//! leaves such entries out.

use std::collections::HashSet;

use super::index::Index;
use super::manifest::{path_key as key, Entry, EntryKind};

/// Follows a manifest in order and says what is wrong with each entry.
#[derive(Default)]
pub struct Shape {
    /// Paths (by digest) of the file entries seen.
    files: HashSet<u64>,
    /// Paths of entries that are not directories, or were refused.
    not_dirs: HashSet<u64>,
}

impl Shape {
    /// What restore would refuse in `entry`, if anything. An entry refused
    /// counts as absent for those after it (a hard link to it, entries
    /// under it). A blob that is in no index is not judged here.
    pub fn wrong(&mut self, entry: &Entry, index: &Index) -> Option<String> {
        let path = entry.path.as_bytes();
        let problem = self.problem(entry, index);
        if problem.is_some() || entry.kind != EntryKind::Dir {
            self.not_dirs.insert(key(path));
        }
        if problem.is_none() && entry.kind == EntryKind::File {
            self.files.insert(key(path));
        }
        problem
    }

    fn problem(&self, entry: &Entry, index: &Index) -> Option<String> {
        let path = entry.path.as_bytes();
        if let Some(slash) = path.iter().rposition(|&c| c == b'/') {
            if self.not_dirs.contains(&key(&path[..slash])) {
                return Some(format!(
                    "{} lies under {}, which is not a directory",
                    entry.path.lossy(),
                    String::from_utf8_lossy(&path[..slash])
                ));
            }
        }
        match entry.kind {
            EntryKind::File => {
                let held = entry.blobs.iter().try_fold(0u64, |sum, id| {
                    let (_, loc) = index.get(id)?;
                    sum.checked_add(u64::from(loc.length))
                });
                match held {
                    Some(held) if held != entry.size => Some(format!(
                        "{} has size {} but its blobs hold {held} bytes",
                        entry.path.lossy(),
                        entry.size
                    )),
                    _ => None,
                }
            }
            EntryKind::Hardlink => {
                let target = entry.target.as_ref().map(|t| t.as_bytes()).unwrap_or_default();
                (!self.files.contains(&key(target))).then(|| {
                    format!(
                        "{} is a hard link to {}, which is not a file earlier in the manifest",
                        entry.path.lossy(),
                        String::from_utf8_lossy(target)
                    )
                })
            }
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::repo::id::ObjectId;
    use crate::repo::index::{IndexBlob, IndexFile, IndexPack};
    use crate::repo::manifest::sample_file;

    fn index_of(blobs: &[(ObjectId, u32)]) -> Index {
        let mut index = Index::default();
        index.add_file(&IndexFile {
            packs: vec![IndexPack {
                id: ObjectId::of(b"pack"),
                blobs: blobs
                    .iter()
                    .map(|&(id, length)| IndexBlob {
                        id,
                        frame_offset: 0,
                        frame_length: 10,
                        offset: 512,
                        length,
                    })
                    .collect(),
            }],
        });
        index
    }

    fn kind(path: &str, kind: EntryKind, target: Option<&str>) -> Entry {
        let mut e = sample_file(path, 0);
        e.kind = kind;
        e.blobs.clear();
        e.target = target.map(Into::into);
        e
    }

    #[test]
    fn what_restore_refuses_is_named() {
        let (a, b) = (ObjectId::of(b"a"), ObjectId::of(b"b"));
        let index = index_of(&[(a, 100), (b, 50)]);
        let mut shape = Shape::default();
        let file = |path: &str, size: u64, blobs: Vec<ObjectId>| {
            let mut e = sample_file(path, size);
            e.blobs = blobs;
            e
        };
        let good = file("r/good", 150, vec![a, b]);
        let short = file("r/short", 120, vec![a, b]);
        let unknown = file("r/unknown", 7, vec![ObjectId::of(b"not indexed")]);
        let entries = [
            (kind("r", EntryKind::Dir, None), false),
            (good, false),
            (kind("r/good/inside", EntryKind::Dir, None), true),
            (kind("r/link", EntryKind::Hardlink, Some("r/good")), false),
            (kind("r/link2", EntryKind::Hardlink, Some("r/short")), true),
            (kind("r/link3", EntryKind::Hardlink, Some("r")), true),
            (short, true),
            (unknown, false),
            (kind("r/zz", EntryKind::Symlink, None), false),
            (kind("r/zz/x", EntryKind::File, None), true),
        ];
        for (entry, refused) in entries {
            let wrong = shape.wrong(&entry, &index);
            assert_eq!(wrong.is_some(), refused, "{}: {wrong:?}", entry.path.lossy());
        }
    }
}
