//! Logging set-up: stderr, an append-only file, or syslog; a log filter that a reload can
//! change; a log file that a reload reopens (for logrotate).
//!
//! Precedence of the filter: `--log-level`, then `RUST_LOG`, then the config file's
//! `log_level` (also on reload: a file change cannot override the flag or the environment).

use std::fs::{File, OpenOptions};
use std::io::{self, IsTerminal, Write};
use std::os::fd::AsFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use parking_lot::Mutex;
use tracing::{Level, Metadata};
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Registry, reload};

use crate::sys::fd::dup2;
use crate::sys::syslog::{self, Priority};

/// Where log lines go.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogTarget {
    /// Standard error (the default in the foreground).
    Stderr,
    /// The system log, facility `daemon` (the default with `--daemon`).
    Syslog,
    /// The file given by `--log-file`.
    File,
}

/// A log file opened in append mode, reopened on reload.
#[derive(Debug)]
pub(super) struct LogFile {
    /// Where it is (absolute).
    path: PathBuf,
    /// The open file; replaced by `reopen`.
    file: Mutex<File>,
    /// Point stderr (fd 2) at the file too, and again after each reopen (daemon mode).
    redirect_stderr: bool,
}

impl LogFile {
    /// Opens (creating, mode 0640) `path` for appending.
    pub(super) fn open(path: &Path) -> io::Result<LogFile> {
        Ok(LogFile {
            path: path.to_owned(),
            file: Mutex::new(open_append(path)?),
            redirect_stderr: false,
        })
    }

    /// Makes fd 2 write to this file from now on and after every reopen.
    pub(super) fn redirect_stderr(&mut self) -> io::Result<()> {
        dup2(self.file.get_mut().as_fd(), 2)?;
        self.redirect_stderr = true;
        Ok(())
    }

    /// The open descriptor (to keep it open across daemonizing).
    pub(super) fn raw_fd(&self) -> std::os::fd::RawFd {
        use std::os::fd::AsRawFd;
        self.file.lock().as_raw_fd()
    }

    /// Opens the path again (after logrotate moved the old file away).
    pub(super) fn reopen(&self) -> io::Result<()> {
        let fresh = open_append(&self.path)?;
        if self.redirect_stderr {
            dup2(fresh.as_fd(), 2)?;
        }
        *self.file.lock() = fresh;
        Ok(())
    }

    fn write_line(&self, line: &[u8]) {
        // One write per line: with O_APPEND, lines from several processes (supervisor and
        // server) never interleave within a line.
        let _ = self.file.lock().write_all(line);
    }
}

fn open_append(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o640)
        .open(path)
}

/// The `MakeWriter` behind every target: buffers one event, emits it whole on drop.
#[derive(Debug, Clone)]
enum Sink {
    Stderr,
    File(Arc<LogFile>),
    Syslog,
}

/// One event's worth of output.
#[derive(Debug)]
struct Line<'a> {
    sink: &'a Sink,
    level: Level,
    buf: Vec<u8>,
}

impl Write for Line<'_> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        self.buf.extend_from_slice(data);
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Drop for Line<'_> {
    fn drop(&mut self) {
        if self.buf.is_empty() {
            return;
        }
        match self.sink {
            Sink::Stderr => {
                let _ = io::stderr().lock().write_all(&self.buf);
            }
            Sink::File(file) => file.write_line(&self.buf),
            Sink::Syslog => {
                let text = String::from_utf8_lossy(&self.buf);
                syslog::send(syslog_priority(self.level), text.trim_end());
            }
        }
    }
}

fn syslog_priority(level: Level) -> Priority {
    match level {
        Level::ERROR => Priority::Error,
        Level::WARN => Priority::Warning,
        Level::INFO => Priority::Info,
        _ => Priority::Debug,
    }
}

impl<'a> MakeWriter<'a> for Sink {
    type Writer = Line<'a>;

    fn make_writer(&'a self) -> Self::Writer {
        Line {
            sink: self,
            level: Level::INFO,
            buf: Vec::new(),
        }
    }

    fn make_writer_for(&'a self, meta: &Metadata<'_>) -> Self::Writer {
        Line {
            sink: self,
            level: *meta.level(),
            buf: Vec::new(),
        }
    }
}

/// The installed logger: changes its filter and reopens its file on reload.
#[derive(Debug, Clone)]
pub(super) struct Logging {
    /// Swaps the filter in the running subscriber.
    filter: reload::Handle<EnvFilter, Registry>,
    /// The log file, if logging to one.
    file: Option<Arc<LogFile>>,
    /// Where the filter came from: `--log-level` and `RUST_LOG` beat the config file.
    source: FilterSource,
}

/// Where the log filter in force came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum FilterSource {
    Flag,
    Env,
    Config,
}

impl Logging {
    /// Installs the global subscriber. `configured` is the config's `log_level` (which already
    /// holds `--log-level` when that flag was given, as `flag_given` says).
    pub(super) fn init(
        target: LogTarget,
        file: Option<LogFile>,
        flag_given: bool,
        configured: &str,
    ) -> Logging {
        let (filter, source) = match std::env::var("RUST_LOG") {
            Ok(env) if !flag_given && !env.trim().is_empty() => match EnvFilter::try_new(&env) {
                Ok(filter) => (filter, FilterSource::Env),
                Err(e) => {
                    eprintln!(
                        "reactor-pool: warning: ignoring RUST_LOG ({e}); using '{configured}'"
                    );
                    (EnvFilter::new(configured), FilterSource::Config)
                }
            },
            _ if flag_given => (EnvFilter::new(configured), FilterSource::Flag),
            _ => (EnvFilter::new(configured), FilterSource::Config),
        };
        let (filter_layer, handle) = reload::Layer::new(filter);
        let file = file.map(Arc::new);
        let sink = match (target, &file) {
            (LogTarget::File, Some(file)) => Sink::File(file.clone()),
            (LogTarget::Syslog, _) => {
                syslog::open();
                Sink::Syslog
            }
            _ => Sink::Stderr,
        };
        let timestamped = !matches!(sink, Sink::Syslog);
        let ansi = matches!(sink, Sink::Stderr) && io::stderr().is_terminal();
        let plain = timestamped.then(|| {
            tracing_subscriber::fmt::layer()
                .with_writer(sink.clone())
                .with_ansi(ansi)
                .with_target(false)
        });
        // Syslog stamps the time itself.
        let untimed = (!timestamped).then(|| {
            tracing_subscriber::fmt::layer()
                .with_writer(sink)
                .with_ansi(false)
                .with_target(false)
                .without_time()
        });
        let _ = tracing_subscriber::registry()
            .with(filter_layer)
            .with(plain)
            .with(untimed)
            .try_init();
        Logging {
            filter: handle,
            file,
            source,
        }
    }

    /// Applies a reloaded `log_level`, unless `--log-level` or `RUST_LOG` took precedence.
    /// Returns whether the filter changed.
    pub(super) fn set_level(&self, level: &str) -> Result<bool, String> {
        match self.source {
            FilterSource::Flag => return Ok(false),
            FilterSource::Env => {
                tracing::warn!(
                    log_level = level,
                    "RUST_LOG is set and takes precedence over log_level from the config file"
                );
                return Ok(false);
            }
            FilterSource::Config => {}
        }
        let filter = EnvFilter::try_new(level).map_err(|e| e.to_string())?;
        self.filter.reload(filter).map_err(|e| e.to_string())?;
        Ok(true)
    }

    /// Reopens the log file, if there is one (a no-op for stderr and syslog).
    pub(super) fn reopen(&self) -> io::Result<()> {
        match &self.file {
            Some(file) => file.reopen(),
            None => Ok(()),
        }
    }
}
