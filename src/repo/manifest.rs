//! The manifest: every entry of a snapshot, one JSON object per line, sorted
//! by path, cut into blobs by the content-defined chunker so that an unchanged
//! part of a tree costs nothing in the next snapshot.

use std::cmp::Ordering;
use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::chunker::Chunker;
use super::id::ObjectId;

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
    /// one blob, whose id is then the hash (see [`Entry::content_hash`]).
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
    /// The blake3 of a file's contents: `hash`, or for a file that is exactly
    /// one blob (where `hash` is left out), that blob's id.
    pub fn content_hash(&self) -> Option<ObjectId> {
        match (self.hash, self.blobs.as_slice()) {
            (Some(hash), _) => Some(hash),
            (None, [only]) => Some(*only),
            _ => None,
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

/// Receives each finished manifest blob.
pub type EmitBlob<'a, E> = dyn FnMut(ObjectId, &[u8]) -> Result<(), E> + 'a;

/// Serializes entries and cuts the stream into blobs as it grows.
pub struct ManifestWriter {
    chunker: Chunker,
    buf: Vec<u8>,
    /// Where the bytes not yet cut into blobs start in `buf`.
    start: usize,
    blobs: Vec<ObjectId>,
    /// The previous entry's path (empty before the first).
    last: RawBytes,
}

impl ManifestWriter {
    pub fn new(chunker: Chunker) -> ManifestWriter {
        ManifestWriter {
            chunker,
            buf: Vec::new(),
            start: 0,
            blobs: Vec::new(),
            last: RawBytes::default(),
        }
    }

    /// Appends an entry; `emit` receives each finished blob.
    pub fn push<E: From<ManifestError>>(
        &mut self,
        entry: &Entry,
        emit: &mut EmitBlob<'_, E>,
    ) -> Result<(), E> {
        self.push_line(entry, None, emit)
    }

    /// Appends an entry, as `line` when given: the caller vouches that the
    /// line is the entry's serialization (an unchanged entry of a parent).
    pub fn push_line<E: From<ManifestError>>(
        &mut self,
        entry: &Entry,
        line: Option<&[u8]>,
        emit: &mut EmitBlob<'_, E>,
    ) -> Result<(), E> {
        if !is_safe_path(entry.path.as_bytes()) {
            return Err(ManifestError::UnsafePath(entry.path.clone()).into());
        }
        if !self.last.as_bytes().is_empty()
            && path_cmp(self.last.as_bytes(), entry.path.as_bytes()) != Ordering::Less
        {
            return Err(ManifestError::OutOfOrder(entry.path.clone(), self.last.clone()).into());
        }
        self.last.0.clear();
        self.last.0.extend_from_slice(entry.path.as_bytes());
        match line {
            Some(line) => self.buf.extend_from_slice(line),
            // Serializing plain data to a Vec cannot fail.
            None => serde_json::to_writer(&mut self.buf, entry)
                .map_err(|source| ManifestError::BadLine { line: 0, source })?,
        }
        self.buf.push(b'\n');
        self.cut(false, emit)
    }

    fn cut<E>(&mut self, eof: bool, emit: &mut EmitBlob<'_, E>) -> Result<(), E> {
        while let Some(len) = self.chunker.next_cut(&self.buf[self.start..], eof) {
            let chunk = &self.buf[self.start..self.start + len];
            let id = ObjectId::of(chunk);
            emit(id, chunk)?;
            self.blobs.push(id);
            self.start += len;
        }
        // Cut bytes are dropped once they outweigh the rest, so each byte is
        // moved a bounded number of times, not once per blob cut after it.
        if self.start > self.buf.len() - self.start {
            self.buf.drain(..self.start);
            self.start = 0;
        }
        Ok(())
    }

    /// Emits the rest and returns the manifest's blob list.
    pub fn finish<E>(mut self, emit: &mut EmitBlob<'_, E>) -> Result<Vec<ObjectId>, E> {
        self.cut(true, emit)?;
        Ok(self.blobs)
    }
}

/// Parses manifest lines from consecutive blobs; a line may span blobs.
pub struct ManifestParser {
    /// The start of a line that the last blob did not finish.
    pending: Vec<u8>,
    line: u64,
    /// The previous entry's path (empty before the first: no entry has an
    /// empty path).
    last: Vec<u8>,
}

/// Compares an entry's metadata with a manifest line as bytes: the entry is
/// written as the writer would write it without its contents (see
/// [`write_metadata`]), and the line must go on with exactly those bytes
/// after its path. Keeps one buffer, so the common case allocates nothing.
#[derive(Default)]
pub struct MetadataMatcher {
    buf: Vec<u8>,
}

impl MetadataMatcher {
    /// The rest of `line` after the metadata, when the line holds exactly
    /// the metadata the writer would write for `entry`. The caller matched
    /// the paths already; a plain path that is UTF-8 is written as it is, so
    /// only what follows it needs comparing.
    pub fn rest_after<'l>(&mut self, line: &'l RawLine, entry: &Entry) -> Option<&'l [u8]> {
        let after_path = line.after_plain_path()?;
        std::str::from_utf8(entry.path.as_bytes()).ok()?;
        self.buf.clear();
        write_metadata(entry, &mut self.buf)?;
        after_path.strip_prefix(self.buf.as_slice())
    }
}

/// Appends what the manifest writer puts between the path string and the
/// contents of an entry with no target, device number or attributes:
/// `,"type":"file","mode":420,...,"size":553`. Written by hand, not by
/// serde, because it runs for every entry of every backup; a test holds it
/// to the derived serialization (field order, fields left out when zero).
pub fn write_metadata(entry: &Entry, out: &mut Vec<u8>) -> Option<()> {
    if entry.target.is_some() || entry.rdev != 0 || !entry.xattrs.is_empty() {
        return None;
    }
    let kind: &[u8] = match entry.kind {
        EntryKind::Dir => b"dir",
        EntryKind::File => b"file",
        _ => return None,
    };
    let mut number = itoa::Buffer::new();
    out.extend_from_slice(br#","type":""#);
    out.extend_from_slice(kind);
    out.push(b'"');
    let mut field = |name: &[u8], text: &str| {
        out.extend_from_slice(b",\"");
        out.extend_from_slice(name);
        out.extend_from_slice(b"\":");
        out.extend_from_slice(text.as_bytes());
    };
    field(b"mode", number.format(entry.mode));
    field(b"uid", number.format(entry.uid));
    field(b"gid", number.format(entry.gid));
    field(b"mtime", number.format(entry.mtime));
    if entry.mtime_nsec != 0 {
        field(b"mtime_nsec", number.format(entry.mtime_nsec));
    }
    if entry.ctime != 0 {
        field(b"ctime", number.format(entry.ctime));
    }
    if entry.ctime_nsec != 0 {
        field(b"ctime_nsec", number.format(entry.ctime_nsec));
    }
    if entry.ino != 0 {
        field(b"ino", number.format(entry.ino));
    }
    if entry.size != 0 {
        field(b"size", number.format(entry.size));
    }
    Some(())
}

/// One manifest line, parsed only as far as its path: a backup compares
/// most lines of its parent by their bytes and never needs the rest.
#[derive(Debug, Clone)]
pub struct RawLine {
    pub raw: Vec<u8>,
    /// The line's number in the manifest, from 1.
    pub number: u64,
    path: LinePath,
}

#[derive(Debug, Clone)]
enum LinePath {
    /// A plain JSON string: `raw[PLAIN_PATH_START..end]`.
    InLine(usize),
    /// Escaped or hex-encoded: decoded once.
    Decoded(Vec<u8>),
}

/// Where the path string starts in a line written by [`ManifestWriter`].
const PLAIN_PATH_START: usize = br#"{"path":""#.len();

impl RawLine {
    /// The entry's path, decoded.
    pub fn path(&self) -> &[u8] {
        match &self.path {
            LinePath::InLine(end) => &self.raw[PLAIN_PATH_START..*end],
            LinePath::Decoded(path) => path,
        }
    }

    /// What follows the path in a line whose path is a plain string
    /// (`,"type":...}`); `None` when the path was escaped or hex-encoded.
    pub fn after_plain_path(&self) -> Option<&[u8]> {
        match &self.path {
            LinePath::InLine(end) => self.raw.get(end + 1..),
            LinePath::Decoded(_) => None,
        }
    }

    /// The whole entry.
    pub fn entry(&self) -> Result<Entry, ManifestError> {
        serde_json::from_slice(&self.raw).map_err(|source| ManifestError::BadLine {
            line: self.number,
            source,
        })
    }

    fn new(raw: Vec<u8>, number: u64) -> Result<RawLine, ManifestError> {
        // The writer puts the path first; a plain one (no escapes) is
        // read in place, anything else by the JSON parser.
        let plain = raw
            .strip_prefix(br#"{"path":""#)
            .and_then(|rest| memchr::memchr(b'"', rest))
            .filter(|&len| {
                let path = &raw[PLAIN_PATH_START..PLAIN_PATH_START + len];
                !path.iter().any(|&c| c == b'\\' || c < 0x20)
            });
        let path = match plain {
            Some(len) => LinePath::InLine(PLAIN_PATH_START + len),
            None => {
                #[derive(Deserialize)]
                struct PathOnly {
                    path: RawBytes,
                }
                let only: PathOnly = serde_json::from_slice(&raw)
                    .map_err(|source| ManifestError::BadLine { line: number, source })?;
                LinePath::Decoded(only.path.0)
            }
        };
        Ok(RawLine { raw, number, path })
    }
}

impl Default for ManifestParser {
    fn default() -> Self {
        ManifestParser::new()
    }
}

impl ManifestParser {
    pub fn new() -> ManifestParser {
        ManifestParser {
            pending: Vec::new(),
            line: 0,
            last: Vec::new(),
        }
    }

    /// Feeds one blob; returns the entries completed by it.
    pub fn feed(&mut self, blob: &[u8]) -> Result<Vec<Entry>, ManifestError> {
        self.feed_raw(blob)?.iter().map(RawLine::entry).collect()
    }

    /// Feeds one blob; returns the lines completed by it, each checked for a
    /// safe path in manifest order but otherwise not parsed.
    pub fn feed_raw(&mut self, blob: &[u8]) -> Result<Vec<RawLine>, ManifestError> {
        let mut out = Vec::new();
        let mut rest = blob;
        while let Some(nl) = memchr::memchr(b'\n', rest) {
            let raw = if self.pending.is_empty() {
                rest[..nl].to_vec()
            } else {
                let mut raw = std::mem::take(&mut self.pending);
                raw.extend_from_slice(&rest[..nl]);
                raw
            };
            rest = &rest[nl + 1..];
            self.line += 1;
            let line = RawLine::new(raw, self.line)?;
            let path = line.path();
            if !is_safe_path(path) {
                return Err(ManifestError::UnsafePath(RawBytes(path.to_vec())));
            }
            if !self.last.is_empty() && path_cmp(&self.last, path) != Ordering::Less {
                return Err(ManifestError::OutOfOrder(
                    RawBytes(path.to_vec()),
                    RawBytes(self.last.clone()),
                ));
            }
            self.last.clear();
            self.last.extend_from_slice(path);
            out.push(line);
        }
        self.pending.extend_from_slice(rest);
        Ok(out)
    }

    /// Whether the stream ended on a line boundary.
    pub fn is_complete(&self) -> bool {
        self.pending.is_empty()
    }
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
    fn metadata_is_written_as_serde_writes_it() {
        let mut cases = Vec::new();
        for kind in [EntryKind::File, EntryKind::Dir] {
            for zeros in 0..32u32 {
                let mut e = sample_file("tree/a b/ü.txt", 553);
                e.kind = kind;
                let pick = |bit: u32, v: u64| if zeros & (1 << bit) != 0 { 0 } else { v };
                e.mtime_nsec = pick(0, 5) as u32;
                e.ctime = pick(1, 1_700_000_001) as i64;
                e.ctime_nsec = pick(2, 6) as u32;
                e.ino = pick(3, u64::MAX);
                e.size = if kind == EntryKind::Dir { 0 } else { pick(4, 553) };
                e.mtime = -5;
                cases.push(e);
            }
        }
        for e in cases {
            let mut line = r#"{"path":"tree/a b/ü.txt""#.as_bytes().to_vec();
            write_metadata(&e, &mut line).unwrap();
            line.push(b'}');
            assert_eq!(
                String::from_utf8(line).unwrap(),
                serde_json::to_string(&e).unwrap(),
                "{e:?}"
            );
        }
    }

    use crate::repo::config::Config;

    fn entry(path: &[u8]) -> Entry {
        Entry {
            path: RawBytes(path.to_vec()),
            kind: EntryKind::File,
            mode: 0o644,
            uid: 0,
            gid: 0,
            mtime: 1,
            mtime_nsec: 2,
            ctime: 0,
            ctime_nsec: 0,
            ino: 0,
            size: 0,
            hash: None,
            blobs: vec![],
            target: None,
            rdev: 0,
            xattrs: vec![],
        }
    }

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
    fn round_trip_through_small_blobs() {
        let mut params = Config::new(String::new()).chunker;
        params.min_size = 64;
        params.avg_size = 256;
        params.max_size = 1024;
        let chunker = Chunker::new(&params).unwrap();
        let mut entries: Vec<Entry> = (0..300u32)
            .map(|i| entry(format!("d/f{i:04}").as_bytes()))
            .collect();
        entries.push(entry(b"z/\xff\xfe name"));
        let mut writer = ManifestWriter::new(chunker);
        let mut blobs: Vec<Vec<u8>> = Vec::new();
        let mut emit = |_: ObjectId, b: &[u8]| -> Result<(), ManifestError> {
            blobs.push(b.to_vec());
            Ok(())
        };
        for e in &entries {
            writer.push(e, &mut emit).unwrap();
        }
        let ids = writer.finish(&mut emit).unwrap();
        assert_eq!(ids.len(), blobs.len());
        assert!(blobs.len() > 3);
        let mut parser = ManifestParser::new();
        let parsed: Vec<Entry> = blobs.iter().flat_map(|b| parser.feed(b).unwrap()).collect();
        assert!(parser.is_complete());
        assert_eq!(parsed, entries);
    }

    #[test]
    fn out_of_order_is_refused() {
        let chunker = Chunker::new(&Config::new(String::new()).chunker).unwrap();
        let mut writer = ManifestWriter::new(chunker);
        let mut emit = |_: ObjectId, _: &[u8]| -> Result<(), ManifestError> { Ok(()) };
        writer.push(&entry(b"b"), &mut emit).unwrap();
        assert!(writer.push(&entry(b"a"), &mut emit).is_err());
    }

    fn random_entry(rng: &mut crate::rng::Rng) -> Entry {
        let alphabet: &[u8] = b"ab/ .\\\"\x01\x7f\xc3\xbc\xffz";
        let len = 1 + rng.below(12) as usize;
        let path: Vec<u8> = (0..len).map(|_| *rng.pick(alphabet)).collect();
        let mut e = entry(&path);
        e.kind = *rng.pick(&[EntryKind::File, EntryKind::Dir, EntryKind::Symlink]);
        e.mode = rng.number() as u32;
        e.uid = rng.number() as u32;
        e.gid = rng.number() as u32;
        e.mtime = rng.number() as i64;
        e.mtime_nsec = rng.number() as u32;
        e.ctime = rng.number() as i64;
        e.ctime_nsec = rng.number() as u32;
        e.ino = rng.number();
        e.size = rng.number();
        if e.kind == EntryKind::Symlink {
            e.target = Some(RawBytes(b"t".to_vec()));
        }
        e
    }

    /// The in-place path reader and the hand-written metadata writer agree
    /// with serde on random entries, and on random edits of their lines the
    /// path reader never disagrees with serde's reading of the line.
    #[test]
    fn the_fast_line_readers_agree_with_serde_on_random_input() {
        let mut rng = crate::rng::Rng(0x5eed);
        for _ in 0..3000 {
            let e = random_entry(&mut rng);
            let json = serde_json::to_vec(&e).unwrap();
            let line = RawLine::new(json.clone(), 1).unwrap();
            assert_eq!(line.path(), e.path.as_bytes());
            assert_eq!(line.entry().unwrap(), e);
            let mut meta = Vec::new();
            if write_metadata(&e, &mut meta).is_some() {
                let after = line.after_plain_path();
                if let Some(after) = after {
                    assert_eq!(
                        after,
                        [&meta[..], b"}"].concat(),
                        "{}",
                        String::from_utf8_lossy(&json)
                    );
                }
            }
            let bent = rng.mutate(&json);
            if let Ok(line) = RawLine::new(bent.clone(), 1) {
                if let Ok(full) = serde_json::from_slice::<Entry>(&bent) {
                    assert_eq!(
                        line.path(),
                        full.path.as_bytes(),
                        "{}",
                        String::from_utf8_lossy(&bent)
                    );
                }
            }
        }
    }
}
