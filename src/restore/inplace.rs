//! Restore in place: a snapshot written back over the paths it came from,
//! as one transaction that can be undone.
//!
//! 1. Plan: the manifest against the live roots (nothing is written).
//! 2. Safety snapshot: the roots as they are now, tagged `pre-restore` and
//!    naming the restore it protects (`Rollback`), with the normal parent
//!    matching, so it costs about what an unchanged backup costs.
//! 3. Journal: the transaction, its safety snapshot and its state, in the
//!    user's state directory; a killed restore run again finishes under
//!    the same safety snapshot.
//! 4. Write what differs (`apply`), every file synced before its rename.
//! 5. Verify: the files written are read back and hashed.
//! 6. Health check: a command that must succeed.
//!
//! A failure in 4-6 puts the safety snapshot back the same way and says so.

use std::ffi::OsString;
use std::path::PathBuf;
use std::time::Duration;

use super::apply::{self, ApplyOptions};
use super::journal::{Journal, State};
use super::plan::{self, Target};
use super::{PlanReport, RestoreError, RestoreSummary};
use crate::backup::{self, BackupError, BackupOptions};
use crate::collect::tree::{Excludes, PatternError, TreeItem};
use crate::meta::bytes_to_path;
use crate::profile::resolve::RootSpec;
use crate::progress::Progress;
use crate::repo::id::ObjectId;
use crate::repo::index::Index;
use crate::repo::manifest::{path_cmp, RawLine};
use crate::repo::reader::{self, Preloaded};
use crate::repo::snapshot::{Rollback, Root, Snapshot};
use crate::repo::Repository;
use crate::select::Selection;

pub use crate::repo::snapshot::SAFETY_TAG;
#[derive(Debug, Clone, Default)]
pub struct InPlaceOptions {
    pub include: Vec<String>,
    pub exclude: Vec<String>,
    /// Only these roots (`tree/go` or `go`); all when empty.
    pub roots: Vec<String>,
    pub delete: bool,
    pub checksum: bool,
    pub dry_run: bool,
    pub safety_snapshot: bool,
    /// A snapshot already taken of how things are now, used as the safety
    /// snapshot instead of taking one (`cairn run`'s post snapshot).
    pub safety: Option<ObjectId>,
    /// Read back and hash every file written.
    pub verify: bool,
    /// A shell command that must succeed afterwards, and how long it may take.
    pub check: Option<String>,
    pub check_timeout: Duration,
    /// Paths never touched (the repository itself).
    pub skip: Vec<PathBuf>,
    /// Restore what is undamaged when some files' data is lost (those
    /// files stay as they are), instead of refusing.
    pub ignore_damaged: bool,
}

#[derive(Debug)]
pub enum Outcome {
    /// `--dry-run`: what would be done.
    Planned(PlanReport),
    /// Everything already is as in the snapshot.
    Nothing(PlanReport),
    Done {
        plan: PlanReport,
        summary: Box<RestoreSummary>,
        safety: Option<ObjectId>,
        /// The safety snapshot of an interrupted run of the same restore.
        resumed: bool,
    },
}

#[derive(Debug, thiserror::Error)]
pub enum InPlaceError {
    #[error(transparent)]
    Restore(#[from] RestoreError),
    #[error(transparent)]
    Pattern(#[from] PatternError),
    #[error("the safety snapshot could not be taken, so nothing was changed (--no-safety-snapshot restores without one, and without --undo)")]
    Safety(#[source] BackupError),
    #[error("snapshot {snapshot} has no roots that can be restored in place (environment and command outputs are records; see --env-script)")]
    NoRoots { snapshot: String },
    #[error("no root of snapshot {snapshot} is named {names}")]
    UnknownRoot { snapshot: String, names: String },
    #[error("cannot restore {path} in place: it has no parent directory")]
    NoParent { path: PathBuf },
    #[error("cannot write the restore journal")]
    Journal(#[source] std::io::Error),
    #[error("{what}; everything this restore changed was put back from safety snapshot {safety}")]
    RolledBack { what: String, safety: String },
    #[error("{what}, and putting back safety snapshot {safety} failed too ({rollback}); run `cairn restore --undo` to try again")]
    RollbackFailed {
        what: String,
        safety: String,
        rollback: String,
    },
    #[error("{what}; there is no safety snapshot (--no-safety-snapshot), so the changes stay")]
    Unprotected { what: String },
    #[error("there is no in-place restore to undo in this repository")]
    NothingToUndo,
}

/// Where each tree and files root of `snapshot` is on this machine, in
/// manifest order; env and command roots are records, not places.
pub fn targets(
    snapshot: &Snapshot,
    roots: &[Root],
    opts: &InPlaceOptions,
) -> Result<Vec<Target>, InPlaceError> {
    let mut out = Vec::new();
    for root in roots {
        if !crate::diff::is_path_root(root) {
            // A record, not a place: its entries are passed over.
            let mut record = Target::new(
                root.prefix.clone(),
                PathBuf::new(),
                Vec::new(),
                Excludes::default(),
            );
            record.selected = false;
            out.push(record);
            continue;
        }
        let path = bytes_to_path(root.path.as_bytes());
        let (Some(parent), Some(name)) = (path.parent(), path.file_name()) else {
            return Err(InPlaceError::NoParent { path });
        };
        let mut excludes = Excludes::new(&root.excludes)?;
        excludes.gitignore = root.gitignore;
        excludes.one_file_system = root.one_file_system;
        excludes.markers = root.exclude_if_present.iter().map(OsString::from).collect();
        for skip in &opts.skip {
            excludes.skip_absolute(skip.clone());
        }
        let mut target = Target::new(
            root.prefix.clone(),
            parent.to_path_buf(),
            vec![name.to_os_string()],
            excludes,
        );
        target.selected = opts.roots.is_empty()
            || opts
                .roots
                .iter()
                .any(|n| *n == root.prefix || root.prefix.rsplit('/').next() == Some(n.as_str()));
        out.push(target);
    }
    if !roots.iter().any(crate::diff::is_path_root) {
        return Err(InPlaceError::NoRoots {
            snapshot: snapshot.id.short(),
        });
    }
    if !out.iter().any(|t| t.selected) {
        return Err(InPlaceError::UnknownRoot {
            snapshot: snapshot.id.short(),
            names: opts.roots.join(", "),
        });
    }
    out.sort_by(|a, b| path_cmp(a.prefix.as_bytes(), b.prefix.as_bytes()));
    Ok(out)
}

/// The roots a snapshot writes back: its own, and for a safety snapshot
/// the roots its restore created, which undoing it removes.
fn roots_of(snapshot: &Snapshot) -> Vec<Root> {
    let mut roots = snapshot.record.roots.clone();
    if let Some(rb) = &snapshot.record.rollback {
        roots.extend(rb.absent.iter().cloned());
    }
    roots
}

/// Writes `snapshot` back in place (see the module docs).
pub fn restore_in_place(
    repo: &Repository,
    index: &Index,
    snapshot: &Snapshot,
    opts: &InPlaceOptions,
    progress: &Progress,
) -> Result<Outcome, InPlaceError> {
    let roots = roots_of(snapshot);
    let targets = targets(snapshot, &roots, opts)?;
    let prefixes = roots.iter().map(|r| r.prefix.clone()).collect();
    let selection = Selection::new(&opts.include, &opts.exclude, prefixes)?;
    let repo_id = repo.config().id.clone();
    let unfinished = (!opts.dry_run)
        .then(|| Journal::unfinished(&repo_id, snapshot.id))
        .flatten();
    let (mut report, tape) = plan_keeping_walk(
        repo,
        index,
        snapshot,
        &targets,
        &selection,
        opts,
        unfinished.is_some(),
    )?;
    tracing::debug!("plan done: {} bytes to write", report.bytes());
    if opts.dry_run {
        return Ok(Outcome::Planned(report));
    }
    if !report.changes_anything(opts.delete) && unfinished.is_none() {
        return Ok(Outcome::Nothing(report));
    }
    super::refuse_lost(report.lost_count, &report.lost, opts.ignore_damaged)?;
    crate::alloc::release();
    let resumed = unfinished.as_ref().is_some_and(|j| j.safety.is_some());
    let (journal, preloaded) = begin_reading_ahead(
        repo, index, snapshot, &roots, &targets, &report, tape, unfinished, opts,
    );
    let mut journal = journal?;
    progress.set_total(report.bytes());
    let apply_opts = ApplyOptions {
        delete: opts.delete,
        checksum: opts.checksum,
        fsync: true,
        sparse: super::is_sparse(&report, snapshot),
    };
    tracing::debug!("safety snapshot and journal done");
    let items = report.items.take();
    // Only the plan's items are visited: what it found unchanged is counted
    // from the plan.
    let planned_unchanged: u64 = report.roots.iter().map(|r| r.unchanged).sum();
    let summary = match apply::apply(
        repo, index, snapshot, &targets, &selection, items, apply_opts, &preloaded, progress,
    ) {
        // Stopped by the user: the journal stays open, so running the same
        // restore again finishes it, and --undo takes it back.
        Err(e @ RestoreError::Repo(crate::repo::RepoError::Interrupted)) => return Err(e.into()),
        Err(e) => Err(format!("writing failed: {}", crate::chain(&e))),
        Ok(mut summary) => {
            summary.unchanged = summary.unchanged.max(planned_unchanged);
            Ok(summary)
        }
    };
    let failure = judge(&summary, &targets, opts, repo.crypto());
    let summary = match (failure, summary) {
        (None, Ok(summary)) => summary,
        (Some(what), _) | (None, Err(what)) => return Err(roll_back(repo, &mut journal, what, progress)),
    };
    journal.state = State::Done;
    journal.save().map_err(InPlaceError::Journal)?;
    Ok(Outcome::Done {
        plan: report,
        summary: Box::new(summary),
        safety: journal.safety,
        resumed,
    })
}

/// File contents a small in-place restore reads into memory while it takes
/// its safety snapshot, at most: decoding their frames (most of the work of
/// writing a few files) then runs beside the snapshot, which keeps about
/// one core busy.
const PRELOAD_BYTES: u64 = 8 << 20;

/// The journal of the transaction: the unfinished one, or a new one under
/// a new safety snapshot. A small restore (its walk and contents within
/// budget) meanwhile reads the blobs it will write, on another thread.
// What `begin` needs, and what the read ahead needs: each is needed.
#[allow(clippy::too_many_arguments)]
fn begin_reading_ahead(
    repo: &Repository,
    index: &Index,
    snapshot: &Snapshot,
    roots: &[Root],
    targets: &[Target],
    report: &PlanReport,
    tape: Option<plan::Tape>,
    unfinished: Option<Journal>,
    opts: &InPlaceOptions,
) -> (Result<Journal, InPlaceError>, Preloaded) {
    if let Some(journal) = unfinished {
        return (Ok(journal), Preloaded::default());
    }
    let tape = tape.filter(|t| t.complete);
    let small = tape.is_some() && report.bytes() <= PRELOAD_BYTES;
    let wanted: Vec<ObjectId> = match (&report.items, small) {
        (Some(items), true) => items.iter().flat_map(written_blobs).copied().collect(),
        _ => Vec::new(),
    };
    let (items, lines) = match tape {
        Some(t) => (Some(t.items), parent_lines(t.lines)),
        None => (None, None),
    };
    let walked = Walked {
        targets,
        tape: items,
        lines,
    };
    let shares = by_frame(index, &wanted);
    let budget = PRELOAD_BYTES / shares.len().max(1) as u64;
    // Once the safety snapshot is taken, the writers read what is left.
    let stop = std::sync::atomic::AtomicBool::new(false);
    std::thread::scope(|s| {
        let loaders: Vec<_> = shares
            .iter()
            .map(|share| {
                let stop = &stop;
                s.spawn(move || reader::preload(repo, index, share, budget, stop))
            })
            .collect();
        let journal = begin(repo, index, snapshot, roots, walked, opts);
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let mut preloaded = Preloaded::default();
        for loader in loaders {
            preloaded.extend(loader.join().unwrap_or_default());
        }
        (journal, preloaded)
    })
}

/// `ids` in one share per core (four at most: each holds a reader's
/// frames), each a set of whole frames, so that no frame is decoded twice;
/// empty shares left out.
fn by_frame(index: &Index, ids: &[ObjectId]) -> Vec<Vec<ObjectId>> {
    let loaders = std::thread::available_parallelism().map_or(1, |n| n.get()).min(4);
    let mut shares = vec![Vec::new(); loaders];
    for id in ids {
        let share = apply::frame_share(index, id, loaders).unwrap_or(0);
        shares[share].push(*id);
    }
    shares.retain(|s| !s.is_empty());
    shares
}

/// The blobs of a file the plan will write.
fn written_blobs(item: &plan::PlanItem) -> &[ObjectId] {
    match item {
        plan::PlanItem::Entry {
            entry,
            planned: Some(plan::Action::Create | plan::Action::Replace),
            ..
        } if entry.kind == crate::repo::manifest::EntryKind::File => &entry.blobs,
        _ => &[],
    }
}

/// The plan, and what its walk found when a safety snapshot will be taken
/// from it (so that it does not walk the roots again).
fn plan_keeping_walk(
    repo: &Repository,
    index: &Index,
    snapshot: &Snapshot,
    targets: &[Target],
    selection: &Selection,
    opts: &InPlaceOptions,
    resuming: bool,
) -> Result<(PlanReport, Option<plan::Tape>), InPlaceError> {
    let keep = !opts.dry_run;
    let taking_safety = keep && opts.safety.is_none() && opts.safety_snapshot && !resuming;
    let stats = &snapshot.record.stats;
    let entries = stats.files.saturating_add(stats.dirs).saturating_add(stats.other);
    let mut tape = taking_safety.then(|| plan::Tape::new(entries));
    let report = super::plan_items(
        repo,
        index,
        snapshot,
        targets,
        selection,
        opts.checksum,
        keep,
        tape.as_mut(),
    )?;
    Ok((report, tape))
}

/// Takes the safety snapshot (unless given or turned off) and writes the
/// journal of a new transaction under it. The plan has made sure that the
/// safety snapshot is worth taking. Taking it side by side with the plan
/// was tried: 10% faster on Linux, but the two peaks add up past 50 MiB.
fn begin(
    repo: &Repository,
    index: &Index,
    snapshot: &Snapshot,
    roots: &[Root],
    walked: Walked,
    opts: &InPlaceOptions,
) -> Result<Journal, InPlaceError> {
    let transaction = new_transaction();
    let targets = walked.targets;
    let safety = match (opts.safety, opts.safety_snapshot) {
        (Some(given), _) => Some(given),
        (None, true) => {
            safety_snapshot(repo, index, snapshot, roots, walked, &transaction, opts)?.map(|o| o.id)
        }
        (None, false) => None,
    };
    start(repo, snapshot, targets, transaction, safety)
}

/// A new transaction id: the time and 32 random bits.
fn new_transaction() -> String {
    format!(
        "{}-{:08x}",
        chrono::Local::now().format("%Y%m%dT%H%M%S"),
        crate::sink::local::random_u64() as u32
    )
}

/// Writes the journal of a restore about to write, under its safety
/// snapshot: from here on, the restore can be finished or undone.
fn start(
    repo: &Repository,
    snapshot: &Snapshot,
    targets: &[Target],
    transaction: String,
    safety: Option<ObjectId>,
) -> Result<Journal, InPlaceError> {
    let now = chrono::Local::now().fixed_offset();
    let mut journal = Journal {
        transaction,
        repository: repo.config().id.clone(),
        location: repo.sink().location(),
        snapshot: snapshot.id,
        safety,
        state: State::Writing,
        started: now,
        updated: now,
        roots: targets
            .iter()
            .filter(|t| t.selected)
            .map(|t| format!("{} -> {}", t.prefix, t.dest.display()))
            .collect(),
        error: None,
    };
    journal.save().map_err(InPlaceError::Journal)?;
    Ok(journal)
}

/// The targets of a restore, and what the plan's walk found under them.
struct Walked<'a> {
    targets: &'a [Target],
    /// `None`: not recorded, the safety snapshot walks the roots itself.
    tape: Option<Vec<(usize, TreeItem)>>,
    /// The snapshot's manifest lines as the plan read them, when they make
    /// a cheap parent for the safety snapshot (see [`parent_lines`]).
    lines: Option<Vec<RawLine>>,
}

/// A backup that takes the snapshot being restored as its parent reads
/// again every live file whose metadata is not exactly as in it (a file
/// copied, touched or written by an earlier rollback); up to this many
/// bytes of those, that costs less than reading the newest snapshot's
/// manifest, which would otherwise be the parent.
const REREAD_LIMIT: u64 = 8 << 20;

/// The plan's manifest lines, if all were kept and reusing them as the
/// safety snapshot's parent reads little again.
fn parent_lines(lines: plan::KeptLines) -> Option<Vec<RawLine>> {
    (lines.complete && lines.reread <= REREAD_LIMIT).then_some(lines.lines)
}

/// A backup of every selected root as the plan's walk found it, under the
/// snapshot's own prefixes (so restoring it in place puts each back where
/// it was).
fn safety_snapshot(
    repo: &Repository,
    index: &Index,
    snapshot: &Snapshot,
    roots: &[Root],
    walked: Walked,
    transaction: &str,
    opts: &InPlaceOptions,
) -> Result<Option<backup::BackupOutcome>, InPlaceError> {
    let mut specs = Vec::new();
    let mut absent = Vec::new();
    // Which backup root each target became: the tape's items are renumbered.
    let mut spec_of = vec![None; walked.targets.len()];
    for (i, target) in walked.targets.iter().enumerate().filter(|(_, t)| t.selected) {
        let Some(root) = roots.iter().find(|r| r.prefix == target.prefix) else {
            continue;
        };
        if std::fs::symlink_metadata(&target.dest).is_err() {
            absent.push(root.clone());
            continue;
        }
        spec_of[i] = Some(specs.len());
        specs.push(RootSpec {
            collector: root.collector.clone(),
            path: target.dest.clone(),
            prefix: root.prefix.clone(),
            excludes: root.excludes.clone(),
            gitignore: root.gitignore,
            one_file_system: root.one_file_system,
            exclude_if_present: root.exclude_if_present.clone(),
            ..Default::default()
        });
    }
    if specs.is_empty() {
        // Nothing of the roots exists: nothing to keep, nothing to undo
        // but the roots the restore creates.
        return Ok(None);
    }
    let backup_opts = BackupOptions {
        roots: specs,
        profile: snapshot.record.profile.clone(),
        skip: opts.skip.clone(),
        tags: vec![SAFETY_TAG.to_string()],
        rollback: Some(Rollback {
            restores: snapshot.id,
            transaction: transaction.to_string(),
            absent,
        }),
        ..Default::default()
    };
    let outcome = match walked.tape {
        Some(tape) => {
            let items = tape
                .into_iter()
                .filter_map(|(t, item)| Some((spec_of.get(t).copied().flatten()?, item)))
                .collect();
            let parent = walked.lines.map(|lines| (snapshot, lines));
            backup::run_walked(repo, &backup_opts, index, backup::Walked { items, parent })
        }
        None => backup::run_with_index(repo, &backup_opts, &Progress::hidden(), Some(index)),
    }
    .map_err(InPlaceError::Safety)?;
    if outcome.record.partial {
        // What could not be read could not be put back: do not go on.
        let first = outcome.warnings.first().cloned().unwrap_or_default();
        return Err(InPlaceError::Safety(BackupError::NoSources(format!(
            "some paths could not be read ({first})"
        ))));
    }
    Ok(Some(outcome))
}

/// What went wrong after writing, if anything: entries that failed, files
/// that do not read back as written, or the health check.
fn judge(
    summary: &Result<RestoreSummary, String>,
    targets: &[Target],
    opts: &InPlaceOptions,
    crypto: &crate::repo::crypto::Crypto,
) -> Option<String> {
    let failure = match summary {
        Err(what) => Some(what.clone()),
        Ok(s) if !s.errors.is_empty() => Some(format!(
            "{} entries could not be written (the first: {})",
            s.errors.len(),
            s.errors[0]
        )),
        Ok(s) if !s.lost.is_empty() && !opts.ignore_damaged => Some(format!(
            "the repository has lost the data of {} file(s) (the first: {}; --ignore-damaged restores everything else)",
            s.lost.len(),
            s.lost[0]
        )),
        Ok(s) if opts.verify => verify(targets, s, crypto).err(),
        Ok(_) => None,
    };
    tracing::debug!("written and verified");
    failure.or_else(|| {
        opts.check
            .as_ref()
            .and_then(|cmd| health_check(cmd, opts.check_timeout).err())
    })
}

/// Reads back every file the restore wrote and checks it against the
/// manifest: size, and the hash of what is on disk now.
fn verify(
    targets: &[Target],
    summary: &RestoreSummary,
    crypto: &crate::repo::crypto::Crypto,
) -> Result<(), String> {
    for w in &summary.written {
        let dest = targets[w.root].dest_of(&w.path);
        let result = std::fs::symlink_metadata(&dest).and_then(|m| {
            let stat = crate::meta::Stat::from_metadata(&m);
            if !stat.is_file() || stat.size != w.size {
                return Ok(false);
            }
            match w.hash {
                Some(content) => Ok(content.is(&plan::hash_file(&dest, &stat)?, crypto)),
                None => Ok(true),
            }
        });
        match result {
            Ok(true) => {}
            Ok(false) => {
                return Err(format!(
                    "verification failed: {} does not hold what was written",
                    dest.display()
                ))
            }
            Err(e) => {
                return Err(format!(
                    "verification failed: cannot read back {}: {e}",
                    dest.display()
                ))
            }
        }
    }
    Ok(())
}

/// Runs the health check through the shell; its output goes to the user.
fn health_check(cmd: &str, timeout: Duration) -> Result<(), String> {
    eprintln!("running health check: {cmd}");
    match crate::process::run_shell(cmd, timeout) {
        Ok(status) if status.success() => Ok(()),
        Ok(status) => Err(format!("the health check `{cmd}` failed ({status})")),
        Err(e) => Err(format!("the health check `{cmd}` could not run: {e}")),
    }
}

/// Puts the journal's safety snapshot back after `what` went wrong.
fn roll_back(repo: &Repository, journal: &mut Journal, what: String, progress: &Progress) -> InPlaceError {
    let Some(safety) = journal.safety else {
        journal.error = Some(what.clone());
        let _ = journal.save();
        return InPlaceError::Unprotected { what };
    };
    eprintln!("{what}; putting back safety snapshot {}", safety.short());
    let result = put_back(repo, safety, progress);
    journal.error = Some(what.clone());
    match result {
        Ok(()) => {
            journal.state = State::RolledBack;
            let _ = journal.save();
            InPlaceError::RolledBack {
                what,
                safety: safety.short(),
            }
        }
        Err(e) => {
            let _ = journal.save();
            InPlaceError::RollbackFailed {
                what,
                safety: safety.short(),
                rollback: crate::chain(&e),
            }
        }
    }
}

/// Restores a safety snapshot in place over all its roots, removing what
/// it does not have; no safety snapshot of its own, no health check.
fn put_back(repo: &Repository, safety: ObjectId, progress: &Progress) -> Result<(), InPlaceError> {
    // The safety snapshot was written after the caller loaded its index.
    let index = &repo.load_index().map_err(|e| InPlaceError::Restore(e.into()))?;
    let snapshot = repo
        .read_snapshot(&safety.to_hex())
        .map_err(|e| InPlaceError::Restore(e.into()))?;
    let roots = roots_of(&snapshot);
    let opts = InPlaceOptions {
        delete: true,
        ..Default::default()
    };
    let targets = targets(&snapshot, &roots, &opts)?;
    let apply_opts = ApplyOptions {
        delete: true,
        checksum: false,
        fsync: true,
        // Putting back what a restore changed: usually little.
        sparse: true,
    };
    let summary = apply::apply(
        repo,
        index,
        &snapshot,
        &targets,
        &Selection::default(),
        None,
        apply_opts,
        &Preloaded::default(),
        progress,
    )?;
    match summary.errors.first() {
        Some(first) => Err(InPlaceError::Restore(RestoreError::Write {
            path: PathBuf::from(first),
            source: std::io::Error::other(format!("{} entries could not be put back", summary.errors.len())),
        })),
        None => Ok(()),
    }
}

/// The safety snapshot of the last in-place restore, for `--undo`; its
/// journal is marked undone once the undo succeeded.
pub fn last_restore(repo: &Repository) -> Result<(Journal, ObjectId), InPlaceError> {
    let journal = Journal::last_undoable(&repo.config().id).ok_or(InPlaceError::NothingToUndo)?;
    let safety = journal.safety.ok_or(InPlaceError::NothingToUndo)?;
    Ok((journal, safety))
}

/// Marks a journal undone.
pub fn mark_undone(mut journal: Journal) -> Result<(), InPlaceError> {
    journal.state = State::Undone;
    journal.save().map_err(InPlaceError::Journal)
}
