//! `thread` model: one OS thread per connection, blocking I/O.
//!
//! The calling thread accepts (waiting in `poll` on the listener and a shutdown eventfd) and
//! spawns a thread with a small stack (`thread_stack_size`) for each connection, moving the
//! socket into it by value (an `Arc`, never a reference to a slot the next accept reuses).
//! Each socket is registered in a [`Registry`] for its lifetime, which gives the connection
//! count for `max_connections` and lets shutdown wake threads blocked in `recv`/`send`.
//! Cost: a stack and a scratch buffer (`buffer_size`) per connection, and a context switch
//! per wake-up; both grow linearly with connections.

use std::io;
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use tracing::{error, info, warn};

use super::Model;
use super::accept::AcceptWait;
use super::blocking_io::{Registry, blocking_options, prepare, serve_stream};
use super::conn::log_close;
use super::{About, Bound};
use crate::live::LiveSettings;
use crate::policy::admission::{Accepted, Admission};
use crate::ratelimit::RateLimit;
use crate::stats::Stats;
use crate::sys::eventfd::EventFd;
use crate::sys::socket::{Listener, Mode};
use crate::worker::EchoOptions;

/// The `thread` model, as `reactor-pool models` describes it.
pub(crate) const ABOUT: About = About {
    uses_thread_stack_size: true,
    ..About::new(
        "one thread per connection (stack: thread_stack_size), blocking I/O; memory \
         and context switches grow with every connection",
    )
};

/// Serves until shutdown, then drains.
pub(crate) fn run(bound: Bound) -> io::Result<()> {
    let Bound {
        listener,
        settings,
        shutdown,
        live,
        stats,
        ..
    } = bound;
    let wake = Arc::new(EventFd::new()?);
    let w = wake.clone();
    shutdown.on_shutdown(move || {
        if let Err(e) = w.wake() {
            error!(error = %e, "cannot wake the acceptor for shutdown");
        }
    });
    let mut spawner = Spawner {
        registry: Arc::new(Registry::default()),
        gate: Admission::new(live.clone(), stats.clone()),
        options: blocking_options(settings.buffer_size),
        stack_size: settings.thread_stack_size,
        live: live.clone(),
        stats,
        spawn_log: RateLimit::new(Duration::from_secs(1)),
    };
    let mut waiter = AcceptWait::new(wake.as_raw_fd(), listener.as_raw_fd());
    while !shutdown.is_requested() {
        let woken = waiter.wait(spawner.gate.resume_in(Instant::now()))?;
        if woken.wake {
            let _ = wake.drain();
        }
        if woken.listener {
            spawner.accept(&listener);
        }
    }
    // Connections whose handshake completed before the request are served, not reset.
    if !spawner.gate.is_paused(Instant::now()) {
        spawner.accept(&listener);
    }
    drop(listener); // the port is released, new connects are refused
    let registry = spawner.registry;
    let open = registry.len();
    info!(model = %Model::Thread, connections = open, "shutdown: listener closed, draining");
    registry.drain_until(Instant::now() + live.shutdown_timeout());
    Ok(())
}

/// Accepts connections and starts a thread for each.
#[derive(Debug)]
struct Spawner {
    /// Sockets of the running connection threads.
    registry: Arc<Registry>,
    /// Connection limit and back-off.
    gate: Admission,
    /// Echo options every thread uses.
    options: EchoOptions,
    /// Stack size of each connection thread.
    stack_size: usize,
    /// `nodelay` and `idle_timeout` in force for new connections.
    live: Arc<LiveSettings>,
    /// Counters (block 0, shared by every connection thread).
    stats: Arc<Stats>,
    /// Rate limit for "cannot start a thread" warnings.
    spawn_log: RateLimit,
}

impl Spawner {
    /// Accepts until the backlog is empty (or accepting pauses).
    fn accept(&mut self, listener: &Listener) {
        while let Accepted::Conn(stream) =
            self.gate
                .accept(listener, Mode::Blocking, self.registry.len())
        {
            let log = match prepare(&stream, &self.live, Model::Thread) {
                Ok(log) => log,
                Err(e) => {
                    warn!(error = %e, "cannot set socket timeouts; closing connection");
                    continue;
                }
            };
            let stream = Arc::new(stream);
            let ticket = self.registry.register(&stream);
            let (options, stats) = (self.options, self.stats.clone());
            let spawned = thread::Builder::new()
                .name("conn".to_owned())
                .stack_size(self.stack_size)
                .spawn(move || {
                    let _ticket = ticket; // leaves the registry when the thread ends
                    let mut scratch = vec![0u8; options.limit];
                    let reason =
                        serve_stream(&stream, &mut scratch, &options, stats.worker(0), log);
                    log_close(Model::Thread, reason, 0);
                });
            if let Err(e) = spawned {
                // The closure (socket and ticket) was dropped: the connection is closed.
                if let Some(suppressed) = self.spawn_log.check(Instant::now()) {
                    warn!(error = %e, suppressed, "cannot start a connection thread; pausing accept");
                }
                self.gate.pause(Instant::now());
                return;
            }
        }
    }
}
