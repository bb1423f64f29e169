//! `Server`: the library entry point shared by `main` and the tests. Bind from a config,
//! report the bound address, run, stop through a [`ShutdownHandle`].

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;

use crate::config::Config;
use crate::listener::{self, BindError};
use crate::live::LiveSettings;
use crate::models::{self, Bound, ReloadHook};
use crate::shutdown::ShutdownHandle;
use crate::stats::Stats;
use crate::sys::signal::SignalPipe;
use crate::sys::socket::Listener;

/// A bound server of any model, ready to run.
#[derive(Debug)]
pub struct Server {
    /// Everything the model's `run` needs: listener, settings, shutdown trigger, live
    /// settings, counters, and its own signal handlers if it has any.
    bound: Bound,
    /// The address actually bound (port 0 resolved).
    local_addr: SocketAddr,
}

impl Server {
    /// Binds the listening socket for `config.model`. Connections queue in the backlog from
    /// here on; they are served once [`Server::run`] is called.
    pub fn bind(config: &Config) -> Result<Server, BindError> {
        let listener = listener::bind_with(config.listen, config.backlog, config.reuse_port)?;
        Server::from_listener(config, listener)
    }

    /// Like [`Server::bind`], on a socket that is already listening (inherited from a
    /// supervisor, so restarts keep the port and its backlog); `config.listen` and
    /// `config.backlog` are not used. The socket is made non-blocking here.
    pub(crate) fn from_listener(
        config: &Config,
        listener: std::net::TcpListener,
    ) -> Result<Server, BindError> {
        let err = |source| BindError {
            addr: config.listen,
            source,
        };
        let local_addr = listener
            .set_nonblocking(true)
            .and_then(|()| listener.local_addr())
            .map_err(err)?;
        let about = config.model.about();
        if let Some(probe) = about.probe {
            probe().map_err(err)?;
        }
        // Models without a worker pool count everything in one block.
        let blocks = if about.uses_workers {
            config.workers
        } else {
            1
        };
        // Only the reactor serves UDP (config refuses `--udp` for the others).
        let udp = if config.udp {
            crate::udp::bind(local_addr, config.workers).map_err(|source| BindError {
                addr: local_addr,
                source,
            })?
        } else {
            Vec::new()
        };
        let signals = match about.signals {
            [] => None,
            signals => Some(SignalPipe::install(signals).map_err(err)?),
        };
        let bound = Bound {
            listener: Listener::from(listener),
            settings: config.settings(),
            shutdown: ShutdownHandle::new(),
            live: Arc::new(LiveSettings::new(config)),
            stats: Arc::new(Stats::new(blocks)),
            signals,
            reload: None,
            udp,
        };
        Ok(Server { bound, local_addr })
    }

    /// The bound address (port 0 resolved to the real port).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Whether the server handles SIGINT/SIGTERM/SIGHUP itself (the `fork` model, whose
    /// process must stay single-threaded): the caller must then start no signal thread, and
    /// hands its reload action to [`Server::on_reload`] instead.
    pub(crate) fn handles_signals(&self) -> bool {
        self.bound.signals.is_some()
    }

    /// What a server that [handles its own signals](Server::handles_signals) runs on SIGHUP
    /// (on its own thread, between connections). Ignored by the other servers.
    pub(crate) fn on_reload(&mut self, reload: impl FnMut() + Send + 'static) {
        self.bound.reload = Some(ReloadHook(Box::new(reload)));
    }

    /// The settings a reload may change while the server runs.
    pub(crate) fn live_settings(&self) -> Arc<LiveSettings> {
        self.bound.live.clone()
    }

    /// The server's counters.
    pub(crate) fn stats(&self) -> Arc<Stats> {
        self.bound.stats.clone()
    }

    /// A handle that stops this server gracefully; it may be cloned and sent anywhere.
    pub fn shutdown_handle(&self) -> ShutdownHandle {
        self.bound.shutdown.clone()
    }

    /// Serves until shutdown is requested and open connections have drained (or the
    /// shutdown timeout passed).
    pub fn run(self) -> io::Result<()> {
        models::run(self.bound)
    }
}
