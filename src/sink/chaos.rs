//! Random faults at a chosen share of operations, for the tests and
//! harnesses that try to make cairn lose data: reads, writes, lists and
//! deletes fail (as a flaky network store does), stall, or reads come back
//! short or garbled. It sits directly on the real sink, under the retries
//! and the cache, so what it injects meets everything above as a real
//! failing store would. Turned on by `CAIRN_FAULTS` (see [`Chaos::parse`]);
//! seeded, so a failure reproduces.

use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::{Bytes, Capabilities, ObjectInfo, ObjectKind, Sink, SinkError};
use crate::rng::Rng;

/// The environment variable that turns chaos on.
pub const FAULTS_VAR: &str = "CAIRN_FAULTS";

/// Shares (0 to 1) of operations that go wrong, and how.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Chaos {
    pub seed: u64,
    /// Reads, writes, lists and deletes that fail with a transient error
    /// and do nothing.
    pub read: f64,
    pub write: f64,
    pub list: f64,
    pub delete: f64,
    /// Writes that are stored but answered with a transient error (the
    /// connection broke before the answer).
    pub lost_answer: f64,
    /// Reads that return their bytes with one flipped, or cut short.
    pub garble: f64,
    pub short: f64,
    /// Operations that first wait `stall_for`.
    pub stall: f64,
    pub stall_for: Duration,
}

impl Chaos {
    /// `seed=7,read=0.05,write=0.05,list=0.05,delete=0.05,lost-answer=0.02,
    /// garble=0.02,short=0.02,stall=0.1:200ms` (any subset; `all=S` sets
    /// the five failure shares at once).
    pub fn parse(text: &str) -> Result<Chaos, String> {
        let mut chaos = Chaos::default();
        for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (key, value) = part
                .split_once('=')
                .ok_or_else(|| format!("{FAULTS_VAR}: {part:?} is not KEY=VALUE"))?;
            let share = |v: &str| -> Result<f64, String> {
                match v.parse::<f64>() {
                    Ok(s) if (0.0..=1.0).contains(&s) => Ok(s),
                    _ => Err(format!("{FAULTS_VAR}: {key}={v}: a share from 0 to 1")),
                }
            };
            match key {
                "seed" => {
                    chaos.seed = value
                        .parse()
                        .map_err(|_| format!("{FAULTS_VAR}: seed={value}: a number"))?
                }
                "read" => chaos.read = share(value)?,
                "write" => chaos.write = share(value)?,
                "list" => chaos.list = share(value)?,
                "delete" => chaos.delete = share(value)?,
                "lost-answer" => chaos.lost_answer = share(value)?,
                "garble" => chaos.garble = share(value)?,
                "short" => chaos.short = share(value)?,
                "all" => {
                    let s = share(value)?;
                    (
                        chaos.read,
                        chaos.write,
                        chaos.list,
                        chaos.delete,
                        chaos.lost_answer,
                    ) = (s, s, s, s, s);
                }
                "stall" => {
                    let (s, d) = value.split_once(':').unwrap_or((value, "100ms"));
                    chaos.stall = share(s)?;
                    let ms = d.strip_suffix("ms").unwrap_or(d);
                    chaos.stall_for = Duration::from_millis(
                        ms.parse()
                            .map_err(|_| format!("{FAULTS_VAR}: stall={value}: SHARE:MILLISms"))?,
                    );
                }
                _ => return Err(format!("{FAULTS_VAR}: unknown key {key:?}")),
            }
        }
        Ok(chaos)
    }

    /// The chaos `CAIRN_FAULTS` asks for, if it is set.
    pub fn from_env() -> Result<Option<Chaos>, String> {
        match std::env::var(FAULTS_VAR) {
            Ok(text) if !text.trim().is_empty() => Chaos::parse(&text).map(Some),
            _ => Ok(None),
        }
    }
}

/// How many faults of each kind were injected.
#[derive(Debug, Default)]
struct Counts {
    failed: AtomicU64,
    lost_answers: AtomicU64,
    garbled: AtomicU64,
    short: AtomicU64,
    stalled: AtomicU64,
}

pub struct ChaosSink {
    inner: Arc<dyn Sink>,
    chaos: Chaos,
    rng: Mutex<Rng>,
    counts: Counts,
}

impl ChaosSink {
    pub fn new(inner: Arc<dyn Sink>, chaos: Chaos) -> ChaosSink {
        let rng = Mutex::new(Rng(chaos.seed ^ 0x9e37_79b9_7f4a_7c15));
        ChaosSink {
            inner,
            chaos,
            rng,
            counts: Counts::default(),
        }
    }

    /// Whether an event of this share happens now.
    fn roll(&self, share: f64) -> bool {
        share > 0.0 && self.rng.lock().unwrap_or_else(|e| e.into_inner()).unit() < share
    }

    /// Waits, sometimes; then fails with a transient error at `share`.
    fn before(&self, op: &'static str, kind: ObjectKind, name: &str, share: f64) -> Result<(), SinkError> {
        if self.roll(self.chaos.stall) {
            self.counts.stalled.fetch_add(1, Ordering::Relaxed);
            crate::interrupt::sleep(self.chaos.stall_for);
        }
        if self.roll(share) {
            self.counts.failed.fetch_add(1, Ordering::Relaxed);
            return Err(transient(op, kind, name, "injected transient fault"));
        }
        Ok(())
    }

    /// What a read gives back: garbled or cut short, sometimes.
    fn after_read(&self, mut data: Vec<u8>) -> Vec<u8> {
        if !data.is_empty() && self.roll(self.chaos.garble) {
            self.counts.garbled.fetch_add(1, Ordering::Relaxed);
            let at = data.len() / 3;
            data[at] ^= 0x20;
        } else if !data.is_empty() && self.roll(self.chaos.short) {
            self.counts.short.fetch_add(1, Ordering::Relaxed);
            data.truncate(data.len() / 2);
        }
        data
    }

    /// One line saying what was injected.
    pub fn summary(&self) -> String {
        let c = &self.counts;
        format!(
            "injected faults: {} failed operations, {} lost answers, {} garbled reads, {} short reads, {} stalls",
            c.failed.load(Ordering::Relaxed),
            c.lost_answers.load(Ordering::Relaxed),
            c.garbled.load(Ordering::Relaxed),
            c.short.load(Ordering::Relaxed),
            c.stalled.load(Ordering::Relaxed)
        )
    }
}

fn transient(op: &'static str, kind: ObjectKind, name: &str, why: &str) -> SinkError {
    SinkError::Io {
        op,
        location: format!("{kind} {name}"),
        source: io::Error::new(io::ErrorKind::TimedOut, why.to_string()),
    }
}

impl Drop for ChaosSink {
    fn drop(&mut self) {
        // The harnesses read this line to count what they injected.
        eprintln!("cairn: {}", self.summary());
    }
}

impl Sink for ChaosSink {
    fn location(&self) -> String {
        self.inner.location()
    }

    fn capabilities(&self) -> Capabilities {
        // Failures are injected: they must be retried, whatever the store.
        Capabilities {
            needs_retries: true,
            ..self.inner.capabilities()
        }
    }

    fn list(&self, kind: ObjectKind) -> Result<Vec<ObjectInfo>, SinkError> {
        self.before("list", kind, "", self.chaos.list)?;
        self.inner.list(kind)
    }

    fn read(&self, kind: ObjectKind, name: &str) -> Result<Vec<u8>, SinkError> {
        self.before("read", kind, name, self.chaos.read)?;
        Ok(self.after_read(self.inner.read(kind, name)?))
    }

    fn read_range(
        &self,
        kind: ObjectKind,
        name: &str,
        offset: u64,
        length: u64,
    ) -> Result<Vec<u8>, SinkError> {
        self.before("read", kind, name, self.chaos.read)?;
        Ok(self.after_read(self.inner.read_range(kind, name, offset, length)?))
    }

    fn write(&self, kind: ObjectKind, name: &str, data: Bytes) -> Result<u64, SinkError> {
        self.before("write", kind, name, self.chaos.write)?;
        let written = self.inner.write(kind, name, data)?;
        if self.roll(self.chaos.lost_answer) {
            self.counts.lost_answers.fetch_add(1, Ordering::Relaxed);
            return Err(transient(
                "write",
                kind,
                name,
                "injected fault: the answer was lost",
            ));
        }
        Ok(written)
    }

    fn delete(&self, kind: ObjectKind, name: &str) -> Result<(), SinkError> {
        self.before("delete", kind, name, self.chaos.delete)?;
        self.inner.delete(kind, name)
    }

    fn free_space(&self) -> Option<u64> {
        self.inner.free_space()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_parse_and_bad_ones_are_named() {
        let c = Chaos::parse("seed=7, all=0.1, garble=0.02, stall=0.5:20ms").unwrap();
        assert_eq!(c.seed, 7);
        assert_eq!(
            (c.read, c.write, c.list, c.delete, c.lost_answer),
            (0.1, 0.1, 0.1, 0.1, 0.1)
        );
        assert_eq!(
            (c.garble, c.stall, c.stall_for),
            (0.02, 0.5, Duration::from_millis(20))
        );
        for bad in ["read=2", "nope=1", "seed=x", "read", "stall=0.1:soon"] {
            let e = Chaos::parse(bad).unwrap_err();
            assert!(e.contains(FAULTS_VAR), "{e}");
        }
    }

    #[test]
    fn the_share_is_about_what_was_asked() {
        let sink = ChaosSink::new(
            Arc::new(super::super::LocalSink::new("/nonexistent")),
            Chaos {
                seed: 3,
                ..Default::default()
            },
        );
        let hits = (0..10_000).filter(|_| sink.roll(0.1)).count();
        assert!((800..1200).contains(&hits), "{hits}");
        assert_eq!((0..1000).filter(|_| sink.roll(0.0)).count(), 0);
    }
}
