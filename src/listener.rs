//! The listening socket, and the options of the sockets it accepts, shared by every model.
//!
//! socket2 rather than `std`/`mio` `bind`, because those fix the backlog at 128: a burst of
//! thousands of connects then loses SYNs and stalls for seconds on retransmits.
//!
//! [`configure_accepted`] is the one place that sets options on an accepted connection
//! (`TCP_NODELAY`, keepalive, `TCP_USER_TIMEOUT`), from the live settings, so a reload
//! reaches every connection accepted after it, in every model.

use std::fmt;
use std::io;
use std::net::{SocketAddr, TcpListener};
use std::os::fd::AsFd;
use std::time::Duration;

use socket2::{Domain, Protocol, SockRef, Socket, TcpKeepalive, Type};
use tracing::debug;

use crate::live::LiveSettings;

/// The listening socket could not be set up. Shown to the user, who exits 1.
#[derive(Debug)]
pub struct BindError {
    /// The address that was asked for.
    pub addr: SocketAddr,
    /// What the OS said.
    pub source: io::Error,
}

impl fmt::Display for BindError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "cannot listen on {}: {}", self.addr, self.source)
    }
}

impl std::error::Error for BindError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.source)
    }
}

/// Binds a non-blocking, close-on-exec listening socket with `SO_REUSEADDR` and `backlog`.
pub fn bind(addr: SocketAddr, backlog: u32) -> Result<TcpListener, BindError> {
    bind_with(addr, backlog, false)
}

/// As [`bind`], with `SO_REUSEPORT` when `reuse_port` is set: several processes (of the same
/// user) can then listen on one port, and the kernel spreads new connections over them by a
/// hash of the connection's addresses, which is how one host runs N instances behind one
/// port. A process that stops takes only the connections queued on its own socket with it.
pub fn bind_with(
    addr: SocketAddr,
    backlog: u32,
    reuse_port: bool,
) -> Result<TcpListener, BindError> {
    let make = || -> io::Result<TcpListener> {
        // socket2 creates sockets with SOCK_CLOEXEC on Linux.
        let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
        socket.set_reuse_address(true)?;
        if reuse_port {
            socket.set_reuse_port(true)?;
        }
        if addr.is_ipv6() {
            socket.set_only_v6(true)?;
        }
        socket.set_nonblocking(true)?;
        socket.bind(&addr.into())?;
        socket.listen(backlog.min(i32::MAX as u32) as i32)?;
        Ok(socket.into())
    };
    make().map_err(|source| BindError { addr, source })
}

/// Keepalive probes sent before an unanswered peer is given up (`TCP_KEEPCNT`).
pub const KEEPALIVE_PROBES: u32 = 3;

/// The gap between keepalive probes (`TCP_KEEPINTVL`) for an idle time of `idle`: a third
/// of it, so a dead peer is found about `2 × idle` after the last traffic, within 1..=75 s
/// (75 s is the kernel's default gap; a gap under a second cannot be expressed).
pub fn keepalive_interval(idle: Duration) -> Duration {
    Duration::from_secs((idle.as_secs() / 3).clamp(1, 75))
}

/// Sets the options every accepted connection gets, from the settings in force now:
/// `TCP_NODELAY`, `SO_KEEPALIVE` with `tcp_keepalive` as the idle time (interval and count
/// from [`keepalive_interval`] and [`KEEPALIVE_PROBES`]), and `TCP_USER_TIMEOUT`. Settings
/// that are off are left at the kernel's defaults. A failure is logged at debug level and
/// otherwise ignored: the peer may already be gone, and the first read will tell.
pub fn configure_accepted(connection: &impl AsFd, live: &LiveSettings) {
    let socket = SockRef::from(connection);
    let failed = |option: &str, result: io::Result<()>| {
        if let Err(e) = result {
            debug!(option, error = %e, "cannot set a socket option on a new connection");
        }
    };
    if live.nodelay() {
        failed("TCP_NODELAY", socket.set_nodelay(true));
    }
    if let Some(idle) = live.tcp_keepalive() {
        let keepalive = TcpKeepalive::new()
            .with_time(idle)
            .with_interval(keepalive_interval(idle))
            .with_retries(KEEPALIVE_PROBES);
        failed("SO_KEEPALIVE", socket.set_tcp_keepalive(&keepalive));
    }
    if let Some(timeout) = live.tcp_user_timeout() {
        failed(
            "TCP_USER_TIMEOUT",
            socket.set_tcp_user_timeout(Some(timeout)),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keepalive_interval_is_a_third_within_bounds() {
        let secs = |s| Duration::from_secs(s);
        assert_eq!(keepalive_interval(secs(1)), secs(1));
        assert_eq!(keepalive_interval(secs(60)), secs(20));
        assert_eq!(keepalive_interval(secs(7200)), secs(75));
    }
}
