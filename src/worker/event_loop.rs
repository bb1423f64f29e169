//! `Worker`: one thread's event loop. It owns a `mio::Poll`, a slab of connections, and a
//! scratch read buffer; it shares nothing with other workers on the hot path.
//!
//! Commands (new connections, stop) arrive through a crossbeam channel; the sender pushes
//! first, then wakes the poller through the worker's `mio::Waker` (push-then-wake, so a
//! command is never missed).

use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, TryRecvError};
use mio::net::TcpStream;
use mio::{Events, Poll, Token, Waker};
use slab::Slab;
use tracing::{debug, info, warn};

use super::connection::Connection;
use super::echo::{Closed, EchoOptions, Moved, Progress};
use crate::live::LiveSettings;
use crate::stats::{self, Stats, WorkerStats};

/// Token of the worker's waker; connection tokens are slab keys, always below it.
pub const WAKER: Token = Token(usize::MAX);

/// A message from the acceptor to a worker.
#[derive(Debug)]
pub enum Command {
    /// Serve this freshly accepted connection.
    NewConn(TcpStream),
    /// Stop: drain open connections within the shutdown timeout, then exit.
    Stop,
}

/// Settings a worker needs.
#[derive(Debug, Clone)]
pub struct WorkerSettings {
    /// Index of this worker (for logs, and its block in `stats`).
    pub id: usize,
    /// Echo tunables, fixed for the worker's lifetime; `limit` is also the scratch buffer's
    /// size.
    pub echo: EchoOptions,
    /// Idle timeout, shutdown timeout and `TCP_NODELAY`, re-read every round so a reload
    /// applies to open connections.
    pub live: Arc<LiveSettings>,
    /// Counters; this worker writes only block `id`.
    pub stats: Arc<Stats>,
}

/// Why a worker closed a connection that [`Progress::Done`] did not close.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CloseReason {
    Finished(Closed),
    IdleTimeout,
    ShutdownTimeout,
}

impl From<CloseReason> for stats::CloseReason {
    fn from(reason: CloseReason) -> Self {
        match reason {
            CloseReason::Finished(closed) => closed.into(),
            CloseReason::IdleTimeout => stats::CloseReason::IdleTimeout,
            CloseReason::ShutdownTimeout => stats::CloseReason::ShutdownTimeout,
        }
    }
}

/// Events fetched per `poll` call.
const EVENTS_CAPACITY: usize = 1024;

/// One worker thread's state.
#[derive(Debug)]
pub struct Worker {
    /// Fixed settings.
    settings: WorkerSettings,
    /// This worker's poller; connections and the waker are registered here.
    poll: Poll,
    /// Commands from the acceptor.
    commands: Receiver<Command>,
    /// Open connections; the slab key is the mio token.
    conns: Slab<Connection>,
    /// Read buffer shared by all this worker's connections (one at a time).
    scratch: Box<[u8]>,
    /// Connections open across all workers; decremented here when one closes.
    active: Arc<AtomicUsize>,
    /// Connections that spent their read budget and must be driven again without an event.
    yielded: Vec<Token>,
    /// When the loop started; the worker clock counts milliseconds from here.
    epoch: Instant,
    /// Worker clock at the next idle sweep.
    next_sweep_ms: u64,
    /// Set when `Stop` arrives: the drain must end by this worker-clock time.
    drain_deadline_ms: Option<u64>,
}

impl Worker {
    /// Creates a worker's poller and waker. The waker is returned for the acceptor.
    pub fn new(
        settings: WorkerSettings,
        commands: Receiver<Command>,
        active: Arc<AtomicUsize>,
    ) -> io::Result<(Worker, Arc<Waker>)> {
        let poll = Poll::new()?;
        let waker = Arc::new(Waker::new(poll.registry(), WAKER)?);
        let scratch = vec![0u8; settings.echo.limit].into_boxed_slice();
        let worker = Worker {
            settings,
            poll,
            commands,
            conns: Slab::new(),
            scratch,
            active,
            yielded: Vec::new(),
            epoch: Instant::now(),
            next_sweep_ms: 0,
            drain_deadline_ms: None,
        };
        Ok((worker, waker))
    }

    /// Milliseconds between idle sweeps: fine enough for short timeouts, cheap for long ones.
    fn sweep_interval_ms(&self) -> Option<u64> {
        let idle = self.settings.live.idle_timeout()?;
        Some((idle.as_millis() as u64 / 8).clamp(5, 1000))
    }

    fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    /// Runs the event loop until a `Stop` command has been received and every connection
    /// has finished (or the drain deadline passed), or the command channel disconnects.
    pub fn run(mut self) -> io::Result<()> {
        let mut events = Events::with_capacity(EVENTS_CAPACITY);
        let mut now_ms = self.now_ms();
        self.next_sweep_ms = now_ms + self.sweep_interval_ms().unwrap_or(0);
        loop {
            let timeout = self.poll_timeout(now_ms);
            if let Err(e) = self.poll.poll(&mut events, timeout) {
                // A signal interrupted the wait: nothing happened, wait again.
                if e.kind() != io::ErrorKind::Interrupted {
                    return Err(e);
                }
            }
            now_ms = self.now_ms();
            let mut disconnected = false;
            for event in events.iter() {
                match event.token() {
                    WAKER => disconnected |= self.take_commands(now_ms),
                    token => {
                        let fin = event.is_read_closed() || event.is_error();
                        self.ready(token, now_ms, fin)
                    }
                }
            }
            // Connections that yielded last round get another turn now, after everyone who
            // had an event, so one busy peer cannot starve the rest.
            for token in std::mem::take(&mut self.yielded) {
                self.ready(token, now_ms, false);
            }
            if let Some(interval) = self.sweep_interval_ms() {
                if now_ms >= self.next_sweep_ms {
                    self.sweep_idle(now_ms);
                    self.next_sweep_ms = now_ms + interval;
                }
            }
            if let Some(deadline) = self.drain_deadline_ms {
                if self.conns.is_empty() {
                    break;
                }
                if now_ms >= deadline {
                    let left = self.conns.len();
                    info!(
                        worker = self.settings.id,
                        connections = left,
                        "shutdown timeout: closing remaining connections"
                    );
                    self.close_all(CloseReason::ShutdownTimeout);
                    break;
                }
            } else if disconnected {
                // The acceptor is gone without saying Stop (it failed): drain as if stopped.
                self.begin_drain(now_ms);
            }
        }
        debug!(worker = self.settings.id, "worker stopped");
        Ok(())
    }

    /// How long the next `poll` may sleep: not at all if connections yielded, otherwise until
    /// the next idle sweep or the drain deadline, whichever comes first.
    fn poll_timeout(&self, now_ms: u64) -> Option<Duration> {
        if !self.yielded.is_empty() {
            return Some(Duration::ZERO);
        }
        let mut wake_at = None::<u64>;
        if self.sweep_interval_ms().is_some() && !self.conns.is_empty() {
            wake_at = Some(self.next_sweep_ms);
        }
        if let Some(deadline) = self.drain_deadline_ms {
            wake_at = Some(wake_at.map_or(deadline, |w| w.min(deadline)));
        }
        // +1 ms: poll's millisecond timeout truncates, and waking a hair early would only
        // cost another round.
        wake_at.map(|at| Duration::from_millis(at.saturating_sub(now_ms) + 1))
    }

    /// Takes every queued command. Returns whether the channel is disconnected.
    fn take_commands(&mut self, now_ms: u64) -> bool {
        loop {
            match self.commands.try_recv() {
                Ok(Command::NewConn(stream)) => self.add(stream, now_ms),
                Ok(Command::Stop) => self.begin_drain(now_ms),
                Err(TryRecvError::Empty) => return false,
                Err(TryRecvError::Disconnected) => return true,
            }
        }
    }

    fn begin_drain(&mut self, now_ms: u64) {
        if self.drain_deadline_ms.is_none() {
            let timeout = self.settings.live.shutdown_timeout().as_millis() as u64;
            self.drain_deadline_ms = Some(now_ms + timeout);
            debug!(
                worker = self.settings.id,
                connections = self.conns.len(),
                "draining"
            );
        }
    }

    /// This worker's counters.
    fn stats(&self) -> &WorkerStats {
        self.settings.stats.worker(self.settings.id)
    }

    fn add(&mut self, stream: TcpStream, now_ms: u64) {
        self.stats().opened();
        crate::listener::configure_accepted(&stream, &self.settings.live);
        let entry = self.conns.vacant_entry();
        let token = Token(entry.key());
        match Connection::register(stream, self.poll.registry(), token, now_ms) {
            Ok(conn) => {
                entry.insert(conn);
            }
            Err(e) => {
                warn!(worker = self.settings.id, error = %e, "cannot register connection; closing it");
                self.stats().closed(stats::CloseReason::Error);
                self.active.fetch_sub(1, Ordering::Relaxed);
            }
        }
    }

    /// Drives the connection behind `token`. Tolerates stale tokens: an event may arrive for a
    /// connection closed earlier in the same batch, or a yielded slot may have been reused
    /// (driving a connection without readiness costs one `WouldBlock`, nothing more).
    fn ready(&mut self, token: Token, now_ms: u64, fin_event: bool) {
        let Some(conn) = self.conns.get_mut(token.0) else {
            return;
        };
        conn.last_active_ms = now_ms;
        let mut moved = Moved::default();
        let progress = conn.drive(
            &mut self.scratch,
            &self.settings.echo,
            fin_event,
            &mut moved,
        );
        let stats = self.settings.stats.worker(self.settings.id);
        stats.moved(moved.read, moved.written);
        match progress {
            Progress::Blocked(wants) => {
                if !wants.read && !conn.echo.is_peer_closed() && conn.is_reading() {
                    // The peer sends faster than it reads: its buffer is full, stop reading.
                    stats.backpressure_pauses.fetch_add(1, Ordering::Relaxed);
                }
                if let Err(e) = conn.set_interest(self.poll.registry(), token, wants) {
                    debug!(worker = self.settings.id, error = %e, "reregister failed; closing");
                    self.close(token, CloseReason::Finished(Closed::Error(e.kind())));
                }
            }
            Progress::Yielded => {
                let wants = conn.echo.wants(&self.settings.echo);
                match conn.set_interest(self.poll.registry(), token, wants) {
                    Ok(()) => self.yielded.push(token),
                    Err(e) => self.close(token, CloseReason::Finished(Closed::Error(e.kind()))),
                }
            }
            Progress::Done(closed) => self.close(token, CloseReason::Finished(closed)),
        }
    }

    fn close(&mut self, token: Token, reason: CloseReason) {
        if let Some(conn) = self.conns.try_remove(token.0) {
            // Dropping the stream closes the fd, which also removes it from the epoll set (we
            // never dup it), so no deregister syscall is needed.
            debug!(
                worker = self.settings.id,
                token = token.0,
                ?reason,
                pending = conn.echo.pending(),
                "connection closed"
            );
            // Counted before the FIN goes out, so a peer that sees the close and then scrapes
            // the metrics finds it counted.
            self.stats().closed(reason.into());
            drop(conn);
            self.active.fetch_sub(1, Ordering::Relaxed);
        }
    }

    fn close_all(&mut self, reason: CloseReason) {
        let tokens: Vec<usize> = self.conns.iter().map(|(key, _)| key).collect();
        for key in tokens {
            self.close(Token(key), reason);
        }
    }

    fn sweep_idle(&mut self, now_ms: u64) {
        let Some(idle) = self.settings.live.idle_timeout() else {
            return;
        };
        let idle_ms = idle.as_millis() as u64;
        let expired: Vec<usize> = self
            .conns
            .iter()
            .filter(|(_, c)| now_ms.saturating_sub(c.last_active_ms) >= idle_ms)
            .map(|(key, _)| key)
            .collect();
        for key in expired {
            self.close(Token(key), CloseReason::IdleTimeout);
        }
    }
}
