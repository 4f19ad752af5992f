//! A repository's config.json: opened or refused with a reason.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok((config, chunker)) = cairn::repo::Repository::parse_config("fuzz", data) {
        // What was accepted must be usable: the chunker cuts, within limits.
        let sample = vec![7u8; (config.frame_target as usize).min(1 << 20)];
        let _ = chunker.next_cut(&sample, true);
    }
});
