//! A sink wrapper that injects faults, for tests of what the repository does
//! when its store misbehaves (after kopia's `FaultyStorage`). It wraps a real
//! sink; nothing about the repository is mocked.

use std::io;
use std::sync::{Arc, Mutex};

use super::{Bytes, Capabilities, ObjectInfo, ObjectKind, Sink, SinkError};

/// A fault to inject. Each fires once, on the first matching operation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// The next write of this kind fails and stores nothing.
    FailWrite(ObjectKind),
    /// The next write of this kind fails with a transient error, storing
    /// nothing (a 503 from an object store).
    TransientWrite(ObjectKind),
    /// The next write of this kind is stored, but its answer is lost: the
    /// caller sees a transient error (a connection cut after the upload).
    LostAnswer(ObjectKind),
    /// The next read (whole or ranged) of this kind returns a flipped byte.
    CorruptRead(ObjectKind),
    /// The next read of this kind fails with a transient I/O error.
    TransientRead(ObjectKind),
    /// The store reports this many bytes free (a nearly full disk).
    FreeSpace(u64),
    /// The process dies after this many more writes and deletes: every
    /// later one fails and stores nothing (a kill, as the store sees it).
    CrashAfter(usize),
}

pub struct FaultySink {
    inner: Arc<dyn Sink>,
    faults: Mutex<Vec<Fault>>,
}

impl FaultySink {
    pub fn new(inner: Arc<dyn Sink>) -> FaultySink {
        FaultySink {
            inner,
            faults: Mutex::new(Vec::new()),
        }
    }

    pub fn inject(&self, fault: Fault) {
        self.faults.lock().unwrap_or_else(|e| e.into_inner()).push(fault);
    }

    /// Removes and returns whether a matching fault was pending.
    fn take(&self, fault: &Fault) -> bool {
        let mut faults = self.faults.lock().unwrap_or_else(|e| e.into_inner());
        match faults.iter().position(|f| f == fault) {
            Some(i) => {
                faults.remove(i);
                true
            }
            None => false,
        }
    }

    /// Whether the process has "died": counts down [`Fault::CrashAfter`].
    fn crashed(&self) -> bool {
        let mut faults = self.faults.lock().unwrap_or_else(|e| e.into_inner());
        for f in faults.iter_mut() {
            if let Fault::CrashAfter(n) = f {
                if *n == 0 {
                    return true;
                }
                *n -= 1;
            }
        }
        false
    }

    fn crash_error(op: &'static str, kind: ObjectKind, name: &str) -> SinkError {
        SinkError::Io {
            op,
            location: format!("{kind} {name}"),
            source: io::Error::other("injected crash"),
        }
    }

    fn after_read(&self, kind: ObjectKind, name: &str, mut data: Vec<u8>) -> Result<Vec<u8>, SinkError> {
        if self.take(&Fault::TransientRead(kind)) {
            return Err(SinkError::Io {
                op: "read",
                location: format!("{kind} {name}"),
                source: io::Error::new(io::ErrorKind::TimedOut, "injected transient fault"),
            });
        }
        if self.take(&Fault::CorruptRead(kind)) {
            let middle = data.len() / 2;
            if let Some(b) = data.get_mut(middle) {
                *b ^= 0x55;
            }
        }
        Ok(data)
    }
}

impl Sink for FaultySink {
    fn location(&self) -> String {
        self.inner.location()
    }

    fn capabilities(&self) -> Capabilities {
        self.inner.capabilities()
    }

    fn list(&self, kind: ObjectKind) -> Result<Vec<ObjectInfo>, SinkError> {
        self.inner.list(kind)
    }

    fn read(&self, kind: ObjectKind, name: &str) -> Result<Vec<u8>, SinkError> {
        let data = self.inner.read(kind, name)?;
        self.after_read(kind, name, data)
    }

    fn read_range(
        &self,
        kind: ObjectKind,
        name: &str,
        offset: u64,
        length: u64,
    ) -> Result<Vec<u8>, SinkError> {
        let data = self.inner.read_range(kind, name, offset, length)?;
        self.after_read(kind, name, data)
    }

    fn write(&self, kind: ObjectKind, name: &str, data: Bytes) -> Result<u64, SinkError> {
        if self.crashed() {
            return Err(Self::crash_error("write", kind, name));
        }
        if self.take(&Fault::FailWrite(kind)) {
            // As a store that lost the connection half-way: nothing stored.
            return Err(SinkError::Io {
                op: "write",
                location: format!("{kind} {name}"),
                source: io::Error::new(io::ErrorKind::BrokenPipe, "injected write fault"),
            });
        }
        if self.take(&Fault::TransientWrite(kind)) {
            return Err(SinkError::Remote {
                op: "write",
                location: format!("{kind} {name}"),
                message: "injected transient fault (503 Slow Down)".into(),
                transient: true,
            });
        }
        if self.take(&Fault::LostAnswer(kind)) {
            self.inner.write(kind, name, data)?;
            return Err(SinkError::Remote {
                op: "write",
                location: format!("{kind} {name}"),
                message: "injected fault: the connection broke before the answer".into(),
                transient: true,
            });
        }
        self.inner.write(kind, name, data)
    }

    fn delete(&self, kind: ObjectKind, name: &str) -> Result<(), SinkError> {
        if self.crashed() {
            return Err(Self::crash_error("delete", kind, name));
        }
        self.inner.delete(kind, name)
    }

    fn free_space(&self) -> Option<u64> {
        let faults = self.faults.lock().unwrap_or_else(|e| e.into_inner());
        let injected = faults.iter().find_map(|f| match f {
            Fault::FreeSpace(bytes) => Some(*bytes),
            _ => None,
        });
        injected.or_else(|| self.inner.free_space())
    }
}
