//! `Echo`: the readiness driver of the echo, without sockets (sans-IO).
//!
//! What to do next is decided by [`EchoState`], the pure state machine every model shares
//! (the `uring` model drives it from completions instead); `Echo` adds the unsent bytes and
//! the loop that reads and writes them. It is driven over any [`Transport`] (a `Read + Write` that can also shut down its write
//! side): the reactor drives it over `mio::net::TcpStream`, the raw-syscall models over their
//! own fds, the tests over scripted fakes that return short reads, short writes, `WouldBlock`,
//! `Interrupted` and resets. One call to [`Echo::drive`] moves as many bytes as the stream
//! allows (within a fairness budget) and says what the caller must wait for next
//! ([`Progress`]); what a loop does about that is the shared rule
//! [`policy::interest::next`](crate::policy::interest::next).

use std::io::{self, Read, Write};

use super::buffer::Pending;
use super::echo_state::EchoState;
use crate::close::{CloseReason, classify};
#[cfg(test)]
use crate::policy::interest::Wants;
use crate::policy::interest::{Progress, State};

/// A byte stream the echo can run over.
pub trait Transport: Read + Write {
    /// Shuts down the write side (sends FIN), keeping the read side open.
    fn shutdown_write(&mut self) -> io::Result<()>;
}

/// A stream whose write side is shut down by the close that follows, not by a `shutdown`
/// call: the echo shuts down writing only after the peer's FIN was read and every byte
/// echoed, so nothing unread is left and `close` sends the same FIN, one syscall cheaper.
///
/// For drivers that close the connection in the same round `drive` returns `Done(Eof)`,
/// holding its only descriptor: the reactor's workers and the single-threaded event loops
/// (`LoopCore`). Not for the blocking models (the fork model's parent may still hold a
/// copy of the descriptor, and `close` sends no FIN while another is open) nor for `uring`
/// (a request in flight keeps the socket open past `close`): they call `shutdown`.
pub(crate) struct FinOnClose<'a, T>(pub(crate) &'a mut T);

impl<T: Read> Read for FinOnClose<'_, T> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.0.read(buf)
    }
}

impl<T: Write> Write for FinOnClose<'_, T> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.0.flush()
    }
}

impl<T: Read + Write> Transport for FinOnClose<'_, T> {
    fn shutdown_write(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// What one [`Echo::drive`] call did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Driven {
    /// What the caller must wait for next, or why the connection is finished.
    pub progress: Progress,
    /// Bytes this call moved (for metrics: counted per drive, not per syscall).
    pub moved: Moved,
}

/// Bytes one [`Echo::drive`] call moved.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Moved {
    /// Bytes read from the peer.
    pub read: u64,
    /// Bytes written back to the peer.
    pub written: u64,
}

/// When a read counts as having drained the socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadUntil {
    /// Keep reading until the stream returns `WouldBlock` (required by edge-triggered pollers
    /// that report only new arrivals when nothing guarantees a short read drained the socket).
    WouldBlock,
    /// A read that fills less than the space offered means the socket is drained. Saves one
    /// `EAGAIN` read per message. Correct with level-triggered pollers (they report again) and
    /// with Linux `EPOLLET` on TCP sockets, which signals every arrival of new data, provided
    /// the loop passes the peer's FIN on through `Echo::note_read_closed`: the read that
    /// returns the last bytes may consume the FIN too, and no edge reports it again.
    ShortRead,
}

/// Tunables shared by every connection of one server.
#[derive(Debug, Clone, Copy)]
pub struct EchoOptions {
    /// Most unsent bytes a connection may hold; at the bound it stops reading (backpressure).
    pub limit: usize,
    /// Successful reads per [`Echo::drive`] call before it yields to other connections.
    pub(crate) read_budget: u32,
    /// When a read counts as draining the socket.
    pub(crate) read_until: ReadUntil,
}

impl EchoOptions {
    /// Options for a server whose per-connection bound is `limit` bytes.
    pub fn new(limit: usize) -> Self {
        EchoOptions {
            limit: limit.max(1),
            read_budget: 16,
            read_until: ReadUntil::ShortRead,
        }
    }
}

/// The readiness driver of one connection: the `EchoState` every model shares, and the
/// unsent bytes themselves.
///
/// Invariant: `pending.len() == state.unsent() <= options.limit`. Holds no heap memory while
/// `pending` is empty.
#[derive(Debug, Default)]
pub struct Echo {
    /// Bytes read from the peer and not yet written back.
    pending: Pending,
    /// Counts and flags: what to do next is decided there.
    state: EchoState,
}

impl Echo {
    /// A fresh connection.
    pub const fn new() -> Self {
        Echo {
            pending: Pending::new(),
            state: EchoState::new(),
        }
    }

    /// Number of unsent bytes.
    pub fn pending(&self) -> usize {
        self.state.unsent()
    }

    /// Heap bytes this connection holds.
    #[cfg(test)]
    pub(crate) fn heap_bytes(&self) -> usize {
        self.pending.capacity()
    }

    /// Tells the connection that its poller reported the peer's FIN, a hang-up or an error
    /// (`EPOLLRDHUP`, `EPOLLHUP`, `EPOLLERR`; mio's `is_read_closed() || is_error()`).
    ///
    /// From then on only EOF, an error or `WouldBlock` ends a round of reads, whatever
    /// `read_until` says: a read that returns the last data can consume the FIN with it (Linux
    /// does), and an edge-triggered poller never reports that FIN again, so a short read is no
    /// longer proof that nothing is left to read. Level-triggered loops need not call this
    /// (they report the FIN again); calling it costs at most one `WouldBlock` read per drive.
    pub(crate) fn note_read_closed(&mut self) {
        self.state.note_read_closed();
    }

    /// What the interest rule needs to know, read before and after a drive.
    pub(crate) fn state(&self, options: &EchoOptions) -> State {
        self.state.state(options)
    }

    /// Moves bytes from the peer back to the peer until the stream blocks, the read budget is
    /// spent, or the connection is finished.
    ///
    /// `scratch` is the caller's (per-thread) read buffer; only the unsent remainder of what
    /// is read into it is copied into the connection's own `Pending`. Returns the progress and
    /// the bytes this call moved.
    pub fn drive<T: Transport + ?Sized>(
        &mut self,
        io: &mut T,
        scratch: &mut [u8],
        options: &EchoOptions,
    ) -> Driven {
        let mut moved = Moved::default();
        let progress = self.run(io, scratch, options, &mut moved);
        // A finished connection may have counted bytes it read and will never keep.
        debug_assert!(
            matches!(progress, Progress::Done(_)) || self.pending.len() == self.state.unsent()
        );
        Driven { progress, moved }
    }

    /// The body of [`Echo::drive`].
    fn run<T: Transport + ?Sized>(
        &mut self,
        io: &mut T,
        scratch: &mut [u8],
        options: &EchoOptions,
        moved: &mut Moved,
    ) -> Progress {
        assert!(!scratch.is_empty(), "the scratch buffer must not be empty");
        let mut can_read = true;
        let mut can_write = true;
        let mut reads = 0u32;
        loop {
            if can_write && !self.pending.is_empty() {
                match write_some(io, self.pending.as_slice()) {
                    Ok(n) => {
                        moved.written += n as u64;
                        self.pending.consume(n);
                        self.state.sent(n);
                        can_write = self.pending.is_empty();
                    }
                    Err(e) => return Progress::Done(classify(&e)),
                }
            }
            if self.state.is_peer_closed() {
                if !self.state.is_finished() {
                    return Progress::Blocked(self.state.wants(options));
                }
                return match io.shutdown_write() {
                    Ok(()) => Progress::Done(CloseReason::Eof),
                    Err(e) => Progress::Done(classify(&e)),
                };
            }
            let room = self.state.room(options);
            if room == 0 || !can_read {
                return Progress::Blocked(self.state.wants(options));
            }
            if reads >= options.read_budget {
                return Progress::Yielded;
            }
            let offered = room.min(scratch.len());
            match io.read(&mut scratch[..offered]) {
                Ok(0) => self.state.read_eof(),
                Ok(n) => {
                    reads += 1;
                    moved.read += n as u64;
                    self.state.received(n);
                    if n < offered && self.state.short_read_drains(options) {
                        can_read = false;
                    }
                    let data = &scratch[..n];
                    let sent = if can_write && self.pending.is_empty() {
                        match write_some(io, data) {
                            Ok(sent) => {
                                moved.written += sent as u64;
                                sent
                            }
                            Err(e) => return Progress::Done(classify(&e)),
                        }
                    } else {
                        0
                    };
                    self.state.sent(sent);
                    if sent < n {
                        can_write = false;
                        self.pending.push(&data[sent..], options.limit);
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => can_read = false,
                Err(e) => return Progress::Done(classify(&e)),
            }
        }
    }
}

/// Writes as much of `data` as the stream takes now; returns how much that was. Retries
/// `Interrupted`; `WouldBlock` ends the attempt without error.
fn write_some<T: Write + ?Sized>(io: &mut T, data: &[u8]) -> io::Result<usize> {
    let mut sent = 0;
    while sent < data.len() {
        match io.write(&data[sent..]) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => sent += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            Err(e) => return Err(e),
        }
    }
    Ok(sent)
}

#[cfg(test)]
pub(crate) mod fake {
    //! A scripted in-memory stream for driving [`Echo`] without sockets.

    use std::collections::VecDeque;
    use std::io::{self, Read, Write};

    use super::Transport;

    /// One scripted outcome of a `read` call.
    #[derive(Debug, Clone)]
    pub(crate) enum ReadStep {
        /// Deliver up to this many of the queued input bytes.
        Data(usize),
        WouldBlock,
        Interrupted,
        Eof,
        Reset,
    }

    /// One scripted outcome of a `write` call.
    #[derive(Debug, Clone)]
    pub(crate) enum WriteStep {
        /// Accept up to this many bytes.
        Accept(usize),
        WouldBlock,
        Interrupted,
        BrokenPipe,
    }

    /// A stream whose reads deliver `input` according to `reads` and whose writes append to
    /// `output` according to `writes`. An exhausted script blocks.
    #[derive(Debug, Default)]
    pub(crate) struct Scripted {
        pub(crate) input: VecDeque<u8>,
        pub(crate) reads: VecDeque<ReadStep>,
        pub(crate) writes: VecDeque<WriteStep>,
        pub(crate) output: Vec<u8>,
        pub(crate) write_shut: bool,
    }

    impl Read for Scripted {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            match self.reads.pop_front() {
                None | Some(ReadStep::WouldBlock) => Err(io::ErrorKind::WouldBlock.into()),
                Some(ReadStep::Interrupted) => Err(io::ErrorKind::Interrupted.into()),
                Some(ReadStep::Reset) => Err(io::ErrorKind::ConnectionReset.into()),
                Some(ReadStep::Eof) => Ok(0),
                Some(ReadStep::Data(n)) => {
                    let n = n.min(buf.len()).min(self.input.len());
                    if n == 0 {
                        return Err(io::ErrorKind::WouldBlock.into());
                    }
                    for (slot, byte) in buf.iter_mut().zip(self.input.drain(..n)) {
                        *slot = byte;
                    }
                    Ok(n)
                }
            }
        }
    }

    impl Write for Scripted {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            assert!(!self.write_shut, "write after shutdown");
            match self.writes.pop_front() {
                None | Some(WriteStep::WouldBlock) => Err(io::ErrorKind::WouldBlock.into()),
                Some(WriteStep::Interrupted) => Err(io::ErrorKind::Interrupted.into()),
                Some(WriteStep::BrokenPipe) => Err(io::ErrorKind::BrokenPipe.into()),
                Some(WriteStep::Accept(n)) => {
                    let n = n.min(buf.len());
                    self.output.extend_from_slice(&buf[..n]);
                    Ok(n)
                }
            }
        }

        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    impl Transport for Scripted {
        fn shutdown_write(&mut self) -> io::Result<()> {
            self.write_shut = true;
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::fake::{ReadStep as R, Scripted, WriteStep as W};
    use super::*;

    fn options(limit: usize) -> EchoOptions {
        EchoOptions {
            limit,
            read_budget: 16,
            read_until: ReadUntil::WouldBlock,
        }
    }

    fn stream(input: &[u8]) -> Scripted {
        Scripted {
            input: input.iter().copied().collect(),
            ..Scripted::default()
        }
    }

    #[test]
    fn echoes_fragmented_input_and_closes_after_eof() {
        let mut s = stream(b"hello, world");
        s.reads
            .extend([R::Data(3), R::Interrupted, R::Data(4), R::Data(100), R::Eof]);
        s.writes.extend([
            W::Accept(2),
            W::Interrupted,
            W::Accept(100),
            W::Accept(1),
            W::Accept(100),
        ]);
        // "world" arrives in one read and goes out in one write.
        s.writes.push_back(W::Accept(100));
        let mut echo = Echo::new();
        let p = echo.drive(&mut s, &mut [0; 8], &options(64)).progress;
        assert_eq!(p, Progress::Done(CloseReason::Eof));
        assert_eq!(s.output, b"hello, world");
        assert!(s.write_shut);
    }

    /// Over `FinOnClose` every read and write reaches the stream and the echo finishes the
    /// same way, but the stream's write side is left for the close to shut.
    #[test]
    fn fin_on_close_passes_bytes_through_and_leaves_the_fin_to_the_close() {
        let mut s = stream(b"hello, world");
        s.reads.extend([R::Data(5), R::Data(100), R::Eof]);
        s.writes
            .extend([W::Accept(3), W::Accept(100), W::Accept(100)]);
        let mut echo = Echo::new();
        let driven = echo.drive(&mut FinOnClose(&mut s), &mut [0; 8], &options(64));
        assert_eq!(driven.progress, Progress::Done(CloseReason::Eof));
        assert_eq!(
            driven.moved,
            Moved {
                read: 12,
                written: 12
            }
        );
        assert_eq!(s.output, b"hello, world");
        assert!(!s.write_shut, "no shutdown call: the close sends the FIN");
    }

    #[test]
    fn drive_reports_the_bytes_it_moved() {
        let mut s = stream(b"abcdef");
        s.reads.extend([R::Data(6), R::WouldBlock]);
        s.writes.extend([W::Accept(2), W::WouldBlock]);
        let mut echo = Echo::new();
        let driven = echo.drive(&mut s, &mut [0; 16], &options(64));
        assert_eq!(
            driven.moved,
            Moved {
                read: 6,
                written: 2
            }
        );
        s.writes.push_back(W::Accept(100));
        let driven = echo.drive(&mut s, &mut [0; 16], &options(64));
        assert_eq!(
            driven.moved,
            Moved {
                read: 0,
                written: 4
            }
        );
    }

    #[test]
    fn blocked_write_keeps_bytes_and_asks_for_writability() {
        let mut s = stream(b"abcdef");
        s.reads.extend([R::Data(6), R::WouldBlock]);
        s.writes.extend([W::Accept(2), W::WouldBlock]);
        let mut echo = Echo::new();
        let opts = options(64);
        let p = echo.drive(&mut s, &mut [0; 16], &opts).progress;
        assert_eq!(
            p,
            Progress::Blocked(Wants {
                read: true,
                write: true
            })
        );
        assert_eq!(echo.pending(), 4);
        s.writes.push_back(W::Accept(100));
        let p = echo.drive(&mut s, &mut [0; 16], &opts).progress;
        assert_eq!(
            p,
            Progress::Blocked(Wants {
                read: true,
                write: false
            })
        );
        assert_eq!(s.output, b"abcdef");
        assert_eq!(echo.heap_bytes(), 0, "a drained connection holds no buffer");
    }

    #[test]
    fn stops_reading_at_the_limit() {
        let mut s = stream(&[1; 100]);
        s.reads.extend(std::iter::repeat_n(R::Data(7), 20));
        let mut echo = Echo::new();
        let opts = options(10);
        let p = echo.drive(&mut s, &mut [0; 64], &opts).progress;
        assert_eq!(
            p,
            Progress::Blocked(Wants {
                read: false,
                write: true
            })
        );
        assert_eq!(echo.pending(), 10);
        assert!(echo.heap_bytes() <= 10);
        assert_eq!(s.input.len(), 90, "nothing beyond the limit was read");
    }

    /// The options are passed per call: a caller that shrinks `limit` below what is already
    /// pending gets a connection that stops reading and flushes, not an arithmetic underflow.
    #[test]
    fn a_limit_below_the_pending_bytes_only_stops_reading() {
        let mut s = stream(b"0123456789");
        s.reads.extend([R::Data(10), R::WouldBlock]);
        let mut echo = Echo::new();
        echo.drive(&mut s, &mut [0; 16], &options(64));
        assert_eq!(echo.pending(), 10);
        s.reads.push_back(R::Data(10));
        let p = echo.drive(&mut s, &mut [0; 16], &options(4)).progress;
        assert_eq!(
            p,
            Progress::Blocked(Wants {
                read: false,
                write: true
            })
        );
        assert_eq!(s.reads.len(), 1, "no read at or past the bound");
    }

    #[test]
    fn eof_with_pending_bytes_waits_for_the_flush() {
        let mut s = stream(b"xyz");
        s.reads.extend([R::Data(3), R::Eof]);
        let mut echo = Echo::new();
        let opts = options(64);
        let p = echo.drive(&mut s, &mut [0; 16], &opts).progress;
        assert_eq!(
            p,
            Progress::Blocked(Wants {
                read: false,
                write: true
            })
        );
        assert!(!s.write_shut);
        s.writes.push_back(W::Accept(1));
        s.writes.push_back(W::Accept(9));
        let p = echo.drive(&mut s, &mut [0; 16], &opts).progress;
        assert_eq!(p, Progress::Done(CloseReason::Eof));
        assert_eq!(s.output, b"xyz");
        assert!(s.write_shut);
    }

    #[test]
    fn resets_and_broken_pipes_close_quietly() {
        let mut s = stream(b"");
        s.reads.push_back(R::Reset);
        assert_eq!(
            Echo::new().drive(&mut s, &mut [0; 4], &options(8)).progress,
            Progress::Done(CloseReason::Reset)
        );
        let mut s = stream(b"ab");
        s.reads.push_back(R::Data(2));
        s.writes.push_back(W::BrokenPipe);
        assert_eq!(
            Echo::new().drive(&mut s, &mut [0; 4], &options(8)).progress,
            Progress::Done(CloseReason::Reset)
        );
    }

    #[test]
    fn yields_when_the_read_budget_is_spent() {
        let mut s = stream(&[5; 64]);
        s.reads.extend(std::iter::repeat_n(R::Data(1), 64));
        s.writes.extend(std::iter::repeat_n(W::Accept(1), 64));
        let opts = EchoOptions {
            limit: 64,
            read_budget: 4,
            read_until: ReadUntil::WouldBlock,
        };
        let mut echo = Echo::new();
        assert_eq!(
            echo.drive(&mut s, &mut [0; 8], &opts).progress,
            Progress::Yielded
        );
        assert_eq!(s.output.len(), 4);
    }

    #[test]
    fn a_reported_fin_makes_short_reads_read_on_to_eof() {
        let mut s = stream(b"last");
        s.reads.extend([R::Data(4), R::Eof]);
        s.writes.push_back(W::Accept(4));
        let opts = EchoOptions {
            read_until: ReadUntil::ShortRead,
            ..options(64)
        };
        let mut echo = Echo::new();
        echo.note_read_closed();
        assert_eq!(
            echo.drive(&mut s, &mut [0; 16], &opts).progress,
            Progress::Done(CloseReason::Eof)
        );
        assert_eq!(s.output, b"last");
    }

    #[test]
    fn the_flags_cost_no_space() {
        // Both flags share one byte, which sits where padding would be: an idle connection's
        // echo costs the buffer's words plus at most one more.
        assert!(std::mem::size_of::<Echo>() <= std::mem::size_of::<Pending>() + 8);
    }

    #[test]
    fn short_read_counts_as_drained_when_asked() {
        let mut s = stream(b"ping");
        s.reads.extend([R::Data(4), R::Data(4)]);
        s.writes.push_back(W::Accept(4));
        let opts = EchoOptions {
            read_until: ReadUntil::ShortRead,
            ..options(64)
        };
        let p = Echo::new().drive(&mut s, &mut [0; 16], &opts).progress;
        assert_eq!(
            p,
            Progress::Blocked(Wants {
                read: true,
                write: false
            })
        );
        assert_eq!(s.reads.len(), 1, "no second read after a short one");
    }
}
