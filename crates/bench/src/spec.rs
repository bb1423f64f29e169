//! `LoadSpec`: what one load-generator run does, fully resolved and validated.

use std::net::SocketAddr;
use std::time::Duration;

use crate::scenario::Scenario;

/// Descriptors the load generator needs besides its connections (pollers, wakers, stdio,
/// the runner's pipes and files).
pub(crate) const FD_RESERVE: usize = 64;

/// Bytes of each `udp` datagram's header: socket id (u32), size (u32), sequence number (u64).
pub(crate) const UDP_HEADER: usize = 16;
/// Largest datagram the `udp` scenario sends (the most one IPv4 datagram carries).
pub(crate) const UDP_MAX_DATAGRAM: usize = 65_507;

/// What to run, fully resolved and validated.
#[derive(Debug, Clone)]
pub struct LoadSpec {
    /// Server address.
    pub target: SocketAddr,
    /// Traffic shape.
    pub scenario: Scenario,
    /// Concurrent connections.
    pub connections: usize,
    /// Message size in bytes.
    pub size: usize,
    /// Messages in flight per connection (1 for pingpong, connrate and idle).
    pub depth: usize,
    /// Load-generator threads (at most `connections`).
    pub threads: usize,
    /// Traffic before the measured window starts (ignored by idle).
    pub warmup: Duration,
    /// Measured window; for idle, how long connections are held.
    pub duration: Duration,
    /// A connect or an awaited echo that takes longer than this is counted as a failure.
    pub timeout: Duration,
    /// Connections are spread over source addresses 127.0.0.1 ..= 127.0.0.N (1: no bind).
    pub source_addrs: u8,
    /// Set `TCP_NODELAY` on every connection.
    pub nodelay: bool,
    /// Extra connections opened before the load starts that stay silent for the whole run
    /// (`--idle-connections`), spread over source addresses after the active ones.
    pub idle_connections: usize,
}

impl LoadSpec {
    /// A spec with the scenario's default shape and short, test-friendly timings.
    pub fn new(target: SocketAddr, scenario: Scenario) -> LoadSpec {
        LoadSpec {
            target,
            scenario,
            connections: scenario.default_connections(),
            size: scenario.default_size(),
            depth: scenario.default_depth(),
            threads: 1,
            warmup: Duration::from_secs(1),
            duration: Duration::from_secs(10),
            timeout: Duration::from_secs(5),
            source_addrs: 1,
            nodelay: true,
            idle_connections: 0,
        }
    }

    /// Messages in flight per connection as the scenario uses it.
    pub fn effective_depth(&self) -> usize {
        if self.scenario.uses_depth() {
            self.depth.max(1)
        } else {
            1
        }
    }

    /// Descriptors the run needs in this process.
    pub fn fds_needed(&self) -> usize {
        self.connections + self.idle_connections + 2 * self.threads + FD_RESERVE
    }
}
