//! Batched UDP I/O: `recvmmsg(2)` and `sendmmsg(2)` over a fixed set of datagram slots.
//!
//! [`DatagramBatch`] owns `slots` buffers of `slot_size` bytes and the raw source address of
//! each datagram it received, so a reply reuses that address as the kernel wrote it (no
//! conversion on the echo path). The `mmsghdr`/`iovec` arrays are built on the stack for each
//! call: they hold pointers, and keeping them in the struct would pin it to one thread.
//!
//! Replies of equal size to the same address that sit next to each other in a send go out as
//! one message with UDP generic segmentation offload (`UDP_SEGMENT`): the kernel routes and
//! builds them once and cuts them into datagrams at the last moment; the receiver sees the
//! same datagrams either way. If the kernel refuses it for a route (`EIO` under IPsec,
//! `EINVAL`/`EOPNOTSUPP` on old kernels), the batch stops using it.

use std::fmt;
use std::io;
use std::mem;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, BorrowedFd};

use super::socket::to_socket_addr;
use super::syscall;

/// Most datagrams one call moves (the arrays built per call have this many entries).
pub(crate) const MAX_SLOTS: usize = 64;
/// Most datagrams in one segmented message (the kernel's `UDP_MAX_SEGMENTS`).
const GSO_MAX_SEGMENTS: usize = 64;
/// Most payload bytes in one segmented message (one IPv4 datagram's worth).
const GSO_MAX_BYTES: usize = 65_507;
/// Room for one `UDP_SEGMENT` control message (`CMSG_SPACE(2)` is 24 on 64-bit Linux), as
/// `u64`s so it is aligned for `cmsghdr`.
const CMSG_WORDS: usize = 4;

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
pub(crate) struct DatagramBatch {
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
    /// Send runs of equal-size replies to one address as one segmented message.
    gso: bool,
}

impl fmt::Debug for DatagramBatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DatagramBatch")
            .field("slots", &self.received.len())
            .field("slot_size", &self.slot_size)
            .field("count", &self.count)
            .field("gso", &self.gso)
            .finish()
    }
}

impl DatagramBatch {
    /// Buffers for `slots` datagrams (capped at [`MAX_SLOTS`], at least 1) of up to
    /// `slot_size` bytes each.
    pub(crate) fn new(slots: usize, slot_size: usize) -> Self {
        let slots = slots.clamp(1, MAX_SLOTS);
        DatagramBatch {
            slot_size,
            data: vec![0u8; slots * slot_size].into_boxed_slice(),
            // SAFETY: sockaddr_storage is plain data; all-zero is a valid value.
            addrs: vec![unsafe { mem::zeroed::<libc::sockaddr_storage>() }; slots]
                .into_boxed_slice(),
            received: vec![Received::default(); slots].into_boxed_slice(),
            count: 0,
            gso: true,
        }
    }

    /// How many datagrams one receive can take.
    pub(crate) fn capacity(&self) -> usize {
        self.received.len()
    }

    /// Receives as many datagrams as are queued, up to [`capacity`](Self::capacity), without
    /// waiting (`MSG_DONTWAIT`). Returns how many; `WouldBlock` when none is queued. Retries
    /// `EINTR`. The previous batch is overwritten.
    pub(crate) fn recv(&mut self, fd: BorrowedFd<'_>) -> io::Result<usize> {
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

    /// The bytes of datagram `i` (of the last receive) held in its slot. Panics if `i` is
    /// not below the count the last [`recv`](Self::recv) returned.
    pub(crate) fn payload(&self, i: usize) -> &[u8] {
        let r = &self.received[..self.count][i];
        &self.data[i * self.slot_size..][..r.len]
    }

    /// Whether datagram `i` was larger than its slot (only its start was kept).
    pub(crate) fn is_truncated(&self, i: usize) -> bool {
        self.received[..self.count][i].truncated
    }

    /// The source of datagram `i`; `None` for an address family other than IPv4/IPv6 (never
    /// seen on an inet socket).
    pub(crate) fn source(&self, i: usize) -> Option<SocketAddr> {
        let _ = self.received[..self.count][i];
        to_socket_addr(&self.addrs[i]).ok()
    }

    /// Sends datagram `which[k]`'s payload back to its source, for each `k`, in one
    /// `sendmmsg` (at most [`MAX_SLOTS`] of them), without waiting (`MSG_DONTWAIT`).
    /// Returns how many of `which`, from the start, were sent; an error means `which[0]`
    /// was not. Retries `EINTR`. Panics if an index is not below the count the last
    /// [`recv`](Self::recv) returned.
    pub(crate) fn send_back(&mut self, fd: BorrowedFd<'_>, which: &[usize]) -> io::Result<usize> {
        loop {
            match self.send_once(fd, which) {
                Err((e, true))
                    if matches!(
                        e.raw_os_error(),
                        Some(libc::EIO | libc::EINVAL | libc::EOPNOTSUPP)
                    ) =>
                {
                    // The first message was segmented and the kernel refused that: send
                    // every datagram on its own from now on.
                    self.gso = false;
                }
                Err((e, _)) if e.kind() == io::ErrorKind::Interrupted => {}
                Err((e, _)) => return Err(e),
                Ok(sent) => return Ok(sent),
            }
        }
    }

    /// Whether datagrams `a` and `b` came from the same address.
    fn same_source(&self, a: usize, b: usize) -> bool {
        let len = self.received[a].addr_len as usize;
        // SAFETY: sockaddr_storage is plain data, fully initialized (zeroed at creation, then
        // written by the kernel), and `len` is at most its size (the kernel's address length).
        let bytes = |i: usize| unsafe {
            std::slice::from_raw_parts((&raw const self.addrs[i]).cast::<u8>(), len)
        };
        len <= mem::size_of::<libc::sockaddr_storage>()
            && self.received[b].addr_len as usize == len
            && bytes(a) == bytes(b)
    }

    /// One `sendmmsg`. An error says whether the first message was segmented.
    fn send_once(&self, fd: BorrowedFd<'_>, which: &[usize]) -> Result<usize, (io::Error, bool)> {
        let n = which.len().min(MAX_SLOTS);
        if n == 0 {
            return Ok(0);
        }
        // SAFETY: plain C structs, all-zero is valid (see `recv`).
        let mut iov: [libc::iovec; MAX_SLOTS] = unsafe { mem::zeroed() };
        // SAFETY: as above.
        let mut hdrs: [libc::mmsghdr; MAX_SLOTS] = unsafe { mem::zeroed() };
        let mut cmsgs = [[0u64; CMSG_WORDS]; MAX_SLOTS];
        // Datagrams carried by each message.
        let mut carried = [0usize; MAX_SLOTS];
        let (mut k, mut m) = (0, 0);
        while k < n {
            let first = which[k];
            let len = self.payload(first).len();
            let mut count = 1;
            if self.gso && len > 0 {
                while k + count < n
                    && count < GSO_MAX_SEGMENTS
                    && (count + 1) * len <= GSO_MAX_BYTES
                    && self.payload(which[k + count]).len() == len
                    && self.same_source(first, which[k + count])
                {
                    count += 1;
                }
            }
            for j in k..k + count {
                let payload = self.payload(which[j]);
                // The kernel only reads through these pointers (sendmmsg writes `msg_len`).
                iov[j] = libc::iovec {
                    iov_base: payload.as_ptr().cast_mut().cast(),
                    iov_len: payload.len(),
                };
            }
            let h = &mut hdrs[m].msg_hdr;
            h.msg_name = (&raw const self.addrs[first]).cast_mut().cast();
            h.msg_namelen = self.received[first].addr_len;
            h.msg_iov = &raw mut iov[k];
            h.msg_iovlen = count as _;
            if count > 1 {
                let cmsg = &mut cmsgs[m];
                // SAFETY: `cmsg` is 32 bytes, aligned for cmsghdr, and CMSG_SPACE(2) (24 on
                // 64-bit Linux) fits in it; the header is written at its start and the
                // segment size right after it, at CMSG_LEN(0), within the buffer.
                unsafe {
                    let space = libc::CMSG_SPACE(mem::size_of::<u16>() as u32) as usize;
                    debug_assert!(space <= mem::size_of_val(cmsg));
                    let hdr = cmsg.as_mut_ptr().cast::<libc::cmsghdr>();
                    (*hdr).cmsg_len = libc::CMSG_LEN(mem::size_of::<u16>() as u32) as _;
                    (*hdr).cmsg_level = libc::SOL_UDP;
                    (*hdr).cmsg_type = libc::UDP_SEGMENT;
                    let data = cmsg
                        .as_mut_ptr()
                        .cast::<u8>()
                        .add(libc::CMSG_LEN(0) as usize)
                        .cast::<u16>();
                    data.write_unaligned(len as u16);
                    h.msg_control = cmsg.as_mut_ptr().cast();
                    h.msg_controllen = space as _;
                }
            }
            carried[m] = count;
            m += 1;
            k += count;
        }
        // SAFETY: the first `m` headers each point at live iovecs of this frame (describing
        // bytes of `self.data`, borrowed for the call), at a source address of `self.addrs`
        // with the length the kernel gave it, and at most at one control buffer of this
        // frame holding one UDP_SEGMENT message; `m <= MAX_SLOTS`.
        let res = unsafe {
            syscall!(sendmmsg(
                fd.as_raw_fd(),
                hdrs.as_mut_ptr(),
                m as libc::c_uint,
                libc::MSG_DONTWAIT
            ))
        };
        match res {
            Ok(sent) => Ok(carried[..sent as usize].iter().sum()),
            Err(e) => Err((e, carried[0] > 1)),
        }
    }
}
