//! Running reactor-pool for real: the `serve` command's process management.
//!
//! - `daemon`: `--daemon` (double fork, detach) and the start-up `Reporter` protocol.
//! - `supervise`: `--supervise`, a parent process that restarts a crashed server.
//! - `pidfile`: `--pid-file`, written atomically, `flock`ed, removed on exit.
//! - `privilege`: `--user`, dropping root after binding.
//! - `logging`: stderr, `--log-file` or `--log syslog`; filter and file reloadable.
//! - `signals`: the server's signal thread (SIGINT/SIGTERM drain, SIGHUP reload).
//! - `reload`: what a reload changes, and what needs a restart.
//! - `notify`: systemd `sd_notify` readiness.
//!
//! Order of start-up in [`serve`], chosen so that every fork happens while the process has a
//! single thread, and every privileged step happens before the privilege drop:
//! ```text
//! parse + validate (exit 2) ─▶ open log file ─▶ daemonize? ─▶ init logging ─▶ pid file
//!   ├─ --supervise: bind ─▶ supervisor loop ─▶ fork+exec child (same steps, --inherit-listener)
//!   └─ otherwise:   bind ─▶ bind metrics ─▶ drop privileges ─▶ signal thread ─▶ metrics thread
//!                   ─▶ report ready ("listening on ADDR") ─▶ run workers ─▶ drain ─▶ exit
//! ```

mod daemon;
mod logging;
mod notify;
mod pidfile;
mod privilege;
mod reload;
mod signals;
mod supervise;

use std::net::TcpListener;
use std::os::fd::{AsFd, FromRawFd, OwnedFd, RawFd};
use std::path::{Path, PathBuf};

use tracing::info;

use daemon::Reporter;
pub use logging::LogTarget;
pub use supervise::RestartPolicy;

use crate::config::{Config, Overrides};
use crate::metrics::{MetricsServer, MetricsSource};
use crate::server::Server;
use crate::sys::fd;
use daemon::Daemonized;
use logging::{LogFile, Logging};
use pidfile::PidFile;
use privilege::User;
use reload::Reloader;
use supervise::Supervisor;

/// Exit code for bad arguments or configuration.
pub const EXIT_USAGE: u8 = 2;
/// Exit code for failures at run time.
pub(crate) const EXIT_FAILURE: u8 = 1;

/// The `serve` flags that manage the process rather than the echo service.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct OpsArgs {
    /// Detach and run in the background; exits once the server listens (status 0) or failed.
    #[arg(long)]
    pub daemon: bool,
    /// Run the server as a child process, restarting it when it crashes.
    #[arg(long)]
    pub supervise: bool,
    /// With --supervise: restart the server only when it crashed (on-failure), or whenever
    /// it exits unless the supervisor was told to stop (always) [default: on-failure].
    #[arg(long, value_enum, value_name = "POLICY")]
    pub restart: Option<RestartPolicy>,
    /// With --supervise: the first restart delay (doubling after each crash up to 30 s)
    /// [default: 1].
    #[arg(long, value_name = "SECS", value_parser = crate::config::parse_duration)]
    pub restart_delay: Option<std::time::Duration>,
    /// Write the server's pid to PATH, locked while it runs; a second instance refuses.
    #[arg(long, value_name = "PATH")]
    pub pid_file: Option<PathBuf>,
    /// Switch to this user (and its group) once the sockets are bound. Needs root.
    #[arg(long, value_name = "NAME")]
    pub user: Option<String>,
    /// Where logs go [default: stderr; syslog with --daemon; file with --log-file].
    #[arg(long, value_enum, value_name = "TARGET")]
    pub log: Option<LogTarget>,
    /// Append logs to this file (reopened on SIGHUP, for logrotate).
    #[arg(long, value_name = "PATH")]
    pub log_file: Option<PathBuf>,
    /// Serve Prometheus metrics over HTTP on IP:PORT (loopback unless --metrics-allow-remote).
    #[arg(long, value_name = "ADDR")]
    pub metrics_listen: Option<String>,
    /// Allow --metrics-listen on a non-loopback address.
    #[arg(long)]
    pub metrics_allow_remote: bool,
    /// Internal: serve on this inherited listening socket (set by --supervise for its child).
    #[arg(long, value_name = "FD", hide = true)]
    pub inherit_listener: Option<RawFd>,
}

/// Everything `serve` decided before touching the process.
#[derive(Debug)]
struct Plan {
    config: Config,
    config_path: Option<PathBuf>,
    overrides: Overrides,
    target: LogTarget,
    log_file: Option<PathBuf>,
    pid_file: Option<PathBuf>,
    user: Option<User>,
}

impl Plan {
    /// Validates arguments and config. Paths are made absolute: a daemon changes directory.
    fn new(
        config_path: Option<&Path>,
        overrides: &Overrides,
        ops: &OpsArgs,
    ) -> Result<Plan, String> {
        let absolute = |flag: &str, p: &Path| {
            std::path::absolute(p).map_err(|e| format!("invalid `{flag}` {}: {e}", p.display()))
        };
        let config_path = config_path.map(|p| absolute("--config", p)).transpose()?;
        let config = Config::load(config_path.as_deref(), overrides).map_err(|e| e.to_string())?;
        let log_file = ops
            .log_file
            .as_deref()
            .map(|p| absolute("--log-file", p))
            .transpose()?;
        let pid_file = ops
            .pid_file
            .as_deref()
            .map(|p| absolute("--pid-file", p))
            .transpose()?;
        let target = match (ops.log, &log_file) {
            (None | Some(LogTarget::File), Some(_)) => LogTarget::File,
            (Some(LogTarget::File), None) => {
                return Err("invalid `--log`: `file` needs --log-file PATH".to_owned());
            }
            (Some(other), Some(_)) => {
                return Err(format!(
                    "invalid `--log`: --log {} conflicts with --log-file",
                    other.name()
                ));
            }
            (Some(LogTarget::Stderr), None) if ops.daemon => {
                return Err(
                    "invalid `--log`: a daemon has no stderr; use --log syslog or --log-file"
                        .to_owned(),
                );
            }
            (Some(target), None) => target,
            (None, None) if ops.daemon => LogTarget::Syslog,
            (None, None) => LogTarget::Stderr,
        };
        if !ops.supervise {
            for (flag, given) in [
                ("--restart", ops.restart.is_some()),
                ("--restart-delay", ops.restart_delay.is_some()),
            ] {
                if given {
                    return Err(format!(
                        "invalid `{flag}`: it sets how --supervise restarts the server, and \
                         --supervise is not given"
                    ));
                }
            }
        }
        if ops.restart_delay.is_some_and(|d| d.is_zero()) {
            return Err(
                "invalid `--restart-delay`: must be more than 0 (a crashing server would be \
                 restarted in a tight loop)"
                    .to_owned(),
            );
        }
        let user = ops.user.as_deref().map(User::lookup).transpose()?;
        Ok(Plan {
            config,
            config_path,
            overrides: overrides.clone(),
            target,
            log_file,
            pid_file,
            user,
        })
    }
}

impl LogTarget {
    fn name(self) -> &'static str {
        match self {
            LogTarget::Stderr => "stderr",
            LogTarget::Syslog => "syslog",
            LogTarget::File => "file",
        }
    }
}

/// Runs `reactor-pool serve`; returns the process exit code. Must be called before any thread
/// is started (it may fork).
pub fn serve(config_path: Option<&Path>, overrides: &Overrides, ops: &OpsArgs) -> u8 {
    let inherited = ops.inherit_listener;
    // A supervised child reports to its supervisor over stdout (a socket).
    let mut reporter = match inherited {
        Some(_) => match std::io::stdout()
            .as_fd()
            .try_clone_to_owned()
            .map(std::os::unix::net::UnixStream::from)
        {
            Ok(stream) => Reporter::Channel(stream),
            Err(e) => {
                eprintln!("reactor-pool: error: stdout is not usable: {e}");
                return EXIT_FAILURE;
            }
        },
        None => Reporter::Stdout,
    };
    let plan = match Plan::new(config_path, overrides, ops) {
        Ok(plan) => plan,
        Err(message) => {
            reporter.fail(EXIT_USAGE, &message);
            return EXIT_USAGE;
        }
    };
    let mut log_file = match (&plan.target, &plan.log_file) {
        (LogTarget::File, Some(path)) => match LogFile::open(path) {
            Ok(file) => Some(file),
            Err(e) => {
                reporter.fail(
                    EXIT_FAILURE,
                    &format!("cannot open log file {}: {e}", path.display()),
                );
                return EXIT_FAILURE;
            }
        },
        _ => None,
    };
    if ops.daemon && inherited.is_none() {
        match daemon::daemonize(log_file.as_ref().map(LogFile::raw_fd)) {
            Ok(Daemonized::Parent(code)) => return code,
            Ok(Daemonized::Daemon(channel)) => reporter = channel,
            Err(e) => {
                reporter.fail(EXIT_FAILURE, &format!("cannot daemonize: {e}"));
                return EXIT_FAILURE;
            }
        }
        if let Some(file) = &mut log_file {
            // Panics and stray writes to stderr land in the log too. Failing here only loses
            // those, so carry on.
            let _ = file.redirect_stderr();
        }
    }
    let logging = Logging::init(
        plan.target,
        log_file,
        overrides.log_level.is_some(),
        &plan.config.log_level,
    );
    // Config-file settings the chosen model ignores (see `config::check_model_fit`).
    for warning in &plan.config.warnings {
        tracing::warn!("{warning}");
    }
    // The supervisor or the lone server holds the pid file; a supervised child does not.
    let _pid_file = match (&plan.pid_file, inherited) {
        (Some(path), None) => match PidFile::create(path) {
            Ok(pid_file) => Some(pid_file),
            Err(e) => {
                reporter.fail(EXIT_FAILURE, &e.to_string());
                return EXIT_FAILURE;
            }
        },
        _ => None,
    };
    if ops.supervise && inherited.is_none() {
        let listener = match crate::listener::bind_for(&plan.config) {
            Ok(listener) => listener,
            Err(e) => {
                reporter.fail(EXIT_FAILURE, &e.to_string());
                return EXIT_FAILURE;
            }
        };
        if let Ok(addr) = listener.local_addr() {
            info!(%addr, "supervisor listening");
        }
        return Supervisor {
            listener,
            shutdown_timeout: plan.config.shutdown_timeout,
            restart: ops.restart.unwrap_or_default(),
            restart_delay: ops.restart_delay.unwrap_or(supervise::INITIAL_BACKOFF),
            config_path: plan.config_path.clone(),
            log_file: plan.log_file.clone(),
            logging,
        }
        .run(reporter);
    }
    run_server(plan, inherited, reporter, logging)
}

/// Binds (or takes the inherited listener), drops privileges, installs signals, starts the
/// metrics endpoint, reports readiness, serves, drains.
fn run_server(
    plan: Plan,
    inherited: Option<RawFd>,
    mut reporter: Reporter,
    logging: Logging,
) -> u8 {
    let config = &plan.config;
    let server = match inherited {
        Some(fd) => take_inherited(fd)
            .and_then(|l| Server::from_listener(config, l).map_err(|e| e.to_string())),
        None => Server::bind(config).map_err(|e| e.to_string()),
    };
    let mut server = match server {
        Ok(server) => server,
        Err(message) => {
            reporter.fail(EXIT_FAILURE, &message);
            return EXIT_FAILURE;
        }
    };
    let metrics = match config.metrics_listen.map(MetricsServer::bind).transpose() {
        Ok(metrics) => metrics,
        Err(e) => {
            reporter.fail(EXIT_FAILURE, &format!("metrics endpoint: {e}"));
            return EXIT_FAILURE;
        }
    };
    if let Some(user) = &plan.user {
        if let Err(message) = user.switch_to() {
            reporter.fail(EXIT_FAILURE, &message);
            return EXIT_FAILURE;
        }
    }
    let shutdown = server.shutdown_handle();
    let reloader = Reloader::new(
        plan.config_path.clone(),
        plan.overrides.clone(),
        config.clone(),
        server.live_settings(),
        logging,
    );
    let signals = if server.handles_signals() {
        // The fork model's parent must stay single-threaded: it installed its own handlers at
        // bind time and runs the reload on SIGHUP from its own loop.
        let mut reloader = reloader;
        server.on_reload(move || {
            // Errors were logged by the reloader; the old config stays in force.
            let _ = reloader.reload();
        });
        None
    } else {
        match signals::spawn(shutdown.clone(), reloader) {
            Ok(signals) => Some(signals),
            Err(e) => {
                reporter.fail(
                    EXIT_FAILURE,
                    &format!("cannot install signal handlers: {e}"),
                );
                return EXIT_FAILURE;
            }
        }
    };
    let mut metrics_thread = None;
    if let Some(metrics) = metrics {
        let addr = metrics.local_addr();
        let source = MetricsSource::new(server.stats(), server.live_settings());
        match metrics.spawn(source, &shutdown) {
            Ok(thread) => {
                info!("metrics at http://{addr}/metrics");
                metrics_thread = Some(thread);
            }
            Err(e) => {
                reporter.fail(
                    EXIT_FAILURE,
                    &format!("cannot start the metrics endpoint: {e}"),
                );
                if let Some(signals) = signals {
                    signals.stop();
                }
                return EXIT_FAILURE;
            }
        }
    }
    let addr = server.local_addr();
    info!(%addr, model = %config.model, workers = config.workers, buffer_size = config.buffer_size,
        max_connections = config.max_connections, idle_timeout = ?config.idle_timeout,
        udp = config.udp, "serving");
    reporter.ready(addr);
    notify::notify("READY=1");
    drop(reporter);
    let result = server.run();
    // If the server failed rather than drained, stop the metrics thread too.
    shutdown.shutdown();
    if let Some(thread) = metrics_thread {
        let _ = thread.join();
    }
    if let Some(signals) = signals {
        signals.stop();
    }
    match result {
        Ok(()) => {
            info!("shut down cleanly");
            0
        }
        Err(e) => {
            tracing::error!(error = %e, "server failed");
            if inherited.is_none() {
                eprintln!("reactor-pool: error: {e}");
            }
            EXIT_FAILURE
        }
    }
}

/// Takes ownership of the listening socket a supervisor passed down as descriptor `fd`.
fn take_inherited(fd: RawFd) -> Result<TcpListener, String> {
    if fd < 3 || !fd::is_open(fd) {
        return Err(format!("--inherit-listener {fd}: not an open descriptor"));
    }
    // The supervisor passed this inherited descriptor's number for exactly this purpose.
    // SAFETY: `fd` is open (checked); nothing else in this process owns it, and this is the
    // only place that takes it, once, at start-up.
    let socket = socket2::Socket::from(unsafe { OwnedFd::from_raw_fd(fd) });
    match socket.is_listener() {
        Ok(true) => {}
        Ok(false) => return Err(format!("--inherit-listener {fd}: not a listening socket")),
        Err(e) => return Err(format!("--inherit-listener {fd}: {e}")),
    }
    // Our own children (there are none today) must not inherit it.
    socket
        .set_cloexec(true)
        .map_err(|e| format!("--inherit-listener {fd}: {e}"))?;
    Ok(socket.into())
}

/// Prints clap's help and version normally; squeezes real errors into one line, exit 2
/// ([`EXIT_USAGE`]). The server's and the bench's binaries both answer bad arguments with it.
pub fn clap_error(e: clap::Error) -> std::process::ExitCode {
    use clap::error::ErrorKind;
    if matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) {
        let _ = e.print();
        return std::process::ExitCode::SUCCESS;
    }
    if e.kind() == ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand {
        let _ = e.print();
        return std::process::ExitCode::from(EXIT_USAGE);
    }
    let text = e.render().to_string();
    let line: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| {
            !l.is_empty() && !l.starts_with("For more information") && !l.starts_with("Usage:")
        })
        .collect();
    eprintln!("reactor-pool: {} (see --help)", line.join(" "));
    std::process::ExitCode::from(EXIT_USAGE)
}
