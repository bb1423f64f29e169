//! `poll(2)` over a caller-owned array of `pollfd`.

use std::io;
use std::time::Duration;

use super::{syscall, timeout_ms};

/// One entry of the array `poll` scans. A negative `fd` is ignored by the kernel.
pub(crate) type PollFd = libc::pollfd;

/// A set of `poll` event bits (an entry's `events` and `revents`).
pub(crate) type Events = libc::c_short;

/// Readable (`POLLIN`).
pub(crate) const READ: Events = libc::POLLIN;
/// Writable (`POLLOUT`).
pub(crate) const WRITE: Events = libc::POLLOUT;

/// An entry watching `fd` for `events`.
pub(crate) fn entry(fd: std::os::fd::RawFd, events: Events) -> PollFd {
    PollFd {
        fd,
        events,
        revents: 0,
    }
}

/// Waits up to `timeout` (`None`: forever) for any entry to become ready and fills in each
/// entry's `revents`. Returns how many entries have non-zero `revents`; `Interrupted` if a
/// signal arrived.
pub(crate) fn poll(fds: &mut [PollFd], timeout: Option<Duration>) -> io::Result<usize> {
    // SAFETY: the pointer and length describe `fds`, which the kernel may write for the
    // duration of the call.
    let n = unsafe {
        syscall!(poll(
            fds.as_mut_ptr(),
            fds.len() as libc::nfds_t,
            timeout_ms(timeout)
        ))
    }?;
    Ok(n as usize)
}
