//! `Wakeup`: how a worker is told that its command queue has something, without writing its
//! waker (an eventfd write, and a context switch for the worker) when it is awake anyway.
//!
//! The protocol, on one atomic `state` (so its correctness does not depend on how the queue
//! itself is synchronised):
//!
//! - Sender ([`Wakeup::notify`], after pushing): `swap(NOTIFIED)`; write the waker only if the
//!   previous state was `SLEEPING`.
//! - Worker, before `poll` ([`Wakeup::may_sleep`]): `compare_exchange(AWAKE -> SLEEPING)`. If
//!   it fails, the state is `NOTIFIED`: something was pushed since the worker last looked, so
//!   it resets the state to `AWAKE` and polls without blocking.
//! - Worker, after `poll` ([`Wakeup::woke`]): `swap(AWAKE)`, then it takes every queued command.
//!
//! Why no wake-up is lost: take a push `P` followed by its `swap` `X`, and suppose the worker
//! then blocks for good after a successful `compare_exchange` `K`. Every write to `state` is in
//! one modification order.
//! - If `X` comes after `K`: while the worker is blocked it writes nothing, so the writes
//!   between `K` and `X` are senders' swaps; the first of them reads `SLEEPING` and writes
//!   the waker. The worker does not stay blocked.
//! - If `X` comes before `K`: `K` read `AWAKE`, so a worker write of `AWAKE` lies between
//!   them: `woke`'s swap, or the reset after a failed `compare_exchange`. Both are preceded by
//!   an acquire read of `X`'s `NOTIFIED` (or of a later sender swap, which continues `X`'s
//!   release sequence), so `P` happens before the worker's next look at the queue, which
//!   comes before `K`. The worker takes `P` before it blocks.
//!
//! memcached reports a large gain from skipping such notifications; here it saves the eventfd
//! write and the worker's extra trip through `epoll_wait` whenever the acceptor hands over a
//! connection while the worker is busy.

use std::io;
use std::sync::atomic::{AtomicU8, Ordering};

use mio::Waker;

/// The worker is running its loop and will look at its queue before it next blocks.
const AWAKE: u8 = 0;
/// The worker is in (or about to enter) a blocking `poll`.
const SLEEPING: u8 = 1;
/// Something was queued since the worker last looked.
const NOTIFIED: u8 = 2;

/// A worker's waker plus its sleep state, shared by the worker and whoever feeds its queue.
#[derive(Debug)]
pub struct Wakeup {
    /// Writes the eventfd registered with the worker's poller.
    waker: Waker,
    /// `AWAKE`, `SLEEPING` or `NOTIFIED`; see the module documentation.
    state: AtomicU8,
}

impl Wakeup {
    /// Wraps the waker registered with the worker's poller.
    pub fn new(waker: Waker) -> Wakeup {
        Wakeup {
            waker,
            state: AtomicU8::new(AWAKE),
        }
    }

    /// Sender side, after pushing onto the worker's queue: wakes the worker only if it is
    /// asleep. Returns whether the waker was written.
    pub fn notify(&self) -> io::Result<bool> {
        if self.state.swap(NOTIFIED, Ordering::AcqRel) == SLEEPING {
            self.waker.wake()?;
            return Ok(true);
        }
        Ok(false)
    }

    /// Wakes the worker whatever its state (shutdown, a reload that changes its timeouts).
    pub fn wake(&self) -> io::Result<()> {
        self.waker.wake()
    }

    /// Worker side, just before `poll`: whether it may block. `false` means something was
    /// queued since it last looked: poll without blocking, then look.
    pub fn may_sleep(&self) -> bool {
        match self
            .state
            .compare_exchange(AWAKE, SLEEPING, Ordering::AcqRel, Ordering::Acquire)
        {
            Ok(_) => true,
            Err(_) => {
                self.state.store(AWAKE, Ordering::Relaxed);
                false
            }
        }
    }

    /// Worker side, right after `poll` returns: it is awake and will look at its queue.
    pub fn woke(&self) {
        self.state.swap(AWAKE, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::mpsc;
    use std::thread;
    use std::time::Duration;

    use mio::{Events, Poll, Token};

    use super::*;

    /// The race the protocol exists for, step by step: the worker has looked at its queue
    /// (empty) and is about to block when a sender pushes. The sender skips the eventfd
    /// write (the worker is awake), so the worker must not block; once it has looked again,
    /// it may, and then a push writes the eventfd.
    #[test]
    fn a_push_between_looking_and_sleeping_keeps_the_worker_up() {
        let poll = Poll::new().unwrap();
        let wakeup = Wakeup::new(Waker::new(poll.registry(), Token(0)).unwrap());
        wakeup.woke();
        assert!(!wakeup.notify().unwrap(), "an awake worker is not woken");
        assert!(
            !wakeup.may_sleep(),
            "a push it has not seen keeps it from blocking"
        );
        wakeup.woke();
        assert!(wakeup.may_sleep(), "nothing new: it may block");
        assert!(wakeup.notify().unwrap(), "a sleeping worker is woken");
        assert!(!wakeup.notify().unwrap(), "once");
    }

    /// Hand-offs from two senders to one consumer that blocks in `poll` with no timeout,
    /// exactly as a worker does. Each sender sends short bursts with varying spins between
    /// items, so hand-offs land at every point of the consumer's loop, and waits for every
    /// item of a burst to be taken before the next; if one wake-up were lost, the consumer
    /// would sleep with that item queued, the sender would get no answer, and the deadline
    /// would expire.
    #[test]
    fn no_hand_off_is_lost() {
        const PER_SENDER: u64 = 20_000;
        const SENDERS: usize = 2;
        let mut poll = Poll::new().unwrap();
        let wakeup = Arc::new(Wakeup::new(Waker::new(poll.registry(), Token(0)).unwrap()));
        let (tx, rx) = crossbeam_channel::unbounded::<mpsc::Sender<()>>();
        let consumer_wakeup = wakeup.clone();
        thread::spawn(move || {
            let mut events = Events::with_capacity(8);
            loop {
                let timeout = if consumer_wakeup.may_sleep() {
                    None
                } else {
                    Some(Duration::ZERO)
                };
                poll.poll(&mut events, timeout).unwrap();
                consumer_wakeup.woke();
                loop {
                    match rx.try_recv() {
                        Ok(ack) => {
                            let _ = ack.send(());
                        }
                        Err(crossbeam_channel::TryRecvError::Empty) => break,
                        Err(crossbeam_channel::TryRecvError::Disconnected) => return,
                    }
                }
            }
        });
        let senders: Vec<_> = (0..SENDERS as u64)
            .map(|seed| {
                let tx = tx.clone();
                let wakeup = wakeup.clone();
                thread::spawn(move || {
                    let (ack_tx, ack) = mpsc::channel();
                    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
                    let mut sent = 0;
                    while sent < PER_SENDER {
                        let burst = 1 + (x % 3);
                        for _ in 0..burst {
                            x ^= x << 13;
                            x ^= x >> 7;
                            x ^= x << 17;
                            for _ in 0..(x % 4000) {
                                std::hint::spin_loop();
                            }
                            tx.send(ack_tx.clone()).unwrap();
                            wakeup.notify().unwrap();
                        }
                        for _ in 0..burst {
                            if ack.recv_timeout(Duration::from_secs(20)).is_err() {
                                return Err(sent);
                            }
                        }
                        sent += burst;
                    }
                    Ok(())
                })
            })
            .collect();
        drop(tx);
        for s in senders {
            if let Err(i) = s.join().unwrap() {
                panic!("hand-off {i} was lost: the consumer slept with it queued");
            }
        }
    }
}
