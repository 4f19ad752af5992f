//! A pack's bytes: scanned frame by frame without an index (`repair
//! index`), as a plain pack and as an encrypted one, each frame opened and
//! decoded with its bound; every blob found verifies.
#![no_main]
use cairn::repo::crypto::{Crypto, Secret};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    for crypto in [Crypto::plain(), Crypto::from_master(&Secret([7; 32]))] {
        let scanned = cairn::repo::pack::scan(data, &crypto);
        let mut decoder = cairn::repo::pack::FrameDecoder::new(&crypto);
        for b in &scanned.blobs {
            let start = b.frame_offset as usize;
            let frame = &data[start..start + b.frame_length as usize];
            let content = decoder.decode(frame, b.frame_offset).expect("a frame scan decoded decodes");
            cairn::repo::pack::blob_in_frame(&content, b, &crypto).expect("a blob scan found verifies");
            cairn::repo::pack::check_member_header(&content, b).expect("its header names it");
        }
    }
});
