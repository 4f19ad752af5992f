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

fn path(profile: &str) -> io::Result<PathBuf> {
    let dir = dir().ok_or_else(|| io::Error::other("no state directory is known for this user"))?;
    Ok(dir.join(format!("{profile}.log")))
}

/// Appends a run, rotating the log first when it has grown past 256 KiB.
pub fn append(profile: &str, run: &Run) -> io::Result<()> {
    let path = path(profile)?;
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

/// The last `n` runs, oldest first; lines that do not parse are skipped.
pub fn last(profile: &str, n: usize) -> io::Result<Vec<Run>> {
    let path = path(profile)?;
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
