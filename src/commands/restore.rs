use std::io::Write as _;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use cairn::progress::Progress;
use cairn::repo::index::Index;
use cairn::repo::lock::{self, LockKind};
use cairn::repo::reader::BlobReader;
use cairn::repo::snapshot::Snapshot;
use cairn::repo::Repository;
use cairn::restore::envscript::{self, Shell};
use cairn::restore::inplace::{self, InPlaceOptions, Outcome};
use cairn::restore::{self, PlanReport, RestoreOptions, RestoreSummary};
use indicatif::HumanBytes;

use super::{exit, open_repo, print_json, repo_skip, RepoArg};
use crate::cli::RestoreArgs;

pub fn run(repo: RepoArg, args: RestoreArgs) -> Result<u8> {
    let skip = repo_skip(&repo)?;
    let repo = open_repo(repo, false)?;
    let _lock = lock::acquire(&repo, LockKind::Shared)?;
    tracing::debug!("repository opened and locked");
    let index = repo.load_index()?;
    tracing::debug!("index loaded: {} blobs", index.len());
    if args.undo {
        return undo(&repo, &index, &args, skip);
    }
    let query = args.snapshot.as_deref().unwrap_or("latest");
    let snapshot = repo.find_snapshot_filtered(query, &args.filter.filter())?;
    if let Some(shell) = args.env_script {
        return env_script(&repo, &index, &snapshot, shell);
    }
    match &args.target {
        Some(target) if !args.in_place => to_target(&repo, &index, &snapshot, &args, target.clone()),
        _ => in_place(&repo, &index, &snapshot, &args, skip),
    }
}

fn to_target(
    repo: &Repository,
    index: &Index,
    snapshot: &Snapshot,
    args: &RestoreArgs,
    target: PathBuf,
) -> Result<u8> {
    let opts = RestoreOptions {
        target: target.clone(),
        include: args.select.include.clone(),
        exclude: args.select.exclude.clone(),
        overwrite: args.overwrite,
        delete: args.delete,
        checksum: args.checksum,
        ignore_damaged: args.ignore_damaged,
    };
    let progress = Progress::bytes("restore", None);
    let summary = restore::restore(repo, index, snapshot, &opts, &progress);
    progress.finish();
    let summary = summary.with_context(|| format!("restore of snapshot {} failed", snapshot.id.short()))?;
    if args.json {
        print_json(&summary)?;
    } else {
        outln!(
            "restored snapshot {} to {}: {}",
            snapshot.id.short(),
            target.display(),
            describe(&summary)
        )?;
    }
    report(&summary, false, args.ignore_damaged)
}

fn options(args: &RestoreArgs, skip: Vec<PathBuf>) -> InPlaceOptions {
    InPlaceOptions {
        include: args.select.include.clone(),
        exclude: args.select.exclude.clone(),
        roots: args.roots.clone(),
        delete: args.delete,
        checksum: args.checksum,
        dry_run: args.dry_run,
        safety_snapshot: !args.no_safety_snapshot,
        safety: None,
        verify: !args.no_verify,
        check: args.check.clone(),
        check_timeout: Duration::from_secs(args.check_timeout),
        // The repository is never written over, nor removed by --delete.
        skip,
        ignore_damaged: args.ignore_damaged,
    }
}

/// `--json` of an in-place restore: one document whatever happened.
#[derive(serde::Serialize)]
struct InPlaceJson<'a> {
    snapshot: String,
    drift: &'a [Drift],
    plan: &'a PlanReport,
    #[serde(skip_serializing_if = "Option::is_none")]
    summary: Option<&'a RestoreSummary>,
    #[serde(skip_serializing_if = "Option::is_none")]
    safety: Option<String>,
}

fn in_place(
    repo: &Repository,
    index: &Index,
    snapshot: &Snapshot,
    args: &RestoreArgs,
    skip: Vec<PathBuf>,
) -> Result<u8> {
    let opts = options(args, skip);
    let drift = drift(repo, snapshot)?;
    tracing::debug!("{} facts differ", drift.len());
    if !args.json {
        for d in &drift {
            eprintln!("drift: {}", d.describe());
        }
    }
    let progress = Progress::bytes("restore", None);
    let outcome = inplace::restore_in_place(repo, index, snapshot, &opts, &progress);
    progress.finish();
    let outcome =
        outcome.with_context(|| format!("in-place restore of snapshot {} failed", snapshot.id.short()))?;
    let short = snapshot.id.short();
    let (plan, summary, safety, resumed) = match &outcome {
        Outcome::Planned(plan) | Outcome::Nothing(plan) => (plan, None, None, false),
        Outcome::Done {
            plan,
            summary,
            safety,
            resumed,
        } => (plan, Some(&**summary), *safety, *resumed),
    };
    if args.json {
        print_json(&InPlaceJson {
            snapshot: snapshot.id.to_hex(),
            drift: &drift,
            plan,
            summary,
            safety: safety.map(|s| s.to_hex()),
        })?;
    } else if let Outcome::Planned(plan) = &outcome {
        outln!("restoring snapshot {short} in place would change (nothing written):")?;
        print_plan(plan, args.delete)?;
    } else if summary.is_none() {
        outln!("everything is as in snapshot {short}: nothing to restore")?;
    } else if let Some(summary) = summary {
        if resumed {
            outln!("finished an interrupted restore of snapshot {short}")?;
        }
        outln!("restored snapshot {short} in place: {}", describe(summary))?;
        if let Some(safety) = safety {
            outln!(
                "safety snapshot {} holds what was there before: `cairn restore --undo` puts it back",
                safety.short()
            )?;
        }
    }
    match summary {
        Some(summary) => report(summary, !args.delete, args.ignore_damaged),
        None => Ok(exit::OK),
    }
}

/// A fact that differs between the snapshot and the machine now.
#[derive(serde::Serialize)]
struct Drift {
    name: String,
    snapshot: Option<String>,
    now: Option<String>,
}

impl Drift {
    fn describe(&self) -> String {
        let secret = |v: &Option<String>| v.as_deref().is_some_and(|v| v.starts_with("redacted:"));
        if secret(&self.snapshot) || secret(&self.now) {
            return format!("{} changed", self.name);
        }
        let show = |v: &Option<String>| v.clone().unwrap_or_else(|| "(none)".into());
        format!(
            "{}: {} now, {} in the snapshot",
            self.name,
            show(&self.now),
            show(&self.snapshot)
        )
    }
}

/// The facts of the snapshot's profile, taken again now, that differ.
fn drift(repo: &Repository, snapshot: &Snapshot) -> Result<Vec<Drift>> {
    let Some(live) = super::live_state(repo, snapshot)? else {
        return Ok(Vec::new());
    };
    let mut names: Vec<&String> = snapshot.record.facts.keys().chain(live.facts.keys()).collect();
    names.sort();
    names.dedup();
    Ok(names
        .into_iter()
        .filter(|n| snapshot.record.facts.get(*n) != live.facts.get(*n))
        .map(|n| Drift {
            name: n.clone(),
            snapshot: snapshot.record.facts.get(n).cloned(),
            now: live.facts.get(n).cloned(),
        })
        .collect())
}

/// Prints the script that sets the snapshot's environment variables again.
fn env_script(repo: &Repository, index: &Index, snapshot: &Snapshot, shell: Shell) -> Result<u8> {
    let prefixes: Vec<&str> = snapshot
        .record
        .roots
        .iter()
        .filter(|r| r.collector == "env")
        .map(|r| r.prefix.as_str())
        .collect();
    if prefixes.is_empty() {
        bail!(
            "snapshot {} recorded no environment variables",
            snapshot.id.short()
        );
    }
    let mut objects = Vec::new();
    let mut reader = BlobReader::new(repo, index);
    let short = snapshot.id.short();
    for entry in reader.manifest(&short, &snapshot.record.manifest) {
        let entry = entry?;
        if prefixes.contains(&entry.path.lossy().as_str()) {
            if let Some(bytes) = cairn::diff::read_content(repo, index, &entry)? {
                objects.push((entry.path.lossy(), bytes));
            }
        }
    }
    let text = envscript::script(shell, &objects).map_err(anyhow::Error::msg)?;
    write!(std::io::stdout(), "{text}")?;
    Ok(exit::OK)
}

fn undo(repo: &Repository, index: &Index, args: &RestoreArgs, skip: Vec<PathBuf>) -> Result<u8> {
    let (journal, safety) = inplace::last_restore(repo)?;
    let snapshot = repo.read_snapshot(&safety.to_hex())?;
    let opts = InPlaceOptions {
        delete: true,
        dry_run: args.dry_run,
        ..options(args, skip)
    };
    let progress = Progress::bytes("undo", None);
    let outcome = inplace::restore_in_place(repo, index, &snapshot, &opts, &progress);
    progress.finish();
    let outcome = outcome.with_context(|| {
        format!(
            "undoing the restore of snapshot {} failed",
            journal.snapshot.short()
        )
    })?;
    let (summary, plan) = match outcome {
        Outcome::Planned(plan) => {
            outln!(
                "undoing the restore of snapshot {} would change:",
                journal.snapshot.short()
            )?;
            print_plan(&plan, true)?;
            return Ok(exit::OK);
        }
        Outcome::Nothing(plan) => (RestoreSummary::default(), plan),
        Outcome::Done { summary, plan, .. } => (*summary, plan),
    };
    let undone = journal.snapshot.short();
    inplace::mark_undone(journal)?;
    if args.json {
        print_json(&plan)?;
    } else {
        outln!(
            "undid the restore of snapshot {undone}: put back safety snapshot {} ({})",
            safety.short(),
            describe(&summary)
        )?;
    }
    report(&summary, false, args.ignore_damaged)
}

fn describe(s: &RestoreSummary) -> String {
    let mut out = format!(
        "{} files written ({}), {} dirs, {} symlinks",
        s.files,
        HumanBytes(s.bytes),
        s.dirs,
        s.links
    );
    if s.metadata > 0 {
        out.push_str(&format!(", {} metadata only", s.metadata));
    }
    if s.unchanged > 0 {
        out.push_str(&format!(", {} unchanged", s.unchanged));
    }
    if s.deleted > 0 {
        out.push_str(&format!(", {} deleted", s.deleted));
    }
    out
}

/// Prints the plan, root by root.
fn print_plan(plan: &PlanReport, delete: bool) -> Result<()> {
    for r in &plan.roots {
        outln!(
            "  {} -> {}: {} new ({}), {} overwritten ({}), {} metadata only, {} unchanged, {} {}",
            r.prefix,
            r.path,
            r.create,
            HumanBytes(r.create_bytes),
            r.overwrite,
            HumanBytes(r.overwrite_bytes),
            r.metadata,
            r.unchanged,
            r.extra,
            if delete {
                "deleted"
            } else {
                "not in the snapshot (kept)"
            }
        )?;
    }
    for c in &plan.conflicts {
        outln!("  overwrite {c}")?;
    }
    for e in &plan.extras {
        outln!("  {} {e}", if delete { "delete" } else { "keep" })?;
    }
    for u in &plan.unreadable {
        eprintln!("warning: {u}");
    }
    for l in &plan.lost {
        outln!("  lost {l} (its data is in no index)")?;
    }
    Ok(())
}

/// Warnings, errors and what was left, on stderr; the exit code.
fn report(summary: &RestoreSummary, say_left: bool, ignore_damaged: bool) -> Result<u8> {
    for w in &summary.warnings {
        eprintln!("warning: {w}");
    }
    if say_left && summary.left_count > 0 {
        eprintln!(
            "note: {} paths are not in the snapshot and were left as they are (--delete removes them), e.g. {}",
            summary.left_count,
            summary.left.iter().take(3).cloned().collect::<Vec<_>>().join(", ")
        );
    }
    for e in &summary.errors {
        eprintln!("error: {e}");
    }
    for e in &summary.lost {
        eprintln!("lost: {e}");
    }
    if !summary.errors.is_empty() {
        bail!("{} entries could not be restored", summary.errors.len());
    }
    if !summary.lost.is_empty() {
        let what = format!(
            "{} file(s) were not restored: the repository has lost their data (`cairn check` says what is damaged)",
            summary.lost.len()
        );
        // Asked for: the rest is restored, and the restore is incomplete.
        if ignore_damaged {
            eprintln!("error: {what}");
            return Ok(exit::PARTIAL);
        }
        bail!("{what}");
    }
    Ok(exit::OK)
}
