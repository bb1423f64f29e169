//! `AcceptWait`: the wait of the models that accept on one thread and serve elsewhere
//! (`thread`, `fork`, `blocking`): `poll` on a wake-up descriptor and the listener, leaving
//! the listener out while [`Admission`](crate::policy::admission::Admission) has accepting
//! paused. What may be accepted, and when to pause, is the shared admission policy.

use std::io;
use std::os::fd::RawFd;
use std::time::Duration;

use crate::sys::poll::{self, PollFd};

/// `poll` on a wake-up descriptor (shutdown eventfd or signal pipe) and the listener, leaving
/// the listener out while accepting is paused (it would be reported at once: a spin).
#[derive(Debug)]
pub(crate) struct AcceptWait {
    /// `[wake-up, listener]`.
    fds: [PollFd; 2],
}

/// What ended an [`AcceptWait::wait`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Woken {
    /// The wake-up descriptor is readable (the caller drains it).
    pub(crate) wake: bool,
    /// Connections wait to be accepted.
    pub(crate) listener: bool,
}

impl AcceptWait {
    /// Watches `wake` and `listener` for readability.
    pub(crate) fn new(wake: RawFd, listener: RawFd) -> AcceptWait {
        AcceptWait {
            fds: [poll::entry(wake, poll::READ), poll::entry(listener, 0)],
        }
    }

    /// Waits until the wake-up descriptor is readable, the listener is (unless `pause`, from
    /// [`Admission::resume_in`](crate::policy::admission::Admission::resume_in), says accepting is paused), or the pause ends. A signal (`EINTR`)
    /// ends the wait with nothing ready.
    pub(crate) fn wait(&mut self, pause: Option<Duration>) -> io::Result<Woken> {
        self.fds[1].events = if pause.is_none() { poll::READ } else { 0 };
        match poll::poll(&mut self.fds, pause) {
            Ok(_) => Ok(Woken {
                wake: self.fds[0].revents != 0,
                listener: self.fds[1].revents != 0,
            }),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => Ok(Woken::default()),
            Err(e) => Err(e),
        }
    }
}
