//! What the plan keeps for the safety snapshot that follows it: the walk
//! (so the roots are not walked again) and the snapshot's manifest lines
//! (so they can be its parent without being read again), within one
//! memory budget.

use crate::collect::tree::TreeItem;
use crate::meta::Stat;
use crate::repo::manifest::RawLine;

/// What the plan's walk found on disk, in walk order, with the index of
/// the target each item lies under: kept so that the safety snapshot does
/// not walk the roots a second time. Within a memory budget: past it, the
/// items are dropped and the safety snapshot walks again (a tree of more
/// than about 50,000 entries; memory stays flat).
pub struct Tape {
    pub items: Vec<(usize, TreeItem)>,
    /// Every item is there: the budget was never exceeded.
    pub complete: bool,
    /// The snapshot's manifest lines as the plan read them.
    pub lines: KeptLines,
    budget: usize,
    pub(super) used: usize,
}

/// The lines of the snapshot's manifest, kept (within [`Tape::BUDGET`]) so
/// that the safety snapshot can take the snapshot being restored as its
/// parent without reading its manifest again, and what that would cost: a
/// backup reuses a parent line only when the file's metadata (ctime and
/// inode too) is written exactly as in it, and reads every other file.
pub struct KeptLines {
    pub lines: Vec<RawLine>,
    /// Every line is there.
    pub complete: bool,
    /// Bytes of live files whose metadata differs from their line: what a
    /// backup with these lines as its parent reads.
    pub reread: u64,
    used: usize,
}

impl KeptLines {
    fn new() -> KeptLines {
        KeptLines {
            lines: Vec::new(),
            complete: true,
            reread: 0,
            used: 0,
        }
    }

    /// Keeps `line`; `same`: the live file at its path is written exactly
    /// as in it (see [`super::Sorter::same_bytes`]). The lines share the tape's
    /// budget with its items (`taped` bytes so far) and give way first:
    /// not walking the roots again saves more than not reading a manifest.
    pub(super) fn keep(&mut self, line: RawLine, live: Option<&Stat>, same: bool, taped: usize) {
        if let Some(live) = live.filter(|l| l.is_file() && !same) {
            self.reread = self.reread.saturating_add(live.size);
        }
        if !self.complete {
            return;
        }
        // The line, its slot in the vector, and as much again for the
        // vector's slack.
        let size = 2 * std::mem::size_of::<RawLine>() + line.raw.capacity();
        self.used = self.used.saturating_add(size);
        if self.used.saturating_add(taped) > Tape::BUDGET {
            self.give_up();
            return;
        }
        self.lines.push(line);
    }

    /// A live file the snapshot does not have: a backup with these lines as
    /// its parent reads it whole.
    pub(super) fn extra(&mut self, stat: &Stat) {
        if stat.is_file() {
            self.reread = self.reread.saturating_add(stat.size);
        }
    }

    fn give_up(&mut self) {
        self.complete = false;
        self.lines = Vec::new();
        self.used = 0;
    }
}

impl Tape {
    /// About 8 MiB of items.
    const BUDGET: usize = 8 << 20;

    /// A tape for a walk expected to find about `expected` items.
    pub fn new(expected: u64) -> Tape {
        let item = std::mem::size_of::<(usize, TreeItem)>();
        let fits = Self::BUDGET / item;
        let capacity = usize::try_from(expected)
            .unwrap_or(usize::MAX)
            .saturating_add(64)
            .min(fits);
        Tape {
            items: Vec::with_capacity(capacity),
            complete: true,
            lines: KeptLines::new(),
            budget: Self::BUDGET,
            used: 0,
        }
    }

    pub(super) fn record(&mut self, root: usize, item: TreeItem) {
        if !self.complete {
            return;
        }
        let heap = match &item {
            TreeItem::Entry(w) => w.path.capacity(),
            TreeItem::Unreadable { path, .. } => path.as_os_str().len(),
        };
        self.used = self
            .used
            .saturating_add(std::mem::size_of::<(usize, TreeItem)>() + heap);
        if self.used.saturating_add(self.lines.used) > self.budget {
            self.lines.give_up();
        }
        if self.used > self.budget {
            self.complete = false;
            self.items = Vec::new();
            return;
        }
        self.items.push((root, item));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::repo::manifest::EntryKind;
    use std::io;
    use std::path::PathBuf;

    fn unreadable(len: usize) -> TreeItem {
        TreeItem::Unreadable {
            path: PathBuf::from("x".repeat(len)),
            error: io::Error::other("test"),
        }
    }

    #[test]
    fn a_tape_past_its_budget_drops_everything() {
        let mut tape = Tape::new(3);
        tape.record(0, unreadable(10));
        tape.record(1, unreadable(10));
        assert!(tape.complete);
        assert_eq!(tape.items.len(), 2);
        // Items of a megabyte each: the ninth passes 8 MiB.
        for _ in 0..8 {
            tape.record(0, unreadable(1 << 20));
        }
        assert!(!tape.complete);
        assert!(tape.items.is_empty());
        tape.record(0, unreadable(1));
        assert!(
            tape.items.is_empty(),
            "nothing is recorded once the budget is passed"
        );
    }

    fn line(path: &str) -> RawLine {
        let raw = format!("{{\"path\":\"{path}\",\"type\":\"file\",\"mode\":420,\"size\":3}}\n");
        let mut lines = crate::repo::manifest::ManifestParser::new()
            .feed_raw(raw.as_bytes())
            .unwrap();
        lines.pop().unwrap()
    }

    fn file(size: u64) -> Stat {
        Stat {
            kind: Some(EntryKind::File),
            mode: 0o644,
            uid: 0,
            gid: 0,
            mtime: 0,
            mtime_nsec: 0,
            ctime: 0,
            ctime_nsec: 0,
            dev: 0,
            ino: 0,
            nlink: 1,
            size,
            rdev: 0,
        }
    }

    #[test]
    fn kept_lines_count_what_a_backup_would_read_again_and_stop_at_the_budget() {
        let mut kept = KeptLines::new();
        kept.keep(line("r/same"), Some(&file(100)), true, 0);
        kept.keep(line("r/touched"), Some(&file(7)), false, 0);
        kept.keep(line("r/gone"), None, false, 0);
        let mut dir = file(4096);
        dir.kind = Some(EntryKind::Dir);
        kept.keep(line("r/now-a-dir"), Some(&dir), false, 0);
        assert!(kept.complete);
        assert_eq!(kept.lines.len(), 4);
        assert_eq!(
            kept.reread, 7,
            "only a live file not written as in its line is read again"
        );
        let long = "x".repeat(1 << 20);
        for _ in 0..8 {
            kept.keep(line(&format!("r/{long}")), Some(&file(1)), false, 0);
        }
        assert!(!kept.complete);
        assert!(kept.lines.is_empty());
        assert_eq!(
            kept.reread, 15,
            "what would be read is still counted past the budget"
        );
    }

    #[test]
    fn kept_lines_give_way_to_the_tape() {
        let mut kept = KeptLines::new();
        kept.keep(line("r/a"), Some(&file(1)), true, Tape::BUDGET / 2);
        assert!(kept.complete);
        kept.keep(line("r/b"), Some(&file(1)), true, Tape::BUDGET);
        assert!(!kept.complete, "the tape's bytes count against the same budget");
        assert!(kept.lines.is_empty());

        // And the tape's items count the lines: the lines go first.
        let mut tape = Tape::new(3);
        tape.lines.keep(line("r/a"), Some(&file(1)), true, tape.used);
        assert!(tape.lines.complete);
        let item = std::mem::size_of::<(usize, TreeItem)>();
        tape.record(0, unreadable(Tape::BUDGET - item - 10));
        assert!(tape.complete, "the items fit alone");
        assert!(!tape.lines.complete && tape.lines.lines.is_empty());
    }

    #[test]
    fn a_live_file_the_snapshot_lacks_counts_as_read_again() {
        let mut kept = KeptLines::new();
        kept.extra(&file(5));
        let mut dir = file(4096);
        dir.kind = Some(EntryKind::Dir);
        kept.extra(&dir);
        assert_eq!(kept.reread, 5);
    }
}
