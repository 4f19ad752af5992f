//! The write path for blobs: deduplicate, gather into frames, compress (on the
//! caller's thread, so every worker compresses in parallel), then hand frames
//! to one [`PackWriter`] that assembles packs and writes them and the index.
//!
//! Ordering for crash safety: a pack is written before any index file names
//! it, and index files are written before the snapshot that needs them (the
//! caller writes the snapshot only after [`PackWriter::run`] returns).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use crossbeam_channel::{bounded, Receiver, Sender};

use super::id::{IdSet, ObjectId};
use super::index::{Index, IndexBlob, IndexFile, IndexPack};
use super::pack::{CompressedFrame, FrameBuilder, PackBuilder};
use super::{RepoError, Repository};
use crate::sink::ObjectKind;

/// An index file is written after this many packs or blobs, whichever comes
/// first: it bounds what an interrupted backup leaves unindexed, and the
/// memory the pending entries take.
const PACKS_PER_INDEX: usize = 32;
const BLOBS_PER_INDEX: usize = 8192;

/// Frames waiting for the pack writer; bounds memory when the sink is slow.
const QUEUED_FRAMES: usize = 4;

pub struct Packer<'i> {
    /// The repository's blobs, and those this run added: a blob in either
    /// is not stored again. The index is borrowed, not copied.
    index: &'i Index,
    added: Mutex<IdSet>,
    frames: Sender<CompressedFrame>,
    frame_target: usize,
    level: i32,
    crypto: crate::repo::crypto::Crypto,
    pub blobs_added: AtomicU64,
    pub bytes_added: AtomicU64,
}

#[derive(Debug, Default, Clone)]
pub struct PackWriterStats {
    pub packs: u64,
    pub bytes_stored: u64,
    pub index_files: u64,
    /// The names of the packs and index files written (prune must never
    /// delete one it wrote, though an older one had the same name).
    pub pack_ids: Vec<ObjectId>,
    pub index_ids: Vec<ObjectId>,
}

pub struct PackWriter {
    repo: Repository,
    frames: Receiver<CompressedFrame>,
}

/// A pack assembled and compressed, not yet stored.
struct Finished {
    id: ObjectId,
    bytes: Vec<u8>,
    blobs: Vec<IndexBlob>,
}

/// A pack the store confirmed.
struct Uploaded {
    pack: IndexPack,
    len: u64,
}

/// A packer for the workers and the writer that must run beside them.
pub fn start<'i>(repo: &Repository, index: &'i Index) -> (Packer<'i>, PackWriter) {
    start_at_level(repo, index, repo.config().compression.level)
}

/// [`start`], compressing at `level` instead of the repository's level
/// (`repair index` salvaging a damaged pack: its blobs, packed again the
/// same way, would give the damaged pack's own name).
pub fn start_at_level<'i>(repo: &Repository, index: &'i Index, level: i32) -> (Packer<'i>, PackWriter) {
    let (tx, rx) = bounded(QUEUED_FRAMES);
    let packer = Packer {
        index,
        added: Mutex::new(IdSet::default()),
        frames: tx,
        frame_target: repo.config().frame_target as usize,
        level,
        crypto: repo.crypto().clone(),
        blobs_added: AtomicU64::new(0),
        bytes_added: AtomicU64::new(0),
    };
    let writer = PackWriter {
        repo: repo.clone(),
        frames: rx,
    };
    (packer, writer)
}

impl Packer<'_> {
    pub fn crypto(&self) -> &crate::repo::crypto::Crypto {
        &self.crypto
    }

    pub fn frame_builder(&self) -> FrameBuilder {
        FrameBuilder::new(self.frame_target, self.level, &self.crypto)
    }

    /// Whether the repository (or this run) has the blob already.
    pub fn has(&self, id: &ObjectId) -> bool {
        self.index.contains(id) || self.added.lock().unwrap_or_else(|e| e.into_inner()).contains(id)
    }

    /// Stores a blob unless the repository (or this run) has it; returns
    /// whether it was new.
    pub fn add(&self, frames: &mut FrameBuilder, id: ObjectId, data: &[u8]) -> Result<bool, RepoError> {
        let new =
            !self.index.contains(&id) && self.added.lock().unwrap_or_else(|e| e.into_inner()).insert(id);
        if !new {
            return Ok(false);
        }
        self.blobs_added.fetch_add(1, Ordering::Relaxed);
        self.bytes_added.fetch_add(data.len() as u64, Ordering::Relaxed);
        for frame in frames.push(id, data).map_err(compress_error)? {
            self.send(frame)?;
        }
        Ok(true)
    }

    /// Stores a frame as it is, already compressed (prune copying a frame
    /// whose blobs are all still used); its blobs count as added.
    pub fn add_frame(&self, frame: CompressedFrame) -> Result<(), RepoError> {
        {
            let mut added = self.added.lock().unwrap_or_else(|e| e.into_inner());
            added.extend(frame.blobs.iter().map(|b| b.id));
        }
        self.blobs_added
            .fetch_add(frame.blobs.len() as u64, Ordering::Relaxed);
        self.bytes_added.fetch_add(frame.payload, Ordering::Relaxed);
        self.send(frame)
    }

    /// Sends a worker's partial frame on; call when the worker is done.
    pub fn flush(&self, frames: &mut FrameBuilder) -> Result<(), RepoError> {
        if !frames.is_empty() {
            let frame = frames.finish().map_err(compress_error)?;
            self.send(frame)?;
        }
        Ok(())
    }

    fn send(&self, frame: CompressedFrame) -> Result<(), RepoError> {
        self.frames.send(frame).map_err(|_| RepoError::WriterStopped)
    }
}

fn compress_error(source: std::io::Error) -> RepoError {
    RepoError::Compress {
        what: "a frame",
        source,
    }
}

impl PackWriter {
    /// Runs until every [`Packer`] clone is dropped, then writes the last pack
    /// and index file. Packs go to the store with as many uploads at once as
    /// it asks for ([`crate::sink::Capabilities::concurrency`]); a pack enters
    /// an index file only after the store confirmed it.
    pub fn run(self) -> Result<PackWriterStats, RepoError> {
        let uploads = self.repo.sink().capabilities().concurrency.clamp(1, 64);
        let mut stats = PackWriterStats::default();
        let mut pending = IndexFile::default();
        let result = if uploads == 1 {
            self.pack_frames(&mut |pack| self.upload(pack), &mut pending, &mut stats)
        } else {
            self.run_uploaders(uploads, &mut pending, &mut stats)
        };
        // What was uploaded stays usable by the next backup, even after an
        // error: index it.
        let indexed = match pending.packs.is_empty() {
            true => Ok(()),
            false => self.write_index(std::mem::take(&mut pending), &mut stats),
        };
        result?;
        indexed?;
        Ok(stats)
    }

    /// Assembles frames into packs and hands each full pack to `upload`,
    /// which returns the packs confirmed since the last call.
    fn pack_frames(
        &self,
        upload: &mut dyn FnMut(Finished) -> Result<Vec<Uploaded>, RepoError>,
        pending: &mut IndexFile,
        stats: &mut PackWriterStats,
    ) -> Result<(), RepoError> {
        let target = self.repo.config().pack_target as usize;
        // Room for the target plus the frame that crosses it.
        let capacity = target + 2 * self.repo.config().frame_target as usize;
        let mut pack = PackBuilder::with_capacity(capacity, self.repo.crypto());
        for frame in self.frames.iter() {
            pack.push(frame);
            if pack.len() >= target {
                let full = std::mem::replace(
                    &mut pack,
                    PackBuilder::with_capacity(capacity, self.repo.crypto()),
                );
                let done = upload(self.finish(full)?)?;
                self.confirmed(done, pending, stats)?;
            }
        }
        if !pack.is_empty() {
            let done = upload(self.finish(pack)?)?;
            self.confirmed(done, pending, stats)?;
        }
        Ok(())
    }

    /// `uploads` threads sending packs while this one assembles the next:
    /// at most `uploads` packs in flight, none waiting, which bounds memory.
    fn run_uploaders(
        &self,
        uploads: usize,
        pending: &mut IndexFile,
        stats: &mut PackWriterStats,
    ) -> Result<(), RepoError> {
        let (jobs_tx, jobs) = bounded::<Finished>(0);
        let (done_tx, done) = crossbeam_channel::unbounded::<Result<Uploaded, RepoError>>();
        std::thread::scope(|scope| {
            for _ in 0..uploads {
                let (jobs, done_tx) = (jobs.clone(), done_tx.clone());
                scope.spawn(move || {
                    for pack in jobs.iter() {
                        let result = self.upload(pack).map(|mut v| v.remove(0));
                        if done_tx.send(result).is_err() {
                            break;
                        }
                    }
                });
            }
            drop(done_tx);
            let drain = |block: bool| -> Result<Vec<Uploaded>, RepoError> {
                let mut out = Vec::new();
                let mut next = |r: Result<Uploaded, RepoError>| r.map(|u| out.push(u));
                if block {
                    for r in done.iter() {
                        next(r)?;
                    }
                } else {
                    for r in done.try_iter() {
                        next(r)?;
                    }
                }
                Ok(out)
            };
            let mut send = |pack: Finished| -> Result<Vec<Uploaded>, RepoError> {
                let confirmed = drain(false)?;
                jobs_tx.send(pack).map_err(|_| RepoError::WriterStopped)?;
                Ok(confirmed)
            };
            let packed = self.pack_frames(&mut send, pending, stats);
            drop(jobs_tx);
            // Every upload started ends before the index is written.
            let rest = drain(true);
            packed?;
            self.confirmed(rest?, pending, stats)
        })
    }

    fn finish(&self, pack: PackBuilder) -> Result<Finished, RepoError> {
        let (id, bytes, blobs) = pack.finish().map_err(compress_error)?;
        self.check_room(bytes.len() as u64)?;
        Ok(Finished { id, bytes, blobs })
    }

    /// Writes one pack; its confirmation, as a list for [`Self::pack_frames`].
    fn upload(&self, pack: Finished) -> Result<Vec<Uploaded>, RepoError> {
        let len = pack.bytes.len() as u64;
        self.repo
            .write_content_named(ObjectKind::Pack, pack.id, pack.bytes)?;
        tracing::debug!("wrote pack {} ({len} bytes, {} blobs)", pack.id, pack.blobs.len());
        Ok(vec![Uploaded {
            pack: IndexPack {
                id: pack.id,
                blobs: pack.blobs,
            },
            len,
        }])
    }

    /// Puts confirmed packs in the pending index file, writing it out when
    /// it is full.
    fn confirmed(
        &self,
        done: Vec<Uploaded>,
        pending: &mut IndexFile,
        stats: &mut PackWriterStats,
    ) -> Result<(), RepoError> {
        for up in done {
            stats.packs += 1;
            stats.bytes_stored += up.len;
            stats.pack_ids.push(up.pack.id);
            pending.packs.push(up.pack);
            let blobs: usize = pending.packs.iter().map(|p| p.blobs.len()).sum();
            if pending.packs.len() >= PACKS_PER_INDEX || blobs >= BLOBS_PER_INDEX {
                self.write_index(std::mem::take(pending), stats)?;
            }
        }
        Ok(())
    }

    /// Stops before a pack that would leave the disk with less than the room
    /// the index files and the snapshot record still need.
    fn check_room(&self, pack_len: u64) -> Result<(), RepoError> {
        const RESERVE: u64 = 1 << 20;
        let sink = self.repo.sink();
        match sink.free_space() {
            Some(free) if free < pack_len.saturating_add(RESERVE) => Err(RepoError::NoSpace {
                location: sink.location(),
                free: indicatif::HumanBytes(free).to_string(),
                needed: indicatif::HumanBytes(pack_len.saturating_add(RESERVE)).to_string(),
            }),
            _ => Ok(()),
        }
    }

    fn write_index(&self, file: IndexFile, stats: &mut PackWriterStats) -> Result<(), RepoError> {
        let id = self.repo.write_index_file(&file)?;
        tracing::debug!("wrote index {id} ({} packs)", file.packs.len());
        stats.index_files += 1;
        stats.index_ids.push(id);
        Ok(())
    }
}
