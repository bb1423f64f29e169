//! The supervisor's restart policy: `--restart always` restarts a server that exited for any
//! reason (even a clean drain after `kill <child>`), `on-failure` (the default) only one that
//! crashed; `--restart-delay` sets the first back-off; neither flag means anything without
//! `--supervise`, and SIGTERM to the supervisor ends it in every policy.

mod ops_util;

use ops_util::*;

/// `--restart always --restart-delay 0.2`: SIGTERM to the child makes it drain and exit 0,
/// and the supervisor starts a new one after 200 ms (logged) on the same address; SIGTERM to
/// the supervisor then stops both for good, status 0.
#[test]
fn always_restarts_a_server_that_exited_cleanly() {
    let mut sup = Proc::spawn(&[
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--workers",
        "1",
        "--supervise",
        "--restart",
        "always",
        "--restart-delay",
        "0.2",
    ]);
    let addr = sup.listening();
    let first = the_child(sup.pid());
    send_signal(first, libc::SIGTERM);
    wait_until("the stopped server is reaped", || {
        !children_of(sup.pid()).contains(&first)
    });
    sup.wait_stderr("restart_in_ms=200", 1);
    wait_echo(addr);
    let second = the_child(sup.pid());
    assert_ne!(first, second);
    assert!(sup.stderr().contains("exit status 0"), "{}", sup.stderr());
    sup.stop();
    assert!(!alive(second), "the server exited with the supervisor");
    assert!(children_of(sup.pid()).is_empty(), "no zombie left");
}

/// The default policy (`on-failure`, as before): a child that drains and exits 0 on SIGTERM
/// was stopped on purpose, and the supervisor exits 0 with it.
#[test]
fn on_failure_lets_a_clean_exit_end_the_supervisor() {
    let mut sup = Proc::spawn(&[
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--workers",
        "1",
        "--supervise",
        "--restart",
        "on-failure",
    ]);
    sup.listening();
    let child = the_child(sup.pid());
    send_signal(child, libc::SIGTERM);
    let status = sup.wait();
    assert!(status.success(), "{status}: {}", sup.stderr());
    assert!(
        sup.stderr().contains("supervisor exiting"),
        "{}",
        sup.stderr()
    );
}

/// Restart flags without `--supervise`, an unknown policy, or a zero delay: exit 2 naming
/// the flag.
#[test]
fn restart_flags_are_validated() {
    let cases: [(&[&str], &str); 4] = [
        (&["--restart", "always"], "--restart"),
        (&["--restart-delay", "2"], "--restart-delay"),
        (&["--supervise", "--restart", "sometimes"], "--restart"),
        (&["--supervise", "--restart-delay", "0"], "--restart-delay"),
    ];
    for (flags, name) in cases {
        let mut args = vec!["serve", "--listen", "127.0.0.1:0"];
        args.extend_from_slice(flags);
        let (status, _, err) = run(&args, b"");
        assert_eq!(status.code(), Some(2), "{flags:?}: {err}");
        assert!(err.contains(name), "{flags:?}: {err}");
    }
}
