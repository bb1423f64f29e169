//! `RunReport`: what one load-generator run measured, and its three renderings (a table for
//! people, JSON, CSV).

use std::fmt::Write as _;

use hdrhistogram::Histogram;
use serde::Serialize;

use crate::scenario::Scenario;
use crate::spec::LoadSpec;

/// Latency percentiles of the messages completed in the measured window, in microseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Latency {
    /// Messages the percentiles are computed over.
    pub count: u64,
    /// Arithmetic mean.
    pub mean_us: f64,
    /// Median.
    pub p50_us: f64,
    /// 90th percentile.
    pub p90_us: f64,
    /// 99th percentile.
    pub p99_us: f64,
    /// 99.9th percentile.
    pub p999_us: f64,
    /// Largest observed.
    pub max_us: f64,
}

impl Latency {
    /// Summarises a histogram of nanosecond values.
    pub fn from_histogram(h: &Histogram<u64>) -> Latency {
        if h.is_empty() {
            return Latency::default();
        }
        let us = |ns: u64| ns as f64 / 1000.0;
        Latency {
            count: h.len(),
            mean_us: h.mean() / 1000.0,
            p50_us: us(h.value_at_quantile(0.50)),
            p90_us: us(h.value_at_quantile(0.90)),
            p99_us: us(h.value_at_quantile(0.99)),
            p999_us: us(h.value_at_quantile(0.999)),
            max_us: us(h.max()),
        }
    }
}

/// The kinds of failure the load generator counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// A connection attempt failed or timed out.
    Connect,
    /// Echoed bytes differed from what was sent (or more came back than was sent).
    Mismatch,
    /// The server reset or closed a connection that still expected bytes.
    Reset,
    /// No echo arrived within `--timeout`.
    Timeout,
    /// Any other I/O error.
    Other,
}

impl ErrorKind {
    /// Name used in reports.
    pub fn name(self) -> &'static str {
        match self {
            ErrorKind::Connect => "connect",
            ErrorKind::Mismatch => "mismatch",
            ErrorKind::Reset => "reset",
            ErrorKind::Timeout => "timeout",
            ErrorKind::Other => "other",
        }
    }
}

/// Failures over the whole run (warm-up included: errors are never hidden).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ErrorCounts {
    /// Failed or timed-out connection attempts.
    pub connect: u64,
    /// Echoes that differed from what was sent.
    pub mismatch: u64,
    /// Connections reset or closed by the server mid-echo.
    pub reset: u64,
    /// Echoes that did not arrive within the timeout.
    pub timeout: u64,
    /// Other I/O errors.
    pub other: u64,
    /// The first error of each kind, as text ("connect: Connection refused (os error 111)").
    pub examples: Vec<String>,
}

impl ErrorCounts {
    /// Counts one error; keeps its text if it is the first of its kind.
    pub fn count(&mut self, kind: ErrorKind, what: impl FnOnce() -> String) {
        let slot = match kind {
            ErrorKind::Connect => &mut self.connect,
            ErrorKind::Mismatch => &mut self.mismatch,
            ErrorKind::Reset => &mut self.reset,
            ErrorKind::Timeout => &mut self.timeout,
            ErrorKind::Other => &mut self.other,
        };
        *slot += 1;
        if *slot == 1 {
            self.examples.push(format!("{}: {}", kind.name(), what()));
        }
    }

    /// Every error counted.
    pub fn total(&self) -> u64 {
        self.connect + self.mismatch + self.reset + self.timeout + self.other
    }

    /// Adds another thread's counts.
    pub fn merge(&mut self, other: &ErrorCounts) {
        for (kind, n) in [
            (ErrorKind::Connect, other.connect),
            (ErrorKind::Mismatch, other.mismatch),
            (ErrorKind::Reset, other.reset),
            (ErrorKind::Timeout, other.timeout),
            (ErrorKind::Other, other.other),
        ] {
            if n == 0 {
                continue;
            }
            let prefix = format!("{}: ", kind.name());
            let example = other.examples.iter().find(|e| e.starts_with(&prefix));
            let had = self.examples.iter().any(|e| e.starts_with(&prefix));
            match kind {
                ErrorKind::Connect => self.connect += n,
                ErrorKind::Mismatch => self.mismatch += n,
                ErrorKind::Reset => self.reset += n,
                ErrorKind::Timeout => self.timeout += n,
                ErrorKind::Other => self.other += n,
            }
            if let (false, Some(e)) = (had, example) {
                self.examples.push(e.clone());
            }
        }
    }

    /// "none", or "connect 3, timeout 1".
    pub fn summary(&self) -> String {
        let parts: Vec<String> = [
            ("connect", self.connect),
            ("mismatch", self.mismatch),
            ("reset", self.reset),
            ("timeout", self.timeout),
            ("other", self.other),
        ]
        .iter()
        .filter(|(_, n)| *n > 0)
        .map(|(name, n)| format!("{name} {n}"))
        .collect();
        if parts.is_empty() {
            "none".to_owned()
        } else {
            parts.join(", ")
        }
    }
}

/// Extra figures of the idle scenario.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct IdleFigures {
    /// Connections that were open during the hold.
    pub established: u64,
    /// Time from the first connect to the last connection settling (open or failed).
    pub connect_secs: f64,
    /// How long the connections were held.
    pub hold_secs: f64,
    /// Time for the echo on every connection after the hold.
    pub echo_secs: f64,
}

/// What UDP did to the datagrams of the `udp` scenario, over the whole run (warm-up and drain
/// included). None of these is an error: UDP may lose, duplicate and reorder.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct UdpFigures {
    /// Datagrams sent.
    pub sent: u64,
    /// Datagrams whose echo came back, verified.
    pub echoed: u64,
    /// Datagrams given up on after the loss timeout.
    pub lost: u64,
    /// Echoes of datagrams already counted lost.
    pub late: u64,
    /// Further echoes of a datagram already answered.
    pub duplicates: u64,
    /// Echoes arriving after the echo of a later datagram of the same socket.
    pub reordered: u64,
    /// Sends the kernel refused for lack of buffer space (retried, not lost).
    pub send_blocked: u64,
}

impl UdpFigures {
    /// Adds another thread's counts.
    pub fn merge(&mut self, o: &UdpFigures) {
        self.sent += o.sent;
        self.echoed += o.echoed;
        self.lost += o.lost;
        self.late += o.late;
        self.duplicates += o.duplicates;
        self.reordered += o.reordered;
        self.send_blocked += o.send_blocked;
    }
}

/// Everything one run measured.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RunReport {
    /// Traffic shape.
    pub scenario: Scenario,
    /// Server address.
    pub target: String,
    /// Concurrent connections (connrate: concurrent clients).
    pub connections: usize,
    /// Message size, bytes.
    pub size: usize,
    /// Messages in flight per connection.
    pub depth: usize,
    /// Load-generator threads.
    pub threads: usize,
    /// Source addresses connections were spread over.
    pub source_addrs: usize,
    /// Warm-up before the window, seconds.
    pub warmup_secs: f64,
    /// Length of the measured window (idle: the hold), seconds.
    pub duration_secs: f64,
    /// Messages completed in the window (connrate: connections; idle: echoes after the hold).
    pub messages: u64,
    /// Echoed bytes verified in the window.
    pub bytes: u64,
    /// `messages` per second of window (idle: per second of the echo phase).
    pub msgs_per_sec: f64,
    /// `bytes` per second of window.
    pub bytes_per_sec: f64,
    /// Latency of the counted messages (connrate: connect to verified echo).
    pub latency: Latency,
    /// Connections established over the whole run.
    pub connections_opened: u64,
    /// Failures over the whole run.
    pub errors: ErrorCounts,
    /// Idle scenario only.
    pub idle: Option<IdleFigures>,
    /// `--idle-connections`: silent connections asked for, held through the whole run.
    pub idle_connections: usize,
    /// Of those, how many were established.
    pub idle_connections_opened: u64,
    /// Of those, how many were still open and had received nothing at the end.
    pub idle_connections_kept: u64,
    /// Udp scenario only: what UDP did to the datagrams.
    pub udp: Option<UdpFigures>,
}

impl RunReport {
    /// A report of a run that never happened (its server did not start): zero everywhere.
    pub fn empty(spec: &LoadSpec) -> RunReport {
        RunReport {
            scenario: spec.scenario,
            target: spec.target.to_string(),
            connections: spec.connections,
            size: spec.size,
            depth: spec.depth,
            threads: spec.threads,
            source_addrs: usize::from(spec.source_addrs),
            warmup_secs: 0.0,
            duration_secs: 0.0,
            messages: 0,
            bytes: 0,
            msgs_per_sec: 0.0,
            bytes_per_sec: 0.0,
            latency: Latency::default(),
            connections_opened: 0,
            errors: ErrorCounts::default(),
            idle: None,
            idle_connections: spec.idle_connections,
            idle_connections_opened: 0,
            idle_connections_kept: 0,
            udp: None,
        }
    }
}

/// Formats a count with thousands separators.
pub(crate) fn thousands(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::with_capacity(s.len() + s.len() / 3);
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// "12.3 MB/s"-style rendering of a rate in bytes per second (decimal units).
pub(crate) fn bytes_rate(bps: f64) -> String {
    let units = ["B/s", "kB/s", "MB/s", "GB/s"];
    let mut v = bps;
    let mut i = 0;
    while v >= 1000.0 && i + 1 < units.len() {
        v /= 1000.0;
        i += 1;
    }
    format!("{v:.1} {}", units[i])
}

/// Microseconds with a sensible number of digits.
pub(crate) fn micros(us: f64) -> String {
    if us >= 10_000.0 {
        format!("{:.1} ms", us / 1000.0)
    } else if us >= 1000.0 {
        format!("{:.2} ms", us / 1000.0)
    } else if us >= 100.0 {
        format!("{us:.0} µs")
    } else {
        format!("{us:.1} µs")
    }
}

impl RunReport {
    /// The human-readable table.
    pub fn to_table(&self) -> String {
        let mut t = String::new();
        let unit = self.scenario.unit();
        let shape = match self.scenario {
            Scenario::Pipeline | Scenario::Stream => format!(
                "{} connections × {} B, depth {}",
                self.connections, self.size, self.depth
            ),
            Scenario::Udp => format!(
                "{} UDP sockets × {} B datagrams, depth {}",
                self.connections, self.size, self.depth
            ),
            Scenario::Connrate => format!(
                "{} concurrent clients, connect + {} B echo + close",
                self.connections, self.size
            ),
            _ => format!("{} connections × {} B", self.connections, self.size),
        };
        let threads = if self.threads == 1 {
            "thread"
        } else {
            "threads"
        };
        let _ = writeln!(
            t,
            "scenario     {}: {shape}, {} {threads}",
            self.scenario, self.threads
        );
        let _ = writeln!(t, "target       {}", self.target);
        if self.idle_connections > 0 {
            let _ = writeln!(
                t,
                "silent       {} idle connections asked for, {} opened, {} open and silent at the end",
                thousands(self.idle_connections as u64),
                thousands(self.idle_connections_opened),
                thousands(self.idle_connections_kept)
            );
        }
        if let Some(idle) = &self.idle {
            let _ = writeln!(
                t,
                "idle         {} open ({:.2} s to connect), held {:.1} s, echo on each took {:.3} s",
                thousands(idle.established),
                idle.connect_secs,
                idle.hold_secs,
                idle.echo_secs
            );
        } else {
            let _ = writeln!(
                t,
                "window       {:.1} s after {:.1} s warm-up",
                self.duration_secs, self.warmup_secs
            );
        }
        if let Some(u) = &self.udp {
            let _ = writeln!(
                t,
                "datagrams    {} sent, {} echoed, {} lost ({} late), {} duplicated, {} reordered (whole run)",
                thousands(u.sent),
                thousands(u.echoed),
                thousands(u.lost),
                thousands(u.late),
                thousands(u.duplicates),
                thousands(u.reordered)
            );
        }
        let _ = writeln!(
            t,
            "throughput   {} {unit}s, {} {unit}/s, {}",
            thousands(self.messages),
            thousands(self.msgs_per_sec.round() as u64),
            bytes_rate(self.bytes_per_sec)
        );
        let l = &self.latency;
        if l.count > 0 {
            let _ = writeln!(
                t,
                "latency      p50 {}  p90 {}  p99 {}  p99.9 {}  max {}  (mean {})",
                micros(l.p50_us),
                micros(l.p90_us),
                micros(l.p99_us),
                micros(l.p999_us),
                micros(l.max_us),
                micros(l.mean_us)
            );
        } else {
            let _ = writeln!(t, "latency      no messages completed in the window");
        }
        let _ = writeln!(
            t,
            "connections  {} opened",
            thousands(self.connections_opened)
        );
        let _ = writeln!(t, "errors       {}", self.errors.summary());
        for e in &self.errors.examples {
            let _ = writeln!(t, "             first {e}");
        }
        t
    }

    /// One JSON object.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"))
    }

    /// The CSV header line (no newline).
    pub const CSV_HEADER: &'static str = "scenario,target,connections,size,depth,threads,\
        source_addrs,warmup_secs,duration_secs,messages,bytes,msgs_per_sec,bytes_per_sec,\
        p50_us,p90_us,p99_us,p999_us,max_us,mean_us,connections_opened,connect_errors,\
        mismatches,resets,timeouts,other_errors,idle_connections,idle_connections_opened,\
        idle_connections_kept";

    /// One CSV row matching [`RunReport::CSV_HEADER`] (no newline).
    pub fn to_csv_row(&self) -> String {
        let l = &self.latency;
        let e = &self.errors;
        format!(
            "{},{},{},{},{},{},{},{:.3},{:.3},{},{},{:.1},{:.1},{:.1},{:.1},{:.1},{:.1},{:.1},{:.1},{},{},{},{},{},{},{},{},{}",
            self.scenario,
            self.target,
            self.connections,
            self.size,
            self.depth,
            self.threads,
            self.source_addrs,
            self.warmup_secs,
            self.duration_secs,
            self.messages,
            self.bytes,
            self.msgs_per_sec,
            self.bytes_per_sec,
            l.p50_us,
            l.p90_us,
            l.p99_us,
            l.p999_us,
            l.max_us,
            l.mean_us,
            self.connections_opened,
            e.connect,
            e.mismatch,
            e.reset,
            e.timeout,
            e.other,
            self.idle_connections,
            self.idle_connections_opened,
            self.idle_connections_kept
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> RunReport {
        let mut h = Histogram::<u64>::new_with_bounds(1, 60_000_000_000, 3).unwrap();
        for v in 1..=1000u64 {
            h.record(v * 1000).unwrap();
        }
        let mut errors = ErrorCounts::default();
        errors.count(ErrorKind::Connect, || "Connection refused".into());
        errors.count(ErrorKind::Connect, || {
            unreachable!("only the first is kept")
        });
        RunReport {
            scenario: Scenario::Pingpong,
            target: "127.0.0.1:7007".into(),
            connections: 50,
            size: 64,
            depth: 1,
            threads: 1,
            source_addrs: 1,
            warmup_secs: 1.0,
            duration_secs: 10.0,
            messages: 1000,
            bytes: 64_000,
            msgs_per_sec: 100.0,
            bytes_per_sec: 6400.0,
            latency: Latency::from_histogram(&h),
            connections_opened: 50,
            errors,
            idle: None,
            idle_connections: 0,
            idle_connections_opened: 0,
            idle_connections_kept: 0,
            udp: None,
        }
    }

    #[test]
    fn percentiles_come_from_the_histogram() {
        let l = sample().latency;
        assert_eq!(l.count, 1000);
        assert!((l.p50_us - 500.0).abs() < 1.0, "{l:?}");
        assert!((l.p99_us - 990.0).abs() < 1.0, "{l:?}");
        assert!((l.max_us - 1000.0).abs() < 1.0, "{l:?}");
    }

    #[test]
    fn csv_row_has_a_value_per_header_column() {
        let r = sample();
        let header = RunReport::CSV_HEADER.split(',').count();
        assert_eq!(r.to_csv_row().split(',').count(), header);
    }

    #[test]
    fn json_names_the_errors() {
        let v: serde_json::Value = serde_json::from_str(&sample().to_json()).unwrap();
        assert_eq!(v["errors"]["connect"], 2);
        assert_eq!(v["scenario"], "pingpong");
        assert_eq!(v["errors"]["examples"][0], "connect: Connection refused");
    }

    #[test]
    fn table_shows_errors_and_first_example() {
        let t = sample().to_table();
        assert!(t.contains("errors       connect 2"), "{t}");
        assert!(t.contains("first connect: Connection refused"), "{t}");
    }

    #[test]
    fn merge_keeps_one_example_per_kind() {
        let mut a = ErrorCounts::default();
        a.count(ErrorKind::Timeout, || "t1".into());
        let mut b = ErrorCounts::default();
        b.count(ErrorKind::Timeout, || "t2".into());
        b.count(ErrorKind::Reset, || "r".into());
        a.merge(&b);
        assert_eq!((a.timeout, a.reset), (2, 1));
        assert_eq!(a.examples, vec!["timeout: t1", "reset: r"]);
        assert_eq!(a.summary(), "reset 1, timeout 2");
    }

    #[test]
    fn number_formatting() {
        assert_eq!(thousands(1234567), "1,234,567");
        assert_eq!(thousands(12), "12");
        assert_eq!(bytes_rate(12_345_678.0), "12.3 MB/s");
        assert_eq!(micros(8.26), "8.3 µs");
        assert_eq!(micros(1016.0), "1.02 ms");
        assert_eq!(micros(25_000.0), "25.0 ms");
    }
}
