//! Items handed to another thread in batches: one message per item would
//! cost a wake-up of the receiver for each.

use std::sync::atomic::{AtomicUsize, Ordering};

use crossbeam_channel::Sender;

pub struct BatchSender<'a, T> {
    tx: Sender<Vec<T>>,
    batch: Vec<T>,
    size: usize,
    /// Counts the items sent and not yet taken, when the receiver keeps
    /// such a count (it subtracts what it takes).
    queued: Option<&'a AtomicUsize>,
}

impl<'a, T> BatchSender<'a, T> {
    pub fn new(tx: Sender<Vec<T>>, size: usize) -> Self {
        BatchSender {
            tx,
            batch: Vec::with_capacity(size),
            size,
            queued: None,
        }
    }

    pub fn counting(mut self, queued: &'a AtomicUsize) -> Self {
        self.queued = Some(queued);
        self
    }

    /// False once the receiver is gone: the sender should stop.
    pub fn push(&mut self, item: T) -> bool {
        self.batch.push(item);
        self.batch.len() < self.size || self.flush()
    }

    /// Sends what is held (nothing when nothing is); false once the
    /// receiver is gone.
    pub fn flush(&mut self) -> bool {
        if self.batch.is_empty() {
            return true;
        }
        let batch = std::mem::replace(&mut self.batch, Vec::with_capacity(self.size));
        if let Some(queued) = self.queued {
            queued.fetch_add(batch.len(), Ordering::Relaxed);
        }
        self.tx.send(batch).is_ok()
    }
}
