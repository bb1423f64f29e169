//! `--user NAME` binds first, then drops root for good (uid, gid, supplementary groups), so a
//! port below 1024 can be served by an unprivileged process. The drop tests need root: run as
//! another user they print a note and return (they cannot fail or pass there).

mod ops_util;

use std::net::TcpListener;

use ops_util::*;

fn is_root() -> bool {
    // SAFETY: geteuid takes no arguments and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// A free port below 1024 on 127.0.0.1, if any (only root can probe them).
fn free_privileged_port() -> Option<u16> {
    (900..1000).find(|port| TcpListener::bind(("127.0.0.1", *port)).is_ok())
}

/// As root: the server binds a privileged port, then runs as `nobody` (all four uids and gids
/// 65534, no supplementary groups) and still echoes. Skipped unless running as root.
#[test]
fn user_flag_drops_root_after_binding_a_privileged_port() {
    if !is_root() {
        eprintln!("skipped: dropping privileges needs root");
        return;
    }
    let Some(port) = free_privileged_port() else {
        eprintln!("skipped: no free port in 900..1000");
        return;
    };
    let listen = format!("127.0.0.1:{port}");
    let mut p = Binary::spawn(&[
        "serve",
        "--listen",
        &listen,
        "--user",
        "nobody",
        "--workers",
        "2",
    ]);
    let addr = p.addr;
    assert_eq!(addr.port(), port);
    let pid = p.pid();
    let fields = |key: &str| -> Vec<String> {
        status_line(pid, key)
            .split_whitespace()
            .skip(1)
            .map(str::to_owned)
            .collect()
    };
    assert_eq!(
        fields("Uid:"),
        ["65534"; 4],
        "real, effective, saved, fs uid"
    );
    assert_eq!(fields("Gid:"), ["65534"; 4]);
    assert!(fields("Groups:").is_empty(), "supplementary groups cleared");
    // Every thread, not just the main one, runs unprivileged.
    for task in std::fs::read_dir(format!("/proc/{pid}/task")).unwrap() {
        let status = std::fs::read_to_string(task.unwrap().path().join("status")).unwrap();
        assert!(
            status.contains("Uid:\t65534\t65534\t65534\t65534"),
            "{status}"
        );
    }
    assert_eq!(
        echo_once(addr, b"unprivileged\n").unwrap(),
        b"unprivileged\n"
    );
    p.wait_stderr("dropped privileges", 1);
    p.stop();
}

/// As root, under the supervisor: the supervisor keeps root (it must be able to restart the
/// server) and the server it starts runs as `nobody`. Skipped unless running as root.
#[test]
fn supervised_server_drops_root_while_the_supervisor_keeps_it() {
    if !is_root() {
        eprintln!("skipped: dropping privileges needs root");
        return;
    }
    let mut sup = Binary::spawn(&[
        "serve",
        "--supervise",
        "--listen",
        "127.0.0.1:0",
        "--user",
        "nobody",
        "--workers",
        "1",
    ]);
    let addr = sup.addr;
    let mut child = 0;
    wait_until("the server process", || {
        child = children_of(sup.pid())
            .into_iter()
            .find(|c| alive(*c))
            .unwrap_or(0);
        child != 0
    });
    assert!(status_line(child, "Uid:").ends_with("65534\t65534\t65534\t65534"));
    assert!(status_line(sup.pid(), "Uid:").ends_with("0\t0\t0\t0"));
    assert_eq!(echo_once(addr, b"x\n").unwrap(), b"x\n");
    sup.stop();
}

/// An unknown user is a usage error (exit 2) reported before anything is bound.
#[test]
fn unknown_user_is_a_usage_error() {
    let (status, _, err) = run(
        &[
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--user",
            "no-such-user-rp",
        ],
        b"",
    );
    assert_eq!(status.code(), Some(2), "{err}");
    assert!(err.contains("no user named 'no-such-user-rp'"), "{err}");
}
