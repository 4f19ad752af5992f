//! Manifest blobs back to lines and entries: lines may span blobs, each is
//! parsed strictly, and a backup reads most of its parent's lines only as
//! far as their path.

use std::cmp::Ordering;

use serde::Deserialize;

use super::{is_safe_path, path_cmp, write_metadata, Entry, ManifestError, RawBytes};

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

#[cfg(test)]
mod tests {
    use super::super::{entry_at as entry, EntryKind, ManifestWriter};
    use super::*;
    use crate::repo::chunker::Chunker;
    use crate::repo::config::Config;
    use crate::repo::id::ObjectId;

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
        let mut writer = ManifestWriter::new(chunker, crate::repo::crypto::Crypto::plain());
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
