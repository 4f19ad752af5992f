//! Allocator tuning. Frames are allocated by worker threads and freed by the
//! pack writer; glibc's defaults (a threshold for returning large blocks to
//! the system that rises after the first free) then keep freed frames
//! around, and peak memory grows by tens of MiB. Fixing the threshold hands
//! large blocks back at once. (Fewer arenas would save a little more memory
//! but make the threads contend for the allocator's locks.)

/// Call once, before other threads start.
pub fn tune() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes allocator parameters; it is called before
    // any other thread exists.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 128 * 1024);
    }
}

/// Hands memory freed so far back to the system, between two phases: what
/// one thread allocated and another freed (a walk's items, taken by the
/// plan) otherwise stays in the first thread's arena while the next phase
/// grows others; a rollback of the Linux tree peaked 4 MiB higher.
pub fn release() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only returns free memory to the system.
    unsafe {
        libc::malloc_trim(0);
    }
}
