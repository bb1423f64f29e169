//! `Dispatch`: how the reactor model's connections reach its workers (`--dispatch`).

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer};

use crate::named::{self, Named};

/// How accepted connections reach the reactor's workers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Dispatch {
    /// One acceptor thread hands connection `i` to worker `i mod N` (the default).
    #[default]
    RoundRobin,
    /// One acceptor thread hands each connection to the worker with the fewest open
    /// connections (ties go round robin).
    LeastConnections,
    /// No acceptor thread: each worker owns its own `SO_REUSEPORT` listener on the same port
    /// and accepts for itself; the kernel hashes connections to listeners.
    ReusePort,
    /// No acceptor thread: every worker watches the one listener (`EPOLLEXCLUSIVE`, so one
    /// worker is woken per connection) and accepts until `WouldBlock`.
    Shared,
}

impl Dispatch {
    /// Every mode, in the order the help lists them.
    pub const ALL: &'static [Dispatch] = &[
        Dispatch::RoundRobin,
        Dispatch::LeastConnections,
        Dispatch::ReusePort,
        Dispatch::Shared,
    ];

    /// The name `--dispatch` takes.
    pub fn name(self) -> &'static str {
        match self {
            Dispatch::RoundRobin => "round-robin",
            Dispatch::LeastConnections => "least-connections",
            Dispatch::ReusePort => "reuseport",
            Dispatch::Shared => "shared",
        }
    }

    /// Whether an acceptor thread accepts and hands connections over (otherwise every worker
    /// accepts for itself).
    pub fn has_acceptor(self) -> bool {
        matches!(self, Dispatch::RoundRobin | Dispatch::LeastConnections)
    }

    /// Whether the listening socket must be bound with `SO_REUSEPORT` (so that the workers'
    /// own listeners can join it on the same port).
    pub fn needs_reuse_port(self) -> bool {
        self == Dispatch::ReusePort
    }
}

impl fmt::Display for Dispatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl Named for Dispatch {
    const WHAT: &'static str = "dispatch";

    fn all() -> &'static [Dispatch] {
        Dispatch::ALL
    }

    fn name_of(self) -> &'static str {
        self.name()
    }
}

impl FromStr for Dispatch {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        named::parse(s)
    }
}

impl<'de> Deserialize<'de> for Dispatch {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        named::deserialize(d)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_mode_parses_from_its_name_and_unknown_ones_list_the_choices() {
        for &d in Dispatch::ALL {
            assert_eq!(d.name().parse::<Dispatch>(), Ok(d));
        }
        let e = "random".parse::<Dispatch>().unwrap_err();
        assert!(
            e.contains("round-robin, least-connections, reuseport, shared"),
            "{e}"
        );
    }
}
