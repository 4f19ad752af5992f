//! `config.json`: the parameters fixed when a repository is created.

use serde::{Deserialize, Serialize};

/// The format of a plain repository.
pub const FORMAT_VERSION: u32 = 1;
/// The format of an encrypted repository (FORMAT.md section 15): version 1
/// with every object sealed; a cairn that knows only 1 refuses it.
pub const ENCRYPTED_VERSION: u32 = 2;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub version: u32,
    /// Random, hex; tells repositories apart.
    pub id: String,
    pub chunker: ChunkerParams,
    pub compression: Compression,
    /// A frame is closed once its uncompressed tar data reaches this size.
    pub frame_target: u32,
    /// A pack is closed once its compressed size reaches this size.
    pub pack_target: u32,
    /// Set in (and only in) an encrypted repository.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encryption: Option<Encryption>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Encryption {
    pub algorithm: AeadAlgorithm,
    pub kdf: KdfAlgorithm,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum AeadAlgorithm {
    #[serde(rename = "xchacha20-poly1305")]
    XChaCha20Poly1305,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum KdfAlgorithm {
    #[serde(rename = "argon2id")]
    Argon2id,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChunkerParams {
    pub algorithm: ChunkerAlgorithm,
    pub min_size: u32,
    pub avg_size: u32,
    pub max_size: u32,
}

/// The only chunker: FastCDC 2020, normalization level 1, gear seed 0.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ChunkerAlgorithm {
    #[serde(rename = "fastcdc-2020")]
    FastCdc2020,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Compression {
    pub algorithm: CompressionAlgorithm,
    pub level: i32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum CompressionAlgorithm {
    #[serde(rename = "zstd")]
    Zstd,
}

impl Config {
    /// Whether this cairn can read and write what the config describes: a
    /// frame (the target plus the largest chunk and its tar framing) within
    /// the reader's frame limit, a pack target a writer can hold, a zstd
    /// level zstd has. Checked when a repository is opened, so that a
    /// crafted config is refused at once, not discovered at restore.
    pub fn check(&self) -> Result<(), String> {
        match (self.version, self.encryption.is_some()) {
            (FORMAT_VERSION, false) | (ENCRYPTED_VERSION, true) => {}
            (FORMAT_VERSION, true) => return Err("a version 1 repository with encryption".into()),
            _ => {
                return Err(format!(
                    "a version {} repository without encryption",
                    self.version
                ))
            }
        }
        let max_frame = super::pack::MAX_FRAME_BYTES as u64;
        let frame = u64::from(self.frame_target)
            .saturating_add(u64::from(self.chunker.max_size))
            .saturating_add(2048);
        if self.frame_target < 4096 || frame > max_frame {
            return Err(format!(
                "frame_target {} with chunks of up to {} bytes makes frames this cairn cannot read (at most {} bytes)",
                self.frame_target, self.chunker.max_size, max_frame
            ));
        }
        if !(1 << 16..=1 << 30).contains(&self.pack_target) {
            return Err(format!(
                "pack_target {} is outside 64 KiB to 1 GiB",
                self.pack_target
            ));
        }
        if !(-7..=22).contains(&self.compression.level) {
            return Err(format!(
                "compression level {} is not a zstd level (-7 to 22)",
                self.compression.level
            ));
        }
        Ok(())
    }

    pub fn new(id: String) -> Config {
        Config {
            version: FORMAT_VERSION,
            id,
            chunker: ChunkerParams {
                algorithm: ChunkerAlgorithm::FastCdc2020,
                min_size: 512 * 1024,
                avg_size: 1024 * 1024,
                // Twice the window a worker keeps; chunks this large are rare
                // (a forced cut after avg + 3 MiB without a natural one).
                max_size: 4 * 1024 * 1024,
            },
            compression: Compression {
                algorithm: CompressionAlgorithm::Zstd,
                level: 3,
            },
            frame_target: 1024 * 1024,
            // A pack is assembled in memory: this bounds the writer's share.
            pack_target: 8 * 1024 * 1024,
            encryption: None,
        }
    }

    /// The config of a new encrypted repository.
    pub fn new_encrypted(id: String) -> Config {
        Config {
            version: ENCRYPTED_VERSION,
            encryption: Some(Encryption {
                algorithm: AeadAlgorithm::XChaCha20Poly1305,
                kdf: KdfAlgorithm::Argon2id,
            }),
            ..Config::new(id)
        }
    }
}
