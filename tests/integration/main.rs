//! Integration tests: the real binary and library over real directories.
//! One test binary (ripgrep's and rustic_core's layout) so the crate links once.

mod util;

mod cli;
mod diff;
mod export;
mod faults;
mod fidelity;
mod interrupt;
mod profiles;
mod restore;
mod rollback;
mod sink;
mod story;
