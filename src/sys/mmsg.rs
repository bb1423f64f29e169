//! Batched UDP I/O: `recvmmsg(2)` and `sendmmsg(2)` over a fixed set of datagram slots.
//!
//! [`DatagramBatch`] owns `slots` buffers of `slot_size` bytes and the raw source address of
//! each datagram it received, so a reply reuses that address as the kernel wrote it (no
//! conversion on the echo path). The `mmsghdr`/`iovec` arrays are built on the stack for each
//! call: they hold pointers, and keeping them in the struct would pin it to one thread.

use std::fmt;
use std::io;
use std::mem;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, BorrowedFd};

use super::socket::to_socket_addr;
use super::syscall;

/// Most datagrams one call moves (the arrays built per call have this many entries).
pub const MAX_SLOTS: usize = 64;

/// What the kernel said about one received datagram.
#[derive(Debug, Clone, Copy, Default)]
struct Received {
    /// Bytes stored in the slot (at most `slot_size`).
    len: usize,
    /// Bytes of the source address in `addrs[i]`.
    addr_len: libc::socklen_t,
    /// The datagram was larger than its slot (`MSG_TRUNC`): the slot holds only its start.
    truncated: bool,
}

/// Buffers for receiving up to `slots` datagrams in one `recvmmsg` and sending any of them
/// back to their sources in one `sendmmsg`.
pub struct DatagramBatch {
    /// Bytes per slot: the largest datagram received whole.
    slot_size: usize,
    /// `slots × slot_size` bytes; slot `i` starts at `i * slot_size`. Allocated zeroed, so
    /// pages a datagram never reached stay untouched (not resident).
    data: Box<[u8]>,
    /// Source address of each datagram of the last receive, exactly as the kernel wrote it.
    addrs: Box<[libc::sockaddr_storage]>,
    /// Length, address length and truncation of each datagram of the last receive.
    received: Box<[Received]>,
    /// Datagrams the last receive stored (0 before the first, and after an error).
    count: usize,
}

impl fmt::Debug for DatagramBatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DatagramBatch")
            .field("slots", &self.received.len())
            .field("slot_size", &self.slot_size)
            .field("count", &self.count)
            .finish()
    }
}

impl DatagramBatch {
    /// Buffers for `slots` datagrams (capped at [`MAX_SLOTS`], at least 1) of up to
    /// `slot_size` bytes each.
    pub fn new(slots: usize, slot_size: usize) -> Self {
        let slots = slots.clamp(1, MAX_SLOTS);
        DatagramBatch {
            slot_size,
            data: vec![0u8; slots * slot_size].into_boxed_slice(),
            // SAFETY: sockaddr_storage is plain data; all-zero is a valid value.
            addrs: vec![unsafe { mem::zeroed::<libc::sockaddr_storage>() }; slots]
                .into_boxed_slice(),
            received: vec![Received::default(); slots].into_boxed_slice(),
            count: 0,
        }
    }

    /// How many datagrams one receive can take.
    pub fn capacity(&self) -> usize {
        self.received.len()
    }

    /// Receives as many datagrams as are queued, up to [`capacity`](Self::capacity), without
    /// waiting (`MSG_DONTWAIT`). Returns how many; `WouldBlock` when none is queued. Retries
    /// `EINTR`. The previous batch is overwritten.
    pub fn recv(&mut self, fd: BorrowedFd<'_>) -> io::Result<usize> {
        self.count = 0;
        let slots = self.capacity();
        // SAFETY: iovec and mmsghdr are plain C structs; all-zero (null pointers, zero
        // lengths) is a valid value for both, and every used entry is filled in below.
        let mut iov: [libc::iovec; MAX_SLOTS] = unsafe { mem::zeroed() };
        // SAFETY: as above.
        let mut hdrs: [libc::mmsghdr; MAX_SLOTS] = unsafe { mem::zeroed() };
        let chunks = self.data.chunks_exact_mut(self.slot_size);
        for (i, (chunk, addr)) in chunks.zip(self.addrs.iter_mut()).enumerate() {
            iov[i] = libc::iovec {
                iov_base: chunk.as_mut_ptr().cast(),
                iov_len: chunk.len(),
            };
            let h = &mut hdrs[i].msg_hdr;
            h.msg_name = (addr as *mut libc::sockaddr_storage).cast();
            h.msg_namelen = mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
            h.msg_iov = &raw mut iov[i];
            h.msg_iovlen = 1;
        }
        let got = loop {
            // SAFETY: the first `slots` headers each point at one live iovec of this frame
            // (describing a distinct `slot_size` region of `self.data`) and at one
            // `sockaddr_storage` of `self.addrs` with its true size; none of them is touched
            // by anything else during the call; `slots <= MAX_SLOTS`, the arrays' length; a
            // null timeout is allowed.
            let res = unsafe {
                syscall!(recvmmsg(
                    fd.as_raw_fd(),
                    hdrs.as_mut_ptr(),
                    slots as libc::c_uint,
                    libc::MSG_DONTWAIT,
                    std::ptr::null_mut()
                ))
            };
            match res {
                Ok(n) => break n as usize,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
        };
        for (r, h) in self.received.iter_mut().zip(&hdrs[..got]) {
            *r = Received {
                len: (h.msg_len as usize).min(self.slot_size),
                addr_len: h.msg_hdr.msg_namelen,
                truncated: h.msg_hdr.msg_flags & libc::MSG_TRUNC != 0,
            };
        }
        self.count = got;
        Ok(got)
    }

    /// Datagrams the last [`recv`](Self::recv) stored.
    pub fn len(&self) -> usize {
        self.count
    }

    /// Whether the last receive stored nothing.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// The bytes of datagram `i` (of the last receive) held in its slot. Panics if `i` is
    /// not below [`len`](Self::len).
    pub fn payload(&self, i: usize) -> &[u8] {
        let r = &self.received[..self.count][i];
        &self.data[i * self.slot_size..][..r.len]
    }

    /// Whether datagram `i` was larger than its slot (only its start was kept).
    pub fn is_truncated(&self, i: usize) -> bool {
        self.received[..self.count][i].truncated
    }

    /// The source of datagram `i`; `None` for an address family other than IPv4/IPv6 (never
    /// seen on an inet socket).
    pub fn source(&self, i: usize) -> Option<SocketAddr> {
        let _ = self.received[..self.count][i];
        to_socket_addr(&self.addrs[i]).ok()
    }

    /// Sends datagram `which[k]`'s payload back to its source, for each `k`, in one
    /// `sendmmsg` (at most [`MAX_SLOTS`] of them), without waiting (`MSG_DONTWAIT`).
    /// Returns how many of `which`, from the start, were sent; an error means `which[0]`
    /// was not. Retries `EINTR`. Panics if an index is not below [`len`](Self::len).
    pub fn send_back(&self, fd: BorrowedFd<'_>, which: &[usize]) -> io::Result<usize> {
        let n = which.len().min(MAX_SLOTS);
        if n == 0 {
            return Ok(0);
        }
        // SAFETY: plain C structs, all-zero is valid (see `recv`).
        let mut iov: [libc::iovec; MAX_SLOTS] = unsafe { mem::zeroed() };
        // SAFETY: as above.
        let mut hdrs: [libc::mmsghdr; MAX_SLOTS] = unsafe { mem::zeroed() };
        for (k, &i) in which[..n].iter().enumerate() {
            let payload = self.payload(i);
            // The kernel only reads through these pointers (sendmmsg writes `msg_len` only).
            iov[k] = libc::iovec {
                iov_base: payload.as_ptr().cast_mut().cast(),
                iov_len: payload.len(),
            };
            let h = &mut hdrs[k].msg_hdr;
            h.msg_name = (&raw const self.addrs[i]).cast_mut().cast();
            h.msg_namelen = self.received[i].addr_len;
            h.msg_iov = &raw mut iov[k];
            h.msg_iovlen = 1;
        }
        loop {
            // SAFETY: the first `n` headers each point at one live iovec of this frame
            // (describing bytes of `self.data`, borrowed for the call) and at a source
            // address of `self.addrs` with the length the kernel gave it; `n <= MAX_SLOTS`.
            let res = unsafe {
                syscall!(sendmmsg(
                    fd.as_raw_fd(),
                    hdrs.as_mut_ptr(),
                    n as libc::c_uint,
                    libc::MSG_DONTWAIT
                ))
            };
            match res {
                Ok(sent) => return Ok(sent as usize),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
        }
    }
}
