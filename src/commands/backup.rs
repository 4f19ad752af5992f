use std::path::PathBuf;

use anyhow::{anyhow, Context, Result};
use cairn::backup::{self, BackupOptions};
use cairn::progress::Progress;
use cairn::repo::lock::{self, LockKind};
use cairn::repo::snapshot::parse_time;
use indicatif::HumanBytes;
use serde::Serialize;

use super::{exit, open_repo, print_json, repo_path};
use crate::cli::BackupArgs;

#[derive(Serialize)]
struct BackupJson<'a> {
    id: String,
    #[serde(flatten)]
    record: &'a cairn::repo::snapshot::SnapshotRecord,
}

pub fn run(repo: Option<PathBuf>, args: BackupArgs) -> Result<u8> {
    let time = match &args.time {
        Some(t) => Some(
            parse_time(t)
                .ok_or_else(|| anyhow!("--time {t:?} is not a time such as 2026-11-24T10:30:00+01:00"))?,
        ),
        None => None,
    };
    let (repo_dir, _) = repo_path(repo.clone())?;
    let repo = open_repo(repo, true)?;
    let _lock = lock::acquire(repo.sink().clone(), LockKind::Shared)?;
    let opts = BackupOptions {
        paths: args.paths,
        // A repository inside a source is never saved into itself.
        skip: vec![repo_dir],
        excludes: args.excludes,
        tags: args.tags,
        time,
    };
    let progress = Progress::bytes("backup", None);
    let outcome = backup::run(&repo, &opts, &progress);
    progress.finish();
    let outcome = outcome.with_context(|| format!("backup into {} failed", repo.sink().location()))?;
    for w in &outcome.warnings {
        eprintln!("warning: {w}");
    }
    let r = &outcome.record;
    if args.json {
        print_json(&BackupJson {
            id: outcome.id.to_hex(),
            record: r,
        })?;
    } else {
        let s = &r.stats;
        println!(
            "snapshot {} saved{}: {} files ({} new, {} changed, {} unchanged), {} read, {} added ({} stored) in {:.2}s",
            outcome.id.short(),
            if r.partial { " (partial: some files could not be read)" } else { "" },
            s.files,
            s.files_new,
            s.files_changed,
            s.files_unchanged,
            HumanBytes(s.bytes_read),
            HumanBytes(s.bytes_added),
            HumanBytes(s.bytes_stored),
            s.duration_secs
        );
    }
    Ok(if r.partial { exit::PARTIAL } else { exit::OK })
}
