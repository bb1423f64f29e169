//! `EventFd`: a counter descriptor that becomes readable when written, used to wake a
//! single-threaded loop from another thread (a shutdown request).

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

use super::syscall;

/// A non-blocking, close-on-exec eventfd.
#[derive(Debug)]
pub(crate) struct EventFd {
    /// The eventfd descriptor.
    fd: OwnedFd,
}

impl EventFd {
    /// A new eventfd with counter 0 (not readable).
    pub(crate) fn new() -> io::Result<EventFd> {
        // SAFETY: plain syscall with valid flags.
        let fd = unsafe { syscall!(eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK)) }?;
        // SAFETY: eventfd just returned this descriptor; nothing else owns it.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        Ok(EventFd { fd })
    }

    /// Makes the descriptor readable. Safe to call from any thread, any number of times.
    pub(crate) fn wake(&self) -> io::Result<()> {
        let one: u64 = 1;
        loop {
            // SAFETY: writes exactly the 8 bytes of `one`, which outlives the call.
            match unsafe { syscall!(write(self.fd.as_raw_fd(), (&raw const one).cast(), 8)) } {
                Ok(_) => return Ok(()),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                // The counter is saturated: it is already readable, which is all we want.
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) => return Err(e),
            }
        }
    }

    /// Resets the counter so the descriptor is no longer readable.
    pub(crate) fn drain(&self) -> io::Result<()> {
        let mut value: u64 = 0;
        loop {
            // SAFETY: reads exactly 8 bytes into `value`, which outlives the call.
            match unsafe { syscall!(read(self.fd.as_raw_fd(), (&raw mut value).cast(), 8)) } {
                Ok(_) => return Ok(()),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) => return Err(e),
            }
        }
    }
}

impl AsRawFd for EventFd {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}
