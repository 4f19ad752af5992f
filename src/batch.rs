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

/// Items made on a thread of their own and handed over in batches through
/// a bounded queue, ahead of their use, with whether that thread got to its
/// end: one that stopped half-way (it panicked) must not pass for the end
/// of what it was making. The thread stops when the feed is dropped.
pub struct Feed<T> {
    batches: crossbeam_channel::Receiver<Vec<T>>,
    complete: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl<T: Send + 'static> Feed<T> {
    /// Runs `make` on a thread named `name`, with at most `queued` batches
    /// of `size` items waiting. `make` pushes its items and returns whether
    /// it made them all (false when a push failed: the feed is gone).
    pub fn spawn(
        name: &str,
        queued: usize,
        size: usize,
        make: impl FnOnce(&mut BatchSender<'_, T>) -> bool + Send + 'static,
    ) -> std::io::Result<Feed<T>> {
        let (tx, rx) = crossbeam_channel::bounded(queued);
        let complete = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let done = complete.clone();
        std::thread::Builder::new().name(name.into()).spawn(move || {
            let mut out = BatchSender::new(tx, size);
            if make(&mut out) && out.flush() {
                done.store(true, Ordering::Release);
            }
        })?;
        Ok(Feed {
            batches: rx,
            complete,
        })
    }
}

impl<T> Feed<T> {
    /// A feed that ended before it began (its thread could not be started).
    pub fn broken() -> Feed<T> {
        let (_, rx) = crossbeam_channel::bounded(0);
        Feed {
            batches: rx,
            complete: Default::default(),
        }
    }

    /// The batches, until the thread is done; then see [`Feed::complete`].
    pub fn batches(&self) -> &crossbeam_channel::Receiver<Vec<T>> {
        &self.batches
    }

    /// Whether the thread made all its items (meaningful once
    /// [`Feed::batches`] has ended).
    pub fn complete(&self) -> bool {
        self.complete.load(Ordering::Acquire)
    }
}
