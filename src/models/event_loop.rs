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
use super::accept::Gate;
use super::conn::{CloseReason, Conn, log_close};
use crate::config::Model;
use crate::live::LiveSettings;
use crate::shutdown::ShutdownHandle;
use crate::stats::{Stats, WorkerStats};
use crate::sys::eventfd::EventFd;
use crate::sys::socket::Stream;
use crate::worker::{EchoOptions, Moved, Progress, ReadUntil};

/// The open connections of a loop (a slab, or a vector for the array-indexed pollers), as
/// far as the end of a drain needs them.
pub trait OpenConns {
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
pub struct LoopCore {
    /// The model, for logs.
    pub model: Model,
    /// Echo tunables; `limit` is `buffer_size`.
    pub echo: EchoOptions,
    /// The one read buffer all connections share, one at a time (`buffer_size` bytes).
    pub scratch: Box<[u8]>,
    /// Accept policy: connection limit and back-off.
    pub gate: Gate,
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
    /// Loop clock at the next idle sweep.
    next_sweep_ms: u64,
    /// Set when the drain starts: it must end by this loop-clock time.
    drain_deadline_ms: Option<u64>,
}

impl LoopCore {
    /// Creates the wake-up eventfd and registers it with the shutdown trigger and with the
    /// live settings (a reload).
    pub fn new(model: Model, bound: &Bound, read_until: ReadUntil) -> io::Result<LoopCore> {
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
            ..EchoOptions::new(bound.config.buffer_size)
        };
        let mut core = LoopCore {
            model,
            scratch: vec![0u8; echo.limit].into_boxed_slice(),
            echo,
            gate: Gate::new(bound.live.clone(), bound.stats.clone()),
            wake,
            shutdown: bound.shutdown.clone(),
            live: bound.live.clone(),
            stats: bound.stats.clone(),
            epoch: Instant::now(),
            next_sweep_ms: 0,
            drain_deadline_ms: None,
        };
        core.next_sweep_ms = core.sweep_interval_ms().unwrap_or(0);
        Ok(core)
    }

    /// Milliseconds since the loop started.
    pub fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    /// The wake-up descriptor to watch for readability.
    pub fn wake_fd(&self) -> RawFd {
        self.wake.as_raw_fd()
    }

    /// Resets the wake-up descriptor after it was reported readable.
    pub fn take_wake(&self) {
        // Reading a non-blocking eventfd cannot fail in a way that matters: at worst the
        // loop wakes once more.
        let _ = self.wake.drain();
    }

    /// True once, when shutdown has been requested and the drain has not started: the loop
    /// must now close its listener and call [`LoopCore::begin_drain`].
    pub fn should_stop_accepting(&self) -> bool {
        self.drain_deadline_ms.is_none() && self.shutdown.is_requested()
    }

    /// Starts the drain: open connections get `shutdown_timeout` to finish.
    pub fn begin_drain(&mut self, now_ms: u64, open: usize) {
        if self.drain_deadline_ms.is_none() {
            let timeout = self.live.shutdown_timeout().as_millis() as u64;
            self.drain_deadline_ms = Some(now_ms + timeout);
            info!(model = %self.model, connections = open, "shutdown: listener closed, draining");
        }
    }

    fn counters(&self) -> &WorkerStats {
        self.stats.worker(0)
    }

    /// Configures and counts a freshly accepted socket; every admitted connection is later
    /// passed to [`LoopCore::closed`] exactly once.
    pub fn admit(&self, stream: &Stream) {
        self.counters().opened();
        crate::listener::configure_accepted(stream, &self.live);
    }

    /// Logs and counts the close of an admitted connection.
    pub fn closed(&self, reason: CloseReason, pending: usize) {
        self.counters().closed(reason);
        log_close(self.model, reason, pending);
    }

    /// Drives `conn`'s echo with the shared scratch buffer, and counts what it moved and
    /// whether it had to stop reading (backpressure).
    pub fn drive(&mut self, conn: &mut Conn, now_ms: u64) -> Progress {
        conn.last_active_ms = now_ms;
        let was_reading = conn.echo.wants(&self.echo).read;
        let mut moved = Moved::default();
        let progress =
            conn.echo
                .drive_counted(&mut conn.stream, &mut self.scratch, &self.echo, &mut moved);
        let counters = self.stats.worker(0);
        counters.moved(moved.read, moved.written);
        if let Progress::Blocked(wants) = progress {
            if was_reading && !wants.read && !conn.echo.is_peer_closed() {
                counters.backpressure_pauses.fetch_add(1, Ordering::Relaxed);
            }
        }
        progress
    }

    fn sweep_interval_ms(&self) -> Option<u64> {
        let idle = self.live.idle_timeout()?;
        Some((idle.as_millis() as u64 / 8).clamp(5, 1000))
    }

    /// How long the next wait may sleep with `open` connections: not at all when `busy`
    /// (connections yielded), otherwise until the next idle sweep, the drain deadline or the
    /// end of an accept pause, whichever is first; `None` (forever) if there is none.
    pub fn timeout(&mut self, now_ms: u64, open: usize, busy: bool) -> Option<Duration> {
        if busy {
            return Some(Duration::ZERO);
        }
        let mut wake_at = None::<u64>;
        if self.live.idle_timeout().is_some() && open > 0 {
            wake_at = Some(self.next_sweep_ms);
        }
        if let Some(deadline) = self.drain_deadline_ms {
            wake_at = Some(wake_at.map_or(deadline, |w| w.min(deadline)));
        }
        // +1 ms: millisecond timeouts truncate, and waking a hair early costs another round.
        let mut timeout = wake_at.map(|at| Duration::from_millis(at.saturating_sub(now_ms) + 1));
        if let Some(pause) = self.gate.resume_in(Instant::now()) {
            timeout = Some(timeout.map_or(pause, |t| t.min(pause)));
        }
        timeout
    }

    /// Whether the idle sweep is due now; if so, schedules the next one.
    pub fn sweep_due(&mut self, now_ms: u64) -> bool {
        match self.sweep_interval_ms() {
            Some(interval) if now_ms >= self.next_sweep_ms => {
                self.next_sweep_ms = now_ms + interval;
                true
            }
            _ => false,
        }
    }

    /// Whether `conn` has been idle for `idle_timeout`.
    pub fn is_idle(&self, conn: &Conn, now_ms: u64) -> bool {
        self.live.idle_timeout().is_some_and(|idle| {
            now_ms.saturating_sub(conn.last_active_ms) >= idle.as_millis() as u64
        })
    }

    /// Closes every connection of `conns` idle for `idle_timeout` (for loops whose tokens are
    /// slab keys: removal moves no other connection).
    pub fn sweep_idle(&self, conns: &mut Slab<Conn>, now_ms: u64) {
        conns.retain(|_, c| {
            let idle = self.is_idle(c, now_ms);
            if idle {
                self.closed(CloseReason::IdleTimeout, c.echo.pending());
            }
            !idle
        });
    }

    /// The end of a round: whether the loop must now return, because it is draining and
    /// every connection has finished, or the drain deadline passed (the connections left are
    /// then closed here).
    pub fn finish_round(&self, now_ms: u64, conns: &mut impl OpenConns) -> bool {
        let open = conns.count();
        match self.drain_deadline_ms {
            None => false,
            Some(_) if open == 0 => true,
            Some(deadline) if now_ms >= deadline => {
                info!(model = %self.model, connections = open,
                    "shutdown timeout: closing remaining connections");
                for c in conns.take_all() {
                    self.closed(CloseReason::ShutdownTimeout, c.echo.pending());
                }
                true
            }
            Some(_) => false,
        }
    }
}
