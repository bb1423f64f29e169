//! `sigio` model: one thread, signal-driven I/O. The listener and every connection are
//! `O_ASYNC`, owned by the serving thread (`F_SETOWN_EX`, `F_OWNER_TID`), with a real-time
//! signal (`F_SETSIG`): the kernel queues one signal per readiness change, and its `si_fd`
//! says which socket. No handler runs: the signals stay blocked in the serving thread and
//! are read from a `signalfd` in batches, between which the loop waits in `poll` on that
//! signalfd and the shutdown eventfd. The signals are thread-directed, so the process's other
//! threads (signal thread, metrics) never see them and need not block them.
//!
//! Readiness signals are edge-like (sent on a change: data arrived, send space freed after
//! `EAGAIN`, a connection queued), so this loop follows the `epoll-et` model's rules:
//! - reads drain to `EAGAIN` ([`ReadUntil::WouldBlock`]) and accepts to `EAGAIN`. A FIN
//!   raises the same `POLL_IN` band as data, so, unlike `EPOLLRDHUP`, nothing tells the loop
//!   that a short read may have taken the FIN with the last bytes (a connection paused by
//!   backpressure or its read budget when the FIN's own signal came would then wait
//!   forever): a short read proves nothing here, and costs one `EAGAIN` read per drive;
//! - a connection that spent its read budget (`Progress::Yielded`) is driven again next
//!   round without a signal; one paused by backpressure stopped after a write hit `EAGAIN`,
//!   which arms the `POLL_OUT` signal that resumes it;
//! - a fresh connection is driven once at once: bytes that arrived before `O_ASYNC` was set
//!   raised no signal (likewise the backlog is accepted once at start, and after a pause);
//! - when the real-time queue overflows (`RLIMIT_SIGPENDING`), the kernel drops the event
//!   and sends plain `SIGIO`: the loop then asks `poll` which connections are ready
//!   ([`rescan`]), since any number of events may have been lost;
//! - a signal may name a descriptor that was closed after it was queued, possibly reused
//!   since by a new connection: see [`FdIndex`].
//!
//! The cost against `epoll`: one more `recv` per drive (the `EAGAIN`), a wait is `poll` +
//! `read(signalfd)` instead of one `epoll_wait`, every accepted socket takes three `fcntl`s,
//! and the kernel allocates a queue entry per event (measured in pingpong, 50 × 64 B: 3.1
//! syscalls per message against epoll's 2.0, 1.07× its CPU per message).

use std::io;
use std::os::fd::{AsFd, AsRawFd, RawFd};
use std::time::{Duration, Instant};

use slab::Slab;
use tracing::warn;

use super::conn::Conn;
use super::event_loop::LoopCore;
use super::{About, Bound, Model};
use crate::close::CloseReason;
use crate::policy::admission::Accepted;
use crate::policy::interest::{Next, Trigger};
use crate::ratelimit::RateLimit;
use crate::sys::poll::{self, PollFd};
use crate::sys::sigio::{self, AsyncOwner, SIGIO};
use crate::sys::signal::Signo;
use crate::sys::signalfd::{self, SigInfo, SignalFd, ThreadMask};
use crate::sys::socket::{Listener, Mode};
use crate::worker::ReadUntil;

/// Signals taken per round at most, so housekeeping and accepts keep running under a flood
/// (the rest are taken next round, without waiting).
const SIGNALS_PER_ROUND: usize = 256;

/// The `sigio` model, as `reactor-pool models` describes it.
pub(crate) const ABOUT: About = About::new(
    "one thread, signal-driven I/O: O_ASYNC sockets raise a real-time signal per \
     readiness change, read from a signalfd; a queue overflow (SIGIO) rescans",
);

/// Serves until shutdown, then drains.
pub(crate) fn run(bound: Bound) -> io::Result<()> {
    let signo = sigio::readiness_signal();
    // Blocked before any descriptor names this thread, so no signal is ever delivered the
    // ordinary way (with no handler, a real-time signal would end the process).
    let mask = ThreadMask::block(&[signo, SIGIO])?;
    let signals = SignalFd::new(&[signo, SIGIO])?;
    let result = serve(bound, signo, &signals);
    // `serve` closed every descriptor that named this thread, so no signal can come any
    // more; the ones still queued are dropped before the mask is restored.
    signals.discard_pending();
    drop(mask);
    result
}

/// The listener while it raises signals; turns them off when dropped, since the socket may
/// be shared with a supervisor and outlive this loop.
#[derive(Debug)]
struct AsyncListener(Listener);

impl Drop for AsyncListener {
    fn drop(&mut self) {
        // Failing leaves O_ASYNC on a socket whose owner thread is gone: no one is signalled.
        let _ = sigio::detach(self.0.as_fd());
    }
}

/// Which connection (slab key) holds each descriptor number.
///
/// A signal names a descriptor, not a connection, and is queued when the event happens: by
/// the time the loop reads it the connection may have closed, and its number may have been
/// reused by a connection accepted since. So a lookup returns a key only if the connection
/// under it holds that very number now ([`FdIndex::find`]); a signal for a closed descriptor
/// is dropped; one for a reused number drives the new connection once more than needed,
/// which is harmless: its reads and writes return `EAGAIN` (or find bytes its own signal
/// also reports), and the echo state is unchanged by an attempt that moves nothing.
#[derive(Debug, Default)]
struct FdIndex {
    /// Slab key per descriptor number; `usize::MAX` for none.
    keys: Vec<usize>,
}

impl FdIndex {
    fn insert(&mut self, fd: RawFd, key: usize) {
        let i = fd as usize;
        if i >= self.keys.len() {
            self.keys.resize(i + 1, usize::MAX);
        }
        self.keys[i] = key;
    }

    fn remove(&mut self, fd: RawFd) {
        if let Some(slot) = self.keys.get_mut(fd as usize) {
            *slot = usize::MAX;
        }
    }

    /// The key of the open connection holding `fd`, if there is one.
    fn find(&self, fd: RawFd, conns: &Slab<Conn>) -> Option<usize> {
        let key = *self.keys.get(usize::try_from(fd).ok()?)?;
        conns
            .get(key)
            .is_some_and(|c| c.stream.as_raw_fd() == fd)
            .then_some(key)
    }
}

/// The loop proper; every descriptor it opens or is given is closed when it returns.
fn serve(bound: Bound, signo: Signo, signals: &SignalFd) -> io::Result<()> {
    let mut core = LoopCore::new(Model::Sigio, &bound, Trigger::Edge, ReadUntil::WouldBlock)?;
    let owner = AsyncOwner::this_thread(signo);
    owner.attach(bound.listener.as_fd())?;
    let mut listener = Some(AsyncListener(bound.listener));
    let mut conns: Slab<Conn> = Slab::new();
    let mut index = FdIndex::default();
    // Connections to drive again without a signal (they yielded last round).
    let mut resume: Vec<usize> = Vec::new();
    // The backlog may hold connections no signal reports: those queued before O_ASYNC was
    // set, or left by an accept pause.
    let mut accept_owed = true;
    // The last round left signals queued (it took its limit): take them without waiting.
    let mut queued = false;
    let mut waits = [
        poll::entry(signals.as_raw_fd(), poll::READ),
        poll::entry(core.wake_fd(), poll::READ),
    ];
    let mut infos: Vec<SigInfo> = Vec::with_capacity(SIGNALS_PER_ROUND + 64);
    let mut ready: Vec<usize> = Vec::new();
    let mut overflow_log = RateLimit::new(Duration::from_secs(1));
    loop {
        let accept_now =
            accept_owed && listener.is_some() && !core.admission.is_paused(Instant::now());
        let busy = !resume.is_empty() || accept_now || queued;
        let mut take = true;
        if !busy {
            let timeout = core.timeout(core.now_ms(), conns.len(), false);
            match poll::poll(&mut waits, timeout) {
                Err(e) if e.kind() != io::ErrorKind::Interrupted => return Err(e),
                Err(_) => take = false,
                Ok(_) => {
                    if waits[1].revents != 0 {
                        core.take_wake();
                    }
                    take = waits[0].revents != 0;
                }
            }
        }
        let now = core.now_ms();
        infos.clear();
        ready.clear();
        if take {
            // A short batch took everything queued: no read that would return EAGAIN.
            while infos.len() < SIGNALS_PER_ROUND && signals.read(&mut infos)? == signalfd::BATCH {}
        }
        queued = infos.len() >= SIGNALS_PER_ROUND;
        let mut overflowed = false;
        for info in &infos {
            if info.signo == SIGIO {
                overflowed = true;
            } else if listener
                .as_ref()
                .is_some_and(|l| l.0.as_raw_fd() == info.fd)
            {
                accept_owed = true;
            } else if let Some(key) = index.find(info.fd, &conns) {
                ready.push(key);
            }
            // Otherwise the descriptor closed after the signal was queued: nothing to do.
        }
        if overflowed {
            if let Some(suppressed) = overflow_log.check(Instant::now()) {
                warn!(
                    suppressed,
                    open = conns.len(),
                    "real-time signal queue overflowed (RLIMIT_SIGPENDING); rescanning every connection"
                );
            }
            let l = listener.as_ref().map(|l| &l.0);
            accept_owed |= rescan(&core, &conns, l, &mut ready);
        }
        if let Some(l) = &listener {
            if accept_owed && !core.admission.is_paused(Instant::now()) {
                accept_owed = accept_all(
                    &mut core, &owner, &l.0, &mut conns, &mut index, &mut ready, now,
                );
            }
        }
        // A connection with several signals (one per packet) is driven once; one that
        // yielded and also has a signal, once.
        ready.append(&mut resume);
        ready.sort_unstable();
        ready.dedup();
        for &key in &ready {
            let Some(conn) = conns.get_mut(key) else {
                continue;
            };
            // The interest is not used: there is no registration to change.
            let reason = match core.drive(conn, now) {
                Next::Close(reason) => reason,
                Next::Wait { resume: true, .. } => {
                    resume.push(key);
                    continue;
                }
                // Blocked: every path that stops here saw EAGAIN (a read, or a write, which
                // arms the POLL_OUT signal), so a signal will come when that changes.
                Next::Wait { resume: false, .. } => continue,
            };
            let mut conn = conns.remove(key);
            index.remove(conn.stream.as_raw_fd());
            core.closed(reason, &mut conn);
        }
        if core.should_stop_accepting() {
            // Connections whose handshake completed before the request are served, not reset.
            if let (Some(l), false) = (&listener, core.admission.is_paused(Instant::now())) {
                let mut fresh = Vec::new();
                accept_all(
                    &mut core, &owner, &l.0, &mut conns, &mut index, &mut fresh, now,
                );
                resume.append(&mut fresh);
            }
            listener = None;
            core.begin_drain(now, conns.len());
        }
        if core.sweep_due(now) {
            // Swept connections stay in `index` until reused: `find` checks the descriptor.
            core.sweep_idle(&mut conns, now);
        }
        if core.finish_round(now, &mut conns) {
            return Ok(());
        }
    }
}

/// After a queue overflow: which connections (and whether the listener) are ready now, by
/// one `poll` over all of them, for what each one's echo state waits for. Returns whether
/// the listener is ready. If `poll` fails, every connection and the listener count as
/// ready (an attempt that finds nothing costs one `EAGAIN`).
fn rescan(
    core: &LoopCore,
    conns: &Slab<Conn>,
    listener: Option<&Listener>,
    ready: &mut Vec<usize>,
) -> bool {
    let mut fds: Vec<PollFd> = Vec::with_capacity(conns.len() + 1);
    let mut keys: Vec<usize> = Vec::with_capacity(conns.len());
    for (key, conn) in conns {
        let wants = conn.echo.state(&core.echo).wants;
        let events =
            (if wants.read { poll::READ } else { 0 }) | (if wants.write { poll::WRITE } else { 0 });
        fds.push(poll::entry(conn.stream.as_raw_fd(), events));
        keys.push(key);
    }
    fds.push(poll::entry(
        listener.map_or(-1, AsRawFd::as_raw_fd),
        poll::READ,
    ));
    match poll::poll(&mut fds, Some(Duration::ZERO)) {
        Ok(_) => {
            ready.extend(
                keys.iter()
                    .zip(&fds)
                    .filter(|(_, f)| f.revents != 0)
                    .map(|(&key, _)| key),
            );
            fds.last().is_some_and(|f| f.revents != 0)
        }
        Err(_) => {
            ready.extend(keys);
            true
        }
    }
}

/// Accepts until `EAGAIN`, directing each connection's signals to this thread and adding it
/// to `fresh` (to be driven at once). Returns whether accepting stopped early (paused) and
/// is owed.
fn accept_all(
    core: &mut LoopCore,
    owner: &AsyncOwner,
    l: &Listener,
    conns: &mut Slab<Conn>,
    index: &mut FdIndex,
    fresh: &mut Vec<usize>,
    now: u64,
) -> bool {
    loop {
        match core.admission.accept(l, Mode::NonBlocking, conns.len()) {
            Accepted::Conn(stream) => {
                let log = core.admit(&stream);
                let mut conn = Conn::new(stream, now, log);
                match owner.attach_new(conn.stream.as_fd()) {
                    Ok(()) => {
                        let fd = conn.stream.as_raw_fd();
                        let key = conns.insert(conn);
                        index.insert(fd, key);
                        fresh.push(key);
                    }
                    Err(_) => core.closed(CloseReason::Error, &mut conn),
                }
            }
            Accepted::Empty => return false,
            Accepted::Paused => return true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fd_index_finds_only_the_connection_holding_the_descriptor_now() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let listener = Listener::from(listener);
        let accept = || {
            let _client = std::net::TcpStream::connect(addr).unwrap();
            listener.accept(Mode::Blocking).expect("accept")
        };
        let mut conns: Slab<Conn> = Slab::new();
        let mut index = FdIndex::default();
        let a = accept();
        let fd = a.as_raw_fd();
        let key = conns.insert(Conn::new(a, 0, None));
        index.insert(fd, key);
        assert_eq!(index.find(fd, &conns), Some(key));
        assert_eq!(index.find(fd + 1000, &conns), None);
        assert_eq!(index.find(-1, &conns), None);
        // Closed without updating the index (as the idle sweep does): not found.
        let a = conns.remove(key);
        assert_eq!(index.find(fd, &conns), None);
        // Another connection in the same slot, with another descriptor (`a` still holds
        // `fd`): not found either.
        let key_b = conns.insert(Conn::new(accept(), 0, None));
        assert_eq!(key_b, key, "the slab reuses the slot");
        assert_eq!(index.find(fd, &conns), None);
        drop(a);
    }
}
