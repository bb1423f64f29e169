//! `CloseReason`: why a connection ended, for every model, the echo core and the counters.
//!
//! The echo core ends a connection with [`Eof`](CloseReason::Eof), [`Reset`](CloseReason::Reset)
//! or [`Error`](CloseReason::Error) ([`classify`] sorts its I/O errors); the loops add the
//! timeouts, and admission adds [`Limit`](CloseReason::Limit). The metrics count by reason
//! ([`CloseReason::ALL`], [`CloseReason::as_str`]).

use std::io;

/// Why a connection was closed, as counted in `reactor_pool_connections_closed_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CloseReason {
    /// The peer closed its side, received every byte back, and our FIN was sent.
    Eof,
    /// The peer reset or vanished (`ECONNRESET`, `EPIPE`, ...).
    Reset,
    /// Another I/O error.
    Error,
    /// No traffic for `idle_timeout`.
    IdleTimeout,
    /// Still open when a graceful shutdown's `shutdown_timeout` ran out.
    ShutdownTimeout,
    /// Closed at accept because `max_connections` were open.
    Limit,
}

impl CloseReason {
    /// Every reason, in the order the metrics list them.
    pub(crate) const ALL: [CloseReason; 6] = [
        CloseReason::Eof,
        CloseReason::Reset,
        CloseReason::Error,
        CloseReason::IdleTimeout,
        CloseReason::ShutdownTimeout,
        CloseReason::Limit,
    ];

    /// The `reason` label value (also the short name in logs).
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            CloseReason::Eof => "eof",
            CloseReason::Reset => "reset",
            CloseReason::Error => "error",
            CloseReason::IdleTimeout => "idle_timeout",
            CloseReason::ShutdownTimeout => "shutdown_timeout",
            CloseReason::Limit => "limit",
        }
    }

    /// Position in [`CloseReason::ALL`], for counters kept in an array.
    pub(crate) fn index(self) -> usize {
        self as usize
    }
}

/// Sorts an I/O error that ended a connection: the peer going away is a `Reset`, anything
/// else an `Error`.
pub(crate) fn classify(e: &io::Error) -> CloseReason {
    use io::ErrorKind::*;
    match e.kind() {
        ConnectionReset | BrokenPipe | ConnectionAborted | NotConnected | TimedOut
        | UnexpectedEof => CloseReason::Reset,
        _ => CloseReason::Error,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn all_lists_every_reason_at_its_index() {
        for (i, reason) in CloseReason::ALL.into_iter().enumerate() {
            assert_eq!(reason.index(), i, "{reason:?}");
        }
    }

    #[test]
    fn a_vanished_peer_is_a_reset_and_the_rest_are_errors() {
        let of = |kind: io::ErrorKind| classify(&kind.into());
        assert_eq!(of(io::ErrorKind::ConnectionReset), CloseReason::Reset);
        assert_eq!(of(io::ErrorKind::BrokenPipe), CloseReason::Reset);
        assert_eq!(of(io::ErrorKind::WriteZero), CloseReason::Error);
        assert_eq!(of(io::ErrorKind::InvalidData), CloseReason::Error);
    }
}
