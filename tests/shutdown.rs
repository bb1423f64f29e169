//! Proves graceful shutdown on SIGINT/SIGTERM: the port is released at once, open
//! connections keep being served until their peers finish (a half-closed client gets every
//! byte back), stragglers are closed at `shutdown_timeout`, and the process exits 0.

mod util;

use std::io::{ErrorKind, Write};
use std::net::{Shutdown, TcpStream};
use std::thread;
use std::time::{Duration, Instant};

use reactor_pool::Model;
use util::{Spec, assert_same, connect, payload, read_to_eof, wait_until};

fn refused(addr: std::net::SocketAddr) -> bool {
    match TcpStream::connect_timeout(&addr, Duration::from_secs(2)) {
        Err(e) => e.kind() == ErrorKind::ConnectionRefused,
        Ok(_) => false,
    }
}

/// With nothing connected, SIGTERM makes the process exit 0 well before the (10 min)
/// shutdown timeout, and the port is free afterwards. (`stop` waits at most `PATIENCE`, far
/// less than the timeout, so a server that waited for it fails whatever the machine's load.)
fn idle_server_exits_at_once(model: Model) {
    let timeout = Duration::from_secs(600);
    let mut server = Spec::new(model).shutdown_timeout(timeout).spawn();
    let addr = server.addr;
    let start = Instant::now();
    server.stop();
    assert!(start.elapsed() < timeout / 2, "took {:?}", start.elapsed());
    assert!(refused(addr), "port still accepts connections");
}

/// A client sends 256 KiB and half-closes before SIGINT, without reading anything yet. After
/// the signal new connections are refused, but the client still reads back every byte and
/// then EOF; the process then exits 0.
fn half_closed_client_is_drained(model: Model) {
    let mut server = Spec::new(model)
        .shutdown_timeout(Duration::from_secs(20))
        .spawn();
    let data = payload(11, 256 * 1024);
    let mut s = connect(server.addr);
    let mut w = s.try_clone().unwrap();
    let sent = data.clone();
    thread::spawn(move || {
        w.write_all(&sent).unwrap();
        w.shutdown(Shutdown::Write).unwrap();
    })
    .join()
    .expect("the whole payload fits in socket buffers and the server's bounded buffer");
    server.signal(libc::SIGINT);
    wait_until("connections refused after SIGINT", || refused(server.addr));
    assert_same(&read_to_eof(&mut s), &data);
    let status = server.wait();
    let stderr = server.stderr();
    assert!(status.success(), "exit {status:?}: {stderr}");
}

/// A client that stays connected and silent is closed when `shutdown_timeout` (0.5 s)
/// expires; the process still exits 0.
fn stragglers_are_closed_at_the_timeout(model: Model) {
    let mut server = Spec::new(model)
        .shutdown_timeout(Duration::from_millis(500))
        .spawn();
    let mut s = connect(server.addr);
    s.write_all(b"x").unwrap();
    let mut one = [0u8; 1];
    std::io::Read::read_exact(&mut s, &mut one).unwrap();
    let start = Instant::now();
    server.signal(libc::SIGTERM);
    let rest = read_to_eof(&mut s);
    assert!(rest.is_empty());
    assert!(
        start.elapsed() >= Duration::from_millis(400),
        "closed before the timeout"
    );
    let status = server.wait();
    let stderr = server.stderr();
    assert!(status.success(), "exit {status:?}: {stderr}");
}

/// The library API: a `ShutdownHandle` stops an in-process server, `run` returns `Ok`, and
/// a connected client that closes gets its echo first.
fn in_process_shutdown_handle(model: Model) {
    if !util::runs_in_process(model) {
        return; // fork and select run as their own process in these tests
    }
    let server = Spec::new(model).start();
    let mut s = connect(server.addr);
    s.write_all(b"bye").unwrap();
    s.shutdown(Shutdown::Write).unwrap();
    let handle = server.handle();
    handle.shutdown();
    assert_eq!(read_to_eof(&mut s), b"bye");
    server.stop();
}

per_model!(
    idle_server_exits_at_once,
    half_closed_client_is_drained,
    stragglers_are_closed_at_the_timeout,
    in_process_shutdown_handle,
);
