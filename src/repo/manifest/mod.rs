//! The manifest: every entry of a snapshot, one JSON object per line, sorted
//! by path, cut into blobs by the content-defined chunker so that an unchanged
//! part of a tree costs nothing in the next snapshot.
//!
//! This file holds the entry types and path rules; `write` turns entries
//! into blobs, `read` turns blobs back into lines and entries.

mod read;
mod write;

use std::cmp::Ordering;
use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::id::ObjectId;

pub use read::{ManifestParser, MetadataMatcher, RawLine};
pub use write::{write_metadata, EmitBlob, ManifestWriter};

/// Bytes that are shown as a string when they are UTF-8 and as
/// `{"hex": "..."}` when not, so that any file name survives unchanged.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct RawBytes(pub Vec<u8>);

impl RawBytes {
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    pub fn lossy(&self) -> String {
        String::from_utf8_lossy(&self.0).into_owned()
    }
}

impl fmt::Debug for RawBytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", String::from_utf8_lossy(&self.0))
    }
}

impl From<&str> for RawBytes {
    fn from(s: &str) -> RawBytes {
        RawBytes(s.as_bytes().to_vec())
    }
}

impl Serialize for RawBytes {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        match std::str::from_utf8(&self.0) {
            Ok(text) => s.serialize_str(text),
            Err(_) => {
                let hex: String = self.0.iter().map(|b| format!("{b:02x}")).collect();
                let mut map = s.serialize_map(Some(1))?;
                map.serialize_entry("hex", &hex)?;
                map.end()
            }
        }
    }
}

impl<'de> Deserialize<'de> for RawBytes {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<RawBytes, D::Error> {
        struct RawVisitor;
        impl<'de> serde::de::Visitor<'de> for RawVisitor {
            type Value = RawBytes;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str(r#"a string or {"hex": "..."}"#)
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<RawBytes, E> {
                Ok(RawBytes(v.as_bytes().to_vec()))
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<RawBytes, A::Error> {
                use serde::de::Error;
                let mut bytes = None;
                while let Some(key) = map.next_key::<std::borrow::Cow<str>>()? {
                    if key != "hex" || bytes.is_some() {
                        return Err(A::Error::custom(format!("unexpected key {key:?} in raw bytes")));
                    }
                    let hex: std::borrow::Cow<str> = map.next_value()?;
                    bytes = Some(
                        decode_hex(&hex)
                            .ok_or_else(|| A::Error::custom("not an even-length string of hex digits"))?,
                    );
                }
                bytes
                    .map(RawBytes)
                    .ok_or_else(|| A::Error::custom(r#"missing "hex""#))
            }
        }
        d.deserialize_any(RawVisitor)
    }
}

/// Strict hex: an even number of `0-9a-fA-F` and nothing else.
pub fn decode_hex(hex: &str) -> Option<Vec<u8>> {
    let digit = |c: u8| (c as char).to_digit(16).map(|d| d as u8);
    let bytes = hex.as_bytes();
    if bytes.len() % 2 != 0 {
        return None;
    }
    bytes
        .chunks(2)
        .map(|pair| Some(digit(pair[0])? << 4 | digit(pair[1])?))
        .collect()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EntryKind {
    Dir,
    File,
    Symlink,
    /// Another name for a file stored earlier in the manifest (`target`).
    Hardlink,
    Fifo,
    Chardev,
    Blockdev,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Xattr {
    pub name: RawBytes,
    pub value: RawBytes,
}

fn is_zero<T: Default + PartialEq>(v: &T) -> bool {
    *v == T::default()
}

/// One manifest line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Entry {
    /// Relative, `/`-separated, no `.` or `..` components.
    pub path: RawBytes,
    #[serde(rename = "type")]
    pub kind: EntryKind,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub mtime: i64,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub mtime_nsec: u32,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub ctime: i64,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub ctime_nsec: u32,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub ino: u64,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub size: u64,
    /// blake3 of the whole file's contents; left out when the file is exactly
    /// one blob, whose id is made from that hash (see [`Entry::content_id`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hash: Option<ObjectId>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub blobs: Vec<ObjectId>,
    /// A symlink's target, or the manifest path a hard link shares a file with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<RawBytes>,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub rdev: u64,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub xattrs: Vec<Xattr>,
}

impl Entry {
    /// What names a file's contents within its repository: `hash`, or for
    /// a file that is exactly one blob (where `hash` is left out), that
    /// blob's id. Two entries of one repository with the same contents have
    /// the same; to test content against it, see [`Entry::content_id`].
    pub fn content_hash(&self) -> Option<ObjectId> {
        self.content_id().map(|c| match c {
            ContentId::Hash(h) | ContentId::Blob(h) => h,
        })
    }

    /// How the entry names its contents, if it does.
    pub fn content_id(&self) -> Option<ContentId> {
        match (self.hash, self.blobs.as_slice()) {
            (Some(hash), _) => Some(ContentId::Hash(hash)),
            (None, [only]) => Some(ContentId::Blob(*only)),
            _ => None,
        }
    }
}

/// How a file entry names its contents: their blake3 (`hash`), or, for a
/// file of one blob, that blob's id, which is the blake3 itself in a plain
/// repository and the keyed hash of it in an encrypted one (FORMAT.md
/// sections 7 and 15).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ContentId {
    Hash(ObjectId),
    Blob(ObjectId),
}

impl ContentId {
    /// Whether contents whose blake3 is `hash` are the ones named, in a
    /// repository that names blobs as `crypto` does.
    pub fn is(&self, hash: &ObjectId, crypto: &super::crypto::Crypto) -> bool {
        match self {
            ContentId::Hash(h) => h == hash,
            ContentId::Blob(id) => crypto.id_has_hash(id, hash),
        }
    }
}

/// Manifest order: paths compared component by component, bytewise. This is
/// the order of a depth-first walk with siblings sorted by name, so a walk can
/// be merged against a parent snapshot's manifest without sorting.
pub fn path_cmp(a: &[u8], b: &[u8]) -> Ordering {
    // The same as comparing the lists of components, computed in one pass:
    // at the first difference `/` ranks below every other byte (a component
    // that ends first is the smaller), and a prefix comes first.
    let rank = |c: u8| if c == b'/' { 0 } else { c as u16 + 1 };
    match a.iter().zip(b).position(|(x, y)| x != y) {
        Some(i) => rank(a[i]).cmp(&rank(b[i])),
        None => a.len().cmp(&b.len()),
    }
}

/// A 64-bit digest of a manifest path, for sets of many paths; collisions
/// are out of reach.
pub fn path_key(path: &[u8]) -> u64 {
    let hash = blake3::hash(path);
    let mut first = [0u8; 8];
    first.copy_from_slice(&hash.as_bytes()[..8]);
    u64::from_le_bytes(first)
}

/// Whether a manifest path is safe to join under a restore target.
pub fn is_safe_path(path: &[u8]) -> bool {
    !path.is_empty()
        && !path.contains(&0)
        && path
            .split(|&c| c == b'/')
            .all(|c| !c.is_empty() && c != b"." && c != b"..")
}

#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    #[error("manifest entries out of order: {0:?} after {1:?}")]
    OutOfOrder(RawBytes, RawBytes),
    #[error("manifest line {line}")]
    BadLine {
        line: u64,
        #[source]
        source: serde_json::Error,
    },
    #[error("manifest path {0:?} is absolute or has empty, '.' or '..' parts")]
    UnsafePath(RawBytes),
}

/// A file entry at `path` (any bytes), its other fields from
/// [`sample_file`], for tests.
#[cfg(test)]
pub(crate) fn entry_at(path: &[u8]) -> Entry {
    let mut e = sample_file("x", 0);
    e.path = RawBytes(path.to_vec());
    e
}

/// A file entry with every metadata field set, for tests.
#[cfg(test)]
pub(crate) fn sample_file(path: &str, size: u64) -> Entry {
    Entry {
        path: RawBytes::from(path),
        kind: EntryKind::File,
        mode: 0o644,
        uid: 1000,
        gid: 1000,
        mtime: 1_700_000_000,
        mtime_nsec: 5,
        ctime: 1_700_000_001,
        ctime_nsec: 6,
        ino: 42,
        size,
        hash: None,
        blobs: Vec::new(),
        target: None,
        rdev: 0,
        xattrs: Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_cmp_is_component_order() {
        let names: [&[u8]; 12] = [
            b"a", b"a/b", b"a.txt", b"a b", b"ab/c", b"a/c", b"b", b"a/b/c", b"\xff", b"a-", b"a/\xff", b"-",
        ];
        for x in names {
            for y in names {
                let by_parts = x.split(|&c| c == b'/').cmp(y.split(|&c| c == b'/'));
                assert_eq!(path_cmp(x, y), by_parts, "{x:?} vs {y:?}");
            }
        }
    }

    #[test]
    fn component_order_differs_from_byte_order() {
        assert_eq!(path_cmp(b"a/b", b"a.txt"), Ordering::Less);
        assert_eq!(path_cmp(b"a", b"a/b"), Ordering::Less);
        assert_eq!(path_cmp(b"a b", b"a/b"), Ordering::Greater);
    }

    #[test]
    fn hex_is_strict() {
        assert_eq!(decode_hex("00ff"), Some(vec![0, 255]));
        assert_eq!(decode_hex("aé0"), None);
        assert_eq!(decode_hex("+f"), None);
        assert_eq!(decode_hex("abc"), None);
        let parsed: Result<Entry, _> = serde_json::from_str(
            r#"{"path":{"hex":"aé0"},"type":"file","mode":0,"uid":0,"gid":0,"mtime":0}"#,
        );
        assert!(parsed.is_err());
    }

    #[test]
    fn unsafe_paths() {
        for p in [&b""[..], b"/etc", b"a/../b", b"..", b"a//b", b"./a", b"a/"] {
            assert!(!is_safe_path(p), "{p:?}");
        }
        assert!(is_safe_path(b"tree/x/a b\\c\nd"));
    }

    #[test]
    fn a_one_blob_file_is_checked_against_its_blob_id_in_either_kind() {
        use crate::repo::crypto::{Crypto, Secret};
        let content = b"the one blob";
        let hash = ObjectId::of(content);
        let other = ObjectId::of(b"something else");
        for crypto in [Crypto::plain(), Crypto::from_master(&Secret([9; 32]))] {
            let mut entry = sample_file("r/a", content.len() as u64);
            entry.blobs = vec![crypto.blob_id(content)];
            let id = entry.content_id().unwrap();
            assert_eq!(id, ContentId::Blob(entry.blobs[0]));
            assert!(id.is(&hash, &crypto) && !id.is(&other, &crypto));
            // Several blobs: the recorded `hash` says.
            entry.blobs.push(crypto.blob_id(b"more"));
            entry.hash = Some(hash);
            assert!(entry.content_id().unwrap().is(&hash, &crypto));
            entry.hash = None;
            assert_eq!(entry.content_id(), None);
        }
    }
}
