//! An index file as stored (zstd, then JSON): decoded with its bound, or a
//! clear error; then loaded into an index.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(file) = cairn::repo::index::decode_stored(data) {
        let mut index = cairn::repo::index::Index::default();
        index.add_file(&file);
        for id in index.blob_ids().copied().collect::<Vec<_>>() {
            assert!(index.locations(&id).count() >= 1);
        }
    }
});
