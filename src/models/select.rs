//! `select` model: one thread, `select(2)` over `fd_set`s copied from master sets each round.
//!
//! An `fd_set` holds descriptors `0..FD_SETSIZE` (1024) only; `FD_SET` on a larger one
//! writes past the bitmap and corrupts memory. So every accepted socket is checked first: a
//! descriptor >= `FD_SETSIZE` is refused (closed, with a rate-limited warning) and never
//! reaches an `fd_set` ([`FdSet::insert`] would refuse it too). The kernel scans
//! `0..=maxfd` on every call and so does this loop: the cost grows with the highest
//! descriptor, not with the number of ready ones. Level-triggered, like `poll`.

use std::io;
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use tracing::warn;

use super::Model;
use super::conn::Conn;
use super::event_loop::LoopCore;
use super::{About, Bound};
use crate::close::CloseReason;
use crate::policy::Wants;
use crate::policy::admission::Accepted;
use crate::policy::interest::{Next, Trigger};
use crate::ratelimit::RateLimit;
use crate::sys::select::{self, FD_SETSIZE, FdSet};
use crate::sys::socket::{Listener, Mode};
use crate::worker::ReadUntil;

/// Connections accepted per round (level-triggered: the rest are reported again).
const ACCEPT_BUDGET: usize = 64;

/// The master sets: what each descriptor is watched for. Copied before every `select`.
#[derive(Debug, Default)]
struct Watched {
    read: FdSet,
    write: FdSet,
}

impl Watched {
    /// Makes `conn`'s entries match `interest`.
    fn update(&mut self, conn: &mut Conn, interest: Wants) {
        let fd = conn.stream.as_raw_fd();
        conn.watching = interest;
        // Both inserts succeed: only descriptors below FD_SETSIZE are ever accepted.
        for (set, wanted) in [
            (&mut self.read, conn.watching.read),
            (&mut self.write, conn.watching.write),
        ] {
            if wanted {
                let _ = set.insert(fd);
            } else {
                set.remove(fd);
            }
        }
    }

    fn forget(&mut self, conn: &Conn) {
        self.read.remove(conn.stream.as_raw_fd());
        self.write.remove(conn.stream.as_raw_fd());
    }
}

/// The `select` model, as `reactor-pool models` describes it.
pub(crate) const ABOUT: About = About {
    // Descriptors `select` can watch (`FD_SETSIZE`), hence its connection ceiling.
    connection_ceiling: Some(crate::sys::select::FD_SETSIZE),
    ..About::new(
        "one thread, fd_set copied each round; descriptors >= 1024 (FD_SETSIZE) are \
         refused, and every call scans 0..maxfd",
    )
};

/// Serves until shutdown, then drains.
pub(crate) fn run(bound: Bound) -> io::Result<()> {
    let mut core = LoopCore::new(Model::Select, &bound, Trigger::Level, ReadUntil::ShortRead)?;
    let mut listener = Some(bound.listener);
    let wake = core.wake_fd();
    let not_watchable = |e: select::OutOfRange| io::Error::other(format!("select model: {e}"));
    if let Some(l) = &listener {
        if !select::fits(l.as_raw_fd()) {
            return Err(not_watchable(select::OutOfRange(l.as_raw_fd())));
        }
    }
    // Connections and the eventfd; the listener is added to each round's copy while accepting.
    let mut master = Watched::default();
    master.read.insert(wake).map_err(not_watchable)?;
    let mut conns: Vec<Conn> = Vec::new();
    let mut refused_log = RateLimit::new(Duration::from_secs(1));
    loop {
        // Not watching the listener while paused, or select would report it at once (spin).
        let paused = core.admission.is_paused(Instant::now());
        let accepting = listener
            .as_ref()
            .filter(|_| !paused)
            .map(AsRawFd::as_raw_fd);
        let (mut read, mut write) = (master.read, master.write);
        if let Some(fd) = accepting {
            read.insert(fd).map_err(not_watchable)?;
        }
        let maxfd = conns
            .iter()
            .map(|c| c.stream.as_raw_fd())
            .chain(accepting)
            .fold(wake, i32::max);
        let timeout = core.timeout(core.now_ms(), conns.len(), false);
        match select::select(maxfd as usize + 1, &mut read, &mut write, timeout) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
            Ok(_) => {}
        }
        let now = core.now_ms();
        if read.contains(wake) {
            core.take_wake();
        }
        let mut i = 0;
        while i < conns.len() {
            let fd = conns[i].stream.as_raw_fd();
            if !read.contains(fd) && !write.contains(fd) {
                i += 1;
                continue;
            }
            let reason = match core.drive(&mut conns[i], now) {
                Next::Close(reason) => reason,
                // Never `resume`: a yielded connection stays in the read set, reported again.
                Next::Wait { interest, .. } => {
                    master.update(&mut conns[i], interest);
                    i += 1;
                    continue;
                }
            };
            let mut conn = conns.swap_remove(i);
            master.forget(&conn);
            core.closed(reason, &mut conn);
        }
        let listener_ready = accepting.is_some_and(|fd| read.contains(fd));
        if let (Some(l), true) = (&listener, listener_ready) {
            accept(
                &mut core,
                l,
                &mut master,
                &mut conns,
                &mut refused_log,
                now,
                ACCEPT_BUDGET,
            );
        }
        if core.should_stop_accepting() {
            // Connections whose handshake completed before the request are served, not reset.
            if let (Some(l), false) = (&listener, core.admission.is_paused(Instant::now())) {
                accept(
                    &mut core,
                    l,
                    &mut master,
                    &mut conns,
                    &mut refused_log,
                    now,
                    usize::MAX,
                );
            }
            listener = None;
            core.begin_drain(now, conns.len());
        }
        if core.sweep_due(now) {
            let mut i = 0;
            while i < conns.len() {
                if core.is_idle(&conns[i], now) {
                    let mut conn = conns.swap_remove(i);
                    master.forget(&conn);
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

/// Accepts up to `budget` connections; refuses (closes) any whose descriptor does not fit in
/// an `fd_set`, before it gets near one.
fn accept(
    core: &mut LoopCore,
    l: &Listener,
    master: &mut Watched,
    conns: &mut Vec<Conn>,
    refused_log: &mut RateLimit,
    now: u64,
    budget: usize,
) {
    for _ in 0..budget {
        let Accepted::Conn(stream) = core.admission.accept(l, Mode::NonBlocking, conns.len())
        else {
            return;
        };
        let fd = stream.as_raw_fd();
        if !select::fits(fd) {
            if let Some(suppressed) = refused_log.check(Instant::now()) {
                warn!(
                    fd,
                    limit = FD_SETSIZE,
                    suppressed,
                    "select cannot watch a descriptor >= FD_SETSIZE; closing connection"
                );
            }
            continue; // `stream` is dropped: closed
        }
        let log = core.admit(&stream);
        let mut conn = Conn::new(stream, now, log);
        master.update(&mut conn, Wants::READ);
        conns.push(conn);
    }
}
