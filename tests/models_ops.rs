//! Proves the comparison models take part in running it for real: the metrics endpoint
//! counts their traffic and closes, a SIGHUP reload reaches their open connections (a new
//! idle timeout), and the fork model, whose parent handles its own signals, reloads on
//! SIGHUP instead of stopping.

mod ops_util;

use ops_util::*;

const MODELS: [&str; 9] = [
    "epoll",
    "epoll-et",
    "poll",
    "select",
    "thread",
    "blocking",
    "nonblocking",
    "sigio",
    "uring",
];

/// For each model with a metrics endpoint: three clients echo known messages and close, a
/// fourth resets. The scrape shows 4 accepted, the exact bytes, 3 eof and 1 reset closes,
/// and nothing active.
#[test]
fn metrics_count_every_models_traffic() {
    for model in MODELS {
        let (mut p, addr, metrics) = spawn_with_metrics(&["--model", model]);
        let sent = echo_each_then_reset_one(addr, metrics, &["a\n", "bb\n", "ccc\n"]);
        let body = http(metrics, "GET", "/metrics").body;
        let m = |name: &str| {
            metric(&body, name).unwrap_or_else(|| panic!("{model}: {name} missing:\n{body}"))
        };
        assert_eq!(m("reactor_pool_connections_accepted_total"), 4.0, "{model}");
        assert_eq!(m("reactor_pool_connections_active"), 0.0, "{model}");
        assert_eq!(
            m("reactor_pool_connections_closed_total{reason=\"eof\"}"),
            3.0,
            "{model}"
        );
        assert_eq!(m("reactor_pool_bytes_read_total"), sent as f64, "{model}");
        assert_eq!(
            m("reactor_pool_bytes_written_total"),
            sent as f64,
            "{model}"
        );
        p.stop();
    }
}

/// The epoll model starts without idle timeouts; a connection is opened; a reload turns
/// them on at 300 ms; the open connection, left idle, is then closed by the server.
#[test]
fn reload_reaches_an_event_loop_models_open_connections() {
    let dir = TempDir::new("models-reload");
    let base = "listen = \"127.0.0.1:0\"\nmodel = \"epoll\"\n";
    let config = dir.write("c.toml", &format!("{base}idle_timeout = 0\n"));
    let mut p = Binary::spawn(&["serve", "--config", config.to_str().unwrap()]);
    let addr = p.addr;
    let mut open = connect(addr);
    echo_on(&mut open, b"before\n");
    dir.write("c.toml", &format!("{base}idle_timeout = \"300ms\"\n"));
    p.signal(libc::SIGHUP);
    p.wait_stderr("configuration reloaded", 1);
    echo_on(&mut open, b"after\n");
    expect_closed(&mut open);
    p.stop();
}

/// The fork model's parent reloads on SIGHUP (it has no signal thread): it logs the reload,
/// keeps serving (new children get the new settings), and still drains on SIGTERM with
/// exit 0.
#[test]
fn fork_reloads_on_sighup_and_stops_on_sigterm() {
    let dir = TempDir::new("models-fork-reload");
    let base = "listen = \"127.0.0.1:0\"\nmodel = \"fork\"\n";
    let config = dir.write("c.toml", &format!("{base}max_connections = 100\n"));
    let mut p = Binary::spawn(&["serve", "--config", config.to_str().unwrap()]);
    let addr = p.addr;
    let mut open = connect(addr);
    echo_on(&mut open, b"before\n");
    dir.write("c.toml", &format!("{base}max_connections = 1\n"));
    p.signal(libc::SIGHUP);
    p.wait_stderr("`max_connections` applied", 1);
    // The child from before the reload still serves; a second connection is now over the
    // limit and closed at once.
    echo_on(&mut open, b"after\n");
    let mut extra = connect(addr);
    expect_closed(&mut extra);
    drop(open);
    wait_echo(addr);
    p.stop();
}
