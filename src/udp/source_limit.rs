//! `SourceLimiter`: at most `rate` datagrams per second echoed to one source address, so a
//! forged flood naming a victim's address reflects a bounded trickle at it.
//!
//! A token bucket per source IP address (the port is ignored: a forger picks it freely),
//! holding one second's worth of tokens, so a client may burst `rate` datagrams and then
//! send `rate` per second. Memory is bounded: at most [`MAX_SOURCES`] buckets; a full bucket
//! is indistinguishable from a new one, so buckets idle for a second are forgotten when room
//! is needed, and sources beyond the bound share one overflow bucket.
//!
//! Each worker has its own limiter. The kernel picks a worker by hashing the source address
//! and port, so one client socket meets exactly one limiter; a source spreading datagrams
//! over many ports may get up to `workers × rate` per second echoed.

use std::collections::HashMap;
use std::net::IpAddr;

/// Buckets kept per worker (about 100 KiB at most).
pub(crate) const MAX_SOURCES: usize = 4096;

/// Least time between two sweeps for room, so a table full of busy sources costs one scan
/// per interval, not one per datagram.
const SWEEP_INTERVAL_MS: u64 = 100;

/// Tokens are counted in thousandths: at `rate` per second a bucket gains `rate`
/// thousandths per millisecond, exactly, and one datagram costs `PER_DATAGRAM`.
const PER_DATAGRAM: u64 = 1000;

/// One source's tokens.
#[derive(Debug, Clone, Copy)]
struct Bucket {
    /// Thousandths of a datagram available at `at_ms`.
    tokens: u64,
    /// Limiter clock when `tokens` was computed.
    at_ms: u64,
}

impl Bucket {
    fn full(rate: u32, now_ms: u64) -> Self {
        Bucket {
            tokens: capacity(rate),
            at_ms: now_ms,
        }
    }

    /// Refills for the time since `at_ms` and takes one datagram's tokens if there are.
    fn take(&mut self, rate: u32, now_ms: u64) -> bool {
        let gained = now_ms
            .saturating_sub(self.at_ms)
            .saturating_mul(u64::from(rate));
        self.tokens = self.tokens.saturating_add(gained).min(capacity(rate));
        self.at_ms = now_ms.max(self.at_ms);
        if self.tokens >= PER_DATAGRAM {
            self.tokens -= PER_DATAGRAM;
            true
        } else {
            false
        }
    }

    /// Whether the bucket has refilled completely by `now_ms` (one second after its last
    /// datagram at most), so forgetting it changes nothing.
    fn is_full_by(&self, now_ms: u64) -> bool {
        now_ms.saturating_sub(self.at_ms) >= 1000
    }
}

/// One second's worth of tokens.
fn capacity(rate: u32) -> u64 {
    u64::from(rate) * PER_DATAGRAM
}

/// Per-source-address token buckets, bounded in number.
#[derive(Debug, Default)]
pub(crate) struct SourceLimiter {
    /// Buckets of recently seen sources; at most [`MAX_SOURCES`].
    buckets: HashMap<IpAddr, Bucket>,
    /// Shared by every source that found the table full.
    overflow: Option<Bucket>,
    /// Limiter clock of the last sweep for room.
    last_sweep_ms: Option<u64>,
}

impl SourceLimiter {
    /// An empty limiter.
    pub(crate) fn new() -> Self {
        SourceLimiter::default()
    }

    /// Whether a datagram from `source` may be echoed at `now_ms` (a monotonic millisecond
    /// clock) under `rate` datagrams per second per source; takes its token if so.
    pub(crate) fn allow(&mut self, source: IpAddr, rate: u32, now_ms: u64) -> bool {
        if let Some(bucket) = self.buckets.get_mut(&source) {
            return bucket.take(rate, now_ms);
        }
        if self.buckets.len() >= MAX_SOURCES {
            self.sweep(now_ms);
        }
        if self.buckets.len() < MAX_SOURCES {
            let mut bucket = Bucket::full(rate, now_ms);
            let allowed = bucket.take(rate, now_ms);
            self.buckets.insert(source, bucket);
            return allowed;
        }
        self.overflow
            .get_or_insert_with(|| Bucket::full(rate, now_ms))
            .take(rate, now_ms)
    }

    /// Forgets every bucket (the limit was turned off: nothing to remember).
    pub(crate) fn clear(&mut self) {
        if !self.buckets.is_empty() {
            self.buckets = HashMap::new();
        }
        self.overflow = None;
    }

    /// Sources with a bucket now.
    #[cfg(test)]
    pub(crate) fn tracked(&self) -> usize {
        self.buckets.len()
    }

    fn sweep(&mut self, now_ms: u64) {
        if self
            .last_sweep_ms
            .is_some_and(|last| now_ms.saturating_sub(last) < SWEEP_INTERVAL_MS)
        {
            return;
        }
        self.last_sweep_ms = Some(now_ms);
        self.buckets.retain(|_, b| !b.is_full_by(now_ms));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    fn ip(n: u32) -> IpAddr {
        IpAddr::V4(Ipv4Addr::from(n))
    }

    #[test]
    fn allows_a_second_of_burst_then_the_rate() {
        let mut l = SourceLimiter::new();
        let a = ip(1);
        let allowed = (0..20).filter(|_| l.allow(a, 5, 0)).count();
        assert_eq!(allowed, 5, "burst of one second's worth");
        assert!(!l.allow(a, 5, 199), "one token needs 200 ms at 5/s");
        assert!(l.allow(a, 5, 200));
        assert!(!l.allow(a, 5, 201));
        // Another source has its own bucket.
        assert!(l.allow(ip(2), 5, 201));
        // After a long pause the bucket is full again, not more than full.
        let allowed = (0..20).filter(|_| l.allow(a, 5, 100_000)).count();
        assert_eq!(allowed, 5);
    }

    #[test]
    fn a_lower_rate_after_reload_caps_the_bucket() {
        let mut l = SourceLimiter::new();
        assert!(l.allow(ip(1), 1000, 0));
        let allowed = (0..20).filter(|_| l.allow(ip(1), 2, 1)).count();
        assert_eq!(allowed, 2);
    }

    #[test]
    fn memory_is_bounded_and_idle_sources_make_room() {
        let mut l = SourceLimiter::new();
        for n in 0..MAX_SOURCES as u32 {
            assert!(l.allow(ip(n), 1, 0));
        }
        assert_eq!(l.tracked(), MAX_SOURCES);
        // The table is full of sources seen just now: newcomers share the overflow bucket,
        // which holds one datagram at 1/s.
        assert!(l.allow(ip(1 << 30), 1, 10));
        assert!(!l.allow(ip((1 << 30) + 1), 1, 10));
        assert_eq!(l.tracked(), MAX_SOURCES);
        // A second later every bucket is full again: a sweep forgets them.
        assert!(l.allow(ip(1 << 31), 1, 1010));
        assert_eq!(l.tracked(), 1);
        l.clear();
        assert_eq!(l.tracked(), 0);
    }
}
