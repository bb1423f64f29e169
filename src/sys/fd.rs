//! The descriptor table: `dup2`, close-on-exec, closing inherited descriptors, and whether a
//! descriptor number is open.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, RawFd};

use super::syscall;

/// `dup2(2)`: makes `target` refer to what `fd` refers to, retrying `EINTR`.
pub(crate) fn dup2(fd: BorrowedFd<'_>, target: RawFd) -> io::Result<()> {
    loop {
        // SAFETY: `fd` is open (borrowed); `target` is a descriptor number the caller intends
        // to replace (0, 1 or 2), which no Rust object in this crate owns.
        match unsafe { syscall!(dup2(fd.as_raw_fd(), target)) } {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            result => return result.map(drop),
        }
    }
}

/// Closes every descriptor numbered 3 or above except those in `keep`. Called right after
/// daemonizing, when no Rust object owns a descriptor other than those in `keep`.
pub(crate) fn close_inherited_fds(keep: &[RawFd]) -> io::Result<()> {
    let fds: Vec<RawFd> = std::fs::read_dir("/proc/self/fd")?
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .collect();
    // The directory's own descriptor is in the list but already closed by now: EBADF, ignored.
    for fd in fds.into_iter().filter(|fd| *fd > 2 && !keep.contains(fd)) {
        // SAFETY: `fd` was inherited from the process that started us and is owned by no
        // Rust object (the caller guarantees this by listing every owned one in `keep`).
        unsafe { libc::close(fd) };
    }
    Ok(())
}

/// Clears `FD_CLOEXEC` so `fd` survives `exec`. Async-signal-safe: used between `fork` and
/// `exec`.
pub(crate) fn clear_cloexec(fd: RawFd) -> io::Result<()> {
    // SAFETY: `fcntl` on a descriptor number; a closed one gives EBADF, not UB.
    let flags = unsafe { syscall!(fcntl(fd, libc::F_GETFD)) }?;
    // SAFETY: as above.
    unsafe { syscall!(fcntl(fd, libc::F_SETFD, flags & !libc::FD_CLOEXEC)) }.map(drop)
}

/// Whether `fd` is open.
pub(crate) fn is_open(fd: RawFd) -> bool {
    // SAFETY: `fcntl(F_GETFD)` only inspects the descriptor table.
    unsafe { libc::fcntl(fd, libc::F_GETFD) != -1 }
}
