//! A profile's TOML: a clear error or a profile, never a panic.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = cairn::profile::Profile::parse(text, "fuzz.toml", std::path::Path::new("/nonexistent"));
    }
});
