//! `reactor` model: the catalogue's entry for the reactor pool, whose code lives in
//! [`crate::reactor`] (acceptor, dispatch, pool) and [`crate::worker`] (the workers).

use std::io;

use super::{About, Bound};

/// The reactor model, as `reactor-pool models` describes it.
pub(crate) const ABOUT: About = About {
    uses_workers: true,
    ..About::new(
        "acceptor thread + N worker threads, each with its own mio (epoll) poller; \
         connections handed round-robin through channels",
    )
};

/// Serves `bound` with the reactor pool.
pub(crate) fn run(bound: Bound) -> io::Result<()> {
    let Bound {
        listener,
        settings,
        shutdown,
        live,
        stats,
        udp,
        ..
    } = bound;
    crate::reactor::pool::run(
        listener.into(),
        settings.workers,
        settings.buffer_size,
        shutdown,
        live,
        stats,
        udp,
    )
}
