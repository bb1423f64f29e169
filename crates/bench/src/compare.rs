//! The comparison runner (`reactor-pool bench --compare`): for every repetition, scenario
//! and cell (model × worker count, or external peer) it starts a fresh server, runs the load
//! generator in this process, samples the server's CPU time and memory from `/proc` at the
//! measured window's edges, and stops the server. Cells run in a rotated order in each
//! repetition (A B C, B C A, C A B, ...) so slow drifts of the machine spread over all of
//! them. The results go to a report directory: `report.md`, `report.json`, SVG charts, and
//! the servers' logs.

use std::io::IsTerminal;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;

use super::loadgen::{self, LoadSpec, Observer};
use super::procfs::{self, ProcSample};
use super::report::{RunReport, thousands};
use super::scenario::Scenario;
use super::server_process::{Exit, Launch, ServerProcess};
use super::summary::{self, CompareReport};
use super::{BenchArgs, BenchError, chart, resolve_spec};
use reactor_pool::config::{Config, MAX_WORKERS, Model};

/// Models left out of the default list: they need a process or thread per connection (or
/// serve one client at a time), so the default scenarios would swamp or stall them.
const NOT_BY_DEFAULT: &[&str] = &["blocking", "fork", "thread"];
/// The server's binary name.
const SERVER_BIN: &str = "reactor-pool";
/// How long the idle scenario waits for the server to have accepted every connection
/// before the hold starts.
const ACCEPT_WAIT: Duration = Duration::from_secs(10);

/// One server configuration being compared.
#[derive(Debug, Clone, Serialize)]
pub struct Cell {
    /// Name in reports: `model`, `model/wN`, or the peer's name.
    pub label: String,
    /// The model name, or the peer's name.
    pub model: String,
    /// Worker count passed to `serve --workers`, if any.
    pub workers: Option<usize>,
    /// Whether this is an external command rather than `serve`.
    pub peer: bool,
    /// The command line, for the report.
    pub command: String,
    /// How to start it.
    #[serde(skip)]
    pub launch: Launch,
}

/// A whole comparison, resolved and validated.
#[derive(Debug, Clone)]
pub struct CompareSpec {
    /// Servers, in the order of the first repetition.
    pub cells: Vec<Cell>,
    /// One load spec per scenario (the target is filled in per run).
    pub loads: Vec<LoadSpec>,
    /// Repetitions of every (scenario, cell) measurement.
    pub repeat: usize,
    /// Label of the cell ratios are computed against.
    pub baseline: String,
    /// Report directory.
    pub out: PathBuf,
    /// Draw a progress bar on stderr.
    pub progress: bool,
}

/// What one measurement of one cell produced.
#[derive(Debug, Clone, Serialize)]
pub struct RunResult {
    /// Cell label.
    pub cell: String,
    /// Scenario.
    pub scenario: Scenario,
    /// Repetition (0-based).
    pub repetition: usize,
    /// Position of this cell in the repetition's order (0-based).
    pub position: usize,
    /// Whether the server started; if not, `server_exit` says why and the figures are empty.
    pub server_started: bool,
    /// The load generator's figures.
    pub report: RunReport,
    /// Length of the interval between the two samples of the server, seconds (about the
    /// window's length; a little shorter when the sampling thread woke late).
    pub sampled_secs: Option<f64>,
    /// Server CPU time (user + system) over the sampled interval, seconds.
    pub server_cpu_secs: Option<f64>,
    /// Server CPU time per message in the window, microseconds.
    pub server_cpu_per_msg_us: Option<f64>,
    /// Load-generator CPU time per message in the window, microseconds.
    pub client_cpu_per_msg_us: Option<f64>,
    /// Server context switches (all threads) per message in the window: how often the
    /// server went to sleep and was woken, the cost that grows when threads outnumber cores.
    pub server_switches_per_msg: Option<f64>,
    /// Server resident memory before any connection, bytes.
    pub server_rss_start_bytes: Option<u64>,
    /// Server resident memory at the window's end, bytes (idle: at the end of the hold).
    pub server_rss_bytes: Option<u64>,
    /// Server peak resident memory (VmHWM) at the window's end, bytes.
    pub server_rss_peak_bytes: Option<u64>,
    /// Idle: server memory growth per open connection, bytes.
    pub rss_per_connection_bytes: Option<f64>,
    /// "clean", or how the server failed.
    pub server_exit: String,
}

impl RunResult {
    /// Errors counted by the load generator, plus one if the server did not exit cleanly.
    pub fn errors(&self) -> u64 {
        self.report.errors.total() + u64::from(self.server_exit != "clean")
    }
}

/// `bench --compare` from the command line. Returns the number of errors counted.
pub fn run_cli(args: &BenchArgs) -> Result<u64, BenchError> {
    let spec = resolve(args)?;
    for load in &spec.loads {
        super::check_fd_limit(load)?;
    }
    let report = run(&spec)?;
    let markdown = summary::markdown(&report);
    print!("{markdown}");
    println!(
        "\nreport written to {} (report.md, report.json, *.svg, logs/)",
        spec.out.display()
    );
    Ok(report.runs.iter().map(RunResult::errors).sum())
}

/// Builds the comparison from the flags, checking every name.
pub fn resolve(args: &BenchArgs) -> Result<CompareSpec, BenchError> {
    let usage = |field: &str, why: String| BenchError::Usage(format!("invalid `--{field}`: {why}"));
    let known: Vec<&str> = Model::ALL.iter().map(|m| m.name()).collect();
    let check_model = |field: &str, name: &str| {
        if known.contains(&name) {
            Ok(())
        } else {
            Err(usage(
                field,
                format!(
                    "unknown model '{name}' (expected one of: {})",
                    known.join(", ")
                ),
            ))
        }
    };
    let models: Vec<String> = if args.models.is_empty() {
        known
            .iter()
            .filter(|m| !NOT_BY_DEFAULT.contains(m))
            .map(|m| m.to_string())
            .collect()
    } else {
        args.models.iter().map(|m| m.trim().to_owned()).collect()
    };
    for m in &models {
        check_model("models", m)?;
    }
    for m in &args.worker_models {
        check_model("worker-models", m.trim())?;
    }
    let workers = dedup(&args.workers);
    if workers.is_empty() {
        return Err(usage("workers", "give at least one worker count".into()));
    }
    if let Some(w) = workers.iter().find(|w| !(1..=MAX_WORKERS).contains(w)) {
        return Err(usage(
            "workers",
            format!("{w} is out of range (1..={MAX_WORKERS})"),
        ));
    }
    let scenarios = dedup(&args.scenarios);
    if scenarios.is_empty() {
        return Err(usage("scenarios", "give at least one scenario".into()));
    }
    if !(1..=100).contains(&args.repeat) {
        return Err(usage(
            "repeat",
            format!("{} is out of range (1..=100)", args.repeat),
        ));
    }

    let placeholder = SocketAddr::from(([127, 0, 0, 1], 0));
    let loads = scenarios
        .iter()
        .map(|&sc| resolve_spec(args, sc, placeholder, true))
        .collect::<Result<Vec<_>, _>>()?;
    let extra: Vec<String> = args
        .server_args
        .as_deref()
        .unwrap_or_default()
        .split_whitespace()
        .map(str::to_owned)
        .collect();
    let mut common = Vec::new();
    if !extra.iter().any(|a| a.starts_with("--log-level")) {
        common.extend(["--log-level".to_owned(), "warn".to_owned()]);
    }
    common.extend(extra);

    let mut cells = Vec::new();
    let exe = server_exe()?;
    for model in &models {
        let scales = args.worker_models.iter().any(|w| w.trim() == model);
        let counts: Vec<Option<usize>> = if scales {
            workers.iter().copied().map(Some).collect()
        } else {
            vec![None]
        };
        for w in counts {
            let mut serve_args = vec!["--model".to_owned(), model.clone()];
            if let Some(w) = w {
                serve_args.extend(["--workers".to_owned(), w.to_string()]);
            }
            serve_args.extend(common.iter().cloned());
            let label = match w {
                Some(w) => format!("{model}/w{w}"),
                None => model.clone(),
            };
            cells.push(Cell {
                command: format!(
                    "reactor-pool serve --listen 127.0.0.1:0 {}",
                    serve_args.join(" ")
                ),
                label,
                model: model.clone(),
                workers: w,
                peer: false,
                launch: Launch::Serve {
                    exe: exe.clone(),
                    args: serve_args,
                },
            });
        }
    }
    for text in &args.peers {
        let (name, command) = parse_peer(text).map_err(|why| usage("peer", why))?;
        cells.push(Cell {
            label: name.clone(),
            model: name,
            workers: None,
            peer: true,
            command: command.clone(),
            launch: Launch::Peer { command },
        });
    }
    if cells.is_empty() {
        return Err(usage("models", "nothing to compare".into()));
    }
    for (i, c) in cells.iter().enumerate() {
        if cells[..i].iter().any(|o| o.label == c.label) {
            return Err(usage(
                "peer",
                format!("the name '{}' is used twice", c.label),
            ));
        }
    }
    let baseline = match &args.baseline {
        None => cells[0].label.clone(),
        Some(b) => resolve_baseline(&cells, b.trim()).map_err(|why| usage("baseline", why))?,
    };
    Ok(CompareSpec {
        cells,
        loads,
        repeat: args.repeat,
        baseline,
        out: args.out.clone(),
        progress: !args.no_progress && std::io::stderr().is_terminal(),
    })
}

/// The server binary the cells' `serve` runs: `reactor-pool`, next to this program (both
/// are built into the same target directory, and installed side by side).
fn server_exe() -> Result<PathBuf, BenchError> {
    let me = std::env::current_exe()
        .map_err(|e| BenchError::Runtime(format!("cannot find this program's path: {e}")))?;
    let exe = me.with_file_name(SERVER_BIN);
    if exe.is_file() {
        Ok(exe)
    } else {
        Err(BenchError::Runtime(format!(
            "{} is missing; build it with `cargo build --release -p reactor-pool`",
            exe.display()
        )))
    }
}

fn dedup<T: PartialEq + Copy>(items: &[T]) -> Vec<T> {
    let mut out: Vec<T> = Vec::new();
    for &i in items {
        if !out.contains(&i) {
            out.push(i);
        }
    }
    out
}

/// Splits `NAME=CMD`.
fn parse_peer(text: &str) -> Result<(String, String), String> {
    let (name, command) = text
        .split_once('=')
        .ok_or_else(|| format!("'{text}' is not NAME=COMMAND"))?;
    let name = name.trim();
    if name.is_empty()
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
    {
        return Err(format!(
            "peer name '{name}' must be letters, digits, '-', '_' or '.'"
        ));
    }
    if command.trim().is_empty() {
        return Err(format!("peer '{name}' has an empty command"));
    }
    if !command.contains("{addr}") && !command.contains("{port}") {
        return Err(format!(
            "peer '{name}': the command must contain {{addr}} or {{port}}, where the server must listen"
        ));
    }
    Ok((name.to_owned(), command.trim().to_owned()))
}

/// A cell label, or a model name that has exactly one cell.
fn resolve_baseline(cells: &[Cell], wanted: &str) -> Result<String, String> {
    if let Some(c) = cells.iter().find(|c| c.label == wanted) {
        return Ok(c.label.clone());
    }
    let by_model: Vec<&Cell> = cells.iter().filter(|c| c.model == wanted).collect();
    if by_model.len() == 1 {
        return Ok(by_model[0].label.clone());
    }
    let labels: Vec<&str> = cells.iter().map(|c| c.label.as_str()).collect();
    Err(format!(
        "'{wanted}' is not one of the cells ({})",
        labels.join(", ")
    ))
}

/// The order of the cells in repetition `rep`: rotated by `rep` places.
pub fn rotation(cells: usize, rep: usize) -> Vec<usize> {
    (0..cells).map(|i| (i + rep) % cells.max(1)).collect()
}

/// Runs the whole comparison and writes the report directory.
pub fn run(spec: &CompareSpec) -> Result<CompareReport, BenchError> {
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
                        "{} {} (repetition {}/{})",
                        load.scenario,
                        cell.label,
                        rep + 1,
                        spec.repeat
                    ));
                }
                let log = logs.join(format!(
                    "{}-{}-r{}.log",
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
        "{} {} #{}: {} {unit}/s",
        r.scenario,
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
    write("report.md", &summary::markdown(report))?;
    chart::write_all(out, report)
        .map_err(|e| BenchError::Runtime(format!("cannot draw the charts: {e}")))?;
    Ok(())
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
    let launch = launch_for(cell, load);
    let mut server = match ServerProcess::start(&launch, log) {
        Ok(server) => server,
        // Recorded, not fatal: a model may refuse a load (select above FD_SETSIZE), and the
        // rest of the comparison is still worth having.
        Err(e) => {
            return Ok(not_started(
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
        at_start: None,
        at_end: None,
    };
    let report = loadgen::run(&spec, &mut observer)
        .map_err(|e| BenchError::Runtime(format!("load generator failed: {e}")))?;
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
            Some((s1.rss_bytes as f64 - s0.rss_bytes as f64) / idle.established as f64)
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
        server_exit,
        report,
    })
}

/// The cell's launch for `load`: `serve` gets `--max-connections` when the load needs more
/// than the default allows (and only then, since some models refuse large values).
fn launch_for(cell: &Cell, load: &LoadSpec) -> Launch {
    let default_max = Config::default().max_connections;
    match &cell.launch {
        Launch::Serve { exe, args }
            if load.connections + 16 > default_max
                && !args.iter().any(|a| a.starts_with("--max-connections")) =>
        {
            let mut args = args.clone();
            args.extend([
                "--max-connections".to_owned(),
                (load.connections + 64).to_string(),
            ]);
            Launch::Serve {
                exe: exe.clone(),
                args,
            }
        }
        other => other.clone(),
    }
}

/// The record of a measurement whose server did not start.
fn not_started(
    cell: &Cell,
    load: &LoadSpec,
    repetition: usize,
    position: usize,
    why: &str,
) -> RunResult {
    RunResult {
        cell: cell.label.clone(),
        scenario: load.scenario,
        repetition,
        position,
        server_started: false,
        report: RunReport::empty(load),
        sampled_secs: None,
        server_cpu_secs: None,
        server_cpu_per_msg_us: None,
        client_cpu_per_msg_us: None,
        server_switches_per_msg: None,
        server_rss_start_bytes: None,
        server_rss_bytes: None,
        server_rss_peak_bytes: None,
        rss_per_connection_bytes: None,
        server_exit: format!("did not start: {why}"),
    }
}

/// Samples the server and this process at the window's edges.
#[derive(Debug)]
struct Sampler {
    /// The server's pid.
    pid: u32,
    /// The server's open descriptors before any connection.
    start_fds: usize,
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

impl Observer for Sampler {
    fn all_connected(&mut self, open: u64) {
        // A connect completes at the SYN-ACK, before the server has accepted; wait (bounded)
        // until the server holds a descriptor for each connection, so the hold measures
        // accepted connections.
        let deadline = Instant::now() + ACCEPT_WAIT;
        let want = self.start_fds + open as usize;
        while Instant::now() < deadline {
            match procfs::open_fds(self.pid) {
                Ok(n) if n < want => std::thread::sleep(Duration::from_millis(20)),
                _ => break,
            }
        }
    }

    fn window_start(&mut self) {
        self.at_start = self.both();
    }

    fn window_end(&mut self) {
        self.at_end = self.both();
    }
}

/// Seconds since the Unix epoch as `YYYY-MM-DD HH:MM:SS UTC`.
pub fn utc_timestamp(t: SystemTime) -> String {
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
    fn peers_parse_and_bad_ones_are_explained() {
        assert_eq!(
            parse_peer("tokio=target/release/examples/tokio_echo {addr}"),
            Ok((
                "tokio".to_owned(),
                "target/release/examples/tokio_echo {addr}".to_owned()
            ))
        );
        assert!(parse_peer("tokio").unwrap_err().contains("NAME=COMMAND"));
        assert!(parse_peer("=x {addr}").unwrap_err().contains("peer name"));
        assert!(parse_peer("t=echo-server").unwrap_err().contains("{addr}"));
    }

    #[test]
    fn timestamps_are_civil_dates() {
        assert_eq!(utc_timestamp(UNIX_EPOCH), "1970-01-01 00:00:00 UTC");
        let t = UNIX_EPOCH + Duration::from_secs(951_782_400 + 3_661); // 2000-02-29 01:01:01
        assert_eq!(utc_timestamp(t), "2000-02-29 01:01:01 UTC");
    }

    #[test]
    fn file_names_are_safe() {
        assert_eq!(file_safe("reactor/w2"), "reactor_w2");
    }
}
