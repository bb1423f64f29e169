//! `fork` model: one child process per connection, blocking I/O.
//!
//! The parent is single-threaded (checked at `run`; forking a multi-threaded process copies
//! only the calling thread, and any lock another thread held stays locked in the child). It
//! waits in `poll` on the listener and a self-pipe that its `sigaction` handlers write
//! ([`SignalPipe`](crate::sys::signal::SignalPipe), installed at bind time), accepts, and
//! forks. Around `fork` every signal is blocked, so the child can drop the parent's pipe and
//! reset `SIGCHLD` before any signal reaches it. The parent closes its copy of the connection; the child closes the
//! listener and the pipe, serves its one connection with blocking calls, and leaves with
//! `_exit`.
//!
//! Reaping: one `SIGCHLD` may stand for several exits, so after every wake-up the parent
//! calls `waitpid(-1, WNOHANG)` until nothing is left to reap, and logs each exit status.
//! The set of unreaped children is the connection count for `max_connections`.
//!
//! SIGHUP runs the caller's reload action ([`ReloadHook`]) on the parent's thread; reloaded
//! settings reach the children forked after it.
//!
//! Shutdown (SIGINT or SIGTERM): the parent closes the listener, sends SIGTERM to
//! every child, and waits for them. A child told to finish keeps echoing until its peer is
//! done, for at most `shutdown_timeout` (each blocking call is bounded by what is left). A
//! child that missed the notice (it can land just before a call starts waiting) is killed
//! `KILL_GRACE` after the deadline. Then the parent returns and the process exits 0.

use std::collections::HashSet;
use std::io;
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use tracing::{debug, info, warn};

use super::Model;
use super::ReloadHook;
use super::accept::AcceptWait;
use super::blocking_io::{Timed, blocking_options, prepare, serve};
use super::conn::log_close;
use super::{About, Bound};
use crate::close::CloseReason;
use crate::live::LiveSettings;
use crate::policy::admission::{Accepted, Admission};
use crate::policy::connlog::{ConnLog, Record};
use crate::ratelimit::RateLimit;
use crate::sys::poll;
use crate::sys::process::{self, ExitStatus, Fork, Pid};
use crate::sys::signal::{self, SIGCHLD, SIGHUP, SIGINT, SIGKILL, SIGTERM, Signo};
use crate::sys::socket::{Mode, Stream};
use crate::worker::EchoOptions;

/// Signals the parent handles (installed at bind time).
pub(crate) const SIGNALS: &[Signo] = &[SIGCHLD, SIGTERM, SIGINT, SIGHUP];
/// Signals that ask for a graceful shutdown (parent) or for finishing (child). SIGHUP asks
/// the parent to reload, like the other models' signal thread.
const TERMINATE: &[Signo] = &[SIGTERM, SIGINT];
/// How long after the drain deadline the parent waits before killing children.
const KILL_GRACE: Duration = Duration::from_millis(500);

/// The `fork` model, as `reactor-pool models` describes it.
pub(crate) const ABOUT: About = About {
    serves_metrics: false,
    signals: SIGNALS,
    ..About::new(
        "one child process per connection, blocking I/O; the parent reaps children \
         and counts them for max_connections; a fork per connection is costly",
    )
};

/// Serves until a terminating signal (or a shutdown request made before `run`), then waits
/// for the children.
pub(crate) fn run(bound: Bound) -> io::Result<()> {
    let Bound {
        listener,
        settings,
        shutdown,
        live,
        stats,
        signals,
        mut reload,
        udp: _,
        reuseport_group: _,
    } = bound;
    let signals =
        signals.ok_or_else(|| io::Error::other("fork model: signal handlers are not installed"))?;
    let threads = process::thread_count()?;
    if threads > 1 {
        return Err(io::Error::other(format!(
            "the fork model needs a single-threaded process, but {threads} threads are running"
        )));
    }
    let options = blocking_options(settings.buffer_size);
    let mut children: HashSet<Pid> = HashSet::new();
    let mut gate = Admission::new(live.clone(), stats);
    let mut fork_log = RateLimit::new(Duration::from_secs(1));
    let mut waiter = AcceptWait::new(signals.read_fd(), listener.as_raw_fd());
    loop {
        let received = signals.take();
        reap(&mut children);
        if received.contains(SIGHUP) {
            match &mut reload {
                // Reloaded settings reach children forked from now on.
                Some(ReloadHook(reload)) => reload(),
                None => info!("SIGHUP: no reload action configured"),
            }
        }
        // The process is single-threaded, so a ShutdownHandle can only have fired before
        // `run`; signals are the trigger from here on.
        let stopping = received.any(TERMINATE) || shutdown.is_requested();
        let pause = gate.resume_in(Instant::now());
        if stopping {
            // One last pass: connections whose handshake completed before the request are
            // served, not reset.
            if pause.is_some() {
                break;
            }
        } else if !waiter.wait(pause)?.listener {
            // A signal or the end of a pause: the loop's top handles both.
            continue;
        }
        loop {
            if children.len() >= live.max_connections() {
                reap(&mut children); // exits not yet collected must not count
            }
            let Accepted::Conn(stream) = gate.accept(&listener, Mode::Blocking, children.len())
            else {
                break;
            };
            let log = match prepare(&stream, &live, Model::Fork) {
                Ok(log) => log,
                Err(e) => {
                    warn!(error = %e, "cannot set socket timeouts; closing connection");
                    continue;
                }
            };
            let blocked = signal::block_all()?;
            // SAFETY: the process was single-threaded at the start of `run` and nothing here
            // starts a thread; the child leaves only through `exit_now`.
            match unsafe { process::fork() } {
                Ok(Fork::Child) => {
                    drop(listener);
                    signals.forget_in_child();
                    let _ = signal::set_default(SIGCHLD);
                    drop(blocked); // a finish notice that arrived meanwhile is delivered now
                    // A panic must not unwind into the parent's code (and on into `main`).
                    let serve_child =
                        std::panic::AssertUnwindSafe(|| child(&stream, &options, &live, log));
                    let code = std::panic::catch_unwind(serve_child).unwrap_or(101);
                    process::exit_now(code);
                }
                Ok(Fork::Parent(pid)) => {
                    children.insert(pid);
                    drop(blocked);
                    drop(stream); // the child has its own copy
                }
                Err(e) => {
                    drop(blocked);
                    if let Some(suppressed) = fork_log.check(Instant::now()) {
                        warn!(error = %e, suppressed, "cannot fork; closing connection and pausing accept");
                    }
                    gate.pause(Instant::now());
                    break;
                }
            }
        }
        if stopping {
            break;
        }
    }
    drop(listener);
    info!(model = %Model::Fork, connections = children.len(), "shutdown: listener closed, draining");
    for &pid in &children {
        let _ = process::kill(pid, SIGTERM);
    }
    let deadline = Instant::now() + live.shutdown_timeout() + KILL_GRACE;
    let mut fds = [poll::entry(signals.read_fd(), poll::READ)];
    while !children.is_empty() {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        match poll::poll(&mut fds, Some(left)) {
            Err(e) if e.kind() != io::ErrorKind::Interrupted => return Err(e),
            _ => {}
        }
        signals.take();
        reap(&mut children);
    }
    if !children.is_empty() {
        info!(
            children = children.len(),
            "shutdown timeout: killing remaining children"
        );
        for &pid in &children {
            let _ = process::kill(pid, SIGKILL);
        }
        for pid in children.drain() {
            let _ = process::reap_blocking(pid);
        }
    }
    Ok(())
}

/// Reaps every child that has exited (one SIGCHLD may stand for several).
fn reap(children: &mut HashSet<Pid>) {
    loop {
        match process::reap_any() {
            Ok(Some((pid, status))) => {
                children.remove(&pid);
                match status {
                    ExitStatus::Code(0) => debug!(pid, ?status, "child exited"),
                    _ => warn!(pid, ?status, "child exited abnormally"),
                }
            }
            Ok(None) => return,
            Err(e) => {
                warn!(error = %e, "waitpid failed");
                return;
            }
        }
    }
}

/// The child's life: serve the one connection, then return the exit code.
fn child(stream: &Stream, options: &EchoOptions, live: &LiveSettings, mut log: Record) -> i32 {
    let mut io = Timed::finishing(stream, live.idle_timeout(), live.shutdown_timeout(), || {
        signal::received().any(TERMINATE)
    });
    let mut scratch = vec![0u8; options.limit];
    // No counters: they would live in this child's copy of the parent's memory.
    let closed = serve(&mut io, &mut scratch, options, None, &mut log);
    let reason = io.close_reason(closed);
    log_close(Model::Fork, reason, 0);
    ConnLog::closed(log, reason);
    i32::from(reason == CloseReason::Error)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::server::Server;

    #[test]
    fn run_refuses_a_multi_threaded_process() {
        // The test harness runs tests on threads of its own, so this process has several.
        let config = crate::config::Config {
            listen: "127.0.0.1:0".parse().unwrap(),
            model: Model::Fork,
            ..crate::config::Config::default()
        };
        let server = Server::bind(&config).expect("bind");
        assert!(server.handles_signals());
        // A second thread that lives until `run` has returned, whatever the harness does.
        let (done, wait) = std::sync::mpsc::channel::<()>();
        let helper = std::thread::spawn(move || wait.recv());
        let e = server
            .run()
            .expect_err("forked from a multi-threaded process");
        drop(done);
        let _ = helper.join();
        assert!(e.to_string().contains("single-threaded"), "{e}");
    }
}
