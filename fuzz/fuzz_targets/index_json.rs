//! An index file's JSON: the compact reader (tried first by `from_json`)
//! and serde agree, whatever the bytes.
#![no_main]
use cairn::repo::index::IndexFile;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let fast = IndexFile::from_json(data);
    let slow = serde_json::from_slice::<IndexFile>(data);
    match (fast, slow) {
        (Ok(a), Ok(b)) => assert_eq!(serde_json::to_vec(&a).unwrap(), serde_json::to_vec(&b).unwrap()),
        (Err(_), Err(_)) => {}
        (a, b) => panic!("the readers disagree: {:?} / {:?}", a.is_ok(), b.is_ok()),
    }
});
