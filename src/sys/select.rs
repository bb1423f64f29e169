//! `FdSet` and `select(2)`.
//!
//! An `fd_set` is a fixed bitmap of `FD_SETSIZE` (1024) bits; `FD_SET` with a larger
//! descriptor writes past its end and corrupts memory. `FdSet::insert` therefore refuses any
//! descriptor outside `0..FD_SETSIZE`, which makes the rest of this API safe.

use std::fmt;
use std::io;
use std::os::fd::RawFd;
use std::time::Duration;

use super::syscall;

/// Descriptors an `fd_set` can hold: `0..FD_SETSIZE`.
pub(crate) const FD_SETSIZE: usize = libc::FD_SETSIZE;

/// A descriptor that cannot be watched by `select`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct OutOfRange(pub RawFd);

impl fmt::Display for OutOfRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "descriptor {} is outside select's range 0..{FD_SETSIZE}",
            self.0
        )
    }
}

/// A set of descriptors, all below `FD_SETSIZE`.
#[derive(Clone, Copy)]
pub(crate) struct FdSet {
    /// The kernel bitmap. Invariant: only bits below `FD_SETSIZE` are ever set.
    set: libc::fd_set,
}

impl fmt::Debug for FdSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let fds: Vec<RawFd> = (0..FD_SETSIZE as RawFd)
            .filter(|&fd| self.contains(fd))
            .collect();
        f.debug_set().entries(fds).finish()
    }
}

impl Default for FdSet {
    fn default() -> Self {
        FdSet::new()
    }
}

/// Whether `fd` fits in an `fd_set`.
pub(crate) fn fits(fd: RawFd) -> bool {
    usize::try_from(fd).is_ok_and(|fd| fd < FD_SETSIZE)
}

impl FdSet {
    /// An empty set.
    pub(crate) fn new() -> FdSet {
        // SAFETY: fd_set is a plain bitmap; all zeroes is the empty set (what FD_ZERO does).
        let set = unsafe { std::mem::zeroed() };
        FdSet { set }
    }

    /// Adds `fd`, or refuses it if it is outside `0..FD_SETSIZE`.
    pub(crate) fn insert(&mut self, fd: RawFd) -> Result<(), OutOfRange> {
        if !fits(fd) {
            return Err(OutOfRange(fd));
        }
        // SAFETY: `fd` was just checked to be in 0..FD_SETSIZE, so FD_SET stays in bounds.
        unsafe { libc::FD_SET(fd, &mut self.set) };
        Ok(())
    }

    /// Removes `fd` (no-op if absent or out of range).
    pub(crate) fn remove(&mut self, fd: RawFd) {
        if fits(fd) {
            // SAFETY: `fd` is in 0..FD_SETSIZE.
            unsafe { libc::FD_CLR(fd, &mut self.set) };
        }
    }

    /// Whether `fd` is in the set (always false out of range).
    pub(crate) fn contains(&self, fd: RawFd) -> bool {
        // SAFETY: `fd` is in 0..FD_SETSIZE when FD_ISSET runs.
        fits(fd) && unsafe { libc::FD_ISSET(fd, &self.set) }
    }
}

/// Waits up to `timeout` (`None`: forever) until a descriptor below `nfds` in `read` is
/// readable or one in `write` is writable. On return the sets hold only the ready
/// descriptors. Returns how many there are; `Interrupted` if a signal arrived.
pub(crate) fn select(
    nfds: usize,
    read: &mut FdSet,
    write: &mut FdSet,
    timeout: Option<Duration>,
) -> io::Result<usize> {
    let nfds = nfds.min(FD_SETSIZE) as libc::c_int;
    let mut tv = timeout.map(|t| libc::timeval {
        tv_sec: t.as_secs().min(libc::time_t::MAX as u64) as libc::time_t,
        tv_usec: t.subsec_micros() as libc::suseconds_t,
    });
    let tv_ptr = tv
        .as_mut()
        .map_or(std::ptr::null_mut(), |tv| tv as *mut libc::timeval);
    // `nfds` is at most FD_SETSIZE, so the kernel reads no bits beyond the sets.
    // SAFETY: both sets are valid fd_sets the kernel may rewrite, and `tv_ptr` is null or
    // points to a timeval that lives across the call.
    let n = unsafe {
        syscall!(select(
            nfds,
            &mut read.set,
            &mut write.set,
            std::ptr::null_mut(),
            tv_ptr
        ))
    }?;
    Ok(n as usize)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_descriptors_at_or_above_fd_setsize() {
        let mut set = FdSet::new();
        assert_eq!(set.insert(1024), Err(OutOfRange(1024)));
        assert_eq!(set.insert(5000), Err(OutOfRange(5000)));
        assert_eq!(set.insert(-1), Err(OutOfRange(-1)));
        assert!(!set.contains(1024));
        set.insert(1023).unwrap();
        set.insert(0).unwrap();
        assert!(set.contains(1023) && set.contains(0) && !set.contains(1));
        set.remove(1023);
        set.remove(4096);
        assert!(!set.contains(1023));
        assert_eq!(format!("{set:?}"), "{0}");
    }

    #[test]
    fn select_reports_a_readable_eventfd() {
        use crate::sys::eventfd::EventFd;
        use std::os::fd::AsRawFd;
        let efd = EventFd::new().unwrap();
        let fd = efd.as_raw_fd();
        let mut read = FdSet::new();
        read.insert(fd).unwrap();
        let mut ready = read;
        let mut write = FdSet::new();
        let n = select(
            fd as usize + 1,
            &mut ready,
            &mut write,
            Some(Duration::ZERO),
        )
        .unwrap();
        assert_eq!(n, 0);
        efd.wake().unwrap();
        let mut ready = read;
        let n = select(
            fd as usize + 1,
            &mut ready,
            &mut write,
            Some(Duration::from_secs(5)),
        )
        .unwrap();
        assert_eq!(n, 1);
        assert!(ready.contains(fd));
    }
}
