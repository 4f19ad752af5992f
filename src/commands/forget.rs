//! `cairn forget`: removes snapshot records by a keep policy (restic's
//! rules, per group) or by id. The data they alone used stays until prune.

use anyhow::{anyhow, bail, Context, Result};
use chrono::Local;
use serde::Serialize;

use super::{exit, open_repo, print_json, RepoArg, SnapshotJson};
use crate::cli::{ForgetArgs, KeepArgs};
use cairn::profile::Retention;
use cairn::repo::lock::{self, LockKind};
use cairn::repo::snapshot::Snapshot;
use cairn::repo::{RepoError, Repository};
use cairn::retention::policy::{Count, Policy, Span};
use cairn::retention::{self, GroupBy, GroupPlan};
use cairn::sink::ObjectKind;

pub fn run(repo: RepoArg, args: ForgetArgs) -> Result<u8> {
    let mut policy = policy_of(&args.keep)?;
    if !args.snapshots.is_empty() && !policy.is_empty() {
        bail!("give snapshot ids or keep rules, not both");
    }
    if args.snapshots.is_empty() && policy.is_empty() {
        match profile_policy(&args.filter.profiles)? {
            Some(p) => policy = p,
            None => {
                eprintln!(
                    "no keep rule given (--keep-*, or the [retention] of one --profile): nothing removed"
                );
                return Ok(exit::OK);
            }
        }
    }
    let group_by: GroupBy = args.group_by.parse().map_err(|e: String| anyhow!(e))?;
    let prune_opts = super::prune::options(&args.prune_opts, args.dry_run)?;
    let repo = open_repo(repo, false)?;
    let kind = if args.dry_run {
        LockKind::Shared
    } else {
        LockKind::Exclusive
    };
    let _lock = lock::acquire(&repo, kind)?;
    let all = repo.load_snapshots()?;
    if !args.snapshots.is_empty() {
        let named = forget_named(&repo, &all, &args)?;
        let named: Vec<&Snapshot> = all.iter().filter(|s| named.contains(&s.id)).collect();
        return prune_after(&repo, &args, &prune_opts, &named);
    }
    let filter = args.filter.filter();
    let considered: Vec<Snapshot> = all
        .iter()
        .filter(|s| filter.matches(&s.record) && holds_paths(s, &args.paths))
        .cloned()
        .collect();
    let plans = retention::plan(&considered, &all, &policy, group_by, chrono::Utc::now());
    if !args.allow_empty {
        if let Some(p) = plans.iter().find(|p| p.keep.is_empty() && !p.remove.is_empty()) {
            bail!(
                "the policy would remove all {} snapshots of {} ({}); nothing removed (--allow-empty allows it)",
                p.remove.len(),
                p.key.describe(),
                policy.describe()
            );
        }
    }
    if args.json {
        print_json(&plans.iter().map(GroupJson::of).collect::<Vec<_>>())?;
    } else {
        outln!("{}", policy.describe())?;
        for plan in &plans {
            print_plan(plan)?;
        }
    }
    let doomed: Vec<&Snapshot> = plans.iter().flat_map(|p| p.remove.iter().copied()).collect();
    remove(&repo, &doomed, &args)?;
    prune_after(&repo, &args, &prune_opts, &doomed)
}

/// `--prune`: prune under the lock forget holds; with `--dry-run`, what it
/// would free once the snapshots are gone. With `--json`, forget's document
/// is already out: prune's report goes as text to stderr.
fn prune_after(
    repo: &Repository,
    args: &ForgetArgs,
    opts: &cairn::repo::prune::PruneOptions,
    doomed: &[&Snapshot],
) -> Result<u8> {
    if !args.prune {
        return Ok(exit::OK);
    }
    let mut opts = opts.clone();
    if args.dry_run {
        opts.without = doomed.iter().map(|s| s.id).collect();
    }
    let report = cairn::repo::prune::prune(repo, &opts)?;
    let freed = report.bytes_before.saturating_sub(report.bytes_after);
    let line = format!(
        "prune{}: {} packs deleted, {} repacked; {} freed",
        if args.dry_run { " would do" } else { "" },
        report.packs_deleted + report.packs_unreferenced,
        report.packs_repacked,
        indicatif::HumanBytes(freed)
    );
    if args.json {
        eprintln!("{line}");
    } else {
        outln!("{line}")?;
    }
    Ok(exit::OK)
}

/// The rules given on the command line.
fn policy_of(keep: &KeepArgs) -> Result<Policy> {
    let count = |n: Option<i64>, flag: &str| -> Result<Count> {
        match n.unwrap_or(0) {
            n if n >= -1 => Ok(n),
            n => bail!("--{flag} {n}: a count is a number of snapshots, or -1 for all"),
        }
    };
    let span = |s: &Option<String>, flag: &str| -> Result<Span> {
        s.as_deref()
            .map(|s| s.parse::<Span>().with_context(|| format!("--{flag}")))
            .unwrap_or(Ok(Span::default()))
    };
    Ok(Policy {
        last: count(keep.keep_last, "keep-last")?,
        hourly: count(keep.keep_hourly, "keep-hourly")?,
        daily: count(keep.keep_daily, "keep-daily")?,
        weekly: count(keep.keep_weekly, "keep-weekly")?,
        monthly: count(keep.keep_monthly, "keep-monthly")?,
        yearly: count(keep.keep_yearly, "keep-yearly")?,
        within: span(&keep.keep_within, "keep-within")?,
        within_hourly: span(&keep.keep_within_hourly, "keep-within-hourly")?,
        within_daily: span(&keep.keep_within_daily, "keep-within-daily")?,
        within_weekly: span(&keep.keep_within_weekly, "keep-within-weekly")?,
        within_monthly: span(&keep.keep_within_monthly, "keep-within-monthly")?,
        within_yearly: span(&keep.keep_within_yearly, "keep-within-yearly")?,
        tags: keep
            .keep_tag
            .iter()
            .map(|list| {
                list.split(',')
                    .filter(|t| !t.is_empty())
                    .map(String::from)
                    .collect()
            })
            .collect(),
    })
}

/// The `[retention]` of the one profile named with `--profile`, if any.
fn profile_policy(profiles: &[String]) -> Result<Option<Policy>> {
    let [name] = profiles else {
        return Ok(None);
    };
    let profile = cairn::profile::find(name)?;
    let policy = policy_of(&keep_args(&profile.retention))
        .with_context(|| format!("profile {name}: [retention] ({})", profile.origin))?;
    Ok((!policy.is_empty()).then_some(policy))
}

/// A profile's `[retention]` as the flags that say the same.
fn keep_args(r: &Retention) -> KeepArgs {
    KeepArgs {
        keep_last: r.keep_last,
        keep_hourly: r.keep_hourly,
        keep_daily: r.keep_daily,
        keep_weekly: r.keep_weekly,
        keep_monthly: r.keep_monthly,
        keep_yearly: r.keep_yearly,
        keep_within: r.keep_within.clone(),
        keep_within_hourly: r.keep_within_hourly.clone(),
        keep_within_daily: r.keep_within_daily.clone(),
        keep_within_weekly: r.keep_within_weekly.clone(),
        keep_within_monthly: r.keep_within_monthly.clone(),
        keep_within_yearly: r.keep_within_yearly.clone(),
        keep_tag: r.keep_tag.clone(),
    }
}

/// Whether the snapshot has a root at each of `paths` (restic's `--path`).
fn holds_paths(s: &Snapshot, paths: &[String]) -> bool {
    paths
        .iter()
        .all(|p| s.record.roots.iter().any(|r| r.path.lossy() == *p))
}

/// `forget ID...`: exactly those, and never one side of a pair alone.
fn forget_named(
    repo: &Repository,
    all: &[Snapshot],
    args: &ForgetArgs,
) -> Result<Vec<cairn::repo::id::ObjectId>> {
    let mut named: Vec<&Snapshot> = Vec::new();
    let mut damaged = Vec::new();
    for query in &args.snapshots {
        let found = match cairn::repo::snapshot::resolve_filtered(all, query, &Default::default()) {
            Ok(found) => found,
            Err(e) => match damaged_record(repo, all, query)? {
                Some(name) => {
                    damaged.push(name);
                    continue;
                }
                None => return Err(e.into()),
            },
        };
        let found = all
            .iter()
            .find(|s| s.id == found.id)
            .ok_or_else(|| anyhow!("snapshot {query} vanished"))?;
        if !named.iter().any(|s| s.id == found.id) {
            named.push(found);
        }
    }
    let partners = retention::partners(all);
    for s in &named {
        let missing: Vec<String> = partners
            .get(&s.id)
            .into_iter()
            .flatten()
            .filter(|p| !named.iter().any(|n| n.id == **p))
            .map(|p| p.short())
            .collect();
        if !missing.is_empty() {
            bail!(
                "snapshot {} belongs with {} (a `cairn run` pair, or a restore and its safety snapshot); name them too to remove them together",
                s.id.short(),
                missing.join(", ")
            );
        }
    }
    if args.json {
        let listed: Vec<SnapshotJson> = named.iter().map(|s| json(s)).collect();
        print_json(&serde_json::json!({ "remove": listed }))?;
    }
    remove(repo, &named, args)?;
    for name in &damaged {
        if args.dry_run {
            outln!("would remove damaged snapshot record {name}")?;
        } else {
            repo.delete(ObjectKind::Snapshot, name)
                .with_context(|| format!("cannot remove snapshot record {name}"))?;
            outln!("removed damaged snapshot record {name}")?;
        }
    }
    Ok(named.iter().map(|s| s.id).collect())
}

/// The one snapshot record `query` (an id or a prefix of at least 4 hex
/// digits) names that cannot be read because it is damaged: `forget` of
/// it is how `check` says to get rid of it. A record of a newer cairn is
/// not damaged, and is never named here.
fn damaged_record(repo: &Repository, all: &[Snapshot], query: &str) -> Result<Option<String>> {
    let Some(query) = cairn::repo::snapshot::id_prefix(query) else {
        return Ok(None);
    };
    let readable: Vec<String> = all.iter().map(|s| s.id.to_hex()).collect();
    let candidates: Vec<String> = repo
        .snapshot_names()?
        .into_iter()
        .filter(|n| n.starts_with(&query) && !readable.contains(n))
        .collect();
    let [name] = candidates.as_slice() else {
        return Ok(None);
    };
    match repo.read_snapshot(name) {
        Err(RepoError::Corrupt { .. }) => Ok(Some(name.clone())),
        _ => Ok(None),
    }
}

/// Deletes the records (unless `--dry-run`), saying so.
fn remove(repo: &Repository, doomed: &[&Snapshot], args: &ForgetArgs) -> Result<u8> {
    for s in doomed {
        if args.dry_run {
            if !args.json {
                outln!("would remove snapshot {}", s.id.short())?;
            }
            continue;
        }
        repo.delete_snapshot(&s.id)
            .with_context(|| format!("cannot remove snapshot {}", s.id.short()))?;
        if !args.json {
            outln!("removed snapshot {}", s.id.short())?;
        }
    }
    if !args.json && !args.dry_run && !doomed.is_empty() {
        outln!(
            "{} snapshots removed; their data stays in the repository until prune",
            doomed.len()
        )?;
    }
    Ok(exit::OK)
}

fn json(s: &Snapshot) -> SnapshotJson<'_> {
    SnapshotJson {
        id: s.id.to_hex(),
        record: &s.record,
    }
}

/// One group in restic's `forget --json` shape.
#[derive(Serialize)]
struct GroupJson<'a> {
    group: &'a retention::GroupKey,
    keep: Vec<SnapshotJson<'a>>,
    remove: Vec<SnapshotJson<'a>>,
    reasons: Vec<ReasonJson<'a>>,
}

#[derive(Serialize)]
struct ReasonJson<'a> {
    snapshot: SnapshotJson<'a>,
    matches: &'a [String],
}

impl<'a> GroupJson<'a> {
    fn of(plan: &'a GroupPlan<'a>) -> GroupJson<'a> {
        GroupJson {
            group: &plan.key,
            keep: plan.keep.iter().map(|(s, _)| json(s)).collect(),
            remove: plan.remove.iter().map(|s| json(s)).collect(),
            reasons: plan
                .keep
                .iter()
                .map(|(s, matches)| ReasonJson {
                    snapshot: json(s),
                    matches,
                })
                .collect(),
        }
    }
}

/// One group as tables of what is kept (and why) and what goes.
fn print_plan(plan: &GroupPlan) -> Result<()> {
    let time = |s: &Snapshot| {
        s.record
            .time
            .with_timezone(&Local)
            .format("%Y-%m-%d %H:%M:%S")
            .to_string()
    };
    outln!("\nsnapshots of {}:", plan.key.describe())?;
    outln!("keep {} snapshots:", plan.keep.len())?;
    outln!("{:<8}  {:<19}  {:<16}  REASONS", "ID", "TIME", "TAGS")?;
    for (s, reasons) in &plan.keep {
        outln!(
            "{:<8}  {:<19}  {:<16}  {}",
            s.id.short(),
            time(s),
            s.record.tags.join(","),
            reasons.join(", ")
        )?;
    }
    if !plan.remove.is_empty() {
        outln!("remove {} snapshots:", plan.remove.len())?;
        outln!("{:<8}  {:<19}  TAGS", "ID", "TIME")?;
        for s in &plan.remove {
            outln!(
                "{:<8}  {:<19}  {}",
                s.id.short(),
                time(s),
                s.record.tags.join(",")
            )?;
        }
    }
    Ok(())
}
