//! `Shared`: what the coordinator and the load-generator threads share.

use std::sync::atomic::{AtomicU8, AtomicU64, AtomicUsize};

/// Phases the coordinator announces to idle threads.
pub(super) const PHASE_HOLD: u8 = 0;
pub(super) const PHASE_ECHO: u8 = 1;
pub(super) const PHASE_STOP: u8 = 2;

/// State shared between the coordinator and the threads.
#[derive(Debug)]
pub(super) struct Shared {
    /// One of the `PHASE_*` constants (idle only; timed threads follow their clock).
    pub(super) phase: AtomicU8,
    /// Messages completed so far, warm-up included (for progress display).
    pub(super) completed: AtomicU64,
    /// Idle: connection attempts that have settled (opened or failed).
    pub(super) settled: AtomicUsize,
    /// Idle: connections open before the hold.
    pub(super) established: AtomicU64,
}

impl Shared {
    pub(super) fn new() -> Shared {
        Shared {
            phase: AtomicU8::new(PHASE_HOLD),
            completed: AtomicU64::new(0),
            settled: AtomicUsize::new(0),
            established: AtomicU64::new(0),
        }
    }
}
