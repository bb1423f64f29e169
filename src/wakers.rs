//! `Wakers`: the one callback registry. Threads that sleep (in `poll`, on a condition) register
//! a wake-up here; whoever changes what they wait for (a shutdown request, a reload) runs them
//! all. Used by [`ShutdownHandle`](crate::ShutdownHandle) and
//! [`LiveSettings`](crate::live::LiveSettings).
//!
//! Callbacks are kept (never dropped) once registered, even after they ran: a callback may own
//! a `mio::Waker`, and closing a waker's eventfd before the poller has collected the wake-up
//! removes that pending event from the epoll set. They run outside the registry's lock, so a
//! callback may register another.

use std::fmt;
use std::sync::Arc;

use parking_lot::Mutex;

type WakeFn = Arc<dyn Fn() + Send + Sync>;

/// Registered wake-up callbacks.
#[derive(Default)]
pub(crate) struct Wakers {
    /// Every callback registered so far, in order.
    list: Mutex<Vec<WakeFn>>,
}

impl fmt::Debug for Wakers {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Wakers")
            .field("registered", &self.list.lock().len())
            .finish()
    }
}

impl Wakers {
    /// Registers `wake`; then, if `run_now()` (evaluated under the registry's lock, so it is
    /// ordered with [`Wakers::run_if`]) says so, runs it at once.
    pub(crate) fn register(
        &self,
        wake: impl Fn() + Send + Sync + 'static,
        run_now: impl FnOnce() -> bool,
    ) {
        let wake: WakeFn = Arc::new(wake);
        let now = {
            let mut list = self.list.lock();
            list.push(wake.clone());
            run_now()
        };
        if now {
            wake();
        }
    }

    /// Runs every registered callback if `go()`, evaluated under the registry's lock, says so.
    pub(crate) fn run_if(&self, go: impl FnOnce() -> bool) {
        let list = {
            let list = self.list.lock();
            if !go() {
                return;
            }
            list.clone()
        };
        for wake in list {
            wake();
        }
    }

    /// Runs every registered callback.
    pub(crate) fn run(&self) {
        self.run_if(|| true);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[test]
    fn runs_every_callback_each_time_and_keeps_them() {
        let wakers = Wakers::default();
        let count = Arc::new(AtomicUsize::new(0));
        for _ in 0..2 {
            let c = count.clone();
            wakers.register(
                move || {
                    c.fetch_add(1, Ordering::SeqCst);
                },
                || false,
            );
        }
        wakers.run();
        wakers.run_if(|| false);
        wakers.run();
        assert_eq!(count.load(Ordering::SeqCst), 4);
        let c = count.clone();
        wakers.register(
            move || {
                c.fetch_add(10, Ordering::SeqCst);
            },
            || true,
        );
        assert_eq!(count.load(Ordering::SeqCst), 14, "run at once when asked");
    }
}
