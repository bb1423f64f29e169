//! `ReactorServer`: takes the bound listener, spawns the worker threads, runs the acceptor on the
//! calling thread, and joins the workers once they have drained.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::AtomicUsize;
use std::thread;

use crate::config::Config;
use crate::listener::BindError;
use crate::live::LiveSettings;
use crate::reactor::acceptor::Acceptor;
use crate::reactor::dispatch::{Dispatcher, WorkerLink};
use crate::shutdown::ShutdownHandle;
use crate::stats::Stats;
use crate::udp::UdpEcho;
use crate::worker::{EchoOptions, Worker, WorkerSettings};

/// The reactor-pool model: a bound listener waiting for [`ReactorServer::run`].
#[derive(Debug)]
pub struct ReactorServer {
    /// Settings it was bound with.
    config: Config,
    /// Bound and listening (connections queue in the backlog until `run`).
    listener: std::net::TcpListener,
    /// The address actually bound (port 0 resolved).
    local_addr: SocketAddr,
    /// Shutdown trigger, shared with whoever holds a handle.
    shutdown: ShutdownHandle,
    /// Settings a reload may change while running.
    live: Arc<LiveSettings>,
    /// Counters, one block per worker (`config.workers` of them).
    stats: Arc<Stats>,
    /// With `udp`: one `SO_REUSEPORT` UDP socket per worker, on the listener's address.
    udp: Vec<std::net::UdpSocket>,
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
        let udp = if config.udp {
            crate::udp::bind(local_addr, config.workers).map_err(|source| BindError {
                addr: local_addr,
                source,
            })?
        } else {
            Vec::new()
        };
        Ok(ReactorServer {
            config: config.clone(),
            listener,
            local_addr,
            shutdown,
            live,
            stats,
            udp,
        })
    }

    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Serves until shutdown is requested and every worker has drained.
    pub fn run(mut self) -> io::Result<()> {
        let mut udp = std::mem::take(&mut self.udp).into_iter();
        let config = &self.config;
        let active = Arc::new(AtomicUsize::new(0));
        let mut links = Vec::with_capacity(config.workers);
        let mut threads = Vec::with_capacity(config.workers);
        for id in 0..config.workers {
            let (tx, rx) = crossbeam_channel::unbounded();
            let settings = WorkerSettings {
                id,
                echo: EchoOptions::new(config.buffer_size),
                live: self.live.clone(),
                stats: self.stats.clone(),
            };
            let (mut worker, waker) = Worker::new(settings, rx, active.clone())?;
            if let Some(socket) = udp.next() {
                worker.serve_udp(UdpEcho::new(
                    socket,
                    id,
                    self.live.clone(),
                    self.stats.clone(),
                ))?;
            }
            // A reload may shorten the idle timeout: wake the worker so it recomputes its
            // poll timeout instead of sleeping on the old one.
            let wake = waker.clone();
            self.live.on_change(move || {
                let _ = wake.wake();
            });
            let handle = thread::Builder::new()
                .name(format!("worker-{id}"))
                .spawn(move || worker.run())?;
            links.push(WorkerLink {
                commands: tx,
                waker,
            });
            threads.push(handle);
        }
        let wakers: Vec<_> = links.iter().map(|l| l.waker.clone()).collect();
        let acceptor = Acceptor::new(
            mio::net::TcpListener::from_std(self.listener),
            Dispatcher::new(links),
            active,
            self.live.clone(),
            self.stats.clone(),
            self.shutdown.clone(),
        );
        let mut result = acceptor.and_then(Acceptor::run);
        // Normally the acceptor has sent Stop. If it failed, its dispatcher is dropped by now,
        // which disconnects the channels; a wake makes each worker notice and drain. The
        // wakers stay alive until the workers are joined: closing a waker's eventfd would
        // remove its pending event from the worker's epoll set before the worker saw it.
        for waker in &wakers {
            let _ = waker.wake();
        }
        for handle in threads {
            let joined = handle
                .join()
                .unwrap_or_else(|_| Err(io::Error::other("a worker thread panicked")));
            if result.is_ok() {
                result = joined;
            }
        }
        drop(wakers);
        result
    }
}
