//! A lock file: parsed, and judged stale or alive without a panic.
#![no_main]
use cairn::repo::lock::LockRecord;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(record) = serde_json::from_slice::<LockRecord>(data) {
        let _ = record.is_stale();
    }
});
