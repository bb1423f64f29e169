//! Proves the select model never lets a descriptor >= FD_SETSIZE (1024) near an `fd_set`:
//! such a connection is refused (closed at once, with a logged warning) while connections
//! below the limit keep being served, and the server stays healthy afterwards.

mod util;

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::Mutex;
use std::time::Duration;

use reactor_pool::Model;
use util::{InProcess, PATIENCE, Spec, connect, echo_all, is_closed_by_server, read_n, wait_until};

/// Both tests push this process's descriptor numbers past 1024; one at a time.
static FDS: Mutex<()> = Mutex::new(());

/// Whether the server closed `s` without echoing (EOF or reset).
fn refused(s: &mut TcpStream) -> bool {
    let _ = s.write_all(b"?");
    is_closed_by_server(s)
}

/// An in-process select server (sharing this process's descriptor table) serves one
/// client, which stays connected; then the test occupies every descriptor number below 1024, so the server's next accept
/// returns one >= 1024: that client is closed without an echo. Once the numbers are freed,
/// a new client is served again.
#[test]
fn in_process_descriptor_above_fd_setsize_is_refused() {
    let _fds = FDS.lock().unwrap_or_else(|p| p.into_inner());
    let server = InProcess::start(&Spec::new(Model::Select).config());
    // Served, and kept open: closing it could free a number below 1024 after the loop below.
    let mut first = connect(server.addr);
    first.write_all(b"below").unwrap();
    assert_eq!(read_n(&mut first, 5), b"below");
    let devnull = OwnedFd::from(std::fs::File::open("/dev/null").unwrap());
    let mut hold = Vec::new();
    // dup returns the lowest free number: once it is >= 1024, none below is free.
    loop {
        let dup = devnull.try_clone().unwrap();
        let n = dup.as_raw_fd();
        hold.push(dup);
        if n >= 1024 {
            break;
        }
    }
    let mut s = connect(server.addr);
    assert!(s.as_raw_fd() >= 1024);
    assert!(
        refused(&mut s),
        "a connection on a descriptor >= 1024 was served"
    );
    drop((s, hold, first));
    wait_until("served once descriptors are free", || {
        echo_all(server.addr, b"again") == b"again"
    });
    server.stop();
}

/// The real binary with `max_connections` = 1024 gets 1,100 connections at once. Those on
/// descriptors below 1024 (about 1,019: stdio, listener and eventfd take five) are served;
/// the rest are refused. All of the served ones echo correctly, a warning names
/// FD_SETSIZE, and after everyone leaves the server serves again and exits 0.
#[test]
fn binary_serves_below_fd_setsize_and_refuses_the_rest() {
    let _fds = FDS.lock().unwrap_or_else(|p| p.into_inner());
    let mut server = Spec::new(Model::Select).max_connections(1024).spawn();
    let mut conns: Vec<TcpStream> = (0..1100).map(|_| connect(server.addr)).collect();
    let (mut served, mut refused_count) = (0, 0);
    for (i, s) in conns.iter_mut().enumerate() {
        s.set_read_timeout(Some(PATIENCE)).unwrap();
        let msg = (i as u32).to_be_bytes();
        if s.write_all(&msg).is_err() {
            refused_count += 1;
            continue;
        }
        let mut buf = [0u8; 4];
        match s.read_exact(&mut buf) {
            Ok(()) => {
                assert_eq!(buf, msg, "connection {i} echoed the wrong bytes");
                served += 1;
            }
            Err(e)
                if matches!(
                    e.kind(),
                    ErrorKind::UnexpectedEof | ErrorKind::ConnectionReset
                ) =>
            {
                refused_count += 1
            }
            Err(e) => panic!("connection {i}: {e}"),
        }
    }
    assert!(served >= 1000, "only {served} served");
    assert!(refused_count >= 70, "only {refused_count} refused");
    assert_eq!(served + refused_count, 1100);
    drop(conns);
    wait_until("served once the clients left", || {
        let mut s = connect(server.addr);
        s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        s.write_all(b"ok").is_ok() && read_ok(&mut s)
    });
    let stderr = server.stop();
    assert!(
        stderr.contains("FD_SETSIZE"),
        "no warning logged:\n{stderr}"
    );
}

fn read_ok(s: &mut TcpStream) -> bool {
    let mut buf = [0u8; 2];
    s.read_exact(&mut buf).is_ok() && &buf == b"ok"
}
