//! What counts: the measured `Window`, and `ThreadStats`, one thread's tallies of messages,
//! bytes, latencies and failures, merged into the run's report at the end.

use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

use crate::report::ErrorCounts;

/// Latency histogram range: 1 ns to 60 s, 3 significant digits.
const HIST_MAX_NS: u64 = 60_000_000_000;

/// When completions count.
#[derive(Debug, Clone, Copy)]
pub(super) struct Window {
    /// Completions before this are warm-up.
    pub(super) from: Instant,
    /// Completions from here on are not counted, and no new message is started;
    /// `None`: no end (idle).
    pub(super) until: Option<Instant>,
}

impl Window {
    /// Whether a completion at `t` counts.
    pub(super) fn contains(&self, t: Instant) -> bool {
        t >= self.from && self.until.is_none_or(|u| t < u)
    }

    /// Whether the window has ended by `t` (never, for idle).
    pub(super) fn is_over(&self, t: Instant) -> bool {
        self.until.is_some_and(|u| t >= u)
    }
}

/// One thread's tallies, merged at the end.
#[derive(Debug)]
pub(super) struct ThreadStats {
    /// Latencies (ns) of messages completed in the window.
    pub(super) hist: Histogram<u64>,
    /// Messages completed in the window.
    pub(super) messages: u64,
    /// Echoed bytes verified in the window.
    pub(super) bytes: u64,
    /// Connections established.
    pub(super) opened: u64,
    /// Failures.
    pub(super) errors: ErrorCounts,
}

impl ThreadStats {
    pub(super) fn new() -> ThreadStats {
        ThreadStats {
            hist: Histogram::new_with_bounds(1, HIST_MAX_NS, 3)
                .expect("constant histogram bounds are valid"),
            messages: 0,
            bytes: 0,
            opened: 0,
            errors: ErrorCounts::default(),
        }
    }

    pub(super) fn merge(&mut self, other: &ThreadStats) {
        // Same bounds on both sides, so adding cannot fail.
        let _ = self.hist.add(&other.hist);
        self.messages += other.messages;
        self.bytes += other.bytes;
        self.opened += other.opened;
        self.errors.merge(&other.errors);
    }

    /// Counts a message completed in the window after `latency`.
    pub(super) fn record(&mut self, latency: Duration) {
        self.messages += 1;
        let ns = latency.as_nanos().min(u128::from(HIST_MAX_NS));
        self.hist.saturating_record(ns.max(1) as u64);
    }
}
