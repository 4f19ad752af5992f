//! Progress on stderr, only when stderr is a terminal.

use std::io::IsTerminal;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// A byte-counting progress bar that is hidden unless stderr is a terminal.
#[derive(Clone)]
pub struct Progress {
    bar: ProgressBar,
    files: Arc<AtomicU64>,
}

impl Progress {
    pub fn bytes(verb: &str, total: Option<u64>) -> Progress {
        let bar = ProgressBar::with_draw_target(total, ProgressDrawTarget::hidden());
        if std::io::stderr().is_terminal() {
            bar.set_draw_target(ProgressDrawTarget::stderr());
            let template = if total.is_some() {
                "{prefix} [{elapsed_precise}] {wide_bar} {bytes}/{total_bytes} {bytes_per_sec} ETA {eta} {msg}"
            } else {
                "{prefix} [{elapsed_precise}] {bytes} {bytes_per_sec} {msg}"
            };
            if let Ok(style) = ProgressStyle::with_template(template) {
                bar.set_style(style);
            }
            bar.enable_steady_tick(Duration::from_millis(200));
        }
        bar.set_prefix(verb.to_string());
        Progress {
            bar,
            files: Arc::default(),
        }
    }

    pub fn hidden() -> Progress {
        Progress {
            bar: ProgressBar::hidden(),
            files: Arc::default(),
        }
    }

    pub fn is_visible(&self) -> bool {
        !self.bar.is_hidden()
    }

    pub fn add(&self, bytes: u64) {
        self.bar.inc(bytes);
    }

    /// Counts one finished file; the count shows beside the bar.
    pub fn file_done(&self) {
        let n = self.files.fetch_add(1, Ordering::Relaxed) + 1;
        if n % 16 == 1 && !self.bar.is_hidden() {
            self.bar.set_message(format!("{n} files"));
        }
    }

    pub fn set_total(&self, total: u64) {
        self.bar.set_length(total);
        if let Ok(style) = ProgressStyle::with_template(
            "{prefix} [{elapsed_precise}] {wide_bar} {bytes}/{total_bytes} {bytes_per_sec} ETA {eta} {msg}",
        ) {
            self.bar.set_style(style);
        }
    }

    pub fn message(&self, msg: String) {
        self.bar.set_message(msg);
    }

    /// Prints a line above the bar (or plainly when there is none).
    pub fn println(&self, line: &str) {
        if self.bar.is_hidden() {
            eprintln!("{line}");
        } else {
            self.bar.println(line);
        }
    }

    pub fn finish(&self) {
        self.bar.finish_and_clear();
    }
}

/// CPU time this thread has used, for `-vv` timelines (zero where the
/// platform has no per-thread clock).
pub fn thread_cpu() -> std::time::Duration {
    #[cfg(any(target_os = "linux", target_os = "macos", target_os = "freebsd"))]
    {
        let mut ts = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: `ts` is a valid timespec for the call to fill.
        if unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) } == 0 {
            return std::time::Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32);
        }
    }
    std::time::Duration::ZERO
}
