//! The raw libc calls behind daemon, supervisor, pid file, privilege drop and syslog: small
//! safe wrappers returning `io::Result`, each `unsafe` block with its reason.
//!
//! Kept apart from the I/O models' own syscall layer on purpose (different concerns: process
//! control here, socket readiness there); they may be unified later.

use std::ffi::{CStr, CString};
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, RawFd};
use std::time::Duration;

/// Turns a `-1` return into the calling thread's `errno`.
fn check(ret: libc::c_int) -> io::Result<libc::c_int> {
    if ret == -1 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

/// Which side of a `fork` we are on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Forked {
    /// The original process; the child has this pid.
    Parent(libc::pid_t),
    /// The new process.
    Child,
}

/// Threads of this process, from `/proc/self/status`.
pub fn thread_count() -> io::Result<usize> {
    let status = std::fs::read_to_string("/proc/self/status")?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("Threads:"))
        .and_then(|n| n.trim().parse().ok())
        .ok_or_else(|| io::Error::other("no Threads line in /proc/self/status"))
}

/// `fork(2)`, refused unless the process has exactly one thread.
///
/// In a multi-threaded process the child would inherit locks held by threads that do not
/// exist there (allocator, stdio, logging), and may deadlock on its first allocation. Every
/// fork in this crate happens before any thread is started; this check keeps it that way.
pub fn fork_single_threaded() -> io::Result<Forked> {
    let threads = thread_count()?;
    if threads != 1 {
        return Err(io::Error::other(format!(
            "refusing to fork a process with {threads} threads"
        )));
    }
    // SAFETY: the process has a single thread (checked just above, and nothing here starts
    // one in between), so the child inherits no lock held by another thread and may go on
    // running ordinary Rust code.
    let pid = check(unsafe { libc::fork() })?;
    Ok(if pid == 0 {
        Forked::Child
    } else {
        Forked::Parent(pid)
    })
}

/// Ends the process at once, without running exit handlers or flushing stdio buffers: the
/// right way out of the intermediate process of a double fork, whose buffers belong to the
/// original.
pub fn exit_now(code: i32) -> ! {
    // SAFETY: `_exit` is always safe to call; it never returns.
    unsafe { libc::_exit(code) }
}

/// `setsid(2)`: a new session with no controlling terminal.
pub fn setsid() -> io::Result<()> {
    // SAFETY: no pointers; fails (EPERM) only if we already lead a process group.
    check(unsafe { libc::setsid() }).map(drop)
}

/// `umask(2)`; returns the previous mask.
pub fn umask(mask: libc::mode_t) -> libc::mode_t {
    // SAFETY: no pointers, cannot fail.
    unsafe { libc::umask(mask) }
}

/// `dup2(2)`: makes `target` refer to what `fd` refers to.
pub fn dup2(fd: BorrowedFd<'_>, target: RawFd) -> io::Result<()> {
    loop {
        // SAFETY: `fd` is open (borrowed); `target` is a descriptor number we intend to
        // replace (0, 1 or 2), which no Rust object in this crate owns.
        match check(unsafe { libc::dup2(fd.as_raw_fd(), target) }) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            result => return result.map(drop),
        }
    }
}

/// Closes every descriptor numbered 3 or above except those in `keep`. Called right after
/// daemonizing, when no Rust object owns a descriptor other than those in `keep`.
pub fn close_inherited_fds(keep: &[RawFd]) -> io::Result<()> {
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

/// `flock(2)` with `LOCK_EX | LOCK_NB`: `Ok(false)` if another open file holds the lock.
pub fn try_lock_exclusive(fd: BorrowedFd<'_>) -> io::Result<bool> {
    loop {
        // SAFETY: `fd` is an open descriptor (borrowed for the call).
        match check(unsafe { libc::flock(fd.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) }) {
            Ok(_) => return Ok(true),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    }
}

/// `waitpid(pid, 0)`, retrying `EINTR`; returns the raw wait status.
pub fn wait_for(pid: libc::pid_t) -> io::Result<libc::c_int> {
    let mut status = 0;
    loop {
        // SAFETY: `status` is a valid out-pointer for the duration of the call.
        match check(unsafe { libc::waitpid(pid, &mut status, 0) }) {
            Ok(_) => return Ok(status),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    }
}

/// `kill(2)`.
pub fn kill(pid: u32, signal: libc::c_int) -> io::Result<()> {
    let pid = libc::pid_t::try_from(pid).map_err(|_| io::Error::other("pid out of range"))?;
    // SAFETY: no pointers; a wrong pid is an error, not undefined behaviour.
    check(unsafe { libc::kill(pid, signal) }).map(drop)
}

/// `getppid(2)`.
pub fn parent_pid() -> libc::pid_t {
    // SAFETY: no pointers, cannot fail.
    unsafe { libc::getppid() }
}

/// Effective user id.
pub fn effective_uid() -> libc::uid_t {
    // SAFETY: no pointers, cannot fail.
    unsafe { libc::geteuid() }
}

/// A password-database entry, as far as privilege dropping needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Passwd {
    /// Login name.
    pub name: String,
    /// User id.
    pub uid: libc::uid_t,
    /// Primary group id.
    pub gid: libc::gid_t,
}

/// `getpwnam_r(3)`: `Ok(None)` when there is no such user.
pub fn user_by_name(name: &str) -> io::Result<Option<Passwd>> {
    let cname = CString::new(name).map_err(|_| io::Error::other("user name contains NUL"))?;
    let mut buf = vec![0u8; 1024];
    loop {
        // SAFETY: an all-zero `passwd` is a valid value of this plain C struct.
        let mut pwd: libc::passwd = unsafe { std::mem::zeroed() };
        let mut result: *mut libc::passwd = std::ptr::null_mut();
        // SAFETY: every pointer is valid for the call: `cname` is NUL-terminated, `pwd` and
        // `result` are out-parameters, `buf` is writable for `buf.len()` bytes and outlives
        // every use of the strings `pwd` points into (we copy them out below).
        let rc = unsafe {
            libc::getpwnam_r(
                cname.as_ptr(),
                &mut pwd,
                buf.as_mut_ptr().cast(),
                buf.len(),
                &mut result,
            )
        };
        if rc == libc::ERANGE && buf.len() < 1 << 20 {
            buf.resize(buf.len() * 4, 0);
            continue;
        }
        if rc != 0 {
            return Err(io::Error::from_raw_os_error(rc));
        }
        if result.is_null() {
            return Ok(None);
        }
        // SAFETY: on success `pw_name` points to a NUL-terminated string inside `buf`.
        let name = unsafe { CStr::from_ptr(pwd.pw_name) }
            .to_string_lossy()
            .into_owned();
        return Ok(Some(Passwd {
            name,
            uid: pwd.pw_uid,
            gid: pwd.pw_gid,
        }));
    }
}

/// Drops to `uid`/`gid` for good: clears the supplementary groups, then `setgid`, then
/// `setuid` (in that order: after `setuid` we could no longer change groups).
///
/// glibc applies each of these to every thread of the process, but it is called before any
/// thread exists anyway.
pub fn drop_privileges(uid: libc::uid_t, gid: libc::gid_t) -> io::Result<()> {
    // SAFETY: a zero-length list with a null pointer is the documented way to clear it.
    check(unsafe { libc::setgroups(0, std::ptr::null()) })?;
    // SAFETY: no pointers; sets real, effective and saved group ids (we are root here).
    check(unsafe { libc::setgid(gid) })?;
    // SAFETY: no pointers; sets real, effective and saved user ids (we are root here).
    check(unsafe { libc::setuid(uid) })?;
    if uid != 0 {
        // SAFETY: no pointers. This must fail now; if it succeeds the drop did not stick.
        if unsafe { libc::setuid(0) } == 0 {
            return Err(io::Error::other("could regain root after setuid"));
        }
    }
    Ok(())
}

/// Clears `FD_CLOEXEC` so `fd` survives `exec`. Async-signal-safe: used between `fork` and
/// `exec`.
pub fn clear_cloexec(fd: RawFd) -> io::Result<()> {
    // SAFETY: `fcntl` on a descriptor number; a closed one gives EBADF, not UB.
    let flags = check(unsafe { libc::fcntl(fd, libc::F_GETFD) })?;
    // SAFETY: as above.
    check(unsafe { libc::fcntl(fd, libc::F_SETFD, flags & !libc::FD_CLOEXEC) }).map(drop)
}

/// Asks the kernel to send `signal` to this process when its parent dies. Async-signal-safe.
pub fn set_parent_death_signal(signal: libc::c_int) -> io::Result<()> {
    // SAFETY: PR_SET_PDEATHSIG takes the signal number as its only argument.
    check(unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, signal as libc::c_ulong, 0, 0, 0) })
        .map(drop)
}

/// Whether `fd` is open.
pub fn is_open(fd: RawFd) -> bool {
    // SAFETY: `fcntl(F_GETFD)` only inspects the descriptor table.
    unsafe { libc::fcntl(fd, libc::F_GETFD) != -1 }
}

/// Waits until one of `fds` is readable (or hung up), or `timeout` passes. Returns, per fd,
/// whether it is ready; all false on timeout. `EINTR` returns all false too (a signal
/// arrived: the caller re-checks its flags).
pub fn wait_readable(fds: &[BorrowedFd<'_>], timeout: Option<Duration>) -> io::Result<Vec<bool>> {
    let mut pollfds: Vec<libc::pollfd> = fds
        .iter()
        .map(|fd| libc::pollfd {
            fd: fd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        })
        .collect();
    let timeout_ms = match timeout {
        None => -1,
        // Round up so we do not wake just before the deadline and spin once more.
        Some(t) => libc::c_int::try_from(t.as_micros().div_ceil(1000)).unwrap_or(libc::c_int::MAX),
    };
    // SAFETY: `pollfds` is a valid array of `pollfds.len()` entries for the call.
    let rc = unsafe {
        libc::poll(
            pollfds.as_mut_ptr(),
            pollfds.len() as libc::nfds_t,
            timeout_ms,
        )
    };
    match check(rc) {
        Ok(_) => Ok(pollfds.iter().map(|p| p.revents != 0).collect()),
        Err(e) if e.kind() == io::ErrorKind::Interrupted => Ok(vec![false; fds.len()]),
        Err(e) => Err(e),
    }
}

/// Clock ticks per second (`sysconf(_SC_CLK_TCK)`), the unit of `/proc/*/stat` CPU times.
pub fn clock_ticks_per_second() -> Option<u64> {
    // SAFETY: no pointers; returns -1 on error.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    u64::try_from(ticks).ok().filter(|t| *t > 0)
}

/// Identity syslog prefixes every message with; `openlog` keeps the pointer, so it is static.
static SYSLOG_IDENT: &CStr = c"reactor-pool";

/// `openlog(3)` with the pid in each message, facility `daemon`, connecting at once (so the
/// connection is made while `/dev/log` is still reachable, before privileges are dropped).
pub fn open_syslog() {
    // SAFETY: `SYSLOG_IDENT` is a static NUL-terminated string, valid for the whole program,
    // as `openlog` requires (it keeps the pointer).
    unsafe {
        libc::openlog(
            SYSLOG_IDENT.as_ptr(),
            libc::LOG_PID | libc::LOG_NDELAY,
            libc::LOG_DAEMON,
        )
    };
}

/// `syslog(3)` of one message at `priority` (NULs in it are replaced).
pub fn syslog(priority: libc::c_int, message: &str) {
    let message = CString::new(message.replace('\0', " ")).unwrap_or_default();
    // SAFETY: the format is a static "%s" and its one argument is a NUL-terminated string
    // that lives for the call; glibc's syslog is thread-safe.
    unsafe { libc::syslog(priority, c"%s".as_ptr(), message.as_ptr()) };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn looks_up_root_and_misses_nonsense() {
        let root = user_by_name("root").unwrap().expect("root exists");
        assert_eq!((root.uid, root.gid), (0, 0));
        assert_eq!(user_by_name("no-such-user-reactor-pool").unwrap(), None);
    }

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
