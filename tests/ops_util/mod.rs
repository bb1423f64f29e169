//! Helpers for the tests that run the real `reactor-pool` binary as a long-lived process
//! (daemon, supervisor, reload, metrics): scratch directories, config files, scrapes. Built on
//! `tests/util`, whose launcher ([`Binary`]), waits and basics are re-exported here. Every
//! wait is bounded.

#![allow(dead_code, unreachable_pub, unused_imports)]

#[path = "../util/mod.rs"]
mod util;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::ExitStatus;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

pub use util::{
    BIN, Binary, PATIENCE as DEADLINE, Spec, accept_within, alive, children_of, connect,
    cpu_time_precise_of, echo_all, send_signal, stat_field, wait_for, wait_until, with_dispatch,
};

/// The launcher under its old name here, for tests written before `Proc` and `util::Binary`
/// became one: new tests name `Binary`.
pub type Proc = Binary;

/// A scratch directory removed on drop.
#[derive(Debug)]
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new(name: &str) -> TempDir {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "reactor-pool-test-{name}-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        // World-readable, so a server that dropped to `nobody` can still re-read its config.
        std::fs::set_permissions(&dir, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .unwrap();
        TempDir(dir)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }

    pub fn join(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }

    /// Writes `text` to `name` atomically (rename), so a reload never reads half a file.
    pub fn write(&self, name: &str, text: &str) -> PathBuf {
        let path = self.join(name);
        let tmp = self.join(&format!(".{name}.tmp"));
        std::fs::write(&tmp, text).unwrap();
        std::fs::rename(&tmp, &path).unwrap();
        path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Runs `reactor-pool ARGS` to completion (bounded) with `stdin` as input; returns the
/// status, stdout and stderr.
#[track_caller]
pub fn run(args: &[&str], stdin: &[u8]) -> (ExitStatus, String, String) {
    let out = util::run_with_input(args, stdin);
    let text = |bytes: Vec<u8>| String::from_utf8_lossy(&bytes).into_owned();
    (out.status, text(out.stdout), text(out.stderr))
}

/// The pid a pid file names.
#[track_caller]
pub fn read_pid(path: &Path) -> u32 {
    let text = std::fs::read_to_string(path).expect("read the pid file");
    text.trim().parse().expect("a pid in the pid file")
}

/// A line from `/proc/PID/status`, e.g. `Uid:`.
pub fn status_line(pid: u32, key: &str) -> String {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find(|l| l.starts_with(key))
        .unwrap_or_default()
        .to_owned()
}

/// Sends `msg` on `stream` and reads exactly its echo.
#[track_caller]
pub fn echo_on(stream: &mut TcpStream, msg: &[u8]) {
    stream.write_all(msg).unwrap();
    let mut back = vec![0u8; msg.len()];
    stream.read_exact(&mut back).expect("echo");
    assert_eq!(back, msg);
}

/// One connection: send, read the echo, close.
pub fn echo_once(addr: SocketAddr, msg: &[u8]) -> std::io::Result<Vec<u8>> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    stream.write_all(msg)?;
    let mut back = vec![0u8; msg.len()];
    stream.read_exact(&mut back)?;
    Ok(back)
}

/// Waits until the server at `addr` echoes again.
#[track_caller]
pub fn wait_echo(addr: SocketAddr) {
    wait_until("the server answers", || {
        echo_once(addr, b"ping\n").is_ok_and(|b| b == b"ping\n")
    });
}

/// Waits until the peer closes `stream` (read returns 0 or a reset).
#[track_caller]
pub fn expect_closed(stream: &mut TcpStream) {
    let mut buf = [0u8; 64];
    match stream.read(&mut buf) {
        Ok(0) => {}
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {}
        Ok(n) => panic!("expected close, got {n} bytes"),
        Err(e) => panic!("expected close, got {e}"),
    }
}

/// An HTTP response: status code, headers (lower-cased names), body.
#[derive(Debug)]
pub struct Http {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Http {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// `METHOD PATH` over a fresh connection; reads to EOF (the endpoint closes).
pub fn http(addr: SocketAddr, method: &str, path: &str) -> Http {
    let mut stream = connect(addr);
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut raw = String::new();
    stream.read_to_string(&mut raw).unwrap();
    let (head, body) = raw.split_once("\r\n\r\n").expect("a header block");
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .unwrap()
        .split(' ')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    Http {
        status,
        headers,
        body: body.to_owned(),
    }
}

/// The value of the sample `name` (with labels, exactly as exposed) in a scrape.
pub fn metric(body: &str, name: &str) -> Option<f64> {
    body.lines()
        .filter(|l| !l.starts_with('#'))
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
}

/// Scrapes `/metrics` and returns one sample.
pub fn scrape(addr: SocketAddr, name: &str) -> f64 {
    let r = http(addr, "GET", "/metrics");
    assert_eq!(r.status, 200);
    metric(&r.body, name).unwrap_or_else(|| panic!("no {name} in\n{}", r.body))
}

/// Waits until the scraped sample `name` equals `value`.
#[track_caller]
pub fn wait_metric(addr: SocketAddr, name: &str, value: f64) {
    wait_for(
        &format!("{name} to reach {value}"),
        || metric(&http(addr, "GET", "/metrics").body, name),
        |last| *last == Some(value),
    );
}

/// The metrics address a server logged.
#[track_caller]
pub fn metrics_addr(p: &Binary) -> SocketAddr {
    p.wait_stderr("metrics at http://", 1);
    let err = p.stderr();
    let rest = &err[err.find("metrics at http://").unwrap() + "metrics at http://".len()..];
    rest[..rest.find("/metrics").unwrap()].parse().unwrap()
}

/// Starts `reactor-pool serve` on 127.0.0.1:0 with its metrics endpoint on 127.0.0.1:0 and
/// `extra` flags; returns the process, the echo address and the metrics address.
#[track_caller]
pub fn spawn_with_metrics(extra: &[&str]) -> (Binary, SocketAddr, SocketAddr) {
    let mut args = vec![
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--metrics-listen",
        "127.0.0.1:0",
    ];
    args.extend_from_slice(extra);
    let p = Binary::spawn(&args);
    let metrics = metrics_addr(&p);
    let addr = p.addr;
    (p, addr, metrics)
}

/// Known traffic for the counters: each of `msgs` on a connection of its own (echoed, then
/// half-closed until the server closes it), then one connection that the client resets once
/// the server counts it as open. Waits until the reset is counted; returns the bytes echoed.
#[track_caller]
pub fn echo_each_then_reset_one(addr: SocketAddr, metrics: SocketAddr, msgs: &[&str]) -> usize {
    let mut sent = 0;
    for msg in msgs {
        let mut s = connect(addr);
        echo_on(&mut s, msg.as_bytes());
        sent += msg.len();
        s.shutdown(std::net::Shutdown::Write).unwrap();
        expect_closed(&mut s);
    }
    let reset = socket2::Socket::from(connect(addr));
    wait_metric(metrics, "reactor_pool_connections_active", 1.0);
    reset.set_linger(Some(Duration::ZERO)).unwrap();
    drop(reset);
    wait_metric(
        metrics,
        "reactor_pool_connections_closed_total{reason=\"reset\"}",
        1.0,
    );
    sent
}

/// The only child of `pid` that is alive, once there is exactly one (a supervisor's server).
#[track_caller]
pub fn the_child(pid: u32) -> u32 {
    let mut found = 0;
    wait_until("exactly one live server process", || {
        let live: Vec<u32> = children_of(pid).into_iter().filter(|c| alive(*c)).collect();
        found = live.first().copied().unwrap_or(0);
        live.len() == 1
    });
    found
}

/// Starts the binary with `args` and an open-files limit of `limit`.
pub fn spawn_with_nofile<S: AsRef<std::ffi::OsStr>>(args: &[S], limit: u64) -> Binary {
    Binary::spawn_with(args, |cmd| {
        // SAFETY: the closure runs in the forked child before exec and only calls setrlimit,
        // which is async-signal-safe; it touches no memory shared with the parent's threads.
        unsafe {
            std::os::unix::process::CommandExt::pre_exec(cmd, move || {
                let rl = libc::rlimit {
                    rlim_cur: limit,
                    rlim_max: limit,
                };
                if libc::setrlimit(libc::RLIMIT_NOFILE, &rl) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
    })
}
