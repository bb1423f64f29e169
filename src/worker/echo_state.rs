//! `EchoState`: the echo of one connection as counts and flags, with no bytes and no I/O.
//!
//! Every model runs on it. It knows how many bytes were received and not yet sent back
//! (`unsent`), whether the peer has closed its write side, and the bound; from that it says
//! how much may still be received ([`EchoState::room`]), which readiness the connection wants
//! ([`EchoState::wants`]), and when the echo is finished ([`EchoState::is_finished`]: the
//! peer's FIN was read and everything was sent, so shut down the write side and close).
//!
//! Where the bytes live is the driver's business: [`Echo`](super::Echo), the readiness
//! driver every loop but `uring` calls over a [`Transport`](super::Transport), keeps them in
//! its `Pending`; the `uring` model keeps them in the receive buffers the kernel filled and
//! sends from there ([`EchoState::plan`] says what a completion-driven loop does next).

use crate::policy::interest::{State, Wants};

use super::echo::{EchoOptions, ReadUntil};

/// The echo state of one connection, without its bytes.
///
/// Invariant: `unsent <= options.limit` for the options every call passes (a caller that
/// shrinks `limit` below `unsent` gets no room, never an underflow). Eight bytes.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct EchoState {
    /// Bytes received and not yet sent back (sent means: the kernel took them). At most
    /// `buffer_size`, itself at most 64 MiB, so it fits.
    unsent: u32,
    /// `PEER_CLOSED` and `READ_CLOSED`; once set, a flag stays set.
    flags: u8,
}

/// The peer's FIN was read: nothing more will be received; finish once `unsent` is zero.
const PEER_CLOSED: u8 = 1;
/// The poller reported the peer's FIN, a hang-up or an error ([`EchoState::note_read_closed`]):
/// read until `WouldBlock` or EOF, never stop at a short read.
const READ_CLOSED: u8 = 2;

/// What a completion-driven loop does after any completion ([`EchoState::plan`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Plan {
    /// Start a send of this many bytes: every unsent byte not already in flight, oldest
    /// first. Zero while a send is in flight (one at a time keeps the bytes in order) or
    /// nothing waits.
    pub(crate) send: usize,
    /// Keep a receive armed (arm one if none is); when false, cancel it: the peer has
    /// closed, or the connection holds `limit` unsent bytes (backpressure).
    pub(crate) receive: bool,
    /// The echo is finished: shut down the write side (FIN) and close.
    pub(crate) finish: bool,
}

impl EchoState {
    /// A fresh connection.
    pub(crate) const fn new() -> Self {
        EchoState {
            unsent: 0,
            flags: 0,
        }
    }

    /// Bytes received and not yet sent.
    pub(crate) fn unsent(&self) -> usize {
        self.unsent as usize
    }

    /// Whether the peer has closed its write side (its FIN was read).
    pub(crate) fn is_peer_closed(&self) -> bool {
        self.flags & PEER_CLOSED != 0
    }

    /// Bytes that may still be received before the bound; zero at the bound (or past it,
    /// should a caller shrink `limit` between calls) and once the peer has closed.
    pub(crate) fn room(&self, options: &EchoOptions) -> usize {
        if self.is_peer_closed() {
            return 0;
        }
        let limit = options.limit.min(u32::MAX as usize);
        limit.saturating_sub(self.unsent())
    }

    /// Records `n` bytes received; `n` is at most [`EchoState::room`].
    pub(crate) fn received(&mut self, n: usize) {
        debug_assert!(
            n == 0 || !self.is_peer_closed(),
            "bytes after the peer's FIN"
        );
        let n = u32::try_from(n).unwrap_or(u32::MAX);
        self.unsent = self.unsent.saturating_add(n);
    }

    /// Records that `n` of the unsent bytes (the oldest) were sent; `n <= unsent()`.
    pub(crate) fn sent(&mut self, n: usize) {
        debug_assert!(n <= self.unsent(), "sent more than was received");
        let n = u32::try_from(n).unwrap_or(u32::MAX);
        self.unsent = self.unsent.saturating_sub(n);
    }

    /// Records the peer's FIN (a read returned 0): nothing more will be received.
    pub(crate) fn read_eof(&mut self) {
        self.flags |= PEER_CLOSED;
    }

    /// Records that the poller reported the peer's FIN, a hang-up or an error; see
    /// [`Echo::note_read_closed`](super::Echo::note_read_closed).
    pub(crate) fn note_read_closed(&mut self) {
        self.flags |= READ_CLOSED;
    }

    /// Whether a short read still counts as draining the socket under `options`.
    pub(crate) fn short_read_drains(&self, options: &EchoOptions) -> bool {
        options.read_until == ReadUntil::ShortRead && self.flags & READ_CLOSED == 0
    }

    /// Interest the connection has given its state (what a level-triggered poller should
    /// watch): read while the peer is open and there is room, write while bytes wait.
    pub(crate) fn wants(&self, options: &EchoOptions) -> Wants {
        Wants {
            read: self.room(options) > 0,
            write: self.unsent > 0,
        }
    }

    /// What the interest rule needs to know, read before and after a drive.
    pub(crate) fn state(&self, options: &EchoOptions) -> State {
        State {
            wants: self.wants(options),
            peer_closed: self.is_peer_closed(),
        }
    }

    /// Whether the echo is done: the peer's FIN was read and every byte was sent. The write
    /// side is then shut down and the connection closed.
    pub(crate) fn is_finished(&self) -> bool {
        self.is_peer_closed() && self.unsent == 0
    }

    /// What a completion-driven loop does next, given the bytes of its send in flight
    /// (`in_flight`, zero when none is): send the rest once nothing is in flight, receive
    /// while there is room, finish once everything went out after the FIN.
    pub(crate) fn plan(&self, options: &EchoOptions, in_flight: usize) -> Plan {
        debug_assert!(in_flight <= self.unsent());
        Plan {
            send: if in_flight == 0 { self.unsent() } else { 0 },
            receive: self.room(options) > 0,
            finish: self.is_finished(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options(limit: usize) -> EchoOptions {
        EchoOptions {
            limit,
            ..EchoOptions::new(limit)
        }
    }

    #[test]
    fn room_shrinks_with_unsent_bytes_and_vanishes_after_the_fin() {
        let opts = options(10);
        let mut s = EchoState::new();
        assert_eq!(s.room(&opts), 10);
        s.received(7);
        assert_eq!((s.room(&opts), s.wants(&opts).write), (3, true));
        s.received(3);
        assert!(!s.wants(&opts).read, "at the bound it stops reading");
        s.sent(10);
        s.read_eof();
        assert_eq!(s.room(&opts), 0);
        assert!(s.is_finished());
    }

    #[test]
    fn the_plan_sends_only_when_nothing_is_in_flight() {
        let opts = options(100);
        let mut s = EchoState::new();
        s.received(40);
        assert_eq!(s.plan(&opts, 0).send, 40);
        s.received(20);
        assert_eq!(s.plan(&opts, 40).send, 0);
        s.sent(40);
        assert_eq!(s.plan(&opts, 0).send, 20);
        s.read_eof();
        let plan = s.plan(&opts, 20);
        assert!(!plan.receive && !plan.finish);
        s.sent(20);
        assert!(s.plan(&opts, 0).finish);
    }

    #[test]
    fn a_shrunk_limit_only_stops_reading() {
        let mut s = EchoState::new();
        s.received(50);
        assert_eq!(s.room(&options(10)), 0);
    }

    #[test]
    fn it_is_eight_bytes() {
        assert!(std::mem::size_of::<EchoState>() <= 8);
    }
}
