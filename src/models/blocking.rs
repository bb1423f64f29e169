//! `blocking` model: iterative. Accept one connection, serve it to the end with blocking
//! calls on the calling thread, then accept the next. Everyone else waits in the listen
//! backlog: one slow client stalls all of them. This is the baseline that shows why the
//! other models exist.
//!
//! Idle timeout comes from `SO_RCVTIMEO`/`SO_SNDTIMEO`. Shutdown: the request stops the
//! listener at once (`shutdown(2)` on the listening socket: new connects are refused even
//! while a connection is in service) and writes an eventfd the accept loop polls. The
//! connection in service, if any, gets `shutdown_timeout` to finish: a watchdog thread,
//! asleep until shutdown is requested, then shuts its socket down, which wakes the blocked
//! call.

use std::io;
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::thread;

use tracing::{error, info, warn};

use super::Bound;
use super::accept::{Accepted, Gate};
use super::blocking_io::{Registry, blocking_options, serve_stream};
use super::conn::log_close;
use crate::config::Model;
use crate::sys::eventfd::EventFd;
use crate::sys::poll;
use crate::sys::socket::Mode;

/// Serves until shutdown, then finishes the connection in service.
pub fn run(bound: Bound) -> io::Result<()> {
    let Bound { listener, config, shutdown, .. } = bound;
    let wake = Arc::new(EventFd::new()?);
    let registry = Arc::new(Registry::default());
    let listener = Arc::new(listener);
    // Weak: once `run` returns, the listener must close, whatever the handle's lifetime.
    let (w, r, l) = (wake.clone(), registry.clone(), Arc::downgrade(&listener));
    shutdown.on_shutdown(move || {
        if let Some(listener) = l.upgrade() {
            let _ = listener.stop_listening();
        }
        r.request_drain();
        if let Err(e) = w.wake() {
            error!(error = %e, "cannot wake the accept loop for shutdown");
        }
    });
    let watchdog = {
        let registry = registry.clone();
        let timeout = config.shutdown_timeout;
        thread::Builder::new()
            .name("drain-watchdog".to_owned())
            .stack_size(64 * 1024)
            .spawn(move || registry.watch(timeout))?
    };
    let options = blocking_options(config.buffer_size);
    let mut scratch = vec![0u8; options.limit];
    let mut gate = Gate::new(config.max_connections);
    let mut fds = [poll::entry(wake.as_raw_fd(), poll::READ), poll::entry(listener.as_raw_fd(), 0)];
    let result = loop {
        if shutdown.is_requested() {
            break Ok(());
        }
        let pause = gate.resume_in(std::time::Instant::now());
        fds[1].events = if pause.is_none() { poll::READ } else { 0 };
        match poll::poll(&mut fds, pause) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => break Err(e),
            Ok(_) => {}
        }
        if shutdown.is_requested() {
            // The listener was stopped by the request; accepting now would fail.
            break Ok(());
        }
        if fds[0].revents != 0 {
            let _ = wake.drain();
        }
        if fds[1].revents == 0 {
            continue;
        }
        // Only one connection at a time: `open` is always 0 here.
        let Accepted::Conn(stream) = gate.accept(&listener, Mode::Blocking, 0) else {
            continue;
        };
        if config.nodelay {
            let _ = stream.set_nodelay(true);
        }
        if let Err(e) = stream.set_timeouts(config.idle_timeout) {
            warn!(error = %e, "cannot set socket timeouts; closing connection");
            continue;
        }
        let stream = Arc::new(stream);
        let ticket = registry.register(&stream);
        let reason = serve_stream(&stream, &mut scratch, &options);
        drop(ticket);
        log_close(Model::Blocking, reason, 0);
    };
    drop(listener);
    info!(model = %Model::Blocking, "shutdown: listener closed");
    registry.finish();
    if watchdog.join().is_err() {
        error!("the drain watchdog panicked");
    }
    result
}
