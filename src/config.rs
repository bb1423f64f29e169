//! Configuration: the file format, defaults, command-line overrides and validation.
//!
//! Precedence is flags > file > defaults. Every error names the field (or the file) it is
//! about, in one line, so `main` can print it and exit 2.

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use serde::de::{self, Deserializer, Visitor};

use crate::models::Model;
use crate::models::Settings;
pub use crate::reactor::Dispatch;

/// Smallest accepted `buffer_size`: below this the echo degenerates into a syscall per byte.
pub(crate) const MIN_BUFFER_SIZE: usize = 512;
/// Largest accepted `buffer_size` (64 MiB per connection is already a memory hazard).
pub(crate) const MAX_BUFFER_SIZE: usize = 64 << 20;
/// Largest accepted worker count; more threads than this only adds contention.
pub const MAX_WORKERS: usize = 1024;
/// Default stack of a `thread`-model connection thread: the echo keeps its buffers on the
/// heap, so a small stack suffices (std's default is 2 MiB).
pub(crate) const DEFAULT_THREAD_STACK_SIZE: usize = 128 * 1024;
/// Accepted `thread_stack_size` range; below the minimum, logging alone could overflow it.
pub(crate) const THREAD_STACK_SIZE_RANGE: std::ops::RangeInclusive<usize> =
    (32 * 1024)..=(64 << 20);
/// Default longest pause of the `nonblocking` model between idle rounds.
pub(crate) const DEFAULT_POLL_INTERVAL: Duration = Duration::from_millis(1);
/// Accepted `poll_interval` range: a zero pause would be a busy loop, and beyond a second
/// every echo of an idle server waits that long.
pub(crate) const POLL_INTERVAL_RANGE: std::ops::RangeInclusive<Duration> =
    Duration::from_micros(1)..=Duration::from_secs(1);

/// The complete, validated server configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// Address the listening socket binds to; port 0 picks a free port.
    pub listen: SocketAddr,
    /// Worker threads for the reactor model (resolved: never 0).
    pub workers: usize,
    /// The I/O model that serves connections.
    pub model: Model,
    /// How connections reach the reactor model's workers.
    pub dispatch: Dispatch,
    /// Listen backlog passed to `listen(2)`.
    pub backlog: u32,
    /// Connections open at once across all workers; more are closed at accept.
    pub max_connections: usize,
    /// Unsent bytes one connection may hold before the server stops reading from it; also the
    /// size of each worker's read buffer.
    pub buffer_size: usize,
    /// Close a connection after this long without traffic; `None` disables.
    pub idle_timeout: Option<Duration>,
    /// How long a graceful shutdown waits for open connections before closing them.
    pub shutdown_timeout: Duration,
    /// Set `TCP_NODELAY` on accepted connections.
    pub nodelay: bool,
    /// Log filter (tracing `EnvFilter` syntax) when neither `--log-level` nor `RUST_LOG` is set.
    pub log_level: String,
    /// Stack size of each connection thread of the `thread` model, in bytes.
    pub thread_stack_size: usize,
    /// Longest pause of the `nonblocking` model after rounds that made no progress.
    pub poll_interval: Duration,
    /// Config-file settings the chosen model ignores, as messages to log at start-up.
    pub warnings: Vec<String>,
    /// Where the Prometheus metrics endpoint listens; `None` (the default) serves no metrics.
    /// A loopback address unless `metrics_allow_remote` is set.
    pub metrics_listen: Option<SocketAddr>,
    /// Allow `metrics_listen` on a non-loopback address (metrics reveal traffic volumes).
    pub metrics_allow_remote: bool,
    /// Set `SO_REUSEPORT` on the listener, so several processes can serve one port (the
    /// kernel spreads connections over them).
    pub reuse_port: bool,
    /// `SO_KEEPALIVE` on accepted connections, probing after this long without traffic (whole
    /// seconds); `None` (the default) leaves keepalive off. Finds peers that vanished without
    /// FIN or RST while the connection is idle.
    pub tcp_keepalive: Option<Duration>,
    /// `TCP_USER_TIMEOUT` on accepted connections: close when sent data stays unacknowledged
    /// this long; `None` (the default) keeps the kernel's retransmission limit.
    pub tcp_user_timeout: Option<Duration>,
    /// Log one info line when a connection opens and one when it closes.
    pub log_connections: bool,
    /// Also serve UDP echo on the listen address (reactor model only).
    pub udp: bool,
    /// UDP datagrams per second echoed per source address; 0 (the default) is unlimited.
    pub udp_rate_limit: u32,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: SocketAddr::from(([127, 0, 0, 1], 7007)),
            workers: default_workers(),
            model: Model::Reactor,
            dispatch: Dispatch::RoundRobin,
            backlog: 1024,
            max_connections: 10_000,
            buffer_size: 64 * 1024,
            idle_timeout: Some(Duration::from_secs(300)),
            shutdown_timeout: Duration::from_secs(5),
            nodelay: true,
            log_level: "info".to_owned(),
            thread_stack_size: DEFAULT_THREAD_STACK_SIZE,
            poll_interval: DEFAULT_POLL_INTERVAL,
            warnings: Vec::new(),
            metrics_listen: None,
            metrics_allow_remote: false,
            reuse_port: false,
            tcp_keepalive: None,
            tcp_user_timeout: None,
            log_connections: false,
            udp: false,
            udp_rate_limit: 0,
        }
    }
}

fn default_workers() -> usize {
    num_cpus::get().max(1)
}

/// The config file as written: every field optional, unknown keys rejected.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    listen: Option<String>,
    workers: Option<usize>,
    model: Option<Model>,
    dispatch: Option<Dispatch>,
    backlog: Option<u32>,
    max_connections: Option<usize>,
    buffer_size: Option<usize>,
    idle_timeout: Option<DurationValue>,
    shutdown_timeout: Option<DurationValue>,
    nodelay: Option<bool>,
    log_level: Option<String>,
    thread_stack_size: Option<usize>,
    poll_interval: Option<DurationValue>,
    metrics_listen: Option<String>,
    metrics_allow_remote: Option<bool>,
    reuse_port: Option<bool>,
    tcp_keepalive: Option<DurationValue>,
    tcp_user_timeout: Option<DurationValue>,
    log_connections: Option<bool>,
    udp: Option<bool>,
    udp_rate_limit: Option<u32>,
}

/// Values given on the command line; `None` leaves the file's (or the default) value.
#[derive(Debug, Default, Clone)]
pub struct Overrides {
    /// `--listen`
    pub listen: Option<String>,
    /// `--workers`
    pub workers: Option<usize>,
    /// `--model`
    pub model: Option<String>,
    /// `--dispatch`
    pub dispatch: Option<String>,
    /// `--backlog`
    pub backlog: Option<u32>,
    /// `--max-connections`
    pub max_connections: Option<usize>,
    /// `--buffer-size`
    pub buffer_size: Option<usize>,
    /// `--idle-timeout`
    pub idle_timeout: Option<Duration>,
    /// `--shutdown-timeout`
    pub shutdown_timeout: Option<Duration>,
    /// `--no-nodelay` sets this to `Some(false)`
    pub nodelay: Option<bool>,
    /// `--log-level`
    pub log_level: Option<String>,
    /// `--thread-stack-size`
    pub thread_stack_size: Option<usize>,
    /// `--poll-interval`
    pub poll_interval: Option<Duration>,
    /// `--metrics-listen`
    pub metrics_listen: Option<String>,
    /// `--metrics-allow-remote` sets this to `Some(true)`
    pub metrics_allow_remote: Option<bool>,
    /// `--reuse-port` sets this to `Some(true)`
    pub reuse_port: Option<bool>,
    /// `--tcp-keepalive`
    pub tcp_keepalive: Option<Duration>,
    /// `--tcp-user-timeout`
    pub tcp_user_timeout: Option<Duration>,
    /// `--log-connections` sets this to `Some(true)`
    pub log_connections: Option<bool>,
    /// `--udp` sets this to `Some(true)`
    pub udp: Option<bool>,
    /// `--udp-rate-limit`
    pub udp_rate_limit: Option<u32>,
}

/// A configuration problem, written for the person who made it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfigError {
    /// The config file could not be read.
    Read { path: PathBuf, reason: String },
    /// The config file is not valid TOML or has a bad field.
    Parse {
        path: PathBuf,
        field: Option<String>,
        reason: String,
    },
    /// A field has a value outside its range or cannot be parsed.
    Invalid { field: &'static str, reason: String },
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigError::Read { path, reason } => {
                write!(f, "cannot read config file {}: {reason}", path.display())
            }
            ConfigError::Parse {
                path,
                field: Some(field),
                reason,
            } => {
                write!(
                    f,
                    "config file {}: field `{field}`: {reason}",
                    path.display()
                )
            }
            ConfigError::Parse {
                path,
                field: None,
                reason,
            } => {
                write!(f, "config file {}: {reason}", path.display())
            }
            ConfigError::Invalid { field, reason } => write!(f, "invalid `{field}`: {reason}"),
        }
    }
}

impl std::error::Error for ConfigError {}

impl Config {
    /// What the model reads when it starts (the settings a reload changes are
    /// [`LiveSettings`](crate::live::LiveSettings)).
    pub(crate) fn settings(&self) -> Settings {
        Settings {
            model: self.model,
            workers: self.workers,
            dispatch: self.dispatch,
            buffer_size: self.buffer_size,
            thread_stack_size: self.thread_stack_size,
            poll_interval: self.poll_interval,
        }
    }

    /// Builds the configuration from an optional file and command-line overrides, then
    /// validates it.
    pub fn load(file: Option<&Path>, overrides: &Overrides) -> Result<Config, ConfigError> {
        let from_file = match file {
            Some(path) => parse_file(path, &read_config_file(path)?)?,
            None => FileConfig::default(),
        };
        Config::build(from_file, overrides)
    }

    /// Parses a config file's text (as `load` would) and applies no overrides.
    pub fn from_toml(text: &str) -> Result<Config, ConfigError> {
        Config::build(
            parse_file(Path::new("<inline>"), text)?,
            &Overrides::default(),
        )
    }

    fn build(file: FileConfig, o: &Overrides) -> Result<Config, ConfigError> {
        let d = Config::default();
        let in_file = InFile {
            workers: file.workers.is_some(),
            dispatch: file.dispatch.is_some(),
            thread_stack_size: file.thread_stack_size.is_some(),
            poll_interval: file.poll_interval.is_some(),
            max_connections: file.max_connections.is_some(),
            udp: file.udp == Some(true),
        };
        let listen_text = o.listen.clone().or(file.listen);
        let listen = match listen_text {
            Some(s) => parse_listen(&s)?,
            None => d.listen,
        };
        let model = match &o.model {
            Some(s) => s.parse().map_err(|reason| ConfigError::Invalid {
                field: "model",
                reason,
            })?,
            None => file.model.unwrap_or(d.model),
        };
        let dispatch = match &o.dispatch {
            Some(s) => s.parse().map_err(|reason| ConfigError::Invalid {
                field: "dispatch",
                reason,
            })?,
            None => file.dispatch.unwrap_or(d.dispatch),
        };
        let workers = o.workers.or(file.workers).unwrap_or(0);
        if workers > MAX_WORKERS {
            return Err(ConfigError::Invalid {
                field: "workers",
                reason: format!(
                    "{workers} is out of range (0..={MAX_WORKERS}; 0 means one per CPU)"
                ),
            });
        }
        let workers = if workers == 0 {
            default_workers()
        } else {
            workers
        };
        let buffer_size = o.buffer_size.or(file.buffer_size).unwrap_or(d.buffer_size);
        if !(MIN_BUFFER_SIZE..=MAX_BUFFER_SIZE).contains(&buffer_size) {
            return Err(ConfigError::Invalid {
                field: "buffer_size",
                reason: format!(
                    "{buffer_size} is out of range ({MIN_BUFFER_SIZE}..={MAX_BUFFER_SIZE} bytes)"
                ),
            });
        }
        let backlog = o.backlog.or(file.backlog).unwrap_or(d.backlog);
        if !(1..=65_535).contains(&backlog) {
            return Err(ConfigError::Invalid {
                field: "backlog",
                reason: format!("{backlog} is out of range (1..=65535)"),
            });
        }
        let max_connections = o
            .max_connections
            .or(file.max_connections)
            .unwrap_or(d.max_connections);
        if max_connections == 0 {
            return Err(ConfigError::Invalid {
                field: "max_connections",
                reason: "must be at least 1".to_owned(),
            });
        }
        let mut warnings = check_model_fit(model, &in_file, o, max_connections)?;
        // A setting the model ignores (from the file) keeps its default, so nothing downstream
        // acts on it.
        let dispatch = if model.uses_workers() {
            dispatch
        } else {
            d.dispatch
        };
        let idle_timeout = o
            .idle_timeout
            .or(file.idle_timeout.map(|v| v.0))
            .map(|t| check_timer("idle_timeout", t))
            .transpose()?
            .map(|t| (!t.is_zero()).then_some(t))
            .unwrap_or(d.idle_timeout);
        let shutdown_timeout = check_timer(
            "shutdown_timeout",
            o.shutdown_timeout
                .or(file.shutdown_timeout.map(|v| v.0))
                .unwrap_or(d.shutdown_timeout),
        )?;
        let log_level = o
            .log_level
            .clone()
            .or(file.log_level)
            .unwrap_or(d.log_level);
        if let Err(e) = tracing_subscriber::EnvFilter::try_new(&log_level) {
            return Err(ConfigError::Invalid {
                field: "log_level",
                reason: format!("'{log_level}' is not a valid log filter ({e})"),
            });
        }
        let thread_stack_size = o
            .thread_stack_size
            .or(file.thread_stack_size)
            .unwrap_or(d.thread_stack_size);
        if !THREAD_STACK_SIZE_RANGE.contains(&thread_stack_size) {
            return Err(ConfigError::Invalid {
                field: "thread_stack_size",
                reason: format!(
                    "{thread_stack_size} is out of range ({}..={} bytes)",
                    THREAD_STACK_SIZE_RANGE.start(),
                    THREAD_STACK_SIZE_RANGE.end()
                ),
            });
        }
        let tcp_keepalive = o
            .tcp_keepalive
            .or(file.tcp_keepalive.map(|v| v.0))
            .filter(|t| !t.is_zero())
            .map(check_keepalive)
            .transpose()?;
        let tcp_user_timeout = o
            .tcp_user_timeout
            .or(file.tcp_user_timeout.map(|v| v.0))
            .filter(|t| !t.is_zero())
            .map(check_user_timeout)
            .transpose()?;
        let poll_interval = o
            .poll_interval
            .or(file.poll_interval.map(|v| v.0))
            .unwrap_or(d.poll_interval);
        if !POLL_INTERVAL_RANGE.contains(&poll_interval) {
            return Err(ConfigError::Invalid {
                field: "poll_interval",
                reason: format!("{poll_interval:?} is out of range (1us..=1s)"),
            });
        }
        let metrics_allow_remote = o
            .metrics_allow_remote
            .or(file.metrics_allow_remote)
            .unwrap_or(d.metrics_allow_remote);
        let metrics_listen = match o.metrics_listen.clone().or(file.metrics_listen) {
            Some(s) => parse_metrics_listen(&s, metrics_allow_remote)?,
            None => d.metrics_listen,
        };
        // The same rule as `check_model_fit`, for a setting whose "given" means "parsed to an
        // address" (an empty string turns the endpoint off).
        let metrics_listen = match metrics_listen {
            Some(_) if !model.serves_metrics() => {
                let reason = format!(
                    "the {model} model has no metrics endpoint (its parent process must stay \
                     single-threaded, and each connection's counters live in a child process)"
                );
                if o.metrics_listen.is_some() {
                    return Err(ConfigError::Invalid {
                        field: "metrics_listen",
                        reason,
                    });
                }
                warnings.push(format!(
                    "ignoring `metrics_listen` from the config file: {reason}"
                ));
                None
            }
            other => other,
        };
        // A model without UDP echo has refused the flag above, or warned about the file.
        let udp = o.udp.or(file.udp).unwrap_or(d.udp) && model.uses_workers();
        Ok(Config {
            listen,
            workers,
            model,
            dispatch,
            backlog,
            max_connections,
            buffer_size,
            idle_timeout,
            shutdown_timeout,
            nodelay: o.nodelay.or(file.nodelay).unwrap_or(d.nodelay),
            log_level,
            thread_stack_size,
            poll_interval,
            warnings,
            metrics_listen,
            metrics_allow_remote,
            reuse_port: o.reuse_port.or(file.reuse_port).unwrap_or(d.reuse_port),
            tcp_keepalive,
            tcp_user_timeout,
            log_connections: o
                .log_connections
                .or(file.log_connections)
                .unwrap_or(d.log_connections),
            udp,
            udp_rate_limit: o
                .udp_rate_limit
                .or(file.udp_rate_limit)
                .unwrap_or(d.udp_rate_limit),
        })
    }
}

/// Largest `tcp_keepalive`: the kernel's limit for `TCP_KEEPIDLE` (`MAX_TCP_KEEPIDLE`).
pub const MAX_TCP_KEEPALIVE: Duration = Duration::from_secs(32_767);

/// `tcp_keepalive` (not 0): `TCP_KEEPIDLE` counts whole seconds, so a fraction is rounded up
/// and anything under a second is an error rather than a silent 1.
fn check_keepalive(t: Duration) -> Result<Duration, ConfigError> {
    let invalid = |reason: String| ConfigError::Invalid {
        field: "tcp_keepalive",
        reason,
    };
    if t < Duration::from_secs(1) {
        return Err(invalid(format!(
            "{t:?} is below TCP keepalive's 1 s resolution (use 1 or more, or 0 for off)"
        )));
    }
    let whole = Duration::from_secs(t.as_secs() + u64::from(t.subsec_nanos() > 0));
    if whole > MAX_TCP_KEEPALIVE {
        return Err(invalid(format!(
            "{t:?} is over the kernel's limit of {} s",
            MAX_TCP_KEEPALIVE.as_secs()
        )));
    }
    Ok(whole)
}

/// `tcp_user_timeout` (not 0): the kernel takes milliseconds in an `int`.
fn check_user_timeout(t: Duration) -> Result<Duration, ConfigError> {
    if t.as_millis() > i32::MAX as u128 {
        return Err(ConfigError::Invalid {
            field: "tcp_user_timeout",
            reason: format!("{t:?} is over the kernel's limit of {} ms", i32::MAX),
        });
    }
    Ok(t)
}

/// Which model-dependent settings the config file gave.
#[derive(Debug, Clone, Copy)]
struct InFile {
    workers: bool,
    dispatch: bool,
    thread_stack_size: bool,
    poll_interval: bool,
    max_connections: bool,
    /// `udp = true` (turning it off is honoured by every model).
    udp: bool,
}

/// The rule for settings the chosen model cannot honour: given as a flag, the setting is an
/// error (exit 2, naming the field), since the user asked for it for this very run; read from
/// the config file, it is ignored with a warning, so one file can serve every model.
/// Defaults never trigger it.
fn check_model_fit(
    model: Model,
    file: &InFile,
    o: &Overrides,
    max_connections: usize,
) -> Result<Vec<String>, ConfigError> {
    let checks = [
        (
            "workers",
            o.workers.is_some(),
            file.workers,
            (!model.uses_workers()).then(|| {
                format!("the {model} model has no worker threads (only the reactor model does)")
            }),
        ),
        (
            "dispatch",
            o.dispatch.is_some(),
            file.dispatch,
            (!model.uses_workers()).then(|| {
                format!(
                    "the {model} model has no workers to dispatch to (only the reactor model does)"
                )
            }),
        ),
        (
            "thread_stack_size",
            o.thread_stack_size.is_some(),
            file.thread_stack_size,
            (!model.uses_thread_stack_size()).then(|| {
                format!(
                    "the {model} model starts no connection threads (only the thread model does)"
                )
            }),
        ),
        (
            "poll_interval",
            o.poll_interval.is_some(),
            file.poll_interval,
            (!model.uses_poll_interval()).then(|| {
                format!("the {model} model does not poll (only the nonblocking model does)")
            }),
        ),
        (
            "max_connections",
            o.max_connections.is_some(),
            file.max_connections,
            model
                .connection_ceiling()
                .filter(|&ceiling| max_connections > ceiling)
                .map(|ceiling| {
                    format!(
                        "the {model} model serves at most {ceiling} connections (descriptors \
                         below FD_SETSIZE); {max_connections} cannot be honoured"
                    )
                }),
        ),
        (
            "udp",
            o.udp == Some(true),
            file.udp,
            // The UDP echo runs inside the reactor's workers (a socket per worker).
            (!model.uses_workers()).then(|| {
                format!("the {model} model serves TCP only (UDP echo runs in the reactor model)")
            }),
        ),
    ];
    let mut warnings = Vec::new();
    for (field, from_flag, from_file, unsupported) in checks {
        let Some(reason) = unsupported else { continue };
        if from_flag {
            return Err(ConfigError::Invalid { field, reason });
        }
        if from_file {
            warnings.push(format!("ignoring `{field}` from the config file: {reason}"));
        }
    }
    Ok(warnings)
}

/// Largest config file read, in bytes: a config is a few hundred bytes, and whatever the path
/// names is read into memory whole.
pub const MAX_CONFIG_BYTES: u64 = 1 << 20;

/// Reads a config file without ever blocking or reading without bound, at start-up and on
/// every reload: opened with `O_NONBLOCK` (opening a FIFO for reading would otherwise wait
/// for a writer, forever), checked with `fstat` on the open descriptor (no race with a
/// rename) to be a regular file (a FIFO or `/dev/zero` is refused, not read) of at most
/// [`MAX_CONFIG_BYTES`], then read through a bound (the file may grow after the check).
pub fn read_config_file(path: &Path) -> Result<String, ConfigError> {
    use std::io::Read;
    use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};

    let fail = |reason: String| ConfigError::Read {
        path: path.to_owned(),
        reason,
    };
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)
        .map_err(|e| fail(e.to_string()))?;
    let meta = file.metadata().map_err(|e| fail(e.to_string()))?;
    let kind = meta.file_type();
    if !kind.is_file() {
        let what = if kind.is_fifo() {
            "a FIFO"
        } else if kind.is_char_device() {
            "a character device"
        } else if kind.is_block_device() {
            "a block device"
        } else if kind.is_socket() {
            "a socket"
        } else if kind.is_dir() {
            "a directory"
        } else {
            "not a file"
        };
        return Err(fail(format!("not a regular file ({what})")));
    }
    let too_big = |len: u64| {
        fail(format!(
            "{len} bytes is over the 1 MiB limit for a config file"
        ))
    };
    if meta.len() > MAX_CONFIG_BYTES {
        return Err(too_big(meta.len()));
    }
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    file.take(MAX_CONFIG_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| fail(e.to_string()))?;
    if bytes.len() as u64 > MAX_CONFIG_BYTES {
        return Err(too_big(bytes.len() as u64));
    }
    String::from_utf8(bytes).map_err(|e| {
        let valid = &e.as_bytes()[..e.utf8_error().valid_up_to()];
        // Valid UTF-8 up to here, so this prefix is text.
        let (line, column) = position(&String::from_utf8_lossy(valid), valid.len());
        fail(format!(
            "not UTF-8 text: invalid byte at line {line}, column {column}"
        ))
    })
}

/// 1-based line and column (in characters) of byte offset `at` of `text`.
fn position(text: &str, at: usize) -> (usize, usize) {
    let before = &text[..at.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, column)
}

/// The first character TOML forbids anywhere in a document (control characters other than
/// tab, line feed and carriage return; DEL), as an error naming it and its position. toml's
/// own error for these has an empty message.
fn check_characters(text: &str) -> Result<(), String> {
    let Some((at, c)) = text
        .char_indices()
        .find(|&(_, c)| c.is_ascii_control() && !matches!(c, '\t' | '\n' | '\r'))
    else {
        return Ok(());
    };
    let (line, column) = position(text, at);
    Err(format!(
        "control character U+{:04X} is not allowed in TOML (line {line}, column {column})",
        c as u32
    ))
}

fn parse_file(path: &Path, text: &str) -> Result<FileConfig, ConfigError> {
    check_characters(text).map_err(|reason| ConfigError::Parse {
        path: path.to_owned(),
        field: None,
        reason,
    })?;
    let de = toml::Deserializer::new(text);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let field = e.path().to_string();
        let inner = e.into_inner();
        // toml's messages may span lines ("invalid string\nexpected ..."): keep one line.
        let mut reason = inner
            .message()
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ");
        if reason.is_empty() {
            reason = "invalid TOML".to_owned();
        }
        if let Some(span) = inner.span() {
            let (line, column) = position(text, span.start);
            reason = format!("{reason} (line {line}, column {column})");
        }
        ConfigError::Parse {
            path: path.to_owned(),
            field: (field != "." && !field.is_empty()).then_some(field),
            reason,
        }
    })
}

fn parse_listen(s: &str) -> Result<SocketAddr, ConfigError> {
    s.trim().parse().map_err(|_| ConfigError::Invalid {
        field: "listen",
        reason: format!("'{s}' is not an IP:PORT address (e.g. 127.0.0.1:7007 or [::1]:7007)"),
    })
}

/// `metrics_listen`: an IP:PORT, loopback unless remote scraping was allowed explicitly. An
/// empty string means off (so `--metrics-listen ''` can override a file that sets one).
fn parse_metrics_listen(s: &str, allow_remote: bool) -> Result<Option<SocketAddr>, ConfigError> {
    if s.trim().is_empty() {
        return Ok(None);
    }
    let addr: SocketAddr = s.trim().parse().map_err(|_| ConfigError::Invalid {
        field: "metrics_listen",
        reason: format!("'{s}' is not an IP:PORT address (e.g. 127.0.0.1:9707)"),
    })?;
    if !addr.ip().is_loopback() && !allow_remote {
        return Err(ConfigError::Invalid {
            field: "metrics_listen",
            reason: format!(
                "{addr} is not a loopback address; metrics are served on loopback only unless \
                 `metrics_allow_remote = true` (or --metrics-allow-remote) is set"
            ),
        });
    }
    Ok(Some(addr))
}

/// A duration in a config file: a number of seconds (fractions allowed) or a string such as
/// `"500ms"`, `"5s"`, `"5m"`, `"1h"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct DurationValue(Duration);

impl<'de> Deserialize<'de> for DurationValue {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = DurationValue;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a number of seconds or a string like \"500ms\", \"5s\", \"5m\"")
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<DurationValue, E> {
                secs_to_duration(v as f64)
                    .map(DurationValue)
                    .map_err(E::custom)
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<DurationValue, E> {
                secs_to_duration(v as f64)
                    .map(DurationValue)
                    .map_err(E::custom)
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<DurationValue, E> {
                secs_to_duration(v).map(DurationValue).map_err(E::custom)
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<DurationValue, E> {
                parse_duration(v).map(DurationValue).map_err(E::custom)
            }
        }
        d.deserialize_any(V)
    }
}

/// Longest accepted duration (a year); beyond it `Instant` arithmetic risks overflow.
const MAX_DURATION_SECS: f64 = 365.0 * 24.0 * 3600.0;

/// The resolution of the timers that enforce `idle_timeout` and `shutdown_timeout`: the event
/// loops keep time in whole milliseconds (and `poll`/`epoll_wait` take milliseconds). A
/// positive value below it would round to 0, which means "off" for `idle_timeout`: an error
/// naming the field, not "disabled".
pub const DURATION_RESOLUTION: Duration = Duration::from_millis(1);

/// The finest duration any setting takes (`poll_interval` counts microseconds): a positive
/// value below it is an error wherever it is given, never a silent 0.
const FINEST_DURATION: Duration = Duration::from_micros(1);

/// A positive timer setting below [`DURATION_RESOLUTION`]: an error naming `field`.
fn check_timer(field: &'static str, t: Duration) -> Result<Duration, ConfigError> {
    if !t.is_zero() && t < DURATION_RESOLUTION {
        return Err(ConfigError::Invalid {
            field,
            reason: format!(
                "{t:?} is positive but below the timers' 1 ms resolution (use 0.001 or more, \
                 or 0)"
            ),
        });
    }
    Ok(t)
}

fn secs_to_duration(secs: f64) -> Result<Duration, String> {
    if !secs.is_finite() || secs < 0.0 {
        return Err(format!("{secs} is not a non-negative number of seconds"));
    }
    if secs > MAX_DURATION_SECS {
        return Err(format!("{secs} seconds is too long (at most one year)"));
    }
    let duration = Duration::from_secs_f64(secs);
    if secs > 0.0 && duration < FINEST_DURATION {
        return Err(format!(
            "{secs} seconds is positive but below the 1 µs resolution of durations (use 0 for \
             none)"
        ));
    }
    Ok(duration)
}

/// Parses a duration, the same syntax on the command line and in the config file: a number
/// of seconds as TOML writes numbers (`1.5`, `1e-3`) or a number with a unit (`"500ms"`,
/// `"5s"`, `"5m"`, `"1h"`, `"250us"`).
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let s = text.trim();
    let number = |num: &str| -> Option<f64> {
        // Rust also parses "inf" and "nan"; leave those to the finiteness check, but not a
        // bare sign or other words.
        num.starts_with(|c: char| c.is_ascii_digit() || c == '.')
            .then(|| num.parse().ok())
            .flatten()
    };
    if let Some(secs) = number(s) {
        return secs_to_duration(secs);
    }
    let num = s.trim_end_matches(|c: char| c.is_ascii_alphabetic());
    let unit = &s[num.len()..];
    let value = number(num.trim_end()).ok_or_else(|| {
        format!("'{text}' is not a duration (e.g. 1.5, \"500ms\", \"5s\", \"5m\")")
    })?;
    let scale = match unit {
        "" | "s" | "sec" | "secs" => 1.0,
        "ms" => 0.001,
        "us" => 0.000_001,
        "m" | "min" | "mins" => 60.0,
        "h" => 3600.0,
        other => {
            return Err(format!(
                "'{text}' has an unknown unit '{other}' (use ms, s, m or h)"
            ));
        }
    };
    secs_to_duration(value * scale)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_match_the_documentation() {
        let c = Config::from_toml("").unwrap();
        assert_eq!(c.listen, "127.0.0.1:7007".parse().unwrap());
        assert_eq!(c.workers, num_cpus::get().max(1));
        assert_eq!(c.backlog, 1024);
        assert_eq!(c.max_connections, 10_000);
        assert_eq!(c.buffer_size, 65_536);
        assert_eq!(c.idle_timeout, Some(Duration::from_secs(300)));
        assert_eq!(c.shutdown_timeout, Duration::from_secs(5));
        assert!(c.nodelay);
        assert_eq!(c.poll_interval, Duration::from_millis(1));
    }

    #[test]
    fn durations_accept_numbers_and_units() {
        let c = Config::from_toml("idle_timeout = \"500ms\"\nshutdown_timeout = 1.5").unwrap();
        assert_eq!(c.idle_timeout, Some(Duration::from_millis(500)));
        assert_eq!(c.shutdown_timeout, Duration::from_millis(1500));
        let c = Config::from_toml("idle_timeout = \"5m\"\nshutdown_timeout = 2").unwrap();
        assert_eq!(c.idle_timeout, Some(Duration::from_secs(300)));
        assert_eq!(c.shutdown_timeout, Duration::from_secs(2));
        assert_eq!(
            Config::from_toml("idle_timeout = 0").unwrap().idle_timeout,
            None
        );
        assert!(parse_duration("5 parsecs").is_err());
        assert!(parse_duration("-1").is_err());
    }

    /// The flag and the file share one syntax (TOML's numbers, or a number with a unit), and
    /// a positive duration below the timers' resolution is an error, never 0 ("disabled").
    #[test]
    fn durations_share_one_syntax_and_respect_the_resolution() {
        assert_eq!(parse_duration("1e-3"), Ok(Duration::from_millis(1)));
        assert_eq!(parse_duration("1.5e1"), Ok(Duration::from_secs(15)));
        assert_eq!(parse_duration("2e3ms"), Ok(Duration::from_secs(2)));
        assert_eq!(parse_duration("1500us"), Ok(Duration::from_micros(1500)));
        assert_eq!(parse_duration("0"), Ok(Duration::ZERO));
        for tiny in ["1e-10", "0.0000000001", "0.5us"] {
            let e = parse_duration(tiny).unwrap_err();
            assert!(e.contains("resolution"), "{tiny}: {e}");
        }
        // The timers count milliseconds: below that, the timer settings name themselves.
        for text in ["idle_timeout = \"500us\"", "shutdown_timeout = 0.0009"] {
            let e = Config::from_toml(text).unwrap_err().to_string();
            assert!(
                e.contains("_timeout`") && e.contains("1 ms resolution"),
                "{e}"
            );
        }
        for bad in ["inf", "nan", "-0.5", "e3", "1e", ""] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
        let e = Config::from_toml("idle_timeout = 1e-10")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("`idle_timeout`") && e.contains("resolution"),
            "{e}"
        );
        let c = Config::from_toml("idle_timeout = 1e-3").unwrap();
        assert_eq!(c.idle_timeout, Some(Duration::from_millis(1)));
    }

    #[test]
    fn tcp_keepalive_and_user_timeout_are_validated() {
        let c = Config::from_toml("tcp_keepalive = 60\ntcp_user_timeout = \"30s\"").unwrap();
        assert_eq!(c.tcp_keepalive, Some(Duration::from_secs(60)));
        assert_eq!(c.tcp_user_timeout, Some(Duration::from_secs(30)));
        let c = Config::from_toml("tcp_keepalive = 1.2\ntcp_user_timeout = 0").unwrap();
        assert_eq!(c.tcp_keepalive, Some(Duration::from_secs(2)), "rounded up");
        assert_eq!(c.tcp_user_timeout, None);
        assert_eq!(
            Config::from_toml("tcp_keepalive = 0")
                .unwrap()
                .tcp_keepalive,
            None
        );
        for (text, field) in [
            ("tcp_keepalive = \"500ms\"", "`tcp_keepalive`"),
            ("tcp_keepalive = 40000", "`tcp_keepalive`"),
            ("tcp_user_timeout = \"30d\"", "`tcp_user_timeout`"),
            ("tcp_user_timeout = 3000000", "`tcp_user_timeout`"),
            ("log_connections = 1", "`log_connections`"),
        ] {
            let e = Config::from_toml(text).unwrap_err().to_string();
            assert!(e.contains(field), "{text}: {e}");
        }
    }

    #[test]
    fn control_characters_are_named_with_their_position() {
        let e = Config::from_toml("workers = 1\n\u{1}x = 2")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("U+0001 is not allowed in TOML (line 2, column 1)"),
            "{e}"
        );
        assert!(check_characters("a = \"tab\there\"\r\n").is_ok());
    }

    #[test]
    fn errors_name_the_field() {
        let cases = [
            ("workers = \"many\"", "`workers`"),
            ("wrokers = 2", "wrokers"),
            ("workers = 5000", "`workers`"),
            ("buffer_size = 1", "`buffer_size`"),
            ("listen = \"nowhere\"", "`listen`"),
            ("model = \"fibers\"", "`model`"),
            ("idle_timeout = \"soon\"", "`idle_timeout`"),
            ("backlog = 0", "`backlog`"),
            ("max_connections = 0", "`max_connections`"),
            ("nodelay = 3", "`nodelay`"),
            ("udp = \"yes\"", "`udp`"),
            ("udp_rate_limit = -1", "`udp_rate_limit`"),
            ("metrics_listen = \"0.0.0.0:9707\"", "`metrics_listen`"),
            ("metrics_listen = \"here\"", "`metrics_listen`"),
            ("[section]\nx = 1", "section"),
        ];
        for (text, field) in cases {
            let e = Config::from_toml(text).unwrap_err().to_string();
            assert!(e.contains(field), "{text:?}: {e}");
            assert!(!e.contains('\n'), "one line: {e}");
        }
    }

    #[test]
    fn every_model_parses_from_its_name() {
        for &model in Model::ALL {
            assert_eq!(model.name().parse::<Model>(), Ok(model));
            let c = Config::from_toml(&format!("model = \"{model}\"")).unwrap();
            assert_eq!(c.model, model);
            assert!(!model.describe().contains('\n'));
        }
    }

    #[test]
    fn settings_a_model_cannot_honour_are_errors_as_flags_and_warnings_in_files() {
        let flags = |o: Overrides| Config::build(FileConfig::default(), &o);
        let e = flags(Overrides {
            model: Some("epoll".into()),
            workers: Some(4),
            ..Overrides::default()
        })
        .unwrap_err();
        assert!(e.to_string().contains("`workers`"), "{e}");
        let e = flags(Overrides {
            model: Some("poll".into()),
            thread_stack_size: Some(65536),
            ..Overrides::default()
        })
        .unwrap_err();
        assert!(e.to_string().contains("`thread_stack_size`"), "{e}");
        let e = flags(Overrides {
            model: Some("select".into()),
            max_connections: Some(5000),
            ..Overrides::default()
        })
        .unwrap_err();
        assert!(e.to_string().contains("`max_connections`"), "{e}");
        let e = flags(Overrides {
            model: Some("epoll".into()),
            dispatch: Some("shared".into()),
            ..Overrides::default()
        })
        .unwrap_err();
        assert!(e.to_string().contains("`dispatch`"), "{e}");
        let c = Config::from_toml("model = \"poll\"\ndispatch = \"reuseport\"").unwrap();
        assert_eq!(c.dispatch, Dispatch::RoundRobin);
        assert!(
            c.warnings.iter().any(|w| w.contains("`dispatch`")),
            "{:?}",
            c.warnings
        );
        let e = flags(Overrides {
            dispatch: Some("random".into()),
            ..Overrides::default()
        })
        .unwrap_err();
        assert!(e.to_string().contains("`dispatch`"), "{e}");
        // Honoured settings and defaults pass.
        for o in [
            Overrides {
                model: Some("reactor".into()),
                workers: Some(2),
                ..Overrides::default()
            },
            Overrides {
                model: Some("reactor".into()),
                dispatch: Some("least-connections".into()),
                ..Overrides::default()
            },
            Overrides {
                model: Some("thread".into()),
                thread_stack_size: Some(65536),
                ..Overrides::default()
            },
            Overrides {
                model: Some("select".into()),
                max_connections: Some(1000),
                ..Overrides::default()
            },
            Overrides {
                model: Some("select".into()),
                ..Overrides::default()
            },
        ] {
            let c = flags(o).unwrap();
            assert!(c.warnings.is_empty(), "{:?}", c.warnings);
        }
        // From a file: ignored with a warning naming the field.
        let c =
            Config::from_toml("model = \"fork\"\nworkers = 8\nthread_stack_size = 65536").unwrap();
        assert_eq!(c.warnings.len(), 2, "{:?}", c.warnings);
        assert!(c.warnings[0].contains("`workers`"));
        assert!(c.warnings[1].contains("`thread_stack_size`"));
        let c = Config::from_toml("model = \"fork\"\nmetrics_listen = \"127.0.0.1:0\"").unwrap();
        assert_eq!(c.metrics_listen, None, "ignored, not kept");
        assert!(
            c.warnings[0].contains("`metrics_listen`"),
            "{:?}",
            c.warnings
        );
        let e = flags(Overrides {
            model: Some("fork".into()),
            metrics_listen: Some("127.0.0.1:0".into()),
            ..Overrides::default()
        })
        .unwrap_err();
        assert!(e.to_string().contains("`metrics_listen`"), "{e}");
        let e = flags(Overrides {
            model: Some("epoll".into()),
            poll_interval: Some(Duration::from_millis(5)),
            ..Overrides::default()
        })
        .unwrap_err();
        assert!(e.to_string().contains("`poll_interval`"), "{e}");
        let c = flags(Overrides {
            model: Some("nonblocking".into()),
            poll_interval: Some(Duration::from_millis(5)),
            ..Overrides::default()
        })
        .unwrap();
        assert_eq!(c.poll_interval, Duration::from_millis(5));
        assert!(c.warnings.is_empty(), "{:?}", c.warnings);
        let c = Config::from_toml("model = \"sigio\"\npoll_interval = \"2ms\"").unwrap();
        assert!(
            c.warnings[0].contains("`poll_interval`"),
            "{:?}",
            c.warnings
        );
        let c = Config::from_toml("model = \"nonblocking\"\npoll_interval = \"250us\"").unwrap();
        assert_eq!(c.poll_interval, Duration::from_micros(250));
        for bad in ["poll_interval = 0", "poll_interval = \"2s\""] {
            let e = Config::from_toml(&format!("model = \"nonblocking\"\n{bad}")).unwrap_err();
            assert!(e.to_string().contains("`poll_interval`"), "{e}");
        }
        let e = flags(Overrides {
            model: Some("epoll".into()),
            udp: Some(true),
            ..Overrides::default()
        })
        .unwrap_err();
        assert!(e.to_string().contains("`udp`"), "{e}");
        let c = Config::from_toml("model = \"poll\"\nudp = true").unwrap();
        assert!(!c.udp, "ignored, not kept");
        assert!(c.warnings[0].contains("`udp`"), "{:?}", c.warnings);
        let c = Config::from_toml("model = \"poll\"\nudp = false").unwrap();
        assert!(c.warnings.is_empty(), "{:?}", c.warnings);
        let c = Config::from_toml("udp = true\nudp_rate_limit = 50").unwrap();
        assert!(c.udp);
        assert_eq!(c.udp_rate_limit, 50);
        let e = Config::from_toml("thread_stack_size = 1024").unwrap_err();
        assert!(e.to_string().contains("`thread_stack_size`"), "{e}");
    }

    #[test]
    fn metrics_listen_is_loopback_unless_allowed() {
        assert_eq!(Config::from_toml("").unwrap().metrics_listen, None);
        let c = Config::from_toml("metrics_listen = \"127.0.0.1:0\"").unwrap();
        assert_eq!(c.metrics_listen, Some("127.0.0.1:0".parse().unwrap()));
        let c = Config::from_toml("metrics_listen = \"[::1]:9\"").unwrap();
        assert_eq!(c.metrics_listen, Some("[::1]:9".parse().unwrap()));
        let c = Config::from_toml("metrics_listen = \"0.0.0.0:9707\"\nmetrics_allow_remote = true")
            .unwrap();
        assert_eq!(c.metrics_listen, Some("0.0.0.0:9707".parse().unwrap()));
        assert_eq!(
            Config::from_toml("metrics_listen = \"\"")
                .unwrap()
                .metrics_listen,
            None
        );
    }

    #[test]
    fn flags_override_the_file() {
        let file = parse_file(Path::new("x"), "workers = 3\nbuffer_size = 4096").unwrap();
        let o = Overrides {
            workers: Some(2),
            ..Overrides::default()
        };
        let c = Config::build(file, &o).unwrap();
        assert_eq!(c.workers, 2);
        assert_eq!(c.buffer_size, 4096);
    }
}

#[cfg(test)]
mod example_file {
    use super::*;

    /// The shipped example parses and states exactly the defaults.
    #[test]
    fn example_config_states_the_defaults() {
        let text = include_str!("../config.example.toml");
        let parsed = Config::from_toml(text).expect("config.example.toml parses");
        assert_eq!(parsed, Config::default());
    }
}
