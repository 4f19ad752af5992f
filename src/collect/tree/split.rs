//! A walk's root shared with a helper thread: the walk takes the root's
//! children from the front, the helper from the back, until they meet.

use std::io;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use super::{name_str, Excludes, Level, TreeItem, TreeWalk};
use crate::batch::BatchSender;

impl TreeWalk<'_> {
    /// Shares the root's children with a helper thread: this walk takes
    /// them from the front, the helper from the back, each child whole
    /// (its subtree), until they meet. An unchanged tree costs little more
    /// than its `fstatat` and `getdents` calls, and two threads make them
    /// about twice as fast; meeting wherever they meet balances the two
    /// whatever the sizes of the subtrees. The helper's entries wait in
    /// bounded queues, and it stops taking children when enough are queued,
    /// so memory stays bounded.
    pub(super) fn split_root(&mut self) {
        let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
        let Some(level) = self.stack.last() else {
            return;
        };
        if cores < 2
            || self.helper_queue == 0
            || self.stack.len() != 1
            || level.handle.is_none()
            || level.end < 2
        {
            return;
        }
        let helper = Helper {
            root: self.root.to_path_buf(),
            excludes: self.excludes.clone(),
            path: self.path.clone(),
            root_len: self.root_len,
            root_dev: self.root_dev,
            level: level.clone(),
            queue: self.helper_queue,
        };
        self.tail = Tail::start(helper);
    }
}

/// What the helper needs to walk root children on its own.
struct Helper {
    root: PathBuf,
    excludes: Excludes,
    path: Vec<u8>,
    root_len: usize,
    root_dev: u64,
    /// The root's level.
    level: Level,
    /// Entries queued before the helper stops taking children; a part it
    /// has taken can queue as many again.
    queue: usize,
}

/// The root's children as shared between the walk and its helper.
struct Split {
    state: Mutex<SplitState>,
    /// Entries the helper has queued and the walk not yet taken.
    queued: AtomicUsize,
}

struct SplitState {
    /// The walk has taken the children before `front`...
    front: usize,
    /// ...and the helper those from `back` on, each into its own queue.
    back: usize,
    parts: Vec<(usize, Part)>,
}

/// One root child the helper walks: its entries, and whether it got to the
/// end of them (a helper that died half-way must not look like an end).
struct Part {
    abs: PathBuf,
    entries: crossbeam_channel::Receiver<Vec<TreeItem>>,
    complete: Arc<AtomicBool>,
}

/// The helper's side of a split root, handed out after the walk's own.
pub(super) struct Tail {
    split: Arc<Split>,
    /// The helper's parts, in walk order, once the walk has come to them.
    parts: Option<std::vec::IntoIter<Part>>,
    part: Option<Part>,
    batch: std::vec::IntoIter<TreeItem>,
}

impl Tail {
    const BATCH: usize = 128;

    fn start(helper: Helper) -> Option<Tail> {
        let split = Arc::new(Split {
            state: Mutex::new(SplitState {
                front: helper.level.next,
                back: helper.level.end,
                parts: Vec::new(),
            }),
            queued: AtomicUsize::new(0),
        });
        let shared = split.clone();
        std::thread::Builder::new()
            .name("cairn-walk-tail".into())
            .spawn(move || Tail::help(helper, &shared))
            .ok()?;
        Some(Tail {
            split,
            parts: None,
            part: None,
            batch: Vec::new().into_iter(),
        })
    }

    /// Whether the walk may take root child `i`; false once the helper has it.
    pub(super) fn take(&self, i: usize) -> bool {
        let mut state = self.split.state.lock().unwrap_or_else(|e| e.into_inner());
        if i >= state.back {
            return false;
        }
        state.front = i + 1;
        true
    }

    /// The helper: root children from the back, one subtree at a time.
    fn help(helper: Helper, split: &Split) {
        let Helper {
            root,
            excludes,
            path,
            root_len,
            root_dev,
            level,
            queue,
        } = helper;
        loop {
            let (child, tx, complete) = {
                let mut state = split.state.lock().unwrap_or_else(|e| e.into_inner());
                if split.queued.load(Ordering::Relaxed) >= queue
                    || state.back == 0
                    || state.back - 1 < state.front
                {
                    tracing::debug!(
                        "walk of the root's last children done, {:?} CPU",
                        crate::progress::thread_cpu()
                    );
                    return;
                }
                state.back -= 1;
                let (tx, rx) = crossbeam_channel::bounded(queue.div_ceil(Self::BATCH));
                let child = state.back;
                let complete = Arc::new(AtomicBool::new(false));
                let part = Part {
                    abs: level.dir.join(name_str(level.children.get(child))),
                    entries: rx,
                    complete: complete.clone(),
                };
                state.parts.push((child, part));
                (child, tx, complete)
            };
            let mut part = level.clone();
            part.next = child;
            part.end = child + 1;
            let walk = TreeWalk {
                root: &root,
                excludes: &excludes,
                path: path.clone(),
                root_len,
                stack: vec![part],
                pending: Vec::new(),
                started: true,
                root_dev,
                tail: None,
                helper_queue: 0,
            };
            let mut out = BatchSender::new(tx, Self::BATCH).counting(&split.queued);
            for item in walk {
                if !out.push(item) {
                    return;
                }
            }
            if !out.flush() {
                return;
            }
            complete.store(true, Ordering::Release);
        }
    }

    pub(super) fn next(&mut self) -> Option<TreeItem> {
        if self.parts.is_none() {
            // The walk has stopped taking children: the helper takes no more
            // (see `take`), so its parts are all known.
            let mut state = self.split.state.lock().unwrap_or_else(|e| e.into_inner());
            let mut parts = std::mem::take(&mut state.parts);
            drop(state);
            parts.sort_by_key(|(child, _)| *child);
            self.parts = Some(
                parts
                    .into_iter()
                    .map(|(_, part)| part)
                    .collect::<Vec<_>>()
                    .into_iter(),
            );
            tracing::debug!(
                "walk of the root's first children done, {:?} CPU",
                crate::progress::thread_cpu()
            );
        }
        loop {
            if let Some(item) = self.batch.next() {
                return Some(item);
            }
            if let Some(part) = &self.part {
                if let Ok(batch) = part.entries.recv() {
                    self.split.queued.fetch_sub(batch.len(), Ordering::Relaxed);
                    self.batch = batch.into_iter();
                    continue;
                }
                // The sender is gone: after the part's last entry, or not.
                if !part.complete.load(Ordering::Acquire) {
                    let path = part.abs.clone();
                    self.part = None;
                    return Some(TreeItem::Unreadable {
                        path,
                        error: io::Error::other("not walked: the thread walking it stopped early"),
                    });
                }
            }
            self.part = Some(self.parts.as_mut()?.next()?);
        }
    }
}

/// A walk dropped before it came to the helper's parts (a plan stopped by
/// an error or Ctrl-C) stops the helper: it takes no more children, and
/// the parts it is filling lose their receivers, so its next send fails
/// instead of waiting for a reader that never comes.
impl Drop for Tail {
    fn drop(&mut self) {
        let mut state = self.split.state.lock().unwrap_or_else(|e| e.into_inner());
        state.back = state.front;
        state.parts.clear();
    }
}

#[cfg(test)]
mod tests {
    use std::fs;

    use super::super::walk;
    use super::*;

    #[test]
    fn a_root_split_between_two_threads_walks_in_manifest_order() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        let mut expected = vec![b"tree/root".to_vec()];
        for d in 0..24 {
            let sub = format!("d{d:02}");
            for e in 0..3 {
                let leaf = root.join(&sub).join(format!("e{e}"));
                fs::create_dir_all(&leaf).unwrap();
                fs::write(leaf.join("f"), b"x").unwrap();
            }
            fs::write(root.join(format!("{sub}.txt")), b"y").unwrap();
        }
        for d in 0..24 {
            let sub = format!("tree/root/d{d:02}");
            expected.push(sub.clone().into_bytes());
            for e in 0..3 {
                expected.push(format!("{sub}/e{e}").into_bytes());
                expected.push(format!("{sub}/e{e}/f").into_bytes());
            }
            expected.push(format!("{sub}.txt").into_bytes());
        }
        expected.sort_by(|a, b| crate::repo::manifest::path_cmp(a, b));
        let excludes = Excludes::default();
        // Where the two meet depends on timing: walk a few times.
        for _ in 0..20 {
            let mut walk = walk(&root, "tree/root", &excludes).with_helper(1024);
            let first = walk.next();
            if std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1) > 1 {
                assert!(walk.tail.is_some(), "the root was not split");
            }
            let walked: Vec<Vec<u8>> = first
                .into_iter()
                .chain(walk)
                .map(|item| match item {
                    TreeItem::Entry(w) => w.path,
                    TreeItem::Unreadable { path, error } => panic!("{}: {error}", path.display()),
                })
                .collect();
            assert_eq!(walked, expected);
        }
    }

    /// A plan stopped early (an error, Ctrl-C) dropped its walk before the
    /// walk came to the helper's parts: the helper, its queue full, waited
    /// to send forever, holding its directories open.
    #[test]
    fn a_helper_whose_walk_was_dropped_early_waited_forever() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        super::super::dirs_of_files(&root, 8, 300);
        if std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1) < 2 {
            // One core: the walk takes no helper (see `split_root`).
            assert!(
                std::env::var_os("CI").is_none(),
                "one core: CI must run this test"
            );
            println!("SKIPPED: one core, so no helper to stop");
            return;
        }
        let excludes = Excludes::default();
        let mut walk = walk(&root, "tree/root", &excludes).with_helper(64);
        assert!(walk.next().is_some());
        let split = Arc::downgrade(&walk.tail.as_ref().expect("the root was split").split);
        // Let the helper fill its queue and block.
        std::thread::sleep(std::time::Duration::from_millis(100));
        drop(walk);
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while split.upgrade().is_some() {
            assert!(
                std::time::Instant::now() < deadline,
                "the helper is still waiting"
            );
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
    }

    #[test]
    fn a_helper_that_stops_half_way_is_reported_not_taken_for_the_end() {
        let (tx, rx) = crossbeam_channel::bounded(4);
        tx.send(Vec::new()).unwrap();
        drop(tx);
        let split = Arc::new(Split {
            state: Mutex::new(SplitState {
                front: 0,
                back: 0,
                parts: vec![(
                    0,
                    Part {
                        abs: PathBuf::from("/src/zzz"),
                        entries: rx,
                        complete: Arc::new(AtomicBool::new(false)),
                    },
                )],
            }),
            queued: AtomicUsize::new(0),
        });
        let mut tail = Tail {
            split,
            parts: None,
            part: None,
            batch: Vec::new().into_iter(),
        };
        match tail.next() {
            Some(TreeItem::Unreadable { path, error }) => {
                assert_eq!(path, PathBuf::from("/src/zzz"));
                assert!(error.to_string().contains("stopped early"), "{error}");
            }
            _ => panic!("a truncated part passed for a whole one"),
        }
        assert!(tail.next().is_none());
    }
}
