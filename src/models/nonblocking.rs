//! `nonblocking` model: one thread, no readiness API at all. Every socket is `O_NONBLOCK`;
//! each round tries `accept`, then drives every connection in turn (the echo writes what it
//! holds, then reads until the socket has nothing more), and finds out what was ready only
//! by trying.
//!
//! A round that moved no byte, accepted nothing and closed nothing backs off ([`Backoff`]):
//! it yields once, then sleeps 50 µs doubling up to `poll_interval`. That is the model's
//! trade: an idle server still wakes every `poll_interval` and tries one `recv` per open
//! connection, and the first echo after a quiet spell waits up to `poll_interval`; a busy
//! server never sleeps, and pays one `EAGAIN` read per idle connection per round.
//!
//! Level semantics without a poller: a short read counts as drained
//! ([`ReadUntil::ShortRead`]), since the next round tries again anyway; a connection that
//! spent its read budget (`Progress::Yielded`) or is paused by backpressure is simply
//! driven again next round. Shutdown and reload need no wake-up: the loop re-reads both each
//! round, and no sleep is longer than `poll_interval`.

use std::io;
use std::thread;
use std::time::Instant;

use super::backoff::{Backoff, Pause};
use super::conn::Conn;
use super::event_loop::LoopCore;
use super::{About, Bound, Model};
use crate::close::CloseReason;
use crate::policy::admission::Accepted;
use crate::policy::interest::{Next, Trigger};
use crate::sys::socket::{Listener, Mode};
use crate::worker::{Moved, ReadUntil};

/// Connections accepted per round, so a connect flood cannot starve open connections (the
/// next round takes more).
const ACCEPT_BUDGET: usize = 64;

/// The `nonblocking` model, as `reactor-pool models` describes it.
pub(crate) const ABOUT: About = About {
    uses_poll_interval: true,
    ..About::new(
        "one thread, no readiness API: tries accept, then every connection's read and \
         write in turn; idle rounds back off up to poll_interval (latency vs idle CPU)",
    )
};

/// Serves until shutdown, then drains.
pub(crate) fn run(bound: Bound) -> io::Result<()> {
    let mut core = LoopCore::new(
        Model::Nonblocking,
        &bound,
        Trigger::Level,
        ReadUntil::ShortRead,
    )?;
    let mut backoff = Backoff::new(bound.settings.poll_interval);
    let mut listener = Some(bound.listener);
    let mut conns: Vec<Conn> = Vec::new();
    loop {
        let now = core.now_ms();
        let mut progressed = false;
        if let (Some(l), false) = (&listener, core.admission.is_paused(Instant::now())) {
            progressed |= accept(&mut core, l, &mut conns, now, ACCEPT_BUDGET) > 0;
        }
        let mut i = 0;
        while i < conns.len() {
            // The interest is not used: every connection is tried every round. One that
            // yielded (read budget spent) moved bytes, so the next round comes at once.
            let (next, moved) = core.drive_moved(&mut conns[i], now);
            let reason = match next {
                Next::Close(reason) => reason,
                Next::Wait { .. } => {
                    progressed |= moved != Moved::default();
                    i += 1;
                    continue;
                }
            };
            // Order does not matter to this loop: swap-remove, then look at index `i` again
            // (it now holds the former last connection).
            let mut conn = conns.swap_remove(i);
            core.closed(reason, &mut conn);
            progressed = true;
        }
        if core.should_stop_accepting() {
            // Connections whose handshake completed before the request are served, not reset.
            if let (Some(l), false) = (&listener, core.admission.is_paused(Instant::now())) {
                accept(&mut core, l, &mut conns, now, usize::MAX);
            }
            listener = None;
            core.begin_drain(now, conns.len());
        }
        if core.sweep_due(now) {
            let mut i = 0;
            while i < conns.len() {
                if core.is_idle(&conns[i], now) {
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
        match backoff.after_round(progressed) {
            Pause::None => {}
            Pause::Yield => thread::yield_now(),
            Pause::Sleep(d) => thread::sleep(d),
        }
    }
}

/// Accepts up to `budget` connections; returns how many (the pause, if accepting fails, is
/// admission's).
fn accept(
    core: &mut LoopCore,
    l: &Listener,
    conns: &mut Vec<Conn>,
    now: u64,
    budget: usize,
) -> usize {
    let mut accepted = 0;
    while accepted < budget {
        let Accepted::Conn(stream) = core.admission.accept(l, Mode::NonBlocking, conns.len())
        else {
            break;
        };
        let log = core.admit(&stream);
        conns.push(Conn::new(stream, now, log));
        accepted += 1;
    }
    accepted
}
