//! The journal of an in-place restore, in the user's state directory
//! (`~/.local/state/cairn/restores/` on Linux): which snapshot is being
//! written back over which paths, under which safety snapshot, and how far
//! it got. A restore killed half-way finds its journal when run again and
//! finishes under the same safety snapshot; `restore --undo` finds the last
//! journal and restores its safety snapshot.

use std::io::Write;
use std::path::{Path, PathBuf};

use chrono::{DateTime, FixedOffset, Local};
use serde::{Deserialize, Serialize};

use crate::repo::id::ObjectId;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum State {
    /// The safety snapshot is taken; files are being written.
    Writing,
    /// Every change is in place (and the health check passed).
    Done,
    /// Writing or the health check failed, and the safety snapshot was
    /// put back.
    RolledBack,
    /// `restore --undo` put the safety snapshot back.
    Undone,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Journal {
    pub transaction: String,
    /// The repository's id (config.json) and where it was.
    pub repository: String,
    pub location: String,
    /// The snapshot written back.
    pub snapshot: ObjectId,
    /// The snapshot of how things were before; none with --no-safety-snapshot.
    pub safety: Option<ObjectId>,
    pub state: State,
    pub started: DateTime<FixedOffset>,
    pub updated: DateTime<FixedOffset>,
    /// The roots written, as `prefix -> path`.
    pub roots: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Finished journals kept per repository, the newest: history. The one
/// `--undo` would take back is kept besides, however old.
const KEPT_FINISHED: usize = 16;

/// Where journals live.
pub fn dir() -> Option<PathBuf> {
    if let Some(d) = std::env::var_os("CAIRN_STATE_DIR") {
        return Some(PathBuf::from(d));
    }
    dirs::state_dir()
        .or_else(dirs::data_local_dir)
        .map(|d| d.join("cairn").join("restores"))
}

impl Journal {
    fn path(&self, dir: &Path) -> PathBuf {
        dir.join(format!("{}.json", self.transaction))
    }

    /// Saves the journal whole (temporary file, fsync, rename), private to
    /// the user.
    pub fn save(&mut self) -> std::io::Result<()> {
        let dir = dir().ok_or_else(|| std::io::Error::other("no state directory is known for this user"))?;
        let mut builder = std::fs::DirBuilder::new();
        builder.recursive(true);
        #[cfg(unix)]
        std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
        builder.create(&dir)?;
        self.updated = Local::now().fixed_offset();
        let bytes = serde_json::to_vec_pretty(self).map_err(std::io::Error::other)?;
        let mut tmp = tempfile::Builder::new().prefix(".journal-").tempfile_in(&dir)?;
        tmp.write_all(&bytes)?;
        tmp.as_file().sync_all()?;
        tmp.persist(self.path(&dir)).map_err(|e| e.error)?;
        if self.state != State::Writing {
            self.prune_finished();
        }
        Ok(())
    }

    /// Removes the repository's finished journals past the newest
    /// [`KEPT_FINISHED`]: each in-place restore leaves one, and every
    /// restore reads them all. Unfinished ones are always kept.
    fn prune_finished(&self) {
        let all = Journal::all_in_files(&self.repository);
        // The one `--undo` would take back stays, however old.
        let undoable = all
            .iter()
            .rev()
            .find(|(_, j)| j.undoable())
            .map(|(_, j)| j.transaction.clone());
        let finished: Vec<&(PathBuf, Journal)> =
            all.iter().filter(|(_, j)| j.state != State::Writing).collect();
        let surplus = finished.len().saturating_sub(KEPT_FINISHED);
        for (path, journal) in finished.into_iter().take(surplus) {
            if Some(&journal.transaction) == undoable.as_ref() || journal.transaction == self.transaction {
                continue;
            }
            if let Err(e) = std::fs::remove_file(path) {
                tracing::debug!("cannot remove the old journal {}: {e}", path.display());
            }
        }
    }

    /// Whether `--undo` can take this restore back.
    fn undoable(&self) -> bool {
        matches!(self.state, State::Writing | State::Done) && self.safety.is_some()
    }

    /// Every readable journal of the repository `repository`, oldest first.
    pub fn all(repository: &str) -> Vec<Journal> {
        Journal::all_in_files(repository)
            .into_iter()
            .map(|(_, j)| j)
            .collect()
    }

    /// [`Journal::all`], each with the file it was read from.
    fn all_in_files(repository: &str) -> Vec<(PathBuf, Journal)> {
        let Some(dir) = dir() else {
            return Vec::new();
        };
        let Ok(entries) = std::fs::read_dir(&dir) else {
            return Vec::new();
        };
        let mut out: Vec<(PathBuf, Journal)> = entries
            .filter_map(Result::ok)
            .filter(|e| e.file_name().to_string_lossy().ends_with(".json"))
            .filter_map(|e| {
                let bytes = std::fs::read(e.path()).ok()?;
                if bytes.len() > 1 << 20 {
                    return None;
                }
                Some((e.path(), serde_json::from_slice::<Journal>(&bytes).ok()?))
            })
            .filter(|(_, j)| j.repository == repository)
            .collect();
        out.sort_by(|(_, a), (_, b)| a.started.cmp(&b.started).then(a.transaction.cmp(&b.transaction)));
        out
    }

    /// A restore of `snapshot` that was killed while writing.
    pub fn unfinished(repository: &str, snapshot: ObjectId) -> Option<Journal> {
        Journal::all(repository)
            .into_iter()
            .rev()
            .find(|j| j.snapshot == snapshot && j.state == State::Writing)
    }

    /// The newest restore that `--undo` can take back.
    pub fn last_undoable(repository: &str) -> Option<Journal> {
        Journal::all(repository).into_iter().rev().find(Journal::undoable)
    }
}
