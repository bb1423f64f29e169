//! Users and privileges: the password database (`getpwnam_r`), the effective uid, and
//! dropping root for good (`setgroups`, `setgid`, `setuid`).

use std::ffi::{CStr, CString};
use std::io;

use super::syscall;

/// A user id.
pub(crate) type Uid = libc::uid_t;
/// A group id.
pub(crate) type Gid = libc::gid_t;

/// A password-database entry, as far as privilege dropping needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Passwd {
    /// Login name.
    pub name: String,
    /// User id.
    pub uid: Uid,
    /// Primary group id.
    pub gid: Gid,
}

/// `getpwnam_r(3)`: `Ok(None)` when there is no such user.
pub(crate) fn user_by_name(name: &str) -> io::Result<Option<Passwd>> {
    let cname = CString::new(name).map_err(|_| io::Error::other("user name contains NUL"))?;
    let mut buf = vec![0u8; 1024];
    loop {
        // SAFETY: an all-zero `passwd` is a valid value of this plain C struct.
        let mut pwd: libc::passwd = unsafe { std::mem::zeroed() };
        let mut result: *mut libc::passwd = std::ptr::null_mut();
        // `buf` outlives every use of the strings `pwd` points into (we copy them out below).
        // SAFETY: every pointer is valid for the call: `cname` is NUL-terminated, `pwd` and
        // `result` are out-parameters, `buf` is writable for `buf.len()` bytes.
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

/// The effective user id.
pub(crate) fn effective_uid() -> Uid {
    // SAFETY: no pointers, cannot fail.
    unsafe { libc::geteuid() }
}

/// Drops to `uid`/`gid` for good: clears the supplementary groups, then `setgid`, then
/// `setuid` (in that order: after `setuid` we could no longer change groups).
///
/// glibc applies each of these to every thread of the process, but callers run it before any
/// thread exists anyway.
pub(crate) fn drop_privileges(uid: Uid, gid: Gid) -> io::Result<()> {
    // SAFETY: a zero-length list with a null pointer is the documented way to clear it.
    unsafe { syscall!(setgroups(0, std::ptr::null())) }?;
    // SAFETY: no pointers; sets real, effective and saved group ids (we are root here).
    unsafe { syscall!(setgid(gid)) }?;
    // SAFETY: no pointers; sets real, effective and saved user ids (we are root here).
    unsafe { syscall!(setuid(uid)) }?;
    if uid != 0 {
        // SAFETY: no pointers. This must fail now; if it succeeds the drop did not stick.
        if unsafe { libc::setuid(0) } == 0 {
            return Err(io::Error::other("could regain root after setuid"));
        }
    }
    Ok(())
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
}
