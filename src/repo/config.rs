//! `config.json`: the parameters fixed when a repository is created.

use serde::{Deserialize, Serialize};

/// The repository format this build reads and writes.
pub const FORMAT_VERSION: u32 = 1;

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
        }
    }
}
