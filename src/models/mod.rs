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
//!
//! Shared pieces: [`accept`] (`Gate`: `max_connections`, back-off on descriptor exhaustion,
//! rate-limited logs), [`conn`] (`Conn`, and `Transport` for raw sockets), [`event_loop`]
//! (`LoopCore`: clock, idle sweep, shutdown wake-up and drain deadline of the single-threaded
//! loops), [`blocking_io`] (`Registry` of live sockets, the blocking serve loop).
//!
//! Every model: binds through [`crate::listener::bind`], closes the listener the moment
//! shutdown is requested, finishes open connections within `shutdown_timeout`, then returns.

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

use std::io;
use std::net::SocketAddr;

use crate::config::{Config, Model};
use crate::listener::{self, BindError};
use crate::shutdown::ShutdownHandle;
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
    /// The fork model's signal handlers (installed at bind time, so a signal that arrives
    /// right after `listening on` is printed is already handled); `None` for other models.
    pub signals: Option<SignalPipe>,
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
    /// Binds the listening socket for `config.model` (any model except `reactor`).
    pub fn bind(config: &Config, shutdown: ShutdownHandle) -> Result<ModelServer, BindError> {
        let err = |source| BindError {
            addr: config.listen,
            source,
        };
        let std_listener = listener::bind(config.listen, config.backlog)?;
        let local_addr = std_listener.local_addr().map_err(err)?;
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
                signals,
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
            Model::Reactor => Err(io::Error::other(
                "the reactor model is not a raw-syscall model",
            )),
        }
    }
}
