use anyhow::{bail, Context, Result};
use cairn::repo::Repository;
use cairn::sink::{LocalSink, Location};
use std::sync::Arc;

use super::{exit, is_empty_or_missing, repo_location, RepoArg};

/// Creates a repository: a directory (which must be empty or missing), or
/// an S3 bucket and prefix (the bucket is created when missing and the
/// credentials allow it).
pub fn run(repo: RepoArg) -> Result<u8> {
    let (location, _) = repo_location(&repo)?;
    let sink: Arc<dyn cairn::sink::Sink> = match &location {
        Location::Local(path) => {
            if path.join("config.json").exists() {
                bail!("a repository already exists at {}", path.display());
            }
            if !is_empty_or_missing(path) {
                bail!(
                    "{} exists and is not empty; refusing to create a repository there",
                    path.display()
                );
            }
            std::fs::create_dir_all(path).with_context(|| format!("cannot create {}", path.display()))?;
            Arc::new(LocalSink::new(path))
        }
        Location::S3(_) => cairn::sink::open(&location, &repo.options, true)?,
    };
    let repo = Repository::init(sink)?;
    outln!("created cairn repository {} at {location}", repo.config().id)?;
    Ok(exit::OK)
}
