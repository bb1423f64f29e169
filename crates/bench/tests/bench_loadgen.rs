//! The load generator counts what really happened: sane totals against a real reactor
//! server, and every mismatch, reset, timeout and connect error against broken servers.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use reactor_pool::Config;
use reactor_pool_bench::loadgen::{self, NoObserver, Observer};
use reactor_pool_bench::{LoadSpec, RunReport, Scenario};

#[path = "../../../tests/util/mod.rs"]
mod util;

use util::InProcess;

/// An in-process reactor server on an ephemeral loopback port; shut down when dropped.
fn reactor(workers: usize) -> InProcess {
    InProcess::start(&Config {
        listen: "127.0.0.1:0".parse().unwrap(),
        workers,
        shutdown_timeout: Duration::from_secs(2),
        ..Config::default()
    })
}

/// A deliberately broken echo server: each connection is served by `serve` on its own
/// thread. Stops accepting when dropped.
struct Broken {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
}

impl Broken {
    fn start(serve: fn(TcpStream)) -> Broken {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let stopping = stop.clone();
        thread::spawn(move || {
            for stream in listener.incoming() {
                if stopping.load(Ordering::Acquire) {
                    break;
                }
                if let Ok(stream) = stream {
                    // Every broken server gives up on a connection after a while.
                    let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
                    thread::spawn(move || serve(stream));
                }
            }
        });
        Broken { addr, stop }
    }
}

impl Drop for Broken {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        // Unblock the accept loop so it sees the flag.
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
    }
}

/// Echoes faithfully except that it flips one bit of the 100th byte of every connection.
fn corrupting_echo(mut s: TcpStream) {
    let mut buf = [0u8; 4096];
    let mut offset = 0usize;
    while let Ok(n) = s.read(&mut buf) {
        if n == 0 {
            return;
        }
        if (offset..offset + n).contains(&99) {
            buf[99 - offset] ^= 0x01;
        }
        offset += n;
        if s.write_all(&buf[..n]).is_err() {
            return;
        }
    }
}

/// Reads and discards everything: echoes never come.
fn black_hole(mut s: TcpStream) {
    let mut buf = [0u8; 4096];
    while let Ok(n) = s.read(&mut buf) {
        if n == 0 {
            return;
        }
    }
}

/// Closes every connection at once without echoing.
fn hang_up(s: TcpStream) {
    drop(s);
}

fn short(target: SocketAddr, scenario: Scenario, connections: usize) -> LoadSpec {
    LoadSpec {
        connections,
        warmup: Duration::from_millis(100),
        duration: Duration::from_millis(400),
        timeout: Duration::from_secs(5),
        ..LoadSpec::new(target, scenario)
    }
}

#[track_caller]
fn assert_clean(r: &RunReport) {
    assert_eq!(r.errors.total(), 0, "unexpected errors: {:?}", r.errors);
}

/// Pingpong with 8 connections over 2 threads against the reactor: messages flow, every
/// counted message has a latency sample, and the bytes match the messages.
#[test]
fn pingpong_against_the_reactor_counts_sanely() {
    let server = reactor(1);
    let spec = LoadSpec {
        threads: 2,
        ..short(server.addr, Scenario::Pingpong, 8)
    };
    let r = loadgen::run(&spec, &mut NoObserver).unwrap();
    assert_clean(&r);
    assert!(r.messages > 0, "{r:?}");
    assert_eq!(r.latency.count, r.messages);
    assert_eq!(r.connections_opened, 8);
    assert_eq!(r.threads, 2);
    // Byte counts and message counts may differ by the messages cut by the window's edges.
    let slack = (8 * 64) as u64;
    assert!(r.bytes.abs_diff(r.messages * 64) <= slack, "{r:?}");
    assert!(r.latency.p50_us > 0.0 && r.latency.p50_us <= r.latency.max_us);
}

/// Pipeline (depth 4, 4 KiB) and stream (64 KiB chunks) move many verified bytes without
/// a single error, through the reactor's partial writes and backpressure.
#[test]
fn pipeline_and_stream_are_verified_end_to_end() {
    let server = reactor(2);
    for (scenario, size) in [(Scenario::Pipeline, 4096u64), (Scenario::Stream, 65_536)] {
        let spec = LoadSpec {
            depth: 4,
            ..short(server.addr, scenario, 4)
        };
        let r = loadgen::run(&spec, &mut NoObserver).unwrap();
        assert_clean(&r);
        assert!(r.messages > 0, "{scenario}: {r:?}");
        assert_eq!(r.depth, 4);
        let slack = 4 * 4 * size;
        assert!(r.bytes.abs_diff(r.messages * size) <= slack, "{r:?}");
    }
}

/// Connrate: every counted message is one whole connection, so connections opened are at
/// least the messages counted (warm-up and drain add more).
#[test]
fn connrate_opens_a_connection_per_message() {
    let server = reactor(1);
    let r = loadgen::run(&short(server.addr, Scenario::Connrate, 4), &mut NoObserver).unwrap();
    assert_clean(&r);
    assert!(r.messages > 0, "{r:?}");
    assert!(r.connections_opened >= r.messages, "{r:?}");
    assert_eq!(r.latency.count, r.messages);
}

/// Records the order and timing of the observer calls.
#[derive(Default)]
struct Recorder {
    events: Vec<(&'static str, Instant)>,
    connected: Option<u64>,
}

impl Observer for Recorder {
    fn all_connected(&mut self, open: u64) {
        self.connected = Some(open);
        self.events.push(("connected", Instant::now()));
    }
    fn window_start(&mut self) {
        self.events.push(("start", Instant::now()));
    }
    fn window_end(&mut self) {
        self.events.push(("end", Instant::now()));
    }
}

/// Idle: 200 connections are opened and reported to the observer before the hold, held for
/// the hold time, then each gets exactly one verified echo.
#[test]
fn idle_holds_then_echoes_once_on_each() {
    let server = reactor(1);
    let spec = LoadSpec {
        size: 32,
        duration: Duration::from_millis(300),
        ..short(server.addr, Scenario::Idle, 200)
    };
    let mut rec = Recorder::default();
    let r = loadgen::run(&spec, &mut rec).unwrap();
    assert_clean(&r);
    assert_eq!(r.messages, 200);
    assert_eq!(r.bytes, 200 * 32);
    let idle = r.idle.expect("idle figures");
    assert_eq!(idle.established, 200);
    assert!(idle.hold_secs >= 0.3, "{idle:?}");
    assert_eq!(rec.connected, Some(200));
    let names: Vec<&str> = rec.events.iter().map(|(n, _)| *n).collect();
    assert_eq!(names, ["connected", "start", "end"]);
    assert!(rec.events[2].1 - rec.events[1].1 >= Duration::from_millis(300));
}

/// The observer hears of the timed window no earlier than its edges: the start after the
/// warm-up, the end after warm-up plus duration less the sampling lead (a tenth of the 400 ms
/// window here), while connections are still open (it may hear late on a loaded machine).
#[test]
fn window_edges_follow_warmup_and_duration() {
    let server = reactor(1);
    let spec = short(server.addr, Scenario::Pingpong, 2);
    let mut rec = Recorder::default();
    let began = Instant::now();
    loadgen::run(&spec, &mut rec).unwrap();
    let names: Vec<&str> = rec.events.iter().map(|(n, _)| *n).collect();
    assert_eq!(names, ["start", "end"]);
    assert!(rec.events[0].1 - began >= Duration::from_millis(100));
    let lead = loadgen::SAMPLE_LEAD.min(spec.duration / 10);
    assert_eq!(lead, Duration::from_millis(40));
    assert!(rec.events[1].1 - began >= Duration::from_millis(500) - lead);
}

/// A server that corrupts one byte per connection: every connection's first echo is caught
/// as a mismatch, the connection is replaced, and the report says where.
#[test]
fn mismatched_echoes_are_counted() {
    let server = Broken::start(corrupting_echo);
    // A longer window than `short`: the assertions need each connection to reach its byte
    // 100 and be replaced at least once, which a stalled 2-core machine may not do in 0.5 s.
    let spec = LoadSpec {
        duration: Duration::from_secs(2),
        ..short(server.addr, Scenario::Pingpong, 2)
    };
    let r = loadgen::run(&spec, &mut NoObserver).unwrap();
    assert!(r.errors.mismatch >= 2, "{:?}", r.errors);
    assert!(
        r.errors
            .examples
            .iter()
            .any(|e| e.starts_with("mismatch: echoed bytes at offset 64..")),
        "{:?}",
        r.errors.examples
    );
    // Reopened connections are corrupted again at their byte 100: errors keep coming, and
    // only the first message of each connection (bytes 0..64) is ever echoed intact.
    assert!(r.connections_opened > 2, "{r:?}");
}

/// A closed port: every attempt is a connect error (retried with back-off), no message
/// completes, and the first error is shown.
#[test]
fn connect_errors_against_a_closed_port_are_counted() {
    let addr = {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let r = loadgen::run(&short(addr, Scenario::Pingpong, 3), &mut NoObserver).unwrap();
    assert!(r.errors.connect >= 3, "{:?}", r.errors);
    assert_eq!(r.messages, 0);
    assert_eq!(r.connections_opened, 0);
    assert!(
        r.errors.examples[0].contains("refused"),
        "{:?}",
        r.errors.examples
    );
}

/// A server that never echoes: each connection times out after `--timeout`.
#[test]
fn missing_echoes_time_out() {
    let server = Broken::start(black_hole);
    let spec = LoadSpec {
        timeout: Duration::from_millis(200),
        duration: Duration::from_millis(600),
        ..short(server.addr, Scenario::Pingpong, 2)
    };
    let r = loadgen::run(&spec, &mut NoObserver).unwrap();
    assert!(r.errors.timeout >= 2, "{:?}", r.errors);
    assert_eq!(r.messages, 0);
}

/// `--source-addrs 3`: connections come from 127.0.0.1, .2 and .3 (bind before connect),
/// and the echoes are still verified.
#[test]
fn source_addresses_spread_connections() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    thread::spawn(move || {
        for _ in 0..6 {
            let Ok((mut s, peer)) = listener.accept() else {
                return;
            };
            let _ = tx.send(peer.ip());
            thread::spawn(move || {
                let _ = s.set_read_timeout(Some(Duration::from_secs(10)));
                let mut buf = [0u8; 4096];
                while let Ok(n) = s.read(&mut buf) {
                    if n == 0 || s.write_all(&buf[..n]).is_err() {
                        return;
                    }
                }
            });
        }
    });
    let spec = LoadSpec {
        source_addrs: 3,
        ..short(addr, Scenario::Pingpong, 6)
    };
    let r = loadgen::run(&spec, &mut NoObserver).unwrap();
    assert_clean(&r);
    assert!(r.messages > 0);
    let mut sources: Vec<String> = (0..6)
        .map(|_| rx.recv_timeout(Duration::from_secs(5)).unwrap().to_string())
        .collect();
    sources.sort();
    sources.dedup();
    assert_eq!(sources, ["127.0.0.1", "127.0.0.2", "127.0.0.3"]);
}

/// A server that hangs up at once: counted as resets (closed mid-echo), not as successes.
#[test]
fn hang_ups_are_counted_as_resets() {
    let server = Broken::start(hang_up);
    let r = loadgen::run(&short(server.addr, Scenario::Pingpong, 2), &mut NoObserver).unwrap();
    assert!(r.errors.reset >= 2, "{:?}", r.errors);
    assert_eq!(r.messages, 0);
}

/// What an accepted connection did, as a recording echo server saw it.
#[derive(Debug, Clone, Copy)]
struct Seen {
    /// Bytes it sent (all echoed back).
    bytes: u64,
    /// When its client closed it (EOF or error).
    closed: Instant,
}

/// An echo server that records, per connection, how many bytes came and when it closed.
struct SeenServer {
    addr: SocketAddr,
    seen: Arc<std::sync::Mutex<Vec<Seen>>>,
    stop: Arc<AtomicBool>,
}

impl SeenServer {
    fn start() -> SeenServer {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (record, stopping) = (seen.clone(), stop.clone());
        thread::spawn(move || {
            for stream in listener.incoming() {
                if stopping.load(Ordering::Acquire) {
                    break;
                }
                let Ok(mut s) = stream else { continue };
                let record = record.clone();
                thread::spawn(move || {
                    // Bounded: no connection of the test lives this long.
                    let _ = s.set_read_timeout(Some(Duration::from_secs(20)));
                    let mut buf = [0u8; 4096];
                    let mut bytes = 0u64;
                    while let Ok(n) = s.read(&mut buf) {
                        if n == 0 || s.write_all(&buf[..n]).is_err() {
                            break;
                        }
                        bytes += n as u64;
                    }
                    let closed = Instant::now();
                    record.lock().unwrap().push(Seen { bytes, closed });
                });
            }
        });
        SeenServer { addr, seen, stop }
    }

    /// Waits (bounded) until `n` connections have closed, then returns what they did.
    fn closed(&self, n: usize) -> Vec<Seen> {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let seen = self.seen.lock().unwrap().clone();
            if seen.len() >= n || Instant::now() >= deadline {
                return seen;
            }
            thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for SeenServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
    }
}

/// Records when the measured window ended and how many idle connections were announced.
#[derive(Default)]
struct IdleEdges {
    idle_open: Option<u64>,
    window_end: Option<Instant>,
}

impl Observer for IdleEdges {
    fn idle_connections_open(&mut self, open: u64) {
        self.idle_open = Some(open);
    }
    fn window_end(&mut self) {
        self.window_end = Some(Instant::now());
    }
}

/// `--idle-connections`: besides the 3 active pingpong connections, 40 more are opened
/// before the load, never send a byte, and stay open past the window's end; the report
/// says all 40 were open and silent at the end.
#[test]
fn idle_connections_open_stay_silent_and_last_the_run() {
    let server = SeenServer::start();
    let spec = LoadSpec {
        idle_connections: 40,
        ..short(server.addr, Scenario::Pingpong, 3)
    };
    let mut edges = IdleEdges::default();
    let r = loadgen::run(&spec, &mut edges).unwrap();
    assert_clean(&r);
    assert_eq!(edges.idle_open, Some(40));
    assert_eq!(r.idle_connections, 40);
    assert_eq!(r.idle_connections_opened, 40);
    assert_eq!(r.idle_connections_kept, 40);
    assert!(r.messages > 0);

    let seen = server.closed(43);
    assert_eq!(
        seen.len(),
        43,
        "every connection closed once the run returned"
    );
    let window_end = edges.window_end.unwrap();
    let silent: Vec<&Seen> = seen.iter().filter(|s| s.bytes == 0).collect();
    assert_eq!(silent.len(), 40, "{seen:?}");
    assert!(
        silent.iter().all(|s| s.closed >= window_end),
        "an idle connection closed before the window ended"
    );
    assert_eq!(seen.iter().filter(|s| s.bytes > 0).count(), 3);
}

/// Echoes, but closes a connection that sends nothing within 200 ms of being accepted.
fn closes_silent_ones(mut s: TcpStream) {
    let _ = s.set_read_timeout(Some(Duration::from_millis(200)));
    let mut buf = [0u8; 4096];
    match s.read(&mut buf) {
        Ok(n) if n > 0 => {
            let _ = s.set_read_timeout(Some(Duration::from_secs(10)));
            if s.write_all(&buf[..n]).is_ok() {
                echo_rest(s);
            }
        }
        _ => drop(s),
    }
}

/// Plain echo of the rest of a connection.
fn echo_rest(mut s: TcpStream) {
    let mut buf = [0u8; 4096];
    while let Ok(n) = s.read(&mut buf) {
        if n == 0 || s.write_all(&buf[..n]).is_err() {
            return;
        }
    }
}

/// An idle connection the server closes during the run is an error of the run, not hidden.
#[test]
fn idle_connections_closed_by_the_server_are_counted() {
    let server = Broken::start(closes_silent_ones);
    let spec = LoadSpec {
        idle_connections: 5,
        ..short(server.addr, Scenario::Pingpong, 1)
    };
    let r = loadgen::run(&spec, &mut NoObserver).unwrap();
    assert_eq!(r.idle_connections_opened, 5);
    assert_eq!(r.idle_connections_kept, 0);
    assert_eq!(r.errors.total(), 5, "{:?}", r.errors);
    assert!(r.messages > 0);
    assert!(
        r.errors
            .examples
            .iter()
            .any(|e| e.contains("closed an idle connection")),
        "{:?}",
        r.errors
    );
}
