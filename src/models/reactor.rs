//! `reactor` model: the catalogue's entry for the reactor pool, whose code lives in
//! [`crate::reactor`] (acceptor, dispatch, pool) and [`crate::worker`] (the workers).

use super::About;

/// The reactor model, as `reactor-pool models` describes it.
pub(crate) const ABOUT: About = About {
    uses_workers: true,
    ..About::new(
        "acceptor thread + N worker threads, each with its own mio (epoll) poller; \
         connections handed round-robin through channels",
    )
};

pub(crate) use crate::reactor::pool::run;
