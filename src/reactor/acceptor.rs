//! `Acceptor`: owns the listening socket, accepts until `WouldBlock`, enforces
//! `max_connections`, backs off on fd exhaustion, and hands connections to the dispatcher.

use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use mio::net::TcpListener;
use mio::{Events, Interest, Poll, Token, Waker};
use tracing::{debug, error, warn};

use super::dispatch::Dispatcher;
use crate::listener::EXHAUSTED_BACKOFF;
use crate::live::LiveSettings;
use crate::ratelimit::RateLimit;
use crate::shutdown::ShutdownHandle;
use crate::stats::Stats;
use crate::sys::socket;

/// Token of the listening socket.
pub const LISTENER: Token = Token(0);
/// Token of the acceptor's waker (shutdown requests).
pub const WAKER: Token = Token(1);

/// Connections accepted before the pending wake-ups are flushed to the workers, so a long
/// burst does not keep the first connections waiting.
const FLUSH_EVERY: usize = 64;

/// The accept loop.
#[derive(Debug)]
pub struct Acceptor {
    /// The acceptor's poller (listener + waker).
    poll: Poll,
    /// The listening socket; dropped (closed) the moment shutdown starts.
    listener: TcpListener,
    /// Round-robin hand-off to the workers.
    dispatcher: Dispatcher,
    /// Connections open across all workers.
    active: Arc<AtomicUsize>,
    /// `max_connections`, re-read at every accept so a reload applies at once.
    live: Arc<LiveSettings>,
    /// Counters; the acceptor writes only its own block.
    stats: Arc<Stats>,
    /// Shutdown trigger.
    shutdown: ShutdownHandle,
    /// Rate limit for "over max_connections" warnings.
    over_limit_log: RateLimit,
    /// Rate limit for accept error logs.
    error_log: RateLimit,
}

impl Acceptor {
    /// Registers `listener` and a shutdown waker with a new poller.
    pub fn new(
        mut listener: TcpListener,
        dispatcher: Dispatcher,
        active: Arc<AtomicUsize>,
        live: Arc<LiveSettings>,
        stats: Arc<Stats>,
        shutdown: ShutdownHandle,
    ) -> io::Result<Acceptor> {
        let poll = Poll::new()?;
        poll.registry()
            .register(&mut listener, LISTENER, Interest::READABLE)?;
        let waker = Waker::new(poll.registry(), WAKER)?;
        shutdown.on_shutdown(move || {
            if let Err(e) = waker.wake() {
                error!(error = %e, "cannot wake the acceptor for shutdown");
            }
        });
        Ok(Acceptor {
            poll,
            listener,
            dispatcher,
            active,
            live,
            stats,
            shutdown,
            over_limit_log: RateLimit::new(Duration::from_secs(1)),
            error_log: RateLimit::new(Duration::from_secs(1)),
        })
    }

    /// Accepts until shutdown is requested, then closes the listener and tells the workers
    /// to drain. Returns the dispatcher's workers' fate to the caller (the pool joins them).
    pub fn run(mut self) -> io::Result<()> {
        let mut events = Events::with_capacity(64);
        // While set, accepting is paused until this instant (descriptor exhaustion).
        let mut paused_until: Option<Instant> = None;
        let result = loop {
            let timeout = paused_until.map(|t| t.saturating_duration_since(Instant::now()));
            if let Err(e) = self.poll.poll(&mut events, timeout) {
                if e.kind() != io::ErrorKind::Interrupted {
                    break Err(e);
                }
            }
            if self.shutdown.is_requested() {
                break Ok(());
            }
            if paused_until.is_some_and(|until| Instant::now() < until) {
                // New connections wait in the backlog; the listener is edge-triggered, so
                // these events do not repeat while we are paused.
                continue;
            }
            // Accept whether or not the event was for the listener: after a pause no new
            // edge may come for connections already in the backlog.
            paused_until = self.accept_all();
        };
        // Connections whose handshake completed before the request sit in the accept queue;
        // closing the listener would reset them, so take them in (once) and serve them.
        if result.is_ok() {
            self.accept_all();
        }
        // Release the port at once: new connection attempts are refused from here on.
        drop(self.listener);
        self.dispatcher.stop_all();
        result
    }

    /// Accepts until `WouldBlock`. Returns when to resume if accepting must pause.
    fn accept_all(&mut self) -> Option<Instant> {
        let mut since_flush = 0;
        let pause = loop {
            match self.listener.accept() {
                Ok((stream, peer)) => {
                    let counters = self.stats.acceptor();
                    counters.accepted.fetch_add(1, Ordering::Relaxed);
                    let max_connections = self.live.max_connections();
                    if self.active.fetch_add(1, Ordering::Relaxed) >= max_connections {
                        self.active.fetch_sub(1, Ordering::Relaxed);
                        counters.rejected_limit.fetch_add(1, Ordering::Relaxed);
                        drop(stream);
                        if let Some(suppressed) = self.over_limit_log.check(Instant::now()) {
                            warn!(%peer, max_connections, suppressed, "connection limit reached; closing new connection");
                        }
                        continue;
                    }
                    if self.dispatcher.dispatch(stream).is_err() {
                        self.active.fetch_sub(1, Ordering::Relaxed);
                        error!("a worker has exited; refusing connection");
                    }
                    since_flush += 1;
                    if since_flush == FLUSH_EVERY {
                        self.flush();
                        since_flush = 0;
                    }
                }
                Err(e) => match e.kind() {
                    io::ErrorKind::WouldBlock => break None,
                    // The peer gave up before we got to it, or a signal interrupted us.
                    io::ErrorKind::Interrupted | io::ErrorKind::ConnectionAborted => continue,
                    _ => {
                        self.stats
                            .acceptor()
                            .accept_errors
                            .fetch_add(1, Ordering::Relaxed);
                        let now = Instant::now();
                        let exhausted = socket::is_resource_exhaustion(&e);
                        if let Some(suppressed) = self.error_log.check(now) {
                            if exhausted {
                                warn!(error = %e, suppressed, backoff_ms = EXHAUSTED_BACKOFF.as_millis() as u64, "out of resources; pausing accept");
                            } else {
                                error!(error = %e, suppressed, "accept failed; pausing accept");
                            }
                        }
                        break Some(now + EXHAUSTED_BACKOFF);
                    }
                },
            }
        };
        self.flush();
        pause
    }

    fn flush(&mut self) {
        if let Err(e) = self.dispatcher.flush() {
            debug!(error = %e, "waking a worker failed");
        }
    }
}
