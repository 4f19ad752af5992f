//! Files and special entries written at a temporary name and put in place,
//! and what the writer and its workers share: counts, what is in place, and
//! the files waiting to be synced and renamed.

use std::collections::HashSet;
use std::ffi::{OsStr, OsString};
use std::io::{self, Write};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use super::fsops::DirHandle;
use super::{path_key, RestoreError, RestoreSummary};
use crate::interrupt;
use crate::meta;
use crate::progress::Progress;
use crate::repo::manifest::{Entry, EntryKind};
use crate::repo::reader::{BlobReader, ContentCheck};
use crate::repo::RepoError;

/// A file for a worker to write.
pub(super) struct FileJob {
    pub(super) root: usize,
    pub(super) dir: Arc<DirHandle>,
    pub(super) name: OsString,
    pub(super) entry: Entry,
    /// Something is there now: sync before renaming over it.
    pub(super) replacing: bool,
}

/// Shared between the writer thread and the workers.
pub(super) struct Shared {
    pub(super) summary: Mutex<RestoreSummary>,
    /// Files in place (written, or found unchanged), as path keys: a hard
    /// link may only point at one of these.
    pub(super) present: Mutex<HashSet<u64>>,
    /// Files written at a temporary name, waiting to be synced and renamed.
    pub(super) pending: Mutex<Vec<Pending>>,
    /// Only the plan's items are visited: a file that is not among them was
    /// unchanged, so is in place unless it failed.
    pub(super) items_mode: bool,
    pub(super) failed: Mutex<HashSet<u64>>,
    /// Those of `failed` whose data the repository lost.
    pub(super) lost: Mutex<HashSet<u64>>,
}

/// A file written and verified at `tmp`, to be synced and renamed.
pub(super) struct Pending {
    job: FileJob,
    tmp: OsString,
    warnings: Vec<String>,
}

/// Files synced at once: one `syncfs` for the batch instead of an fsync
/// per file (which costs a disk flush each), and at most this many
/// directory handles held open meanwhile.
const SYNC_BATCH: usize = 256;

impl Shared {
    pub(super) fn summary(&self) -> std::sync::MutexGuard<'_, RestoreSummary> {
        self.summary.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Records that `what` could not be restored, with the error and its
    /// causes (a [`RestoreError`]'s message leaves its cause to `source()`).
    pub(super) fn fail(&self, what: &[u8], e: &dyn std::error::Error) {
        self.fail_with(what, &crate::chain(e));
    }

    pub(super) fn fail_with(&self, what: &[u8], message: &str) {
        self.mark_failed(what);
        self.summary()
            .errors
            .push(format!("{}: {message}", String::from_utf8_lossy(what)));
    }

    /// Records that `what` was not restored because the repository lost
    /// its data.
    pub(super) fn lose(&self, what: &[u8], message: &str) {
        self.mark_failed(what);
        self.lost
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(path_key(what));
        self.summary()
            .lost
            .push(format!("{}: {message}", String::from_utf8_lossy(what)));
    }

    /// `what` is not in place as the snapshot has it.
    fn mark_failed(&self, what: &[u8]) {
        self.failed
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(path_key(what));
    }

    pub(super) fn warn(&self, what: &[u8], warnings: Vec<String>) {
        if !warnings.is_empty() {
            let path = String::from_utf8_lossy(what);
            self.summary()
                .warnings
                .extend(warnings.into_iter().map(|w| format!("{path}: {w}")));
        }
    }

    pub(super) fn present(&self, path: &[u8]) {
        self.present
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(path_key(path));
    }
}

impl Shared {
    /// Counts a file written, or queues it for `commit` (committing a full
    /// batch on this thread).
    pub(super) fn written_or_pending(
        &self,
        job: FileJob,
        result: Result<(Vec<String>, Option<OsString>), RestoreError>,
        progress: &Progress,
    ) {
        match result {
            Ok((warnings, Some(tmp))) => {
                let full = {
                    let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
                    pending.push(Pending { job, tmp, warnings });
                    pending.len() >= SYNC_BATCH
                };
                if full {
                    self.commit(progress);
                }
            }
            Ok((warnings, None)) => self.file_written(job.root, &job.entry, Ok(warnings), progress),
            Err(e) => self.file_written(job.root, &job.entry, Err(e), progress),
        }
    }

    pub(super) fn discard_pending(&self) {
        for p in std::mem::take(&mut *self.pending.lock().unwrap_or_else(|e| e.into_inner())) {
            let _ = p.job.dir.unlink(&p.tmp);
        }
    }

    /// Makes the pending files durable, then renames each into place: a
    /// crash leaves every file old or new, and the new one complete.
    pub(super) fn commit(&self, progress: &Progress) {
        let batch = std::mem::take(&mut *self.pending.lock().unwrap_or_else(|e| e.into_inner()));
        if batch.is_empty() {
            return;
        }
        let failed = sync_batch(&batch);
        for p in batch {
            let result = match &failed {
                Some(e) => Err(io::Error::new(e.kind(), format!("cannot sync: {e}"))),
                None => p.job.dir.rename(&p.tmp, &p.job.name),
            };
            match result {
                Ok(()) => self.file_written(p.job.root, &p.job.entry, Ok(p.warnings), progress),
                Err(source) => {
                    let _ = p.job.dir.unlink(&p.tmp);
                    let e = RestoreError::Write {
                        path: PathBuf::from(&p.job.name),
                        source,
                    };
                    self.file_written(p.job.root, &p.job.entry, Err(e), progress);
                }
            }
        }
    }

    pub(super) fn file_written(
        &self,
        root: usize,
        entry: &Entry,
        result: Result<Vec<String>, RestoreError>,
        progress: &Progress,
    ) {
        match result {
            Ok(warnings) => {
                self.warn(entry.path.as_bytes(), warnings);
                self.present(entry.path.as_bytes());
                let mut s = self.summary();
                s.files += 1;
                s.bytes += entry.size;
                s.written.push(super::Written {
                    root,
                    path: entry.path.as_bytes().to_vec(),
                    size: entry.size,
                    hash: entry.content_id(),
                });
                progress.file_done();
            }
            Err(e) if super::is_lost_data(&e) => self.lose(entry.path.as_bytes(), &crate::chain(&e)),
            Err(e) => self.fail(entry.path.as_bytes(), &e),
        }
    }
}

impl Shared {
    pub(super) fn special_written(&self, entry: &Entry, result: io::Result<Vec<String>>) {
        match result {
            Ok(warnings) => {
                self.warn(entry.path.as_bytes(), warnings);
                let mut s = self.summary();
                if entry.kind == EntryKind::Symlink {
                    s.links += 1;
                } else {
                    s.other += 1;
                }
            }
            Err(e) => self.fail(entry.path.as_bytes(), &e),
        }
    }
}

/// Makes a batch durable before its renames. Linux: one syncfs covers a
/// root's whole filesystem. Elsewhere each file was already fsynced through
/// its handle before it was closed (`write_file`).
fn sync_batch(batch: &[Pending]) -> Option<io::Error> {
    let mut failed = None;
    #[cfg(any(target_os = "linux", target_os = "android"))]
    {
        let mut synced_roots = HashSet::new();
        for p in batch {
            if synced_roots.insert(p.job.root) {
                if let Err(e) = p.job.dir.sync_filesystem() {
                    failed = Some(e);
                }
            }
        }
    }
    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    let _ = (batch, &mut failed);
    failed
}

/// Writes one file at a temporary name (0600), verifies it against the
/// manifest, applies its metadata through the handle, and renames it into
/// place, or, when it must be durable first (it replaces something, or the
/// restore is in place), leaves the rename to `Shared::commit`.
/// Returns the warnings, and the temporary name when the file still has to
/// be synced and renamed.
pub(super) fn write_file(
    reader: &mut BlobReader,
    job: &FileJob,
    fsync: bool,
    progress: &Progress,
) -> Result<(Vec<String>, Option<OsString>), RestoreError> {
    let (dir, entry) = (&job.dir, &job.entry);
    let (tmp, mut file) = dir.create_temp(&job.name).map_err(|source| RestoreError::Write {
        path: PathBuf::from(&job.name),
        source,
    })?;
    let io_err = |source: io::Error| RestoreError::Write {
        path: PathBuf::from(&tmp),
        source,
    };
    let mut warnings = Vec::new();
    let result = (|| {
        let mut check = ContentCheck::new(entry);
        for id in &entry.blobs {
            if interrupt::is_set() {
                return Err(RepoError::Interrupted.into());
            }
            reader.read_with(id, |data| -> Result<(), RestoreError> {
                check.update(data);
                file.write_all(data).map_err(io_err)?;
                progress.add(data.len() as u64);
                Ok(())
            })??;
        }
        if let Some(detail) = check.mismatch(entry, reader.crypto()) {
            return Err(RestoreError::Mismatch { detail });
        }
        meta::apply_metadata_to_file(&file, entry, &mut warnings).map_err(io_err)?;
        // Without syncfs, through the handle: Windows cannot flush a file
        // opened again read-only, nor open a read-only file for writing.
        #[cfg(not(any(target_os = "linux", target_os = "android")))]
        if fsync || job.replacing {
            file.sync_all().map_err(io_err)?;
        }
        drop(file);
        if fsync || job.replacing {
            // Synced in a batch, then renamed: see `Shared::commit`.
            return Ok(Some(tmp.clone()));
        }
        dir.rename(&tmp, &job.name)
            .map_err(|source| RestoreError::Write {
                path: PathBuf::from(&job.name),
                source,
            })?;
        Ok(None)
    })();
    if result.is_err() {
        let _ = dir.unlink(&tmp);
    }
    result.map(|pending| (warnings, pending))
}

/// Makes a symlink, fifo or device node at a temporary name (never opening
/// it), sets its metadata without following it, and renames it into place.
pub(super) fn write_special(dir: &DirHandle, name: &OsStr, entry: &Entry) -> io::Result<Vec<String>> {
    let tmp = match entry.kind {
        EntryKind::Symlink => {
            let target = entry.target.as_ref().map(|t| t.as_bytes()).unwrap_or_default();
            dir.symlink_temp(target, name)?
        }
        kind => dir.mknod_temp(kind, entry.rdev, name)?,
    };
    let mut warnings = Vec::new();
    let result = dir
        .set_meta_nofollow(&tmp, entry, &mut warnings)
        .and_then(|()| dir.rename(&tmp, name));
    if result.is_err() {
        let _ = dir.unlink(&tmp);
    }
    result.map(|()| warnings)
}
