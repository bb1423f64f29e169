//! The comparison models: the same echo service on raw syscalls ([`crate::sys`]), one file
//! per I/O model, each driving the shared sans-IO [`Echo`](crate::worker::Echo) core so a
//! comparison measures the I/O model and nothing else.
//!
//! | model | file | shape |
//! |---|---|---|
//! | `epoll` | [`epoll`] | one thread, level-triggered epoll |
//! | `epoll-et` | [`epoll_et`] | one thread, edge-triggered epoll, drains to `EAGAIN` |
//! | `poll` | [`poll`] | one thread, growable `pollfd` array, swap-remove |
//! | `select` | [`select`] | one thread, `fd_set` copied each round, fds < `FD_SETSIZE` only |
//! | `thread` | [`thread`] | one thread per connection, blocking I/O |
//! | `fork` | [`fork`] | one child process per connection, blocking I/O |
//! | `blocking` | [`blocking`] | iterative: one connection at a time |
//! | `uring` | [`uring`] | one thread, io_uring completions, batched submissions |
//!
//! Shared pieces: [`accept`] (`AcceptWait` for the models that accept on one thread and serve
//! on others; admission itself is [`crate::policy::admission`]), [`conn`] (`Conn`, and `Transport` for raw sockets), [`event_loop`] (`LoopCore`:
//! clock, idle sweep, shutdown wake-up and drain deadline of the single-threaded loops),
//! [`blocking_io`] (`Registry` of live sockets, the blocking serve loop).
//!
//! Every model: serves on the listener [`Server::bind`](crate::Server::bind) made (through
//! [`crate::listener::bind`]) or a supervisor passed down, closes it the moment shutdown is
//! requested, finishes open connections within `shutdown_timeout`, then returns.

pub mod accept;
pub mod blocking;
pub mod blocking_io;
pub mod conn;
pub mod epoll;
pub mod epoll_et;
pub mod event_loop;
pub mod fork;
pub mod poll;
pub mod select;
pub mod thread;
pub mod uring;

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;

use crate::config::{Config, Model};
use crate::listener::BindError;
use crate::live::LiveSettings;
use crate::shutdown::ShutdownHandle;
use crate::stats::Stats;
use crate::sys::signal::SignalPipe;
use crate::sys::socket::Listener;

/// What every model's `run` receives: the bound listener and the settings.
#[derive(Debug)]
pub struct Bound {
    /// The listening socket (non-blocking, close-on-exec, configured backlog).
    pub listener: Listener,
    /// The validated configuration.
    pub config: Config,
    /// The shutdown trigger.
    pub shutdown: ShutdownHandle,
    /// Settings a reload changes while running (`idle_timeout`, `max_connections`,
    /// `nodelay`, `shutdown_timeout`): read per accept, per loop round, or when the drain
    /// starts, never from `config`.
    pub live: Arc<LiveSettings>,
    /// Counters for the metrics endpoint; these models use one block (worker 0).
    pub stats: Arc<Stats>,
    /// The fork model's signal handlers (installed at bind time, so a signal that arrives
    /// right after `listening on` is printed is already handled); `None` for other models.
    pub signals: Option<SignalPipe>,
    /// What the fork model runs on SIGHUP (the caller's reload); other models get SIGHUP
    /// through the caller's signal thread.
    pub reload: Option<ReloadHook>,
}

/// A reload action run on the server's own thread.
pub struct ReloadHook(pub Box<dyn FnMut() + Send>);

impl fmt::Debug for ReloadHook {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ReloadHook")
    }
}

/// A bound server of one of the raw-syscall models, ready to run.
#[derive(Debug)]
pub struct ModelServer {
    /// Which model `run` drives.
    model: Model,
    /// Everything `run` needs.
    bound: Bound,
    /// The address actually bound (port 0 resolved).
    local_addr: SocketAddr,
}

impl ModelServer {
    /// Serves on a listening socket (bound by [`Server::bind`](crate::Server::bind), or
    /// inherited from a supervisor) for `config.model`, any model except `reactor`;
    /// `config.listen` and `config.backlog` are not used. The socket is made non-blocking here.
    pub fn from_listener(
        config: &Config,
        std_listener: std::net::TcpListener,
        shutdown: ShutdownHandle,
        live: Arc<LiveSettings>,
        stats: Arc<Stats>,
    ) -> Result<ModelServer, BindError> {
        let err = |source| BindError {
            addr: config.listen,
            source,
        };
        let local_addr = std_listener
            .set_nonblocking(true)
            .and_then(|()| std_listener.local_addr())
            .map_err(err)?;
        if config.model == Model::Uring {
            uring::probe().map_err(err)?;
        }
        let signals = match config.model {
            Model::Fork => Some(SignalPipe::install(fork::SIGNALS).map_err(err)?),
            _ => None,
        };
        Ok(ModelServer {
            model: config.model,
            bound: Bound {
                listener: Listener::from(std_listener),
                config: config.clone(),
                shutdown,
                live,
                stats,
                signals,
                reload: None,
            },
            local_addr,
        })
    }

    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Whether this server handles SIGINT/SIGTERM/SIGHUP itself (the fork model), so the
    /// caller must not install a signal-handling thread.
    pub fn handles_signals(&self) -> bool {
        self.bound.signals.is_some()
    }

    /// Sets what the fork model runs on SIGHUP (ignored by the other models).
    pub fn on_reload(&mut self, reload: Box<dyn FnMut() + Send>) {
        self.bound.reload = Some(ReloadHook(reload));
    }

    /// Serves until shutdown is requested and open connections have drained (or the
    /// shutdown timeout passed).
    pub fn run(self) -> io::Result<()> {
        let bound = self.bound;
        match self.model {
            Model::Epoll => epoll::run(bound),
            Model::EpollEt => epoll_et::run(bound),
            Model::Poll => poll::run(bound),
            Model::Select => select::run(bound),
            Model::Thread => thread::run(bound),
            Model::Fork => fork::run(bound),
            Model::Blocking => blocking::run(bound),
            Model::Uring => uring::run(bound),
            Model::Reactor => Err(io::Error::other(
                "the reactor model is not a raw-syscall model",
            )),
        }
    }
}
