//! The comparison runner (`reactor-pool bench --compare`): for every repetition, scenario
//! and cell (model × worker count, or external peer) it starts a fresh server, runs the load
//! generator in this process, samples the server's CPU time and memory from `/proc` at the
//! measured window's edges, and stops the server. Cells run in a rotated order in each
//! repetition (A B C, B C A, C A B, ...) so slow drifts of the machine spread over all of
//! them. The results go to a report directory: `report.md`, `report.json`, SVG charts, and
//! the servers' logs.

use std::path::Path;
use std::time::{Duration, Instant, SystemTime};

use indicatif::{ProgressBar, ProgressStyle};
use reactor_pool::Model;
use reactor_pool::config::Config;

use crate::args::{BenchArgs, BenchError, check_fd_limit};
use crate::balance;
use crate::chart;
use crate::compare_spec::{self, Cell, CompareSpec};
use crate::loadgen::{self, Observer};
use crate::measurement::RunResult;
use crate::procfs::{self, ProcSample};
use crate::report::thousands;
use crate::scenario::Scenario;
use crate::server_process::{Exit, Launch, ServerProcess};
use crate::spec::LoadSpec;
use crate::summary::{self, CompareReport};

/// How long the idle scenario waits for the server to have accepted every connection
/// before the hold starts.
const ACCEPT_WAIT: Duration = Duration::from_secs(10);

/// `bench --compare` from the command line. Returns the number of errors counted.
pub(crate) fn run_cli(args: &BenchArgs) -> Result<u64, BenchError> {
    let spec = compare_spec::resolve(args)?;
    for load in &spec.loads {
        check_fd_limit(load)?;
    }
    let report = run(&spec)?;
    let markdown = summary::markdown(&report, &chart::planned(&report));
    print!("{markdown}");
    println!(
        "\nreport written to {} (report.md, report.json, *.svg, logs/)",
        spec.out.display()
    );
    Ok(report.runs.iter().map(RunResult::errors).sum())
}

/// The order of the cells in repetition `rep`: rotated by `rep` places.
pub(crate) fn rotation(cells: usize, rep: usize) -> Vec<usize> {
    (0..cells).map(|i| (i + rep) % cells.max(1)).collect()
}

/// Runs the whole comparison and writes the report directory.
pub(crate) fn run(spec: &CompareSpec) -> Result<CompareReport, BenchError> {
    let logs = spec.out.join("logs");
    std::fs::create_dir_all(&logs)
        .map_err(|e| BenchError::Runtime(format!("cannot create {}: {e}", logs.display())))?;
    let started = SystemTime::now();
    let total_runs = spec.repeat * spec.loads.len() * spec.cells.len();
    let bar = spec.progress.then(|| {
        let bar = ProgressBar::new(total_runs as u64);
        if let Ok(style) = ProgressStyle::with_template("[{bar:30}] {pos}/{len} {elapsed} {msg}") {
            bar.set_style(style.progress_chars("=> "));
        }
        bar
    });

    let mut runs = Vec::with_capacity(total_runs);
    for rep in 0..spec.repeat {
        for load in &spec.loads {
            for (position, &i) in rotation(spec.cells.len(), rep).iter().enumerate() {
                let cell = &spec.cells[i];
                if let Some(bar) = &bar {
                    bar.set_message(format!(
                        "{}{} {} (repetition {}/{})",
                        load.scenario,
                        idle_suffix(load.idle_connections),
                        cell.label,
                        rep + 1,
                        spec.repeat
                    ));
                }
                let idle = if load.idle_connections > 0 {
                    format!("-idle{}", load.idle_connections)
                } else {
                    String::new()
                };
                let log = logs.join(format!(
                    "{}{idle}-{}-r{}.log",
                    load.scenario,
                    file_safe(&cell.label),
                    rep + 1
                ));
                let result = measure(cell, load, rep, position, &log)?;
                if let Some(bar) = &bar {
                    bar.inc(1);
                    bar.println(run_line(&result));
                }
                runs.push(result);
            }
        }
    }
    if let Some(bar) = &bar {
        bar.finish_and_clear();
    }

    let report = summary::build(spec, runs, started);
    write_report(&spec.out, &report)?;
    Ok(report)
}

/// One line per finished measurement, shown above the progress bar.
fn run_line(r: &RunResult) -> String {
    let unit = r.scenario.unit();
    let mut line = format!(
        "{}{} {} #{}: {} {unit}/s",
        r.scenario,
        idle_suffix(r.report.idle_connections),
        r.cell,
        r.repetition + 1,
        thousands(r.report.msgs_per_sec.round() as u64)
    );
    if let Some(cpu) = r.server_cpu_per_msg_us {
        line += &format!(", server {cpu:.2} µs CPU/{unit}");
    }
    if let Some(rss) = r.rss_per_connection_bytes {
        line += &format!(", {rss:.0} B RSS/connection");
    }
    if let (Some(per_worker), Some(imbalance)) = (&r.per_worker_connections, r.imbalance) {
        line += &format!(", per worker {per_worker:?} (max/mean {imbalance:.2})");
    }
    if r.errors() > 0 {
        line += &format!(", errors: {}", r.report.errors.summary());
    }
    if r.server_exit != "clean" {
        line += &format!(" (server: {})", r.server_exit);
    }
    line
}

fn write_report(out: &Path, report: &CompareReport) -> Result<(), BenchError> {
    let write = |name: &str, text: &str| {
        let path = out.join(name);
        std::fs::write(&path, text)
            .map_err(|e| BenchError::Runtime(format!("cannot write {}: {e}", path.display())))
    };
    let json = serde_json::to_string_pretty(report)
        .map_err(|e| BenchError::Runtime(format!("cannot encode the report: {e}")))?;
    write("report.json", &(json + "\n"))?;
    write(
        "report.md",
        &summary::markdown(report, &chart::planned(report)),
    )?;
    chart::write_all(out, report)
        .map_err(|e| BenchError::Runtime(format!("cannot draw the charts: {e}")))?;
    Ok(())
}

/// " +N idle" for a load with silent connections, nothing without.
fn idle_suffix(idle: usize) -> String {
    if idle > 0 {
        format!(" +{} idle", thousands(idle as u64))
    } else {
        String::new()
    }
}

fn file_safe(label: &str) -> String {
    label
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// One measurement: start the server, load it, sample it, stop it.
fn measure(
    cell: &Cell,
    load: &LoadSpec,
    repetition: usize,
    position: usize,
    log: &Path,
) -> Result<RunResult, BenchError> {
    if let Some(why) = cannot_serve(cell, load) {
        return Ok(RunResult::not_served(
            cell, load, repetition, position, &why,
        ));
    }
    let launch = launch_for(cell, load);
    let mut server = match ServerProcess::start(&launch, log) {
        Ok(server) => server,
        // Recorded, not fatal: a model may refuse a load (select above FD_SETSIZE), and the
        // rest of the comparison is still worth having.
        Err(e) => {
            return Ok(RunResult::not_started(
                cell,
                load,
                repetition,
                position,
                &e.to_string(),
            ));
        }
    };
    let pid = server.pid();
    let start_sample = procfs::sample(Some(pid)).ok();
    let start_fds = procfs::open_fds(pid).unwrap_or(0);
    let mut spec = load.clone();
    spec.target = server.addr();
    let mut observer = Sampler {
        pid,
        start_fds,
        idle_open: 0,
        at_start: None,
        at_end: None,
    };
    let report = loadgen::run(&spec, &mut observer)
        .map_err(|e| BenchError::Runtime(format!("load generator failed: {e}")))?;
    let per_worker = if cell.metrics && server.is_running() {
        match balance::scrape_per_worker(log) {
            Ok(per_worker) => Some(per_worker),
            Err(e) => {
                eprintln!("{} {}: no balance figures: {e}", load.scenario, cell.label);
                None
            }
        }
    } else {
        None
    };
    let still_running = server.is_running();
    let exit = server.stop();
    let server_exit = match (still_running, exit) {
        (true, Exit::Clean) => "clean".to_owned(),
        (false, Exit::Clean) => "exited during the run".to_owned(),
        (_, Exit::Failed(how)) => how,
    };

    // The samples bracket the counting window as closely as the coordinator manages (it can
    // wake late on a loaded machine), so rates are taken over the sampled interval and
    // related to the message rate over the window: CPU per message = CPU rate / message rate.
    let window = observer.at_start.zip(observer.at_end);
    let sampled_secs = window.map(|((t0, ..), (t1, ..))| (t1 - t0).as_secs_f64());
    let msg_rate = report.messages as f64 / report.duration_secs.max(1e-9);
    let per_msg = |delta: f64| match sampled_secs {
        Some(secs) if secs > 0.0 && report.messages > 0 => Some(delta / secs / msg_rate),
        _ => None,
    };
    let server_cpu = window.map(|((_, s0, _), (_, s1, _))| s1.cpu.saturating_sub(s0.cpu));
    let client_cpu = window.map(|((_, _, c0), (_, _, c1))| c1.cpu.saturating_sub(c0.cpu));
    let server_end = observer.at_end.map(|(_, s, _)| s);
    let switches = window.map(|((_, s0, _), (_, s1, _))| {
        s1.context_switches.saturating_sub(s0.context_switches) as f64
    });
    let rss_per_connection = match (&report.idle, start_sample, server_end) {
        (Some(idle), Some(s0), Some(s1)) if idle.established > 0 => {
            let open = idle.established + report.idle_connections_opened;
            Some((s1.rss_bytes as f64 - s0.rss_bytes as f64) / open as f64)
        }
        _ => None,
    };
    // Idle's messages are the echoes after the hold, outside the sampled window.
    let timed = load.scenario.is_timed();
    Ok(RunResult {
        cell: cell.label.clone(),
        scenario: load.scenario,
        repetition,
        position,
        server_started: true,
        sampled_secs,
        server_cpu_secs: server_cpu.map(|d| d.as_secs_f64()),
        server_cpu_per_msg_us: server_cpu
            .filter(|_| timed)
            .and_then(|d| per_msg(d.as_secs_f64() * 1e6)),
        client_cpu_per_msg_us: client_cpu
            .filter(|_| timed)
            .and_then(|d| per_msg(d.as_secs_f64() * 1e6)),
        server_switches_per_msg: switches.filter(|_| timed).and_then(per_msg),
        server_rss_start_bytes: start_sample.map(|s| s.rss_bytes),
        server_rss_bytes: server_end.map(|s| s.rss_bytes),
        server_rss_peak_bytes: server_end.map(|s| s.rss_peak_bytes),
        rss_per_connection_bytes: rss_per_connection,
        imbalance: per_worker.as_deref().and_then(balance::imbalance),
        per_worker_connections: per_worker,
        server_exit,
        report,
    })
}

/// Why the cell's model cannot serve `load` at all, if it cannot: it serves one connection
/// at a time (`blocking`) and the load keeps several open, or the load needs more
/// connections than the model can hold (`select`: FD_SETSIZE). Such a cell is shown as not
/// served, with this reason, instead of figures from a server that left connections
/// waiting or refused them.
fn cannot_serve(cell: &Cell, load: &LoadSpec) -> Option<String> {
    let model: Model = cell.model.parse().ok()?;
    let open = load.connections + load.idle_connections;
    if model.serves_one_at_a_time() && open > 1 {
        return Some(format!(
            "the {model} model serves one connection at a time; this load keeps {} open at once",
            thousands(open as u64)
        ));
    }
    let ceiling = model.connection_ceiling()?;
    (open > ceiling).then(|| {
        format!(
            "the {model} model serves at most {} connections at once; this load keeps {} open",
            thousands(ceiling as u64),
            thousands(open as u64)
        )
    })
}

/// The cell's launch for `load`: `serve` gets `--max-connections` when the load (active plus
/// idle connections) needs more than the default allows, and `--udp` for the udp scenario.
fn launch_for(cell: &Cell, load: &LoadSpec) -> Launch {
    let default_max = Config::default().max_connections;
    let needed = load.connections + load.idle_connections;
    match &cell.launch {
        Launch::Serve { exe, args }
            if needed + 16 > default_max
                && !args.iter().any(|a| a.starts_with("--max-connections")) =>
        {
            let mut args = args.clone();
            args.extend(["--max-connections".to_owned(), (needed + 64).to_string()]);
            Launch::Serve {
                exe: exe.clone(),
                args,
            }
        }
        Launch::Serve { exe, args } if load.scenario == Scenario::Udp => {
            let mut args = args.clone();
            args.push("--udp".to_owned());
            Launch::Serve {
                exe: exe.clone(),
                args,
            }
        }
        other => other.clone(),
    }
}

/// Samples the server and this process at the window's edges.
#[derive(Debug)]
struct Sampler {
    /// The server's pid.
    pid: u32,
    /// The server's open descriptors before any connection.
    start_fds: usize,
    /// `--idle-connections` established (the server holds a descriptor for each).
    idle_open: u64,
    /// (when, server, load generator) at the window's start.
    at_start: Option<(Instant, ProcSample, ProcSample)>,
    /// (when, server, load generator) at the window's end.
    at_end: Option<(Instant, ProcSample, ProcSample)>,
}

impl Sampler {
    fn both(&self) -> Option<(Instant, ProcSample, ProcSample)> {
        let server = procfs::sample(Some(self.pid)).ok()?;
        let when = Instant::now();
        Some((when, server, procfs::sample(None).ok()?))
    }
}

impl Sampler {
    /// A connect completes at the SYN-ACK, before the server has accepted; waits (bounded)
    /// until the server holds a descriptor for each of `open` connections.
    fn wait_for_accepts(&self, open: u64) {
        let deadline = Instant::now() + ACCEPT_WAIT;
        let want = self.start_fds + open as usize;
        while Instant::now() < deadline {
            match procfs::open_fds(self.pid) {
                Ok(n) if n < want => std::thread::sleep(Duration::from_millis(20)),
                _ => break,
            }
        }
    }
}

impl Observer for Sampler {
    fn idle_connections_open(&mut self, open: u64) {
        // The load starts with every silent connection accepted.
        self.idle_open = open;
        self.wait_for_accepts(open);
    }

    fn all_connected(&mut self, open: u64) {
        // The hold measures accepted connections.
        self.wait_for_accepts(self.idle_open + open);
    }

    fn window_start(&mut self) {
        self.at_start = self.both();
    }

    fn window_end(&mut self) {
        self.at_end = self.both();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rotation_moves_every_cell_through_every_position() {
        assert_eq!(rotation(3, 0), vec![0, 1, 2]);
        assert_eq!(rotation(3, 1), vec![1, 2, 0]);
        assert_eq!(rotation(3, 2), vec![2, 0, 1]);
        assert_eq!(rotation(3, 3), vec![0, 1, 2]);
        assert_eq!(rotation(1, 5), vec![0]);
    }

    #[test]
    fn file_names_are_safe() {
        assert_eq!(file_safe("reactor/w2"), "reactor_w2");
    }
}

#[cfg(test)]
mod report_tests {
    //! A synthetic comparison (no servers): aggregation, ratios, and the report directory
    //! (`report.md`, `report.json`, every chart).

    use std::net::SocketAddr;
    use std::time::{Duration, SystemTime};

    use super::*;
    use crate::report::{ErrorCounts, IdleFigures, Latency, RunReport, UdpFigures};
    use crate::scenario::Scenario;
    use crate::summary::build;

    #[test]
    fn the_udp_scenario_starts_serve_with_udp_and_leaves_peers_alone() {
        let target: SocketAddr = "127.0.0.1:1".parse().unwrap();
        let serve = Cell {
            launch: Launch::Serve {
                exe: "reactor-pool".into(),
                args: vec!["--workers".into(), "1".into()],
            },
            ..cell("reactor/w1", "reactor", Some(1))
        };
        let args = |launch: Launch| match launch {
            Launch::Serve { args, .. } => args,
            Launch::Peer { .. } => panic!("serve expected"),
        };
        let udp = LoadSpec::new(target, Scenario::Udp);
        assert!(args(launch_for(&serve, &udp)).contains(&"--udp".to_owned()));
        let tcp = LoadSpec::new(target, Scenario::Pingpong);
        assert!(!args(launch_for(&serve, &tcp)).contains(&"--udp".to_owned()));
        let peer = Cell {
            launch: Launch::Peer {
                command: "x {addr}".into(),
            },
            ..serve
        };
        assert_eq!(launch_for(&peer, &udp), peer.launch);
    }

    #[test]
    fn the_udp_table_is_followed_by_what_udp_did_to_the_datagrams() {
        let cells = vec![
            cell("reactor/w1", "reactor", Some(1)),
            cell("baseline", "baseline", None),
        ];
        let target: SocketAddr = "127.0.0.1:1".parse().unwrap();
        let spec = CompareSpec {
            cells,
            loads: vec![LoadSpec::new(target, Scenario::Udp)],
            repeat: 2,
            baseline: "baseline".into(),
            out: std::env::temp_dir(),
            progress: false,
        };
        let mut runs = Vec::new();
        for rep in 0..2 {
            for (label, lost) in [("reactor/w1", 0), ("baseline", 3)] {
                let mut r = result(label, Scenario::Udp, rep, 1000.0, 1.0);
                r.report.udp = Some(UdpFigures {
                    sent: 1000,
                    echoed: 1000 - lost,
                    lost,
                    ..UdpFigures::default()
                });
                runs.push(r);
            }
        }
        let report = build(&spec, runs, SystemTime::now());
        let md = summary::markdown(&report, &[]);
        assert!(
            md.contains("- baseline: 2,000 sent, 6 lost (0 late), 0 duplicated, 0 reordered"),
            "{md}"
        );
        assert!(md.contains("- reactor/w1: 2,000 sent, 0 lost"), "{md}");
    }

    fn cell(label: &str, model: &str, workers: Option<usize>) -> Cell {
        Cell {
            label: label.to_owned(),
            model: model.to_owned(),
            workers,
            dispatch: None,
            metrics: workers.is_some(),
            peer: workers.is_none(),
            command: format!("{label} {{addr}}"),
            launch: Launch::Peer {
                command: format!("{label} {{addr}}"),
            },
        }
    }

    fn result(cell: &str, scenario: Scenario, rep: usize, rate: f64, cpu: f64) -> RunResult {
        let idle = scenario == Scenario::Idle;
        RunResult {
            cell: cell.to_owned(),
            scenario,
            repetition: rep,
            position: 0,
            server_started: true,
            sampled_secs: Some(1.0),
            report: RunReport {
                scenario,
                target: "127.0.0.1:1".into(),
                connections: 10,
                size: 64,
                depth: 1,
                threads: 1,
                source_addrs: 1,
                warmup_secs: 1.0,
                duration_secs: 1.0,
                messages: rate as u64,
                bytes: rate as u64 * 64,
                msgs_per_sec: rate,
                bytes_per_sec: rate * 64.0,
                latency: Latency {
                    count: 10,
                    mean_us: 50.0,
                    p50_us: 40.0,
                    p90_us: 60.0,
                    p99_us: 90.0,
                    p999_us: 120.0,
                    max_us: 150.0,
                },
                connections_opened: 10,
                errors: ErrorCounts::default(),
                idle: idle.then_some(IdleFigures {
                    established: 10,
                    connect_secs: 0.1,
                    hold_secs: 1.0,
                    echo_secs: 0.01,
                }),
                idle_connections: 0,
                idle_connections_opened: 0,
                idle_connections_kept: 0,
                udp: None,
            },
            server_cpu_secs: Some(cpu * rate / 1e6),
            server_cpu_per_msg_us: (!idle).then_some(cpu),
            client_cpu_per_msg_us: (!idle).then_some(cpu * 2.0),
            server_switches_per_msg: (!idle).then_some(0.25),
            server_rss_start_bytes: Some(1 << 20),
            server_rss_bytes: Some(2 << 20),
            server_rss_peak_bytes: Some(2 << 20),
            rss_per_connection_bytes: idle.then_some(cpu * 10.0),
            // Worker 0 gets a little more in later repetitions: imbalance 1.00, 1.20, 1.40.
            per_worker_connections: Some(vec![10 + rep as u64 * 2, 10 - rep as u64 * 2]),
            imbalance: Some(1.0 + rep as f64 * 0.2),
            server_exit: "clean".into(),
        }
    }

    #[test]
    fn medians_ratios_markdown_and_charts() {
        let cells = vec![
            cell("reactor/w1", "reactor", Some(1)),
            cell("reactor/w2", "reactor", Some(2)),
            cell("tokio", "tokio", None),
        ];
        let target: SocketAddr = "127.0.0.1:1".parse().unwrap();
        let loads = [Scenario::Pingpong, Scenario::Idle]
            .map(|sc| LoadSpec {
                duration: Duration::from_secs(1),
                ..LoadSpec::new(target, sc)
            })
            .to_vec();
        let out = std::env::temp_dir().join(format!("rp-summary-{}", std::process::id()));
        std::fs::create_dir_all(&out).unwrap();
        let spec = CompareSpec {
            cells,
            loads,
            repeat: 3,
            baseline: "tokio".into(),
            out: out.clone(),
            progress: false,
        };
        let mut runs = Vec::new();
        for rep in 0..3 {
            let jitter = rep as f64;
            for sc in [Scenario::Pingpong, Scenario::Idle] {
                runs.push(result("reactor/w1", sc, rep, 1000.0 + jitter, 5.0));
                runs.push(result("reactor/w2", sc, rep, 1500.0 + jitter, 6.0));
                runs.push(result(
                    "tokio",
                    sc,
                    rep,
                    (1000.0 + jitter) / 2.0,
                    10.0 + jitter,
                ));
            }
        }
        let report = build(&spec, runs, SystemTime::now());
        let w1 = report.find(Scenario::Pingpong, "reactor/w1").unwrap();
        assert_eq!(w1.runs, 3);
        assert_eq!(w1.msgs_per_sec.unwrap().median, 1001.0);
        assert_eq!(w1.msgs_per_sec.unwrap().min, 1000.0);
        assert_eq!(w1.msgs_ratio.unwrap().median, 2.0);
        // Paired by repetition: 5/10, 5/11, 5/12.
        let cpu = w1.cpu_ratio.unwrap();
        assert_eq!(
            (cpu.median, cpu.min, cpu.max),
            (5.0 / 11.0, 5.0 / 12.0, 0.5)
        );
        let idle = report.find(Scenario::Idle, "reactor/w1").unwrap();
        assert_eq!(idle.rss_ratio.unwrap().median, 5.0 / 11.0);
        assert!(idle.server_cpu_per_msg_us.is_none());

        write_report(&out, &report).unwrap();
        let md = std::fs::read_to_string(out.join("report.md")).unwrap();
        assert!(out.join("report.json").is_file());
        assert!(
            md.contains(
                "| reactor/w1 | 1,001 (1,000–1,002) | 2.00× | 5.00 µs | 0.45× (0.42–0.50) | 0.250 |"
            ),
            "{md}"
        );
        assert!(
            md.contains("| reactor/w1 | 50 B | 0.45× (0.42–0.50) |"),
            "{md}"
        );
        assert!(md.contains("Load generator: 1 thread"), "{md}");
        assert!(
            md.contains("| pingpong | reactor/w1 | 12 / 8 | 1.20 (1.00–1.40) |"),
            "{md}"
        );

        let charts = chart::planned(&report);
        for (file, _) in &charts {
            let svg = std::fs::read_to_string(out.join(file)).unwrap();
            assert!(svg.contains("</svg>"), "{file}");
            assert!(md.contains(file), "{file} is linked");
        }
        assert!(charts.iter().any(|&(file, _)| file == "workers.svg"));
        assert!(charts.iter().any(|&(file, _)| file == "balance.svg"));
        let workers = std::fs::read_to_string(out.join("workers.svg")).unwrap();
        assert!(workers.contains("tokio") && workers.contains("reactor"));
        let _ = std::fs::remove_dir_all(&out);
    }

    /// The idle-connections sweep in a synthetic report: one section per (scenario, idle
    /// count), ratios paired within the same idle count, the sweep table with each cell's
    /// CPU per message and its growth, select's refusal shown as not served with its reason,
    /// and the chart drawn with a line per model.
    #[test]
    fn idle_sweep_table_and_chart() {
        let cells = vec![
            cell("epoll", "epoll", None),
            cell("poll", "poll", None),
            cell("select", "select", None),
        ];
        let target: SocketAddr = "127.0.0.1:1".parse().unwrap();
        let counts = [0usize, 5000];
        let loads: Vec<LoadSpec> = counts
            .iter()
            .map(|&n| LoadSpec {
                duration: Duration::from_secs(1),
                idle_connections: n,
                ..LoadSpec::new(target, Scenario::Pingpong)
            })
            .collect();
        let out = std::env::temp_dir().join(format!("rp-sweep-{}", std::process::id()));
        std::fs::create_dir_all(&out).unwrap();
        let spec = CompareSpec {
            cells: cells.clone(),
            loads: loads.clone(),
            repeat: 1,
            baseline: "epoll".into(),
            out: out.clone(),
            progress: false,
        };
        let at = |label: &str, idle: usize, cpu: f64| {
            let mut r = result(label, Scenario::Pingpong, 0, 1000.0, cpu);
            r.report.idle_connections = idle;
            r
        };
        let mut refused = RunResult::not_started(
            &cells[2],
            &loads[1],
            0,
            2,
            "invalid `--max-connections`: FD_SETSIZE",
        );
        refused.report.idle_connections = 5000;
        let runs = vec![
            at("epoll", 0, 4.0),
            at("poll", 0, 3.0),
            at("select", 0, 3.5),
            at("epoll", 5000, 4.0),
            at("poll", 5000, 12.0),
            refused,
        ];
        let report = build(&spec, runs, SystemTime::now());
        assert_eq!(report.swept_scenarios(), vec![Scenario::Pingpong]);
        assert_eq!(report.idle_counts(Scenario::Pingpong), vec![0, 5000]);
        let poll = report.find_at(Scenario::Pingpong, 5000, "poll").unwrap();
        assert_eq!(
            poll.cpu_ratio.unwrap().median,
            3.0,
            "paired with epoll at 5000"
        );
        assert_eq!(
            report
                .find(Scenario::Pingpong, "poll")
                .unwrap()
                .idle_connections,
            0
        );

        write_report(&out, &report).unwrap();
        let md = std::fs::read_to_string(out.join("report.md")).unwrap();
        assert!(md.contains("plus 5,000 idle connections"), "{md}");
        assert!(md.contains("| server | 0 idle | 5,000 idle |"), "{md}");
        assert!(md.contains("| epoll | 4.00 µs | 4.00 µs (1.00×) |"), "{md}");
        assert!(md.contains("| poll | 3.00 µs | 12.0 µs (4.00×) |"), "{md}");
        assert!(md.contains("| select | 3.50 µs | not served |"), "{md}");
        assert!(
            md.contains("- select at 5,000 idle: server: did not start: invalid `--max-connections`: FD_SETSIZE"),
            "{md}"
        );
        let svg = std::fs::read_to_string(out.join("idle_sweep.svg")).unwrap();
        for legend in ["epoll", "poll", "select (not served at 5,000 idle)"] {
            assert!(svg.contains(legend), "{legend} in the sweep chart: {svg}");
        }
        assert!(md.contains("(idle_sweep.svg)"), "{md}");
        let _ = std::fs::remove_dir_all(&out);
    }

    /// A model that serves one connection at a time, under a load of 50: measure() does not
    /// start it, and the report shows it as not served, with the reason, and no error.
    #[test]
    fn a_one_at_a_time_model_is_not_served_a_concurrent_load() {
        let cells = vec![
            cell("epoll", "epoll", None),
            cell("blocking", "blocking", None),
        ];
        let load = LoadSpec {
            duration: Duration::from_secs(1),
            ..LoadSpec::new("127.0.0.1:1".parse().unwrap(), Scenario::Pingpong)
        };
        let log = std::env::temp_dir().join(format!("rp-one-{}.log", std::process::id()));
        let skipped = measure(&cells[1], &load, 0, 1, &log).unwrap();
        assert!(!skipped.server_started);
        assert_eq!(skipped.errors(), 0);
        let why = skipped.not_served_because().expect("not served");
        assert!(
            why.contains("one connection at a time") && why.contains("50 open"),
            "{why}"
        );
        let out = std::env::temp_dir().join(format!("rp-one-{}", std::process::id()));
        std::fs::create_dir_all(&out).unwrap();
        let spec = CompareSpec {
            cells,
            loads: vec![load],
            repeat: 1,
            baseline: "epoll".into(),
            out: out.clone(),
            progress: false,
        };
        let runs = vec![result("epoll", Scenario::Pingpong, 0, 1000.0, 4.0), skipped];
        let report = build(&spec, runs, SystemTime::now());
        assert_eq!(
            report.find(Scenario::Pingpong, "blocking").unwrap().errors,
            0
        );
        write_report(&out, &report).unwrap();
        let md = std::fs::read_to_string(out.join("report.md")).unwrap();
        assert!(md.contains("| blocking | not served |"), "{md}");
        assert!(
            md.contains("- blocking: the blocking model serves one connection"),
            "{md}"
        );
        assert!(!md.contains("Errors (first of each kind)"), "{md}");
        let _ = std::fs::remove_dir_all(&out);
    }
}
