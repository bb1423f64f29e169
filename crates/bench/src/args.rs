//! `BenchArgs`, the `reactor-pool bench` flags, and their validation into a [`LoadSpec`]
//! (the comparison runner checks its own flags: `compare_spec::resolve`).

use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::time::Duration;

use clap::Args;
use reactor_pool::config::parse_duration;

use crate::procfs;
use crate::scenario::Scenario;
use crate::spec::{LoadSpec, UDP_HEADER, UDP_MAX_DATAGRAM};

/// Largest message size accepted.
const MAX_SIZE: usize = 16 << 20;
/// Most messages in flight per connection.
const MAX_DEPTH: usize = 4096;
/// Most load-generator threads.
const MAX_THREADS: usize = 64;
/// Source addresses connrate spreads over by default on an IPv4 loopback target. Each
/// closed connection leaves its client port in TIME_WAIT, reusable (tcp_tw_reuse) after a
/// second, and `connect` draws from about half the ephemeral range: one address sustains
/// about 14,000 connections per second, then connects queue behind the port search and
/// p99 jumps to ~100 ms. 16 addresses lift that ceiling well above what 2 cores reach.
const CONNRATE_SOURCE_ADDRS: usize = 16;
/// `reactor-pool bench` flags.
#[derive(Debug, Clone, Args)]
#[command(
    after_help = "Examples:\n  reactor-pool bench --target 127.0.0.1:7007 --scenario pipeline --duration 5\n  \
        reactor-pool bench --compare --models reactor --workers 1,2 \\\n      \
        --peer tokio='target/release/examples/tokio_echo {addr}' --baseline tokio"
)]
pub struct BenchArgs {
    /// Server to load, IP:PORT (or HOST:PORT). Required unless --compare.
    #[arg(long, value_name = "ADDR", required_unless_present = "compare")]
    pub target: Option<String>,
    /// Traffic shape: pingpong, pipeline, connrate, idle, stream or udp (the server needs --udp).
    #[arg(
        long,
        value_name = "NAME",
        default_value = "pingpong",
        conflicts_with = "compare"
    )]
    pub scenario: Scenario,
    /// Concurrent connections (connrate: concurrent clients). Default per scenario: 50
    /// (pingpong, pipeline, connrate), 10000 (idle), 4 (stream).
    #[arg(long, value_name = "N")]
    pub connections: Option<usize>,
    /// Message size in bytes. Default per scenario: 64, pipeline 4096, stream 65536.
    #[arg(long, value_name = "BYTES")]
    pub size: Option<usize>,
    /// Messages in flight per connection (pipeline, stream). Default 16.
    #[arg(long, value_name = "N")]
    pub depth: Option<usize>,
    /// Measured window, after the warm-up; for idle, how long connections are held.
    /// Default 10 s (3 s with --compare).
    #[arg(long, value_name = "SECS", value_parser = parse_duration)]
    pub duration: Option<Duration>,
    /// Traffic before the window that is not counted. Default 1 s.
    #[arg(long, value_name = "SECS", value_parser = parse_duration)]
    pub warmup: Option<Duration>,
    /// Load-generator threads (each runs its own poller over a share of the connections).
    #[arg(long, value_name = "N", default_value_t = 1)]
    pub threads: usize,
    /// A connect, or an awaited echo, taking longer than this counts as an error.
    #[arg(long, value_name = "SECS", value_parser = parse_duration, default_value = "5")]
    pub timeout: Duration,
    /// Spread connections over source addresses 127.0.0.1 ..= 127.0.0.N (loopback targets),
    /// for more connections than one address has ephemeral ports. Default 1, except connrate
    /// against an IPv4 loopback target: 16 (one address runs out of reusable ports at about
    /// 14,000 connections per second).
    #[arg(long, value_name = "N")]
    pub source_addrs: Option<usize>,
    /// Extra connections that stay silent for the whole run, opened before the load (any
    /// scenario); on a loopback target they come from 127.0.0.x addresses after the
    /// --source-addrs ones. With --compare, a list to sweep, e.g. 0,1000,5000,15000.
    #[arg(long, value_name = "N[,N...]", value_delimiter = ',')]
    pub idle_connections: Vec<usize>,
    /// Leave Nagle's algorithm on (TCP_NODELAY is set by default).
    #[arg(long)]
    pub no_nodelay: bool,
    /// Print the result as JSON.
    #[arg(long, conflicts_with_all = ["csv", "compare"])]
    pub json: bool,
    /// Print the result as CSV (a header line and one row).
    #[arg(long, conflicts_with = "compare")]
    pub csv: bool,
    /// Never show a progress bar (it is shown only on a terminal anyway).
    #[arg(long)]
    pub no_progress: bool,

    /// Compare servers: spawn each one per measurement and write a report directory.
    #[arg(long)]
    pub compare: bool,
    /// Models to compare (`serve --model`). Default: every model except those that need a
    /// process or thread per connection (blocking, fork, thread), which you may list.
    #[arg(long, value_name = "LIST", value_delimiter = ',', requires = "compare")]
    pub models: Vec<String>,
    /// Worker counts to try for the models in --worker-models.
    #[arg(
        long,
        value_name = "LIST",
        value_delimiter = ',',
        default_value = "1,2",
        requires = "compare"
    )]
    pub workers: Vec<usize>,
    /// Models that take --workers; other models run once with their own default.
    #[arg(
        long,
        value_name = "LIST",
        value_delimiter = ',',
        default_value = "reactor",
        requires = "compare"
    )]
    pub worker_models: Vec<String>,
    /// Dispatch modes to try for the reactor model (`serve --dispatch`): round-robin,
    /// least-connections, reuseport, shared. Another axis: models × workers × dispatch.
    #[arg(
        long,
        value_name = "LIST",
        value_delimiter = ',',
        default_value = "round-robin",
        requires = "compare"
    )]
    pub dispatch: Vec<String>,
    /// Scenarios to run.
    #[arg(
        long,
        value_name = "LIST",
        value_delimiter = ',',
        default_value = "pingpong,pipeline,connrate,idle",
        requires = "compare"
    )]
    pub scenarios: Vec<Scenario>,
    /// An external server, NAME='COMMAND {addr}'; {addr} becomes 127.0.0.1:PORT (and {port}
    /// the port). Repeatable.
    #[arg(long = "peer", value_name = "NAME=CMD", requires = "compare")]
    pub peers: Vec<String>,
    /// Repetitions of every measurement; the order of servers rotates between them.
    #[arg(long, value_name = "N", default_value_t = 3, requires = "compare")]
    pub repeat: usize,
    /// The cell ratios are computed against (e.g. tokio, reactor/w1). Default: the first.
    #[arg(long, value_name = "CELL", requires = "compare")]
    pub baseline: Option<String>,
    /// Report directory (created; files in it are replaced).
    #[arg(
        long,
        value_name = "DIR",
        default_value = "bench-report",
        requires = "compare"
    )]
    pub out: PathBuf,
    /// Extra arguments for every `serve` the runner starts, e.g. "--buffer-size 16384".
    #[arg(
        long,
        value_name = "ARGS",
        requires = "compare",
        allow_hyphen_values = true
    )]
    pub server_args: Option<String>,
}

/// A failure of `bench`, with the exit code it maps to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum BenchError {
    /// Bad arguments: exit 2.
    Usage(String),
    /// The run could not be carried out: exit 1.
    Runtime(String),
}

impl std::fmt::Display for BenchError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BenchError::Usage(m) | BenchError::Runtime(m) => f.write_str(m),
        }
    }
}

impl std::error::Error for BenchError {}

/// Resolves `--target` to one address (the first IPv4 one if there are several).
pub(crate) fn resolve_target(text: &str) -> Result<SocketAddr, BenchError> {
    let usage = |why: String| BenchError::Usage(format!("invalid `--target` '{text}': {why}"));
    let addrs: Vec<SocketAddr> = text
        .to_socket_addrs()
        .map_err(|e| usage(e.to_string()))?
        .collect();
    addrs
        .iter()
        .find(|a| a.is_ipv4())
        .or(addrs.first())
        .copied()
        .ok_or_else(|| usage("resolves to no address".into()))
}

/// Builds and validates the spec for `scenario` from the flags; `compare` picks the
/// comparison runner's shorter default duration.
pub(crate) fn resolve_spec(
    args: &BenchArgs,
    scenario: Scenario,
    target: SocketAddr,
    compare: bool,
) -> Result<LoadSpec, BenchError> {
    let usage = |field: &str, why: String| BenchError::Usage(format!("invalid `--{field}`: {why}"));
    let connections = args
        .connections
        .unwrap_or_else(|| scenario.default_connections());
    if connections == 0 {
        return Err(usage("connections", "must be at least 1".into()));
    }
    let size = args.size.unwrap_or_else(|| scenario.default_size());
    if !(1..=MAX_SIZE).contains(&size) {
        return Err(usage(
            "size",
            format!("{size} is out of range (1..={MAX_SIZE} bytes)"),
        ));
    }
    let depth = args.depth.unwrap_or_else(|| scenario.default_depth());
    if !(1..=MAX_DEPTH).contains(&depth) {
        return Err(usage(
            "depth",
            format!("{depth} is out of range (1..={MAX_DEPTH})"),
        ));
    }
    if scenario == Scenario::Udp && !(UDP_HEADER..=UDP_MAX_DATAGRAM).contains(&size) {
        return Err(usage(
            "size",
            format!(
                "{size} is out of range for udp ({UDP_HEADER}..={UDP_MAX_DATAGRAM} bytes: each \
                 datagram carries a {UDP_HEADER}-byte header)"
            ),
        ));
    }
    if !compare && args.depth.is_some() && !scenario.uses_depth() {
        return Err(usage(
            "depth",
            format!("applies to pipeline, stream and udp, not {scenario}"),
        ));
    }
    if !(1..=MAX_THREADS).contains(&args.threads) {
        return Err(usage(
            "threads",
            format!("{} is out of range (1..={MAX_THREADS})", args.threads),
        ));
    }
    let default_duration = Duration::from_secs(if compare { 3 } else { 10 });
    let duration = args.duration.unwrap_or(default_duration);
    if duration.is_zero() || duration > Duration::from_secs(24 * 3600) {
        return Err(usage(
            "duration",
            "must be more than 0 and at most 24 hours".into(),
        ));
    }
    let warmup = args.warmup.unwrap_or(Duration::from_secs(1));
    if warmup > Duration::from_secs(3600) {
        return Err(usage("warmup", "must be at most an hour".into()));
    }
    if args.timeout.is_zero() {
        return Err(usage("timeout", "must be more than 0".into()));
    }
    let loopback_v4 = matches!(target, SocketAddr::V4(a) if a.ip().is_loopback());
    let source_addrs =
        args.source_addrs
            .unwrap_or(if scenario == Scenario::Connrate && loopback_v4 {
                CONNRATE_SOURCE_ADDRS
            } else {
                1
            });
    if !(1..=254).contains(&source_addrs) {
        return Err(usage(
            "source-addrs",
            format!("{source_addrs} is out of range (1..=254)"),
        ));
    }
    if source_addrs > 1 && !loopback_v4 {
        return Err(usage(
            "source-addrs",
            format!("spreading over 127.0.0.x needs an IPv4 loopback target, not {target}"),
        ));
    }
    Ok(LoadSpec {
        target,
        scenario,
        connections,
        size,
        depth,
        threads: args.threads.min(connections),
        warmup,
        duration,
        timeout: args.timeout,
        source_addrs: source_addrs as u8,
        nodelay: !args.no_nodelay,
        idle_connections: 0,
    })
}

/// The `--idle-connections` counts: one for a single run (default 0), the sweep's list
/// (deduplicated, in the order given) for a comparison.
pub(crate) fn idle_counts(args: &BenchArgs, compare: bool) -> Result<Vec<usize>, BenchError> {
    let mut counts: Vec<usize> = Vec::new();
    for &n in &args.idle_connections {
        if !counts.contains(&n) {
            counts.push(n);
        }
    }
    if counts.is_empty() {
        counts.push(0);
    }
    if !compare && counts.len() > 1 {
        return Err(BenchError::Usage(
            "invalid `--idle-connections`: give one count (a list is swept by --compare)".into(),
        ));
    }
    Ok(counts)
}

/// `spec` with `idle` silent connections, checked against the source addresses they need.
pub(crate) fn with_idle(spec: &LoadSpec, idle: usize) -> Result<LoadSpec, BenchError> {
    if idle > 0 && spec.scenario == Scenario::Udp {
        return Err(BenchError::Usage(
            "invalid `--idle-connections`: idle connections are TCP; the udp scenario has none"
                .into(),
        ));
    }
    let loopback = matches!(spec.target, SocketAddr::V4(a) if a.ip().is_loopback());
    let sources = crate::loadgen::idle_sources_needed(idle);
    if loopback && usize::from(spec.source_addrs) + sources > 254 {
        return Err(BenchError::Usage(format!(
            "invalid `--idle-connections`: {idle} needs {sources} source addresses after the \
             {} of --source-addrs, beyond 127.0.0.254",
            spec.source_addrs
        )));
    }
    Ok(LoadSpec {
        idle_connections: idle,
        ..spec.clone()
    })
}

/// Fails up front, with the numbers, when the open-files limit cannot cover the run.
pub(crate) fn check_fd_limit(spec: &LoadSpec) -> Result<(), BenchError> {
    let needed = spec.fds_needed() as u64;
    procfs::ensure_nofile(needed).map(|_| ()).map_err(|why| {
        let reserve = needed - (spec.connections + spec.idle_connections) as u64;
        let most = procfs::nofile_limit()
            .map(|(_, hard)| hard.saturating_sub(reserve))
            .unwrap_or(0);
        if spec.idle_connections > 0 {
            BenchError::Usage(format!(
                "invalid `--idle-connections`: {} connections plus {} idle ones need about \
                 {needed} open files but {why}; use at most {} idle",
                spec.connections,
                spec.idle_connections,
                most.saturating_sub(spec.connections as u64)
            ))
        } else {
            BenchError::Usage(format!(
                "invalid `--connections`: {} connections need about {needed} open files but \
                 {why}; use at most {most}",
                spec.connections
            ))
        }
    })
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(flatten)]
        bench: BenchArgs,
    }

    fn source_addrs(flags: &[&str], scenario: Scenario, target: &str) -> u8 {
        let args = ["bench", "--target", target]
            .into_iter()
            .chain(flags.iter().copied());
        let cli = Cli::try_parse_from(args).expect("flags parse");
        resolve_spec(&cli.bench, scenario, target.parse().unwrap(), false)
            .expect("spec resolves")
            .source_addrs
    }

    #[test]
    fn connrate_on_ipv4_loopback_spreads_over_source_addresses_by_default() {
        let v4 = "127.0.0.1:7";
        assert_eq!(
            source_addrs(&[], Scenario::Connrate, v4),
            CONNRATE_SOURCE_ADDRS as u8
        );
        assert_eq!(source_addrs(&[], Scenario::Pingpong, v4), 1);
        assert_eq!(source_addrs(&[], Scenario::Connrate, "[::1]:7"), 1);
        assert_eq!(
            source_addrs(&["--source-addrs", "2"], Scenario::Connrate, v4),
            2
        );
    }
}
