//! A pack's bytes: scanned frame by frame without an index (`repair
//! index`), each frame decoded with its bound; every blob found verifies.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let scanned = cairn::repo::pack::scan(data);
    let mut decoder = cairn::repo::pack::FrameDecoder::default();
    for b in &scanned.blobs {
        let start = b.frame_offset as usize;
        let frame = &data[start..start + b.frame_length as usize];
        let content = decoder.decode(frame, b.frame_offset).expect("a frame scan decoded decodes");
        cairn::repo::pack::blob_in_frame(&content, b).expect("a blob scan found verifies");
        cairn::repo::pack::check_member_header(&content, b).expect("its header names it");
    }
});
