//! What can go wrong with a repository, each saying which object and why.

use super::config::{ENCRYPTED_VERSION, FORMAT_VERSION};
use super::id::ObjectId;
use super::manifest::ManifestError;
use super::pack::PackError;
use super::snapshot::RefError;
use super::{crypto, keys};
use crate::sink::{ObjectKind, SinkError};

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
