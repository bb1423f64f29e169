//! Proves the connection limits: idle connections are closed after `idle_timeout` while busy
//! ones stay open, and connections beyond `max_connections` are closed at once while the
//! others keep being served.

mod util;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use reactor_pool::Model;
use util::{Spec, connect, is_closed_by_server, read_n, wait_until};

/// Whether the server has not closed `s` (nothing to read, no EOF, no reset), without waiting.
fn is_open_now(s: &TcpStream) -> bool {
    s.set_nonblocking(true).unwrap();
    let mut buf = [0u8; 16];
    let open = matches!((&*s).read(&mut buf), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock);
    s.set_nonblocking(false).unwrap();
    open
}

/// With `idle_timeout` = 1 s, a silent client is closed no earlier than 1 s after its last
/// traffic, while a client that sends a message every 100 ms for 2.5 s stays open throughout.
/// "No earlier" is checked at every ping that comes before 1 s has passed since the silent
/// client's last write (the server saw that traffic after the write, so a close observed by
/// then is early whatever the machine's load).
fn idle_timeout_closes_only_silent_connections(model: Model) {
    if !util::is_concurrent(model) {
        return; // needs two clients at once
    }
    let idle = Duration::from_secs(1);
    let server = Spec::new(model).idle_timeout(idle).start();
    let mut silent = connect(server.addr);
    let last_traffic = Instant::now();
    silent.write_all(b"hi").unwrap();
    assert_eq!(read_n(&mut silent, 2), b"hi");
    let mut busy = connect(server.addr);
    let busy_until = Instant::now() + Duration::from_millis(2500);
    while Instant::now() < busy_until {
        busy.write_all(b"ping").unwrap();
        assert_eq!(read_n(&mut busy, 4), b"ping", "busy connection was closed");
        let checked_at = last_traffic.elapsed();
        if checked_at < idle {
            assert!(
                is_open_now(&silent),
                "silent connection closed {checked_at:?} after its last traffic"
            );
        }
        std::thread::sleep(Duration::from_millis(100)); // the ping interval
    }
    assert!(
        is_closed_by_server(&mut silent),
        "silent connection still open"
    );
    assert!(
        last_traffic.elapsed() >= idle,
        "closed before the idle timeout"
    );
    busy.write_all(b"still").unwrap();
    assert_eq!(read_n(&mut busy, 5), b"still");
    drop((busy, silent));
    server.stop();
}

/// With `max_connections` = 3, three clients are served, a fourth is closed at once (and the
/// three still work), and once one of the three leaves a new client is served again.
fn max_connections_closes_the_excess(model: Model) {
    if !util::is_concurrent(model) {
        return; // one client at a time by design
    }
    let server = Spec::new(model).max_connections(3).start();
    let mut held: Vec<TcpStream> = (0..3)
        .map(|i| {
            let mut s = connect(server.addr);
            s.write_all(&[i]).unwrap();
            assert_eq!(read_n(&mut s, 1), [i]);
            s
        })
        .collect();
    let mut extra = connect(server.addr);
    let _ = extra.write_all(b"over the limit");
    assert!(
        is_closed_by_server(&mut extra),
        "the fourth connection was served"
    );
    for (i, s) in held.iter_mut().enumerate() {
        s.write_all(b"ok").unwrap();
        assert_eq!(read_n(s, 2), b"ok", "held connection {i} broke");
    }
    drop(held.pop());
    // The server notices the departure asynchronously; retry until a newcomer is served.
    wait_until("a connection to be served after one left", || {
        let mut s = connect(server.addr);
        s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        s.write_all(b"again").is_ok() && {
            let mut buf = [0u8; 5];
            s.read_exact(&mut buf).is_ok() && &buf == b"again"
        }
    });
    drop((held, extra));
    server.stop();
}

per_model!(
    idle_timeout_closes_only_silent_connections,
    max_connections_closes_the_excess
);
