//! `poll` model: one thread, `poll(2)` over a growable `pollfd` array.
//!
//! Layout: `fds[0]` is the shutdown eventfd, `fds[1]` the listener, and `fds[2 + i]` watches
//! `conns[i]`. A closed connection is swap-removed from both vectors (O(1), order does not
//! matter to `poll`); the scan then re-examines index `i`, which now holds the former last
//! entry. There is no descriptor-number limit, but the kernel walks every entry on every
//! call. Level-triggered like `epoll`: a short read counts as drained, and a connection that
//! spent its read budget keeps `POLLIN` and is reported again.

use std::io;
use std::os::fd::AsRawFd;
use std::time::Instant;

use super::Model;
use super::conn::Conn;
use super::event_loop::LoopCore;
use super::{About, Bound};
use crate::close::CloseReason;
use crate::policy::Wants;
use crate::policy::admission::Accepted;
use crate::policy::interest::{Next, Trigger};
use crate::sys::poll::{self, PollFd};
use crate::sys::socket::{Listener, Mode};
use crate::worker::ReadUntil;

/// Index of the shutdown eventfd in the array.
const WAKE: usize = 0;
/// Index of the listener in the array (its `fd` is -1 once closed: poll skips it).
const LISTENER: usize = 1;
/// Entries before the first connection.
const FIRST_CONN: usize = 2;
/// Connections accepted per round (level-triggered: the rest are reported again).
const ACCEPT_BUDGET: usize = 64;

fn bits(wants: Wants) -> poll::Events {
    (if wants.read { poll::READ } else { 0 }) | (if wants.write { poll::WRITE } else { 0 })
}

/// The `poll` model, as `reactor-pool models` describes it.
pub(crate) const ABOUT: About = About::new(
    "one thread, growable pollfd array with swap-remove; no descriptor limit, but \
     the kernel scans every connection on every call",
);

/// Serves until shutdown, then drains.
pub(crate) fn run(bound: Bound) -> io::Result<()> {
    let mut core = LoopCore::new(Model::Poll, &bound, Trigger::Level, ReadUntil::ShortRead)?;
    let mut listener = Some(bound.listener);
    let lfd = listener.as_ref().map_or(-1, AsRawFd::as_raw_fd);
    let mut fds: Vec<PollFd> = vec![
        poll::entry(core.wake_fd(), poll::READ),
        poll::entry(lfd, poll::READ),
    ];
    let mut conns: Vec<Conn> = Vec::new();
    loop {
        // Not watching the listener while paused, or poll would report it at once (spin).
        let accepting = listener.is_some() && !core.admission.is_paused(Instant::now());
        fds[LISTENER].events = if accepting { poll::READ } else { 0 };
        let timeout = core.timeout(core.now_ms(), conns.len(), false);
        match poll::poll(&mut fds, timeout) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
            Ok(_) => {}
        }
        let now = core.now_ms();
        if fds[WAKE].revents != 0 {
            core.take_wake();
        }
        let mut i = FIRST_CONN;
        while i < fds.len() {
            if fds[i].revents == 0 {
                i += 1;
                continue;
            }
            let conn = &mut conns[i - FIRST_CONN];
            let reason = match core.drive(conn, now) {
                Next::Close(reason) => reason,
                // Never `resume`: a yielded connection keeps POLLIN and is reported again.
                Next::Wait { interest, .. } => {
                    conn.watching = interest;
                    fds[i].events = bits(interest);
                    i += 1;
                    continue;
                }
            };
            fds.swap_remove(i);
            let mut conn = conns.swap_remove(i - FIRST_CONN);
            core.closed(reason, &mut conn);
        }
        if let (Some(l), true) = (&listener, fds[LISTENER].revents != 0) {
            accept(&mut core, l, &mut fds, &mut conns, now, ACCEPT_BUDGET);
        }
        if core.should_stop_accepting() {
            // Connections whose handshake completed before the request are served, not reset.
            if let (Some(l), false) = (&listener, core.admission.is_paused(Instant::now())) {
                accept(&mut core, l, &mut fds, &mut conns, now, usize::MAX);
            }
            listener = None;
            fds[LISTENER].fd = -1;
            core.begin_drain(now, conns.len());
        }
        if core.sweep_due(now) {
            let mut i = 0;
            while i < conns.len() {
                if core.is_idle(&conns[i], now) {
                    fds.swap_remove(i + FIRST_CONN);
                    let mut conn = conns.swap_remove(i);
                    core.closed(CloseReason::IdleTimeout, &mut conn);
                } else {
                    i += 1;
                }
            }
        }
        if core.finish_round(now, &mut conns) {
            return Ok(());
        }
    }
}

/// Accepts up to `budget` connections, appending an entry for each (the pause, if accepting
/// fails, is the admission's).
fn accept(
    core: &mut LoopCore,
    l: &Listener,
    fds: &mut Vec<PollFd>,
    conns: &mut Vec<Conn>,
    now: u64,
    budget: usize,
) {
    for _ in 0..budget {
        let Accepted::Conn(stream) = core.admission.accept(l, Mode::NonBlocking, conns.len())
        else {
            return;
        };
        let log = core.admit(&stream);
        fds.push(poll::entry(stream.as_raw_fd(), poll::READ));
        conns.push(Conn::new(stream, now, log));
    }
}
