//! `Admission`: the accept policy of every server, the reactor's acceptor and every model.
//!
//! - Connections over `max_connections` are accepted and closed at once (so the backlog does
//!   not fill with connections nobody will serve), counted as `limit` closes, with a
//!   rate-limited warning.
//! - An `accept` error is sorted by [`classify_accept_error`]: the backlog is empty, or the
//!   error belonged to one connection already gone (retry at once), or accepting must pause
//!   for [`EXHAUSTED_BACKOFF`] (descriptors or memory ran out, or an unexpected failure):
//!   retrying at once would fail again, and spin. The caller stops watching the listener
//!   until [`Admission::resume_in`] reaches zero. Failures are counted and logged, rate
//!   limited, with the back-off.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use tracing::{error, warn};

use crate::live::LiveSettings;
use crate::ratelimit::RateLimit;
use crate::stats::Stats;
use crate::sys::socket::{self, Listener, Mode, Stream};

/// How long accepting pauses after `accept` failed for lack of descriptors or memory (or a
/// model could not start a thread or process for a connection): retrying at once would fail
/// again, and spin.
pub(crate) const EXHAUSTED_BACKOFF: Duration = Duration::from_millis(100);

/// Minimum time between two log lines of one kind (over the limit, accept failed).
const LOG_INTERVAL: Duration = Duration::from_secs(1);

/// `accept(2)` errors that belong to one connection, already gone, or to the call itself:
/// the next call may succeed at once. A signal; the peer reset before we got to it; a
/// protocol error on that connection (`EPROTO`: the peer's failed handshake).
const RETRY_AT_ONCE: &[i32] = &[libc::EINTR, libc::ECONNABORTED, libc::EPROTO];

/// What an `accept` error means for the accept loop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AcceptError {
    /// Nothing (more) to accept: the backlog is empty (`EAGAIN`), or the socket no longer
    /// listens (`EINVAL`: stopped for shutdown by another thread). Nothing to report.
    Drained,
    /// Accept again at once: `EINTR`, `ECONNABORTED`, `EPROTO` (the list is `RETRY_AT_ONCE`).
    Retry,
    /// Out of descriptors or memory (`EMFILE`, `ENFILE`, `ENOBUFS`, `ENOMEM`): pause.
    Exhausted,
    /// Any other failure: pause too, and report it as an error.
    Failed,
}

/// Sorts an `accept(2)` error.
pub(crate) fn classify_accept_error(e: &io::Error) -> AcceptError {
    if e.kind() == io::ErrorKind::WouldBlock || socket::is_not_listening(e) {
        AcceptError::Drained
    } else if e.raw_os_error().is_some_and(|n| RETRY_AT_ONCE.contains(&n)) {
        AcceptError::Retry
    } else if socket::is_resource_exhaustion(e) {
        AcceptError::Exhausted
    } else {
        AcceptError::Failed
    }
}

/// An accepted socket, as far as admission needs it.
pub(crate) trait Peer {
    /// The peer's address, for the over-the-limit warning.
    fn peer_addr(&self) -> io::Result<SocketAddr>;
}

impl Peer for Stream {
    fn peer_addr(&self) -> io::Result<SocketAddr> {
        Stream::peer_addr(self)
    }
}

impl Peer for mio::net::TcpStream {
    fn peer_addr(&self) -> io::Result<SocketAddr> {
        mio::net::TcpStream::peer_addr(self)
    }
}

/// Result of one [`Admission::accept`] call.
#[derive(Debug)]
pub(crate) enum Accepted<S> {
    /// A connection to serve.
    Conn(S),
    /// The backlog is empty.
    Empty,
    /// Accepting failed and is paused; see [`Admission::resume_in`].
    Paused,
}

/// Accept policy of one server: connection limit, back-off, rate-limited logs, accept
/// counters.
#[derive(Debug)]
pub(crate) struct Admission {
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

impl Admission {
    /// A policy admitting at most `live.max_connections()` open connections.
    pub(crate) fn new(live: Arc<LiveSettings>, stats: Arc<Stats>) -> Admission {
        Admission {
            live,
            stats,
            resume_at: None,
            over_limit_log: RateLimit::new(LOG_INTERVAL),
            error_log: RateLimit::new(LOG_INTERVAL),
        }
    }

    /// How long accepting stays paused: `None` when it is not paused.
    pub(crate) fn resume_in(&mut self, now: Instant) -> Option<Duration> {
        match self.resume_at {
            Some(at) if at > now => Some(at - now),
            _ => {
                self.resume_at = None;
                None
            }
        }
    }

    /// Whether accepting is paused right now.
    pub(crate) fn is_paused(&mut self, now: Instant) -> bool {
        self.resume_in(now).is_some()
    }

    /// Pauses accepting for [`EXHAUSTED_BACKOFF`] (also used when a model cannot start a
    /// thread or process for a connection).
    pub(crate) fn pause(&mut self, now: Instant) {
        self.resume_at = Some(now + EXHAUSTED_BACKOFF);
    }

    /// Accepts from a raw-syscall listener the next connection that may be served while
    /// `open` are open; see [`Admission::accept_with`].
    pub(crate) fn accept(
        &mut self,
        listener: &Listener,
        mode: Mode,
        open: usize,
    ) -> Accepted<Stream> {
        self.accept_with(open, || listener.accept(mode))
    }

    /// Calls `accept` until it yields a connection that may be served while `open` are
    /// open, the backlog is empty, or accepting must pause. Connections over the limit are
    /// closed here.
    pub(crate) fn accept_with<S: Peer>(
        &mut self,
        open: usize,
        mut accept: impl FnMut() -> io::Result<S>,
    ) -> Accepted<S> {
        let counters = self.stats.acceptor();
        loop {
            let e = match accept() {
                Ok(stream) => {
                    counters.accepted.fetch_add(1, Ordering::Relaxed);
                    let max_connections = self.live.max_connections();
                    if open < max_connections {
                        return Accepted::Conn(stream);
                    }
                    counters.rejected_limit.fetch_add(1, Ordering::Relaxed);
                    if let Some(suppressed) = self.over_limit_log.check(Instant::now()) {
                        let peer = stream
                            .peer_addr()
                            .map(|a| a.to_string())
                            .unwrap_or_default();
                        warn!(%peer, max_connections, suppressed,
                            "connection limit reached; closing new connection");
                    }
                    continue; // `stream` is dropped: closed
                }
                Err(e) => e,
            };
            let class = classify_accept_error(&e);
            match class {
                AcceptError::Drained => return Accepted::Empty,
                AcceptError::Retry => continue,
                AcceptError::Exhausted | AcceptError::Failed => {}
            }
            counters.accept_errors.fetch_add(1, Ordering::Relaxed);
            let now = Instant::now();
            if let Some(suppressed) = self.error_log.check(now) {
                let backoff_ms = EXHAUSTED_BACKOFF.as_millis() as u64;
                if class == AcceptError::Exhausted {
                    warn!(error = %e, suppressed, backoff_ms, "out of resources; pausing accept");
                } else {
                    error!(error = %e, suppressed, backoff_ms, "accept failed; pausing accept");
                }
            }
            self.pause(now);
            return Accepted::Paused;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;

    use super::*;
    use crate::config::Config;

    /// An accepted connection in a scripted backlog.
    #[derive(Debug)]
    struct Fake;

    impl Peer for Fake {
        fn peer_addr(&self) -> io::Result<SocketAddr> {
            Err(io::ErrorKind::NotConnected.into())
        }
    }

    /// An admission admitting one connection, and the counters it writes.
    fn admission() -> (Admission, Arc<Stats>) {
        let config = Config {
            max_connections: 1,
            ..Config::default()
        };
        let stats = Arc::new(Stats::new(1));
        let live = Arc::new(LiveSettings::new(&config));
        (Admission::new(live, stats.clone()), stats)
    }

    /// Runs one accept over `script` (then `EAGAIN`); returns the outcome and what is left.
    fn run(
        a: &mut Admission,
        open: usize,
        script: Vec<io::Result<Fake>>,
    ) -> (Accepted<Fake>, usize) {
        let mut script = VecDeque::from(script);
        let outcome = a.accept_with(open, || {
            script
                .pop_front()
                .unwrap_or_else(|| Err(errno(libc::EAGAIN)))
        });
        (outcome, script.len())
    }

    /// At the limit, a connection is accepted, closed and counted, and accepting goes on
    /// until the backlog is empty.
    #[test]
    fn over_the_limit_is_accepted_closed_and_counted() {
        let (mut a, stats) = admission();
        let (outcome, left) = run(&mut a, 1, vec![Ok(Fake), Ok(Fake)]);
        assert!(matches!(outcome, Accepted::Empty), "{outcome:?}");
        assert_eq!(left, 0);
        let s = stats.snapshot();
        assert_eq!(
            (s.accepted, s.closed(crate::policy::CloseReason::Limit)),
            (2, 2)
        );
        let (outcome, _) = run(&mut a, 0, vec![Ok(Fake)]);
        assert!(matches!(outcome, Accepted::Conn(Fake)), "{outcome:?}");
    }

    /// A signal, an aborted or a failed handshake (`EPROTO`) is retried at once; running out
    /// of descriptors pauses accepting for the back-off, counted once.
    #[test]
    fn transient_errors_retry_and_exhaustion_pauses() {
        let (mut a, stats) = admission();
        let script = vec![
            Err(errno(libc::EINTR)),
            Err(errno(libc::ECONNABORTED)),
            Err(errno(libc::EPROTO)),
            Ok(Fake),
        ];
        let (outcome, _) = run(&mut a, 0, script);
        assert!(matches!(outcome, Accepted::Conn(Fake)), "{outcome:?}");
        assert!(!a.is_paused(Instant::now()));
        let (outcome, left) = run(&mut a, 0, vec![Err(errno(libc::EMFILE)), Ok(Fake)]);
        assert!(matches!(outcome, Accepted::Paused), "{outcome:?}");
        assert_eq!(left, 1, "no accept after the failure");
        let after = Instant::now();
        assert!(a.resume_in(after).is_some_and(|d| d <= EXHAUSTED_BACKOFF));
        assert_eq!(
            a.resume_in(after + EXHAUSTED_BACKOFF),
            None,
            "the pause ends"
        );
        assert_eq!(stats.snapshot().accept_errors, 1);
    }

    fn errno(n: i32) -> io::Error {
        io::Error::from_raw_os_error(n)
    }

    #[test]
    fn accept_errors_sort_into_drained_retry_and_pause() {
        let class = |n| classify_accept_error(&errno(n));
        assert_eq!(class(libc::EAGAIN), AcceptError::Drained);
        assert_eq!(class(libc::EINVAL), AcceptError::Drained);
        assert_eq!(class(libc::EINTR), AcceptError::Retry);
        assert_eq!(class(libc::ECONNABORTED), AcceptError::Retry);
        assert_eq!(class(libc::EPROTO), AcceptError::Retry);
        for n in [libc::EMFILE, libc::ENFILE, libc::ENOBUFS, libc::ENOMEM] {
            assert_eq!(class(n), AcceptError::Exhausted, "errno {n}");
        }
        assert_eq!(class(libc::EPERM), AcceptError::Failed);
    }
}
