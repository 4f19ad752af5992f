//! Reading blobs back: one ranged read and one decompression per frame, with a
//! few recent frames kept, since neighbouring blobs usually share a frame.

use std::collections::VecDeque;

use super::id::ObjectId;
use super::index::{BlobLocation, Index};
use super::manifest::{ContentId, Entry, ManifestParser, RawLine};
use super::pack::{self, PackError};
use super::{RepoError, Repository};
use crate::sink::ObjectKind;

/// Frames kept per reader, by count and by decompressed bytes: ordinary
/// frames are about 1 MiB, but one holding a large blob can be 4 MiB.
const CACHED_FRAMES: usize = 4;
const CACHED_BYTES: usize = 4 << 20;

pub struct BlobReader<'a> {
    repo: &'a Repository,
    index: &'a Index,
    /// Decoded frames: whole, or the prefix a blob needed (`false`).
    frames: VecDeque<((ObjectId, u64), Vec<u8>, bool)>,
    decoder: pack::FrameDecoder,
    /// Compressed bytes fetched from the sink.
    pub bytes_fetched: u64,
    /// Few blobs scattered over many frames are wanted: decode a frame only
    /// as far as the blob asked for (see [`BlobReader::sparse`]).
    sparse: bool,
    /// Compressed frames fetched ahead (see [`BlobReader::prefetched`]).
    prefetched: Vec<((ObjectId, u64), Vec<u8>)>,
    /// Frames that could not be read or decoded: how often, and why. A
    /// frame whose pack is missing, or that failed to decode three times, fails
    /// at once when asked again (by every file in it); a single garbled
    /// transfer is read again.
    failed: std::collections::HashMap<(ObjectId, u64), (u32, String)>,
    /// The buffer of a frame dropped to stay within [`CACHED_BYTES`], lent
    /// to the next frame: a fresh megabyte costs hundreds of page faults.
    spare: Vec<u8>,
    /// Blobs read already (see [`preload`]), taken from here first.
    preloaded: Option<&'a Preloaded>,
}

/// Blobs read and verified ahead of the writers that need them (see
/// [`preload`]).
#[derive(Default)]
pub struct Preloaded(std::collections::HashMap<ObjectId, Vec<u8>>);

impl Preloaded {
    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn extend(&mut self, other: Preloaded) {
        self.0.extend(other.0);
    }

    pub fn contains(&self, id: &ObjectId) -> bool {
        self.0.contains_key(id)
    }
}

/// Reads and verifies the blobs `ids`, in order, until they hold `budget`
/// bytes or `stop` is set, for writers to take from memory later: an
/// in-place restore decodes its files' frames while it takes its safety
/// snapshot. A blob that cannot be read is left out: the writer that needs
/// it reads it again, and reports what fails.
pub fn preload<'i>(
    repo: &Repository,
    index: &Index,
    ids: impl IntoIterator<Item = &'i ObjectId>,
    budget: u64,
    stop: &std::sync::atomic::AtomicBool,
) -> Preloaded {
    let mut reader = BlobReader::new(repo, index).sparse();
    let mut blobs = std::collections::HashMap::new();
    let mut held = 0u64;
    for id in ids {
        if crate::interrupt::is_set() || stop.load(std::sync::atomic::Ordering::Relaxed) {
            break;
        }
        if blobs.contains_key(id) {
            continue;
        }
        let Ok(data) = reader.read(id) else { continue };
        held = held.saturating_add(data.len() as u64);
        if held > budget {
            break;
        }
        blobs.insert(*id, data);
    }
    Preloaded(blobs)
}

/// Frame failures remembered per reader, at most.
const REMEMBERED_FAILURES: usize = 4096;

/// Reads of a frame before it counts as damaged.
const FRAME_ATTEMPTS: u32 = super::READ_ATTEMPTS;

/// Checks a file's content against its entry as its verified blobs pass
/// by. A file of one blob is not hashed again: the blob was verified
/// against its id, and the id comes from the content's hash.
pub struct ContentCheck {
    hasher: Option<blake3::Hasher>,
    written: u64,
}

impl ContentCheck {
    pub fn new(entry: &Entry) -> ContentCheck {
        ContentCheck {
            hasher: (entry.blobs.len() != 1).then(blake3::Hasher::new),
            written: 0,
        }
    }

    pub fn update(&mut self, data: &[u8]) {
        self.written += data.len() as u64;
        if let Some(h) = &mut self.hasher {
            h.update(data);
        }
    }

    pub fn written(&self) -> u64 {
        self.written
    }

    /// What differs from `entry`, as "N bytes hashing to H" (`None`: the
    /// content is the entry's).
    pub fn mismatch(self, entry: &Entry, crypto: &super::crypto::Crypto) -> Option<String> {
        let expected = entry.content_id();
        let (same, actual) = match (self.hasher, entry.blobs.as_slice(), expected) {
            (Some(h), _, _) => {
                let actual = ObjectId::from_hash(h.finalize());
                (expected.is_none_or(|e| e.is(&actual, crypto)), actual.to_string())
            }
            // The one blob was verified against its id: only a `hash` the
            // entry records besides can disagree.
            (None, [only], Some(ContentId::Hash(e))) => {
                (crypto.id_has_hash(only, &e), format!("the hash of blob {only}"))
            }
            (None, _, _) => (true, String::new()),
        };
        match same && self.written == entry.size {
            true => None,
            false => Some(format!(
                "{} bytes hashing to {actual}, the manifest says {} bytes",
                self.written, entry.size
            )),
        }
    }
}

impl<'a> BlobReader<'a> {
    /// How the repository names blobs (to check contents against entries).
    pub fn crypto(&self) -> &super::crypto::Crypto {
        self.repo.crypto()
    }

    pub fn new(repo: &'a Repository, index: &'a Index) -> BlobReader<'a> {
        BlobReader {
            repo,
            index,
            frames: VecDeque::new(),
            decoder: pack::FrameDecoder::new(repo.crypto()),
            bytes_fetched: 0,
            sparse: false,
            prefetched: Vec::new(),
            failed: Default::default(),
            spare: Vec::new(),
            preloaded: None,
        }
    }

    /// A reader for few blobs scattered over many frames (an in-place
    /// restore of a small change): each frame is decoded only up to the end
    /// of the blob asked for, and whole when a later blob needs more. Reads
    /// of most of a snapshot are faster without: each frame is decoded once.
    pub fn sparse(mut self) -> BlobReader<'a> {
        self.sparse = true;
        self
    }

    /// A reader that takes the blobs in `preloaded` from there.
    pub fn with_preloaded(mut self, preloaded: &'a Preloaded) -> BlobReader<'a> {
        self.preloaded = Some(preloaded);
        self
    }

    /// Compressed frames, keyed by pack and frame offset, that were fetched
    /// ahead of their use (a restore from a network store); they replace
    /// those offered before. Each is used at most once, then the store is
    /// asked as usual.
    pub fn prefetched(&mut self, frames: Vec<((ObjectId, u64), Vec<u8>)>) {
        self.prefetched = frames;
    }

    /// The frame at `key`: prefetched, else read from the store now.
    fn fetch(&mut self, key: (ObjectId, u64), length: u32) -> Result<Vec<u8>, RepoError> {
        if let Some(i) = self.prefetched.iter().position(|(k, _)| *k == key) {
            let raw = self.prefetched.swap_remove(i).1;
            self.bytes_fetched += raw.len() as u64;
            return Ok(raw);
        }
        let raw = self
            .repo
            .sink()
            .read_range(ObjectKind::Pack, &key.0.to_hex(), key.1, length as u64)?;
        self.bytes_fetched += raw.len() as u64;
        Ok(raw)
    }

    /// The blob's bytes, verified against its id. A blob stored more than
    /// once is read from the next copy when one is missing or damaged; the
    /// error of the first copy is returned when none is good.
    pub fn read(&mut self, id: &ObjectId) -> Result<Vec<u8>, RepoError> {
        self.read_with(id, <[u8]>::to_vec)
    }

    /// [`BlobReader::read`], lending the bytes to `use_blob` where they lie
    /// in the cached frame instead of copying them.
    pub fn read_with<R>(&mut self, id: &ObjectId, use_blob: impl FnOnce(&[u8]) -> R) -> Result<R, RepoError> {
        if let Some(data) = self.preloaded.and_then(|p| p.0.get(id)) {
            return Ok(use_blob(data));
        }
        let mut first_error = None;
        let index = self.index;
        for (pack_id, loc) in index.locations(id) {
            // A garbled or short transfer is not a damaged frame: up to
            // three reads (a frame that fails to decode that often is
            // remembered as damaged).
            let mut result = self.verified_at(id, pack_id, loc);
            for _ in 1..FRAME_ATTEMPTS {
                match result {
                    Err(RepoError::Pack { .. }) => result = self.verified_at(id, pack_id, loc),
                    _ => break,
                }
            }
            match result {
                Ok(pos) => {
                    if let Some(e) = &first_error {
                        tracing::warn!(
                            "{}; read blob {id} from its copy in pack {pack_id}",
                            crate::chain(e)
                        );
                    }
                    let blob = loc.to_index_blob(*id);
                    let start = blob.offset as usize;
                    return Ok(use_blob(&self.frames[pos].1[start..start + blob.length as usize]));
                }
                Err(e) => {
                    first_error.get_or_insert(e);
                }
            }
        }
        Err(first_error.unwrap_or(RepoError::MissingBlob(*id)))
    }

    /// Caches the frame holding the blob and checks the blob's bytes against
    /// its id; returns the frame's place in the cache.
    fn verified_at(
        &mut self,
        id: &ObjectId,
        pack_id: ObjectId,
        loc: BlobLocation,
    ) -> Result<usize, RepoError> {
        let key = (pack_id, loc.frame_offset);
        let blob = loc.to_index_blob(*id);
        let needed = (blob.offset as usize).saturating_add(blob.length as usize);
        let cached = self.frames.iter().position(|(k, _, _)| *k == key);
        // A prefix too short for this blob is decoded again, whole: reads in
        // manifest order go forward through a frame, so a frame is decoded
        // at most twice, the first time only up to its first blob.
        let whole = match cached {
            Some(pos) if self.frames[pos].2 || self.frames[pos].1.len() >= needed => None,
            Some(pos) => {
                self.frames.remove(pos);
                Some(true)
            }
            None => Some(!self.sparse),
        };
        if let Some((_, why)) = self
            .failed
            .get(&key)
            .filter(|(times, _)| *times >= FRAME_ATTEMPTS)
        {
            return Err(RepoError::Corrupt {
                kind: ObjectKind::Pack,
                name: pack_id.to_hex(),
                detail: format!(
                    "the frame at offset {} could not be read: {why}",
                    loc.frame_offset
                ),
            });
        }
        let pos = match (cached, whole) {
            (Some(pos), None) => pos,
            (_, whole) => {
                let raw = match self.fetch(key, loc.frame_length) {
                    Ok(raw) => raw,
                    Err(e) => return Err(self.remember(key, e)),
                };
                // The oldest frame makes room, and lends its buffer: a fresh
                // one of a megabyte costs hundreds of page faults.
                let mut frame = if self.frames.len() >= CACHED_FRAMES {
                    self.frames.pop_front().map(|(_, f, _)| f).unwrap_or_default()
                } else {
                    std::mem::take(&mut self.spare)
                };
                let whole = whole == Some(true);
                let decoded = if whole {
                    self.decoder.decode_into(&raw, loc.frame_offset, &mut frame)
                } else {
                    self.decoder
                        .decode_prefix_into(&raw, loc.frame_offset, &mut frame, needed)
                };
                if let Err(source) = decoded {
                    return Err(self.remember(
                        key,
                        RepoError::Pack {
                            pack: pack_id,
                            source,
                        },
                    ));
                }
                let mut cached: usize = self.frames.iter().map(|(_, f, _)| f.len()).sum();
                while cached + frame.len() > CACHED_BYTES {
                    match self.frames.pop_front() {
                        Some((_, old, _)) => {
                            cached -= old.len();
                            if old.capacity() > self.spare.capacity() && old.capacity() <= CACHED_BYTES {
                                self.spare = old;
                            }
                        }
                        None => break,
                    }
                }
                self.frames.push_back((key, frame, whole));
                self.frames.len() - 1
            }
        };
        match pack::blob_in_frame(&self.frames[pos].1, &loc.to_index_blob(*id), self.repo.crypto()) {
            Ok(_) => Ok(pos),
            Err(source) => {
                if let PackError::HashMismatch { .. } = source {
                    // A damaged frame must not stay cached as if it were good.
                    self.frames.remove(pos);
                }
                Err(RepoError::Pack {
                    pack: pack_id,
                    source,
                })
            }
        }
    }

    /// Notes that the frame at `key` failed with `e`, and returns `e`: a
    /// missing pack counts as all of them at once, a frame that does not decode as
    /// one; other errors (transient, interrupted) not at all.
    fn remember(&mut self, key: (ObjectId, u64), e: RepoError) -> RepoError {
        let weight = match &e {
            RepoError::Sink(s) if s.is_not_found() => FRAME_ATTEMPTS,
            RepoError::Pack { .. } => 1,
            _ => 0,
        };
        if weight > 0 && (self.failed.len() < REMEMBERED_FAILURES || self.failed.contains_key(&key)) {
            let entry = self.failed.entry(key).or_insert((0, String::new()));
            entry.0 = entry.0.saturating_add(weight);
            entry.1 = crate::chain(&e);
        }
        e
    }

    pub fn manifest<'b>(&'b mut self, snapshot: &str, blobs: &'b [ObjectId]) -> ManifestEntries<'a, 'b> {
        ManifestEntries {
            reader: self,
            snapshot: snapshot.to_string(),
            blobs,
            next_blob: 0,
            parser: ManifestParser::new(),
            ready: Default::default(),
            failed: false,
        }
    }
}

/// The raw lines of `snapshot`'s manifest, read, verified and split on a
/// thread of `scope`, so that this work overlaps the caller's (a walk of
/// the disk, mostly). The thread stops when the iterator is dropped.
pub fn lines_ahead<'s, 'e: 's>(
    scope: &'s std::thread::Scope<'s, 'e>,
    repo: &'e Repository,
    index: &'e Index,
    snapshot: &'e super::snapshot::Snapshot,
) -> impl Iterator<Item = Result<RawLine, RepoError>> + use<'e> {
    const BATCH: usize = 256;
    let (tx, rx) = crossbeam_channel::bounded::<Vec<Result<RawLine, RepoError>>>(8);
    scope.spawn(move || {
        let mut reader = BlobReader::new(repo, index);
        let mut out = crate::batch::BatchSender::new(tx, BATCH);
        for line in reader
            .manifest(&snapshot.id.short(), &snapshot.record.manifest)
            .raw_lines()
        {
            if !out.push(line) {
                return;
            }
        }
        out.flush();
        tracing::debug!(
            "manifest of {} read, {:?} CPU",
            snapshot.id.short(),
            crate::progress::thread_cpu()
        );
    });
    rx.into_iter().flatten()
}

/// A snapshot's entries, streamed in manifest order.
pub struct ManifestEntries<'a, 'b> {
    reader: &'b mut BlobReader<'a>,
    snapshot: String,
    blobs: &'b [ObjectId],
    next_blob: usize,
    parser: ManifestParser,
    ready: VecDeque<RawLine>,
    failed: bool,
}

impl<'a, 'b> ManifestEntries<'a, 'b> {
    /// The lines, each parsed only as far as its path.
    pub fn raw_lines(mut self) -> impl Iterator<Item = Result<RawLine, RepoError>> + use<'a, 'b> {
        std::iter::from_fn(move || self.next_line())
    }

    fn next_line(&mut self) -> Option<Result<RawLine, RepoError>> {
        loop {
            if let Some(line) = self.ready.pop_front() {
                return Some(Ok(line));
            }
            if self.failed {
                return None;
            }
            let Some(id) = self.blobs.get(self.next_blob) else {
                if !self.parser.is_complete() {
                    self.failed = true;
                    return Some(Err(RepoError::Corrupt {
                        kind: ObjectKind::Snapshot,
                        name: self.snapshot.clone(),
                        detail: "manifest ends in the middle of a line".into(),
                    }));
                }
                return None;
            };
            self.next_blob += 1;
            let result = self.reader.read(id).map_err(|e| RepoError::ManifestLost {
                snapshot: self.snapshot.clone(),
                source: Box::new(e),
            });
            let result = result.and_then(|blob| {
                self.parser.feed_raw(&blob).map_err(|source| RepoError::Manifest {
                    snapshot: self.snapshot.clone(),
                    source,
                })
            });
            match result {
                Ok(entries) => self.ready.extend(entries),
                Err(e) => {
                    self.failed = true;
                    return Some(Err(e));
                }
            }
        }
    }
}

impl Iterator for ManifestEntries<'_, '_> {
    type Item = Result<Entry, RepoError>;

    fn next(&mut self) -> Option<Self::Item> {
        let entry = self.next_line()?.and_then(|line| {
            line.entry().map_err(|source| RepoError::Manifest {
                snapshot: self.snapshot.clone(),
                source,
            })
        });
        if entry.is_err() {
            self.failed = true;
            self.ready.clear();
        }
        Some(entry)
    }
}
