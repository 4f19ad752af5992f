//! Consolidating index files. Every backup writes at least one small index
//! file, so a repository backed up daily gathers hundreds, and every command
//! reads them all first (in an object store, one request each). Once many
//! small ones have gathered, they are merged into few large ones and the
//! small ones deleted (FORMAT.md, section 10, rule 10): the merged file is
//! written, and confirmed, before anything it supersedes is deleted, so a
//! crash in between leaves only duplicate entries, which readers accept.
//!
//! Deleting needs the exclusive lock: the caller holds it.

use std::collections::{HashMap, HashSet};
use std::ops::Range;

use super::id::ObjectId;
use super::index::{IndexFile, IndexPack};
use super::lock::{self, RepoLock};
use super::{RepoError, Repository};
use crate::interrupt;
use crate::sink::ObjectKind;

/// Index files smaller than this (compressed) are merged; a backup's own
/// index files (32 packs or 8,192 blobs) are well under it.
pub const SMALL_INDEX_BYTES: u64 = 4 << 20;
/// Merging starts once this many small index files have gathered.
pub const CONSOLIDATE_AT: usize = 32;
/// A merged index file gathers small ones up to about this size (compressed):
/// about 150,000 blobs, a few seconds of reading over a slow link.
const MERGED_BYTES: u64 = 16 << 20;

/// What a consolidation did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Consolidated {
    /// Small index files merged and deleted.
    pub merged: usize,
    /// Index files written in their place.
    pub written: usize,
}

/// Whether the repository's index files are worth consolidating: at least
/// [`CONSOLIDATE_AT`] small ones. One listing, nothing read.
pub fn worth_it(repo: &Repository) -> Result<bool, RepoError> {
    let small = repo
        .sink()
        .list(ObjectKind::Index)?
        .into_iter()
        .filter(|o| o.size < SMALL_INDEX_BYTES)
        .count();
    Ok(small >= CONSOLIDATE_AT)
}

/// Consolidates when it is worth it and no other process holds a lock on
/// the repository (taking the exclusive lock beside `held`, the caller's
/// own); `None` when it was not done.
pub fn if_alone(repo: &Repository, held: &RepoLock) -> Result<Option<Consolidated>, RepoError> {
    if !worth_it(repo)? {
        return Ok(None);
    }
    let _exclusive = match lock::try_exclusive(held) {
        Ok(l) => l,
        Err(RepoError::Locked { holders }) => {
            tracing::info!("index files not consolidated, the repository is in use: {holders}");
            return Ok(None);
        }
        Err(e) => return Err(e),
    };
    consolidate(repo).map(Some)
}

/// Merges the small index files into groups of up to [`MERGED_BYTES`]; each
/// group's merged file is written before its members are deleted. The
/// caller holds the exclusive lock.
pub fn consolidate(repo: &Repository) -> Result<Consolidated, RepoError> {
    let mut small: Vec<_> = repo
        .sink()
        .list(ObjectKind::Index)?
        .into_iter()
        .filter(|o| o.size < SMALL_INDEX_BYTES)
        .collect();
    let mut done = Consolidated::default();
    if small.len() < CONSOLIDATE_AT {
        return Ok(done);
    }
    small.sort_by(|a, b| a.name.cmp(&b.name));
    let sizes: Vec<u64> = small.iter().map(|o| o.size).collect();
    for group in groups(&sizes) {
        if interrupt::is_set() {
            return Err(RepoError::Interrupted);
        }
        let names: Vec<&str> = small[group].iter().map(|o| o.name.as_str()).collect();
        if names.len() < 2 {
            continue;
        }
        // A damaged file is left out, and stays for `repair index`.
        let mut files = Vec::new();
        let mut read = Vec::new();
        for name in names {
            match repo.read_index_file(name) {
                Ok(file) => {
                    files.push(file);
                    read.push(name);
                }
                Err(RepoError::Corrupt { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        if read.len() < 2 {
            continue;
        }
        let merged = repo.write_index_file(&merge(files))?;
        // One already gone was consolidated by another process first: its
        // entries are in that process's merged file.
        for name in read.iter().filter(|n| **n != merged.to_hex()) {
            repo.delete(ObjectKind::Index, name)?;
        }
        tracing::debug!("merged {} index files into {}", read.len(), merged.short());
        done.merged += read.len();
        done.written += 1;
    }
    Ok(done)
}

/// Consecutive runs of files whose sizes add up to at most [`MERGED_BYTES`]
/// (a file alone in its run when it is larger).
fn groups(sizes: &[u64]) -> Vec<Range<usize>> {
    let mut out = Vec::new();
    let (mut start, mut bytes) = (0usize, 0u64);
    for (i, &size) in sizes.iter().enumerate() {
        if i > start && bytes.saturating_add(size) > MERGED_BYTES {
            out.push(start..i);
            (start, bytes) = (i, 0);
        }
        bytes = bytes.saturating_add(size);
    }
    if start < sizes.len() {
        out.push(start..sizes.len());
    }
    out
}

/// The union of index files: every pack once, with every blob any of them
/// lists for it, in the order first seen.
pub(super) fn merge(files: Vec<IndexFile>) -> IndexFile {
    let mut out = IndexFile::default();
    let mut at: HashMap<ObjectId, usize> = HashMap::new();
    for file in files {
        for pack in file.packs {
            match at.get(&pack.id) {
                None => {
                    at.insert(pack.id, out.packs.len());
                    out.packs.push(pack);
                }
                Some(&i) => add_blobs(&mut out.packs[i], pack),
            }
        }
    }
    out
}

/// Adds to `into` the blobs of another listing of the same pack it lacks.
fn add_blobs(into: &mut IndexPack, other: IndexPack) {
    let known: HashSet<(ObjectId, u64)> = into.blobs.iter().map(|b| (b.id, b.frame_offset)).collect();
    into.blobs.extend(
        other
            .blobs
            .into_iter()
            .filter(|b| !known.contains(&(b.id, b.frame_offset))),
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::repo::index::IndexBlob;

    #[test]
    fn groups_stay_under_the_merged_size() {
        let mb = 1 << 20;
        assert_eq!(groups(&[]), Vec::<Range<usize>>::new());
        assert_eq!(groups(&[mb; 3]), vec![0..3]);
        assert_eq!(groups(&[10 * mb, 10 * mb, 1]), vec![0..1, 1..3]);
        assert_eq!(groups(&[40 * mb, 1, 1]), vec![0..1, 1..3]);
    }

    fn blob(n: u8, frame_offset: u64) -> IndexBlob {
        IndexBlob {
            id: ObjectId::of(&[n]),
            frame_offset,
            frame_length: 10,
            offset: 512,
            length: 1,
        }
    }

    #[test]
    fn a_pack_listed_twice_is_merged_once_with_every_blob() {
        let pack = |id: u8, blobs: Vec<IndexBlob>| IndexPack {
            id: ObjectId::of(&[id, id]),
            blobs,
        };
        let a = IndexFile {
            packs: vec![pack(1, vec![blob(1, 0)]), pack(2, vec![blob(2, 0)])],
        };
        let b = IndexFile {
            packs: vec![pack(2, vec![blob(2, 0), blob(3, 10)]), pack(3, vec![blob(4, 0)])],
        };
        let merged = merge(vec![a, b]);
        assert_eq!(merged.packs.len(), 3);
        assert_eq!(merged.packs[1].blobs, vec![blob(2, 0), blob(3, 10)]);
        assert_eq!(merged.packs[2].blobs, vec![blob(4, 0)]);
    }
}
