use std::path::PathBuf;

use anyhow::Result;
use cairn::repo::lock;

use super::{exit, open_repo};
use crate::cli::UnlockArgs;

pub fn run(repo: Option<PathBuf>, args: UnlockArgs) -> Result<u8> {
    let repo = open_repo(repo, false)?;
    let removed = lock::remove_locks(repo.sink().as_ref(), args.remove_all)?;
    outln!("removed {} lock(s)", removed.len())?;
    Ok(exit::OK)
}
