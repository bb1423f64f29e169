//! `UdpEcho`: one worker's UDP echo. Its socket sits in the worker's poller under a reserved
//! token; when it is readable the worker calls [`UdpEcho::ready`], which receives a batch
//! with `recvmmsg`, judges each datagram ([`judge`]), and sends the echoes back with
//! `sendmmsg`, for a bounded number of batches.
//!
//! Nothing is queued: a reply the kernel will not take now (a full send buffer) is dropped
//! and counted, as UDP allows, and the next batch overwrites the buffers.

use std::io;
use std::net::SocketAddr;
use std::os::fd::AsFd;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use mio::{Interest, Registry, Token};
use tracing::{debug, info, warn};

use super::MAX_DATAGRAM;
use super::loop_guard::is_loop_risk;
use super::source_limit::SourceLimiter;
use crate::live::LiveSettings;
use crate::ratelimit::RateLimit;
use crate::stats::{Stats, UdpDrop, UdpStats};
use crate::sys::mmsg::DatagramBatch;

/// Datagrams one `recvmmsg` takes (and one `sendmmsg` returns). Each slot is
/// [`MAX_DATAGRAM`] bytes of address space, touched only as far as datagrams reach.
pub(crate) const BATCH: usize = 32;

/// Batches handled per call of [`UdpEcho::ready`]; then TCP connections get their turn.
pub(crate) const BUDGET_BATCHES: usize = 8;

/// What happens to one received datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Send it back to its source.
    Echo,
    /// Drop it, counted under this reason.
    Drop(UdpDrop),
}

/// Decides one datagram's fate: a truncated one is dropped (a partial echo is a wrong echo),
/// then the loop-refusal rule applies, then the rate limit (`rate`, per second per source
/// address, if any), so only datagrams that would be echoed spend tokens. A source that is
/// not an inet address cannot be vetted by the rule, so it is refused with the loops.
pub(crate) fn judge(
    truncated: bool,
    source: Option<SocketAddr>,
    limiter: &mut SourceLimiter,
    rate: Option<u32>,
    now_ms: u64,
) -> Verdict {
    if truncated {
        return Verdict::Drop(UdpDrop::Truncated);
    }
    let Some(source) = source.filter(|s| !is_loop_risk(s.port())) else {
        return Verdict::Drop(UdpDrop::Loop);
    };
    match rate {
        Some(rate) if !limiter.allow(source.ip(), rate, now_ms) => {
            Verdict::Drop(UdpDrop::RateLimit)
        }
        _ => Verdict::Echo,
    }
}

/// One worker's UDP echo: its socket, batch buffers, rules and counters.
#[derive(Debug)]
pub(crate) struct UdpEcho {
    /// Index of the worker that owns it (logs, stats block).
    worker: usize,
    /// Non-blocking, bound in the `SO_REUSEPORT` group; closed when this is dropped.
    socket: mio::net::UdpSocket,
    /// Receive buffers and source addresses of the current batch.
    batch: DatagramBatch,
    /// Indices of the current batch's datagrams to echo.
    replies: Vec<usize>,
    /// Per-source buckets for `udp_rate_limit`.
    limiter: SourceLimiter,
    /// Clock origin of the limiter's milliseconds.
    epoch: Instant,
    /// One warning per second about refused loop datagrams.
    loop_log: RateLimit,
    /// One notice per second about rate-limited sources.
    limit_log: RateLimit,
    /// One message per second about receive or send errors.
    error_log: RateLimit,
    /// `udp_rate_limit`, re-read every call so a reload applies at once.
    live: Arc<LiveSettings>,
    /// Counters; this echo writes only block `worker`.
    stats: Arc<Stats>,
}

/// Counts for one batch, added to the shared counters once.
#[derive(Debug, Default)]
struct Tally {
    received: u64,
    echoed: u64,
    dropped: [u64; UdpDrop::ALL.len()],
    bytes_received: u64,
    bytes_echoed: u64,
    send_calls: u64,
}

impl Tally {
    fn drop(&mut self, reason: UdpDrop, n: u64) {
        self.dropped[reason as usize] += n;
    }

    fn add_to(&self, s: &UdpStats) {
        let add = |c: &std::sync::atomic::AtomicU64, n: u64| {
            if n != 0 {
                c.fetch_add(n, Ordering::Relaxed);
            }
        };
        add(&s.recv_calls, 1);
        add(&s.received, self.received);
        add(&s.echoed, self.echoed);
        add(&s.bytes_received, self.bytes_received);
        add(&s.bytes_echoed, self.bytes_echoed);
        add(&s.send_calls, self.send_calls);
        for reason in UdpDrop::ALL {
            s.dropped(reason, self.dropped[reason as usize]);
        }
    }
}

impl UdpEcho {
    /// Worker `worker`'s echo on `socket` (from [`super::bind`]).
    pub(crate) fn new(
        socket: std::net::UdpSocket,
        worker: usize,
        live: Arc<LiveSettings>,
        stats: Arc<Stats>,
    ) -> Self {
        let second = Duration::from_secs(1);
        UdpEcho {
            worker,
            socket: mio::net::UdpSocket::from_std(socket),
            batch: DatagramBatch::new(BATCH, MAX_DATAGRAM),
            replies: Vec::with_capacity(BATCH),
            limiter: SourceLimiter::new(),
            epoch: Instant::now(),
            loop_log: RateLimit::new(second),
            limit_log: RateLimit::new(second),
            error_log: RateLimit::new(second),
            live,
            stats,
        }
    }

    /// Registers the socket for readability (replies never wait for writability: a reply
    /// the kernel does not take at once is dropped).
    pub(crate) fn register(&mut self, registry: &Registry, token: Token) -> io::Result<()> {
        registry.register(&mut self.socket, token, Interest::READABLE)
    }

    /// Echoes what is queued, up to [`BUDGET_BATCHES`] batches. Returns whether more may be
    /// queued (the budget ran out): the caller must call again without waiting for an event,
    /// since the poller is edge-triggered.
    pub(crate) fn ready(&mut self) -> bool {
        let rate = self.live.udp_rate_limit();
        if rate.is_none() {
            self.limiter.clear();
        }
        let now = Instant::now();
        let now_ms = now.duration_since(self.epoch).as_millis() as u64;
        for _ in 0..BUDGET_BATCHES {
            let n = match self.batch.recv(self.socket.as_fd()) {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return false,
                Err(e) => {
                    // Nothing queued is lost by stopping here: a datagram arriving later
                    // brings a new event. (Unconnected UDP sockets get no ICMP errors.)
                    if let Some(suppressed) = self.error_log.check(now) {
                        warn!(worker = self.worker, error = %e, suppressed, "UDP receive failed");
                    }
                    return false;
                }
            };
            let mut tally = Tally::default();
            self.echo_batch(n, rate, now, now_ms, &mut tally);
            tally.add_to(&self.stats.worker(self.worker).udp);
            // A short batch emptied the queue: a datagram arriving from now on brings a new
            // event, so no call is spent on learning `WouldBlock`.
            if n < self.batch.capacity() {
                return false;
            }
        }
        true
    }

    fn echo_batch(
        &mut self,
        n: usize,
        rate: Option<u32>,
        now: Instant,
        now_ms: u64,
        t: &mut Tally,
    ) {
        t.received = n as u64;
        self.replies.clear();
        for i in 0..n {
            let source = self.batch.source(i);
            let truncated = self.batch.is_truncated(i);
            if !truncated {
                t.bytes_received += self.batch.payload(i).len() as u64;
            }
            match judge(truncated, source, &mut self.limiter, rate, now_ms) {
                Verdict::Echo => self.replies.push(i),
                Verdict::Drop(reason) => {
                    t.drop(reason, 1);
                    self.log_drop(reason, source, now);
                }
            }
        }
        let mut start = 0;
        while start < self.replies.len() {
            let rest = &self.replies[start..];
            t.send_calls += 1;
            match self.batch.send_back(self.socket.as_fd(), rest) {
                Ok(sent) if sent > 0 => {
                    t.echoed += sent as u64;
                    t.bytes_echoed += rest[..sent]
                        .iter()
                        .map(|&i| self.batch.payload(i).len() as u64)
                        .sum::<u64>();
                    start += sent;
                }
                Ok(_) => {
                    // Nothing sent and no error: do not spin on it.
                    t.drop(UdpDrop::SendFailed, rest.len() as u64);
                    break;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    // The send buffer is full: the rest would fail too. Drop, never wait.
                    t.drop(UdpDrop::SendFailed, rest.len() as u64);
                    if let Some(suppressed) = self.error_log.check(now) {
                        debug!(
                            worker = self.worker,
                            dropped = rest.len(),
                            suppressed,
                            "UDP send buffer full; replies dropped"
                        );
                    }
                    break;
                }
                Err(e) => {
                    // This reply failed (a firewall's EPERM, an unroutable source…); the
                    // others may well go.
                    t.drop(UdpDrop::SendFailed, 1);
                    start += 1;
                    if let Some(suppressed) = self.error_log.check(now) {
                        debug!(worker = self.worker, error = %e, suppressed, "UDP reply failed");
                    }
                }
            }
        }
    }

    fn log_drop(&mut self, reason: UdpDrop, source: Option<SocketAddr>, now: Instant) {
        // Formatted only if a line is written: drops may come by the million.
        let source = SourceText(source);
        match reason {
            UdpDrop::Loop => {
                if let Some(suppressed) = self.loop_log.check(now) {
                    warn!(
                        worker = self.worker,
                        %source,
                        suppressed,
                        "UDP datagram from a privileged source port (0-1023) dropped: echoing it could loop with another service"
                    );
                }
            }
            UdpDrop::RateLimit => {
                if let Some(suppressed) = self.limit_log.check(now) {
                    info!(worker = self.worker, %source, suppressed, "UDP source over udp_rate_limit; datagram dropped");
                }
            }
            UdpDrop::Truncated => {
                if let Some(suppressed) = self.error_log.check(now) {
                    debug!(worker = self.worker, %source, suppressed, "UDP datagram larger than {MAX_DATAGRAM} bytes dropped");
                }
            }
            UdpDrop::SendFailed => {}
        }
    }
}

/// A datagram's source for a log line ("?" if it had no inet address).
struct SourceText(Option<SocketAddr>);

impl std::fmt::Display for SourceText {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            Some(addr) => addr.fmt(f),
            None => f.write_str("?"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn from(port: u16) -> Option<SocketAddr> {
        Some(SocketAddr::from(([127, 0, 0, 1], port)))
    }

    #[test]
    fn judge_applies_truncation_then_the_loop_rule_then_the_rate() {
        let mut l = SourceLimiter::new();
        assert_eq!(judge(false, from(40000), &mut l, None, 0), Verdict::Echo);
        assert_eq!(
            judge(true, from(40000), &mut l, None, 0),
            Verdict::Drop(UdpDrop::Truncated)
        );
        for port in [0, 7, 19, 1023] {
            assert_eq!(
                judge(false, from(port), &mut l, None, 0),
                Verdict::Drop(UdpDrop::Loop)
            );
        }
        assert_eq!(
            judge(false, None, &mut l, None, 0),
            Verdict::Drop(UdpDrop::Loop)
        );
        // Refused datagrams spend no tokens: the one allowed per second is still there.
        assert_eq!(
            judge(false, from(80), &mut l, Some(1), 0),
            Verdict::Drop(UdpDrop::Loop)
        );
        assert_eq!(judge(false, from(40000), &mut l, Some(1), 0), Verdict::Echo);
        assert_eq!(
            judge(false, from(40001), &mut l, Some(1), 0),
            Verdict::Drop(UdpDrop::RateLimit),
            "the limit is per address, whatever the port"
        );
    }
}
