//! reactor-pool: a multi-threaded reactor-pool TCP echo server (RFC 862), and a lab for
//! comparing I/O models on the same service.
//!
//! Module map:
//! - [`config`]: `Config` (file + flags + defaults) and its validation.
//! - [`server`]: `Server`, the entry point: bind, `local_addr`, `run`, `shutdown_handle`.
//! - [`shutdown`]: `ShutdownHandle`, the graceful-shutdown protocol.
//! - [`reactor`]: the acceptor, round-robin dispatch and the worker pool.
//! - [`worker`]: each worker's event loop, its connections, and the sans-IO echo core.
//! - [`listener`]: the listening socket (socket2, configurable backlog).
//! - [`policy`]: the rules every server shares, one home each: close reasons, the interest
//!   rule, loop housekeeping, admission.
//! - [`ratelimit`]: rate-limited logging for floods of identical events.
//! - [`models`]: the comparison models (epoll, epoll-et, poll, select, thread, fork,
//!   blocking, uring), one file each, on the raw syscalls of [`sys`].
//! - [`sys`]: the only home of raw syscalls: small safe wrappers returning `io::Result`.
//! - [`live`]: `LiveSettings`, the settings a reload changes in a running server.
//! - [`stats`]: `Stats`, per-worker lock-free counters summed for the metrics endpoint.
//! - [`metrics`]: the Prometheus text format and its small HTTP endpoint.
//! - [`ops`]: running it for real: daemon, supervisor, signals and reload, privilege drop,
//!   pid file, syslog/file logging, systemd readiness.
//! - [`client`]: `reactor-pool client`, a line-at-a-time echo client.
//!
//! Threads of the reactor model:
//! ```text
//! acceptor thread ──(channel + waker, round robin)──▶ worker 0 … worker N-1
//!   listener, mio::Poll                                 mio::Poll, Slab<Connection>
//! ```

pub mod client;
pub mod config;
pub mod listener;
pub mod live;
pub mod metrics;
pub mod models;
pub mod ops;
pub mod policy;
pub mod ratelimit;
pub mod reactor;
pub mod server;
pub mod shutdown;
pub mod stats;
pub mod sys;
pub mod worker;

pub use config::{Config, ConfigError, Model, Overrides};
pub use listener::BindError;
pub use server::Server;
pub use shutdown::ShutdownHandle;
