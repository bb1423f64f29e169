//! The worker side of the reactor pool: one event loop per thread, its connections, and the
//! echo state machine they share with every other model.
//!
//! - `echo`: `Echo`, the sans-IO connection state machine, and the `Transport` trait (its
//!   `Progress` and the rule a loop applies to it live in `crate::policy::interest`).
//! - `echo_state`: `EchoState`, the echo as counts and flags (received, sent, the peer's
//!   FIN → what to send, whether to read, when to finish), which `Echo` and the `uring`
//!   model's completion driver both run on.
//! - `buffer`: `Pending`, the bounded unsent-bytes buffer that owns memory only when used.
//! - `connection`: `Connection`, a socket plus its echo state and timer.
//! - `event_loop`: `Worker`, the thread that owns a `mio::Poll` and a slab of connections.

pub(crate) mod buffer;
pub(crate) mod connection;
pub(crate) mod echo;
pub(crate) mod echo_state;
pub(crate) mod event_loop;

#[cfg(test)]
mod echo_props;
#[cfg(test)]
mod echo_state_props;
#[cfg(test)]
mod sim_socket;

pub use echo::{Driven, Echo, EchoOptions, Moved, ReadUntil, Transport};
pub(crate) use echo_state::EchoState;
pub use event_loop::{Command, Worker, WorkerSettings};
