//! Resource limits: the open-files limit (`RLIMIT_NOFILE`).

use std::io;

use super::syscall;

/// The open-files limit of this process: (soft, hard).
pub fn nofile() -> io::Result<(u64, u64)> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `lim` is a valid, writable rlimit for the duration of the call.
    unsafe { syscall!(getrlimit(libc::RLIMIT_NOFILE, &mut lim)) }?;
    Ok((lim.rlim_cur, lim.rlim_max))
}

/// Sets the soft open-files limit to `soft`, keeping the hard limit `hard`.
pub fn set_nofile(soft: u64, hard: u64) -> io::Result<()> {
    let lim = libc::rlimit {
        rlim_cur: soft as libc::rlim_t,
        rlim_max: hard as libc::rlim_t,
    };
    // SAFETY: `lim` is a valid rlimit that lives across the call; only our own limit changes.
    unsafe { syscall!(setrlimit(libc::RLIMIT_NOFILE, &lim)) }.map(drop)
}
