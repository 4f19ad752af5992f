//! A snapshot record: parsed, written again, and read back the same.
#![no_main]
use cairn::repo::snapshot::SnapshotRecord;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(record) = serde_json::from_slice::<SnapshotRecord>(data) {
        let again = serde_json::to_vec(&record).expect("a record read is written");
        let back: SnapshotRecord = serde_json::from_slice(&again).expect("what was written reads");
        assert_eq!(serde_json::to_vec(&back).unwrap(), again);
        let _ = cairn::repo::snapshot::parse_time(&record.time.to_rfc3339());
    }
});
