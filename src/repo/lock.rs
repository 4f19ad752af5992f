//! Locks: small mutable objects that say who is using a repository.
//!
//! Backup and check take a shared lock; prune (later) an exclusive one. A lock
//! whose process is gone on this host is stale and never blocks anyone.

use std::sync::Arc;

use chrono::{DateTime, FixedOffset, Local};
use serde::{Deserialize, Serialize};

use super::RepoError;
use crate::sink::local::random_u64;
use crate::sink::{ObjectKind, Sink};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LockKind {
    Shared,
    Exclusive,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LockRecord {
    pub host: String,
    pub pid: u32,
    pub user: String,
    pub time: DateTime<FixedOffset>,
    pub kind: LockKind,
}

impl LockRecord {
    /// A lock is stale when it was taken on this host by a process that no
    /// longer runs. Locks from other hosts are never judged stale here.
    pub fn is_stale(&self) -> bool {
        self.host == hostname() && !process_alive(self.pid)
    }

    fn describe(&self, name: &str) -> String {
        format!(
            "{:?} lock {} held by pid {} on {} since {}",
            self.kind,
            &name[..8.min(name.len())],
            self.pid,
            self.host,
            self.time.format("%Y-%m-%d %H:%M:%S")
        )
    }
}

/// A held lock; dropping it removes the lock object.
pub struct RepoLock {
    sink: Arc<dyn Sink>,
    name: String,
}

impl Drop for RepoLock {
    fn drop(&mut self) {
        if let Err(e) = self.sink.delete(ObjectKind::Lock, &self.name) {
            tracing::warn!("could not remove lock {}: {}", self.name, crate::chain(&e));
        }
    }
}

/// Every lock in the repository, with its name; unreadable ones are skipped.
pub fn list_locks(sink: &dyn Sink) -> Result<Vec<(String, LockRecord)>, RepoError> {
    let mut out = Vec::new();
    for info in sink.list(ObjectKind::Lock)? {
        match sink.read(ObjectKind::Lock, &info.name) {
            Ok(bytes) => match serde_json::from_slice::<LockRecord>(&bytes) {
                Ok(record) => out.push((info.name, record)),
                Err(e) => tracing::warn!("lock {} is unreadable: {e}", info.name),
            },
            // Removed between list and read: its holder finished.
            Err(e) if e.is_not_found() => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(out)
}

/// Takes a lock. The lock is written first and the others checked after, so
/// two processes racing for conflicting locks both see each other and back off.
pub fn acquire(sink: Arc<dyn Sink>, kind: LockKind) -> Result<RepoLock, RepoError> {
    acquire_beside(sink, kind, None)
}

/// An exclusive lock for a process that already holds `held` (a backup
/// that consolidates index files when it is done): every lock but its own
/// conflicts.
pub fn try_exclusive(held: &RepoLock) -> Result<RepoLock, RepoError> {
    acquire_beside(held.sink.clone(), LockKind::Exclusive, Some(&held.name))
}

fn acquire_beside(sink: Arc<dyn Sink>, kind: LockKind, own: Option<&str>) -> Result<RepoLock, RepoError> {
    let record = LockRecord {
        host: hostname(),
        pid: std::process::id(),
        user: username(),
        time: Local::now().fixed_offset(),
        kind,
    };
    let name = format!("{:016x}{:016x}", random_u64(), random_u64());
    let bytes = serde_json::to_vec_pretty(&record).map_err(|e| RepoError::Encode {
        what: "lock".into(),
        source: e,
    })?;
    sink.write_bytes(ObjectKind::Lock, &name, &bytes)?;
    let lock = RepoLock { sink, name };
    let conflicts: Vec<String> = list_locks(lock.sink.as_ref())?
        .into_iter()
        .filter(|(other, rec)| {
            *other != lock.name
                && Some(other.as_str()) != own
                && !rec.is_stale()
                && (kind == LockKind::Exclusive || rec.kind == LockKind::Exclusive)
        })
        .map(|(name, rec)| rec.describe(&name))
        .collect();
    if !conflicts.is_empty() {
        return Err(RepoError::Locked {
            holders: conflicts.join("; "),
        });
    }
    Ok(lock)
}

/// Removes stale locks (or, with `all`, every lock, readable or not);
/// returns their names.
pub fn remove_locks(sink: &dyn Sink, all: bool) -> Result<Vec<String>, RepoError> {
    let names: Vec<String> = if all {
        sink.list(ObjectKind::Lock)?.into_iter().map(|o| o.name).collect()
    } else {
        list_locks(sink)?
            .into_iter()
            .filter(|(_, record)| record.is_stale())
            .map(|(name, _)| name)
            .collect()
    };
    let mut removed = Vec::new();
    for name in names {
        match sink.delete(ObjectKind::Lock, &name) {
            Ok(()) => removed.push(name),
            Err(e) if e.is_not_found() => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(removed)
}

pub fn hostname() -> String {
    #[cfg(unix)]
    {
        let mut buf = [0u8; 256];
        // SAFETY: the buffer is valid for its length; gethostname NUL-terminates
        // on success and we stop at the first NUL or the buffer's end.
        let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
        if rc == 0 {
            let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
            return String::from_utf8_lossy(&buf[..end]).into_owned();
        }
    }
    std::env::var("COMPUTERNAME").unwrap_or_else(|_| "unknown".to_string())
}

pub fn username() -> String {
    std::env::var("USER")
        .or_else(|_| std::env::var("USERNAME"))
        .unwrap_or_else(|_| {
            #[cfg(unix)]
            {
                // SAFETY: geteuid has no preconditions.
                format!("uid{}", unsafe { libc::geteuid() })
            }
            #[cfg(not(unix))]
            {
                "unknown".to_string()
            }
        })
}

#[cfg(unix)]
fn process_alive(pid: u32) -> bool {
    // SAFETY: signal 0 only checks whether the process exists.
    let rc = unsafe { libc::kill(pid as libc::pid_t, 0) };
    rc == 0 || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
}

#[cfg(not(unix))]
fn process_alive(_pid: u32) -> bool {
    true
}
