//! `Worker`: one thread's event loop. It owns a `mio::Poll`, a slab of connections, and a
//! scratch read buffer; it shares nothing with other workers on the hot path.
//!
//! Commands (new connections, stop) arrive through a crossbeam channel; the sender pushes
//! first, then notifies the worker through its [`Wakeup`] (push-then-wake), which writes the
//! worker's `mio::Waker` only when the worker is asleep: an awake worker looks at its queue
//! every round anyway.
//!
//! In the dispatch modes without an acceptor thread (`reuseport`, `shared`) the worker also
//! watches a listener ([`Listening`]) and accepts for itself, under the shared admission
//! policy; `max_connections` stays global through the `active` count all workers share.

use std::io;
use std::os::fd::AsFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, TryRecvError};
use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token, Waker};
use slab::Slab;
use tracing::{debug, info, warn};

use super::connection::Connection;
use super::echo::EchoOptions;
use super::wakeup::Wakeup;
use crate::close::CloseReason;
use crate::live::LiveSettings;
use crate::models::Model;
use crate::policy::admission::{Accepted, Admission};
use crate::policy::connlog::ConnLog;
use crate::policy::housekeeping::{self, Drain, Housekeeping};
use crate::policy::interest::{self, Next, Trigger};
use crate::stats::{Stats, WorkerStats};
use crate::sys::epoll;
use crate::udp::UdpEcho;

/// Token of the worker's waker; connection tokens are slab keys, always below it.
pub(crate) const WAKER: Token = Token(usize::MAX);
/// Token of the worker's UDP echo socket, if it serves UDP.
pub(crate) const UDP: Token = Token(usize::MAX - 1);
/// Token of the listener a worker accepts on for itself (`reuseport`, `shared`).
pub(crate) const LISTENER: Token = Token(usize::MAX - 2);

/// A listener a worker accepts on for itself.
#[derive(Debug)]
pub enum Listening {
    /// This worker's own `SO_REUSEPORT` socket; the kernel spreads connections over the
    /// workers' sockets.
    Own(TcpListener),
    /// The one listener every worker watches, registered `EPOLLEXCLUSIVE` so that one
    /// connection wakes one worker.
    Shared(Arc<TcpListener>),
}

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

/// A worker's accept side, in the modes without an acceptor thread.
#[derive(Debug)]
struct Accepting {
    /// The listener; for a shared one, this worker's registration is removed before its
    /// reference is dropped (the socket stays open in the other workers).
    listener: Listening,
    /// `max_connections`, the back-off on exhaustion, the accept counters: the same policy
    /// as the acceptor thread's.
    admission: Admission,
    /// Accepting paused; accept again once the pause is over even without an event (the
    /// listener is edge-triggered: connections already waiting raise no new one).
    retry: bool,
}

impl Listening {
    fn socket(&self) -> &TcpListener {
        match self {
            Listening::Own(l) => l,
            Listening::Shared(l) => l,
        }
    }
}

/// One worker thread's state.
#[derive(Debug)]
pub struct Worker {
    /// Fixed settings.
    settings: WorkerSettings,
    /// This worker's poller; connections and the waker are registered here.
    poll: Poll,
    /// Commands from the acceptor (or, without one, the shutdown's `Stop`).
    commands: Receiver<Command>,
    /// The waker plus this worker's sleep state, shared with whoever feeds `commands`.
    wakeup: Arc<Wakeup>,
    /// Set when this worker accepts for itself; `None` once it stopped accepting.
    accepting: Option<Accepting>,
    /// In `least-connections` mode: this worker's open connections as the acceptor sees them
    /// (it adds on hand-off, this worker subtracts on close).
    load: Option<Arc<AtomicUsize>>,
    /// Open connections; the slab key is the mio token.
    conns: Slab<Connection>,
    /// Read buffer shared by all this worker's connections (one at a time).
    scratch: Box<[u8]>,
    /// Connections open across all workers; decremented here when one closes (and, when this
    /// worker accepts, incremented here too).
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

/// What a worker shares with the rest of the pool, beyond its settings.
#[derive(Debug)]
pub struct WorkerLinks {
    /// Its command queue.
    pub commands: Receiver<Command>,
    /// Connections open across all workers.
    pub active: Arc<AtomicUsize>,
    /// Its open-connection count for `least-connections`, if that is the mode.
    pub load: Option<Arc<AtomicUsize>>,
    /// A listener to accept on itself, if the mode has no acceptor thread.
    pub listening: Option<Listening>,
}

impl Worker {
    /// Creates a worker's poller and waker, and registers its listener if it has one. The
    /// [`Wakeup`] is returned for whoever feeds its queue.
    pub fn new(settings: WorkerSettings, links: WorkerLinks) -> io::Result<(Worker, Arc<Wakeup>)> {
        let WorkerLinks {
            commands,
            active,
            load,
            listening,
        } = links;
        let poll = Poll::new()?;
        let wakeup = Arc::new(Wakeup::new(Waker::new(poll.registry(), WAKER)?));
        let accepting = match listening {
            None => None,
            Some(mut listening) => {
                match &mut listening {
                    Listening::Own(l) => {
                        poll.registry().register(l, LISTENER, Interest::READABLE)?
                    }
                    Listening::Shared(l) => {
                        epoll::add_exclusive(&poll, l.as_fd(), LISTENER.0 as u64)?
                    }
                }
                Some(Accepting {
                    listener: listening,
                    admission: Admission::new(settings.live.clone(), settings.stats.clone()),
                    retry: false,
                })
            }
        };
        let scratch = vec![0u8; settings.echo.limit].into_boxed_slice();
        let worker = Worker {
            settings,
            poll,
            commands,
            wakeup: wakeup.clone(),
            accepting,
            load,
            conns: Slab::new(),
            scratch,
            active,
            yielded: Vec::new(),
            epoch: Instant::now(),
            housekeeping: Housekeeping::new(0, None),
            udp: None,
            udp_pending: false,
        };
        Ok((worker, wakeup))
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
            // Only a blocking poll needs a wake-up; after any poll the queue is looked at.
            // Something queued since the last look (its sender skipped the eventfd) is taken
            // now, which saves a round; if more came meanwhile, the poll does not block.
            let mut disconnected = false;
            let mut timeout = self.poll_timeout(now_ms);
            if timeout != Some(Duration::ZERO) && !self.wakeup.may_sleep() {
                disconnected |= self.take_commands(now_ms);
                timeout = self.poll_timeout(now_ms);
                if timeout != Some(Duration::ZERO) && !self.wakeup.may_sleep() {
                    timeout = Some(Duration::ZERO);
                }
            }
            let polled = self.poll.poll(&mut events, timeout);
            self.wakeup.woke();
            if let Err(e) = polled {
                // A signal interrupted the wait: nothing happened, wait again.
                if e.kind() != io::ErrorKind::Interrupted {
                    return Err(e);
                }
            }
            now_ms = self.now_ms();
            let mut listener_ready = false;
            for event in events.iter() {
                match event.token() {
                    // The queue is looked at below, every round.
                    WAKER => {}
                    LISTENER => listener_ready = true,
                    UDP => self.udp_pending = true,
                    token => {
                        let fin = event.is_read_closed() || event.is_error();
                        self.ready(token, now_ms, fin)
                    }
                }
            }
            disconnected |= self.take_commands(now_ms);
            let retry_due = self
                .accepting
                .as_mut()
                .is_some_and(|a| a.retry && !a.admission.is_paused(Instant::now()));
            if listener_ready || retry_due {
                self.accept_all(now_ms);
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

    /// How long the next `poll` may wait: the housekeeping's timeout (none at all while
    /// connections that yielded, or a UDP echo that spent its budget, are owed a round),
    /// shortened to the end of an accept pause.
    fn poll_timeout(&mut self, now_ms: u64) -> Option<Duration> {
        let timeout = self.housekeeping.poll_timeout(
            now_ms,
            self.settings.live.idle_timeout(),
            self.conns.len(),
            !self.yielded.is_empty() || self.udp_pending,
        );
        // While accepting is paused (descriptor exhaustion), wake when the pause ends.
        match self
            .accepting
            .as_mut()
            .filter(|a| a.retry)
            .and_then(|a| a.admission.resume_in(Instant::now()))
        {
            Some(resume) => Some(timeout.map_or(resume, |t| t.min(resume))),
            None => timeout,
        }
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
        self.stop_accepting(now_ms);
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

    /// Accepts until `WouldBlock`, or until accepting pauses (this worker's own listener, or
    /// its turn at the shared one).
    fn accept_all(&mut self, now_ms: u64) {
        loop {
            let Some(accepting) = self.accepting.as_mut() else {
                return;
            };
            if accepting.admission.is_paused(Instant::now()) {
                return;
            }
            // Other workers accept at the same time: take a slot before accepting, so the
            // open count can never pass `max_connections` (at the limit, a connection may be
            // refused while another worker holds a slot it then gives back).
            let open = self.active.fetch_add(1, Ordering::Relaxed);
            let listener = accepting.listener.socket();
            let accepted = accepting
                .admission
                .accept_with(open, || listener.accept().map(|(stream, _)| stream));
            match accepted {
                Accepted::Conn(stream) => self.add(stream, now_ms),
                Accepted::Empty => {
                    accepting.retry = false;
                    self.active.fetch_sub(1, Ordering::Relaxed);
                    return;
                }
                Accepted::Paused => {
                    accepting.retry = true;
                    self.active.fetch_sub(1, Ordering::Relaxed);
                    return;
                }
            }
        }
    }

    /// Stops accepting for good (shutdown): takes in the connections whose handshake
    /// completed before (closing a listener resets them), then closes this worker's listener,
    /// or its registration with the shared one.
    fn stop_accepting(&mut self, now_ms: u64) {
        if self.accepting.is_none() {
            return;
        }
        self.accept_all(now_ms);
        if let Some(accepting) = self.accepting.take() {
            if let Listening::Shared(l) = &accepting.listener {
                // The socket stays open in the other workers until they stop too; without
                // this, its wake-ups could still be routed to this epoll set.
                if let Err(e) = epoll::delete_from(&self.poll, l.as_fd()) {
                    debug!(worker = self.settings.id, error = %e, "removing the listener failed");
                }
            }
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
                self.released();
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
            // the metrics finds it counted: on the `Eof` path too, since the echo's FIN is
            // only noted (see `Connection::drive`) and sent by this drop, which closes the
            // socket after the peer's FIN was read, with nothing unread (a FIN, not a reset).
            self.stats().closed(reason);
            ConnLog::closed(conn.log.take(), reason);
            drop(conn);
            self.released();
        }
    }

    /// A connection of this worker is gone: its slot is free for the limit and for
    /// `least-connections`.
    fn released(&self) {
        self.active.fetch_sub(1, Ordering::Relaxed);
        if let Some(load) = &self.load {
            load.fetch_sub(1, Ordering::Relaxed);
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
