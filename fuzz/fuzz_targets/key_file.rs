//! A key file's bytes: parsed, its KDF parameters checked, without a
//! panic. (Unwrapping runs Argon2id with what the file asks, up to 1 GiB:
//! bounded by the format, not by a fuzzer's memory, so it is not run.)
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = cairn::repo::keys::parse_key_file(data);
});
