//! `--log-connections`: one info line when a connection opens and one when it closes, with
//! the peer address, the worker, bytes each way, the duration and the close reason, in every
//! model; nothing of the kind without the flag; a reload turns it on for new connections.

mod ops_util;

use std::net::Shutdown;

use ops_util::*;
use reactor_pool::Model;

/// The stderr line containing `needle` and `peer=ADDR`.
#[track_caller]
fn line_with(p: &Proc, needle: &str, peer: &str) -> String {
    let mut found = String::new();
    wait_until(&format!("a {needle:?} line for {peer}"), || {
        found = p
            .stderr()
            .lines()
            .find(|l| l.contains(needle) && l.contains(&format!("peer={peer} ")))
            .unwrap_or_default()
            .to_owned();
        !found.is_empty()
    });
    found
}

/// A client echoes 6 bytes, half-closes and is closed by the server: an open line with its
/// address and worker, then a close line with 6 bytes each way, a duration and reason eof.
/// A second client resets: its close line says reset.
fn opens_and_closes_are_logged(model: Model) {
    let mut p = Proc::spawn(&[
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--model",
        model.name(),
        "--log-connections",
    ]);
    let addr = p.listening();
    let mut client = connect(addr);
    let peer = client.local_addr().unwrap().to_string();
    echo_on(&mut client, b"hello\n");
    let open = line_with(&p, "connection opened", &peer);
    assert!(open.contains("INFO"), "{open}");
    assert!(open.contains("worker="), "{open}");
    client.shutdown(Shutdown::Write).unwrap();
    expect_closed(&mut client);
    let close = line_with(&p, "connection closed", &peer);
    for field in [
        "INFO",
        "worker=",
        "bytes_in=6 ",
        "bytes_out=6 ",
        "duration_ms=",
        "reason=eof",
    ] {
        assert!(close.contains(field), "{field:?} not in {close}");
    }

    let reset = socket2::Socket::from(connect(addr));
    let peer = reset.local_addr().unwrap().as_socket().unwrap().to_string();
    line_with(&p, "connection opened", &peer);
    reset.set_linger(Some(std::time::Duration::ZERO)).unwrap();
    drop(reset);
    let close = line_with(&p, "connection closed", &peer);
    assert!(close.contains("reason=reset"), "{close}");
    p.stop();
}

per_model!(opens_and_closes_are_logged);

/// Off by default: no per-connection lines at the default log level; a reload that sets
/// `log_connections = true` turns them on for connections accepted after it.
#[test]
fn off_by_default_and_reloadable() {
    let dir = TempDir::new("connlog-reload");
    let base = "listen = \"127.0.0.1:0\"\nworkers = 1\n";
    let path = dir.write("c.toml", base);
    let mut p = Proc::spawn(&["serve", "--config", path.to_str().unwrap()]);
    let addr = p.listening();
    assert_eq!(echo_once(addr, b"quiet\n").unwrap(), b"quiet\n");
    dir.write("c.toml", &format!("{base}log_connections = true\n"));
    p.signal(libc::SIGHUP);
    p.wait_stderr("configuration reloaded", 1);
    let mut client = connect(addr);
    let peer = client.local_addr().unwrap().to_string();
    echo_on(&mut client, b"loud\n");
    line_with(&p, "connection opened", &peer);
    drop(client);
    line_with(&p, "connection closed", &peer);
    let err = p.stderr();
    assert_eq!(
        err.matches("connection opened").count(),
        1,
        "only the connection after the reload is logged:\n{err}"
    );
    p.stop();
}
