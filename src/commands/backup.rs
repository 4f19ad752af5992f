use std::path::PathBuf;

use anyhow::{anyhow, Context, Result};
use cairn::backup::{self, BackupOptions};
use cairn::profile::expand::expand_path;
use cairn::profile::resolve::{process_var, process_vars, resolve, ResolveOptions};
use cairn::profile::{self, Profile, SinkSpec};
use cairn::progress::Progress;
use cairn::repo::lock::{self, LockKind};
use cairn::repo::snapshot::parse_time;
use cairn::repo::Repository;
use cairn::sink::Location;
use indicatif::HumanBytes;

use super::{exit, open_or_create, open_repo, print_json, repo_skip, RepoArg, SnapshotJson};
use crate::cli::BackupArgs;
use cairn::profile::hooks;

pub fn run(repo: RepoArg, args: BackupArgs) -> Result<u8> {
    let time = match &args.time {
        Some(t) => Some(
            parse_time(t)
                .ok_or_else(|| anyhow!("--time {t:?} is not a time such as 2026-11-24T10:30:00+01:00"))?,
        ),
        None => None,
    };
    let prepared = prepare(repo, &args.profiles)?;
    let _lock = lock::acquire(prepared.repo.sink().clone(), LockKind::Shared)?;
    let base = BackupOptions {
        paths: args.paths.clone(),
        excludes: args.excludes.clone(),
        tags: args.tags.clone(),
        time,
        ..Default::default()
    };
    let report = if args.json { Report::Json } else { Report::Stdout };
    save_all(&prepared, &base, report).map(|(code, _)| code)
}

/// The repository and profiles of a backup, checked before anything runs.
pub struct Prepared {
    pub repo: Repository,
    /// Where the repository is on disk (left out of every source).
    pub skip: Vec<PathBuf>,
    pub profiles: Vec<Profile>,
}

/// Reads every profile, then opens the repository: without --repo, the
/// first profile's own sink before the default one, either created on
/// first use.
pub fn prepare(repo: RepoArg, profile_names: &[String]) -> Result<Prepared> {
    let profiles: Vec<Profile> = profile_names
        .iter()
        .map(|p| profile::find(p))
        .collect::<Result<_, _>>()?;
    let profile_sink = match (
        &repo.location,
        profiles.first().and_then(|p| p.sinks.first().map(|s| (p, s))),
    ) {
        (None, Some((p, SinkSpec::Local { path }))) => Some(
            expand_path(path, &p.base, &process_var)
                .with_context(|| format!("profile {}: sink path {path}", p.name))?,
        ),
        _ => None,
    };
    let (skip, repo) = match profile_sink {
        Some(dir) => (
            vec![std::path::absolute(&dir).unwrap_or(dir.clone())],
            open_or_create(
                Location::Local(dir),
                &repo.options,
                true,
                "the profile's repository",
            )?,
        ),
        None => (repo_skip(&repo)?, open_repo(repo, true)?),
    };
    Ok(Prepared { repo, skip, profiles })
}

/// One snapshot per profile (the paths in `base` join each as trees), or
/// one of the paths alone; hooks run around each. Returns the highest exit
/// code and the snapshots' ids.
/// Where a backup's one-line result goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Report {
    Stdout,
    Json,
    /// On stderr: stdout belongs to something else (`cairn run`'s command).
    Stderr,
}

pub fn save_all(prepared: &Prepared, base: &BackupOptions, report: Report) -> Result<(u8, Vec<String>)> {
    let repo = &prepared.repo;
    let base = BackupOptions {
        // A repository inside a source is never saved into itself.
        skip: prepared.skip.clone(),
        ..base.clone()
    };
    if prepared.profiles.is_empty() {
        return save(repo, &base, report).map(|(code, id)| (code, id.into_iter().collect()));
    }
    let fingerprint_key = super::fingerprint_key(repo);
    let options = ResolveOptions {
        lookup: &process_var,
        vars: &process_vars,
        run_commands: true,
        fingerprint_key,
    };
    let (mut code, mut ids) = (exit::OK, Vec::new());
    for p in &prepared.profiles {
        // A failing `before` hook stops this profile before anything is read.
        let result = hooks::run_before(p)
            .map_err(anyhow::Error::from)
            .and_then(|()| resolve_and_save(repo, p, &base, &options, report));
        let outcome = match &result {
            Ok((code, id)) => hooks::Outcome {
                status: if *code == exit::PARTIAL {
                    "partial"
                } else {
                    "success"
                },
                snapshot: id.clone(),
                error: None,
            },
            Err(e) => hooks::Outcome {
                status: "failed",
                snapshot: None,
                error: Some(format!("{e:#}")),
            },
        };
        for warning in hooks::run_after(p, &outcome) {
            eprintln!("warning: {warning}");
        }
        let (c, id) = result?;
        code = code.max(c);
        ids.extend(id);
    }
    Ok((code, ids))
}

fn resolve_and_save(
    repo: &cairn::repo::Repository,
    p: &Profile,
    base: &BackupOptions,
    options: &ResolveOptions,
    report: Report,
) -> Result<(u8, Option<String>)> {
    let resolved = resolve(p, options)?;
    for note in &resolved.notes {
        eprintln!("note: profile {}: {note}", p.name);
    }
    if resolved.roots.is_empty() && base.paths.is_empty() {
        anyhow::bail!(
            "profile {}: none of its sources exists on this machine; nothing saved",
            p.name
        );
    }
    let mut tags = p.tags.clone();
    tags.extend(base.tags.iter().cloned());
    let opts = BackupOptions {
        roots: resolved.roots,
        facts: resolved.facts,
        notes: resolved.notes,
        profile: Some(p.name.clone()),
        tags,
        ..base.clone()
    };
    save(repo, &opts, report)
}

/// Runs one backup and reports it; returns the exit code and the snapshot id.
fn save(
    repo: &cairn::repo::Repository,
    opts: &BackupOptions,
    report: Report,
) -> Result<(u8, Option<String>)> {
    let progress = Progress::bytes("backup", None);
    let outcome = backup::run(repo, opts, &progress);
    progress.finish();
    let what = opts
        .profile
        .as_deref()
        .map(|p| format!("profile {p}: "))
        .unwrap_or_default();
    let outcome = outcome.with_context(|| format!("{what}backup into {} failed", repo.sink().location()))?;
    for w in &outcome.warnings {
        eprintln!("warning: {w}");
    }
    let r = &outcome.record;
    if report == Report::Json {
        print_json(&SnapshotJson {
            id: outcome.id.to_hex(),
            record: r,
        })?;
    } else {
        let s = &r.stats;
        let line = format!(
            "{what}snapshot {} saved{}: {} files ({} new, {} changed, {} unchanged), {} read, {} added ({} stored) in {:.2}s",
            outcome.id.short(),
            if r.partial { " (partial: some files could not be read)" } else { "" },
            s.files,
            s.files_new,
            s.files_changed,
            s.files_unchanged,
            HumanBytes(s.bytes_read),
            HumanBytes(s.bytes_added),
            HumanBytes(s.bytes_stored),
            s.duration_secs
        );
        match report {
            Report::Stderr => eprintln!("{line}"),
            _ => outln!("{line}")?,
        }
    }
    let code = if r.partial { exit::PARTIAL } else { exit::OK };
    Ok((code, Some(outcome.id.to_hex())))
}
