//! `cairn repair index|snapshots` (see `cairn::repo::repair`), under the
//! exclusive lock (the shared one for `--dry-run`).

use anyhow::Result;

use super::{exit, open_repo, print_json, RepoArg};
use crate::cli::RepairCommand;
use cairn::repo::lock::{self, LockKind};
use cairn::repo::repair::{self, IndexRepair, IndexRepairOptions, SnapshotRepair, SnapshotsRepairOptions};

pub fn run(repo: RepoArg, command: RepairCommand) -> Result<u8> {
    let repo = open_repo(repo, false)?;
    let dry_run = match command {
        RepairCommand::Index { dry_run, .. } | RepairCommand::Snapshots { dry_run, .. } => dry_run,
    };
    let kind = if dry_run {
        LockKind::Shared
    } else {
        LockKind::Exclusive
    };
    let _lock = lock::acquire(&repo, kind)?;
    match command {
        RepairCommand::Index {
            read_all_packs,
            dry_run,
            json,
        } => {
            let opts = IndexRepairOptions {
                read_all_packs,
                dry_run,
            };
            let report = repair::repair_index(&repo, &opts)?;
            if json {
                print_json(&report)?;
            } else {
                print_index(&report)?;
            }
        }
        RepairCommand::Snapshots { dry_run, json } => {
            let index = repo.load_index()?;
            let report = repair::repair_snapshots(&repo, &index, &SnapshotsRepairOptions { dry_run })?;
            if json {
                print_json(&report)?;
            } else {
                print_snapshots(&report)?;
            }
        }
    }
    Ok(exit::OK)
}

fn print_index(r: &IndexRepair) -> Result<()> {
    for name in &r.damaged_index_files {
        outln!("damaged index file {name}: dropped")?;
    }
    for name in &r.missing_packs {
        outln!("pack {name} is listed but not stored: dropped from the index")?;
    }
    for d in &r.damaged {
        outln!("damaged: {d}")?;
    }
    if !r.salvaged_packs.is_empty() {
        outln!(
            "{} {} good blobs of {} damaged pack(s) in new packs, and {} the damaged ones",
            if r.dry_run { "would store" } else { "stored" },
            r.blobs_salvaged,
            r.salvaged_packs.len(),
            if r.dry_run { "would delete" } else { "deleted" }
        )?;
    }
    outln!(
        "{} index files; read {} packs, found {} blobs",
        r.index_files,
        r.packs_read,
        r.blobs_found
    )?;
    let verb = if r.dry_run { "would write" } else { "wrote" };
    if r.changes_anything() {
        outln!(
            "{verb} {} index files and {} {} old ones",
            r.index_files_written,
            if r.dry_run { "would delete" } else { "deleted" },
            r.index_files_deleted
        )?;
    } else {
        outln!("the index is whole: nothing to change")?;
    }
    Ok(())
}

fn print_snapshots(r: &SnapshotRepair) -> Result<()> {
    for u in &r.unreadable {
        outln!("cannot repair {u} (`cairn forget` removes the record)")?;
    }
    let short = |hex: &str| hex.get(..8).unwrap_or(hex).to_string();
    for s in &r.repaired {
        let into = s
            .new
            .as_deref()
            .map(|n| format!(" into {}", short(n)))
            .unwrap_or_default();
        outln!(
            "snapshot {}{}: {} {} entries whose data is lost",
            short(&s.snapshot),
            into,
            if r.dry_run { "would leave out" } else { "left out" },
            s.lost_count
        )?;
        for path in s.lost.iter().take(20) {
            outln!("  lost {path}")?;
        }
        if s.lost_count > 20 {
            outln!("  ... and {} more (`--json` lists them)", s.lost_count - 20)?;
        }
    }
    for s in &r.removed {
        outln!(
            "snapshot {}: {}; {}",
            short(&s.snapshot),
            s.reason,
            if r.dry_run { "would remove it" } else { "removed" }
        )?;
    }
    if r.repaired.is_empty() && r.removed.is_empty() {
        outln!("{} snapshots checked: none needs data that is lost", r.snapshots)?;
    } else if r.dry_run {
        outln!("nothing changed (--dry-run)")?;
    }
    Ok(())
}
