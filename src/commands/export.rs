use std::io::{IsTerminal, Write};
use std::path::Path;

use anyhow::{bail, Context, Result};
use cairn::export::{self, ExportOptions};
use cairn::progress::Progress;
use cairn::repo::lock::{self, LockKind};
use indicatif::HumanBytes;

use super::{exit, open_repo, print_json, RepoArg};
use crate::cli::ExportArgs;

pub fn run(repo: RepoArg, args: ExportArgs) -> Result<u8> {
    let to_stdout = args.output.as_os_str() == "-";
    if to_stdout && std::io::stdout().is_terminal() {
        bail!("refusing to write a binary archive to a terminal; redirect standard output (`-o - > snap.tar.zst`) or give -o FILE");
    }
    if to_stdout && args.json {
        bail!("--json prints on standard output, where -o - writes the archive; give -o FILE");
    }
    let repo = open_repo(repo, false)?;
    let _lock = lock::acquire(&repo, LockKind::Shared)?;
    let snapshot = repo.find_snapshot_filtered(&args.snapshot, &args.filter.filter())?;
    let index = repo.load_index()?;
    let opts = ExportOptions {
        include: args.select.include,
        exclude: args.select.exclude,
    };
    let total = if opts.include.is_empty() && opts.exclude.is_empty() {
        Some(snapshot.record.stats.bytes)
    } else {
        None
    };
    let progress = Progress::bytes("export", total);
    let summary = if to_stdout {
        let stdout = std::io::stdout().lock();
        export::export(&repo, &index, &snapshot, &opts, stdout, Path::new("-"), &progress).and_then(
            |(summary, mut out)| {
                out.flush().map_err(|source| export::ExportError::Write {
                    path: "-".into(),
                    source,
                })?;
                Ok(summary)
            },
        )
    } else {
        export::export_to_file(&repo, &index, &snapshot, &opts, &args.output, &progress)
    };
    progress.finish();
    let summary = summary.with_context(|| format!("export of snapshot {} failed", snapshot.id.short()))?;
    for w in &summary.warnings {
        eprintln!("warning: {w}");
    }
    if args.json {
        print_json(&summary)?;
    } else {
        let line = format!(
            "exported snapshot {} to {}: {} files, {} dirs, {} symlinks, {}",
            snapshot.id.short(),
            args.output.display(),
            summary.files,
            summary.dirs,
            summary.links,
            HumanBytes(summary.bytes)
        );
        // With -o -, standard output is the archive.
        if to_stdout {
            eprintln!("{line}");
        } else {
            outln!("{line}")?;
        }
    }
    Ok(exit::OK)
}
