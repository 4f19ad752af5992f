//! Index files: which pack, frame and offset hold each blob.

use serde::{Deserialize, Serialize};

use super::id::{IdMap, ObjectId};

/// One index file as stored (JSON, then zstd).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IndexFile {
    pub packs: Vec<IndexPack>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IndexPack {
    pub id: ObjectId,
    pub blobs: Vec<IndexBlob>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IndexBlob {
    pub id: ObjectId,
    /// Byte offset of the blob's zstd frame in the pack.
    pub frame_offset: u64,
    /// Compressed length of that frame.
    pub frame_length: u32,
    /// Offset of the blob's bytes in the decompressed frame (after its tar header).
    pub offset: u32,
    pub length: u32,
}

/// A blob's place, with the pack given as a position in [`Index::packs`].
#[derive(Debug, Clone, Copy)]
pub struct BlobLocation {
    pub pack: u32,
    pub frame_offset: u64,
    pub frame_length: u32,
    pub offset: u32,
    pub length: u32,
}

impl BlobLocation {
    pub fn to_index_blob(self, id: ObjectId) -> IndexBlob {
        IndexBlob {
            id,
            frame_offset: self.frame_offset,
            frame_length: self.frame_length,
            offset: self.offset,
            length: self.length,
        }
    }
}

/// All index files of a repository, merged. A blob stored in several packs
/// (two backups racing) is found in the first one loaded.
#[derive(Debug, Default)]
pub struct Index {
    packs: Vec<ObjectId>,
    pack_positions: IdMap<u32>,
    blobs: IdMap<BlobLocation>,
    /// Further copies of blobs stored in more than one pack (two backups
    /// that raced); a reader falls back to them when a copy is damaged.
    copies: IdMap<Vec<BlobLocation>>,
}

impl Index {
    pub fn add_file(&mut self, file: &IndexFile) {
        // Sized once, rather than rehashed as it doubles.
        self.blobs.reserve(file.packs.iter().map(|p| p.blobs.len()).sum());
        for pack in &file.packs {
            let pos = *self.pack_positions.entry(pack.id).or_insert_with(|| {
                self.packs.push(pack.id);
                (self.packs.len() - 1) as u32
            });
            for b in &pack.blobs {
                let loc = BlobLocation {
                    pack: pos,
                    frame_offset: b.frame_offset,
                    frame_length: b.frame_length,
                    offset: b.offset,
                    length: b.length,
                };
                match self.blobs.entry(b.id) {
                    std::collections::hash_map::Entry::Vacant(v) => {
                        v.insert(loc);
                    }
                    std::collections::hash_map::Entry::Occupied(o) if o.get().pack != pos => {
                        self.copies.entry(b.id).or_default().push(loc);
                    }
                    std::collections::hash_map::Entry::Occupied(_) => {}
                }
            }
        }
    }

    pub fn get(&self, id: &ObjectId) -> Option<(ObjectId, BlobLocation)> {
        self.blobs
            .get(id)
            .map(|loc| (self.packs[loc.pack as usize], *loc))
    }

    /// Every stored copy of a blob, the first one loaded first.
    pub fn locations<'a>(&'a self, id: &ObjectId) -> impl Iterator<Item = (ObjectId, BlobLocation)> + 'a {
        let first = self.blobs.get(id).copied();
        let more = self.copies.get(id).map(Vec::as_slice).unwrap_or(&[]);
        first
            .into_iter()
            .chain(more.iter().copied())
            .map(|loc| (self.packs[loc.pack as usize], loc))
    }

    pub fn contains(&self, id: &ObjectId) -> bool {
        self.blobs.contains_key(id)
    }

    pub fn packs(&self) -> &[ObjectId] {
        &self.packs
    }

    pub fn blob_ids(&self) -> impl Iterator<Item = &ObjectId> {
        self.blobs.keys()
    }

    pub fn len(&self) -> usize {
        self.blobs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.blobs.is_empty()
    }
}
