//! The reactor model's `run`: spawns the worker threads, runs the acceptor on the calling
//! thread (or, in the dispatch modes without one, gives the workers their listeners and
//! waits), and joins the workers once they have drained.

use std::io;
use std::sync::Arc;
use std::sync::atomic::AtomicUsize;
use std::thread;

use crate::live::LiveSettings;
use crate::models::Settings;
use crate::reactor::Dispatch;
use crate::reactor::acceptor::Acceptor;
use crate::reactor::dispatch::{self, Dispatcher, WorkerLink};
use crate::shutdown::ShutdownHandle;
use crate::stats::Stats;
use crate::udp::UdpEcho;
use crate::worker::{EchoOptions, Listening, Worker, WorkerLinks, WorkerSettings};

/// The bound sockets the pool serves on.
#[derive(Debug)]
pub(crate) struct Listeners {
    /// The listening socket (the acceptor's, worker 0's in `reuseport`, everyone's in
    /// `shared`).
    pub(crate) first: std::net::TcpListener,
    /// `reuseport`: the sockets of workers 1..N in the group of `first`; empty otherwise.
    pub(crate) reuseport_group: Vec<std::net::TcpListener>,
}

/// Serves on `listeners` with `settings.workers` workers (counting in one `stats` block
/// each), dispatching as `settings.dispatch` says, until shutdown is requested and every
/// worker has drained. Each socket of `udp` (one per worker, or none) is served by one
/// worker.
pub(crate) fn run(
    listeners: Listeners,
    settings: Settings,
    shutdown: ShutdownHandle,
    live: Arc<LiveSettings>,
    stats: Arc<Stats>,
    udp: Vec<std::net::UdpSocket>,
) -> io::Result<()> {
    let workers = settings.workers;
    let dispatch = settings.dispatch;
    let mut udp = udp.into_iter();
    let active = Arc::new(AtomicUsize::new(0));
    let Listeners {
        first,
        reuseport_group,
    } = listeners;
    // Each worker's own listener in the modes without an acceptor thread; the acceptor's
    // otherwise.
    let mut acceptor_listener = None;
    let mut listenings: Vec<Option<Listening>> = match dispatch {
        Dispatch::RoundRobin | Dispatch::LeastConnections => {
            acceptor_listener = Some(first);
            (0..workers).map(|_| None).collect()
        }
        Dispatch::ReusePort => std::iter::once(first)
            .chain(reuseport_group)
            .map(|l| Some(Listening::Own(mio::net::TcpListener::from_std(l))))
            .collect(),
        Dispatch::Shared => {
            let shared = Arc::new(mio::net::TcpListener::from_std(first));
            (0..workers)
                .map(|_| Some(Listening::Shared(shared.clone())))
                .collect()
        }
    };
    let mut links = Vec::with_capacity(workers);
    // Every worker is created (poller, waker, listener registration) before any starts: a
    // worker that accepts for itself must not serve while the pool is still opening
    // descriptors.
    let mut ready = Vec::with_capacity(workers);
    for (id, listening) in listenings.iter_mut().enumerate() {
        let (tx, rx) = crossbeam_channel::unbounded();
        let worker_settings = WorkerSettings {
            id,
            echo: EchoOptions::new(settings.buffer_size),
            live: live.clone(),
            stats: stats.clone(),
        };
        let load = (dispatch == Dispatch::LeastConnections).then(|| Arc::new(AtomicUsize::new(0)));
        let worker_links = WorkerLinks {
            commands: rx,
            active: active.clone(),
            load: load.clone(),
            listening: listening.take(),
        };
        let (mut worker, wakeup) = Worker::new(worker_settings, worker_links)?;
        if let Some(socket) = udp.next() {
            worker.serve_udp(UdpEcho::new(socket, id, live.clone(), stats.clone()))?;
        }
        // A reload may shorten the idle timeout: wake the worker so it recomputes its
        // poll timeout instead of sleeping on the old one.
        let wake = wakeup.clone();
        live.on_change(move || {
            let _ = wake.wake();
        });
        ready.push(worker);
        links.push(WorkerLink {
            commands: tx,
            wakeup,
            load,
        });
    }
    let mut threads = Vec::with_capacity(workers);
    for (id, worker) in ready.into_iter().enumerate() {
        threads.push(
            thread::Builder::new()
                .name(format!("worker-{id}"))
                .spawn(move || worker.run())?,
        );
    }
    let wakeups: Vec<_> = links.iter().map(|l| l.wakeup.clone()).collect();
    let mut result = match acceptor_listener {
        Some(listener) => Acceptor::new(
            mio::net::TcpListener::from_std(listener),
            Dispatcher::new(links),
            active,
            live.clone(),
            stats.clone(),
            shutdown.clone(),
        )
        .and_then(Acceptor::run),
        None => {
            // The workers accept for themselves; shutdown tells each to close its listener
            // and drain.
            shutdown.on_shutdown(move || dispatch::stop_all(&links));
            Ok(())
        }
    };
    // Normally the workers have been told to stop. If the acceptor failed, its dispatcher
    // is dropped by now, which disconnects the channels; a wake makes each worker notice and
    // drain. The wakers stay alive until the workers are joined: closing a waker's eventfd
    // would remove its pending event from the worker's epoll set before the worker saw it.
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
