//! The load generator: a few threads, each with its own `mio::Poll` and a share of the
//! connections, driving nonblocking sockets through one of the [`Scenario`]s
//! and checking every echoed byte against the connection's `Pattern`.
//!
//! Timeline of a timed scenario (every one but idle):
//! ```text
//! start ── connect + traffic ──▶ window start ── counted ──▶ window end ── drain ──▶ done
//!          (warm-up: not counted)                            (no new sends; wait for the
//!                                                             echoes in flight, bounded)
//! ```
//! Idle: connect everything, `Observer::window_start`, hold for `duration`,
//! `Observer::window_end`, one echo on each connection, close.
//!
//! Each connection keeps at most `depth` messages of `size` bytes in flight (pingpong is
//! depth 1); writes are chunked up to 64 KiB regardless of message boundaries, the way a
//! real client's buffered writer would. A message's latency runs from the write that carried
//! its first byte to the read that completed its echo. Failed connections are counted and,
//! in timed scenarios, reopened after a back-off so the load continues.
//!
//! - `driver`: `Driver`, one thread's event loop (opening, back-off, timeouts, drain, idle
//!   phases);
//! - `connection`: `Conn`, one connection: connect, and `pump`, which moves and verifies its
//!   bytes;
//! - `tally`: the measured `Window` and each thread's `ThreadStats`;
//! - `shared`: what the coordinator (`run`, here) and the threads share;
//! - `silent`: `Silent`, the `--idle-connections`: opened before the load, never written to,
//!   checked at the end;
//! - `udp`: the `udp` scenario, datagrams over connected UDP sockets, with its own
//!   coordinator and threads.

mod connection;
mod driver;
mod shared;
mod silent;
mod tally;
mod udp;

pub(crate) use self::silent::sources_needed as idle_sources_needed;

use std::io;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::thread;
use std::time::{Duration, Instant};

use self::driver::Driver;
use self::shared::{PHASE_ECHO, PHASE_STOP, Shared};
use self::silent::Silent;
use self::tally::{ThreadStats, Window};
use crate::pattern::Pattern;
use crate::report::{ErrorCounts, IdleFigures, Latency, RunReport};
use crate::scenario::Scenario;
use crate::spec::LoadSpec;

/// How long before a timed window's end `Observer::window_end` is called (at most a tenth of
/// the window).
pub const SAMPLE_LEAD: Duration = Duration::from_millis(50);

/// Hooks the comparison runner uses to sample the server at the window's edges.
pub trait Observer {
    /// `--idle-connections`: `open` silent connections are established, before any load
    /// (the warm-up starts when this returns).
    fn idle_connections_open(&mut self, _open: u64) {}
    /// Idle only: every connection attempt has settled and `open` connections are open;
    /// the hold starts when this returns.
    fn all_connected(&mut self, _open: u64) {}
    /// The measured window starts now (idle: the hold begins).
    fn window_start(&mut self) {}
    /// The measured window ends now (timed scenarios: up to `SAMPLE_LEAD` before its end,
    /// while every connection is still open; idle: the hold ends, before the echoes).
    fn window_end(&mut self) {}
    /// Called about five times a second with the time since start and messages so far.
    fn tick(&mut self, _elapsed: Duration, _messages: u64) {}
}

/// An observer that does nothing.
#[derive(Debug, Default)]
pub struct NoObserver;

impl Observer for NoObserver {}

/// Runs `spec` to completion and reports. Fails only when the load generator itself cannot
/// run (pollers, threads); every network failure is counted in the report instead.
pub fn run(spec: &LoadSpec, observer: &mut dyn Observer) -> io::Result<RunReport> {
    if spec.scenario == Scenario::Udp {
        return udp::run(spec, observer);
    }
    let threads = spec.threads.clamp(1, spec.connections.max(1));
    let pattern = Arc::new(Pattern::new());
    let shared = Arc::new(Shared::new());
    let mut silent_errors = ErrorCounts::default();
    let silent = Silent::open(spec, &mut silent_errors)?;
    let idle_opened = silent.len() as u64;
    if spec.idle_connections > 0 {
        observer.idle_connections_open(idle_opened);
    }
    let start = Instant::now();
    let window = if spec.scenario.is_timed() {
        let from = start + spec.warmup;
        Window {
            from,
            until: Some(from + spec.duration),
        }
    } else {
        // Idle counts every echo; its echoes only start after the hold anyway.
        Window {
            from: start,
            until: None,
        }
    };

    let mut wakers = Vec::with_capacity(threads);
    let mut handles = Vec::with_capacity(threads);
    for t in 0..threads {
        let slots = spec.connections / threads + usize::from(t < spec.connections % threads);
        let (driver, waker) = Driver::new(
            spec.clone(),
            pattern.clone(),
            shared.clone(),
            slots,
            (t as u64, threads as u64),
            window,
        )?;
        wakers.push(waker);
        let handle = thread::Builder::new()
            .name(format!("loadgen-{t}"))
            .spawn(move || driver.run())?;
        handles.push(handle);
    }

    let mut idle = None;
    if spec.scenario.is_timed() {
        wait_until(start + spec.warmup, start, &shared, observer);
        observer.window_start();
        let end = start + spec.warmup + spec.duration;
        // Reported a little early: at the end the threads start closing connections, and a
        // thread-per-connection server's threads exit with them, taking their context-switch
        // counters out of a sample taken after.
        let lead = SAMPLE_LEAD.min(spec.duration / 10);
        wait_until(end - lead, start, &shared, observer);
        observer.window_end();
        wait_until(end, start, &shared, observer);
    } else {
        // Threads exit early only if they have nothing left to do (every connect failed).
        while shared.settled.load(Ordering::Acquire) < spec.connections
            && !handles.iter().all(|h| h.is_finished())
        {
            thread::sleep(Duration::from_millis(5));
            observer.tick(start.elapsed(), shared.completed.load(Ordering::Relaxed));
        }
        let connected_at = Instant::now();
        observer.all_connected(shared.established.load(Ordering::Acquire));
        observer.window_start();
        let hold_from = Instant::now();
        wait_until(hold_from + spec.duration, start, &shared, observer);
        let hold = hold_from.elapsed();
        observer.window_end();
        let echo_from = Instant::now();
        shared.phase.store(PHASE_ECHO, Ordering::Release);
        for w in &wakers {
            w.wake()?;
        }
        idle = Some((connected_at - start, hold, echo_from));
    }

    let mut total = ThreadStats::new();
    let mut failure = None;
    for handle in handles {
        match handle.join() {
            Ok(stats) => total.merge(&stats),
            Err(_) => failure = Some(io::Error::other("a load-generator thread panicked")),
        }
    }
    shared.phase.store(PHASE_STOP, Ordering::Release);
    if let Some(e) = failure {
        return Err(e);
    }
    let idle_kept = silent.check_and_close(&mut silent_errors);
    total.errors.merge(&silent_errors);

    let (duration_secs, rate_secs, idle) = match idle {
        Some((connect, hold, echo_from)) => {
            let echo = echo_from.elapsed();
            let figures = IdleFigures {
                established: total.opened,
                connect_secs: connect.as_secs_f64(),
                hold_secs: hold.as_secs_f64(),
                echo_secs: echo.as_secs_f64(),
            };
            (hold.as_secs_f64(), echo.as_secs_f64(), Some(figures))
        }
        None => (
            spec.duration.as_secs_f64(),
            spec.duration.as_secs_f64(),
            None,
        ),
    };
    let per_sec = |n: u64| {
        if rate_secs > 0.0 {
            n as f64 / rate_secs
        } else {
            0.0
        }
    };
    Ok(RunReport {
        scenario: spec.scenario,
        target: spec.target.to_string(),
        connections: spec.connections,
        size: spec.size,
        depth: spec.effective_depth(),
        threads,
        source_addrs: usize::from(spec.source_addrs),
        warmup_secs: if spec.scenario.is_timed() {
            spec.warmup.as_secs_f64()
        } else {
            0.0
        },
        duration_secs,
        messages: total.messages,
        bytes: total.bytes,
        msgs_per_sec: per_sec(total.messages),
        bytes_per_sec: per_sec(total.bytes),
        latency: Latency::from_histogram(&total.hist),
        connections_opened: total.opened,
        errors: total.errors,
        idle,
        idle_connections: spec.idle_connections,
        idle_connections_opened: idle_opened,
        idle_connections_kept: idle_kept,
        udp: None,
    })
}

/// Sleeps until `deadline`, ticking the observer along the way.
fn wait_until(deadline: Instant, start: Instant, shared: &Shared, observer: &mut dyn Observer) {
    loop {
        let now = Instant::now();
        if now >= deadline {
            return;
        }
        thread::sleep((deadline - now).min(Duration::from_millis(200)));
        observer.tick(start.elapsed(), shared.completed.load(Ordering::Relaxed));
    }
}
