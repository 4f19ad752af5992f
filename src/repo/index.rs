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

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
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

impl IndexFile {
    /// Parses an index file's JSON. Files written by cairn have one exact
    /// layout, read here without serde's generic machinery: every command
    /// reads the whole index first, and it holds an entry per blob. Any other
    /// spelling of the same JSON (spaces, another field order) goes to
    /// serde_json, which also gives the error for what is not an index.
    pub fn from_json(json: &[u8]) -> Result<IndexFile, serde_json::Error> {
        match compact::parse(json) {
            Some(file) => Ok(file),
            None => serde_json::from_slice(json),
        }
    }
}

/// Index files decompress to at most this much JSON (FORMAT.md section 6).
pub const MAX_INDEX_JSON: u64 = 1 << 30;

/// An index file's stored bytes (zstd, then JSON), decoded; the error says
/// what is wrong with them. Decoded as a stream, bounded by
/// [`MAX_INDEX_JSON`], never reserving that bound up front (a process
/// under a memory limit would abort): index files are compressed without
/// their size in the frame header.
pub fn decode_stored(bytes: &[u8]) -> Result<IndexFile, String> {
    let mut json = Vec::with_capacity(bytes.len().saturating_mul(4).min(64 << 20));
    let decoder =
        zstd::stream::read::Decoder::with_buffer(bytes).map_err(|e| format!("does not decompress: {e}"))?;
    std::io::Read::read_to_end(&mut std::io::Read::take(decoder, MAX_INDEX_JSON + 1), &mut json)
        .map_err(|e| format!("does not decompress: {e}"))?;
    if json.len() as u64 > MAX_INDEX_JSON {
        return Err("decompresses to more than 1 GiB".into());
    }
    IndexFile::from_json(&json).map_err(|e| format!("bad JSON: {e}"))
}

/// The compact layout serde_json writes for an [`IndexFile`]:
/// `{"packs":[{"id":"..","blobs":[{"id":"..","frame_offset":N,...}]}]}`.
mod compact {
    use super::{IndexBlob, IndexFile, IndexPack};
    use crate::repo::id::ObjectId;

    struct Cursor<'a> {
        rest: &'a [u8],
    }

    impl Cursor<'_> {
        fn eat(&mut self, literal: &[u8]) -> Option<()> {
            self.rest = self.rest.strip_prefix(literal)?;
            Some(())
        }

        fn eat_if(&mut self, literal: &[u8]) -> bool {
            self.eat(literal).is_some()
        }

        fn id(&mut self) -> Option<ObjectId> {
            self.eat(b"\"")?;
            let id = ObjectId::from_hex(self.rest.get(..64)?)?;
            self.rest = &self.rest[64..];
            self.eat(b"\"")?;
            Some(id)
        }

        /// A JSON unsigned integer as serde_json writes it: digits, no sign,
        /// no leading zero.
        fn number(&mut self) -> Option<u64> {
            let digits = self.rest.iter().take_while(|c| c.is_ascii_digit()).count();
            let text = &self.rest[..digits];
            if digits == 0 || (digits > 1 && text[0] == b'0') {
                return None;
            }
            let mut value: u64 = 0;
            for &c in text {
                value = value.checked_mul(10)?.checked_add(u64::from(c - b'0'))?;
            }
            self.rest = &self.rest[digits..];
            Some(value)
        }

        fn small(&mut self) -> Option<u32> {
            u32::try_from(self.number()?).ok()
        }

        fn blob(&mut self) -> Option<IndexBlob> {
            self.eat(br#"{"id":"#)?;
            let id = self.id()?;
            self.eat(br#","frame_offset":"#)?;
            let frame_offset = self.number()?;
            self.eat(br#","frame_length":"#)?;
            let frame_length = self.small()?;
            self.eat(br#","offset":"#)?;
            let offset = self.small()?;
            self.eat(br#","length":"#)?;
            let length = self.small()?;
            self.eat(b"}")?;
            Some(IndexBlob {
                id,
                frame_offset,
                frame_length,
                offset,
                length,
            })
        }

        fn pack(&mut self) -> Option<IndexPack> {
            self.eat(br#"{"id":"#)?;
            let id = self.id()?;
            self.eat(br#","blobs":["#)?;
            let mut blobs = Vec::new();
            if !self.eat_if(b"]") {
                loop {
                    blobs.push(self.blob()?);
                    if self.eat_if(b"]") {
                        break;
                    }
                    self.eat(b",")?;
                }
            }
            self.eat(b"}")?;
            Some(IndexPack { id, blobs })
        }
    }

    pub(super) fn parse(json: &[u8]) -> Option<IndexFile> {
        let mut cursor = Cursor { rest: json };
        cursor.eat(br#"{"packs":["#)?;
        let mut packs = Vec::new();
        if !cursor.eat_if(b"]") {
            loop {
                packs.push(cursor.pack()?);
                if cursor.eat_if(b"]") {
                    break;
                }
                cursor.eat(b",")?;
            }
        }
        cursor.eat(b"}")?;
        cursor.rest.is_empty().then_some(IndexFile { packs })
    }
}

/// A blob's place, with the pack given as a position in [`Index::packs`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
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
/// (two backups racing) is found in the first one loaded; the other places
/// any index file gives for it are kept as copies to fall back on.
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
                    // Another pack, or another place in the same pack (two
                    // index files that disagree, one of them wrong): a
                    // further copy to fall back on, each place once.
                    std::collections::hash_map::Entry::Occupied(o) if *o.get() != loc => {
                        let copies = self.copies.entry(b.id).or_default();
                        if !copies.contains(&loc) {
                            copies.push(loc);
                        }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> IndexFile {
        let blob = |n: u32| IndexBlob {
            id: ObjectId::of(&n.to_le_bytes()),
            frame_offset: u64::from(n) * 1_000_003 + (1 << 40),
            frame_length: n * 7 + 1,
            offset: 512 * n,
            length: if n == 0 { 0 } else { n * 3 },
        };
        IndexFile {
            packs: vec![
                IndexPack {
                    id: ObjectId::of(b"pack one"),
                    blobs: (0..50).map(blob).collect(),
                },
                IndexPack {
                    id: ObjectId::of(b"pack two"),
                    blobs: Vec::new(),
                },
                IndexPack {
                    id: ObjectId::of(b"pack three"),
                    blobs: vec![blob(7)],
                },
            ],
        }
    }

    fn same(a: &IndexFile, b: &IndexFile) -> bool {
        serde_json::to_vec(a).unwrap() == serde_json::to_vec(b).unwrap()
    }

    #[test]
    fn compact_index_is_read_without_serde_and_the_same() {
        let file = sample();
        let json = serde_json::to_vec(&file).unwrap();
        let fast = compact::parse(&json).expect("the layout serde_json writes");
        assert!(same(&fast, &file));
        let empty = serde_json::to_vec(&IndexFile::default()).unwrap();
        assert!(compact::parse(&empty).is_some_and(|f| f.packs.is_empty()));
    }

    #[test]
    fn any_other_spelling_goes_to_serde() {
        let file = sample();
        let pretty = serde_json::to_vec_pretty(&file).unwrap();
        assert!(compact::parse(&pretty).is_none());
        assert!(same(&IndexFile::from_json(&pretty).unwrap(), &file));
        let json = String::from_utf8(serde_json::to_vec(&file).unwrap()).unwrap();
        for bad in [
            json.replacen("\"frame_offset\":", "\"frame_offset\":0", 1),
            json.replacen("\"length\":", "\"length\":-", 1),
            json.replacen("\"length\":", "\"length\":99999999999", 1),
            format!("{json} "),
            json[..json.len() - 1].to_string(),
        ] {
            assert!(compact::parse(bad.as_bytes()).is_none(), "{bad:.80}");
        }
        assert!(IndexFile::from_json(b"{\"packs\":[{\"id\":\"zz\"}]}").is_err());
    }

    /// Two index files gave one blob two places in one pack; only the
    /// first loaded was kept, so a reader never tried the other.
    #[test]
    fn two_places_in_one_pack_are_both_kept() {
        let right = sample();
        let mut wrong = sample();
        for b in &mut wrong.packs[0].blobs {
            b.offset += 512;
        }
        let mut index = Index::default();
        index.add_file(&wrong);
        index.add_file(&right);
        index.add_file(&right);
        let id = right.packs[0].blobs[3].id;
        let places: Vec<u32> = index.locations(&id).map(|(_, l)| l.offset).collect();
        assert_eq!(
            places,
            vec![512 * 3 + 512, 512 * 3],
            "each place once, the first loaded first"
        );
    }

    fn random_file(rng: &mut crate::rng::Rng) -> IndexFile {
        let id = |rng: &mut crate::rng::Rng| ObjectId::of(&rng.draw().to_le_bytes());
        IndexFile {
            packs: (0..rng.below(4))
                .map(|_| IndexPack {
                    id: id(rng),
                    blobs: (0..rng.below(5))
                        .map(|_| IndexBlob {
                            id: id(rng),
                            frame_offset: rng.number(),
                            frame_length: rng.number() as u32,
                            offset: rng.number() as u32,
                            length: rng.number() as u32,
                        })
                        .collect(),
                })
                .collect(),
        }
    }

    /// The compact reader reads what serde writes, and on any other bytes
    /// either gives way to serde or agrees with it: it never accepts what
    /// serde refuses, nor reads it differently.
    #[test]
    fn the_compact_reader_agrees_with_serde_on_random_input() {
        let mut rng = crate::rng::Rng(0x1dec);
        for _ in 0..3000 {
            let file = random_file(&mut rng);
            let json = serde_json::to_vec(&file).unwrap();
            let fast = compact::parse(&json).expect("serde's own layout");
            assert!(same(&fast, &file));
            let bent = rng.mutate(&json);
            if let Some(fast) = compact::parse(&bent) {
                let slow: IndexFile = serde_json::from_slice(&bent).unwrap_or_else(|e| {
                    panic!(
                        "compact accepted what serde refuses ({e}): {}",
                        String::from_utf8_lossy(&bent)
                    )
                });
                assert!(same(&fast, &slow), "{}", String::from_utf8_lossy(&bent));
            }
        }
    }
}
