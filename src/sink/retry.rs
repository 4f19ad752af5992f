//! Retries of transient failures, as one wrapper around any sink (rustic's
//! `RetryBackend`): exponential backoff with jitter, for a bounded time.
//!
//! Only errors the sink classifies as transient ([`SinkError::is_transient`])
//! are retried; a permanent one (bad credentials, no such bucket, a missing
//! object) is returned at once. A write is retried with the same owned bytes.
//! If a write's first attempt did reach the store before its answer was lost,
//! the retry finds the name taken: the object is read back, and when it holds
//! exactly the bytes written, the write succeeded (found by the faulty-network
//! test: a lock whose PUT answer was cut was taken for someone else's).

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::{Bytes, Capabilities, ObjectInfo, ObjectKind, Sink, SinkError};
use crate::interrupt;

/// How long and how often to retry.
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    /// Give up once this much time has passed since the first attempt.
    pub max_elapsed: Duration,
    /// The first wait; each next one doubles, up to `max_delay`.
    pub first_delay: Duration,
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_elapsed: Duration::from_secs(120),
            first_delay: Duration::from_millis(200),
            max_delay: Duration::from_secs(10),
        }
    }
}

impl RetryPolicy {
    /// The default waits, retried for `max_elapsed` in all.
    pub fn lasting(max_elapsed: Duration) -> RetryPolicy {
        RetryPolicy {
            max_elapsed,
            ..RetryPolicy::default()
        }
    }

    /// The wait before attempt `n` (1 = the first retry): doubling, capped,
    /// and jittered to between half and all of it, so that many writers who
    /// failed together do not come back together.
    pub fn delay(&self, n: u32) -> Duration {
        let doubled = self
            .first_delay
            .saturating_mul(1u32 << n.saturating_sub(1).min(20));
        let capped = doubled.min(self.max_delay);
        let jitter = (crate::sink::local::random_u64() % 1000) as u32;
        capped / 2 + capped / 2 * jitter / 1000
    }
}

pub struct RetrySink {
    inner: Arc<dyn Sink>,
    policy: RetryPolicy,
}

impl RetrySink {
    pub fn new(inner: Arc<dyn Sink>, policy: RetryPolicy) -> RetrySink {
        RetrySink { inner, policy }
    }

    /// Runs `op` until it succeeds, fails for good, or the policy's time
    /// is up.
    pub fn retry<T>(&self, what: &str, mut op: impl FnMut() -> Result<T, SinkError>) -> Result<T, SinkError> {
        let start = Instant::now();
        let mut attempt = 0u32;
        loop {
            match op() {
                Err(e) if e.is_transient() && !interrupt::is_set() => {
                    attempt += 1;
                    let wait = self.policy.delay(attempt);
                    if start.elapsed() + wait > self.policy.max_elapsed {
                        tracing::warn!("{what}: giving up after {attempt} attempts: {}", crate::chain(&e));
                        return Err(e);
                    }
                    tracing::info!(
                        "{what}: {}; retrying in {:.1}s",
                        crate::chain(&e),
                        wait.as_secs_f64()
                    );
                    if !interrupt::sleep(wait) {
                        return Err(e);
                    }
                }
                other => return other,
            }
        }
    }
}

impl Sink for RetrySink {
    fn location(&self) -> String {
        self.inner.location()
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            needs_retries: false,
            ..self.inner.capabilities()
        }
    }

    fn list(&self, kind: ObjectKind) -> Result<Vec<ObjectInfo>, SinkError> {
        self.retry("list", || self.inner.list(kind))
    }

    fn read(&self, kind: ObjectKind, name: &str) -> Result<Vec<u8>, SinkError> {
        self.retry("read", || self.inner.read(kind, name))
    }

    fn read_range(
        &self,
        kind: ObjectKind,
        name: &str,
        offset: u64,
        length: u64,
    ) -> Result<Vec<u8>, SinkError> {
        self.retry("read", || self.inner.read_range(kind, name, offset, length))
    }

    fn write(&self, kind: ObjectKind, name: &str, data: Bytes) -> Result<u64, SinkError> {
        let mut attempts = 0u32;
        let result = self.retry("write", || {
            attempts += 1;
            self.inner.write(kind, name, data.clone())
        });
        match result {
            // A retry that finds the name taken: an earlier attempt may have
            // been stored with its answer lost. If the object holds exactly
            // these bytes, it was ours (a lock's random name is no one else's).
            // A read that differs is read again: it may be the transfer
            // that was garbled.
            Err(SinkError::AlreadyExists { .. }) if attempts > 1 => {
                let ours = (0..3).any(|_| {
                    self.retry("read", || self.inner.read(kind, name))
                        .is_ok_and(|stored| stored == data)
                });
                if ours {
                    Ok(data.len() as u64)
                } else {
                    result
                }
            }
            other => other,
        }
    }

    fn delete(&self, kind: ObjectKind, name: &str) -> Result<(), SinkError> {
        let mut attempts = 0u32;
        match self.retry("delete", || {
            attempts += 1;
            self.inner.delete(kind, name)
        }) {
            // An earlier attempt deleted it; its answer was lost.
            Err(e) if e.is_not_found() && attempts > 1 => Ok(()),
            other => other,
        }
    }

    fn free_space(&self) -> Option<u64> {
        self.inner.free_space()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sink::faulty::{Fault, FaultySink};
    use crate::sink::LocalSink;

    fn quick() -> RetryPolicy {
        RetryPolicy {
            max_elapsed: Duration::from_secs(5),
            first_delay: Duration::from_millis(1),
            max_delay: Duration::from_millis(4),
        }
    }

    #[test]
    fn delays_double_up_to_the_cap_with_jitter() {
        let p = RetryPolicy::default();
        for n in 1..30 {
            let d = p.delay(n);
            assert!(d <= p.max_delay, "{n}: {d:?}");
            let full = p
                .first_delay
                .saturating_mul(1 << (n - 1).min(20))
                .min(p.max_delay);
            assert!(d >= full / 2, "{n}: {d:?} < half of {full:?}");
        }
    }

    #[test]
    fn transient_failures_are_retried_and_permanent_ones_are_not() {
        let dir = tempfile::tempdir().unwrap();
        let faulty = Arc::new(FaultySink::new(Arc::new(LocalSink::new(dir.path()))));
        let sink = RetrySink::new(faulty.clone(), quick());
        faulty.inject(Fault::TransientWrite(ObjectKind::Snapshot));
        faulty.inject(Fault::TransientRead(ObjectKind::Snapshot));
        sink.write_bytes(ObjectKind::Snapshot, "00aa", b"record").unwrap();
        assert_eq!(sink.read(ObjectKind::Snapshot, "00aa").unwrap(), b"record");
        // A write stored, its answer lost: the retry finds our own bytes.
        faulty.inject(Fault::LostAnswer(ObjectKind::Lock));
        sink.write_bytes(ObjectKind::Lock, "00cc", b"lock").unwrap();
        faulty.inject(Fault::FailWrite(ObjectKind::Snapshot));
        let err = sink.write_bytes(ObjectKind::Snapshot, "00bb", b"x").unwrap_err();
        assert!(!err.is_transient(), "{err}");
        assert!(sink
            .read(ObjectKind::Snapshot, "00bb")
            .unwrap_err()
            .is_not_found());
    }
}
