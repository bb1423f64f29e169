//! `Pending`: the bytes a connection has read but not yet written back.
//!
//! It owns memory only while it holds bytes: a connection whose echo keeps up has an empty
//! `Pending` with no allocation, so an idle connection costs a few machine words.

/// Unsent bytes of one connection, bounded by the caller.
///
/// Bytes are appended at the back and consumed from the front; consumed space is reclaimed by
/// compacting on the next append, and the allocation is released as soon as it drains.
#[derive(Debug, Default)]
pub(crate) struct Pending {
    /// Storage; `buf[start..]` are the unsent bytes. Empty (capacity 0) whenever drained.
    buf: Vec<u8>,
    /// Index of the first unsent byte in `buf`.
    start: usize,
}

impl Pending {
    /// An empty buffer with no allocation.
    pub(crate) const fn new() -> Self {
        Pending {
            buf: Vec::new(),
            start: 0,
        }
    }

    /// Number of unsent bytes.
    pub(crate) fn len(&self) -> usize {
        self.buf.len() - self.start
    }

    /// Whether there is nothing left to send.
    pub(crate) fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The unsent bytes, oldest first.
    pub(crate) fn as_slice(&self) -> &[u8] {
        &self.buf[self.start..]
    }

    /// Bytes of heap memory this buffer holds right now.
    #[cfg(test)]
    pub(crate) fn capacity(&self) -> usize {
        self.buf.capacity()
    }

    /// Appends `data`; the allocation grows at most to `limit` bytes, which the caller
    /// guarantees `len() + data.len()` does not exceed.
    pub(crate) fn push(&mut self, data: &[u8], limit: usize) {
        debug_assert!(self.len() + data.len() <= limit);
        if self.start > 0 {
            self.buf.drain(..self.start);
            self.start = 0;
        }
        let needed = self.buf.len() + data.len();
        if needed > self.buf.capacity() {
            // Grow geometrically for amortised appends, but never past the connection's bound.
            let target = needed.max(self.buf.capacity() * 2).min(limit.max(needed));
            self.buf.reserve_exact(target - self.buf.len());
        }
        self.buf.extend_from_slice(data);
    }

    /// Marks the first `n` unsent bytes as sent; frees the allocation once everything is sent.
    pub(crate) fn consume(&mut self, n: usize) {
        debug_assert!(n <= self.len());
        self.start += n;
        if self.start >= self.buf.len() {
            self.buf = Vec::new();
            self.start = 0;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drained_buffer_holds_no_memory() {
        let mut p = Pending::new();
        assert_eq!(p.capacity(), 0);
        p.push(b"hello", 64);
        p.consume(2);
        assert_eq!(p.as_slice(), b"llo");
        p.push(b" world", 64);
        assert_eq!(p.as_slice(), b"llo world");
        p.consume(9);
        assert!(p.is_empty());
        assert_eq!(p.capacity(), 0);
    }

    #[test]
    fn growth_stays_within_the_limit() {
        let mut p = Pending::new();
        for _ in 0..10 {
            p.push(&[7; 100], 1000);
            assert!(p.capacity() <= 1000, "capacity {}", p.capacity());
        }
        assert_eq!(p.len(), 1000);
    }
}
