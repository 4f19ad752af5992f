use anyhow::Result;
use chrono::Local;
use indicatif::HumanBytes;

use super::{exit, open_repo, print_json, RepoArg, SnapshotJson};
use crate::cli::SnapshotsArgs;

pub fn run(repo: RepoArg, args: SnapshotsArgs) -> Result<u8> {
    let repo = open_repo(repo, false)?;
    let _lock = cairn::repo::lock::acquire(&repo, cairn::repo::lock::LockKind::Shared)?;
    let filter = args.filter.filter();
    let mut snapshots = repo.load_snapshots()?;
    snapshots.retain(|s| filter.matches(&s.record));
    if args.json {
        let listed: Vec<SnapshotJson> = snapshots
            .iter()
            .map(|s| SnapshotJson {
                id: s.id.to_hex(),
                record: &s.record,
            })
            .collect();
        return print_json(&listed).map(|_| exit::OK);
    }
    let fact_columns: String = args.facts.iter().map(|f| format!("  {f:<12}")).collect();
    outln!(
        "{:<8}  {:<19}  {:<16}  {:>7}  {:>10}{fact_columns}  PATHS",
        "ID",
        "TIME",
        "HOST",
        "FILES",
        "SIZE"
    )?;
    for s in &snapshots {
        let r = &s.record;
        // A command's stdout, stderr and status share one origin: say it once.
        let mut paths: Vec<String> = Vec::new();
        for root in &r.roots {
            let path = root.path.lossy();
            if !paths.contains(&path) {
                paths.push(path);
            }
        }
        let mut paths = paths.join(", ");
        if !r.tags.is_empty() {
            paths.push_str(&format!(" [{}]", r.tags.join(",")));
        }
        if r.partial {
            paths.push_str(" (partial)");
        }
        if let Some(run) = &r.run {
            match (&run.pre, run.exit_code) {
                (Some(pre), code) => paths.push_str(&format!(
                    " (after `{}` of {}: exit {})",
                    run.command.join(" "),
                    pre.short(),
                    code.map(|c| c.to_string()).unwrap_or_else(|| "by signal".into())
                )),
                (None, _) => paths.push_str(&format!(" (before `{}`)", run.command.join(" "))),
            }
        }
        if let Some(rb) = &r.rollback {
            paths.push_str(&format!(
                " (safety snapshot before restoring {})",
                rb.restores.short()
            ));
        }
        let facts: String = args
            .facts
            .iter()
            .map(|f| format!("  {:<12}", r.facts.get(f).map(String::as_str).unwrap_or("-")))
            .collect();
        outln!(
            "{:<8}  {:<19}  {:<16}  {:>7}  {:>10}{facts}  {}",
            s.id.short(),
            r.time.with_timezone(&Local).format("%Y-%m-%d %H:%M:%S"),
            r.host,
            r.stats.files,
            HumanBytes(r.stats.bytes).to_string(),
            paths
        )?;
    }
    outln!("{} snapshots", snapshots.len())?;
    Ok(exit::OK)
}
