//! `Stats`: the server's counters, written lock-free on the hot path and summed on demand.
//!
//! Each worker owns one `WorkerStats` and the acceptor one `AcceptorStats`, each on its own
//! cache line, so a worker's `Relaxed` increments never contend with another thread's. Only
//! the owner writes a block; a scrape reads every block and sums them (`Stats::snapshot`).
//! Counters from different blocks are read at slightly different instants, which is the usual
//! Prometheus contract: each counter is monotonic, a scrape is not a transaction.

use std::sync::atomic::{AtomicU64, Ordering};

use crossbeam_utils::CachePadded;

use crate::close::CloseReason;

/// Why a UDP datagram got no echo, as counted in `reactor_pool_udp_datagrams_dropped_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum UdpDrop {
    /// From source port 0 or below 1024: echoing it could start a loop with another service.
    Loop,
    /// Larger than the receive slot (`MSG_TRUNC`); a partial echo would be a wrong echo.
    Truncated,
    /// Its source address was over `udp_rate_limit`.
    RateLimit,
    /// The reply could not be sent (full send buffer, or another send error).
    SendFailed,
}

impl UdpDrop {
    /// Every reason, in the order the metrics list them.
    pub(crate) const ALL: [UdpDrop; 4] = [
        UdpDrop::Loop,
        UdpDrop::Truncated,
        UdpDrop::RateLimit,
        UdpDrop::SendFailed,
    ];

    /// The `reason` label value.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            UdpDrop::Loop => "loop",
            UdpDrop::Truncated => "truncated",
            UdpDrop::RateLimit => "rate_limit",
            UdpDrop::SendFailed => "send_failed",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// One worker's UDP echo counters (all zero unless `udp` is on).
#[derive(Debug, Default)]
pub(crate) struct UdpStats {
    /// Datagrams received.
    pub(crate) received: AtomicU64,
    /// Datagrams echoed.
    pub(crate) echoed: AtomicU64,
    /// Datagrams not echoed, indexed by [`UdpDrop`].
    dropped: [AtomicU64; UdpDrop::ALL.len()],
    /// Payload bytes received (of datagrams received whole).
    pub(crate) bytes_received: AtomicU64,
    /// Payload bytes echoed.
    pub(crate) bytes_echoed: AtomicU64,
    /// `recvmmsg` calls that returned datagrams.
    pub(crate) recv_calls: AtomicU64,
    /// `sendmmsg` calls.
    pub(crate) send_calls: AtomicU64,
}

impl UdpStats {
    /// Counts `n` datagrams dropped for `reason`.
    #[inline]
    pub(crate) fn dropped(&self, reason: UdpDrop, n: u64) {
        if n != 0 {
            self.dropped[reason.index()].fetch_add(n, Ordering::Relaxed);
        }
    }
}

/// Counters written only by one worker thread.
#[derive(Debug, Default)]
pub(crate) struct WorkerStats {
    /// Connections handed to this worker.
    pub(crate) connections: AtomicU64,
    /// Connections this worker has open now.
    pub(crate) active: AtomicU64,
    /// Connections this worker closed, indexed by [`CloseReason`] (`Limit` stays 0 here).
    closed: [AtomicU64; CloseReason::ALL.len()],
    /// Bytes read from peers.
    pub(crate) bytes_read: AtomicU64,
    /// Bytes written back to peers.
    pub(crate) bytes_written: AtomicU64,
    /// Times a connection's unsent bytes reached `buffer_size` and reading from it paused.
    pub(crate) backpressure_pauses: AtomicU64,
    /// This worker's UDP echo.
    pub(crate) udp: UdpStats,
}

impl WorkerStats {
    /// Counts a new connection (handed over and now open).
    #[inline]
    pub(crate) fn opened(&self) {
        self.connections.fetch_add(1, Ordering::Relaxed);
        self.active.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts the close of an open connection.
    #[inline]
    pub(crate) fn closed(&self, reason: CloseReason) {
        // `active` first, and the close published with Release: a snapshot that sees the
        // close (Acquire) also sees the connection gone from `active`, so a scrape never
        // shows a closed connection as still open.
        self.active.fetch_sub(1, Ordering::Relaxed);
        self.closed[reason.index()].fetch_add(1, Ordering::Release);
    }

    /// Counts bytes moved by one drive of a connection.
    #[inline]
    pub(crate) fn moved(&self, read: u64, written: u64) {
        if read != 0 {
            self.bytes_read.fetch_add(read, Ordering::Relaxed);
        }
        if written != 0 {
            self.bytes_written.fetch_add(written, Ordering::Relaxed);
        }
    }
}

/// Counters written only by the acceptor thread.
#[derive(Debug, Default)]
pub(crate) struct AcceptorStats {
    /// Connections returned by `accept(2)`, including those then closed for the limit.
    pub(crate) accepted: AtomicU64,
    /// Connections closed at once because `max_connections` were open.
    pub(crate) rejected_limit: AtomicU64,
    /// `accept(2)` failures other than `WouldBlock`, `Interrupted` and `ConnectionAborted`.
    pub(crate) accept_errors: AtomicU64,
}

/// Every counter of one server.
#[derive(Debug)]
pub struct Stats {
    /// The acceptor's block.
    acceptor: CachePadded<AcceptorStats>,
    /// One block per worker, by worker index.
    workers: Box<[CachePadded<WorkerStats>]>,
}

/// The counters summed at one moment, plus the per-worker gauges.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Snapshot {
    /// Connections accepted by the listener.
    pub(crate) accepted: u64,
    /// Connections open now, summed over workers.
    pub(crate) active: u64,
    /// Connections closed, by reason, in [`CloseReason::ALL`] order.
    pub(crate) closed: [u64; CloseReason::ALL.len()],
    /// Bytes read from peers.
    pub(crate) bytes_read: u64,
    /// Bytes written to peers.
    pub(crate) bytes_written: u64,
    /// `accept(2)` failures.
    pub(crate) accept_errors: u64,
    /// Times reading paused because a connection's buffer was full.
    pub(crate) backpressure_pauses: u64,
    /// Per worker: (connections handed over, connections open now).
    pub(crate) workers: Vec<(u64, u64)>,
    /// UDP echo, summed over workers.
    pub(crate) udp: UdpSnapshot,
}

/// The UDP counters summed over workers.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct UdpSnapshot {
    /// Datagrams received.
    pub(crate) received: u64,
    /// Datagrams echoed.
    pub(crate) echoed: u64,
    /// Datagrams dropped, by reason, in [`UdpDrop::ALL`] order.
    pub(crate) dropped: [u64; UdpDrop::ALL.len()],
    /// Payload bytes received.
    pub(crate) bytes_received: u64,
    /// Payload bytes echoed.
    pub(crate) bytes_echoed: u64,
    /// `recvmmsg` calls that returned datagrams.
    pub(crate) recv_calls: u64,
    /// `sendmmsg` calls.
    pub(crate) send_calls: u64,
}

impl UdpSnapshot {
    /// Datagrams dropped for `reason`.
    pub(crate) fn dropped(&self, reason: UdpDrop) -> u64 {
        self.dropped[reason.index()]
    }
}

impl Snapshot {
    /// Connections closed for `reason`.
    pub(crate) fn closed(&self, reason: CloseReason) -> u64 {
        self.closed[reason.index()]
    }
}

impl Stats {
    /// Zeroed counters for `workers` workers.
    pub fn new(workers: usize) -> Self {
        Stats {
            acceptor: CachePadded::new(AcceptorStats::default()),
            workers: (0..workers)
                .map(|_| CachePadded::new(WorkerStats::default()))
                .collect(),
        }
    }

    /// The acceptor's counters.
    pub(crate) fn acceptor(&self) -> &AcceptorStats {
        &self.acceptor
    }

    /// Worker `id`'s counters. Panics if `id` is not below the worker count given to `new`
    /// (a programming error: workers are created from the same count).
    pub(crate) fn worker(&self, id: usize) -> &WorkerStats {
        &self.workers[id]
    }

    /// Sums every block.
    pub(crate) fn snapshot(&self) -> Snapshot {
        let load = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let mut s = Snapshot {
            accepted: load(&self.acceptor.accepted),
            accept_errors: load(&self.acceptor.accept_errors),
            ..Snapshot::default()
        };
        s.closed[CloseReason::Limit.index()] = load(&self.acceptor.rejected_limit);
        for w in self.workers.iter() {
            // Closes before `active` (see `WorkerStats::closed`).
            for (sum, c) in s.closed.iter_mut().zip(w.closed.iter()) {
                *sum += c.load(Ordering::Acquire);
            }
            let active = load(&w.active);
            s.active += active;
            s.workers.push((load(&w.connections), active));
            s.bytes_read += load(&w.bytes_read);
            s.bytes_written += load(&w.bytes_written);
            s.backpressure_pauses += load(&w.backpressure_pauses);
            let (u, su) = (&w.udp, &mut s.udp);
            su.received += load(&u.received);
            su.echoed += load(&u.echoed);
            for (sum, c) in su.dropped.iter_mut().zip(u.dropped.iter()) {
                *sum += load(c);
            }
            su.bytes_received += load(&u.bytes_received);
            su.bytes_echoed += load(&u.bytes_echoed);
            su.recv_calls += load(&u.recv_calls);
            su.send_calls += load(&u.send_calls);
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snapshot_sums_the_blocks() {
        let stats = Stats::new(2);
        stats.acceptor().accepted.fetch_add(4, Ordering::Relaxed);
        stats
            .acceptor()
            .rejected_limit
            .fetch_add(1, Ordering::Relaxed);
        stats.worker(0).opened();
        stats.worker(0).opened();
        stats.worker(1).opened();
        stats.worker(0).closed(CloseReason::Eof);
        stats.worker(1).closed(CloseReason::IdleTimeout);
        stats.worker(0).moved(10, 7);
        stats.worker(1).moved(5, 5);
        let s = stats.snapshot();
        assert_eq!(s.accepted, 4);
        assert_eq!(s.active, 1);
        assert_eq!(s.closed(CloseReason::Eof), 1);
        assert_eq!(s.closed(CloseReason::IdleTimeout), 1);
        assert_eq!(s.closed(CloseReason::Limit), 1);
        assert_eq!((s.bytes_read, s.bytes_written), (15, 12));
        assert_eq!(s.workers, vec![(2, 1), (1, 0)]);
        stats.worker(0).udp.dropped(UdpDrop::Loop, 2);
        stats.worker(1).udp.dropped(UdpDrop::Loop, 1);
        stats.worker(1).udp.echoed.fetch_add(3, Ordering::Relaxed);
        let s = stats.snapshot();
        assert_eq!(s.udp.dropped(UdpDrop::Loop), 3);
        assert_eq!(s.udp.dropped(UdpDrop::SendFailed), 0);
        assert_eq!(s.udp.echoed, 3);
    }

    #[test]
    fn blocks_do_not_share_cache_lines() {
        assert!(std::mem::align_of::<CachePadded<WorkerStats>>() >= 64);
    }
}
