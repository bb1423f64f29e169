//! `Reloader`: what SIGHUP does in a running server.
//!
//! Reopens the log file (for logrotate), then reads the config file again with the same
//! command-line overrides. An unreadable or invalid file is rejected as a whole and the
//! running config kept. Otherwise the settings that can change at run time take effect at
//! once, without touching open connections: `log_level`, `idle_timeout` (also for connections
//! already open), `max_connections`, `shutdown_timeout`, `udp_rate_limit`, and for new
//! connections `nodelay`, `tcp_keepalive`, `tcp_user_timeout` and `log_connections`. Every
//! other changed setting is logged as needing a restart, and stays as it was.
//!
//! Reading the file never blocks on what the path names (see [`read_config_file`]: a FIFO or
//! a device is refused, the size is bounded). A regular file on a hung network mount can
//! still block in the kernel, so the signal thread hands reloads to a [`ReloadThread`] and
//! stays free to act on SIGTERM. The `fork` model's parent, which must stay single-threaded,
//! reloads on its own thread, with the same non-blocking read.
//!
//! [`read_config_file`]: crate::config::read_config_file

use std::fmt::Debug;
use std::io;
use std::path::PathBuf;
use std::sync::Arc;
use std::thread;

use crossbeam_channel::{Sender, TrySendError};

use tracing::{error, info, warn};

use super::logging::Logging;
use super::notify::notify;
use crate::config::{Config, Overrides};
use crate::live::LiveSettings;

/// The outcome of one reload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct ReloadOutcome {
    /// Settings that took effect.
    pub applied: Vec<&'static str>,
    /// Settings that changed in the file but need a restart.
    pub needs_restart: Vec<&'static str>,
}

/// Re-reads the config file on request and applies what can be applied.
#[derive(Debug)]
pub(super) struct Reloader {
    /// The config file (absolute); `None` when the server runs on flags alone.
    path: Option<PathBuf>,
    /// Command-line values, which keep beating the file after a reload.
    overrides: Overrides,
    /// The configuration in force: restart-only fields as started, live fields as last applied.
    current: Config,
    /// Where live settings are published to the acceptor and workers.
    live: Arc<LiveSettings>,
    /// The logger (filter and file).
    logging: Logging,
}

impl Reloader {
    /// A reloader for a server started with `current`.
    pub(super) fn new(
        path: Option<PathBuf>,
        overrides: Overrides,
        current: Config,
        live: Arc<LiveSettings>,
        logging: Logging,
    ) -> Self {
        Reloader {
            path,
            overrides,
            current,
            live,
            logging,
        }
    }

    /// Handles one SIGHUP. Returns the outcome, or the reason the file was rejected.
    pub(super) fn reload(&mut self) -> Result<ReloadOutcome, String> {
        notify("RELOADING=1");
        let result = self.reload_inner();
        notify("READY=1");
        result
    }

    fn reload_inner(&mut self) -> Result<ReloadOutcome, String> {
        if let Err(e) = self.logging.reopen() {
            error!(error = %e, "cannot reopen the log file; still writing to the old one");
        }
        let Some(path) = &self.path else {
            info!("SIGHUP: no config file to reload (started without --config)");
            return Ok(ReloadOutcome {
                applied: Vec::new(),
                needs_restart: Vec::new(),
            });
        };
        let new = match Config::load(Some(path), &self.overrides) {
            Ok(new) => new,
            Err(e) => {
                self.live.record_reload(false);
                error!("config reload rejected, keeping the running configuration: {e}");
                return Err(e.to_string());
            }
        };
        let old = &self.current;
        let mut outcome = ReloadOutcome {
            applied: Vec::new(),
            needs_restart: Vec::new(),
        };
        let mut restart = |field: &'static str, running: &dyn Debug, configured: &dyn Debug| {
            warn!(
                field,
                running = ?running,
                configured = ?configured,
                "config reload: `{field}` changed but needs a restart to take effect"
            );
            outcome.needs_restart.push(field);
        };
        macro_rules! restart_only {
            ($($field:ident),*) => {$(
                if new.$field != old.$field {
                    restart(stringify!($field), &old.$field, &new.$field);
                }
            )*};
        }
        restart_only!(
            listen,
            workers,
            model,
            dispatch,
            backlog,
            buffer_size,
            thread_stack_size,
            poll_interval,
            metrics_listen,
            metrics_allow_remote,
            reuse_port,
            udp
        );
        let mut next = old.clone();
        let mut changes: Vec<(&'static str, String, String)> = Vec::new();
        macro_rules! live {
            ($($field:ident),*) => {$(
                if new.$field != old.$field {
                    // Logged once applied (below): whoever reads the line (an operator, a
                    // test) then finds the new value in force.
                    changes.push((
                        stringify!($field),
                        format!("{:?}", old.$field),
                        format!("{:?}", new.$field),
                    ));
                    next.$field = new.$field.clone();
                    outcome.applied.push(stringify!($field));
                }
            )*};
        }
        live!(
            idle_timeout,
            max_connections,
            shutdown_timeout,
            nodelay,
            tcp_keepalive,
            tcp_user_timeout,
            log_connections,
            udp_rate_limit
        );
        if new.log_level != old.log_level {
            match self.logging.set_level(&new.log_level) {
                Ok(true) => {
                    info!(from = %old.log_level, to = %new.log_level, "config reload: `log_level` applied");
                    outcome.applied.push("log_level");
                }
                Ok(false) => {}
                Err(e) => warn!(error = %e, "config reload: cannot apply `log_level`"),
            }
            next.log_level = new.log_level.clone();
        }
        self.live.apply(&next);
        for (field, from, to) in changes {
            info!(from, to, "config reload: `{field}` applied");
        }
        self.live.record_reload(true);
        self.current = next;
        info!(
            applied = outcome.applied.len(),
            needs_restart = outcome.needs_restart.len(),
            "configuration reloaded from {}",
            path.display()
        );
        Ok(outcome)
    }
}

/// Runs reloads on a thread of their own, one at a time, so whoever asks (the signal thread)
/// never waits for one.
#[derive(Debug)]
pub(super) struct ReloadThread {
    /// One pending request at most: requests that arrive while one is pending are merged
    /// into it (it reads the file as it is when it runs).
    requests: Sender<()>,
}

impl ReloadThread {
    /// Starts the thread. It ends when the `ReloadThread` is dropped and no reload runs; it is
    /// never joined, since a reload stuck in the kernel must not hold up the exit.
    pub(super) fn spawn(mut reloader: Reloader) -> io::Result<ReloadThread> {
        let (requests, pending) = crossbeam_channel::bounded::<()>(1);
        thread::Builder::new()
            .name("reload".to_owned())
            .spawn(move || {
                for () in pending {
                    // Errors were logged by the reloader; the old config stays in force.
                    let _ = reloader.reload();
                }
            })?;
        Ok(ReloadThread { requests })
    }

    /// Asks for a reload; returns at once.
    pub(super) fn request(&self) {
        match self.requests.try_send(()) {
            Ok(()) => {}
            Err(TrySendError::Full(())) => {
                info!("a reload is already pending; it will read the latest file");
            }
            Err(TrySendError::Disconnected(())) => {
                error!("the reload thread has stopped; SIGHUP ignored");
            }
        }
    }
}
