//! `Silent`: the `--idle-connections` of a run. They are opened before the load starts, never
//! written to, and checked at the end: each must still be open and must have received
//! nothing (the server neither closed it nor sent a byte on it). They cost a server what idle
//! clients cost it: a descriptor, its bookkeeping, and for `poll`/`select` a slot scanned on
//! every call.
//!
//! On an IPv4 loopback target they come from source addresses after the active ones
//! (127.0.0.(N+1), 127.0.0.(N+2), ... for `--source-addrs N`), `PER_SOURCE` each, so they
//! neither run out of ephemeral ports nor take them from the active connections (connrate's
//! TIME_WAITs).

use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token};
use slab::Slab;

use super::connection::{Outcome, connect, connect_status, describe_connect_error, io_failure};
use crate::report::{ErrorCounts, ErrorKind};
use crate::spec::LoadSpec;

/// Idle connections per source address (well inside Linux's default 28,232 ephemeral ports).
pub(crate) const PER_SOURCE: usize = 10_000;
/// Connects in flight while opening, so a burst does not overflow the server's accept queue.
const IN_FLIGHT: usize = 128;
/// Poll timeout while opening (connect timeouts are checked this often).
const TICK: Duration = Duration::from_millis(50);

/// Source addresses `n` idle connections need beyond the active ones.
pub(crate) fn sources_needed(n: usize) -> usize {
    n.div_ceil(PER_SOURCE)
}

/// The source address of idle connection `i`, or `None` (no bind) off IPv4 loopback.
fn source(spec: &LoadSpec, i: usize) -> Option<Ipv4Addr> {
    match spec.target {
        SocketAddr::V4(t) if t.ip().is_loopback() => {
            let host = usize::from(spec.source_addrs) + 1 + i / PER_SOURCE;
            Some(Ipv4Addr::new(
                127,
                0,
                0,
                u8::try_from(host).unwrap_or(u8::MAX),
            ))
        }
        _ => None,
    }
}

/// The open idle connections of a run.
#[derive(Debug, Default)]
pub(super) struct Silent {
    conns: Vec<TcpStream>,
}

impl Silent {
    /// Opens `spec.idle_connections` connections and waits until each is established or has
    /// failed (counted into `errors`, not retried). Fails only if the poller fails.
    pub(super) fn open(spec: &LoadSpec, errors: &mut ErrorCounts) -> io::Result<Silent> {
        let wanted = spec.idle_connections;
        let mut silent = Silent {
            conns: Vec::with_capacity(wanted),
        };
        if wanted == 0 {
            return Ok(silent);
        }
        let mut poll = Poll::new()?;
        let mut events = Events::with_capacity(1024);
        let mut pending: Slab<(TcpStream, Instant)> = Slab::with_capacity(IN_FLIGHT);
        let mut next = 0;
        while next < wanted || !pending.is_empty() {
            while next < wanted && pending.len() < IN_FLIGHT {
                let from = source(spec, next);
                next += 1;
                match connect(spec.target, from, false) {
                    Ok(mut stream) => {
                        let entry = pending.vacant_entry();
                        poll.registry().register(
                            &mut stream,
                            Token(entry.key()),
                            Interest::WRITABLE,
                        )?;
                        entry.insert((stream, Instant::now()));
                    }
                    Err(e) => errors.count(ErrorKind::Connect, || {
                        format!("idle connection: {}", describe_connect_error(&e))
                    }),
                }
            }
            match poll.poll(&mut events, Some(TICK)) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
            for event in events.iter() {
                let key = event.token().0;
                let Some((stream, _)) = pending.get(key) else {
                    continue;
                };
                let failed = event.is_error() || event.is_write_closed();
                match connect_status(stream) {
                    Ok(true) => {
                        let (mut stream, _) = pending.remove(key);
                        poll.registry().deregister(&mut stream)?;
                        silent.conns.push(stream);
                    }
                    Ok(false) if !failed => {}
                    Ok(false) => {
                        pending.remove(key);
                        errors.count(ErrorKind::Connect, || {
                            "idle connection: connect failed".to_owned()
                        });
                    }
                    Err(e) => {
                        pending.remove(key);
                        errors.count(ErrorKind::Connect, || {
                            format!("idle connection: {}", describe_connect_error(&e))
                        });
                    }
                }
            }
            let now = Instant::now();
            let expired: Vec<usize> = pending
                .iter()
                .filter(|(_, (_, started))| now - *started >= spec.timeout)
                .map(|(k, _)| k)
                .collect();
            for key in expired {
                pending.remove(key);
                errors.count(ErrorKind::Connect, || {
                    format!(
                        "idle connection: connect timed out after {:.1} s",
                        spec.timeout.as_secs_f64()
                    )
                });
            }
        }
        Ok(silent)
    }

    /// Idle connections established.
    pub(super) fn len(&self) -> usize {
        self.conns.len()
    }

    /// Checks every idle connection without blocking and closes them all. One the server
    /// closed, reset or wrote to counts into `errors`. Returns how many were still open and
    /// silent.
    pub(super) fn check_and_close(self, errors: &mut ErrorCounts) -> u64 {
        let mut kept = 0;
        let mut byte = [0u8; 1];
        for stream in self.conns {
            let outcome = loop {
                match stream.peek(&mut byte) {
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    other => break other,
                }
            };
            match outcome {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => kept += 1,
                Ok(0) => errors.count(ErrorKind::Reset, || {
                    "the server closed an idle connection during the run".to_owned()
                }),
                Ok(_) => errors.count(ErrorKind::Mismatch, || {
                    "the server sent bytes on an idle connection that never wrote".to_owned()
                }),
                Err(e) => {
                    if let Outcome::Failed(kind, what) = io_failure(&e) {
                        errors.count(kind, || format!("idle connection: {what}"));
                    }
                }
            }
        }
        kept
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scenario::Scenario;

    #[test]
    fn idle_connections_use_addresses_after_the_active_ones() {
        let mut spec = LoadSpec::new("127.0.0.1:9".parse().unwrap(), Scenario::Pingpong);
        spec.source_addrs = 3;
        assert_eq!(source(&spec, 0), Some(Ipv4Addr::new(127, 0, 0, 4)));
        assert_eq!(
            source(&spec, PER_SOURCE - 1),
            Some(Ipv4Addr::new(127, 0, 0, 4))
        );
        assert_eq!(source(&spec, PER_SOURCE), Some(Ipv4Addr::new(127, 0, 0, 5)));
        spec.target = "[::1]:9".parse().unwrap();
        assert_eq!(source(&spec, 0), None);
        assert_eq!(sources_needed(0), 0);
        assert_eq!(sources_needed(PER_SOURCE), 1);
        assert_eq!(sources_needed(PER_SOURCE + 1), 2);
    }
}
