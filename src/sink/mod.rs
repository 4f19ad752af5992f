//! Where a repository's objects live.
//!
//! A [`Sink`] is a narrow store of named objects, grouped by [`ObjectKind`]. The
//! repository logic in `crate::repo` talks to storage only through this trait, so
//! a local directory, a NAS share and an S3 bucket are interchangeable. Every sink
//! must pass the suite in [`conformance`].

pub mod conformance;
pub mod faulty;
pub mod local;

use std::fmt;
use std::io::{self, Read};

pub use faulty::FaultySink;
pub use local::LocalSink;

/// The kinds of object a repository holds. Each kind has its own namespace and
/// its own place in the layout (see `docs/FORMAT.md`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ObjectKind {
    Config,
    Pack,
    Index,
    Snapshot,
    Lock,
}

impl ObjectKind {
    pub const ALL: [ObjectKind; 5] = [
        ObjectKind::Config,
        ObjectKind::Pack,
        ObjectKind::Index,
        ObjectKind::Snapshot,
        ObjectKind::Lock,
    ];

    /// The key of an object relative to the repository root. This layout is
    /// shared by every sink, so a repository can be copied between stores as is.
    pub fn key(self, name: &str) -> String {
        match self {
            ObjectKind::Config => "config.json".to_string(),
            ObjectKind::Pack => format!("packs/{}/{}.tar.zst", &name[..2.min(name.len())], name),
            ObjectKind::Index => format!("index/{name}.json.zst"),
            ObjectKind::Snapshot => format!("snapshots/{name}.json"),
            ObjectKind::Lock => format!("locks/{name}.json"),
        }
    }

    /// The directory that holds objects of this kind ("" for the root).
    pub fn dir(self) -> &'static str {
        match self {
            ObjectKind::Config => "",
            ObjectKind::Pack => "packs",
            ObjectKind::Index => "index",
            ObjectKind::Snapshot => "snapshots",
            ObjectKind::Lock => "locks",
        }
    }

    /// The file name suffix of objects of this kind.
    pub fn suffix(self) -> &'static str {
        match self {
            ObjectKind::Config => ".json",
            ObjectKind::Pack => ".tar.zst",
            ObjectKind::Index => ".json.zst",
            ObjectKind::Snapshot | ObjectKind::Lock => ".json",
        }
    }
}

impl fmt::Display for ObjectKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ObjectKind::Config => "config",
            ObjectKind::Pack => "pack",
            ObjectKind::Index => "index",
            ObjectKind::Snapshot => "snapshot",
            ObjectKind::Lock => "lock",
        })
    }
}

/// The name of the single config object.
pub const CONFIG_NAME: &str = "config";

/// One object as listed by a sink.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectInfo {
    pub name: String,
    pub size: u64,
}

/// What a sink can and cannot promise; wrappers use these to decide what to add.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Capabilities {
    /// A write becomes visible all at once (temp name + rename or equivalent).
    pub atomic_write: bool,
    /// Operations may fail transiently and should be retried (network stores).
    pub needs_retries: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    #[error("{kind} object {name} not found")]
    NotFound { kind: ObjectKind, name: String },
    #[error("{kind} object {name} already exists")]
    AlreadyExists { kind: ObjectKind, name: String },
    #[error("invalid object name {name:?} for {kind}")]
    InvalidName { kind: ObjectKind, name: String },
    #[error("cannot {op} {location}: {source}")]
    Io {
        op: &'static str,
        location: String,
        #[source]
        source: io::Error,
    },
}

impl SinkError {
    /// Whether retrying the same operation may succeed.
    pub fn is_transient(&self) -> bool {
        match self {
            SinkError::Io { source, .. } => matches!(
                source.kind(),
                io::ErrorKind::Interrupted
                    | io::ErrorKind::TimedOut
                    | io::ErrorKind::WouldBlock
                    | io::ErrorKind::ConnectionReset
                    | io::ErrorKind::ConnectionAborted
            ),
            _ => false,
        }
    }

    pub fn is_not_found(&self) -> bool {
        matches!(self, SinkError::NotFound { .. })
    }
}

/// A store of immutable named objects.
///
/// Writes are create-only: writing a name that exists fails with
/// [`SinkError::AlreadyExists`] and leaves the stored object untouched. A write
/// that fails part-way leaves nothing visible under the name.
pub trait Sink: Send + Sync {
    /// A human-readable location (a path or URL) for messages.
    fn location(&self) -> String;

    fn capabilities(&self) -> Capabilities;

    /// Every object of a kind, in no particular order.
    fn list(&self, kind: ObjectKind) -> Result<Vec<ObjectInfo>, SinkError>;

    fn read(&self, kind: ObjectKind, name: &str) -> Result<Vec<u8>, SinkError>;

    /// `length` bytes from `offset`; fewer only when the object ends first.
    fn read_range(
        &self,
        kind: ObjectKind,
        name: &str,
        offset: u64,
        length: u64,
    ) -> Result<Vec<u8>, SinkError>;

    /// Stores everything `data` yields under the name, atomically; returns the size.
    fn write(&self, kind: ObjectKind, name: &str, data: &mut dyn Read) -> Result<u64, SinkError>;

    fn delete(&self, kind: ObjectKind, name: &str) -> Result<(), SinkError>;

    fn write_bytes(&self, kind: ObjectKind, name: &str, mut data: &[u8]) -> Result<u64, SinkError> {
        self.write(kind, name, &mut data)
    }

    /// Bytes free for new objects, where the store can tell (local disks).
    fn free_space(&self) -> Option<u64> {
        None
    }
}

/// Object names are lowercase hex digits and dashes, so they are safe as file
/// names and S3 keys everywhere.
pub fn check_name(kind: ObjectKind, name: &str) -> Result<(), SinkError> {
    let ok = match kind {
        ObjectKind::Config => name == CONFIG_NAME,
        ObjectKind::Pack => name.len() >= 2 && valid_chars(name),
        _ => !name.is_empty() && valid_chars(name),
    };
    if ok {
        Ok(())
    } else {
        Err(SinkError::InvalidName {
            kind,
            name: name.to_string(),
        })
    }
}

fn valid_chars(name: &str) -> bool {
    name.len() <= 128
        && name
            .bytes()
            .all(|b| b.is_ascii_digit() || b.is_ascii_lowercase() || b == b'-')
}
