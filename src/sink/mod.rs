//! Where a repository's objects live.
//!
//! A [`Sink`] is a narrow store of named objects, grouped by [`ObjectKind`]. The
//! repository logic in `crate::repo` talks to storage only through this trait, so
//! a local directory, a NAS share and an S3 bucket are interchangeable. Every sink
//! must pass the suite in [`conformance`].

pub mod cache;
pub mod chaos;
pub mod conformance;
pub mod faulty;
pub mod local;
pub mod location;
pub mod nas;
pub mod open;
pub mod retry;
pub mod s3;

use std::fmt;
use std::io;

pub use bytes::Bytes;
pub use faulty::FaultySink;
pub use local::LocalSink;
pub use location::Location;
pub use open::{open, SinkOptions};
pub use retry::RetrySink;

/// The kinds of object a repository holds. Each kind has its own namespace and
/// its own place in the layout (see `docs/FORMAT.md`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ObjectKind {
    Config,
    Pack,
    Index,
    Snapshot,
    Lock,
    /// Wrapped master keys of an encrypted repository.
    Key,
}

impl ObjectKind {
    pub const ALL: [ObjectKind; 6] = [
        ObjectKind::Config,
        ObjectKind::Pack,
        ObjectKind::Index,
        ObjectKind::Snapshot,
        ObjectKind::Lock,
        ObjectKind::Key,
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
            ObjectKind::Key => format!("keys/{name}.json"),
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
            ObjectKind::Key => "keys",
        }
    }

    /// The file name suffix of objects of this kind.
    pub fn suffix(self) -> &'static str {
        match self {
            ObjectKind::Config => ".json",
            ObjectKind::Pack => ".tar.zst",
            ObjectKind::Index => ".json.zst",
            ObjectKind::Snapshot | ObjectKind::Lock | ObjectKind::Key => ".json",
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
            ObjectKind::Key => "key",
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

/// What a sink can and cannot promise; [`open`] and the repository read
/// these to decide which wrappers to stack and how many operations to run
/// at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Capabilities {
    /// A write becomes visible all at once (temp name + rename, or an object
    /// store's PUT).
    pub atomic_write: bool,
    /// Two writers of one name: exactly one succeeds (a hard link, or a
    /// conditional PUT with `If-None-Match: *`). Without it the last writer
    /// wins, which is harmless for content-named objects (same name, same
    /// bytes) and is why locks are also read back after they are written.
    pub exclusive_create: bool,
    /// Operations may fail transiently and should be retried (network stores).
    pub needs_retries: bool,
    /// How many transfers at once keep the store busy: 1 for a local disk
    /// (the CPU is the limit), more for a store reached over a network, where
    /// each request waits on a round trip.
    pub concurrency: usize,
}

#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    #[error("{kind} object {name} not found")]
    NotFound { kind: ObjectKind, name: String },
    #[error("{kind} object {name} already exists")]
    AlreadyExists { kind: ObjectKind, name: String },
    #[error("invalid object name {name:?} for {kind}")]
    InvalidName { kind: ObjectKind, name: String },
    #[error("cannot {op} {location}")]
    Io {
        op: &'static str,
        location: String,
        #[source]
        source: io::Error,
    },
    /// A store reached over a network said no, or could not be reached.
    /// `message` is the store's own explanation plus what to check; it never
    /// holds credentials.
    #[error("cannot {op} {location}: {message}")]
    Remote {
        op: &'static str,
        location: String,
        message: String,
        /// Whether retrying the same request may succeed (5xx, 429, a
        /// timeout, a dropped connection).
        transient: bool,
    },
}

impl SinkError {
    /// Whether retrying the same operation may succeed.
    pub fn is_transient(&self) -> bool {
        match self {
            SinkError::Remote { transient, .. } => *transient,
            // A stale NFS handle, an interrupted call on a share.
            SinkError::Io { source, .. } if is_stale(source) => true,
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

fn is_stale(e: &io::Error) -> bool {
    #[cfg(unix)]
    {
        e.raw_os_error() == Some(libc::ESTALE)
    }
    #[cfg(not(unix))]
    {
        let _ = e;
        false
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

    /// Stores `data` under the name, atomically; returns the size. The bytes
    /// are owned (and cheap to clone) so that a write can be retried, and
    /// handed to another thread or task.
    fn write(&self, kind: ObjectKind, name: &str, data: Bytes) -> Result<u64, SinkError>;

    fn delete(&self, kind: ObjectKind, name: &str) -> Result<(), SinkError>;

    /// [`Sink::write`] of borrowed bytes (a copy): for small objects.
    fn write_bytes(&self, kind: ObjectKind, name: &str, data: &[u8]) -> Result<u64, SinkError> {
        self.write(kind, name, Bytes::copy_from_slice(data))
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
