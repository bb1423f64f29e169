//! `Gate`: accepting under limits, shared by every raw-syscall model.
//!
//! Connections over `max_connections` are accepted and closed at once (so the backlog does
//! not fill with connections nobody will serve). When `accept` fails for lack of descriptors
//! or memory, accepting pauses for [`EXHAUSTED_BACKOFF`]: retrying at once would fail again
//! and spin. The caller stops watching the listener until [`Gate::resume_in`] reaches zero.
//!
//! [`AcceptWait`] is that wait for the models that accept on one thread and serve elsewhere
//! (`thread`, `fork`, `blocking`).

use std::io;
use std::os::fd::RawFd;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use tracing::{error, warn};

use crate::listener::EXHAUSTED_BACKOFF;
use crate::live::LiveSettings;
use crate::ratelimit::RateLimit;
use crate::stats::Stats;
use crate::sys::poll::{self, PollFd};
use crate::sys::socket::{self, Listener, Mode, Stream};

/// Result of one [`Gate::accept`] call.
#[derive(Debug)]
pub enum Accepted {
    /// A connection to serve.
    Conn(Stream),
    /// The backlog is empty.
    Empty,
    /// Accepting failed and is paused; see [`Gate::resume_in`].
    Paused,
}

/// Accept policy: connection limit, back-off, rate-limited logs, accept counters.
#[derive(Debug)]
pub struct Gate {
    /// `max_connections`, re-read at every accept so a reload applies at once.
    live: Arc<LiveSettings>,
    /// The acceptor counters (accepted, closed for the limit, accept errors).
    stats: Arc<Stats>,
    /// While set and in the future, accepting is paused.
    resume_at: Option<Instant>,
    /// Rate limit for "connection limit reached" warnings.
    over_limit_log: RateLimit,
    /// Rate limit for accept failures.
    error_log: RateLimit,
}

impl Gate {
    /// A gate admitting at most `live.max_connections()` open connections.
    pub fn new(live: Arc<LiveSettings>, stats: Arc<Stats>) -> Gate {
        Gate {
            live,
            stats,
            resume_at: None,
            over_limit_log: RateLimit::new(Duration::from_secs(1)),
            error_log: RateLimit::new(Duration::from_secs(1)),
        }
    }

    /// How long accepting stays paused: `None` when it is not paused.
    pub fn resume_in(&mut self, now: Instant) -> Option<Duration> {
        match self.resume_at {
            Some(at) if at > now => Some(at - now),
            _ => {
                self.resume_at = None;
                None
            }
        }
    }

    /// Whether accepting is paused right now.
    pub fn is_paused(&mut self, now: Instant) -> bool {
        self.resume_in(now).is_some()
    }

    /// Pauses accepting for [`EXHAUSTED_BACKOFF`] (also used when a model cannot start a
    /// thread or process for a connection).
    pub fn pause(&mut self, now: Instant) {
        self.resume_at = Some(now + EXHAUSTED_BACKOFF);
    }

    /// Accepts the next connection that may be served while `open` are open; connections
    /// over the limit are closed here. Retries `EINTR` and `ECONNABORTED`.
    pub fn accept(&mut self, listener: &Listener, mode: Mode, open: usize) -> Accepted {
        loop {
            if let Some(accepted) = self.admit(listener.accept(mode), open) {
                return accepted;
            }
        }
    }

    /// Applies the policy to the result of one `accept` (made here by [`Gate::accept`], or
    /// completed by io_uring) while `open` connections are open: a connection over the limit
    /// is closed, a failure pauses accepting. `None`: nothing to serve from this one (closed
    /// for the limit, or a transient failure such as `EINTR` or `ECONNABORTED`); accept again.
    pub fn admit(&mut self, result: io::Result<Stream>, open: usize) -> Option<Accepted> {
        let counters = self.stats.acceptor();
        if result.is_ok() {
            counters.accepted.fetch_add(1, Ordering::Relaxed);
        }
        match result {
            Ok(stream) if open >= self.live.max_connections() => {
                counters.rejected_limit.fetch_add(1, Ordering::Relaxed);
                if let Some(suppressed) = self.over_limit_log.check(Instant::now()) {
                    let peer = stream
                        .peer_addr()
                        .map(|a| a.to_string())
                        .unwrap_or_default();
                    let max_connections = self.live.max_connections();
                    warn!(%peer, max_connections, suppressed,
                        "connection limit reached; closing new connection");
                }
                drop(stream);
                None
            }
            Ok(stream) => Some(Accepted::Conn(stream)),
            Err(e) => match e.kind() {
                io::ErrorKind::WouldBlock => Some(Accepted::Empty),
                // EINVAL: the socket no longer listens (stopped for shutdown by another
                // thread); there is nothing to accept, and nothing to report.
                _ if socket::is_not_listening(&e) => Some(Accepted::Empty),
                // A signal, or the peer gave up before we got to it.
                io::ErrorKind::Interrupted | io::ErrorKind::ConnectionAborted => None,
                _ => {
                    counters.accept_errors.fetch_add(1, Ordering::Relaxed);
                    let now = Instant::now();
                    if let Some(suppressed) = self.error_log.check(now) {
                        let backoff_ms = EXHAUSTED_BACKOFF.as_millis() as u64;
                        if socket::is_resource_exhaustion(&e) {
                            warn!(error = %e, suppressed, backoff_ms, "out of resources; pausing accept");
                        } else {
                            error!(error = %e, suppressed, backoff_ms, "accept failed; pausing accept");
                        }
                    }
                    self.resume_at = Some(now + EXHAUSTED_BACKOFF);
                    Some(Accepted::Paused)
                }
            },
        }
    }
}

/// `poll` on a wake-up descriptor (shutdown eventfd or signal pipe) and the listener, leaving
/// the listener out while accepting is paused (it would be reported at once: a spin).
#[derive(Debug)]
pub struct AcceptWait {
    /// `[wake-up, listener]`.
    fds: [PollFd; 2],
}

/// What ended an [`AcceptWait::wait`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Woken {
    /// The wake-up descriptor is readable (the caller drains it).
    pub wake: bool,
    /// Connections wait to be accepted.
    pub listener: bool,
}

impl AcceptWait {
    /// Watches `wake` and `listener` for readability.
    pub fn new(wake: RawFd, listener: RawFd) -> AcceptWait {
        AcceptWait {
            fds: [poll::entry(wake, poll::READ), poll::entry(listener, 0)],
        }
    }

    /// Waits until the wake-up descriptor is readable, the listener is (unless `pause`, from
    /// [`Gate::resume_in`], says accepting is paused), or the pause ends. A signal (`EINTR`)
    /// ends the wait with nothing ready.
    pub fn wait(&mut self, pause: Option<Duration>) -> io::Result<Woken> {
        self.fds[1].events = if pause.is_none() { poll::READ } else { 0 };
        match poll::poll(&mut self.fds, pause) {
            Ok(_) => Ok(Woken {
                wake: self.fds[0].revents != 0,
                listener: self.fds[1].revents != 0,
            }),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => Ok(Woken::default()),
            Err(e) => Err(e),
        }
    }
}
