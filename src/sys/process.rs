//! Processes: `fork`, `waitpid`, `kill`, `_exit`, sessions, the parent-death signal, and what
//! `/proc` and `sysconf` say about this process.

use std::io;

use super::syscall;

/// A process id.
pub type Pid = libc::pid_t;

/// Which side of a `fork` we are on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Fork {
    /// In the parent; the child's pid.
    Parent(Pid),
    /// In the child.
    Child,
}

/// Forks the calling process.
///
/// # Safety
/// The process must be single-threaded: the child gets a copy of only the calling thread, so
/// a lock held by any other thread (the allocator's, stdio's, a logger's) stays locked in the
/// child forever. The child must leave through [`exit_now`] (or `exec`) and never return into
/// code that would run the parent's destructors or exit paths twice.
pub(crate) unsafe fn fork() -> io::Result<Fork> {
    // SAFETY: the caller guarantees the process is single-threaded.
    let pid = unsafe { syscall!(fork()) }?;
    Ok(if pid == 0 {
        Fork::Child
    } else {
        Fork::Parent(pid)
    })
}

/// `fork(2)`, refused unless the process has exactly one thread.
///
/// In a multi-threaded process the child would inherit locks held by threads that do not
/// exist there (allocator, stdio, logging), and may deadlock on its first allocation. Every
/// fork in the daemon start-up happens before any thread is started; this check keeps it that
/// way. Both sides may go on running ordinary Rust code.
pub(crate) fn fork_single_threaded() -> io::Result<Fork> {
    let threads = thread_count()?;
    if threads != 1 {
        return Err(io::Error::other(format!(
            "refusing to fork a process with {threads} threads"
        )));
    }
    // SAFETY: the process has a single thread (checked just above, and nothing here starts
    // one in between), so the child inherits no lock held by another thread.
    unsafe { fork() }
}

/// How a child ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ExitStatus {
    /// It exited with this code.
    Code(i32),
    /// A signal killed it.
    Signal(i32),
}

/// Reaps one exited child without blocking (`waitpid(-1, WNOHANG)`). `Ok(None)` when no
/// child has exited yet or there are no children at all.
pub(crate) fn reap_any() -> io::Result<Option<(Pid, ExitStatus)>> {
    wait(-1, libc::WNOHANG)
}

/// Waits for `pid` to exit and reaps it (`Ok(None)` if it is not our child).
pub(crate) fn reap_blocking(pid: Pid) -> io::Result<Option<(Pid, ExitStatus)>> {
    wait(pid, 0)
}

/// `waitpid`, retrying `EINTR`; `ECHILD` (nothing to wait for) is `Ok(None)`.
fn wait(pid: Pid, flags: libc::c_int) -> io::Result<Option<(Pid, ExitStatus)>> {
    let mut status = 0;
    loop {
        // SAFETY: `status` is a valid place for waitpid to store the status.
        match unsafe { syscall!(waitpid(pid, &mut status, flags)) } {
            Ok(0) => return Ok(None),
            Ok(pid) => {
                let exit = if libc::WIFEXITED(status) {
                    ExitStatus::Code(libc::WEXITSTATUS(status))
                } else {
                    ExitStatus::Signal(libc::WTERMSIG(status))
                };
                return Ok(Some((pid, exit)));
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) if e.raw_os_error() == Some(libc::ECHILD) => return Ok(None),
            Err(e) => return Err(e),
        }
    }
}

/// Sends `signo` to `pid`.
pub fn kill(pid: Pid, signo: libc::c_int) -> io::Result<()> {
    // SAFETY: no pointers; a pid that has gone away yields ESRCH, not harm. Callers signal
    // only children they have not reaped yet, whose pids cannot have been reused.
    unsafe { syscall!(kill(pid, signo)) }.map(drop)
}

/// Ends the calling process at once with `code`, running no destructors, atexit handlers or
/// stdio flushes: the right exit for a forked child (or the intermediate process of a double
/// fork), whose copies of those belong to the parent.
pub(crate) fn exit_now(code: i32) -> ! {
    // SAFETY: _exit is always safe to call; it does not return.
    unsafe { libc::_exit(code) }
}

/// `setsid(2)`: a new session with no controlling terminal.
pub(crate) fn setsid() -> io::Result<()> {
    // SAFETY: no pointers; fails (EPERM) only if we already lead a process group.
    unsafe { syscall!(setsid()) }.map(drop)
}

/// `getppid(2)`.
pub(crate) fn parent_pid() -> Pid {
    // SAFETY: no pointers, cannot fail.
    unsafe { libc::getppid() }
}

/// Asks the kernel to send `signo` to this process when its parent dies. Async-signal-safe
/// (used between `fork` and `exec`).
pub fn set_parent_death_signal(signo: libc::c_int) -> io::Result<()> {
    // SAFETY: PR_SET_PDEATHSIG takes the signal number as its only argument.
    unsafe {
        syscall!(prctl(
            libc::PR_SET_PDEATHSIG,
            signo as libc::c_ulong,
            0,
            0,
            0
        ))
    }
    .map(drop)
}

/// Number of threads in this process (from `/proc/self/task`).
pub(crate) fn thread_count() -> io::Result<usize> {
    Ok(std::fs::read_dir("/proc/self/task")?.count())
}

/// Clock ticks per second (`sysconf(_SC_CLK_TCK)`), the unit of `/proc/*/stat` CPU times.
pub fn clock_ticks_per_second() -> Option<u64> {
    // SAFETY: no pointers; returns -1 on error.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    u64::try_from(ticks).ok().filter(|t| *t > 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forking_is_refused_with_threads() {
        // Keep a second thread alive during the call, whatever the harness does.
        let (tx, rx) = std::sync::mpsc::channel::<()>();
        let other = std::thread::spawn(move || rx.recv());
        let e = fork_single_threaded().unwrap_err();
        drop(tx);
        let _ = other.join();
        assert!(e.to_string().contains("threads"), "{e}");
    }
}
