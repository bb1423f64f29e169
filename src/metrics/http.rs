//! `MetricsServer`: a minimal HTTP/1.1 endpoint for `GET /metrics`, on its own thread.
//!
//! One thread, one mio poller, every client non-blocking: a client that stalls costs a slab
//! entry and a descriptor, never the thread, so a real scraper is answered at once however
//! many others dawdle, and shutdown (a waker) ends the thread at once whatever they do.
//!
//! Bounds, per client: a request head of at most [`MAX_HEAD`] bytes (431 past it), one
//! deadline ([`REQUEST_DEADLINE`]) for the whole exchange, head in, answer out and the short
//! linger after it; at most [`MAX_CLIENTS`] clients at once, the oldest one closed to make room
//! for a newcomer (a stalled client is old; a real scraper is new). An `accept` that fails for
//! lack of descriptors is retried after [`EXHAUSTED_BACKOFF`] on a timer, not on the next
//! connection's wake-up (the scrape that met the failure is still in the backlog).
//!
//! Written on mio rather than with an HTTP crate. `tiny_http`, the small synchronous server,
//! has no request deadline (its open issue #143, "timeouts") and parks a pool thread per
//! connection, which is exactly the failure this endpoint had; hyper or axum would bring an
//! async runtime into a server whose point is its own event loops. The exposition format is
//! ours too (`render.rs`, text format 0.0.4): `prometheus-client` would need its own registry
//! and metric types in place of the lock-free per-worker counters that are summed at scrape
//! time, and would add nothing a scraper sees. What is left is one request line to parse.

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token, Waker};
use slab::Slab;
use tracing::{debug, warn};

use super::render::{MetricsSource, render};
use crate::listener::{self, BindError};
use crate::policy::admission::{AcceptError, EXHAUSTED_BACKOFF, classify_accept_error};
use crate::ratelimit::RateLimit;
use crate::shutdown::ShutdownHandle;

/// Token of the metrics listener.
const LISTENER: Token = Token(0);
/// Token of the shutdown waker.
const WAKER: Token = Token(1);
/// Client tokens are slab keys offset by this.
const FIRST_CLIENT: usize = 2;
/// Longest request head accepted.
pub(crate) const MAX_HEAD: usize = 8 * 1024;
/// How long one client may take for everything: its request, our answer, the linger.
pub(crate) const REQUEST_DEADLINE: Duration = Duration::from_secs(2);
/// How long to wait for the client to close after the response.
const LINGER: Duration = Duration::from_millis(250);
/// Most bytes read (and ignored) while lingering.
const LINGER_BYTES: usize = 64 * 1024;
/// Clients served at once; a newcomer beyond it closes the oldest.
pub(crate) const MAX_CLIENTS: usize = 64;
/// Listen backlog of the metrics port.
const BACKLOG: u32 = 128;

/// A bound metrics endpoint, not yet serving.
#[derive(Debug)]
pub(crate) struct MetricsServer {
    /// Listening, non-blocking.
    listener: TcpListener,
    /// The bound address (port 0 resolved).
    local_addr: SocketAddr,
}

impl MetricsServer {
    /// Binds `addr` (before privileges are dropped, so a low port works too).
    pub(crate) fn bind(addr: SocketAddr) -> Result<MetricsServer, BindError> {
        let listener = listener::bind(addr, BACKLOG)?;
        let local_addr = listener
            .local_addr()
            .map_err(|source| BindError { addr, source })?;
        Ok(MetricsServer {
            listener,
            local_addr,
        })
    }

    /// The bound address.
    pub(crate) fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Serves scrapes of `source` on a thread named `metrics` until `shutdown` is requested.
    pub(crate) fn spawn(
        self,
        source: MetricsSource,
        shutdown: &ShutdownHandle,
    ) -> io::Result<JoinHandle<()>> {
        let poll = Poll::new()?;
        let mut listener = mio::net::TcpListener::from_std(self.listener);
        poll.registry()
            .register(&mut listener, LISTENER, Interest::READABLE)?;
        let waker = Waker::new(poll.registry(), WAKER)?;
        shutdown.on_shutdown(move || {
            let _ = waker.wake();
        });
        let shutdown = shutdown.clone();
        let mut endpoint = Endpoint {
            poll,
            listener,
            clients: Slab::new(),
            retry_accept_at: None,
            error_log: RateLimit::new(Duration::from_secs(1)),
            source,
        };
        thread::Builder::new()
            .name("metrics".to_owned())
            .spawn(move || endpoint.serve(&shutdown))
    }
}

/// The endpoint's thread state.
struct Endpoint {
    poll: Poll,
    listener: mio::net::TcpListener,
    /// Open clients; key + [`FIRST_CLIENT`] is the token.
    clients: Slab<Client>,
    /// Set after an accept failed for lack of resources: when to try again.
    retry_accept_at: Option<Instant>,
    /// Rate limit for accept-failure warnings.
    error_log: RateLimit,
    /// What a scrape renders.
    source: MetricsSource,
}

/// Where one client's exchange stands.
#[derive(Debug)]
enum Phase {
    /// Reading the request head.
    Reading { head: Vec<u8> },
    /// Writing the response; `sent` bytes of `out` are gone.
    Writing { out: Vec<u8>, sent: usize },
    /// Response sent and write side shut: reading what the client still sends until it
    /// closes, so our close does not become a reset that destroys the response.
    Lingering { discarded: usize },
}

/// One metrics client.
#[derive(Debug)]
struct Client {
    stream: TcpStream,
    /// When it was accepted (the oldest is closed first when the table is full).
    accepted: Instant,
    /// The whole exchange ends here, done or not.
    deadline: Instant,
    phase: Phase,
}

impl Endpoint {
    fn serve(&mut self, shutdown: &ShutdownHandle) {
        let mut events = Events::with_capacity(64);
        loop {
            if shutdown.is_requested() {
                // Open clients are dropped (closed) with `self`: a scrape is not worth a delay.
                return;
            }
            let timeout = self.next_timer().map(|at| {
                // mio rounds down to milliseconds; round up so the timer has passed on wake.
                at.saturating_duration_since(Instant::now()) + Duration::from_millis(1)
            });
            if let Err(e) = self.poll.poll(&mut events, timeout) {
                if e.kind() != io::ErrorKind::Interrupted {
                    warn!(error = %e, "metrics endpoint stopped");
                    return;
                }
            }
            if shutdown.is_requested() {
                return;
            }
            for event in &events {
                match event.token() {
                    LISTENER => self.accept_all(),
                    // Checked at the top of the loop.
                    WAKER => {}
                    Token(t) => self.drive(t.wrapping_sub(FIRST_CLIENT)),
                }
            }
            let now = Instant::now();
            if self.retry_accept_at.is_some_and(|at| at <= now) {
                self.retry_accept_at = None;
                self.accept_all();
            }
            self.close_expired(now);
        }
    }

    /// The earliest client deadline or accept retry.
    fn next_timer(&self) -> Option<Instant> {
        self.clients
            .iter()
            .map(|(_, c)| c.deadline)
            .chain(self.retry_accept_at)
            .min()
    }

    /// Accepts until the backlog is empty (the listener is edge-triggered).
    fn accept_all(&mut self) {
        if self.retry_accept_at.is_some() {
            // Paused after a failure; the timer resumes it.
            return;
        }
        loop {
            match self.listener.accept() {
                Ok((stream, peer)) => {
                    debug!(%peer, "metrics client");
                    self.admit(stream);
                }
                // The accept-error rule every server follows (policy::admission).
                Err(e) => match classify_accept_error(&e) {
                    AcceptError::Drained => return,
                    AcceptError::Retry => {}
                    AcceptError::Exhausted | AcceptError::Failed => {
                        // Out of descriptors or memory, most likely. The connection that met the
                        // failure is still in the backlog, and no new edge will announce it:
                        // retry on a timer (retrying at once would fail again, and spin).
                        if let Some(suppressed) = self.error_log.check(Instant::now()) {
                            warn!(error = %e, suppressed, retry_ms = EXHAUSTED_BACKOFF.as_millis() as u64,
                            "metrics accept failed; retrying");
                        }
                        self.retry_accept_at = Some(Instant::now() + EXHAUSTED_BACKOFF);
                        return;
                    }
                },
            }
        }
    }

    /// Registers a new client, closing the oldest first if the table is full.
    fn admit(&mut self, mut stream: TcpStream) {
        if self.clients.len() >= MAX_CLIENTS {
            if let Some(oldest) = self
                .clients
                .iter()
                .min_by_key(|(_, c)| c.accepted)
                .map(|(key, _)| key)
            {
                debug!("metrics endpoint full; closing its oldest client");
                self.close(oldest);
            }
        }
        let entry = self.clients.vacant_entry();
        let token = Token(entry.key() + FIRST_CLIENT);
        if let Err(e) = self.poll.registry().register(
            &mut stream,
            token,
            Interest::READABLE | Interest::WRITABLE,
        ) {
            debug!(error = %e, "cannot register a metrics client");
            return;
        }
        let now = Instant::now();
        let key = entry.key();
        entry.insert(Client {
            stream,
            accepted: now,
            deadline: now + REQUEST_DEADLINE,
            phase: Phase::Reading {
                head: Vec::with_capacity(512),
            },
        });
        // Bytes may have arrived with the handshake; the edge for them may already be past.
        self.drive(key);
    }

    /// Advances one client as far as its socket allows; closes it when it is finished.
    fn drive(&mut self, key: usize) {
        let Some(client) = self.clients.get_mut(key) else {
            // A stale event for a client closed earlier in this batch.
            return;
        };
        match client.advance(&self.source) {
            Ok(Progress::Blocked) => {}
            Ok(Progress::Finished) => self.close(key),
            Err(e) => {
                debug!(error = %e, "metrics client failed");
                self.close(key);
            }
        }
    }

    fn close(&mut self, key: usize) {
        if let Some(mut client) = self.clients.try_remove(key) {
            let _ = self.poll.registry().deregister(&mut client.stream);
        }
    }

    fn close_expired(&mut self, now: Instant) {
        let expired: Vec<usize> = self
            .clients
            .iter()
            .filter(|(_, c)| c.deadline <= now)
            .map(|(key, _)| key)
            .collect();
        for key in expired {
            debug!("metrics client too slow; closing");
            self.close(key);
        }
    }
}

/// What one [`Client::advance`] achieved.
#[derive(Debug, PartialEq, Eq)]
enum Progress {
    /// Waiting for the socket.
    Blocked,
    /// Done: close it.
    Finished,
}

impl Client {
    /// Runs the exchange until the socket would block or the client is done.
    fn advance(&mut self, source: &MetricsSource) -> io::Result<Progress> {
        let mut buf = [0u8; 4096];
        loop {
            match &mut self.phase {
                Phase::Reading { head } => {
                    if let Some(outcome) = head_outcome(head) {
                        let out = match outcome {
                            Head::Complete => respond(parse_request_line(head), source),
                            Head::TooLarge => Response::text(
                                "431 Request Header Fields Too Large",
                                "request head too large\n",
                            ),
                        }
                        .encode();
                        self.phase = Phase::Writing { out, sent: 0 };
                        continue;
                    }
                    let room = MAX_HEAD + 1 - head.len();
                    match self.stream.read(&mut buf[..room.min(4096)]) {
                        // Connected and closed (a port check), or gave up mid-head.
                        Ok(0) => return Ok(Progress::Finished),
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                            return Ok(Progress::Blocked);
                        }
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                        Err(e) => return Err(e),
                    }
                }
                Phase::Writing { out, sent } => {
                    if *sent == out.len() {
                        let _ = self.stream.shutdown(Shutdown::Write);
                        self.deadline = self.deadline.min(Instant::now() + LINGER);
                        self.phase = Phase::Lingering { discarded: 0 };
                        continue;
                    }
                    match self.stream.write(&out[*sent..]) {
                        Ok(0) => return Ok(Progress::Finished),
                        Ok(n) => *sent += n,
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                            return Ok(Progress::Blocked);
                        }
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                        Err(e) => return Err(e),
                    }
                }
                Phase::Lingering { discarded } => match self.stream.read(&mut buf) {
                    Ok(0) => return Ok(Progress::Finished),
                    Ok(n) => {
                        *discarded += n;
                        if *discarded >= LINGER_BYTES {
                            return Ok(Progress::Finished);
                        }
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                        return Ok(Progress::Blocked);
                    }
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    // A reset after the answer: nothing left to do.
                    Err(_) => return Ok(Progress::Finished),
                },
            }
        }
    }
}

/// Whether a request head is ready to answer.
#[derive(Debug, PartialEq, Eq)]
enum Head {
    /// Ends with an empty line.
    Complete,
    /// Longer than [`MAX_HEAD`] without one.
    TooLarge,
}

fn head_outcome(head: &[u8]) -> Option<Head> {
    let end = head.windows(4).any(|w| w == b"\r\n\r\n") || head.windows(2).any(|w| w == b"\n\n");
    if end {
        Some(Head::Complete)
    } else if head.len() > MAX_HEAD {
        Some(Head::TooLarge)
    } else {
        None
    }
}

/// A parsed request line.
#[derive(Debug, PartialEq, Eq)]
enum Request {
    /// `GET` or `HEAD` of `path`; `head` omits the body.
    Get { path: String, head: bool },
    /// Any other method.
    OtherMethod,
    /// Not an HTTP request line.
    Malformed,
}

fn parse_request_line(head: &[u8]) -> Request {
    let Some(line) = head.split(|&b| b == b'\n').next() else {
        return Request::Malformed;
    };
    let Ok(line) = std::str::from_utf8(line) else {
        return Request::Malformed;
    };
    let mut parts = line.trim_end_matches('\r').split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Request::Malformed;
    };
    if !version.starts_with("HTTP/1.") {
        return Request::Malformed;
    }
    let path = target.split('?').next().unwrap_or(target).to_owned();
    match method {
        "GET" => Request::Get { path, head: false },
        "HEAD" => Request::Get { path, head: true },
        _ => Request::OtherMethod,
    }
}

/// One HTTP response.
#[derive(Debug)]
struct Response {
    status: &'static str,
    content_type: &'static str,
    body: String,
    /// HEAD: headers only.
    head_only: bool,
    /// Extra header lines, each ending in CRLF.
    extra: &'static str,
}

impl Response {
    fn text(status: &'static str, body: &str) -> Response {
        Response {
            status,
            content_type: "text/plain; charset=utf-8",
            body: body.to_owned(),
            head_only: false,
            extra: "",
        }
    }

    fn encode(&self) -> Vec<u8> {
        let mut out = format!(
            "HTTP/1.1 {}\r\nContent-Type: {}\r\nContent-Length: {}\r\n{}Connection: close\r\n\r\n",
            self.status,
            self.content_type,
            self.body.len(),
            self.extra
        )
        .into_bytes();
        if !self.head_only {
            out.extend_from_slice(self.body.as_bytes());
        }
        out
    }
}

fn respond(request: Request, source: &MetricsSource) -> Response {
    match request {
        Request::Get { path, head } if path == "/metrics" => Response {
            content_type: "text/plain; version=0.0.4; charset=utf-8",
            head_only: head,
            ..Response::text("200 OK", &render(source))
        },
        Request::Get { path, head } if path == "/" => Response {
            head_only: head,
            ..Response::text("200 OK", "reactor-pool metrics: GET /metrics\n")
        },
        Request::Get { head, .. } => Response {
            head_only: head,
            ..Response::text("404 Not Found", "not found; try /metrics\n")
        },
        Request::OtherMethod => Response {
            extra: "Allow: GET, HEAD\r\n",
            ..Response::text("405 Method Not Allowed", "method not allowed\n")
        },
        Request::Malformed => Response::text("400 Bad Request", "bad request\n"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_request_lines() {
        assert_eq!(
            parse_request_line(b"GET /metrics?x=1 HTTP/1.1\r\nHost: a\r\n\r\n"),
            Request::Get {
                path: "/metrics".to_owned(),
                head: false
            }
        );
        assert_eq!(
            parse_request_line(b"HEAD / HTTP/1.0\r\n\r\n"),
            Request::Get {
                path: "/".to_owned(),
                head: true
            }
        );
        assert_eq!(
            parse_request_line(b"POST /metrics HTTP/1.1\r\n\r\n"),
            Request::OtherMethod
        );
        assert_eq!(parse_request_line(b"hello\r\n\r\n"), Request::Malformed);
        assert_eq!(
            parse_request_line(b"GET /metrics SPDY/3\r\n\r\n"),
            Request::Malformed
        );
    }

    #[test]
    fn heads_are_complete_at_the_empty_line_and_bounded() {
        assert_eq!(head_outcome(b"GET / HTTP/1.1\r\n"), None);
        assert_eq!(
            head_outcome(b"GET / HTTP/1.1\r\n\r\n"),
            Some(Head::Complete)
        );
        assert_eq!(head_outcome(b"GET / HTTP/1.0\n\n"), Some(Head::Complete));
        assert_eq!(head_outcome(&[b'a'; MAX_HEAD]), None);
        assert_eq!(head_outcome(&[b'a'; MAX_HEAD + 1]), Some(Head::TooLarge));
    }
}
