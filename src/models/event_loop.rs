//! `LoopCore`: the bookkeeping every single-threaded event loop (epoll, epoll-et, poll,
//! select) shares, so each model file shows only its poller: the loop clock, the idle sweep,
//! the shutdown wake-up (an eventfd the loop watches) and the drain deadline.
//!
//! Shutdown protocol of these loops: the [`ShutdownHandle`] callback writes the eventfd; the
//! loop sees [`LoopCore::should_stop_accepting`], closes its listener at once (the port is
//! released and new connects are refused), keeps serving open connections, and ends when the
//! last one closes or `shutdown_timeout` has passed ([`LoopCore::finish_round`]).

use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use slab::Slab;
use tracing::{error, info};

use super::Bound;
use super::Model;
use super::conn::{Conn, log_close};
use crate::close::CloseReason;
use crate::live::LiveSettings;
use crate::policy::admission::Admission;
use crate::policy::connlog::{ConnLog, Record};
use crate::policy::housekeeping::{self, Drain, Housekeeping};
use crate::policy::interest::{self, Next, Progress, State, Trigger};
use crate::shutdown::ShutdownHandle;
use crate::stats::{Stats, WorkerStats};
use crate::sys::eventfd::EventFd;
use crate::sys::socket::Stream;
use crate::worker::echo::FinOnClose;
use crate::worker::{EchoOptions, Moved, ReadUntil};

/// The open connections of a loop (a slab, or a vector for the array-indexed pollers), as
/// far as the end of a drain needs them.
pub(crate) trait OpenConns {
    /// How many are open.
    fn count(&self) -> usize;
    /// Takes every connection out (the loop is ending).
    fn take_all(&mut self) -> Vec<Conn>;
}

impl OpenConns for Slab<Conn> {
    fn count(&self) -> usize {
        self.len()
    }

    fn take_all(&mut self) -> Vec<Conn> {
        self.drain().collect()
    }
}

impl OpenConns for Vec<Conn> {
    fn count(&self) -> usize {
        self.len()
    }

    fn take_all(&mut self) -> Vec<Conn> {
        std::mem::take(self)
    }
}

/// Shared state of a single-threaded loop.
#[derive(Debug)]
pub(crate) struct LoopCore {
    /// The model, for logs.
    pub(crate) model: Model,
    /// Echo tunables; `limit` is `buffer_size`.
    pub(crate) echo: EchoOptions,
    /// How the model's poller reports readiness (for the interest rule).
    trigger: Trigger,
    /// The one read buffer all connections share, one at a time (`buffer_size` bytes).
    pub(crate) scratch: Box<[u8]>,
    /// Accept policy: connection limit and back-off.
    pub(crate) admission: Admission,
    /// Written by the shutdown callback; the loop watches it for readability.
    wake: Arc<EventFd>,
    /// The shutdown trigger.
    shutdown: ShutdownHandle,
    /// `idle_timeout`, `nodelay` and `shutdown_timeout`, re-read where they are used, so a
    /// reload applies at once (it also writes `wake`, so the wait is recomputed).
    live: Arc<LiveSettings>,
    /// Counters; a single-threaded loop writes block 0 only.
    stats: Arc<Stats>,
    /// The loop clock counts milliseconds from here.
    epoch: Instant,
    /// Idle-sweep schedule and drain deadline (set when the drain starts), on the loop clock.
    housekeeping: Housekeeping,
}

impl LoopCore {
    /// Creates the wake-up eventfd and registers it with the shutdown trigger and with the
    /// live settings (a reload).
    pub(crate) fn new(
        model: Model,
        bound: &Bound,
        trigger: Trigger,
        read_until: ReadUntil,
    ) -> io::Result<LoopCore> {
        let wake = Arc::new(EventFd::new()?);
        let w = wake.clone();
        let wake_up = move || {
            if let Err(e) = w.wake() {
                error!(error = %e, "cannot wake the event loop");
            }
        };
        bound.live.on_change(wake_up.clone());
        bound.shutdown.on_shutdown(wake_up);
        let echo = EchoOptions {
            read_until,
            ..EchoOptions::new(bound.settings.buffer_size)
        };
        let core = LoopCore {
            model,
            scratch: vec![0u8; echo.limit].into_boxed_slice(),
            echo,
            trigger,
            admission: Admission::new(bound.live.clone(), bound.stats.clone()),
            wake,
            shutdown: bound.shutdown.clone(),
            live: bound.live.clone(),
            stats: bound.stats.clone(),
            epoch: Instant::now(),
            housekeeping: Housekeeping::new(0, bound.live.idle_timeout()),
        };
        Ok(core)
    }

    /// Milliseconds since the loop started.
    pub(crate) fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    /// The wake-up descriptor to watch for readability.
    pub(crate) fn wake_fd(&self) -> RawFd {
        self.wake.as_raw_fd()
    }

    /// Resets the wake-up descriptor after it was reported readable.
    pub(crate) fn take_wake(&self) {
        // Reading a non-blocking eventfd cannot fail in a way that matters: at worst the
        // loop wakes once more.
        let _ = self.wake.drain();
    }

    /// True once, when shutdown has been requested and the drain has not started: the loop
    /// must now close its listener and call [`LoopCore::begin_drain`].
    pub(crate) fn should_stop_accepting(&self) -> bool {
        !self.housekeeping.is_draining() && self.shutdown.is_requested()
    }

    /// Starts the drain: open connections get `shutdown_timeout` to finish.
    pub(crate) fn begin_drain(&mut self, now_ms: u64, open: usize) {
        if self
            .housekeeping
            .begin_drain(now_ms, self.live.shutdown_timeout())
        {
            info!(model = %self.model, connections = open, "shutdown: listener closed, draining");
        }
    }

    fn counters(&self) -> &WorkerStats {
        self.stats.worker(0)
    }

    /// Configures and counts a freshly accepted socket, and opens its connection-log record
    /// (for [`Conn::new`]); every admitted connection is later passed to
    /// [`LoopCore::closed`] exactly once.
    pub(crate) fn admit(&self, stream: &Stream) -> Record {
        self.counters().opened();
        crate::policy::socket_options::configure_accepted(stream, &self.live);
        ConnLog::opened(&self.live, self.model, 0, || stream.peer_addr())
    }

    /// Logs and counts the close of an admitted connection.
    pub(crate) fn closed(&self, reason: CloseReason, conn: &mut Conn) {
        self.closed_holding(reason, conn.echo.pending(), conn.log.take());
    }

    /// [`LoopCore::closed`] for a loop that keeps the unsent bytes outside the [`Conn`] (the
    /// `uring` model): `pending` of them, and the connection's `log` record.
    pub(crate) fn closed_holding(&self, reason: CloseReason, pending: usize, log: Record) {
        self.counters().closed(reason);
        log_close(self.model, reason, pending);
        ConnLog::closed(log, reason);
    }

    /// Drives `conn`'s echo with the shared scratch buffer, counts what it moved and whether
    /// reading paused (backpressure), and returns what the loop must do next
    /// ([`interest::next`]).
    pub(crate) fn drive(&mut self, conn: &mut Conn, now_ms: u64) -> Next {
        self.drive_moved(conn, now_ms).0
    }

    /// [`LoopCore::drive`], also returning what this drive moved. The idle clock restarts
    /// only on traffic ([`housekeeping::is_activity`]), so a loop that drives connections
    /// without an event (a polling loop, a stale signal) does not keep idle ones alive.
    pub(crate) fn drive_moved(&mut self, conn: &mut Conn, now_ms: u64) -> (Next, Moved) {
        let before = conn.echo.state(&self.echo);
        let driven = conn.echo.drive(
            &mut FinOnClose(&mut conn.stream),
            &mut self.scratch,
            &self.echo,
        );
        let after = conn.echo.state(&self.echo);
        ConnLog::add(&mut conn.log, driven.moved);
        if housekeeping::is_activity(driven.moved.read + driven.moved.written, before, after) {
            conn.last_active_ms = now_ms;
        }
        let next = interest::next(driven.progress, before, after, self.trigger);
        self.count(driven.moved, next);
        (next, driven.moved)
    }

    /// Counts what a completion-driven loop (the `uring` model, which has no drive) moved,
    /// and whether its state change paused the receive, by the rule a drive goes through;
    /// adds what moved to `log` (the connection's [`Conn::log`]).
    pub(crate) fn completed(&self, moved: Moved, before: State, after: State, log: &mut Record) {
        let next = interest::next(Progress::Blocked(after.wants), before, after, self.trigger);
        self.count(moved, next);
        ConnLog::add(log, moved);
    }

    /// Counts the bytes moved and a backpressure pause.
    fn count(&self, moved: Moved, next: Next) {
        let counters = self.stats.worker(0);
        counters.moved(moved.read, moved.written);
        if let Next::Wait {
            backpressure_pause: true,
            ..
        } = next
        {
            counters.backpressure_pauses.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// How long the next wait may sleep with `open` connections: not at all when `busy`
    /// (connections yielded), otherwise until the next idle sweep, the drain deadline or the
    /// end of an accept pause, whichever is first; `None` (forever) if there is none.
    pub(crate) fn timeout(&mut self, now_ms: u64, open: usize, busy: bool) -> Option<Duration> {
        let mut timeout =
            self.housekeeping
                .poll_timeout(now_ms, self.live.idle_timeout(), open, busy);
        if let Some(pause) = self.admission.resume_in(Instant::now()) {
            timeout = Some(timeout.map_or(pause, |t| t.min(pause)));
        }
        timeout
    }

    /// Whether the idle sweep is due now; if so, schedules the next one.
    pub(crate) fn sweep_due(&mut self, now_ms: u64) -> bool {
        self.housekeeping
            .sweep_due(now_ms, self.live.idle_timeout())
    }

    /// Whether `conn` has been idle for `idle_timeout`.
    pub(crate) fn is_idle(&self, conn: &Conn, now_ms: u64) -> bool {
        housekeeping::is_idle(self.live.idle_timeout(), conn.last_active_ms, now_ms)
    }

    /// Closes every connection of `conns` idle for `idle_timeout` (for loops whose tokens are
    /// slab keys: removal moves no other connection).
    pub(crate) fn sweep_idle(&self, conns: &mut Slab<Conn>, now_ms: u64) {
        conns.retain(|_, c| {
            let idle = self.is_idle(c, now_ms);
            if idle {
                self.closed(CloseReason::IdleTimeout, c);
            }
            !idle
        });
    }

    /// The end of a round: whether the loop must now return, because it is draining and
    /// every connection has finished, or the drain deadline passed (the connections left are
    /// then closed here).
    pub(crate) fn finish_round(&self, now_ms: u64, conns: &mut impl OpenConns) -> bool {
        let open = conns.count();
        match self.housekeeping.drain(now_ms, open) {
            Drain::Running => false,
            Drain::Finished => true,
            Drain::Expired => {
                info!(model = %self.model, connections = open,
                    "shutdown timeout: closing remaining connections");
                for mut c in conns.take_all() {
                    self.closed(CloseReason::ShutdownTimeout, &mut c);
                }
                true
            }
        }
    }
}
