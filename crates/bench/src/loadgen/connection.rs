//! One load-generator connection: opening it (nonblocking connect, optional source
//! address), and `Conn::pump`, which moves its bytes, verifies every echoed byte against the
//! connection's pattern and times its messages.

use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::os::fd::AsFd;
use std::time::Instant;

use mio::net::TcpStream;
use socket2::{Domain, Protocol, Socket, Type};

use super::tally::{ThreadStats, Window};
use crate::pattern::{MAX_CHUNK, Pattern};
use crate::report::ErrorKind;
use crate::scenario::Scenario;

/// Where a connection is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Stage {
    /// Nonblocking connect in progress.
    Connecting,
    /// Open and exchanging messages.
    Running,
    /// Idle scenario: open, waiting for the echo phase.
    Holding,
}

/// One load-generator connection.
#[derive(Debug)]
pub(super) struct Conn {
    /// The socket, registered for read and write readiness (edge-triggered).
    pub(super) stream: TcpStream,
    /// Where it is in its life.
    pub(super) stage: Stage,
    /// Pattern seed of this connection.
    seed: usize,
    /// When the connect started (connect timeout; connrate latency).
    pub(super) started: Instant,
    /// Bytes written so far.
    sent: u64,
    /// Echoed bytes received and verified so far.
    received: u64,
    /// Most bytes this connection may have sent by now (its message window).
    pub(super) send_limit: u64,
    /// Start time of each message whose first byte was sent and whose echo is incomplete.
    stamps: VecDeque<Instant>,
    /// Last time bytes moved in either direction (echo timeout).
    pub(super) last_progress: Instant,
    /// The last write stopped short: wait for a writable event before writing again.
    pub(super) write_blocked: bool,
}

impl Conn {
    /// A connection whose nonblocking connect has just started, with pattern `seed`.
    pub(super) fn connecting(stream: TcpStream, seed: usize, now: Instant, depth: usize) -> Conn {
        Conn {
            stream,
            stage: Stage::Connecting,
            seed,
            started: now,
            sent: 0,
            received: 0,
            send_limit: 0,
            stamps: VecDeque::with_capacity(depth),
            last_progress: now,
            write_blocked: true,
        }
    }

    /// Bytes sent whose echo has not come back yet.
    pub(super) fn outstanding(&self) -> u64 {
        self.sent - self.received
    }

    /// Moves bytes until the socket blocks in both directions or the connection's work is
    /// done, verifying every echoed byte and counting completed messages into `pump.stats`.
    pub(super) fn pump(&mut self, now: Instant, pump: &mut Pump<'_>) -> Outcome {
        let size = pump.size;
        let scenario = pump.scenario;
        let window = pump.window;
        loop {
            // Write while the window allows and the socket takes it.
            while self.stage == Stage::Running && !self.write_blocked && self.sent < self.send_limit
            {
                let len = (self.send_limit - self.sent).min(MAX_CHUNK as u64) as usize;
                let data = pump.pattern.slice(self.seed, self.sent, len);
                // Stamped before the call, not after it and not at the round's `now`: on
                // loopback the server on the other core may echo before `write` returns.
                let write_at = Instant::now();
                match self.stream.write(data) {
                    Ok(0) => return Outcome::Failed(ErrorKind::Reset, "write returned 0".into()),
                    Ok(n) => {
                        let before = self.sent;
                        self.sent += n as u64;
                        self.last_progress = now;
                        // A message starts at every multiple of `size` this write covered.
                        let started = self.sent.div_ceil(size) - before.div_ceil(size);
                        self.stamps
                            .extend(std::iter::repeat_n(write_at, started as usize));
                        if n < len {
                            self.write_blocked = true;
                        }
                    }
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => self.write_blocked = true,
                    Err(e) => return io_failure(&e),
                }
            }

            // Read until a short read (the socket is drained: Linux reports every new arrival
            // on an edge-triggered TCP socket) or WouldBlock.
            let mut window_opened = false;
            loop {
                match self.stream.read(pump.scratch) {
                    Ok(0) => {
                        return if self.outstanding() > 0 || self.stage == Stage::Holding {
                            Outcome::Failed(
                                ErrorKind::Reset,
                                format!(
                                    "server closed the connection with {} echo bytes outstanding",
                                    self.outstanding()
                                ),
                            )
                        } else {
                            Outcome::Failed(ErrorKind::Reset, "server closed the connection".into())
                        };
                    }
                    Ok(n) => {
                        let data = &pump.scratch[..n];
                        if let Err(why) = pump.pattern.check_echo(
                            self.seed,
                            self.received,
                            self.outstanding(),
                            data,
                        ) {
                            return Outcome::Failed(ErrorKind::Mismatch, why);
                        }
                        let before = self.received;
                        self.received += n as u64;
                        self.last_progress = now;
                        let in_window = window.contains(now);
                        if in_window {
                            pump.stats.bytes += n as u64;
                        }
                        let completed = self.received / size - before / size;
                        let done_at = if completed > 0 { Instant::now() } else { now };
                        for _ in 0..completed {
                            let began = self.stamps.pop_front().unwrap_or(done_at);
                            // Connrate's unit is the whole connection: connect to echo.
                            let began = if scenario == Scenario::Connrate {
                                self.started
                            } else {
                                began
                            };
                            pump.completed += 1;
                            if in_window {
                                pump.stats.record(done_at.saturating_duration_since(began));
                            }
                        }
                        if completed > 0 {
                            if matches!(scenario, Scenario::Connrate | Scenario::Idle) {
                                return Outcome::Finished;
                            }
                            // Draining: no new messages once the window is over.
                            if !window.is_over(now) {
                                self.send_limit = (self.received / size + pump.depth) * size;
                                window_opened = true;
                            }
                        }
                        if window.is_over(now) && self.outstanding() == 0 {
                            return Outcome::Finished;
                        }
                        if n < pump.scratch.len() {
                            break;
                        }
                    }
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) => return io_failure(&e),
                }
            }
            if !(window_opened && !self.write_blocked && self.sent < self.send_limit) {
                return Outcome::Open;
            }
        }
    }
}

/// What [`Conn::pump`] needs from its thread besides the connection.
#[derive(Debug)]
pub(super) struct Pump<'a> {
    /// The pattern every connection's bytes come from.
    pub(super) pattern: &'a Pattern,
    /// The thread's read buffer, `MAX_CHUNK` bytes.
    pub(super) scratch: &'a mut [u8],
    /// When completions count.
    pub(super) window: Window,
    /// Traffic shape.
    pub(super) scenario: Scenario,
    /// Message size, bytes.
    pub(super) size: u64,
    /// Messages in flight per connection.
    pub(super) depth: u64,
    /// The thread's tallies (messages and bytes in the window, latencies).
    pub(super) stats: &'a mut ThreadStats,
    /// Out: messages completed by this pump, in the window or not.
    pub(super) completed: u64,
}

/// What became of a connection after it was driven.
#[derive(Debug)]
pub(super) enum Outcome {
    /// Keep it.
    Open,
    /// Its work is done: close it without error.
    Finished,
    /// Count this error and close it.
    Failed(ErrorKind, String),
}

/// Classifies an I/O error on an established connection.
pub(super) fn io_failure(e: &io::Error) -> Outcome {
    use io::ErrorKind::*;
    let kind = match e.kind() {
        ConnectionReset | BrokenPipe | ConnectionAborted | UnexpectedEof | NotConnected => {
            ErrorKind::Reset
        }
        TimedOut => ErrorKind::Timeout,
        _ => ErrorKind::Other,
    };
    Outcome::Failed(kind, e.to_string())
}

/// A connect error for people, with a hint when the cause is a known limit.
pub(super) fn describe_connect_error(e: &io::Error) -> String {
    if e.raw_os_error() == Some(libc::EADDRNOTAVAIL) {
        format!("{e} (out of ephemeral ports? spread connections with --source-addrs)")
    } else {
        e.to_string()
    }
}

/// Starts a nonblocking connect to `target`, from `source` if given.
pub(super) fn connect(
    target: SocketAddr,
    source: Option<Ipv4Addr>,
    nodelay: bool,
) -> io::Result<TcpStream> {
    let socket = Socket::new(
        Domain::for_address(target),
        Type::STREAM.nonblocking(),
        Some(Protocol::TCP),
    )?;
    if let Some(ip) = source {
        set_bind_address_no_port(&socket)?;
        socket.bind(&SocketAddr::new(IpAddr::V4(ip), 0).into())?;
    }
    if nodelay {
        socket.set_nodelay(true)?;
    }
    match socket.connect(&target.into()) {
        Ok(()) => {}
        Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => {}
        Err(e) => return Err(e),
    }
    Ok(TcpStream::from_std(socket.into()))
}

/// Lets the kernel pick the source port at connect time, so many connections can share a
/// bound source address.
fn set_bind_address_no_port(socket: &Socket) -> io::Result<()> {
    reactor_pool::sys::socket::set_bind_address_no_port(socket.as_fd())
}

/// Whether a nonblocking connect has finished: `Ok(true)` connected, `Ok(false)` still in
/// progress (a spurious event), `Err` failed.
pub(super) fn connect_status(stream: &TcpStream) -> io::Result<bool> {
    if let Some(e) = stream.take_error()? {
        return Err(e);
    }
    match stream.peer_addr() {
        Ok(_) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::NotConnected => Ok(false),
        Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => Ok(false),
        Err(e) => Err(e),
    }
}
