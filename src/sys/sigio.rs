//! Signal-driven I/O: `O_ASYNC` on a descriptor, owned by one thread (`F_SETOWN_EX` with
//! `F_OWNER_TID`), with a real-time signal (`F_SETSIG`) whose `si_fd` and `si_band` say
//! which descriptor and what happened.
//!
//! The kernel queues one real-time signal per readiness change (data arrived, send space
//! freed after `EAGAIN`, a new connection, an error). When the queue is full (the
//! `RLIMIT_SIGPENDING` of the owner) it sends plain `SIGIO` instead, once, with no
//! descriptor: the owner must then find out by itself what is ready. Both are directed at
//! the owning thread, never at the process, so other threads need not block them.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};

use super::signal::Signo;
use super::syscall;

/// The overflow signal: the real-time queue was full, events were lost.
pub(crate) const SIGIO: Signo = libc::SIGIO;

// Not in the `libc` crate for glibc targets; the values are the kernel's generic ones
// (include/uapi/asm-generic/fcntl.h), which every architecture this builds for uses.
/// `fcntl` command: the signal sent on I/O readiness.
const F_SETSIG: libc::c_int = 10;
/// `fcntl` command: set the owner, with its kind.
const F_SETOWN_EX: libc::c_int = 15;
/// Owner kind: one thread.
const F_OWNER_TID: libc::c_int = 0;

/// `struct f_owner_ex` (include/uapi/asm-generic/fcntl.h).
#[repr(C)]
struct FOwnerEx {
    kind: libc::c_int,
    pid: libc::pid_t,
}

/// The signal readiness is reported with: the first real-time signal the C library leaves
/// to applications (glibc keeps the first two for itself).
pub(crate) fn readiness_signal() -> Signo {
    libc::SIGRTMIN()
}

/// Who receives a descriptor's I/O signals, and which signal.
#[derive(Debug, Clone, Copy)]
pub(crate) struct AsyncOwner {
    /// The receiving thread's id.
    tid: libc::pid_t,
    /// The real-time signal.
    signo: Signo,
}

impl AsyncOwner {
    /// The calling thread, with `signo`.
    pub(crate) fn this_thread(signo: Signo) -> AsyncOwner {
        AsyncOwner {
            // SAFETY: gettid has no preconditions and cannot fail.
            tid: unsafe { libc::gettid() },
            signo,
        }
    }

    /// Directs `fd`'s I/O signals to this owner and turns them on. The descriptor's status
    /// flags become `O_NONBLOCK | O_ASYNC`: it must be a non-blocking socket with no other
    /// status flags (what `accept4(SOCK_NONBLOCK)` and a non-blocking listener have).
    ///
    /// `O_ASYNC` is cleared first: a descriptor inherited with it already set (a listener
    /// shared with a supervisor) would keep the kernel's record of the old descriptor number,
    /// and `si_fd` would name it.
    pub(crate) fn attach(&self, fd: BorrowedFd<'_>) -> io::Result<()> {
        let fd = fd.as_raw_fd();
        let owner = FOwnerEx {
            kind: F_OWNER_TID,
            pid: self.tid,
        };
        // SAFETY: fcntl on a descriptor the caller borrows; `owner` is a valid f_owner_ex
        // that lives across the call (the kernel copies it).
        unsafe { syscall!(fcntl(fd, F_SETOWN_EX, &raw const owner)) }?;
        // SAFETY: fcntl with an integer argument (a signal number).
        unsafe { syscall!(fcntl(fd, F_SETSIG, self.signo)) }?;
        // SAFETY: as above (status flags).
        unsafe { syscall!(fcntl(fd, libc::F_SETFL, libc::O_NONBLOCK)) }?;
        // SAFETY: as above.
        unsafe { syscall!(fcntl(fd, libc::F_SETFL, libc::O_NONBLOCK | libc::O_ASYNC)) }.map(drop)
    }

    /// [`AsyncOwner::attach`] for a socket fresh from `accept4`, which cannot have
    /// `O_ASYNC` yet (one `fcntl` fewer).
    pub(crate) fn attach_new(&self, fd: BorrowedFd<'_>) -> io::Result<()> {
        let fd = fd.as_raw_fd();
        let owner = FOwnerEx {
            kind: F_OWNER_TID,
            pid: self.tid,
        };
        // SAFETY: as in `attach`.
        unsafe { syscall!(fcntl(fd, F_SETOWN_EX, &raw const owner)) }?;
        // SAFETY: as in `attach`.
        unsafe { syscall!(fcntl(fd, F_SETSIG, self.signo)) }?;
        // SAFETY: as in `attach`.
        unsafe { syscall!(fcntl(fd, libc::F_SETFL, libc::O_NONBLOCK | libc::O_ASYNC)) }.map(drop)
    }
}

/// Turns `fd`'s I/O signals off (status flags back to `O_NONBLOCK`), for a descriptor that
/// outlives its owner's use of it (a listener shared with a supervisor).
pub(crate) fn detach(fd: BorrowedFd<'_>) -> io::Result<()> {
    // SAFETY: fcntl with an integer argument on a descriptor the caller borrows.
    unsafe { syscall!(fcntl(fd.as_raw_fd(), libc::F_SETFL, libc::O_NONBLOCK)) }.map(drop)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sys::poll;
    use crate::sys::signalfd::{SignalFd, ThreadMask};
    use std::io::Write;
    use std::os::fd::AsFd;

    /// A socket attached to this thread raises the readiness signal, naming itself in
    /// `si_fd` with `POLLIN` in `si_band`, when data arrives.
    #[test]
    fn data_arrival_raises_the_signal_with_fd_and_band() {
        std::thread::spawn(|| {
            let signo = readiness_signal();
            let _mask = ThreadMask::block(&[signo, SIGIO]).unwrap();
            let sfd = SignalFd::new(&[signo, SIGIO]).unwrap();
            let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            let mut client = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
            let (server, _) = listener.accept().unwrap();
            server.set_nonblocking(true).unwrap();
            AsyncOwner::this_thread(signo)
                .attach(server.as_fd())
                .unwrap();
            client.write_all(b"x").unwrap();
            let mut fds = [poll::entry(sfd.as_raw_fd(), poll::READ)];
            poll::poll(&mut fds, Some(std::time::Duration::from_secs(30))).unwrap();
            let mut got = Vec::new();
            sfd.read(&mut got).unwrap();
            assert_eq!(got.first().map(|s| s.signo), Some(signo), "{got:?}");
            assert_eq!(got[0].fd, server.as_raw_fd());
            assert_ne!(got[0].band & libc::POLLIN as u32, 0, "{got:?}");
            detach(server.as_fd()).unwrap();
            sfd.discard_pending();
        })
        .join()
        .unwrap();
    }
}
