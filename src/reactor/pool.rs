//! `ReactorServer`: takes the bound listener, spawns the worker threads, runs the acceptor on the
//! calling thread (or, in the modes without one, hands the workers their listeners and waits),
//! and joins the workers once they have drained.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::AtomicUsize;
use std::thread;

use crate::config::Config;
use crate::listener::{self, BindError};
use crate::live::LiveSettings;
use crate::reactor::Dispatch;
use crate::reactor::acceptor::Acceptor;
use crate::reactor::dispatch::{self, Dispatcher, WorkerLink};
use crate::shutdown::ShutdownHandle;
use crate::stats::Stats;
use crate::worker::{EchoOptions, Listening, Worker, WorkerLinks, WorkerSettings};

/// The reactor-pool model: a bound listener waiting for [`ReactorServer::run`].
#[derive(Debug)]
pub struct ReactorServer {
    /// Settings it was bound with.
    config: Config,
    /// Bound and listening (connections queue in the backlog until `run`).
    listener: std::net::TcpListener,
    /// In `reuseport` mode, the listeners of workers 1..N, bound on `local_addr` in the
    /// `SO_REUSEPORT` group of `listener` (worker 0's); empty otherwise.
    more_listeners: Vec<std::net::TcpListener>,
    /// The address actually bound (port 0 resolved).
    local_addr: SocketAddr,
    /// Shutdown trigger, shared with whoever holds a handle.
    shutdown: ShutdownHandle,
    /// Settings a reload may change while running.
    live: Arc<LiveSettings>,
    /// Counters, one block per worker (`config.workers` of them).
    stats: Arc<Stats>,
}

impl ReactorServer {
    /// Serves on a listening socket (bound by [`Server::bind`](crate::Server::bind), or
    /// inherited from a supervisor); `config.listen` and `config.backlog` are not used. The
    /// socket is made non-blocking here.
    pub fn from_listener(
        config: &Config,
        listener: std::net::TcpListener,
        shutdown: ShutdownHandle,
        live: Arc<LiveSettings>,
        stats: Arc<Stats>,
    ) -> Result<ReactorServer, BindError> {
        let local_addr = listener
            .set_nonblocking(true)
            .and_then(|()| listener.local_addr())
            .map_err(|source| BindError {
                addr: config.listen,
                source,
            })?;
        // Bound here, before the `listening on` line, on the port the first socket got (port 0
        // resolved); the first socket was bound with `SO_REUSEPORT` for this
        // (`listener::bind_for`, also the supervisor's).
        let more_listeners = if config.dispatch.needs_reuse_port() {
            (1..config.workers)
                .map(|_| listener::bind_with(local_addr, config.backlog, true))
                .collect::<Result<Vec<_>, _>>()?
        } else {
            Vec::new()
        };
        Ok(ReactorServer {
            config: config.clone(),
            listener,
            more_listeners,
            local_addr,
            shutdown,
            live,
            stats,
        })
    }

    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Serves until shutdown is requested and every worker has drained.
    pub fn run(self) -> io::Result<()> {
        let config = &self.config;
        let dispatch = config.dispatch;
        let active = Arc::new(AtomicUsize::new(0));
        // Each worker's listener in the modes without an acceptor thread.
        let mut listenings: Vec<Option<Listening>> = match dispatch {
            Dispatch::RoundRobin | Dispatch::LeastConnections => {
                (0..config.workers).map(|_| None).collect()
            }
            Dispatch::ReusePort => std::iter::once(self.listener.try_clone()?)
                .chain(
                    self.more_listeners
                        .iter()
                        .map(|l| l.try_clone())
                        .collect::<io::Result<Vec<_>>>()?,
                )
                .map(|l| Some(Listening::Own(mio::net::TcpListener::from_std(l))))
                .collect(),
            Dispatch::Shared => {
                let shared = Arc::new(mio::net::TcpListener::from_std(self.listener.try_clone()?));
                (0..config.workers)
                    .map(|_| Some(Listening::Shared(shared.clone())))
                    .collect()
            }
        };
        let mut links = Vec::with_capacity(config.workers);
        let mut threads = Vec::with_capacity(config.workers);
        for (id, listening) in listenings.iter_mut().enumerate() {
            let (tx, rx) = crossbeam_channel::unbounded();
            let settings = WorkerSettings {
                id,
                echo: EchoOptions::new(config.buffer_size),
                live: self.live.clone(),
                stats: self.stats.clone(),
            };
            let load =
                (dispatch == Dispatch::LeastConnections).then(|| Arc::new(AtomicUsize::new(0)));
            let worker_links = WorkerLinks {
                commands: rx,
                active: active.clone(),
                load: load.clone(),
                listening: listening.take(),
            };
            let (worker, wakeup) = Worker::new(settings, worker_links)?;
            // A reload may shorten the idle timeout: wake the worker so it recomputes its
            // poll timeout instead of sleeping on the old one.
            let wake = wakeup.clone();
            self.live.on_change(move || {
                let _ = wake.wake();
            });
            let handle = thread::Builder::new()
                .name(format!("worker-{id}"))
                .spawn(move || worker.run())?;
            links.push(WorkerLink {
                commands: tx,
                wakeup,
                load,
            });
            threads.push(handle);
        }
        let wakeups: Vec<_> = links.iter().map(|l| l.wakeup.clone()).collect();
        let mut result = if dispatch.has_acceptor() {
            let acceptor = Acceptor::new(
                mio::net::TcpListener::from_std(self.listener),
                Dispatcher::new(links),
                active,
                self.live.clone(),
                self.stats.clone(),
                self.shutdown.clone(),
            );
            acceptor.and_then(Acceptor::run)
        } else {
            // The workers accept for themselves; shutdown tells each to close its listener
            // and drain. Their copies are the only ones left open from here on.
            drop(self.listener);
            drop(self.more_listeners);
            self.shutdown
                .on_shutdown(move || dispatch::stop_all(&links));
            Ok(())
        };
        // Normally the workers have been told to stop. If the acceptor failed, its dispatcher
        // is dropped by now, which disconnects the channels; a wake makes each worker notice
        // and drain. The wakers stay alive until the workers are joined: closing a waker's
        // eventfd would remove its pending event from the worker's epoll set before the
        // worker saw it.
        if result.is_err() {
            for wakeup in &wakeups {
                let _ = wakeup.wake();
            }
        }
        for handle in threads {
            let joined = handle
                .join()
                .unwrap_or_else(|_| Err(io::Error::other("a worker thread panicked")));
            if result.is_ok() {
                result = joined;
            }
        }
        drop(wakeups);
        result
    }
}
