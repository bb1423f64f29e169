//! `Reloader`: what SIGHUP does in a running server.
//!
//! Reopens the log file (for logrotate), then reads the config file again with the same
//! command-line overrides. An unreadable or invalid file is rejected as a whole and the
//! running config kept. Otherwise the settings that can change at run time take effect at
//! once, without touching open connections: `log_level`, `idle_timeout` (also for connections
//! already open), `max_connections`, `shutdown_timeout`, `nodelay` (for new connections),
//! `udp_rate_limit`. Every other changed setting is logged as needing a restart, and stays as
//! it was.

use std::fmt::Debug;
use std::path::PathBuf;
use std::sync::Arc;

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
            udp
        );
        let mut next = old.clone();
        macro_rules! live {
            ($($field:ident),*) => {$(
                if new.$field != old.$field {
                    info!(
                        from = ?old.$field,
                        to = ?new.$field,
                        "config reload: `{}` applied", stringify!($field)
                    );
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
