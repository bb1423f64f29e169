//! TCP sockets on raw syscalls: `Listener::accept` (accept4) and `Stream` (recv/send,
//! shutdown, socket options).

use std::io::{self, Read, Write};
use std::mem;
use std::net::{Ipv4Addr, Ipv6Addr, Shutdown, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::time::Duration;

use super::syscall;

/// A listening TCP socket.
#[derive(Debug)]
pub(crate) struct Listener {
    /// The listening descriptor (created by `listener::bind`: non-blocking, close-on-exec).
    fd: OwnedFd,
}

/// Whether an accepted socket starts non-blocking (event loops) or blocking (thread, fork,
/// blocking models).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    /// `O_NONBLOCK`: calls return `WouldBlock` instead of waiting.
    NonBlocking,
    /// Calls wait (bounded by `SO_RCVTIMEO`/`SO_SNDTIMEO` when set).
    Blocking,
}

impl From<std::net::TcpListener> for Listener {
    fn from(listener: std::net::TcpListener) -> Self {
        Listener {
            fd: OwnedFd::from(listener),
        }
    }
}

impl From<Listener> for std::net::TcpListener {
    fn from(listener: Listener) -> Self {
        std::net::TcpListener::from(listener.fd)
    }
}

impl Listener {
    /// Accepts one connection, close-on-exec, in `mode`. Returns `WouldBlock` when the
    /// backlog is empty (the listener itself is non-blocking).
    pub(crate) fn accept(&self, mode: Mode) -> io::Result<Stream> {
        let mut flags = libc::SOCK_CLOEXEC;
        if mode == Mode::NonBlocking {
            flags |= libc::SOCK_NONBLOCK;
        }
        // SAFETY: `self.fd` is an open socket; null address pointers are allowed by accept4
        // when the caller does not want the peer address.
        let fd = unsafe {
            syscall!(accept4(
                self.fd.as_raw_fd(),
                std::ptr::null_mut(),
                std::ptr::null_mut(),
                flags
            ))
        }?;
        // SAFETY: accept4 just returned this descriptor; nothing else owns it.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        Ok(Stream { fd })
    }
}

impl Listener {
    /// Stops listening without closing the descriptor (`shutdown(SHUT_RD)` on a listening
    /// socket, Linux): connections in the backlog are reset, new connects are refused, and a
    /// thread waiting on it wakes. Safe to call from another thread while the owner still
    /// holds the descriptor; the port is fully released when it is closed.
    pub(crate) fn stop_listening(&self) -> io::Result<()> {
        // SAFETY: plain syscall on a descriptor we own.
        unsafe { syscall!(shutdown(self.fd.as_raw_fd(), libc::SHUT_RD)) }.map(drop)
    }
}

/// Whether an `accept` error means the process or system ran out of descriptors or memory
/// (`EMFILE`, `ENFILE`, `ENOBUFS`, `ENOMEM`): retrying at once would fail again, and spin.
pub(crate) fn is_resource_exhaustion(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM)
    )
}

/// Whether an `accept` error means the socket no longer listens (`EINVAL`: another thread
/// stopped it with [`Listener::stop_listening`]); there is nothing left to accept.
pub(crate) fn is_not_listening(e: &io::Error) -> bool {
    e.raw_os_error() == Some(libc::EINVAL)
}

impl AsRawFd for Listener {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

impl AsFd for Listener {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

/// A connected TCP socket. Writes use `MSG_NOSIGNAL`: a write to a vanished peer is an
/// `EPIPE` error, never a `SIGPIPE`, whatever the process's signal disposition.
#[derive(Debug)]
pub(crate) struct Stream {
    /// The connected descriptor; closed on drop.
    fd: OwnedFd,
}

impl Stream {
    /// Reads into `buf`; `Ok(0)` is the peer's FIN.
    pub(crate) fn recv(&self, buf: &mut [u8]) -> io::Result<usize> {
        // SAFETY: `buf` is valid for writes of `buf.len()` bytes for the whole call.
        let n = unsafe {
            syscall!(recv(
                self.fd.as_raw_fd(),
                buf.as_mut_ptr().cast(),
                buf.len(),
                0
            ))
        }?;
        Ok(n as usize)
    }

    /// Writes from `buf`; may write less than all of it.
    pub(crate) fn send(&self, buf: &[u8]) -> io::Result<usize> {
        // SAFETY: `buf` is valid for reads of `buf.len()` bytes for the whole call.
        let n = unsafe {
            syscall!(send(
                self.fd.as_raw_fd(),
                buf.as_ptr().cast(),
                buf.len(),
                libc::MSG_NOSIGNAL
            ))
        }?;
        Ok(n as usize)
    }

    /// `shutdown(2)`: ends one or both directions; also wakes a thread blocked on this socket.
    pub(crate) fn shutdown(&self, how: Shutdown) -> io::Result<()> {
        let how = match how {
            Shutdown::Read => libc::SHUT_RD,
            Shutdown::Write => libc::SHUT_WR,
            Shutdown::Both => libc::SHUT_RDWR,
        };
        // SAFETY: plain syscall on a descriptor we own.
        unsafe { syscall!(shutdown(self.fd.as_raw_fd(), how)) }.map(drop)
    }

    /// Sets `SO_RCVTIMEO` and `SO_SNDTIMEO` to `timeout` (`None` waits forever). A blocking
    /// call that times out fails with `WouldBlock`.
    pub(crate) fn set_timeouts(&self, timeout: Option<Duration>) -> io::Result<()> {
        let tv = match timeout {
            // A zero timeval means "no timeout"; never let a tiny duration round to it.
            Some(t) => libc::timeval {
                tv_sec: t.as_secs().min(libc::time_t::MAX as u64) as libc::time_t,
                tv_usec: t.subsec_micros().max(u32::from(t.as_secs() == 0)) as libc::suseconds_t,
            },
            None => libc::timeval {
                tv_sec: 0,
                tv_usec: 0,
            },
        };
        setsockopt(self.fd.as_fd(), libc::SOL_SOCKET, libc::SO_RCVTIMEO, tv)?;
        setsockopt(self.fd.as_fd(), libc::SOL_SOCKET, libc::SO_SNDTIMEO, tv)
    }

    /// The peer's address (for logs).
    pub(crate) fn peer_addr(&self) -> io::Result<SocketAddr> {
        // SAFETY: sockaddr_storage is plain data; all-zero is a valid value.
        let mut storage: libc::sockaddr_storage = unsafe { mem::zeroed() };
        let mut len = mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
        // SAFETY: `storage` has room for any address family and `len` says so.
        unsafe {
            syscall!(getpeername(
                self.fd.as_raw_fd(),
                (&raw mut storage).cast(),
                &mut len
            ))
        }?;
        to_socket_addr(&storage)
    }
}

fn setsockopt<T>(
    fd: BorrowedFd<'_>,
    level: libc::c_int,
    name: libc::c_int,
    value: T,
) -> io::Result<()> {
    // SAFETY: `value` lives across the call and the length passed is exactly its size; the
    // caller picks `T` to match the option (c_int or timeval).
    unsafe {
        syscall!(setsockopt(
            fd.as_raw_fd(),
            level,
            name,
            (&raw const value).cast(),
            mem::size_of::<T>() as libc::socklen_t
        ))
    }
    .map(drop)
}

/// The address in `storage` (IPv4 or IPv6; another family is an error).
pub(crate) fn to_socket_addr(storage: &libc::sockaddr_storage) -> io::Result<SocketAddr> {
    match libc::c_int::from(storage.ss_family) {
        libc::AF_INET => {
            // SAFETY: the family says the storage holds a sockaddr_in, which it is large and
            // aligned enough for.
            let a: &libc::sockaddr_in = unsafe { &*(storage as *const _ as *const _) };
            Ok(SocketAddr::V4(SocketAddrV4::new(
                Ipv4Addr::from(u32::from_be(a.sin_addr.s_addr)),
                u16::from_be(a.sin_port),
            )))
        }
        libc::AF_INET6 => {
            // SAFETY: as above, for sockaddr_in6.
            let a: &libc::sockaddr_in6 = unsafe { &*(storage as *const _ as *const _) };
            Ok(SocketAddr::V6(SocketAddrV6::new(
                Ipv6Addr::from(a.sin6_addr.s6_addr),
                u16::from_be(a.sin6_port),
                a.sin6_flowinfo,
                a.sin6_scope_id,
            )))
        }
        family => Err(io::Error::other(format!(
            "unexpected address family {family}"
        ))),
    }
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.recv(buf)
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.send(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl From<OwnedFd> for Stream {
    /// Takes a connected socket accepted elsewhere (by io_uring).
    fn from(fd: OwnedFd) -> Self {
        Stream { fd }
    }
}

impl AsRawFd for Stream {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

impl AsFd for Stream {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

/// `IP_BIND_ADDRESS_NO_PORT` on `fd`: with a bind before connect, leave the port choice to
/// `connect`, which may then share a port among different destinations and reuse ports in
/// TIME_WAIT; a plain `bind(ip, 0)` would reserve a port outright and run out after ~28k.
pub fn set_bind_address_no_port(fd: std::os::fd::BorrowedFd<'_>) -> io::Result<()> {
    let one: libc::c_int = 1;
    // SAFETY: `fd` is a live socket for the whole call, and `one` is a live c_int whose
    // size is passed alongside it.
    unsafe {
        syscall!(setsockopt(
            std::os::fd::AsRawFd::as_raw_fd(&fd),
            libc::IPPROTO_IP,
            libc::IP_BIND_ADDRESS_NO_PORT,
            (&raw const one).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        ))
    }
    .map(drop)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_echo_timeouts_and_shutdown_on_loopback() {
        let std_listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        std_listener.set_nonblocking(true).unwrap();
        let addr = std_listener.local_addr().unwrap();
        let listener = Listener::from(std_listener);
        assert_eq!(
            listener.accept(Mode::Blocking).unwrap_err().kind(),
            io::ErrorKind::WouldBlock
        );
        let mut client = std::net::TcpStream::connect(addr).unwrap();
        let client_addr = client.local_addr().unwrap();
        let server = loop {
            match listener.accept(Mode::Blocking) {
                Ok(s) => break s,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => std::thread::yield_now(),
                Err(e) => panic!("accept: {e}"),
            }
        };
        assert_eq!(server.peer_addr().unwrap(), client_addr);
        server
            .set_timeouts(Some(Duration::from_millis(20)))
            .unwrap();
        let mut buf = [0u8; 8];
        assert_eq!(
            server.recv(&mut buf).unwrap_err().kind(),
            io::ErrorKind::WouldBlock,
            "SO_RCVTIMEO makes a blocking read give up"
        );
        client.write_all(b"ping").unwrap();
        let n = server.recv(&mut buf).unwrap();
        assert_eq!(server.send(&buf[..n]).unwrap(), 4);
        server.shutdown(Shutdown::Write).unwrap();
        let mut back = Vec::new();
        client.read_to_end(&mut back).unwrap();
        assert_eq!(back, b"ping");
    }
}
