//! The shutdown trigger shared by every model.
//!
//! Protocol: whoever wants the server to stop (a signal handler, a test, an embedding
//! program) calls [`ShutdownHandle::shutdown`]. That sets a flag and runs every wake-up
//! callback the server registered (for the reactor: the acceptor's `mio::Waker`). The
//! acceptor then closes the listening socket at once, tells each worker to drain, and the
//! workers finish their open connections within `shutdown_timeout`. Calling it again is
//! harmless.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::wakers::Wakers;

/// A cloneable handle that asks a running server to shut down gracefully.
#[derive(Clone, Default)]
pub struct ShutdownHandle {
    inner: Arc<Inner>,
}

#[derive(Default)]
struct Inner {
    /// Set once, never cleared.
    requested: AtomicBool,
    /// Callbacks run once when shutdown is requested (kept after running, see [`Wakers`]).
    wakers: Wakers,
}

impl fmt::Debug for ShutdownHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ShutdownHandle")
            .field("requested", &self.is_requested())
            .finish()
    }
}

impl ShutdownHandle {
    /// A handle on which shutdown has not been requested.
    pub fn new() -> Self {
        Self::default()
    }

    /// Requests a graceful shutdown and wakes the server.
    pub fn shutdown(&self) {
        let requested = &self.inner.requested;
        self.inner
            .wakers
            .run_if(|| !requested.swap(true, Ordering::SeqCst));
    }

    /// Whether shutdown has been requested.
    pub fn is_requested(&self) -> bool {
        self.inner.requested.load(Ordering::SeqCst)
    }

    /// Runs `wake` when shutdown is requested (at once if it already was).
    pub(crate) fn on_shutdown(&self, wake: impl Fn() + Send + Sync + 'static) {
        let requested = &self.inner.requested;
        self.inner
            .wakers
            .register(wake, || requested.load(Ordering::SeqCst));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    #[test]
    fn callbacks_run_once_including_late_ones() {
        let h = ShutdownHandle::new();
        let count = Arc::new(AtomicUsize::new(0));
        let c = count.clone();
        h.on_shutdown(move || {
            c.fetch_add(1, Ordering::SeqCst);
        });
        h.shutdown();
        h.shutdown();
        let c = count.clone();
        h.on_shutdown(move || {
            c.fetch_add(1, Ordering::SeqCst);
        });
        assert_eq!(count.load(Ordering::SeqCst), 2);
        assert!(h.is_requested());
    }

    #[test]
    fn late_callbacks_are_kept_alive() {
        struct Owned(Arc<AtomicUsize>);
        impl Drop for Owned {
            fn drop(&mut self) {
                self.0.fetch_add(1, Ordering::SeqCst);
            }
        }
        let h = ShutdownHandle::new();
        h.shutdown();
        let dropped = Arc::new(AtomicUsize::new(0));
        let owned = Owned(dropped.clone());
        h.on_shutdown(move || {
            let _ = &owned;
        });
        assert_eq!(
            dropped.load(Ordering::SeqCst),
            0,
            "a waker must outlive its wake-up"
        );
        drop(h);
        assert_eq!(dropped.load(Ordering::SeqCst), 1);
    }
}
