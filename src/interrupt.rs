//! Ctrl-C and SIGTERM set a flag that long operations poll, so they stop at a
//! safe point: what is written stays valid and locks are released.

use std::sync::atomic::{AtomicBool, Ordering};

static INTERRUPTED: AtomicBool = AtomicBool::new(false);

/// Installs the handler; a second signal ends the process at once.
pub fn install() {
    let _ = ctrlc::set_handler(|| {
        if INTERRUPTED.swap(true, Ordering::SeqCst) {
            std::process::exit(130);
        }
    });
}

pub fn is_set() -> bool {
    INTERRUPTED.load(Ordering::Relaxed)
}
