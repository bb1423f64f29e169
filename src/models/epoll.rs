//! `epoll` model: one thread, raw `epoll_wait`, level-triggered.
//!
//! Level-triggered epoll reports a descriptor for as long as it is ready, so the loop may
//! stop anywhere: a connection that spent its read budget (`Progress::Yielded`) keeps its
//! interest and is simply reported again; a short read counts as drained
//! ([`ReadUntil::ShortRead`]), saving one `EAGAIN` read per message. Interest follows the
//! echo state (`EPOLLIN` while the buffer has room, `EPOLLOUT` while bytes wait) and is
//! changed with `EPOLL_CTL_MOD` only when it differs. While accepting is paused the listener
//! is watched for nothing, or it would be reported on every wait (a busy loop).

use std::io;
use std::os::fd::AsRawFd;
use std::time::Instant;

use slab::Slab;

use super::Model;
use super::conn::Conn;
use super::event_loop::LoopCore;
use super::{About, Bound};
use crate::close::CloseReason;
use crate::policy::Wants;
use crate::policy::admission::Accepted;
use crate::policy::interest::{Next, Trigger};
use crate::sys::epoll::{self, Epoll};
use crate::sys::socket::{Listener, Mode};
use crate::worker::ReadUntil;

/// Token of the listening socket; connection tokens are slab keys, far below.
const LISTENER: u64 = u64::MAX;
/// Token of the shutdown eventfd.
const WAKE: u64 = u64::MAX - 1;
/// Connections accepted per round, so a connect flood cannot starve open connections
/// (level-triggered: the listener is reported again if more wait).
const ACCEPT_BUDGET: usize = 64;

/// epoll bits for an echo interest.
fn bits(wants: Wants) -> u32 {
    (if wants.read { epoll::READ } else { 0 }) | (if wants.write { epoll::WRITE } else { 0 })
}

/// The `epoll` model, as `reactor-pool models` describes it.
pub(crate) const ABOUT: About = About::new(
    "one thread, raw epoll, level-triggered; no descriptor limit, cost grows with \
     ready connections only; uses one core",
);

/// Serves until shutdown, then drains.
pub(crate) fn run(bound: Bound) -> io::Result<()> {
    let mut core = LoopCore::new(Model::Epoll, &bound, Trigger::Level, ReadUntil::ShortRead)?;
    let ep = Epoll::new()?;
    let mut listener = Some(bound.listener);
    let lfd = listener.as_ref().map_or(-1, AsRawFd::as_raw_fd);
    ep.add(lfd, epoll::READ, LISTENER)?;
    ep.add(core.wake_fd(), epoll::READ, WAKE)?;
    let mut listening = true; // whether the listener is watched (false while paused)
    let mut conns: Slab<Conn> = Slab::new();
    let mut events = Vec::with_capacity(1024);
    loop {
        if listener.is_some() && !listening && !core.admission.is_paused(Instant::now()) {
            ep.modify(lfd, epoll::READ, LISTENER)?;
            listening = true;
        }
        let timeout = core.timeout(core.now_ms(), conns.len(), false);
        match ep.wait(&mut events, timeout) {
            Err(e) if e.kind() != io::ErrorKind::Interrupted => return Err(e),
            _ => {}
        }
        let now = core.now_ms();
        let mut listener_ready = false;
        for event in &events {
            match event.u64 {
                WAKE => core.take_wake(),
                LISTENER => listener_ready = true,
                token => {
                    // The connection may have closed earlier in this batch: its slot is
                    // then empty (accepts come after the batch, so none is reused in it).
                    let key = token as usize;
                    let Some(conn) = conns.get_mut(key) else {
                        continue;
                    };
                    let reason = match core.drive(conn, now) {
                        Next::Close(reason) => Some(reason),
                        // Never `resume`: level-triggered epoll reports the unread bytes of a
                        // yielded connection again on the next wait.
                        Next::Wait { interest, .. } => {
                            let fd = conn.stream.as_raw_fd();
                            if interest == conn.watching {
                                None
                            } else if ep.modify(fd, bits(interest), token).is_ok() {
                                conn.watching = interest;
                                None
                            } else {
                                Some(CloseReason::Error)
                            }
                        }
                    };
                    if let Some(reason) = reason {
                        // Closing the descriptor removes it from the epoll set.
                        let mut conn = conns.remove(key);
                        core.closed(reason, &mut conn);
                    }
                }
            }
        }
        if let (Some(l), true) = (&listener, listener_ready) {
            if accept(&mut core, &ep, l, &mut conns, now, ACCEPT_BUDGET) {
                ep.modify(lfd, 0, LISTENER)?;
                listening = false;
            }
        }
        if core.should_stop_accepting() {
            // Connections whose handshake completed before the request are served, not reset.
            if let (Some(l), true) = (&listener, listening) {
                accept(&mut core, &ep, l, &mut conns, now, usize::MAX);
            }
            listener = None; // closed: the port is released, new connects are refused
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

/// Accepts up to `budget` connections and watches them for reading. Returns whether
/// accepting failed and is paused.
fn accept(
    core: &mut LoopCore,
    ep: &Epoll,
    l: &Listener,
    conns: &mut Slab<Conn>,
    now: u64,
    budget: usize,
) -> bool {
    for _ in 0..budget {
        match core.admission.accept(l, Mode::NonBlocking, conns.len()) {
            Accepted::Conn(stream) => {
                let log = core.admit(&stream);
                let mut conn = Conn::new(stream, now, log);
                let entry = conns.vacant_entry();
                match ep.add(conn.stream.as_raw_fd(), epoll::READ, entry.key() as u64) {
                    Ok(()) => drop(entry.insert(conn)),
                    Err(_) => core.closed(CloseReason::Error, &mut conn),
                }
            }
            Accepted::Empty => break,
            Accepted::Paused => return true,
        }
    }
    false
}
