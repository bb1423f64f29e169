//! `serve --supervise` restarts a server that crashed (here: SIGKILL) on the same port,
//! forwards SIGHUP and SIGTERM, exits 0 after the drain, leaves no zombie, and reports a
//! child that cannot start instead of restarting it forever.

mod ops_util;

use ops_util::*;

/// A foreground supervisor: kill its server with SIGKILL and the service answers again on the
/// same address (from a new process), with the exit status logged; a connection opened while
/// the server is down is served once it is back; SIGHUP reaches the new server; SIGTERM ends
/// both with status 0 and no zombie is left.
#[test]
fn supervisor_restarts_a_killed_server() {
    let dir = TempDir::new("supervise");
    let config = dir.write("c.toml", "listen = \"127.0.0.1:0\"\nworkers = 1\n");
    let mut sup = Binary::spawn(&["serve", "--supervise", "--config", config.to_str().unwrap()]);
    let addr = sup.addr;
    assert_eq!(echo_once(addr, b"one\n").unwrap(), b"one\n");
    let first = the_child(sup.pid());

    send_signal(first, libc::SIGKILL);
    // Connect at once: the supervisor holds the listening socket, so this waits in the backlog
    // for the restarted server rather than being refused.
    let mut during = connect(addr);
    wait_until("the killed server is reaped", || {
        !children_of(sup.pid()).contains(&first)
    });
    echo_on(&mut during, b"while restarting\n");
    wait_echo(addr);
    let second = the_child(sup.pid());
    assert_ne!(first, second);
    sup.wait_stderr("killed by signal 9", 1);

    sup.signal(libc::SIGHUP);
    sup.wait_stderr("configuration reloaded", 1);
    assert!(alive(second), "a reload does not restart the server");

    drop(during);
    sup.stop();
    assert!(!alive(second), "the server exited with the supervisor");
    assert!(children_of(sup.pid()).is_empty(), "no zombie left");
    assert!(sup.stderr().contains("server stopped; supervisor exiting"));
}

/// Daemon plus supervisor: the pid file names the supervisor, a killed server is replaced,
/// and SIGTERM to the supervisor stops everything and removes the pid file.
#[test]
fn daemonized_supervisor_restarts_and_cleans_up() {
    let dir = TempDir::new("daemon-supervise");
    let config = dir.write("c.toml", "listen = \"127.0.0.1:0\"\nworkers = 1\n");
    let pid_file = dir.join("rp.pid");
    let log = dir.join("rp.log");
    let mut starter = Binary::spawn(&[
        "serve",
        "--daemon",
        "--supervise",
        "--config",
        config.to_str().unwrap(),
        "--pid-file",
        pid_file.to_str().unwrap(),
        "--log-file",
        log.to_str().unwrap(),
    ]);
    let addr = starter.addr;
    assert!(starter.wait().success(), "{}", starter.stderr());
    let supervisor = read_pid(&pid_file);
    let first = the_child(supervisor);
    assert_eq!(echo_once(addr, b"a\n").unwrap(), b"a\n");
    send_signal(first, libc::SIGKILL);
    wait_until("a new server process", || {
        children_of(supervisor)
            .iter()
            .any(|c| *c != first && alive(*c))
    });
    wait_echo(addr);
    let second = the_child(supervisor);

    send_signal(supervisor, libc::SIGTERM);
    wait_until("the supervisor exits", || !alive(supervisor));
    assert!(!alive(second));
    wait_until("the pid file is removed", || !pid_file.exists());
    let logged = std::fs::read_to_string(&log).unwrap();
    assert!(logged.contains("killed by signal 9"), "{logged}");
    assert!(
        logged.contains("server stopped; supervisor exiting"),
        "{logged}"
    );
}

/// A server that fails at start-up (its metrics port is taken) is not restarted in a loop:
/// the supervisor exits 1 with the server's own error message.
#[test]
fn supervisor_reports_a_server_that_cannot_start() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let metrics = taken.local_addr().unwrap().to_string();
    let (status, out, err) = run(
        &[
            "serve",
            "--supervise",
            "--listen",
            "127.0.0.1:0",
            "--metrics-listen",
            &metrics,
        ],
        b"",
    );
    assert_eq!(status.code(), Some(1), "{err}");
    assert!(out.is_empty(), "printed {out:?}");
    assert!(
        err.contains("reactor-pool: error: metrics endpoint: cannot listen on"),
        "{err}"
    );
    assert_eq!(err.matches("started server process").count(), 1, "{err}");
}
