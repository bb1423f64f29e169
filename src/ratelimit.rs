//! Rate limiting for log lines that a misbehaving peer or an exhausted system could otherwise
//! repeat thousands of times a second.

use std::time::{Duration, Instant};

/// Allows one event per `interval` and counts the ones it suppressed in between.
#[derive(Debug)]
pub(crate) struct RateLimit {
    /// Minimum time between two allowed events.
    interval: Duration,
    /// When the last event was allowed; `None` before the first.
    last: Option<Instant>,
    /// Events refused since the last allowed one.
    suppressed: u64,
}

impl RateLimit {
    /// A limiter allowing one event per `interval`.
    pub(crate) const fn new(interval: Duration) -> Self {
        RateLimit {
            interval,
            last: None,
            suppressed: 0,
        }
    }

    /// Returns `Some(suppressed)` when the event may be logged now (with the number of events
    /// dropped since the previous one), `None` when it must be dropped.
    pub(crate) fn check(&mut self, now: Instant) -> Option<u64> {
        match self.last {
            Some(last) if now.saturating_duration_since(last) < self.interval => {
                self.suppressed += 1;
                None
            }
            _ => {
                self.last = Some(now);
                Some(std::mem::take(&mut self.suppressed))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allows_one_per_interval_and_counts_the_rest() {
        let mut r = RateLimit::new(Duration::from_secs(1));
        let t = Instant::now();
        assert_eq!(r.check(t), Some(0));
        assert_eq!(r.check(t + Duration::from_millis(10)), None);
        assert_eq!(r.check(t + Duration::from_millis(20)), None);
        assert_eq!(r.check(t + Duration::from_millis(1001)), Some(2));
    }
}
