//! `Ring`: the io_uring instance of the `uring` model, on the `io-uring` crate, behind a
//! small safe API.
//!
//! The one hazard of a completion interface is memory the kernel uses after the call that
//! handed it over returned. Here the kernel only ever touches memory the `Ring` owns:
//! - received bytes land in the ring's provided-buffer pool ([`BufPool`]); a completion hands
//!   one buffer to the caller as a [`RecvBuf`] token, and the kernel gets it back only through
//!   [`Ring::recycle`];
//! - a send's bytes are a `Vec<u8>` the ring keeps (in its table of operations in flight) until
//!   the send's completion hands it back.
//!
//! Dropping the ring cancels whatever is still in flight and waits (boundedly) for it to end
//! before that memory is freed; if the kernel does not let go in time the memory is leaked,
//! never freed under it.
//!
//! Each operation is identified by an [`OpId`] (its slot in the table and a generation, so a
//! cancellation can never hit a later operation that reused the slot) and carries the caller's
//! `tag`, returned with every completion.

use std::alloc::{self, Layout};
use std::io;
use std::os::fd::{FromRawFd, OwnedFd, RawFd};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU16, Ordering};
use std::time::{Duration, Instant};

use io_uring::types::{BufRingEntry, Fd, SubmitArgs, Timespec};
use io_uring::{IoUring, cqueue, opcode, squeue};
use slab::Slab;

/// The provided-buffer group of the pool (the ring has one).
const BGID: u16 = 0;
/// `user_data` of cancellation requests: their own completions are of no interest.
const CANCEL: u64 = u64::MAX;
/// Most chunks one send takes (`sendmsg` accepts up to `IOV_MAX`, 1024).
pub(crate) const MAX_CHUNKS: usize = 64;
/// How long dropping the ring waits for cancelled operations to end.
const DROP_WAIT: Duration = Duration::from_secs(1);

/// Identifies one operation in flight: `slot | generation << 32`, its `user_data`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct OpId(u64);

/// What kind of operation completed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum OpKind {
    /// Multishot accept.
    Accept,
    /// Multishot poll for readability.
    Poll,
    /// Multishot receive into the buffer pool.
    Recv,
    /// One send.
    Send,
}

/// One operation in flight.
#[derive(Debug)]
struct Op {
    /// Matches the generation in the operation's `user_data`.
    generation: u32,
    /// The caller's tag.
    tag: u64,
    kind: OpKind,
    /// A send's bytes, owned here until the send completes (the kernel reads them).
    send: Option<SendMem>,
}

/// The memory of one send in flight: the chunks it reads and, for a vectored send, the
/// `iovec`s and `msghdr` the kernel reads them through. Boxed, so they do not move.
struct SendMem {
    chunks: Vec<Chunk>,
    /// For `sendmsg`: one `iovec` per chunk (empty for a plain send).
    _iov: Box<[libc::iovec]>,
    /// For `sendmsg`: points at `_iov`.
    _msg: Option<Box<libc::msghdr>>,
}

impl std::fmt::Debug for SendMem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SendMem")
            .field("chunks", &self.chunks)
            .finish_non_exhaustive()
    }
}

/// Bytes to send: a receive buffer of the pool, held (not recycled) until the send that
/// reads it completes, or owned memory. Only `bytes[from..]` is still to be sent.
#[derive(Debug)]
pub(crate) enum Chunk {
    /// A receive buffer, sent as the kernel filled it (no copy).
    Pool {
        /// The buffer; give it back with [`Ring::recycle`] once sent.
        buf: RecvBuf,
        /// Bytes of it already sent.
        from: usize,
    },
    /// Bytes copied out of the pool.
    Owned {
        /// The bytes.
        bytes: Vec<u8>,
        /// Bytes of it already sent.
        from: usize,
    },
}

impl Chunk {
    /// Bytes still to send.
    pub(crate) fn len(&self) -> usize {
        match self {
            Chunk::Pool { buf, from } => buf.len - from,
            Chunk::Owned { bytes, from } => bytes.len() - from,
        }
    }

    /// Marks `n <= len()` more bytes as sent.
    pub(crate) fn advance(&mut self, n: usize) {
        debug_assert!(n <= self.len());
        match self {
            Chunk::Pool { from, .. } | Chunk::Owned { from, .. } => *from += n,
        }
    }
}

/// A provided buffer the kernel filled and handed over; give it back with
/// [`Ring::recycle`] (a token dropped without that only shrinks the pool).
#[derive(Debug)]
pub(crate) struct RecvBuf {
    /// Buffer id within the pool.
    bid: u16,
    /// Bytes received into it.
    len: usize,
}

impl RecvBuf {
    /// Bytes received into the buffer.
    pub(crate) fn len(&self) -> usize {
        self.len
    }
}

/// One completion.
#[derive(Debug)]
pub(crate) struct Completion {
    /// The caller's tag for the operation.
    pub tag: u64,
    /// Which operation it was.
    pub kind: OpKind,
    /// The result: bytes, or a negated errno.
    pub result: i32,
    /// Whether a multishot operation stays armed (`IORING_CQE_F_MORE`); when false the
    /// operation has ended and its `OpId` is void.
    pub more: bool,
    /// For a receive with data: the buffer holding it.
    pub buf: Option<RecvBuf>,
    /// For a send: its chunks back, as they were handed over (the result says how many of
    /// their bytes went out).
    pub sent: Option<Vec<Chunk>>,
    /// For an accept: the new connection (close-on-exec).
    pub accepted: Option<OwnedFd>,
}

impl Completion {
    /// The error a negative result stands for.
    pub(crate) fn error(&self) -> Option<io::Error> {
        (self.result < 0).then(|| io::Error::from_raw_os_error(-self.result))
    }
}

/// Which optional setup flags the kernel took.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Setup {
    /// `IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN` (kernel 6.1+).
    DeferTaskrun,
    /// `IORING_SETUP_COOP_TASKRUN` (5.19+).
    CoopTaskrun,
    /// None.
    Plain,
}

/// An io_uring with a provided-buffer pool for receives.
pub(crate) struct Ring {
    /// Declared first: dropped (unmapped and closed) before the pool it reads.
    ring: IoUring,
    /// Receive buffers shared by every connection.
    pool: BufPool,
    /// Operations in flight, by slot.
    ops: Slab<Op>,
    /// Generation of the next operation.
    next_generation: u32,
    /// Which setup flags took.
    setup: Setup,
}

impl std::fmt::Debug for Ring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ring")
            .field("setup", &self.setup)
            .field("in_flight", &self.ops.len())
            .finish_non_exhaustive()
    }
}

/// Checks that io_uring can be set up at all (it is missing on old kernels, and may be
/// disabled by `kernel.io_uring_disabled` or a seccomp filter).
pub(crate) fn probe() -> io::Result<()> {
    IoUring::<squeue::Entry, cqueue::Entry>::new(2).map(drop)
}

impl Ring {
    /// A ring of `entries` submission slots (completion queue four times that) and a pool of
    /// `buf_count` (a power of two) receive buffers of `buf_size` bytes each.
    pub(crate) fn new(entries: u32, buf_count: u16, buf_size: u32) -> io::Result<Ring> {
        let (ring, setup) = build(entries)?;
        // Saves a descriptor lookup per `io_uring_enter`; an old kernel just goes without.
        let _ = ring.submitter().register_ring_fd();
        let pool = BufPool::new(buf_count, buf_size)?;
        // SAFETY: the entries array lives in `pool`, which outlives the registration: the
        // ring is dropped (and the group with it) before the pool, see `Ring`'s field order.
        unsafe {
            ring.submitter().register_buf_ring_with_flags(
                pool.ring.as_ptr() as u64,
                buf_count,
                BGID,
                0,
            )
        }
        .map_err(|e| io::Error::new(e.kind(), format!("provided buffer ring: {e}")))?;
        Ok(Ring {
            ring,
            pool,
            ops: Slab::new(),
            next_generation: 0,
            setup,
        })
    }

    /// Which optional setup flags the kernel accepted.
    pub(crate) fn setup(&self) -> Setup {
        self.setup
    }

    /// Number of operations in flight (the tests check that a cancel releases them all).
    #[cfg(test)]
    pub(crate) fn in_flight(&self) -> usize {
        self.ops.len()
    }

    fn start(&mut self, kind: OpKind, tag: u64, send: Option<SendMem>) -> OpId {
        let generation = self.next_generation;
        self.next_generation = self.next_generation.wrapping_add(1);
        let slot = self.ops.insert(Op {
            generation,
            tag,
            kind,
            send,
        });
        OpId(slot as u64 | u64::from(generation) << 32)
    }

    /// Queues `entry`, submitting first if the queue is full.
    fn push(&mut self, entry: &squeue::Entry) -> io::Result<()> {
        loop {
            // SAFETY: every entry built here refers only to descriptors and to memory the
            // ring owns until the operation's last completion (the pool, or a send buffer
            // held in `ops`), so it stays valid for as long as the kernel may use it.
            if unsafe { self.ring.submission().push(entry) }.is_ok() {
                return Ok(());
            }
            self.ring.submit()?;
        }
    }

    /// Arms a multishot accept on listening socket `fd`.
    pub(crate) fn accept_multi(&mut self, fd: RawFd, tag: u64) -> io::Result<OpId> {
        let id = self.start(OpKind::Accept, tag, None);
        let entry = opcode::AcceptMulti::new(Fd(fd))
            .flags(libc::SOCK_CLOEXEC)
            .build()
            .user_data(id.0);
        self.push_or_forget(id, &entry)
    }

    /// Arms a multishot poll for readability of `fd`.
    pub(crate) fn poll_multi(&mut self, fd: RawFd, tag: u64) -> io::Result<OpId> {
        let id = self.start(OpKind::Poll, tag, None);
        let entry = opcode::PollAdd::new(Fd(fd), libc::POLLIN as u32)
            .multi(true)
            .build()
            .user_data(id.0);
        self.push_or_forget(id, &entry)
    }

    /// Arms a multishot receive on `fd` into the buffer pool.
    pub(crate) fn recv_multi(&mut self, fd: RawFd, tag: u64) -> io::Result<OpId> {
        let id = self.start(OpKind::Recv, tag, None);
        let entry = opcode::RecvMulti::new(Fd(fd), BGID).build().user_data(id.0);
        self.push_or_forget(id, &entry)
    }

    /// Sends the bytes of `chunks`, in order, on `fd` (without `SIGPIPE`): one plain send for
    /// one chunk, one `sendmsg` over all of them otherwise (at most [`MAX_CHUNKS`]). The ring
    /// keeps the chunks until the completion hands them back.
    pub(crate) fn send_chunks(
        &mut self,
        fd: RawFd,
        chunks: Vec<Chunk>,
        tag: u64,
    ) -> io::Result<OpId> {
        debug_assert!(!chunks.is_empty() && chunks.len() <= MAX_CHUNKS);
        let (entry, iov, msg) = if let [one] = &chunks[..] {
            let bytes = self.chunk_bytes(one);
            let len = u32::try_from(bytes.len()).unwrap_or(u32::MAX);
            let entry = opcode::Send::new(Fd(fd), bytes.as_ptr(), len)
                .flags(libc::MSG_NOSIGNAL)
                .build();
            (entry, Box::default(), None)
        } else {
            let mut iov: Box<[libc::iovec]> = chunks
                .iter()
                .map(|c| {
                    let bytes = self.chunk_bytes(c);
                    libc::iovec {
                        iov_base: bytes.as_ptr().cast_mut().cast(),
                        iov_len: bytes.len(),
                    }
                })
                .collect();
            // SAFETY: all-zero is a valid `msghdr` (no name, no control data, no iovecs).
            let mut msg: Box<libc::msghdr> = Box::new(unsafe { std::mem::zeroed() });
            msg.msg_iov = iov.as_mut_ptr();
            msg.msg_iovlen = iov.len() as _;
            let entry = opcode::SendMsg::new(Fd(fd), &*msg)
                .flags(libc::MSG_NOSIGNAL as u32)
                .build();
            (entry, iov, Some(msg))
        };
        // The chunks' memory (the pool, or a Vec's heap block), the iovecs and the msghdr do
        // not move when their owners move into `ops`.
        let id = self.start(
            OpKind::Send,
            tag,
            Some(SendMem {
                chunks,
                _iov: iov,
                _msg: msg,
            }),
        );
        self.push_or_forget(id, &entry.user_data(id.0))
    }

    /// The bytes of `chunk` still to send.
    pub(crate) fn chunk_bytes<'a>(&'a self, chunk: &'a Chunk) -> &'a [u8] {
        match chunk {
            Chunk::Pool { buf, from } => &self.pool.data(buf)[*from..],
            Chunk::Owned { bytes, from } => &bytes[*from..],
        }
    }

    /// Receive buffers the kernel can fill right now (given to it and not yet used).
    pub(crate) fn free_buffers(&self) -> usize {
        usize::from(self.pool.count) - usize::from(self.pool.out)
    }

    fn push_or_forget(&mut self, id: OpId, entry: &squeue::Entry) -> io::Result<OpId> {
        match self.push(entry) {
            Ok(()) => Ok(id),
            Err(e) => {
                // Never queued: the kernel never saw its memory.
                self.ops.remove((id.0 & u64::from(u32::MAX)) as usize);
                Err(e)
            }
        }
    }

    /// Asks the kernel to cancel operation `id` (its last completion still comes, usually
    /// with `ECANCELED`).
    pub(crate) fn cancel(&mut self, id: OpId) -> io::Result<()> {
        let entry = opcode::AsyncCancel::new(id.0).build().user_data(CANCEL);
        self.push(&entry)
    }

    /// Submits what is queued and waits until at least one completion is ready or `timeout`
    /// passes (`None`: no limit; zero: do not wait). A signal ends the wait early.
    pub(crate) fn submit_and_wait(&mut self, timeout: Option<Duration>) -> io::Result<()> {
        let ready = !self.ring.completion().is_empty();
        let result = match timeout {
            _ if ready => self.ring.submit(),
            Some(t) if t.is_zero() => self.ring.submit(),
            None => self.ring.submit_and_wait(1),
            Some(t) => {
                let ts = Timespec::new().sec(t.as_secs()).nsec(t.subsec_nanos());
                let args = SubmitArgs::new().timespec(&ts);
                self.ring.submitter().submit_with_args(1, &args)
            }
        };
        match result {
            Ok(_) => Ok(()),
            // ETIME: the timeout passed; EINTR: a signal; EBUSY: completions are backed up
            // in the kernel (the caller reaps some, then enters again).
            Err(e)
                if matches!(
                    e.raw_os_error(),
                    Some(libc::ETIME | libc::EINTR | libc::EBUSY)
                ) =>
            {
                Ok(())
            }
            Err(e) => Err(e),
        }
    }

    /// The next completion, if one is ready. Completions of cancellation requests, and
    /// stray ones no operation matches, are skipped.
    pub(crate) fn next_completion(&mut self) -> Option<Completion> {
        loop {
            let cqe = self.ring.completion().next()?;
            let user_data = cqe.user_data();
            if user_data == CANCEL {
                continue;
            }
            let slot = (user_data & u64::from(u32::MAX)) as usize;
            let generation = (user_data >> 32) as u32;
            let flags = cqe.flags();
            let result = cqe.result();
            let more = cqueue::more(flags);
            let buf = cqueue::buffer_select(flags).map(|bid| {
                self.pool.out += 1;
                RecvBuf {
                    bid,
                    len: usize::try_from(result)
                        .unwrap_or(0)
                        .min(self.pool.size as usize),
                }
            });
            let Some(op) = self.ops.get(slot).filter(|op| op.generation == generation) else {
                // Cannot happen (a slot is freed only by its operation's last completion);
                // a buffer that came with it goes back to the pool.
                if let Some(buf) = buf {
                    self.recycle(buf);
                }
                continue;
            };
            let (tag, kind) = (op.tag, op.kind);
            let mut sent = None;
            if !more {
                let op = self.ops.remove(slot);
                sent = op.send.map(|m| m.chunks);
            }
            let accepted = (kind == OpKind::Accept && result >= 0)
                // SAFETY: a successful accept completion carries a new descriptor that
                // nothing else owns.
                .then(|| unsafe { OwnedFd::from_raw_fd(result) });
            return Some(Completion {
                tag,
                kind,
                result,
                more,
                buf,
                sent,
                accepted,
            });
        }
    }

    /// The bytes received into `buf`.
    pub(crate) fn data(&self, buf: &RecvBuf) -> &[u8] {
        self.pool.data(buf)
    }

    /// Gives `buf` back to the kernel for further receives.
    pub(crate) fn recycle(&mut self, buf: RecvBuf) {
        self.pool.out -= 1;
        self.pool.give(buf.bid);
    }

    /// Gives back the pool buffer of a chunk that is done with (an owned one is dropped).
    pub(crate) fn release(&mut self, chunk: Chunk) {
        if let Chunk::Pool { buf, .. } = chunk {
            self.recycle(buf);
        }
    }
}

impl Drop for Ring {
    fn drop(&mut self) {
        // Cancel everything still in flight and wait for the kernel to let go of the pool
        // and the send buffers before they are freed.
        let ids: Vec<OpId> = self
            .ops
            .iter()
            .map(|(slot, op)| OpId(slot as u64 | u64::from(op.generation) << 32))
            .collect();
        for id in ids {
            if self.cancel(id).is_err() {
                break;
            }
        }
        let deadline = Instant::now() + DROP_WAIT;
        while !self.ops.is_empty() {
            let now = Instant::now();
            if now >= deadline || self.submit_and_wait(Some(deadline - now)).is_err() {
                break;
            }
            while let Some(c) = self.next_completion() {
                if let Some(buf) = c.buf {
                    self.recycle(buf);
                }
                for chunk in c.sent.into_iter().flatten() {
                    self.release(chunk);
                }
            }
        }
        if !self.ops.is_empty() {
            // The kernel may still write into the pool or read a send buffer: leak them
            // rather than free memory under it.
            self.pool.leak();
            for op in self.ops.drain() {
                std::mem::forget(op.send);
            }
        } else {
            let _ = self.ring.submitter().unregister_buf_ring(BGID);
        }
    }
}

/// Builds the ring with the cheapest completion delivery the kernel has: deferred task work
/// for a single issuer (6.1+), else cooperative task work (5.19+), else plain. A kernel that
/// does not know a flag answers `EINVAL`.
fn build(entries: u32) -> io::Result<(IoUring, Setup)> {
    let cq = entries * 4;
    let mut b = IoUring::builder();
    b.setup_cqsize(cq)
        .setup_single_issuer()
        .setup_defer_taskrun();
    match b.build(entries) {
        Ok(ring) => return Ok((ring, Setup::DeferTaskrun)),
        Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {}
        Err(e) => return Err(e),
    }
    let mut b = IoUring::builder();
    b.setup_cqsize(cq).setup_coop_taskrun();
    match b.build(entries) {
        Ok(ring) => return Ok((ring, Setup::CoopTaskrun)),
        Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {}
        Err(e) => return Err(e),
    }
    let mut b = IoUring::builder();
    b.setup_cqsize(cq);
    Ok((b.build(entries)?, Setup::Plain))
}

/// The provided-buffer pool: `count` buffers of `size` bytes, and the ring of entries
/// through which the kernel picks them (one registered buffer group).
#[derive(Debug)]
struct BufPool {
    /// The entries array (`count` × 16 bytes, page-aligned); the kernel reads it.
    ring: NonNull<BufRingEntry>,
    /// The buffers, `count * size` bytes; the kernel writes into those it picked.
    mem: NonNull<u8>,
    /// Number of buffers (a power of two).
    count: u16,
    /// Bytes per buffer.
    size: u32,
    /// Our copy of the ring's tail (the kernel owns the head).
    tail: u16,
    /// Buffers handed out by completions and not given back yet.
    out: u16,
    /// Set when the memory must outlive the process's use of it (see `Ring::drop`).
    leaked: bool,
}

impl BufPool {
    fn new(count: u16, size: u32) -> io::Result<BufPool> {
        assert!(count.is_power_of_two() && size > 0);
        let ring_layout = Self::ring_layout(count);
        let mem_layout = Self::mem_layout(count, size);
        // SAFETY: both layouts have a non-zero size.
        let ring = unsafe { alloc::alloc_zeroed(ring_layout) };
        let Some(ring) = NonNull::new(ring.cast::<BufRingEntry>()) else {
            return Err(io::ErrorKind::OutOfMemory.into());
        };
        // SAFETY: as above. Left uninitialised: only the kernel writes into it, and we read
        // only bytes a completion says it wrote.
        let mem = unsafe { alloc::alloc(mem_layout) };
        let Some(mem) = NonNull::new(mem) else {
            // SAFETY: allocated just above with this layout.
            unsafe { alloc::dealloc(ring.as_ptr().cast(), ring_layout) };
            return Err(io::ErrorKind::OutOfMemory.into());
        };
        let mut pool = BufPool {
            ring,
            mem,
            count,
            size,
            tail: 0,
            out: 0,
            leaked: false,
        };
        for bid in 0..count {
            pool.give(bid);
        }
        Ok(pool)
    }

    fn ring_layout(count: u16) -> Layout {
        let bytes = usize::from(count) * std::mem::size_of::<BufRingEntry>();
        Layout::from_size_align(bytes, 4096).expect("a small power-of-two layout")
    }

    fn mem_layout(count: u16, size: u32) -> Layout {
        Layout::from_size_align(usize::from(count) * size as usize, 4096)
            .expect("a layout of at most 2^16 * 2^32 bytes")
    }

    /// Adds buffer `bid` at the tail and publishes it to the kernel.
    fn give(&mut self, bid: u16) {
        let mask = self.count - 1;
        let index = usize::from(self.tail & mask);
        // SAFETY: `index < count`, so the entry lies inside the entries array; the kernel
        // reads only entries between its head and the published tail, and this one is past
        // the tail until the store below.
        let entry = unsafe { &mut *self.ring.as_ptr().add(index) };
        // SAFETY: `bid < count`, so the buffer lies inside `mem`.
        let addr = unsafe { self.mem.as_ptr().add(usize::from(bid) * self.size as usize) };
        entry.set_addr(addr as u64);
        entry.set_len(self.size);
        entry.set_bid(bid);
        self.tail = self.tail.wrapping_add(1);
        // SAFETY: the tail is the `resv` field of entry 0, a properly aligned u16 inside the
        // entries array that the kernel reads concurrently, hence the atomic (release) store
        // that also publishes the entry written above.
        unsafe {
            let tail = BufRingEntry::tail(self.ring.as_ptr()).cast_mut();
            (*tail.cast::<AtomicU16>()).store(self.tail, Ordering::Release);
        }
    }

    fn data(&self, buf: &RecvBuf) -> &[u8] {
        let len = buf.len.min(self.size as usize);
        // SAFETY: `bid < count` (the kernel only hands out ids we gave it), so the bytes lie
        // inside `mem`; the completion that produced `buf` says the kernel wrote `len` of
        // them, and it does not touch the buffer again until it is given back, which takes
        // the `RecvBuf` (and so ends this borrow).
        unsafe {
            std::slice::from_raw_parts(
                self.mem
                    .as_ptr()
                    .add(usize::from(buf.bid) * self.size as usize),
                len,
            )
        }
    }

    fn leak(&mut self) {
        self.leaked = true;
    }
}

impl Drop for BufPool {
    fn drop(&mut self) {
        if self.leaked {
            return;
        }
        // SAFETY: allocated in `new` with these layouts; the ring that used them is gone and
        // no operation that could touch them is in flight (otherwise `leaked` is set).
        unsafe {
            alloc::dealloc(self.ring.as_ptr().cast(), Self::ring_layout(self.count));
            alloc::dealloc(self.mem.as_ptr(), Self::mem_layout(self.count, self.size));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::net::{TcpListener, TcpStream};
    use std::os::fd::AsRawFd;

    fn ring() -> Option<Ring> {
        match Ring::new(8, 4, 64) {
            Ok(ring) => Some(ring),
            Err(e) => {
                eprintln!("io_uring unavailable here ({e}); skipping");
                None
            }
        }
    }

    fn wait_one(ring: &mut Ring) -> Completion {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(c) = ring.next_completion() {
                return c;
            }
            assert!(Instant::now() < deadline, "no completion within 10 s");
            ring.submit_and_wait(Some(Duration::from_millis(100)))
                .unwrap();
        }
    }

    /// Accept, receive into the pool, send back, and see the receive end at the peer's FIN.
    #[test]
    fn accept_receive_send_and_eof() {
        let Some(mut ring) = ring() else { return };
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        ring.accept_multi(listener.as_raw_fd(), 1).unwrap();
        let mut client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let c = wait_one(&mut ring);
        assert_eq!((c.kind, c.tag, c.more), (OpKind::Accept, 1, true));
        let conn = c.accepted.expect("a descriptor");
        ring.recv_multi(conn.as_raw_fd(), 2).unwrap();
        client.write_all(b"hello").unwrap();
        let c = wait_one(&mut ring);
        assert_eq!((c.kind, c.result, c.more), (OpKind::Recv, 5, true));
        let buf = c.buf.expect("a buffer");
        let bytes = ring.data(&buf).to_vec();
        assert_eq!(bytes, b"hello");
        // Sent straight from the pool buffer, then from owned bytes with it: one sendmsg.
        let chunks = vec![Chunk::Pool { buf, from: 1 }];
        ring.send_chunks(conn.as_raw_fd(), chunks, 3).unwrap();
        let c = wait_one(&mut ring);
        assert_eq!((c.kind, c.result), (OpKind::Send, 4));
        let mut sent = c.sent.expect("the chunks back");
        assert_eq!(sent.len(), 1);
        sent[0].advance(4);
        assert_eq!(sent[0].len(), 0);
        let owned = Chunk::Owned {
            bytes: b"xyz".to_vec(),
            from: 0,
        };
        sent.push(owned);
        ring.send_chunks(conn.as_raw_fd(), sent, 4).unwrap();
        let c = wait_one(&mut ring);
        assert_eq!((c.kind, c.result), (OpKind::Send, 3));
        for chunk in c.sent.expect("the chunks back") {
            ring.release(chunk);
        }
        assert_eq!(ring.free_buffers(), 4);
        let mut back = [0; 7];
        client.read_exact(&mut back).unwrap();
        assert_eq!(&back, b"elloxyz");
        drop(client);
        let c = wait_one(&mut ring);
        assert_eq!((c.kind, c.result, c.more), (OpKind::Recv, 0, false));
    }

    /// More data than the pool holds ends the multishot receive with ENOBUFS; the buffers
    /// come back and a new receive carries on where the old one stopped.
    #[test]
    fn an_empty_pool_ends_the_receive_with_enobufs() {
        let Some(mut ring) = ring() else { return };
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let mut client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (conn, _) = listener.accept().unwrap();
        // 4 buffers of 64 bytes; send 1000 bytes at once.
        let data: Vec<u8> = (0..1000u32).map(|i| i as u8).collect();
        client.write_all(&data).unwrap();
        let mut got = Vec::new();
        let mut enobufs = 0;
        while got.len() < data.len() {
            ring.recv_multi(conn.as_raw_fd(), 7).unwrap();
            // Hold the buffers until the receive ends, so the pool runs dry.
            let mut held = Vec::new();
            loop {
                let c = wait_one(&mut ring);
                if let Some(buf) = c.buf {
                    got.extend_from_slice(ring.data(&buf));
                    held.push(buf);
                } else if c.result == -libc::ENOBUFS {
                    enobufs += 1;
                }
                if !c.more || got.len() == data.len() {
                    break;
                }
            }
            for buf in held {
                ring.recycle(buf);
            }
        }
        assert_eq!(got, data);
        assert!(enobufs > 0, "the pool never ran dry");
    }

    /// Cancelling an armed receive ends it with ECANCELED; dropping a ring with a send
    /// stuck in flight (the peer never reads) returns.
    #[test]
    fn cancel_and_drop_with_operations_in_flight() {
        let Some(mut ring) = ring() else { return };
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let _client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (conn, _) = listener.accept().unwrap();
        let id = ring.recv_multi(conn.as_raw_fd(), 9).unwrap();
        ring.submit_and_wait(Some(Duration::ZERO)).unwrap();
        ring.cancel(id).unwrap();
        let c = wait_one(&mut ring);
        assert_eq!((c.tag, c.result, c.more), (9, -libc::ECANCELED, false));
        assert_eq!(ring.in_flight(), 0);
        let big = Chunk::Owned {
            bytes: vec![0; 64 << 20],
            from: 0,
        };
        ring.send_chunks(conn.as_raw_fd(), vec![big], 10).unwrap();
        ring.submit_and_wait(Some(Duration::ZERO)).unwrap();
        drop(ring);
    }
}
