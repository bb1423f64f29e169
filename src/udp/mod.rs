//! UDP echo (RFC 862's other half), served by the reactor's workers.
//!
//! Each worker owns one `SO_REUSEPORT` UDP socket bound to the TCP listener's address, in its
//! own poller: the kernel spreads datagrams over the workers by source, so there is no
//! hand-off. A worker receives with `recvmmsg` and replies with `sendmmsg`, a batch at a time.
//!
//! - [`loop_guard`]: the loop-refusal rule (no echo to source ports below 1024).
//! - [`source_limit`]: `SourceLimiter`, the per-source-address rate limit.
//! - [`echo`]: `UdpEcho`, one worker's socket, batch buffers, rules and counters.

pub(crate) mod echo;
pub(crate) mod loop_guard;
pub(crate) mod source_limit;

use std::io;
use std::net::SocketAddr;

use socket2::{Domain, Protocol, Socket, Type};

pub(crate) use echo::UdpEcho;

/// Largest UDP payload echoed: what one IPv4 datagram can carry (65,535 − 20 − 8). IPv6 can
/// carry up to 65,527 bytes; those larger datagrams arrive truncated and are dropped.
pub(crate) const MAX_DATAGRAM: usize = 65_507;

/// `SO_RCVBUF` asked for each UDP socket (the kernel doubles it for its bookkeeping).
pub(crate) const RECV_BUFFER: usize = 1 << 20;

/// Binds `count` non-blocking, close-on-exec UDP sockets to `addr` (a port the TCP listener
/// already holds), all in one `SO_REUSEPORT` group.
pub(crate) fn bind(addr: SocketAddr, count: usize) -> io::Result<Vec<std::net::UdpSocket>> {
    (0..count)
        .map(|_| {
            let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
            // Like the TCP listener: an IPv6 address serves IPv6 only.
            if addr.is_ipv6() {
                socket.set_only_v6(true)?;
            }
            socket.set_reuse_port(true)?;
            // Room for bursts: the default (rmem_default, often 208 KiB) holds only 256
            // small datagrams, or three of 64 KiB. The kernel caps it at net.core.rmem_max.
            socket.set_recv_buffer_size(RECV_BUFFER)?;
            socket.set_nonblocking(true)?;
            socket.bind(&addr.into())?;
            Ok(socket.into())
        })
        .collect::<io::Result<Vec<_>>>()
        .map_err(|e| io::Error::new(e.kind(), format!("UDP: {e}")))
}
