//! `reactor-pool client ADDR`: a line-at-a-time echo client (the notes' "chat" client), and
//! `--send TEXT` for a single exchange.
//!
//! Each line read from stdin is sent whole and the client waits until every byte of it came
//! back, printing the echo as it arrives: TCP may return it in pieces of any size, so the
//! client counts bytes rather than trusting one read to hold a line. Sending and receiving are
//! interleaved on a non-blocking socket (mio), so a line longer than the socket buffers cannot
//! deadlock against a server that stops reading while its reply is not being read. Each line
//! must make progress within `--timeout`; a server that closes early, goes silent, or echoes
//! different bytes ends the client with a one-line error and exit status 1.

use std::fmt;
use std::io::{self, BufRead, Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

use mio::{Events, Interest, Poll, Token};

use crate::config::parse_duration;

/// Longest piece of stdin sent as one exchange when a line has no newline for this long.
const MAX_CHUNK: usize = 64 * 1024;
/// The socket's token.
const SOCKET: Token = Token(0);

/// `reactor-pool client` arguments.
#[derive(Debug, Clone, clap::Args)]
pub struct ClientArgs {
    /// Server address, HOST:PORT.
    #[arg(value_name = "ADDR")]
    pub(crate) addr: String,
    /// Send TEXT and a newline once, print the echo, exit (instead of reading stdin).
    #[arg(long, value_name = "TEXT")]
    pub(crate) send: Option<String>,
    /// Give up when connecting, or waiting for an echo, makes no progress this long.
    #[arg(long, value_name = "SECS", value_parser = parse_timeout, default_value = "5")]
    pub(crate) timeout: Duration,
}

/// `--timeout`: a duration of more than 0 (a zero timeout could never be met; sockets take
/// it to mean "wait forever").
fn parse_timeout(text: &str) -> Result<Duration, String> {
    let timeout = parse_duration(text)?;
    if timeout.is_zero() {
        return Err("must be more than 0".to_owned());
    }
    Ok(timeout)
}

/// Why the client stopped early.
#[derive(Debug)]
pub(crate) enum ClientError {
    /// `ADDR` is not HOST:PORT, or did not resolve.
    BadAddress(String),
    /// Every address refused or timed out.
    Unreachable { addr: String, reason: io::Error },
    /// The server closed before echoing everything.
    ClosedEarly { got: usize, expected: usize },
    /// No progress within the timeout.
    TimedOut {
        got: usize,
        expected: usize,
        after: Duration,
    },
    /// The echo is not what was sent.
    Mismatch { offset: usize },
    /// Another socket or terminal error.
    Io(io::Error),
}

impl fmt::Display for ClientError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ClientError::BadAddress(reason) => write!(f, "{reason}"),
            ClientError::Unreachable { addr, reason } => {
                write!(f, "cannot connect to {addr}: {reason}")
            }
            ClientError::ClosedEarly { got, expected } => write!(
                f,
                "the server closed the connection early ({got} of {expected} bytes echoed)"
            ),
            ClientError::TimedOut {
                got,
                expected,
                after,
            } => write!(
                f,
                "no echo for {after:?} ({got} of {expected} bytes echoed); giving up"
            ),
            ClientError::Mismatch { offset } => write!(
                f,
                "the echo differs from what was sent (first difference at byte {offset})"
            ),
            ClientError::Io(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for ClientError {}

impl ClientError {
    /// 2 for a malformed address (a usage error), 1 for everything else.
    pub(crate) fn exit_code(&self) -> u8 {
        match self {
            ClientError::BadAddress(_) => 2,
            _ => 1,
        }
    }
}

/// Runs the client; returns the exit code (errors are printed here).
pub fn run(args: &ClientArgs) -> u8 {
    let result = (|| {
        let mut session = Session::connect(&args.addr, args.timeout)?;
        let mut stdout = io::stdout().lock();
        match &args.send {
            Some(text) => {
                let mut line = text.clone().into_bytes();
                line.push(b'\n');
                session.exchange(&line, &mut stdout)
            }
            None => {
                let mut stdin = io::stdin().lock();
                let mut chunk = Vec::new();
                while next_chunk(&mut stdin, &mut chunk, MAX_CHUNK).map_err(ClientError::Io)? {
                    session.exchange(&chunk, &mut stdout)?;
                }
                Ok(())
            }
        }
    })();
    match result {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("reactor-pool client: error: {e}");
            e.exit_code()
        }
    }
}

/// Reads the next line (with its newline) into `chunk`, or at most `max` bytes of a longer
/// one. Returns false at end of input with nothing read.
pub(crate) fn next_chunk(
    input: &mut impl BufRead,
    chunk: &mut Vec<u8>,
    max: usize,
) -> io::Result<bool> {
    chunk.clear();
    loop {
        let buf = match input.fill_buf() {
            Ok(buf) => buf,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if buf.is_empty() {
            return Ok(!chunk.is_empty());
        }
        let room = max - chunk.len();
        let take = buf.len().min(room);
        if let Some(i) = buf[..take].iter().position(|&b| b == b'\n') {
            chunk.extend_from_slice(&buf[..=i]);
            input.consume(i + 1);
            return Ok(true);
        }
        chunk.extend_from_slice(&buf[..take]);
        input.consume(take);
        if chunk.len() == max {
            return Ok(true);
        }
    }
}

/// A connection to an echo server.
#[derive(Debug)]
pub(crate) struct Session {
    /// Non-blocking, registered with `poll`.
    stream: mio::net::TcpStream,
    /// Waits for the socket.
    poll: Poll,
    /// Interest currently registered.
    interest: Interest,
    /// Longest wait without progress.
    timeout: Duration,
}

impl Session {
    /// Connects to `addr` (HOST:PORT), trying each resolved address within `timeout`.
    pub(crate) fn connect(addr: &str, timeout: Duration) -> Result<Session, ClientError> {
        let addrs: Vec<SocketAddr> = addr
            .to_socket_addrs()
            .map_err(|e| {
                ClientError::BadAddress(format!(
                    "invalid address '{addr}' (expected HOST:PORT): {e}"
                ))
            })?
            .collect();
        let mut last = io::Error::new(io::ErrorKind::NotFound, "no addresses");
        for candidate in addrs {
            match TcpStream::connect_timeout(&candidate, timeout) {
                Ok(stream) => return Session::new(stream, timeout).map_err(ClientError::Io),
                Err(e) => last = e,
            }
        }
        Err(ClientError::Unreachable {
            addr: addr.to_owned(),
            reason: last,
        })
    }

    /// Wraps a connected stream.
    pub(crate) fn new(stream: TcpStream, timeout: Duration) -> io::Result<Session> {
        stream.set_nonblocking(true)?;
        // Lines are small and interactive: do not let Nagle hold them back.
        stream.set_nodelay(true)?;
        let mut stream = mio::net::TcpStream::from_std(stream);
        let poll = Poll::new()?;
        let interest = Interest::READABLE | Interest::WRITABLE;
        poll.registry().register(&mut stream, SOCKET, interest)?;
        Ok(Session {
            stream,
            poll,
            interest,
            timeout,
        })
    }

    /// Sends `data` and copies its echo to `out` as it arrives, until all of it came back.
    pub(crate) fn exchange(
        &mut self,
        data: &[u8],
        out: &mut impl Write,
    ) -> Result<(), ClientError> {
        let mut events = Events::with_capacity(4);
        let mut buf = vec![0u8; 16 * 1024];
        let (mut sent, mut echoed) = (0usize, 0usize);
        let mut last_progress = Instant::now();
        loop {
            // Edge-triggered readiness: each direction runs until WouldBlock before waiting.
            while sent < data.len() {
                match self.stream.write(&data[sent..]) {
                    Ok(0) => {
                        return Err(ClientError::ClosedEarly {
                            got: echoed,
                            expected: data.len(),
                        });
                    }
                    Ok(n) => {
                        sent += n;
                        last_progress = Instant::now();
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(self.closed_or(e, echoed, data.len())),
                }
            }
            loop {
                match self.stream.read(&mut buf) {
                    Ok(0) => {
                        return Err(ClientError::ClosedEarly {
                            got: echoed,
                            expected: data.len(),
                        });
                    }
                    Ok(n) => {
                        let expected = &data[echoed..sent.max(echoed)];
                        let got = &buf[..n];
                        if let Some(i) = got.iter().zip(expected).position(|(a, b)| a != b) {
                            return Err(ClientError::Mismatch { offset: echoed + i });
                        }
                        if n > expected.len() {
                            return Err(ClientError::Mismatch {
                                offset: echoed + expected.len(),
                            });
                        }
                        out.write_all(got).map_err(ClientError::Io)?;
                        echoed += n;
                        last_progress = Instant::now();
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(self.closed_or(e, echoed, data.len())),
                }
            }
            if echoed == data.len() {
                return out.flush().map_err(ClientError::Io);
            }
            let waited = last_progress.elapsed();
            if waited >= self.timeout {
                return Err(ClientError::TimedOut {
                    got: echoed,
                    expected: data.len(),
                    after: self.timeout,
                });
            }
            // Flush what arrived so far: an interactive user sees a slow echo grow.
            out.flush().map_err(ClientError::Io)?;
            self.set_interest(if sent < data.len() {
                Interest::READABLE | Interest::WRITABLE
            } else {
                Interest::READABLE
            })
            .map_err(ClientError::Io)?;
            match self.poll.poll(&mut events, Some(self.timeout - waited)) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(ClientError::Io(e)),
            }
        }
    }

    fn set_interest(&mut self, interest: Interest) -> io::Result<()> {
        if interest != self.interest {
            self.poll
                .registry()
                .reregister(&mut self.stream, SOCKET, interest)?;
            self.interest = interest;
        }
        Ok(())
    }

    /// A reset or broken pipe means the server went away mid-exchange.
    fn closed_or(&self, e: io::Error, got: usize, expected: usize) -> ClientError {
        match e.kind() {
            io::ErrorKind::ConnectionReset
            | io::ErrorKind::BrokenPipe
            | io::ErrorKind::ConnectionAborted => ClientError::ClosedEarly { got, expected },
            _ => ClientError::Io(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_are_lines_or_bounded_pieces() {
        let mut input = io::BufReader::with_capacity(4, &b"ab\ncdefghij\n\nlast"[..]);
        let mut chunk = Vec::new();
        let mut seen = Vec::new();
        while next_chunk(&mut input, &mut chunk, 5).unwrap() {
            seen.push(String::from_utf8(chunk.clone()).unwrap());
        }
        assert_eq!(seen, ["ab\n", "cdefg", "hij\n", "\n", "last"]);
    }
}
