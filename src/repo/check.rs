//! `check`: proves that every snapshot can be restored. Every object read is
//! verified against its name; problems name the object and the snapshots
//! they affect.

use std::collections::{HashMap, HashSet};

use serde::Serialize;

use super::id::{IdMap, ObjectId};
use super::index::{Index, IndexBlob};
use super::pack;
use super::reader::BlobReader;
use super::{RepoError, Repository};
use crate::sink::ObjectKind;

#[derive(Debug, Default, Serialize)]
pub struct CheckReport {
    pub snapshots: u64,
    pub index_files: u64,
    pub packs: u64,
    pub blobs: u64,
    pub read_data: bool,
    pub bytes_read: u64,
    pub errors: Vec<Problem>,
    pub warnings: Vec<String>,
    /// What is worth knowing but not wrong (a backup writing right now).
    pub notes: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Problem {
    /// The damaged object, as `kind name`.
    pub object: String,
    pub message: String,
    /// Short ids of the snapshots that cannot be fully restored because of it.
    pub snapshots: Vec<String>,
    /// The command that repairs it.
    pub repair: String,
}

/// What repairs each kind of problem.
const FIX_INDEX: &str = "cairn repair index";
const FIX_LOST: &str = "cairn repair index, then cairn repair snapshots";
const FIX_DAMAGED_PACK: &str = "cairn repair index --read-all-packs, then cairn repair snapshots";
const FIX_RECORD: &str = "cairn forget ID (the damaged record)";
const FIX_SHAPE: &str = "cairn repair snapshots";
const FIX_KEY: &str = "cairn key remove ID (the damaged key; another key opens the repository)";

impl CheckReport {
    pub fn is_ok(&self) -> bool {
        self.errors.is_empty()
    }
}

/// Packs in no index are either being written by a backup running now (its
/// index comes last) or were left by one that was interrupted. Other
/// processes' live locks tell which: while one is held, they are not called
/// interrupted.
fn report_unindexed(
    repo: &Repository,
    unindexed: &[&String],
    report: &mut CheckReport,
) -> Result<(), RepoError> {
    if unindexed.is_empty() {
        return Ok(());
    }
    let (host, pid) = (super::lock::hostname(), std::process::id());
    let running: Vec<String> = super::lock::list_locks(repo.sink().as_ref(), repo.crypto())?
        .into_iter()
        .filter(|(_, l)| !(l.is_stale() || (l.host == host && l.pid == pid)))
        .map(|(_, l)| format!("pid {} on {}", l.pid, l.host))
        .collect();
    if running.is_empty() {
        for name in unindexed {
            report.warnings.push(format!(
                "pack {name} is in no index (left by an interrupted backup; a later prune removes it)"
            ));
        }
    } else {
        report.notes.push(format!(
            "{} pack(s) are in no index yet: another process is using the repository ({}), so they may be a backup's work in progress",
            unindexed.len(),
            running.join(", ")
        ));
    }
    Ok(())
}

/// Runs every check; `read_data` also re-reads and re-hashes every blob.
/// `on_bytes` is told how many pack bytes were read, for progress.
pub fn check(
    repo: &Repository,
    read_data: bool,
    on_bytes: &(dyn Fn(u64) + Sync),
) -> Result<CheckReport, RepoError> {
    let mut report = CheckReport {
        read_data,
        ..Default::default()
    };
    let (index, pack_blobs) = check_index_files(repo, &mut report)?;
    // Damaged copies of each blob: the problem that found it, and how many
    // of its copies are bad. A blob is lost only when every copy is.
    let mut bad_blobs: IdMap<(usize, usize)> = IdMap::default();
    let to_read = check_packs_stored(repo, &pack_blobs, &mut bad_blobs, &mut report)?;
    if read_data {
        let results = read_packs(repo, &to_read, on_bytes)?;
        for (bytes, pack_problems) in results {
            report.bytes_read += bytes;
            for (p, blobs) in pack_problems {
                report.errors.push(p);
                for b in blobs {
                    bad_blobs.entry(b).or_insert((report.errors.len() - 1, 0)).1 += 1;
                }
            }
        }
    }
    check_snapshots(repo, &index, &bad_blobs, &mut report)?;
    check_keys(repo, &mut report)?;
    for p in &mut report.errors {
        p.snapshots.sort();
        p.snapshots.dedup();
    }
    Ok(report)
}

/// Key files of an encrypted repository: each must hash to its name and
/// parse (it opened nothing, or another key opened the repository). A
/// key that is damaged costs only its password while another key exists.
fn check_keys(repo: &Repository, report: &mut CheckReport) -> Result<(), RepoError> {
    for (name, judged) in super::keys::key_files(repo.sink().as_ref())? {
        if let Err(message) = judged {
            report
                .errors
                .push(problem(format!("key {name}"), message, FIX_KEY));
        }
    }
    Ok(())
}

/// Index files. A damaged one makes its blobs unreachable, which the
/// snapshot walk then reports against the snapshots. Returns the index and
/// each pack's blobs (a pack listed by several index files, once).
fn check_index_files(
    repo: &Repository,
    report: &mut CheckReport,
) -> Result<(Index, HashMap<ObjectId, Vec<IndexBlob>>), RepoError> {
    let mut index = Index::default();
    let mut pack_blobs: HashMap<ObjectId, Vec<IndexBlob>> = HashMap::new();
    for info in repo.sink().list(ObjectKind::Index)? {
        report.index_files += 1;
        match repo.read_index_file(&info.name) {
            Ok(file) => {
                index.add_file(&file);
                for p in file.packs {
                    add_pack_blobs(&mut pack_blobs, p);
                }
            }
            Err(RepoError::Corrupt { detail, .. }) => report.errors.push(problem(
                format!("index {}", info.name),
                format!("is damaged: {detail}"),
                FIX_INDEX,
            )),
            Err(e) => report.errors.push(problem(
                format!("index {}", info.name),
                crate::chain(&e),
                FIX_INDEX,
            )),
        }
    }
    report.blobs = index.len() as u64;
    Ok((index, pack_blobs))
}

/// Adds what one index file says a pack holds. A pack listed by several
/// index files gets every distinct entry, so that one that is wrong is
/// read and reported, not hidden behind the other.
fn add_pack_blobs(pack_blobs: &mut HashMap<ObjectId, Vec<IndexBlob>>, pack: super::index::IndexPack) {
    match pack_blobs.entry(pack.id) {
        std::collections::hash_map::Entry::Vacant(v) => {
            v.insert(pack.blobs);
        }
        std::collections::hash_map::Entry::Occupied(mut o) => {
            let known: HashSet<IndexBlob> = o.get().iter().copied().collect();
            o.get_mut()
                .extend(pack.blobs.into_iter().filter(|b| !known.contains(b)));
        }
    }
}

/// Packs: present and long enough; returns those worth reading. Packs no
/// index lists are reported too.
fn check_packs_stored<'p>(
    repo: &Repository,
    pack_blobs: &'p HashMap<ObjectId, Vec<IndexBlob>>,
    bad_blobs: &mut IdMap<(usize, usize)>,
    report: &mut CheckReport,
) -> Result<Vec<(ObjectId, &'p Vec<IndexBlob>)>, RepoError> {
    let stored: HashMap<String, u64> = repo
        .sink()
        .list(ObjectKind::Pack)?
        .into_iter()
        .map(|o| (o.name, o.size))
        .collect();
    let mut to_read = Vec::new();
    for (pack_id, blobs) in pack_blobs {
        report.packs += 1;
        let name = pack_id.to_hex();
        // An offset near 2^64 must not wrap round to a small, plausible end.
        let needed = blobs
            .iter()
            .map(|b| b.frame_offset.saturating_add(u64::from(b.frame_length)))
            .max()
            .unwrap_or(0);
        let message = match stored.get(&name) {
            None => Some("is missing".to_string()),
            Some(&size) if size < needed => Some(format!("is truncated: {size} bytes, index needs {needed}")),
            Some(_) => None,
        };
        match message {
            Some(message) => {
                report
                    .errors
                    .push(problem(format!("pack {name}"), message, FIX_LOST));
                for b in blobs {
                    bad_blobs.entry(b.id).or_insert((report.errors.len() - 1, 0)).1 += 1;
                }
            }
            None => to_read.push((*pack_id, blobs)),
        }
    }
    let indexed: HashSet<String> = pack_blobs.keys().map(|id| id.to_hex()).collect();
    let unindexed: Vec<&String> = stored.keys().filter(|n| !indexed.contains(*n)).collect();
    report_unindexed(repo, &unindexed, report)?;
    Ok(to_read)
}

/// Snapshots: readable, and every blob they need is indexed and unharmed.
fn check_snapshots(
    repo: &Repository,
    index: &Index,
    bad_blobs: &IdMap<(usize, usize)>,
    report: &mut CheckReport,
) -> Result<(), RepoError> {
    let mut reader = BlobReader::new(repo, index);
    for info in repo.sink().list(ObjectKind::Snapshot)? {
        report.snapshots += 1;
        match repo.read_snapshot(&info.name) {
            Ok(snapshot) => check_snapshot(&mut reader, index, bad_blobs, &snapshot, report),
            Err(e) => report.errors.push(problem(
                format!("snapshot {}", info.name),
                crate::chain(&e),
                FIX_RECORD,
            )),
        }
    }
    Ok(())
}

/// Entries restore would refuse that one problem lists by name, at most.
const SHAPE_LISTED: usize = 3;

/// One snapshot: its manifest reads, every blob it needs is indexed and not
/// damaged, and restore would accept every entry.
fn check_snapshot(
    reader: &mut BlobReader<'_>,
    index: &Index,
    bad_blobs: &IdMap<(usize, usize)>,
    snapshot: &super::snapshot::Snapshot,
    report: &mut CheckReport,
) {
    let short = snapshot.id.short();
    let mut missing = 0u64;
    let mut affected_by: HashSet<usize> = HashSet::new();
    let lost = |id: &ObjectId| match bad_blobs.get(id) {
        Some(&(p, bad)) if bad >= index.locations(id).count() => Some(p),
        _ => None,
    };
    affected_by.extend(snapshot.record.manifest.iter().filter_map(lost));
    let mut manifest_error = None;
    let mut shape = super::shape::Shape::default();
    let (mut refused, mut listed) = (0u64, Vec::new());
    for entry in reader.manifest(&short, &snapshot.record.manifest) {
        let entry = match entry {
            Ok(entry) => entry,
            Err(e) => {
                manifest_error = Some(e);
                continue;
            }
        };
        for id in &entry.blobs {
            match lost(id) {
                Some(p) => drop(affected_by.insert(p)),
                None if !index.contains(id) => missing += 1,
                None => {}
            }
        }
        if let Some(wrong) = shape.wrong(&entry, index) {
            refused += 1;
            if listed.len() < SHAPE_LISTED {
                listed.push(wrong);
            }
        }
    }
    for p in affected_by {
        report.errors[p].snapshots.push(short.clone());
    }
    let mut snapshot_problem = |message: String, fix: &str| {
        let mut p = problem(format!("snapshot {}", snapshot.id), message, fix);
        p.snapshots.push(short.clone());
        report.errors.push(p);
    };
    if let Some(e) = manifest_error {
        snapshot_problem(
            format!("manifest cannot be read: {}", e.manifest_cause()),
            FIX_LOST,
        );
    }
    if missing > 0 {
        snapshot_problem(format!("{missing} blobs it needs are in no index"), FIX_LOST);
    }
    if refused > 0 {
        snapshot_problem(
            format!("{refused} entries restore would refuse: {}", listed.join("; ")),
            FIX_SHAPE,
        );
    }
}

fn problem(object: String, message: String, repair: &str) -> Problem {
    Problem {
        object,
        message,
        snapshots: Vec::new(),
        repair: repair.to_string(),
    }
}

type PackProblems = Vec<(Problem, Vec<ObjectId>)>;

/// Reads whole packs on several threads; returns bytes read and problems
/// per thread.
fn read_packs(
    repo: &Repository,
    packs: &[(ObjectId, &Vec<IndexBlob>)],
    on_bytes: &(dyn Fn(u64) + Sync),
) -> Result<Vec<(u64, PackProblems)>, RepoError> {
    let states = super::workers::each_on_workers(
        repo,
        packs,
        || (0u64, PackProblems::new(), pack::FrameDecoder::new(repo.crypto())),
        |(bytes, problems, decoder), (id, blobs)| {
            // A pack that cannot be read is a problem to report with the
            // snapshots it affects, not the end of check.
            let (data, actual) = match repo.read_object(ObjectKind::Pack, &id.to_hex()) {
                Ok(read) => read,
                Err(e) => {
                    let ids = blobs.iter().map(|b| b.id).collect();
                    let message = format!("cannot be read: {}", crate::chain(&e));
                    problems.push((problem(format!("pack {id}"), message, FIX_DAMAGED_PACK), ids));
                    return Ok(());
                }
            };
            *bytes += data.len() as u64;
            on_bytes(data.len() as u64);
            problems.extend(verify_pack(*id, actual, &data, blobs, decoder));
            Ok(())
        },
    )?;
    Ok(states
        .into_iter()
        .map(|(bytes, problems, _)| (bytes, problems))
        .collect())
}

/// Checks a pack's name (`actual`: what its bytes hash to), then every
/// blob the index places in it.
fn verify_pack(
    id: ObjectId,
    actual: ObjectId,
    data: &[u8],
    blobs: &[IndexBlob],
    decoder: &mut pack::FrameDecoder,
) -> PackProblems {
    let mut out = Vec::new();
    let name = format!("pack {id}");
    if actual != id {
        out.push((
            problem(
                name.clone(),
                format!("contents hash to {actual}"),
                FIX_DAMAGED_PACK,
            ),
            Vec::new(),
        ));
    }
    let mut frames: HashMap<u64, Vec<&IndexBlob>> = HashMap::new();
    for b in blobs {
        frames.entry(b.frame_offset).or_default().push(b);
    }
    for (offset, members) in frames {
        let len = members[0].frame_length as usize;
        let start = usize::try_from(offset).unwrap_or(usize::MAX);
        let raw = data.get(start..start.saturating_add(len)).unwrap_or(&[]);
        let frame = match decoder.decode(raw, offset) {
            Ok(f) => f,
            Err(e) => {
                let ids = members.iter().map(|b| b.id).collect();
                out.push((problem(name.clone(), crate::chain(&e), FIX_DAMAGED_PACK), ids));
                continue;
            }
        };
        for b in members {
            let result = pack::check_member_header(&frame, b)
                .and_then(|_| pack::blob_in_frame(&frame, b, decoder.crypto()).map(|_| ()));
            if let Err(e) = result {
                out.push((
                    problem(name.clone(), crate::chain(&e), FIX_DAMAGED_PACK),
                    vec![b.id],
                ));
            }
        }
    }
    out
}
