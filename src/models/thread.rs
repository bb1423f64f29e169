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

use super::Bound;
use super::accept::{Accepted, Gate};
use super::blocking_io::{Registry, blocking_options, serve_stream};
use super::conn::log_close;
use crate::config::{Config, Model};
use crate::ratelimit::RateLimit;
use crate::sys::eventfd::EventFd;
use crate::sys::poll;
use crate::sys::socket::{Listener, Mode};

/// Serves until shutdown, then drains.
pub fn run(bound: Bound) -> io::Result<()> {
    let Bound {
        listener,
        config,
        shutdown,
        ..
    } = bound;
    let wake = Arc::new(EventFd::new()?);
    let w = wake.clone();
    shutdown.on_shutdown(move || {
        if let Err(e) = w.wake() {
            error!(error = %e, "cannot wake the acceptor for shutdown");
        }
    });
    let registry = Arc::new(Registry::default());
    let mut gate = Gate::new(config.max_connections);
    let mut spawn_log = RateLimit::new(Duration::from_secs(1));
    let mut fds = [
        poll::entry(wake.as_raw_fd(), poll::READ),
        poll::entry(listener.as_raw_fd(), 0),
    ];
    while !shutdown.is_requested() {
        let pause = gate.resume_in(Instant::now());
        fds[1].events = if pause.is_none() { poll::READ } else { 0 };
        match poll::poll(&mut fds, pause) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
            Ok(_) => {}
        }
        if fds[0].revents != 0 {
            let _ = wake.drain();
        }
        if fds[1].revents != 0 {
            accept(&listener, &mut gate, &registry, &config, &mut spawn_log);
        }
    }
    // Connections whose handshake completed before the request are served, not reset.
    if !gate.is_paused(Instant::now()) {
        accept(&listener, &mut gate, &registry, &config, &mut spawn_log);
    }
    drop(listener); // the port is released, new connects are refused
    let open = registry.len();
    info!(model = %Model::Thread, connections = open, "shutdown: listener closed, draining");
    registry.drain_until(Instant::now() + config.shutdown_timeout);
    Ok(())
}

/// Accepts until the backlog is empty, starting a thread for each connection.
fn accept(
    listener: &Listener,
    gate: &mut Gate,
    registry: &Arc<Registry>,
    config: &Config,
    spawn_log: &mut RateLimit,
) {
    let options = blocking_options(config.buffer_size);
    while let Accepted::Conn(stream) = gate.accept(listener, Mode::Blocking, registry.len()) {
        if config.nodelay {
            let _ = stream.set_nodelay(true);
        }
        if let Err(e) = stream.set_timeouts(config.idle_timeout) {
            warn!(error = %e, "cannot set socket timeouts; closing connection");
            continue;
        }
        let stream = Arc::new(stream);
        let ticket = registry.register(&stream);
        let spawned = thread::Builder::new()
            .name("conn".to_owned())
            .stack_size(config.thread_stack_size)
            .spawn(move || {
                let _ticket = ticket; // leaves the registry when the thread ends
                let mut scratch = vec![0u8; options.limit];
                let reason = serve_stream(&stream, &mut scratch, &options);
                log_close(Model::Thread, reason, 0);
            });
        if let Err(e) = spawned {
            // The closure (socket and ticket) was dropped: the connection is closed.
            if let Some(suppressed) = spawn_log.check(Instant::now()) {
                warn!(error = %e, suppressed, "cannot start a connection thread; pausing accept");
            }
            gate.pause(Instant::now());
            break;
        }
    }
}
