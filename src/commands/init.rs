use anyhow::{anyhow, bail, Context, Result};
use cairn::repo::Repository;
use cairn::sink::{LocalSink, Location};
use std::sync::Arc;

use super::{exit, is_empty_or_missing, repo_location, RepoArg};
use crate::cli::InitArgs;

/// Creates a repository: a directory (which must be empty or missing), or
/// an S3 bucket and prefix (the bucket is created when missing and the
/// credentials allow it). S3 and NAS repositories are encrypted unless
/// `--no-encrypt`; a local one only with `--encrypt`.
pub fn run(repo: RepoArg, args: InitArgs) -> Result<u8> {
    let (location, _) = repo_location(&repo)?;
    let remote = match &location {
        Location::S3(_) => true,
        // A mounted share: the directory, or the nearest parent that exists.
        Location::Local(path) => path
            .ancestors()
            .find(|a| a.exists())
            .and_then(cairn::sink::nas::network_filesystem)
            .is_some(),
    };
    let encrypt = args.encrypt || (remote && !args.no_encrypt);
    let shown = location.to_string();
    // Asked before anything is created: a mistyped password leaves nothing.
    let password = match encrypt {
        true => Some(repo.passwords.new_password(&shown).map_err(|e| {
            anyhow!("cannot create an encrypted repository at {shown} (--no-encrypt makes a plain one): {e}")
        })?),
        false => None,
    };
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
    let created = Repository::init(sink, password.as_ref())?;
    if created.is_encrypted() {
        outln!(
            "created encrypted cairn repository {} at {location}",
            created.config().id
        )?;
        eprintln!("keep the password safe: without it the repository cannot be read, by anyone");
    } else {
        outln!("created cairn repository {} at {location}", created.config().id)?;
        if remote {
            eprintln!(
                "warning: not encrypted (--no-encrypt): whoever can read {shown} can read every file saved in it"
            );
        }
    }
    Ok(exit::OK)
}
