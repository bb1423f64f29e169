//! Files: advisory locks (`flock`) and the file-creation mask (`umask`).

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};

use super::syscall;

/// `flock(2)` with `LOCK_EX | LOCK_NB`, retrying `EINTR`: `Ok(false)` if another open file
/// holds the lock. The lock belongs to the open file and lives as long as it does.
pub(crate) fn try_lock_exclusive(fd: BorrowedFd<'_>) -> io::Result<bool> {
    loop {
        // SAFETY: `fd` is an open descriptor (borrowed for the call).
        match unsafe { syscall!(flock(fd.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB)) } {
            Ok(_) => return Ok(true),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    }
}

/// `umask(2)`: sets the file-creation mask; returns the previous one.
pub(crate) fn umask(mask: u32) -> u32 {
    // SAFETY: no pointers, cannot fail.
    unsafe { libc::umask(mask as libc::mode_t) as u32 }
}
