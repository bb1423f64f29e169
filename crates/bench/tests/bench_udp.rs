//! The `udp` scenario counts what really happened: clean verified echoes against the
//! reactor's UDP echo; loss, duplicates and reordering from a misbehaving server counted as
//! such, not as errors; corrupted echoes and an unserved port counted as errors.

use std::net::{SocketAddr, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::{self, JoinHandle};
use std::time::Duration;

use reactor_pool::Config;
use reactor_pool_bench::loadgen::{self, NoObserver};
use reactor_pool_bench::{LoadSpec, RunReport, Scenario};

#[path = "../../../tests/util/mod.rs"]
mod util;

use util::InProcess;

/// An in-process reactor server (TCP, and UDP if asked) on an ephemeral loopback port; shut down when dropped.
fn reactor(udp: bool) -> InProcess {
    InProcess::start(&Config {
        listen: "127.0.0.1:0".parse().unwrap(),
        workers: 2,
        udp,
        shutdown_timeout: Duration::from_secs(2),
        ..Config::default()
    })
}

/// What a misbehaving UDP echo does to the `i`-th datagram it receives.
#[derive(Clone, Copy)]
enum Misbehave {
    /// Drops every 10th, sends every 7th twice, and swaps every 5th with the one after it.
    LoseDuplicateReorder,
    /// Flips a byte in every 3rd echo.
    Corrupt,
}

/// A UDP echo on its own thread that misbehaves; stops when dropped.
struct Faulty {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Faulty {
    fn start(how: Misbehave) -> Faulty {
        let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
        socket
            .set_read_timeout(Some(Duration::from_millis(50)))
            .unwrap();
        let addr = socket.local_addr().unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let stopping = stop.clone();
        let thread = thread::spawn(move || {
            let mut buf = vec![0u8; 65_536];
            let mut held: Option<(Vec<u8>, SocketAddr)> = None;
            let mut i = 0u64;
            while !stopping.load(Ordering::Acquire) {
                let Ok((n, from)) = socket.recv_from(&mut buf) else {
                    continue;
                };
                i += 1;
                let mut echo = buf[..n].to_vec();
                match how {
                    Misbehave::LoseDuplicateReorder => {
                        if i % 10 == 0 {
                            continue;
                        }
                        if i % 5 == 1 && held.is_none() {
                            held = Some((echo, from));
                            continue;
                        }
                        let _ = socket.send_to(&echo, from);
                        if i % 7 == 0 {
                            let _ = socket.send_to(&echo, from);
                        }
                        if let Some((late, to)) = held.take() {
                            let _ = socket.send_to(&late, to);
                        }
                    }
                    Misbehave::Corrupt => {
                        if i % 3 == 0 {
                            echo[n / 2] ^= 0x40;
                        }
                        let _ = socket.send_to(&echo, from);
                    }
                }
            }
        });
        Faulty {
            addr,
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for Faulty {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn short(target: SocketAddr) -> LoadSpec {
    LoadSpec {
        connections: 4,
        depth: 4,
        warmup: Duration::from_millis(100),
        duration: Duration::from_millis(500),
        // Also the loss timeout (at most 1 s), short enough for a short run.
        timeout: Duration::from_millis(200),
        ..LoadSpec::new(target, Scenario::Udp)
    }
}

fn figures(r: &RunReport) -> reactor_pool_bench::UdpFigures {
    r.udp.expect("the udp scenario reports its figures")
}

/// Against the reactor's UDP echo over two threads: datagrams flow, every counted one has
/// a latency sample and its full size in bytes, and nothing is an error. Every datagram sent
/// is accounted for as echoed or lost.
#[test]
fn udp_against_the_reactor_is_verified_and_clean() {
    let server = reactor(true);
    let spec = LoadSpec {
        threads: 2,
        size: 200,
        ..short(server.addr)
    };
    let r = loadgen::run(&spec, &mut NoObserver).unwrap();
    assert_eq!(r.errors.total(), 0, "{:?}", r.errors);
    assert!(r.messages > 0, "{r:?}");
    assert_eq!(r.latency.count, r.messages);
    assert_eq!(r.bytes, r.messages * 200);
    assert_eq!(r.connections_opened, 4);
    let u = figures(&r);
    assert!(u.echoed >= r.messages, "{u:?}");
    assert_eq!(u.echoed + u.lost, u.sent, "{u:?}");
    assert_eq!(u.duplicates, 0, "{u:?}");
}

/// A server that loses, duplicates and reorders: each is counted, none is an error, and
/// every echo that did come back was verified.
#[test]
fn loss_duplicates_and_reordering_are_counted_not_errors() {
    let server = Faulty::start(Misbehave::LoseDuplicateReorder);
    let r = loadgen::run(&short(server.addr), &mut NoObserver).unwrap();
    assert_eq!(r.errors.total(), 0, "{:?}", r.errors);
    let u = figures(&r);
    assert!(u.lost > 0, "{u:?}");
    assert!(u.duplicates > 0, "{u:?}");
    assert!(u.reordered > 0, "{u:?}");
    assert!(r.messages > 0, "{r:?}");
    let table = r.to_table();
    assert!(table.contains("lost"), "{table}");
}

/// Corrupted echoes are mismatches (errors), with an example.
#[test]
fn corrupted_echoes_are_errors() {
    let server = Faulty::start(Misbehave::Corrupt);
    let r = loadgen::run(&short(server.addr), &mut NoObserver).unwrap();
    assert!(r.errors.mismatch > 0, "{:?}", r.errors);
    assert!(
        r.errors.examples[0].starts_with("mismatch: "),
        "{:?}",
        r.errors
    );
}

/// Against a server that serves TCP only, the port is unreachable for datagrams: that is an
/// error (connect), not loss.
#[test]
fn a_port_without_udp_is_a_connect_error() {
    let server = reactor(false);
    let r = loadgen::run(&short(server.addr), &mut NoObserver).unwrap();
    assert!(r.errors.connect > 0, "{:?}", r.errors);
    assert!(
        r.errors.examples[0].contains("port unreachable"),
        "{:?}",
        r.errors
    );
    assert_eq!(r.messages, 0);
}
