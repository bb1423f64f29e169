//! The comparison's results: medians with min–max per (scenario, cell), ratios against the
//! baseline cell, and the `report.md` / `report.json` renderings.

use std::fmt::Write as _;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::Serialize;

use crate::compare_spec::{Cell, CompareSpec};
use crate::measurement::RunResult;
use crate::procfs;
use crate::report::{UdpFigures, micros, thousands};
use crate::scenario::Scenario;

/// Median and range of one figure over the repetitions.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub(crate) struct Spread {
    /// Median (the mean of the middle two for an even count).
    pub median: f64,
    /// Smallest value.
    pub min: f64,
    /// Largest value.
    pub max: f64,
}

impl Spread {
    /// The spread of the finite values, or `None` if there are none.
    pub(crate) fn of(values: impl IntoIterator<Item = f64>) -> Option<Spread> {
        let mut v: Vec<f64> = values.into_iter().filter(|x| x.is_finite()).collect();
        if v.is_empty() {
            return None;
        }
        v.sort_by(f64::total_cmp);
        let n = v.len();
        let median = if n % 2 == 1 {
            v[n / 2]
        } else {
            (v[n / 2 - 1] + v[n / 2]) / 2.0
        };
        Some(Spread {
            median,
            min: v[0],
            max: v[n - 1],
        })
    }
}

/// Where and how the comparison ran.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Meta {
    /// When the first measurement started.
    pub started: String,
    /// When the last one ended.
    pub finished: String,
    /// reactor-pool version.
    pub version: String,
    /// The command line that produced the report.
    pub command: String,
    /// CPUs online.
    pub cpus: usize,
    /// CPU model name from /proc/cpuinfo.
    pub cpu_model: Option<String>,
    /// Kernel release.
    pub kernel: Option<String>,
    /// Unit of /proc/PID/stat CPU times.
    pub clock_ticks_per_second: u64,
    /// Repetitions per measurement.
    pub repeat: usize,
}

/// The load of one scenario.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct ScenarioInfo {
    /// Scenario.
    pub scenario: Scenario,
    /// Connections (connrate: concurrent clients).
    pub connections: usize,
    /// Message size, bytes.
    pub size: usize,
    /// Messages in flight per connection.
    pub depth: usize,
    /// Load-generator threads.
    pub threads: usize,
    /// Warm-up, seconds.
    pub warmup_secs: f64,
    /// Window (idle: hold), seconds.
    pub duration_secs: f64,
    /// Silent connections held through the run (`--idle-connections`).
    pub idle_connections: usize,
}

impl ScenarioInfo {
    /// "50 connections × 64 B, 3 s after 1 s warm-up".
    pub(crate) fn describe(&self) -> String {
        let load = self.describe_load();
        if self.idle_connections > 0 {
            format!(
                "{load}; plus {} idle connections",
                thousands(self.idle_connections as u64)
            )
        } else {
            load
        }
    }

    /// The load without the idle connections.
    pub(crate) fn describe_load(&self) -> String {
        match self.scenario {
            Scenario::Idle => format!(
                "{} connections held {} s, then one {} B echo on each",
                thousands(self.connections as u64),
                self.duration_secs,
                self.size
            ),
            Scenario::Connrate => format!(
                "{} concurrent clients, each: connect, {} B echo, close; {} s after {} s warm-up",
                self.connections, self.size, self.duration_secs, self.warmup_secs
            ),
            Scenario::Udp => format!(
                "{} UDP sockets × {} B datagrams, depth {}, {} s after {} s warm-up",
                self.connections, self.size, self.depth, self.duration_secs, self.warmup_secs
            ),
            Scenario::Pipeline | Scenario::Stream => format!(
                "{} connections × {} B, depth {}, {} s after {} s warm-up",
                self.connections, self.size, self.depth, self.duration_secs, self.warmup_secs
            ),
            Scenario::Pingpong | Scenario::Balance => format!(
                "{} connections × {} B, {} s after {} s warm-up",
                self.connections, self.size, self.duration_secs, self.warmup_secs
            ),
        }
    }
}

/// One (scenario, cell) over its repetitions.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct CellSummary {
    /// Scenario.
    pub scenario: Scenario,
    /// Silent connections held through the run (`--idle-connections`).
    pub idle_connections: usize,
    /// Cell label.
    pub cell: String,
    /// Repetitions measured.
    pub runs: usize,
    /// Messages per second (connrate: connections; idle: echoes per second of echo phase).
    pub msgs_per_sec: Option<Spread>,
    /// Echoed bytes per second.
    pub bytes_per_sec: Option<Spread>,
    /// Server CPU per message, µs (timed scenarios).
    pub server_cpu_per_msg_us: Option<Spread>,
    /// Load-generator CPU per message, µs.
    pub client_cpu_per_msg_us: Option<Spread>,
    /// Server context switches per message.
    pub server_switches_per_msg: Option<Spread>,
    /// Latency percentiles, µs (median over runs of each run's percentile).
    pub p50_us: Option<Spread>,
    /// 90th percentile, µs.
    pub p90_us: Option<Spread>,
    /// 99th percentile, µs.
    pub p99_us: Option<Spread>,
    /// 99.9th percentile, µs.
    pub p999_us: Option<Spread>,
    /// Server RSS at the window's end, bytes.
    pub server_rss_bytes: Option<Spread>,
    /// Idle: server RSS growth per connection, bytes.
    pub rss_per_connection_bytes: Option<Spread>,
    /// Idle: seconds to open every connection.
    pub connect_secs: Option<Spread>,
    /// Errors over all repetitions (load generator plus unclean server exits).
    pub errors: u64,
    /// Error kinds and first examples, for the notes.
    pub error_notes: Vec<String>,
    /// Why the cell was not run at all: its model cannot serve this load (`blocking` with
    /// more than one connection open at once).
    pub not_served: Option<String>,
    /// msg/s divided by the baseline's in the same repetition: median and range over the
    /// repetitions. Pairing by repetition cancels the machine's drift between repetitions.
    pub msgs_ratio: Option<Spread>,
    /// Server CPU/msg divided by the baseline's in the same repetition.
    pub cpu_ratio: Option<Spread>,
    /// Idle: RSS per connection divided by the baseline's in the same repetition.
    pub rss_ratio: Option<Spread>,
    /// The busiest worker's connections over the mean, per run (reactor cells).
    pub imbalance: Option<Spread>,
    /// Connections per worker in the run whose imbalance is the median.
    pub per_worker_connections: Option<Vec<u64>>,
}

/// Everything the comparison produced; `report.json` is this, serialised.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct CompareReport {
    /// Where and how it ran.
    pub meta: Meta,
    /// The cell ratios are computed against.
    pub baseline: String,
    /// The servers compared.
    pub cells: Vec<Cell>,
    /// The loads.
    pub scenarios: Vec<ScenarioInfo>,
    /// Per (scenario, cell) medians and ratios, scenarios in run order, cells in cell order.
    pub summary: Vec<CellSummary>,
    /// Every measurement.
    pub runs: Vec<RunResult>,
}

impl CompareReport {
    /// The summary of `cell` in `scenario` (with an idle-connections sweep: at the sweep's
    /// first count, the one the per-scenario tables and bar charts lead with).
    pub(crate) fn find(&self, scenario: Scenario, cell: &str) -> Option<&CellSummary> {
        self.summary
            .iter()
            .find(|s| s.scenario == scenario && s.cell == cell)
    }

    /// The summary of `cell` in `scenario` with `idle` silent connections.
    pub(crate) fn find_at(
        &self,
        scenario: Scenario,
        idle: usize,
        cell: &str,
    ) -> Option<&CellSummary> {
        self.summary
            .iter()
            .find(|s| s.scenario == scenario && s.idle_connections == idle && s.cell == cell)
    }

    /// The `--idle-connections` counts swept for `scenario`, in run order (one: no sweep).
    pub(crate) fn idle_counts(&self, scenario: Scenario) -> Vec<usize> {
        self.scenarios
            .iter()
            .filter(|s| s.scenario == scenario)
            .map(|s| s.idle_connections)
            .collect()
    }

    /// Scenarios with more than one `--idle-connections` count, in run order.
    pub(crate) fn swept_scenarios(&self) -> Vec<Scenario> {
        let mut out: Vec<Scenario> = Vec::new();
        for s in &self.scenarios {
            if !out.contains(&s.scenario) && self.idle_counts(s.scenario).len() > 1 {
                out.push(s.scenario);
            }
        }
        out
    }
}

/// Aggregates the measurements.
pub(crate) fn build(
    spec: &CompareSpec,
    runs: Vec<RunResult>,
    started: SystemTime,
) -> CompareReport {
    let scenarios: Vec<ScenarioInfo> = spec
        .loads
        .iter()
        .map(|l| ScenarioInfo {
            scenario: l.scenario,
            connections: l.connections,
            size: l.size,
            depth: if l.scenario.uses_depth() { l.depth } else { 1 },
            threads: l.threads,
            warmup_secs: if l.scenario.is_timed() {
                l.warmup.as_secs_f64()
            } else {
                0.0
            },
            duration_secs: l.duration.as_secs_f64(),
            idle_connections: l.idle_connections,
        })
        .collect();
    let mut summary = Vec::new();
    for info in &scenarios {
        for cell in &spec.cells {
            let mine: Vec<&RunResult> = runs
                .iter()
                .filter(|r| {
                    r.scenario == info.scenario
                        && r.report.idle_connections == info.idle_connections
                        && r.cell == cell.label
                })
                .collect();
            summary.push(summarize(info, &cell.label, &mine));
        }
    }
    // Ratios against the baseline, paired by repetition.
    for s in &mut summary {
        let paired = |f: fn(&RunResult) -> Option<f64>| {
            Spread::of(
                runs.iter()
                    .filter(|r| {
                        r.server_started
                            && r.scenario == s.scenario
                            && r.report.idle_connections == s.idle_connections
                            && r.cell == s.cell
                    })
                    .filter_map(|r| {
                        let base = runs.iter().find(|b| {
                            b.server_started
                                && b.scenario == r.scenario
                                && b.report.idle_connections == r.report.idle_connections
                                && b.repetition == r.repetition
                                && b.cell == spec.baseline
                        })?;
                        let (a, b) = (f(r)?, f(base)?);
                        (b > 0.0).then(|| a / b)
                    }),
            )
        };
        s.msgs_ratio = paired(|r| Some(r.report.msgs_per_sec));
        s.cpu_ratio = paired(|r| r.server_cpu_per_msg_us);
        s.rss_ratio = paired(|r| r.rss_per_connection_bytes);
    }
    CompareReport {
        meta: Meta {
            started: utc_timestamp(started),
            finished: utc_timestamp(SystemTime::now()),
            version: env!("CARGO_PKG_VERSION").to_owned(),
            command: std::env::args().collect::<Vec<_>>().join(" "),
            cpus: num_cpus::get(),
            cpu_model: std::fs::read_to_string("/proc/cpuinfo").ok().and_then(|t| {
                t.lines()
                    .find(|l| l.starts_with("model name"))
                    .and_then(|l| l.split_once(':'))
                    .map(|(_, v)| v.trim().to_owned())
            }),
            kernel: std::fs::read_to_string("/proc/sys/kernel/osrelease")
                .ok()
                .map(|s| s.trim().to_owned()),
            clock_ticks_per_second: procfs::clock_ticks_per_second(),
            repeat: spec.repeat,
        },
        baseline: spec.baseline.clone(),
        cells: spec.cells.clone(),
        scenarios,
        summary,
        runs,
    }
}

fn summarize(info: &ScenarioInfo, cell: &str, all: &[&RunResult]) -> CellSummary {
    // Figures come from the runs whose server started; the others count as errors.
    let runs: Vec<&RunResult> = all.iter().copied().filter(|r| r.server_started).collect();
    let spread =
        |f: &dyn Fn(&RunResult) -> Option<f64>| Spread::of(runs.iter().filter_map(|r| f(r)));
    let has_latency = |r: &RunResult| r.report.latency.count > 0;
    let mut error_notes = Vec::new();
    for r in all {
        for e in &r.report.errors.examples {
            if !error_notes.contains(e) {
                error_notes.push(e.clone());
            }
        }
        if r.server_exit != "clean" && r.not_served_because().is_none() {
            let note = format!("server: {}", r.server_exit);
            if !error_notes.contains(&note) {
                error_notes.push(note);
            }
        }
    }
    CellSummary {
        scenario: info.scenario,
        idle_connections: info.idle_connections,
        cell: cell.to_owned(),
        runs: runs.len(),
        msgs_per_sec: spread(&|r| Some(r.report.msgs_per_sec)),
        bytes_per_sec: spread(&|r| Some(r.report.bytes_per_sec)),
        server_cpu_per_msg_us: spread(&|r| r.server_cpu_per_msg_us),
        client_cpu_per_msg_us: spread(&|r| r.client_cpu_per_msg_us),
        server_switches_per_msg: spread(&|r| r.server_switches_per_msg),
        p50_us: spread(&|r| has_latency(r).then_some(r.report.latency.p50_us)),
        p90_us: spread(&|r| has_latency(r).then_some(r.report.latency.p90_us)),
        p99_us: spread(&|r| has_latency(r).then_some(r.report.latency.p99_us)),
        p999_us: spread(&|r| has_latency(r).then_some(r.report.latency.p999_us)),
        server_rss_bytes: spread(&|r| r.server_rss_bytes.map(|b| b as f64)),
        rss_per_connection_bytes: spread(&|r| r.rss_per_connection_bytes),
        connect_secs: spread(&|r| r.report.idle.map(|i| i.connect_secs)),
        errors: all.iter().map(|r| r.errors()).sum(),
        error_notes,
        not_served: all
            .iter()
            .find_map(|r| r.not_served_because())
            .map(str::to_owned),
        msgs_ratio: None,
        cpu_ratio: None,
        rss_ratio: None,
        imbalance: spread(&|r| r.imbalance),
        per_worker_connections: median_run_spread(&runs),
    }
}

/// Connections per worker of the run whose imbalance is the median (the lower middle one
/// for an even count), so the table shows a spread that was actually measured.
fn median_run_spread(runs: &[&RunResult]) -> Option<Vec<u64>> {
    let mut measured: Vec<(f64, &Vec<u64>)> = runs
        .iter()
        .filter_map(|r| Some((r.imbalance?, r.per_worker_connections.as_ref()?)))
        .collect();
    measured.sort_by(|a, b| a.0.total_cmp(&b.0));
    let middle = measured.len().checked_sub(1)? / 2;
    Some(measured[middle].1.clone())
}

fn count(x: f64) -> String {
    thousands(x.round().max(0.0) as u64)
}

fn cpu_us(x: f64) -> String {
    if x >= 100.0 {
        format!("{x:.0} µs")
    } else if x >= 10.0 {
        format!("{x:.1} µs")
    } else {
        format!("{x:.2} µs")
    }
}

fn mib(bytes: f64) -> String {
    format!("{:.1} MiB", bytes / (1024.0 * 1024.0))
}

/// "value (min–max)", or "–".
fn with_range(s: Option<Spread>, f: fn(f64) -> String, show_range: bool) -> String {
    match s {
        Some(s) if show_range && s.max > s.min => {
            format!("{} ({}–{})", f(s.median), f(s.min), f(s.max))
        }
        Some(s) => f(s.median),
        None => "–".to_owned(),
    }
}

/// "1.02× (0.95–1.10)": a paired ratio's median and range.
fn ratio(r: Option<Spread>) -> String {
    match r {
        Some(s) if format!("{:.2}", s.min) != format!("{:.2}", s.max) => {
            format!("{:.2}× ({:.2}–{:.2})", s.median, s.min, s.max)
        }
        Some(s) => format!("{:.2}×", s.median),
        None => "–".to_owned(),
    }
}

fn median(s: Option<Spread>, f: fn(f64) -> String) -> String {
    s.map_or_else(|| "–".to_owned(), |s| f(s.median))
}

/// The Markdown report.
pub(crate) fn markdown(report: &CompareReport, charts: &[(&str, &str)]) -> String {
    let mut md = String::new();
    let m = &report.meta;
    let _ = writeln!(md, "# reactor-pool comparison\n");
    let _ = writeln!(
        md,
        "Measured {} – {} on {} CPUs{}{}; reactor-pool {}. Every cell ran {} time{} with a \
         fresh server each time, the order of cells rotated between repetitions; figures are \
         medians, with min–max in parentheses. Ratios are against **{}**, computed within \
         each repetition (so drift of the machine between repetitions cancels), then the \
         median and range of those.\n",
        m.started,
        m.finished,
        m.cpus,
        m.cpu_model
            .as_deref()
            .map(|c| format!(" ({c})"))
            .unwrap_or_default(),
        m.kernel
            .as_deref()
            .map(|k| format!(", Linux {k}"))
            .unwrap_or_default(),
        m.version,
        m.repeat,
        if m.repeat == 1 { "" } else { "s" },
        report.baseline
    );
    let _ = writeln!(
        md,
        "The load generator runs on the same machine as the server, so msg/s largely shows how \
         the cores were shared between them. **Server CPU per message** (user + system time \
         of the server process and its reaped children — the fork model's connections — over \
         the measured window, from `/proc/PID/stat`, divided by \
         the messages echoed in it) is the figure that compares servers fairly; \
         **switches** are the server's context switches (all threads) per message, the cost \
         of sleeping and being woken. Latency is from the write carrying a message's first \
         byte to the read completing its echo.\n"
    );
    let base = &report.baseline;
    for info in &report.scenarios {
        let _ = writeln!(md, "## {} — {}\n", info.scenario, info.describe());
        let rows: Vec<&CellSummary> = report
            .summary
            .iter()
            .filter(|s| s.scenario == info.scenario)
            .collect();
        if info.scenario == Scenario::Idle {
            let _ = writeln!(
                md,
                "| server | RSS per connection | × {base} | server RSS | time to connect all | echo p50 | echo p99 | errors |"
            );
            let _ = writeln!(md, "|---|---:|---:|---:|---:|---:|---:|---:|");
            for s in &rows {
                if s.not_served.is_some() {
                    let _ = writeln!(md, "| {} | {NOT_SERVED} | | | | | | |", s.cell);
                    continue;
                }
                let _ = writeln!(
                    md,
                    "| {} | {} | {} | {} | {} | {} | {} | {} |",
                    s.cell,
                    with_range(s.rss_per_connection_bytes, |b| format!("{b:.0} B"), true),
                    ratio(s.rss_ratio),
                    median(s.server_rss_bytes, mib),
                    median(s.connect_secs, |x| format!("{x:.2} s")),
                    median(s.p50_us, micros),
                    median(s.p99_us, micros),
                    s.errors
                );
            }
        } else {
            let unit = info.scenario.unit();
            let _ = writeln!(
                md,
                "| server | {unit}/s | × {base} | server CPU/{unit} | × {base} | switches/{unit} | p50 | p99 | p99.9 | server RSS | errors |"
            );
            let _ = writeln!(
                md,
                "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
            );
            for s in &rows {
                if s.not_served.is_some() {
                    let _ = writeln!(md, "| {} | {NOT_SERVED} | | | | | | | | | |", s.cell);
                    continue;
                }
                let _ = writeln!(
                    md,
                    "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
                    s.cell,
                    with_range(s.msgs_per_sec, count, true),
                    ratio(s.msgs_ratio),
                    with_range(s.server_cpu_per_msg_us, cpu_us, true),
                    ratio(s.cpu_ratio),
                    median(s.server_switches_per_msg, |x| format!("{x:.3}")),
                    median(s.p50_us, micros),
                    median(s.p99_us, micros),
                    median(s.p999_us, micros),
                    median(s.server_rss_bytes, mib),
                    s.errors
                );
            }
        }
        let client = Spread::of(
            report
                .runs
                .iter()
                .filter(|r| r.scenario == info.scenario)
                .filter_map(|r| r.client_cpu_per_msg_us),
        );
        if let Some(c) = client {
            let threads = if info.threads == 1 {
                "thread"
            } else {
                "threads"
            };
            let _ = writeln!(
                md,
                "\nLoad generator: {} {threads}, {} of CPU per {} (median over all runs).",
                info.threads,
                cpu_us(c.median),
                info.scenario.unit()
            );
        }
        if info.scenario == Scenario::Udp {
            let _ = writeln!(
                md,
                "\nWhat UDP did to the datagrams (all runs of each server; `serve` cells ran with `--udp`):"
            );
            for s in &rows {
                let mut total = UdpFigures::default();
                for r in report
                    .runs
                    .iter()
                    .filter(|r| r.scenario == info.scenario && r.cell == s.cell)
                {
                    total.merge(&r.report.udp.unwrap_or_default());
                }
                let _ = writeln!(
                    md,
                    "- {}: {} sent, {} lost ({} late), {} duplicated, {} reordered",
                    s.cell,
                    thousands(total.sent),
                    thousands(total.lost),
                    thousands(total.late),
                    thousands(total.duplicates),
                    thousands(total.reordered)
                );
            }
        }
        let notes: Vec<String> = rows
            .iter()
            .flat_map(|s| {
                s.error_notes
                    .iter()
                    .map(move |n| format!("{}: {n}", s.cell))
            })
            .collect();
        let not_served: Vec<String> = rows
            .iter()
            .filter_map(|s| Some(format!("{}: {}", s.cell, s.not_served.as_deref()?)))
            .collect();
        if !not_served.is_empty() {
            let _ = writeln!(md, "\nNot served (not run; not an error):");
            for n in not_served {
                let _ = writeln!(md, "- {n}");
            }
        }
        if !notes.is_empty() {
            let _ = writeln!(md, "\nErrors (first of each kind):");
            for n in notes {
                let _ = writeln!(md, "- {n}");
            }
        }
        let _ = writeln!(md);
    }
    let balanced: Vec<&CellSummary> = report
        .summary
        .iter()
        .filter(|s| s.imbalance.is_some())
        .collect();
    if !balanced.is_empty() {
        let _ = writeln!(md, "## Balance\n");
        let _ = writeln!(
            md,
            "Connections each worker handled in a run (warm-up included), from the server's \
             per-worker counters, and the imbalance: the busiest worker's count over the mean \
             (1.00 is perfectly even; 4.00 on 4 workers means one worker got everything). \
             The spread shown is the run with the median imbalance.\n"
        );
        let _ = writeln!(
            md,
            "| scenario | server | connections per worker | max/mean |"
        );
        let _ = writeln!(md, "|---|---|---|---:|");
        for s in balanced {
            let spread = s
                .per_worker_connections
                .as_ref()
                .map(|v| {
                    v.iter()
                        .map(|&c| thousands(c))
                        .collect::<Vec<_>>()
                        .join(" / ")
                })
                .unwrap_or_else(|| "–".to_owned());
            let _ = writeln!(
                md,
                "| {} | {} | {} | {} |",
                s.scenario,
                s.cell,
                spread,
                with_range(s.imbalance, |x| format!("{x:.2}"), true)
            );
        }
        let _ = writeln!(md);
    }
    sweep_markdown(&mut md, report);
    let _ = writeln!(md, "## Charts\n");
    for (file, title) in charts {
        let _ = writeln!(md, "![{title}]({file})\n");
    }
    let _ = writeln!(md, "## Servers\n");
    let _ = writeln!(md, "| cell | command |");
    let _ = writeln!(md, "|---|---|");
    for c in &report.cells {
        let _ = writeln!(md, "| {} | `{}` |", c.label, c.command.replace('|', "\\|"));
    }
    let _ = writeln!(md, "\nCommand: `{}`", report.meta.command.replace('`', "'"));
    md
}

/// What a sweep cell shows when no run of it served the load.
pub(crate) const NOT_SERVED: &str = "not served";

/// The `--idle-connections` sweep: server CPU per message of each cell at each idle count,
/// and why a cell was not served where it was not (select above FD_SETSIZE).
fn sweep_markdown(md: &mut String, report: &CompareReport) {
    let swept = report.swept_scenarios();
    if swept.is_empty() {
        return;
    }
    let _ = writeln!(md, "## Server CPU per message against idle connections\n");
    let _ = writeln!(
        md,
        "Each column adds that many silent connections, opened before the load and held \
         through it, to the same active load. A model whose every call looks at every \
         connection (`poll`, `select`) pays for them on every message; epoll pays only for \
         the ready ones. In parentheses: the median against the same server's at the first \
         count. **{NOT_SERVED}**: the server cannot take that many connections (it refused \
         to start; the reason follows the table).\n"
    );
    for sc in swept {
        let counts = report.idle_counts(sc);
        let Some(info) = report.scenarios.iter().find(|s| s.scenario == sc) else {
            continue;
        };
        let _ = writeln!(
            md,
            "### {sc} — {}: server CPU per {}\n",
            info.describe_load(),
            sc.unit()
        );
        let header: Vec<String> = counts
            .iter()
            .map(|&n| format!("{} idle", thousands(n as u64)))
            .collect();
        let _ = writeln!(md, "| server | {} |", header.join(" | "));
        let _ = writeln!(md, "|---|{}", "---:|".repeat(counts.len()));
        let mut reasons: Vec<String> = Vec::new();
        for cell in &report.cells {
            let first = report
                .find_at(sc, counts[0], &cell.label)
                .and_then(|s| s.server_cpu_per_msg_us)
                .map(|s| s.median);
            let row: Vec<String> = counts
                .iter()
                .map(|&n| {
                    let Some(s) = report.find_at(sc, n, &cell.label) else {
                        return "–".to_owned();
                    };
                    if s.runs == 0 {
                        if let Some(why) = &s.not_served {
                            reasons.push(format!(
                                "{} at {} idle: {why}",
                                cell.label,
                                thousands(n as u64)
                            ));
                        } else if let Some(note) = s.error_notes.first() {
                            // The server's own one-line error, when its log gave one.
                            let why = note
                                .rsplit_once("its log says: ")
                                .map_or(note.as_str(), |(_, t)| t.trim_end_matches(')'));
                            reasons.push(format!(
                                "{} at {} idle: {why}",
                                cell.label,
                                thousands(n as u64)
                            ));
                        }
                        return NOT_SERVED.to_owned();
                    }
                    let mut text = match (s.server_cpu_per_msg_us, first) {
                        (Some(v), Some(f)) if f > 0.0 && n != counts[0] => {
                            format!("{} ({:.2}×)", cpu_us(v.median), v.median / f)
                        }
                        (Some(v), _) => cpu_us(v.median),
                        (None, _) => "–".to_owned(),
                    };
                    if s.errors > 0 {
                        text += &format!(", {} errors", s.errors);
                    }
                    text
                })
                .collect();
            let _ = writeln!(md, "| {} | {} |", cell.label, row.join(" | "));
        }
        if !reasons.is_empty() {
            let _ = writeln!(md, "\nNot served:");
            for r in reasons {
                let _ = writeln!(md, "- {r}");
            }
        }
        let _ = writeln!(md);
    }
}

/// Seconds since the Unix epoch as `YYYY-MM-DD HH:MM:SS UTC`.
pub(crate) fn utc_timestamp(t: SystemTime) -> String {
    let secs = t
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Howard Hinnant's days-to-civil algorithm.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02} UTC",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn spreads_take_the_median() {
        let s = Spread::of([3.0, 1.0, 2.0]).unwrap();
        assert_eq!((s.median, s.min, s.max), (2.0, 1.0, 3.0));
        let s = Spread::of([4.0, 1.0, 2.0, 3.0]).unwrap();
        assert_eq!(s.median, 2.5);
        assert!(Spread::of([f64::NAN]).is_none());
        assert!(Spread::of(std::iter::empty()).is_none());
    }

    #[test]
    fn timestamps_are_civil_dates() {
        assert_eq!(utc_timestamp(UNIX_EPOCH), "1970-01-01 00:00:00 UTC");
        let t = UNIX_EPOCH + Duration::from_secs(951_782_400 + 3_661); // 2000-02-29 01:01:01
        assert_eq!(utc_timestamp(t), "2000-02-29 01:01:01 UTC");
    }

    #[test]
    fn ranges_are_shown_only_when_they_differ() {
        let s = Spread::of([5.0, 5.0]);
        assert_eq!(with_range(s, count, true), "5");
        let s = Spread::of([1000.0, 2000.0, 3000.0]);
        assert_eq!(with_range(s, count, true), "2,000 (1,000–3,000)");
        assert_eq!(with_range(None, count, true), "–");
    }
}
