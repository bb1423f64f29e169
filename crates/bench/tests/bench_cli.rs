//! `reactor-pool bench` from the command line: bad arguments exit 2 with one line naming the
//! flag (before any connection is made), runs print a table, JSON or CSV, counted errors
//! exit 1, and `--compare` writes a report directory whose files exist and parse; the
//! `reactor-pool-bench` binary run directly behaves the same. (The server's side of the
//! hand-over, a missing bench binary, is tested in the server package: `tests/bench_exec.rs`.)
//!
//! These tests run the server binary, `reactor-pool`, from the same target directory as
//! `reactor-pool-bench`: `cargo test` (whole workspace) builds both.
//!
//! The server is started, and every program run to completion, through the server package's
//! test launcher (`tests/util`, included below): one launcher, one set of deadlines, and the
//! server's one-line stdout contract checked here too.

#[path = "../../../tests/util/mod.rs"]
mod util;

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;

use util::{Binary, server_bin};

/// The bench binary this package builds.
const BENCH: &str = env!("CARGO_BIN_EXE_reactor-pool-bench");
/// Longest any one command may run; the longest (a compare) takes a few seconds.
const RUN_DEADLINE: Duration = Duration::from_secs(120);

/// Runs `reactor-pool ARGS` to completion, killing it after `RUN_DEADLINE`.
fn run(args: &[&str]) -> Output {
    run_program(&server_bin(), args)
}

/// Runs `program ARGS` to completion, killing it after `RUN_DEADLINE`.
fn run_program(program: &Path, args: &[&str]) -> Output {
    util::run_program(program, args, b"", RUN_DEADLINE)
}

/// `reactor-pool serve` on an ephemeral port, with one worker; stopped when dropped.
fn serve() -> Binary {
    Binary::spawn(&[
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--workers",
        "1",
        "--log-level",
        "warn",
    ])
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[track_caller]
fn assert_usage_error(o: &Output, needle: &str) {
    let err = stderr(o);
    assert_eq!(o.status.code(), Some(2), "stderr: {err}");
    assert!(err.contains(needle), "expected {needle:?} in {err:?}");
    assert_eq!(err.trim().lines().count(), 1, "one line: {err:?}");
}

/// More connections than the 20,000 open-files limit allows: refused up front with the
/// numbers, instead of hanging or failing half-way.
#[test]
fn too_many_connections_for_the_fd_limit_is_a_usage_error() {
    let o = run(&[
        "bench",
        "--target",
        "127.0.0.1:9",
        "--connections",
        "30000",
        "--scenario",
        "idle",
    ]);
    assert_usage_error(&o, "RLIMIT_NOFILE");
    assert!(stderr(&o).contains("--connections"), "{}", stderr(&o));
}

/// Flag mistakes exit 2 with one line naming the flag.
#[test]
fn bad_flags_are_usage_errors() {
    assert_usage_error(
        &run(&["bench", "--target", "127.0.0.1:9", "--scenario", "nope"]),
        "unknown scenario",
    );
    assert_usage_error(&run(&["bench"]), "--target");
    assert_usage_error(
        &run(&["bench", "--target", "127.0.0.1:9", "--models", "reactor"]),
        "--compare",
    );
    assert_usage_error(
        &run(&[
            "bench",
            "--target",
            "127.0.0.1:9",
            "--scenario",
            "pingpong",
            "--depth",
            "4",
        ]),
        "`--depth`",
    );
    // IPv6 loopback: source addresses are 127.0.0.x, so this is refused before connecting.
    assert_usage_error(
        &run(&["bench", "--target", "[::1]:9", "--source-addrs", "4"]),
        "`--source-addrs`",
    );
    assert_usage_error(
        &run(&["bench", "--compare", "--models", "no-such-model"]),
        "unknown model 'no-such-model'",
    );
    assert_usage_error(
        &run(&["bench", "--compare", "--peer", "tokio=echo-server"]),
        "`--peer`",
    );
    assert_usage_error(
        &run(&["bench", "--compare", "--baseline", "nobody"]),
        "`--baseline`",
    );
}

/// The bench binary run directly behaves as `reactor-pool bench`: same one-line usage
/// errors, exit 2.
#[test]
fn the_bench_binary_runs_directly_too() {
    let o = run_program(
        BENCH.as_ref(),
        &["--target", "127.0.0.1:9", "--scenario", "nope"],
    );
    assert_usage_error(&o, "unknown scenario");
    assert_usage_error(&run_program(BENCH.as_ref(), &[]), "--target");
}

/// `--compare` runs the server binary next to the bench binary; without it, one line says
/// how to build it, exit 1.
#[test]
fn compare_without_the_server_binary_is_explained() {
    let dir = temp_dir("no-server");
    let lone = dir.join("reactor-pool-bench");
    if std::fs::hard_link(BENCH, &lone).is_err() {
        std::fs::copy(BENCH, &lone).unwrap();
    }
    let o = run_program(&lone, &["--compare", "--models", "reactor"]);
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "stderr: {err}");
    assert!(
        err.contains("reactor-pool is missing")
            && err.contains("cargo build --release -p reactor-pool"),
        "{err}"
    );
    assert_eq!(err.trim().lines().count(), 1, "one line: {err:?}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// A closed port: the table is still printed, the connect errors are in it, exit 1.
#[test]
fn counted_errors_exit_1_with_the_report() {
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let target = format!("127.0.0.1:{port}");
    let o = run(&[
        "bench",
        "--target",
        &target,
        "--duration",
        "0.3",
        "--warmup",
        "0",
        "--connections",
        "2",
    ]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let table = stdout(&o);
    assert!(table.contains("errors       connect"), "{table}");
    assert!(stderr(&o).contains("errors counted"), "{}", stderr(&o));
}

/// JSON and CSV output against a real server parse and agree with each other's shape.
#[test]
fn json_and_csv_outputs_parse() {
    let server = serve();
    let target = server.addr.to_string();
    let common = [
        "bench",
        "--target",
        &target,
        "--duration",
        "0.3",
        "--warmup",
        "0.1",
        "--connections",
        "4",
    ];
    let o = run(&[&common[..], &["--json"]].concat());
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).expect("valid JSON");
    assert_eq!(v["scenario"], "pingpong");
    assert!(v["messages"].as_u64().unwrap() > 0, "{v}");
    assert_eq!(v["errors"]["connect"], 0);
    assert!(v["latency"]["p99_us"].as_f64().unwrap() > 0.0);

    let o = run(&[
        &common[..],
        &["--csv", "--scenario", "pipeline", "--depth", "2"],
    ]
    .concat());
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let text = stdout(&o);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 2, "{text}");
    let header: Vec<&str> = lines[0].split(',').collect();
    let row: Vec<&str> = lines[1].split(',').collect();
    assert_eq!(header.len(), row.len());
    assert_eq!(row[0], "pipeline");
    let depth = header.iter().position(|h| *h == "depth").unwrap();
    assert_eq!(row[depth], "2");
}

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "reactor-pool-{name}-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The comparison runner end to end, tiny: the reactor model and one external peer (this
/// binary's own `serve`, started through the peer mechanism), pingpong and idle, one
/// repetition. The report directory has the Markdown, the JSON (two cells × two scenarios,
/// with server CPU and memory figures) and the charts.
#[test]
fn compare_writes_a_report_that_parses() {
    let out = temp_dir("compare");
    let peer = format!(
        "self={} serve --workers 1 --log-level warn --listen {{addr}}",
        server_bin().display()
    );
    let o = run(&[
        "bench",
        "--compare",
        "--models",
        "reactor",
        "--workers",
        "1",
        "--scenarios",
        "pingpong,idle",
        "--connections",
        "20",
        "--duration",
        "0.4",
        "--warmup",
        "0.1",
        "--repeat",
        "1",
        "--peer",
        &peer,
        "--baseline",
        "self",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(0), "stderr: {}", stderr(&o));

    let md = std::fs::read_to_string(out.join("report.md")).unwrap();
    assert!(md.contains("## pingpong"), "{md}");
    assert!(md.contains("## idle"), "{md}");
    assert!(md.contains("| reactor/w1 |"), "{md}");
    assert!(md.contains("× self"), "{md}");

    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("report.json")).unwrap()).unwrap();
    assert_eq!(json["baseline"], "self");
    let runs = json["runs"].as_array().unwrap();
    assert_eq!(runs.len(), 4);
    for r in runs {
        assert_eq!(r["server_exit"], "clean", "{r}");
        assert_eq!(r["report"]["errors"]["connect"], 0, "{r}");
        assert!(r["server_rss_bytes"].as_u64().unwrap() > 0, "{r}");
    }
    let pingpong: Vec<&serde_json::Value> = runs
        .iter()
        .filter(|r| r["scenario"] == "pingpong")
        .collect();
    assert_eq!(pingpong.len(), 2);
    for r in pingpong {
        assert!(r["report"]["messages"].as_u64().unwrap() > 0, "{r}");
        assert!(r["server_cpu_per_msg_us"].is_number(), "{r}");
    }
    let idle = runs.iter().find(|r| r["scenario"] == "idle").unwrap();
    assert_eq!(idle["report"]["idle"]["established"], 20);
    assert!(idle["rss_per_connection_bytes"].is_number(), "{idle}");
    let summary = json["summary"].as_array().unwrap();
    assert_eq!(summary.len(), 4);
    let base = summary
        .iter()
        .find(|s| s["cell"] == "self" && s["scenario"] == "pingpong")
        .unwrap();
    assert_eq!(base["msgs_ratio"]["median"], 1.0);

    for svg in [
        "throughput.svg",
        "cpu_per_msg.svg",
        "latency.svg",
        "idle_rss.svg",
    ] {
        let text = std::fs::read_to_string(out.join(svg)).unwrap();
        assert!(
            text.starts_with("<svg") && text.trim_end().ends_with("</svg>"),
            "{svg}"
        );
        assert!(md.contains(svg), "{svg} linked from report.md");
    }
    // One worker count only: no workers chart.
    assert!(!out.join("workers.svg").exists());
    assert!(out.join("logs").is_dir());
    let _ = std::fs::remove_dir_all(&out);
}

/// A server that refuses to start (here: an invalid `--buffer-size` passed through
/// `--server-args`) does not abort the comparison: the run is recorded with the server's own
/// one-line reason, the report is still written, and the exit code says errors happened.
#[test]
fn compare_records_servers_that_do_not_start() {
    let out = temp_dir("compare-fail");
    let o = run(&[
        "bench",
        "--compare",
        "--models",
        "reactor",
        "--workers",
        "1",
        "--scenarios",
        "pingpong",
        "--repeat",
        "2",
        "--duration",
        "0.2",
        "--server-args",
        "--buffer-size 1",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(1), "stderr: {}", stderr(&o));
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("report.json")).unwrap()).unwrap();
    let runs = json["runs"].as_array().unwrap();
    assert_eq!(runs.len(), 2);
    for r in runs {
        assert_eq!(r["server_started"], false, "{r}");
        let exit = r["server_exit"].as_str().unwrap();
        assert!(
            exit.starts_with("did not start") && exit.contains("buffer_size"),
            "{exit}"
        );
    }
    let md = std::fs::read_to_string(out.join("report.md")).unwrap();
    assert!(md.contains("did not start"), "{md}");
    let _ = std::fs::remove_dir_all(&out);
}

/// `--idle-connections`: a list is for --compare only, a count must be a number, and idle
/// connections count against the open-files limit (refused up front, naming the flag).
#[test]
fn idle_connections_flag_is_checked() {
    assert_usage_error(
        &run(&[
            "bench",
            "--target",
            "127.0.0.1:9",
            "--idle-connections",
            "10,20",
        ]),
        "`--idle-connections`",
    );
    assert_usage_error(
        &run(&[
            "bench",
            "--target",
            "127.0.0.1:9",
            "--idle-connections",
            "many",
        ]),
        "--idle-connections",
    );
    assert_usage_error(
        &run(&[
            "bench",
            "--target",
            "127.0.0.1:9",
            "--scenario",
            "udp",
            "--idle-connections",
            "10",
        ]),
        "`--idle-connections`",
    );
    let o = run(&[
        "bench",
        "--target",
        "127.0.0.1:9",
        "--idle-connections",
        "25000",
    ]);
    assert_usage_error(&o, "`--idle-connections`");
    assert!(stderr(&o).contains("RLIMIT_NOFILE"), "{}", stderr(&o));
    // 15,000 idle + 50 active fits the 20,000 limit: not refused for descriptors (the run
    // itself fails to connect to the discard port, exit 1, after the check).
    let o = run(&[
        "bench",
        "--target",
        "127.0.0.1:9",
        "--idle-connections",
        "15000",
        "--duration",
        "0.1",
        "--warmup",
        "0",
        "--timeout",
        "1",
        "--json",
    ]);
    assert_eq!(o.status.code(), Some(1), "stderr: {}", stderr(&o));
    let json: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(json["idle_connections"], 15000);
    assert_eq!(json["idle_connections_opened"], 0);
}

/// The sweep end to end: epoll and select at 0 and 1,100 idle connections. epoll holds all
/// 1,100 open and silent through the run; select cannot take 1,150 connections (FD_SETSIZE):
/// the runner does not start it, and the report says so, with the reason, in the sweep table,
/// the JSON and the chart, without counting an error.
#[test]
fn compare_sweeps_idle_connections_and_reports_what_select_cannot_serve() {
    let out = temp_dir("compare-idle");
    let o = run(&[
        "bench",
        "--compare",
        "--models",
        "epoll,select",
        "--scenarios",
        "pingpong",
        "--idle-connections",
        "0,1100",
        "--duration",
        "0.3",
        "--warmup",
        "0.1",
        "--repeat",
        "1",
        "--out",
        out.to_str().unwrap(),
    ]);
    // A load the model cannot serve is not an error of the comparison.
    assert_eq!(o.status.code(), Some(0), "stderr: {}", stderr(&o));
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("report.json")).unwrap()).unwrap();
    let runs = json["runs"].as_array().unwrap();
    assert_eq!(runs.len(), 4);
    let at = |cell: &str, idle: u64| {
        runs.iter()
            .find(|r| r["cell"] == cell && r["report"]["idle_connections"] == idle)
            .unwrap_or_else(|| panic!("no run of {cell} at {idle} idle"))
    };
    let epoll = at("epoll", 1100);
    assert_eq!(epoll["server_exit"], "clean", "{epoll}");
    assert_eq!(epoll["report"]["idle_connections_opened"], 1100, "{epoll}");
    assert_eq!(epoll["report"]["idle_connections_kept"], 1100, "{epoll}");
    assert_eq!(epoll["report"]["errors"]["reset"], 0, "{epoll}");
    assert!(epoll["server_cpu_per_msg_us"].is_number(), "{epoll}");
    assert_eq!(at("select", 0)["server_started"], true);
    let select = at("select", 1100);
    assert_eq!(select["server_started"], false, "{select}");
    let exit = select["server_exit"].as_str().unwrap();
    assert!(
        exit.starts_with("not served") && exit.contains("at most 1,024"),
        "{select}"
    );

    let md = std::fs::read_to_string(out.join("report.md")).unwrap();
    assert!(
        md.contains("## Server CPU per message against idle connections"),
        "{md}"
    );
    assert!(md.contains("| server | 0 idle | 1,100 idle |"), "{md}");
    let select_row = md
        .lines()
        .find(|l| l.starts_with("| select |") && l.contains("not served"))
        .unwrap_or_else(|| panic!("select's sweep row: {md}"));
    assert!(!select_row.contains("– |"), "{select_row}");
    assert!(md.contains("select at 1,100 idle:"), "{md}");
    let svg = std::fs::read_to_string(out.join("idle_sweep.svg")).unwrap();
    assert!(svg.contains("not served at 1,100 idle"), "chart legend");
    assert!(md.contains("idle_sweep.svg"), "chart linked");
    let _ = std::fs::remove_dir_all(&out);
}
