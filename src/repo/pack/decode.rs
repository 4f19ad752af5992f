//! Reading frames back: opened (in an encrypted repository), decompressed
//! within a bound, and the blobs in them checked against their ids.

use super::{PackError, BLOCK, MAX_FRAME_BYTES};
use crate::repo::crypto::{Crypto, Domain};
use crate::repo::index::IndexBlob;

/// Opens and decompresses frames with one reused zstd context.
pub struct FrameDecoder {
    crypto: Crypto,
    /// Where a sealed frame is opened (an encrypted repository only).
    opened: Vec<u8>,
    decompressor: Option<zstd::bulk::Decompressor<'static>>,
    stream: Option<zstd::stream::raw::Decoder<'static>>,
}

impl FrameDecoder {
    pub fn new(crypto: &Crypto) -> FrameDecoder {
        FrameDecoder {
            crypto: crypto.clone(),
            opened: Vec::new(),
            decompressor: None,
            stream: None,
        }
    }

    pub fn crypto(&self) -> &Crypto {
        &self.crypto
    }

    /// The zstd frame inside stored frame bytes: `raw` itself in a plain
    /// repository, its opened envelope in an encrypted one.
    fn open<'s>(
        crypto: &Crypto,
        opened: &'s mut Vec<u8>,
        raw: &'s [u8],
        frame_offset: u64,
    ) -> Result<&'s [u8], PackError> {
        if !crypto.is_encrypted() {
            return Ok(raw);
        }
        opened.clear();
        opened.extend_from_slice(raw);
        let range = crypto
            .open_in_place(Domain::Frame, opened)
            .map_err(|source| PackError::Sealed {
                offset: frame_offset,
                source,
            })?;
        Ok(&opened[range])
    }

    /// One frame's content, bounded in size so a damaged frame cannot
    /// exhaust memory.
    pub fn decode(&mut self, frame: &[u8], frame_offset: u64) -> Result<Vec<u8>, PackError> {
        let mut out = Vec::new();
        self.decode_into(frame, frame_offset, &mut out)?;
        Ok(out)
    }

    /// [`FrameDecoder::decode`] into a buffer the caller reuses: a fresh
    /// buffer of a megabyte costs hundreds of page faults.
    pub fn decode_into(
        &mut self,
        frame: &[u8],
        frame_offset: u64,
        out: &mut Vec<u8>,
    ) -> Result<(), PackError> {
        let err = |source| PackError::Decompress {
            offset: frame_offset,
            source,
        };
        let frame = FrameDecoder::open(&self.crypto, &mut self.opened, frame, frame_offset)?;
        let decompressor = match &mut self.decompressor {
            Some(d) => d,
            None => self
                .decompressor
                .insert(zstd::bulk::Decompressor::new().map_err(err)?),
        };
        make_room(out, frame);
        decompressor.decompress_to_buffer(frame, out).map_err(err)?;
        Ok(())
    }
}

/// Empties `out` and gives it room for the whole content of the zstd frame
/// `frame`. Frames record their content size; it is trusted only up to the
/// bound. Only what is written becomes resident.
fn make_room(out: &mut Vec<u8>, frame: &[u8]) {
    let capacity = match zstd::zstd_safe::get_frame_content_size(frame) {
        Ok(Some(n)) if n <= MAX_FRAME_BYTES as u64 => n as usize,
        _ => MAX_FRAME_BYTES,
    };
    if out.capacity() > 2 * capacity {
        // A buffer once grown for a large frame is not kept for small
        // ones: cached frames would each hold the largest seen.
        *out = Vec::new();
    }
    out.clear();
    out.reserve(capacity);
}

/// Compressed bytes handed to the decoder at a time by
/// [`FrameDecoder::decode_prefix_into`].
const FEED: usize = 16 * 1024;

impl FrameDecoder {
    /// The first `needed` bytes of one frame's content (fewer if it is
    /// shorter): a blob early in a frame costs only what precedes it, which
    /// halves the work of restoring a few files scattered over many frames.
    pub fn decode_prefix_into(
        &mut self,
        frame: &[u8],
        frame_offset: u64,
        out: &mut Vec<u8>,
        needed: usize,
    ) -> Result<(), PackError> {
        use zstd::stream::raw::{Decoder, InBuffer, Operation, OutBuffer};
        let err = |source| PackError::Decompress {
            offset: frame_offset,
            source,
        };
        let frame = FrameDecoder::open(&self.crypto, &mut self.opened, frame, frame_offset)?;
        let stream = match &mut self.stream {
            Some(s) => {
                s.reinit().map_err(err)?;
                s
            }
            None => self.stream.insert(Decoder::new().map_err(err)?),
        };
        let needed = needed.min(MAX_FRAME_BYTES);
        // The whole frame fits: zstd then writes straight into `out`
        // (stable output), with no window of its own to copy out of. It is
        // fed a slice at a time and stops within a block past `needed`.
        make_room(out, frame);
        stream
            .set_parameter(zstd::zstd_safe::DParameter::StableOutBuffer(true))
            .map_err(err)?;
        let mut output = OutBuffer::around(out);
        let mut fed = 0;
        while fed < frame.len() && output.pos() < needed {
            let end = fed.saturating_add(FEED).min(frame.len());
            let mut input = InBuffer::around(&frame[fed..end]);
            let before = output.pos();
            stream.run(&mut input, &mut output).map_err(err)?;
            if input.pos() == 0 && output.pos() == before {
                break;
            }
            fed += input.pos();
        }
        Ok(())
    }
}

/// Takes a blob out of a decompressed frame and verifies it against its
/// name (a keyed hash in an encrypted repository).
pub fn blob_in_frame<'f>(frame: &'f [u8], blob: &IndexBlob, crypto: &Crypto) -> Result<&'f [u8], PackError> {
    let start = blob.offset as usize;
    let end = start + blob.length as usize;
    let data = frame.get(start..end).ok_or(PackError::OutOfFrame {
        id: blob.id,
        frame_offset: blob.frame_offset,
    })?;
    let actual = crypto.blob_id(data);
    if actual != blob.id {
        return Err(PackError::HashMismatch { id: blob.id, actual });
    }
    Ok(data)
}

/// Checks that the tar header before a blob names it and gives its size.
pub fn check_member_header(frame: &[u8], blob: &IndexBlob) -> Result<(), PackError> {
    let bad = || PackError::BadHeader { id: blob.id };
    let start = (blob.offset as usize).checked_sub(BLOCK).ok_or_else(bad)?;
    let raw = frame.get(start..start + BLOCK).ok_or_else(bad)?;
    let mut block = [0u8; BLOCK];
    block.copy_from_slice(raw);
    let header = tar::Header::from_byte_slice(&block);
    let name_ok = header.path_bytes().as_ref().eq(blob.id.to_hex().as_bytes());
    let size_ok = header.size().map(|s| s == blob.length as u64).unwrap_or(false);
    if name_ok && size_ok {
        Ok(())
    } else {
        Err(bad())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// About 1.1 MB of text: several zstd blocks.
    fn content() -> Vec<u8> {
        (0..200_000u32)
            .flat_map(|i| format!("{i} ").into_bytes())
            .collect()
    }

    /// The content as one frame that records its size, and as one that
    /// does not (streamed).
    fn frames(content: &[u8]) -> [Vec<u8>; 2] {
        let sized = zstd::bulk::compress(content, 3).unwrap();
        let mut streamed = zstd::stream::Encoder::new(Vec::new(), 3).unwrap();
        std::io::Write::write_all(&mut streamed, content).unwrap();
        [sized, streamed.finish().unwrap()]
    }

    #[test]
    fn a_prefix_decode_gives_at_least_what_was_needed_and_only_the_frame_s_bytes() {
        let content = content();
        let mut decoder = FrameDecoder::new(&Crypto::plain());
        let mut out = Vec::new();
        for frame in frames(&content) {
            for needed in [
                0,
                1,
                1000,
                200_000,
                content.len() - 1,
                content.len(),
                content.len() + 5,
            ] {
                decoder.decode_prefix_into(&frame, 0, &mut out, needed).unwrap();
                assert!(
                    out.len() >= needed.min(content.len()),
                    "needed {needed}, got {}",
                    out.len()
                );
                assert_eq!(out[..], content[..out.len()], "needed {needed}");
            }
        }
    }

    #[test]
    fn a_truncated_frame_decodes_short_and_garbage_fails() {
        let content = content();
        let mut decoder = FrameDecoder::new(&Crypto::plain());
        let mut out = Vec::new();
        for frame in frames(&content) {
            let half = &frame[..frame.len() / 2];
            decoder
                .decode_prefix_into(half, 0, &mut out, content.len())
                .unwrap();
            assert!(out.len() < content.len());
            assert_eq!(out[..], content[..out.len()]);
        }
        let garbage = vec![0x55u8; 4096];
        assert!(decoder.decode_prefix_into(&garbage, 0, &mut out, 100).is_err());
    }
}
