//! The comparison models: the same echo service on raw syscalls ([`crate::sys`]), one file
//! per I/O model, each driving the shared sans-IO [`Echo`](crate::worker::Echo) core so a
//! comparison measures the I/O model and nothing else.
//!
//! Every model is listed once in the [`catalogue`], which generates [`Model`] and the
//! dispatch to each file's `run(Bound)`.
//!
//! | model | file | shape |
//! |---|---|---|
//! | `reactor` | [`reactor`] | acceptor + N mio workers ([`crate::reactor`], [`crate::worker`]) |
//! | `epoll` | [`epoll`] | one thread, level-triggered epoll |
//! | `epoll-et` | [`epoll_et`] | one thread, edge-triggered epoll, drains to `EAGAIN` |
//! | `poll` | [`poll`] | one thread, growable `pollfd` array, swap-remove |
//! | `select` | [`select`] | one thread, `fd_set` copied each round, fds < `FD_SETSIZE` only |
//! | `thread` | [`thread`] | one thread per connection, blocking I/O |
//! | `fork` | [`fork`] | one child process per connection, blocking I/O |
//! | `blocking` | [`blocking`] | iterative: one connection at a time |
//! | `nonblocking` | [`nonblocking`] | one thread, no readiness API: tries every socket in turn |
//! | `sigio` | [`sigio`] | one thread, signal-driven: a real-time signal per readiness change |
//! | `uring` | [`uring`] | one thread, io_uring completions, batched submissions |
//!
//! Shared pieces: [`accept`] (`AcceptWait` for the models that accept on one thread and serve
//! on others; admission itself is [`crate::policy::admission`]), [`conn`] (`Conn`),
//! [`event_loop`] (`LoopCore`: clock, idle sweep, shutdown wake-up and drain deadline of the
//! single-threaded loops), [`blocking_io`] (`Registry` of
//! live sockets, the blocking serve loop), [`backoff`] (the polling loop's pause after idle
//! rounds).
//!
//! Every model: serves on the listener [`Server::bind`](crate::Server::bind) made (through
//! [`crate::listener::bind`]) or a supervisor passed down, closes it the moment shutdown is
//! requested, finishes open connections within `shutdown_timeout`, then returns. It reads
//! [`Settings`] (fixed at start) and [`LiveSettings`] (changed by a reload), never `Config`.

pub(crate) mod accept;
pub(crate) mod backoff;
pub(crate) mod blocking;
pub(crate) mod blocking_io;
pub(crate) mod catalogue;
pub(crate) mod conn;
pub(crate) mod epoll;
pub(crate) mod epoll_et;
pub(crate) mod event_loop;
pub(crate) mod fork;
pub(crate) mod nonblocking;
pub(crate) mod poll;
pub(crate) mod reactor;
pub(crate) mod select;
pub(crate) mod sigio;
pub(crate) mod thread;
pub(crate) mod uring;

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

pub(crate) use catalogue::About;
pub use catalogue::Model;
pub(crate) use catalogue::run;

use crate::live::LiveSettings;
use crate::shutdown::ShutdownHandle;
use crate::stats::Stats;
use crate::sys::signal::SignalPipe;
use crate::sys::socket::Listener;

/// What a model reads from the configuration when it starts; the settings a reload changes
/// are in [`LiveSettings`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Settings {
    /// Which model runs.
    pub(crate) model: Model,
    /// Worker threads (models whose [`About::uses_workers`] is set; never 0).
    pub(crate) workers: usize,
    /// How connections reach the workers (the reactor model).
    pub(crate) dispatch: crate::reactor::Dispatch,
    /// Per-connection bound on unsent bytes, and the size of each read buffer.
    pub(crate) buffer_size: usize,
    /// Stack of each connection thread (models whose [`About::uses_thread_stack_size`] is set).
    pub(crate) thread_stack_size: usize,
    /// Longest pause after an idle round (models whose [`About::uses_poll_interval`] is set).
    pub(crate) poll_interval: Duration,
}

/// What every model's `run` receives: the bound listener and the settings.
#[derive(Debug)]
pub(crate) struct Bound {
    /// The listening socket (non-blocking, close-on-exec, configured backlog).
    pub(crate) listener: Listener,
    /// The reactor's `--dispatch reuseport`: the listeners of workers 1..N, bound at bind time
    /// (before privileges are dropped: joining a `SO_REUSEPORT` group takes the binding
    /// user) in the group of `listener`, on its port. Empty otherwise.
    pub(crate) reuseport_group: Vec<std::net::TcpListener>,
    /// The settings read at start.
    pub(crate) settings: Settings,
    /// The shutdown trigger.
    pub(crate) shutdown: ShutdownHandle,
    /// Settings a reload changes while running (`idle_timeout`, `max_connections`,
    /// `nodelay`, `shutdown_timeout`): read per accept, per loop round, or when the drain
    /// starts.
    pub(crate) live: Arc<LiveSettings>,
    /// Counters for the metrics endpoint: one block per worker for models that use workers,
    /// else one block (worker 0).
    pub(crate) stats: Arc<Stats>,
    /// The handlers of a model that handles its own signals ([`About::signals`], the fork
    /// model), installed at bind time so a signal that arrives right after `listening on` is
    /// printed is already handled; `None` for other models.
    pub(crate) signals: Option<SignalPipe>,
    /// What the fork model runs on SIGHUP (the caller's reload); other models get SIGHUP
    /// through the caller's signal thread.
    pub(crate) reload: Option<ReloadHook>,
    /// With `udp`: one `SO_REUSEPORT` UDP socket per worker on the listener's address, bound
    /// with it so the port is held before `listening on` is printed; empty otherwise.
    pub(crate) udp: Vec<std::net::UdpSocket>,
}

/// A reload action run on the server's own thread.
pub(crate) struct ReloadHook(pub Box<dyn FnMut() + Send>);

impl fmt::Debug for ReloadHook {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ReloadHook")
    }
}
