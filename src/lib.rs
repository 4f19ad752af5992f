//! cairn: snapshots before risky changes.
//!
//! The library holds everything but the command line: the repository format
//! (`repo`), the stores it lives in (`sink`), what gets saved (`collect`), and
//! the backup and restore pipelines.

pub mod alloc;
pub mod backup;
pub mod batch;
pub mod collect;
pub mod copy;
pub mod credstore;
pub mod diff;
pub mod export;
pub mod interrupt;
pub mod meta;
pub mod private;
pub mod process;
pub mod profile;
pub mod progress;
pub mod repo;
pub mod restore;
pub mod retention;
pub mod rng;
pub mod schedule;
pub mod select;
pub mod sink;

/// An error and its causes as one line, joined by ": " as anyhow's `{:#}`
/// prints them. For error text kept or shown without anyhow (warnings,
/// reports, journals): messages name what failed and leave the cause to
/// `source()`, so plain `Display` would drop it.
pub fn chain(err: &dyn std::error::Error) -> String {
    let mut out = err.to_string();
    let mut cause = err.source();
    while let Some(e) = cause {
        out.push_str(": ");
        out.push_str(&e.to_string());
        cause = e.source();
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn chain_names_each_cause_once() {
        let err = crate::collect::tree::glob("a[").unwrap_err();
        let text = crate::chain(&err);
        assert!(text.starts_with("bad exclude pattern \"a[\": "), "{text}");
        assert_eq!(text.matches("unclosed character class").count(), 1, "{text}");
    }
}
