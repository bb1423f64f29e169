//! SIGHUP reloads the config file in a running server: idle_timeout, max_connections and
//! log_level change without dropping open connections (a shorter idle timeout reaches
//! connections that were already open); other changes are logged as needing a restart; an
//! invalid file is rejected and the running config kept.

mod ops_util;

use ops_util::*;

fn start(dir: &TempDir, config_text: &str) -> (Binary, std::net::SocketAddr, std::net::SocketAddr) {
    let config = dir.write("c.toml", config_text);
    let p = Binary::spawn(&["serve", "--config", config.to_str().unwrap()]);
    let addr = p.addr;
    let metrics = metrics_addr(&p);
    (p, addr, metrics)
}

const BASE: &str = "listen = \"127.0.0.1:0\"\nmetrics_listen = \"127.0.0.1:0\"\nworkers = 2\n";

/// A connection opened while idle timeouts are off stays open and working across a reload
/// that turns them on at 300 ms; then, left idle, it is closed by the server. The reload also
/// switches the log level to debug, which makes the close visible in the log.
#[test]
fn sighup_applies_a_new_idle_timeout_to_open_connections() {
    let dir = TempDir::new("reload-idle");
    let (mut p, addr, metrics) = start(
        &dir,
        &format!("{BASE}idle_timeout = 0\nlog_level = \"info\"\n"),
    );
    let mut open = connect(addr);
    echo_on(&mut open, b"before\n");
    assert_eq!(scrape(metrics, "reactor_pool_idle_timeout_seconds"), 0.0);

    dir.write(
        "c.toml",
        &format!("{BASE}idle_timeout = \"300ms\"\nlog_level = \"debug\"\n"),
    );
    p.signal(libc::SIGHUP);
    p.wait_stderr("configuration reloaded", 1);
    assert!(
        p.stderr().contains("`idle_timeout` applied"),
        "{}",
        p.stderr()
    );
    assert!(p.stderr().contains("`log_level` applied"), "{}", p.stderr());
    assert_eq!(scrape(metrics, "reactor_pool_idle_timeout_seconds"), 0.3);

    // Still the same connection, still echoing; then idle until the server closes it.
    echo_on(&mut open, b"after\n");
    expect_closed(&mut open);
    wait_metric(
        metrics,
        "reactor_pool_connections_closed_total{reason=\"idle_timeout\"}",
        1.0,
    );
    p.wait_stderr("IdleTimeout", 1);
    assert_eq!(
        scrape(
            metrics,
            "reactor_pool_config_reloads_total{result=\"success\"}"
        ),
        1.0
    );
    p.stop();
}

/// An invalid file is rejected (logged with the field), the old settings stay in force, and
/// open connections are untouched; a later valid file with a lower max_connections applies at
/// once (a new connection beyond it is closed) while a changed `workers` is only logged as
/// needing a restart.
#[test]
fn sighup_rejects_an_invalid_file_and_keeps_the_running_config() {
    let dir = TempDir::new("reload-invalid");
    let (mut p, addr, metrics) = start(&dir, &format!("{BASE}max_connections = 5\n"));
    let mut open = connect(addr);
    echo_on(&mut open, b"hello\n");

    dir.write("c.toml", &format!("{BASE}max_connections = \"lots\"\n"));
    p.signal(libc::SIGHUP);
    p.wait_stderr("config reload rejected", 1);
    assert!(p.stderr().contains("max_connections"), "{}", p.stderr());
    assert_eq!(
        scrape(
            metrics,
            "reactor_pool_config_reloads_total{result=\"failure\"}"
        ),
        1.0
    );
    assert_eq!(scrape(metrics, "reactor_pool_max_connections"), 5.0);
    echo_on(&mut open, b"still here\n");

    dir.write(
        "c.toml",
        "listen = \"127.0.0.1:0\"\nmetrics_listen = \"127.0.0.1:0\"\nworkers = 3\n\
         max_connections = 1\n",
    );
    p.signal(libc::SIGHUP);
    p.wait_stderr("configuration reloaded", 1);
    let err = p.stderr();
    assert!(
        err.contains("`workers` changed but needs a restart"),
        "{err}"
    );
    assert!(
        !err.contains("`listen` changed"),
        "port 0 both times: {err}"
    );
    assert_eq!(scrape(metrics, "reactor_pool_max_connections"), 1.0);
    assert_eq!(
        scrape(metrics, "reactor_pool_workers"),
        2.0,
        "workers unchanged"
    );

    // One connection is open, the limit is now one: a second one is closed at accept.
    let mut extra = connect(addr);
    expect_closed(&mut extra);
    assert_eq!(
        scrape(
            metrics,
            "reactor_pool_connections_closed_total{reason=\"limit\"}"
        ),
        1.0
    );
    echo_on(&mut open, b"the first one still works\n");
    drop(open);
    p.stop();
}

/// Under systemd (`Type=notify`), the server says READY=1 when listening, RELOADING=1 then
/// READY=1 around a reload, STOPPING=1 when draining.
#[test]
fn systemd_notifications_follow_the_lifecycle() {
    use std::os::unix::net::UnixDatagram;
    let dir = TempDir::new("notify");
    let socket_path = dir.join("notify.sock");
    let socket = UnixDatagram::bind(&socket_path).unwrap();
    socket.set_read_timeout(Some(DEADLINE)).unwrap();
    let config = dir.write("c.toml", "listen = \"127.0.0.1:0\"\n");
    let mut p = Binary::spawn_with(&["serve", "--config", config.to_str().unwrap()], |c| {
        c.env("NOTIFY_SOCKET", &socket_path);
    });
    let mut buf = [0u8; 256];
    let mut next = || {
        let n = socket.recv(&mut buf).expect("a notification");
        String::from_utf8_lossy(&buf[..n]).into_owned()
    };
    assert_eq!(next(), "READY=1");
    p.signal(libc::SIGHUP);
    assert_eq!(next(), "RELOADING=1");
    assert_eq!(next(), "READY=1");
    p.signal(libc::SIGTERM);
    assert_eq!(next(), "STOPPING=1");
    assert!(p.wait().success());
}
