//! `ServerProcess`: one server started for one measurement, either this binary's
//! `serve --listen 127.0.0.1:0` (address read from its `listening on ADDR` line) or an
//! external peer command (given a free port, and polled until it accepts).

use std::fs::File;
use std::io::{self, BufRead, BufReader};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

/// How long a server may take to start listening.
const START_TIMEOUT: Duration = Duration::from_secs(15);
/// How long a server may take to exit after SIGTERM before it is killed.
const STOP_TIMEOUT: Duration = Duration::from_secs(10);
/// Interval between checks while waiting for a peer to listen or a process to exit.
const CHECK_EVERY: Duration = Duration::from_millis(10);

/// What to start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Launch {
    /// This binary's `serve` with these arguments after `serve --listen 127.0.0.1:0`.
    Serve {
        /// The reactor-pool binary.
        exe: PathBuf,
        /// `--model M`, `--workers N`, ...
        args: Vec<String>,
    },
    /// A shell command; `{addr}` and `{port}` are replaced with a free loopback port.
    Peer {
        /// The command as the user wrote it.
        command: String,
    },
}

/// A running server.
#[derive(Debug)]
pub(crate) struct ServerProcess {
    /// The process (for peers, the command itself: it is run with `exec`).
    child: Child,
    /// Where it listens.
    addr: SocketAddr,
    /// Its stdout and stderr go here.
    log: PathBuf,
}

/// How a server ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Exit {
    /// Exited with status 0 after SIGTERM.
    Clean,
    /// Exited otherwise; the text says how.
    Failed(String),
}

impl ServerProcess {
    /// Starts `launch`, sending its output to `log`, and waits until it listens.
    pub(crate) fn start(launch: &Launch, log: &Path) -> io::Result<ServerProcess> {
        let log_file = File::create(log)?;
        let (mut command, known_addr) = match launch {
            Launch::Serve { exe, args } => {
                let mut c = Command::new(exe);
                c.args(["serve", "--listen", "127.0.0.1:0"]).args(args);
                c.stdout(Stdio::piped());
                (c, None)
            }
            Launch::Peer { command } => {
                let port = free_port()?;
                let text = command
                    .replace("{addr}", &format!("127.0.0.1:{port}"))
                    .replace("{port}", &port.to_string());
                let mut c = Command::new("sh");
                c.arg("-c").arg(format!("exec {text}"));
                c.stdout(log_file.try_clone()?);
                (c, Some(SocketAddr::from(([127, 0, 0, 1], port))))
            }
        };
        command.stdin(Stdio::null()).stderr(log_file);
        // SAFETY: the closure runs in the child between fork and exec and only calls prctl,
        // which is async-signal-safe; it touches no memory of the parent.
        unsafe {
            // The server dies with the runner (Ctrl-C, kill) instead of lingering.
            command.pre_exec(|| reactor_pool::sys::process::set_parent_death_signal(libc::SIGTERM));
        }
        let mut child = command.spawn()?;
        let started = match known_addr {
            None => wait_for_listening_line(&mut child),
            Some(addr) => wait_for_accept(&mut child, addr),
        };
        match started {
            Ok(addr) => Ok(ServerProcess {
                child,
                addr,
                log: log.to_owned(),
            }),
            Err(e) => {
                let _ = child.kill();
                let _ = child.wait();
                let tail = last_line(log);
                Err(io::Error::new(
                    e.kind(),
                    format!(
                        "{e}{}",
                        tail.map(|t| format!(" (its log says: {t})"))
                            .unwrap_or_default()
                    ),
                ))
            }
        }
    }

    /// Where the server listens.
    pub(crate) fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The server's process id.
    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Whether the process is still running.
    pub(crate) fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Asks the server to stop (SIGTERM), waits for it, kills it if it takes too long.
    pub(crate) fn stop(mut self) -> Exit {
        if let Ok(Some(status)) = self.child.try_wait() {
            return Exit::Failed(format!(
                "had already exited ({}){}",
                describe(status),
                self.log_hint()
            ));
        }
        // `pid` is our unreaped child, so the id cannot have been reused by another process;
        // one that already exited is seen by try_wait below.
        let _ = reactor_pool::sys::process::kill(
            self.child.id() as reactor_pool::sys::process::Pid,
            libc::SIGTERM,
        );
        let deadline = Instant::now() + STOP_TIMEOUT;
        loop {
            match self.child.try_wait() {
                Ok(Some(status)) if status.success() => return Exit::Clean,
                Ok(Some(status)) => {
                    // A peer that does not handle SIGTERM dies of it: that is its clean exit.
                    use std::os::unix::process::ExitStatusExt;
                    if status.signal() == Some(libc::SIGTERM) {
                        return Exit::Clean;
                    }
                    return Exit::Failed(format!("{}{}", describe(status), self.log_hint()));
                }
                Ok(None) if Instant::now() < deadline => thread::sleep(CHECK_EVERY),
                Ok(None) => {
                    let _ = self.child.kill();
                    let _ = self.child.wait();
                    return Exit::Failed(format!(
                        "did not exit within {} s of SIGTERM; killed",
                        STOP_TIMEOUT.as_secs()
                    ));
                }
                Err(e) => return Exit::Failed(format!("cannot wait for it: {e}")),
            }
        }
    }

    fn log_hint(&self) -> String {
        last_line(&self.log)
            .map(|l| format!("; its log says: {l}"))
            .unwrap_or_default()
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        // `stop` consumed the child normally; this covers early returns and panics.
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn describe(status: ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exit status {code}"),
        (None, Some(sig)) => format!("killed by signal {sig}"),
        _ => status.to_string(),
    }
}

/// A loopback port that was free a moment ago.
fn free_port() -> io::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// Reads `listening on ADDR` from the child's stdout (within the start timeout), then keeps
/// draining stdout in the background so the server never blocks on it.
fn wait_for_listening_line(child: &mut Child) -> io::Result<SocketAddr> {
    let stdout = child
        .stdout
        .take()
        .ok_or_else(|| io::Error::other("no stdout pipe"))?;
    let (tx, rx) = mpsc::channel();
    thread::Builder::new()
        .name("server-stdout".into())
        .spawn(move || {
            let mut lines = BufReader::new(stdout).lines();
            let first = lines.next();
            let _ = tx.send(first);
            for _ in lines {}
        })?;
    match rx.recv_timeout(START_TIMEOUT) {
        Ok(Some(Ok(line))) => line
            .strip_prefix("listening on ")
            .and_then(|a| a.trim().parse().ok())
            .ok_or_else(|| {
                io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("expected 'listening on ADDR' from the server, got '{line}'"),
                )
            }),
        Ok(Some(Err(e))) => Err(e),
        Ok(None) | Err(mpsc::RecvTimeoutError::Disconnected) => {
            let status = child.wait()?;
            Err(io::Error::other(format!(
                "the server exited before listening ({})",
                describe(status)
            )))
        }
        Err(mpsc::RecvTimeoutError::Timeout) => Err(io::Error::new(
            io::ErrorKind::TimedOut,
            format!(
                "the server did not print 'listening on ADDR' within {} s",
                START_TIMEOUT.as_secs()
            ),
        )),
    }
}

/// Polls `addr` until it accepts a connection (or echoes a datagram: a UDP-only peer such as
/// `examples/udp_echo_baseline`), the child exits, or the start timeout.
fn wait_for_accept(child: &mut Child, addr: SocketAddr) -> io::Result<SocketAddr> {
    let deadline = Instant::now() + START_TIMEOUT;
    loop {
        if let Some(status) = child.try_wait()? {
            return Err(io::Error::other(format!(
                "the peer exited before listening on {addr} ({})",
                describe(status)
            )));
        }
        if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() || udp_echoes(addr)
        {
            return Ok(addr);
        }
        if Instant::now() >= deadline {
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!(
                    "the peer did not listen on {addr} within {} s (does its command use {{addr}} or {{port}}?)",
                    START_TIMEOUT.as_secs()
                ),
            ));
        }
        thread::sleep(CHECK_EVERY);
    }
}

/// Whether a datagram sent to `addr` comes back within a moment.
fn udp_echoes(addr: SocketAddr) -> bool {
    let probe = b"reactor-pool bench: ready?";
    let Ok(socket) = std::net::UdpSocket::bind(("127.0.0.1", 0)) else {
        return false;
    };
    let mut buf = [0u8; 64];
    socket.connect(addr).is_ok()
        && socket
            .set_read_timeout(Some(Duration::from_millis(100)))
            .is_ok()
        && socket.send(probe).is_ok()
        && socket.recv(&mut buf).is_ok_and(|n| buf[..n] == probe[..])
}

/// The last non-empty line of a log file, shortened.
fn last_line(path: &Path) -> Option<String> {
    let text = std::fs::read_to_string(path).ok()?;
    let line = text.lines().rev().find(|l| !l.trim().is_empty())?.trim();
    Some(line.chars().take(200).collect())
}
