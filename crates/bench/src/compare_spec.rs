//! The comparison as the runner sees it: `Cell`, one server configuration, and
//! `CompareSpec`, the whole comparison resolved from the flags (`resolve`).

use std::io::IsTerminal;
use std::net::SocketAddr;
use std::path::PathBuf;

use reactor_pool::Model;
use reactor_pool::config::MAX_WORKERS;
use serde::Serialize;

use crate::args::{BenchArgs, BenchError, idle_counts, resolve_spec, with_idle};
use crate::scenario::Scenario;
use crate::server_process::Launch;
use crate::spec::LoadSpec;

/// Models left out of the default list: they need a process or thread per connection (or
/// serve one client at a time), so the default scenarios would swamp or stall them.
const NOT_BY_DEFAULT: &[&str] = &["blocking", "fork", "thread"];
/// The server's binary name, looked for next to this program.
const SERVER_BIN: &str = "reactor-pool";
/// One server configuration being compared.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Cell {
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
pub(crate) struct CompareSpec {
    /// Servers, in the order of the first repetition.
    pub cells: Vec<Cell>,
    /// One load spec per scenario and `--idle-connections` count, scenario by scenario
    /// (the target is filled in per run).
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

/// Builds the comparison from the flags, checking every name.
pub(crate) fn resolve(args: &BenchArgs) -> Result<CompareSpec, BenchError> {
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
    let idle = idle_counts(args, true)?;
    let mut loads = Vec::with_capacity(scenarios.len() * idle.len());
    for &sc in &scenarios {
        let spec = resolve_spec(args, sc, placeholder, true)?;
        if sc == Scenario::Udp {
            // Idle connections are TCP: the udp scenario runs once, without them.
            loads.push(spec);
            continue;
        }
        for &n in &idle {
            loads.push(with_idle(&spec, n)?);
        }
    }
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

#[cfg(test)]
mod tests {
    use super::*;

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
}
