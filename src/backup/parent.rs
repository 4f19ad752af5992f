//! The parent snapshot, followed alongside the walk: an entry whose metadata
//! is the parent's is finished from the parent's manifest line, and a file
//! among them is not read at all.
//!
//! Most lines of an unchanged tree are compared as bytes: the walked entry is
//! serialized as the writer would write it without its contents, and when the
//! parent's line starts with exactly those bytes and goes on with nothing but
//! well-formed content ids, the line is the entry's and is written again as
//! it is. Anything else (extended attributes, escaped names, a change) takes
//! the slow path: the parent's line is parsed and compared field by field.

use crate::repo::id::ObjectId;
use crate::repo::index::Index;
use crate::repo::manifest::{Entry, EntryKind, MetadataMatcher, RawLine};
use crate::repo::snapshot::Snapshot;
use crate::repo::{RepoError, Repository};

/// The snapshot a backup is matched against, and its manifest's lines when
/// the caller has them already (see [`super::Walked`]).
pub(super) struct Parent<'a> {
    pub snapshot: Option<&'a Snapshot>,
    pub lines: Option<Vec<RawLine>>,
}

/// The parent's lines, in manifest order: given, or read on a thread of the
/// caller's scope so that reading and splitting them overlaps with the walk.
pub(super) struct ParentCursor<'r> {
    lines: Option<Box<dyn Iterator<Item = Result<RawLine, RepoError>> + 'r>>,
    peeked: Option<RawLine>,
}

impl<'r> ParentCursor<'r> {
    pub(super) fn follow<'s, 'e: 's + 'r>(
        scope: &'s std::thread::Scope<'s, 'e>,
        repo: &'e Repository,
        index: &'e Index,
        parent: Parent<'e>,
    ) -> ParentCursor<'r> {
        if let Some(lines) = parent.lines {
            return ParentCursor {
                lines: Some(Box::new(lines.into_iter().map(Ok))),
                peeked: None,
            };
        }
        let Some(parent) = parent.snapshot else {
            return ParentCursor {
                lines: None,
                peeked: None,
            };
        };
        ParentCursor {
            lines: Some(Box::new(crate::repo::reader::lines_ahead(
                scope, repo, index, parent,
            ))),
            peeked: None,
        }
    }

    /// The parent's line for `path`, if it has one. Paths must be asked for
    /// in manifest order; lines before `path` are passed over.
    pub(super) fn find(&mut self, path: &[u8]) -> Option<RawLine> {
        use std::cmp::Ordering::*;
        loop {
            if self.peeked.is_none() {
                match self.lines.as_mut()?.next() {
                    Some(Ok(line)) => self.peeked = Some(line),
                    Some(Err(e)) => {
                        tracing::warn!(
                            "parent snapshot unusable from here on, reading every file: {}",
                            crate::chain(&e)
                        );
                        self.lines = None;
                        return None;
                    }
                    None => {
                        self.lines = None;
                        return None;
                    }
                }
            }
            let peeked = self.peeked.as_ref()?;
            match crate::repo::manifest::path_cmp(peeked.path(), path) {
                Less => self.peeked = None,
                Equal => return self.peeked.take(),
                Greater => return None,
            }
        }
    }
}

/// What the parent says of a walked entry.
pub(super) enum Verdict {
    /// The same. With `line`, the parent's line is the entry's (its contents
    /// are not filled in: the line is written as it is); without, the entry
    /// now has the parent's contents and extended attributes.
    Unchanged { line: Option<Vec<u8>> },
    /// A file to read again; a directory whose attributes are to be read.
    Changed,
}

/// Compares walked entries with their parent's lines. Keeps one buffer for
/// the metadata it writes, so the common case allocates nothing.
#[derive(Default)]
pub(super) struct LineMatcher {
    metadata: MetadataMatcher,
}

impl LineMatcher {
    /// A walked file (no contents yet) against its parent line.
    pub(super) fn file(&mut self, prev: RawLine, entry: &mut Entry, index: &Index) -> Verdict {
        if let Some(tail) = self.after_same_metadata(&prev, entry) {
            let mut indexed = true;
            if let Some((hash, blobs)) = content_tail(tail, |id| indexed &= index.contains(&id)) {
                // The content hash is `hash`, or the one blob's id.
                if indexed && (hash || blobs == 1) {
                    return Verdict::Unchanged { line: Some(prev.raw) };
                }
            }
        }
        let parsed = match prev.entry() {
            Ok(parsed) => parsed,
            Err(e) => {
                tracing::debug!(
                    "parent line unusable, reading the file again: {}",
                    crate::chain(&e)
                );
                return Verdict::Changed;
            }
        };
        if !unchanged(&parsed, entry, index) {
            return Verdict::Changed;
        }
        entry.hash = parsed.hash;
        entry.blobs = parsed.blobs.clone();
        entry.xattrs = parsed.xattrs.clone();
        // The same entry as the parent's: its line is written again as it
        // was, not serialized anew.
        let line = (*entry == parsed).then_some(prev.raw);
        Verdict::Unchanged { line }
    }

    /// A walked directory (no attributes yet) against its parent line. A
    /// directory whose ctime and inode are unchanged has the same extended
    /// attributes: they need not be listed again.
    pub(super) fn dir(&mut self, prev: RawLine, entry: &mut Entry) -> Verdict {
        if self.after_same_metadata(&prev, entry) == Some(b"}") {
            return Verdict::Unchanged { line: Some(prev.raw) };
        }
        match prev.entry() {
            Ok(parsed)
                if parsed.kind == EntryKind::Dir
                    && (parsed.ctime, parsed.ctime_nsec, parsed.ino)
                        == (entry.ctime, entry.ctime_nsec, entry.ino) =>
            {
                entry.xattrs = parsed.xattrs.clone();
                let line = (*entry == parsed).then_some(prev.raw);
                Verdict::Unchanged { line }
            }
            _ => Verdict::Changed,
        }
    }

    fn after_same_metadata<'l>(&mut self, prev: &'l RawLine, entry: &Entry) -> Option<&'l [u8]> {
        self.metadata.rest_after(prev, entry)
    }
}

/// Parses what follows a file's metadata in a line the writer made:
/// `,"hash":"<id>"` and `,"blobs":["<id>",...]`, each optional, then the
/// closing brace; `blob` sees each blob id. Returns whether there is a hash
/// and how many blobs. Anything else (extended attributes, another field, a
/// number that only began like ours) is `None`, for the slow path.
fn content_tail(tail: &[u8], mut blob: impl FnMut(ObjectId)) -> Option<(bool, usize)> {
    fn quoted_id(rest: &[u8]) -> Option<(ObjectId, &[u8])> {
        let rest = rest.strip_prefix(b"\"")?;
        let id = ObjectId::from_hex(rest.get(..64)?)?;
        Some((id, rest[64..].strip_prefix(b"\"")?))
    }
    let mut rest = tail;
    let mut hash = false;
    if let Some(after) = rest.strip_prefix(br#","hash":"#) {
        let (_, after) = quoted_id(after)?;
        hash = true;
        rest = after;
    }
    let mut blobs = 0;
    if let Some(mut after) = rest.strip_prefix(br#","blobs":["#) {
        loop {
            let (id, next) = quoted_id(after)?;
            blob(id);
            blobs += 1;
            if let Some(next) = next.strip_prefix(b",") {
                after = next;
            } else {
                rest = next.strip_prefix(b"]")?;
                break;
            }
        }
    }
    (rest == b"}").then_some((hash, blobs))
}

/// Whether a file can reuse its parent entry without being read.
fn unchanged(prev: &Entry, now: &Entry, index: &Index) -> bool {
    prev.kind == EntryKind::File
        && prev.size == now.size
        && prev.mtime == now.mtime
        && prev.mtime_nsec == now.mtime_nsec
        && prev.ctime == now.ctime
        && prev.ctime_nsec == now.ctime_nsec
        && prev.ino == now.ino
        && prev.content_hash().is_some()
        && prev.blobs.iter().all(|b| index.contains(b))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::repo::manifest::sample_file as file;

    #[test]
    fn tail_takes_only_what_the_writer_writes() {
        let a = ObjectId::of(b"a");
        let b = ObjectId::of(b"b");
        let parse = |tail: &[u8]| {
            let mut ids = Vec::new();
            content_tail(tail, |id| ids.push(id)).map(|(hash, n)| (hash, n, ids))
        };
        let tail = format!(r#","hash":"{a}","blobs":["{a}","{b}"]}}"#);
        assert_eq!(parse(tail.as_bytes()), Some((true, 2, vec![a, b])));
        let one = format!(r#","blobs":["{b}"]}}"#);
        assert_eq!(parse(one.as_bytes()), Some((false, 1, vec![b])));
        assert_eq!(parse(b"}"), Some((false, 0, vec![])));
        for bad in [
            format!(r#"3,"blobs":["{b}"]}}"#),
            format!(r#","blobs":["{b}"],"xattrs":[]}}"#),
            format!(r#","blobs":["{b}"]"#),
            format!(r#","blobs":["{}"]}}"#, &b.to_hex()[1..]),
            r#","blobs":[]}"#.to_string(),
        ] {
            assert_eq!(parse(bad.as_bytes()), None, "{bad}");
        }
    }

    #[test]
    fn a_size_that_only_begins_like_the_old_one_is_a_change() {
        // The parent's size is 553; the file is now 55 bytes with the same
        // times: the bytes of the new line are a prefix of the old one.
        let mut old = file("tree/a", 553);
        old.blobs = vec![ObjectId::of(b"x")];
        let raw = serde_json::to_vec(&old).unwrap();
        let mut parser = crate::repo::manifest::ManifestParser::new();
        let mut with_newline = raw.clone();
        with_newline.push(b'\n');
        let prev = parser.feed_raw(&with_newline).unwrap().remove(0);
        let mut index = Index::default();
        index.add_file(&crate::repo::index::IndexFile {
            packs: vec![crate::repo::index::IndexPack {
                id: ObjectId::of(b"pack"),
                blobs: vec![crate::repo::index::IndexBlob {
                    id: ObjectId::of(b"x"),
                    frame_offset: 0,
                    frame_length: 1,
                    offset: 512,
                    length: 1,
                }],
            }],
        });
        let mut matcher = LineMatcher::default();
        let mut now = file("tree/a", 55);
        assert!(matches!(
            matcher.file(prev.clone(), &mut now, &index),
            Verdict::Changed
        ));
        let mut same = file("tree/a", 553);
        match matcher.file(prev.clone(), &mut same, &index) {
            Verdict::Unchanged { line } => assert_eq!(line, Some(raw)),
            Verdict::Changed => panic!("an unchanged file was taken for changed"),
        }
        // A blob the index does not know (a lost index file): read again.
        let mut same = file("tree/a", 553);
        assert!(matches!(
            matcher.file(prev, &mut same, &Index::default()),
            Verdict::Changed
        ));
    }
}
