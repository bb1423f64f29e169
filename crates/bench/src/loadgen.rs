//! The load generator: a few threads, each with its own `mio::Poll` and a share of the
//! connections, driving nonblocking sockets through one of the [`Scenario`]s and checking
//! every echoed byte against the connection's [`Pattern`].
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

use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};
use std::io::{self, Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::os::fd::AsFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicU64, AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token, Waker};
use slab::Slab;
use socket2::{Domain, Protocol, Socket, Type};

use crate::pattern::{MAX_CHUNK, Pattern};
use crate::report::{ErrorCounts, ErrorKind, IdleFigures, Latency, RunReport};
use crate::scenario::Scenario;
use crate::spec::LoadSpec;

/// Token of each thread's waker (phase changes); connection tokens are slab keys.
const WAKER: Token = Token(usize::MAX);
/// Connection attempts in flight per thread, so a burst does not overflow the server's
/// SYN and accept queues (which would cost seconds of SYN retransmits).
const CONNECTS_IN_FLIGHT: usize = 128;
/// How often connection and echo timeouts are checked.
const SWEEP_EVERY: Duration = Duration::from_millis(100);
/// First and longest wait before reopening a failed connection.
const BACKOFF_MIN: Duration = Duration::from_millis(10);
const BACKOFF_MAX: Duration = Duration::from_secs(1);
/// Longest the drain after the window may take, whatever `--timeout` says.
const DRAIN_MAX: Duration = Duration::from_secs(5);
/// Latency histogram range: 1 ns to 60 s, 3 significant digits.
const HIST_MAX_NS: u64 = 60_000_000_000;
/// Hooks the comparison runner uses to sample the server at the window's edges.
pub trait Observer {
    /// Idle only: every connection attempt has settled and `open` connections are open;
    /// the hold starts when this returns.
    fn all_connected(&mut self, _open: u64) {}
    /// The measured window starts now (idle: the hold begins).
    fn window_start(&mut self) {}
    /// The measured window ends now (idle: the hold ends, before the echoes).
    fn window_end(&mut self) {}
    /// Called about five times a second with the time since start and messages so far.
    fn tick(&mut self, _elapsed: Duration, _messages: u64) {}
}

/// An observer that does nothing.
#[derive(Debug, Default)]
pub struct NoObserver;

impl Observer for NoObserver {}

/// Phases the coordinator announces to idle threads.
const PHASE_HOLD: u8 = 0;
const PHASE_ECHO: u8 = 1;
const PHASE_STOP: u8 = 2;

/// State shared between the coordinator and the threads.
#[derive(Debug)]
struct Shared {
    /// One of the `PHASE_*` constants (idle only; timed threads follow their clock).
    phase: AtomicU8,
    /// Messages completed so far, warm-up included (for progress display).
    completed: AtomicU64,
    /// Idle: connection attempts that have settled (opened or failed).
    settled: AtomicUsize,
    /// Idle: connections open before the hold.
    established: AtomicU64,
}

/// Runs `spec` to completion and reports. Fails only when the load generator itself cannot
/// run (pollers, threads); every network failure is counted in the report instead.
pub fn run(spec: &LoadSpec, observer: &mut dyn Observer) -> io::Result<RunReport> {
    let threads = spec.threads.clamp(1, spec.connections.max(1));
    let pattern = Arc::new(Pattern::new());
    let shared = Arc::new(Shared {
        phase: AtomicU8::new(PHASE_HOLD),
        completed: AtomicU64::new(0),
        settled: AtomicUsize::new(0),
        established: AtomicU64::new(0),
    });
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
        let poll = Poll::new()?;
        wakers.push(Waker::new(poll.registry(), WAKER)?);
        let slots = spec.connections / threads + usize::from(t < spec.connections % threads);
        let driver = Driver::new(
            spec.clone(),
            pattern.clone(),
            shared.clone(),
            poll,
            slots,
            t as u64,
            threads as u64,
            window,
        )?;
        let handle = thread::Builder::new()
            .name(format!("loadgen-{t}"))
            .spawn(move || driver.run())?;
        handles.push(handle);
    }

    let mut idle = None;
    if spec.scenario.is_timed() {
        wait_until(start + spec.warmup, start, &shared, observer);
        observer.window_start();
        wait_until(
            start + spec.warmup + spec.duration,
            start,
            &shared,
            observer,
        );
        observer.window_end();
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

/// When completions count.
#[derive(Debug, Clone, Copy)]
struct Window {
    /// Completions before this are warm-up.
    from: Instant,
    /// Completions from here on are not counted, and no new message is started;
    /// `None`: no end (idle).
    until: Option<Instant>,
}

impl Window {
    fn contains(&self, t: Instant) -> bool {
        t >= self.from && self.until.is_none_or(|u| t < u)
    }

    fn is_over(&self, t: Instant) -> bool {
        self.until.is_some_and(|u| t >= u)
    }
}

/// One thread's tallies, merged at the end.
#[derive(Debug)]
struct ThreadStats {
    /// Latencies (ns) of messages completed in the window.
    hist: Histogram<u64>,
    /// Messages completed in the window.
    messages: u64,
    /// Echoed bytes verified in the window.
    bytes: u64,
    /// Connections established.
    opened: u64,
    /// Failures.
    errors: ErrorCounts,
}

impl ThreadStats {
    fn new() -> ThreadStats {
        ThreadStats {
            hist: Histogram::new_with_bounds(1, HIST_MAX_NS, 3)
                .expect("constant histogram bounds are valid"),
            messages: 0,
            bytes: 0,
            opened: 0,
            errors: ErrorCounts::default(),
        }
    }

    fn merge(&mut self, other: &ThreadStats) {
        // Same bounds on both sides, so adding cannot fail.
        let _ = self.hist.add(&other.hist);
        self.messages += other.messages;
        self.bytes += other.bytes;
        self.opened += other.opened;
        self.errors.merge(&other.errors);
    }
}

/// Where a connection is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    /// Nonblocking connect in progress.
    Connecting,
    /// Open and exchanging messages.
    Running,
    /// Idle scenario: open, waiting for the echo phase.
    Holding,
}

/// One load-generator connection.
#[derive(Debug)]
struct Conn {
    /// The socket, registered for read and write readiness (edge-triggered).
    stream: TcpStream,
    /// Where it is in its life.
    stage: Stage,
    /// Pattern seed of this connection.
    seed: usize,
    /// When the connect started (connect timeout; connrate latency).
    started: Instant,
    /// Bytes written so far.
    sent: u64,
    /// Echoed bytes received and verified so far.
    received: u64,
    /// Most bytes this connection may have sent by now (its message window).
    send_limit: u64,
    /// Start time of each message whose first byte was sent and whose echo is incomplete.
    stamps: VecDeque<Instant>,
    /// Last time bytes moved in either direction (echo timeout).
    last_progress: Instant,
    /// The last write stopped short: wait for a writable event before writing again.
    write_blocked: bool,
}

impl Conn {
    fn outstanding(&self) -> u64 {
        self.sent - self.received
    }
}

/// What became of a connection after it was driven.
#[derive(Debug)]
enum Outcome {
    /// Keep it.
    Open,
    /// Its work is done: close it without error.
    Finished,
    /// Count this error and close it.
    Failed(ErrorKind, String),
}

/// One load-generator thread.
struct Driver {
    spec: LoadSpec,
    /// `spec.effective_depth()`.
    depth: u64,
    pattern: Arc<Pattern>,
    shared: Arc<Shared>,
    poll: Poll,
    conns: Slab<Conn>,
    /// Read buffer shared by this thread's connections.
    scratch: Box<[u8]>,
    /// Connections not yet opened (initial ones, and reopened ones whose back-off expired).
    to_open: usize,
    /// Connects in progress.
    connecting: usize,
    /// Failed connections waiting to be reopened, by when.
    backoff: BinaryHeap<Reverse<Instant>>,
    /// Failures since the last success, for the back-off length.
    failures_in_a_row: u32,
    /// Next connection id (pattern seed source); ids step by the thread count.
    next_id: u64,
    id_step: u64,
    window: Window,
    /// Idle: the echo phase has begun.
    echo_phase: bool,
    /// Messages completed but not yet published to `shared.completed`.
    unpublished: u64,
    stats: ThreadStats,
}

impl std::fmt::Debug for Driver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Driver")
            .field("connections", &self.conns.len())
            .field("to_open", &self.to_open)
            .finish_non_exhaustive()
    }
}

impl Driver {
    #[allow(clippy::too_many_arguments)]
    fn new(
        spec: LoadSpec,
        pattern: Arc<Pattern>,
        shared: Arc<Shared>,
        poll: Poll,
        slots: usize,
        first_id: u64,
        id_step: u64,
        window: Window,
    ) -> io::Result<Driver> {
        Ok(Driver {
            depth: spec.effective_depth() as u64,
            spec,
            pattern,
            shared,
            poll,
            conns: Slab::with_capacity(slots),
            scratch: vec![0u8; MAX_CHUNK].into_boxed_slice(),
            to_open: slots,
            connecting: 0,
            backoff: BinaryHeap::new(),
            failures_in_a_row: 0,
            next_id: first_id,
            id_step,
            window,
            echo_phase: false,
            unpublished: 0,
            stats: ThreadStats::new(),
        })
    }

    fn run(mut self) -> ThreadStats {
        let mut events = Events::with_capacity(1024);
        let mut next_sweep = Instant::now() + SWEEP_EVERY;
        let timed = self.spec.scenario.is_timed();
        let drain_deadline = self
            .window
            .until
            .map(|u| u + self.spec.timeout.min(DRAIN_MAX));
        loop {
            let now = Instant::now();
            if timed && self.window.is_over(now) {
                self.begin_drain();
            }
            self.reopen_due(now);
            self.open_some(now);
            if self.is_done(now) {
                break;
            }
            if drain_deadline.is_some_and(|d| now >= d) {
                self.abandon_drain();
                break;
            }
            let timeout = self.poll_timeout(now, next_sweep, drain_deadline);
            if let Err(e) = self.poll.poll(&mut events, timeout) {
                if e.kind() != io::ErrorKind::Interrupted {
                    self.stats
                        .errors
                        .count(ErrorKind::Other, || format!("poll failed: {e}"));
                    break;
                }
            }
            for event in events.iter() {
                match event.token() {
                    WAKER => self.phase_changed(),
                    Token(key) => {
                        if event.is_writable() {
                            if let Some(c) = self.conns.get_mut(key) {
                                c.write_blocked = false;
                            }
                        }
                        let failed_connect = event.is_error() || event.is_write_closed();
                        self.drive(key, failed_connect);
                    }
                }
            }
            let now = Instant::now();
            if now >= next_sweep {
                self.sweep(now);
                next_sweep = now + SWEEP_EVERY;
            }
            self.publish();
        }
        self.publish();
        self.stats
    }

    fn publish(&mut self) {
        if self.unpublished > 0 {
            self.shared
                .completed
                .fetch_add(std::mem::take(&mut self.unpublished), Ordering::Relaxed);
        }
    }

    /// Whether this thread has nothing left to do.
    fn is_done(&self, now: Instant) -> bool {
        let idle_work_left = self.to_open > 0 || !self.backoff.is_empty();
        if self.spec.scenario.is_timed() {
            self.window.is_over(now) && self.conns.is_empty()
        } else {
            self.shared.phase.load(Ordering::Acquire) == PHASE_STOP
                || (self.echo_phase && self.conns.is_empty() && !idle_work_left)
        }
    }

    fn poll_timeout(
        &self,
        now: Instant,
        next_sweep: Instant,
        drain_deadline: Option<Instant>,
    ) -> Option<Duration> {
        let mut wake = None::<Instant>;
        let mut at = |t: Instant| wake = Some(wake.map_or(t, |w: Instant| w.min(t)));
        // Sweeps matter only while something can time out: connects, and echoes (always
        // awaited in timed scenarios; in idle, only after the hold).
        let awaiting_echoes =
            !self.conns.is_empty() && (self.spec.scenario.is_timed() || self.echo_phase);
        if self.connecting > 0 || awaiting_echoes {
            at(next_sweep);
        }
        if let Some(Reverse(t)) = self.backoff.peek() {
            at(*t);
        }
        if self.spec.scenario.is_timed() {
            match self.window.until {
                Some(u) if now < u => at(u),
                _ => {}
            }
            if let Some(d) = drain_deadline {
                at(d);
            }
        }
        // Round up: a poll that wakes a hair early only costs one more round.
        wake.map(|w| w.saturating_duration_since(now) + Duration::from_millis(1))
    }

    /// Opens connections while there are slots to fill and room for more connects.
    fn open_some(&mut self, now: Instant) {
        let may_open = if self.spec.scenario.is_timed() {
            !self.window.is_over(now)
        } else {
            !self.echo_phase
        };
        while may_open && self.to_open > 0 && self.connecting < CONNECTS_IN_FLIGHT {
            self.to_open -= 1;
            self.open_one(now);
        }
    }

    fn open_one(&mut self, now: Instant) {
        let id = self.next_id;
        self.next_id += self.id_step;
        let source = (self.spec.source_addrs > 1).then(|| {
            Ipv4Addr::new(
                127,
                0,
                0,
                1 + (id % u64::from(self.spec.source_addrs)) as u8,
            )
        });
        let mut stream = match connect(self.spec.target, source, self.spec.nodelay) {
            Ok(s) => s,
            Err(e) => {
                self.connect_failed(now, &e);
                return;
            }
        };
        let entry = self.conns.vacant_entry();
        let token = Token(entry.key());
        if let Err(e) = self.poll.registry().register(
            &mut stream,
            token,
            Interest::READABLE | Interest::WRITABLE,
        ) {
            self.stats.errors.count(ErrorKind::Other, || {
                format!("cannot register a socket: {e}")
            });
            self.after_failure(now);
            return;
        }
        entry.insert(Conn {
            stream,
            stage: Stage::Connecting,
            seed: Pattern::seed(id),
            started: now,
            sent: 0,
            received: 0,
            send_limit: 0,
            stamps: VecDeque::with_capacity(self.depth as usize),
            last_progress: now,
            write_blocked: true,
        });
        self.connecting += 1;
    }

    fn connect_failed(&mut self, now: Instant, e: &io::Error) {
        self.stats
            .errors
            .count(ErrorKind::Connect, || describe_connect_error(e));
        self.after_failure(now);
    }

    /// Schedules the reopening of a failed connection (timed scenarios), or settles it (idle).
    fn after_failure(&mut self, now: Instant) {
        if self.spec.scenario.is_timed() {
            let backoff = BACKOFF_MIN
                .saturating_mul(1 << self.failures_in_a_row.min(10))
                .min(BACKOFF_MAX);
            self.failures_in_a_row += 1;
            if !self.window.is_over(now + backoff) {
                self.backoff.push(Reverse(now + backoff));
            }
        } else if !self.echo_phase {
            self.shared.settled.fetch_add(1, Ordering::Release);
        }
    }

    fn reopen_due(&mut self, now: Instant) {
        while let Some(Reverse(t)) = self.backoff.peek() {
            if *t > now {
                break;
            }
            self.backoff.pop();
            self.to_open += 1;
        }
    }

    /// Drives connection `key` after an event.
    fn drive(&mut self, key: usize, error_event: bool) {
        let Some(conn) = self.conns.get_mut(key) else {
            // A stale event for a connection closed earlier in this batch.
            return;
        };
        let now = Instant::now();
        if conn.stage == Stage::Connecting {
            match connect_status(&conn.stream) {
                Ok(true) => self.connected(key, now),
                Ok(false) if !error_event => return,
                Ok(false) => {
                    let e = io::Error::new(io::ErrorKind::ConnectionRefused, "connect failed");
                    self.close_failed_connect(key, now, &e);
                    return;
                }
                Err(e) => {
                    self.close_failed_connect(key, now, &e);
                    return;
                }
            }
        }
        let outcome = self.pump(key, now);
        self.settle(key, now, outcome);
    }

    fn close_failed_connect(&mut self, key: usize, now: Instant, e: &io::Error) {
        self.conns.remove(key);
        self.connecting -= 1;
        self.connect_failed(now, e);
    }

    fn connected(&mut self, key: usize, now: Instant) {
        self.connecting -= 1;
        self.stats.opened += 1;
        let idle = !self.spec.scenario.is_timed();
        let conn = &mut self.conns[key];
        conn.last_progress = now;
        conn.write_blocked = false;
        if idle && !self.echo_phase {
            conn.stage = Stage::Holding;
            self.shared.established.fetch_add(1, Ordering::Relaxed);
            self.shared.settled.fetch_add(1, Ordering::Release);
        } else {
            conn.stage = Stage::Running;
            conn.send_limit = self.depth * self.spec.size as u64;
        }
    }

    /// Applies the outcome of driving connection `key`.
    fn settle(&mut self, key: usize, now: Instant, outcome: Outcome) {
        match outcome {
            Outcome::Open => {}
            Outcome::Finished => {
                self.conns.remove(key);
                self.failures_in_a_row = 0;
                // Connrate: the next client starts at once, while the window lasts.
                if self.spec.scenario == Scenario::Connrate && !self.window.is_over(now) {
                    self.to_open += 1;
                    self.open_some(now);
                }
            }
            Outcome::Failed(kind, what) => {
                if let Some(conn) = self.conns.try_remove(key) {
                    if conn.stage == Stage::Connecting {
                        self.connecting -= 1;
                    }
                }
                self.stats.errors.count(kind, || what);
                if self.spec.scenario.is_timed() && !self.window.is_over(now) {
                    self.after_failure(now);
                }
            }
        }
    }

    /// Moves bytes on connection `key` until the socket blocks in both directions or the
    /// connection's work is done.
    fn pump(&mut self, key: usize, now: Instant) -> Outcome {
        let size = self.spec.size as u64;
        let scenario = self.spec.scenario;
        let conn = &mut self.conns[key];
        loop {
            // Write while the window allows and the socket takes it.
            while conn.stage == Stage::Running && !conn.write_blocked && conn.sent < conn.send_limit
            {
                let len = (conn.send_limit - conn.sent).min(MAX_CHUNK as u64) as usize;
                let data = self.pattern.slice(conn.seed, conn.sent, len);
                match conn.stream.write(data) {
                    Ok(0) => return Outcome::Failed(ErrorKind::Reset, "write returned 0".into()),
                    Ok(n) => {
                        let before = conn.sent;
                        conn.sent += n as u64;
                        conn.last_progress = now;
                        // A message starts at every multiple of `size` this write covered.
                        let started = conn.sent.div_ceil(size) - before.div_ceil(size);
                        for _ in 0..started {
                            conn.stamps.push_back(now);
                        }
                        if n < len {
                            conn.write_blocked = true;
                        }
                    }
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => conn.write_blocked = true,
                    Err(e) => return io_failure(&e),
                }
            }

            // Read until a short read (the socket is drained: Linux reports every new arrival
            // on an edge-triggered TCP socket) or WouldBlock.
            let mut window_opened = false;
            loop {
                match conn.stream.read(&mut self.scratch) {
                    Ok(0) => {
                        return if conn.outstanding() > 0 || conn.stage == Stage::Holding {
                            Outcome::Failed(
                                ErrorKind::Reset,
                                format!(
                                    "server closed the connection with {} echo bytes outstanding",
                                    conn.outstanding()
                                ),
                            )
                        } else {
                            Outcome::Failed(ErrorKind::Reset, "server closed the connection".into())
                        };
                    }
                    Ok(n) => {
                        let data = &self.scratch[..n];
                        if n as u64 > conn.outstanding() {
                            return Outcome::Failed(
                                ErrorKind::Mismatch,
                                format!(
                                    "{} bytes came back where {} were outstanding",
                                    n,
                                    conn.outstanding()
                                ),
                            );
                        }
                        if !self.pattern.matches(conn.seed, conn.received, data) {
                            return Outcome::Failed(
                                ErrorKind::Mismatch,
                                format!(
                                    "echoed bytes at offset {}..{} differ from those sent",
                                    conn.received,
                                    conn.received + n as u64
                                ),
                            );
                        }
                        let before = conn.received;
                        conn.received += n as u64;
                        conn.last_progress = now;
                        let in_window = self.window.contains(now);
                        if in_window {
                            self.stats.bytes += n as u64;
                        }
                        let completed = conn.received / size - before / size;
                        for _ in 0..completed {
                            let began = conn.stamps.pop_front().unwrap_or(now);
                            // Connrate's unit is the whole connection: connect to echo.
                            let began = if scenario == Scenario::Connrate {
                                conn.started
                            } else {
                                began
                            };
                            self.unpublished += 1;
                            if in_window {
                                self.stats.messages += 1;
                                let ns = (now - began).as_nanos().min(u128::from(HIST_MAX_NS));
                                self.stats.hist.saturating_record(ns.max(1) as u64);
                            }
                        }
                        if completed > 0 {
                            self.failures_in_a_row = 0;
                            if matches!(scenario, Scenario::Connrate | Scenario::Idle) {
                                return Outcome::Finished;
                            }
                            // Draining: no new messages once the window is over.
                            if !self.window.is_over(now) {
                                conn.send_limit = (conn.received / size + self.depth) * size;
                                window_opened = true;
                            }
                        }
                        if self.window.is_over(now) && conn.outstanding() == 0 {
                            return Outcome::Finished;
                        }
                        if n < self.scratch.len() {
                            break;
                        }
                    }
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) => return io_failure(&e),
                }
            }
            if !(window_opened && !conn.write_blocked && conn.sent < conn.send_limit) {
                return Outcome::Open;
            }
        }
    }

    /// The window is over: stop sending and reopen nothing; connections with nothing in
    /// flight (or still connecting) close now, the rest once their echoes are back.
    /// Called on every round of the drain; cheap once the stragglers are few.
    fn begin_drain(&mut self) {
        self.to_open = 0;
        self.backoff.clear();
        let done: Vec<usize> = self
            .conns
            .iter()
            .filter(|(_, c)| c.stage == Stage::Connecting || c.outstanding() == 0)
            .map(|(k, _)| k)
            .collect();
        for key in done {
            if self.conns.remove(key).stage == Stage::Connecting {
                self.connecting -= 1;
            }
        }
    }

    /// The drain took too long: whatever is still outstanding counts as timed out.
    fn abandon_drain(&mut self) {
        let timeout = self.spec.timeout;
        for conn in self.conns.drain() {
            if conn.outstanding() > 0 {
                self.stats.errors.count(ErrorKind::Timeout, || {
                    format!(
                        "{} echo bytes still outstanding {:.1} s after the window ended",
                        conn.outstanding(),
                        timeout.min(DRAIN_MAX).as_secs_f64()
                    )
                });
            }
        }
    }

    /// Closes connections whose connect or awaited echo has taken longer than the timeout.
    fn sweep(&mut self, now: Instant) {
        let timeout = self.spec.timeout;
        let expired: Vec<(usize, bool)> = self
            .conns
            .iter()
            .filter_map(|(k, c)| match c.stage {
                Stage::Connecting if now - c.started >= timeout => Some((k, true)),
                Stage::Running if c.outstanding() > 0 && now - c.last_progress >= timeout => {
                    Some((k, false))
                }
                _ => None,
            })
            .collect();
        for (key, connecting) in expired {
            let what = if connecting {
                format!("connect timed out after {:.1} s", timeout.as_secs_f64())
            } else {
                let c = &self.conns[key];
                format!(
                    "no echo for {:.1} s with {} bytes outstanding",
                    timeout.as_secs_f64(),
                    c.outstanding()
                )
            };
            let kind = if connecting {
                ErrorKind::Connect
            } else {
                ErrorKind::Timeout
            };
            if connecting {
                self.conns.remove(key);
                self.connecting -= 1;
                self.stats.errors.count(kind, || what);
                self.after_failure(now);
            } else {
                self.settle(key, now, Outcome::Failed(kind, what));
            }
        }
    }

    /// Idle: the coordinator moved on to the echo phase (or asked everyone to stop).
    fn phase_changed(&mut self) {
        if self.shared.phase.load(Ordering::Acquire) != PHASE_ECHO || self.echo_phase {
            return;
        }
        self.echo_phase = true;
        // Connections that never opened are not retried in the idle scenario.
        self.to_open = 0;
        let now = Instant::now();
        let size = self.spec.size as u64;
        let holding: Vec<usize> = self
            .conns
            .iter()
            .filter(|(_, c)| c.stage == Stage::Holding)
            .map(|(k, _)| k)
            .collect();
        for key in holding {
            let conn = &mut self.conns[key];
            conn.stage = Stage::Running;
            conn.send_limit = size;
            conn.last_progress = now;
            let outcome = self.pump(key, now);
            self.settle(key, now, outcome);
        }
    }
}

/// Classifies an I/O error on an established connection.
fn io_failure(e: &io::Error) -> Outcome {
    use io::ErrorKind::*;
    let kind = match e.kind() {
        ConnectionReset | BrokenPipe | ConnectionAborted | UnexpectedEof | NotConnected => {
            ErrorKind::Reset
        }
        TimedOut => ErrorKind::Timeout,
        _ => ErrorKind::Other,
    };
    Outcome::Failed(kind, e.to_string())
}

fn describe_connect_error(e: &io::Error) -> String {
    if e.raw_os_error() == Some(libc::EADDRNOTAVAIL) {
        format!("{e} (out of ephemeral ports? spread connections with --source-addrs)")
    } else {
        e.to_string()
    }
}

/// Starts a nonblocking connect to `target`, from `source` if given.
fn connect(target: SocketAddr, source: Option<Ipv4Addr>, nodelay: bool) -> io::Result<TcpStream> {
    let socket = Socket::new(
        Domain::for_address(target),
        Type::STREAM.nonblocking(),
        Some(Protocol::TCP),
    )?;
    if let Some(ip) = source {
        set_bind_address_no_port(&socket)?;
        socket.bind(&SocketAddr::new(IpAddr::V4(ip), 0).into())?;
    }
    if nodelay {
        socket.set_nodelay(true)?;
    }
    match socket.connect(&target.into()) {
        Ok(()) => {}
        Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => {}
        Err(e) => return Err(e),
    }
    Ok(TcpStream::from_std(socket.into()))
}

fn set_bind_address_no_port(socket: &Socket) -> io::Result<()> {
    reactor_pool::sys::socket::set_bind_address_no_port(socket.as_fd())
}

/// Whether a nonblocking connect has finished: `Ok(true)` connected, `Ok(false)` still in
/// progress (a spurious event), `Err` failed.
fn connect_status(stream: &TcpStream) -> io::Result<bool> {
    if let Some(e) = stream.take_error()? {
        return Err(e);
    }
    match stream.peer_addr() {
        Ok(_) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::NotConnected => Ok(false),
        Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => Ok(false),
        Err(e) => Err(e),
    }
}
