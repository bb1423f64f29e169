//! Pieces shared by the models that serve each connection with blocking calls (`thread`,
//! `blocking`, and a `fork` child): the serve loop, the idle-timeout transport, and the
//! `Registry` that lets a shutdown wake threads blocked on their sockets.
//!
//! Idle timeout: `SO_RCVTIMEO`/`SO_SNDTIMEO` are set to `idle_timeout`, so a read or write
//! that waits that long fails with `EAGAIN`; [`Timed`] turns that into `TimedOut`, which
//! ends the connection, and remembers it for the log. A `fork` child's [`Timed`] also bounds
//! each call by what is left of `shutdown_timeout` once the parent asked it to finish.

use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::net::Shutdown;
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};
use slab::Slab;
use tracing::info;

use crate::live::LiveSettings;
use crate::models::Model;
use crate::policy::connlog::{ConnLog, Record};
use crate::policy::{CloseReason, Progress};
use crate::stats::WorkerStats;
use crate::sys::socket::Stream;
use crate::worker::{Echo, EchoOptions, ReadUntil, Transport};

/// Echo options for a blocking socket: a short read ends the attempt (the next read blocks
/// until more arrives), so no read ever waits while received bytes are still unechoed.
pub(crate) fn blocking_options(buffer_size: usize) -> EchoOptions {
    EchoOptions {
        read_until: ReadUntil::ShortRead,
        ..EchoOptions::new(buffer_size)
    }
}

/// The one timeout transport of the blocking models: a blocking socket whose timeouts
/// (`EAGAIN` after `SO_RCVTIMEO`/`SO_SNDTIMEO`) become `TimedOut` errors, which end the
/// connection. A `fork` child also bounds every call, once it has been asked to finish, by
/// what is left of `shutdown_timeout` ([`Timed::finishing`]).
#[derive(Debug)]
pub(crate) struct Timed<'a> {
    /// The socket, blocking, with `SO_RCVTIMEO`/`SO_SNDTIMEO` set (or not, for no timeout).
    stream: &'a Stream,
    /// The finish rule, for a connection that must notice a finish notice itself.
    finish: Option<Finish>,
    /// Set when a call gave up after its timeout.
    timed_out: bool,
}

/// How a connection served alone (a `fork` child) finishes once asked to.
#[derive(Debug)]
struct Finish {
    /// Whether the finish notice has arrived; checked before every call.
    asked: fn() -> bool,
    /// The configured idle timeout (what the socket's timeouts are otherwise).
    idle_timeout: Option<Duration>,
    /// How long the connection may go on once asked to finish.
    within: Duration,
    /// Set when the notice is first seen.
    deadline: Option<Instant>,
}

impl<'a> Timed<'a> {
    /// Wraps `stream`, whose socket timeouts are the idle timeout.
    pub(crate) fn new(stream: &'a Stream) -> Self {
        Timed {
            stream,
            finish: None,
            timed_out: false,
        }
    }

    /// Wraps `stream` and, once `asked()` says so, bounds each call by what is left of
    /// `within` (and by `idle_timeout`, if any).
    pub(crate) fn finishing(
        stream: &'a Stream,
        idle_timeout: Option<Duration>,
        within: Duration,
        asked: fn() -> bool,
    ) -> Self {
        Timed {
            stream,
            finish: Some(Finish {
                asked,
                idle_timeout,
                within,
                deadline: None,
            }),
            timed_out: false,
        }
    }

    /// Why the connection ended, given how the echo ended: a timeout is the idle timeout,
    /// or the shutdown timeout once the connection was asked to finish.
    pub(crate) fn close_reason(&self, closed: CloseReason) -> CloseReason {
        let finishing = self.finish.as_ref().is_some_and(|f| f.deadline.is_some());
        match (self.timed_out, finishing) {
            (true, true) => CloseReason::ShutdownTimeout,
            (true, false) => CloseReason::IdleTimeout,
            (false, _) => closed,
        }
    }

    /// Runs one blocking call, retrying `EINTR` (a signal: maybe the finish notice).
    fn call(&mut self, mut f: impl FnMut(&Stream) -> io::Result<usize>) -> io::Result<usize> {
        loop {
            if let Some(finish) = &mut self.finish {
                if finish.deadline.is_none() && (finish.asked)() {
                    finish.deadline = Some(Instant::now() + finish.within);
                }
                if let Some(deadline) = finish.deadline {
                    let left = deadline.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        self.timed_out = true;
                        return Err(io::ErrorKind::TimedOut.into());
                    }
                    let bound = finish.idle_timeout.map_or(left, |idle| idle.min(left));
                    self.stream.set_timeouts(Some(bound))?;
                }
            }
            match f(self.stream) {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    self.timed_out = true;
                    return Err(io::ErrorKind::TimedOut.into());
                }
                r => return r,
            }
        }
    }
}

impl Read for Timed<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.call(|s| s.recv(buf))
    }
}

impl Write for Timed<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.call(|s| s.send(buf))
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Transport for Timed<'_> {
    fn shutdown_write(&mut self) -> io::Result<()> {
        self.stream.shutdown(Shutdown::Write)
    }
}

/// Socket options of a connection about to be served with blocking calls: those of every
/// model ([`configure_accepted`](crate::policy::socket_options::configure_accepted)), and the
/// idle timeout as `SO_RCVTIMEO`/`SO_SNDTIMEO` (the values in force now: a reload applies to
/// connections accepted after it). Returns the connection log's record, opened here, at
/// accept, on the accepting thread.
pub(crate) fn prepare(stream: &Stream, live: &LiveSettings, model: Model) -> io::Result<Record> {
    crate::policy::socket_options::configure_accepted(stream, live);
    stream.set_timeouts(live.idle_timeout())?;
    Ok(ConnLog::opened(live, model, 0, || stream.peer_addr()))
}

/// Runs the echo over a blocking transport until the connection ends, adding the bytes it
/// moves to `counters` (if any) and to the connection log's record after every drive.
///
/// With blocking calls every `drive` either makes progress or waits inside a read or write,
/// so looping on `Blocked`/`Yielded` cannot spin: a write returns only when everything was
/// sent (or it failed), and the next read waits for the peer.
pub(crate) fn serve<T: Transport>(
    io: &mut T,
    scratch: &mut [u8],
    options: &EchoOptions,
    counters: Option<&WorkerStats>,
    log: &mut Record,
) -> CloseReason {
    let mut echo = Echo::new();
    loop {
        let driven = echo.drive(io, scratch, options);
        if let Some(counters) = counters {
            counters.moved(driven.moved.read, driven.moved.written);
        }
        ConnLog::add(log, driven.moved);
        match driven.progress {
            Progress::Done(closed) => return closed,
            Progress::Blocked(_) | Progress::Yielded => {}
        }
    }
}

/// Serves `stream` (blocking, timeouts set) to the end, counting it in `counters` from
/// open to close and logging its close if `log` (from [`prepare`]) says so; returns why it
/// ended.
pub(crate) fn serve_stream(
    stream: &Stream,
    scratch: &mut [u8],
    options: &EchoOptions,
    counters: &WorkerStats,
    mut log: Record,
) -> CloseReason {
    counters.opened();
    let mut io = Timed::new(stream);
    let closed = serve(&mut io, scratch, options, Some(counters), &mut log);
    let reason = io.close_reason(closed);
    counters.closed(reason);
    ConnLog::closed(log, reason);
    reason
}

/// How long a drain waits, after shutting down the remaining sockets, for their threads to
/// notice and finish.
const FORCE_GRACE: Duration = Duration::from_secs(1);

/// The sockets of connections being served by blocking calls, so a shutdown can wake the
/// threads blocked on them (`shutdown(2)` makes a blocked read return 0 and a blocked write
/// fail). Holds `Weak` references: a socket closes when its thread drops its `Arc`, never
/// while a shutdown is using it, so the shutdown can never hit a reused descriptor number.
///
/// The `blocking` model also parks here the connections taken from the backlog at shutdown,
/// which it serves one by one during the drain.
#[derive(Debug, Default)]
pub(crate) struct Registry {
    /// Live sockets, parked connections and drain state.
    state: Mutex<State>,
    /// Signalled when a socket leaves, a drain is requested, or serving has finished.
    changed: Condvar,
}

#[derive(Debug, Default)]
struct State {
    /// One entry per connection being served.
    sockets: Slab<Weak<Stream>>,
    /// Connections accepted at shutdown, waiting to be served (`blocking` model).
    parked: VecDeque<Stream>,
    /// A graceful drain was requested.
    drain_requested: bool,
    /// Serving is over (the watchdog may exit).
    finished: bool,
    /// The drain deadline passed: every socket was shut down, and any registered from now
    /// on is shut down at once.
    cut: bool,
}

impl State {
    /// Ends the drain: shuts down every registered socket and closes the parked ones.
    fn cut_all(&mut self) {
        let left = self.sockets.len() + self.parked.len();
        if left > 0 {
            info!(
                connections = left,
                "shutdown timeout: closing remaining connections"
            );
        }
        self.cut = true;
        self.parked.clear();
        for (_, weak) in &self.sockets {
            if let Some(stream) = weak.upgrade() {
                // The socket may be closing already; nothing to do if so.
                let _ = stream.shutdown(Shutdown::Both);
            }
        }
    }
}

/// Proof of registration: dropping it removes the socket from the registry.
#[derive(Debug)]
pub(crate) struct Ticket {
    /// The registry to leave.
    registry: Arc<Registry>,
    /// Our slab key in it.
    key: usize,
}

impl Drop for Ticket {
    fn drop(&mut self) {
        self.registry.state.lock().sockets.try_remove(self.key);
        self.registry.changed.notify_all();
    }
}

impl Registry {
    /// Registers a connection's socket for the time its ticket lives.
    pub(crate) fn register(self: &Arc<Self>, stream: &Arc<Stream>) -> Ticket {
        let mut state = self.state.lock();
        if state.cut {
            // Too late to be served: the drain is over.
            let _ = stream.shutdown(Shutdown::Both);
        }
        let key = state.sockets.insert(Arc::downgrade(stream));
        Ticket {
            registry: self.clone(),
            key,
        }
    }

    /// Connections being served.
    pub(crate) fn len(&self) -> usize {
        self.state.lock().sockets.len()
    }

    /// Parks a connection to be served later in the drain.
    pub(crate) fn park(&self, stream: Stream) {
        self.state.lock().parked.push_back(stream);
    }

    /// Takes the next parked connection (none once the drain deadline has passed).
    pub(crate) fn unpark(&self) -> Option<Stream> {
        self.state.lock().parked.pop_front()
    }

    /// Asks the watchdog ([`Registry::watch`]) to start draining.
    pub(crate) fn request_drain(&self) {
        self.state.lock().drain_requested = true;
        self.changed.notify_all();
    }

    /// Tells the watchdog that serving is over.
    pub(crate) fn finish(&self) {
        self.state.lock().finished = true;
        self.changed.notify_all();
    }

    /// Waits until every connection has ended or `deadline` passed; then shuts down the
    /// sockets left (waking their threads) and waits up to [`FORCE_GRACE`] for them to go.
    /// Returns how many connections had to be cut. (The `thread` model's drain.)
    pub(crate) fn drain_until(&self, deadline: Instant) -> usize {
        let mut state = self.state.lock();
        while !state.sockets.is_empty() {
            if self.changed.wait_until(&mut state, deadline).timed_out() {
                break;
            }
        }
        let left = state.sockets.len();
        if left > 0 {
            state.cut_all();
            let grace = Instant::now() + FORCE_GRACE;
            while !state.sockets.is_empty() {
                if self.changed.wait_until(&mut state, grace).timed_out() {
                    break;
                }
            }
        }
        left
    }

    /// The `blocking` model's watchdog: sleeps until a drain is requested or serving
    /// finishes; once draining, gives the serving thread `timeout()` (read when the drain
    /// starts) to finish, then cuts every
    /// connection still registered or parked.
    pub(crate) fn watch(&self, timeout: impl Fn() -> Duration) {
        let mut state = self.state.lock();
        while !state.drain_requested && !state.finished {
            self.changed.wait(&mut state);
        }
        let deadline = Instant::now() + timeout();
        while !state.finished {
            if self.changed.wait_until(&mut state, deadline).timed_out() {
                state.cut_all();
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tickets_count_and_drain_cuts_blocked_sockets() {
        let std_listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = std_listener.local_addr().unwrap();
        let _client = std::net::TcpStream::connect(addr).unwrap();
        std_listener.set_nonblocking(true).unwrap();
        let listener = crate::sys::socket::Listener::from(std_listener);
        let stream = loop {
            match listener.accept(crate::sys::socket::Mode::Blocking) {
                Ok(s) => break Arc::new(s),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => std::thread::yield_now(),
                Err(e) => panic!("accept: {e}"),
            }
        };
        let registry = Arc::new(Registry::default());
        let ticket = registry.register(&stream);
        assert_eq!(registry.len(), 1);
        // A thread blocked in recv with no timeout, as in the thread model.
        let reader = std::thread::spawn(move || {
            let mut buf = [0u8; 16];
            let n = stream.recv(&mut buf);
            drop(ticket);
            n.map_err(|e| e.kind())
        });
        let cut = registry.drain_until(Instant::now() + Duration::from_millis(50));
        assert_eq!(cut, 1);
        assert_eq!(
            reader.join().unwrap(),
            Ok(0),
            "shutdown wakes the blocked read"
        );
        assert_eq!(registry.len(), 0);
    }
}
