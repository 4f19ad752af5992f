use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use cairn::progress::Progress;
use cairn::repo::lock::{self, LockKind};
use cairn::restore::{self, RestoreOptions};
use indicatif::HumanBytes;

use super::{exit, open_repo, print_json};
use crate::cli::RestoreArgs;

pub fn run(repo: Option<PathBuf>, args: RestoreArgs) -> Result<u8> {
    let repo = open_repo(repo, false)?;
    let _lock = lock::acquire(repo.sink().clone(), LockKind::Shared)?;
    let snapshot = repo.find_snapshot_filtered(&args.snapshot, &args.filter.filter())?;
    let index = repo.load_index()?;
    let opts = RestoreOptions {
        target: args.target.clone(),
        include: args.include,
    };
    let total = if opts.include.is_empty() {
        Some(snapshot.record.stats.bytes)
    } else {
        None
    };
    let progress = Progress::bytes("restore", total);
    let summary = restore::restore(&repo, &index, &snapshot, &opts, &progress);
    progress.finish();
    let summary = summary.with_context(|| format!("restore of snapshot {} failed", snapshot.id.short()))?;
    if args.json {
        print_json(&summary)?;
    } else {
        outln!(
            "restored snapshot {} to {}: {} files, {} dirs, {} symlinks, {}",
            snapshot.id.short(),
            args.target.display(),
            summary.files,
            summary.dirs,
            summary.links,
            HumanBytes(summary.bytes)
        )?;
    }
    for w in &summary.warnings {
        eprintln!("warning: {w}");
    }
    for e in &summary.errors {
        eprintln!("error: {e}");
    }
    if !summary.errors.is_empty() {
        bail!("{} entries could not be restored", summary.errors.len());
    }
    Ok(exit::OK)
}
