use anyhow::Result;

use super::{exit, open_repo, print_json, RepoArg};
use crate::cli::FactsArgs;

pub fn run(repo: RepoArg, args: FactsArgs) -> Result<u8> {
    let repo = open_repo(repo, false)?;
    let _lock = cairn::repo::lock::acquire(&repo, cairn::repo::lock::LockKind::Shared)?;
    let snapshot = repo.find_snapshot_filtered(&args.snapshot, &args.filter.filter())?;
    let facts = &snapshot.record.facts;
    if args.json {
        print_json(facts)?;
    } else if facts.is_empty() {
        outln!("snapshot {} recorded no facts", snapshot.id.short())?;
    } else {
        let width = facts.keys().map(String::len).max().unwrap_or(0);
        for (name, value) in facts {
            outln!("{name:<width$}  {value}")?;
        }
    }
    Ok(exit::OK)
}
