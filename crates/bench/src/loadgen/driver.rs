//! `Driver`: one load-generator thread. It owns a `mio::Poll` and a share of the
//! connections, opens them (at most `CONNECTS_IN_FLIGHT` connects at a time), pumps them on
//! readiness, reopens failed ones after a back-off (timed scenarios), sweeps for connect and
//! echo timeouts, drains after the window, and follows the coordinator's idle phases.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::io;
use std::net::Ipv4Addr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use mio::{Events, Interest, Poll, Token, Waker};
use slab::Slab;

use super::connection::{
    Conn, Outcome, Pump, Stage, connect, connect_status, describe_connect_error,
};
use super::shared::{PHASE_ECHO, PHASE_STOP, Shared};
use super::tally::{ThreadStats, Window};
use crate::pattern::{MAX_CHUNK, Pattern};
use crate::report::ErrorKind;
use crate::scenario::Scenario;
use crate::spec::LoadSpec;

/// Token of each thread's waker (phase changes); connection tokens are slab keys.
const WAKER: Token = Token(usize::MAX);
/// Connection attempts in flight per thread, so a burst does not overflow the server's
/// SYN and accept queues (which would cost seconds of SYN retransmits).
const CONNECTS_IN_FLIGHT: usize = 128;
/// How often connection and echo timeouts are checked.
const SWEEP_EVERY: Duration = Duration::from_millis(100);
/// First and longest wait before reopening a failed connection.
const BACKOFF_MIN: Duration = Duration::from_millis(10);
const BACKOFF_MAX: Duration = Duration::from_secs(1);
/// Longest the drain after the window may take, whatever `--timeout` says.
const DRAIN_MAX: Duration = Duration::from_secs(5);

/// One load-generator thread.
pub(super) struct Driver {
    spec: LoadSpec,
    /// `spec.effective_depth()`.
    depth: u64,
    pattern: Arc<Pattern>,
    shared: Arc<Shared>,
    poll: Poll,
    conns: Slab<Conn>,
    /// Read buffer shared by this thread's connections.
    scratch: Box<[u8]>,
    /// Connections not yet opened (initial ones, and reopened ones whose back-off expired).
    to_open: usize,
    /// Connects in progress.
    connecting: usize,
    /// Failed connections waiting to be reopened, by when.
    backoff: BinaryHeap<Reverse<Instant>>,
    /// Failures since the last success, for the back-off length.
    failures_in_a_row: u32,
    /// Next connection id (pattern seed source); ids step by the thread count.
    next_id: u64,
    id_step: u64,
    window: Window,
    /// Idle: the echo phase has begun.
    echo_phase: bool,
    /// Messages completed but not yet published to `shared.completed`.
    unpublished: u64,
    stats: ThreadStats,
}

impl std::fmt::Debug for Driver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Driver")
            .field("connections", &self.conns.len())
            .field("to_open", &self.to_open)
            .finish_non_exhaustive()
    }
}

impl Driver {
    /// A thread's driver for `slots` connections whose ids start at `first_id` and step by
    /// `id_step`, and the waker the coordinator announces phase changes through.
    pub(super) fn new(
        spec: LoadSpec,
        pattern: Arc<Pattern>,
        shared: Arc<Shared>,
        slots: usize,
        (first_id, id_step): (u64, u64),
        window: Window,
    ) -> io::Result<(Driver, Waker)> {
        let poll = Poll::new()?;
        let waker = Waker::new(poll.registry(), WAKER)?;
        let driver = Driver {
            depth: spec.effective_depth() as u64,
            spec,
            pattern,
            shared,
            poll,
            conns: Slab::with_capacity(slots),
            scratch: vec![0u8; MAX_CHUNK].into_boxed_slice(),
            to_open: slots,
            connecting: 0,
            backoff: BinaryHeap::new(),
            failures_in_a_row: 0,
            next_id: first_id,
            id_step,
            window,
            echo_phase: false,
            unpublished: 0,
            stats: ThreadStats::new(),
        };
        Ok((driver, waker))
    }

    /// Runs the thread's event loop until its work is done; returns its tallies.
    pub(super) fn run(mut self) -> ThreadStats {
        let mut events = Events::with_capacity(1024);
        let mut next_sweep = Instant::now() + SWEEP_EVERY;
        let timed = self.spec.scenario.is_timed();
        let drain_deadline = self
            .window
            .until
            .map(|u| u + self.spec.timeout.min(DRAIN_MAX));
        loop {
            let now = Instant::now();
            if timed && self.window.is_over(now) {
                self.begin_drain();
            }
            self.reopen_due(now);
            self.open_some(now);
            if self.is_done(now) {
                break;
            }
            if drain_deadline.is_some_and(|d| now >= d) {
                self.abandon_drain();
                break;
            }
            let timeout = self.poll_timeout(now, next_sweep, drain_deadline);
            if let Err(e) = self.poll.poll(&mut events, timeout) {
                if e.kind() != io::ErrorKind::Interrupted {
                    self.stats
                        .errors
                        .count(ErrorKind::Other, || format!("poll failed: {e}"));
                    break;
                }
            }
            for event in events.iter() {
                match event.token() {
                    WAKER => self.phase_changed(),
                    Token(key) => {
                        if event.is_writable() {
                            if let Some(c) = self.conns.get_mut(key) {
                                c.write_blocked = false;
                            }
                        }
                        let failed_connect = event.is_error() || event.is_write_closed();
                        self.drive(key, failed_connect);
                    }
                }
            }
            let now = Instant::now();
            if now >= next_sweep {
                self.sweep(now);
                next_sweep = now + SWEEP_EVERY;
            }
            self.publish();
        }
        self.publish();
        self.stats
    }

    fn publish(&mut self) {
        if self.unpublished > 0 {
            self.shared
                .completed
                .fetch_add(std::mem::take(&mut self.unpublished), Ordering::Relaxed);
        }
    }

    /// Whether this thread has nothing left to do.
    fn is_done(&self, now: Instant) -> bool {
        let idle_work_left = self.to_open > 0 || !self.backoff.is_empty();
        if self.spec.scenario.is_timed() {
            self.window.is_over(now) && self.conns.is_empty()
        } else {
            self.shared.phase.load(Ordering::Acquire) == PHASE_STOP
                || (self.echo_phase && self.conns.is_empty() && !idle_work_left)
        }
    }

    fn poll_timeout(
        &self,
        now: Instant,
        next_sweep: Instant,
        drain_deadline: Option<Instant>,
    ) -> Option<Duration> {
        let mut wake = None::<Instant>;
        let mut at = |t: Instant| wake = Some(wake.map_or(t, |w: Instant| w.min(t)));
        // Sweeps matter only while something can time out: connects, and echoes (always
        // awaited in timed scenarios; in idle, only after the hold).
        let awaiting_echoes =
            !self.conns.is_empty() && (self.spec.scenario.is_timed() || self.echo_phase);
        if self.connecting > 0 || awaiting_echoes {
            at(next_sweep);
        }
        if let Some(Reverse(t)) = self.backoff.peek() {
            at(*t);
        }
        if self.spec.scenario.is_timed() {
            match self.window.until {
                Some(u) if now < u => at(u),
                _ => {}
            }
            if let Some(d) = drain_deadline {
                at(d);
            }
        }
        // Round up: a poll that wakes a hair early only costs one more round.
        wake.map(|w| w.saturating_duration_since(now) + Duration::from_millis(1))
    }

    /// Opens connections while there are slots to fill and room for more connects.
    fn open_some(&mut self, now: Instant) {
        let may_open = if self.spec.scenario.is_timed() {
            !self.window.is_over(now)
        } else {
            !self.echo_phase
        };
        while may_open && self.to_open > 0 && self.connecting < CONNECTS_IN_FLIGHT {
            self.to_open -= 1;
            self.open_one(now);
        }
    }

    fn open_one(&mut self, now: Instant) {
        let id = self.next_id;
        self.next_id += self.id_step;
        let source = (self.spec.source_addrs > 1).then(|| {
            Ipv4Addr::new(
                127,
                0,
                0,
                1 + (id % u64::from(self.spec.source_addrs)) as u8,
            )
        });
        let mut stream = match connect(self.spec.target, source, self.spec.nodelay) {
            Ok(s) => s,
            Err(e) => {
                self.connect_failed(now, &e);
                return;
            }
        };
        let entry = self.conns.vacant_entry();
        let token = Token(entry.key());
        if let Err(e) = self.poll.registry().register(
            &mut stream,
            token,
            Interest::READABLE | Interest::WRITABLE,
        ) {
            self.stats.errors.count(ErrorKind::Other, || {
                format!("cannot register a socket: {e}")
            });
            self.after_failure(now);
            return;
        }
        entry.insert(Conn::connecting(
            stream,
            Pattern::seed(id),
            now,
            self.depth as usize,
        ));
        self.connecting += 1;
    }

    fn connect_failed(&mut self, now: Instant, e: &io::Error) {
        self.stats
            .errors
            .count(ErrorKind::Connect, || describe_connect_error(e));
        self.after_failure(now);
    }

    /// Schedules the reopening of a failed connection (timed scenarios), or settles it (idle).
    fn after_failure(&mut self, now: Instant) {
        if self.spec.scenario.is_timed() {
            let backoff = BACKOFF_MIN
                .saturating_mul(1 << self.failures_in_a_row.min(10))
                .min(BACKOFF_MAX);
            self.failures_in_a_row += 1;
            if !self.window.is_over(now + backoff) {
                self.backoff.push(Reverse(now + backoff));
            }
        } else if !self.echo_phase {
            self.shared.settled.fetch_add(1, Ordering::Release);
        }
    }

    fn reopen_due(&mut self, now: Instant) {
        while let Some(Reverse(t)) = self.backoff.peek() {
            if *t > now {
                break;
            }
            self.backoff.pop();
            self.to_open += 1;
        }
    }

    /// Drives connection `key` after an event.
    fn drive(&mut self, key: usize, error_event: bool) {
        let Some(conn) = self.conns.get_mut(key) else {
            // A stale event for a connection closed earlier in this batch.
            return;
        };
        let now = Instant::now();
        if conn.stage == Stage::Connecting {
            match connect_status(&conn.stream) {
                Ok(true) => self.connected(key, now),
                Ok(false) if !error_event => return,
                Ok(false) => {
                    let e = io::Error::new(io::ErrorKind::ConnectionRefused, "connect failed");
                    self.close_failed_connect(key, now, &e);
                    return;
                }
                Err(e) => {
                    self.close_failed_connect(key, now, &e);
                    return;
                }
            }
        }
        let outcome = self.pump(key, now);
        self.settle(key, now, outcome);
    }

    fn close_failed_connect(&mut self, key: usize, now: Instant, e: &io::Error) {
        self.conns.remove(key);
        self.connecting -= 1;
        self.connect_failed(now, e);
    }

    fn connected(&mut self, key: usize, now: Instant) {
        self.connecting -= 1;
        self.stats.opened += 1;
        let idle = !self.spec.scenario.is_timed();
        let conn = &mut self.conns[key];
        conn.last_progress = now;
        conn.write_blocked = false;
        if idle && !self.echo_phase {
            conn.stage = Stage::Holding;
            self.shared.established.fetch_add(1, Ordering::Relaxed);
            self.shared.settled.fetch_add(1, Ordering::Release);
        } else {
            conn.stage = Stage::Running;
            conn.send_limit = self.depth * self.spec.size as u64;
        }
    }

    /// Applies the outcome of driving connection `key`.
    fn settle(&mut self, key: usize, now: Instant, outcome: Outcome) {
        match outcome {
            Outcome::Open => {}
            Outcome::Finished => {
                self.conns.remove(key);
                self.failures_in_a_row = 0;
                // Connrate: the next client starts at once, while the window lasts.
                if self.spec.scenario == Scenario::Connrate && !self.window.is_over(now) {
                    self.to_open += 1;
                    self.open_some(now);
                }
            }
            Outcome::Failed(kind, what) => {
                if let Some(conn) = self.conns.try_remove(key) {
                    if conn.stage == Stage::Connecting {
                        self.connecting -= 1;
                    }
                }
                self.stats.errors.count(kind, || what);
                if self.spec.scenario.is_timed() && !self.window.is_over(now) {
                    self.after_failure(now);
                }
            }
        }
    }

    /// Pumps connection `key` (see [`Conn::pump`]) and publishes what completed.
    fn pump(&mut self, key: usize, now: Instant) -> Outcome {
        let mut pump = Pump {
            pattern: &self.pattern,
            scratch: &mut self.scratch,
            window: self.window,
            scenario: self.spec.scenario,
            size: self.spec.size as u64,
            depth: self.depth,
            stats: &mut self.stats,
            completed: 0,
        };
        let outcome = self.conns[key].pump(now, &mut pump);
        let completed = pump.completed;
        self.unpublished += completed;
        if completed > 0 {
            self.failures_in_a_row = 0;
        }
        outcome
    }

    /// The window is over: stop sending and reopen nothing; connections with nothing in
    /// flight (or still connecting) close now, the rest once their echoes are back.
    /// Called on every round of the drain; cheap once the stragglers are few.
    fn begin_drain(&mut self) {
        self.to_open = 0;
        self.backoff.clear();
        let done: Vec<usize> = self
            .conns
            .iter()
            .filter(|(_, c)| c.stage == Stage::Connecting || c.outstanding() == 0)
            .map(|(k, _)| k)
            .collect();
        for key in done {
            if self.conns.remove(key).stage == Stage::Connecting {
                self.connecting -= 1;
            }
        }
    }

    /// The drain took too long: whatever is still outstanding counts as timed out.
    fn abandon_drain(&mut self) {
        let timeout = self.spec.timeout;
        for conn in self.conns.drain() {
            if conn.outstanding() > 0 {
                self.stats.errors.count(ErrorKind::Timeout, || {
                    format!(
                        "{} echo bytes still outstanding {:.1} s after the window ended",
                        conn.outstanding(),
                        timeout.min(DRAIN_MAX).as_secs_f64()
                    )
                });
            }
        }
    }

    /// Closes connections whose connect or awaited echo has taken longer than the timeout.
    fn sweep(&mut self, now: Instant) {
        let timeout = self.spec.timeout;
        let expired: Vec<(usize, bool)> = self
            .conns
            .iter()
            .filter_map(|(k, c)| match c.stage {
                Stage::Connecting if now - c.started >= timeout => Some((k, true)),
                Stage::Running if c.outstanding() > 0 && now - c.last_progress >= timeout => {
                    Some((k, false))
                }
                _ => None,
            })
            .collect();
        for (key, connecting) in expired {
            let what = if connecting {
                format!("connect timed out after {:.1} s", timeout.as_secs_f64())
            } else {
                let c = &self.conns[key];
                format!(
                    "no echo for {:.1} s with {} bytes outstanding",
                    timeout.as_secs_f64(),
                    c.outstanding()
                )
            };
            let kind = if connecting {
                ErrorKind::Connect
            } else {
                ErrorKind::Timeout
            };
            if connecting {
                self.conns.remove(key);
                self.connecting -= 1;
                self.stats.errors.count(kind, || what);
                self.after_failure(now);
            } else {
                self.settle(key, now, Outcome::Failed(kind, what));
            }
        }
    }

    /// Idle: the coordinator moved on to the echo phase (or asked everyone to stop).
    fn phase_changed(&mut self) {
        if self.shared.phase.load(Ordering::Acquire) != PHASE_ECHO || self.echo_phase {
            return;
        }
        self.echo_phase = true;
        // Connections that never opened are not retried in the idle scenario.
        self.to_open = 0;
        let now = Instant::now();
        let size = self.spec.size as u64;
        let holding: Vec<usize> = self
            .conns
            .iter()
            .filter(|(_, c)| c.stage == Stage::Holding)
            .map(|(k, _)| k)
            .collect();
        for key in holding {
            let conn = &mut self.conns[key];
            conn.stage = Stage::Running;
            conn.send_limit = size;
            conn.last_progress = now;
            let outcome = self.pump(key, now);
            self.settle(key, now, outcome);
        }
    }
}
