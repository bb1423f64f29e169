//! The system log: `openlog(3)` and `syslog(3)`, facility `daemon`.

use std::ffi::{CStr, CString};

/// How important a message is (the syslog priorities this server uses).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Priority {
    /// `LOG_ERR`
    Error,
    /// `LOG_WARNING`
    Warning,
    /// `LOG_INFO`
    Info,
    /// `LOG_DEBUG`
    Debug,
}

impl Priority {
    fn raw(self) -> libc::c_int {
        match self {
            Priority::Error => libc::LOG_ERR,
            Priority::Warning => libc::LOG_WARNING,
            Priority::Info => libc::LOG_INFO,
            Priority::Debug => libc::LOG_DEBUG,
        }
    }
}

/// Identity syslog prefixes every message with; `openlog` keeps the pointer, so it is static.
static IDENT: &CStr = c"reactor-pool";

/// `openlog(3)` with the pid in each message, facility `daemon`, connecting at once (so the
/// connection is made while `/dev/log` is still reachable, before privileges are dropped).
pub(crate) fn open() {
    // SAFETY: `IDENT` is a static NUL-terminated string, valid for the whole program, as
    // `openlog` requires (it keeps the pointer).
    unsafe {
        libc::openlog(
            IDENT.as_ptr(),
            libc::LOG_PID | libc::LOG_NDELAY,
            libc::LOG_DAEMON,
        )
    };
}

/// `syslog(3)` of one message at `priority` (NULs in it are replaced).
pub(crate) fn send(priority: Priority, message: &str) {
    let message = CString::new(message.replace('\0', " ")).unwrap_or_default();
    // SAFETY: the format is a static "%s" and its one argument is a NUL-terminated string
    // that lives for the call; glibc's syslog is thread-safe.
    unsafe { libc::syslog(priority.raw(), c"%s".as_ptr(), message.as_ptr()) };
}
