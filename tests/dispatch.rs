//! `--dispatch`: how connections reach the reactor's workers. Round robin and
//! least-connections spread 16 connections over 4 workers exactly (read from the per-worker
//! metrics), least-connections fills the emptiest worker first, every mode serves under the
//! supervisor (which binds the listener its children inherit) and reports its port-0 address,
//! only the acceptor thread runs under SCHED_BATCH, and `--dispatch` with another model is a
//! usage error naming the field. The shared
//! behaviour suite runs per mode in the behaviour files (`per_dispatch!`).

mod ops_util;

use std::net::TcpStream;

use ops_util::*;

const WORKERS: usize = 4;

/// Open connections per worker, from the metrics endpoint.
fn per_worker_active(metrics: std::net::SocketAddr) -> Vec<f64> {
    let body = http(metrics, "GET", "/metrics").body;
    (0..WORKERS)
        .map(|w| {
            let name = format!("reactor_pool_worker_connections_active{{worker=\"{w}\"}}");
            metric(&body, &name).unwrap_or_else(|| panic!("{name} missing:\n{body}"))
        })
        .collect()
}

/// Opens `n` connections and echoes on each, so every one is in a worker's hands.
fn open(addr: std::net::SocketAddr, n: usize) -> Vec<TcpStream> {
    (0..n)
        .map(|i| {
            let mut s = connect(addr);
            echo_on(&mut s, format!("{i}\n").as_bytes());
            s
        })
        .collect()
}

/// Waits until the per-worker gauges read `want`; returns what they read last.
fn wait_spread(metrics: std::net::SocketAddr, want: &[f64]) -> Vec<f64> {
    let mut last = Vec::new();
    let _ = util_wait(|| {
        last = per_worker_active(metrics);
        last == want
    });
    last
}

/// A bounded wait that reports rather than panics, so the caller's assert shows the values.
fn util_wait(mut cond: impl FnMut() -> bool) -> bool {
    let deadline = std::time::Instant::now() + DEADLINE;
    while std::time::Instant::now() < deadline {
        if cond() {
            return true;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    false
}

/// Sixteen long-lived connections on four workers: each worker holds exactly four.
fn balance(mode: &str) -> Vec<f64> {
    let (mut p, addr, metrics) = spawn_with_metrics(&["--workers", "4", "--dispatch", mode]);
    let conns = open(addr, 16);
    let mut spread = Vec::new();
    // Every connection echoed, so each is counted by its worker; the sum is exact.
    let summed = util_wait(|| {
        spread = per_worker_active(metrics);
        spread.iter().sum::<f64>() == 16.0
    });
    assert!(summed, "{mode}: per-worker open connections {spread:?}");
    drop(conns);
    p.stop();
    spread
}

/// Round robin: 16 connections, one after another, over 4 workers: 4 each.
#[test]
fn round_robin_gives_each_of_four_workers_four_of_sixteen() {
    assert_eq!(balance("round-robin"), [4.0; WORKERS]);
}

/// Least-connections, all workers equally loaded at each step: ties go round robin, 4 each.
#[test]
fn least_connections_gives_each_of_four_workers_four_of_sixteen() {
    assert_eq!(balance("least-connections"), [4.0; WORKERS]);
}

/// The kernel-spread modes: every connection lands on some worker (their spread is measured
/// by the comparison runner, not asserted: it depends on port hashes and timing).
#[test]
fn reuseport_and_shared_serve_all_sixteen() {
    for mode in ["reuseport", "shared"] {
        let spread = balance(mode);
        eprintln!("{mode}: {spread:?}");
    }
}

/// Least-connections fills the emptiest workers: one connection per worker, the clients of
/// workers 1 and 2 leave, and the next two connections go to workers 1 and 2 (round robin
/// would give them to workers 0 and 1).
#[test]
fn least_connections_fills_the_emptiest_workers_first() {
    let (mut p, addr, metrics) =
        spawn_with_metrics(&["--workers", "4", "--dispatch", "least-connections"]);
    let mut conns = open(addr, WORKERS);
    assert_eq!(wait_spread(metrics, &[1.0; WORKERS]), [1.0; WORKERS]);
    for gone in conns.drain(1..3) {
        gone.shutdown(std::net::Shutdown::Both).unwrap();
    }
    assert_eq!(
        wait_spread(metrics, &[1.0, 0.0, 0.0, 1.0]),
        [1.0, 0.0, 0.0, 1.0]
    );
    conns.extend(open(addr, 2));
    assert_eq!(wait_spread(metrics, &[1.0; WORKERS]), [1.0; WORKERS]);
    drop(conns);
    p.stop();
}

/// Under `--supervise` the supervisor binds the listener (with `SO_REUSEPORT` when the mode
/// needs it) and the child serves on it in every mode; port 0 is reported resolved.
#[test]
fn every_mode_serves_under_the_supervisor() {
    for mode in ["round-robin", "least-connections", "reuseport", "shared"] {
        let mut sup = Proc::spawn(&[
            "serve",
            "--supervise",
            "--listen",
            "127.0.0.1:0",
            "--workers",
            "2",
            "--dispatch",
            mode,
        ]);
        let addr = sup.listening();
        assert_ne!(addr.port(), 0, "{mode}");
        for i in 0..8 {
            let msg = format!("{mode} {i}\n");
            assert_eq!(echo_once(addr, msg.as_bytes()).unwrap(), msg.as_bytes());
        }
        sup.stop();
    }
}

/// `--dispatch` is for the reactor model: with another, exit 2 naming the field.
#[test]
fn dispatch_with_another_model_is_a_usage_error() {
    let (status, _out, err) = run(
        &[
            "serve",
            "--model",
            "epoll",
            "--dispatch",
            "shared",
            "--listen",
            "127.0.0.1:0",
        ],
        b"",
    );
    assert_eq!(status.code(), Some(2), "{err}");
    assert!(err.contains("`dispatch`"), "{err}");
    let (status, _out, err) = run(
        &["serve", "--dispatch", "random", "--listen", "127.0.0.1:0"],
        b"",
    );
    assert_eq!(status.code(), Some(2), "{err}");
    assert!(
        err.contains("`dispatch`") && err.contains("reuseport"),
        "{err}"
    );
}

/// Scheduling policy (field 41 of `/proc/PID/task/TID/stat`) of each thread of `pid`, by
/// thread name.
fn thread_policies(pid: u32) -> Vec<(String, u32, u32)> {
    let mut out = Vec::new();
    for task in std::fs::read_dir(format!("/proc/{pid}/task")).unwrap() {
        let dir = task.unwrap().path();
        let tid: u32 = dir.file_name().unwrap().to_str().unwrap().parse().unwrap();
        let Ok(stat) = std::fs::read_to_string(dir.join("stat")) else {
            continue;
        };
        let after = &stat[stat.rfind(')').unwrap() + 1..];
        // `after` starts at field 3 (state); policy is field 41.
        let policy = after
            .split_ascii_whitespace()
            .nth(38)
            .unwrap()
            .parse()
            .unwrap();
        let name = std::fs::read_to_string(dir.join("comm")).unwrap_or_default();
        out.push((name.trim().to_owned(), tid, policy));
    }
    out
}

/// The acceptor thread (the main thread, in the modes that have one) runs under SCHED_BATCH
/// so its wake-ups do not preempt workers; the workers stay SCHED_OTHER; without an acceptor
/// (`reuseport`) no thread changes.
#[test]
fn only_the_acceptor_thread_runs_under_sched_batch() {
    const SCHED_OTHER: u32 = 0;
    const SCHED_BATCH: u32 = 3;
    for (mode, acceptor) in [
        ("round-robin", true),
        ("least-connections", true),
        ("reuseport", false),
    ] {
        let (mut p, addr, _metrics) = spawn_with_metrics(&["--workers", "2", "--dispatch", mode]);
        // One echo: the connection was accepted, so the accept loop is running.
        let conns = open(addr, 1);
        // A thread names itself once it runs: wait for both workers' names.
        let mut threads = Vec::new();
        let named = util_wait(|| {
            threads = thread_policies(p.pid());
            threads
                .iter()
                .filter(|t| t.0.starts_with("worker-"))
                .count()
                == 2
        });
        assert!(named, "{mode}: {threads:?}");
        let main = threads.iter().find(|t| t.1 == p.pid()).unwrap();
        let want = if acceptor { SCHED_BATCH } else { SCHED_OTHER };
        assert_eq!(main.2, want, "{mode}: main thread {threads:?}");
        let workers: Vec<_> = threads
            .iter()
            .filter(|t| t.0.starts_with("worker-"))
            .collect();
        assert_eq!(workers.len(), 2, "{mode}: {threads:?}");
        assert!(
            workers.iter().all(|t| t.2 == SCHED_OTHER),
            "{mode}: workers {threads:?}"
        );
        drop(conns);
        p.stop();
    }
}
