//! `cairn run`: snapper's pre/post pair on any filesystem. A snapshot
//! before the command, the command with the terminal passed through, a
//! snapshot after, and what changed; with --rollback-on-failure, a failed
//! command (or health check) is undone by restoring the pre snapshot in
//! place, the post snapshot serving as its safety snapshot.

use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use cairn::backup::BackupOptions;
use cairn::progress::Progress;
use cairn::repo::id::ObjectId;
use cairn::repo::lock::{self, LockKind};
use cairn::repo::snapshot::RunInfo;
use cairn::restore::inplace::{self, InPlaceOptions, Outcome};
use cairn::select::Selection;

use super::backup::{prepare, save_all, Prepared, Report};
use super::{exit, RepoArg};
use crate::cli::RunArgs;

pub fn run(repo: RepoArg, args: RunArgs) -> Result<u8> {
    if args.profiles.is_empty() && args.paths.is_empty() {
        bail!("say what the command may change: --profile NAME or PATH... before --");
    }
    let prepared = prepare(repo, &args.profiles)?;
    let _lock = lock::acquire(&prepared.repo, LockKind::Shared)?;
    let pair = format!("{:016x}", cairn::sink::local::random_u64());
    let info = |role: &str| RunInfo {
        pair: pair.clone(),
        role: role.to_string(),
        command: args.command.clone(),
        pre: None,
        exit_code: None,
        duration_secs: None,
    };
    let pre = snapshot(&prepared, &args, info("pre"), "pre")?;

    let started = Instant::now();
    let mut command = std::process::Command::new(&args.command[0]);
    let status = cairn::process::without_passwords(&mut command)
        .args(&args.command[1..])
        .status()
        .with_context(|| format!("cannot run {}", args.command[0]))?;
    let duration = started.elapsed();
    let post_info = RunInfo {
        pre: Some(pre),
        exit_code: status.code(),
        duration_secs: Some(duration.as_secs_f64()),
        ..info("post")
    };
    let post = snapshot(&prepared, &args, post_info, "post")?;
    summarize(&prepared, pre, post)?;

    let code = exit_code(&status);
    let failure = if code != 0 {
        Some(format!("the command failed ({status})"))
    } else {
        args.check.as_ref().and_then(|cmd| {
            let timeout = Duration::from_secs(args.check_timeout);
            match cairn::process::run_shell(cmd, timeout) {
                Ok(s) if s.success() => None,
                Ok(s) => Some(format!("the check `{cmd}` failed ({s})")),
                Err(e) => Some(format!("the check `{cmd}` could not run: {e}")),
            }
        })
    };
    match failure {
        Some(what) if args.rollback_on_failure => {
            roll_back(&prepared, pre, post, &what).map(|()| code.max(1))
        }
        Some(what) => {
            eprintln!(
                "{what}; `cairn restore {} --in-place` puts back the pre snapshot",
                pre.short()
            );
            Ok(code.max(1))
        }
        None => Ok(code),
    }
}

/// The command's exit code as cairn's own: 128 + the signal when killed.
fn exit_code(status: &std::process::ExitStatus) -> u8 {
    #[cfg(unix)]
    if let Some(signal) = std::os::unix::process::ExitStatusExt::signal(status) {
        return u8::try_from(128 + signal).unwrap_or(u8::MAX);
    }
    status
        .code()
        .map(|c| u8::try_from(c & 0xff).unwrap_or(1))
        .unwrap_or(1)
}

/// One side of the pair: the profiles' snapshot (one profile) or the paths'.
fn snapshot(prepared: &Prepared, args: &RunArgs, info: RunInfo, role: &str) -> Result<ObjectId> {
    let mut tags = args.tags.clone();
    tags.push(role.to_string());
    let base = BackupOptions {
        paths: args.paths.clone(),
        excludes: args.excludes.clone(),
        tags,
        run: Some(info),
        ..Default::default()
    };
    let (code, ids) =
        save_all(prepared, &base, Report::Stderr).with_context(|| format!("the {role} snapshot failed"))?;
    if code == exit::PARTIAL {
        eprintln!("warning: the {role} snapshot is partial: some files could not be read");
    }
    match ids.as_slice() {
        [one] => Ok(one.parse().context("snapshot id")?),
        _ => bail!("cairn run takes one profile at a time"),
    }
}

/// What the command changed, per root, and the facts that moved.
fn summarize(prepared: &Prepared, pre: ObjectId, post: ObjectId) -> Result<()> {
    let repo = &prepared.repo;
    let index = repo.load_index()?;
    let (a, b) = (
        repo.read_snapshot(&pre.to_hex())?,
        repo.read_snapshot(&post.to_hex())?,
    );
    let stats = cairn::diff::snapshots(
        repo,
        &index,
        &a,
        &b,
        &Selection::default(),
        &mut |_| {},
        &mut |_, _| {},
    )?;
    for (root, s) in &stats {
        eprintln!(
            "changed in {root}: {} added, {} removed, {} modified, {} metadata only",
            s.added, s.removed, s.modified, s.metadata
        );
    }
    for (name, before, after) in cairn::diff::fact_changes(&a.record.facts, &b.record.facts) {
        let show = |v: Option<String>| v.unwrap_or_else(|| "(none)".into());
        eprintln!("changed fact {name}: {} -> {}", show(before), show(after));
    }
    if stats.is_empty() {
        eprintln!("the command changed nothing that the snapshots cover");
    }
    eprintln!("`cairn diff {} {}` shows each path", pre.short(), post.short());
    Ok(())
}

/// Restores `pre` in place, the `post` snapshot being the safety snapshot.
fn roll_back(prepared: &Prepared, pre: ObjectId, post: ObjectId, what: &str) -> Result<()> {
    eprintln!("{what}: rolling back to the pre snapshot {}", pre.short());
    let repo = &prepared.repo;
    let index = repo.load_index()?;
    let snapshot = repo.read_snapshot(&pre.to_hex())?;
    let opts = InPlaceOptions {
        delete: true,
        verify: true,
        safety: Some(post),
        skip: prepared.skip.clone(),
        ..Default::default()
    };
    let progress = Progress::bytes("rollback", None);
    let outcome = inplace::restore_in_place(repo, &index, &snapshot, &opts, &progress);
    progress.finish();
    match outcome.with_context(|| format!("rolling back to {} failed", pre.short()))? {
        Outcome::Done { summary, .. } => eprintln!(
            "rolled back: {} files written, {} deleted; the post snapshot {} keeps what the command made (`cairn restore --undo` puts it back)",
            summary.files,
            summary.deleted,
            post.short()
        ),
        _ => eprintln!("rolled back: nothing had changed"),
    }
    Ok(())
}
