//! `--supervise`: a supervisor process that runs the server as a child and restarts it after
//! a crash.
//!
//! - The supervisor binds the listening socket itself and hands it to each child (an
//!   inherited descriptor, `--inherit-listener FD`), so a restart keeps the port, connections
//!   arriving during a restart wait in the backlog, and a child that drops privileges
//!   (`--user`) does not need root to bind again.
//! - A child is the same binary (`/proc/self/exe`, so an upgrade on disk does not change what
//!   runs until the supervisor itself restarts) with the same arguments; it reports `ready ADDR`
//!   or `error CODE MESSAGE` on its stdout, which is a socket to the supervisor.
//! - Crash (non-zero exit or death by a signal): restart after a back-off of
//!   `--restart-delay` (1 s by default), doubling to 30 s, reset once a child has run for a
//!   minute. Each exit status is logged. A child that exits 0 on its own was stopped on
//!   purpose: under `--restart on-failure` (the default) the supervisor exits too; under
//!   `--restart always` it is restarted like a crash (the notes' daemon: restart after any
//!   exit), unless the supervisor itself was told to stop.
//! - If the first child fails to start, the supervisor reports its error and exits with its
//!   code: a broken config does not turn into a restart loop.
//! - SIGTERM/SIGINT are forwarded; the supervisor waits for the graceful drain (killing the
//!   child after `shutdown_timeout` + 5 s) and exits 0. SIGHUP is forwarded (the child
//!   reloads) and reopens the supervisor's log file. Children get SIGTERM if the supervisor
//!   dies (`PR_SET_PDEATHSIG`), and every child is waited for: no zombies.
//!
//! Signals reach the loop through the process's [`SignalPipe`] (the self-pipe the fork model
//! uses too), which `poll(2)` watches together with the child's report socket; the supervisor
//! is single-threaded.

use std::io::{self, Read};
use std::net::TcpListener;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use tracing::{error, info, warn};

use super::daemon::{Report, Reporter};
use super::logging::Logging;
use super::notify::notify;
use crate::sys::fd::clear_cloexec;
use crate::sys::poll;
use crate::sys::process::{self, Pid};
use crate::sys::signal::{SIGCHLD, SIGHUP, SIGINT, SIGKILL, SIGTERM, SignalPipe, Signo};

/// First restart delay unless `--restart-delay` says otherwise.
pub(super) const INITIAL_BACKOFF: Duration = Duration::from_secs(1);
/// Longest restart delay.
pub(super) const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// A child that ran this long was healthy: the back-off starts over.
pub(super) const HEALTHY_RUN: Duration = Duration::from_secs(60);
/// Extra time after `shutdown_timeout` before a draining child is killed.
const KILL_GRACE: Duration = Duration::from_secs(5);

/// When the supervisor restarts a server that exited.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum RestartPolicy {
    /// Only after a crash (non-zero exit or a signal); a clean exit ends the supervisor.
    #[default]
    OnFailure,
    /// After any exit, unless the supervisor itself was told to stop.
    Always,
}

impl RestartPolicy {
    /// Whether a child that exited this way is restarted.
    fn restarts(self, status: ExitStatus) -> bool {
        self == RestartPolicy::Always || !status.success()
    }
}

/// What the supervisor needs to start children.
#[derive(Debug)]
pub(super) struct Supervisor {
    /// The listening socket every child serves on.
    pub listener: TcpListener,
    /// The children's drain time (to know when to give up waiting).
    pub shutdown_timeout: Duration,
    /// Which exits are followed by a restart.
    pub restart: RestartPolicy,
    /// The first restart delay; it doubles after each quick exit, up to [`MAX_BACKOFF`].
    pub restart_delay: Duration,
    /// Absolute paths the children must use, since the supervisor may have changed
    /// directory (`--daemon`): appended to their arguments, overriding relative ones.
    pub config_path: Option<PathBuf>,
    /// As `config_path`, for `--log-file`.
    pub log_file: Option<PathBuf>,
    /// The supervisor's own logger (reopened on SIGHUP).
    pub logging: Logging,
}

/// Signals the supervisor handles: SIGCHLD only wakes the loop (which then calls `try_wait`).
const SIGNALS: &[Signo] = &[SIGCHLD, SIGTERM, SIGINT, SIGHUP];

/// A child that is running.
struct Running {
    child: Child,
    started: Instant,
    /// The child's stdout, until it closes; carries its start-up report.
    report: Option<UnixStream>,
    /// Bytes of the report line received so far.
    partial: Vec<u8>,
    /// The child reported `ready`.
    ready: bool,
    /// The child reported a start-up failure (code, message).
    failed: Option<(u8, String)>,
}

enum State {
    Running(Running),
    /// Waiting to restart.
    BackingOff {
        until: Instant,
    },
}

impl Supervisor {
    /// Supervises until stopped; returns the exit code. `reporter` is told once the first
    /// child is ready (or failed).
    pub(super) fn run(self, mut reporter: Reporter) -> u8 {
        let signals = match SignalPipe::install(SIGNALS) {
            Ok(s) => s,
            Err(e) => {
                reporter.fail(1, &format!("cannot install signal handlers: {e}"));
                return 1;
            }
        };
        let mut reporter = Some(reporter);
        let mut state = match self.spawn() {
            Ok(running) => State::Running(running),
            Err(e) => {
                let message = format!("cannot start the server process: {e}");
                if let Some(mut r) = reporter.take() {
                    r.fail(1, &message);
                }
                return 1;
            }
        };
        let mut backoff = self.restart_delay;
        let mut stop: Option<Instant> = None;
        let mut killed = false;
        loop {
            let now = Instant::now();
            let timeout = match (&state, stop) {
                (State::BackingOff { until }, _) => Some(until.saturating_duration_since(now)),
                (State::Running(_), Some(deadline)) if !killed => {
                    Some(deadline.saturating_duration_since(now))
                }
                _ => None,
            };
            let report_fd = match &state {
                State::Running(r) => r.report.as_ref().map(|s| s.as_fd()),
                State::BackingOff { .. } => None,
            };
            let mut fds = vec![signals.as_fd()];
            fds.extend(report_fd);
            let readable = match wait_readable(&fds, timeout) {
                Ok(r) => r,
                Err(e) => {
                    error!(error = %e, "supervisor: poll failed");
                    vec![false; fds.len()]
                }
            };
            drop(fds);
            let received = signals.take();
            if let (State::Running(r), Some(true)) = (&mut state, readable.get(1)) {
                self.read_report(r, &mut reporter);
            }
            if received.contains(SIGHUP) {
                if let Err(e) = self.logging.reopen() {
                    error!(error = %e, "cannot reopen the log file");
                }
                if let State::Running(r) = &state {
                    info!(pid = r.child.id(), "SIGHUP: forwarding to the server");
                    forward(&r.child, SIGHUP);
                }
            }
            for signal in [SIGTERM, SIGINT] {
                if !received.contains(signal) {
                    continue;
                }
                if stop.is_none() {
                    info!(signal, "supervisor: stopping the server and exiting");
                    notify("STOPPING=1");
                    stop = Some(Instant::now() + self.shutdown_timeout + KILL_GRACE);
                }
                match &state {
                    State::Running(r) => forward(&r.child, signal),
                    State::BackingOff { .. } => return 0,
                }
            }
            let now = Instant::now();
            match &mut state {
                State::Running(r) => {
                    let status = match r.child.try_wait() {
                        Ok(Some(status)) => status,
                        Ok(None) => {
                            if let Some(deadline) = stop {
                                if now >= deadline && !killed {
                                    error!(
                                        pid = r.child.id(),
                                        "server did not finish draining in time; killing it"
                                    );
                                    forward(&r.child, SIGKILL);
                                    killed = true;
                                }
                            }
                            continue;
                        }
                        Err(e) => {
                            // ECHILD would mean someone else reaped it: treat as a crash.
                            error!(error = %e, "cannot wait for the server process");
                            ExitStatus::from_raw(1 << 8)
                        }
                    };
                    // Collect a report the child wrote just before exiting.
                    self.read_report(r, &mut reporter);
                    let ran = r.started.elapsed();
                    let pid = r.child.id();
                    let how = describe(status);
                    if stop.is_some() {
                        info!(pid, status = %how, "server stopped; supervisor exiting");
                        return if status.success() && !killed { 0 } else { 1 };
                    }
                    if let Some(mut first) = reporter.take() {
                        // The first child never became ready: report its failure and stop.
                        let (code, message) = r.failed.clone().unwrap_or_else(|| {
                            (1, format!("the server exited during start-up ({how})"))
                        });
                        first.fail(code.max(1), &message);
                        return code.max(1);
                    }
                    if !self.restart.restarts(status) {
                        info!(
                            pid,
                            "server exited on its own with status 0; supervisor exiting"
                        );
                        return 0;
                    }
                    if ran >= HEALTHY_RUN {
                        backoff = self.restart_delay;
                    }
                    let what = if status.success() {
                        "server exited; restarting (--restart always)"
                    } else {
                        "server crashed; restarting"
                    };
                    warn!(
                        pid,
                        status = %how,
                        ran_ms = ran.as_millis() as u64,
                        restart_in_ms = backoff.as_millis() as u64,
                        "{what}"
                    );
                    state = State::BackingOff {
                        until: now + backoff,
                    };
                    backoff = (backoff * 2).min(MAX_BACKOFF.max(self.restart_delay));
                }
                State::BackingOff { until } => {
                    if now < *until {
                        continue;
                    }
                    match self.spawn() {
                        Ok(running) => state = State::Running(running),
                        Err(e) => {
                            error!(error = %e, retry_in_ms = backoff.as_millis() as u64, "cannot start the server process");
                            state = State::BackingOff {
                                until: now + backoff,
                            };
                            backoff = (backoff * 2).min(MAX_BACKOFF.max(self.restart_delay));
                        }
                    }
                }
            }
        }
    }

    /// Starts one child on the shared listener.
    fn spawn(&self) -> io::Result<Running> {
        let (ours, theirs) = UnixStream::pair()?;
        ours.set_nonblocking(true)?;
        let fd = self.listener.as_raw_fd();
        let supervisor = i32::try_from(std::process::id()).unwrap_or(0);
        let mut args = std::env::args_os();
        let argv0 = args.next().unwrap_or_else(|| "reactor-pool".into());
        let mut command = Command::new("/proc/self/exe");
        command
            .arg0(argv0)
            .args(args)
            .arg("--inherit-listener")
            .arg(fd.to_string());
        if let Some(path) = &self.config_path {
            command.arg("--config").arg(path);
        }
        if let Some(path) = &self.log_file {
            command.arg("--log-file").arg(path);
        }
        // The supervisor is the service's main process for systemd; the child must not
        // claim readiness itself.
        command
            .env_remove("NOTIFY_SOCKET")
            .stdin(Stdio::null())
            .stdout(Stdio::from(OwnedFd::from(theirs)))
            .stderr(Stdio::inherit());
        // SAFETY: the closure runs in the forked child before exec and calls only
        // async-signal-safe functions (fcntl, prctl, getppid); it allocates nothing.
        unsafe {
            command.pre_exec(move || {
                clear_cloexec(fd)?;
                process::set_parent_death_signal(SIGTERM)?;
                // The supervisor may have died between fork and prctl: then nobody would
                // send the signal.
                if process::parent_pid() != supervisor {
                    return Err(io::Error::other("the supervisor exited"));
                }
                Ok(())
            })
        };
        let child = command.spawn()?;
        info!(pid = child.id(), "started server process");
        Ok(Running {
            child,
            started: Instant::now(),
            report: Some(ours),
            partial: Vec::new(),
            ready: false,
            failed: None,
        })
    }

    /// Reads what the child wrote on its report socket; acts on a complete line.
    fn read_report(&self, r: &mut Running, reporter: &mut Option<Reporter>) {
        let Some(stream) = r.report.as_mut() else {
            return;
        };
        let mut buf = [0u8; 512];
        loop {
            match stream.read(&mut buf) {
                Ok(0) => {
                    r.report = None;
                    break;
                }
                Ok(n) => {
                    r.partial.extend_from_slice(&buf[..n]);
                    // A report is one short line; anything longer is not one.
                    if r.partial.len() > 64 * 1024 {
                        r.partial.clear();
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => break,
            }
        }
        while let Some(end) = r.partial.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = r.partial.drain(..=end).collect();
            match Report::decode(&String::from_utf8_lossy(&line)) {
                Some(Report::Ready(addr)) if !r.ready => {
                    r.ready = true;
                    info!(pid = r.child.id(), %addr, "server ready");
                    if let Some(mut first) = reporter.take() {
                        first.ready(addr);
                        notify("READY=1");
                    }
                }
                Some(Report::Failed { code, message }) => {
                    error!(
                        pid = r.child.id(),
                        code, "server failed to start: {message}"
                    );
                    r.failed = Some((code, message));
                }
                _ => {}
            }
        }
    }
}

/// Waits until one of `fds` is readable (or hung up), or `timeout` passes. Returns, per fd,
/// whether it is ready; all false on timeout. `EINTR` returns all false too (a signal
/// arrived: the caller re-checks its flags).
fn wait_readable(fds: &[BorrowedFd<'_>], timeout: Option<Duration>) -> io::Result<Vec<bool>> {
    let mut entries: Vec<poll::PollFd> = fds
        .iter()
        .map(|fd| poll::entry(fd.as_raw_fd(), poll::READ))
        .collect();
    match poll::poll(&mut entries, timeout) {
        Ok(_) => Ok(entries.iter().map(|e| e.revents != 0).collect()),
        Err(e) if e.kind() == io::ErrorKind::Interrupted => Ok(vec![false; fds.len()]),
        Err(e) => Err(e),
    }
}

fn forward(child: &Child, signal: i32) {
    let sent = Pid::try_from(child.id())
        .map_err(|_| io::Error::other("pid out of range"))
        .and_then(|pid| process::kill(pid, signal));
    if let Err(e) = sent {
        // ESRCH: it exited already; the wait will collect it.
        warn!(pid = child.id(), signal, error = %e, "cannot signal the server process");
    }
}

/// "exit status 3" or "killed by signal 9".
pub(super) fn describe(status: ExitStatus) -> String {
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exit status {code}"),
        (None, Some(signal)) => format!("killed by signal {signal}"),
        _ => status.to_string(),
    }
}
