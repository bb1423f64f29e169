//! `Server`: the library entry point shared by `main` and the tests. Bind from a config,
//! report the bound address, run, stop through a [`ShutdownHandle`].

use std::io;
use std::net::SocketAddr;

use crate::config::{Config, Model};
use crate::listener::BindError;
use crate::models::ModelServer;
use crate::reactor::ReactorServer;
use crate::shutdown::ShutdownHandle;

/// A bound server of any model, ready to run.
#[derive(Debug)]
pub struct Server {
    /// The model-specific server.
    inner: Inner,
    /// Trigger for a graceful shutdown.
    shutdown: ShutdownHandle,
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
        let shutdown = ShutdownHandle::new();
        let inner = match config.model {
            Model::Reactor => Inner::Reactor(ReactorServer::bind(config, shutdown.clone())?),
            _ => Inner::Model(ModelServer::bind(config, shutdown.clone())?),
        };
        Ok(Server { inner, shutdown })
    }

    /// The bound address (port 0 resolved to the real port).
    pub fn local_addr(&self) -> SocketAddr {
        match &self.inner {
            Inner::Reactor(s) => s.local_addr(),
            Inner::Model(s) => s.local_addr(),
        }
    }

    /// Whether the server handles SIGINT/SIGTERM/SIGHUP itself (the `fork` model, whose
    /// process must stay single-threaded): the caller must then not start a signal thread.
    pub fn handles_signals(&self) -> bool {
        match &self.inner {
            Inner::Reactor(_) => false,
            Inner::Model(s) => s.handles_signals(),
        }
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
