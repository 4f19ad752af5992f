//! One file per subcommand. Each returns the process exit code on success;
//! errors go back to `main`, which maps them to exit codes.

pub mod backup;
pub mod check;
pub mod copy;
pub mod diff;
pub mod export;
pub mod facts;
pub mod forget;
pub mod init;
pub mod key;
pub mod ls;
pub mod password;
pub mod profiles;
pub mod prune;
pub mod repair;
pub mod restore;
pub mod run;
pub mod schedule;
pub mod snapshots;
pub mod unlock;

use std::path::{Path, PathBuf};

use anyhow::{anyhow, Context, Result};
use cairn::backup::BackupError;
use cairn::repo::{RepoError, Repository};
use cairn::restore::inplace::InPlaceError;
use cairn::restore::RestoreError;
use cairn::sink::{Location, SinkOptions};

use crate::cli::{Cli, Command};

/// Exit codes (README, "Exit codes"); the same numbers as restic's.
pub mod exit {
    pub const OK: u8 = 0;
    pub const FAILED: u8 = 1;
    pub const PARTIAL: u8 = 3;
    pub const NO_REPOSITORY: u8 = 10;
    pub const LOCKED: u8 = 11;
    /// Wrong or missing password (restic's 12).
    pub const PASSWORD: u8 = 12;
    pub const INTERRUPTED: u8 = 130;
}

pub fn run(cli: Cli) -> Result<u8> {
    let mut options = SinkOptions::default();
    for setting in &cli.options {
        options.set(setting)?;
    }
    if let Some(wait) = &cli.retry_lock {
        cairn::repo::lock::set_wait(parse_wait(wait)?);
    }
    let repo = RepoArg {
        location: cli.repo.clone(),
        options,
        passwords: password::Passwords::with_command(cli.password_command.clone()),
    };
    match cli.command {
        Command::Init(args) => init::run(repo, args),
        Command::Backup(args) => backup::run(repo, args),
        Command::Snapshots(args) => snapshots::run(repo, args),
        Command::Ls(args) => ls::run(repo, args),
        Command::Facts(args) => facts::run(repo, args),
        Command::Restore(args) => restore::run(repo, args),
        Command::Diff(args) => diff::run(repo, args),
        Command::Run(args) => run::run(repo, args),
        Command::Export(args) => export::run(repo, args),
        Command::Check(args) => check::run(repo, args),
        Command::Copy(args) => copy::run(repo, args),
        Command::Forget(args) => forget::run(repo, *args),
        Command::Prune(args) => prune::run(repo, args),
        Command::Unlock(args) => unlock::run(repo, args),
        Command::Key(command) => key::run(repo, command),
        Command::Repair(command) => repair::run(repo, command),
        Command::Profiles(command) => profiles::run(command),
        Command::Schedule(command) => schedule::run(repo, command),
    }
}

/// `--retry-lock`: `90`, `30s`, `5m`, `1h`.
fn parse_wait(text: &str) -> Result<std::time::Duration> {
    let (number, unit) = text.split_at(text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len()));
    let n: u64 = number
        .parse()
        .map_err(|_| anyhow!("--retry-lock {text:?}: a duration such as 30s, 5m or 1h"))?;
    let secs = match unit {
        "" | "s" => Some(n),
        "m" => n.checked_mul(60),
        "h" => n.checked_mul(3600),
        _ => None,
    }
    .ok_or_else(|| anyhow!("--retry-lock {text:?}: a duration such as 30s, 5m or 1h"))?;
    Ok(std::time::Duration::from_secs(secs))
}

/// The exit code for an error, from the first error in its chain that has one.
pub fn exit_code(err: &anyhow::Error) -> u8 {
    // Whatever failed after Ctrl-C or SIGTERM failed because of it.
    if cairn::interrupt::is_set() {
        return exit::INTERRUPTED;
    }
    for cause in err.chain() {
        let repo_err = cause
            .downcast_ref::<RepoError>()
            .or_else(|| match cause.downcast_ref::<BackupError>() {
                Some(BackupError::Repo(e)) => Some(e),
                _ => None,
            })
            .or_else(|| match cause.downcast_ref::<RestoreError>() {
                Some(RestoreError::Repo(e)) => Some(e),
                _ => None,
            })
            .or_else(|| match cause.downcast_ref::<InPlaceError>() {
                Some(InPlaceError::Restore(RestoreError::Repo(e))) => Some(e),
                _ => None,
            });
        match repo_err {
            Some(RepoError::NotFound { .. }) => return exit::NO_REPOSITORY,
            Some(RepoError::Locked { .. }) => return exit::LOCKED,
            Some(RepoError::WrongPassword { .. } | RepoError::NoPassword { .. }) => return exit::PASSWORD,
            Some(RepoError::Interrupted) => return exit::INTERRUPTED,
            _ => {}
        }
    }
    if cairn::interrupt::is_set() {
        exit::INTERRUPTED
    } else {
        exit::FAILED
    }
}

/// Whether the error comes from writing to a pipe whose reader has gone.
pub fn is_broken_pipe(err: &anyhow::Error) -> bool {
    err.chain().any(|cause| {
        cause
            .downcast_ref::<std::io::Error>()
            .is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe)
            || cause
                .downcast_ref::<serde_json::Error>()
                .and_then(|e| e.io_error_kind())
                == Some(std::io::ErrorKind::BrokenPipe)
    })
}

/// The repository named with `--repo` (or the default one) and the
/// settings of its store (`-o KEY=VALUE`).
#[derive(Debug, Clone, Default)]
pub struct RepoArg {
    pub location: Option<PathBuf>,
    pub options: SinkOptions,
    /// Where an encrypted repository's password comes from.
    pub passwords: password::Passwords,
}

/// Where the repository is, and whether it is the default one.
pub fn repo_location(repo: &RepoArg) -> Result<(Location, bool)> {
    match &repo.location {
        Some(text) => Ok((Location::parse(text.as_os_str())?, false)),
        None => {
            let base = dirs::data_local_dir()
                .ok_or_else(|| anyhow!("no data directory is known for this user; give --repo PATH"))?;
            Ok((Location::Local(base.join("cairn").join("repo")), true))
        }
    }
}

/// Paths a backup or restore must never touch: the repository, when it is
/// a directory here.
pub fn repo_skip(repo: &RepoArg) -> Result<Vec<PathBuf>> {
    Ok(match repo_location(repo)?.0 {
        Location::Local(dir) => vec![std::path::absolute(&dir).unwrap_or(dir)],
        Location::S3(_) => Vec::new(),
    })
}

/// Opens the repository. The default repository is created on first backup
/// (`create_default`); one named with --repo must exist.
pub fn open_repo(repo: RepoArg, create_default: bool) -> Result<Repository> {
    let (location, is_default) = repo_location(&repo)?;
    open_or_create(
        location,
        &repo.options,
        &repo.passwords,
        Create {
            create: is_default && create_default,
            encrypt: false,
        },
        "the default repository",
    )
}

/// Whether [`open_or_create`] creates a missing local repository, and
/// whether one created so is encrypted.
#[derive(Debug, Clone, Copy)]
pub struct Create {
    pub create: bool,
    pub encrypt: bool,
}

/// Opens the repository at `location`, creating it first when `create` is
/// set and nothing is there yet (`what` names it in messages). Only a local
/// directory is created this way; a bucket is created by `cairn init`.
pub fn open_or_create(
    location: Location,
    options: &SinkOptions,
    passwords: &password::Passwords,
    create: Create,
    what: &str,
) -> Result<Repository> {
    let path = match &location {
        Location::Local(path) => path.clone(),
        Location::S3(_) => {
            return match cairn::sink::open(&location, options, false) {
                Ok(sink) => Ok(Repository::open_with(sink, passwords)?),
                Err(e) if e.is_not_found() => Err(RepoError::NotFound {
                    location: location.to_string(),
                }
                .into()),
                Err(e) => Err(e.into()),
            }
        }
    };
    // Through `sink::open`: a directory on a network share gets retries.
    let sink = cairn::sink::open(&location, options, false)?;
    match Repository::open_with(sink.clone(), passwords) {
        Ok(repo) => Ok(repo),
        Err(RepoError::NotFound { .. }) if create.create && is_empty_or_missing(&path) => {
            let shown = path.display().to_string();
            let password = match create.encrypt {
                true => Some(
                    passwords
                        .new_password(&shown)
                        .map_err(|e| anyhow!("cannot create {what} at {shown}: {e}"))?,
                ),
                false => None,
            };
            std::fs::create_dir_all(&path).with_context(|| format!("cannot create {what} at {shown}"))?;
            let repo = Repository::init(sink, password.as_ref())
                .with_context(|| format!("cannot create {what} at {shown}"))?;
            let kind = if create.encrypt { "encrypted " } else { "" };
            eprintln!("created {kind}{what} at {shown}");
            Ok(repo)
        }
        Err(RepoError::NotFound { location }) if !is_empty_or_missing(&path) => {
            Err(RepoError::NotARepository {
                location,
                reason: "it has no config.json".into(),
            }
            .into())
        }
        Err(e) => Err(e.into()),
    }
}

pub fn is_empty_or_missing(path: &Path) -> bool {
    match std::fs::read_dir(path) {
        Ok(mut entries) => entries.next().is_none(),
        Err(e) => e.kind() == std::io::ErrorKind::NotFound,
    }
}

/// The key of env fingerprints. In an encrypted repository, a key derived
/// from its master key. In a plain one, a secret of this user's that no
/// repository holds (see `cairn::collect::fingerprint_secret`), with the
/// repository's id, so that fingerprints compare equal across a
/// repository's snapshots made by this user, differ between repositories,
/// and cannot be tested against guesses by whoever reads the repository.
/// Without the secret (no config directory can be written), the key is
/// the repository's alone, and a warning says so.
pub fn fingerprint_key(repo: &Repository) -> [u8; 32] {
    // An encrypted repository keys them from its master key: its
    // snapshots are sealed, and whoever holds a key shares the fingerprints.
    if let Some(key) = repo.crypto().fingerprint_key() {
        return key;
    }
    let id = repo.config().id.as_bytes();
    match cairn::collect::fingerprint_secret() {
        Ok(secret) => {
            let mut material = secret.to_vec();
            material.extend_from_slice(id);
            blake3::derive_key("cairn env fingerprint v2", &material)
        }
        Err(e) => {
            eprintln!(
                "warning: secrets are fingerprinted with the repository's id only (anyone who reads it can test guesses): {}",
                cairn::chain(&e)
            );
            blake3::derive_key("cairn env fingerprint v1", id)
        }
    }
}

/// What the profile a snapshot was made with finds on this machine now:
/// its facts and the contents of its env and command roots, by prefix.
/// `None` when the snapshot has no profile or it is not found here.
pub struct LiveState {
    pub facts: std::collections::BTreeMap<String, String>,
    pub contents: std::collections::BTreeMap<String, Vec<u8>>,
}

pub fn live_state(
    repo: &Repository,
    snapshot: &cairn::repo::snapshot::Snapshot,
) -> Result<Option<LiveState>> {
    use cairn::profile::resolve::{process_var, process_vars, resolve, ResolveOptions};
    let Some(name) = &snapshot.record.profile else {
        return Ok(None);
    };
    let Ok(profile) = cairn::profile::find(name) else {
        eprintln!("note: profile {name} is not found here; facts and environment are not compared");
        return Ok(None);
    };
    let options = ResolveOptions {
        lookup: &process_var,
        vars: &process_vars,
        run_commands: true,
        fingerprint_key: fingerprint_key(repo),
    };
    let resolved = resolve(&profile, &options)?;
    let mut contents = std::collections::BTreeMap::new();
    for root in resolved.roots {
        let bytes = match root.content {
            Some(bytes) => bytes,
            None if root.collector == "command" => match std::fs::read(&root.path) {
                Ok(bytes) if bytes.len() <= 1 << 20 => bytes,
                _ => continue,
            },
            None => continue,
        };
        contents.insert(root.prefix, bytes);
    }
    Ok(Some(LiveState {
        facts: resolved.facts,
        contents,
    }))
}

/// A snapshot as `--json` shows it: its record with its id added.
#[derive(serde::Serialize)]
pub struct SnapshotJson<'a> {
    pub id: String,
    #[serde(flatten)]
    pub record: &'a cairn::repo::snapshot::SnapshotRecord,
}

/// Prints a value as one JSON document on stdout.
pub fn print_json<T: serde::Serialize>(value: &T) -> Result<()> {
    let out = serde_json::to_string_pretty(value).context("cannot encode JSON output")?;
    outln!("{out}")?;
    Ok(())
}
