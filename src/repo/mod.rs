//! The repository format (`docs/FORMAT.md`; plain and encrypted): config, packs, index files,
//! manifests and snapshot records, reached only through a [`Sink`].

pub mod check;
pub mod chunker;
pub mod config;
pub mod consolidate;
pub mod crypto;
mod error;
pub mod id;
pub mod index;
pub mod keys;
pub mod lock;
pub mod manifest;
mod open;
pub mod pack;
pub mod packer;
pub mod prune;
pub mod reader;
mod records;
pub mod repair;
pub mod shape;
pub mod snapshot;
pub mod workers;

use std::sync::Arc;

pub use error::RepoError;

use crate::sink::{ObjectKind, Sink, SinkError};
use chunker::Chunker;
use config::Config;
use crypto::{Crypto, Domain};
use id::ObjectId;
use index::{Index, IndexFile};
use keys::Password;

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
    /// The key file that opened an encrypted repository, and its
    /// key-encryption key (`cairn key store` keeps them).
    opened_by: Option<keys::UnlockToken>,
    /// Its master key: only for writing key files (`key add`, `passwd`).
    master: Option<Arc<crypto::Secret>>,
    /// Snapshot records read so far, by name (see
    /// [`Repository::read_snapshot`]); shared by clones.
    snapshots_read: Arc<std::sync::Mutex<records::SnapshotCache>>,
}

impl Repository {
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
        self.opened_by.as_ref().map(|t| t.key.as_str())
    }

    /// What opens this (encrypted) repository again without its
    /// password's key derivation, while the key that opened it exists.
    pub fn unlock_token(&self) -> Option<&keys::UnlockToken> {
        self.opened_by.as_ref()
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
}
