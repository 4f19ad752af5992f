//! A small seeded generator (xorshift64*): reproducible draws for the
//! fault-injecting store (`sink::chaos`), the property tests that hold the
//! hand-written fast parsers to serde's result, and the integration tests'
//! crash and fault harnesses. Not for anything secret.

/// xorshift64*: small, seeded, reproducible.
pub struct Rng(pub u64);

impl Rng {
    pub fn draw(&mut self) -> u64 {
        let mut x = self.0.max(1);
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// A number in `0..n`.
    pub fn below(&mut self, n: u64) -> u64 {
        self.draw() % n.max(1)
    }

    /// A number of any size, small ones (and edge values) often.
    pub fn number(&mut self) -> u64 {
        match self.below(6) {
            0 => 0,
            1 => u64::MAX >> self.below(64),
            2 => self.below(10),
            _ => self.draw() >> self.below(64),
        }
    }

    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len() as u64) as usize]
    }

    /// A uniform draw from `[0, 1)`.
    pub fn unit(&mut self) -> f64 {
        (self.draw() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// `bytes` with a few random edits: a byte changed, inserted, removed,
    /// or a span repeated.
    pub fn mutate(&mut self, bytes: &[u8]) -> Vec<u8> {
        let mut out = bytes.to_vec();
        for _ in 0..=self.below(3) {
            let at = self.below(out.len() as u64 + 1) as usize;
            let byte = *self.pick(b"0123456789\"\\{}[],:-. aefnlrtu\x00\xff");
            match self.below(4) {
                0 if at < out.len() => out[at] = byte,
                1 => out.insert(at, byte),
                2 if at < out.len() => drop(out.remove(at)),
                _ => {
                    let end = (at + self.below(16) as usize).min(out.len());
                    let span = out[at..end].to_vec();
                    out.splice(at..at, span);
                }
            }
        }
        out
    }
}
