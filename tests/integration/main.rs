//! Integration tests: the real binary and library over real directories.
//! One test binary (ripgrep's and rustic_core's layout) so the crate links once.
//! They run on Unix (fifos, modes, owners, `setpriv`); on Windows the crate
//! is compiled and its unit tests are checked (`.ci/windows-check`).
#![cfg(unix)]

mod util;

mod chaos;
mod cli;
mod concurrency;
mod copy;
mod crash;
mod diff;
mod diskfull;
mod encryption;
mod evolution;
mod export;
mod faults;
mod fidelity;
mod forget;
mod index;
mod interrupt;
mod locks;
mod nas;
mod profiles;
mod prune;
mod repair;
mod restore;
mod rollback;
mod s3;
mod s3server;
mod schedule;
mod sink;
mod sinks;
mod story;
