use anyhow::{Context, Result};
use cairn::progress::Progress;
use cairn::repo::lock::{self, LockKind};
use cairn::repo::snapshot;
use indicatif::HumanBytes;

use super::{exit, open_repo, print_json, RepoArg};
use crate::cli::CopyArgs;

/// `cairn copy`: the named snapshots (or --all) from --from (default
/// --repo) into --to, both any kind of repository.
pub fn run(repo: RepoArg, args: CopyArgs) -> Result<u8> {
    let from_arg = RepoArg {
        location: args.from.clone().or(repo.location.clone()),
        ..repo.clone()
    };
    let to_arg = RepoArg {
        location: Some(args.to.clone()),
        ..repo.clone()
    };
    let from = open_repo(from_arg, false).context("cannot open the repository to copy from")?;
    let to = open_repo(to_arg, false).context("cannot open the repository to copy into")?;
    let _from_lock = lock::acquire(&from, LockKind::Shared)?;
    let _to_lock = lock::acquire(&to, LockKind::Shared)?;
    let filter = args.filter.filter();
    let all = from.load_snapshots()?;
    let chosen = if args.all {
        all.into_iter().filter(|s| filter.matches(&s.record)).collect()
    } else {
        let mut chosen: Vec<snapshot::Snapshot> = Vec::new();
        for query in &args.snapshots {
            let s = snapshot::resolve_filtered(&all, query, &filter)?;
            if !chosen.iter().any(|c| c.id == s.id) {
                chosen.push(s);
            }
        }
        chosen
    };
    let index = from.load_index()?;
    let progress = if args.json {
        Progress::hidden()
    } else {
        Progress::bytes("copying", None)
    };
    let report = cairn::copy::copy(&from, &index, &to, &chosen, &progress)?;
    progress.finish();
    if args.json {
        return print_json(&report).map(|_| exit::OK);
    }
    for id in &report.present {
        outln!("snapshot {id} is already in {}", to.sink().location())?;
    }
    outln!(
        "copied {} snapshot(s) to {}: {} blobs ({}) read and verified, {} stored",
        report.copied.len(),
        to.sink().location(),
        report.blobs,
        HumanBytes(report.bytes),
        HumanBytes(report.bytes_stored)
    )?;
    Ok(exit::OK)
}
