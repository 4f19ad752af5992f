use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use cairn::repo::Repository;
use cairn::sink::LocalSink;

use super::{exit, is_empty_or_missing, repo_path};

pub fn run(repo: Option<PathBuf>) -> Result<u8> {
    let (path, _) = repo_path(repo)?;
    if path.join("config.json").exists() {
        bail!("a repository already exists at {}", path.display());
    }
    if !is_empty_or_missing(&path) {
        bail!(
            "{} exists and is not empty; refusing to create a repository there",
            path.display()
        );
    }
    std::fs::create_dir_all(&path).with_context(|| format!("cannot create {}", path.display()))?;
    let repo = Repository::init(Arc::new(LocalSink::new(&path)))?;
    outln!(
        "created cairn repository {} at {}",
        repo.config().id,
        path.display()
    )?;
    Ok(exit::OK)
}
