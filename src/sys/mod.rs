//! The only home of raw syscalls: small safe wrappers over the `libc` crate, used by the
//! comparison models in `crate::models`, by process management in [`crate::ops`] and by the
//! load generator (the `reactor-pool-bench` crate, `crates/bench`).
//!
//! Every wrapper returns `io::Result` (through the one `syscall!` macro where the call
//! reports errors as `-1`/`errno`), every descriptor is wrapped in an `OwnedFd` the moment the
//! kernel hands it over, every `unsafe` block says why it holds, and the one `unsafe fn`
//! (`process::fork`) says what its caller must guarantee. Nothing here knows about echo
//! servers.
//!
//! - [`socket`]: `Listener` (accept4) and `Stream` (recv/send with `MSG_NOSIGNAL`, socket
//!   options, shutdown), and how to read `accept` errors.
//! - `epoll`: `Epoll` (epoll_create1/ctl/wait).
//! - `poll`: `poll(2)` over a slice of `pollfd`.
//! - `select`: `FdSet`, an `fd_set` that refuses descriptors >= `FD_SETSIZE`, and `select(2)`.
//! - `eventfd`: `EventFd`, the wake-up a shutdown request writes to.
//! - `signal`: `SignalPipe`, sigaction handlers that record signals and write a self-pipe;
//!   blocking every signal around `fork`.
//! - `signalfd`: `ThreadMask` (block signals for one thread) and `SignalFd` (read pending
//!   signals as records, with `si_fd` and `si_band`).
//! - `sigio`: signal-driven I/O: `O_ASYNC`, `F_SETOWN_EX` to one thread, `F_SETSIG`.
//! - [`process`]: fork, waitpid, kill, `_exit`, setsid, the parent-death signal, thread count.
//! - `fd`: the descriptor table: dup2, close-on-exec, closing inherited descriptors.
//! - `fs`: `flock` and `umask`.
//! - `user`: the password database and dropping root.
//! - `syslog`: the system log (`openlog`, `syslog`).
//! - [`rlimit`]: the open-files limit.
//! - `sched`: the calling thread's scheduling policy (`SCHED_BATCH` for the acceptor).
//! - `mmsg`: `DatagramBatch`, batched UDP receive and reply (`recvmmsg`/`sendmmsg`).
//! - `uring`: `Ring`, an io_uring with a provided-buffer pool (the `io-uring` crate), whose
//!   in-flight memory it owns until the kernel lets go.

pub(crate) mod epoll;
pub(crate) mod eventfd;
pub(crate) mod fd;
pub(crate) mod fs;
pub(crate) mod mmsg;
pub(crate) mod poll;
pub mod process;
pub mod rlimit;
pub(crate) mod sched;
pub(crate) mod select;
pub(crate) mod sigio;
pub(crate) mod signal;
pub(crate) mod signalfd;
pub mod socket;
pub(crate) mod syslog;
pub(crate) mod uring;
pub(crate) mod user;

use std::time::Duration;

/// Calls a `libc` function and turns a `-1` result into `io::Error::last_os_error()`.
///
/// The macro only converts the return value; the caller's `unsafe` block (with its
/// `// SAFETY:` comment) stays responsible for the arguments.
macro_rules! syscall {
    ($fn:ident ( $($arg:expr),* $(,)? )) => {{
        let res = libc::$fn($($arg),*);
        if res == -1 {
            Err(std::io::Error::last_os_error())
        } else {
            Ok(res)
        }
    }};
}
pub(crate) use syscall;

/// A timeout for `epoll_wait`/`poll` in milliseconds: `None` waits forever (-1); a duration
/// rounds up to the next whole millisecond, so a wait never ends before its deadline (and a
/// short one never becomes a busy loop).
pub fn timeout_ms(timeout: Option<Duration>) -> libc::c_int {
    match timeout {
        None => -1,
        Some(t) => {
            let ms = t.as_micros().div_ceil(1000);
            libc::c_int::try_from(ms).unwrap_or(libc::c_int::MAX)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timeouts_round_up_and_saturate() {
        assert_eq!(timeout_ms(None), -1);
        assert_eq!(timeout_ms(Some(Duration::ZERO)), 0);
        assert_eq!(timeout_ms(Some(Duration::from_micros(10))), 1);
        assert_eq!(timeout_ms(Some(Duration::from_millis(1500))), 1500);
        assert_eq!(
            timeout_ms(Some(Duration::from_secs(u64::MAX / 4))),
            libc::c_int::MAX
        );
    }
}
