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
        // Frames record their content size; trusting it only up to the bound.
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
        decompressor.decompress_to_buffer(frame, out).map_err(err)?;
        Ok(())
    }
}

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
        out.clear();
        out.resize(needed, 0);
        let mut input = InBuffer::around(frame);
        let mut output = OutBuffer::around(&mut out[..]);
        loop {
            let before = (input.pos(), output.pos());
            stream.run(&mut input, &mut output).map_err(err)?;
            if output.pos() >= needed || (input.pos(), output.pos()) == before {
                break;
            }
        }
        let got = output.pos();
        out.truncate(got);
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
