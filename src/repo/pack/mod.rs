//! Packs: real `.tar.zst` files made of independent zstd frames.
//!
//! Each frame holds whole tar members (one per blob, named by the blob's hex
//! id); the last frame holds the tar end-of-archive blocks. Concatenated zstd
//! frames decompress as one stream, so `zstd -dc pack.tar.zst | tar -t` lists a
//! pack, while the index's frame offsets let a reader fetch and decompress one
//! frame to get one blob.

use std::io;

mod decode;
mod scan;

pub use decode::{blob_in_frame, check_member_header, FrameDecoder};
pub use scan::{scan, Scanned};

use super::crypto::{Crypto, Domain, SealError};
use super::id::ObjectId;
use super::index::IndexBlob;

/// tar's block size: headers and data are padded to it.
pub(crate) const BLOCK: usize = 512;

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
