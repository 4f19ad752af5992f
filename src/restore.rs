//! Safe restore: rebuilds a snapshot under a target directory.
//!
//! Rules (see `docs/FORMAT.md`): manifest paths are relative with no `..`
//! (the manifest parser refuses others); no path is written through a
//! symlink, whether restored or already in the target; files are written to a
//! temporary name, verified against their hash, then renamed into place, so a
//! restore that stops half-way leaves no torn file. Directory metadata is set
//! last, deepest first, so read-only directories can still be filled.

use std::collections::HashSet;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use crossbeam_channel::bounded;
use globset::GlobSet;

use crate::collect::tree::{glob, PatternError};
use crate::interrupt;
use crate::meta::{self, bytes_to_path};
use crate::progress::Progress;
use crate::repo::id::ObjectId;
use crate::repo::index::Index;
use crate::repo::manifest::{Entry, EntryKind};
use crate::repo::reader::BlobReader;
use crate::repo::snapshot::Snapshot;
use crate::repo::{RepoError, Repository};
use crate::sink::local::random_u64;

/// Files handed to a worker at once: consecutive files share frames, so
/// keeping them together lets the worker's frame cache serve them.
const BATCH_BYTES: u64 = 4 << 20;
const BATCH_FILES: usize = 64;

#[derive(Debug, Clone, Default)]
pub struct RestoreOptions {
    pub target: PathBuf,
    /// Only entries matching one of these (or inside a matching directory).
    pub include: Vec<String>,
}

#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct RestoreSummary {
    pub files: u64,
    pub dirs: u64,
    pub links: u64,
    pub other: u64,
    pub bytes: u64,
    /// Entries that could not be restored, each with the reason.
    pub errors: Vec<String>,
    /// Entries restored without some metadata (owner, extended attributes).
    pub warnings: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum RestoreError {
    #[error(transparent)]
    Repo(#[from] RepoError),
    #[error(transparent)]
    Pattern(#[from] PatternError),
    #[error("cannot create restore target {path}: {source}")]
    Target {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("restored contents differ from the snapshot ({detail}); the file was not put in place")]
    Mismatch { detail: String },
    #[error("internal error: a restore worker stopped")]
    WorkerPanicked,
}

/// Include patterns, matched against the manifest path and against the path
/// inside its root (`src/**` matches `tree/project/src/main.rs`).
struct Includes {
    set: GlobSet,
    prefixes: Vec<String>,
}

impl Includes {
    fn new(patterns: &[String], prefixes: Vec<String>) -> Result<Option<Includes>, PatternError> {
        if patterns.is_empty() {
            return Ok(None);
        }
        let mut b = globset::GlobSetBuilder::new();
        for p in patterns {
            let p = p.trim_end_matches('/');
            b.add(glob(p)?);
        }
        let set = b.build().map_err(|source| PatternError {
            pattern: patterns.join(" "),
            source,
        })?;
        Ok(Some(Includes { set, prefixes }))
    }

    /// Whether the path or one of its ancestors matches.
    fn matches(&self, path: &[u8]) -> bool {
        let path = String::from_utf8_lossy(path);
        let mut candidates = vec![path.to_string()];
        for prefix in &self.prefixes {
            if let Some(rest) = path
                .strip_prefix(prefix.as_str())
                .and_then(|r| r.strip_prefix('/'))
            {
                candidates.push(rest.to_string());
            }
        }
        candidates.iter().any(|c| {
            let mut p = Path::new(c.as_str());
            loop {
                if self.set.is_match(p) {
                    return true;
                }
                match p.parent() {
                    Some(parent) if !parent.as_os_str().is_empty() => p = parent,
                    _ => return false,
                }
            }
        })
    }
}

/// Creates directories under the target, refusing to pass through anything
/// that is not a real directory (a symlink planted in the target or restored
/// from the snapshot).
struct SafeDirs {
    target: PathBuf,
    known: HashSet<PathBuf>,
}

impl SafeDirs {
    fn ensure(&mut self, rel: &Path) -> io::Result<PathBuf> {
        let mut at = self.target.clone();
        for c in rel.components() {
            at.push(c);
            if self.known.contains(&at) {
                continue;
            }
            match fs::symlink_metadata(&at) {
                Ok(m) if m.is_dir() => {}
                Ok(_) => {
                    return Err(io::Error::new(
                        io::ErrorKind::AlreadyExists,
                        format!(
                            "{} is in the way and is not a directory; not writing through it",
                            at.display()
                        ),
                    ))
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => fs::create_dir(&at)?,
                Err(e) => return Err(e),
            }
            self.known.insert(at.clone());
        }
        Ok(at)
    }

    /// The full path for an entry, after making sure its parent is safe.
    fn place(&mut self, entry_path: &[u8]) -> io::Result<PathBuf> {
        let rel = bytes_to_path(entry_path);
        let name = rel.file_name().map(|n| n.to_os_string()).unwrap_or_default();
        let parent = rel.parent().unwrap_or(Path::new(""));
        Ok(self.ensure(parent)?.join(name))
    }

    /// Forgets a path that is about to be replaced by something else.
    fn forget(&mut self, full: &Path) {
        self.known.remove(full);
    }
}

pub fn restore(
    repo: &Repository,
    index: &Index,
    snapshot: &Snapshot,
    opts: &RestoreOptions,
    progress: &Progress,
) -> Result<RestoreSummary, RestoreError> {
    fs::create_dir_all(&opts.target).map_err(|source| RestoreError::Target {
        path: opts.target.clone(),
        source,
    })?;
    let target = fs::canonicalize(&opts.target).map_err(|source| RestoreError::Target {
        path: opts.target.clone(),
        source,
    })?;
    let prefixes = snapshot.record.roots.iter().map(|r| r.prefix.clone()).collect();
    let includes = Includes::new(&opts.include, prefixes)?;
    let summary = Mutex::new(RestoreSummary::default());
    let fail = |what: &[u8], e: &dyn std::fmt::Display| {
        let mut s = summary.lock().unwrap_or_else(|e| e.into_inner());
        s.errors.push(format!("{}: {e}", String::from_utf8_lossy(what)));
    };
    let warn = |what: &[u8], warnings: Vec<String>| {
        if !warnings.is_empty() {
            let mut s = summary.lock().unwrap_or_else(|e| e.into_inner());
            let path = String::from_utf8_lossy(what);
            s.warnings
                .extend(warnings.into_iter().map(|w| format!("{path}: {w}")));
        }
    };
    let mut dirs = SafeDirs {
        target: target.clone(),
        known: HashSet::new(),
    };
    let mut dir_entries: Vec<(PathBuf, Entry)> = Vec::new();
    let mut hardlinks: Vec<(PathBuf, Entry)> = Vec::new();
    // Files written and verified (as path hashes, to keep memory small); a
    // hard link may only point at one of these.
    let written: Mutex<HashSet<u64>> = Mutex::new(HashSet::new());
    let short = snapshot.id.short();

    std::thread::scope(|s| -> Result<(), RestoreError> {
        let (tx, rx) = bounded::<Vec<(PathBuf, Entry)>>(4);
        let threads = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
        let workers: Vec<_> = (0..threads)
            .map(|_| {
                let rx = rx.clone();
                let (summary, fail, warn, written) = (&summary, &fail, &warn, &written);
                s.spawn(move || {
                    let mut reader = BlobReader::new(repo, index);
                    for batch in rx {
                        for (full, entry) in batch {
                            if interrupt::is_set() {
                                return;
                            }
                            match write_file(&mut reader, &full, &entry, progress) {
                                Ok(warnings) => {
                                    warn(entry.path.as_bytes(), warnings);
                                    written
                                        .lock()
                                        .unwrap_or_else(|e| e.into_inner())
                                        .insert(path_key(entry.path.as_bytes()));
                                    let mut s = summary.lock().unwrap_or_else(|e| e.into_inner());
                                    s.files += 1;
                                    s.bytes += entry.size;
                                    progress.file_done();
                                }
                                Err(e) => fail(entry.path.as_bytes(), &e),
                            }
                        }
                    }
                })
            })
            .collect();
        drop(rx);

        let mut batch: Vec<(PathBuf, Entry)> = Vec::new();
        let mut batch_bytes = 0;
        let mut reader = BlobReader::new(repo, index);
        let mut walk = || -> Result<(), RestoreError> {
            for entry in reader.manifest(&short, &snapshot.record.manifest) {
                let entry = entry?;
                if interrupt::is_set() {
                    return Err(RepoError::Interrupted.into());
                }
                if let Some(inc) = &includes {
                    if !inc.matches(entry.path.as_bytes()) {
                        continue;
                    }
                }
                let full = match dirs.place(entry.path.as_bytes()) {
                    Ok(full) => full,
                    Err(e) => {
                        fail(entry.path.as_bytes(), &e);
                        continue;
                    }
                };
                match entry.kind {
                    EntryKind::Dir => match dirs.ensure(&bytes_to_path(entry.path.as_bytes())) {
                        Ok(_) => dir_entries.push((full, entry)),
                        Err(e) => fail(entry.path.as_bytes(), &e),
                    },
                    EntryKind::File => {
                        dirs.forget(&full);
                        batch_bytes += entry.size;
                        batch.push((full, entry));
                        if batch_bytes >= BATCH_BYTES || batch.len() >= BATCH_FILES {
                            batch_bytes = 0;
                            if tx.send(std::mem::take(&mut batch)).is_err() {
                                break;
                            }
                        }
                    }
                    EntryKind::Hardlink => hardlinks.push((full, entry)),
                    _ => {
                        dirs.forget(&full);
                        match write_special(&full, &entry) {
                            Ok(warnings) => {
                                warn(entry.path.as_bytes(), warnings);
                                let mut s = summary.lock().unwrap_or_else(|e| e.into_inner());
                                if entry.kind == EntryKind::Symlink {
                                    s.links += 1;
                                } else {
                                    s.other += 1;
                                }
                            }
                            Err(e) => fail(entry.path.as_bytes(), &e),
                        }
                    }
                }
            }
            Ok(())
        };
        let walked = walk();
        if !batch.is_empty() {
            let _ = tx.send(batch);
        }
        drop(tx);
        let mut panicked = false;
        for w in workers {
            panicked |= w.join().is_err();
        }
        if panicked {
            return Err(RestoreError::WorkerPanicked);
        }
        walked
    })?;
    if interrupt::is_set() {
        return Err(RepoError::Interrupted.into());
    }

    // Hard links point at files restored above.
    let restored_files = written.into_inner().unwrap_or_else(|e| e.into_inner());
    for (full, entry) in hardlinks {
        let Some(target_path) = entry.target.as_ref() else {
            continue;
        };
        if !restored_files.contains(&path_key(target_path.as_bytes())) {
            fail(entry.path.as_bytes(), &"its first name was not restored");
            continue;
        }
        let result = dirs
            .place(target_path.as_bytes())
            .and_then(|first| replace_with(&full, |tmp| fs::hard_link(&first, tmp)).map_err(|e| e.into_io()));
        match result {
            Ok(()) => summary.lock().unwrap_or_else(|e| e.into_inner()).files += 1,
            Err(e) => fail(entry.path.as_bytes(), &e),
        }
    }
    for (full, entry) in dir_entries.iter().rev() {
        let mut warnings = Vec::new();
        match meta::apply_metadata(full, entry, &mut warnings) {
            Ok(()) => summary.lock().unwrap_or_else(|e| e.into_inner()).dirs += 1,
            Err(e) => fail(entry.path.as_bytes(), &e),
        }
        warn(entry.path.as_bytes(), warnings);
    }
    Ok(summary.into_inner().unwrap_or_else(|e| e.into_inner()))
}

/// A 64-bit digest of a manifest path; collisions are out of reach.
fn path_key(path: &[u8]) -> u64 {
    let hash = blake3::hash(path);
    let mut first = [0u8; 8];
    first.copy_from_slice(&hash.as_bytes()[..8]);
    u64::from_le_bytes(first)
}

/// A temporary name beside `full`, random so that no leftover of another
/// restore (or another process) can be in the way for long.
fn temp_beside(full: &Path) -> PathBuf {
    let name = full
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let short: String = name.chars().take(32).collect();
    full.with_file_name(format!(".{short}.cairn-{:016x}", random_u64()))
}

/// Why creating something under a temporary name failed, naming that name.
#[derive(Debug)]
struct TempError {
    tmp: PathBuf,
    source: io::Error,
}

impl TempError {
    fn into_io(self) -> io::Error {
        io::Error::new(
            self.source.kind(),
            format!("{}: {}", self.tmp.display(), self.source),
        )
    }
}

/// Runs `make` on a fresh temporary name beside `full`, trying another name
/// when one is taken; returns the name used.
fn make_temp<T>(
    full: &Path,
    mut make: impl FnMut(&Path) -> io::Result<T>,
) -> Result<(PathBuf, T), TempError> {
    let mut attempts = 0;
    loop {
        let tmp = temp_beside(full);
        match make(&tmp) {
            Ok(value) => return Ok((tmp, value)),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists && attempts < 8 => attempts += 1,
            Err(source) => return Err(TempError { tmp, source }),
        }
    }
}

/// Builds something at a temporary name, then renames it over `full`.
fn replace_with(full: &Path, make: impl FnMut(&Path) -> io::Result<()>) -> Result<(), TempError> {
    let (tmp, ()) = make_temp(full, make)?;
    fs::rename(&tmp, full).map_err(|source| {
        let _ = fs::remove_file(&tmp);
        TempError { tmp, source }
    })
}

/// Writes one file, verified, then renames it into place. Returns warnings
/// about metadata that could not be restored.
fn write_file(
    reader: &mut BlobReader,
    full: &Path,
    entry: &Entry,
    progress: &Progress,
) -> Result<Vec<String>, RestoreError> {
    let (tmp, mut file) = make_temp(full, |tmp| {
        OpenOptions::new().write(true).create_new(true).open(tmp)
    })
    .map_err(|e| RestoreError::Write {
        path: e.tmp,
        source: e.source,
    })?;
    let io_err = |e: io::Error| RestoreError::Write {
        path: tmp.clone(),
        source: e,
    };
    let mut warnings = Vec::new();
    let result = (|| {
        let mut hasher = blake3::Hasher::new();
        let mut written = 0u64;
        for id in &entry.blobs {
            let data = reader.read(id)?;
            written += data.len() as u64;
            hasher.update(&data);
            file.write_all(&data).map_err(io_err)?;
            progress.add(data.len() as u64);
        }
        let actual = ObjectId::from_hash(hasher.finalize());
        if written != entry.size || entry.content_hash().is_some_and(|h| h != actual) {
            return Err(RestoreError::Mismatch {
                detail: format!(
                    "{written} bytes hashing to {actual}, the manifest says {} bytes",
                    entry.size
                ),
            });
        }
        meta::apply_metadata_to_file(&file, entry, &mut warnings).map_err(io_err)?;
        drop(file);
        fs::rename(&tmp, full).map_err(|e| RestoreError::Write {
            path: full.to_path_buf(),
            source: e,
        })
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result.map(|()| warnings)
}

fn write_special(full: &Path, entry: &Entry) -> io::Result<Vec<String>> {
    let mut warnings = Vec::new();
    replace_with(full, |tmp| {
        match entry.kind {
            EntryKind::Symlink => {
                let target = entry
                    .target
                    .as_ref()
                    .map(|t| bytes_to_path(t.as_bytes()))
                    .unwrap_or_default();
                make_symlink(&target, tmp)?;
            }
            EntryKind::Fifo | EntryKind::Chardev | EntryKind::Blockdev => make_node(tmp, entry)?,
            _ => File::create_new(tmp).map(drop)?,
        }
        meta::apply_metadata(tmp, entry, &mut warnings)
    })
    .map_err(TempError::into_io)?;
    Ok(warnings)
}

#[cfg(unix)]
fn make_symlink(target: &Path, at: &Path) -> io::Result<()> {
    std::os::unix::fs::symlink(target, at)
}

#[cfg(windows)]
fn make_symlink(target: &Path, at: &Path) -> io::Result<()> {
    std::os::windows::fs::symlink_file(target, at)
}

#[cfg(unix)]
fn make_node(at: &Path, entry: &Entry) -> io::Result<()> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(at.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "path has a NUL byte"))?;
    let kind = match entry.kind {
        EntryKind::Fifo => libc::S_IFIFO,
        EntryKind::Chardev => libc::S_IFCHR,
        _ => libc::S_IFBLK,
    };
    // SAFETY: `c` is a valid NUL-terminated path for the call's duration.
    let rc = unsafe {
        libc::mknod(
            c.as_ptr(),
            kind | (entry.mode & 0o7777) as libc::mode_t,
            entry.rdev as libc::dev_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

#[cfg(not(unix))]
fn make_node(_at: &Path, _entry: &Entry) -> io::Result<()> {
    Err(io::Error::new(
        io::ErrorKind::Unsupported,
        "special files cannot be restored here",
    ))
}
