//! The reactor model's `run`: spawns the worker threads, runs the acceptor on the calling
//! thread, and joins the workers once they have drained.

use std::io;
use std::sync::Arc;
use std::sync::atomic::AtomicUsize;
use std::thread;

use crate::live::LiveSettings;
use crate::reactor::acceptor::Acceptor;
use crate::reactor::dispatch::{Dispatcher, WorkerLink};
use crate::shutdown::ShutdownHandle;
use crate::stats::Stats;
use crate::udp::UdpEcho;
use crate::worker::{EchoOptions, Worker, WorkerSettings};

/// Serves on `listener` with `workers` workers (counting in one `stats` block each) until
/// shutdown is requested and every worker has drained. Each socket of `udp` (one per worker,
/// or none) is served by one worker.
pub(crate) fn run(
    listener: std::net::TcpListener,
    workers: usize,
    buffer_size: usize,
    shutdown: ShutdownHandle,
    live: Arc<LiveSettings>,
    stats: Arc<Stats>,
    udp: Vec<std::net::UdpSocket>,
) -> io::Result<()> {
    let mut udp = udp.into_iter();
    let active = Arc::new(AtomicUsize::new(0));
    let mut links = Vec::with_capacity(workers);
    let mut threads = Vec::with_capacity(workers);
    for id in 0..workers {
        let (tx, rx) = crossbeam_channel::unbounded();
        let worker_settings = WorkerSettings {
            id,
            echo: EchoOptions::new(buffer_size),
            live: live.clone(),
            stats: stats.clone(),
        };
        let (mut worker, waker) = Worker::new(worker_settings, rx, active.clone())?;
        if let Some(socket) = udp.next() {
            worker.serve_udp(UdpEcho::new(socket, id, live.clone(), stats.clone()))?;
        }
        // A reload may shorten the idle timeout: wake the worker so it recomputes its
        // poll timeout instead of sleeping on the old one.
        let wake = waker.clone();
        live.on_change(move || {
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
        mio::net::TcpListener::from_std(listener),
        Dispatcher::new(links),
        active,
        live.clone(),
        stats.clone(),
        shutdown.clone(),
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
