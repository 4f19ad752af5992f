//! `cairn prune`: frees the space of data no snapshot uses (see
//! `cairn::repo::prune`), under the exclusive lock.

use anyhow::{bail, Result};
use indicatif::HumanBytes;

use super::{exit, open_repo, print_json, RepoArg};
use crate::cli::{PruneArgs, PruneOpts};
use cairn::repo::lock::{self, LockKind};
use cairn::repo::prune::{self, PruneOptions, PruneReport};
use cairn::repo::Repository;

pub fn run(repo: RepoArg, args: PruneArgs) -> Result<u8> {
    let opts = options(&args.opts, args.dry_run)?;
    let repo = open_repo(repo, false)?;
    let kind = if args.dry_run {
        LockKind::Shared
    } else {
        LockKind::Exclusive
    };
    let _lock = lock::acquire(&repo, kind)?;
    run_locked(&repo, &opts, args.json)
}

/// Prune under a lock the caller holds (`forget --prune` holds its own).
pub fn run_locked(repo: &Repository, opts: &PruneOptions, json: bool) -> Result<u8> {
    let report = prune::prune(repo, opts)?;
    if json {
        print_json(&report)?;
    } else {
        print_report(&report)?;
    }
    Ok(exit::OK)
}

/// `--max-unused` and `--max-repack-size` as prune takes them.
pub fn options(o: &PruneOpts, dry_run: bool) -> Result<PruneOptions> {
    let max_unused = match o.max_unused.trim() {
        "unlimited" => None,
        text => {
            let number = text.strip_suffix('%').unwrap_or(text).trim();
            match number.parse::<f64>() {
                Ok(p) if (0.0..100.0).contains(&p) => Some(p / 100.0),
                _ => bail!("--max-unused {text:?}: a percentage below 100 (5%), or unlimited"),
            }
        }
    };
    let max_repack_bytes = match &o.max_repack_size {
        None => None,
        Some(text) => match cairn::sink::open::parse_size(text) {
            Some(n) => Some(n),
            None => bail!("--max-repack-size {text:?}: a size such as 500MiB or 2GiB"),
        },
    };
    Ok(PruneOptions {
        max_unused,
        max_repack_bytes,
        dry_run,
        without: Vec::new(),
    })
}

fn print_report(r: &PruneReport) -> Result<()> {
    let verb = if r.dry_run { "would delete" } else { "deleted" };
    outln!(
        "{} snapshots use {} blobs; {} blobs are used by none",
        r.snapshots,
        r.blobs_used,
        r.blobs_unused
    )?;
    outln!(
        "{} packs: {verb} {} unused and {} left by interrupted backups; {} repacked",
        r.packs,
        r.packs_deleted,
        r.packs_unreferenced,
        r.packs_repacked
    )?;
    let freed = r.bytes_before.saturating_sub(r.bytes_after);
    outln!(
        "{}: {} -> {} ({} freed)",
        if r.dry_run {
            "repository would shrink"
        } else {
            "repository"
        },
        HumanBytes(r.bytes_before),
        HumanBytes(r.bytes_after),
        HumanBytes(freed)
    )?;
    Ok(())
}
