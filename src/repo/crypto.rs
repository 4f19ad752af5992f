//! Sealing (FORMAT.md section 15): the one place where bytes are encrypted
//! and authenticated, and where blob ids are keyed. Everything above it
//! asks a [`Crypto`] to seal, open or name; a plain repository's `Crypto`
//! hands bytes through unchanged and names blobs by their plain hash, so
//! the rest of the code has one path for both kinds.

use std::ops::Range;
use std::sync::Arc;

use chacha20poly1305::aead::AeadInPlace;
use chacha20poly1305::{KeyInit, XChaCha20Poly1305, XNonce};
use zeroize::Zeroize;

use super::id::ObjectId;

const NONCE: usize = 24;
const LENGTH: usize = 4;
const CHECK: usize = 8;
const TAG: usize = 16;
/// Bytes before the ciphertext.
pub const HEADER: usize = NONCE + LENGTH + CHECK;
/// How much longer an envelope is than what it seals.
pub const OVERHEAD: usize = HEADER + TAG;

/// What an envelope is for: its associated data, so that no sealed object
/// can stand in for one of another kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Domain {
    Frame,
    Index,
    Snapshot,
    Lock,
    Key,
    KeyInfo,
}

impl Domain {
    fn associated_data(self) -> &'static [u8] {
        match self {
            Domain::Frame => b"cairn frame",
            Domain::Index => b"cairn index",
            Domain::Snapshot => b"cairn snapshot",
            Domain::Lock => b"cairn lock",
            Domain::Key => b"cairn key",
            Domain::KeyInfo => b"cairn key info",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SealError {
    #[error("it is not a sealed envelope (its header does not check)")]
    BadHeader,
    #[error("it is cut short or too long for its envelope")]
    BadLength,
    #[error("it does not open (its authentication tag does not match: damaged, or sealed with another key)")]
    Tag,
    #[error("the operating system gave no random bytes")]
    NoRandom,
}

/// 32 secret bytes, wiped when dropped.
#[derive(Clone)]
pub struct Secret(pub [u8; 32]);

impl Drop for Secret {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

impl Secret {
    pub fn random() -> Result<Secret, SealError> {
        let mut bytes = [0u8; 32];
        getrandom::fill(&mut bytes).map_err(|_| SealError::NoRandom)?;
        Ok(Secret(bytes))
    }

    fn derive(&self, context: &str) -> Secret {
        Secret(blake3::derive_key(context, &self.0))
    }
}

/// A sealing key: the AEAD key and the key that masks envelope headers.
pub struct SealKey {
    aead: XChaCha20Poly1305,
    header: Secret,
}

impl SealKey {
    pub fn new(key: &Secret) -> SealKey {
        let aead = key.derive("cairn 2026-12-01 seal aead");
        SealKey {
            aead: XChaCha20Poly1305::new((&aead.0).into()),
            header: key.derive("cairn 2026-12-01 seal header"),
        }
    }

    /// The mask of an envelope's length and its check, from its nonce.
    fn pad(&self, nonce: &[u8]) -> [u8; 32] {
        *blake3::keyed_hash(&self.header.0, nonce).as_bytes()
    }

    /// `plain` sealed as one envelope.
    pub fn seal(&self, domain: Domain, plain: &[u8]) -> Result<Vec<u8>, SealError> {
        let mut buf = Vec::with_capacity(plain.len() + OVERHEAD);
        buf.extend_from_slice(plain);
        self.seal_vec(domain, buf)
    }

    /// [`SealKey::seal`] in `buf`'s own allocation: a frame is sealed where
    /// it was compressed (whose buffer has room to spare) instead of in a
    /// fresh megabyte that costs its page faults and a copy.
    pub fn seal_vec(&self, domain: Domain, mut buf: Vec<u8>) -> Result<Vec<u8>, SealError> {
        let n = u32::try_from(buf.len()).map_err(|_| SealError::BadLength)?;
        let mut nonce = [0u8; NONCE];
        getrandom::fill(&mut nonce).map_err(|_| SealError::NoRandom)?;
        let pad = self.pad(&nonce);
        let mut header = [0u8; HEADER];
        header[..NONCE].copy_from_slice(&nonce);
        let mut length = n.to_le_bytes();
        for (b, p) in length.iter_mut().zip(&pad[..LENGTH]) {
            *b ^= p;
        }
        header[NONCE..NONCE + LENGTH].copy_from_slice(&length);
        header[NONCE + LENGTH..].copy_from_slice(&pad[LENGTH..LENGTH + CHECK]);
        let plain_len = buf.len();
        buf.reserve(OVERHEAD);
        buf.resize(plain_len + HEADER, 0);
        buf.copy_within(..plain_len, HEADER);
        buf[..HEADER].copy_from_slice(&header);
        let tag = self
            .aead
            .encrypt_in_place_detached(
                XNonce::from_slice(&nonce),
                domain.associated_data(),
                &mut buf[HEADER..],
            )
            .map_err(|_| SealError::BadLength)?;
        buf.extend_from_slice(&tag);
        Ok(buf)
    }

    /// The length of the envelope that starts `data`, if its header checks
    /// (it may be longer than `data`).
    pub fn envelope_len(&self, data: &[u8]) -> Option<usize> {
        let head = data.get(..HEADER)?;
        let pad = self.pad(&head[..NONCE]);
        if head[NONCE + LENGTH..] != pad[LENGTH..LENGTH + CHECK] {
            return None;
        }
        let mut length = [0u8; LENGTH];
        for ((l, b), p) in length.iter_mut().zip(&head[NONCE..NONCE + LENGTH]).zip(&pad) {
            *l = b ^ p;
        }
        usize::try_from(u32::from_le_bytes(length))
            .ok()?
            .checked_add(OVERHEAD)
    }

    /// Opens the envelope that is all of `buf`, in place: returns where
    /// the plaintext lies in `buf`. Nothing in `buf` is plaintext unless
    /// this succeeds.
    pub fn open_in_place(&self, domain: Domain, buf: &mut [u8]) -> Result<Range<usize>, SealError> {
        let len = self.envelope_len(buf).ok_or(SealError::BadHeader)?;
        if len != buf.len() {
            return Err(SealError::BadLength);
        }
        let (head, rest) = buf.split_at_mut(HEADER);
        let (body, tag) = rest.split_at_mut(rest.len() - TAG);
        self.aead
            .decrypt_in_place_detached(
                XNonce::from_slice(&head[..NONCE]),
                domain.associated_data(),
                body,
                chacha20poly1305::Tag::from_slice(tag),
            )
            .map_err(|_| SealError::Tag)?;
        Ok(HEADER..len - TAG)
    }

    /// The plaintext of the envelope that is all of `stored`.
    pub fn open(&self, domain: Domain, stored: &[u8]) -> Result<Vec<u8>, SealError> {
        let mut buf = stored.to_vec();
        let range = self.open_in_place(domain, &mut buf)?;
        buf.truncate(range.end);
        buf.drain(..range.start);
        Ok(buf)
    }
}

/// What a repository's master key gives: the keys of its data.
struct DataKeys {
    seal: SealKey,
    blob_id: Secret,
    chunker: Secret,
    fingerprint: Secret,
}

/// How a repository seals and names: plain (bytes as they are, blobs
/// named by their plain hash) or with the keys of a master key.
#[derive(Clone, Default)]
pub struct Crypto {
    keys: Option<Arc<DataKeys>>,
}

impl Crypto {
    pub fn plain() -> Crypto {
        Crypto::default()
    }

    pub fn from_master(master: &Secret) -> Crypto {
        Crypto {
            keys: Some(Arc::new(DataKeys {
                seal: SealKey::new(&master.derive("cairn 2026-12-01 data sealing key")),
                blob_id: master.derive("cairn 2026-12-01 blob id key"),
                chunker: master.derive("cairn 2026-12-01 chunker gear key"),
                fingerprint: master.derive("cairn 2026-12-01 env fingerprint key"),
            })),
        }
    }

    pub fn is_encrypted(&self) -> bool {
        self.keys.is_some()
    }

    /// A blob's id: its hash; in an encrypted repository, that hash keyed.
    pub fn blob_id(&self, data: &[u8]) -> ObjectId {
        self.blob_id_of(blake3::hash(data))
    }

    /// The id of a blob whose plain hash is `hash`: the hash itself, or
    /// the keyed hash of its 32 bytes (FORMAT.md section 15), so content
    /// is hashed once for both its id and a file's `hash`.
    pub fn blob_id_of(&self, hash: blake3::Hash) -> ObjectId {
        match &self.keys {
            None => ObjectId::from_hash(hash),
            Some(k) => ObjectId::from_hash(blake3::keyed_hash(&k.blob_id.0, hash.as_bytes())),
        }
    }

    /// Whether a blob named `id`, already verified, holds content whose
    /// plain hash is `hash` (without hashing the content again).
    pub fn id_has_hash(&self, id: &ObjectId, hash: &ObjectId) -> bool {
        self.blob_id_of(blake3::Hash::from_bytes(*hash.as_bytes())) == *id
    }

    /// The key the file chunker's gear table is made from (FORMAT.md
    /// section 15); `None`: the plain table.
    pub fn chunker_key(&self) -> Option<[u8; 32]> {
        self.keys.as_ref().map(|k| k.chunker.0)
    }

    /// The key of env fingerprints, in an encrypted repository.
    pub fn fingerprint_key(&self) -> Option<[u8; 32]> {
        self.keys.as_ref().map(|k| k.fingerprint.0)
    }

    /// `plain` as it is stored: sealed, or unchanged.
    pub fn seal(&self, domain: Domain, plain: Vec<u8>) -> Result<Vec<u8>, SealError> {
        match &self.keys {
            None => Ok(plain),
            Some(k) => k.seal.seal_vec(domain, plain),
        }
    }

    /// Stored bytes opened: where the plaintext lies in `buf`.
    pub fn open_in_place(&self, domain: Domain, buf: &mut [u8]) -> Result<Range<usize>, SealError> {
        match &self.keys {
            None => Ok(0..buf.len()),
            Some(k) => k.seal.open_in_place(domain, buf),
        }
    }

    /// Stored bytes opened, owned.
    pub fn open(&self, domain: Domain, mut stored: Vec<u8>) -> Result<Vec<u8>, SealError> {
        let range = self.open_in_place(domain, &mut stored)?;
        stored.truncate(range.end);
        stored.drain(..range.start);
        Ok(stored)
    }

    /// The length of the sealed frame at the start of `data` (repair's
    /// scan of an encrypted pack), `None` in a plain repository or where
    /// no envelope header checks.
    pub fn envelope_len(&self, data: &[u8]) -> Option<usize> {
        self.keys.as_ref()?.seal.envelope_len(data)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> SealKey {
        SealKey::new(&Secret([7; 32]))
    }

    #[test]
    fn an_envelope_opens_to_what_was_sealed() {
        let k = key();
        for plain in [&b""[..], b"x", &[9u8; 5000]] {
            let sealed = k.seal(Domain::Index, plain).unwrap();
            assert_eq!(sealed.len(), plain.len() + OVERHEAD);
            assert_eq!(k.envelope_len(&sealed), Some(sealed.len()));
            assert_eq!(k.open(Domain::Index, &sealed).unwrap(), plain);
        }
    }

    #[test]
    fn every_flipped_byte_is_found() {
        let k = key();
        let sealed = k.seal(Domain::Snapshot, b"a record").unwrap();
        for i in 0..sealed.len() {
            let mut bad = sealed.clone();
            bad[i] ^= 0x20;
            assert!(k.open(Domain::Snapshot, &bad).is_err(), "byte {i}");
        }
    }

    #[test]
    fn an_envelope_of_one_domain_does_not_open_as_another() {
        let k = key();
        let sealed = k.seal(Domain::Index, b"data").unwrap();
        assert_eq!(k.open(Domain::Snapshot, &sealed), Err(SealError::Tag));
        let other = SealKey::new(&Secret([8; 32]));
        assert!(other.open(Domain::Index, &sealed).is_err());
    }

    #[test]
    fn a_cut_or_extended_envelope_does_not_open() {
        let k = key();
        let sealed = k.seal(Domain::Frame, b"frame bytes").unwrap();
        assert_eq!(
            k.open(Domain::Frame, &sealed[..sealed.len() - 1]),
            Err(SealError::BadLength)
        );
        let mut longer = sealed.clone();
        longer.push(0);
        assert_eq!(k.open(Domain::Frame, &longer), Err(SealError::BadLength));
        assert_eq!(k.open(Domain::Frame, &sealed[..10]), Err(SealError::BadHeader));
    }

    #[test]
    fn nonces_differ_and_nothing_plain_shows() {
        let k = key();
        let a = k.seal(Domain::Frame, b"the same secret text").unwrap();
        let b = k.seal(Domain::Frame, b"the same secret text").unwrap();
        assert_ne!(a, b);
        assert!(!a.windows(6).any(|w| w == b"secret"));
    }

    #[test]
    fn blob_ids_are_keyed_only_when_encrypted() {
        let plain = Crypto::plain();
        assert_eq!(plain.blob_id(b"hello"), ObjectId::of(b"hello"));
        let enc = Crypto::from_master(&Secret([1; 32]));
        assert_ne!(enc.blob_id(b"hello"), ObjectId::of(b"hello"));
        let other = Crypto::from_master(&Secret([2; 32]));
        assert_ne!(enc.blob_id(b"hello"), other.blob_id(b"hello"));
        // The id is the keyed hash of the plain hash, so one hashing serves both.
        let hash = ObjectId::of(b"hello");
        assert!(enc.id_has_hash(&enc.blob_id(b"hello"), &hash));
        assert!(!enc.id_has_hash(&enc.blob_id(b"hello!"), &hash));
        assert!(plain.id_has_hash(&hash, &hash));
        assert!(enc.chunker_key().is_some() && plain.chunker_key().is_none());
        let mut buf = b"as is".to_vec();
        assert_eq!(plain.open_in_place(Domain::Frame, &mut buf).unwrap(), 0..5);
    }
}
