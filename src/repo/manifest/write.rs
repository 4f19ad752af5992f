//! Entries to manifest blobs: each entry serialized as one line, in path
//! order, and the stream cut by the content-defined chunker.

use std::cmp::Ordering;

use super::{is_safe_path, path_cmp, Entry, EntryKind, ManifestError, RawBytes};
use crate::repo::chunker::Chunker;
use crate::repo::crypto::Crypto;
use crate::repo::id::ObjectId;

/// Receives each finished manifest blob.
pub type EmitBlob<'a, E> = dyn FnMut(ObjectId, &[u8]) -> Result<(), E> + 'a;

/// Serializes entries and cuts the stream into blobs as it grows.
pub struct ManifestWriter {
    chunker: Chunker,
    /// Names the blobs (keyed ids in an encrypted repository).
    crypto: Crypto,
    buf: Vec<u8>,
    /// Where the bytes not yet cut into blobs start in `buf`.
    start: usize,
    blobs: Vec<ObjectId>,
    /// The previous entry's path (empty before the first).
    last: RawBytes,
}

impl ManifestWriter {
    pub fn new(chunker: Chunker, crypto: Crypto) -> ManifestWriter {
        ManifestWriter {
            chunker,
            crypto,
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
            let id = self.crypto.blob_id(chunk);
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

#[cfg(test)]
mod tests {
    use super::super::{entry_at as entry, sample_file};
    use super::*;
    use crate::repo::config::Config;

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

    #[test]
    fn out_of_order_is_refused() {
        let chunker = Chunker::new(&Config::new(String::new()).chunker).unwrap();
        let mut writer = ManifestWriter::new(chunker, Crypto::plain());
        let mut emit = |_: ObjectId, _: &[u8]| -> Result<(), ManifestError> { Ok(()) };
        writer.push(&entry(b"b"), &mut emit).unwrap();
        assert!(writer.push(&entry(b"a"), &mut emit).is_err());
    }
}
