//! Finding a pack's blobs without its index (`repair index`): frame by
//! frame, past damage, each member's header and bytes checked.

use super::{padded, FrameDecoder, BLOCK};
use crate::repo::crypto::Crypto;
use crate::repo::id::ObjectId;
use crate::repo::index::IndexBlob;

/// What a pack's bytes hold, found without an index (`repair index`):
/// every blob in a frame that decodes whose tar header is intact and whose
/// bytes hash to its name, and what could not be read.
#[derive(Debug, Default)]
pub struct Scanned {
    pub blobs: Vec<IndexBlob>,
    /// The damaged stretches, each once: a frame that does not decode, or
    /// a member whose header or bytes are wrong.
    pub damaged: Vec<String>,
}

/// zstd's frame magic number, as it lies in the bytes.
const ZSTD_MAGIC: [u8; 4] = [0x28, 0xb5, 0x2f, 0xfd];

/// Reads a pack frame by frame. A frame that does not decode is passed
/// over to the next place a frame may start (a zstd magic number; in an
/// encrypted pack, an envelope header that checks), so one damaged frame
/// costs only its own blobs; inside a frame, a damaged member header is
/// passed over block by block to the next intact one.
pub fn scan(data: &[u8], crypto: &Crypto) -> Scanned {
    let mut out = Scanned::default();
    let mut decoder = FrameDecoder::new(crypto);
    let mut frame = Vec::new();
    let mut pos = 0usize;
    let mut in_damage = false;
    while pos < data.len() {
        let rest = &data[pos..];
        let size = frame_size(rest, crypto).filter(|&n| n > 0 && n <= rest.len() && u32::try_from(n).is_ok());
        let decoded = size.filter(|&n| decoder.decode_into(&rest[..n], pos as u64, &mut frame).is_ok());
        match decoded {
            Some(n) => {
                in_damage = false;
                scan_members(&frame, pos as u64, n as u32, crypto, &mut out);
                pos += n;
            }
            None => {
                if !in_damage {
                    out.damaged.push(format!("frame at offset {pos} does not decode"));
                    in_damage = true;
                }
                match next_frame(data, pos + 1, crypto) {
                    Some(next) => pos = next,
                    None => break,
                }
            }
        }
    }
    out
}

/// The stored length of the frame that starts `data`, as its header says.
fn frame_size(data: &[u8], crypto: &Crypto) -> Option<usize> {
    if crypto.is_encrypted() {
        crypto.envelope_len(data)
    } else {
        zstd::zstd_safe::find_frame_compressed_size(data).ok()
    }
}

fn next_frame(data: &[u8], from: usize, crypto: &Crypto) -> Option<usize> {
    let rest = data.get(from..)?;
    if crypto.is_encrypted() {
        return (0..rest.len())
            .find(|&i| {
                crypto
                    .envelope_len(&rest[i..])
                    .is_some_and(|n| n <= rest.len() - i)
            })
            .map(|i| from + i);
    }
    rest.windows(4).position(|w| w == ZSTD_MAGIC).map(|i| from + i)
}

/// The blobs of one decoded frame (see [`scan`]).
fn scan_members(frame: &[u8], frame_offset: u64, frame_length: u32, crypto: &Crypto, out: &mut Scanned) {
    let mut p = 0usize;
    let mut in_damage = false;
    while let Some(block) = frame.get(p..p + BLOCK) {
        if block.iter().all(|&b| b == 0) {
            // tar's end-of-archive blocks (or padding).
            p += BLOCK;
            continue;
        }
        match member_at(frame, p, block, crypto) {
            Some((id, start, len, intact)) => {
                in_damage = false;
                if intact {
                    out.blobs.push(IndexBlob {
                        id,
                        frame_offset,
                        frame_length,
                        offset: start as u32,
                        length: len as u32,
                    });
                } else {
                    out.damaged.push(format!(
                        "blob {id} in the frame at offset {frame_offset} has the wrong bytes"
                    ));
                }
                p = start + padded(len);
            }
            None => {
                if !in_damage {
                    out.damaged.push(format!(
                        "a tar header in the frame at offset {frame_offset} is damaged (at {p})"
                    ));
                    in_damage = true;
                }
                p += BLOCK;
            }
        }
    }
}

/// The member whose header is the block at `p`, if that header is intact
/// (its checksum holds, it names a blob, and its data fits in the frame):
/// the blob's id, where its bytes start, their length, and whether they
/// hash to the id.
fn member_at(
    frame: &[u8],
    p: usize,
    block: &[u8],
    crypto: &Crypto,
) -> Option<(ObjectId, usize, usize, bool)> {
    let mut raw = [0u8; BLOCK];
    raw.copy_from_slice(block);
    let header = tar::Header::from_byte_slice(&raw);
    // The checksum: the sum of the header's bytes, its own field read as spaces.
    let sum: u32 = raw
        .iter()
        .enumerate()
        .map(|(i, &b)| if (148..156).contains(&i) { 32 } else { u32::from(b) })
        .sum();
    if header.cksum().ok()? != sum {
        return None;
    }
    let id = ObjectId::from_hex(&header.path_bytes())?;
    let len = usize::try_from(header.size().ok()?).ok()?;
    let start = p.checked_add(BLOCK)?;
    u32::try_from(start.checked_add(len)?).ok()?;
    let data = frame.get(start..start + len)?;
    Some((id, start, len, crypto.blob_id(data) == id))
}
