//! Content-defined chunking (FastCDC 2020), so that an insertion early in a
//! file moves only the chunks around it and the rest still deduplicate.

use std::io::{self, Read};

use std::sync::Arc;

use fastcdc::v2020::{cut_gear, get_gear_with_seed, Normalization, MASKS};

use super::config::ChunkerParams;

/// FastCDC's gear table and its shifted twin.
type Gear = (Box<[u64; 256]>, Box<[u64; 256]>);

#[derive(Debug, Clone)]
pub struct Chunker {
    min: usize,
    avg: usize,
    max: usize,
    mask_s: u64,
    mask_l: u64,
    /// The gear tables (FORMAT.md section 4), XORed with a seed in an
    /// encrypted repository (section 15).
    gear: Arc<Gear>,
}

impl Chunker {
    /// `None` when the parameters are outside what FastCDC supports.
    pub fn new(params: &ChunkerParams) -> Option<Chunker> {
        use fastcdc::v2020::{AVERAGE_MAX, AVERAGE_MIN, MAXIMUM_MAX, MAXIMUM_MIN, MINIMUM_MAX, MINIMUM_MIN};
        let ChunkerParams {
            min_size,
            avg_size,
            max_size,
            ..
        } = *params;
        let in_range = (MINIMUM_MIN..=MINIMUM_MAX).contains(&min_size)
            && (AVERAGE_MIN..=AVERAGE_MAX).contains(&avg_size)
            && (MAXIMUM_MIN..=MAXIMUM_MAX).contains(&max_size)
            && min_size <= avg_size
            && avg_size <= max_size;
        if !in_range {
            return None;
        }
        let bits = fastcdc::v2020::logarithm2(avg_size);
        let level = Normalization::Level1.bits();
        Some(Chunker {
            min: min_size as usize,
            avg: avg_size as usize,
            max: max_size as usize,
            mask_s: MASKS[(bits + level) as usize],
            mask_l: MASKS[(bits - level) as usize],
            gear: Arc::new(get_gear_with_seed(0)),
        })
    }

    /// This chunker with a gear table made from `key` (FORMAT.md section
    /// 15: every entry from a keyed hash, so that boundaries seen cannot
    /// give the table away), or the plain table.
    pub fn keyed(mut self, key: Option<[u8; 32]>) -> Chunker {
        self.gear = Arc::new(match key {
            None => get_gear_with_seed(0),
            Some(key) => {
                let mut gear = Box::new([0u64; 256]);
                let mut gear_ls = Box::new([0u64; 256]);
                for i in 0..=255u8 {
                    let mut word = [0u8; 8];
                    word.copy_from_slice(&blake3::keyed_hash(&key, &[i]).as_bytes()[..8]);
                    gear[usize::from(i)] = u64::from_le_bytes(word);
                    gear_ls[usize::from(i)] = gear[usize::from(i)] << 1;
                }
                (gear, gear_ls)
            }
        });
        self
    }

    /// The manifest's chunker: smaller chunks than file data, so a change in
    /// one directory rewrites little of the manifest and the writer holds at
    /// most about 1 MiB of it in memory. Readers do not need these sizes.
    pub fn for_manifest() -> Chunker {
        let params = ChunkerParams {
            algorithm: super::config::ChunkerAlgorithm::FastCdc2020,
            min_size: 64 * 1024,
            avg_size: 256 * 1024,
            max_size: 1024 * 1024,
        };
        // Constant sizes within FastCDC's limits.
        Chunker::new(&params).unwrap_or_else(|| unreachable!("manifest chunker sizes are valid"))
    }

    /// The most a chunking window grows to: one maximum chunk of look-ahead
    /// plus half a chunk of slack, so a move of the unread rest (less than one
    /// maximum chunk) happens at most once per half a maximum chunk consumed.
    pub fn window_limit(&self) -> usize {
        self.max + self.max / 2
    }

    pub fn min_size(&self) -> usize {
        self.min
    }

    pub fn max_size(&self) -> usize {
        self.max
    }

    /// The length of the next chunk at the start of `data`, or `None` when more
    /// data is needed to decide. At `eof` the rest is always one or more chunks.
    pub fn next_cut(&self, data: &[u8], eof: bool) -> Option<usize> {
        if data.is_empty() || (!eof && data.len() < self.max) {
            return None;
        }
        let window = &data[..data.len().min(self.max)];
        let (_, len) = cut_gear(
            window,
            self.min,
            self.avg,
            self.max,
            self.mask_s,
            self.mask_l,
            self.mask_s << 1,
            self.mask_l << 1,
            &self.gear.0,
            &self.gear.1,
        );
        Some(len.max(1).min(window.len()))
    }

    /// Cuts everything `reader` yields into chunks and hands each to `f`,
    /// with `true` when the chunk is the whole input. `buf` is reused between
    /// calls so that a worker allocates (and zeroes) rarely: it is sized from
    /// `size_hint` and grows, when the input turns out larger, to at most
    /// [`Chunker::window_limit`]. Returns the bytes read.
    pub fn chunk_reader<E: From<io::Error>>(
        &self,
        reader: &mut dyn Read,
        size_hint: u64,
        buf: &mut Vec<u8>,
        mut f: impl FnMut(&[u8], bool) -> Result<(), E>,
    ) -> Result<u64, E> {
        let limit = self.window_limit();
        let smallest = (64 * 1024).min(limit);
        let want = (size_hint.saturating_add(1)).clamp(smallest as u64, limit as u64) as usize;
        if buf.len() < want {
            buf.resize(want, 0);
        } else if buf.len() >= 2 << 20 && buf.len() / 4 > want {
            // A window grown for a large file is given back when a small one
            // follows: otherwise every worker keeps the largest it has had.
            buf.truncate(want);
            buf.shrink_to_fit();
        }
        let (mut start, mut end, mut total, mut eof) = (0usize, 0usize, 0u64, false);
        loop {
            // Keep at least one maximum chunk in the window unless the input ended.
            while !eof && end - start < self.max {
                if end == buf.len() {
                    // Grow while that is cheaper than moving most of the
                    // window; at the limit a move copies less than one
                    // maximum chunk per maximum chunk consumed.
                    if buf.len() < limit && start < buf.len() / 2 {
                        let grown = (buf.len() * 2).clamp(smallest, limit);
                        buf.resize(grown, 0);
                    } else {
                        buf.copy_within(start..end, 0);
                        end -= start;
                        start = 0;
                    }
                }
                match reader.read(&mut buf[end..]) {
                    Ok(0) => eof = true,
                    Ok(n) => {
                        end += n;
                        total += n as u64;
                    }
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(e.into()),
                }
            }
            match self.next_cut(&buf[start..end], eof) {
                Some(len) => {
                    let whole = eof && start == 0 && len == end && total == len as u64;
                    f(&buf[start..start + len], whole)?;
                    start += len;
                }
                None => return Ok(total),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::repo::config::Config;

    fn small() -> Chunker {
        let mut params = Config::new(String::new()).chunker;
        params.min_size = 1024;
        params.avg_size = 4096;
        params.max_size = 16384;
        Chunker::new(&params).unwrap()
    }

    fn pseudo_random(n: usize, seed: u64) -> Vec<u8> {
        let mut x = seed;
        (0..n)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect()
    }

    fn chunks(c: &Chunker, data: &[u8]) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        let mut buf = Vec::new();
        let total = c
            .chunk_reader::<io::Error>(&mut &data[..], data.len() as u64 / 3, &mut buf, |ch, _| {
                out.push(ch.to_vec());
                Ok(())
            })
            .unwrap();
        assert_eq!(total, data.len() as u64);
        out
    }

    #[test]
    fn chunks_cover_input_within_bounds() {
        let c = small();
        let data = pseudo_random(200_000, 1);
        let parts = chunks(&c, &data);
        assert_eq!(parts.concat(), data);
        assert!(parts.len() > 5);
        for p in &parts[..parts.len() - 1] {
            assert!(p.len() >= 1024 && p.len() <= 16384, "chunk of {}", p.len());
        }
    }

    #[test]
    fn window_grows_when_the_input_is_larger_than_announced() {
        let c = Chunker::new(&Config::new(String::new()).chunker).unwrap();
        let data = pseudo_random(20 << 20, 3);
        let mut buf = Vec::new();
        let mut out = Vec::new();
        let mut wholes = 0;
        c.chunk_reader::<io::Error>(&mut &data[..], 0, &mut buf, |ch, whole| {
            out.extend_from_slice(ch);
            wholes += whole as usize;
            Ok(())
        })
        .unwrap();
        assert_eq!(out, data);
        assert_eq!(wholes, 0);
        assert_eq!(buf.len(), c.window_limit());
        let mut wholes = 0;
        c.chunk_reader::<io::Error>(&mut &b"small"[..], 5, &mut buf, |_, whole| {
            wholes += whole as usize;
            Ok(())
        })
        .unwrap();
        assert_eq!(wholes, 1);
        assert!(buf.len() < c.window_limit(), "the window was not given back");
    }

    #[test]
    fn a_keyed_table_cuts_within_bounds_and_elsewhere() {
        let data = pseudo_random(400_000, 4);
        let plain = chunks(&small(), &data);
        let keyed = chunks(&small().keyed(Some([5; 32])), &data);
        assert_eq!(keyed.concat(), data);
        for p in &keyed[..keyed.len() - 1] {
            assert!(p.len() >= 1024 && p.len() <= 16384, "chunk of {}", p.len());
        }
        let shared = keyed.iter().filter(|c| plain.contains(c)).count();
        assert!(
            shared * 4 < keyed.len(),
            "{shared} of {} chunks cut alike",
            keyed.len()
        );
        assert_eq!(chunks(&small().keyed(None), &data), plain);
    }

    #[test]
    fn empty_input_has_no_chunks() {
        assert!(chunks(&small(), &[]).is_empty());
    }

    #[test]
    fn insertion_moves_few_chunks() {
        let c = small();
        let data = pseudo_random(300_000, 2);
        let mut edited = data[..1000].to_vec();
        edited.extend_from_slice(b"inserted bytes");
        edited.extend_from_slice(&data[1000..]);
        let a = chunks(&c, &data);
        let b = chunks(&c, &edited);
        let shared = b.iter().filter(|x| a.contains(x)).count();
        assert!(
            shared + 3 >= a.len(),
            "only {shared} of {} chunks survived",
            a.len()
        );
    }

    #[test]
    fn out_of_range_params_are_refused() {
        let mut params = Config::new(String::new()).chunker;
        params.max_size = 1 << 30;
        assert!(Chunker::new(&params).is_none());
    }
}
