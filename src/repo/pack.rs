//! Packs: real `.tar.zst` files made of independent zstd frames.
//!
//! Each frame holds whole tar members (one per blob, named by the blob's hex
//! id); the last frame holds the tar end-of-archive blocks. Concatenated zstd
//! frames decompress as one stream, so `zstd -dc pack.tar.zst | tar -t` lists a
//! pack, while the index's frame offsets let a reader fetch and decompress one
//! frame to get one blob.

use std::io;

use super::crypto::{Crypto, Domain, SealError};
use super::id::ObjectId;
use super::index::IndexBlob;

/// tar's block size: headers and data are padded to it.
const BLOCK: usize = 512;

/// Upper bound on one decompressed frame; a frame holds at most one maximum
/// chunk (16 MiB by FastCDC's limits) plus small blobs up to the frame target.
pub const MAX_FRAME_BYTES: usize = 64 << 20;

#[derive(Debug, thiserror::Error)]
pub enum PackError {
    #[error("frame at offset {offset} does not decompress")]
    Decompress {
        offset: u64,
        #[source]
        source: io::Error,
    },
    #[error("frame at offset {offset} does not open")]
    Sealed {
        offset: u64,
        #[source]
        source: SealError,
    },
    #[error("blob {id} lies outside its frame at offset {frame_offset}")]
    OutOfFrame { id: ObjectId, frame_offset: u64 },
    #[error("blob {id} has the wrong hash (its bytes hash to {actual})")]
    HashMismatch { id: ObjectId, actual: ObjectId },
    #[error("blob {id}: tar member header is damaged")]
    BadHeader { id: ObjectId },
}

/// Where a blob sits inside an uncompressed frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlobInFrame {
    pub id: ObjectId,
    pub offset: u32,
    pub length: u32,
}

/// One compressed frame, ready to be appended to a pack.
#[derive(Debug)]
pub struct CompressedFrame {
    pub data: Vec<u8>,
    pub blobs: Vec<BlobInFrame>,
    /// Bytes of blob data (not tar padding) in the frame.
    pub payload: u64,
}

/// Gathers consecutive blobs as tar members until the frame target is reached.
pub struct FrameBuilder {
    tar: Vec<u8>,
    blobs: Vec<BlobInFrame>,
    payload: u64,
    target: usize,
    level: i32,
    crypto: Crypto,
    /// Reused for every frame: a fresh zstd context per frame costs more in
    /// page faults than the compression itself.
    compressor: Option<zstd::bulk::Compressor<'static>>,
}

impl FrameBuilder {
    /// Frames of `target` bytes compressed at `level`, sealed by `crypto`.
    pub fn new(target: usize, level: i32, crypto: &Crypto) -> FrameBuilder {
        FrameBuilder {
            tar: Vec::new(),
            blobs: Vec::new(),
            payload: 0,
            target,
            level,
            crypto: crypto.clone(),
            compressor: None,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.blobs.is_empty()
    }

    /// Adds a blob; returns the frames that this closed (none, one or two: a
    /// blob that does not fit closes the current frame and may fill its own).
    pub fn push(&mut self, id: ObjectId, data: &[u8]) -> io::Result<Vec<CompressedFrame>> {
        let mut out = Vec::new();
        let member = BLOCK + padded(data.len());
        if !self.is_empty() && self.tar.len() + member > self.target {
            out.push(self.finish()?);
        }
        self.tar.extend_from_slice(&member_header(&id, data.len() as u64));
        let offset = self.tar.len();
        self.tar.extend_from_slice(data);
        self.tar.resize(offset + padded(data.len()), 0);
        self.blobs.push(BlobInFrame {
            id,
            offset: offset as u32,
            length: data.len() as u32,
        });
        self.payload += data.len() as u64;
        if self.tar.len() >= self.target {
            out.push(self.finish()?);
        }
        Ok(out)
    }

    /// Compresses what was gathered and starts a new, empty frame.
    pub fn finish(&mut self) -> io::Result<CompressedFrame> {
        let compressor = match &mut self.compressor {
            Some(c) => c,
            None => self.compressor.insert(zstd::bulk::Compressor::new(self.level)?),
        };
        // Room for the worst case; only the bytes written become resident.
        let mut data = Vec::with_capacity(zstd::zstd_safe::compress_bound(self.tar.len()));
        compressor.compress_to_buffer(&self.tar, &mut data)?;
        let data = self.crypto.seal(Domain::Frame, data).map_err(io::Error::other)?;
        self.tar.clear();
        // A frame that held one large blob leaves a large buffer; give it back
        // rather than keep it for frames of ordinary size.
        if self.tar.capacity() > 2 * self.target {
            self.tar = Vec::new();
        }
        Ok(CompressedFrame {
            data,
            blobs: std::mem::take(&mut self.blobs),
            payload: std::mem::take(&mut self.payload),
        })
    }
}

fn padded(len: usize) -> usize {
    len.div_ceil(BLOCK) * BLOCK
}

fn member_header(id: &ObjectId, size: u64) -> [u8; BLOCK] {
    let mut header = tar::Header::new_ustar();
    // A 64-character name always fits ustar's 100-byte name field.
    let _ = header.set_path(id.to_hex());
    header.set_size(size);
    header.set_mode(0o644);
    header.set_mtime(0);
    header.set_uid(0);
    header.set_gid(0);
    header.set_entry_type(tar::EntryType::Regular);
    header.set_cksum();
    let mut out = [0u8; BLOCK];
    out.copy_from_slice(header.as_bytes());
    out
}

/// Appends frames into one pack and closes it with the end-of-archive frame.
pub struct PackBuilder {
    data: Vec<u8>,
    blobs: Vec<IndexBlob>,
    crypto: Crypto,
}

impl PackBuilder {
    pub fn new(crypto: &Crypto) -> PackBuilder {
        PackBuilder::with_capacity(0, crypto)
    }

    /// Reserving the target size up front avoids a doubling that would
    /// briefly hold twice the pack in memory.
    pub fn with_capacity(bytes: usize, crypto: &Crypto) -> PackBuilder {
        PackBuilder {
            data: Vec::with_capacity(bytes),
            blobs: Vec::new(),
            crypto: crypto.clone(),
        }
    }

    pub fn len(&self) -> usize {
        self.data.len()
    }

    pub fn is_empty(&self) -> bool {
        self.blobs.is_empty()
    }

    pub fn push(&mut self, frame: CompressedFrame) {
        let frame_offset = self.data.len() as u64;
        let frame_length = frame.data.len() as u32;
        self.data.extend_from_slice(&frame.data);
        self.blobs.extend(frame.blobs.iter().map(|b| IndexBlob {
            id: b.id,
            frame_offset,
            frame_length,
            offset: b.offset,
            length: b.length,
        }));
    }

    /// The finished pack's bytes, its name and its blobs' index entries.
    pub fn finish(mut self) -> io::Result<(ObjectId, Vec<u8>, Vec<IndexBlob>)> {
        let eoa = zstd::bulk::compress(&[0u8; 2 * BLOCK], 3)?;
        let eoa = self.crypto.seal(Domain::Frame, eoa).map_err(io::Error::other)?;
        self.data.extend_from_slice(&eoa);
        Ok((ObjectId::of(&self.data), self.data, self.blobs))
    }
}

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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::repo::crypto::Secret;
    use std::io::Read;

    fn plain() -> Crypto {
        Crypto::plain()
    }

    /// Both kinds of repository: every pack test runs on each.
    fn kinds() -> [Crypto; 2] {
        [Crypto::plain(), Crypto::from_master(&Secret([42; 32]))]
    }

    fn decompress_frame(f: &[u8], offset: u64, crypto: &Crypto) -> Result<Vec<u8>, PackError> {
        FrameDecoder::new(crypto).decode(f, offset)
    }

    #[test]
    fn pack_is_a_tar_zst_and_blobs_read_by_frame() {
        let blobs: Vec<Vec<u8>> = (0..50u32)
            .map(|i| format!("blob number {i} ").repeat(i as usize * 40).into_bytes())
            .collect();
        let mut fb = FrameBuilder::new(16 * 1024, 3, &plain());
        let mut pack = PackBuilder::new(&plain());
        for b in &blobs {
            for f in fb.push(ObjectId::of(b), b).unwrap() {
                pack.push(f);
            }
        }
        pack.push(fb.finish().unwrap());
        let (id, bytes, index) = pack.finish().unwrap();
        assert_eq!(id, ObjectId::of(&bytes));
        let frames: std::collections::BTreeSet<u64> = index.iter().map(|b| b.frame_offset).collect();
        assert!(frames.len() > 3, "small blobs should share a few frames");

        let mut tar_bytes = Vec::new();
        zstd::stream::Decoder::new(&bytes[..])
            .unwrap()
            .read_to_end(&mut tar_bytes)
            .unwrap();
        let mut archive = tar::Archive::new(&tar_bytes[..]);
        let names: Vec<String> = archive
            .entries()
            .unwrap()
            .map(|e| e.unwrap().path().unwrap().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names.len(), blobs.len());

        for (b, entry) in blobs.iter().zip(&index) {
            let f = &bytes[entry.frame_offset as usize..][..entry.frame_length as usize];
            let frame = decompress_frame(f, entry.frame_offset, &plain()).unwrap();
            check_member_header(&frame, entry).unwrap();
            assert_eq!(blob_in_frame(&frame, entry, &plain()).unwrap(), &b[..]);
        }
    }

    #[test]
    fn an_encrypted_pack_opens_frame_by_frame_and_shows_nothing() {
        let crypto = &kinds()[1];
        let (bytes, index) = sample_pack(crypto);
        assert!(!bytes.windows(12).any(|w| w == b"scanned blob"));
        assert!(zstd::stream::decode_all(&bytes[..]).is_err());
        for entry in &index {
            let f = &bytes[entry.frame_offset as usize..][..entry.frame_length as usize];
            let frame = decompress_frame(f, entry.frame_offset, crypto).unwrap();
            check_member_header(&frame, entry).unwrap();
            assert_eq!(
                blob_in_frame(&frame, entry, crypto).unwrap().len(),
                entry.length as usize
            );
            assert!(matches!(
                decompress_frame(f, entry.frame_offset, &plain()),
                Err(PackError::Decompress { .. })
            ));
            let mut flipped = f.to_vec();
            let middle = flipped.len() / 2;
            flipped[middle] ^= 1;
            assert!(matches!(
                decompress_frame(&flipped, entry.frame_offset, crypto),
                Err(PackError::Sealed { .. })
            ));
        }
    }

    #[test]
    fn damaged_blob_is_refused() {
        let mut fb = FrameBuilder::new(1 << 20, 3, &plain());
        assert!(fb.push(ObjectId::of(b"abc"), b"abc").unwrap().is_empty());
        let frame = fb.finish().unwrap();
        let mut raw = decompress_frame(&frame.data, 0, &plain()).unwrap();
        let b = frame.blobs[0];
        raw[b.offset as usize] ^= 1;
        let entry = IndexBlob {
            id: b.id,
            frame_offset: 0,
            frame_length: 0,
            offset: b.offset,
            length: b.length,
        };
        assert!(matches!(
            blob_in_frame(&raw, &entry, &plain()),
            Err(PackError::HashMismatch { .. })
        ));
    }

    fn sample_pack(crypto: &Crypto) -> (Vec<u8>, Vec<IndexBlob>) {
        let mut fb = FrameBuilder::new(8 * 1024, 3, crypto);
        let mut pack = PackBuilder::new(crypto);
        for i in 0..40u32 {
            let b = format!("scanned blob {i} ")
                .repeat(i as usize * 30 + 1)
                .into_bytes();
            for f in fb.push(crypto.blob_id(&b), &b).unwrap() {
                pack.push(f);
            }
        }
        pack.push(fb.finish().unwrap());
        let (_, bytes, index) = pack.finish().unwrap();
        (bytes, index)
    }

    #[test]
    fn a_scan_finds_what_the_index_says() {
        for crypto in kinds() {
            let (bytes, index) = sample_pack(&crypto);
            let scanned = scan(&bytes, &crypto);
            assert!(scanned.damaged.is_empty(), "{:?}", scanned.damaged);
            assert_eq!(scanned.blobs, index);
        }
    }

    #[test]
    fn a_damaged_frame_costs_only_its_own_blobs() {
        for crypto in kinds() {
            damaged_frame_costs_its_own_blobs(&crypto);
        }
    }

    fn damaged_frame_costs_its_own_blobs(crypto: &Crypto) {
        let (mut bytes, index) = sample_pack(crypto);
        let frames: std::collections::BTreeSet<u64> = index.iter().map(|b| b.frame_offset).collect();
        let victim = *frames.iter().nth(2).unwrap();
        // Garbles the middle of the third frame.
        let entry = index.iter().find(|b| b.frame_offset == victim).unwrap();
        let at = (victim + u64::from(entry.frame_length) / 2) as usize;
        for b in &mut bytes[at..at + 16] {
            *b ^= 0x5a;
        }
        let scanned = scan(&bytes, crypto);
        assert_eq!(scanned.damaged.len(), 1, "{:?}", scanned.damaged);
        let expected: Vec<IndexBlob> = index
            .iter()
            .filter(|b| b.frame_offset != victim)
            .copied()
            .collect();
        assert_eq!(scanned.blobs, expected);
    }

    #[test]
    fn garbage_and_truncation_scan_without_panic() {
        for crypto in kinds() {
            garbage_scans_without_panic(&crypto);
        }
    }

    fn garbage_scans_without_panic(crypto: &Crypto) {
        let (bytes, index) = sample_pack(crypto);
        let cut = &bytes[..bytes.len() * 2 / 3];
        let scanned = scan(cut, crypto);
        assert!(!scanned.blobs.is_empty() && scanned.blobs.len() < index.len());
        let mut noise = 0x9e3779b97f4a7c15u64;
        let junk: Vec<u8> = (0..100_000)
            .map(|_| {
                noise ^= noise << 13;
                noise ^= noise >> 7;
                noise ^= noise << 17;
                noise as u8
            })
            .collect();
        assert!(scan(&junk, crypto).blobs.is_empty());
        assert!(scan(&[], crypto).blobs.is_empty() && scan(&[], crypto).damaged.is_empty());
    }
}
