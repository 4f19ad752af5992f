//! `cairn key`: the passwords of an encrypted repository. Each is a key
//! file wrapping the same master key (FORMAT.md section 15), so adding
//! or removing one never touches the data.

use anyhow::{anyhow, bail, Context, Result};
use cairn::repo::keys::{self, KeyInfo};
use cairn::repo::lock::{self, LockKind};
use cairn::repo::Repository;
use cairn::sink::ObjectKind;

use super::password::Passwords;
use super::{exit, open_repo, print_json, RepoArg};
use crate::cli::KeyCommand;
use zeroize::Zeroizing;

pub fn run(repo: RepoArg, command: KeyCommand) -> Result<u8> {
    let repo = open_repo(repo, false)?;
    if !repo.is_encrypted() {
        bail!(
            "repository {} is not encrypted: it has no keys (copy its snapshots into one made with `cairn init --encrypt`)",
            repo.sink().location()
        );
    }
    match command {
        KeyCommand::List { json } => list(&repo, json),
        KeyCommand::Store { remove, file: None } => store(&repo, remove),
        KeyCommand::Store {
            remove,
            file: Some(path),
        } => store_file(&repo, remove, &path),
        KeyCommand::Add => {
            let _lock = lock::acquire(&repo, LockKind::Shared)?;
            let name = add(&repo)?;
            outln!("added key {}", short(&name))?;
            Ok(exit::OK)
        }
        KeyCommand::Remove { id } => {
            let _lock = lock::acquire(&repo, LockKind::Exclusive)?;
            let name = resolve(&repo, &id)?;
            if Some(name.as_str()) == repo.key_name() {
                bail!("key {} is the one this command was opened with; open the repository with another key's password to remove it, or use `cairn key passwd`", short(&name));
            }
            remove(&repo, &name)?;
            outln!("removed key {}", short(&name))?;
            Ok(exit::OK)
        }
        KeyCommand::Passwd => {
            let _lock = lock::acquire(&repo, LockKind::Exclusive)?;
            let old = repo.key_name().unwrap_or_default().to_string();
            // The new key first: a crash between leaves both passwords working.
            let name = add(&repo)?;
            remove(&repo, &old)?;
            outln!(
                "changed the password: key {} replaces key {}",
                short(&name),
                short(&old)
            )?;
            Ok(exit::OK)
        }
    }
}

/// Saves an unlock token for the key that opened the repository in the OS
/// credential store (or removes it), and reads it back. The token is the
/// key's key-encryption key, not the password: unattended commands skip
/// the password's half-second key derivation, a password used elsewhere
/// too is never stored, and removing or changing the key revokes it.
fn store(repo: &Repository, remove: bool) -> Result<u8> {
    let location = repo.sink().location();
    if remove {
        match cairn::credstore::remove(&location)? {
            true => outln!("removed the unlock key of {location} from the credential store")?,
            false => outln!("the credential store held no unlock key of {location}")?,
        }
        return Ok(exit::OK);
    }
    let token = opened_token(repo)?;
    let encoded = token.encode();
    cairn::credstore::save(&location, &encoded)?;
    match cairn::credstore::lookup(&location)?.map(Zeroizing::new) {
        Some(kept) if kept.as_slice() == encoded.as_slice() => {}
        _ => bail!("the credential store did not keep the unlock key of {location}"),
    }
    outln!(
        "stored an unlock key for key {} of {location} in the credential store: cairn opens the repository with it when no password is given (scheduled jobs), until that key is removed or its password changed",
        short(&token.key)
    )?;
    Ok(exit::OK)
}

/// [`store`] into a file (mode 0600, replaced whole) for hosts with no
/// credential store: jobs name it with `CAIRN_UNLOCK_KEY_FILE`.
fn store_file(repo: &Repository, remove: bool, path: &std::path::Path) -> Result<u8> {
    let location = repo.sink().location();
    if remove {
        std::fs::remove_file(path).with_context(|| format!("cannot remove {}", path.display()))?;
        outln!("removed the unlock key file {}", path.display())?;
        return Ok(exit::OK);
    }
    let token = opened_token(repo)?;
    cairn::private::replace(path, &token.encode())
        .with_context(|| format!("cannot write the unlock key file {}", path.display()))?;
    outln!(
        "wrote an unlock key for key {} of {location} to {} (mode 0600): with CAIRN_UNLOCK_KEY_FILE naming it, cairn opens the repository without a password, until that key is removed or its password changed",
        short(&token.key),
        path.display()
    )?;
    Ok(exit::OK)
}

/// What the key that opened `repo` stores as its unlock key.
fn opened_token(repo: &Repository) -> Result<&keys::UnlockToken> {
    repo.unlock_token()
        .ok_or_else(|| anyhow!("no key opened {}", repo.sink().location()))
}

fn add(repo: &Repository) -> Result<String> {
    let location = repo.sink().location();
    let password = Passwords::new_key()
        .new_password(&location)
        .map_err(|e| anyhow!("cannot add a key to {location}: {e}"))?;
    Ok(repo.add_key(&password)?)
}

/// Deletes a key file, unless it is the last one that can be read.
fn remove(repo: &Repository, name: &str) -> Result<()> {
    let others = keys::read_keys(repo.sink().as_ref())?
        .into_iter()
        .filter(|(n, _)| n != name)
        .count();
    if others == 0 {
        bail!(
            "key {} is the repository's last key; it cannot be removed",
            short(name)
        );
    }
    repo.delete(ObjectKind::Key, name)?;
    Ok(())
}

/// The key file a full id or a unique prefix names.
fn resolve(repo: &Repository, id: &str) -> Result<String> {
    let names: Vec<String> = repo
        .sink()
        .list(ObjectKind::Key)?
        .into_iter()
        .map(|o| o.name)
        .filter(|n| n.starts_with(id))
        .collect();
    match names.as_slice() {
        [one] if !id.is_empty() => Ok(one.clone()),
        [] => bail!(
            "no key {id:?} in {} (`cairn key list` shows them)",
            repo.sink().location()
        ),
        _ => bail!(
            "key id {id:?} is ambiguous: {}",
            names.iter().map(|n| short(n)).collect::<Vec<_>>().join(", ")
        ),
    }
}

/// A key's id as listings show it (a planted name may be shorter).
fn short(name: &str) -> &str {
    name.get(..8).unwrap_or(name)
}

#[derive(serde::Serialize)]
struct KeyJson {
    id: String,
    current: bool,
    #[serde(flatten)]
    info: Option<KeyInfo>,
    kdf: keys::KdfParams,
}

fn list(repo: &Repository, json: bool) -> Result<u8> {
    let _lock = lock::acquire(repo, LockKind::Shared)?;
    let mut out = Vec::new();
    for (name, file) in keys::read_keys(repo.sink().as_ref())? {
        let info = match keys::read_info(&file, repo.crypto()) {
            Ok(info) => Some(info),
            Err(e) => {
                eprintln!("warning: key {}: {e}", short(&name));
                None
            }
        };
        out.push(KeyJson {
            current: Some(name.as_str()) == repo.key_name(),
            id: name,
            info,
            kdf: file.kdf,
        });
    }
    out.sort_by(|a, b| {
        a.info
            .as_ref()
            .map(|i| i.created)
            .cmp(&b.info.as_ref().map(|i| i.created))
    });
    if json {
        print_json(&out)?;
        return Ok(exit::OK);
    }
    outln!(
        " {:<8}  {:<19}  {:<20}  {:<12}  KDF",
        "ID",
        "CREATED",
        "HOST",
        "USER"
    )?;
    for k in &out {
        let (created, host, user) = match &k.info {
            Some(i) => (
                i.created.format("%Y-%m-%d %H:%M:%S").to_string(),
                i.host.clone(),
                i.user.clone(),
            ),
            None => ("?".into(), "?".into(), "?".into()),
        };
        outln!(
            "{}{:<8}  {created:<19}  {host:<20}  {user:<12}  argon2id {} MiB, {} passes",
            if k.current { "*" } else { " " },
            short(&k.id),
            k.kdf.memory_kib / 1024,
            k.kdf.iterations
        )?;
    }
    Ok(exit::OK)
}
