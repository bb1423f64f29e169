//! reactor-pool: a multi-threaded reactor-pool TCP echo server (RFC 862), and a lab for
//! comparing I/O models on the same service. Linux only: other targets stop at a
//! `compile_error!`.
//!
//! Public API (what `main`, the tests, the benches and `crates/bench` use; everything else
//! is `pub(crate)`, so `unreachable_pub` and dead-code warnings hold):
//! - [`Server`] (bind, `local_addr`, `run`, `shutdown_handle`), [`ShutdownHandle`],
//!   [`BindError`].
//! - [`config`]: [`Config`] (file + flags + defaults) and its validation, [`Overrides`],
//!   [`ConfigError`], `parse_duration`, `MAX_WORKERS`.
//! - [`Model`], the model catalogue (names, descriptions), and [`for_each_model!`], the one
//!   list of models the tests' `per_model!` is built from.
//! - [`ops`]: `serve` and its process-management flags (`OpsArgs`), the exit codes.
//! - [`client`]: `reactor-pool client`, a line-at-a-time echo client.
//! - For the criterion benches: [`worker`] (`Echo`, `EchoOptions`, `Transport`, `Worker`,
//!   `WorkerSettings`), [`reactor::dispatch`], [`policy::Progress`], [`live::LiveSettings`],
//!   [`stats::Stats`].
//! - For the load generator: [`sys`]'s `rlimit`, `process` (kill, parent-death signal, clock
//!   ticks) and `socket::set_bind_address_no_port`.
//!
//! Module map (dependencies point down the list: rules and plumbing first, then the echo
//! core, the servers, and running them):
//! - `sys`: the only home of raw syscalls: small safe wrappers returning `io::Result`.
//! - `wakers`: the one registry of wake-up callbacks (shutdown, reload).
//! - `shutdown`: `ShutdownHandle`, the graceful-shutdown protocol.
//! - `config`: `Config` and its validation; `live`: `LiveSettings`, what a reload changes.
//! - `ratelimit`: rate-limited logging for floods of identical events.
//! - `close`: `CloseReason`, why a connection ended (counted by `stats`, decided by the
//!   rules, the echo core and the loops).
//! - `stats`: per-worker lock-free counters summed for the metrics endpoint.
//! - `policy`: the rules every server shares, one home each: the interest
//!   rule, loop housekeeping, admission.
//! - `worker`: the sans-IO echo core, and each reactor worker's event loop and connections.
//! - `udp`: UDP echo in the reactor's workers (`SO_REUSEPORT`, `recvmmsg`/`sendmmsg`), with
//!   the loop-refusal rule and a per-source rate limit.
//! - `reactor`: the reactor model's acceptor, round-robin dispatch and worker pool.
//! - `models`: the model catalogue (`Model`, one list), what every model receives (`Bound`,
//!   `Settings`), and one file per model (reactor, epoll, epoll-et, poll, select, thread,
//!   fork, blocking, nonblocking, sigio, uring) with the pieces they share.
//! - `listener`: the listening socket (socket2, configurable backlog).
//! - `server`: `Server`, bind and run the configured model.
//! - `metrics`: the Prometheus text format and its small HTTP endpoint.
//! - `ops`: running it for real: daemon, supervisor, signals and reload, privilege drop,
//!   pid file, syslog/file logging, systemd readiness.
//! - `client`: the echo client.
//!
//! Threads of the reactor model:
//! ```text
//! acceptor thread ──(channel + waker, round robin)──▶ worker 0 … worker N-1
//!   listener, mio::Poll                                 mio::Poll, Slab<Connection>
//! ```

// The raw-syscall layer (`sys`) calls Linux interfaces directly: epoll, eventfd, accept4,
// pipe2, prctl, /proc. Say so at once rather than with a page of unresolved `libc` names.
#[cfg(not(target_os = "linux"))]
compile_error!(
    "reactor-pool supports Linux only: src/sys calls epoll, eventfd, accept4, pipe2, prctl and \
     reads /proc directly"
);

pub mod client;
mod close;
pub mod config;
mod listener;
pub mod live;
mod metrics;
mod models;
mod named;
pub mod ops;
pub mod policy;
mod ratelimit;
pub mod reactor;
mod server;
mod shutdown;
pub mod stats;
pub mod sys;
mod udp;
mod wakers;
pub mod worker;

pub use config::{Config, ConfigError, Overrides};
pub use listener::BindError;
pub use models::Model;
pub use server::Server;
pub use shutdown::ShutdownHandle;
