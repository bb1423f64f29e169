//! Signals without helper threads: `sigaction` handlers that record which signal arrived and
//! write one byte to a self-pipe, so a single-threaded `poll` loop wakes up (the classic
//! self-pipe trick). The one self-pipe of the crate: used by the fork model, whose parent must
//! stay single-threaded, and by the `--supervise` supervisor's loop.
//!
//! The handler only touches atomics and calls `write(2)`, both async-signal-safe, and saves
//! and restores `errno`. Handlers are installed without `SA_RESTART`, so a blocking call
//! interrupted by one of these signals returns `EINTR` and the caller sees the signal.

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU64, Ordering};

use super::syscall;

/// A signal number.
pub(crate) type Signo = libc::c_int;

pub(crate) use libc::{SIGCHLD, SIGHUP, SIGINT, SIGKILL, SIGTERM};

/// Bit `n` is set once signal `n` has arrived (signals 1..=63), until [`SignalPipe::take`].
static RECEIVED: AtomicU64 = AtomicU64::new(0);
/// The self-pipe's write end, or -1 when no pipe should be written (none installed, or in a
/// forked child).
static WRITE_FD: AtomicI32 = AtomicI32::new(-1);
/// Whether a `SignalPipe` exists (there can be only one per process).
static INSTALLED: AtomicBool = AtomicBool::new(false);

extern "C" fn record(signo: libc::c_int) {
    // SAFETY: __errno_location returns this thread's errno slot, valid for the thread's life.
    let errno = unsafe { libc::__errno_location() };
    // SAFETY: as above; reading errno is a plain load.
    let saved = unsafe { *errno };
    if (1..64).contains(&signo) {
        RECEIVED.fetch_or(1 << signo, Ordering::SeqCst);
    }
    let fd = WRITE_FD.load(Ordering::SeqCst);
    if fd >= 0 {
        let byte = 1u8;
        // SAFETY: write(2) is async-signal-safe; `byte` lives across the call. The pipe is
        // non-blocking: if it is full a wake-up is already pending, so the error is ignored.
        let _ = unsafe { libc::write(fd, (&raw const byte).cast(), 1) };
    }
    // SAFETY: as above; restores errno for the interrupted code.
    unsafe { *errno = saved };
}

/// Signals that arrived, as a bitmask.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct Signals(u64);

impl Signals {
    /// Whether `signo` is in the set.
    pub(crate) fn contains(self, signo: Signo) -> bool {
        (1..64).contains(&signo) && self.0 & (1 << signo) != 0
    }

    /// Whether any of `signos` is in the set.
    pub(crate) fn any(self, signos: &[Signo]) -> bool {
        signos.iter().any(|&s| self.contains(s))
    }
}

/// Signals recorded so far, without clearing them (usable anywhere, including a forked child
/// after [`SignalPipe::forget_in_child`]).
pub(crate) fn received() -> Signals {
    Signals(RECEIVED.load(Ordering::SeqCst))
}

/// The installed handlers and their self-pipe. Dropping it restores the previous handlers.
#[derive(Debug)]
pub(crate) struct SignalPipe {
    /// Read end, non-blocking: readable whenever a recorded signal has arrived.
    read: OwnedFd,
    /// Write end, non-blocking; held open for the handler, which finds its number in
    /// `WRITE_FD`.
    _write: OwnedFd,
    /// Previous dispositions, restored on drop.
    previous: Vec<(Signo, libc::sigaction)>,
}

impl SignalPipe {
    /// Creates the pipe and installs the recording handler for `signals`. Fails if another
    /// `SignalPipe` exists in this process.
    pub(crate) fn install(signals: &[Signo]) -> io::Result<SignalPipe> {
        if INSTALLED.swap(true, Ordering::SeqCst) {
            return Err(io::Error::other("signal handlers are already installed"));
        }
        let mut fds = [0 as RawFd; 2];
        let flags = libc::O_NONBLOCK | libc::O_CLOEXEC;
        // SAFETY: `fds` has room for the two descriptors pipe2 writes.
        let created = unsafe { syscall!(pipe2(fds.as_mut_ptr(), flags)) };
        if let Err(e) = created {
            INSTALLED.store(false, Ordering::SeqCst);
            return Err(e);
        }
        // SAFETY: pipe2 just returned these two descriptors; nothing else owns them.
        let (read, write) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
        WRITE_FD.store(write.as_raw_fd(), Ordering::SeqCst);
        let mut pipe = SignalPipe {
            read,
            _write: write,
            previous: Vec::new(),
        };
        for &signo in signals {
            let old = set_action(signo, record as *const () as libc::sighandler_t)?;
            pipe.previous.push((signo, old));
        }
        Ok(pipe)
    }

    /// The read end, to watch for readability.
    pub(crate) fn read_fd(&self) -> RawFd {
        self.read.as_raw_fd()
    }

    /// Empties the pipe and returns (and clears) the signals recorded since the last call.
    pub(crate) fn take(&self) -> Signals {
        let mut buf = [0u8; 64];
        loop {
            // SAFETY: reads at most `buf.len()` bytes into `buf`.
            match unsafe {
                syscall!(read(
                    self.read.as_raw_fd(),
                    buf.as_mut_ptr().cast(),
                    buf.len()
                ))
            } {
                Ok(n) if n > 0 => continue,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                _ => break,
            }
        }
        Signals(RECEIVED.swap(0, Ordering::SeqCst))
    }

    /// In a freshly forked child: stops the handler from writing to the (parent's) pipe and
    /// closes the child's copies of it, but keeps the handlers installed so the child can
    /// still see, through [`received`], that it was asked to finish.
    pub(crate) fn forget_in_child(mut self) {
        // Dropping with no previous dispositions to restore: the handlers stay, the pipe
        // closes, and `WRITE_FD` goes back to -1.
        self.previous.clear();
    }
}

impl AsFd for SignalPipe {
    /// The read end (as [`SignalPipe::read_fd`]).
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.read.as_fd()
    }
}

impl Drop for SignalPipe {
    fn drop(&mut self) {
        WRITE_FD.store(-1, Ordering::SeqCst);
        for (signo, old) in self.previous.drain(..).rev() {
            // SAFETY: restores a disposition that sigaction returned for this signal.
            let _ = unsafe { syscall!(sigaction(signo, &old, std::ptr::null_mut())) };
        }
        INSTALLED.store(false, Ordering::SeqCst);
    }
}

/// Sets `signo`'s handler (a function, `SIG_DFL` or `SIG_IGN`) with every signal blocked
/// while it runs and no `SA_RESTART`; returns the previous disposition.
fn set_action(signo: Signo, handler: libc::sighandler_t) -> io::Result<libc::sigaction> {
    // SAFETY: sigaction is plain data; all-zero is a valid starting value.
    let mut action: libc::sigaction = unsafe { std::mem::zeroed() };
    action.sa_sigaction = handler;
    action.sa_flags = 0;
    // SAFETY: `sa_mask` is a valid sigset_t to fill.
    unsafe { syscall!(sigfillset(&mut action.sa_mask)) }?;
    // SAFETY: all-zero is a valid sigaction for the kernel to overwrite.
    let mut old: libc::sigaction = unsafe { std::mem::zeroed() };
    // SAFETY: both pointers are valid for the call; `handler` is SIG_DFL, SIG_IGN or an
    // `extern "C" fn(c_int)` that is async-signal-safe.
    unsafe { syscall!(sigaction(signo, &action, &mut old)) }?;
    Ok(old)
}

/// Restores the default disposition of `signo` (in a forked child: SIGCHLD).
pub(crate) fn set_default(signo: Signo) -> io::Result<()> {
    set_action(signo, libc::SIG_DFL).map(drop)
}

/// The calling thread's signal mask while every signal is blocked; restores it on drop.
#[derive(Debug)]
pub(crate) struct BlockedSignals {
    /// The mask before blocking.
    previous: libc::sigset_t,
}

/// Blocks every signal for the calling thread until the guard drops (used around `fork`, so
/// the child can replace the parent's handlers before any signal reaches it).
pub(crate) fn block_all() -> io::Result<BlockedSignals> {
    // SAFETY: sigset_t is plain data, initialised by sigfillset / pthread_sigmask below.
    let mut all: libc::sigset_t = unsafe { std::mem::zeroed() };
    // SAFETY: `all` is a valid sigset_t.
    unsafe { syscall!(sigfillset(&mut all)) }?;
    // SAFETY: as above.
    let mut previous: libc::sigset_t = unsafe { std::mem::zeroed() };
    // SAFETY: both sets are valid; pthread_sigmask returns an error number, not -1.
    let rc = unsafe { libc::pthread_sigmask(libc::SIG_BLOCK, &all, &mut previous) };
    if rc != 0 {
        return Err(io::Error::from_raw_os_error(rc));
    }
    Ok(BlockedSignals { previous })
}

impl Drop for BlockedSignals {
    fn drop(&mut self) {
        // SAFETY: restores a mask pthread_sigmask returned.
        unsafe { libc::pthread_sigmask(libc::SIG_SETMASK, &self.previous, std::ptr::null_mut()) };
    }
}
