//! Fetching ahead, for a store reached over a network: each worker that
//! writes files has a fetcher in front of it that reads the compressed
//! frames of the worker's next batch while the worker decodes and writes
//! the current one, so the round trips overlap with the CPU's work.
//!
//! A file's frames are fixed by the index, and each frame belongs to one
//! worker (see `apply::Batches`), so a fetcher knows what its worker will
//! ask for. What it could not fetch, the worker reads itself, and reports.

use std::collections::VecDeque;

use crossbeam_channel::{Receiver, Sender};

use super::write::FileJob;
use crate::interrupt;
use crate::repo::id::ObjectId;
use crate::repo::index::Index;
use crate::repo::reader::Preloaded;
use crate::repo::Repository;
use crate::sink::ObjectKind;

/// Compressed frames by pack and frame offset.
pub type Frames = Vec<((ObjectId, u64), Vec<u8>)>;

/// Compressed bytes fetched ahead per batch, at most: a batch holding one
/// large file reads the rest of it on demand.
const AHEAD_BYTES: u64 = 8 << 20;
/// Frames sent recently, which the worker still has decoded (its reader
/// keeps four): not fetched again.
const RECENT: usize = 4;

/// Starts a fetcher (a thread named `cairn-fetch`) in front of `worker`;
/// returns where its batches go, or `None` when no thread could be started
/// (the worker then reads for itself).
pub fn spawn<'scope>(
    scope: &'scope std::thread::Scope<'scope, '_>,
    repo: &'scope Repository,
    index: &'scope Index,
    preloaded: &'scope Preloaded,
    worker: Sender<(Vec<FileJob>, Frames)>,
) -> Option<Sender<Vec<FileJob>>> {
    let (tx, rx) = crossbeam_channel::bounded(2);
    std::thread::Builder::new()
        .name("cairn-fetch".into())
        .spawn_scoped(scope, move || fetch_ahead(repo, index, preloaded, rx, worker))
        .ok()?;
    Some(tx)
}

/// Reads each batch's frames, then hands batch and frames to the worker.
/// Stops when either side hangs up, or on an interrupt.
fn fetch_ahead(
    repo: &Repository,
    index: &Index,
    preloaded: &Preloaded,
    batches: Receiver<Vec<FileJob>>,
    worker: Sender<(Vec<FileJob>, Frames)>,
) {
    let mut recent: VecDeque<(ObjectId, u64)> = VecDeque::with_capacity(RECENT + 1);
    for batch in batches {
        if interrupt::is_set() {
            return;
        }
        let frames = fetch(repo, index, preloaded, &batch, &mut recent);
        if worker.send((batch, frames)).is_err() {
            return;
        }
    }
}

/// The frames `batch` needs, in order, once each, up to [`AHEAD_BYTES`]:
/// none for blobs read ahead already.
fn fetch(
    repo: &Repository,
    index: &Index,
    preloaded: &Preloaded,
    batch: &[FileJob],
    recent: &mut VecDeque<(ObjectId, u64)>,
) -> Frames {
    let mut frames: Frames = Vec::new();
    let mut bytes = 0u64;
    let blobs = batch
        .iter()
        .flat_map(|job| job.entry.blobs.iter())
        .filter(|id| !preloaded.contains(id));
    for (pack, loc) in blobs.filter_map(|id| index.get(id)) {
        let key = (pack, loc.frame_offset);
        if recent.contains(&key) || frames.iter().any(|(k, _)| *k == key) {
            continue;
        }
        bytes = bytes.saturating_add(u64::from(loc.frame_length));
        if bytes > AHEAD_BYTES || interrupt::is_set() {
            break;
        }
        // A failed read is left to the worker, which reads again (through
        // the retries) and reports what fails.
        if let Ok(raw) = repo.sink().read_range(
            ObjectKind::Pack,
            &pack.to_hex(),
            loc.frame_offset,
            u64::from(loc.frame_length),
        ) {
            frames.push((key, raw));
        }
        recent.push_back(key);
        if recent.len() > RECENT {
            recent.pop_front();
        }
    }
    frames
}
