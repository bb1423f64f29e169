//! `Connection`: one accepted socket in a worker, with its echo state and idle timer.

use mio::net::TcpStream;
use mio::{Interest, Registry, Token};

use super::echo::{Driven, Echo, EchoOptions, FinOnClose};
use crate::policy::Wants;
use crate::policy::connlog::Record;

/// A connection owned by one worker. Small on purpose: 10,000 idle ones should cost well
/// under a kilobyte each (no buffer is held while the echo keeps up).
#[derive(Debug)]
pub(crate) struct Connection {
    /// The socket, registered with the worker's poller under this connection's slab key.
    pub(crate) stream: TcpStream,
    /// Echo state: unsent bytes, whether the peer has closed, whether the poller reported its
    /// FIN.
    pub(crate) echo: Echo,
    /// Interest currently registered with the poller, so we re-register only on change.
    registered: Interest,
    /// Worker clock (milliseconds since the worker started) of the last event.
    pub(crate) last_active_ms: u64,
    /// The connection log's record, if this connection is logged (one pointer otherwise).
    pub(crate) log: Record,
}

impl Connection {
    /// Registers `stream` for reading under `token`.
    pub(crate) fn register(
        mut stream: TcpStream,
        registry: &Registry,
        token: Token,
        now_ms: u64,
    ) -> std::io::Result<Connection> {
        registry.register(&mut stream, token, Interest::READABLE)?;
        Ok(Connection {
            stream,
            echo: Echo::new(),
            registered: Interest::READABLE,
            last_active_ms: now_ms,
            log: None,
        })
    }

    /// Drives the echo as far as the socket allows. `fin_event` says the poller flagged the
    /// peer's FIN or an error with this wake-up ([`Echo::note_read_closed`]: mio's epoll is
    /// edge-triggered).
    ///
    /// The echo's own FIN (after the peer's, once everything is echoed) is not sent here: the
    /// echo then reports `Eof`, and the worker counts the close before dropping the stream,
    /// which sends it. A peer that saw our FIN and scrapes the metrics finds the close
    /// counted.
    pub(crate) fn drive(
        &mut self,
        scratch: &mut [u8],
        options: &EchoOptions,
        fin_event: bool,
    ) -> Driven {
        if fin_event {
            self.echo.note_read_closed();
        }
        self.echo
            .drive(&mut FinOnClose(&mut self.stream), scratch, options)
    }

    /// Makes the poller's interest match `wants` (from
    /// [`policy::interest::next`](crate::policy::interest::next)), with a syscall only when it
    /// changed.
    pub(crate) fn set_interest(
        &mut self,
        registry: &Registry,
        token: Token,
        wants: Wants,
    ) -> std::io::Result<()> {
        let interest = match (wants.read, wants.write) {
            (true, true) => Interest::READABLE | Interest::WRITABLE,
            (false, true) => Interest::WRITABLE,
            // `next` never asks for nothing (mio cannot express it); reading stands in for it.
            (_, false) => Interest::READABLE,
        };
        if interest != self.registered {
            registry.reregister(&mut self.stream, token, interest)?;
            self.registered = interest;
        }
        Ok(())
    }
}
