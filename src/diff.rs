//! What changed between two snapshots, or between a snapshot and the
//! machine now: paths per root (two manifests merged in manifest order, no
//! pack data read; the live side walked and hashed only where metadata
//! differs, as a backup's parent matching does), facts, environment
//! variables, and command outputs as unified diffs.

use std::cmp::Ordering;
use std::collections::BTreeMap;
use std::iter::Peekable;

use serde::Serialize;

use crate::repo::index::Index;
use crate::repo::manifest::{path_cmp, Entry, EntryKind, RawLine};
use crate::repo::reader::BlobReader;
use crate::repo::snapshot::{Root, Snapshot};
use crate::repo::{RepoError, Repository};
use crate::restore::plan::{self, Action, Step, Target};
use crate::select::Selection;

/// Content roots (env, command output) larger than this are compared by
/// hash only.
const MAX_SHOWN_CONTENT: u64 = 1 << 20;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Change {
    Added,
    Removed,
    /// Content differs (or the kind of entry).
    Modified,
    /// Same content; mode, owner or mtime differ.
    Metadata,
}

impl Change {
    pub fn mark(self) -> char {
        match self {
            Change::Added => '+',
            Change::Removed => '-',
            Change::Modified => 'M',
            Change::Metadata => 'm',
        }
    }
}

/// Which side of a diff an entry is from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    Before,
    After,
}

/// Where the entries of content roots (env, command output) go.
pub type OnContent<'x> = dyn FnMut(Side, &Entry) + 'x;

/// One path that differs.
#[derive(Debug, Clone, Serialize)]
pub struct PathChange {
    /// The root's prefix (`tree/proj`).
    pub root: String,
    /// The manifest path.
    pub path: String,
    pub change: Change,
}

/// Counts per root.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Stat {
    pub added: u64,
    pub removed: u64,
    pub modified: u64,
    pub metadata: u64,
}

impl Stat {
    fn count(&mut self, change: Change) {
        match change {
            Change::Added => self.added += 1,
            Change::Removed => self.removed += 1,
            Change::Modified => self.modified += 1,
            Change::Metadata => self.metadata += 1,
        }
    }
}

/// The root an entry lies under: the longest prefix that holds it.
fn root_of<'r>(roots: &'r [Root], path: &[u8]) -> Option<&'r Root> {
    roots
        .iter()
        .filter(|r| plan::under(path, r.prefix.as_bytes()))
        .max_by_key(|r| r.prefix.len())
}

/// Whether a root's entries are paths (tree, files) rather than records.
pub fn is_path_root(root: &Root) -> bool {
    matches!(root.collector.as_str(), "tree" | "files")
}

/// How two manifest entries at one path compare.
fn compare(a: &Entry, b: &Entry) -> Option<Change> {
    let content = a.kind != b.kind
        || match a.kind {
            EntryKind::File => a.size != b.size || a.content_hash() != b.content_hash(),
            EntryKind::Symlink | EntryKind::Hardlink => a.target != b.target,
            EntryKind::Chardev | EntryKind::Blockdev => a.rdev != b.rdev,
            EntryKind::Dir | EntryKind::Fifo => false,
        };
    // A directory's mtime changes with its contents: noise in a diff.
    let time = a.kind != EntryKind::Dir && (a.mtime, a.mtime_nsec) != (b.mtime, b.mtime_nsec);
    let meta = a.mode != b.mode || a.uid != b.uid || a.gid != b.gid || a.xattrs != b.xattrs || time;
    if content {
        Some(Change::Modified)
    } else if meta {
        Some(Change::Metadata)
    } else {
        None
    }
}

/// The path changes between two snapshots, in manifest order, for paths of
/// tree and files roots; content roots' entries are handed to `content`.
pub fn snapshots(
    repo: &Repository,
    index: &Index,
    a: &Snapshot,
    b: &Snapshot,
    selection: &Selection,
    on_change: &mut dyn FnMut(PathChange),
    content: &mut OnContent,
) -> Result<BTreeMap<String, Stat>, RepoError> {
    let (mut ra, mut rb) = (BlobReader::new(repo, index), BlobReader::new(repo, index));
    let (sa, sb) = (a.id.short(), b.id.short());
    let mut left = ra.manifest(&sa, &a.record.manifest).peekable();
    let mut right = rb.manifest(&sb, &b.record.manifest).peekable();
    let mut stats: BTreeMap<String, Stat> = BTreeMap::new();
    loop {
        let (ea, eb) = match next_pair(&mut left, &mut right)? {
            None => break,
            Some(pair) => pair,
        };
        let any = ea
            .as_ref()
            .or(eb.as_ref())
            .map(|e| e.path.as_bytes().to_vec())
            .unwrap_or_default();
        let roots = if eb.is_some() {
            &b.record.roots
        } else {
            &a.record.roots
        };
        let Some(root) = root_of(roots, &any) else {
            continue;
        };
        if !is_path_root(root) {
            if let Some(e) = &ea {
                content(Side::Before, e);
            }
            if let Some(e) = &eb {
                content(Side::After, e);
            }
            continue;
        }
        if !selection.matches(&any) {
            continue;
        }
        let change = match (&ea, &eb) {
            (Some(_), None) => Some(Change::Removed),
            (None, Some(_)) => Some(Change::Added),
            (Some(x), Some(y)) => compare(x, y),
            (None, None) => None,
        };
        if let Some(change) = change {
            stats.entry(root.prefix.clone()).or_default().count(change);
            on_change(PathChange {
                root: root.prefix.clone(),
                path: String::from_utf8_lossy(&any).into_owned(),
                change,
            });
        }
    }
    Ok(stats)
}

/// An entry of the first manifest, the second, or both at one path.
type Pair = (Option<Entry>, Option<Entry>);

/// The next entry of either manifest, or of both when they share a path.
fn next_pair(
    left: &mut Peekable<impl Iterator<Item = Result<Entry, RepoError>>>,
    right: &mut Peekable<impl Iterator<Item = Result<Entry, RepoError>>>,
) -> Result<Option<Pair>, RepoError> {
    let order = match (left.peek(), right.peek()) {
        (None, None) => return Ok(None),
        (Some(Err(_)), _) | (Some(_), None) => Ordering::Less,
        (_, Some(Err(_))) | (None, Some(_)) => Ordering::Greater,
        (Some(Ok(x)), Some(Ok(y))) => path_cmp(x.path.as_bytes(), y.path.as_bytes()),
    };
    Ok(Some(match order {
        Ordering::Less => (left.next().transpose()?, None),
        Ordering::Greater => (None, right.next().transpose()?),
        Ordering::Equal => (left.next().transpose()?, right.next().transpose()?),
    }))
}

/// The path changes from snapshot `a` to the machine now: `a`'s tree and
/// files roots walked where they were taken from.
pub fn live(
    repo: &Repository,
    index: &Index,
    a: &Snapshot,
    targets: &[Target],
    selection: &Selection,
    on_change: &mut dyn FnMut(PathChange),
    content: &mut OnContent,
) -> Result<BTreeMap<String, Stat>, RepoError> {
    let mut reader = BlobReader::new(repo, index);
    let short = a.id.short();
    let mut stats: BTreeMap<String, Stat> = BTreeMap::new();
    let lines = reader.manifest(&short, &a.record.manifest).raw_lines();
    let mut record = |root: &str, path: &[u8], change: Change| {
        stats.entry(root.to_string()).or_default().count(change);
        on_change(PathChange {
            root: root.to_string(),
            path: String::from_utf8_lossy(path).into_owned(),
            change,
        });
    };
    let mut sorter = plan::Sorter::new(false, repo.crypto());
    // The last path that could not be read: what the snapshot has at it or
    // below it was not compared, not removed. (The walk reports a directory
    // right after itself, so its subtree comes next, whole.)
    let mut unread: Option<std::path::PathBuf> = None;
    for step in plan::merge(lines.inspect(|l| hand_content(a, l, content)), targets) {
        match step? {
            Step::Entry { root, line, live } if selection.matches(line.path()) => {
                let dest = || targets[root].dest_of(line.path());
                let change = match sorter.sort(&line, live.as_ref(), &dest)? {
                    (None, _) => None,
                    (Some(_), Ok(Action::Create)) => Some(Change::Removed),
                    (Some(_), Ok(Action::Replace) | Err(_)) => Some(Change::Modified),
                    (Some(entry), Ok(Action::Metadata))
                        if entry.kind == EntryKind::Dir && !dir_meta_differs(&entry, live) =>
                    {
                        None
                    }
                    (Some(_), Ok(Action::Metadata)) => Some(Change::Metadata),
                    (Some(_), Ok(Action::Unchanged)) => None,
                };
                let unseen = live.is_none() && unread.as_ref().is_some_and(|u| dest().starts_with(u));
                if let Some(change) = change.filter(|_| !unseen) {
                    record(&targets[root].prefix, line.path(), change);
                }
            }
            Step::Extra { root, path, .. } if selection.matches(&path) => {
                record(&targets[root].prefix, &path, Change::Added)
            }
            // What lies below could not be compared: said, not passed over
            // as if it were gone.
            Step::Unreadable { path, error } => {
                tracing::warn!("{}: not compared: {error}", path.display());
                unread = Some(path);
            }
            _ => {}
        }
    }
    Ok(stats)
}

/// A directory differs in more than its mtime.
fn dir_meta_differs(entry: &Entry, live: Option<crate::meta::Stat>) -> bool {
    live.is_some_and(|l| {
        entry.mode & 0o7777 != l.mode
            || (crate::meta::running_as_root() && (entry.uid, entry.gid) != (l.uid, l.gid))
    })
}

/// Hands entries of `a`'s content roots to `content` as the merge reads them.
fn hand_content(a: &Snapshot, line: &Result<RawLine, RepoError>, content: &mut OnContent) {
    if let Ok(line) = line {
        if root_of(&a.record.roots, line.path()).is_some_and(|r| !is_path_root(r)) {
            if let Ok(e) = line.entry() {
                content(Side::Before, &e);
            }
        }
    }
}

/// The bytes of a content entry (env JSON, command output), or `None` when
/// it is larger than a diff shows.
pub fn read_content(repo: &Repository, index: &Index, entry: &Entry) -> Result<Option<Vec<u8>>, RepoError> {
    if entry.size > MAX_SHOWN_CONTENT || entry.kind != EntryKind::File {
        return Ok(None);
    }
    let mut reader = BlobReader::new(repo, index);
    let mut out = Vec::new();
    for id in &entry.blobs {
        reader.read_with(id, |data| out.extend_from_slice(data))?;
    }
    Ok(Some(out))
}

/// One environment variable that differs.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct EnvChange {
    pub name: String,
    /// `None` when absent on that side; `"(redacted)"` for a secret.
    pub before: Option<String>,
    pub after: Option<String>,
}

/// Variable by variable, two env collector JSON objects. A redacted value
/// is compared by fingerprint and shown only as `(redacted)`.
pub fn env_changes(before: &[u8], after: &[u8]) -> Vec<EnvChange> {
    let parse =
        |b: &[u8]| -> BTreeMap<String, serde_json::Value> { serde_json::from_slice(b).unwrap_or_default() };
    let (a, b) = (parse(before), parse(after));
    let shown = |v: Option<&serde_json::Value>| {
        v.map(|v| match v {
            serde_json::Value::String(s) => s.clone(),
            _ => "(redacted)".to_string(),
        })
    };
    let mut names: Vec<&String> = a.keys().chain(b.keys()).collect();
    names.sort();
    names.dedup();
    names
        .into_iter()
        .filter(|n| a.get(*n) != b.get(*n))
        .map(|n| EnvChange {
            name: n.clone(),
            before: shown(a.get(n)),
            after: shown(b.get(n)),
        })
        .collect()
}

/// Facts that differ: name, before, after (`None` when absent). `env.*`
/// facts are left out: the environment has a section of its own, where a
/// secret shows only as changed.
pub fn fact_changes(
    a: &BTreeMap<String, String>,
    b: &BTreeMap<String, String>,
) -> Vec<(String, Option<String>, Option<String>)> {
    let mut names: Vec<&String> = a.keys().chain(b.keys()).collect();
    names.sort();
    names.dedup();
    names
        .into_iter()
        .filter(|n| !n.starts_with("env.") && a.get(*n) != b.get(*n))
        .map(|n| (n.clone(), a.get(n).cloned(), b.get(n).cloned()))
        .collect()
}

/// A unified diff of two texts (3 lines of context), empty when equal.
pub fn unified(before: &str, after: &str, from: &str, to: &str) -> String {
    let (a, b): (Vec<&str>, Vec<&str>) = (before.lines().collect(), after.lines().collect());
    if a == b {
        return String::new();
    }
    let ops = line_ops(&a, &b);
    let mut out = format!("--- {from}\n+++ {to}\n");
    for hunk in hunks(&ops, 3) {
        let (mut ai, mut bi, mut an, mut bn) = (None, None, 0, 0);
        let mut body = String::new();
        for op in &ops[hunk.0..hunk.1] {
            let (ch, line) = match *op {
                Op::Same(i, j) => {
                    ai.get_or_insert(i);
                    bi.get_or_insert(j);
                    (an, bn) = (an + 1, bn + 1);
                    (' ', a[i])
                }
                Op::Del(i) => {
                    ai.get_or_insert(i);
                    an += 1;
                    ('-', a[i])
                }
                Op::Add(j) => {
                    bi.get_or_insert(j);
                    bn += 1;
                    ('+', b[j])
                }
            };
            body.push(ch);
            body.push_str(line);
            body.push('\n');
        }
        let start = |first: Option<usize>, n: usize| {
            if n == 0 {
                first.unwrap_or(0)
            } else {
                first.unwrap_or(0) + 1
            }
        };
        out.push_str(&format!(
            "@@ -{},{an} +{},{bn} @@\n",
            start(ai, an),
            start(bi, bn)
        ));
        out.push_str(&body);
    }
    out
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Same(usize, usize),
    Del(usize),
    Add(usize),
}

/// A shortest edit script by longest common subsequence. Outputs past a
/// few thousand lines each are compared as wholes (every line replaced),
/// which keeps the table small.
fn line_ops(a: &[&str], b: &[&str]) -> Vec<Op> {
    const MAX_CELLS: usize = 16 << 20;
    let (n, m) = (a.len(), b.len());
    if n.saturating_mul(m) > MAX_CELLS {
        return (0..n).map(Op::Del).chain((0..m).map(Op::Add)).collect();
    }
    // lcs[i][j]: the longest common subsequence of a[i..] and b[j..].
    let mut lcs = vec![0u32; (n + 1) * (m + 1)];
    let at = |i: usize, j: usize| i * (m + 1) + j;
    for i in (0..n).rev() {
        for j in (0..m).rev() {
            lcs[at(i, j)] = if a[i] == b[j] {
                lcs[at(i + 1, j + 1)] + 1
            } else {
                lcs[at(i + 1, j)].max(lcs[at(i, j + 1)])
            };
        }
    }
    let (mut i, mut j, mut ops) = (0, 0, Vec::new());
    while i < n || j < m {
        if i < n && j < m && a[i] == b[j] {
            ops.push(Op::Same(i, j));
            (i, j) = (i + 1, j + 1);
        } else if i < n && (j == m || lcs[at(i + 1, j)] >= lcs[at(i, j + 1)]) {
            ops.push(Op::Del(i));
            i += 1;
        } else {
            ops.push(Op::Add(j));
            j += 1;
        }
    }
    ops
}

/// Ranges of `ops` to print: each change with `context` unchanged lines
/// around it, nearby ones merged.
fn hunks(ops: &[Op], context: usize) -> Vec<(usize, usize)> {
    let mut out: Vec<(usize, usize)> = Vec::new();
    for (k, op) in ops.iter().enumerate() {
        if matches!(op, Op::Same(..)) {
            continue;
        }
        let (start, end) = (k.saturating_sub(context), (k + context + 1).min(ops.len()));
        match out.last_mut() {
            Some(last) if start <= last.1 => last.1 = end,
            _ => out.push((start, end)),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unified_diff_of_command_output() {
        let a = "go version go1.22.5 linux/amd64\n";
        let b = "go version go1.23.0 linux/amd64\n";
        let d = unified(a, b, "a/stdout", "b/stdout");
        assert_eq!(
            d,
            "--- a/stdout\n+++ b/stdout\n@@ -1,1 +1,1 @@\n-go version go1.22.5 linux/amd64\n+go version go1.23.0 linux/amd64\n"
        );
        assert_eq!(unified(a, a, "x", "y"), "");
        let long_a: String = (0..20).map(|i| format!("line {i}\n")).collect();
        let long_b = long_a.replace("line 10\n", "line ten\n").replace("line 0\n", "");
        let d = unified(&long_a, &long_b, "a", "b");
        assert!(d.contains("@@ -1,4 +1,3 @@\n-line 0\n line 1\n"), "{d}");
        assert!(d.contains("-line 10\n+line ten\n"), "{d}");
        assert_eq!(d.matches("@@ -").count(), 2, "{d}");
    }

    #[test]
    fn env_changes_hide_secrets() {
        let a = br#"{"GOFLAGS": "-mod=mod", "API_TOKEN": {"redacted": "aa"}, "GONE": "x"}"#;
        let b = br#"{"GOFLAGS": "-mod=vendor", "API_TOKEN": {"redacted": "bb"}, "NEW": "y"}"#;
        let c = env_changes(a, b);
        let names: Vec<&str> = c.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, ["API_TOKEN", "GOFLAGS", "GONE", "NEW"]);
        assert_eq!(c[0].before.as_deref(), Some("(redacted)"));
        assert_eq!(c[1].after.as_deref(), Some("-mod=vendor"));
        assert_eq!(c[2].after, None);
        assert!(env_changes(a, a).is_empty());
    }
}
