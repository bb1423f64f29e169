//! `Server`: the library entry point shared by `main` and the tests. Bind from a config,
//! report the bound address, run, stop through a [`ShutdownHandle`].

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;

use crate::config::{Config, Model};
use crate::listener::{self, BindError};
use crate::live::LiveSettings;
use crate::models::ModelServer;
use crate::reactor::ReactorServer;
use crate::shutdown::ShutdownHandle;
use crate::stats::Stats;

/// A bound server of any model, ready to run.
#[derive(Debug)]
pub struct Server {
    /// The model-specific server.
    inner: Inner,
    /// Trigger for a graceful shutdown.
    shutdown: ShutdownHandle,
    /// Settings a reload changes while running.
    live: Arc<LiveSettings>,
    /// The server's counters (for the metrics endpoint).
    stats: Arc<Stats>,
}

#[derive(Debug)]
enum Inner {
    Reactor(ReactorServer),
    /// Any of the raw-syscall comparison models.
    Model(ModelServer),
}

impl Server {
    /// Binds the listening socket for `config.model`. Connections queue in the backlog from
    /// here on; they are served once [`Server::run`] is called.
    pub fn bind(config: &Config) -> Result<Server, BindError> {
        let listener = listener::bind_with(config.listen, config.backlog, config.reuse_port)?;
        Server::from_listener(config, listener)
    }

    /// Like [`Server::bind`], on a socket that is already listening (inherited from a
    /// supervisor, so restarts keep the port and its backlog).
    pub fn from_listener(
        config: &Config,
        listener: std::net::TcpListener,
    ) -> Result<Server, BindError> {
        let shutdown = ShutdownHandle::new();
        let live = Arc::new(LiveSettings::new(config));
        // The other models count everything in one block (they have no worker pool).
        let blocks = if config.model.uses_workers() {
            config.workers
        } else {
            1
        };
        let stats = Arc::new(Stats::new(blocks));
        let inner = match config.model {
            Model::Reactor => Inner::Reactor(ReactorServer::from_listener(
                config,
                listener,
                shutdown.clone(),
                live.clone(),
                stats.clone(),
            )?),
            _ => Inner::Model(ModelServer::from_listener(
                config,
                listener,
                shutdown.clone(),
                live.clone(),
                stats.clone(),
            )?),
        };
        Ok(Server {
            inner,
            shutdown,
            live,
            stats,
        })
    }

    /// The bound address (port 0 resolved to the real port).
    pub fn local_addr(&self) -> SocketAddr {
        match &self.inner {
            Inner::Reactor(s) => s.local_addr(),
            Inner::Model(s) => s.local_addr(),
        }
    }

    /// Whether the server handles SIGINT/SIGTERM/SIGHUP itself (the `fork` model, whose
    /// process must stay single-threaded): the caller must then start no signal thread, and
    /// hands its reload action to [`Server::on_reload`] instead.
    pub fn handles_signals(&self) -> bool {
        match &self.inner {
            Inner::Reactor(_) => false,
            Inner::Model(s) => s.handles_signals(),
        }
    }

    /// What a server that [handles its own signals](Server::handles_signals) runs on SIGHUP
    /// (on its own thread, between connections). Ignored by the other servers.
    pub fn on_reload(&mut self, reload: impl FnMut() + Send + 'static) {
        if let Inner::Model(s) = &mut self.inner {
            s.on_reload(Box::new(reload));
        }
    }

    /// The settings a reload may change while the server runs.
    pub fn live_settings(&self) -> Arc<LiveSettings> {
        self.live.clone()
    }

    /// The server's counters.
    pub fn stats(&self) -> Arc<Stats> {
        self.stats.clone()
    }

    /// A handle that stops this server gracefully; it may be cloned and sent anywhere.
    pub fn shutdown_handle(&self) -> ShutdownHandle {
        self.shutdown.clone()
    }

    /// Serves until shutdown is requested and open connections have drained (or the
    /// shutdown timeout passed).
    pub fn run(self) -> io::Result<()> {
        match self.inner {
            Inner::Reactor(s) => s.run(),
            Inner::Model(s) => s.run(),
        }
    }
}
