//! `LiveSettings`: the settings a running server re-reads, so a reload (SIGHUP) changes them
//! without a restart and without touching open connections.
//!
//! Readers (the acceptor per accept, each worker per loop round) load atomics with `Relaxed`:
//! a new value becomes visible within a round, and no reader needs two fields to agree. After
//! storing, `LiveSettings::apply` runs the registered wake-ups, so a worker asleep in `poll`
//! with a timeout computed from the old `idle_timeout` recomputes it at once.

use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use crate::config::Config;
use crate::wakers::Wakers;

/// Settings shared by the acceptor and every worker, changeable at run time.
pub struct LiveSettings {
    /// Idle timeout in milliseconds; 0 disables it.
    idle_timeout_ms: AtomicU64,
    /// Most connections open at once.
    max_connections: AtomicUsize,
    /// How long a graceful drain may last, in milliseconds (read when the drain starts).
    shutdown_timeout_ms: AtomicU64,
    /// Set `TCP_NODELAY` on connections accepted from now on.
    nodelay: AtomicBool,
    /// TCP keepalive idle time in whole seconds for connections accepted from now on; 0: off.
    tcp_keepalive_secs: AtomicU64,
    /// `TCP_USER_TIMEOUT` in milliseconds for connections accepted from now on; 0: unset.
    tcp_user_timeout_ms: AtomicU64,
    /// Log each connection's open and close (connections accepted from now on).
    log_connections: AtomicBool,
    /// UDP datagrams per second echoed per source address; 0 is off.
    udp_rate_limit: AtomicU32,
    /// Run after every `apply`; kept for the settings' lifetime (they may own a waker).
    wakers: Wakers,
    /// Reloads that were applied.
    reloads_ok: AtomicU64,
    /// Reloads rejected (unreadable or invalid file); the running config was kept.
    reloads_failed: AtomicU64,
}

impl fmt::Debug for LiveSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LiveSettings")
            .field("idle_timeout", &self.idle_timeout())
            .field("max_connections", &self.max_connections())
            .field("shutdown_timeout", &self.shutdown_timeout())
            .field("nodelay", &self.nodelay())
            .field("tcp_keepalive", &self.tcp_keepalive())
            .field("tcp_user_timeout", &self.tcp_user_timeout())
            .field("log_connections", &self.log_connections())
            .field("udp_rate_limit", &self.udp_rate_limit())
            .finish()
    }
}

impl LiveSettings {
    /// The live part of `config`.
    pub fn new(config: &Config) -> Self {
        let live = LiveSettings {
            idle_timeout_ms: AtomicU64::new(0),
            max_connections: AtomicUsize::new(0),
            shutdown_timeout_ms: AtomicU64::new(0),
            nodelay: AtomicBool::new(false),
            tcp_keepalive_secs: AtomicU64::new(0),
            tcp_user_timeout_ms: AtomicU64::new(0),
            log_connections: AtomicBool::new(false),
            udp_rate_limit: AtomicU32::new(0),
            wakers: Wakers::default(),
            reloads_ok: AtomicU64::new(0),
            reloads_failed: AtomicU64::new(0),
        };
        live.store(config);
        live
    }

    fn store(&self, config: &Config) {
        // A configured timeout is at least 1 ms here, so it never reads back as "disabled".
        let idle = config.idle_timeout.map_or(0, |t| millis(t).max(1));
        self.idle_timeout_ms.store(idle, Ordering::Relaxed);
        self.max_connections
            .store(config.max_connections, Ordering::Relaxed);
        self.shutdown_timeout_ms
            .store(millis(config.shutdown_timeout), Ordering::Relaxed);
        self.nodelay.store(config.nodelay, Ordering::Relaxed);
        // Validated: whole seconds, at least 1; at least 1 ms.
        self.tcp_keepalive_secs.store(
            config.tcp_keepalive.map_or(0, |t| t.as_secs().max(1)),
            Ordering::Relaxed,
        );
        self.tcp_user_timeout_ms.store(
            config.tcp_user_timeout.map_or(0, |t| millis(t).max(1)),
            Ordering::Relaxed,
        );
        self.log_connections
            .store(config.log_connections, Ordering::Relaxed);
        self.udp_rate_limit
            .store(config.udp_rate_limit, Ordering::Relaxed);
    }

    /// Takes the live fields of `config` and wakes everyone registered with `on_change`.
    pub(crate) fn apply(&self, config: &Config) {
        self.store(config);
        self.wakers.run();
    }

    /// Runs `wake` after every future `apply`.
    pub(crate) fn on_change(&self, wake: impl Fn() + Send + Sync + 'static) {
        self.wakers.register(wake, || false);
    }

    /// Counts a reload attempt (for the metrics endpoint).
    pub(crate) fn record_reload(&self, applied: bool) {
        let counter = if applied {
            &self.reloads_ok
        } else {
            &self.reloads_failed
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// Reloads applied and rejected so far.
    pub(crate) fn reloads(&self) -> (u64, u64) {
        (
            self.reloads_ok.load(Ordering::Relaxed),
            self.reloads_failed.load(Ordering::Relaxed),
        )
    }

    /// Close connections idle this long; `None` disables.
    #[inline]
    pub(crate) fn idle_timeout(&self) -> Option<Duration> {
        match self.idle_timeout_ms.load(Ordering::Relaxed) {
            0 => None,
            ms => Some(Duration::from_millis(ms)),
        }
    }

    /// Most connections open at once.
    #[inline]
    pub(crate) fn max_connections(&self) -> usize {
        self.max_connections.load(Ordering::Relaxed)
    }

    /// How long a graceful drain may last.
    #[inline]
    pub(crate) fn shutdown_timeout(&self) -> Duration {
        Duration::from_millis(self.shutdown_timeout_ms.load(Ordering::Relaxed))
    }

    /// Whether to set `TCP_NODELAY` on new connections.
    #[inline]
    pub(crate) fn nodelay(&self) -> bool {
        self.nodelay.load(Ordering::Relaxed)
    }

    /// TCP keepalive idle time for new connections; `None`: keepalive off.
    #[inline]
    pub fn tcp_keepalive(&self) -> Option<Duration> {
        match self.tcp_keepalive_secs.load(Ordering::Relaxed) {
            0 => None,
            secs => Some(Duration::from_secs(secs)),
        }
    }

    /// `TCP_USER_TIMEOUT` for new connections; `None`: the kernel's default.
    #[inline]
    pub fn tcp_user_timeout(&self) -> Option<Duration> {
        match self.tcp_user_timeout_ms.load(Ordering::Relaxed) {
            0 => None,
            ms => Some(Duration::from_millis(ms)),
        }
    }

    /// Whether to log each new connection's open and close.
    #[inline]
    pub fn log_connections(&self) -> bool {
        self.log_connections.load(Ordering::Relaxed)
    }
    /// UDP datagrams per second echoed per source address; `None` when unlimited.
    #[inline]
    pub fn udp_rate_limit(&self) -> Option<u32> {
        match self.udp_rate_limit.load(Ordering::Relaxed) {
            0 => None,
            n => Some(n),
        }
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn apply_stores_and_wakes() {
        let mut config = Config::default();
        let live = LiveSettings::new(&config);
        assert_eq!(live.idle_timeout(), Some(Duration::from_secs(300)));
        let woken = Arc::new(AtomicUsize::new(0));
        let w = woken.clone();
        live.on_change(move || {
            w.fetch_add(1, Ordering::SeqCst);
        });
        config.idle_timeout = None;
        config.max_connections = 3;
        config.nodelay = false;
        live.apply(&config);
        assert_eq!(live.idle_timeout(), None);
        assert_eq!(live.max_connections(), 3);
        assert!(!live.nodelay());
        assert_eq!(woken.load(Ordering::SeqCst), 1);
        config.idle_timeout = Some(Duration::from_micros(10));
        live.apply(&config);
        assert_eq!(live.idle_timeout(), Some(Duration::from_millis(1)));
    }
}
