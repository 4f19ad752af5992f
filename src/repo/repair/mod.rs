//! Repair: `repair index` rebuilds the index from the packs, `repair
//! snapshots` rewrites snapshots whose data is lost so that they keep
//! everything still stored. Both say what they would do first
//! (`dry_run`), and order their writes so that a crash at any point leaves
//! a valid repository (new objects before the old ones go). The caller
//! holds the exclusive lock.

mod index;
mod snapshots;

pub use index::{repair_index, IndexRepair, IndexRepairOptions};
pub use snapshots::{repair_snapshots, SnapshotRepair, SnapshotsRepairOptions};
