//! `uring` model: one thread, io_uring completions.
//!
//! Nothing here waits for readiness: the kernel accepts (one multishot accept on the
//! listener), receives (one multishot receive per connection, into a provided-buffer pool
//! every connection shares) and sends, and the loop only reacts to completions. Everything
//! queued during a round goes to the kernel in the one `io_uring_enter` that also waits for
//! the next completions, so a busy server makes far fewer syscalls than messages.
//!
//! The echo is the same [`EchoState`] every model runs on (the readiness models through
//! `Echo::drive`); here completions drive it directly. A receive completion's buffer is
//! queued as it is and becomes the source of the next send: no copy in user space. At most
//! one send is in flight per connection, so bytes never reorder; what arrives meanwhile
//! queues behind it and goes out in the next send, one `sendmsg` over all the buffers held.
//! A buffer goes back to the pool when the send that read it completes.
//!
//! Bytes are copied out of the pool only where holding the buffer would cost others: the
//! connection is backpressured (its last send was short: the peer reads slowly), it holds
//! [`HELD_PER_CONN`] buffers already, or fewer than [`POOL_RESERVE`] buffers are left for
//! receives.
//!
//! Rules of the receive:
//! - a multishot receive whose completion lacks `IORING_CQE_F_MORE` has ended (peer's FIN,
//!   error, `ENOBUFS` when the pool ran dry, cancellation); it is armed again while the
//!   connection still wants bytes. Held buffers never take the pool below [`POOL_RESERVE`],
//!   so an `ENOBUFS` cannot repeat at once;
//! - a connection holding `buffer_size` unsent bytes (queued, held or in its send: the
//!   state's `unsent`) has its receive cancelled until it drains (`EchoState::plan`). Bytes
//!   the kernel delivered before the cancellation landed are not counted as received yet:
//!   they are copied out of the pool into an overflow buffer (so one stalled peer never pins
//!   the shared buffers) and taken in, in order, as sends make room. A multishot receive has
//!   no length limit, so this overshoot is bounded only by what the kernel can receive
//!   before the loop sees the completions: at most the free buffers of the pool, which is
//!   why the pool is small (1 MiB).
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

use std::collections::VecDeque;
use std::io;
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
use crate::policy::interest::{State, Trigger};
use crate::sys::socket::{Listener, Mode, Stream};
use crate::sys::uring::{Chunk, Completion, MAX_CHUNKS, OpId, OpKind, RecvBuf, Ring};
use crate::worker::buffer::Pending;
use crate::worker::{EchoState, Moved, ReadUntil};

/// Submission queue slots (the completion queue has four times as many).
const RING_ENTRIES: u32 = 1024;
/// Completions handled per round, so the operations they queue fit the submission queue.
const ROUND_BUDGET: usize = RING_ENTRIES as usize / 4;
/// Receive buffers in the shared pool (a power of two). Their total bounds what a
/// connection can receive past `buffer_size` before its cancellation lands; 32 × 32 KiB
/// measured as well as 64 × 64 KiB or 16 × 64 KiB, and better than 128 × 16 KiB.
const POOL_BUFFERS: u16 = 32;
/// Largest receive buffer; smaller when `buffer_size` is (the pool is at most 1 MiB).
const MAX_POOL_BUFFER: usize = 32 * 1024;
/// Pool buffers one connection may hold for its sends; beyond that it copies.
const HELD_PER_CONN: u16 = 16;
/// Pool buffers always left for receives: below this many free, received bytes are copied
/// instead of held.
const POOL_RESERVE: usize = POOL_BUFFERS as usize / 4;

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
    // A completion is reported once, like an edge; nothing here yields, so nothing resumes.
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
        let timeout = core.timeout(core.now_ms(), server.conns.len(), false);
        server.ring.submit_and_wait(timeout)?;
        let now = server.core.now_ms();
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
    /// Shared loop bookkeeping: clock, echo options, admission, drain.
    core: LoopCore,
    /// The ring; owns the receive pool and every send's chunks in flight.
    ring: Ring,
    /// Open connections; the slab key and the connection's generation make up the tags of
    /// its operations.
    conns: Slab<UringConn>,
    /// Generation of the next connection (tells a slab slot's successive occupants apart).
    next_generation: u32,
}

/// A connection of the `uring` model.
#[derive(Debug)]
struct UringConn {
    /// Socket and idle clock (its `Echo` and `watching` are unused here: `state` is the
    /// echo).
    conn: Conn,
    /// Tells this occupant of the slab slot from earlier ones (24 bits are used).
    generation: u32,
    /// The echo: bytes received and not yet sent (`queue` plus the send in flight), the
    /// peer's FIN; it says what to send, whether to receive, when to finish.
    state: EchoState,
    /// The multishot receive, while armed.
    recv: Option<OpId>,
    /// A cancellation of `recv` has been asked for.
    recv_cancelled: bool,
    /// The receive saw the peer's FIN; `state` learns it once `overflow` is taken in.
    fin: bool,
    /// Received bytes not in flight, oldest first: held pool buffers and copies. Together
    /// they hold `state.unsent() - in_flight` bytes.
    queue: VecDeque<Chunk>,
    /// Pool buffers in `queue` and in the send in flight.
    held: u16,
    /// The last send was short (the peer reads slowly): copy instead of holding buffers.
    backpressured: bool,
    /// Bytes delivered past the bound before the receive's cancellation landed; not yet
    /// received in `state`, taken in first as room returns.
    overflow: Pending,
    /// The send in flight (its chunks belong to the ring until it completes).
    send: Option<OpId>,
    /// Bytes of the send in flight (zero when none is).
    in_flight: usize,
}

impl OpenConns for Slab<UringConn> {
    fn count(&self) -> usize {
        self.len()
    }

    fn take_all(&mut self) -> Vec<Conn> {
        // Their operations end, and their buffers are freed, when the ring is dropped, right
        // after.
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

/// Appends a copy of `data` to the queue's last chunk if it is a copy, else as a new one.
fn append_copy(queue: &mut VecDeque<Chunk>, data: &[u8]) {
    if data.is_empty() {
        return;
    }
    if let Some(Chunk::Owned { bytes, .. }) = queue.back_mut() {
        bytes.extend_from_slice(data);
    } else {
        queue.push_back(Chunk::Owned {
            bytes: data.to_vec(),
            from: 0,
        });
    }
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
            state: EchoState::new(),
            recv: None,
            recv_cancelled: false,
            fin: false,
            queue: VecDeque::new(),
            held: 0,
            backpressured: false,
            overflow: Pending::new(),
            send: None,
            in_flight: 0,
        });
        self.sync_recv(key, true);
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
            // The connection closed before its cancelled operations ended; now the kernel
            // is done with their buffers.
            if let Some(buf) = c.buf {
                self.ring.recycle(buf);
            }
            for chunk in c.sent.into_iter().flatten() {
                self.ring.release(chunk);
            }
            return;
        }
        let conn = &mut self.conns[key];
        conn.conn.last_active_ms = now;
        let before = conn.state.state(&self.core.echo);
        let mut moved = Moved::default();
        let open = match c.kind {
            OpKind::Recv => self.on_recv(key, c, &mut moved),
            OpKind::Send => self.on_send(key, c, &mut moved),
            OpKind::Accept | OpKind::Poll => true,
        };
        if open {
            self.progress(key, before, moved);
        } else {
            // Closed already (with its log line): only the counters take these bytes.
            self.core.completed(moved, before, before, &mut None);
        }
    }

    /// A receive completion; returns whether the connection is still open.
    fn on_recv(&mut self, key: usize, c: Completion, moved: &mut Moved) -> bool {
        let conn = &mut self.conns[key];
        if !c.more {
            conn.recv = None;
            conn.recv_cancelled = false;
        }
        match c.result {
            n if n > 0 => {
                if let Some(buf) = c.buf {
                    self.receive(key, buf, moved);
                }
            }
            // ENOBUFS: the pool ran dry; ECANCELED: we asked. Either way the receive has
            // ended, and is armed again if still wanted.
            n if n == -libc::ENOBUFS || n == -libc::ECANCELED => {}
            // The peer's FIN: the state learns it after the bytes before it.
            0 => conn.fin = true,
            n => {
                // A reset (or other error) ends the echo at once, as a failed read does.
                self.close(key, classify(&io::Error::from_raw_os_error(-n)));
                return false;
            }
        }
        true
    }

    /// Takes in the bytes of a receive buffer: held for the next send, or copied where
    /// holding it would cost others; bytes past the bound go to the overflow.
    fn receive(&mut self, key: usize, buf: RecvBuf, moved: &mut Moved) {
        let free = self.ring.free_buffers();
        let conn = &mut self.conns[key];
        let n = buf.len();
        let room = if conn.overflow.is_empty() {
            conn.state.room(&self.core.echo)
        } else {
            0
        };
        let take = n.min(room);
        let hold =
            take == n && !conn.backpressured && conn.held < HELD_PER_CONN && free >= POOL_RESERVE;
        if hold {
            conn.queue.push_back(Chunk::Pool { buf, from: 0 });
            conn.held += 1;
        } else {
            let data = self.ring.data(&buf);
            append_copy(&mut conn.queue, &data[..take]);
            conn.overflow.push(&data[take..], usize::MAX);
            self.ring.recycle(buf);
        }
        conn.state.received(take);
        moved.read += take as u64;
    }

    /// A send completion; returns whether the connection is still open.
    fn on_send(&mut self, key: usize, c: Completion, moved: &mut Moved) -> bool {
        let error = c.error();
        let chunks = c.sent.unwrap_or_default();
        let conn = &mut self.conns[key];
        conn.send = None;
        let was = std::mem::take(&mut conn.in_flight);
        let sent = match error {
            Some(e) => {
                self.release_all(key, chunks);
                self.close(key, classify(&e));
                return false;
            }
            None => c.result as usize,
        };
        if sent == 0 {
            self.release_all(key, chunks);
            self.close(key, CloseReason::Error);
            return false;
        }
        conn.state.sent(sent);
        moved.written += sent as u64;
        let mut left = sent;
        let mut unsent = Vec::new();
        for mut chunk in chunks {
            if left >= chunk.len() {
                left -= chunk.len();
                if matches!(chunk, Chunk::Pool { .. }) {
                    conn.held -= 1;
                }
                self.ring.release(chunk);
            } else {
                chunk.advance(left);
                left = 0;
                unsent.push(chunk);
            }
        }
        // The rest of this send goes first, before anything newer.
        for chunk in unsent.into_iter().rev() {
            conn.queue.push_front(chunk);
        }
        conn.backpressured = sent < was;
        if conn.backpressured {
            // The peer reads slowly: copy what is held, so the pool is not pinned meanwhile.
            for chunk in conn.queue.iter_mut() {
                if let Chunk::Pool { .. } = chunk {
                    let bytes = self.ring.chunk_bytes(chunk).to_vec();
                    let pool = std::mem::replace(chunk, Chunk::Owned { bytes, from: 0 });
                    conn.held -= 1;
                    self.ring.release(pool);
                }
            }
        }
        true
    }

    /// Gives back the chunks of a failed send.
    fn release_all(&mut self, key: usize, chunks: Vec<Chunk>) {
        let conn = &mut self.conns[key];
        for chunk in chunks {
            if matches!(chunk, Chunk::Pool { .. }) {
                conn.held -= 1;
            }
            self.ring.release(chunk);
        }
    }

    /// After a completion: takes in overflow as room allows, passes on the FIN, counts, and
    /// acts on the state's plan (finish, send, receive or not).
    fn progress(&mut self, key: usize, before: State, mut moved: Moved) {
        let options = self.core.echo;
        let conn = &mut self.conns[key];
        if !conn.overflow.is_empty() {
            let take = conn.overflow.len().min(conn.state.room(&options));
            append_copy(&mut conn.queue, &conn.overflow.as_slice()[..take]);
            conn.overflow.consume(take);
            conn.state.received(take);
            moved.read += take as u64;
        }
        if conn.fin && conn.overflow.is_empty() {
            conn.state.read_eof();
        }
        self.core.completed(
            moved,
            before,
            conn.state.state(&options),
            &mut conn.conn.log,
        );
        let plan = conn.state.plan(&options, conn.in_flight);
        if plan.finish {
            let reason = match conn.conn.stream.shutdown(Shutdown::Write) {
                Ok(()) => CloseReason::Eof,
                Err(e) => classify(&e),
            };
            self.close(key, reason);
            return;
        }
        if plan.send > 0 && !self.start_send(key) {
            return;
        }
        let conn = &self.conns[key];
        let receive = plan.receive && !conn.fin && conn.overflow.is_empty();
        self.sync_recv(key, receive);
    }

    /// Sends what is queued (up to [`MAX_CHUNKS`] chunks); returns whether the connection is
    /// still open.
    fn start_send(&mut self, key: usize) -> bool {
        let conn = &mut self.conns[key];
        let n = conn.queue.len().min(MAX_CHUNKS);
        let chunks: Vec<Chunk> = conn.queue.drain(..n).collect();
        conn.in_flight = chunks.iter().map(Chunk::len).sum();
        let tag = conn_tag(key, conn.generation);
        match self
            .ring
            .send_chunks(conn.conn.stream.as_raw_fd(), chunks, tag)
        {
            Ok(op) => {
                self.conns[key].send = Some(op);
                true
            }
            Err(_) => {
                // Never queued: the chunks were dropped with the entry, pool buffers included
                // (the pool shrinks by them, the server goes on).
                self.conns[key].in_flight = 0;
                self.close(key, CloseReason::Error);
                false
            }
        }
    }

    /// Arms the receive while `wanted` (the state has room, the peer is open, nothing waits
    /// in the overflow), cancels it otherwise.
    fn sync_recv(&mut self, key: usize, wanted: bool) {
        let conn = &mut self.conns[key];
        match (wanted, conn.recv) {
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
    /// they end), gives its held buffers back and counts the close.
    fn close(&mut self, key: usize, reason: CloseReason) {
        let mut conn = self.conns.remove(key);
        if let (Some(op), false) = (conn.recv, conn.recv_cancelled) {
            let _ = self.ring.cancel(op);
        }
        if let Some(op) = conn.send {
            // A send to a peer that stopped reading would otherwise never end; its chunks
            // come back with its completion.
            let _ = self.ring.cancel(op);
        }
        for chunk in conn.queue {
            self.ring.release(chunk);
        }
        self.core.closed_holding(
            reason,
            conn.state.unsent() + conn.overflow.len(),
            conn.conn.log.take(),
        );
    }
}

/// Checks, before the server reports that it listens, that io_uring can be used at all.
pub(crate) fn probe() -> io::Result<()> {
    crate::sys::uring::probe()
        .map_err(|e| io::Error::new(e.kind(), format!("io_uring is unavailable: {e}")))
}
