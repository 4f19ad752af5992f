use std::path::PathBuf;

use anyhow::{anyhow, bail, Context, Result};
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

use super::{exit, open_or_create, open_repo, print_json, repo_skip, Create, RepoArg, SnapshotJson};
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
    let lock = lock::acquire(&prepared.repo, LockKind::Shared)?;
    let base = BackupOptions {
        paths: args.paths.clone(),
        excludes: args.excludes.clone(),
        tags: args.tags.clone(),
        time,
        ..Default::default()
    };
    let report = if args.json { Report::Json } else { Report::Stdout };
    let code = save_all(&prepared, &base, report).map(|(code, _)| code)?;
    tidy_index(&prepared.repo, &lock);
    Ok(code)
}

/// Merges the repository's small index files once many have gathered, when
/// no other process uses it. The snapshot is saved whatever happens here.
pub fn tidy_index(repo: &Repository, held: &lock::RepoLock) {
    match cairn::repo::consolidate::if_alone(repo, held) {
        Ok(Some(c)) if c.merged > 0 => tracing::info!("merged {} index files into {}", c.merged, c.written),
        Ok(_) => {}
        Err(e) => eprintln!(
            "warning: merging the index files of {} failed (the snapshot is saved): {}",
            repo.sink().location(),
            cairn::chain(&e)
        ),
    }
}

/// The repository and profiles of a backup, checked before anything runs.
pub struct Prepared {
    /// Where snapshots are written: `--repo`, or the first of the profile's
    /// sinks that opened.
    pub repo: Repository,
    /// Paths never saved: every repository that is a directory here.
    pub skip: Vec<PathBuf>,
    pub profiles: Vec<Profile>,
    /// The profile's other sinks: each snapshot is copied into every one.
    pub mirrors: Vec<Repository>,
    /// Sinks that could not be opened: where, and why.
    pub unreachable: Vec<SinkResult>,
}

/// Whether one sink holds a snapshot, for the summary and `--json`.
#[derive(Debug, Clone, serde::Serialize)]
pub struct SinkResult {
    pub location: String,
    pub ok: bool,
    /// The snapshot's id there: the same in every plain repository, its
    /// own in an encrypted one (the record is sealed anew).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Reads every profile, then opens the repository: `--repo`, else the first
/// profile's sinks (a local one created on first use, a NAS or S3 one
/// never), else the default repository.
pub fn prepare(repo: RepoArg, profile_names: &[String]) -> Result<Prepared> {
    let profiles: Vec<Profile> = profile_names
        .iter()
        .map(|name| profile::find(name))
        .collect::<Result<_, _>>()?;
    let sinks = match (&repo.location, profiles.first()) {
        (None, Some(p)) if !p.sinks.is_empty() => Some(p),
        _ => None,
    };
    let Some(p) = sinks else {
        return Ok(Prepared {
            skip: repo_skip(&repo)?,
            repo: open_repo(repo, true)?,
            profiles,
            mirrors: Vec::new(),
            unreachable: Vec::new(),
        });
    };
    let (mut opened, mut skip, mut unreachable) = (Vec::new(), Vec::new(), Vec::new());
    for sink in &p.sinks {
        let (location, result) = open_sink(p, sink, &repo, &mut skip);
        match result {
            Ok(r) => opened.push(r),
            Err(e) => {
                eprintln!("warning: profile {}: sink {location}: {e:#}", p.name);
                unreachable.push(SinkResult {
                    location,
                    ok: false,
                    id: None,
                    error: Some(format!("{e:#}")),
                });
            }
        }
    }
    if opened.is_empty() {
        bail!(
            "profile {}: none of its {} sinks could be opened; nothing saved",
            p.name,
            p.sinks.len()
        );
    }
    let repo = opened.remove(0);
    Ok(Prepared {
        repo,
        skip,
        profiles,
        mirrors: opened,
        unreachable,
    })
}

/// Opens one of a profile's sinks; returns where it is, for messages.
fn open_sink(
    p: &Profile,
    sink: &SinkSpec,
    repo: &RepoArg,
    skip: &mut Vec<PathBuf>,
) -> (String, Result<Repository>) {
    let dir = |path: &str| {
        expand_path(path, &p.base, &process_var)
            .with_context(|| format!("profile {}: sink path {path}", p.name))
    };
    match sink {
        SinkSpec::Local { path, .. } | SinkSpec::Nas { path, .. } => {
            let dir = match dir(path) {
                Ok(dir) => dir,
                Err(e) => return (path.clone(), Err(e)),
            };
            skip.push(std::path::absolute(&dir).unwrap_or(dir.clone()));
            let shown = dir.display().to_string();
            let result = match sink {
                SinkSpec::Nas { .. } => cairn::sink::nas::check_share(&dir)
                    .map_err(anyhow::Error::from)
                    .and_then(|()| {
                        let create = Create {
                            create: false,
                            encrypt: false,
                        };
                        open_or_create(
                            Location::Local(dir),
                            &repo.options,
                            &repo.passwords,
                            create,
                            "the NAS repository",
                        )
                    }),
                _ => open_or_create(
                    Location::Local(dir),
                    &repo.options,
                    &repo.passwords,
                    Create {
                        create: true,
                        encrypt: sink.encrypt() == Some(true),
                    },
                    "the profile's repository",
                ),
            };
            (
                shown.clone(),
                result.and_then(|r| must_be_encrypted(p, sink, &shown, r)),
            )
        }
        SinkSpec::S3 { url, options, .. } => {
            let mut arg = RepoArg {
                location: Some(PathBuf::from(url)),
                options: repo.options.clone(),
                passwords: repo.passwords.clone(),
            };
            let set = options.iter().try_for_each(|o| arg.options.set(o));
            let result = set
                .map_err(anyhow::Error::from)
                .and_then(|()| open_repo(arg, false));
            (
                url.clone(),
                result.and_then(|r| must_be_encrypted(p, sink, url, r)),
            )
        }
    }
}

/// A sink that says `encrypt = true` is never written to in clear: a
/// plain repository there (perhaps put in place of the encrypted one) is
/// refused.
fn must_be_encrypted(p: &Profile, sink: &SinkSpec, shown: &str, repo: Repository) -> Result<Repository> {
    if sink.encrypt() == Some(true) && !repo.is_encrypted() {
        anyhow::bail!(
            "profile {}: the sink at {shown} says encrypt = true, but the repository there is not encrypted; refusing to write to it in clear",
            p.name
        );
    }
    Ok(repo)
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
        return save(prepared, &base, report).map(|(code, id)| (code, id.into_iter().collect()));
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
            .and_then(|()| resolve_and_save(prepared, p, &base, &options, report));
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
    prepared: &Prepared,
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
    save(prepared, &opts, report)
}

/// Runs one backup, copies it into the mirrors, and reports it; returns
/// the exit code (PARTIAL when files could not be read or a sink misses
/// the snapshot) and the snapshot id.
fn save(prepared: &Prepared, opts: &BackupOptions, report: Report) -> Result<(u8, Option<String>)> {
    let repo = &prepared.repo;
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
    let sinks = mirror(prepared, &outcome);
    let r = &outcome.record;
    let incomplete = r.partial || sinks.iter().any(|s| !s.ok);
    if report == Report::Json {
        print_json(&BackupJson {
            snapshot: SnapshotJson {
                id: outcome.id.to_hex(),
                record: r,
            },
            sinks: (sinks.len() > 1).then_some(&sinks),
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
        let mut lines = vec![line];
        if sinks.len() > 1 {
            let held = sinks.iter().filter(|s| s.ok).count();
            lines.push(format!("{what}held by {held} of {} sinks", sinks.len()));
        }
        for line in lines {
            match report {
                Report::Stderr => eprintln!("{line}"),
                _ => outln!("{line}")?,
            }
        }
    }
    let code = if incomplete { exit::PARTIAL } else { exit::OK };
    Ok((code, Some(outcome.id.to_hex())))
}

/// `backup --json`: the snapshot, and with several sinks which hold it.
#[derive(serde::Serialize)]
struct BackupJson<'a> {
    #[serde(flatten)]
    snapshot: SnapshotJson<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    sinks: Option<&'a Vec<SinkResult>>,
}

/// Copies a new snapshot into every mirror (only the blobs each lacks);
/// a failing one is reported and the others go on. Returns every sink's
/// result, the primary's first.
fn mirror(prepared: &Prepared, outcome: &backup::BackupOutcome) -> Vec<SinkResult> {
    let repo = &prepared.repo;
    let mut results = vec![SinkResult {
        location: repo.sink().location(),
        ok: true,
        id: Some(outcome.id.to_hex()),
        error: None,
    }];
    if prepared.mirrors.is_empty() && prepared.unreachable.is_empty() {
        return results;
    }
    let snapshot = cairn::repo::snapshot::Snapshot {
        id: outcome.id,
        record: outcome.record.clone(),
    };
    let index = repo.load_index();
    for m in &prepared.mirrors {
        let location = m.sink().location();
        let copied = index
            .as_ref()
            .map_err(|e| anyhow!("{}", cairn::chain(e)))
            .and_then(|index| {
                let lock = lock::acquire(m, LockKind::Shared)?;
                let copied = cairn::copy::copy(
                    repo,
                    index,
                    m,
                    std::slice::from_ref(&snapshot),
                    &Progress::hidden(),
                )
                .map_err(anyhow::Error::from)?;
                tidy_index(m, &lock);
                Ok(copied)
            });
        match copied {
            Ok(report) => results.push(SinkResult {
                location,
                ok: true,
                // A new snapshot is never there already.
                id: Some(
                    report
                        .new_ids
                        .first()
                        .cloned()
                        .unwrap_or_else(|| outcome.id.to_hex()),
                ),
                error: None,
            }),
            Err(e) => {
                eprintln!(
                    "warning: copying snapshot {} into {location} failed: {e:#}",
                    outcome.id.short()
                );
                results.push(SinkResult {
                    location,
                    ok: false,
                    id: None,
                    error: Some(format!("{e:#}")),
                });
            }
        }
    }
    results.extend(prepared.unreachable.iter().cloned());
    results
}
