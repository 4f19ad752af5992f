use anyhow::Result;
use cairn::repo::lock;

use super::{exit, open_repo, RepoArg};
use crate::cli::UnlockArgs;

pub fn run(repo: RepoArg, args: UnlockArgs) -> Result<u8> {
    let repo = open_repo(repo, false)?;
    let removed = lock::remove_locks(&repo, args.remove_all)?;
    outln!("removed {} lock(s)", removed.len())?;
    Ok(exit::OK)
}
