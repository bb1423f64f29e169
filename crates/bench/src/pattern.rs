//! `Pattern`: the deterministic byte stream each load-generator connection sends, so every
//! echoed byte can be checked without keeping a copy of what was sent.
//!
//! Connection `c` sends, at stream offset `i`, the byte `table[(seed(c) + i) mod PERIOD]`.
//! The table is pseudo-random and `PERIOD` is prime, so a dropped, duplicated or reordered
//! byte, or bytes from another connection, fail the comparison (unless shifted by an exact
//! multiple of 65,521 bytes).

/// Length of the repeating part of the pattern (a prime).
const PERIOD: usize = 65_521;

/// Longest slice [`Pattern::slice`] hands out; reads and writes are chunked to this.
pub(crate) const MAX_CHUNK: usize = 64 * 1024;

/// The shared, read-only pattern table.
#[derive(Debug, Clone)]
pub(crate) struct Pattern {
    /// `PERIOD + MAX_CHUNK` bytes: any slice of up to `MAX_CHUNK` starting inside the period
    /// is contiguous.
    table: Box<[u8]>,
}

impl Default for Pattern {
    fn default() -> Self {
        Self::new()
    }
}

impl Pattern {
    /// Builds the table (deterministically: every run sends the same bytes).
    pub(crate) fn new() -> Self {
        let mut table = vec![0u8; PERIOD + MAX_CHUNK];
        // xorshift64*: cheap, and the bytes look nothing like text or the offset.
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        for b in table.iter_mut().take(PERIOD) {
            x ^= x >> 12;
            x ^= x << 25;
            x ^= x >> 27;
            *b = (x.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 56) as u8;
        }
        // The tail repeats the period (MAX_CHUNK > PERIOD, so it wraps more than once).
        for i in PERIOD..table.len() {
            table[i] = table[i - PERIOD];
        }
        Pattern {
            table: table.into_boxed_slice(),
        }
    }

    /// The starting point in the table for connection `id`.
    pub(crate) fn seed(id: u64) -> usize {
        // A stride coprime with PERIOD spreads consecutive ids over the table.
        ((id.wrapping_mul(40_503).wrapping_add(17)) % PERIOD as u64) as usize
    }

    /// The `len` bytes (at most [`MAX_CHUNK`]) at stream offset `offset` of the connection
    /// with `seed`.
    pub(crate) fn slice(&self, seed: usize, offset: u64, len: usize) -> &[u8] {
        assert!(
            len <= MAX_CHUNK,
            "pattern slices are at most MAX_CHUNK bytes"
        );
        let start = (seed + (offset % PERIOD as u64) as usize) % PERIOD;
        &self.table[start..start + len]
    }

    /// Whether `data` is exactly what the connection with `seed` sent at `offset`.
    pub(crate) fn matches(&self, seed: usize, offset: u64, data: &[u8]) -> bool {
        data.chunks(MAX_CHUNK).enumerate().all(|(i, chunk)| {
            chunk == self.slice(seed, offset + (i * MAX_CHUNK) as u64, chunk.len())
        })
    }

    /// Checks `data`, just read on the connection with `seed` after `received` verified
    /// bytes and with `outstanding` more sent: no more bytes than were outstanding, and
    /// exactly those sent at that offset. The error says, for people, what differed.
    pub(crate) fn check_echo(
        &self,
        seed: usize,
        received: u64,
        outstanding: u64,
        data: &[u8],
    ) -> Result<(), String> {
        let n = data.len() as u64;
        if n > outstanding {
            return Err(format!(
                "{n} bytes came back where {outstanding} were outstanding"
            ));
        }
        if !self.matches(seed, received, data) {
            return Err(format!(
                "echoed bytes at offset {received}..{} differ from those sent",
                received + n
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slices_agree_across_the_wrap() {
        let p = Pattern::new();
        let seed = Pattern::seed(7);
        let whole: Vec<u8> = (0..3 * PERIOD as u64)
            .step_by(1000)
            .flat_map(|o| p.slice(seed, o, 1000).to_vec())
            .collect();
        // The same bytes read in odd-sized pieces.
        let mut off = 0u64;
        for len in [1usize, 999, 4096, 65_536, 17].iter().cycle() {
            if off as usize + len > whole.len() {
                break;
            }
            assert!(p.matches(seed, off, &whole[off as usize..off as usize + len]));
            off += *len as u64;
        }
    }

    #[test]
    fn every_table_index_agrees_with_the_period() {
        let p = Pattern::new();
        for (i, b) in p.table.iter().enumerate() {
            assert_eq!(*b, p.table[i % PERIOD], "index {i}");
        }
        // The same stream bytes through the longest slices, from every phase of the table.
        let seed = Pattern::seed(3);
        for offset in [0u64, 1, 15, 16, 65_520, 65_521, 100_000] {
            let long = p.slice(seed, offset, MAX_CHUNK);
            for (j, b) in long.iter().enumerate() {
                assert_eq!(*b, p.slice(seed, offset + j as u64, 1)[0]);
            }
        }
    }

    #[test]
    fn detects_shifts_and_other_connections() {
        let p = Pattern::new();
        let a = Pattern::seed(1);
        let b = Pattern::seed(2);
        let sent = p.slice(a, 100, 64).to_vec();
        assert!(p.matches(a, 100, &sent));
        assert!(!p.matches(a, 101, &sent), "a dropped byte must be caught");
        assert!(
            !p.matches(b, 100, &sent),
            "another connection's bytes must be caught"
        );
        let mut flipped = sent.clone();
        flipped[10] ^= 1;
        assert!(!p.matches(a, 100, &flipped));
    }

    #[test]
    fn bytes_are_spread() {
        let p = Pattern::new();
        let mut seen = [false; 256];
        for &b in p.slice(0, 0, 4096) {
            seen[b as usize] = true;
        }
        assert!(seen.iter().filter(|s| **s).count() > 250);
    }

    #[test]
    fn echo_checks_catch_extra_and_wrong_bytes() {
        let p = Pattern::new();
        let seed = Pattern::seed(7);
        let sent = p.slice(seed, 100, 10).to_vec();
        assert_eq!(p.check_echo(seed, 100, 10, &sent), Ok(()));
        assert_eq!(p.check_echo(seed, 100, 50, &sent[..4]), Ok(()));
        let extra = p.check_echo(seed, 100, 9, &sent).unwrap_err();
        assert_eq!(extra, "10 bytes came back where 9 were outstanding");
        let mut wrong = sent.clone();
        wrong[3] ^= 1;
        let differ = p.check_echo(seed, 100, 10, &wrong).unwrap_err();
        assert_eq!(
            differ,
            "echoed bytes at offset 100..110 differ from those sent"
        );
        // The right bytes at the wrong offset are wrong too.
        assert!(p.check_echo(seed, 101, 10, &sent).is_err());
    }
}
