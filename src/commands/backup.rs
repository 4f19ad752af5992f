use std::path::PathBuf;

use anyhow::{anyhow, Context, Result};
use cairn::backup::{self, BackupOptions};
use cairn::profile::expand::expand_path;
use cairn::profile::resolve::{resolve, ResolveOptions};
use cairn::profile::{self, Profile, SinkSpec};
use cairn::progress::Progress;
use cairn::repo::lock::{self, LockKind};
use cairn::repo::snapshot::parse_time;
use indicatif::HumanBytes;
use serde::Serialize;

use super::{exit, open_repo, print_json, repo_path};
use crate::cli::BackupArgs;

#[derive(Serialize)]
struct BackupJson<'a> {
    id: String,
    #[serde(flatten)]
    record: &'a cairn::repo::snapshot::SnapshotRecord,
}

fn env_lookup(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

pub fn run(repo: Option<PathBuf>, args: BackupArgs) -> Result<u8> {
    let time = match &args.time {
        Some(t) => Some(
            parse_time(t)
                .ok_or_else(|| anyhow!("--time {t:?} is not a time such as 2026-11-24T10:30:00+01:00"))?,
        ),
        None => None,
    };
    // Every profile is read and checked before anything runs.
    let profiles: Vec<Profile> = args
        .profiles
        .iter()
        .map(|p| profile::find(p))
        .collect::<Result<_, _>>()?;
    // Without --repo, a profile's own sink is used before the default one.
    let repo = match (
        repo,
        profiles.first().and_then(|p| p.sinks.first().map(|s| (p, s))),
    ) {
        (Some(repo), _) => Some(repo),
        (None, Some((p, SinkSpec::Local { path }))) => Some(
            expand_path(path, &p.base, &env_lookup)
                .with_context(|| format!("profile {}: sink path {path}", p.name))?,
        ),
        (None, None) => None,
    };
    let (repo_dir, _) = repo_path(repo.clone())?;
    let repo = open_repo(repo, true)?;
    let _lock = lock::acquire(repo.sink().clone(), LockKind::Shared)?;

    // One snapshot per profile; the paths given join each as trees.
    let mut runs: Vec<BackupOptions> = Vec::new();
    let base = BackupOptions {
        paths: args.paths.clone(),
        // A repository inside a source is never saved into itself.
        skip: vec![repo_dir],
        excludes: args.excludes.clone(),
        tags: args.tags.clone(),
        time,
        ..Default::default()
    };
    if profiles.is_empty() {
        runs.push(base.clone());
    }
    // Env fingerprints are keyed by the repository, so they compare equal
    // across its snapshots and differ between repositories.
    let fingerprint_key = blake3::derive_key("cairn env fingerprint v1", repo.config().id.as_bytes());
    let vars = || {
        std::env::vars_os()
            .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
            .collect()
    };
    let options = ResolveOptions {
        lookup: &env_lookup,
        vars: &vars,
        run_commands: true,
        fingerprint_key,
    };
    for p in &profiles {
        let resolved = resolve(p, &options)?;
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
        runs.push(BackupOptions {
            roots: resolved.roots,
            facts: resolved.facts,
            profile: Some(p.name.clone()),
            tags,
            ..base.clone()
        });
    }

    let mut code = exit::OK;
    for opts in &runs {
        let progress = Progress::bytes("backup", None);
        let outcome = backup::run(&repo, opts, &progress);
        progress.finish();
        let what = opts
            .profile
            .as_deref()
            .map(|p| format!("profile {p}: "))
            .unwrap_or_default();
        let outcome =
            outcome.with_context(|| format!("{what}backup into {} failed", repo.sink().location()))?;
        for w in &outcome.warnings {
            eprintln!("warning: {w}");
        }
        let r = &outcome.record;
        if args.json {
            print_json(&BackupJson {
                id: outcome.id.to_hex(),
                record: r,
            })?;
        } else {
            let s = &r.stats;
            println!(
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
        }
        if r.partial {
            code = exit::PARTIAL;
        }
    }
    Ok(code)
}
