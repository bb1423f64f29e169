//! `Conn`: one connection of a single-threaded event-loop model (a raw socket, its echo
//! state and idle clock).

use tracing::debug;

use super::Model;
use crate::close::CloseReason;
use crate::policy::Wants;
use crate::policy::connlog::Record;
use crate::sys::socket::Stream;
use crate::worker::Echo;

/// A connection owned by an event loop.
#[derive(Debug)]
pub(crate) struct Conn {
    /// The non-blocking socket; closing it (drop) also removes it from an epoll set.
    pub(crate) stream: Stream,
    /// Echo state: unsent bytes, whether the peer has closed.
    pub(crate) echo: Echo,
    /// What the poller currently watches for, so models re-register only on change.
    pub(crate) watching: Wants,
    /// Loop clock (milliseconds) of the last event for this connection.
    pub(crate) last_active_ms: u64,
    /// The connection log's record, if this connection is logged.
    pub(crate) log: Record,
}

impl Conn {
    /// A fresh connection, watched for reading; `log` from [`LoopCore::admit`].
    ///
    /// [`LoopCore::admit`]: super::event_loop::LoopCore::admit
    pub(crate) fn new(stream: Stream, now_ms: u64, log: Record) -> Conn {
        Conn {
            stream,
            echo: Echo::new(),
            watching: Wants::READ,
            last_active_ms: now_ms,
            log,
        }
    }
}

/// Logs a closed connection at debug level.
pub(crate) fn log_close(model: Model, reason: CloseReason, pending: usize) {
    debug!(%model, ?reason, pending, "connection closed");
}
