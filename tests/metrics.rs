//! The Prometheus endpoint, scraped over real HTTP: traffic counters match what clients did,
//! closes are counted by reason (eof, reset, idle timeout, limit), per-worker gauges show the
//! round robin, backpressure pauses are counted, and the endpoint speaks just enough HTTP.

mod ops_util;

use std::io::{ErrorKind, Write};
use std::time::Duration;

use ops_util::*;

/// Four clients echo known messages and close; a fifth resets its connection. The scrape
/// shows 5 accepted, the exact byte counts, 4 eof and 1 reset closes, nothing active, and the
/// round robin over two workers (3 and 2 connections).
#[test]
fn scrape_counts_traffic_closes_and_per_worker_connections() {
    let (mut p, addr, metrics) = spawn_with_metrics(&["--workers", "2"]);
    let r = http(metrics, "GET", "/metrics");
    assert_eq!(r.status, 200);
    assert_eq!(
        r.header("content-type"),
        Some("text/plain; version=0.0.4; charset=utf-8")
    );
    assert!(
        r.body
            .contains("# TYPE reactor_pool_bytes_read_total counter")
    );

    let sent = echo_each_then_reset_one(addr, metrics, &["a\n", "bb\n", "ccc\n", "dddd\n"]);
    let body = http(metrics, "GET", "/metrics").body;
    let m = |name: &str| metric(&body, name).unwrap_or_else(|| panic!("{name} missing:\n{body}"));
    assert_eq!(m("reactor_pool_connections_accepted_total"), 5.0);
    assert_eq!(m("reactor_pool_connections_active"), 0.0);
    assert_eq!(
        m("reactor_pool_connections_closed_total{reason=\"eof\"}"),
        4.0
    );
    assert_eq!(
        m("reactor_pool_connections_closed_total{reason=\"limit\"}"),
        0.0
    );
    assert_eq!(m("reactor_pool_bytes_read_total"), sent as f64);
    assert_eq!(m("reactor_pool_bytes_written_total"), sent as f64);
    assert_eq!(m("reactor_pool_accept_errors_total"), 0.0);
    assert_eq!(
        m("reactor_pool_worker_connections_total{worker=\"0\"}"),
        3.0
    );
    assert_eq!(
        m("reactor_pool_worker_connections_total{worker=\"1\"}"),
        2.0
    );
    assert_eq!(
        m("reactor_pool_worker_connections_active{worker=\"0\"}"),
        0.0
    );
    assert!(m("process_open_fds") > 0.0);
    p.stop();
}

/// With max_connections = 2, a third connection is closed at accept (reason limit) while
/// per-worker gauges show the two open ones; the idle timeout then closes those (reason
/// idle_timeout).
#[test]
fn limit_and_idle_timeout_closes_are_counted() {
    let (mut p, addr, metrics) = spawn_with_metrics(&[
        "--workers",
        "2",
        "--max-connections",
        "2",
        "--idle-timeout",
        "1s",
    ]);
    let mut a = connect(addr);
    let mut b = connect(addr);
    echo_on(&mut a, b"a\n");
    echo_on(&mut b, b"b\n");
    assert_eq!(
        scrape(
            metrics,
            "reactor_pool_worker_connections_active{worker=\"0\"}"
        ),
        1.0
    );
    assert_eq!(
        scrape(
            metrics,
            "reactor_pool_worker_connections_active{worker=\"1\"}"
        ),
        1.0
    );
    let mut c = connect(addr);
    expect_closed(&mut c);
    assert_eq!(
        scrape(
            metrics,
            "reactor_pool_connections_closed_total{reason=\"limit\"}"
        ),
        1.0
    );
    expect_closed(&mut a);
    expect_closed(&mut b);
    wait_metric(
        metrics,
        "reactor_pool_connections_closed_total{reason=\"idle_timeout\"}",
        2.0,
    );
    assert_eq!(scrape(metrics, "reactor_pool_connections_active"), 0.0);
    p.stop();
}

/// A client that sends without reading fills its socket buffers and then the server's
/// per-connection buffer: the server stops reading from it, and the pause is counted.
#[test]
fn backpressure_pauses_are_counted() {
    let (mut p, addr, metrics) = spawn_with_metrics(&["--workers", "1", "--buffer-size", "4096"]);
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    // Small buffers on our side so the server's buffer fills after little traffic.
    socket.set_recv_buffer_size(4096).unwrap();
    socket.connect(&addr.into()).unwrap();
    let mut stream: std::net::TcpStream = socket.into();
    stream.set_nonblocking(true).unwrap();
    let chunk = vec![7u8; 64 * 1024];
    let mut written = 0usize;
    wait_until("the client can write no more", || {
        loop {
            match stream.write(&chunk) {
                Ok(n) => written += n,
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(e) => panic!("write: {e}"),
            }
            assert!(written < 256 << 20, "the server never pushed back");
        }
        // Blocked now; blocked again a moment later means the server stopped reading.
        std::thread::sleep(Duration::from_millis(50));
        matches!(stream.write(&chunk), Err(e) if e.kind() == ErrorKind::WouldBlock)
    });
    wait_until("a backpressure pause is counted", || {
        scrape(metrics, "reactor_pool_backpressure_pauses_total") >= 1.0
    });
    drop(stream);
    p.stop();
}

/// Other paths get 404, other methods 405 with an Allow header, HEAD gets headers only, and
/// garbage gets 400; the endpoint keeps serving after each.
#[test]
fn endpoint_answers_only_get_metrics() {
    let (mut p, _addr, metrics) = spawn_with_metrics(&[]);
    assert_eq!(http(metrics, "GET", "/nope").status, 404);
    let post = http(metrics, "POST", "/metrics");
    assert_eq!(post.status, 405);
    assert_eq!(post.header("allow"), Some("GET, HEAD"));
    let head = http(metrics, "HEAD", "/metrics");
    assert_eq!(head.status, 200);
    assert!(head.body.is_empty());
    assert_ne!(head.header("content-length"), Some("0"));
    let mut s = connect(metrics);
    s.write_all(b"hello there\r\n\r\n").unwrap();
    let mut raw = String::new();
    std::io::Read::read_to_string(&mut s, &mut raw).unwrap();
    assert!(raw.starts_with("HTTP/1.1 400"), "{raw}");
    drop(s);
    assert_eq!(http(metrics, "GET", "/metrics").status, 200);
    p.stop();
}

/// A non-loopback metrics address is refused (exit 2, naming the field and the way to allow
/// it). (That `--metrics-allow-remote` accepts it is a unit test of the config: binding a
/// non-loopback address is not something these tests do.)
#[test]
fn non_loopback_metrics_address_needs_explicit_permission() {
    let (status, _, err) = run(
        &[
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--metrics-listen",
            "0.0.0.0:0",
        ],
        b"",
    );
    assert_eq!(status.code(), Some(2), "{err}");
    assert!(
        err.contains("`metrics_listen`") && err.contains("loopback"),
        "{err}"
    );
    assert!(err.contains("--metrics-allow-remote"), "{err}");
}
