//! `blocking` model: iterative. Accept one connection, serve it to the end with blocking
//! calls on the calling thread, then accept the next. Everyone else waits in the listen
//! backlog: one slow client stalls all of them. This is the baseline that shows why the
//! other models exist.
//!
//! Idle timeout comes from `SO_RCVTIMEO`/`SO_SNDTIMEO`. Shutdown has to act while the
//! serving thread may be blocked inside a connection, so the request itself (on the
//! requesting thread) takes in the connections already queued in the backlog (they are
//! served, not reset), stops the listener (`shutdown(2)` on the listening socket: new
//! connects are refused at once), and wakes the accept loop through an eventfd. The serving
//! thread finishes the connection in service, then the taken-in ones, one by one. A
//! watchdog thread, asleep until the request, gives all of that `shutdown_timeout` and then
//! shuts down the socket in service (waking the blocked call) and drops the rest.

use std::io;
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::thread;
use std::time::Instant;

use tracing::{error, info, warn};

use super::accept::AcceptWait;
use super::blocking_io::{Registry, blocking_options, prepare, serve_stream};
use super::conn::log_close;
use super::{About, Bound, Model};
use crate::policy::admission::{Accepted, Admission};
use crate::sys::eventfd::EventFd;
use crate::sys::socket::{Mode, Stream};

/// The `blocking` model, as `reactor-pool models` describes it.
pub(crate) const ABOUT: About = About {
    one_at_a_time: true,
    ..About::new(
        "iterative: serves one connection at a time with blocking I/O; everyone else \
         waits in the backlog (the baseline)",
    )
};

/// Serves until shutdown, then finishes the connections in service and taken in.
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
    let registry = Arc::new(Registry::default());
    let listener = Arc::new(listener);
    // Weak: once `run` returns, the listener must close, whatever the handle's lifetime.
    let (w, r, l) = (wake.clone(), registry.clone(), Arc::downgrade(&listener));
    let counters = stats.clone();
    shutdown.on_shutdown(move || {
        if let Some(listener) = l.upgrade() {
            // Until WouldBlock (or any error: then there is nothing more to take).
            while let Ok(stream) = listener.accept(Mode::Blocking) {
                let accepted = &counters.acceptor().accepted;
                accepted.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                r.park(stream);
            }
            let _ = listener.stop_listening();
        }
        r.request_drain();
        if let Err(e) = w.wake() {
            error!(error = %e, "cannot wake the accept loop for shutdown");
        }
    });
    let watchdog = {
        let (registry, live) = (registry.clone(), live.clone());
        thread::Builder::new()
            .name("drain-watchdog".to_owned())
            .stack_size(64 * 1024)
            .spawn(move || registry.watch(|| live.shutdown_timeout()))?
    };
    let options = blocking_options(settings.buffer_size);
    let mut scratch = vec![0u8; options.limit];
    let mut serve = |stream: Arc<Stream>, registry: &Arc<Registry>| {
        let log = match prepare(&stream, &live, Model::Blocking) {
            Ok(log) => log,
            Err(e) => {
                warn!(error = %e, "cannot set socket timeouts; closing connection");
                return;
            }
        };
        let ticket = registry.register(&stream);
        let reason = serve_stream(&stream, &mut scratch, &options, stats.worker(0), log);
        drop(ticket);
        log_close(Model::Blocking, reason, 0);
    };
    let mut gate = Admission::new(live.clone(), stats.clone());
    let mut waiter = AcceptWait::new(wake.as_raw_fd(), listener.as_raw_fd());
    let result = loop {
        if shutdown.is_requested() {
            break Ok(());
        }
        let woken = match waiter.wait(gate.resume_in(Instant::now())) {
            Ok(woken) => woken,
            Err(e) => break Err(e),
        };
        if woken.wake {
            let _ = wake.drain();
        }
        if !woken.listener || shutdown.is_requested() {
            continue;
        }
        // Only one connection at a time: `open` is always 0 here.
        if let Accepted::Conn(stream) = gate.accept(&listener, Mode::Blocking, 0) {
            serve(Arc::new(stream), &registry);
        }
    };
    info!(model = %Model::Blocking, "shutdown: listener stopped, draining");
    // A connection unparked just as the deadline passes is shut down when it registers.
    while let Some(stream) = registry.unpark() {
        serve(Arc::new(stream), &registry);
    }
    drop(listener);
    registry.finish();
    if watchdog.join().is_err() {
        error!("the drain watchdog panicked");
    }
    result
}
