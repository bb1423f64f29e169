//! `Epoll`: an epoll instance (epoll_create1, epoll_ctl, epoll_wait).

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::time::Duration;

use super::{syscall, timeout_ms};

/// Readable (`EPOLLIN`).
pub(crate) const READ: u32 = libc::EPOLLIN as u32;
/// Writable (`EPOLLOUT`).
pub(crate) const WRITE: u32 = libc::EPOLLOUT as u32;
/// The peer shut down its write side (`EPOLLRDHUP`).
pub(crate) const RDHUP: u32 = libc::EPOLLRDHUP as u32;
/// The peer's FIN, a hang-up or an error (`EPOLLRDHUP | EPOLLHUP | EPOLLERR`); the last two
/// are reported whether asked for or not.
pub(crate) const CLOSED: u32 = (libc::EPOLLRDHUP | libc::EPOLLHUP | libc::EPOLLERR) as u32;
/// Edge-triggered (`EPOLLET`): report changes, not states.
pub(crate) const EDGE: u32 = libc::EPOLLET as u32;

/// One ready descriptor: the token it was registered with and its event bits.
pub(crate) type Event = libc::epoll_event;

/// An epoll instance. Descriptors are removed automatically when closed (we never dup them).
#[derive(Debug)]
pub(crate) struct Epoll {
    /// The epoll descriptor (close-on-exec).
    fd: OwnedFd,
}

impl Epoll {
    /// A new, empty epoll set.
    pub(crate) fn new() -> io::Result<Epoll> {
        // SAFETY: plain syscall with a valid flag.
        let fd = unsafe { syscall!(epoll_create1(libc::EPOLL_CLOEXEC)) }?;
        // SAFETY: epoll_create1 just returned this descriptor; nothing else owns it.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        Ok(Epoll { fd })
    }

    /// Watches `fd` for `events`, reporting `token`.
    pub(crate) fn add(&self, fd: RawFd, events: u32, token: u64) -> io::Result<()> {
        self.ctl(libc::EPOLL_CTL_ADD, fd, events, token)
    }

    /// Changes what `fd` is watched for.
    pub(crate) fn modify(&self, fd: RawFd, events: u32, token: u64) -> io::Result<()> {
        self.ctl(libc::EPOLL_CTL_MOD, fd, events, token)
    }

    fn ctl(&self, op: libc::c_int, fd: RawFd, events: u32, token: u64) -> io::Result<()> {
        let mut event = libc::epoll_event { events, u64: token };
        // SAFETY: `event` outlives the call; the kernel copies it.
        unsafe { syscall!(epoll_ctl(self.fd.as_raw_fd(), op, fd, &mut event)) }.map(drop)
    }

    /// Waits up to `timeout` (`None`: forever) and fills `events` (its spare capacity) with
    /// ready descriptors. Returns `Interrupted` if a signal arrived.
    pub(crate) fn wait(
        &self,
        events: &mut Vec<Event>,
        timeout: Option<Duration>,
    ) -> io::Result<()> {
        events.clear();
        let max = events.capacity().min(libc::c_int::MAX as usize) as libc::c_int;
        assert!(max > 0, "the event buffer needs capacity");
        // SAFETY: the kernel writes at most `max` events into the vector's spare capacity.
        let n = unsafe {
            syscall!(epoll_wait(
                self.fd.as_raw_fd(),
                events.as_mut_ptr(),
                max,
                timeout_ms(timeout)
            ))
        }?;
        // SAFETY: epoll_wait initialised the first `n` (<= max <= capacity) entries.
        unsafe { events.set_len(n as usize) };
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sys::eventfd::EventFd;

    #[test]
    fn reports_a_readable_eventfd_with_its_token() {
        let epoll = Epoll::new().unwrap();
        let efd = EventFd::new().unwrap();
        epoll.add(efd.as_raw_fd(), READ, 7).unwrap();
        let mut events = Vec::with_capacity(4);
        epoll.wait(&mut events, Some(Duration::ZERO)).unwrap();
        assert!(events.is_empty());
        efd.wake().unwrap();
        epoll
            .wait(&mut events, Some(Duration::from_secs(5)))
            .unwrap();
        assert_eq!(events.len(), 1);
        let (token, bits) = (events[0].u64, events[0].events);
        assert_eq!(token, 7);
        assert_ne!(bits & READ, 0);
        efd.drain().unwrap();
        epoll.modify(efd.as_raw_fd(), WRITE, 8).unwrap();
    }
}
