//! `Conn`: one connection of a single-threaded event-loop model (a raw socket, its echo
//! state and idle clock), and `Transport` for raw sockets.

use std::io;
use std::net::Shutdown;

use tracing::debug;

use crate::config::Model;
use crate::sys::socket::Stream;
use crate::worker::{Closed, Echo, EchoOptions, Progress, Transport, Wants};

impl Transport for Stream {
    fn shutdown_write(&mut self) -> io::Result<()> {
        self.shutdown(Shutdown::Write)
    }
}

impl Transport for &Stream {
    fn shutdown_write(&mut self) -> io::Result<()> {
        self.shutdown(Shutdown::Write)
    }
}

/// A connection owned by an event loop.
#[derive(Debug)]
pub struct Conn {
    /// The non-blocking socket; closing it (drop) also removes it from an epoll set.
    pub stream: Stream,
    /// Echo state: unsent bytes, whether the peer has closed.
    pub echo: Echo,
    /// What the poller currently watches for, so models re-register only on change.
    pub watching: Wants,
    /// Loop clock (milliseconds) of the last event for this connection.
    pub last_active_ms: u64,
}

impl Conn {
    /// A fresh connection, watched for reading.
    pub fn new(stream: Stream, now_ms: u64) -> Conn {
        Conn {
            stream,
            echo: Echo::new(),
            watching: READ_ONLY,
            last_active_ms: now_ms,
        }
    }

    /// Drives the echo as far as the socket allows.
    pub fn drive(&mut self, scratch: &mut [u8], options: &EchoOptions, now_ms: u64) -> Progress {
        self.last_active_ms = now_ms;
        self.echo.drive(&mut self.stream, scratch, options)
    }
}

/// The interest of a fresh connection.
pub const READ_ONLY: Wants = Wants {
    read: true,
    write: false,
};

/// Why a model closed a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseReason {
    /// The echo finished (EOF, reset or error).
    Finished(Closed),
    /// No traffic for `idle_timeout`.
    IdleTimeout,
    /// Still open when the shutdown drain ended.
    ShutdownTimeout,
    /// The poller refused the socket.
    Unwatchable,
}

/// Logs a closed connection at debug level.
pub fn log_close(model: Model, reason: CloseReason, pending: usize) {
    debug!(%model, ?reason, pending, "connection closed");
}
