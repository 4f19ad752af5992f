//! The workers: read files, cut them into blobs and hand those to the packer.

use std::io;

use crossbeam_channel::{Receiver, Sender};

use crate::interrupt;
use crate::meta::{self};
use crate::progress::Progress;
use crate::repo::chunker::Chunker;
use crate::repo::id::ObjectId;
use crate::repo::pack::FrameBuilder;
use crate::repo::packer::Packer;
use crate::repo::RepoError;

use super::{Done, FileJob, FileStatus};
use crate::repo::manifest::Entry;

pub(super) fn store_files(
    jobs: Receiver<FileJob>,
    done: Sender<Vec<(u64, Done)>>,
    packer: &Packer,
    chunker: &Chunker,
    progress: &Progress,
) -> Result<(), RepoError> {
    let mut frames = packer.frame_builder();
    let mut bufs = Buffers::default();
    for job in jobs {
        if interrupt::is_set() {
            return Err(RepoError::Interrupted);
        }
        let seq = job.seq;
        let d = store_file(job, packer, &mut frames, chunker, &mut bufs, progress)?;
        progress.file_done();
        if done.send(vec![(seq, d)]).is_err() {
            break;
        }
    }
    packer.flush(&mut frames)
}

/// A worker's reusable chunking window; it grows to the largest file seen,
/// at most `Chunker::window_limit`, and is zeroed only when it grows.
#[derive(Default)]
struct Buffers {
    window: Vec<u8>,
}

/// Cuts what `reader` yields into blobs and stores the new ones; returns the
/// bytes read, the blob list and the whole content's hash.
#[allow(clippy::too_many_arguments)]
fn store_stream(
    reader: &mut dyn std::io::Read,
    size_hint: u64,
    packer: &Packer,
    frames: &mut FrameBuilder,
    chunker: &Chunker,
    bufs: &mut Buffers,
    progress: &Progress,
) -> Result<(u64, Vec<ObjectId>, ObjectId), StoreError> {
    let mut blobs = Vec::new();
    let mut hasher = blake3::Hasher::new();
    let mut only_chunk = None;
    let crypto = packer.crypto();
    let read = chunker.chunk_reader::<StoreError>(reader, size_hint, &mut bufs.window, |chunk, whole| {
        // Content that is one chunk is hashed once: its id comes from its hash.
        let chunk_hash = blake3::hash(chunk);
        let id = crypto.blob_id_of(chunk_hash);
        if whole {
            only_chunk = Some(ObjectId::from_hash(chunk_hash));
        } else {
            hasher.update(chunk);
        }
        packer.add(frames, id, chunk)?;
        blobs.push(id);
        progress.add(chunk.len() as u64);
        Ok(())
    })?;
    let hash = only_chunk.unwrap_or_else(|| ObjectId::from_hash(hasher.finalize()));
    Ok((read, blobs, hash))
}

/// The `hash` a file entry records: left out where the file is one blob,
/// whose id is made from that hash (FORMAT.md section 7).
fn content_hash(hash: ObjectId, blobs: &[ObjectId]) -> Option<ObjectId> {
    match blobs.len() {
        1 => None,
        _ => Some(hash),
    }
}

/// Stores contents a collector made (no file to open, nothing to re-check).
fn store_content(
    mut entry: Entry,
    status: FileStatus,
    content: &[u8],
    packer: &Packer,
    frames: &mut FrameBuilder,
    chunker: &Chunker,
    bufs: &mut Buffers,
) -> Result<Done, RepoError> {
    let mut reader: &[u8] = content;
    let hidden = Progress::hidden();
    let (_, blobs, hash) = match store_stream(
        &mut reader,
        content.len() as u64,
        packer,
        frames,
        chunker,
        bufs,
        &hidden,
    ) {
        Ok(stored) => stored,
        Err(StoreError::Repo(e)) => return Err(e),
        // Reading from memory cannot fail.
        Err(StoreError::Source(e)) => {
            return Err(RepoError::Compress {
                what: "collector output",
                source: e,
            })
        }
    };
    entry.hash = content_hash(hash, &blobs);
    entry.blobs = blobs;
    Ok(Done::Entry {
        entry,
        status: Some(status),
        warning: None,
        line: None,
    })
}

/// A file read no further than the size its stat gave: a pseudo-file
/// such as `/proc/N/pagemap` says 0 bytes but yields gigabytes, and a log
/// file keeps growing while it is read (it is saved as it was, and the
/// size that changed is warned about). Each read first looks for Ctrl-C or
/// SIGTERM, so one large file does not hold up the end.
struct Bounded<R> {
    inner: R,
    left: u64,
}

impl<R: std::io::Read> std::io::Read for Bounded<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if interrupt::is_set() {
            // Not ErrorKind::Interrupted: readers retry that one.
            return Err(io::Error::other("interrupted"));
        }
        let max = usize::try_from(self.left).unwrap_or(usize::MAX).min(buf.len());
        if max == 0 {
            return Ok(0);
        }
        let n = self.inner.read(&mut buf[..max])?;
        self.left = self.left.saturating_sub(n as u64);
        Ok(n)
    }
}

enum StoreError {
    Source(io::Error),
    Repo(RepoError),
}

impl From<io::Error> for StoreError {
    fn from(e: io::Error) -> Self {
        StoreError::Source(e)
    }
}

impl From<RepoError> for StoreError {
    fn from(e: RepoError) -> Self {
        StoreError::Repo(e)
    }
}

/// Reads one file into blobs. A source that cannot be read is a warning and
/// the file is left out; only repository errors end the backup.
fn store_file(
    job: FileJob,
    packer: &Packer,
    frames: &mut FrameBuilder,
    chunker: &Chunker,
    bufs: &mut Buffers,
    progress: &Progress,
) -> Result<Done, RepoError> {
    let FileJob {
        abs,
        dev,
        mut entry,
        status,
        content,
        ..
    } = job;
    if let Some(content) = content {
        return store_content(entry, status, &content, packer, frames, chunker, bufs);
    }
    let skipped = |e: io::Error| Done::Skipped {
        path: Some(entry.path.as_bytes().to_vec()),
        warning: Some(format!("{}: {e}", abs.display())),
    };
    let mut file = match meta::open_same(&abs, (dev, entry.ino), false) {
        Ok(f) => f,
        Err(e) => return Ok(skipped(e)),
    };
    let mut bounded = Bounded {
        inner: &mut file,
        left: entry.size,
    };
    let (size, blobs, hash) =
        match store_stream(&mut bounded, entry.size, packer, frames, chunker, bufs, progress) {
            Ok(r) => r,
            Err(StoreError::Source(e)) => return Ok(skipped(e)),
            Err(StoreError::Repo(e)) => return Err(e),
        };
    let mut warning = None;
    let after = file.metadata().ok().map(|m| meta::Stat::from_metadata(&m));
    let changed = after
        .is_none_or(|a| a.size != entry.size || a.mtime != entry.mtime || a.mtime_nsec != entry.mtime_nsec)
        || size != entry.size;
    if changed {
        warning = Some(format!(
            "{}: changed while it was being read; saved as read",
            abs.display()
        ));
    }
    match meta::read_xattrs(&abs) {
        Ok(x) => entry.xattrs = x,
        Err(e) => warning = Some(format!("{}: cannot read extended attributes: {e}", abs.display())),
    }
    entry.size = size;
    entry.hash = content_hash(hash, &blobs);
    entry.blobs = blobs;
    Ok(Done::Entry {
        entry,
        status: Some(status),
        warning,
        line: None,
    })
}
