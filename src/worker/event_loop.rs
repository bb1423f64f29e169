//! `Worker`: one thread's event loop. It owns a `mio::Poll`, a slab of connections, and a
//! scratch read buffer; it shares nothing with other workers on the hot path.
//!
//! Commands (new connections, stop) arrive through a crossbeam channel; the sender pushes
//! first, then wakes the poller through the worker's `mio::Waker` (push-then-wake, so a
//! command is never missed).

use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use crossbeam_channel::{Receiver, TryRecvError};
use mio::net::TcpStream;
use mio::{Events, Poll, Token, Waker};
use slab::Slab;
use tracing::{debug, info, warn};

use super::connection::Connection;
use super::echo::EchoOptions;
use crate::close::CloseReason;
use crate::live::LiveSettings;
use crate::models::Model;
use crate::policy::connlog::ConnLog;
use crate::policy::housekeeping::{self, Drain, Housekeeping};
use crate::policy::interest::{self, Next, Trigger};
use crate::stats::{Stats, WorkerStats};
use crate::udp::UdpEcho;

/// Token of the worker's waker; connection tokens are slab keys, always below it.
pub(crate) const WAKER: Token = Token(usize::MAX);
/// Token of the worker's UDP echo socket, if it serves UDP.
pub(crate) const UDP: Token = Token(usize::MAX - 1);

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
    /// Idle-sweep schedule and drain deadline (set when `Stop` arrives), on the worker clock.
    housekeeping: Housekeeping,
    /// UDP echo on this worker's `SO_REUSEPORT` socket; dropped (closed) when the drain starts.
    udp: Option<UdpEcho>,
    /// The UDP echo spent its budget (or has an event): serve it again this round.
    udp_pending: bool,
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
            housekeeping: Housekeeping::new(0, None),
            udp: None,
            udp_pending: false,
        };
        Ok((worker, waker))
    }

    /// Also serves UDP echo: `udp`'s socket joins this worker's poller.
    pub(crate) fn serve_udp(&mut self, mut udp: UdpEcho) -> io::Result<()> {
        udp.register(self.poll.registry(), UDP)?;
        self.udp = Some(udp);
        Ok(())
    }

    fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    /// Runs the event loop until a `Stop` command has been received and every connection
    /// has finished (or the drain deadline passed), or the command channel disconnects.
    pub fn run(mut self) -> io::Result<()> {
        let mut events = Events::with_capacity(EVENTS_CAPACITY);
        let mut now_ms = self.now_ms();
        self.housekeeping = Housekeeping::new(now_ms, self.settings.live.idle_timeout());
        loop {
            // Connections that yielded, and a UDP echo that spent its budget, are owed a
            // round without waiting.
            let timeout = self.housekeeping.poll_timeout(
                now_ms,
                self.settings.live.idle_timeout(),
                self.conns.len(),
                !self.yielded.is_empty() || self.udp_pending,
            );
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
                    UDP => self.udp_pending = true,
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
            if self.udp_pending {
                self.udp_pending = self.udp.as_mut().is_some_and(UdpEcho::ready);
            }
            if self
                .housekeeping
                .sweep_due(now_ms, self.settings.live.idle_timeout())
            {
                self.sweep_idle(now_ms);
            }
            match self.housekeeping.drain(now_ms, self.conns.len()) {
                Drain::Finished => break,
                Drain::Expired => {
                    info!(
                        worker = self.settings.id,
                        connections = self.conns.len(),
                        "shutdown timeout: closing remaining connections"
                    );
                    self.close_all(CloseReason::ShutdownTimeout);
                    break;
                }
                Drain::Running => {
                    if disconnected {
                        // The acceptor is gone without saying Stop (it failed): drain as if
                        // stopped (a no-op once draining).
                        self.begin_drain(now_ms);
                    }
                }
            }
        }
        debug!(worker = self.settings.id, "worker stopped");
        Ok(())
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
        // Datagrams have nothing to drain: the UDP socket closes with the listener.
        self.udp = None;
        let timeout = self.settings.live.shutdown_timeout();
        if self.housekeeping.begin_drain(now_ms, timeout) {
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
        let live = &self.settings.live;
        crate::policy::socket_options::configure_accepted(&stream, live);
        let log = ConnLog::opened(live, Model::Reactor, self.settings.id, || {
            stream.peer_addr()
        });
        let entry = self.conns.vacant_entry();
        let token = Token(entry.key());
        match Connection::register(stream, self.poll.registry(), token, now_ms) {
            Ok(mut conn) => {
                conn.log = log;
                entry.insert(conn);
            }
            Err(e) => {
                warn!(worker = self.settings.id, error = %e, "cannot register connection; closing it");
                self.stats().closed(CloseReason::Error);
                ConnLog::closed(log, CloseReason::Error);
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
        let options = &self.settings.echo;
        let before = conn.echo.state(options);
        let driven = conn.drive(&mut self.scratch, options, fin_event);
        let after = conn.echo.state(options);
        if housekeeping::is_activity(driven.moved.read + driven.moved.written, before, after) {
            conn.last_active_ms = now_ms;
        }
        let stats = self.settings.stats.worker(self.settings.id);
        stats.moved(driven.moved.read, driven.moved.written);
        ConnLog::add(&mut conn.log, driven.moved);
        // mio's epoll is edge-triggered.
        match interest::next(driven.progress, before, after, Trigger::Edge) {
            Next::Close(reason) => self.close(token, reason),
            Next::Wait {
                interest,
                resume,
                backpressure_pause,
            } => {
                if backpressure_pause {
                    stats.backpressure_pauses.fetch_add(1, Ordering::Relaxed);
                }
                match conn.set_interest(self.poll.registry(), token, interest) {
                    Ok(()) if resume => self.yielded.push(token),
                    Ok(()) => {}
                    Err(e) => {
                        debug!(worker = self.settings.id, error = %e, "reregister failed; closing");
                        self.close(token, CloseReason::Error);
                    }
                }
            }
        }
    }

    fn close(&mut self, token: Token, reason: CloseReason) {
        if let Some(mut conn) = self.conns.try_remove(token.0) {
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
            self.stats().closed(reason);
            ConnLog::closed(conn.log.take(), reason);
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
        let idle = self.settings.live.idle_timeout();
        let expired: Vec<usize> = self
            .conns
            .iter()
            .filter(|(_, c)| housekeeping::is_idle(idle, c.last_active_ms, now_ms))
            .map(|(key, _)| key)
            .collect();
        for key in expired {
            self.close(Token(key), CloseReason::IdleTimeout);
        }
    }
}
