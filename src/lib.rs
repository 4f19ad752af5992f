//! cairn: snapshots before risky changes.
//!
//! The library holds everything but the command line: the repository format
//! (`repo`), the stores it lives in (`sink`), what gets saved (`collect`), and
//! the backup and restore pipelines.

pub mod alloc;
pub mod backup;
pub mod batch;
pub mod collect;
pub mod diff;
pub mod export;
pub mod interrupt;
pub mod meta;
pub mod process;
pub mod profile;
pub mod progress;
pub mod repo;
pub mod restore;
pub mod select;
pub mod sink;
