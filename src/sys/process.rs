//! Processes: `fork`, `waitpid`, `kill`, `_exit`.

use std::io;

use super::syscall;

/// A process id.
pub type Pid = libc::pid_t;

/// Which side of a `fork` we are on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fork {
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
/// child forever. The child must leave through [`exit_now`] and never return into code that
/// would run the parent's destructors or exit paths twice.
pub unsafe fn fork() -> io::Result<Fork> {
    // SAFETY: the caller guarantees the process is single-threaded.
    let pid = unsafe { syscall!(fork()) }?;
    Ok(if pid == 0 {
        Fork::Child
    } else {
        Fork::Parent(pid)
    })
}

/// How a child ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitStatus {
    /// It exited with this code.
    Code(i32),
    /// A signal killed it.
    Signal(i32),
}

/// Reaps one exited child without blocking (`waitpid(-1, WNOHANG)`). `Ok(None)` when no
/// child has exited yet or there are no children at all.
pub fn reap_any() -> io::Result<Option<(Pid, ExitStatus)>> {
    wait(-1, libc::WNOHANG)
}

/// Waits for `pid` to exit and reaps it.
pub fn reap_blocking(pid: Pid) -> io::Result<Option<(Pid, ExitStatus)>> {
    wait(pid, 0)
}

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
    // SAFETY: plain syscall; a pid that has gone away yields ESRCH, not harm, because we
    // only signal children we have not reaped yet (their pids cannot be reused).
    unsafe { syscall!(kill(pid, signo)) }.map(drop)
}

/// Ends the calling process at once with `code`, running no destructors, atexit handlers or
/// stdio flushes (the right exit for a forked child, whose copies of those belong to the
/// parent).
pub fn exit_now(code: i32) -> ! {
    // SAFETY: _exit is always safe to call; it does not return.
    unsafe { libc::_exit(code) }
}

/// Number of threads in this process (from `/proc/self/task`).
pub fn thread_count() -> io::Result<usize> {
    Ok(std::fs::read_dir("/proc/self/task")?.count())
}
