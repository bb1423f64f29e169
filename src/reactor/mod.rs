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
//! - `acceptor`: `Acceptor`, the accept loop with limits and EMFILE back-off.
//! - [`dispatch`]: `Dispatcher`, round-robin hand-off with one wake per batch.
//! - `pool`: `run`, which spawns the workers, runs the acceptor and joins the workers.

pub(crate) mod acceptor;
pub mod dispatch;
pub(crate) mod pool;
