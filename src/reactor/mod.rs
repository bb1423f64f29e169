//! The reactor pool: one acceptor thread, round-robin dispatch, N worker threads.
//!
//! ```text
//!                    ┌──────────────────────────┐
//!   clients ──SYN──▶ │ Acceptor (mio::Poll)     │  accept until WouldBlock
//!                    │  listener + shutdown wake│
//!                    └────────────┬─────────────┘
//!                   Dispatcher: conn i ─▶ worker i mod N
//!                   push Command::NewConn, then one Waker::wake per batch
//!          ┌──────────────────────┼──────────────────────┐
//!          ▼                      ▼                      ▼
//!   ┌─────────────┐        ┌─────────────┐        ┌─────────────┐
//!   │ Worker 0    │        │ Worker 1    │  ...   │ Worker N-1  │
//!   │ mio::Poll   │        │ mio::Poll   │        │ mio::Poll   │
//!   │ Slab<Conn>  │        │ Slab<Conn>  │        │ Slab<Conn>  │
//!   │ scratch buf │        │ scratch buf │        │ scratch buf │
//!   └─────────────┘        └─────────────┘        └─────────────┘
//! ```
//!
//! That is `--dispatch round-robin` (the default) and `least-connections` (the same picture,
//! each connection to the worker with the fewest open). In `reuseport` and `shared` there is
//! no acceptor thread: every worker watches a listener in its own poller and accepts for
//! itself, under the same admission policy (its own `SO_REUSEPORT` socket on the shared
//! port, or the one socket registered `EPOLLEXCLUSIVE` by every worker).
//!
//! - `strategy`: [`Dispatch`], the four modes.
//! - `acceptor`: `Acceptor`, the accept loop with limits and EMFILE back-off.
//! - [`dispatch`]: `Dispatcher`, round-robin or least-connections hand-off with one
//!   notification per batch.
//! - `pool`: `run`, which spawns the workers, runs the acceptor (or gives the workers their
//!   listeners) and joins the workers.

pub(crate) mod acceptor;
pub mod dispatch;
pub(crate) mod pool;
pub(crate) mod strategy;

pub use strategy::Dispatch;
