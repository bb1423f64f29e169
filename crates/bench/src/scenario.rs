//! `Scenario`: the traffic shapes the load generator produces, with their default sizes.

use std::fmt;
use std::str::FromStr;

/// One traffic shape. Every scenario verifies every echoed byte.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Scenario {
    /// Each connection sends one message and waits for its whole echo before the next.
    Pingpong,
    /// Each connection keeps `depth` messages in flight.
    Pipeline,
    /// Connect, echo one message, close, repeat: `connections` clients doing this at once.
    Connrate,
    /// Open `connections`, hold them idle, then one echo on each.
    Idle,
    /// Bulk transfer: each connection writes as fast as the socket takes (within a window of
    /// `depth` chunks of `size` bytes) and reads the echo back concurrently.
    Stream,
    /// Request/response datagrams over `connections` UDP sockets, `depth` in flight on each;
    /// loss, duplicates and reordering are counted, not errors. The server needs `--udp`.
    Udp,
}

impl Scenario {
    /// Every scenario, in the order help and reports list them.
    pub const ALL: [Scenario; 6] = [
        Scenario::Pingpong,
        Scenario::Pipeline,
        Scenario::Connrate,
        Scenario::Idle,
        Scenario::Stream,
        Scenario::Udp,
    ];

    /// The name used on the command line and in reports.
    pub fn name(self) -> &'static str {
        match self {
            Scenario::Pingpong => "pingpong",
            Scenario::Pipeline => "pipeline",
            Scenario::Connrate => "connrate",
            Scenario::Idle => "idle",
            Scenario::Stream => "stream",
            Scenario::Udp => "udp",
        }
    }

    /// Connections when `--connections` is not given.
    pub fn default_connections(self) -> usize {
        match self {
            Scenario::Pingpong | Scenario::Pipeline | Scenario::Connrate => 50,
            Scenario::Idle => 10_000,
            Scenario::Stream => 4,
            Scenario::Udp => 8,
        }
    }

    /// Message size in bytes when `--size` is not given.
    pub fn default_size(self) -> usize {
        match self {
            Scenario::Pingpong | Scenario::Connrate | Scenario::Idle | Scenario::Udp => 64,
            Scenario::Pipeline => 4096,
            Scenario::Stream => 64 * 1024,
        }
    }

    /// Messages in flight per connection when `--depth` is not given.
    pub fn default_depth(self) -> usize {
        match self {
            Scenario::Pipeline | Scenario::Stream | Scenario::Udp => 16,
            Scenario::Pingpong | Scenario::Connrate | Scenario::Idle => 1,
        }
    }

    /// Whether `--depth` means anything for this scenario.
    pub fn uses_depth(self) -> bool {
        matches!(self, Scenario::Pipeline | Scenario::Stream | Scenario::Udp)
    }

    /// Whether the run lasts a fixed time (as opposed to idle's connect-hold-echo sequence,
    /// where `--duration` is the hold time).
    pub fn is_timed(self) -> bool {
        self != Scenario::Idle
    }

    /// What one counted "message" is, for report headings.
    pub fn unit(self) -> &'static str {
        match self {
            Scenario::Connrate => "conn",
            Scenario::Stream => "chunk",
            Scenario::Udp => "datagram",
            Scenario::Pingpong | Scenario::Pipeline | Scenario::Idle => "msg",
        }
    }
}

impl fmt::Display for Scenario {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Scenario {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Scenario::ALL
            .iter()
            .copied()
            .find(|sc| sc.name() == s.trim())
            .ok_or_else(|| {
                let names: Vec<&str> = Scenario::ALL.iter().map(|sc| sc.name()).collect();
                format!(
                    "unknown scenario '{s}' (expected one of: {})",
                    names.join(", ")
                )
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for sc in Scenario::ALL {
            assert_eq!(sc.name().parse::<Scenario>(), Ok(sc));
        }
    }

    #[test]
    fn unknown_names_list_the_valid_ones() {
        let err = "ping".parse::<Scenario>().unwrap_err();
        assert!(
            err.contains("pingpong, pipeline, connrate, idle, stream, udp"),
            "{err}"
        );
    }

    #[test]
    fn issue_defaults() {
        assert_eq!(Scenario::Pingpong.default_size(), 64);
        assert_eq!(Scenario::Pipeline.default_size(), 4096);
        assert_eq!(Scenario::Pipeline.default_depth(), 16);
        assert_eq!(Scenario::Idle.default_connections(), 10_000);
    }
}
