//! Installing and removing a job's pieces ([`super::render`]): the crontab
//! entry through `crontab`, systemd units in the user's (or, as root with
//! `system`, the machine's) unit directory enabled through `systemctl`, a
//! launchd agent through `launchctl`, a Task Scheduler task through
//! `schtasks`. Each scheduler program runs with a timeout.

use std::path::PathBuf;
use std::time::Duration;

use super::render::{cron_marker, Backend, Piece};
use super::Job;
use crate::process::{run_captured, Captured};

const TIMEOUT: Duration = Duration::from_secs(60);

#[derive(Debug, thiserror::Error)]
pub enum InstallError {
    #[error("cannot run {program}")]
    Spawn {
        program: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{program} failed: {message}")]
    Failed { program: String, message: String },
    #[error("cannot write {path}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("no directory for {0} is known for this user")]
    NoDir(&'static str),
    #[error("{0} jobs are installed on another platform; `cairn schedule show --backend {0}` prints what to install")]
    OtherPlatform(&'static str),
}

fn run(program: &str, args: &[&str], input: &[u8]) -> Result<Captured, InstallError> {
    run_captured(program, args, input, TIMEOUT).map_err(|source| InstallError::Spawn {
        program: program.to_string(),
        source,
    })
}

fn ok(program: &str, c: Captured) -> Result<Captured, InstallError> {
    if c.status.success() {
        return Ok(c);
    }
    let message = String::from_utf8_lossy(&c.stderr).trim().to_string();
    Err(InstallError::Failed {
        program: program.to_string(),
        message: if message.is_empty() {
            c.status.to_string()
        } else {
            message
        },
    })
}

/// Installs `pieces`; returns where they went, for the user.
pub fn install(
    job: &Job,
    backend: Backend,
    system: bool,
    pieces: &[Piece],
) -> Result<Vec<String>, InstallError> {
    match backend {
        Backend::Cron => cron_install(job, pieces).map(|()| vec!["the crontab".to_string()]),
        Backend::Systemd => systemd_install(job, system, pieces),
        Backend::Launchd => launchd_install(job, pieces),
        Backend::Windows => windows_install(job, pieces),
    }
}

/// Removes what [`install`] put in place; nothing there is not an error.
pub fn remove(job: &Job, backend: Backend, system: bool) -> Result<(), InstallError> {
    match backend {
        Backend::Cron => cron_install(job, &[]),
        Backend::Systemd => systemd_remove(job, system),
        Backend::Launchd => launchd_remove(job),
        Backend::Windows => windows_remove(job),
    }
}

/// The crontab without the job's entry (its marker line and the line
/// after), then with `pieces` appended.
fn cron_install(job: &Job, pieces: &[Piece]) -> Result<(), InstallError> {
    let current = run("crontab", &["-l"], b"")?;
    // `crontab -l` fails when the user has no crontab yet.
    let text = if current.status.success() {
        String::from_utf8_lossy(&current.stdout).into_owned()
    } else {
        String::new()
    };
    let marker = cron_marker(job);
    let mut kept = Vec::new();
    let mut lines = text.lines();
    while let Some(line) = lines.next() {
        if line == marker {
            lines.next();
            continue;
        }
        kept.push(line.to_string());
    }
    let mut new = kept.join("\n");
    if !new.is_empty() {
        new.push('\n');
    }
    for p in pieces {
        new.push_str(&p.text);
    }
    ok("crontab", run("crontab", &["-"], new.as_bytes())?).map(|_| ())
}

/// Where systemd units go: the user's unit directory, or the machine's.
fn systemd_dir(system: bool) -> Result<PathBuf, InstallError> {
    if system {
        return Ok(PathBuf::from("/etc/systemd/system"));
    }
    dirs::config_dir()
        .map(|d| d.join("systemd").join("user"))
        .ok_or(InstallError::NoDir("systemd user units"))
}

fn write_pieces(dir: &std::path::Path, pieces: &[Piece]) -> Result<Vec<String>, InstallError> {
    std::fs::create_dir_all(dir).map_err(|source| InstallError::Write {
        path: dir.to_path_buf(),
        source,
    })?;
    let mut written = Vec::new();
    for p in pieces {
        let path = dir.join(&p.name);
        std::fs::write(&path, &p.text).map_err(|source| InstallError::Write {
            path: path.clone(),
            source,
        })?;
        written.push(path.display().to_string());
    }
    Ok(written)
}

fn systemctl(system: bool, args: &[&str]) -> Result<(), InstallError> {
    let mut all: Vec<&str> = if system { vec![] } else { vec!["--user"] };
    all.extend_from_slice(args);
    ok("systemctl", run("systemctl", &all, b"")?).map(|_| ())
}

fn systemd_install(job: &Job, system: bool, pieces: &[Piece]) -> Result<Vec<String>, InstallError> {
    let written = write_pieces(&systemd_dir(system)?, pieces)?;
    systemctl(system, &["daemon-reload"])?;
    systemctl(system, &["enable", "--now", &format!("{}.timer", job.name())])?;
    Ok(written)
}

fn systemd_remove(job: &Job, system: bool) -> Result<(), InstallError> {
    let timer = format!("{}.timer", job.name());
    // Not enabled (or no systemd): the files still go.
    let _ = systemctl(system, &["disable", "--now", &timer]);
    let dir = systemd_dir(system)?;
    for name in [timer, format!("{}.service", job.name())] {
        let _ = std::fs::remove_file(dir.join(name));
    }
    let _ = systemctl(system, &["daemon-reload"]);
    Ok(())
}

#[cfg(target_os = "macos")]
fn launchd_plist(job: &Job) -> Result<PathBuf, InstallError> {
    dirs::home_dir()
        .map(|h| {
            h.join("Library/LaunchAgents")
                .join(format!("org.cairn.{}.plist", job.profile))
        })
        .ok_or(InstallError::NoDir("launchd agents"))
}

#[cfg(target_os = "macos")]
fn launchd_install(job: &Job, pieces: &[Piece]) -> Result<Vec<String>, InstallError> {
    let plist = launchd_plist(job)?;
    let dir = plist.parent().ok_or(InstallError::NoDir("launchd agents"))?;
    let written = write_pieces(dir, pieces)?;
    let path = plist.display().to_string();
    let _ = run("launchctl", &["unload", &path], b"");
    ok("launchctl", run("launchctl", &["load", "-w", &path], b"")?)?;
    Ok(written)
}

#[cfg(target_os = "macos")]
fn launchd_remove(job: &Job) -> Result<(), InstallError> {
    let plist = launchd_plist(job)?;
    let _ = run("launchctl", &["unload", "-w", &plist.display().to_string()], b"");
    let _ = std::fs::remove_file(plist);
    Ok(())
}

#[cfg(not(target_os = "macos"))]
fn launchd_install(_: &Job, _: &[Piece]) -> Result<Vec<String>, InstallError> {
    Err(InstallError::OtherPlatform("launchd"))
}

#[cfg(not(target_os = "macos"))]
fn launchd_remove(_: &Job) -> Result<(), InstallError> {
    Err(InstallError::OtherPlatform("launchd"))
}

#[cfg(windows)]
fn windows_install(job: &Job, pieces: &[Piece]) -> Result<Vec<String>, InstallError> {
    // schtasks reads the task's XML as UTF-16 (little-endian, with a BOM).
    let dir = std::env::temp_dir();
    let path = dir.join(format!("{}.xml", job.name()));
    let mut bytes = vec![0xff, 0xfe];
    for p in pieces {
        bytes.extend(p.text.encode_utf16().flat_map(u16::to_le_bytes));
    }
    std::fs::write(&path, &bytes).map_err(|source| InstallError::Write {
        path: path.clone(),
        source,
    })?;
    let file = path.display().to_string();
    let result = run(
        "schtasks",
        &["/Create", "/F", "/TN", &job.name(), "/XML", &file],
        b"",
    );
    let _ = std::fs::remove_file(&path);
    ok("schtasks", result?)?;
    Ok(vec![format!("Task Scheduler task {}", job.name())])
}

#[cfg(windows)]
fn windows_remove(job: &Job) -> Result<(), InstallError> {
    let _ = run("schtasks", &["/Delete", "/F", "/TN", &job.name()], b"");
    Ok(())
}

#[cfg(not(windows))]
fn windows_install(_: &Job, _: &[Piece]) -> Result<Vec<String>, InstallError> {
    Err(InstallError::OtherPlatform("windows"))
}

#[cfg(not(windows))]
fn windows_remove(_: &Job) -> Result<(), InstallError> {
    Err(InstallError::OtherPlatform("windows"))
}
