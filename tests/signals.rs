//! Signals in the served process: SIGTERM at any moment after `listening on` drains and exits
//! 0 (including while the workers are still being started), and SIGINT does the same.

mod ops_util;

use ops_util::*;

/// SIGTERM sent the instant the server reports ready, ten times over: each run exits 0. This
/// hits the window where the acceptor registers its shutdown waker after shutdown was already
/// requested.
#[test]
fn sigterm_right_after_start_up_exits_cleanly() {
    for _ in 0..10 {
        let mut p = Binary::spawn(&["serve", "--listen", "127.0.0.1:0", "--workers", "4"]);
        p.stop();
    }
}

/// SIGINT drains like SIGTERM, and SIGHUP without a config file is harmless.
#[test]
fn sigint_drains_and_sighup_without_config_is_harmless() {
    let mut p = Binary::spawn(&["serve", "--listen", "127.0.0.1:0"]);
    let addr = p.addr;
    p.signal(libc::SIGHUP);
    p.wait_stderr("no config file to reload", 1);
    assert_eq!(echo_once(addr, b"x\n").unwrap(), b"x\n");
    p.signal(libc::SIGINT);
    assert!(p.wait().success(), "{}", p.stderr());
    assert!(p.stderr().contains("signal=\"SIGINT\""));
}
