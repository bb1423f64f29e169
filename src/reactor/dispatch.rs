//! `Dispatcher`: hands accepted connections to workers round-robin.
//!
//! Push-then-wake: a command is queued on the worker's channel before the worker's waker is
//! written, so the worker always finds it. Wakes are batched: `dispatch` only marks a worker
//! as owed a wake-up, and `flush` wakes each marked worker once.

use std::io;
use std::sync::Arc;

use crossbeam_channel::Sender;
use mio::Waker;
use mio::net::TcpStream;

use crate::worker::Command;

/// The acceptor's end of one worker.
#[derive(Debug)]
pub struct WorkerLink {
    /// Queue of commands for the worker.
    pub commands: Sender<Command>,
    /// Wakes the worker's poller.
    pub waker: Arc<Waker>,
}

/// Round-robin hand-off to workers.
#[derive(Debug)]
pub struct Dispatcher {
    /// One link per worker, in worker order.
    links: Vec<WorkerLink>,
    /// Worker that receives the next connection.
    next: usize,
    /// `owed[i]`: worker `i` has commands queued since its last wake.
    owed: Vec<bool>,
}

impl Dispatcher {
    /// A dispatcher over `links` (at least one).
    pub fn new(links: Vec<WorkerLink>) -> Self {
        assert!(!links.is_empty(), "a dispatcher needs at least one worker");
        let owed = vec![false; links.len()];
        Dispatcher {
            links,
            next: 0,
            owed,
        }
    }

    /// Queues `stream` for the next worker in turn. The worker is woken at the next `flush`.
    /// Gives the stream back if that worker is gone.
    pub fn dispatch(&mut self, stream: TcpStream) -> Result<(), TcpStream> {
        let i = self.next;
        self.next = (self.next + 1) % self.links.len();
        match self.links[i].commands.send(Command::NewConn(stream)) {
            Ok(()) => {
                self.owed[i] = true;
                Ok(())
            }
            Err(e) => match e.into_inner() {
                Command::NewConn(stream) => Err(stream),
                Command::Stop => unreachable!("only NewConn was sent"),
            },
        }
    }

    /// Wakes every worker that was handed something since the last flush.
    pub fn flush(&mut self) -> io::Result<()> {
        let mut result = Ok(());
        for (link, owed) in self.links.iter().zip(self.owed.iter_mut()) {
            if std::mem::take(owed) {
                if let Err(e) = link.waker.wake() {
                    result = Err(e);
                }
            }
        }
        result
    }

    /// Tells every worker to drain and stop.
    pub fn stop_all(&mut self) {
        for link in &self.links {
            // A worker that already exited has nothing left to drain.
            let _ = link.commands.send(Command::Stop);
            let _ = link.waker.wake();
        }
    }
}
