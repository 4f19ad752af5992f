//! Snapshot records and the ways a user refers to one.

use chrono::{DateTime, FixedOffset, Local, NaiveDateTime, TimeZone};
use serde::{Deserialize, Serialize};

use super::id::ObjectId;
use super::manifest::RawBytes;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SnapshotRecord {
    pub version: u32,
    pub time: DateTime<FixedOffset>,
    pub host: String,
    pub user: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub profile: Option<String>,
    #[serde(default)]
    pub tags: Vec<String>,
    pub roots: Vec<Root>,
    pub manifest: Vec<ObjectId>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<ObjectId>,
    /// Some source data could not be read; `warnings` says which.
    #[serde(default)]
    pub partial: bool,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
    /// What a profile named that is absent here (optional files, programs).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
    /// Named values about the machine, from the profile's collectors.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub facts: std::collections::BTreeMap<String, String>,
    pub stats: SnapshotStats,
    pub tool_version: String,
    /// Set on a safety snapshot: which in-place restore it protects.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollback: Option<Rollback>,
    /// Set on the two snapshots `cairn run` takes around a command.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run: Option<RunInfo>,
    /// Set by `repair snapshots` on a snapshot rewritten without the files
    /// whose data the repository had lost.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repaired: Option<RepairInfo>,
    /// Set by `copy` on a record written anew in a repository whose blob
    /// ids differ (an encrypted one, either way): the snapshot it copies.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub copied_from: Option<ObjectId>,
}

/// What `repair snapshots` left out of a snapshot, and which record it
/// replaced.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RepairInfo {
    /// The record this one replaced.
    pub from: ObjectId,
    /// Entries left out (files whose data is lost, hard links to them).
    pub lost_count: u64,
    /// Their paths (manifest paths), the first [`REPAIR_LISTED`].
    pub lost: Vec<String>,
}

/// Paths a repaired record lists, at most.
pub const REPAIR_LISTED: usize = 1000;

/// The tag `repair snapshots` adds to what it rewrites.
pub const REPAIRED_TAG: &str = "repaired";

/// One side of a `cairn run` pair. Both sides carry the same `pair`; the
/// `post` side also names the `pre` snapshot (the `pre` record is written
/// first and, being named by its content, cannot name what comes after).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunInfo {
    /// Random, shared by the pre and post snapshots of one run.
    pub pair: String,
    /// `pre` or `post`.
    pub role: String,
    /// The command line that ran.
    pub command: Vec<String>,
    /// On `post`: the `pre` snapshot.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pre: Option<ObjectId>,
    /// On `post`: the exit code (`None` when ended by a signal).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i32>,
    /// On `post`: how long the command ran.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration_secs: Option<f64>,
}

/// What a safety snapshot (tag `pre-restore`) protects: the machine as it
/// was just before an in-place restore of `restores`, so that restoring it
/// in place undoes that restore.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Rollback {
    /// The snapshot the in-place restore wrote back.
    pub restores: ObjectId,
    /// The restore's transaction id (its journal's name).
    pub transaction: String,
    /// Roots of that restore that did not exist before it (so are not in
    /// this snapshot): undoing it removes them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub absent: Vec<Root>,
}

/// One backed-up source and where its entries live in the manifest.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Root {
    /// Which collector made the entries: `tree` for now.
    pub collector: String,
    /// The original absolute path, for restoring in place.
    pub path: RawBytes,
    /// The manifest path under which the root's entries are stored.
    pub prefix: String,
    /// What the backup left out of a tree (patterns and options as the
    /// tree collector takes them): an in-place restore leaves the same
    /// paths alone, so `--delete` never removes what was never saved.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub excludes: Vec<String>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub gitignore: bool,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub one_file_system: bool,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub exclude_if_present: Vec<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct SnapshotStats {
    pub files: u64,
    pub dirs: u64,
    pub other: u64,
    /// Total size of the files in the snapshot.
    pub bytes: u64,
    pub files_new: u64,
    pub files_changed: u64,
    pub files_unchanged: u64,
    pub bytes_read: u64,
    pub blobs_added: u64,
    /// Uncompressed bytes of new blobs.
    pub bytes_added: u64,
    /// Bytes of packs written (what the repository grew by, index aside).
    pub bytes_stored: u64,
    pub duration_secs: f64,
}

/// A snapshot record with its name.
#[derive(Debug, Clone)]
pub struct Snapshot {
    pub id: ObjectId,
    pub record: SnapshotRecord,
}

#[derive(Debug, thiserror::Error)]
pub enum RefError {
    #[error("the repository has no snapshots")]
    NoSnapshots,
    #[error("no snapshot matches {0:?} (use `latest`, an id prefix or a time such as 2026-11-24T10:30)")]
    NoMatch(String),
    #[error("{query:?} matches {} snapshots: {}", candidates.len(), candidates.join(", "))]
    Ambiguous { query: String, candidates: Vec<String> },
    #[error("{0:?}: the time offset is not one (from -23:59 to +23:59, or Z)")]
    BadOffset(String),
}

/// Which snapshots a command considers (`--host`, `--tag`, `--profile`),
/// applied before a reference is resolved, so `latest --tag pre-upgrade` is
/// the newest snapshot with that tag.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    /// Any of these hosts.
    pub hosts: Vec<String>,
    /// Any of these groups; a group matches a snapshot that has all its tags
    /// (restic's `--tag a,b --tag c`).
    pub tags: Vec<Vec<String>>,
    /// Any of these profiles.
    pub profiles: Vec<String>,
}

impl Filter {
    pub fn is_empty(&self) -> bool {
        self.hosts.is_empty() && self.tags.is_empty() && self.profiles.is_empty()
    }

    pub fn matches(&self, r: &SnapshotRecord) -> bool {
        (self.hosts.is_empty() || self.hosts.contains(&r.host))
            && (self.profiles.is_empty() || r.profile.as_ref().is_some_and(|p| self.profiles.contains(p)))
            && (self.tags.is_empty()
                || self
                    .tags
                    .iter()
                    .any(|group| group.iter().all(|t| r.tags.contains(t))))
    }

    /// The filter as the flags that would give it, for messages.
    pub fn describe(&self) -> String {
        let mut parts = Vec::new();
        parts.extend(self.hosts.iter().map(|h| format!("--host {h}")));
        parts.extend(self.tags.iter().map(|g| format!("--tag {}", g.join(","))));
        parts.extend(self.profiles.iter().map(|p| format!("--profile {p}")));
        parts.join(" ")
    }
}

/// [`resolve`] among the snapshots that pass `filter`. `latest` is never a
/// safety snapshot (one taken before an in-place restore) unless the filter
/// asks for their tag: restoring `latest` twice must not undo the first.
pub fn resolve_filtered(snapshots: &[Snapshot], query: &str, filter: &Filter) -> Result<Snapshot, RefError> {
    let wants_safety = filter.tags.iter().flatten().any(|t| t == SAFETY_TAG);
    let skip_safety = query == "latest" && !wants_safety;
    if filter.is_empty() && !skip_safety {
        return resolve(snapshots, query).cloned();
    }
    let chosen: Vec<Snapshot> = snapshots
        .iter()
        .filter(|s| filter.matches(&s.record) && !(skip_safety && s.record.rollback.is_some()))
        .cloned()
        .collect();
    match resolve(&chosen, query) {
        Err(RefError::NoSnapshots | RefError::NoMatch(_)) if !filter.is_empty() => {
            Err(RefError::NoMatch(format!("{query} {}", filter.describe())))
        }
        other => other.cloned(),
    }
}

/// The tag of safety snapshots, taken before an in-place restore.
/// The snapshot record version this cairn writes and reads; a record of
/// a higher one is refused (FORMAT.md, section 14).
pub const RECORD_VERSION: u32 = 1;

pub const SAFETY_TAG: &str = "pre-restore";

/// `query` as an id prefix (at least 4 hex digits), lower-cased.
pub fn id_prefix(query: &str) -> Option<String> {
    let lower = query.to_ascii_lowercase();
    (lower.len() >= 4 && lower.bytes().all(|b| b.is_ascii_hexdigit())).then_some(lower)
}

/// Finds the one snapshot a reference names: `latest`, a unique id prefix, or
/// a time prefix (`2026-11-24`, `2026-11-24T10:30`) read in local time unless
/// it carries an offset (`Z`, `+01:00`). Snapshots must be sorted by time.
pub fn resolve<'a>(snapshots: &'a [Snapshot], query: &str) -> Result<&'a Snapshot, RefError> {
    if snapshots.is_empty() {
        return Err(RefError::NoSnapshots);
    }
    if query == "latest" {
        return snapshots.last().ok_or(RefError::NoSnapshots);
    }
    let mut matches: Vec<&Snapshot> = Vec::new();
    if let Some(prefix) = id_prefix(query) {
        matches.extend(snapshots.iter().filter(|s| s.id.to_hex().starts_with(&prefix)));
    }
    if matches.is_empty() {
        if let (_, Some(None)) = split_offset(&query.replacen(' ', "T", 1)) {
            return Err(RefError::BadOffset(query.to_string()));
        }
        matches.extend(snapshots.iter().filter(|s| time_matches(&s.record.time, query)));
    }
    match matches.len() {
        0 => Err(RefError::NoMatch(query.to_string())),
        1 => Ok(matches[0]),
        _ => Err(RefError::Ambiguous {
            query: query.to_string(),
            candidates: matches
                .iter()
                .map(|s| {
                    format!(
                        "{} ({})",
                        s.id.short(),
                        s.record.time.with_timezone(&Local).format("%Y-%m-%d %H:%M:%S")
                    )
                })
                .collect(),
        }),
    }
}

/// Compares the snapshot time, written in the query's zone, with the query as
/// a prefix. A space may stand for the `T`.
fn time_matches(time: &DateTime<FixedOffset>, query: &str) -> bool {
    let query = query.replacen(' ', "T", 1);
    let (prefix, offset) = split_offset(&query);
    let written = match offset {
        Some(None) => return false,
        Some(Some(offset)) => time
            .with_timezone(&offset)
            .format("%Y-%m-%dT%H:%M:%S%.f")
            .to_string(),
        None => time
            .with_timezone(&Local)
            .format("%Y-%m-%dT%H:%M:%S%.f")
            .to_string(),
    };
    prefix.len() >= 4 && prefix.starts_with(|c: char| c.is_ascii_digit()) && written.starts_with(prefix)
}

/// Splits `2026-11-24T10:30+01:00` into the time prefix and its offset:
/// `None` without one, `Some(None)` for one out of range (`+99:99`).
fn split_offset(query: &str) -> (&str, Option<Option<FixedOffset>>) {
    if let Some(prefix) = query.strip_suffix(['Z', 'z']) {
        return (prefix, Some(FixedOffset::east_opt(0)));
    }
    if let Some(t) = query.find('T') {
        if let Some(pos) = query[t..].rfind(['+', '-']) {
            let (prefix, offset) = query.split_at(t + pos);
            let sign = if offset.starts_with('-') { -1 } else { 1 };
            let digits: String = offset[1..].chars().filter(|c| c.is_ascii_digit()).collect();
            if digits.len() == 4 || digits.len() == 2 {
                let hours: i32 = digits[..2].parse().unwrap_or(99);
                let minutes: i32 = digits.get(2..4).and_then(|m| m.parse().ok()).unwrap_or(0);
                let valid = hours < 24 && minutes < 60;
                return (
                    prefix,
                    Some(
                        valid
                            .then(|| FixedOffset::east_opt(sign * (hours * 3600 + minutes * 60)))
                            .flatten(),
                    ),
                );
            }
        }
    }
    (query, None)
}

/// Parses `--time`: RFC 3339, or a local time without offset.
pub fn parse_time(s: &str) -> Option<DateTime<FixedOffset>> {
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Some(t);
    }
    for fmt in [
        "%Y-%m-%dT%H:%M:%S%.f",
        "%Y-%m-%d %H:%M:%S%.f",
        "%Y-%m-%dT%H:%M",
        "%Y-%m-%d %H:%M",
    ] {
        if let Ok(naive) = NaiveDateTime::parse_from_str(s, fmt) {
            return Local
                .from_local_datetime(&naive)
                .single()
                .map(|t| t.fixed_offset());
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snap(hex_seed: &str, time: &str) -> Snapshot {
        Snapshot {
            id: ObjectId::of(hex_seed.as_bytes()),
            record: SnapshotRecord {
                version: 1,
                time: DateTime::parse_from_rfc3339(time).unwrap(),
                host: "h".into(),
                user: "u".into(),
                profile: None,
                tags: vec![],
                roots: vec![],
                manifest: vec![],
                parent: None,
                partial: false,
                warnings: vec![],
                notes: vec![],
                facts: Default::default(),
                stats: SnapshotStats::default(),
                tool_version: "t".into(),
                rollback: None,
                run: None,
                repaired: None,
                copied_from: None,
            },
        }
    }

    #[test]
    fn references() {
        let snaps = vec![
            snap("a", "2026-11-24T10:30:05+00:00"),
            snap("b", "2026-11-24T10:31:00+00:00"),
            snap("c", "2026-11-25T08:00:00+00:00"),
        ];
        assert_eq!(resolve(&snaps, "latest").unwrap().id, snaps[2].id);
        let prefix = &snaps[1].id.to_hex()[..8];
        assert_eq!(resolve(&snaps, prefix).unwrap().id, snaps[1].id);
        assert_eq!(resolve(&snaps, "2026-11-24T10:30Z").unwrap().id, snaps[0].id);
        assert_eq!(resolve(&snaps, "2026-11-24T11:31+01:00").unwrap().id, snaps[1].id);
        assert_eq!(resolve(&snaps, "2026-11-25Z").unwrap().id, snaps[2].id);
        match resolve(&snaps, "2026-11-24T10:3Z") {
            Err(RefError::Ambiguous { candidates, .. }) => assert_eq!(candidates.len(), 2),
            other => panic!("expected ambiguity, got {other:?}"),
        }
        assert!(matches!(resolve(&snaps, "2027Z"), Err(RefError::NoMatch(_))));
        assert!(matches!(resolve(&[], "latest"), Err(RefError::NoSnapshots)));
        // An offset out of range was read as local time without a word.
        for bad in [
            "2026-11-24T10:30+99:99",
            "2026-11-24T10:30-24:00",
            "2026-11-24T10:30+01:60",
        ] {
            assert!(
                matches!(resolve(&snaps, bad), Err(RefError::BadOffset(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn latest_narrowed_by_tag_host_and_profile() {
        let mut snaps = vec![
            snap("a", "2026-11-24T10:00:00+00:00"),
            snap("b", "2026-11-24T11:00:00+00:00"),
            snap("c", "2026-11-24T12:00:00+00:00"),
        ];
        snaps[0].record.tags = vec!["pre-upgrade".into(), "go".into()];
        snaps[1].record.host = "other".into();
        snaps[1].record.tags = vec!["pre-upgrade".into()];
        snaps[1].record.profile = Some("go-toolchain".into());
        let tag = |groups: &[&[&str]]| Filter {
            tags: groups
                .iter()
                .map(|g| g.iter().map(|t| t.to_string()).collect())
                .collect(),
            ..Default::default()
        };
        let pick = |f: &Filter| resolve_filtered(&snaps, "latest", f).map(|s| s.id);
        assert_eq!(pick(&tag(&[&["pre-upgrade"]])).unwrap(), snaps[1].id);
        assert_eq!(pick(&tag(&[&["pre-upgrade", "go"]])).unwrap(), snaps[0].id);
        assert_eq!(pick(&tag(&[&["go"], &["nope"]])).unwrap(), snaps[0].id);
        let host = Filter {
            hosts: vec!["h".into()],
            ..tag(&[&["pre-upgrade"]])
        };
        assert_eq!(pick(&host).unwrap(), snaps[0].id);
        let profile = Filter {
            profiles: vec!["go-toolchain".into()],
            ..Default::default()
        };
        assert_eq!(pick(&profile).unwrap(), snaps[1].id);
        assert_eq!(pick(&Filter::default()).unwrap(), snaps[2].id);
        match pick(&tag(&[&["missing"]])) {
            Err(RefError::NoMatch(q)) => assert_eq!(q, "latest --tag missing"),
            other => panic!("expected no match, got {other:?}"),
        }
    }

    #[test]
    fn times() {
        assert!(parse_time("2026-11-24T10:30:00+01:00").is_some());
        assert!(parse_time("2026-11-24 10:30").is_some());
        assert!(parse_time("yesterday").is_none());
    }
}
