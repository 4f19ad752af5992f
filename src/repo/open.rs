//! Creating and opening a repository: its config checked, and an
//! encrypted one's master key unlocked with a password.

use std::sync::Arc;

use super::chunker::Chunker;
use super::config::{Config, ENCRYPTED_VERSION, FORMAT_VERSION};
use super::crypto::{self, Crypto};
use super::id::ObjectId;
use super::keys::{self, Password, PasswordSource};
use super::{RepoError, Repository, READ_ATTEMPTS};
use crate::sink::{ObjectKind, Sink, SinkError, CONFIG_NAME};

impl Repository {
    /// Creates a repository in an empty store: encrypted, with one key
    /// opened by `password`, when one is given.
    pub fn init(sink: Arc<dyn Sink>, password: Option<&Password>) -> Result<Repository, RepoError> {
        let location = sink.location();
        if !sink.list(ObjectKind::Config)?.is_empty() {
            return Err(RepoError::AlreadyExists { location });
        }
        let id = format!(
            "{:016x}{:016x}",
            crate::sink::local::random_u64(),
            crate::sink::local::random_u64()
        );
        let config = match password {
            Some(_) => Config::new_encrypted(id),
            None => Config::new(id),
        };
        let bytes = serde_json::to_vec_pretty(&config).map_err(|e| RepoError::Encode {
            what: "config".into(),
            source: e,
        })?;
        let mut key = None;
        if let Some(password) = password {
            // The key first: config.json is what makes a repository exist.
            let seal_err = |source| RepoError::Seal {
                what: "the master key",
                source,
            };
            let master = crypto::Secret::random().map_err(seal_err)?;
            key = Some(keys::write_key(
                sink.as_ref(),
                &master,
                &ObjectId::of(&bytes),
                password,
            )?);
        }
        match sink.write_bytes(ObjectKind::Config, CONFIG_NAME, &bytes) {
            Err(SinkError::AlreadyExists { .. }) => {
                // Another init won: its repository does not keep our key.
                if let Some(name) = key {
                    let _ = sink.delete(ObjectKind::Key, &name);
                }
                return Err(RepoError::AlreadyExists { location });
            }
            other => other?,
        };
        match password {
            Some(p) => Repository::open_with(sink, &keys::Given(p.as_bytes().to_vec())),
            None => Repository::open(sink),
        }
    }

    /// Opens a plain repository; an encrypted one asks for a password
    /// that is not there ([`Repository::open_with`] gives one).
    pub fn open(sink: Arc<dyn Sink>) -> Result<Repository, RepoError> {
        Repository::open_with(sink, &keys::NoPassword)
    }

    /// Opens a repository, refusing a format this cairn does not know. An
    /// encrypted one takes its password from `passwords`, asked only then.
    /// A config.json that does not parse is read again before it is
    /// refused: it is not named by its hash, so a garbled transfer shows
    /// only as bad JSON.
    pub fn open_with(sink: Arc<dyn Sink>, passwords: &dyn PasswordSource) -> Result<Repository, RepoError> {
        let location = sink.location();
        let read = || match sink.read(ObjectKind::Config, CONFIG_NAME) {
            Ok(bytes) => Ok(bytes),
            Err(e) if e.is_not_found() => Err(RepoError::NotFound {
                location: location.clone(),
            }),
            Err(e) => Err(e.into()),
        };
        let mut bytes = read()?;
        let mut parsed = Repository::parse_config(&location, &bytes);
        for _ in 1..READ_ATTEMPTS {
            if parsed.is_ok() {
                break;
            }
            bytes = read()?;
            parsed = Repository::parse_config(&location, &bytes);
        }
        let (config, mut chunker) = parsed?;
        let config_hash = ObjectId::of(&bytes);
        let (crypto, opened_by, master) = if config.encryption.is_some() {
            let (master, token) = keys::unlock(sink.as_ref(), &config_hash, passwords)?;
            (Crypto::from_master(&master), Some(token), Some(Arc::new(master)))
        } else {
            if !sink.list(ObjectKind::Key)?.is_empty() {
                return Err(RepoError::PlainWithKeys { location });
            }
            (Crypto::plain(), None, None)
        };
        chunker = chunker.keyed(crypto.chunker_key());
        Ok(Repository {
            sink,
            config,
            chunker,
            crypto,
            config_hash,
            opened_by,
            master,
            snapshots_read: Default::default(),
        })
    }

    /// A config.json's bytes, parsed and checked against what this reader
    /// accepts.
    pub fn parse_config(location: &str, bytes: &[u8]) -> Result<(Config, Chunker), RepoError> {
        let refuse = |reason: String| RepoError::NotARepository {
            location: location.to_string(),
            reason,
        };
        let value: serde_json::Value =
            serde_json::from_slice(bytes).map_err(|e| refuse(format!("config.json is not JSON ({e})")))?;
        match value.get("version").and_then(|v| v.as_u64()) {
            Some(v) if v == FORMAT_VERSION as u64 || v == ENCRYPTED_VERSION as u64 => {}
            Some(v) => {
                return Err(RepoError::UnsupportedVersion {
                    location: location.to_string(),
                    version: u32::try_from(v).unwrap_or(u32::MAX),
                })
            }
            None => return Err(refuse("config.json has no format version".into())),
        }
        let config: Config =
            serde_json::from_value(value).map_err(|e| refuse(format!("config.json: {e}")))?;
        let chunker = Chunker::new(&config.chunker)
            .ok_or_else(|| refuse("config.json has chunker sizes outside FastCDC's limits".into()))?;
        config
            .check()
            .map_err(|why| refuse(format!("config.json: {why}")))?;
        Ok((config, chunker))
    }
}
