//! `serve --daemon` really detaches (new session, parent gone, stdio on /dev/null), reports
//! start-up success or failure through the caller's exit status, and holds a locked pid file
//! that refuses a second instance and disappears on exit.

mod ops_util;

use ops_util::*;

/// A daemon with a pid file: the caller exits 0 after printing `listening on ADDR`; the pid file
/// names a live process in its own session whose stdio is /dev/null; it echoes; a second
/// instance with the same pid file exits 1 naming the running pid; SIGTERM stops the daemon
/// and removes the pid file.
#[test]
fn daemon_holds_a_locked_pid_file_and_removes_it_on_exit() {
    let dir = TempDir::new("daemon");
    let config = dir.write("c.toml", "listen = \"127.0.0.1:0\"\nworkers = 1\n");
    let pid_file = dir.join("rp.pid");
    let log = dir.join("rp.log");
    let args = [
        "serve",
        "--daemon",
        "--config",
        config.to_str().unwrap(),
        "--pid-file",
        pid_file.to_str().unwrap(),
        "--log-file",
        log.to_str().unwrap(),
    ];
    let mut starter = Binary::spawn(&args);
    let addr = starter.addr;
    let status = starter.wait();
    assert!(status.success(), "starter: {status}; {}", starter.stderr());

    let pid = read_pid(&pid_file);
    assert!(alive(pid));
    assert_ne!(
        pid,
        starter.pid(),
        "the daemon is not the process we started"
    );
    let own_session = stat_field(std::process::id(), 6).unwrap();
    let session = stat_field(pid, 6).unwrap();
    assert_ne!(session, own_session, "the daemon has its own session");
    assert_ne!(
        session,
        pid.to_string(),
        "second fork: not a session leader"
    );
    for fd in [0, 1] {
        let target = std::fs::read_link(format!("/proc/{pid}/fd/{fd}")).unwrap();
        assert_eq!(target, std::path::Path::new("/dev/null"), "fd {fd}");
    }
    let cwd = std::fs::read_link(format!("/proc/{pid}/cwd")).unwrap();
    assert_eq!(cwd, std::path::Path::new("/"));
    assert_eq!(echo_once(addr, b"daemon\n").unwrap(), b"daemon\n");

    let (status, _, err) = run(&args, b"");
    assert_eq!(status.code(), Some(1), "second instance: {err}");
    assert!(
        err.contains("already running") && err.contains(&pid.to_string()),
        "{err}"
    );
    assert!(alive(pid), "the first daemon is untouched");
    assert_eq!(
        std::fs::read_to_string(&pid_file).unwrap().trim(),
        pid.to_string()
    );

    send_signal(pid, libc::SIGTERM);
    wait_until("the daemon exits", || !alive(pid));
    wait_until("the pid file is removed", || !pid_file.exists());
    let logged = std::fs::read_to_string(&log).unwrap();
    assert!(logged.contains("shut down cleanly"), "{logged}");
}

/// A daemon that cannot bind its port reports the error to the caller, which exits 1 with the
/// reason, and leaves no pid file behind.
#[test]
fn daemon_start_up_failure_reaches_the_caller() {
    let dir = TempDir::new("daemon-fail");
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let listen = taken.local_addr().unwrap().to_string();
    let pid_file = dir.join("rp.pid");
    let (status, out, err) = run(
        &[
            "serve",
            "--daemon",
            "--listen",
            &listen,
            "--pid-file",
            pid_file.to_str().unwrap(),
            "--log-file",
            dir.join("rp.log").to_str().unwrap(),
        ],
        b"",
    );
    assert_eq!(status.code(), Some(1), "{out}{err}");
    assert!(
        err.contains("cannot listen on") && err.contains(&listen),
        "{err}"
    );
    assert!(out.is_empty(), "{out}");
    wait_until("the failed daemon's pid file is gone", || {
        !pid_file.exists()
    });
}

/// Bad configuration is refused before forking, exit 2, naming the field.
#[test]
fn daemon_refuses_bad_config_before_forking() {
    let (status, _, err) = run(&["serve", "--daemon", "--workers", "99999"], b"");
    assert_eq!(status.code(), Some(2), "{err}");
    assert!(err.contains("`workers`"), "{err}");
    let (status, _, err) = run(&["serve", "--daemon", "--log", "stderr"], b"");
    assert_eq!(status.code(), Some(2), "{err}");
    assert!(err.contains("`--log`"), "{err}");
}
