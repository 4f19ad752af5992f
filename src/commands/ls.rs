use std::io::{BufWriter, Write};

use anyhow::{Context, Result};
use cairn::repo::manifest::EntryKind;
use cairn::repo::reader::BlobReader;
use chrono::{Local, TimeZone};

use super::{exit, open_repo, RepoArg};
use crate::cli::LsArgs;

pub fn run(repo: RepoArg, args: LsArgs) -> Result<u8> {
    let repo = open_repo(repo, false)?;
    let _lock = cairn::repo::lock::acquire(&repo, cairn::repo::lock::LockKind::Shared)?;
    let snapshot = repo.find_snapshot_filtered(&args.snapshot, &args.filter.filter())?;
    let index = repo.load_index()?;
    let mut reader = BlobReader::new(&repo, &index);
    let short = snapshot.id.short();
    let stdout = std::io::stdout();
    let mut out = BufWriter::new(stdout.lock());
    if args.json {
        // Streamed, so a huge manifest never sits in memory; read through
        // once first, so that a damaged manifest prints nothing rather than
        // half a document.
        for entry in reader.manifest(&short, &snapshot.record.manifest) {
            entry.with_context(|| format!("cannot read snapshot {short}"))?;
        }
        write!(out, "[")?;
        for (i, entry) in reader.manifest(&short, &snapshot.record.manifest).enumerate() {
            let entry = entry.with_context(|| format!("cannot read snapshot {short}"))?;
            write!(out, "{}\n  ", if i == 0 { "" } else { "," })?;
            serde_json::to_writer(&mut out, &entry)?;
        }
        writeln!(out, "\n]")?;
    } else {
        for entry in reader.manifest(&short, &snapshot.record.manifest) {
            let entry = entry.with_context(|| format!("cannot read snapshot {short}"))?;
            let kind = match entry.kind {
                EntryKind::Dir => 'd',
                EntryKind::File => '-',
                EntryKind::Symlink => 'l',
                EntryKind::Hardlink => 'h',
                EntryKind::Fifo => 'p',
                EntryKind::Chardev => 'c',
                EntryKind::Blockdev => 'b',
            };
            let time = Local
                .timestamp_opt(entry.mtime, entry.mtime_nsec)
                .single()
                .map(|t| t.format("%Y-%m-%d %H:%M:%S").to_string())
                .unwrap_or_default();
            let mut line = format!(
                "{kind}{:04o} {:>5} {:>5} {:>12} {time} {}",
                entry.mode,
                entry.uid,
                entry.gid,
                entry.size,
                entry.path.lossy()
            );
            if let Some(t) = &entry.target {
                line.push_str(" -> ");
                line.push_str(&t.lossy());
            }
            writeln!(out, "{line}")?;
        }
    }
    out.flush()?;
    Ok(exit::OK)
}
