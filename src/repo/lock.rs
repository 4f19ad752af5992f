//! Locks: small mutable objects that say who is using a repository.
//!
//! Backup, restore, check, copy and the listings take a shared lock; forget
//! and prune an exclusive one. A held lock is written again every
//! [`REFRESH_EVERY`] (under a new name, the old one removed), so a lock not
//! refreshed for [`STALE_AFTER`] is stale whoever took it, on any host; a
//! lock of this host whose process is gone is stale at once. A stale lock
//! never blocks anyone. A lock that conflicts is waited for up to the time
//! set with [`set_wait`] (`--retry-lock`).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, FixedOffset, Local};
use serde::{Deserialize, Serialize};

use super::crypto::{Crypto, Domain};
use super::{RepoError, Repository};
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
        let age = Local::now().fixed_offset().signed_duration_since(self.time);
        if age.to_std().is_ok_and(|age| age > STALE_AFTER) {
            return true;
        }
        // pid 0 names no process (kill(0, 0) would ask about our own group).
        self.host == hostname() && (self.pid == 0 || !process_alive(self.pid))
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

/// A lock not written again for this long is stale, whoever holds it.
pub const STALE_AFTER: Duration = Duration::from_secs(30 * 60);
/// How often a held lock is written again.
pub const REFRESH_EVERY: Duration = Duration::from_secs(5 * 60);

/// How long [`acquire`] waits for a conflicting lock to go, in ms.
static WAIT_MS: AtomicU64 = AtomicU64::new(0);

/// How long to wait for a conflicting lock before giving up
/// (`--retry-lock`); zero by default: fail at once.
pub fn set_wait(wait: Duration) {
    WAIT_MS.store(
        u64::try_from(wait.as_millis()).unwrap_or(u64::MAX),
        Ordering::Relaxed,
    );
}

/// A held lock, written again every [`REFRESH_EVERY`] by a thread of its
/// own; dropping it stops the thread and removes the lock object.
pub struct RepoLock {
    sink: Arc<dyn Sink>,
    /// Seals the lock in an encrypted repository (its holder is private).
    crypto: Crypto,
    record: LockRecord,
    name: Arc<Mutex<String>>,
    stop: Option<crossbeam_channel::Sender<()>>,
    refresher: Option<std::thread::JoinHandle<()>>,
}

impl RepoLock {
    /// The lock object's current name.
    pub fn name(&self) -> String {
        self.name.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Writes the lock again with the time now, under a new name, and
    /// removes the old one.
    pub fn refresh(&self) -> Result<(), RepoError> {
        refresh(self.sink.as_ref(), &self.crypto, &self.record, &self.name)
    }

    fn start_refresher(&mut self) {
        let (tx, rx) = crossbeam_channel::bounded::<()>(0);
        let (sink, record, name) = (self.sink.clone(), self.record.clone(), self.name.clone());
        let crypto = self.crypto.clone();
        let thread = std::thread::Builder::new()
            .name("cairn-lock".into())
            .spawn(move || {
                while let Err(crossbeam_channel::RecvTimeoutError::Timeout) = rx.recv_timeout(REFRESH_EVERY) {
                    if let Err(e) = refresh(sink.as_ref(), &crypto, &record, &name) {
                        tracing::warn!("could not refresh the repository lock: {}", crate::chain(&e));
                    }
                }
            });
        if let Ok(thread) = thread {
            self.stop = Some(tx);
            self.refresher = Some(thread);
        }
    }
}

fn refresh(
    sink: &dyn Sink,
    crypto: &Crypto,
    record: &LockRecord,
    name: &Mutex<String>,
) -> Result<(), RepoError> {
    let fresh = LockRecord {
        time: Local::now().fixed_offset(),
        ..record.clone()
    };
    let new_name = write_lock(sink, crypto, &fresh)?;
    let old = std::mem::replace(&mut *name.lock().unwrap_or_else(|e| e.into_inner()), new_name);
    match sink.delete(ObjectKind::Lock, &old) {
        Err(e) if !e.is_not_found() => Err(e.into()),
        _ => Ok(()),
    }
}

impl Drop for RepoLock {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(thread) = self.refresher.take() {
            let _ = thread.join();
        }
        let name = self.name();
        if let Err(e) = self.sink.delete(ObjectKind::Lock, &name) {
            tracing::warn!("could not remove lock {name}: {}", crate::chain(&e));
        }
    }
}

/// Every lock in the repository, with its name; unreadable ones are skipped.
pub fn list_locks(sink: &dyn Sink, crypto: &Crypto) -> Result<Vec<(String, LockRecord)>, RepoError> {
    let mut out = Vec::new();
    for info in sink.list(ObjectKind::Lock)? {
        match sink.read(ObjectKind::Lock, &info.name) {
            Ok(bytes) => match crypto
                .open(Domain::Lock, bytes)
                .map_err(|e| e.to_string())
                .and_then(|b| serde_json::from_slice::<LockRecord>(&b).map_err(|e| e.to_string()))
            {
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
/// two processes racing for conflicting locks both see each other and back
/// off. A conflict is waited for, up to [`set_wait`]'s time.
pub fn acquire(repo: &Repository, kind: LockKind) -> Result<RepoLock, RepoError> {
    acquire_beside(repo.sink().clone(), repo.crypto(), kind, None)
}

/// An exclusive lock for a process that already holds `held` (a backup
/// that consolidates index files when it is done): every lock but its own
/// conflicts. Never waits.
pub fn try_exclusive(held: &RepoLock) -> Result<RepoLock, RepoError> {
    try_once(
        held.sink.clone(),
        &held.crypto,
        LockKind::Exclusive,
        Some(&held.name()),
    )
}

fn acquire_beside(
    sink: Arc<dyn Sink>,
    crypto: &Crypto,
    kind: LockKind,
    own: Option<&str>,
) -> Result<RepoLock, RepoError> {
    let wait = Duration::from_millis(WAIT_MS.load(Ordering::Relaxed));
    let deadline = Instant::now() + wait;
    let mut pause = Duration::from_millis(250);
    let mut told = false;
    loop {
        match try_once(sink.clone(), crypto, kind, own) {
            Err(RepoError::Locked { holders }) if Instant::now() < deadline => {
                if !told {
                    eprintln!("waiting up to {}s for the repository: {holders}", wait.as_secs());
                    told = true;
                }
                if crate::interrupt::is_set() {
                    return Err(RepoError::Interrupted);
                }
                crate::interrupt::sleep(pause.min(deadline.saturating_duration_since(Instant::now())));
                pause = (pause * 2).min(Duration::from_secs(5));
            }
            other => return other,
        }
    }
}

fn write_lock(sink: &dyn Sink, crypto: &Crypto, record: &LockRecord) -> Result<String, RepoError> {
    let name = format!("{:016x}{:016x}", random_u64(), random_u64());
    let bytes = serde_json::to_vec_pretty(record).map_err(|e| RepoError::Encode {
        what: "lock".into(),
        source: e,
    })?;
    let bytes = crypto
        .seal(Domain::Lock, bytes)
        .map_err(|source| RepoError::Seal {
            what: "a lock",
            source,
        })?;
    sink.write_bytes(ObjectKind::Lock, &name, &bytes)?;
    Ok(name)
}

fn try_once(
    sink: Arc<dyn Sink>,
    crypto: &Crypto,
    kind: LockKind,
    own: Option<&str>,
) -> Result<RepoLock, RepoError> {
    let record = LockRecord {
        host: hostname(),
        pid: std::process::id(),
        user: username(),
        time: Local::now().fixed_offset(),
        kind,
    };
    let name = write_lock(sink.as_ref(), crypto, &record)?;
    let mut lock = RepoLock {
        sink,
        crypto: crypto.clone(),
        record,
        name: Arc::new(Mutex::new(name.clone())),
        stop: None,
        refresher: None,
    };
    let conflicts: Vec<String> = list_locks(lock.sink.as_ref(), crypto)?
        .into_iter()
        .filter(|(other, rec)| {
            *other != name
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
    lock.start_refresher();
    Ok(lock)
}

/// Removes stale locks (or, with `all`, every lock, readable or not);
/// returns their names.
pub fn remove_locks(repo: &Repository, all: bool) -> Result<Vec<String>, RepoError> {
    let sink = repo.sink().as_ref();
    let every: Vec<String> = sink.list(ObjectKind::Lock)?.into_iter().map(|o| o.name).collect();
    let names: Vec<String> = if all {
        every
    } else {
        // Stale locks, and those that cannot be read as a lock: they block
        // no one (and a lock is written whole), so they are debris.
        let live: Vec<String> = list_locks(sink, repo.crypto())?
            .into_iter()
            .filter(|(_, record)| !record.is_stale())
            .map(|(name, _)| name)
            .collect();
        every.into_iter().filter(|n| !live.contains(n)).collect()
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
    // A pid past pid_t's range (2^32-1 would be -1: every process) names
    // no process.
    let Ok(pid) = libc::pid_t::try_from(pid) else {
        return false;
    };
    if pid <= 0 {
        return false;
    }
    // SAFETY: signal 0 only checks whether the process exists.
    let rc = unsafe { libc::kill(pid, 0) };
    rc == 0 || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
}

#[cfg(not(unix))]
fn process_alive(_pid: u32) -> bool {
    true
}
