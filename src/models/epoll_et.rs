//! `epoll-et` model: one thread, raw `epoll_wait`, edge-triggered (`EPOLLET`).
//!
//! An edge-triggered poller reports *changes*: bytes that were already readable when the
//! loop stopped reading are never reported again. So this loop
//! - reads until `EAGAIN` ([`ReadUntil::WouldBlock`]) and accepts until `EAGAIN`;
//! - registers each connection once for `EPOLLIN | EPOLLOUT | EPOLLRDHUP` and never
//!   re-registers (interest changes would cost a syscall and gain nothing: the echo state
//!   decides what to do on any edge);
//! - remembers every connection that stopped early while data may still be readable, and
//!   drives it again without waiting for an edge:
//!   - spent its read budget (`Progress::Yielded`: the rule says `resume`): kept in `resume`, driven after this
//!     round's events, with a zero wait so the next round comes at once;
//!   - paused by backpressure (buffer full): the echo stops reading only after a write hit
//!     `EAGAIN`, so the `EPOLLOUT` edge that comes when the peer reads is its resume signal;
//!     the drive that follows writes first, then reads on;
//! - after an accept pause (descriptor exhaustion) accepts again when the pause ends (or at
//!   once, if it ended before the next wait), since connections already in the backlog will
//!   raise no new edge.

use std::io;
use std::os::fd::AsRawFd;
use std::time::Instant;

use slab::Slab;

use super::Model;
use super::conn::Conn;
use super::event_loop::LoopCore;
use super::{About, Bound};
use crate::close::CloseReason;
use crate::policy::admission::Accepted;
use crate::policy::interest::{Next, Trigger};
use crate::sys::epoll::{self, Epoll};
use crate::sys::socket::{Listener, Mode};
use crate::worker::ReadUntil;

/// Token of the listening socket; connection tokens are slab keys, far below.
const LISTENER: u64 = u64::MAX;
/// Token of the shutdown eventfd.
const WAKE: u64 = u64::MAX - 1;
/// What every connection is registered for, once.
const CONN_EVENTS: u32 = epoll::READ | epoll::WRITE | epoll::RDHUP | epoll::EDGE;

/// The `epoll-et` model, as `reactor-pool models` describes it.
pub(crate) const ABOUT: About = About::new(
    "one thread, raw epoll, edge-triggered: reads and accepts drain to EAGAIN, \
     connections that yield are resumed without a new edge; uses one core",
);

/// Serves until shutdown, then drains.
pub(crate) fn run(bound: Bound) -> io::Result<()> {
    let mut core = LoopCore::new(Model::EpollEt, &bound, Trigger::Edge, ReadUntil::WouldBlock)?;
    let ep = Epoll::new()?;
    let mut listener = Some(bound.listener);
    let lfd = listener.as_ref().map_or(-1, AsRawFd::as_raw_fd);
    ep.add(lfd, epoll::READ | epoll::EDGE, LISTENER)?;
    ep.add(core.wake_fd(), epoll::READ, WAKE)?;
    let mut conns: Slab<Conn> = Slab::new();
    // Connections to drive again without an edge (they yielded last round).
    let mut resume: Vec<usize> = Vec::new();
    // The backlog was left unaccepted by a pause; accept when it ends.
    let mut accept_owed = false;
    let mut events = Vec::with_capacity(1024);
    // This round's work: connections with an event, then those that yielded last round.
    let mut ready: Vec<usize> = Vec::new();
    loop {
        // A pause that ended before this wait leaves no timer to wake it, and the backlog no
        // new edge: accept at once.
        let accept_now =
            accept_owed && listener.is_some() && !core.admission.is_paused(Instant::now());
        let busy = !resume.is_empty() || accept_now;
        let timeout = core.timeout(core.now_ms(), conns.len(), busy);
        match ep.wait(&mut events, timeout) {
            Err(e) if e.kind() != io::ErrorKind::Interrupted => return Err(e),
            _ => {}
        }
        let now = core.now_ms();
        ready.clear();
        for event in &events {
            match event.u64 {
                WAKE => core.take_wake(),
                LISTENER => accept_owed = true,
                token => {
                    // The read that returns the last bytes may consume the FIN, whose edge
                    // does not come again (a no-op while reads go to EAGAIN anyway).
                    if event.events & epoll::CLOSED != 0 {
                        if let Some(conn) = conns.get_mut(token as usize) {
                            conn.echo.note_read_closed();
                        }
                    }
                    ready.push(token as usize);
                }
            }
        }
        if let Some(l) = &listener {
            if accept_owed && !core.admission.is_paused(Instant::now()) {
                accept_owed = accept_all(&mut core, &ep, l, &mut conns, now);
            }
        }
        // Yielded connections go after everyone with an event, so one busy peer cannot
        // starve the rest. One that appears twice is driven twice, which costs one EAGAIN.
        ready.append(&mut resume);
        for &key in &ready {
            let Some(conn) = conns.get_mut(key) else {
                continue;
            };
            // The interest is not used: the registration never changes.
            let reason = match core.drive(conn, now) {
                Next::Close(reason) => reason,
                Next::Wait { resume: true, .. } => {
                    resume.push(key);
                    continue;
                }
                // Blocked: every path that stops here saw EAGAIN (read or write), so an edge
                // will come when that changes.
                Next::Wait { resume: false, .. } => continue,
            };
            let mut conn = conns.remove(key);
            core.closed(reason, &mut conn);
        }
        if core.should_stop_accepting() {
            // Connections whose handshake completed before the request are served, not reset.
            if let (Some(l), false) = (&listener, core.admission.is_paused(Instant::now())) {
                accept_all(&mut core, &ep, l, &mut conns, now);
            }
            listener = None;
            core.begin_drain(now, conns.len());
        }
        if core.sweep_due(now) {
            core.sweep_idle(&mut conns, now);
        }
        if core.finish_round(now, &mut conns) {
            return Ok(());
        }
    }
}

/// Accepts until `EAGAIN`. Returns whether accepting stopped early (paused) and is owed.
fn accept_all(
    core: &mut LoopCore,
    ep: &Epoll,
    l: &Listener,
    conns: &mut Slab<Conn>,
    now: u64,
) -> bool {
    loop {
        match core.admission.accept(l, Mode::NonBlocking, conns.len()) {
            Accepted::Conn(stream) => {
                let log = core.admit(&stream);
                let mut conn = Conn::new(stream, now, log);
                let entry = conns.vacant_entry();
                // EPOLL_CTL_ADD reports bytes that arrived before registration, so the first
                // edge is not lost.
                match ep.add(conn.stream.as_raw_fd(), CONN_EVENTS, entry.key() as u64) {
                    Ok(()) => drop(entry.insert(conn)),
                    Err(_) => core.closed(CloseReason::Error, &mut conn),
                }
            }
            Accepted::Empty => return false,
            Accepted::Paused => return true,
        }
    }
}
