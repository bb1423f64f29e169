//! The `udp` scenario: request/response datagrams over several connected UDP sockets, each
//! keeping `depth` datagrams in flight, every byte of every echo verified.
//!
//! Datagram `seq` of socket `id` is a 16-byte header (`id`, `size`, `seq`, little-endian)
//! followed by the socket's [`Pattern`] stream at offset `seq × size`, so an echo from
//! another socket, of another datagram, cut short or altered, is caught. UDP may lose,
//! duplicate and reorder datagrams: those are counted ([`UdpFigures`]), not errors. A
//! datagram unanswered after [`LOSS_AFTER`] (or `--timeout`, if shorter) is lost and its
//! slot reused; an echo of it arriving later is counted as late. Errors are a wrong echo
//! (mismatch) and a refused port (connect: nothing serves UDP there).

use std::collections::VecDeque;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use mio::net::UdpSocket;
use mio::{Events, Interest, Poll, Token};

use super::Observer;
use super::tally::ThreadStats;
use crate::pattern::Pattern;
use crate::report::{ErrorCounts, ErrorKind, Latency, RunReport, UdpFigures};
use crate::spec::{LoadSpec, UDP_HEADER as HEADER, UDP_MAX_DATAGRAM as MAX_DATAGRAM};

/// A datagram unanswered this long is counted lost (unless `--timeout` is shorter).
const LOSS_AFTER: Duration = Duration::from_secs(1);
/// Recently lost sequence numbers remembered per socket, to tell a late echo from a bogus one.
const LOST_MEMORY: usize = 1024;
/// Longest a poll sleeps, so losses are noticed without an event.
const TICK: Duration = Duration::from_millis(20);

/// Builds datagram `seq` of socket `id` into `buf` (cleared first).
fn encode(pattern: &Pattern, id: u32, seq: u64, size: usize, buf: &mut Vec<u8>) {
    buf.clear();
    buf.extend_from_slice(&id.to_le_bytes());
    buf.extend_from_slice(&(size as u32).to_le_bytes());
    buf.extend_from_slice(&seq.to_le_bytes());
    let body = size - HEADER;
    buf.extend_from_slice(pattern.slice(Pattern::seed(u64::from(id)), seq * size as u64, body));
}

/// The sequence number of a correct echo of one of socket `id`'s datagrams of `size` bytes;
/// `None` if `got` is not exactly such a datagram.
fn decode(pattern: &Pattern, id: u32, size: usize, got: &[u8]) -> Option<u64> {
    if got.len() != size || got[..4] != id.to_le_bytes() || got[4..8] != (size as u32).to_le_bytes()
    {
        return None;
    }
    let seq = u64::from_le_bytes(got[8..16].try_into().ok()?);
    let want = pattern.slice(
        Pattern::seed(u64::from(id)),
        seq.checked_mul(size as u64)?,
        size - HEADER,
    );
    (got[HEADER..] == *want).then_some(seq)
}

/// One socket's state.
#[derive(Debug)]
struct Sock {
    socket: UdpSocket,
    id: u32,
    /// Next sequence number to send.
    next_seq: u64,
    /// (seq, sent at) of datagrams awaiting their echo, in sending order.
    in_flight: VecDeque<(u64, Instant)>,
    /// Highest sequence number echoed so far.
    highest: Option<u64>,
    /// Recently lost sequence numbers, oldest first.
    lost: VecDeque<u64>,
    /// The last send would have blocked: wait for a writable event.
    write_blocked: bool,
}

/// One thread's tallies: the common ones, and what UDP did.
#[derive(Debug)]
struct Tally {
    stats: ThreadStats,
    udp: UdpFigures,
}

/// Runs the `udp` scenario described by `spec` and reports.
pub(super) fn run(spec: &LoadSpec, observer: &mut dyn Observer) -> io::Result<RunReport> {
    let threads = spec.threads.clamp(1, spec.connections.max(1));
    let pattern = Arc::new(Pattern::new());
    let completed = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let from = start + spec.warmup;
    let until = from + spec.duration;
    let mut handles = Vec::with_capacity(threads);
    for t in 0..threads {
        let ids: Vec<u32> = (0..spec.connections as u32)
            .filter(|i| *i as usize % threads == t)
            .collect();
        let spec = spec.clone();
        let pattern = pattern.clone();
        let completed = completed.clone();
        handles.push(
            thread::Builder::new()
                .name(format!("loadgen-udp-{t}"))
                .spawn(move || drive(&spec, &pattern, &ids, from, until, &completed))?,
        );
    }
    let tick = |observer: &mut dyn Observer, deadline: Instant| loop {
        let now = Instant::now();
        if now >= deadline {
            return;
        }
        thread::sleep((deadline - now).min(Duration::from_millis(200)));
        observer.tick(start.elapsed(), completed.load(Ordering::Relaxed));
    };
    tick(observer, from);
    observer.window_start();
    tick(observer, until);
    observer.window_end();

    let mut total = ThreadStats::new();
    let mut udp = UdpFigures::default();
    for handle in handles {
        let t = handle
            .join()
            .map_err(|_| io::Error::other("a load-generator thread panicked"))??;
        total.merge(&t.stats);
        udp.merge(&t.udp);
    }
    let secs = spec.duration.as_secs_f64();
    let mut report = RunReport::empty(spec);
    report.threads = threads;
    report.depth = spec.depth;
    report.warmup_secs = spec.warmup.as_secs_f64();
    report.duration_secs = secs;
    report.messages = total.messages;
    report.bytes = total.bytes;
    report.msgs_per_sec = total.messages as f64 / secs;
    report.bytes_per_sec = total.bytes as f64 / secs;
    report.latency = Latency::from_histogram(&total.hist);
    report.connections_opened = total.opened;
    report.errors = total.errors;
    report.udp = Some(udp);
    Ok(report)
}

fn open(target: SocketAddr) -> io::Result<UdpSocket> {
    let local: SocketAddr = if target.is_ipv6() {
        (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
    } else {
        (std::net::Ipv4Addr::UNSPECIFIED, 0).into()
    };
    let socket = UdpSocket::bind(local)?;
    socket.connect(target)?;
    Ok(socket)
}

/// One thread: its sockets, until the window is over and every datagram is answered or lost.
fn drive(
    spec: &LoadSpec,
    pattern: &Pattern,
    ids: &[u32],
    from: Instant,
    until: Instant,
    completed: &AtomicU64,
) -> io::Result<Tally> {
    let mut poll = Poll::new()?;
    let mut events = Events::with_capacity(256);
    let mut t = Tally {
        stats: ThreadStats::new(),
        udp: UdpFigures::default(),
    };
    let loss_after = LOSS_AFTER.min(spec.timeout);
    let depth = spec.depth.max(1);
    let mut socks = Vec::with_capacity(ids.len());
    for &id in ids {
        let mut socket = match open(spec.target) {
            Ok(s) => s,
            Err(e) => {
                t.stats.errors.count(ErrorKind::Connect, || e.to_string());
                continue;
            }
        };
        poll.registry().register(
            &mut socket,
            Token(socks.len()),
            Interest::READABLE | Interest::WRITABLE,
        )?;
        t.stats.opened += 1;
        socks.push(Sock {
            socket,
            id,
            next_seq: 0,
            in_flight: VecDeque::with_capacity(depth),
            highest: None,
            lost: VecDeque::new(),
            write_blocked: false,
        });
    }
    let mut out = Vec::with_capacity(spec.size);
    let mut buf = vec![0u8; MAX_DATAGRAM + 1];
    let mut unpublished = 0u64;
    loop {
        let now = Instant::now();
        let sending = now < until;
        for s in &mut socks {
            // Losses first, so their slots are reused at once.
            while let Some(&(seq, at)) = s.in_flight.front() {
                if now.duration_since(at) < loss_after {
                    break;
                }
                s.in_flight.pop_front();
                t.udp.lost += 1;
                if s.lost.len() == LOST_MEMORY {
                    s.lost.pop_front();
                }
                s.lost.push_back(seq);
            }
            while sending && !s.write_blocked && s.in_flight.len() < depth {
                encode(pattern, s.id, s.next_seq, spec.size, &mut out);
                match s.socket.send(&out) {
                    Ok(_) => {
                        s.in_flight.push_back((s.next_seq, Instant::now()));
                        s.next_seq += 1;
                        t.udp.sent += 1;
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                        t.udp.send_blocked += 1;
                        s.write_blocked = true;
                    }
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => {
                        count_io_error(&mut t.stats.errors, &e);
                        break;
                    }
                }
            }
        }
        if !sending && socks.iter().all(|s| s.in_flight.is_empty()) {
            break;
        }
        if let Err(e) = poll.poll(&mut events, Some(TICK)) {
            if e.kind() != io::ErrorKind::Interrupted {
                return Err(e);
            }
        }
        for event in events.iter() {
            let Some(s) = socks.get_mut(event.token().0) else {
                continue;
            };
            if event.is_writable() {
                s.write_blocked = false;
            }
            // Edge-triggered: read until WouldBlock.
            loop {
                let n = match s.socket.recv(&mut buf) {
                    Ok(n) => n,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => {
                        count_io_error(&mut t.stats.errors, &e);
                        break;
                    }
                };
                let got = Instant::now();
                let Some(seq) = decode(pattern, s.id, spec.size, &buf[..n]) else {
                    t.stats.errors.count(ErrorKind::Mismatch, || {
                        format!("socket {}: a {n}-byte datagram that was never sent", s.id)
                    });
                    continue;
                };
                if let Some(pos) = s.in_flight.iter().position(|&(q, _)| q == seq) {
                    let (_, sent) = s.in_flight.remove(pos).expect("position is in range");
                    t.udp.echoed += 1;
                    if s.highest.is_some_and(|h| seq < h) {
                        t.udp.reordered += 1;
                    }
                    s.highest = s.highest.max(Some(seq));
                    if sent >= from && got < until {
                        t.stats.bytes += n as u64;
                        t.stats.record(got - sent);
                        unpublished += 1;
                    }
                } else if let Some(pos) = s.lost.iter().position(|&q| q == seq) {
                    s.lost.remove(pos);
                    t.udp.late += 1;
                } else if seq < s.next_seq {
                    t.udp.duplicates += 1;
                } else {
                    t.stats.errors.count(ErrorKind::Mismatch, || {
                        format!("socket {}: echo of datagram {seq}, never sent", s.id)
                    });
                }
            }
        }
        if unpublished > 0 {
            completed.fetch_add(std::mem::take(&mut unpublished), Ordering::Relaxed);
        }
    }
    Ok(t)
}

/// A refused port means nothing serves UDP there (an ICMP "port unreachable" came back).
fn count_io_error(errors: &mut ErrorCounts, e: &io::Error) {
    if e.kind() == io::ErrorKind::ConnectionRefused {
        errors.count(ErrorKind::Connect, || {
            format!("UDP port unreachable (does the server serve UDP?): {e}")
        });
    } else {
        errors.count(ErrorKind::Other, || e.to_string());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decode_accepts_exactly_the_datagram_encoded() {
        let p = Pattern::new();
        let mut buf = Vec::new();
        encode(&p, 3, 7, 100, &mut buf);
        assert_eq!(buf.len(), 100);
        assert_eq!(decode(&p, 3, 100, &buf), Some(7));
        assert_eq!(decode(&p, 4, 100, &buf), None, "another socket's");
        assert_eq!(decode(&p, 3, 99, &buf[..99]), None, "cut short");
        let mut bad = buf.clone();
        bad[50] ^= 1;
        assert_eq!(decode(&p, 3, 100, &bad), None, "altered");
        let mut other = Vec::new();
        encode(&p, 3, 8, 100, &mut other);
        other[8..16].copy_from_slice(&7u64.to_le_bytes());
        assert_eq!(decode(&p, 3, 100, &other), None, "body of another datagram");
        encode(&p, 0, 0, HEADER, &mut buf);
        assert_eq!(decode(&p, 0, HEADER, &buf), Some(0));
    }
}
