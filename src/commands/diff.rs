use std::collections::BTreeMap;
use std::io::Write as _;

use anyhow::Result;
use cairn::diff::{self, EnvChange, PathChange, Side, Stat};
use cairn::repo::index::Index;
use cairn::repo::lock::{self, LockKind};
use cairn::repo::manifest::Entry;
use cairn::repo::snapshot::Snapshot;
use cairn::repo::Repository;
use cairn::restore::inplace::{self, InPlaceOptions};
use cairn::select::Selection;
use chrono::Local;
use serde::Serialize;

use super::{exit, live_state, open_repo, print_json, repo_skip, RepoArg};
use crate::cli::DiffArgs;

/// The whole diff, as `--json` prints it.
#[derive(Serialize, Default)]
struct Report {
    before: String,
    /// A snapshot id, or `live`.
    after: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    changes: Option<Vec<PathChange>>,
    stats: BTreeMap<String, Stat>,
    facts: Vec<FactChange>,
    env: BTreeMap<String, Vec<EnvChange>>,
    /// Unified diffs of command outputs, by prefix.
    commands: BTreeMap<String, String>,
}

#[derive(Serialize)]
struct FactChange {
    name: String,
    before: Option<String>,
    after: Option<String>,
}

pub fn run(repo: RepoArg, args: DiffArgs) -> Result<u8> {
    let skip = repo_skip(&repo)?;
    let repo = open_repo(repo, false)?;
    let _lock = lock::acquire(&repo, LockKind::Shared)?;
    let index = repo.load_index()?;
    let filter = args.filter.filter();
    let a = repo.find_snapshot_filtered(&args.a, &filter)?;
    let b = match &args.b {
        Some(q) => Some(repo.find_snapshot_filtered(q, &filter)?),
        None => None,
    };
    let mut prefixes: Vec<String> = a.record.roots.iter().map(|r| r.prefix.clone()).collect();
    prefixes.extend(
        b.iter()
            .flat_map(|b| b.record.roots.iter().map(|r| r.prefix.clone())),
    );
    let selection = Selection::new(&args.select.include, &args.select.exclude, prefixes)?;
    let streaming = !args.json && !args.stat;
    if !args.json {
        let after = match &b {
            Some(b) => describe(b),
            None => "the machine now".to_string(),
        };
        outln!("diff {} -> {after}", describe(&a))?;
    }
    let mut report = Report {
        before: a.id.to_hex(),
        after: b.as_ref().map(|b| b.id.to_hex()).unwrap_or_else(|| "live".into()),
        changes: (args.json && !args.stat).then(Vec::new),
        ..Default::default()
    };
    let mut contents: BTreeMap<String, (Option<Entry>, Option<Entry>)> = BTreeMap::new();
    let mut write_error = None;
    let mut on_change = |c: PathChange| {
        if streaming && write_error.is_none() {
            write_error = outln!("{} {}", c.change.mark(), c.path).err();
        }
        if let Some(list) = report.changes.as_mut() {
            list.push(c);
        }
    };
    let mut on_content = |side: Side, e: &Entry| {
        let slot = contents.entry(e.path.lossy()).or_default();
        match side {
            Side::Before => slot.0 = Some(e.clone()),
            Side::After => slot.1 = Some(e.clone()),
        }
    };
    let live = match &b {
        Some(b) => {
            report.stats =
                diff::snapshots(&repo, &index, &a, b, &selection, &mut on_change, &mut on_content)?;
            None
        }
        None => {
            let opts = InPlaceOptions {
                skip,
                ..Default::default()
            };
            let roots = a.record.roots.clone();
            let targets = inplace::targets(&a, &roots, &opts);
            if let Ok(targets) = &targets {
                report.stats = diff::live(
                    &repo,
                    &index,
                    &a,
                    targets,
                    &selection,
                    &mut on_change,
                    &mut on_content,
                )?;
            }
            live_state(&repo, &a)?
        }
    };
    if let Some(e) = write_error {
        return Err(e.into());
    }
    records(&repo, &index, &a, b.as_ref(), live, contents, &mut report)?;
    if args.json {
        return print_json(&report).map(|()| exit::OK);
    }
    print_text(&report)?;
    Ok(exit::OK)
}

fn describe(s: &Snapshot) -> String {
    format!(
        "{} ({})",
        s.id.short(),
        s.record.time.with_timezone(&Local).format("%Y-%m-%d %H:%M:%S")
    )
}

/// Facts, environment and command outputs: from the two snapshots' content
/// roots, or from the snapshot and what its profile finds now.
fn records(
    repo: &Repository,
    index: &Index,
    a: &Snapshot,
    b: Option<&Snapshot>,
    live: Option<super::LiveState>,
    contents: BTreeMap<String, (Option<Entry>, Option<Entry>)>,
    report: &mut Report,
) -> Result<()> {
    let after_facts = match (b, &live) {
        (Some(b), _) => Some(b.record.facts.clone()),
        (None, Some(l)) => Some(l.facts.clone()),
        (None, None) => None,
    };
    if let Some(after) = after_facts {
        report.facts = diff::fact_changes(&a.record.facts, &after)
            .into_iter()
            .map(|(name, before, after)| FactChange { name, before, after })
            .collect();
    }
    for (prefix, (before, after)) in contents {
        let read = |e: &Option<Entry>| -> Result<Option<Vec<u8>>> {
            Ok(match e {
                Some(e) => diff::read_content(repo, index, e)?,
                None => None,
            })
        };
        let before = read(&before)?.unwrap_or_default();
        let after = match (&live, b) {
            (Some(l), None) => l.contents.get(&prefix).cloned().unwrap_or_default(),
            (None, None) => continue,
            _ => read(&after)?.unwrap_or_default(),
        };
        if prefix.starts_with("env/") {
            let changes = diff::env_changes(&before, &after);
            if !changes.is_empty() {
                report.env.insert(prefix, changes);
            }
        } else {
            let (x, y) = (String::from_utf8_lossy(&before), String::from_utf8_lossy(&after));
            let text = diff::unified(&x, &y, &format!("a/{prefix}"), &format!("b/{prefix}"));
            if !text.is_empty() {
                report.commands.insert(prefix, text);
            }
        }
    }
    Ok(())
}

/// The text report after the paths: facts, environment, command outputs,
/// and counts per root.
fn print_text(report: &Report) -> Result<()> {
    print_records(report)?;
    for (root, s) in &report.stats {
        outln!(
            "{root}: {} added, {} removed, {} modified, {} metadata only",
            s.added,
            s.removed,
            s.modified,
            s.metadata
        )?;
    }
    if report.stats.is_empty()
        && report.facts.is_empty()
        && report.env.is_empty()
        && report.commands.is_empty()
    {
        outln!("no differences")?;
    }
    Ok(())
}

fn print_records(report: &Report) -> Result<()> {
    if !report.facts.is_empty() {
        outln!("facts:")?;
        for f in &report.facts {
            let show = |v: &Option<String>| v.clone().unwrap_or_else(|| "(none)".into());
            outln!("  {}: {} -> {}", f.name, show(&f.before), show(&f.after))?;
        }
    }
    for (prefix, changes) in &report.env {
        outln!("{prefix}:")?;
        for c in changes {
            match (&c.before, &c.after) {
                (Some(x), Some(y)) if x == "(redacted)" && y == "(redacted)" => {
                    outln!("  {}: changed (redacted)", c.name)?
                }
                (x, y) => outln!(
                    "  {}: {} -> {}",
                    c.name,
                    x.as_deref().unwrap_or("(unset)"),
                    y.as_deref().unwrap_or("(unset)")
                )?,
            }
        }
    }
    for text in report.commands.values() {
        write!(std::io::stdout(), "{text}")?;
    }
    Ok(())
}
