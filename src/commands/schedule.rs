//! `cairn schedule`: install, show, remove a profile's scheduled job, say
//! how its runs went, and `run` it (what the scheduler calls).

use std::time::Instant;

use anyhow::{anyhow, Context, Result};
use chrono::Local;
use serde::{Deserialize, Serialize};

use super::{exit, print_json, RepoArg};
use crate::cli::{
    BackupArgs, FilterArgs, ForgetArgs, JobArgs, KeepArgs, PruneOpts, ScheduleCommand, TargetArgs,
};
use cairn::schedule::render::{self, Backend};
use cairn::schedule::runlog::{self, Run};
use cairn::schedule::{install, Job, When};

pub fn run(repo: RepoArg, command: ScheduleCommand) -> Result<u8> {
    match command {
        ScheduleCommand::Show { job } => show(&repo, &job),
        ScheduleCommand::Install { job, dry_run } => install_job(&repo, &job, dry_run),
        ScheduleCommand::Remove { profile, target } => remove_job(&repo, &profile, &target),
        ScheduleCommand::Status { profile, json } => status(&profile, json),
        ScheduleCommand::Run { profile } => run_job(repo, &profile),
    }
}

fn backend(target: &TargetArgs) -> Result<Backend> {
    match &target.backend {
        Some(b) => b.parse().map_err(|e: String| anyhow!(e)),
        None => Ok(cairn::schedule::default_backend()),
    }
}

fn job_of(repo: &RepoArg, args: &JobArgs) -> Result<Job> {
    // The profile must exist and parse now, not at 03:00.
    cairn::profile::find(&args.profile)?;
    let when = When::parse(&args.every, args.at.as_deref(), args.on.as_deref())?;
    let exe = std::env::current_exe().context("cannot tell where this cairn executable is")?;
    // A directory is made absolute (the scheduler starts elsewhere); a URL
    // stays as it is.
    let repo = repo
        .location
        .as_ref()
        .map(|p| match cairn::sink::Location::parse(p.as_os_str()) {
            Ok(cairn::sink::Location::Local(dir)) => {
                std::path::absolute(&dir).unwrap_or(dir).display().to_string()
            }
            _ => p.display().to_string(),
        });
    Ok(Job {
        profile: args.profile.clone(),
        when,
        exe,
        repo,
    })
}

fn show(repo: &RepoArg, args: &JobArgs) -> Result<u8> {
    let job = job_of(repo, args)?;
    for piece in render::render(&job, backend(&args.target)?, args.target.system)? {
        outln!("# {}\n{}", piece.name, piece.text)?;
    }
    Ok(exit::OK)
}

/// What `status` needs to know of an installed job.
#[derive(Serialize, Deserialize)]
struct Installed {
    when: When,
    backend: String,
    command: Vec<String>,
}

fn installed_path(profile: &str) -> Result<std::path::PathBuf> {
    let dir = runlog::dir().ok_or_else(|| anyhow!("no state directory is known for this user"))?;
    Ok(dir.join(format!("{profile}.job.json")))
}

fn install_job(repo: &RepoArg, args: &JobArgs, dry_run: bool) -> Result<u8> {
    let job = job_of(repo, args)?;
    warn_unattended_passwords(&job);
    let backend = backend(&args.target)?;
    let pieces = render::render(&job, backend, args.target.system)?;
    if dry_run {
        return show(repo, args);
    }
    let places = install::install(&job, backend, args.target.system, &pieces)?;
    let record = Installed {
        when: job.when.clone(),
        backend: args
            .target
            .backend
            .clone()
            .unwrap_or_else(|| format!("{backend:?}").to_lowercase()),
        command: job.argv(),
    };
    let path = installed_path(&job.profile)?;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    std::fs::write(&path, serde_json::to_vec_pretty(&record)?)
        .with_context(|| format!("cannot write {}", path.display()))?;
    outln!(
        "installed {} ({}) into {}",
        job.name(),
        job.when.describe(),
        places.join(", ")
    )?;
    Ok(exit::OK)
}

/// A scheduled job runs with no terminal to ask a password on: says so
/// for each encrypted repository it writes to for which the OS
/// credential store holds no unlock key (or password).
fn warn_unattended_passwords(job: &Job) {
    for location in encrypted_locations(job) {
        if !matches!(cairn::credstore::lookup(&location), Ok(Some(_))) {
            eprintln!(
                "warning: {location} is encrypted and the job runs unattended: store an unlock key with `cairn --repo {location} key store`, or the job fails (exit 12)"
            );
        }
    }
}

/// The job's repositories that are encrypted: a directory's config.json
/// says so (it is never sealed); a bucket is taken at its sink's
/// `encrypt = true` (no network call here).
fn encrypted_locations(job: &Job) -> Vec<String> {
    let sealed_dir = |dir: &std::path::Path| {
        std::fs::read(dir.join("config.json"))
            .ok()
            .and_then(|b| cairn::repo::Repository::parse_config(&dir.display().to_string(), &b).ok())
            .is_some_and(|(config, _)| config.encryption.is_some())
    };
    if let Some(repo) = &job.repo {
        let path = std::path::Path::new(repo);
        return match repo.starts_with("s3:") || !sealed_dir(path) {
            true => Vec::new(),
            false => vec![repo.clone()],
        };
    }
    let Ok(p) = cairn::profile::find(&job.profile) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for sink in &p.sinks {
        match sink {
            cairn::profile::SinkSpec::S3 { url, .. } if sink.encrypt() == Some(true) => out.push(url.clone()),
            cairn::profile::SinkSpec::Local { path, .. } | cairn::profile::SinkSpec::Nas { path, .. } => {
                let expanded =
                    cairn::profile::expand::expand_path(path, &p.base, &cairn::profile::resolve::process_var);
                if let Ok(dir) = expanded {
                    let dir = std::path::absolute(&dir).unwrap_or(dir);
                    if sealed_dir(&dir) || sink.encrypt() == Some(true) {
                        out.push(dir.display().to_string());
                    }
                }
            }
            _ => {}
        }
    }
    out
}

fn remove_job(repo: &RepoArg, profile: &str, target: &TargetArgs) -> Result<u8> {
    let job = Job {
        profile: profile.to_string(),
        when: When::Daily { hour: 3, minute: 0 },
        exe: std::env::current_exe().unwrap_or_default(),
        repo: repo.location.as_ref().map(|p| p.display().to_string()),
    };
    install::remove(&job, backend(target)?, target.system)?;
    if let Ok(path) = installed_path(profile) {
        let _ = std::fs::remove_file(path);
    }
    outln!("removed {}", job.name())?;
    Ok(exit::OK)
}

#[derive(Serialize)]
struct StatusJson {
    profile: String,
    installed: Option<String>,
    next: Option<String>,
    runs: Vec<Run>,
}

fn status(profile: &str, json: bool) -> Result<u8> {
    let installed: Option<Installed> = installed_path(profile)
        .ok()
        .and_then(|p| std::fs::read(p).ok())
        .and_then(|b| serde_json::from_slice(&b).ok());
    let next = installed
        .as_ref()
        .and_then(|i| i.when.next_after(Local::now()))
        .map(|t| t.format("%Y-%m-%d %H:%M").to_string());
    let runs = runlog::last(profile, 10).context("cannot read the run log")?;
    let described = installed
        .as_ref()
        .map(|i| format!("{} ({})", i.when.describe(), i.backend));
    if json {
        print_json(&StatusJson {
            profile: profile.to_string(),
            installed: described,
            next,
            runs,
        })?;
        return Ok(exit::OK);
    }
    outln!(
        "cairn-{profile}: {}",
        described.as_deref().unwrap_or("not installed")
    )?;
    if let Some(next) = next {
        outln!("next run: {next}")?;
    }
    for r in &runs {
        outln!(
            "{}  {:<8} exit {:<3} {:>7.1}s  {}",
            r.started.with_timezone(&Local).format("%Y-%m-%d %H:%M:%S"),
            r.outcome,
            r.exit_code,
            r.duration_secs,
            r.error.as_deref().unwrap_or("")
        )?;
    }
    if runs.is_empty() {
        outln!("no runs yet")?;
    }
    Ok(exit::OK)
}

/// The job itself: the profile's backup, then, when the profile has a
/// `[retention]`, forget and prune; its outcome goes to the run log, and a
/// failure exits non-zero so the scheduler records it.
fn run_job(repo: RepoArg, profile: &str) -> Result<u8> {
    let started = Local::now().fixed_offset();
    let clock = Instant::now();
    let result = backup_then_retention(repo, profile);
    let (outcome, exit_code, error) = match &result {
        Ok(code) if *code == exit::OK => ("success", *code, None),
        Ok(code) if *code == exit::PARTIAL => ("partial", *code, None),
        Ok(code) => ("failed", *code, None),
        Err(e) => ("failed", super::exit_code(e), Some(format!("{e:#}"))),
    };
    let run = Run {
        started,
        duration_secs: clock.elapsed().as_secs_f64(),
        outcome: outcome.to_string(),
        exit_code,
        error,
    };
    if let Err(e) = runlog::append(profile, &run) {
        eprintln!("warning: cannot write the run log: {e}");
    }
    result
}

fn backup_then_retention(repo: RepoArg, profile: &str) -> Result<u8> {
    let code = super::backup::run(
        repo.clone(),
        BackupArgs {
            paths: Vec::new(),
            profiles: vec![profile.to_string()],
            tags: Vec::new(),
            excludes: Vec::new(),
            time: None,
            json: false,
        },
    )?;
    if code != exit::OK && code != exit::PARTIAL {
        return Ok(code);
    }
    if cairn::profile::find(profile)?.retention == Default::default() {
        return Ok(code);
    }
    super::forget::run(
        repo,
        ForgetArgs {
            snapshots: Vec::new(),
            keep: KeepArgs::default(),
            group_by: "host,profile".into(),
            filter: FilterArgs {
                profiles: vec![profile.to_string()],
                ..Default::default()
            },
            paths: Vec::new(),
            dry_run: false,
            allow_empty: false,
            prune: true,
            prune_opts: PruneOpts {
                max_unused: "5%".into(),
                max_repack_size: None,
            },
            json: false,
        },
    )?;
    Ok(code)
}
