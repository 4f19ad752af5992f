//! Sorting one snapshot entry against what is on disk at its place:
//! create, replace, metadata only, or unchanged.

use std::io;
use std::path::{Path, PathBuf};

use crate::meta::{running_as_root, Stat};
use crate::repo::crypto::Crypto;
use crate::repo::manifest::{Entry, EntryKind, MetadataMatcher, RawLine};
use crate::repo::RepoError;

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
