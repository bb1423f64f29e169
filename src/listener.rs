//! Creating the listening socket, shared by every model.
//!
//! socket2 rather than `std`/`mio` `bind`, because those fix the backlog at 128: a burst of
//! thousands of connects then loses SYNs and stalls for seconds on retransmits.

use std::fmt;
use std::io;
use std::net::{SocketAddr, TcpListener};

use socket2::{Domain, Protocol, Socket, Type};

/// The listening socket could not be set up. Shown to the user, who exits 1.
#[derive(Debug)]
pub struct BindError {
    /// The address that was asked for.
    pub(crate) addr: SocketAddr,
    /// What the OS said.
    pub(crate) source: io::Error,
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
pub(crate) fn bind(addr: SocketAddr, backlog: u32) -> Result<TcpListener, BindError> {
    bind_with(addr, backlog, false)
}

/// As [`bind`], with `SO_REUSEPORT` when `reuse_port` is set: several processes (of the same
/// user) can then listen on one port, and the kernel spreads new connections over them by a
/// hash of the connection's addresses, which is how one host runs N instances behind one
/// port. A process that stops takes only the connections queued on its own socket with it.
pub(crate) fn bind_with(
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
