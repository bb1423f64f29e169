//! UDP echo (`serve --udp`), over real loopback sockets against the real binary: datagrams of
//! 0 to 65,507 bytes come back whole over IPv4 and IPv6, larger ones are dropped and counted
//! as truncated, privileged source ports are refused (echo-loop guard), the per-source rate
//! limit holds and a reload changes it, the counters add up, SIGTERM closes the UDP socket at
//! once, and a burst from many sockets is drained completely with the server answering
//! afterwards. Every wait has a deadline.

mod ops_util;

use std::io::ErrorKind;
use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use ops_util::*;

/// Every size the service promises, from empty to the largest IPv4 datagram.
const SIZES: [usize; 5] = [0, 1, 1472, 9000, 65_507];

/// A client socket on the loopback address of `server`'s family, connected to it (so only
/// its datagrams are received, and an ICMP "port unreachable" surfaces as an error).
fn client(server: SocketAddr) -> UdpSocket {
    let local: SocketAddr = if server.is_ipv6() {
        "[::1]:0".parse().unwrap()
    } else {
        "127.0.0.1:0".parse().unwrap()
    };
    let s = UdpSocket::bind(local).unwrap();
    s.connect(server).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s
}

/// Deterministic bytes, different for each `seed`.
fn data(seed: u8, len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

/// Sends `msg` and returns the next datagram received (within the read timeout).
#[track_caller]
fn round_trip(s: &UdpSocket, msg: &[u8]) -> Vec<u8> {
    s.send(msg).unwrap();
    let mut buf = vec![0u8; 70_000];
    let n = s.recv(&mut buf).expect("an echo within the timeout");
    buf.truncate(n);
    buf
}

fn udp_metric(metrics: SocketAddr, name: &str) -> f64 {
    scrape(metrics, &format!("reactor_pool_udp_{name}"))
}

/// Waits until every `(sample, value)` of the UDP counters holds at once. A worker adds a
/// batch's counts after sending its echoes, so a client may see an echo a moment before the
/// counters do.
#[track_caller]
fn wait_udp(metrics: SocketAddr, want: &[(&str, f64)]) {
    wait_until("the UDP counters", || {
        let body = http(metrics, "GET", "/metrics").body;
        want.iter()
            .all(|(name, value)| metric(&body, &format!("reactor_pool_udp_{name}")) == Some(*value))
    });
}

fn dropped(metrics: SocketAddr, reason: &str) -> f64 {
    udp_metric(
        metrics,
        &format!("datagrams_dropped_total{{reason=\"{reason}\"}}"),
    )
}

/// Two workers, four client sockets (spread over both workers' sockets by the kernel), each
/// sending every size once: each datagram comes back whole, in one datagram. The counters
/// then show exactly what was sent: received and echoed datagrams and bytes, nothing
/// dropped, and at least one batched call each way.
#[test]
fn echoes_every_size_whole_and_counts_it() {
    let (mut p, addr, metrics) = spawn_with_metrics(&["--udp", "--workers", "2"]);
    let mut bytes = 0;
    for k in 0..4u8 {
        let s = client(addr);
        for (i, &len) in SIZES.iter().enumerate() {
            let msg = data(k * 10 + i as u8, len);
            let back = round_trip(&s, &msg);
            assert!(back == msg, "size {len}: got {} bytes back", back.len());
            bytes += len;
        }
    }
    let n = 4.0 * SIZES.len() as f64;
    wait_udp(
        metrics,
        &[
            ("datagrams_received_total", n),
            ("datagrams_echoed_total", n),
            ("bytes_received_total", bytes as f64),
            ("bytes_echoed_total", bytes as f64),
        ],
    );
    for reason in ["loop", "truncated", "rate_limit", "send_failed"] {
        assert_eq!(dropped(metrics, reason), 0.0, "{reason}");
    }
    assert!(udp_metric(metrics, "syscalls_total{call=\"recvmmsg\"}") >= 1.0);
    assert!(udp_metric(metrics, "syscalls_total{call=\"sendmmsg\"}") >= 1.0);
    // The TCP echo on the same port is unaffected.
    assert_eq!(echo_once(addr, b"tcp too\n").unwrap(), b"tcp too\n");
    p.stop();
}

/// On `[::1]` every size comes back whole too. IPv6 can carry up to 65,527 bytes in one
/// datagram; beyond the 65,507 the service promises they arrive truncated, and are dropped
/// and counted, never echoed in part. The socket then still answers.
#[test]
fn ipv6_echoes_and_drops_oversized_datagrams_as_truncated() {
    let (mut p, addr, metrics) =
        spawn_with_metrics(&["--udp", "--workers", "1", "--listen", "[::1]:0"]);
    assert!(addr.is_ipv6(), "{addr}");
    let s = client(addr);
    for &len in &SIZES {
        let msg = data(len as u8, len);
        assert!(round_trip(&s, &msg) == msg, "size {len}");
    }
    s.send(&data(1, 65_508)).unwrap();
    s.send(&data(2, 65_527)).unwrap();
    wait_metric(
        metrics,
        "reactor_pool_udp_datagrams_dropped_total{reason=\"truncated\"}",
        2.0,
    );
    assert_eq!(
        round_trip(&s, b"after"),
        b"after",
        "no partial echo came first"
    );
    wait_udp(
        metrics,
        &[
            ("datagrams_received_total", 8.0),
            ("datagrams_echoed_total", 6.0),
        ],
    );
    p.stop();
}

/// A datagram from a privileged source port (here the first free one below 1024) is never
/// echoed: it is counted as a loop and logged. A later datagram from an ephemeral port is
/// echoed, and by then the privileged socket has still received nothing. Needs root to bind
/// the port; skipped otherwise.
#[test]
fn privileged_source_ports_are_refused() {
    let Some(privileged) = (600..1024u16)
        .rev()
        .find_map(|port| UdpSocket::bind((Ipv4Addr::LOCALHOST, port)).ok())
    else {
        eprintln!("skipped: cannot bind a UDP port below 1024 (not root?)");
        return;
    };
    let (mut p, addr, metrics) = spawn_with_metrics(&["--udp", "--workers", "1"]);
    privileged.connect(addr).unwrap();
    privileged.set_nonblocking(true).unwrap();
    privileged.send(b"loop?").unwrap();
    wait_metric(
        metrics,
        "reactor_pool_udp_datagrams_dropped_total{reason=\"loop\"}",
        1.0,
    );
    assert_eq!(round_trip(&client(addr), b"fine"), b"fine");
    let mut buf = [0u8; 64];
    let got = privileged.recv(&mut buf);
    assert!(
        got.as_ref()
            .is_err_and(|e| e.kind() == ErrorKind::WouldBlock),
        "the privileged port got {got:?}"
    );
    p.wait_stderr("privileged source port", 1);
    wait_udp(metrics, &[("datagrams_echoed_total", 1.0)]);
    p.stop();
}

/// With `udp_rate_limit = 5` one socket sends 40 datagrams at once: between 5 (the burst) and
/// 5 + 5/s × the time they took to arrive are echoed, the rest are counted as rate-limited,
/// and each echo received is one of those sent. A reload to 0 lifts the limit: 40 more are
/// all echoed.
#[test]
fn rate_limit_bounds_echoes_per_source_and_reload_changes_it() {
    let dir = TempDir::new("udp-rate");
    let base =
        "listen = \"127.0.0.1:0\"\nmetrics_listen = \"127.0.0.1:0\"\nworkers = 2\nudp = true\n";
    let config = dir.write("c.toml", &format!("{base}udp_rate_limit = 5\n"));
    let mut p = Proc::spawn(&["serve", "--config", config.to_str().unwrap()]);
    let addr = p.listening();
    let metrics = metrics_addr(&p);
    assert_eq!(udp_metric(metrics, "rate_limit"), 5.0);

    let s = client(addr);
    let start = Instant::now();
    for i in 0..40u8 {
        s.send(&[i; 8]).unwrap();
    }
    wait_until("40 datagrams echoed or rate-limited", || {
        let body = http(metrics, "GET", "/metrics").body;
        let m = |n: &str| metric(&body, &format!("reactor_pool_udp_{n}")).unwrap();
        m("datagrams_echoed_total") + m("datagrams_dropped_total{reason=\"rate_limit\"}") == 40.0
    });
    let window = start.elapsed().as_secs_f64();
    let echoed = udp_metric(metrics, "datagrams_echoed_total");
    let limited = dropped(metrics, "rate_limit");
    assert_eq!(echoed + limited, 40.0);
    assert_eq!(udp_metric(metrics, "datagrams_received_total"), 40.0);
    assert!(
        echoed >= 5.0 && echoed <= 5.0 + (5.0 * window).ceil(),
        "{echoed} echoed in {window:.3} s"
    );
    let mut seen = Vec::new();
    for _ in 0..echoed as usize {
        let mut buf = [0u8; 64];
        let n = s.recv(&mut buf).expect("every counted echo arrives");
        assert!(n == 8 && buf[..8].iter().all(|&b| b == buf[0]) && buf[0] < 40);
        assert!(!seen.contains(&buf[0]), "echoed twice: {}", buf[0]);
        seen.push(buf[0]);
    }

    dir.write("c.toml", &format!("{base}udp_rate_limit = 0\n"));
    p.signal(libc::SIGHUP);
    p.wait_stderr("`udp_rate_limit` applied", 1);
    assert_eq!(udp_metric(metrics, "rate_limit"), 0.0);
    for i in 0..40u8 {
        assert_eq!(round_trip(&s, &[i; 8]), [i; 8]);
    }
    wait_udp(metrics, &[("datagrams_echoed_total", echoed + 40.0)]);
    assert_eq!(dropped(metrics, "rate_limit"), limited);
    p.stop();
}

/// SIGTERM while a TCP connection is still open (so the process keeps draining for up to
/// 30 s): the UDP socket closes at once, with the listener, so a datagram soon meets "port
/// unreachable"; meanwhile the TCP connection is still served; when it closes the process
/// exits 0.
#[test]
fn sigterm_closes_the_udp_socket_at_once() {
    let mut p = Proc::spawn(&[
        "serve",
        "--udp",
        "--listen",
        "127.0.0.1:0",
        "--shutdown-timeout",
        "30",
    ]);
    let addr = p.listening();
    let mut tcp = connect(addr);
    echo_on(&mut tcp, b"before\n");
    let s = client(addr);
    assert_eq!(round_trip(&s, b"before"), b"before");

    p.signal(libc::SIGTERM);
    s.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    wait_until("UDP port unreachable after SIGTERM", || {
        let _ = s.send(b"still there?");
        let mut buf = [0u8; 64];
        matches!(s.recv(&mut buf), Err(e) if e.kind() == ErrorKind::ConnectionRefused)
    });
    echo_on(&mut tcp, b"still draining\n");
    drop(tcp);
    let status = p.wait();
    assert!(status.success(), "exit {status}; stderr:\n{}", p.stderr());
}

/// The bytes queued in the receive buffers of the UDP sockets bound to `port` (IPv4), from
/// `/proc/net/udp`; `None` if no socket is bound there.
fn udp_rx_queue(port: u16) -> Option<u64> {
    let table = std::fs::read_to_string("/proc/net/udp").unwrap();
    let suffix = format!(":{port:04X}");
    let queues: Vec<u64> = table
        .lines()
        .skip(1)
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            f[1].ends_with(&suffix)
                .then(|| u64::from_str_radix(f[4].split(':').nth(1)?, 16).ok())?
        })
        .collect();
    (!queues.is_empty()).then(|| queues.iter().sum())
}

/// While the server is stopped (SIGSTOP), 32 sockets send 100 small datagrams each, so its
/// receive buffer fills far beyond one round's budget and the kernel drops the rest. Resumed,
/// the server drains its queue completely, though no further datagram (and so no further
/// edge) arrives; every datagram it received is accounted for as echoed or dropped; every
/// echo a client got is an exact copy of what it sent; and every socket then gets an answer
/// to a fresh datagram.
#[test]
fn burst_from_many_sockets_is_drained_and_the_server_still_answers() {
    let (mut p, addr, metrics) = spawn_with_metrics(&["--udp", "--workers", "1"]);
    let clients: Vec<UdpSocket> = (0..32).map(|_| client(addr)).collect();
    assert_eq!(round_trip(&clients[0], b"warm"), b"warm");
    p.signal(libc::SIGSTOP);
    for (k, s) in clients.iter().enumerate() {
        for seq in 0..100u8 {
            // A full buffer on the way may refuse a send; UDP may drop, that is the point.
            let _ = s.send(&[k as u8, seq, 0xAB, 0xCD]);
        }
    }
    let queued = udp_rx_queue(addr.port()).expect("the server's UDP socket");
    p.signal(libc::SIGCONT);
    wait_until("the server drains its UDP queue", || {
        udp_rx_queue(addr.port()) == Some(0)
    });
    wait_until("every received datagram is accounted for", || {
        let r = http(metrics, "GET", "/metrics").body;
        let m = |n: &str| metric(&r, &format!("reactor_pool_udp_{n}")).unwrap();
        let dropped: f64 = ["loop", "truncated", "rate_limit", "send_failed"]
            .iter()
            .map(|reason| m(&format!("datagrams_dropped_total{{reason=\"{reason}\"}}")))
            .sum();
        m("datagrams_received_total") == m("datagrams_echoed_total") + dropped
    });
    let received = udp_metric(metrics, "datagrams_received_total");
    assert!(
        received > 256.0,
        "the burst must exceed one round's budget to prove the drain: {received} received \
         ({queued} bytes were queued)"
    );
    for (k, s) in clients.iter().enumerate() {
        s.set_nonblocking(true).unwrap();
        let mut buf = [0u8; 64];
        while let Ok(n) = s.recv(&mut buf) {
            let old = &buf[..n];
            let exact = n == 4 && old[0] == k as u8 && old[1] < 100 && old[2..] == [0xAB, 0xCD];
            assert!(exact || old == b"warm", "socket {k} got {old:?}");
        }
        s.set_nonblocking(false).unwrap();
        assert_eq!(round_trip(s, b"after the burst"), b"after the burst");
    }
    p.stop();
}

/// `--udp` with a model that has no UDP echo exits 2 naming the field.
#[test]
fn udp_flag_with_another_model_exits_2_naming_the_field() {
    let (status, _, stderr) = run(
        &[
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--model",
            "epoll",
            "--udp",
        ],
        b"",
    );
    assert_eq!(status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("`udp`"), "{stderr}");
}
