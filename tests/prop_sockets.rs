//! Property tests over real sockets (issue 4, level 2): for every model in `Model::ALL`, any
//! worker count, number of concurrent clients, payload sizes, write chunk sizes, read sizes,
//! small delays and half-close, each client's echo equals its payload byte for byte.
//!
//! Cases per model: `PROPTEST_CASES` (default 24). `PROPTEST_MODELS=reactor,epoll` limits the
//! run to some models. Failing seeds are kept in `proptest-regressions/prop_sockets.txt` and
//! replayed first, against every model (a seed regenerates the same case for each).

mod util;

use std::fmt;
use std::io::{self, Read, Write};
use std::net::{Ipv4Addr, Shutdown, SocketAddr, SocketAddrV4, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use proptest::prelude::*;
use proptest::test_runner::{Config as ProptestConfig, FileFailurePersistence, TestRunner};
use reactor_pool::Model;
use socket2::{Domain, Protocol, SockAddr, Socket, Type};
use util::{Binary, InProcess, Spec, payload};

/// Longest a single connect, read or write may block. Generous: the machine is shared.
const IO_TIMEOUT: Duration = Duration::from_secs(20);
/// Most write calls (and read buffers' worth) per client, so 512 KiB in 1-byte writes does
/// not take minutes; fragmentation at every size is the state-machine tests' job.
const MAX_CHUNKS: usize = 4096;
/// Most pauses per client.
const MAX_PAUSES: usize = 16;

// ----- how each model is run -----

/// How the harness must start a model.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Launch {
    /// `Server` on a thread of this test process.
    InProcess,
    /// The `reactor-pool` binary as a child process.
    Binary,
}

/// How a model can take the case's clients.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Clients {
    /// All at once.
    Concurrent,
    /// One after another (a server that serves one client at a time).
    Sequential,
}

/// What a model needs from the harness. New models get the defaults; adjust here when a
/// model cannot run that way.
fn harness_for(model: Model) -> (Launch, Clients) {
    // fork(2) in this process would copy every descriptor the other tests' threads hold
    // (their clients and listeners) into each child, delaying their closes and EOFs, and a
    // child could inherit locks other threads hold; the binary has no such neighbours.
    let launch = if model.name() == "fork" {
        Launch::Binary
    } else {
        Launch::InProcess
    };
    // A model that serves one client at a time (blocking): concurrent clients would each
    // wait for all earlier ones, so their per-operation timeouts would depend on the case
    // size. In order, each waits only for itself.
    let clients = if util::is_concurrent(model) {
        Clients::Concurrent
    } else {
        Clients::Sequential
    };
    (launch, clients)
}

/// A running server of either launch kind.
enum RunningServer {
    InProcess(InProcess),
    Binary(Binary),
}

impl RunningServer {
    fn start(launch: Launch, model: Model, workers: usize, buffer_size: usize) -> Self {
        let spec = Spec::new(model)
            .workers(workers)
            .buffer_size(buffer_size)
            .idle_timeout(Duration::from_secs(120));
        match launch {
            Launch::InProcess => RunningServer::InProcess(spec.start()),
            Launch::Binary => RunningServer::Binary(spec.spawn()),
        }
    }

    fn addr(&self) -> SocketAddr {
        match self {
            RunningServer::InProcess(s) => s.addr,
            RunningServer::Binary(s) => s.addr,
        }
    }

    /// Graceful shutdown, bounded; panics (failing the case) if it is not clean.
    fn stop(self) {
        match self {
            RunningServer::InProcess(s) => {
                s.stop();
            }
            RunningServer::Binary(mut s) => {
                s.stop();
            }
        }
    }
}

// ----- the generated case -----

/// Pause `micros` after every `every` chunks (none if `micros` is 0).
#[derive(Clone, Copy)]
struct Pause {
    every: usize,
    micros: u64,
}

/// How a client ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum End {
    /// Shut down the write side after the last chunk, read until the server's EOF.
    HalfClose,
    /// Read exactly the payload's length back, then close both sides.
    ReadThenClose,
}

/// One client's behaviour.
#[derive(Clone)]
struct ClientPlan {
    len: usize,
    seed: u64,
    chunk: usize,
    read: usize,
    write_pause: Pause,
    read_pause: Pause,
    nodelay: bool,
    end: End,
}

/// One generated case (the model is chosen by the runner, so a seed replays on every model).
#[derive(Clone)]
struct SocketCase {
    workers: usize,
    buffer_size: usize,
    clients: Vec<ClientPlan>,
}

impl fmt::Debug for Pause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.micros == 0 {
            f.write_str("-")
        } else {
            write!(f, "{}us/{}", self.micros, self.every)
        }
    }
}

impl fmt::Debug for ClientPlan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} B (seed {}) in {}-byte writes, {}-byte reads, pauses w {:?} r {:?}, {}{:?}",
            self.len,
            self.seed,
            self.chunk,
            self.read,
            self.write_pause,
            self.read_pause,
            if self.nodelay { "nodelay, " } else { "" },
            self.end
        )
    }
}

impl fmt::Debug for SocketCase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "workers {}, buffer_size {}, {} clients:",
            self.workers,
            self.buffer_size,
            self.clients.len()
        )?;
        for (i, c) in self.clients.iter().enumerate() {
            writeln!(f, "  #{i}: {c:?}")?;
        }
        Ok(())
    }
}

fn size_strategy(max_small: usize, max: usize) -> impl Strategy<Value = usize> {
    prop_oneof![
        3 => 1..=16usize,
        3 => 1..=max_small,
        2 => 1..=max,
    ]
}

fn pause_strategy() -> impl Strategy<Value = Pause> {
    prop_oneof![
        3 => Just(Pause { every: 1, micros: 0 }),
        1 => (1usize..=64, 1u64..=2000).prop_map(|(every, micros)| Pause { every, micros }),
    ]
}

fn client_strategy() -> impl Strategy<Value = ClientPlan> {
    (
        prop_oneof![
            3 => 0..=64usize,
            3 => 0..=4096usize,
            2 => 0..=65_536usize,
            1 => 0..=512 * 1024usize,
        ],
        any::<u64>(),
        size_strategy(1500, 65_536),
        size_strategy(4096, 65_536),
        pause_strategy(),
        pause_strategy(),
        any::<bool>(),
        prop_oneof![Just(End::HalfClose), Just(End::ReadThenClose)],
    )
        .prop_map(
            |(len, seed, chunk, read, write_pause, read_pause, nodelay, end)| ClientPlan {
                len,
                seed,
                chunk,
                read,
                write_pause,
                read_pause,
                nodelay,
                end,
            },
        )
}

fn case_strategy() -> impl Strategy<Value = SocketCase> {
    (
        1..=4usize,
        prop_oneof![
            Just(512usize),
            Just(1024),
            Just(4096),
            Just(65_536),
            512..=70_000usize
        ],
        prop_oneof![
            2 => prop::collection::vec(client_strategy(), 1..=4),
            1 => prop::collection::vec(client_strategy(), 1..=64),
        ],
    )
        .prop_map(|(workers, buffer_size, clients)| SocketCase {
            workers,
            buffer_size,
            clients,
        })
}

// ----- clients -----

/// Connects from a source address spread over 127.0.0.0/8, so runs of thousands of
/// connections do not exhaust one address's ephemeral ports (TIME_WAIT stays on our side).
fn connect(addr: SocketAddr, index: usize) -> io::Result<TcpStream> {
    let socket = Socket::new(Domain::IPV4, Type::STREAM, Some(Protocol::TCP))?;
    let source = Ipv4Addr::new(
        127,
        0,
        1 + (index / 250) as u8 % 200,
        2 + (index % 250) as u8,
    );
    socket.bind(&SockAddr::from(SocketAddrV4::new(source, 0)))?;
    socket.connect_timeout(&addr.into(), IO_TIMEOUT)?;
    let stream: TcpStream = socket.into();
    stream.set_read_timeout(Some(IO_TIMEOUT))?;
    stream.set_write_timeout(Some(IO_TIMEOUT))?;
    Ok(stream)
}

/// Stretches `size` so `len` bytes take at most `MAX_CHUNKS` pieces.
fn piece(size: usize, len: usize) -> usize {
    size.max(len.div_ceil(MAX_CHUNKS)).max(1)
}

/// Pauses every so many pieces, at most `MAX_PAUSES` times over `pieces`.
fn maybe_pause(pause: Pause, done: usize, pieces: usize) {
    if pause.micros == 0 {
        return;
    }
    let every = pause.every.max(pieces.div_ceil(MAX_PAUSES)).max(1);
    if done % every == 0 {
        thread::sleep(Duration::from_micros(pause.micros));
    }
}

fn write_side(mut stream: TcpStream, data: &[u8], plan: &ClientPlan) -> Result<(), String> {
    let chunk = piece(plan.chunk, data.len());
    let pieces = data.len().div_ceil(chunk);
    for (i, part) in data.chunks(chunk).enumerate() {
        stream
            .write_all(part)
            .map_err(|e| format!("write at byte {}: {e}", i * chunk))?;
        maybe_pause(plan.write_pause, i + 1, pieces);
    }
    if plan.end == End::HalfClose {
        stream
            .shutdown(Shutdown::Write)
            .map_err(|e| format!("shutdown(Write): {e}"))?;
    }
    Ok(())
}

fn read_side(mut stream: TcpStream, len: usize, plan: &ClientPlan) -> Result<Vec<u8>, String> {
    let size = piece(plan.read, len);
    let pieces = len.div_ceil(size).max(1);
    let mut buf = vec![0u8; size];
    let mut got = Vec::with_capacity(len);
    let mut reads = 0;
    loop {
        let want = match plan.end {
            End::ReadThenClose if got.len() == len => return Ok(got),
            End::ReadThenClose => size.min(len - got.len()),
            End::HalfClose => size,
        };
        match stream.read(&mut buf[..want]) {
            Ok(0) if plan.end == End::HalfClose => return Ok(got),
            Ok(0) => return Err(format!("EOF after {} of {len} bytes", got.len())),
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                return Err(format!(
                    "nothing (not even EOF) within {IO_TIMEOUT:?} after {} of {len} bytes",
                    got.len()
                ));
            }
            Err(e) => return Err(format!("read after {} of {len} bytes: {e}", got.len())),
        }
        if got.len() > len {
            return Err(format!(
                "received {} bytes, more than the {len} sent",
                got.len()
            ));
        }
        reads += 1;
        maybe_pause(plan.read_pause, reads, pieces);
    }
}

/// Runs one client to the end and compares its echo with its payload.
fn run_client(addr: SocketAddr, index: usize, plan: &ClientPlan) -> Result<(), String> {
    let fail = |what: String| format!("client #{index}: {what}");
    let stream = connect(addr, index).map_err(|e| fail(format!("connect: {e}")))?;
    stream
        .set_nodelay(plan.nodelay)
        .map_err(|e| fail(format!("nodelay: {e}")))?;
    let reader = stream
        .try_clone()
        .map_err(|e| fail(format!("clone: {e}")))?;
    let data = payload(plan.seed, plan.len);
    let (written, received) = thread::scope(|s| {
        let writer = s.spawn(|| write_side(stream, &data, plan));
        let received = read_side(reader, data.len(), plan);
        let written = writer
            .join()
            .unwrap_or_else(|_| Err("writer panicked".to_owned()));
        (written, received)
    });
    written.map_err(fail)?;
    let got = received.map_err(fail)?;
    if got != data {
        let at = got
            .iter()
            .zip(&data)
            .position(|(a, b)| a != b)
            .unwrap_or(got.len().min(data.len()));
        return Err(fail(format!(
            "echo differs from the payload at byte {at} (sent {}, received {})",
            data.len(),
            got.len()
        )));
    }
    Ok(())
}

/// Starts the model's server, runs every client of the case, stops the server.
fn run_case(model: Model, case: &SocketCase) -> Result<(), String> {
    let (launch, clients) = harness_for(model);
    let server = RunningServer::start(launch, model, case.workers, case.buffer_size);
    let addr = server.addr();
    let errors: Vec<String> = match clients {
        Clients::Sequential => case
            .clients
            .iter()
            .enumerate()
            .filter_map(|(i, plan)| run_client(addr, i, plan).err())
            .collect(),
        Clients::Concurrent => thread::scope(|s| {
            let handles: Vec<_> = case
                .clients
                .iter()
                .enumerate()
                .map(|(i, plan)| s.spawn(move || run_client(addr, i, plan)))
                .collect();
            handles
                .into_iter()
                .filter_map(|h| {
                    h.join()
                        .unwrap_or_else(|_| Err("client panicked".into()))
                        .err()
                })
                .collect()
        }),
    };
    // Clients are closed by now; a server that does not drain and exit fails the case here.
    server.stop();
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors.join("\n"))
    }
}

// ----- runners -----

/// `PROPTEST_CASES` if set, else `default`.
fn cases(default: u32) -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The models to test: all, or those named in `PROPTEST_MODELS`.
fn models_under_test() -> Vec<Model> {
    match std::env::var("PROPTEST_MODELS") {
        Ok(list) if !list.trim().is_empty() => list
            .split(',')
            .map(|name| {
                name.trim()
                    .parse()
                    .unwrap_or_else(|e| panic!("PROPTEST_MODELS: {e}"))
            })
            .collect(),
        _ => Model::ALL.to_vec(),
    }
}

fn runner_config() -> ProptestConfig {
    ProptestConfig {
        cases: cases(24),
        source_file: Some(file!()),
        failure_persistence: Some(Box::new(FileFailurePersistence::Direct(
            "proptest-regressions/prop_sockets.txt",
        ))),
        // A shrink step is a whole server run; keep the search bounded.
        max_shrink_iters: 400,
        max_shrink_time: 120_000,
        ..ProptestConfig::default()
    }
}

/// For each model: generated workers, client counts, payloads, chunkings, delays and
/// half-closes against a fresh server; every client gets its payload back exactly.
#[test]
fn every_model_echoes_every_client_exactly() {
    let mut failures = Vec::new();
    for model in models_under_test() {
        let config = runner_config();
        let count = config.cases;
        let started = Instant::now();
        let clients = AtomicUsize::new(0);
        let bytes = AtomicUsize::new(0);
        let mut runner = TestRunner::new(config);
        let result = runner.run(&case_strategy(), |case| {
            clients.fetch_add(case.clients.len(), Ordering::Relaxed);
            let total: usize = case.clients.iter().map(|c| c.len).sum();
            bytes.fetch_add(total, Ordering::Relaxed);
            run_case(model, &case).map_err(TestCaseError::fail)
        });
        eprintln!(
            "prop_sockets: model {model}: {count} cases ({} connections, {:.1} MiB echoed, \
             shrink steps included) in {:.1?}",
            clients.into_inner(),
            bytes.into_inner() as f64 / (1024.0 * 1024.0),
            started.elapsed()
        );
        if let Err(e) = result {
            failures.push(format!("model {model}: {e}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

/// Each model, 200 times: a client sends a few bytes and half-closes at once, so the data
/// and the FIN arrive together; it must get the bytes back and then EOF, promptly (an
/// edge-triggered server that takes the short read for "drained" never sees the FIN again).
#[test]
fn data_then_immediate_half_close_gets_echo_and_eof() {
    for model in models_under_test() {
        let (launch, _) = harness_for(model);
        let server = RunningServer::start(launch, model, 1, 4096);
        for i in 0..200 {
            let mut c = connect(server.addr(), i).unwrap();
            c.write_all(b"hello").unwrap();
            c.shutdown(Shutdown::Write).unwrap();
            let mut out = Vec::new();
            c.read_to_end(&mut out)
                .unwrap_or_else(|e| panic!("model {model}, attempt {i}: {e} after {out:?}"));
            assert_eq!(out, b"hello", "model {model}, attempt {i}");
        }
        server.stop();
    }
}

/// The binary launcher (needed for models that fork) serves a case end to end, with the
/// default model, so it is known to work before such a model exists.
#[test]
fn binary_launch_serves_a_case() {
    let plan = |len, end| ClientPlan {
        len,
        seed: len as u64,
        chunk: 1000,
        read: 777,
        write_pause: Pause {
            every: 1,
            micros: 0,
        },
        read_pause: Pause {
            every: 1,
            micros: 0,
        },
        nodelay: true,
        end,
    };
    let case = SocketCase {
        workers: 2,
        buffer_size: 4096,
        clients: vec![
            plan(100_000, End::HalfClose),
            plan(5000, End::ReadThenClose),
            plan(0, End::HalfClose),
        ],
    };
    let server = RunningServer::start(Launch::Binary, Model::default(), 2, 4096);
    let addr = server.addr();
    for (i, plan) in case.clients.iter().enumerate() {
        run_client(addr, i, plan).unwrap();
    }
    server.stop();
}
