//! Safe restore: a snapshot rebuilt under a target directory, or written
//! back over the paths it came from (`inplace`).
//!
//! Both go the same way: the manifest and what is on disk are merged in
//! manifest order and every path is sorted into create, replace,
//! metadata-only, unchanged, or not in the snapshot (`plan`); then what
//! differs is written through directory descriptors, never through a path
//! that could have been swapped for a symlink (`apply`, `fsops`). Files go
//! to a temporary name (0600), are verified against their hash, and are
//! renamed into place, so a restore that stops half-way leaves no torn
//! file; directory metadata is set last, deepest first.

mod apply;
pub mod envscript;
mod fsops;
mod handles;
pub mod inplace;
mod journal;
pub mod plan;
mod prefetch;
mod write;

use std::ffi::OsString;
use std::io;
use std::path::{Path, PathBuf};

use serde::Serialize;

pub use self::apply::{apply, ApplyOptions};
use self::plan::{Action, Target, Visit};
use crate::collect::tree::{Excludes, PatternError};
use crate::meta::bytes_to_path;
use crate::progress::Progress;
use crate::repo::index::Index;
pub(crate) use crate::repo::manifest::path_key;
use crate::repo::manifest::EntryKind;
use crate::repo::reader::Preloaded;
use crate::repo::snapshot::Snapshot;
use crate::repo::{RepoError, Repository};
use crate::select::Selection;

/// Paths listed in a plan (conflicts, extras), at most; the rest are counted.
const MAX_LISTED: usize = 1000;

#[derive(Debug, Clone, Default)]
pub struct RestoreOptions {
    pub target: PathBuf,
    /// Only entries matching one of these (or inside a matching directory).
    pub include: Vec<String>,
    /// Not entries matching one of these (nor what is inside them).
    pub exclude: Vec<String>,
    /// Write over files in the target that differ from the snapshot.
    pub overwrite: bool,
    /// Remove what is in the target's roots but not in the snapshot.
    pub delete: bool,
    /// Compare files by content hash, not size and mtime.
    pub checksum: bool,
    /// Restore what is undamaged when some files' data is lost, instead of
    /// refusing before writing anything.
    pub ignore_damaged: bool,
}

#[derive(Debug, Default, Clone, Serialize)]
pub struct RestoreSummary {
    /// Files written (created or replaced).
    pub files: u64,
    /// Directories whose metadata was set (created or changed).
    pub dirs: u64,
    pub links: u64,
    pub other: u64,
    /// Bytes of the files written.
    pub bytes: u64,
    /// Entries whose content was right and whose metadata was set.
    pub metadata: u64,
    /// Entries already as in the snapshot: not touched.
    pub unchanged: u64,
    /// Entries removed because the snapshot does not have them.
    pub deleted: u64,
    /// On disk under the roots, not in the snapshot, and left there.
    pub left_count: u64,
    pub left: Vec<String>,
    /// Entries that could not be restored, each with the reason.
    pub errors: Vec<String>,
    /// Files not restored because the repository lost their data (a blob
    /// in no index, or in a pack that is missing or damaged), each with
    /// the reason: left out with `--ignore-damaged`.
    pub lost: Vec<String>,
    /// Entries restored without some metadata (owner, extended attributes).
    pub warnings: Vec<String>,
    /// The files written, for reading them back (`--verify`).
    #[serde(skip)]
    pub written: Vec<Written>,
}

/// A file a restore wrote, and what it must hold.
#[derive(Debug, Clone)]
pub struct Written {
    pub root: usize,
    pub path: Vec<u8>,
    pub size: u64,
    pub hash: Option<crate::repo::manifest::ContentId>,
}

/// What a restore would do to one root.
#[derive(Debug, Default, Clone, Serialize)]
pub struct RootPlan {
    pub prefix: String,
    /// Where the root is written.
    pub path: String,
    pub create: u64,
    pub create_bytes: u64,
    pub overwrite: u64,
    pub overwrite_bytes: u64,
    pub metadata: u64,
    pub unchanged: u64,
    /// Not in the snapshot: removed with `--delete`, else left.
    pub extra: u64,
    pub extra_bytes: u64,
}

/// A whole restore's plan.
#[derive(Debug, Default, Clone, Serialize)]
pub struct PlanReport {
    pub roots: Vec<RootPlan>,
    /// Paths whose current content a restore would replace (lost without
    /// a safety snapshot).
    pub conflicts: Vec<String>,
    pub conflict_count: u64,
    /// Paths on disk that the snapshot does not have.
    pub extras: Vec<String>,
    pub unreadable: Vec<String>,
    /// Files the restore would write whose data the repository has lost
    /// (a blob in no index): how many, and the first of them.
    pub lost_count: u64,
    pub lost: Vec<String>,
    /// What the writer must look at again, when few enough to keep (see
    /// `plan::Changes`): it then visits only these, not the whole tree.
    #[serde(skip)]
    pub items: Option<Vec<plan::PlanItem>>,
}

impl PlanReport {
    /// Whether writing the plan would change anything on disk.
    pub fn changes_anything(&self, delete: bool) -> bool {
        self.roots
            .iter()
            .any(|r| r.create + r.overwrite + r.metadata > 0 || (delete && r.extra > 0))
    }

    /// Counts one sorted entry of root `root`.
    fn count(
        &mut self,
        root: usize,
        entry: &crate::repo::manifest::Entry,
        action: Action,
        dest: &dyn Fn() -> PathBuf,
    ) {
        let r = &mut self.roots[root];
        let bytes = if entry.kind == EntryKind::File {
            entry.size
        } else {
            0
        };
        match action {
            Action::Create => (r.create, r.create_bytes) = (r.create + 1, r.create_bytes + bytes),
            Action::Replace => {
                (r.overwrite, r.overwrite_bytes) = (r.overwrite + 1, r.overwrite_bytes + bytes);
                self.conflict_count += 1;
                if self.conflicts.len() < MAX_LISTED {
                    self.conflicts.push(dest().display().to_string());
                }
            }
            Action::Metadata => r.metadata += 1,
            Action::Unchanged => r.unchanged += 1,
        }
    }

    /// Bytes the plan writes.
    pub fn bytes(&self) -> u64 {
        self.roots
            .iter()
            .map(|r| r.create_bytes + r.overwrite_bytes)
            .sum()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RestoreError {
    #[error(transparent)]
    Repo(#[from] RepoError),
    #[error(transparent)]
    Pattern(#[from] PatternError),
    #[error("cannot create restore target {path}")]
    Target {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("cannot write {path}")]
    Write {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("restored contents differ from the snapshot ({detail}); the file was not put in place")]
    Mismatch { detail: String },
    #[error("the restore would overwrite {count} path(s) in {target} that differ from the snapshot: {listed}; nothing was written (give --overwrite to write over them, or use --in-place, which keeps a safety snapshot)")]
    WouldOverwrite {
        target: PathBuf,
        count: u64,
        listed: String,
    },
    #[error("internal error: a restore worker stopped")]
    WorkerPanicked,
    #[error("the repository has lost the data of {count} file(s) this restore needs: {listed}; nothing was written (`cairn check` says what is damaged; give --ignore-damaged to restore everything else)")]
    Damaged { count: u64, listed: String },
}

/// Up to 20 of `paths`, then how many more: for one line of an error.
fn listing(paths: &[String], count: u64) -> String {
    let mut listed = paths.iter().take(20).cloned().collect::<Vec<_>>().join(", ");
    if count > 20 {
        listed.push_str(&format!(" and {} more", count - 20));
    }
    listed
}

/// Whether an error reading a file's data means the repository lost it
/// (what `--ignore-damaged` restores without), not that writing failed.
pub(crate) fn is_lost_data(e: &RestoreError) -> bool {
    match e {
        RestoreError::Repo(e) => match e {
            RepoError::MissingBlob(_) | RepoError::Pack { .. } | RepoError::Corrupt { .. } => true,
            RepoError::Sink(e) => e.is_not_found(),
            _ => false,
        },
        RestoreError::Mismatch { .. } => true,
        _ => false,
    }
}

/// The first blob of a file entry that no index lists.
pub(crate) fn missing_blob(
    index: &Index,
    entry: &crate::repo::manifest::Entry,
) -> Option<crate::repo::id::ObjectId> {
    if entry.kind != EntryKind::File {
        return None;
    }
    entry.blobs.iter().find(|b| !index.contains(b)).copied()
}

/// The selected files of `snapshot` whose data is in no index: how many,
/// and the first [`MAX_LISTED`] (paths as in the manifest).
fn lost_files(
    repo: &Repository,
    index: &Index,
    snapshot: &Snapshot,
    selection: &Selection,
) -> Result<(u64, Vec<String>), RepoError> {
    let (mut count, mut listed) = (0u64, Vec::new());
    let mut reader = crate::repo::reader::BlobReader::new(repo, index);
    for entry in reader.manifest(&snapshot.id.short(), &snapshot.record.manifest) {
        let entry = entry?;
        if missing_blob(index, &entry).is_some() && selection.matches(entry.path.as_bytes()) {
            count += 1;
            if listed.len() < MAX_LISTED {
                listed.push(entry.path.lossy());
            }
        }
    }
    Ok((count, listed))
}

/// Refuses a restore that would leave out files whose data is lost, unless
/// told to restore the rest.
pub(crate) fn refuse_lost(count: u64, listed: &[String], ignore_damaged: bool) -> Result<(), RestoreError> {
    if count == 0 || ignore_damaged {
        return Ok(());
    }
    Err(RestoreError::Damaged {
        count,
        listed: listing(listed, count),
    })
}

/// Each root of the snapshot at `DIR/<prefix>`.
fn targets_under(dir: &Path, snapshot: &Snapshot) -> Vec<Target> {
    snapshot
        .record
        .roots
        .iter()
        .map(|r| {
            let lead: Vec<OsString> = r
                .prefix
                .split('/')
                .filter(|c| !c.is_empty())
                .map(|c| bytes_to_path(c.as_bytes()).into_os_string())
                .collect();
            Target::new(r.prefix.clone(), dir.to_path_buf(), lead, Excludes::default())
        })
        .collect()
}

/// Rebuilds `snapshot` under `opts.target`. What is already there and the
/// same is left alone; what differs is only written over with
/// `opts.overwrite` (else the restore refuses before writing anything).
pub fn restore(
    repo: &Repository,
    index: &Index,
    snapshot: &Snapshot,
    opts: &RestoreOptions,
    progress: &Progress,
) -> Result<RestoreSummary, RestoreError> {
    let target_err = |source| RestoreError::Target {
        path: opts.target.clone(),
        source,
    };
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode_private()
        .create(&opts.target)
        .map_err(target_err)?;
    let target = std::fs::canonicalize(&opts.target).map_err(target_err)?;
    let targets = targets_under(&target, snapshot);
    let prefixes = snapshot.record.roots.iter().map(|r| r.prefix.clone()).collect();
    let selection = Selection::new(&opts.include, &opts.exclude, prefixes)?;
    // Into a fresh place nothing can be in the way: no plan needed.
    let fresh = targets
        .iter()
        .all(|t| std::fs::symlink_metadata(&t.dest).is_err());
    let report = if fresh {
        PlanReport::default()
    } else {
        plan(repo, index, snapshot, &targets, &selection, opts.checksum)?
    };
    if !opts.overwrite && report.conflict_count > 0 {
        return Err(RestoreError::WouldOverwrite {
            target,
            count: report.conflict_count,
            listed: listing(&report.conflicts, report.conflict_count),
        });
    }
    if fresh {
        // Unplanned: the manifest is read once more, for blobs only.
        let (count, listed) = lost_files(repo, index, snapshot, &selection)?;
        refuse_lost(count, &listed, opts.ignore_damaged)?;
    } else {
        refuse_lost(report.lost_count, &report.lost, opts.ignore_damaged)?;
    }
    let total = if fresh && selection.is_everything() {
        snapshot.record.stats.bytes
    } else {
        report.bytes()
    };
    progress.set_total(total);
    let apply = ApplyOptions {
        delete: opts.delete,
        checksum: opts.checksum,
        fsync: false,
        sparse: !fresh && is_sparse(&report, snapshot),
    };
    let none = Preloaded::default();
    apply::apply(
        repo, index, snapshot, &targets, &selection, None, apply, &none, progress,
    )
}

/// Whether a plan writes little enough of the snapshot (under a quarter of
/// its bytes) for frames to be read sparsely.
fn is_sparse(report: &PlanReport, snapshot: &Snapshot) -> bool {
    report.bytes().saturating_mul(4) < snapshot.record.stats.bytes
}

/// Private directories until their metadata is set: `DirBuilder` with 0700.
trait PrivateDirs {
    fn mode_private(&mut self) -> &mut Self;
}

impl PrivateDirs for std::fs::DirBuilder {
    fn mode_private(&mut self) -> &mut Self {
        #[cfg(unix)]
        std::os::unix::fs::DirBuilderExt::mode(self, 0o700);
        self
    }
}

/// Compares the snapshot with the disk and says what a restore would do;
/// changes nothing.
pub fn plan(
    repo: &Repository,
    index: &Index,
    snapshot: &Snapshot,
    targets: &[Target],
    selection: &Selection,
    checksum: bool,
) -> Result<PlanReport, RestoreError> {
    plan_items(repo, index, snapshot, targets, selection, checksum, false, None)
}

/// [`plan`], keeping (with `keep`) the entries and extra paths that the
/// writer must visit, with the directories above them, and (with `tape`)
/// everything the walk found.
// The plan's inputs, and what it keeps: each is needed.
#[allow(clippy::too_many_arguments)]
pub fn plan_items(
    repo: &Repository,
    index: &Index,
    snapshot: &Snapshot,
    targets: &[Target],
    selection: &Selection,
    checksum: bool,
    keep: bool,
    tape: Option<&mut plan::Tape>,
) -> Result<PlanReport, RestoreError> {
    let mut changes = plan::Changes::new(keep);
    let mut report = PlanReport {
        roots: targets
            .iter()
            .map(|t| RootPlan {
                prefix: t.prefix.clone(),
                path: t.dest.display().to_string(),
                ..Default::default()
            })
            .collect(),
        ..Default::default()
    };
    plan::visit(
        repo,
        index,
        snapshot,
        targets,
        selection,
        checksum,
        tape,
        &mut |v| -> Result<(), RestoreError> {
            match v {
                Visit::Unchanged { root, .. } => report.roots[root].unchanged += 1,
                Visit::Entry {
                    root, entry, action, ..
                } => {
                    let dest = || targets[root].dest_of(entry.path.as_bytes());
                    match &action {
                        Ok(action) => report.count(root, &entry, *action, &dest),
                        Err(e) => report.unreadable.push(format!("{}: {e}", dest().display())),
                    }
                    let writes = matches!(action, Ok(Action::Create | Action::Replace));
                    if writes && missing_blob(index, &entry).is_some() {
                        report.lost_count += 1;
                        if report.lost.len() < MAX_LISTED {
                            report.lost.push(dest().display().to_string());
                        }
                    }
                    changes.entry(root, entry, action.ok());
                }
                Visit::Extra { root, path, stat } => {
                    changes.extra(root, &path);
                    let r = &mut report.roots[root];
                    r.extra += 1;
                    r.extra_bytes += if stat.is_file() { stat.size } else { 0 };
                    if report.extras.len() < MAX_LISTED {
                        report
                            .extras
                            .push(targets[root].dest_of(&path).display().to_string());
                    }
                }
                Visit::Unreadable { path, error } => {
                    report.unreadable.push(format!("{}: {error}", path.display()))
                }
                Visit::Outside { path } => report.unreadable.push(format!(
                    "{}: lies outside every root of the snapshot",
                    String::from_utf8_lossy(&path)
                )),
            }
            Ok(())
        },
    )?;
    report.items = changes.into_items();
    // Roots not restored this time (and records) are not part of the plan.
    let mut selected = targets.iter().map(|t| t.selected);
    report.roots.retain(|_| selected.next().unwrap_or(false));
    Ok(report)
}
