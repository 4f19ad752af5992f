use anyhow::{bail, Result};
use cairn::progress::Progress;
use cairn::repo::check;
use cairn::repo::lock::{self, LockKind};
use cairn::sink::ObjectKind;
use indicatif::HumanBytes;

use super::{exit, open_repo, print_json, RepoArg};
use crate::cli::CheckArgs;

pub fn run(repo: RepoArg, args: CheckArgs) -> Result<u8> {
    let repo = open_repo(repo, false)?;
    let _lock = lock::acquire(&repo, LockKind::Shared)?;
    let total = if args.read_data {
        Some(repo.sink().list(ObjectKind::Pack)?.iter().map(|p| p.size).sum())
    } else {
        None
    };
    let progress = Progress::bytes("check", total);
    let report = check::check(&repo, args.read_data, &|n| progress.add(n));
    progress.finish();
    let report = report?;
    if args.json {
        print_json(&report)?;
    } else {
        for n in &report.notes {
            eprintln!("note: {n}");
        }
        for w in &report.warnings {
            eprintln!("warning: {w}");
        }
        for p in &report.errors {
            let affected = if p.snapshots.is_empty() {
                String::new()
            } else {
                format!(" (affects snapshots {})", p.snapshots.join(", "))
            };
            eprintln!("error: {}: {}{affected}", p.object, p.message);
        }
        let mut fixes: Vec<&str> = report.errors.iter().map(|p| p.repair.as_str()).collect();
        fixes.sort();
        fixes.dedup();
        for fix in fixes {
            eprintln!("to repair: {fix}");
        }
        outln!(
            "checked {} snapshots, {} index files, {} packs, {} blobs{}",
            report.snapshots,
            report.index_files,
            report.packs,
            report.blobs,
            if report.read_data {
                format!(", read {}", HumanBytes(report.bytes_read))
            } else {
                String::new()
            }
        )?;
    }
    if !report.is_ok() {
        bail!("the repository has {} problem(s)", report.errors.len());
    }
    if !args.json {
        outln!("no errors found")?;
    }
    Ok(exit::OK)
}
