//! `configure_accepted`: the socket options every accepted connection gets, in every model
//! and the reactor, from the live settings in force at accept (so a reload reaches every
//! connection accepted after it): `TCP_NODELAY`, TCP keepalive and `TCP_USER_TIMEOUT`.
//!
//! The last two find dead peers: a peer that vanishes without FIN or RST (pulled cable,
//! crashed host, dropped NAT state) is invisible until a write fails. Keepalive probes an
//! idle one; the user timeout ends one that stopped acknowledging what we sent.

use std::io;
use std::os::fd::AsFd;
use std::time::Duration;

use socket2::{SockRef, TcpKeepalive};
use tracing::debug;

use crate::live::LiveSettings;

/// Keepalive probes sent before an unanswered peer is given up (`TCP_KEEPCNT`).
pub(crate) const KEEPALIVE_PROBES: u32 = 3;

/// The gap between keepalive probes (`TCP_KEEPINTVL`) for an idle time of `idle`: a third
/// of it, so a dead peer is found about `2 × idle` after the last traffic, within 1..=75 s
/// (75 s is the kernel's default gap; a gap under a second cannot be expressed).
pub(crate) fn keepalive_interval(idle: Duration) -> Duration {
    Duration::from_secs((idle.as_secs() / 3).clamp(1, 75))
}

/// Sets the options every accepted connection gets, from the settings in force now:
/// `TCP_NODELAY`, `SO_KEEPALIVE` with `tcp_keepalive` as the idle time (interval and count
/// from [`keepalive_interval`] and [`KEEPALIVE_PROBES`]), and `TCP_USER_TIMEOUT`. Settings
/// that are off are left at the kernel's defaults. A failure is logged at debug level and
/// otherwise ignored: the peer may already be gone, and the first read will tell.
pub(crate) fn configure_accepted(connection: &impl AsFd, live: &LiveSettings) {
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
