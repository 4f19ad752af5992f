//! Retention: which snapshots a keep policy keeps ([`policy`]), applied per
//! group of snapshots, with the pairs that must stay together.

pub mod policy;
