//! `SimSocket`: an in-memory TCP connection that answers [`Echo`](super::echo::Echo)'s calls as
//! a non-blocking Linux TCP socket would, for the state-machine property tests (test-only).
//!
//! The test plays the peer and the network (send bytes, send FIN, receive our output, reset)
//! and injects faults into the next calls; the socket answers `read`, `write` and
//! `shutdown_write`, keeps everything the core wrote, and flags every breach of the core's
//! contract it can see from inside a call. What it models, and why:
//!
//! - A read returns `min(queued, buf.len())` bytes: Linux `tcp_recvmsg` copies until the
//!   queue or the buffer is exhausted. A read that reaches the peer's FIN consumes it along
//!   with the data, as Linux does, so the next read returns `Ok(0)` while nothing new will
//!   ever arrive (the case that makes a short read an unreliable "drained" signal).
//!   `ReadFault::Short` cuts a read shorter than that (what other stacks and pollers allow).
//! - A write accepts `min(room, buf.len())` bytes, where room is the send buffer's free space;
//!   with no room it returns `WouldBlock`. A non-blocking socket never reports "accepted 0
//!   bytes" as `Ok(0)`: having no room *is* `EAGAIN`, and modelling it as such keeps it
//!   consistent with writability, the state the poller later reports when room returns (an
//!   `Ok(0)` with room would be a readiness the poller never signals). `Ok(0)` exists only as
//!   the injected `WriteFault::Zero`: a broken transport the core must close, not spin on.
//! - After a reset, reads return the bytes already queued, then `ECONNRESET` (or `Ok(0)` if
//!   the FIN came first); writes return `EPIPE`; `shutdown` returns `ENOTCONN`.
//! - `WouldBlock` results arm the socket (`read_armed`, `write_armed`): the event-loop model
//!   uses them for edge rules that only promise an event after the caller saw `WouldBlock`.

use std::collections::VecDeque;
use std::io::{self, Read, Write};

use super::echo::Transport;

/// A fault injected into the next `read`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ReadFault {
    /// `EINTR`.
    Interrupted,
    /// Return at most this many bytes (at least 1), even if more are queued.
    Short(usize),
    /// `EAGAIN` although bytes may be queued (level-triggered pollers report again).
    WouldBlock,
    /// A hard I/O error (`EIO`).
    Fail,
}

/// A fault injected into the next `write`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum WriteFault {
    /// `EINTR`.
    Interrupted,
    /// Accept at most this many bytes (at least 1), even if there is more room.
    Short(usize),
    /// `EAGAIN` although there is room (level-triggered pollers report again).
    WouldBlock,
    /// `Ok(0)`: a transport that can no longer accept bytes.
    Zero,
}

/// The peer's FIN.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Fin {
    /// Not sent.
    No,
    /// Sent; queued behind the bytes not yet read.
    Queued,
    /// Consumed by a read (with the last data, or as a read of `Ok(0)`).
    Consumed,
}

/// One simulated connection, seen from the server.
#[derive(Debug)]
pub(crate) struct SimSocket {
    /// Everything the peer will ever send, if it is allowed to finish.
    payload: Vec<u8>,
    /// Bytes of `payload` the peer has sent (queued for us or already read).
    sent: usize,
    /// Bytes of `payload` the core has read.
    read: usize,
    /// The peer's FIN, behind `payload[..sent]`.
    fin: Fin,
    /// An RST arrived.
    reset: bool,
    /// Everything the core wrote, in order (accepted into the send buffer).
    written: Vec<u8>,
    /// Bytes of `written` the peer has received, freeing send-buffer room.
    delivered: usize,
    /// Send-buffer capacity: `written.len() - delivered <= sndbuf`.
    sndbuf: usize,
    /// Calls to `shutdown_write`.
    shutdowns: u32,
    /// Faults for the next reads, oldest first.
    read_faults: VecDeque<ReadFault>,
    /// Faults for the next writes, oldest first.
    write_faults: VecDeque<WriteFault>,
    /// The core's bound on unsent bytes; it must never offer a read larger than its room.
    limit: usize,
    /// A read returned `Ok(0)`.
    eof_returned: bool,
    /// The first error that ends a connection returned to the core (`WriteZero` for `Ok(0)`).
    fatal: Option<io::ErrorKind>,
    /// No arrival was signalled since the last read returned `WouldBlock` (or since the
    /// socket was registered); cleared by the model when it signals one.
    pub(crate) read_armed: bool,
    /// The last write returned `WouldBlock`; cleared by the model when it signals room.
    pub(crate) write_armed: bool,
    /// Counters for the current `drive` call.
    pub(crate) drive: DriveStats,
    /// Calls allowed per `drive` before the socket declares a livelock and fails the call.
    call_cap: u32,
    /// Contract breaches seen inside calls; the test fails on any.
    pub(crate) violations: Vec<String>,
}

/// What happened during one `drive` call.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct DriveStats {
    /// Calls of any kind.
    pub(crate) calls: u32,
    /// Reads that returned data.
    pub(crate) data_reads: u32,
    /// A write returned `WouldBlock`.
    pub(crate) write_blocked: bool,
    /// The latest read returned `WouldBlock` (proof that nothing was left to read).
    pub(crate) read_blocked: bool,
    /// The error (if any) that this drive received and must end the connection with.
    pub(crate) fatal: Option<io::ErrorKind>,
}

impl SimSocket {
    /// A connection whose peer will send `payload`; the send buffer holds `sndbuf` bytes and
    /// the core under test bounds its unsent bytes at `limit`.
    pub(crate) fn new(payload: Vec<u8>, sndbuf: usize, limit: usize, call_cap: u32) -> Self {
        SimSocket {
            payload,
            sent: 0,
            read: 0,
            fin: Fin::No,
            reset: false,
            written: Vec::new(),
            delivered: 0,
            sndbuf: sndbuf.max(1),
            shutdowns: 0,
            read_faults: VecDeque::new(),
            write_faults: VecDeque::new(),
            limit,
            eof_returned: false,
            fatal: None,
            // A fresh registration reports whatever becomes readable; room is only promised
            // to a writer that found none.
            read_armed: true,
            write_armed: false,
            drive: DriveStats::default(),
            call_cap,
            violations: Vec::new(),
        }
    }

    // ----- the peer and the network -----

    /// The peer sends up to `n` more bytes. Returns whether anything arrived.
    pub(crate) fn peer_send(&mut self, n: usize) -> bool {
        if self.fin != Fin::No || self.reset {
            return false;
        }
        let n = n.min(self.payload.len() - self.sent);
        self.sent += n;
        n > 0
    }

    /// The peer shuts down its write side; what it has not sent yet, it never will. Returns
    /// whether the FIN is new.
    pub(crate) fn peer_fin(&mut self) -> bool {
        if self.fin != Fin::No || self.reset {
            return false;
        }
        self.payload.truncate(self.sent);
        self.fin = Fin::Queued;
        true
    }

    /// The peer receives up to `n` bytes of our output. Returns whether room was freed.
    pub(crate) fn peer_recv(&mut self, n: usize) -> bool {
        let n = n.min(self.in_flight());
        self.delivered += n;
        n > 0
    }

    /// An RST arrives. Returns whether it is new.
    pub(crate) fn peer_reset(&mut self) -> bool {
        !std::mem::replace(&mut self.reset, true)
    }

    /// Queues a fault for the next read.
    pub(crate) fn inject_read(&mut self, fault: ReadFault) {
        self.read_faults.push_back(fault);
    }

    /// Queues a fault for the next write.
    pub(crate) fn inject_write(&mut self, fault: WriteFault) {
        self.write_faults.push_back(fault);
    }

    // ----- readiness, as `tcp_poll` computes it -----

    /// `EPOLLIN`: bytes queued, or EOF, or an error to collect.
    pub(crate) fn readable(&self) -> bool {
        self.sent > self.read || self.fin != Fin::No || self.reset
    }

    /// `EPOLLOUT`: send-buffer room (or an error to collect).
    pub(crate) fn writable(&self) -> bool {
        self.in_flight() < self.sndbuf || self.reset
    }

    /// `EPOLLRDHUP`: the peer's FIN has arrived.
    pub(crate) fn rdhup(&self) -> bool {
        self.fin != Fin::No
    }

    /// `EPOLLHUP | EPOLLERR`: the connection was reset.
    pub(crate) fn is_reset(&self) -> bool {
        self.reset
    }

    // ----- what the test inspects -----

    /// Everything the peer sent (all of the payload once the peer has finished).
    pub(crate) fn sent_bytes(&self) -> &[u8] {
        &self.payload[..self.sent]
    }

    /// Bytes of the payload the peer still has to send.
    pub(crate) fn unsent(&self) -> usize {
        self.payload.len() - self.sent
    }

    /// Bytes the core has read.
    pub(crate) fn read_count(&self) -> usize {
        self.read
    }

    /// Everything the core wrote, in order.
    pub(crate) fn written(&self) -> &[u8] {
        &self.written
    }

    /// Bytes in the send buffer, not yet received by the peer.
    pub(crate) fn in_flight(&self) -> usize {
        self.written.len() - self.delivered
    }

    pub(crate) fn fin(&self) -> Fin {
        self.fin
    }

    pub(crate) fn eof_returned(&self) -> bool {
        self.eof_returned
    }

    pub(crate) fn shutdowns(&self) -> u32 {
        self.shutdowns
    }

    /// Starts counting a new `drive` call.
    pub(crate) fn begin_drive(&mut self) {
        self.drive = DriveStats::default();
    }

    // ----- call bookkeeping -----

    /// Counts a call and checks the rules every call obeys. `Err` stops a runaway drive.
    fn enter(&mut self, what: &str) -> io::Result<()> {
        self.drive.calls += 1;
        if self.drive.calls > self.call_cap {
            self.violations.push(format!(
                "livelock: more than {} calls in one drive",
                self.call_cap
            ));
            return Err(io::Error::other("call cap exceeded"));
        }
        if let Some(kind) = self.fatal {
            self.violations
                .push(format!("{what} after the connection failed with {kind:?}"));
        }
        Ok(())
    }

    /// Records the error that must end the connection, and returns it.
    fn fail(&mut self, kind: io::ErrorKind) -> io::Error {
        self.fatal.get_or_insert(kind);
        self.drive.fatal.get_or_insert(kind);
        kind.into()
    }
}

impl Read for SimSocket {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let result = self.read_now(buf);
        self.drive.read_blocked =
            matches!(&result, Err(e) if e.kind() == io::ErrorKind::WouldBlock);
        result
    }
}

impl SimSocket {
    /// A `read` call (see the module docs for what it models).
    fn read_now(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.enter("read")?;
        let unsent_by_core = self.read - self.written.len();
        let room = self.limit.saturating_sub(unsent_by_core);
        if buf.is_empty() {
            self.violations
                .push("read offered an empty buffer (reading at the bound)".to_owned());
        }
        if buf.len() > room {
            self.violations.push(format!(
                "read offered {} bytes while holding {unsent_by_core} unsent (limit {})",
                buf.len(),
                self.limit
            ));
        }
        if self.eof_returned {
            self.violations.push("read after EOF".to_owned());
        }
        let mut cap = usize::MAX;
        match self.read_faults.pop_front() {
            Some(ReadFault::Interrupted) => return Err(io::ErrorKind::Interrupted.into()),
            Some(ReadFault::WouldBlock) => {
                self.read_armed = true;
                return Err(io::ErrorKind::WouldBlock.into());
            }
            Some(ReadFault::Fail) => return Err(self.fail(io::ErrorKind::Other)),
            Some(ReadFault::Short(k)) => cap = k.max(1),
            None => {}
        }
        let queued = self.sent - self.read;
        if queued > 0 && !buf.is_empty() {
            let n = queued.min(buf.len()).min(cap);
            buf[..n].copy_from_slice(&self.payload[self.read..self.read + n]);
            self.read += n;
            // Linux eats the FIN with the data when the copy reaches it.
            if n == queued && n < buf.len() && self.fin == Fin::Queued {
                self.fin = Fin::Consumed;
            }
            self.drive.data_reads += 1;
            return Ok(n);
        }
        if self.fin != Fin::No {
            self.fin = Fin::Consumed;
            self.eof_returned = true;
            return Ok(0);
        }
        if self.reset {
            return Err(self.fail(io::ErrorKind::ConnectionReset));
        }
        self.read_armed = true;
        Err(io::ErrorKind::WouldBlock.into())
    }
}

impl Write for SimSocket {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.enter("write")?;
        if self.shutdowns > 0 {
            self.violations
                .push("write after shutdown_write".to_owned());
        }
        if buf.is_empty() {
            self.violations.push("write of an empty buffer".to_owned());
        }
        if self.reset {
            return Err(self.fail(io::ErrorKind::BrokenPipe));
        }
        let mut cap = usize::MAX;
        match self.write_faults.pop_front() {
            Some(WriteFault::Interrupted) => return Err(io::ErrorKind::Interrupted.into()),
            Some(WriteFault::WouldBlock) => {
                self.write_armed = true;
                self.drive.write_blocked = true;
                return Err(io::ErrorKind::WouldBlock.into());
            }
            Some(WriteFault::Zero) => {
                // The core must turn this into an error (`WriteZero`), not retry it forever.
                self.fail(io::ErrorKind::WriteZero);
                return Ok(0);
            }
            Some(WriteFault::Short(k)) => cap = k.max(1),
            None => {}
        }
        let room = self.sndbuf - self.in_flight();
        if room == 0 {
            self.write_armed = true;
            self.drive.write_blocked = true;
            return Err(io::ErrorKind::WouldBlock.into());
        }
        let n = room.min(buf.len()).min(cap);
        self.written.extend_from_slice(&buf[..n]);
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Transport for SimSocket {
    fn shutdown_write(&mut self) -> io::Result<()> {
        self.enter("shutdown_write")?;
        self.shutdowns += 1;
        if self.shutdowns > 1 {
            self.violations
                .push("shutdown_write called twice".to_owned());
        }
        if !self.eof_returned {
            self.violations
                .push("shutdown_write before the peer's EOF was read".to_owned());
        }
        let unsent = self.read - self.written.len();
        if unsent > 0 {
            self.violations.push(format!(
                "shutdown_write with {unsent} bytes not yet written back"
            ));
        }
        if self.reset {
            return Err(self.fail(io::ErrorKind::NotConnected));
        }
        Ok(())
    }
}
