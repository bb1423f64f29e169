//! `Housekeeping`: the timers every event loop keeps besides its poller (the reactor's
//! workers and the single-threaded models alike): when to sweep idle connections, how long a
//! wait may sleep, and when a drain must end.
//!
//! Pure: no clock, no I/O. Time is the loop's own millisecond clock, passed in; settings a
//! reload may change (`idle_timeout`, `shutdown_timeout`) are passed in at each call, so a
//! reload applies on the next round.

use std::time::Duration;

use super::interest::State;

/// Shortest pause between two idle sweeps: a tiny `idle_timeout` must not make the loop spin.
const MIN_SWEEP_MS: u64 = 5;
/// Longest pause between two idle sweeps: a long `idle_timeout` is still enforced to within a
/// second.
const MAX_SWEEP_MS: u64 = 1000;

/// Milliseconds between idle sweeps for `idle_timeout`: an eighth of it (a connection closes
/// at most an eighth late), clamped to 5..=1000 ms.
pub(crate) fn sweep_interval_ms(idle_timeout: Duration) -> u64 {
    (idle_timeout.as_millis() as u64 / 8).clamp(MIN_SWEEP_MS, MAX_SWEEP_MS)
}

/// Whether a connection last active at `last_active_ms` has been idle for `idle_timeout`
/// (never, when there is no idle timeout).
pub(crate) fn is_idle(idle_timeout: Option<Duration>, last_active_ms: u64, now_ms: u64) -> bool {
    idle_timeout
        .is_some_and(|idle| now_ms.saturating_sub(last_active_ms) >= idle.as_millis() as u64)
}

/// Whether a drive restarts the connection's idle clock: only traffic does, bytes moved
/// either way or the peer's FIN read (`before` and `after` are the connection's state around
/// the drive). A drive with nothing behind it (a polling loop's round, a stale signal, a
/// spurious wake-up) must not keep an idle connection alive.
pub(crate) fn is_activity(bytes_moved: u64, before: State, after: State) -> bool {
    bytes_moved > 0 || before.peer_closed != after.peer_closed
}

/// Where a drain stands at the end of a round ([`Housekeeping::drain`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Drain {
    /// Not draining, or draining with connections open and time left: keep looping.
    Running,
    /// Draining and every connection has finished: the loop returns.
    Finished,
    /// The drain deadline passed: the loop closes what is left (`ShutdownTimeout`) and
    /// returns.
    Expired,
}

/// The idle-sweep schedule and the drain deadline of one event loop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Housekeeping {
    /// Loop clock at the next idle sweep (meaningful only while there is an idle timeout).
    next_sweep_ms: u64,
    /// Set when the drain starts: it must end by this loop-clock time.
    drain_deadline_ms: Option<u64>,
}

impl Housekeeping {
    /// A loop starting at `now_ms`: the first sweep is one interval away.
    pub(crate) fn new(now_ms: u64, idle_timeout: Option<Duration>) -> Housekeeping {
        Housekeeping {
            next_sweep_ms: now_ms + idle_timeout.map_or(0, sweep_interval_ms),
            drain_deadline_ms: None,
        }
    }

    /// Whether the idle sweep is due at `now_ms`; if so, schedules the next one.
    pub(crate) fn sweep_due(&mut self, now_ms: u64, idle_timeout: Option<Duration>) -> bool {
        match idle_timeout {
            Some(idle) if now_ms >= self.next_sweep_ms => {
                self.next_sweep_ms = now_ms + sweep_interval_ms(idle);
                true
            }
            _ => false,
        }
    }

    /// Starts the drain at `now_ms`: open connections get `shutdown_timeout` to finish.
    /// Returns whether it started now (false if it had already started).
    pub(crate) fn begin_drain(&mut self, now_ms: u64, shutdown_timeout: Duration) -> bool {
        if self.drain_deadline_ms.is_some() {
            return false;
        }
        self.drain_deadline_ms = Some(now_ms + shutdown_timeout.as_millis() as u64);
        true
    }

    /// Whether the drain has started.
    pub(crate) fn is_draining(&self) -> bool {
        self.drain_deadline_ms.is_some()
    }

    /// The end-of-round verdict with `open` connections left.
    pub(crate) fn drain(&self, now_ms: u64, open: usize) -> Drain {
        match self.drain_deadline_ms {
            None => Drain::Running,
            Some(_) if open == 0 => Drain::Finished,
            Some(deadline) if now_ms >= deadline => Drain::Expired,
            Some(_) => Drain::Running,
        }
    }

    /// How long the next wait may sleep with `open` connections: not at all when `busy`
    /// (connections owed a drive without an event), otherwise until the next idle sweep or
    /// the drain deadline, whichever is first; `None` (no timeout) if there is neither.
    pub(crate) fn poll_timeout(
        &self,
        now_ms: u64,
        idle_timeout: Option<Duration>,
        open: usize,
        busy: bool,
    ) -> Option<Duration> {
        if busy {
            return Some(Duration::ZERO);
        }
        let sweep = (idle_timeout.is_some() && open > 0).then_some(self.next_sweep_ms);
        let wake_at = match (sweep, self.drain_deadline_ms) {
            (Some(s), Some(d)) => Some(s.min(d)),
            (s, d) => s.or(d),
        };
        // +1 ms: pollers' millisecond timeouts truncate, and waking a hair early would only
        // cost another round.
        wake_at.map(|at| Duration::from_millis(at.saturating_sub(now_ms) + 1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn only_traffic_restarts_the_idle_clock() {
        use crate::policy::Wants;
        let open = State {
            wants: Wants::READ,
            peer_closed: false,
        };
        let closed = State {
            peer_closed: true,
            ..open
        };
        assert!(!is_activity(0, open, open), "a drive that found nothing");
        assert!(is_activity(1, open, open));
        assert!(is_activity(0, open, closed), "the peer's FIN");
        assert!(!is_activity(0, closed, closed));
    }

    #[test]
    fn sweeps_every_eighth_of_the_idle_timeout_within_bounds() {
        assert_eq!(sweep_interval_ms(800 * MS), 100);
        assert_eq!(sweep_interval_ms(MS), 5, "a tiny timeout must not spin");
        assert_eq!(sweep_interval_ms(Duration::from_secs(3600)), 1000);
    }

    #[test]
    fn a_sweep_is_due_once_per_interval() {
        let idle = Some(800 * MS);
        let mut h = Housekeeping::new(1000, idle);
        assert!(!h.sweep_due(1099, idle));
        assert!(h.sweep_due(1100, idle));
        assert!(
            !h.sweep_due(1150, idle),
            "the next one is scheduled from now"
        );
        assert!(h.sweep_due(1200, idle));
        assert!(!h.sweep_due(5000, None), "no idle timeout, no sweep");
    }

    #[test]
    fn idle_means_no_event_for_the_whole_timeout() {
        assert!(!is_idle(Some(100 * MS), 50, 149));
        assert!(is_idle(Some(100 * MS), 50, 150));
        assert!(!is_idle(None, 0, u64::MAX));
        assert!(
            !is_idle(Some(100 * MS), 500, 20),
            "a clock read before the event"
        );
    }

    #[test]
    fn the_wait_ends_a_millisecond_after_the_first_timer() {
        let idle = Some(800 * MS);
        let mut h = Housekeeping::new(0, idle);
        assert_eq!(h.poll_timeout(40, idle, 0, false), None, "nothing to sweep");
        assert_eq!(h.poll_timeout(40, idle, 3, false), Some(61 * MS));
        assert_eq!(h.poll_timeout(40, idle, 3, true), Some(Duration::ZERO));
        assert_eq!(h.poll_timeout(40, None, 3, false), None);
        assert_eq!(h.poll_timeout(250, idle, 3, false), Some(MS), "overdue");
        assert!(h.begin_drain(40, 30 * MS));
        assert_eq!(h.poll_timeout(40, idle, 3, false), Some(31 * MS));
        assert_eq!(h.poll_timeout(40, None, 0, false), Some(31 * MS));
    }

    #[test]
    fn a_drain_ends_when_empty_or_at_its_deadline() {
        let mut h = Housekeeping::new(0, None);
        assert_eq!(h.drain(10, 0), Drain::Running, "not draining");
        assert!(!h.is_draining());
        assert!(h.begin_drain(10, 100 * MS));
        assert!(!h.begin_drain(50, 100 * MS), "the first deadline stands");
        assert!(h.is_draining());
        assert_eq!(h.drain(109, 2), Drain::Running);
        assert_eq!(h.drain(109, 0), Drain::Finished);
        assert_eq!(h.drain(110, 2), Drain::Expired);
    }
}
