//! Shared test support: start a server (in-process, or as the real binary through the one
//! launcher, [`Binary`], which also holds the binary to its one-line stdout contract) on
//! 127.0.0.1:0, talk to it with bounded waits, run the binary to completion, and inspect
//! processes through /proc (fds, RSS, CPU time, threads, children). `tests/ops_util` builds
//! on this module.
//!
//! Every wait here has a deadline; nothing sleeps as a means of synchronisation (the short
//! sleep inside `poll_until`, behind `wait_until` and every other wait, is the polling
//! interval of a condition with a deadline).

#![allow(dead_code, unreachable_pub)]

use std::ffi::OsStr;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::{Arc, Mutex, mpsc};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use reactor_pool::{Config, Model, Server, ShutdownHandle};

/// Generous upper bound for anything that should take milliseconds: the CI machine is
/// shared and slow, and a debug build is several times slower than release.
pub const PATIENCE: Duration = Duration::from_secs(30);

/// Path of the server binary under test, as Cargo gives it to the server package's own
/// tests. Empty when this file is built into another package's tests (the bench crate's
/// include it too): the launchers here use [`server_bin`], which works in both.
pub const BIN: &str = match option_env!("CARGO_BIN_EXE_reactor-pool") {
    Some(path) => path,
    None => "",
};

/// The server binary: [`BIN`] in the server package's tests; in another workspace package's
/// tests, the `reactor-pool` that the workspace build put in the same target directory.
#[track_caller]
pub fn server_bin() -> PathBuf {
    if !BIN.is_empty() {
        return PathBuf::from(BIN);
    }
    // A test runs as target/<profile>/deps/<name>-<hash>; binaries sit in target/<profile>.
    let exe = std::env::current_exe().expect("the test's own path");
    let bin = exe
        .parent()
        .and_then(Path::parent)
        .expect("a test executable under target/<profile>/deps")
        .join("reactor-pool");
    assert!(
        bin.is_file(),
        "{} is missing: run the whole workspace's tests (`cargo test`), or `cargo build -p \
         reactor-pool` first",
        bin.display()
    );
    bin
}

/// What a test wants from its server; turned into a `Config` (in-process) or flags (binary).
#[derive(Debug, Clone)]
pub struct Spec {
    pub model: Model,
    pub workers: usize,
    pub buffer_size: usize,
    pub max_connections: usize,
    pub idle_timeout: Option<Duration>,
    pub shutdown_timeout: Duration,
}

impl Spec {
    pub fn new(model: Model) -> Spec {
        Spec {
            model,
            workers: 2,
            buffer_size: 64 * 1024,
            // select refuses an explicit limit it cannot reach (FD_SETSIZE).
            max_connections: model.connection_ceiling().unwrap_or(10_000),
            idle_timeout: None,
            shutdown_timeout: Duration::from_secs(10),
        }
    }

    pub fn workers(mut self, n: usize) -> Spec {
        self.workers = n;
        self
    }

    pub fn buffer_size(mut self, n: usize) -> Spec {
        self.buffer_size = n;
        self
    }

    pub fn max_connections(mut self, n: usize) -> Spec {
        self.max_connections = n;
        self
    }

    pub fn idle_timeout(mut self, t: Duration) -> Spec {
        self.idle_timeout = Some(t);
        self
    }

    pub fn shutdown_timeout(mut self, t: Duration) -> Spec {
        self.shutdown_timeout = t;
        self
    }

    pub fn config(&self) -> Config {
        Config {
            listen: "127.0.0.1:0".parse().unwrap(),
            workers: self.workers,
            model: self.model,
            max_connections: self.max_connections,
            buffer_size: self.buffer_size,
            idle_timeout: self.idle_timeout,
            shutdown_timeout: self.shutdown_timeout,
            ..Config::default()
        }
    }

    /// Command-line flags equivalent to this spec.
    pub fn args(&self) -> Vec<String> {
        let mut args = vec![
            "serve".to_owned(),
            "--listen".to_owned(),
            "127.0.0.1:0".to_owned(),
            "--model".to_owned(),
            self.model.name().to_owned(),
            "--buffer-size".to_owned(),
            self.buffer_size.to_string(),
            "--max-connections".to_owned(),
            self.max_connections.to_string(),
            "--idle-timeout".to_owned(),
            self.idle_timeout
                .map_or(0.0, |t| t.as_secs_f64())
                .to_string(),
            "--shutdown-timeout".to_owned(),
            self.shutdown_timeout.as_secs_f64().to_string(),
        ];
        if self.model == Model::Reactor {
            args.push("--workers".to_owned());
            args.push(self.workers.to_string());
        }
        args
    }

    /// Starts the server in this process, or as the real binary for the models that cannot
    /// share a test process (see [`runs_in_process`]).
    pub fn start(&self) -> InProcess {
        if runs_in_process(self.model) {
            InProcess::start(&self.config())
        } else {
            InProcess::isolated(self.spawn())
        }
    }

    /// Starts the server as the real binary in its own process.
    pub fn spawn(&self) -> Binary {
        Binary::spawn(&self.args())
    }
}

/// Whether a model can serve from a thread of the (multi-threaded) test process. `fork`
/// must not fork a multi-threaded process; `select` cannot watch descriptor numbers >= 1024,
/// which a test process easily reaches while other tests run in parallel. Both then run as
/// the real binary behind the same `addr`/`stop` interface.
pub fn runs_in_process(model: Model) -> bool {
    !matches!(model.name(), "fork" | "select")
}

/// A server running on a thread of the test process (or, for a model that cannot, in its
/// own process: see [`runs_in_process`]).
#[derive(Debug)]
pub struct InProcess {
    pub addr: SocketAddr,
    shutdown: ShutdownHandle,
    done: mpsc::Receiver<io::Result<()>>,
    thread: Option<JoinHandle<()>>,
    /// Set instead of the thread when the server runs as the real binary.
    process: Option<Binary>,
}

impl InProcess {
    pub fn start(config: &Config) -> InProcess {
        let server = Server::bind(config).expect("bind 127.0.0.1:0");
        let addr = server.local_addr();
        let shutdown = server.shutdown_handle();
        let (tx, done) = mpsc::channel();
        let thread = thread::Builder::new()
            .name("server".into())
            .spawn(move || {
                let _ = tx.send(server.run());
            })
            .unwrap();
        InProcess {
            addr,
            shutdown,
            done,
            thread: Some(thread),
            process: None,
        }
    }

    /// Wraps a server running as the real binary.
    pub fn isolated(binary: Binary) -> InProcess {
        InProcess {
            addr: binary.addr,
            shutdown: ShutdownHandle::new(),
            done: mpsc::channel().1,
            thread: None,
            process: Some(binary),
        }
    }

    /// The library's shutdown handle (only for a server on a thread of this process).
    #[track_caller]
    pub fn handle(&self) -> ShutdownHandle {
        assert!(
            self.process.is_none(),
            "this server runs as its own process"
        );
        self.shutdown.clone()
    }

    /// Requests shutdown and waits (bounded) for `run` to return; returns how long it took.
    #[track_caller]
    pub fn stop(mut self) -> Duration {
        let start = Instant::now();
        if let Some(mut binary) = self.process.take() {
            binary.stop();
            return start.elapsed();
        }
        self.shutdown.shutdown();
        let result = self
            .done
            .recv_timeout(PATIENCE)
            .expect("server did not stop in time");
        result.expect("server run failed");
        if let Some(t) = self.thread.take() {
            t.join().unwrap();
        }
        start.elapsed()
    }
}

impl Drop for InProcess {
    fn drop(&mut self) {
        // A failed test still stops its server, so the process does not leak threads/ports.
        self.shutdown.shutdown();
    }
}

/// The real binary as a child process, started by [`Binary::spawn`] (the one launcher every
/// test uses). It must print exactly one stdout line, `listening on ADDR`, and nothing more:
/// a reader thread collects anything else, and [`Binary::wait`], [`Binary::stop`] or the drop
/// fails the test if there was any. Stderr is collected as it arrives ([`Binary::stderr`]).
#[derive(Debug)]
pub struct Binary {
    /// The address from the `listening on ADDR` line.
    pub addr: SocketAddr,
    pub child: Child,
    /// Everything the process has written to stderr so far.
    stderr: Arc<Mutex<String>>,
    /// Yields once, at stderr's EOF.
    stderr_done: mpsc::Receiver<()>,
    /// Yields once, at stdout's EOF: the lines printed after the first. Taken when checked.
    stdout_rest: Option<mpsc::Receiver<Vec<String>>>,
}

impl Binary {
    /// Starts `reactor-pool ARGS` and waits (bounded) for its `listening on ADDR` line.
    #[track_caller]
    pub fn spawn<S: AsRef<OsStr>>(args: &[S]) -> Binary {
        Binary::spawn_with(args, |_| {})
    }

    /// As [`Binary::spawn`], letting `tweak` adjust the command first (environment,
    /// `pre_exec`). Stdin is closed; `RUST_LOG` and `NOTIFY_SOCKET` are unset unless `tweak`
    /// sets them.
    #[track_caller]
    pub fn spawn_with<S: AsRef<OsStr>>(args: &[S], tweak: impl FnOnce(&mut Command)) -> Binary {
        let mut cmd = Command::new(server_bin());
        cmd.args(args)
            .env_remove("RUST_LOG")
            .env_remove("NOTIFY_SOCKET");
        tweak(&mut cmd);
        Binary::spawn_command(&mut cmd)
    }

    /// Starts `cmd` (any program that behaves like `reactor-pool serve`) with stdin closed,
    /// stdout and stderr read by threads, and waits (bounded) for `listening on ADDR`.
    #[track_caller]
    pub fn spawn_command(cmd: &mut Command) -> Binary {
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn the server");
        let stdout = child.stdout.take().unwrap();
        let mut err_pipe = child.stderr.take().unwrap();
        let stderr = Arc::new(Mutex::new(String::new()));
        let sink = stderr.clone();
        let (err_tx, stderr_done) = mpsc::channel();
        thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = err_pipe.read(&mut buf) {
                if n == 0 {
                    break;
                }
                let text = String::from_utf8_lossy(&buf[..n]);
                sink.lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .push_str(&text);
            }
            let _ = err_tx.send(());
        });
        let (first_tx, first) = mpsc::channel();
        let (rest_tx, rest) = mpsc::channel();
        thread::spawn(move || {
            let mut lines = BufReader::new(stdout).split(b'\n');
            let line = |l: io::Result<Vec<u8>>| l.map(|b| String::from_utf8_lossy(&b).into_owned());
            let _ = first_tx.send(lines.next().map(line));
            // Anything more on stdout breaks the one-line contract; the owner checks.
            let extra: Vec<String> = lines.map_while(|l| line(l).ok()).collect();
            let _ = rest_tx.send(extra);
        });
        let started = match first.recv_timeout(PATIENCE) {
            Ok(Some(Ok(line))) => match line.strip_prefix("listening on ").map(str::parse) {
                Some(Ok(addr)) => Ok(addr),
                _ => Err(format!("unexpected first line {line:?}")),
            },
            other => Err(format!("server did not report its address ({other:?})")),
        };
        match started {
            Ok(addr) => Binary {
                addr,
                child,
                stderr,
                stderr_done,
                stdout_rest: Some(rest),
            },
            Err(why) => {
                let _ = child.kill();
                let _ = child.wait();
                let _ = stderr_done.recv_timeout(PATIENCE);
                let stderr = stderr.lock().unwrap_or_else(|p| p.into_inner());
                panic!("{why}; stderr:\n{stderr}");
            }
        }
    }

    /// The address from the `listening on ADDR` line (read at start-up).
    pub fn listening(&self) -> SocketAddr {
        self.addr
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn signal(&self, sig: i32) {
        send_signal(self.pid(), sig);
    }

    /// Everything the process has written to stderr so far.
    pub fn stderr(&self) -> String {
        self.stderr
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Waits (bounded) until stderr contains `needle` at least `count` times.
    #[track_caller]
    pub fn wait_stderr(&self, needle: &str, count: usize) {
        if !poll_until(PATIENCE, || self.stderr().matches(needle).count() >= count) {
            panic!(
                "stderr never contained {needle:?} x{count}:\n{}",
                self.stderr()
            );
        }
    }

    /// Waits (bounded) for the process to exit and for its output to end, then checks that
    /// it printed nothing after `listening on`. Returns the exit status; [`Binary::stderr`]
    /// then holds everything it wrote.
    #[track_caller]
    pub fn wait(&mut self) -> ExitStatus {
        let Some(status) = wait_child(&mut self.child, PATIENCE) else {
            self.kill();
            panic!("server did not exit in time; stderr:\n{}", self.stderr());
        };
        if self.stderr_done.recv_timeout(PATIENCE).is_err() {
            panic!(
                "stderr still open {PATIENCE:?} after the server exited (held by a child?):\n{}",
                self.stderr()
            );
        }
        self.check_stdout();
        status
    }

    /// Sends SIGTERM, waits for exit status 0, and returns everything written to stderr.
    #[track_caller]
    pub fn stop(&mut self) -> String {
        self.signal(libc::SIGTERM);
        let status = self.wait();
        let stderr = self.stderr();
        assert!(
            status.success(),
            "exit status {status:?}; stderr:\n{stderr}"
        );
        stderr
    }

    /// Fails the test if the process printed anything after `listening on` (once stdout has
    /// ended: the process and any child holding the pipe have exited; bounded).
    #[track_caller]
    fn check_stdout(&mut self) {
        let Some(rest) = self.stdout_rest.take() else {
            return;
        };
        match rest.recv_timeout(PATIENCE) {
            Ok(extra) => assert!(
                extra.is_empty(),
                "the server printed more than `listening on`: {extra:?}"
            ),
            Err(_) => {
                panic!("stdout still open {PATIENCE:?} after the server exited (held by a child?)")
            }
        }
    }

    /// Kills the process if it still runs and reaps it.
    fn kill(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }

    /// Resident memory of the server process, in bytes.
    pub fn rss(&self) -> u64 {
        rss_of(self.pid())
    }

    /// Open file descriptors of the server process.
    pub fn fd_count(&self) -> usize {
        fd_count_of(self.pid())
    }

    /// CPU time (user + system) the server process has used.
    pub fn cpu_time(&self) -> Duration {
        cpu_time_of(self.pid())
    }

    /// Threads of the server process.
    pub fn threads(&self) -> usize {
        threads_of(self.pid())
    }
}

impl Drop for Binary {
    /// A test that ends without [`Binary::wait`] still stops its server, and still fails if
    /// the server broke the stdout contract (unless the test is failing already).
    fn drop(&mut self) {
        self.kill();
        if !thread::panicking() {
            self.check_stdout();
        }
    }
}

/// Waits for `child` to exit, at most `limit`.
pub fn wait_child(child: &mut Child, limit: Duration) -> Option<ExitStatus> {
    let mut status = None;
    poll_until(limit, || {
        status = child.try_wait().expect("try_wait");
        status.is_some()
    });
    status
}

/// Polls `cond` until it holds; fails the test, saying `what`, if `PATIENCE` passes first.
#[track_caller]
pub fn wait_until(what: &str, cond: impl FnMut() -> bool) {
    assert!(
        poll_until(PATIENCE, cond),
        "timed out after {PATIENCE:?} waiting for: {what}"
    );
}

/// Polls `probe` until its value satisfies `done`, and returns that value; fails the test,
/// saying `what` and the last value seen, if `PATIENCE` passes first.
#[track_caller]
pub fn wait_for<T: std::fmt::Debug>(
    what: &str,
    mut probe: impl FnMut() -> T,
    done: impl Fn(&T) -> bool,
) -> T {
    let mut last = None;
    let held = poll_until(PATIENCE, || {
        let value = probe();
        let ok = done(&value);
        last = Some(value);
        ok
    });
    let last = last.expect("probed at least once");
    assert!(
        held,
        "timed out after {PATIENCE:?} waiting for: {what}; last seen: {last:?}"
    );
    last
}

/// Polls `cond` every few milliseconds until it holds or `limit` passes; returns whether it
/// held. The one polling loop behind every wait here.
fn poll_until(limit: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        thread::sleep(Duration::from_millis(5));
    }
}

/// Runs `reactor-pool ARGS` to completion (bounded by `PATIENCE`) with `stdin` as its input
/// and `RUST_LOG` unset; stdout and stderr are read while it runs.
#[track_caller]
pub fn run_with_input(args: &[&str], stdin: &[u8]) -> Output {
    run_program(&server_bin(), args, stdin, PATIENCE)
}

/// Runs `program ARGS` to completion with `stdin` as its input and `RUST_LOG` unset; stdout
/// and stderr are read while it runs. Fails the test (after killing it) if it runs longer
/// than `limit`, or if its output is still open `PATIENCE` after it exited.
#[track_caller]
pub fn run_program(program: &Path, args: &[&str], stdin: &[u8], limit: Duration) -> Output {
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .env_remove("RUST_LOG")
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {}: {e}", program.display()));
    let mut input = child.stdin.take().unwrap();
    let data = stdin.to_vec();
    // Not joined: once the program exits, a write it did not read fails (EPIPE) and ends.
    thread::spawn(move || {
        let _ = input.write_all(&data);
    });
    let collect = |mut pipe: Box<dyn Read + Send>| {
        let (tx, rx) = mpsc::channel();
        thread::spawn(move || {
            let mut s = Vec::new();
            let _ = pipe.read_to_end(&mut s);
            let _ = tx.send(s);
        });
        rx
    };
    let stdout = collect(Box::new(child.stdout.take().unwrap()));
    let stderr = collect(Box::new(child.stderr.take().unwrap()));
    // A bad argument must fail fast; a hang here means something started listening.
    let Some(status) = wait_child(&mut child, limit) else {
        let _ = child.kill();
        let _ = child.wait();
        panic!(
            "{} {args:?} did not exit within {limit:?}",
            program.display()
        );
    };
    let ended = |rx: mpsc::Receiver<Vec<u8>>, pipe: &str| {
        rx.recv_timeout(PATIENCE).unwrap_or_else(|_| {
            panic!("{pipe} still open {PATIENCE:?} after {args:?} exited (held by a child?)")
        })
    };
    Output {
        status,
        stdout: ended(stdout, "stdout"),
        stderr: ended(stderr, "stderr"),
    }
}

/// Runs `reactor-pool ARGS` to completion with no input (see [`run_with_input`]).
#[track_caller]
pub fn run(args: &[&str]) -> Output {
    run_with_input(args, b"")
}

/// Sends `signal` to `pid`; panics if it cannot.
pub fn send_signal(pid: u32, signal: i32) {
    // SAFETY: kill(2) takes no pointers.
    let rc = unsafe { libc::kill(pid as libc::pid_t, signal) };
    assert_eq!(
        rc,
        0,
        "kill({pid}, {signal}): {}",
        io::Error::last_os_error()
    );
}

/// Accepts one connection on `listener`, waiting at most `limit`; the stream is blocking, as
/// `accept` would return it.
#[track_caller]
pub fn accept_within(listener: &std::net::TcpListener, limit: Duration) -> TcpStream {
    listener
        .set_nonblocking(true)
        .expect("non-blocking listener");
    let mut accepted = None;
    let arrived = poll_until(limit, || match listener.accept() {
        Ok((stream, _)) => {
            accepted = Some(stream);
            true
        }
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => false,
        Err(e) => panic!("accept: {e}"),
    });
    assert!(arrived, "no connection within {limit:?}");
    let stream = accepted.expect("accepted");
    stream.set_nonblocking(false).expect("blocking stream");
    stream
}

/// Connects with read and write timeouts set, so no test can hang on a socket.
#[track_caller]
pub fn connect(addr: SocketAddr) -> TcpStream {
    let s = TcpStream::connect_timeout(&addr, PATIENCE).expect("connect");
    s.set_read_timeout(Some(PATIENCE)).unwrap();
    s.set_write_timeout(Some(PATIENCE)).unwrap();
    s
}

/// A deterministic payload of `len` bytes, different for each `seed`.
pub fn payload(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// Reads exactly `n` bytes (or fails with the bytes read so far in the message).
#[track_caller]
pub fn read_n(s: &mut TcpStream, n: usize) -> Vec<u8> {
    let mut buf = vec![0u8; n];
    let mut got = 0;
    while got < n {
        match s.read(&mut buf[got..]) {
            Ok(0) => panic!("EOF after {got} of {n} bytes"),
            Ok(k) => got += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => panic!("read failed after {got} of {n} bytes: {e}"),
        }
    }
    buf
}

/// Whether the server has closed `s` (EOF or reset) rather than sent bytes, waiting at most
/// the socket's read timeout.
pub fn is_closed_by_server(s: &mut TcpStream) -> bool {
    let mut buf = [0u8; 16];
    match s.read(&mut buf) {
        Ok(0) => true,
        Ok(_) => false,
        Err(e) => matches!(
            e.kind(),
            io::ErrorKind::ConnectionReset | io::ErrorKind::ConnectionAborted
        ),
    }
}

/// On a non-blocking `s`, writes `data` from `*sent` on, `chunk` bytes at a time, without
/// reading, until all of it is sent, writes have made no progress for `stall` (the server has
/// stopped taking bytes), or `PATIENCE` passes.
#[track_caller]
pub fn write_until_stalled(
    s: &mut TcpStream,
    data: &[u8],
    sent: &mut usize,
    chunk: usize,
    stall: Duration,
) {
    let deadline = Instant::now() + PATIENCE;
    let mut stalled_since: Option<Instant> = None;
    while *sent < data.len() && Instant::now() < deadline {
        match s.write(&data[*sent..(*sent + chunk).min(data.len())]) {
            Ok(n) => {
                *sent += n;
                stalled_since = None;
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                if stalled_since.get_or_insert_with(Instant::now).elapsed() > stall {
                    break;
                }
                thread::sleep(Duration::from_millis(2));
            }
            Err(e) => panic!("write failed: {e}"),
        }
    }
}

/// On a non-blocking `s` whose first `sent` bytes of `data` are on their way, reads back the
/// whole echo of `data` while sending the rest, `chunk` bytes at a time; panics on a wrong
/// byte, an early EOF, or if the echo is not complete within `limit`.
#[track_caller]
pub fn finish_echo(s: &mut TcpStream, data: &[u8], mut sent: usize, chunk: usize, limit: Duration) {
    let total = data.len();
    let mut got = 0;
    let mut buf = vec![0u8; chunk];
    let deadline = Instant::now() + limit;
    while got < total {
        assert!(
            Instant::now() < deadline,
            "echo incomplete: stranded after {got} of {total} bytes"
        );
        let mut progress = false;
        if sent < total {
            match s.write(&data[sent..(sent + chunk).min(total)]) {
                Ok(n) => (sent, progress) = (sent + n, true),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => panic!("write failed: {e}"),
            }
        }
        match s.read(&mut buf) {
            Ok(0) => panic!("EOF after {got} bytes"),
            Ok(n) => {
                assert_eq!(&buf[..n], &data[got..got + n], "echo differs at {got}");
                (got, progress) = (got + n, true);
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) => panic!("read failed: {e}"),
        }
        if !progress {
            thread::sleep(Duration::from_millis(1));
        }
    }
}

/// Reads until EOF; panics on error or timeout.
#[track_caller]
pub fn read_to_eof(s: &mut TcpStream) -> Vec<u8> {
    let mut out = Vec::new();
    s.read_to_end(&mut out).expect("read to EOF");
    out
}

/// Sends `data`, half-closes, and returns everything echoed until the server's FIN.
/// A writer thread sends while this thread reads, so payloads of any size cannot deadlock.
#[track_caller]
pub fn echo_all(addr: SocketAddr, data: &[u8]) -> Vec<u8> {
    let mut s = connect(addr);
    let mut w = s.try_clone().unwrap();
    let data_owned = data.to_vec();
    let writer = thread::spawn(move || {
        w.write_all(&data_owned).expect("write payload");
        w.shutdown(Shutdown::Write).expect("half-close");
    });
    let echoed = read_to_eof(&mut s);
    writer.join().expect("writer thread");
    echoed
}

/// Asserts two byte strings are equal, reporting the first difference instead of dumping.
#[track_caller]
pub fn assert_same(got: &[u8], want: &[u8]) {
    if got != want {
        let at = got
            .iter()
            .zip(want)
            .position(|(a, b)| a != b)
            .unwrap_or(got.len().min(want.len()));
        panic!(
            "echo differs: got {} bytes, want {}; first difference at byte {at}",
            got.len(),
            want.len()
        );
    }
}

/// A status field (in kB) of /proc/PID/status, in bytes.
fn status_kb(pid: u32, field: &str) -> u64 {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("read /proc status");
    let line = text
        .lines()
        .find(|l| l.starts_with(field))
        .expect("status field");
    let kb: u64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
    kb * 1024
}

pub fn rss_of(pid: u32) -> u64 {
    status_kb(pid, "VmRSS:")
}

pub fn fd_count_of(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| d.count())
        .unwrap_or(0)
}

/// Threads of `pid` (0 once it is gone).
pub fn threads_of(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .map(|d| d.count())
        .unwrap_or(0)
}

/// Whether `pid` exists and is not a zombie.
pub fn alive(pid: u32) -> bool {
    stat_field(pid, 3).is_some_and(|state| state != "Z")
}

/// Field `n` (1-based, as in proc(5)) of `/proc/PID/stat`.
pub fn stat_field(pid: u32, n: usize) -> Option<String> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name (which may contain spaces) start after the last ')'.
    let rest = &stat[stat.rfind(')')? + 2..];
    rest.split_whitespace().nth(n - 3).map(str::to_owned)
}

/// Processes whose parent is `pid`, zombies included.
pub fn children_of(pid: u32) -> Vec<u32> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(child) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        if stat_field(child, 4).and_then(|p| p.parse::<u32>().ok()) == Some(pid) {
            out.push(child);
        }
    }
    out
}

pub fn cpu_time_of(pid: u32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("read /proc stat");
    // Fields after the command name (which may contain spaces) start after the last ')'.
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    // SAFETY: sysconf only reads a system constant.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
    Duration::from_millis(ticks * 1000 / hz)
}

/// Time the live threads of `pid` have spent on a CPU, to the nanosecond (the first field of
/// each `/proc/PID/task/TID/schedstat`; [`cpu_time_of`] counts in clock ticks of 10 ms).
/// Threads that have exited no longer count.
pub fn cpu_time_precise_of(pid: u32) -> Duration {
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).expect("read /proc tasks");
    let nanos: u64 = tasks
        .flatten()
        .filter_map(|task| std::fs::read_to_string(task.path().join("schedstat")).ok())
        .filter_map(|stat| stat.split_whitespace().next()?.parse::<u64>().ok())
        .sum();
    Duration::from_nanos(nanos)
}

/// Serialises the tests of one test binary that open hundreds of descriptors or saturate the
/// CPU: `cargo test` runs a binary's tests on parallel threads in one process, and one
/// such test per model at once would approach the 20,000 open-files limit.
pub fn heavy() -> std::sync::MutexGuard<'static, ()> {
    static HEAVY: std::sync::Mutex<()> = std::sync::Mutex::new(());
    HEAVY
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Models that serve many clients at once (the iterative `blocking` model does not).
pub fn is_concurrent(model: Model) -> bool {
    model.name() != "blocking"
}

/// Generates one `#[test]` per model for each listed test function `fn name(model: Model)`,
/// for every model of the library's catalogue (`reactor_pool::for_each_model!`). Each model
/// gets its own module, named after its source file, inside `per_model`, so
/// `cargo test reactor::` or `epoll::` selects a model.
#[macro_export]
macro_rules! per_model {
    ($($name:ident),* $(,)?) => {
        reactor_pool::for_each_model!($crate::per_model! { @models [$($name),*] });
    };
    (@models $names:tt $($model:ident $module:ident $text:literal,)*) => {
        mod per_model {
            $( $crate::per_model!(@one $module $model $names); )*
        }
    };
    (@one $module:ident $model:ident [$($name:ident),*]) => {
        mod $module {
            $( #[test] fn $name() { super::super::$name(reactor_pool::Model::$model) } )*
        }
    };
}
