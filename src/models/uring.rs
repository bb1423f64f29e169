//! `uring` model: one thread, io_uring completions.
//!
//! Nothing here waits for readiness: the kernel accepts (one multishot accept on the
//! listener), receives (one multishot receive per connection, into a provided-buffer pool
//! every connection shares) and sends, and the loop only reacts to completions. Everything
//! queued during a round goes to the kernel in the one `io_uring_enter` that also waits for
//! the next completions, so a busy server makes far fewer syscalls than messages.
//!
//! The echo is the same [`Echo`] every model drives, over [`Completed`]: a `Transport` whose
//! reads return the bytes a receive completion delivered (then `WouldBlock`), and whose
//! writes fill the connection's next send buffer while it and the send in flight hold less
//! than `buffer_size` (beyond that `WouldBlock`, so `Echo` keeps the rest in its bounded
//! `Pending`). The next send starts when the one in flight completes: one send in flight per
//! connection keeps the bytes in order, and what arrived meanwhile goes out in one send.
//!
//! Rules of the receive:
//! - a multishot receive whose completion lacks `IORING_CQE_F_MORE` has ended (peer's FIN,
//!   error, `ENOBUFS` when the pool ran dry, cancellation); it is armed again while the
//!   connection still wants bytes. By then the round has given every buffer back, so an
//!   `ENOBUFS` cannot repeat at once;
//! - a connection holding `buffer_size` unsent bytes (queued in `Echo`, in its send, or left
//!   over from a receive) has its receive cancelled until it drains. Bytes that arrive before
//!   the cancellation lands are copied out of the pool (so one stalled peer never pins the
//!   shared buffers) and echoed later;
//! - a buffer goes back to the pool as soon as its completion has been handled.
//!
//! Limits, the accept pause, idle sweep, drain and the interest rule are the shared ones
//! ([`LoopCore`], [`Admission`](crate::policy::admission::Admission), which judges each
//! completed accept as if its own `accept` had returned it). On shutdown the listener stops listening at
//! once (`shutdown(SHUT_RD)`, which also ends the multishot accept), connections already
//! accepted are served, and closing a connection cancels its operations so the socket is
//! released.
//!
//! `SINGLE_ISSUER | DEFER_TASKRUN` are used where the kernel has them (completions are then
//! produced only while the loop waits, in one batch), `COOP_TASKRUN` or nothing otherwise.

use std::io::{self, Read, Write};
use std::net::Shutdown;
use std::os::fd::AsRawFd;
use std::time::Instant;

use slab::Slab;
use tracing::debug;

use super::conn::Conn;
use super::event_loop::{LoopCore, OpenConns};
use super::{About, Bound, Model};
use crate::close::CloseReason;
use crate::close::classify;
use crate::policy::admission::Accepted;
use crate::policy::interest::{Next, Trigger};
use crate::sys::socket::{Listener, Mode, Stream};
use crate::sys::uring::{Completion, OpId, OpKind, Ring};
use crate::worker::buffer::Pending;
use crate::worker::{ReadUntil, Transport};

/// Submission queue slots (the completion queue has four times as many).
const RING_ENTRIES: u32 = 1024;
/// Completions handled per round, so the operations they queue fit the submission queue.
const ROUND_BUDGET: usize = RING_ENTRIES as usize / 4;
/// Receive buffers in the shared pool (a power of two).
const POOL_BUFFERS: u16 = 128;
/// Largest receive buffer; smaller when `buffer_size` is (the pool is at most 2 MiB).
const MAX_POOL_BUFFER: usize = 16 * 1024;
/// Capacity a send buffer starts with (less when `buffer_size` is less); it grows up to
/// `buffer_size` only for a connection that has that much to send at once.
const SEND_CAPACITY: usize = 64 * 1024;
/// Drained send buffers kept for reuse (an idle connection holds none): at most 4 MiB.
const SPARE_SENDS: usize = (4 << 20) / SEND_CAPACITY;

/// Tag of the wake-up poll.
const WAKE: u64 = 1;
/// Tag of the multishot accept.
const ACCEPT: u64 = 2;

/// The `uring` model, as `reactor-pool models` describes it.
pub(crate) const ABOUT: About = About {
    probe: Some(probe),
    ..About::new(
        "one thread, io_uring: multishot accept, multishot receive into a shared \
         provided-buffer pool, one send in flight per connection; needs Linux 6.0+",
    )
};

/// Serves until shutdown, then drains.
pub(crate) fn run(bound: Bound) -> io::Result<()> {
    // Edge: a connection that spent its read budget gets no new completion for the bytes it
    // holds, so the rule says to resume it without one.
    let core = LoopCore::new(Model::Uring, &bound, Trigger::Edge, ReadUntil::WouldBlock)?;
    let buf_size = core.echo.limit.min(MAX_POOL_BUFFER) as u32;
    let ring = Ring::new(RING_ENTRIES, POOL_BUFFERS, buf_size)
        .map_err(|e| io::Error::new(e.kind(), format!("io_uring: {e}")))?;
    debug!(setup = ?ring.setup(), buf_size, "io_uring ready");
    let lfd = bound.listener.as_raw_fd();
    let mut server = Uring {
        core,
        ring,
        conns: Slab::new(),
        spare: Vec::new(),
        busy: Vec::new(),
        next_generation: 0,
    };
    let mut listener = Some(bound.listener);
    let mut accepting: Option<OpId> = None;
    let mut waking: Option<OpId> = None;
    loop {
        if listener.is_some()
            && accepting.is_none()
            && !server.core.admission.is_paused(Instant::now())
        {
            accepting = Some(server.ring.accept_multi(lfd, ACCEPT)?);
        }
        if waking.is_none() {
            waking = Some(server.ring.poll_multi(server.core.wake_fd(), WAKE)?);
        }
        let core = &mut server.core;
        let timeout = core.timeout(core.now_ms(), server.conns.len(), !server.busy.is_empty());
        server.ring.submit_and_wait(timeout)?;
        let now = server.core.now_ms();
        for (key, generation) in std::mem::take(&mut server.busy) {
            if server.is_live(key, generation) {
                server.resume(key, now);
            }
        }
        for _ in 0..ROUND_BUDGET {
            let Some(c) = server.ring.next_completion() else {
                break;
            };
            match c.tag {
                WAKE => {
                    server.core.take_wake();
                    if !c.more {
                        waking = None;
                    }
                }
                ACCEPT => {
                    if !c.more {
                        accepting = None;
                    }
                    server.on_accept(c, now);
                }
                _ => server.on_conn(c, now),
            }
        }
        if server.core.should_stop_accepting() {
            if let Some(l) = listener.take() {
                server.stop_listening(&l, accepting, now);
            }
            server.core.begin_drain(now, server.conns.len());
        }
        if server.core.sweep_due(now) {
            let idle: Vec<usize> = (server.conns.iter())
                .filter(|(_, c)| server.core.is_idle(&c.conn, now))
                .map(|(key, _)| key)
                .collect();
            for key in idle {
                server.close(key, CloseReason::IdleTimeout);
            }
        }
        if server.core.finish_round(now, &mut server.conns) {
            // Dropping the ring cancels what is left and waits for the kernel to let go.
            return Ok(());
        }
    }
}

/// The loop's state.
#[derive(Debug)]
struct Uring {
    /// Shared loop bookkeeping: clock, echo options, scratch buffer, admission, drain.
    core: LoopCore,
    /// The ring; owns the receive pool and every send buffer in flight.
    ring: Ring,
    /// Open connections; the slab key and the connection's generation make up the tags of
    /// its operations.
    conns: Slab<UringConn>,
    /// Drained send buffers of their initial capacity, kept for reuse (at most
    /// [`SPARE_SENDS`]).
    spare: Vec<Vec<u8>>,
    /// Connections that spent their read budget with bytes left over: driven again next
    /// round without waiting.
    busy: Vec<(usize, u32)>,
    /// Generation of the next connection (tells a slab slot's successive occupants apart).
    next_generation: u32,
}

/// A connection of the `uring` model.
#[derive(Debug)]
struct UringConn {
    /// Socket, echo state and idle clock (the `watching` field is unused here).
    conn: Conn,
    /// Tells this occupant of the slab slot from earlier ones (24 bits are used).
    generation: u32,
    /// The multishot receive, while armed.
    recv: Option<OpId>,
    /// A cancellation of `recv` has been asked for.
    recv_cancelled: bool,
    /// How the receive side ended: `Some(0)` at the peer's FIN, `Some(errno)` on an error.
    read_end: Option<i32>,
    /// Received bytes `Echo` could not take yet (it was full); read before anything newer.
    spill: Pending,
    /// Bytes for the next send (no allocation while empty).
    out: Vec<u8>,
    /// The send in flight (its buffer belongs to the ring until it completes).
    send: Option<OpId>,
    /// Unsent bytes of the send in flight.
    in_flight: usize,
    /// `Echo` finished (the peer's FIN, everything echoed) while a send was still in
    /// flight: shut down the write side, then close, once it completes.
    shut_pending: bool,
}

impl UringConn {
    /// Bytes read from the peer and not yet sent, wherever they wait.
    fn unsent(&self) -> usize {
        self.conn.echo.pending() + self.spill.len() + self.out.len() + self.in_flight
    }
}

impl OpenConns for Slab<UringConn> {
    fn count(&self) -> usize {
        self.len()
    }

    fn take_all(&mut self) -> Vec<Conn> {
        // Their operations end when the ring is dropped, right after.
        self.drain().map(|c| c.conn).collect()
    }
}

/// The tag of a connection's operation: slab key and generation.
fn conn_tag(key: usize, generation: u32) -> u64 {
    // Tags below 256 are the listener's and the wake-up's.
    (key as u64) << 32 | u64::from(generation & 0xFF_FFFF) << 8 | 0xFF
}

fn tag_key(tag: u64) -> (usize, u32) {
    ((tag >> 32) as usize, (tag >> 8) as u32 & 0xFF_FFFF)
}

impl Uring {
    fn is_live(&self, key: usize, generation: u32) -> bool {
        self.conns
            .get(key)
            .is_some_and(|c| c.generation & 0xFF_FFFF == generation & 0xFF_FFFF)
    }

    /// A completion of the multishot accept.
    fn on_accept(&mut self, c: Completion, now: u64) {
        let error = c.error();
        let result = match (c.accepted, error) {
            (Some(fd), _) => Ok(Stream::from(fd)),
            (None, Some(e)) => Err(e),
            (None, None) => return,
        };
        // The completed accept is the one `accept` the shared policy sees; after it, the
        // backlog counts as empty (the multishot accept delivers the next one).
        let mut result = Some(result);
        let accept = || {
            result
                .take()
                .unwrap_or_else(|| Err(io::ErrorKind::WouldBlock.into()))
        };
        match self.core.admission.accept_with(self.conns.len(), accept) {
            Accepted::Conn(stream) => self.open(stream, now),
            // A failed accept has ended the multishot one; the loop re-arms it when the pause
            // is over. `Empty`: closed for the limit, a transient failure, or the listener was
            // stopped for shutdown.
            Accepted::Paused | Accepted::Empty => {}
        }
    }

    /// Starts serving an accepted connection.
    fn open(&mut self, stream: Stream, now: u64) {
        let log = self.core.admit(&stream);
        let generation = self.next_generation;
        self.next_generation = self.next_generation.wrapping_add(1);
        let key = self.conns.insert(UringConn {
            conn: Conn::new(stream, now, log),
            generation,
            recv: None,
            recv_cancelled: false,
            read_end: None,
            spill: Pending::new(),
            out: Vec::new(),
            send: None,
            in_flight: 0,
            shut_pending: false,
        });
        self.sync_recv(key);
    }

    /// Stops accepting for shutdown: serves connections whose handshake completed before
    /// the request, then stops the listener (ending the multishot accept; the descriptor is
    /// closed when `l` is dropped).
    fn stop_listening(&mut self, l: &Listener, accepting: Option<OpId>, now: u64) {
        while let Accepted::Conn(stream) =
            self.core
                .admission
                .accept(l, Mode::NonBlocking, self.conns.len())
        {
            self.open(stream, now);
        }
        let _ = l.stop_listening();
        if let Some(op) = accepting {
            // Already ended by the stop, unless the kernel has not noticed yet.
            let _ = self.ring.cancel(op);
        }
    }

    /// A completion of one of a connection's operations.
    fn on_conn(&mut self, c: Completion, now: u64) {
        let (key, generation) = tag_key(c.tag);
        if !self.is_live(key, generation) {
            // The connection closed before its cancelled operations ended.
            if let Some(buf) = c.buf {
                self.ring.recycle(buf);
            }
            if let Some((buf, _)) = c.sent {
                self.keep_spare(buf);
            }
            return;
        }
        match c.kind {
            OpKind::Recv => self.on_recv(key, c, now),
            OpKind::Send => self.on_send(key, c, now),
            OpKind::Accept | OpKind::Poll => {}
        }
    }

    fn on_recv(&mut self, key: usize, c: Completion, now: u64) {
        let conn = &mut self.conns[key];
        if !c.more {
            conn.recv = None;
            conn.recv_cancelled = false;
        }
        match c.result {
            n if n > 0 => {
                if let Some(buf) = c.buf {
                    let data = self.ring.data(&buf);
                    let next = drive(&mut self.core, conn, &mut self.spare, data, now);
                    self.ring.recycle(buf);
                    if !self.settle(key, next) {
                        return;
                    }
                }
            }
            // ENOBUFS: the pool ran dry (every buffer is back by now); ECANCELED: we asked.
            // Either way the receive has ended, and is armed again below if still wanted.
            n if n == -libc::ENOBUFS || n == -libc::ECANCELED => {}
            n => {
                // 0 is the peer's FIN, a negative result an error: `Echo` sees it once it has
                // read what came before.
                conn.read_end = Some(-n);
                let next = drive(&mut self.core, conn, &mut self.spare, &[], now);
                if !self.settle(key, next) {
                    return;
                }
            }
        }
        self.sync_recv(key);
    }

    fn on_send(&mut self, key: usize, c: Completion, now: u64) {
        let error = c.error();
        let Some((buf, from)) = c.sent else { return };
        let conn = &mut self.conns[key];
        conn.send = None;
        conn.in_flight = 0;
        let sent = match error {
            Some(e) => {
                self.keep_spare(buf);
                self.close(key, classify(&e));
                return;
            }
            None => c.result as usize,
        };
        if sent == 0 {
            self.keep_spare(buf);
            self.close(key, CloseReason::Error);
            return;
        }
        if from + sent < buf.len() {
            // A short send: the rest goes first, before anything newer.
            conn.in_flight = buf.len() - from - sent;
            let tag = conn_tag(key, conn.generation);
            match self
                .ring
                .send(conn.conn.stream.as_raw_fd(), buf, from + sent, tag)
            {
                Ok(op) => self.conns[key].send = Some(op),
                Err(_) => self.close(key, CloseReason::Error),
            }
            return;
        }
        self.keep_spare(buf);
        let conn = &mut self.conns[key];
        if conn.shut_pending {
            if conn.out.is_empty() {
                let reason = match conn.conn.stream.shutdown(Shutdown::Write) {
                    Ok(()) => CloseReason::Eof,
                    Err(e) => classify(&e),
                };
                self.close(key, reason);
            } else {
                // Bytes queued behind the send that just completed go before the FIN.
                self.settle(key, Next::Close(CloseReason::Eof));
            }
            return;
        }
        let next = drive(&mut self.core, conn, &mut self.spare, &[], now);
        if self.settle(key, next) {
            self.sync_recv(key);
        }
    }

    /// Drives the echo of a connection that yielded; its leftover bytes are in `spill`.
    fn resume(&mut self, key: usize, now: u64) {
        let conn = &mut self.conns[key];
        let next = drive(&mut self.core, conn, &mut self.spare, &[], now);
        if self.settle(key, next) {
            self.sync_recv(key);
        }
    }

    /// Acts on what a drive achieved: closes a finished connection, schedules one that
    /// yielded, starts a send for bytes queued. Returns whether the connection is still open.
    fn settle(&mut self, key: usize, next: Next) -> bool {
        let conn = &mut self.conns[key];
        match next {
            // The FIN waits for the bytes still on their way (`Completed::shutdown_write`).
            Next::Close(CloseReason::Eof) if conn.shut_pending => {}
            Next::Close(reason) => {
                self.close(key, reason);
                return false;
            }
            Next::Wait { resume: true, .. } => self.busy.push((key, conn.generation)),
            // The receive follows `sync_recv`, which also counts the bytes queued for sends.
            Next::Wait { resume: false, .. } => {}
        }
        if conn.send.is_none() && !conn.out.is_empty() {
            let buf = std::mem::take(&mut conn.out);
            conn.in_flight = buf.len();
            let tag = conn_tag(key, conn.generation);
            match self.ring.send(conn.conn.stream.as_raw_fd(), buf, 0, tag) {
                Ok(op) => conn.send = Some(op),
                Err(_) => {
                    self.close(key, CloseReason::Error);
                    return false;
                }
            }
        }
        true
    }

    /// Arms the receive while the connection wants bytes, cancels it while it holds
    /// `buffer_size` unsent bytes (or no longer reads at all).
    fn sync_recv(&mut self, key: usize) {
        let limit = self.core.echo.limit;
        let conn = &mut self.conns[key];
        // The echo's own interest (its buffer has room, the peer is open), and the bytes this
        // model holds beyond it: queued for sends or left over from a receive.
        let wants = conn.conn.echo.state(&self.core.echo).wants.read
            && conn.read_end.is_none()
            && !conn.shut_pending
            && conn.unsent() < limit;
        match (wants, conn.recv) {
            (true, None) => {
                let tag = conn_tag(key, conn.generation);
                match self.ring.recv_multi(conn.conn.stream.as_raw_fd(), tag) {
                    Ok(op) => conn.recv = Some(op),
                    Err(_) => self.close(key, CloseReason::Error),
                }
            }
            (false, Some(op)) if !conn.recv_cancelled => {
                conn.recv_cancelled = true;
                if self.ring.cancel(op).is_err() {
                    self.close(key, CloseReason::Error);
                }
            }
            _ => {}
        }
    }

    /// Closes a connection: cancels its operations (the kernel holds the socket open until
    /// they end) and counts the close.
    fn close(&mut self, key: usize, reason: CloseReason) {
        let mut conn = self.conns.remove(key);
        if let (Some(op), false) = (conn.recv, conn.recv_cancelled) {
            let _ = self.ring.cancel(op);
        }
        if let Some(op) = conn.send {
            // A send to a peer that stopped reading would otherwise never end.
            let _ = self.ring.cancel(op);
        }
        self.core.closed(reason, &mut conn.conn);
        self.keep_spare(conn.out);
    }

    /// Keeps a drained send buffer for reuse, up to [`SPARE_SENDS`] of them (one that grew
    /// past its initial capacity is freed).
    fn keep_spare(&mut self, mut buf: Vec<u8>) {
        if buf.capacity() == send_capacity(self.core.echo.limit) && self.spare.len() < SPARE_SENDS {
            buf.clear();
            self.spare.push(buf);
        }
    }
}

/// Drives `conn`'s echo over `fresh` (bytes a receive just delivered) and its spill; what
/// `Echo` could not take is spilled, so the receive buffer can go back to the pool.
fn drive(
    core: &mut LoopCore,
    conn: &mut UringConn,
    spare: &mut Vec<Vec<u8>>,
    fresh: &[u8],
    now: u64,
) -> Next {
    conn.conn.last_active_ms = now;
    let mut io = Completed {
        spill: &mut conn.spill,
        fresh,
        read_end: conn.read_end,
        out: &mut conn.out,
        limit: core.echo.limit,
        in_flight: conn.in_flight,
        sending: conn.send.is_some(),
        spare,
        stream: &conn.conn.stream,
        shut_pending: &mut conn.shut_pending,
    };
    let next = core.drive_over(&mut conn.conn.echo, &mut io, &mut conn.conn.log);
    let left = io.fresh.len();
    if left > 0 {
        conn.spill.push(&fresh[fresh.len() - left..], usize::MAX);
    }
    next
}

/// The capacity a send buffer starts with under `buffer_size` = `limit`.
fn send_capacity(limit: usize) -> usize {
    limit.min(SEND_CAPACITY)
}

/// The `Transport` `Echo` runs over in this model: reads return bytes already received,
/// writes fill the connection's next send.
struct Completed<'a> {
    /// Older received bytes, read first.
    spill: &'a mut Pending,
    /// Bytes of the receive completion being handled, not yet read.
    fresh: &'a [u8],
    /// How the receive side ended, reported once everything before it was read.
    read_end: Option<i32>,
    /// The next send's bytes (queued behind the send in flight, if there is one).
    out: &'a mut Vec<u8>,
    /// `buffer_size`: most bytes `out` and the send in flight may hold together.
    limit: usize,
    /// Unsent bytes of the send in flight.
    in_flight: usize,
    /// A send is in flight.
    sending: bool,
    /// Drained send buffers to reuse.
    spare: &'a mut Vec<Vec<u8>>,
    /// For the FIN.
    stream: &'a Stream,
    /// Set when the FIN must wait for bytes still to be sent.
    shut_pending: &'a mut bool,
}

impl Read for Completed<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if !self.spill.is_empty() {
            let n = buf.len().min(self.spill.len());
            buf[..n].copy_from_slice(&self.spill.as_slice()[..n]);
            self.spill.consume(n);
            return Ok(n);
        }
        if !self.fresh.is_empty() {
            let n = buf.len().min(self.fresh.len());
            buf[..n].copy_from_slice(&self.fresh[..n]);
            self.fresh = &self.fresh[n..];
            return Ok(n);
        }
        match self.read_end {
            None => Err(io::ErrorKind::WouldBlock.into()),
            Some(0) => Ok(0),
            Some(errno) => Err(io::Error::from_raw_os_error(errno)),
        }
    }
}

impl Write for Completed<'_> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let room = self.limit.saturating_sub(self.in_flight + self.out.len());
        let n = data.len().min(room);
        if n == 0 {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        if self.out.capacity() == 0 {
            // Sized for the common case at once: no reallocation, no copy on growth.
            *self.out = self
                .spare
                .pop()
                .unwrap_or_else(|| Vec::with_capacity(send_capacity(self.limit)));
        }
        self.out.extend_from_slice(&data[..n]);
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Transport for Completed<'_> {
    fn shutdown_write(&mut self) -> io::Result<()> {
        if self.sending || !self.out.is_empty() {
            *self.shut_pending = true;
            return Ok(());
        }
        self.stream.shutdown(Shutdown::Write)
    }
}

/// Checks, before the server reports that it listens, that io_uring can be used at all.
pub(crate) fn probe() -> io::Result<()> {
    crate::sys::uring::probe()
        .map_err(|e| io::Error::new(e.kind(), format!("io_uring is unavailable: {e}")))
}
