//! The outcome of each scheduled run: one JSON line per run in the user's
//! state directory (`schedule/<profile>.log`), private to the user, rotated
//! at 256 KiB with one older file kept.

use std::fs::{self, OpenOptions};
use std::io::{self, Write};
use std::path::PathBuf;

use chrono::{DateTime, FixedOffset};
use serde::{Deserialize, Serialize};

const ROTATE_AT: u64 = 256 << 10;

/// One scheduled run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Run {
    pub started: DateTime<FixedOffset>,
    pub duration_secs: f64,
    /// `success`, `partial` or `failed`.
    pub outcome: String,
    pub exit_code: u8,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Where the logs live: `$CAIRN_STATE_DIR/schedule`, else the platform's
/// state directory.
pub fn dir() -> Option<PathBuf> {
    let base = match std::env::var_os("CAIRN_STATE_DIR") {
        Some(d) => PathBuf::from(d),
        None => dirs::state_dir().or_else(dirs::data_local_dir)?.join("cairn"),
    };
    Some(base.join("schedule"))
}

fn the_dir() -> io::Result<PathBuf> {
    dir().ok_or_else(|| io::Error::other("no state directory is known for this user"))
}

/// Appends a run, rotating the log first when it has grown past 256 KiB.
pub fn append(profile: &str, run: &Run) -> io::Result<()> {
    append_in(&the_dir()?, profile, run)
}

/// The last `n` runs, oldest first; lines that do not parse are skipped.
pub fn last(profile: &str, n: usize) -> io::Result<Vec<Run>> {
    last_in(&the_dir()?, profile, n)
}

fn append_in(dir: &std::path::Path, profile: &str, run: &Run) -> io::Result<()> {
    let path = dir.join(format!("{profile}.log"));
    if let Some(dir) = path.parent() {
        let mut builder = fs::DirBuilder::new();
        builder.recursive(true);
        #[cfg(unix)]
        std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
        builder.create(dir)?;
    }
    if fs::metadata(&path).is_ok_and(|m| m.len() > ROTATE_AT) {
        fs::rename(&path, path.with_extension("log.1"))?;
    }
    let mut options = OpenOptions::new();
    options.create(true).append(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(&path)?;
    let mut line = serde_json::to_vec(run).map_err(io::Error::other)?;
    line.push(b'\n');
    file.write_all(&line)
}

fn last_in(dir: &std::path::Path, profile: &str, n: usize) -> io::Result<Vec<Run>> {
    let path = dir.join(format!("{profile}.log"));
    let mut runs = Vec::new();
    for file in [path.with_extension("log.1"), path] {
        match fs::read_to_string(&file) {
            Ok(text) => runs.extend(text.lines().filter_map(|l| serde_json::from_str::<Run>(l).ok())),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
    }
    let skip = runs.len().saturating_sub(n);
    Ok(runs.split_off(skip))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_log_rotates_and_keeps_the_last_runs() {
        let dir = tempfile::tempdir().expect("tempdir");
        let run = |i: u32| Run {
            started: chrono::DateTime::parse_from_rfc3339("2026-12-01T03:00:00+00:00").expect("time"),
            duration_secs: f64::from(i),
            outcome: "success".into(),
            exit_code: 0,
            error: Some("x".repeat(500)),
        };
        // About 600 bytes a line: past 256 KiB after some 440 runs.
        for i in 0..1000 {
            append_in(dir.path(), "p", &run(i)).expect("append");
        }
        let current = fs::metadata(dir.path().join("p.log")).expect("log").len();
        let older = fs::metadata(dir.path().join("p.log.1")).expect("rotated").len();
        assert!(
            current <= ROTATE_AT + 1024 && older > ROTATE_AT,
            "{current} {older}"
        );
        let last = last_in(dir.path(), "p", 3).expect("last");
        let durations: Vec<f64> = last.iter().map(|r| r.duration_secs).collect();
        assert_eq!(durations, vec![997.0, 998.0, 999.0]);
        assert!(last_in(dir.path(), "none", 3).expect("none").is_empty());
    }
}
