//! Repository format 1 (see `docs/FORMAT.md`): config, packs, index files,
//! manifests and snapshot records, reached only through a [`Sink`].

pub mod check;
pub mod chunker;
pub mod config;
pub mod consolidate;
pub mod crypto;
pub mod id;
pub mod index;
pub mod keys;
pub mod lock;
pub mod manifest;
pub mod pack;
pub mod packer;
pub mod prune;
pub mod reader;
pub mod repair;
pub mod shape;
pub mod snapshot;
pub mod workers;

use std::sync::Arc;

use crate::sink::{ObjectKind, Sink, SinkError, CONFIG_NAME};
use chunker::Chunker;
use config::{Config, ENCRYPTED_VERSION, FORMAT_VERSION};
use crypto::{Crypto, Domain};
use id::ObjectId;
use index::{Index, IndexFile};
use keys::{Password, PasswordSource};
use manifest::ManifestError;
use pack::PackError;
use snapshot::{RefError, Snapshot, SnapshotRecord};

#[derive(Debug, thiserror::Error)]
pub enum RepoError {
    #[error("no repository at {location}; create one with `cairn init --repo {location}`")]
    NotFound { location: String },
    #[error("{location} is not a cairn repository: {reason}")]
    NotARepository { location: String, reason: String },
    #[error("repository {location} has format version {version}; this cairn reads versions {FORMAT_VERSION} and {ENCRYPTED_VERSION} only, upgrade cairn")]
    UnsupportedVersion { location: String, version: u32 },
    #[error("repository {location} is encrypted and {detail}")]
    NoPassword { location: String, detail: String },
    #[error("wrong password for repository {location} (no key file opens with it)")]
    WrongPassword { location: String },
    #[error(
        "repository {location} is encrypted but holds no key file that can be read; it cannot be opened"
    )]
    NoKeys { location: String },
    #[error("the config.json of repository {location} is not the one its keys were made for: it was replaced; refusing to use it")]
    ConfigReplaced { location: String },
    #[error("repository {location} says it is plain but holds key files: its config.json was replaced; refusing to use it")]
    PlainWithKeys { location: String },
    #[error("repository {location} is not encrypted: it has no keys")]
    NotEncrypted { location: String },
    #[error("key {name}")]
    Key {
        name: String,
        #[source]
        source: keys::KeyError,
    },
    #[error("cannot seal {what}")]
    Seal {
        what: &'static str,
        #[source]
        source: crypto::SealError,
    },
    #[error("a repository already exists at {location}")]
    AlreadyExists { location: String },
    #[error("repository is locked: {holders} (if that process is gone, run `cairn unlock`)")]
    Locked { holders: String },
    #[error("{kind} {name} is damaged: {detail}")]
    Corrupt {
        kind: ObjectKind,
        name: String,
        detail: String,
    },
    #[error(
        "snapshot {name} was written by a newer cairn (record version {version}); upgrade cairn to read it"
    )]
    NewerSnapshot { name: String, version: u32 },
    #[error("blob {0} is not in the index")]
    MissingBlob(ObjectId),
    #[error("pack {pack}")]
    Pack {
        pack: ObjectId,
        #[source]
        source: PackError,
    },
    #[error("snapshot {snapshot}")]
    Manifest {
        snapshot: String,
        #[source]
        source: ManifestError,
    },
    #[error("the manifest of snapshot {snapshot} cannot be read (`cairn check` says what is damaged)")]
    ManifestLost {
        snapshot: String,
        #[source]
        source: Box<RepoError>,
    },
    #[error(transparent)]
    Ref(#[from] RefError),
    #[error("cannot encode {what}")]
    Encode {
        what: String,
        #[source]
        source: serde_json::Error,
    },
    #[error(transparent)]
    Sink(#[from] SinkError),
    /// zstd failed in memory: not the store's fault, never retried.
    #[error("cannot compress {what}")]
    Compress {
        what: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    ManifestFormat(#[from] ManifestError),
    #[error("internal error: a worker thread panicked")]
    ThreadPanicked,
    #[error("internal error: the tree walk stopped before the end of the tree")]
    WalkStopped,
    #[error("the pack writer stopped")]
    WriterStopped,
    #[error("interrupted")]
    Interrupted,
    #[error("the disk of {location} is full: {free} free, and the next pack needs {needed}; the backup stopped and saved no snapshot (what it wrote is reused next time); free some space and run it again")]
    NoSpace {
        location: String,
        free: String,
        needed: String,
    },
}

/// Reads of an object (or frame) whose bytes are wrong before it counts as
/// damaged: a garbled or short transfer is read again.
pub const READ_ATTEMPTS: u32 = 3;

/// An index file that prune or repair writes holds at most this many
/// blobs (a pack's entries are never split).
pub const BLOBS_PER_INDEX_FILE: usize = 65_536;

/// An index file's stored bytes, compressed at `level`, and their name.
pub fn encode_index_file(file: &IndexFile, level: i32) -> Result<(ObjectId, Vec<u8>), RepoError> {
    // JSON goes straight into the compressor: only the compressed bytes
    // are ever held whole.
    let compress_err = |source| RepoError::Compress {
        what: "an index file",
        source,
    };
    let mut encoder = zstd::stream::Encoder::new(Vec::new(), level).map_err(compress_err)?;
    serde_json::to_writer(&mut encoder, file).map_err(|e| RepoError::Encode {
        what: "index".into(),
        source: e,
    })?;
    let bytes = encoder.finish().map_err(compress_err)?;
    Ok((ObjectId::of(&bytes), bytes))
}

impl RepoError {
    /// The cause alone, for a message that already says which manifest
    /// could not be read.
    pub fn manifest_cause(&self) -> String {
        match self {
            RepoError::ManifestLost { source, .. } => crate::chain(source.as_ref()),
            other => crate::chain(other),
        }
    }
}

/// An open repository: its store, its fixed parameters and, when it is
/// encrypted, its keys.
#[derive(Clone)]
pub struct Repository {
    sink: Arc<dyn Sink>,
    config: Config,
    chunker: Chunker,
    crypto: Crypto,
    /// The hash of config.json's bytes (sealed in every key file).
    config_hash: ObjectId,
    /// The key file that opened an encrypted repository.
    key_name: Option<String>,
    /// Its master key: only for writing key files (`key add`, `passwd`).
    master: Option<Arc<crypto::Secret>>,
}

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
        let (crypto, key_name, master) = if config.encryption.is_some() {
            let (master, name) = keys::unlock(sink.as_ref(), &config_hash, passwords)?;
            (Crypto::from_master(&master), Some(name), Some(Arc::new(master)))
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
            key_name,
            master,
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

    pub fn sink(&self) -> &Arc<dyn Sink> {
        &self.sink
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    pub fn chunker(&self) -> &Chunker {
        &self.chunker
    }

    /// How this repository seals and names blobs.
    pub fn crypto(&self) -> &Crypto {
        &self.crypto
    }

    pub fn is_encrypted(&self) -> bool {
        self.crypto.is_encrypted()
    }

    /// The hash of config.json's bytes.
    pub fn config_hash(&self) -> &ObjectId {
        &self.config_hash
    }

    /// The key file that opened this (encrypted) repository.
    pub fn key_name(&self) -> Option<&str> {
        self.key_name.as_deref()
    }

    /// Writes a key file that opens this encrypted repository with
    /// `password`; its name.
    pub fn add_key(&self, password: &Password) -> Result<String, RepoError> {
        let master = self.master.as_ref().ok_or_else(|| RepoError::NotEncrypted {
            location: self.sink.location(),
        })?;
        keys::write_key(self.sink.as_ref(), master, &self.config_hash, password)
    }

    /// Stored bytes of `kind` opened (unchanged in a plain repository); an
    /// envelope that does not open is damage to the object `name`.
    pub fn open_sealed(
        &self,
        kind: ObjectKind,
        domain: Domain,
        name: &str,
        bytes: Vec<u8>,
    ) -> Result<Vec<u8>, RepoError> {
        self.crypto.open(domain, bytes).map_err(|e| RepoError::Corrupt {
            kind,
            name: name.to_string(),
            detail: e.to_string(),
        })
    }

    /// Bytes as they are stored (sealed in an encrypted repository).
    pub fn seal(&self, what: &'static str, domain: Domain, bytes: Vec<u8>) -> Result<Vec<u8>, RepoError> {
        self.crypto
            .seal(domain, bytes)
            .map_err(|source| RepoError::Seal { what, source })
    }

    /// Reads a content-named object and checks its bytes against its name.
    /// Bytes that do not match are read again (up to [`READ_ATTEMPTS`]
    /// reads): a garbled transfer is not a damaged object.
    pub fn read_verified(&self, kind: ObjectKind, name: &str) -> Result<Vec<u8>, RepoError> {
        let (bytes, actual) = self.read_object(kind, name)?;
        if actual.to_hex() != name {
            return Err(RepoError::Corrupt {
                kind,
                name: name.to_string(),
                detail: format!("its bytes hash to {actual}"),
            });
        }
        Ok(bytes)
    }

    /// The packs the store holds, by name.
    pub fn stored_packs(&self) -> Result<std::collections::HashSet<ObjectId>, RepoError> {
        Ok(self
            .sink
            .list(ObjectKind::Pack)?
            .into_iter()
            .filter_map(|o| o.name.parse().ok())
            .collect())
    }

    /// A content-named object's bytes and what they hash to, read again
    /// (up to [`READ_ATTEMPTS`] reads) while that is not its name: a
    /// garbled transfer is not a damaged object. The caller judges what
    /// is left (check reports it, repair salvages what verifies).
    pub fn read_object(&self, kind: ObjectKind, name: &str) -> Result<(Vec<u8>, ObjectId), RepoError> {
        let mut bytes = self.sink.read(kind, name)?;
        let mut actual = ObjectId::of(&bytes);
        for _ in 1..READ_ATTEMPTS {
            if actual.to_hex() == name {
                break;
            }
            bytes = self.sink.read(kind, name)?;
            actual = ObjectId::of(&bytes);
        }
        Ok((bytes, actual))
    }

    pub fn read_index_file(&self, name: &str) -> Result<IndexFile, RepoError> {
        let bytes = self.read_verified(ObjectKind::Index, name)?;
        let bytes = self.open_sealed(ObjectKind::Index, Domain::Index, name, bytes)?;
        index::decode_stored(&bytes).map_err(|detail| RepoError::Corrupt {
            kind: ObjectKind::Index,
            name: name.to_string(),
            detail,
        })
    }

    /// Loads every index file. A damaged one (its bytes do not match its
    /// name, or do not decode) is passed over with a warning naming it: only
    /// its own blobs become unknown (a backup stores them again, a restore
    /// that needs them says which files they belong to). A store that cannot be read is still an
    /// error. An index file may vanish between the listing and its read (a
    /// backup merged it into a new one, FORMAT.md section 10 rule 10): the
    /// listing is taken again and the names not yet read are read.
    pub fn load_index(&self) -> Result<Index, RepoError> {
        const ROUNDS: usize = 3;
        let mut index = Index::default();
        let mut loaded = std::collections::HashSet::new();
        for round in 1..=ROUNDS {
            let names: Vec<String> = self
                .sink
                .list(ObjectKind::Index)?
                .into_iter()
                .map(|i| i.name)
                .filter(|n| !loaded.contains(n))
                .collect();
            let files = self.read_all(&names, |name| match self.read_index_file(name) {
                Err(RepoError::Sink(e)) if e.is_not_found() && round < ROUNDS => Ok(None),
                Err(e @ RepoError::Corrupt { .. }) => Ok(Some(Err(e))),
                other => other.map(|file| Some(Ok(file))),
            })?;
            let mut vanished = false;
            for (name, file) in names.into_iter().zip(files) {
                match file {
                    Some(Ok(file)) => index.add_file(&file),
                    Some(Err(e)) => {
                        tracing::warn!(
                            "passed over: {}; the blobs it lists count as unknown until `cairn repair index`",
                            crate::chain(&e)
                        );
                    }
                    None => {
                        vanished = true;
                        continue;
                    }
                }
                loaded.insert(name);
            }
            if !vanished {
                break;
            }
            tracing::debug!("an index file vanished while loading: listing again");
        }
        Ok(index)
    }

    /// `read` of every name, in order: with as many requests at once as the
    /// store asks for (a network store waits on round trips, a local disk
    /// does not).
    fn read_all<T: Send>(
        &self,
        names: &[String],
        read: impl Fn(&str) -> Result<T, RepoError> + Sync,
    ) -> Result<Vec<T>, RepoError> {
        let threads = self.sink.capabilities().concurrency.clamp(1, 16).min(names.len());
        if threads <= 1 {
            return names.iter().map(|n| read(n)).collect();
        }
        let per = names.len().div_ceil(threads);
        std::thread::scope(|scope| {
            let parts: Vec<_> = names
                .chunks(per)
                .map(|part| scope.spawn(|| part.iter().map(|n| read(n)).collect::<Result<Vec<T>, _>>()))
                .collect();
            let mut out = Vec::with_capacity(names.len());
            for part in parts {
                out.extend(part.join().map_err(|_| RepoError::ThreadPanicked)??);
            }
            Ok(out)
        })
    }

    pub fn write_index_file(&self, file: &IndexFile) -> Result<ObjectId, RepoError> {
        let (id, bytes) = self.encode_index(file, self.config.compression.level)?;
        self.write_content_named(ObjectKind::Index, id, bytes)?;
        Ok(id)
    }

    /// An index file's stored bytes (compressed at `level`, then sealed)
    /// and their name.
    pub fn encode_index(&self, file: &IndexFile, level: i32) -> Result<(ObjectId, Vec<u8>), RepoError> {
        let (id, bytes) = encode_index_file(file, level)?;
        if !self.is_encrypted() {
            return Ok((id, bytes));
        }
        let sealed = self.seal("an index file", Domain::Index, bytes)?;
        Ok((ObjectId::of(&sealed), sealed))
    }

    /// Writes `packs` as index files of at most [`BLOBS_PER_INDEX_FILE`]
    /// blobs each (a pack's entries stay in one file); returns their ids.
    pub fn write_index_files(&self, packs: Vec<index::IndexPack>) -> Result<Vec<ObjectId>, RepoError> {
        self.write_index_files_avoiding(packs, &std::collections::HashSet::new())
    }

    /// [`Repository::write_index_files`], never under one of the names in
    /// `avoid` (damaged index files that are to be replaced: a new file of
    /// the same content would be taken as stored already). Such a file is
    /// compressed at another level, which gives it other bytes.
    pub fn write_index_files_avoiding(
        &self,
        packs: Vec<index::IndexPack>,
        avoid: &std::collections::HashSet<String>,
    ) -> Result<Vec<ObjectId>, RepoError> {
        let mut written = Vec::new();
        let mut group = IndexFile::default();
        let mut blobs = 0usize;
        let mut packs = packs.into_iter().peekable();
        while let Some(pack) = packs.next() {
            blobs += pack.blobs.len();
            group.packs.push(pack);
            if blobs >= BLOBS_PER_INDEX_FILE || packs.peek().is_none() {
                written.push(self.write_index_avoiding(&std::mem::take(&mut group), avoid)?);
                blobs = 0;
            }
        }
        Ok(written)
    }

    fn write_index_avoiding(
        &self,
        file: &IndexFile,
        avoid: &std::collections::HashSet<String>,
    ) -> Result<ObjectId, RepoError> {
        let level = self.config.compression.level;
        for other in std::iter::once(level).chain(1..=19) {
            let (id, bytes) = self.encode_index(file, other)?;
            if !avoid.contains(&id.to_hex()) {
                self.write_content_named(ObjectKind::Index, id, bytes)?;
                return Ok(id);
            }
        }
        // Twenty levels all giving a damaged file's name: out of reach.
        Err(RepoError::Corrupt {
            kind: ObjectKind::Index,
            name: "(new)".into(),
            detail: "every encoding collides with a damaged index file".into(),
        })
    }

    /// Writes an object named by its hash. If the name exists, the same bytes
    /// are already stored (or `check` will say they are damaged), so that is
    /// success: concurrent writers of the same content never conflict.
    pub fn write_content_named(
        &self,
        kind: ObjectKind,
        id: ObjectId,
        bytes: Vec<u8>,
    ) -> Result<(), RepoError> {
        match self.sink.write(kind, &id.to_hex(), bytes.into()) {
            Ok(_) | Err(SinkError::AlreadyExists { .. }) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    pub fn read_snapshot(&self, name: &str) -> Result<Snapshot, RepoError> {
        let bytes = self.read_verified(ObjectKind::Snapshot, name)?;
        let bytes = self.open_sealed(ObjectKind::Snapshot, Domain::Snapshot, name, bytes)?;
        let record: SnapshotRecord = serde_json::from_slice(&bytes).map_err(|e| RepoError::Corrupt {
            kind: ObjectKind::Snapshot,
            name: name.to_string(),
            detail: format!("bad JSON: {e}"),
        })?;
        let id = name.parse().map_err(|_| RepoError::Corrupt {
            kind: ObjectKind::Snapshot,
            name: name.to_string(),
            detail: "name is not an object id".into(),
        })?;
        if record.version > snapshot::RECORD_VERSION {
            return Err(RepoError::NewerSnapshot {
                name: name.to_string(),
                version: record.version,
            });
        }
        Ok(Snapshot { id, record })
    }

    /// Every snapshot that can be read, oldest first. A damaged record, or
    /// one of a newer cairn, is passed over with a warning naming it: one
    /// bad record must not take every other snapshot down. (What must know
    /// every snapshot, prune, uses [`Repository::load_snapshots_strict`].)
    pub fn load_snapshots(&self) -> Result<Vec<Snapshot>, RepoError> {
        self.load_snapshots_named(&self.snapshot_names()?)
    }

    /// Every snapshot, oldest first; any record that cannot be read is an
    /// error.
    pub fn load_snapshots_strict(&self) -> Result<Vec<Snapshot>, RepoError> {
        let names = self.snapshot_names()?;
        let mut out = self.read_all(&names, |name| self.read_snapshot(name))?;
        out.sort_by(|a, b| a.record.time.cmp(&b.record.time).then(a.id.cmp(&b.id)));
        Ok(out)
    }

    /// The names of the snapshot records, unread.
    pub fn snapshot_names(&self) -> Result<Vec<String>, RepoError> {
        Ok(self
            .sink
            .list(ObjectKind::Snapshot)?
            .into_iter()
            .map(|info| info.name)
            .collect())
    }

    /// The snapshots of these names (from [`Repository::snapshot_names`]),
    /// oldest first.
    /// Passes over records that cannot be read, as [`Repository::load_snapshots`].
    pub fn load_snapshots_named(&self, names: &[String]) -> Result<Vec<Snapshot>, RepoError> {
        let read = self.read_all(names, |name| match self.read_snapshot(name) {
            Ok(s) => Ok(Some(s)),
            // Forgotten since the listing.
            Err(RepoError::Sink(e)) if e.is_not_found() => Ok(None),
            Err(e @ (RepoError::Corrupt { .. } | RepoError::NewerSnapshot { .. })) => {
                tracing::warn!("passed over: {}", crate::chain(&e));
                Ok(None)
            }
            Err(e) => Err(e),
        })?;
        let mut out: Vec<Snapshot> = read.into_iter().flatten().collect();
        out.sort_by(|a, b| a.record.time.cmp(&b.record.time).then(a.id.cmp(&b.id)));
        Ok(out)
    }

    /// Removes a snapshot record (`forget`, under the exclusive lock). The
    /// data only it used stays until prune.
    pub fn delete_snapshot(&self, id: &ObjectId) -> Result<(), RepoError> {
        self.delete(ObjectKind::Snapshot, &id.to_hex())
    }

    /// Deletes an object (forget, prune, index consolidation: under the
    /// exclusive lock). One already gone is no error: another process, or
    /// an earlier run that was stopped, deleted it first.
    pub fn delete(&self, kind: ObjectKind, name: &str) -> Result<(), RepoError> {
        match self.sink.delete(kind, name) {
            Err(e) if e.is_not_found() => Ok(()),
            other => Ok(other?),
        }
    }

    pub fn write_snapshot(&self, record: &SnapshotRecord) -> Result<ObjectId, RepoError> {
        let (id, bytes) = self.encode_snapshot(record)?;
        self.write_content_named(ObjectKind::Snapshot, id, bytes)?;
        Ok(id)
    }

    /// A record's stored bytes and the name they give it.
    pub fn encode_snapshot(&self, record: &SnapshotRecord) -> Result<(ObjectId, Vec<u8>), RepoError> {
        let bytes = serde_json::to_vec_pretty(record).map_err(|e| RepoError::Encode {
            what: "snapshot".into(),
            source: e,
        })?;
        let bytes = self.seal("a snapshot record", Domain::Snapshot, bytes)?;
        Ok((ObjectId::of(&bytes), bytes))
    }

    pub fn find_snapshot(&self, query: &str) -> Result<Snapshot, RepoError> {
        self.find_snapshot_filtered(query, &snapshot::Filter::default())
    }

    /// The snapshot `query` names among those `filter` lets through.
    pub fn find_snapshot_filtered(
        &self,
        query: &str,
        filter: &snapshot::Filter,
    ) -> Result<Snapshot, RepoError> {
        let snapshots = self.load_snapshots()?;
        Ok(snapshot::resolve_filtered(&snapshots, query, filter)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A frame that does not decompress printed, with `{:#}`, "pack P: frame
    /// at offset 0 does not decompress: E: frame at offset 0 does not
    /// decompress: E: E": each level put its source in its own message too.
    #[test]
    fn a_damaged_pack_frame_printed_its_cause_three_times() {
        let pack = ObjectId::of(b"pack");
        let damaged = || RepoError::Pack {
            pack,
            source: PackError::Decompress {
                offset: 0,
                source: std::io::Error::other("unknown frame descriptor"),
            },
        };
        let expected =
            format!("pack {pack}: frame at offset 0 does not decompress: unknown frame descriptor");
        assert_eq!(format!("{:#}", anyhow::Error::from(damaged())), expected);
        assert_eq!(crate::chain(&damaged()), expected);

        let bad_line = RepoError::Manifest {
            snapshot: "1234abcd".into(),
            source: ManifestError::BadLine {
                line: 7,
                source: serde_json::from_str::<u32>("x").unwrap_err(),
            },
        };
        let text = crate::chain(&bad_line);
        assert!(
            text.starts_with("snapshot 1234abcd: manifest line 7: expected value"),
            "{text}"
        );
        assert_eq!(text.matches("expected value").count(), 1, "{text}");
    }
}
