//! `reactor-pool bench`: a load generator for echo servers, and a runner that compares
//! servers (models × worker counts × scenarios, plus external peers) and writes a report.
//!
//! This crate is the `reactor-pool-bench` binary; `reactor-pool bench ARGS` execs it with
//! the same arguments, so the server itself carries none of its dependencies (plotters,
//! hdrhistogram, indicatif, serde_json).
//!
//! - [`scenario`]: `Scenario`, the traffic shapes and their default sizes.
//! - [`pattern`]: `Pattern`, the per-connection byte stream that makes every echo checkable.
//! - [`loadgen`]: `LoadSpec` and `run`, the mio-based load generator (few threads, many
//!   nonblocking connections), with an `Observer` hook at the measured window's edges.
//! - [`report`]: `RunReport`, one run's figures, as a table, JSON or CSV.
//! - [`procfs`]: CPU time, RSS and open descriptors of a process; the open-files limit.
//! - [`server_process`]: `ServerProcess`, a server spawned for one measurement.
//! - [`compare`]: the comparison runner (`--compare`).
//! - [`summary`]: medians, spreads and ratios of a comparison; its Markdown and JSON.
//! - [`chart`]: the comparison's SVG charts (plotters).

pub mod chart;
pub mod compare;
pub mod loadgen;
pub mod pattern;
pub mod procfs;
pub mod report;
pub mod scenario;
pub mod server_process;
pub mod summary;

use std::io::IsTerminal;
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};

pub use loadgen::{LoadSpec, NoObserver, Observer};
use reactor_pool::config::parse_duration;
pub use report::RunReport;
pub use scenario::Scenario;

/// Exit code for bad arguments.
pub const EXIT_USAGE: u8 = 2;
/// Exit code for failures at run time, and for runs that counted errors.
const EXIT_FAILURE: u8 = 1;

/// Largest message size accepted.
const MAX_SIZE: usize = 16 << 20;
/// Most messages in flight per connection.
const MAX_DEPTH: usize = 4096;
/// Most load-generator threads.
const MAX_THREADS: usize = 64;
/// Runs shorter than this get no progress bar.
const PROGRESS_AFTER: Duration = Duration::from_secs(2);

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
    /// Traffic shape: pingpong, pipeline, connrate, idle or stream.
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
    /// for more connections than one address has ephemeral ports.
    #[arg(long, value_name = "N", default_value_t = 1)]
    pub source_addrs: usize,
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
pub enum BenchError {
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

/// Runs `reactor-pool bench` and maps the outcome to an exit code, printing errors.
pub fn main(args: &BenchArgs) -> ExitCode {
    let result = if args.compare {
        compare::run_cli(args)
    } else {
        run_single(args)
    };
    match result {
        Ok(0) => ExitCode::SUCCESS,
        Ok(errors) => {
            eprintln!("reactor-pool: bench: {errors} errors counted (see the report)");
            ExitCode::from(EXIT_FAILURE)
        }
        Err(BenchError::Usage(m)) => {
            eprintln!("reactor-pool: error: {m}");
            ExitCode::from(EXIT_USAGE)
        }
        Err(BenchError::Runtime(m)) => {
            eprintln!("reactor-pool: error: {m}");
            ExitCode::from(EXIT_FAILURE)
        }
    }
}

/// One load-generator run against `--target`. Returns the number of errors counted.
fn run_single(args: &BenchArgs) -> Result<u64, BenchError> {
    let target_text = args.target.as_deref().unwrap_or_default();
    let target = resolve_target(target_text)?;
    let spec = resolve_spec(args, args.scenario, target, false)?;
    check_fd_limit(&spec)?;
    let total = if spec.scenario.is_timed() {
        spec.warmup + spec.duration
    } else {
        spec.duration
    };
    let mut observer = ProgressObserver::new(show_progress(args, total), total);
    let report = loadgen::run(&spec, &mut observer)
        .map_err(|e| BenchError::Runtime(format!("load generator failed: {e}")))?;
    observer.finish();
    let text = if args.json {
        report.to_json() + "\n"
    } else if args.csv {
        format!("{}\n{}\n", RunReport::CSV_HEADER, report.to_csv_row())
    } else {
        report.to_table()
    };
    print!("{text}");
    Ok(report.errors.total())
}

/// Whether a progress bar should be drawn for a run of about `total`.
fn show_progress(args: &BenchArgs, total: Duration) -> bool {
    !args.no_progress && total > PROGRESS_AFTER && std::io::stderr().is_terminal()
}

/// Resolves `--target` to one address (the first IPv4 one if there are several).
pub fn resolve_target(text: &str) -> Result<SocketAddr, BenchError> {
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
pub fn resolve_spec(
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
    if !compare && args.depth.is_some() && !scenario.uses_depth() {
        return Err(usage(
            "depth",
            format!("applies to pipeline and stream, not {scenario}"),
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
    if !(1..=254).contains(&args.source_addrs) {
        return Err(usage(
            "source-addrs",
            format!("{} is out of range (1..=254)", args.source_addrs),
        ));
    }
    if args.source_addrs > 1 && !matches!(target, SocketAddr::V4(a) if a.ip().is_loopback()) {
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
        source_addrs: args.source_addrs as u8,
        nodelay: !args.no_nodelay,
    })
}

/// Fails up front, with the numbers, when the open-files limit cannot cover the run.
pub fn check_fd_limit(spec: &LoadSpec) -> Result<(), BenchError> {
    let needed = spec.fds_needed() as u64;
    procfs::ensure_nofile(needed).map(|_| ()).map_err(|why| {
        let reserve = needed - spec.connections as u64;
        let most = procfs::nofile_limit()
            .map(|(_, hard)| hard.saturating_sub(reserve))
            .unwrap_or(0);
        BenchError::Usage(format!(
            "invalid `--connections`: {} connections need about {needed} open files but \
             {why}; use at most {most}",
            spec.connections
        ))
    })
}

/// Draws a progress bar on stderr (when enabled) from the load generator's ticks.
#[derive(Debug)]
struct ProgressObserver {
    bar: Option<ProgressBar>,
    /// Messages and time at the previous tick, for the current rate.
    last: (Duration, u64),
}

impl ProgressObserver {
    fn new(enabled: bool, total: Duration) -> ProgressObserver {
        let bar = enabled.then(|| {
            let bar = ProgressBar::new(total.as_millis() as u64);
            if let Ok(style) =
                ProgressStyle::with_template("{spinner} [{bar:30}] {elapsed}/{duration} {msg}")
            {
                bar.set_style(style.progress_chars("=> "));
            }
            bar
        });
        ProgressObserver {
            bar,
            last: (Duration::ZERO, 0),
        }
    }

    fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

impl Observer for ProgressObserver {
    fn tick(&mut self, elapsed: Duration, messages: u64) {
        let Some(bar) = &self.bar else { return };
        let (t0, m0) = self.last;
        let dt = (elapsed - t0.min(elapsed)).as_secs_f64();
        if dt > 0.0 {
            let rate = (messages - m0.min(messages)) as f64 / dt;
            bar.set_message(format!("{rate:.0} msg/s"));
        }
        bar.set_position(elapsed.as_millis() as u64);
        self.last = (elapsed, messages);
    }
}
