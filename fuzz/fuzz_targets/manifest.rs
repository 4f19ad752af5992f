//! Manifest bytes, cut into blobs at a place the input chooses: every line
//! is parsed strictly (paths safe, in order), the entries it gives are
//! judged as check judges them, never a panic.
#![no_main]
use cairn::repo::index::Index;
use cairn::repo::manifest::ManifestParser;
use cairn::repo::shape::Shape;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&cut, rest)) = data.split_first() else { return };
    let cut = (cut as usize).min(rest.len());
    let mut parser = ManifestParser::new();
    let index = Index::default();
    let mut shape = Shape::default();
    for blob in [&rest[..cut], &rest[cut..]] {
        match parser.feed(blob) {
            Ok(entries) => {
                for e in entries {
                    let _ = shape.wrong(&e, &index);
                    let _ = e.content_hash();
                }
            }
            Err(_) => return,
        }
    }
    let _ = parser.is_complete();
});
