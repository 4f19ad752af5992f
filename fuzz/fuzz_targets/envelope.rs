//! A sealed envelope's bytes (any object of an encrypted repository):
//! its length read from the header, and opened, without a panic; nothing
//! that was not sealed with the key opens.
#![no_main]
use cairn::repo::crypto::{Domain, SealKey, Secret};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let key = SealKey::new(&Secret([9; 32]));
    let _ = key.envelope_len(data);
    assert!(key.open(Domain::Snapshot, data).is_err(), "forged bytes opened");
    let mut buf = data.to_vec();
    assert!(key.open_in_place(Domain::Frame, &mut buf).is_err());
});
