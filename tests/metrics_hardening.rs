//! The metrics endpoint under hostile or unlucky clients: dozens of clients that connect and
//! never finish a request neither starve a real scraper nor hold up a graceful shutdown, a
//! request that never ends is cut off, and a scrape that arrives while the process is out of
//! descriptors is answered once descriptors are free, without another connection to wake it.

mod ops_util;

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use ops_util::*;

/// How many stalled clients the tests hold open (the attack used 5 to 20).
const STALLED: usize = 50;

/// `n` clients that connect to `metrics` and send half a request head, then nothing.
fn stall(metrics: SocketAddr, n: usize) -> Vec<TcpStream> {
    (0..n)
        .map(|_| {
            let mut s = connect(metrics);
            s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n")
                .unwrap();
            s
        })
        .collect()
}

/// One scrape with a bounded wait; returns the raw response.
fn scrape_raw(metrics: SocketAddr) -> String {
    let mut s = TcpStream::connect_timeout(&metrics, DEADLINE).expect("connect");
    s.set_read_timeout(Some(DEADLINE)).unwrap();
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut raw = String::new();
    match s.read_to_string(&mut raw) {
        Ok(_) => raw,
        Err(e) => panic!("scrape not answered within {DEADLINE:?}: {e} (got {raw:?})"),
    }
}

/// Waits (bounded) until the server closes `s`.
#[track_caller]
fn expect_closed_within_deadline(s: &mut TcpStream) {
    s.set_read_timeout(Some(DEADLINE)).unwrap();
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return,
            Ok(_) => {} // a 400 or 408 answer before the close is fine
            Err(e) if e.kind() == ErrorKind::ConnectionReset => return,
            Err(e) => panic!("the server never closed a stalled client: {e}"),
        }
    }
}

/// Fifty clients connect to the metrics port and send half a request each, before a real
/// scraper connects. The scrape is answered while they all still stall (the old endpoint
/// served one connection at a time, 2 s each: 100 s). Afterwards the server cuts every
/// stalled client off at its request deadline.
#[test]
fn a_real_scrape_is_answered_while_fifty_clients_stall() {
    let (mut p, _addr, metrics) = spawn_with_metrics(&[]);
    let mut stalled = stall(metrics, STALLED);
    let start = Instant::now();
    let raw = scrape_raw(metrics);
    let latency = start.elapsed();
    assert!(raw.starts_with("HTTP/1.1 200"), "{raw}");
    assert!(raw.contains("reactor_pool_connections_accepted_total"));
    eprintln!("scrape latency with {STALLED} stalled clients: {latency:?}");
    for s in &mut stalled {
        expect_closed_within_deadline(s);
    }
    p.stop();
}

/// SIGTERM with fifty stalled metrics clients (and a scrape queued behind them): the process
/// exits 0 without waiting for them (the old endpoint's thread served them one by one, 2 s
/// each, before the process could exit).
#[test]
fn stalled_metrics_clients_do_not_hold_up_shutdown() {
    let (mut p, _addr, metrics) = spawn_with_metrics(&["--shutdown-timeout", "1"]);
    let _stalled = stall(metrics, STALLED);
    // Make sure the endpoint has taken them in before the signal.
    let _ = scrape_raw(metrics);
    let start = Instant::now();
    p.signal(libc::SIGTERM);
    let status = p.wait();
    let took = start.elapsed();
    assert!(status.success(), "exit {status}; stderr:\n{}", p.stderr());
    eprintln!("exit after SIGTERM with {STALLED} stalled metrics clients: {took:?}");
}

/// Open descriptors of process `pid`.
fn fd_count(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count())
}

/// With an open-files limit of 40, echo clients use up every descriptor; a scrape then
/// connects and its accept fails (EMFILE). Once the echo clients leave, the scrape is
/// answered with no further connection to the metrics port (the old endpoint waited for a
/// new connection's wake-up, which never came).
#[test]
fn a_scrape_that_met_emfile_is_answered_once_descriptors_are_free() {
    let limit = 40;
    let p = spawn_with_nofile(
        &[
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--metrics-listen",
            "127.0.0.1:0",
            "--workers",
            "1",
        ],
        limit,
    );
    let addr = p.listening();
    let metrics = metrics_addr(&p);
    let clients: Vec<TcpStream> = (0..2 * limit).map(|_| connect(addr)).collect();
    wait_until("the server uses every descriptor", || {
        fd_count(p.pid()) >= limit as usize - 1
    });
    let mut scrape = TcpStream::connect_timeout(&metrics, DEADLINE).expect("connect");
    scrape.set_read_timeout(Some(DEADLINE)).unwrap();
    scrape
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    p.wait_stderr("metrics accept failed", 1);
    drop(clients);
    let mut raw = String::new();
    if let Err(e) = scrape.read_to_string(&mut raw) {
        panic!("scrape not answered after descriptors were freed: {e}");
    }
    assert!(raw.starts_with("HTTP/1.1 200"), "{raw}");
    let mut p = p;
    p.stop();
}

/// A request head larger than the bound gets 431 and a close; a client that trickles a byte
/// at a time never gets more than the request deadline, however steadily it sends.
#[test]
fn request_size_and_duration_are_bounded() {
    let (mut p, _addr, metrics) = spawn_with_metrics(&[]);
    let mut big = connect(metrics);
    let mut head = b"GET /metrics HTTP/1.1\r\n".to_vec();
    head.extend(std::iter::repeat_n(b'a', 16 * 1024));
    // The server may close before it read everything we send: a reset on write is fine.
    let _ = big.write_all(&head);
    big.set_read_timeout(Some(DEADLINE)).unwrap();
    let mut raw = Vec::new();
    let _ = big.read_to_end(&mut raw);
    let raw = String::from_utf8_lossy(&raw);
    assert!(raw.starts_with("HTTP/1.1 431"), "{raw}");

    let mut slow = connect(metrics);
    slow.write_all(b"GET /metrics HTTP/1.1\r\n").unwrap();
    let start = Instant::now();
    let closed = loop {
        // One header line every 100 ms: never idle, never complete.
        if slow.write_all(b"X-A: b\r\n").is_err() {
            break true;
        }
        if start.elapsed() > DEADLINE {
            break false;
        }
        std::thread::sleep(Duration::from_millis(100)); // the trickle's pace
    };
    assert!(closed, "a trickling request was never cut off");
    p.stop();
}
