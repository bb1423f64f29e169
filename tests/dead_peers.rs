//! Dead peers: `--tcp-keepalive` and `--tcp-user-timeout` reach the server's end of every
//! accepted connection, in every model (read back from the server process's own socket,
//! duplicated with `pidfd_getfd`); they are off by default; and a reload applies them to
//! connections accepted after it, leaving open ones as they were.

mod ops_util;

use std::net::TcpStream;
use std::os::fd::{FromRawFd, OwnedFd};
use std::time::Duration;

use ops_util::*;
use reactor_pool::Model;

/// The server's end of `client`: searched among the descriptors of `pid` and of its children
/// (the fork model serves in a child), duplicated into this process.
fn server_end(pid: u32, client: &TcpStream) -> OwnedFd {
    let ours = client.local_addr().unwrap();
    let mut found = None;
    wait_until("the server holds the connection", || {
        found = std::iter::once(pid)
            .chain(children_of(pid))
            .find_map(|p| find_peer(p, ours));
        found.is_some()
    });
    found.unwrap()
}

/// A socket of process `pid` whose peer is `peer`.
fn find_peer(pid: u32, peer: std::net::SocketAddr) -> Option<OwnedFd> {
    // SAFETY: pidfd_open takes a pid and flags, no pointers.
    let pidfd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid as libc::pid_t, 0) };
    if pidfd < 0 {
        return None;
    }
    // SAFETY: pidfd_open returned a new descriptor that nothing else owns.
    let pidfd = unsafe { OwnedFd::from_raw_fd(pidfd as i32) };
    let dir = std::fs::read_dir(format!("/proc/{pid}/fd")).ok()?;
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .find_map(|target| {
            use std::os::fd::AsRawFd;
            // SAFETY: pidfd_getfd takes descriptors and flags, no pointers.
            let fd = unsafe { libc::syscall(libc::SYS_pidfd_getfd, pidfd.as_raw_fd(), target, 0) };
            if fd < 0 {
                return None;
            }
            // SAFETY: pidfd_getfd returned a new descriptor that nothing else owns.
            let fd = unsafe { OwnedFd::from_raw_fd(fd as i32) };
            let socket = socket2::SockRef::from(&fd);
            let matches = socket
                .peer_addr()
                .ok()
                .and_then(|a| a.as_socket())
                .is_some_and(|a| a == peer);
            matches.then_some(fd)
        })
}

/// The dead-peer options of a server-side socket: keepalive (time, interval, probes) and
/// the user timeout.
#[derive(Debug, PartialEq, Eq)]
struct Options {
    keepalive: Option<(Duration, Duration, u32)>,
    user_timeout: Option<Duration>,
    nodelay: bool,
}

fn options(fd: &OwnedFd) -> Options {
    let s = socket2::SockRef::from(fd);
    let keepalive = s.keepalive().unwrap().then(|| {
        (
            s.keepalive_time().unwrap(),
            s.keepalive_interval().unwrap(),
            s.keepalive_retries().unwrap(),
        )
    });
    Options {
        keepalive,
        user_timeout: s.tcp_user_timeout().unwrap(),
        nodelay: s.nodelay().unwrap(),
    }
}

/// A server with `--tcp-keepalive 7 --tcp-user-timeout 3`: its end of a connection has
/// keepalive on, probing after 7 s every 2 s (a third), 3 probes, and a 3 s user timeout,
/// besides TCP_NODELAY.
fn options_reach_accepted_connections(model: Model) {
    let mut p = Proc::spawn(&[
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--model",
        model.name(),
        "--tcp-keepalive",
        "7",
        "--tcp-user-timeout",
        "3",
    ]);
    let addr = p.listening();
    let mut client = connect(addr);
    echo_on(&mut client, b"hello\n");
    let theirs = server_end(p.pid(), &client);
    assert_eq!(
        options(&theirs),
        Options {
            keepalive: Some((Duration::from_secs(7), Duration::from_secs(2), 3)),
            user_timeout: Some(Duration::from_secs(3)),
            nodelay: true,
        }
    );
    drop(theirs);
    drop(client);
    p.stop();
}

per_model!(options_reach_accepted_connections);

/// Without the flags, neither option is set (the kernel's defaults stay).
#[test]
fn off_by_default() {
    let mut p = Proc::spawn(&["serve", "--listen", "127.0.0.1:0"]);
    let addr = p.listening();
    let mut client = connect(addr);
    echo_on(&mut client, b"hello\n");
    let o = options(&server_end(p.pid(), &client));
    assert_eq!(o.keepalive, None);
    assert_eq!(o.user_timeout, None);
    drop(client);
    p.stop();
}

/// A reload that turns both on reaches a connection accepted after it, not the one already
/// open (in the reactor, whose settings a reload changes in place, and in the fork model,
/// whose parent reloads between connections).
fn reload_applies_to_new_connections(model: Model) {
    let dir = TempDir::new("dead-peers-reload");
    let base = format!("listen = \"127.0.0.1:0\"\nmodel = \"{model}\"\n");
    let path = dir.write("c.toml", &base);
    let mut p = Proc::spawn(&["serve", "--config", path.to_str().unwrap()]);
    let addr = p.listening();
    let mut before = connect(addr);
    echo_on(&mut before, b"a\n");
    dir.write(
        "c.toml",
        &format!("{base}tcp_keepalive = 10\ntcp_user_timeout = \"1500ms\"\n"),
    );
    p.signal(libc::SIGHUP);
    p.wait_stderr("configuration reloaded", 1);
    let mut after = connect(addr);
    echo_on(&mut after, b"b\n");
    let old = options(&server_end(p.pid(), &before));
    let new = options(&server_end(p.pid(), &after));
    assert_eq!(old.keepalive, None);
    assert_eq!(old.user_timeout, None);
    assert_eq!(
        new.keepalive,
        Some((Duration::from_secs(10), Duration::from_secs(3), 3))
    );
    assert_eq!(new.user_timeout, Some(Duration::from_millis(1500)));
    drop((before, after));
    p.stop();
}

#[test]
fn reload_applies_to_new_connections_reactor() {
    reload_applies_to_new_connections(Model::Reactor);
}

#[test]
fn reload_applies_to_new_connections_fork() {
    reload_applies_to_new_connections(Model::Fork);
}
