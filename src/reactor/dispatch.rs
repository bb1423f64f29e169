//! `Dispatcher`: the acceptor thread's hand-off of accepted connections to the workers, round
//! robin or to the least-loaded worker.
//!
//! Push-then-wake: a command is queued on the worker's channel before the worker is notified,
//! so the worker always finds it. Notifications are batched: `dispatch` only marks a worker as
//! owed one, and `flush` notifies each marked worker once, through its [`Wakeup`], which skips
//! the eventfd write when the worker is awake (it looks at its queue every round).

use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use crossbeam_channel::Sender;
use mio::net::TcpStream;

use crate::worker::{Command, Wakeup};

/// The acceptor's end of one worker.
#[derive(Debug)]
pub struct WorkerLink {
    /// Queue of commands for the worker.
    pub commands: Sender<Command>,
    /// Notifies the worker (writing its waker only when it sleeps).
    pub wakeup: Arc<Wakeup>,
    /// For `least-connections`: connections handed to the worker and not yet closed (this
    /// side adds, the worker subtracts). `None` in round-robin mode.
    pub load: Option<Arc<AtomicUsize>>,
}

/// Hand-off to workers: round robin, or (when every link has a `load`) to the worker with the
/// fewest open connections, ties round robin.
#[derive(Debug)]
pub struct Dispatcher {
    /// One link per worker, in worker order.
    links: Vec<WorkerLink>,
    /// Worker that receives the next connection in round robin (where a tie search starts).
    next: usize,
    /// `owed[i]`: worker `i` has commands queued since its last notification.
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

    /// The worker that gets the next connection.
    fn pick(&mut self) -> usize {
        let n = self.links.len();
        let mut chosen = self.next;
        if let Some(first) = &self.links[chosen].load {
            let mut fewest = first.load(Ordering::Relaxed);
            for k in 1..n {
                let i = (self.next + k) % n;
                let load = self.links[i]
                    .load
                    .as_ref()
                    .map_or(usize::MAX, |l| l.load(Ordering::Relaxed));
                if load < fewest {
                    (chosen, fewest) = (i, load);
                }
            }
        }
        self.next = (chosen + 1) % n;
        chosen
    }

    /// Queues `stream` for the next worker. The worker is notified at the next `flush`.
    /// Gives the stream back if that worker is gone.
    pub fn dispatch(&mut self, stream: TcpStream) -> Result<(), TcpStream> {
        let i = self.pick();
        let link = &self.links[i];
        match link.commands.send(Command::NewConn(stream)) {
            Ok(()) => {
                if let Some(load) = &link.load {
                    load.fetch_add(1, Ordering::Relaxed);
                }
                self.owed[i] = true;
                Ok(())
            }
            Err(e) => match e.into_inner() {
                Command::NewConn(stream) => Err(stream),
                Command::Stop => unreachable!("only NewConn was sent"),
            },
        }
    }

    /// Notifies every worker that was handed something since the last flush.
    pub fn flush(&mut self) -> io::Result<()> {
        let mut result = Ok(());
        for (link, owed) in self.links.iter().zip(self.owed.iter_mut()) {
            if std::mem::take(owed) {
                if let Err(e) = link.wakeup.notify() {
                    result = Err(e);
                }
            }
        }
        result
    }

    /// Tells every worker to drain and stop.
    pub fn stop_all(&mut self) {
        stop_all(&self.links);
    }
}

/// Tells every worker behind `links` to drain and stop (also used without an acceptor, from
/// the shutdown trigger).
pub fn stop_all(links: &[WorkerLink]) {
    for link in links {
        // A worker that already exited has nothing left to drain.
        let _ = link.commands.send(Command::Stop);
        let _ = link.wakeup.wake();
    }
}

#[cfg(test)]
mod tests {
    use mio::{Poll, Token, Waker};

    use super::*;

    fn links(n: usize, least: bool) -> (Vec<WorkerLink>, Vec<Poll>) {
        let mut polls = Vec::new();
        let links = (0..n)
            .map(|_| {
                let poll = Poll::new().unwrap();
                let waker = Waker::new(poll.registry(), Token(0)).unwrap();
                polls.push(poll);
                WorkerLink {
                    commands: crossbeam_channel::unbounded().0,
                    wakeup: Arc::new(Wakeup::new(waker)),
                    load: least.then(|| Arc::new(AtomicUsize::new(0))),
                }
            })
            .collect();
        (links, polls)
    }

    #[test]
    fn round_robin_takes_turns() {
        let (links, _polls) = links(3, false);
        let mut d = Dispatcher::new(links);
        let picks: Vec<usize> = (0..7).map(|_| d.pick()).collect();
        assert_eq!(picks, [0, 1, 2, 0, 1, 2, 0]);
    }

    #[test]
    fn least_connections_picks_the_emptiest_and_breaks_ties_in_turn() {
        let (links, _polls) = links(3, true);
        let loads: Vec<Arc<AtomicUsize>> = links.iter().map(|l| l.load.clone().unwrap()).collect();
        let mut d = Dispatcher::new(links);
        let pick = |d: &mut Dispatcher| {
            let i = d.pick();
            loads[i].fetch_add(1, Ordering::Relaxed);
            i
        };
        // All equal: round robin.
        let picks: Vec<usize> = (0..6).map(|_| pick(&mut d)).collect();
        assert_eq!(picks, [0, 1, 2, 0, 1, 2]);
        // Worker 1 loses two connections: it gets the next two.
        loads[1].fetch_sub(2, Ordering::Relaxed);
        assert_eq!(pick(&mut d), 1);
        assert_eq!(pick(&mut d), 1);
        assert_eq!(pick(&mut d), 2);
    }
}
