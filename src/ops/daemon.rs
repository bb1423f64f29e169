//! Daemonizing, and reporting start-up success or failure to whoever started us.
//!
//! The classic sequence, run before any thread exists:
//! 1. `fork`; the parent waits on a socket pair for the daemon's report and exits with it, so
//!    the caller's exit status says whether start-up worked (and the parent prints the usual
//!    `listening on ADDR` line);
//! 2. `setsid` in the child: a new session, no controlling terminal;
//! 3. `fork` again and let the intermediate process exit, so the daemon (not a session leader)
//!    can never acquire a terminal;
//! 4. `umask(022)`, `chdir("/")`, stdin, stdout and stderr to `/dev/null` (the caller then
//!    points stderr at the log file, if there is one), every other inherited descriptor
//!    closed.
//!
//! [`Reporter`] carries the outcome: the daemon writes `ready ADDR` or `error CODE MESSAGE` on
//! the socket pair. A supervised server uses the same protocol on its stdout, which its
//! supervisor reads.

use std::fs::File;
use std::io::{self, BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::os::fd::{AsFd, AsRawFd, RawFd};
use std::os::unix::net::UnixStream;

use crate::sys::fd::{close_inherited_fds, dup2};
use crate::sys::fs::umask;
use crate::sys::process::{self, Fork};

/// Tells whoever started this process how start-up went. Exactly one report is sent.
#[derive(Debug)]
pub(super) enum Reporter {
    /// Foreground: print `listening on ADDR` on stdout; errors on stderr.
    Stdout,
    /// Daemon or supervised server: one protocol line on this stream.
    Channel(UnixStream),
}

/// One start-up report, as sent over a [`Reporter::Channel`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Report {
    /// Serving on this address.
    Ready(SocketAddr),
    /// Start-up failed: exit with `code`, tell the user `message`.
    Failed { code: u8, message: String },
}

impl Report {
    fn encode(&self) -> String {
        match self {
            Report::Ready(addr) => format!("ready {addr}\n"),
            Report::Failed { code, message } => {
                format!("error {code} {}\n", message.replace('\n', " "))
            }
        }
    }

    /// Parses one protocol line.
    pub(super) fn decode(line: &str) -> Option<Report> {
        let line = line.trim_end_matches(['\r', '\n']);
        if let Some(addr) = line.strip_prefix("ready ") {
            return addr.parse().ok().map(Report::Ready);
        }
        let rest = line.strip_prefix("error ")?;
        let (code, message) = rest.split_once(' ').unwrap_or((rest, ""));
        Some(Report::Failed {
            code: code.parse().ok()?,
            message: message.to_owned(),
        })
    }
}

impl Reporter {
    /// Reports that the server is serving on `addr`.
    pub(super) fn ready(&mut self, addr: SocketAddr) {
        match self {
            Reporter::Stdout => {
                let mut stdout = io::stdout().lock();
                // Nobody reading stdout does not stop the server.
                let _ = writeln!(stdout, "listening on {addr}").and_then(|()| stdout.flush());
            }
            Reporter::Channel(stream) => {
                let _ = stream.write_all(Report::Ready(addr).encode().as_bytes());
            }
        }
    }

    /// Reports a start-up failure; the caller then exits with `code`.
    pub(super) fn fail(&mut self, code: u8, message: &str) {
        match self {
            // In the foreground stderr is the log: say it once.
            Reporter::Stdout => eprintln!("reactor-pool: error: {message}"),
            Reporter::Channel(stream) => {
                // The message travels to whoever started us; keep a record in our own log.
                tracing::error!("{message}");
                let report = Report::Failed {
                    code,
                    message: message.to_owned(),
                };
                let _ = stream.write_all(report.encode().as_bytes());
            }
        }
    }
}

/// Reads one report from `stream`: `None` if it closed without one.
pub(super) fn read_report(stream: &mut impl io::Read) -> io::Result<Option<Report>> {
    let mut line = String::new();
    BufReader::new(stream).read_line(&mut line)?;
    Ok(Report::decode(&line))
}

/// What `daemonize` returns in the process that goes on.
#[derive(Debug)]
pub(super) enum Daemonized {
    /// The original process: exit with this code (the report was printed already).
    Parent(u8),
    /// The daemon: report start-up through this.
    Daemon(Reporter),
}

/// Detaches from the terminal as described in the module docs. `keep_fd` (the log file) stays
/// open; the caller may then point stderr at it.
pub(super) fn daemonize(keep_fd: Option<RawFd>) -> io::Result<Daemonized> {
    let (mut parent_end, daemon_end) = UnixStream::pair()?;
    match process::fork_single_threaded()? {
        Fork::Parent(child) => {
            drop(daemon_end);
            let report = read_report(&mut parent_end);
            // The intermediate process exits right after the second fork: reap it.
            let _ = process::reap_blocking(child);
            Ok(Daemonized::Parent(relay(report)))
        }
        Fork::Child => {
            drop(parent_end);
            let setup = (|| {
                process::setsid()?;
                match process::fork_single_threaded()? {
                    Fork::Parent(_) => process::exit_now(0),
                    Fork::Child => {}
                }
                umask(0o022);
                std::env::set_current_dir("/")?;
                let null = File::options().read(true).write(true).open("/dev/null")?;
                for fd in 0..=2 {
                    dup2(null.as_fd(), fd)?;
                }
                drop(null);
                let mut keep = vec![daemon_end.as_raw_fd()];
                keep.extend(keep_fd);
                close_inherited_fds(&keep)
            })();
            match setup {
                Ok(()) => Ok(Daemonized::Daemon(Reporter::Channel(daemon_end))),
                Err(e) => {
                    let mut reporter = Reporter::Channel(daemon_end);
                    reporter.fail(1, &format!("cannot daemonize: {e}"));
                    process::exit_now(1)
                }
            }
        }
    }
}

/// Prints the daemon's report the way a foreground server would, and picks the exit code.
fn relay(report: io::Result<Option<Report>>) -> u8 {
    match report {
        Ok(Some(Report::Ready(addr))) => {
            let mut stdout = io::stdout().lock();
            let _ = writeln!(stdout, "listening on {addr}").and_then(|()| stdout.flush());
            0
        }
        Ok(Some(Report::Failed { code, message })) => {
            eprintln!("reactor-pool: error: {message}");
            code.max(1)
        }
        Ok(None) | Err(_) => {
            eprintln!(
                "reactor-pool: error: the daemon exited during start-up without a report \
                 (see its log)"
            );
            1
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reports_round_trip() {
        for report in [
            Report::Ready("127.0.0.1:7".parse().unwrap()),
            Report::Ready("[::1]:65535".parse().unwrap()),
            Report::Failed {
                code: 2,
                message: "invalid `workers`: out of range".to_owned(),
            },
        ] {
            assert_eq!(Report::decode(&report.encode()), Some(report));
        }
        let multi = Report::Failed {
            code: 1,
            message: "a\nb".to_owned(),
        };
        assert_eq!(
            Report::decode(&multi.encode()),
            Some(Report::Failed {
                code: 1,
                message: "a b".to_owned()
            })
        );
        assert_eq!(Report::decode("listening on 1.2.3.4:5"), None);
        assert_eq!(Report::decode(""), None);
    }
}
