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
