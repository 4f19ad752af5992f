//! Content names: every blob, pack, index file and snapshot record is named by
//! the blake3 hash of its bytes.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct ObjectId([u8; 32]);

/// Ids of real objects are uniformly random, but ids read from a crafted
/// index or manifest are whatever their writer chose: all 32 bytes go into
/// the hash, with a key random per process (see [`IdHasher`]), so that no
/// repository can make every id fall into one bucket.
impl std::hash::Hash for ObjectId {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        for word in self.0.chunks_exact(8) {
            let mut w = [0u8; 8];
            w.copy_from_slice(word);
            state.write_u64(u64::from_le_bytes(w));
        }
    }
}

/// A hasher for maps keyed by [`ObjectId`]: four rounds of a 64-bit mixer
/// (splitmix64's finaliser) over the id's words, from a per-process random
/// key. Far cheaper than SipHash on every index lookup, and a repository
/// cannot flood a map without knowing the key.
#[derive(Clone, Copy)]
pub struct IdHasher(u64);

impl Default for IdHasher {
    fn default() -> Self {
        static KEY: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
        IdHasher(*KEY.get_or_init(crate::sink::local::random_u64))
    }
}

fn mix(mut x: u64) -> u64 {
    x ^= x >> 30;
    x = x.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x ^= x >> 27;
    x = x.wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

impl std::hash::Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = mix(self.0 ^ u64::from(b));
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = mix(self.0 ^ n);
    }
}

pub type IdBuildHasher = std::hash::BuildHasherDefault<IdHasher>;
pub type IdMap<V> = std::collections::HashMap<ObjectId, V, IdBuildHasher>;
pub type IdSet = std::collections::HashSet<ObjectId, IdBuildHasher>;

impl ObjectId {
    pub fn of(data: &[u8]) -> ObjectId {
        ObjectId(*blake3::hash(data).as_bytes())
    }

    pub fn from_hash(hash: blake3::Hash) -> ObjectId {
        ObjectId(*hash.as_bytes())
    }

    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    pub fn to_hex(&self) -> String {
        let mut buf = [0u8; 64];
        self.write_hex(&mut buf).to_string()
    }

    /// Hex into a caller's buffer: no allocation on the hot serialization path.
    fn write_hex<'a>(&self, buf: &'a mut [u8; 64]) -> &'a str {
        const DIGITS: &[u8; 16] = b"0123456789abcdef";
        for (i, b) in self.0.iter().enumerate() {
            buf[2 * i] = DIGITS[(b >> 4) as usize];
            buf[2 * i + 1] = DIGITS[(b & 15) as usize];
        }
        // Only ASCII digits were written.
        std::str::from_utf8(buf).unwrap_or_default()
    }

    /// The first 8 hex digits, as shown in listings.
    pub fn short(&self) -> String {
        self.to_hex()[..8].to_string()
    }
}

impl fmt::Display for ObjectId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for ObjectId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ObjectId({})", self.short())
    }
}

#[derive(Debug, thiserror::Error)]
#[error("{0:?} is not a 64-digit lowercase hex object id")]
pub struct BadObjectId(String);

impl FromStr for ObjectId {
    type Err = BadObjectId;

    fn from_str(s: &str) -> Result<ObjectId, BadObjectId> {
        ObjectId::from_hex(s.as_bytes()).ok_or_else(|| BadObjectId(s.to_string()))
    }
}

/// The value of each lowercase hex digit; 0xff for every other byte.
const NIBBLES: [u8; 256] = {
    let mut table = [0xffu8; 256];
    let mut c = 0;
    while c < 10 {
        table[b'0' as usize + c] = c as u8;
        c += 1;
    }
    let mut c = 0;
    while c < 6 {
        table[b'a' as usize + c] = 10 + c as u8;
        c += 1;
    }
    table
};

impl ObjectId {
    /// Parses exactly 64 lowercase hex digits (one spelling per id, so
    /// names compare as strings). Indexes and manifests hold many thousands
    /// of ids, hence a table rather than a match per digit.
    pub fn from_hex(hex: &[u8]) -> Option<ObjectId> {
        if hex.len() != 64 {
            return None;
        }
        let mut out = [0u8; 32];
        let mut bad = 0u8;
        for (byte, pair) in out.iter_mut().zip(hex.chunks_exact(2)) {
            let (hi, lo) = (NIBBLES[pair[0] as usize], NIBBLES[pair[1] as usize]);
            bad |= hi | lo;
            *byte = hi << 4 | (lo & 15);
        }
        // Valid digits are below 16; any 0xff sets the high bits.
        (bad & 0xf0 == 0).then_some(ObjectId(out))
    }
}

impl Serialize for ObjectId {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut buf = [0u8; 64];
        s.serialize_str(self.write_hex(&mut buf))
    }
}

impl<'de> Deserialize<'de> for ObjectId {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<ObjectId, D::Error> {
        struct IdVisitor;
        impl serde::de::Visitor<'_> for IdVisitor {
            type Value = ObjectId;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a 64-digit hex object id")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<ObjectId, E> {
                v.parse().map_err(E::custom)
            }
        }
        d.deserialize_str(IdVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_round_trip() {
        let id = ObjectId::of(b"hello");
        assert_eq!(id.to_hex(), blake3::hash(b"hello").to_hex().as_str());
        assert_eq!(id.to_hex().parse::<ObjectId>().unwrap(), id);
        assert!("abc".parse::<ObjectId>().is_err());
        assert!(id.to_hex().to_uppercase().parse::<ObjectId>().is_err());
        assert!(format!("+{}", &id.to_hex()[1..]).parse::<ObjectId>().is_err());
    }
}

#[cfg(test)]
mod hash_tests {
    use super::*;
    use std::hash::BuildHasher;

    /// Ids that share their first eight bytes all hashed alike (only those
    /// bytes went into the hash): a crafted index could put every id in one
    /// bucket.
    #[test]
    fn ids_sharing_a_prefix_hashed_alike() {
        let build = IdBuildHasher::default();
        let hashes: std::collections::HashSet<u64> = (0..1000u32)
            .map(|i| {
                let mut bytes = [7u8; 32];
                bytes[28..].copy_from_slice(&i.to_le_bytes());
                build.hash_one(ObjectId(bytes))
            })
            .collect();
        assert_eq!(hashes.len(), 1000);
    }
}
