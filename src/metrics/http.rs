//! `MetricsServer`: a minimal HTTP/1.1 endpoint for `GET /metrics`, on its own thread.
//!
//! Written on std + mio rather than with an HTTP crate: it answers one kind of request from a
//! scraper, needs no keep-alive, no TLS and no routing, and a hand-rolled request-head reader
//! with hard limits (8 KiB head, 2 s per request, one connection at a time) is short and keeps
//! the dependency tree small. A scraper that stalls holds the endpoint for at most the 2 s
//! timeout; the echo service never waits for it.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use mio::{Events, Interest, Poll, Token, Waker};
use tracing::{debug, warn};

use super::render::{MetricsSource, render};
use crate::listener::{self, BindError};
use crate::shutdown::ShutdownHandle;

/// Token of the metrics listener.
const LISTENER: Token = Token(0);
/// Token of the shutdown waker.
const WAKER: Token = Token(1);
/// Longest request head accepted.
const MAX_HEAD: usize = 8 * 1024;
/// How long one request may take to arrive and its answer to leave.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(2);
/// How long to wait for the client to close after the response.
const LINGER: Duration = Duration::from_millis(250);

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
        let listener = listener::bind(addr, 64)?;
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
        thread::Builder::new()
            .name("metrics".to_owned())
            .spawn(move || serve(poll, listener, &source, &shutdown))
    }
}

fn serve(
    mut poll: Poll,
    listener: mio::net::TcpListener,
    source: &MetricsSource,
    shutdown: &ShutdownHandle,
) {
    let mut events = Events::with_capacity(8);
    loop {
        if let Err(e) = poll.poll(&mut events, None) {
            if e.kind() != io::ErrorKind::Interrupted {
                warn!(error = %e, "metrics endpoint stopped");
                return;
            }
        }
        if shutdown.is_requested() {
            return;
        }
        loop {
            match listener.accept() {
                Ok((stream, peer)) => {
                    if let Err(e) = answer(stream.into(), source) {
                        debug!(%peer, error = %e, "metrics request failed");
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::ConnectionAborted => {}
                Err(e) => {
                    // Out of descriptors, most likely: the next scrape will retry, and the
                    // edge for this one is gone, so wait for a new one rather than spin.
                    warn!(error = %e, "metrics accept failed");
                    break;
                }
            }
        }
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

/// Reads the request head (bounded in size and time) and writes one response.
fn answer(mut stream: TcpStream, source: &MetricsSource) -> io::Result<()> {
    stream.set_nonblocking(false)?;
    stream.set_write_timeout(Some(REQUEST_TIMEOUT))?;
    let deadline = Instant::now() + REQUEST_TIMEOUT;
    let mut head = Vec::with_capacity(512);
    let mut buf = [0u8; 1024];
    let complete = loop {
        if head.windows(4).any(|w| w == b"\r\n\r\n") || head.windows(2).any(|w| w == b"\n\n") {
            break true;
        }
        if head.len() >= MAX_HEAD {
            break false;
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(io::ErrorKind::TimedOut.into());
        }
        stream.set_read_timeout(Some(left))?;
        match stream.read(&mut buf) {
            Ok(0) => break false,
            Ok(n) => head.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    };
    if !complete && head.is_empty() {
        // Connected and closed (a port check): nothing to answer.
        return Ok(());
    }
    let request = if complete {
        parse_request_line(&head)
    } else {
        Request::Malformed
    };
    let response = respond(request, source);
    stream.write_all(&response.encode())?;
    // Half-close, then read what the client still sends (a body we ignore) until it closes:
    // closing with unread bytes queued would send a reset, which can destroy the response
    // before the client read it. Bounded by 64 KiB and LINGER (a client that keeps the
    // connection open does not hold the endpoint for long).
    let _ = stream.shutdown(std::net::Shutdown::Write);
    let linger_until = deadline.min(Instant::now() + LINGER);
    let mut discarded = 0;
    while discarded < 64 * 1024 {
        let left = linger_until.saturating_duration_since(Instant::now());
        if left.is_zero() || stream.set_read_timeout(Some(left)).is_err() {
            break;
        }
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => discarded += n,
        }
    }
    Ok(())
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
}
