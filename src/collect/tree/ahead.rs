//! A walk on a thread of its own, ahead of whoever reads it: a restore's
//! plan merges the walk with a manifest, and that merging (parsing lines,
//! comparing them with what is on disk) then runs beside the walk's
//! `getdents` and `fstatat` calls instead of taking turns with them.

use std::io;
use std::path::PathBuf;

use super::{walk, Excludes, TreeItem};
use crate::batch::Feed;

/// Items sent at a time.
const BATCH: usize = 128;
/// Batches queued ahead of the reader, at most: some 5,000 items of about
/// 200 bytes, a megabyte.
const BATCHES: usize = 40;

/// The items of [`walk`], walked on another thread (see the module docs).
pub struct Ahead {
    root: PathBuf,
    feed: Feed<TreeItem>,
    batch: std::vec::IntoIter<TreeItem>,
    ended: bool,
}

impl Ahead {
    /// Starts walking `root` as [`walk`] does, with a helper that may queue
    /// `helper` entries (see [`super::TreeWalk::with_helper`]). Dropping the
    /// result stops the thread at its next item.
    pub fn start(root: PathBuf, prefix: String, excludes: Excludes, helper: usize) -> io::Result<Ahead> {
        let walked = root.clone();
        let feed = Feed::spawn("cairn-walk", BATCHES, BATCH, move |out| {
            walk(&walked, &prefix, &excludes)
                .with_helper(helper)
                .all(|item| out.push(item))
        })?;
        Ok(Ahead {
            root,
            feed,
            batch: Vec::new().into_iter(),
            ended: false,
        })
    }
}

impl Iterator for Ahead {
    type Item = TreeItem;

    fn next(&mut self) -> Option<TreeItem> {
        loop {
            if let Some(item) = self.batch.next() {
                return Some(item);
            }
            if self.ended {
                return None;
            }
            match self.feed.batches().recv() {
                Ok(batch) => self.batch = batch.into_iter(),
                Err(_) => {
                    // The thread is gone: after its last item, or not.
                    self.ended = true;
                    if self.feed.complete() {
                        return None;
                    }
                    return Some(TreeItem::Unreadable {
                        path: self.root.clone(),
                        error: io::Error::other("not walked whole: the thread walking it stopped early"),
                    });
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn paths(items: impl Iterator<Item = TreeItem>) -> Vec<Vec<u8>> {
        items
            .map(|item| match item {
                TreeItem::Entry(w) => w.path,
                TreeItem::Unreadable { path, error } => panic!("{}: {error}", path.display()),
            })
            .collect()
    }

    #[test]
    fn a_walk_ahead_gives_what_the_walk_gives_in_its_order() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        super::super::dirs_of_files(&root, 30, 40);
        let excludes = Excludes::default();
        let expected = paths(walk(&root, "tree/root", &excludes));
        assert_eq!(expected.len(), 1 + 30 * 41);
        for helper in [0, 64] {
            let ahead = Ahead::start(root.clone(), "tree/root".into(), excludes.clone(), helper).unwrap();
            assert_eq!(paths(ahead), expected, "helper queue {helper}");
        }
    }

    #[test]
    fn a_walk_whose_thread_stopped_half_way_is_reported_not_taken_for_the_end() {
        let mut ahead = Ahead {
            root: PathBuf::from("/src"),
            feed: Feed::broken(),
            batch: Vec::new().into_iter(),
            ended: false,
        };
        match ahead.next() {
            Some(TreeItem::Unreadable { path, error }) => {
                assert_eq!(path, PathBuf::from("/src"));
                assert!(error.to_string().contains("stopped early"), "{error}");
            }
            _ => panic!("a truncated walk passed for a whole one"),
        }
        assert!(ahead.next().is_none());
    }
}
