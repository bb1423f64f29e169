//! `reactor-pool bench`: a load generator for echo servers, and a runner that compares
//! servers (models × worker counts × scenarios, plus external peers) and writes a report.
//!
//! This crate is the `reactor-pool-bench` binary; `reactor-pool bench ARGS` execs it with
//! the same arguments, so the server itself carries none of its dependencies (plotters,
//! hdrhistogram, indicatif, serde_json).
//!
//! Modules, each depending only on those listed before it:
//! - `scenario`: `Scenario`, the traffic shapes and their default sizes.
//! - `pattern`: `Pattern`, the per-connection byte stream that makes every echo checkable,
//!   and the check itself.
//! - `spec`: `LoadSpec`, one load-generator run, resolved.
//! - `report`: `RunReport`, one run's figures, as a table, JSON or CSV.
//! - [`loadgen`]: `run`, the mio-based load generator (few threads, many nonblocking
//!   connections), with an `Observer` hook at the measured window's edges.
//! - `procfs`: CPU time, RSS and open descriptors of a process; the open-files limit.
//! - `args`: `BenchArgs`, the flags, and their validation into a `LoadSpec`.
//! - `server_process`: `ServerProcess`, a server spawned for one measurement.
//! - `compare_spec`: `Cell` and `CompareSpec`, a comparison resolved from the flags.
//! - `measurement`: `RunResult`, one measurement of one cell.
//! - `summary`: medians, spreads and ratios of a comparison; its Markdown.
//! - `chart`: the comparison's SVG charts (plotters).
//! - `compare`: the comparison runner (`--compare`) and its report directory.
//!
//! The crate root runs a single load (`main`, `run_single`) or hands over to `compare`. Its
//! public API is what the binary and the tests use: [`main`], [`BenchArgs`], [`loadgen::run`]
//! with its [`LoadSpec`] and [`RunReport`].

mod args;
mod chart;
mod compare;
mod compare_spec;
pub mod loadgen;
mod measurement;
mod pattern;
mod procfs;
mod report;
mod scenario;
mod server_process;
mod spec;
mod summary;

use std::io::IsTerminal;
use std::process::ExitCode;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};

pub use args::BenchArgs;
use args::{BenchError, check_fd_limit, idle_counts, resolve_spec, resolve_target, with_idle};
use loadgen::Observer;
pub use report::{ErrorCounts, IdleFigures, Latency, RunReport, UdpFigures};
pub use scenario::Scenario;
pub use spec::LoadSpec;

/// Exit code for bad arguments.
pub const EXIT_USAGE: u8 = 2;
/// Exit code for failures at run time, and for runs that counted errors.
const EXIT_FAILURE: u8 = 1;
/// Runs shorter than this get no progress bar.
const PROGRESS_AFTER: Duration = Duration::from_secs(2);

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
    let spec = with_idle(&spec, idle_counts(args, false)?[0])?;
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
