//! Signals consumed synchronously: a thread's signal mask ([`ThreadMask`]) and `signalfd`
//! ([`SignalFd`]), which turns signals pending for the reading thread into records read like
//! a file. No handler runs, so no code is restricted to async-signal-safe calls.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

use super::signal::Signo;
use super::syscall;

/// One signal taken from a [`SignalFd`]: which, and for I/O signals which descriptor and
/// what happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct SigInfo {
    /// The signal number.
    pub(crate) signo: Signo,
    /// `si_fd`: the descriptor an I/O signal (`F_SETSIG`) is about; meaningless otherwise.
    pub(crate) fd: RawFd,
    /// `si_band`: the `poll` bits of the event (`POLLIN`, `POLLOUT`, `POLLERR`, `POLLHUP`, ...).
    pub(crate) band: u32,
}

/// An all-zero-then-filled `sigset_t` holding `signals`.
fn sigset(signals: &[Signo]) -> io::Result<libc::sigset_t> {
    // SAFETY: sigset_t is plain data; sigemptyset initialises it below.
    let mut set: libc::sigset_t = unsafe { std::mem::zeroed() };
    // SAFETY: `set` is a valid, writable sigset_t.
    unsafe { syscall!(sigemptyset(&mut set)) }?;
    for &signo in signals {
        // SAFETY: as above; an invalid number is reported as EINVAL.
        unsafe { syscall!(sigaddset(&mut set, signo)) }?;
    }
    Ok(set)
}

/// The calling thread's signal mask with some signals added; restores the previous mask on
/// drop. It is `!Send` (a mask belongs to one thread): drop it on the thread that made it.
#[derive(Debug)]
pub(crate) struct ThreadMask {
    /// The mask before blocking.
    previous: libc::sigset_t,
    /// Ties the guard to its thread.
    _not_send: std::marker::PhantomData<*const ()>,
}

impl ThreadMask {
    /// Blocks `signals` for the calling thread only (other threads keep their masks).
    pub(crate) fn block(signals: &[Signo]) -> io::Result<ThreadMask> {
        let set = sigset(signals)?;
        // SAFETY: sigset_t is plain data, written by pthread_sigmask below.
        let mut previous: libc::sigset_t = unsafe { std::mem::zeroed() };
        // SAFETY: both sets are valid; pthread_sigmask returns an error number, not -1.
        let rc = unsafe { libc::pthread_sigmask(libc::SIG_BLOCK, &set, &mut previous) };
        if rc != 0 {
            return Err(io::Error::from_raw_os_error(rc));
        }
        Ok(ThreadMask {
            previous,
            _not_send: std::marker::PhantomData,
        })
    }
}

impl Drop for ThreadMask {
    fn drop(&mut self) {
        // SAFETY: restores a mask pthread_sigmask returned, on the same thread (`!Send`).
        unsafe { libc::pthread_sigmask(libc::SIG_SETMASK, &self.previous, std::ptr::null_mut()) };
    }
}

/// A non-blocking `signalfd` for some signals: readable while one of them is pending for the
/// thread that reads it (or for the process). The signals must be blocked ([`ThreadMask`]),
/// or they would be delivered the ordinary way instead.
#[derive(Debug)]
pub(crate) struct SignalFd {
    /// The descriptor (non-blocking, close-on-exec).
    fd: OwnedFd,
}

/// Records one [`SignalFd::read`] takes at most; a read that returns fewer left none queued.
pub(crate) const BATCH: usize = 64;

impl SignalFd {
    /// A signalfd accepting `signals`.
    pub(crate) fn new(signals: &[Signo]) -> io::Result<SignalFd> {
        let set = sigset(signals)?;
        let flags = libc::SFD_NONBLOCK | libc::SFD_CLOEXEC;
        // SAFETY: -1 asks for a new descriptor; `set` is a valid sigset_t for the call.
        let fd = unsafe { syscall!(signalfd(-1, &set, flags)) }?;
        // SAFETY: signalfd just returned this descriptor; nothing else owns it.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        Ok(SignalFd { fd })
    }

    /// Takes up to 64 pending signals (one `read`), appending them to `out`; returns how
    /// many. 0 means none was pending (`EAGAIN`) or the read was interrupted.
    pub(crate) fn read(&self, out: &mut Vec<SigInfo>) -> io::Result<usize> {
        // SAFETY: signalfd_siginfo is plain data; all-zero is a valid value to overwrite.
        let mut buf: [libc::signalfd_siginfo; BATCH] = unsafe { std::mem::zeroed() };
        let size = std::mem::size_of::<libc::signalfd_siginfo>();
        // SAFETY: the pointer and length describe `buf`, which the kernel fills with whole
        // records for the duration of the call.
        let n = match unsafe {
            syscall!(read(
                self.fd.as_raw_fd(),
                buf.as_mut_ptr().cast(),
                BATCH * size
            ))
        } {
            Ok(n) => n as usize / size,
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
                ) =>
            {
                return Ok(0);
            }
            Err(e) => return Err(e),
        };
        out.extend(buf[..n].iter().map(|s| SigInfo {
            signo: s.ssi_signo as Signo,
            fd: s.ssi_fd,
            band: s.ssi_band,
        }));
        Ok(n)
    }

    /// Takes every pending signal and forgets it (before unblocking them: a real-time signal
    /// delivered the ordinary way, with no handler, ends the process).
    pub(crate) fn discard_pending(&self) {
        let mut sink = Vec::new();
        while matches!(self.read(&mut sink), Ok(n) if n > 0) {
            sink.clear();
        }
    }
}

impl AsRawFd for SignalFd {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A signal sent to this thread while blocked is read back from the signalfd, with the
    /// value of `si_fd` the sender did not set (0), and not delivered (it would end the test).
    #[test]
    fn a_blocked_thread_signal_is_read_not_delivered() {
        std::thread::spawn(|| {
            let signo = libc::SIGRTMIN() + 3;
            let mask = ThreadMask::block(&[signo]).unwrap();
            let sfd = SignalFd::new(&[signo]).unwrap();
            let mut got = Vec::new();
            assert_eq!(sfd.read(&mut got).unwrap(), 0, "nothing pending yet");
            // SAFETY: signals this very thread (its own tid), with a signal it blocks.
            let rc =
                unsafe { libc::syscall(libc::SYS_tgkill, libc::getpid(), libc::gettid(), signo) };
            assert_eq!(rc, 0);
            assert_eq!(sfd.read(&mut got).unwrap(), 1);
            assert_eq!(got[0].signo, signo);
            sfd.discard_pending();
            drop(mask);
        })
        .join()
        .unwrap();
    }
}
