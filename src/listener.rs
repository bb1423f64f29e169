//! Creating the listening socket, shared by every model.
//!
//! socket2 rather than `std`/`mio` `bind`, because those fix the backlog at 128: a burst of
//! thousands of connects then loses SYNs and stalls for seconds on retransmits.

use std::fmt;
use std::io;
use std::net::{SocketAddr, TcpListener};

use socket2::{Domain, Protocol, Socket, Type};

use crate::config::Config;
use crate::models::Model;

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

/// Like [`bind`], with `SO_REUSEPORT` when `reuse_port` is set: further sockets bound with it
/// by the same user may then listen on the same address, and the kernel spreads incoming
/// connections over them by a hash of the connection's addresses. Every socket of such a
/// group must set it. Used by `--dispatch reuseport` (one socket per worker) and by
/// `--reuse-port` (several processes on one port, how one host runs N instances; a process
/// that stops takes only the connections queued on its own socket with it).
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

/// Binds the listening socket `config` asks for: with `SO_REUSEPORT` when `reuse_port` is set
/// or its dispatch mode gives each worker a listener of its own on the same port (the
/// workers' sockets are bound later, on the port this one got; see `reactor::pool`).
pub(crate) fn bind_for(config: &Config) -> Result<TcpListener, BindError> {
    let reuse_port =
        config.reuse_port || (config.model == Model::Reactor && config.dispatch.needs_reuse_port());
    bind_with(config.listen, config.backlog, reuse_port)
}
