//! `render`: one scrape's worth of Prometheus text, summed from the per-worker counters.

use std::fmt::Write as _;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::close::CloseReason;
use crate::live::LiveSettings;
use crate::stats::{Snapshot, Stats, UdpDrop, UdpSnapshot};

/// What a scrape reads: the counters and the live settings of one server.
#[derive(Debug, Clone)]
pub(crate) struct MetricsSource {
    /// The server's counters.
    pub(crate) stats: Arc<Stats>,
    /// The settings a reload changes (exported as gauges, so a reload is visible).
    pub(crate) live: Arc<LiveSettings>,
    /// When this server process started (Unix seconds).
    pub(crate) started: f64,
}

impl MetricsSource {
    /// A source for a server started now.
    pub(crate) fn new(stats: Arc<Stats>, live: Arc<LiveSettings>) -> Self {
        let started = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64());
        MetricsSource {
            stats,
            live,
            started,
        }
    }
}

/// Writes one metric family: `# HELP`, `# TYPE`, then its samples.
struct Family<'a> {
    out: &'a mut String,
}

impl Family<'_> {
    fn header(&mut self, name: &str, kind: &str, help: &str) -> &mut Self {
        let _ = writeln!(self.out, "# HELP {name} {help}");
        let _ = writeln!(self.out, "# TYPE {name} {kind}");
        self
    }

    fn sample(&mut self, name: &str, labels: &str, value: impl std::fmt::Display) -> &mut Self {
        if labels.is_empty() {
            let _ = writeln!(self.out, "{name} {value}");
        } else {
            let _ = writeln!(self.out, "{name}{{{labels}}} {value}");
        }
        self
    }

    fn single(&mut self, name: &str, kind: &str, help: &str, value: impl std::fmt::Display) {
        self.header(name, kind, help).sample(name, "", value);
    }
}

/// Renders every metric of `source` in the Prometheus text format.
pub(crate) fn render(source: &MetricsSource) -> String {
    let snap = source.stats.snapshot();
    let mut out = String::with_capacity(4096 + 128 * snap.workers.len());
    let mut f = Family { out: &mut out };
    server_metrics(&mut f, &snap, source);
    udp_metrics(&mut f, &snap.udp, source);
    process_metrics(&mut f, source.started);
    out
}

fn server_metrics(f: &mut Family<'_>, s: &Snapshot, source: &MetricsSource) {
    f.header(
        "reactor_pool_build_info",
        "gauge",
        "Version of the running reactor-pool; always 1.",
    )
    .sample(
        "reactor_pool_build_info",
        concat!("version=\"", env!("CARGO_PKG_VERSION"), "\""),
        1,
    );
    f.single(
        "reactor_pool_connections_accepted_total",
        "counter",
        "Connections accepted by the listener, including those closed at once for the limit.",
        s.accepted,
    );
    f.single(
        "reactor_pool_connections_active",
        "gauge",
        "Connections open now.",
        s.active,
    );
    let name = "reactor_pool_connections_closed_total";
    f.header(
        name,
        "counter",
        "Connections closed, by reason: eof (peer finished), reset (peer vanished), error, \
         idle_timeout, shutdown_timeout, limit (max_connections reached at accept).",
    );
    for reason in CloseReason::ALL {
        f.sample(
            name,
            &format!("reason=\"{}\"", reason.as_str()),
            s.closed(reason),
        );
    }
    f.single(
        "reactor_pool_bytes_read_total",
        "counter",
        "Bytes read from clients.",
        s.bytes_read,
    );
    f.single(
        "reactor_pool_bytes_written_total",
        "counter",
        "Bytes echoed back to clients.",
        s.bytes_written,
    );
    f.single(
        "reactor_pool_accept_errors_total",
        "counter",
        "accept(2) failures (descriptor exhaustion and the like); accepting pauses after each.",
        s.accept_errors,
    );
    f.single(
        "reactor_pool_backpressure_pauses_total",
        "counter",
        "Times a connection's unsent bytes reached buffer_size and reading from it paused.",
        s.backpressure_pauses,
    );
    let name = "reactor_pool_worker_connections_active";
    f.header(name, "gauge", "Connections open now, per worker.");
    for (id, (_, active)) in s.workers.iter().enumerate() {
        f.sample(name, &format!("worker=\"{id}\""), active);
    }
    let name = "reactor_pool_worker_connections_total";
    f.header(
        name,
        "counter",
        "Connections handed to each worker (round robin keeps these within one of each other).",
    );
    for (id, (total, _)) in s.workers.iter().enumerate() {
        f.sample(name, &format!("worker=\"{id}\""), total);
    }
    f.single(
        "reactor_pool_workers",
        "gauge",
        "Worker threads.",
        s.workers.len(),
    );
    let live = &source.live;
    f.single(
        "reactor_pool_max_connections",
        "gauge",
        "The max_connections setting in force.",
        live.max_connections(),
    );
    f.single(
        "reactor_pool_idle_timeout_seconds",
        "gauge",
        "The idle_timeout setting in force; 0 when disabled.",
        live.idle_timeout().map_or(0.0, |d| d.as_secs_f64()),
    );
    let (ok, failed) = live.reloads();
    let name = "reactor_pool_config_reloads_total";
    f.header(
        name,
        "counter",
        "Configuration reloads (SIGHUP), by result; a failed one keeps the running config.",
    )
    .sample(name, "result=\"success\"", ok)
    .sample(name, "result=\"failure\"", failed);
}

/// The UDP echo's counters (zero unless `udp` is on) and its rate limit in force.
fn udp_metrics(f: &mut Family<'_>, u: &UdpSnapshot, source: &MetricsSource) {
    f.single(
        "reactor_pool_udp_datagrams_received_total",
        "counter",
        "UDP datagrams received.",
        u.received,
    );
    f.single(
        "reactor_pool_udp_datagrams_echoed_total",
        "counter",
        "UDP datagrams echoed to their sender.",
        u.echoed,
    );
    let name = "reactor_pool_udp_datagrams_dropped_total";
    f.header(
        name,
        "counter",
        "UDP datagrams not echoed, by reason: loop (source port 0 or below 1024), truncated \
         (larger than 65507 bytes), rate_limit (udp_rate_limit), send_failed (full send buffer \
         or send error).",
    );
    for reason in UdpDrop::ALL {
        f.sample(
            name,
            &format!("reason=\"{}\"", reason.as_str()),
            u.dropped(reason),
        );
    }
    f.single(
        "reactor_pool_udp_bytes_received_total",
        "counter",
        "UDP payload bytes received (datagrams received whole).",
        u.bytes_received,
    );
    f.single(
        "reactor_pool_udp_bytes_echoed_total",
        "counter",
        "UDP payload bytes echoed.",
        u.bytes_echoed,
    );
    let name = "reactor_pool_udp_syscalls_total";
    f.header(
        name,
        "counter",
        "Batched UDP system calls: recvmmsg calls that returned datagrams, and sendmmsg calls.",
    )
    .sample(name, "call=\"recvmmsg\"", u.recv_calls)
    .sample(name, "call=\"sendmmsg\"", u.send_calls);
    f.single(
        "reactor_pool_udp_rate_limit",
        "gauge",
        "The udp_rate_limit setting in force (datagrams per second per source address); 0 when off.",
        source.live.udp_rate_limit().unwrap_or(0),
    );
}

/// The standard `process_*` metrics, from `/proc/self` (skipped where unreadable).
fn process_metrics(f: &mut Family<'_>, started: f64) {
    f.single(
        "process_start_time_seconds",
        "gauge",
        "Start time of the process since the Unix epoch, in seconds.",
        started,
    );
    if let Ok(dir) = std::fs::read_dir("/proc/self/fd") {
        // The directory handle itself is one of the entries.
        let open = dir.count().saturating_sub(1);
        f.single("process_open_fds", "gauge", "Open file descriptors.", open);
    }
    if let Some(max) = max_open_files() {
        f.single(
            "process_max_fds",
            "gauge",
            "Limit on open file descriptors.",
            max,
        );
    }
    if let Ok(status) = std::fs::read_to_string("/proc/self/status") {
        if let Some(kb) = status_field(&status, "VmRSS:") {
            f.single(
                "process_resident_memory_bytes",
                "gauge",
                "Resident memory size in bytes.",
                kb * 1024,
            );
        }
        if let Some(threads) = status_field(&status, "Threads:") {
            f.single("process_threads", "gauge", "OS threads.", threads);
        }
    }
    if let Some(secs) = cpu_seconds() {
        f.single(
            "process_cpu_seconds_total",
            "counter",
            "User and system CPU time spent, in seconds.",
            secs,
        );
    }
}

/// The first number after `key` in `/proc/self/status`.
fn status_field(status: &str, key: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with(key))?;
    line[key.len()..].split_whitespace().next()?.parse().ok()
}

fn max_open_files() -> Option<u64> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line["Max open files".len()..]
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// utime + stime from `/proc/self/stat`, in seconds.
fn cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // The command name (field 2) may contain spaces; fields are counted after its ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // After ')': field 3 is index 0, so utime (14) is index 11 and stime (15) index 12.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    let ticks = crate::sys::process::clock_ticks_per_second()?;
    Some((utime + stime) as f64 / ticks as f64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    #[test]
    fn renders_every_family_with_help_and_type() {
        let stats = Arc::new(Stats::new(2));
        stats.worker(1).opened();
        stats.worker(1).moved(5, 5);
        let source = MetricsSource::new(stats, Arc::new(LiveSettings::new(&Config::default())));
        let text = render(&source);
        for line in [
            "reactor_pool_connections_active 1",
            "reactor_pool_bytes_read_total 5",
            "reactor_pool_connections_closed_total{reason=\"limit\"} 0",
            "reactor_pool_worker_connections_active{worker=\"0\"} 0",
            "reactor_pool_worker_connections_active{worker=\"1\"} 1",
            "reactor_pool_max_connections 10000",
            "reactor_pool_idle_timeout_seconds 300",
            "# TYPE reactor_pool_bytes_written_total counter",
            "reactor_pool_udp_datagrams_dropped_total{reason=\"rate_limit\"} 0",
            "reactor_pool_udp_syscalls_total{call=\"sendmmsg\"} 0",
            "reactor_pool_udp_rate_limit 0",
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "missing {line:?} in\n{text}"
            );
        }
        // Every sample belongs to a family announced just before it.
        let mut family = String::new();
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                family = rest.split(' ').next().unwrap().to_owned();
            } else if !line.starts_with('#') {
                assert!(line.starts_with(&family), "{line} outside {family}");
            }
        }
    }
}
