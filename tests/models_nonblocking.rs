//! Proves the `nonblocking` model, which has no readiness API and finds work only by trying
//! every socket, backs off when there is none: idle, with open connections, it uses a small
//! fraction of a core (a loop that never paused would use all it gets), and it still echoes
//! at once after the quiet spell.

mod util;

use std::io::Write;
use std::net::TcpStream;
use std::time::{Duration, Instant};

use util::{Binary, assert_same, connect, cpu_time_precise_of, read_n};

/// Fifty connections each echo once, then stay open and silent for a second, the
/// measurement window. The server must use under a quarter of that second of CPU; then every
/// connection echoes again.
#[test]
fn idle_server_with_open_connections_does_not_spin() {
    let mut server = Binary::spawn(&["serve", "--listen", "127.0.0.1:0", "--model", "nonblocking"]);
    let mut conns: Vec<TcpStream> = (0..50).map(|_| connect(server.addr)).collect();
    for s in &mut conns {
        s.write_all(b"x").unwrap();
        assert_eq!(read_n(s, 1), b"x");
    }
    let cpu_before = cpu_time_precise_of(server.pid());
    let wall = Instant::now();
    std::thread::sleep(Duration::from_secs(1)); // the measurement window, not synchronisation
    let cpu = cpu_time_precise_of(server.pid()).saturating_sub(cpu_before);
    let elapsed = wall.elapsed();
    eprintln!("nonblocking: {cpu:?} of CPU in {elapsed:?} idle with 50 connections");
    assert!(
        cpu * 4 < elapsed,
        "server used {cpu:?} of CPU in {elapsed:?} while idle"
    );
    for (i, s) in conns.iter_mut().enumerate() {
        let msg = format!("after the quiet spell {i}");
        s.write_all(msg.as_bytes()).unwrap();
        assert_same(&read_n(s, msg.len()), msg.as_bytes());
    }
    drop(conns);
    server.stop();
}
