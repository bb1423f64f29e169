//! Criterion benchmarks of the echo path, from the inside out:
//!
//! - `echo_core`: the sans-IO `Echo` state machine over an in-memory stream, one message per
//!   `drive` (as one readiness event delivers it), plus a variant whose writes are short so
//!   the bytes go through `Pending`. Throughput in bytes.
//! - `handoff`: the acceptor→worker hand-off: queue an accepted connection through the
//!   `Dispatcher` to a live `Worker` thread and wait for the first echo on it, against the
//!   same one-byte echo on a connection the worker already holds.
//! - `loopback`: a short end-to-end group per model (`reactor-pool models`), each served by
//!   the real binary (the reactor with one worker): one client's 64 B ping-pong and
//!   16 × 4 KiB pipeline.
//!
//! Run: `cargo bench --bench echo` (or `-- echo_core` for one group).

use std::hint::black_box;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::AtomicUsize;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use reactor_pool::Config;
use reactor_pool::live::LiveSettings;
use reactor_pool::policy::Progress;
use reactor_pool::reactor::dispatch::{Dispatcher, WorkerLink};
use reactor_pool::stats::Stats;
use reactor_pool::worker::{Echo, EchoOptions, Transport, Worker, WorkerSettings};

/// A stream whose reads deliver `input` once, at most `chunk` bytes per read, then
/// WouldBlock; whose writes accept at most `accept` bytes each.
struct MemStream {
    input: Vec<u8>,
    pos: usize,
    chunk: usize,
    accept: usize,
    output: Vec<u8>,
}

impl Read for MemStream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let left = self.input.len() - self.pos;
        if left == 0 {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        let n = left.min(buf.len()).min(self.chunk);
        buf[..n].copy_from_slice(&self.input[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

impl Write for MemStream {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let n = data.len().min(self.accept);
        if n == 0 {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        self.output.extend_from_slice(&data[..n]);
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Transport for MemStream {
    fn shutdown_write(&mut self) -> io::Result<()> {
        Ok(())
    }
}

fn echo_core(c: &mut Criterion) {
    let options = EchoOptions::new(64 * 1024);
    let mut scratch = vec![0u8; options.limit];
    let mut group = c.benchmark_group("echo_core");
    for size in [64usize, 4096, 65_536] {
        group.throughput(Throughput::Bytes(size as u64));
        for (name, accept) in [("whole_writes", usize::MAX), ("half_writes", size / 2)] {
            let mut stream = MemStream {
                input: (0..size).map(|i| i as u8).collect(),
                pos: 0,
                chunk: size,
                accept,
                output: Vec::with_capacity(size),
            };
            let mut echo = Echo::new();
            group.bench_with_input(BenchmarkId::new(name, size), &size, |b, _| {
                b.iter(|| {
                    stream.pos = 0;
                    stream.output.clear();
                    // One readiness event: drive until blocked; with half writes, the
                    // remainder goes through Pending and out on the following "writable".
                    loop {
                        match echo.drive(&mut stream, &mut scratch, &options).progress {
                            Progress::Yielded => continue,
                            Progress::Blocked(_) if echo.pending() > 0 => continue,
                            Progress::Blocked(_) => break,
                            Progress::Done(c) => panic!("unexpected close: {c:?}"),
                        }
                    }
                    assert_eq!(stream.output.len(), size);
                    black_box(&stream.output);
                });
            });
        }
    }
    group.finish();
}

/// A live worker thread fed through a dispatcher, as the acceptor feeds it.
struct LiveWorker {
    dispatcher: Dispatcher,
    listener: TcpListener,
    thread: Option<JoinHandle<io::Result<()>>>,
}

impl LiveWorker {
    fn start() -> LiveWorker {
        let (tx, rx) = crossbeam_channel::unbounded();
        let config = Config {
            idle_timeout: None,
            shutdown_timeout: Duration::from_secs(1),
            ..Config::default()
        };
        let settings = WorkerSettings {
            id: 0,
            echo: EchoOptions::new(config.buffer_size),
            live: Arc::new(LiveSettings::new(&config)),
            stats: Arc::new(Stats::new(1)),
        };
        let (worker, waker) =
            Worker::new(settings, rx, Arc::new(AtomicUsize::new(0))).expect("worker");
        let thread = Some(std::thread::spawn(move || worker.run()));
        LiveWorker {
            dispatcher: Dispatcher::new(vec![WorkerLink {
                commands: tx,
                waker,
            }]),
            listener: TcpListener::bind("127.0.0.1:0").expect("bind"),
            thread,
        }
    }

    /// A connected pair: the client end, and the server end ready for dispatch.
    fn pair(&self) -> (TcpStream, mio::net::TcpStream) {
        let client = TcpStream::connect(self.listener.local_addr().unwrap()).expect("connect");
        client.set_nodelay(true).unwrap();
        client
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        // Reset on close: no TIME_WAIT pile-up over thousands of iterations.
        socket2::SockRef::from(&client)
            .set_linger(Some(Duration::ZERO))
            .unwrap();
        let (server, _) = self.listener.accept().expect("accept");
        server.set_nonblocking(true).unwrap();
        (client, mio::net::TcpStream::from_std(server))
    }

    fn dispatch(&mut self, server: mio::net::TcpStream) {
        if self.dispatcher.dispatch(server).is_err() {
            panic!("worker gone");
        }
        self.dispatcher.flush().expect("wake the worker");
    }
}

impl Drop for LiveWorker {
    fn drop(&mut self) {
        self.dispatcher.stop_all();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn ping(client: &mut TcpStream) {
    let mut byte = [7u8];
    client.write_all(&byte).expect("write");
    client.read_exact(&mut byte).expect("echo");
}

fn handoff(c: &mut Criterion) {
    let mut group = c.benchmark_group("handoff");
    group.sample_size(20);
    group.measurement_time(Duration::from_secs(3));
    let mut live = LiveWorker::start();
    for batch in [1usize, 32] {
        group.throughput(Throughput::Elements(batch as u64));
        group.bench_function(BenchmarkId::new("dispatch_then_first_echo", batch), |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let pairs: Vec<_> = (0..batch).map(|_| live.pair()).collect();
                    let mut clients = Vec::with_capacity(batch);
                    let start = Instant::now();
                    for (client, server) in pairs {
                        // Queue every connection, wake the worker once, as the acceptor does.
                        if live.dispatcher.dispatch(server).is_err() {
                            panic!("worker gone");
                        }
                        clients.push(client);
                    }
                    live.dispatcher.flush().expect("wake");
                    for client in &mut clients {
                        ping(client);
                    }
                    total += start.elapsed();
                }
                total
            });
        });
    }
    // The reference: the same echo on a connection the worker already serves.
    let (mut client, server) = live.pair();
    live.dispatch(server);
    ping(&mut client);
    group.throughput(Throughput::Elements(1));
    group.bench_function("echo_on_registered_connection", |b| {
        b.iter(|| ping(&mut client));
    });
    group.finish();
}

/// `reactor-pool serve --model M` (the reactor with one worker) on an ephemeral port.
struct Served {
    child: Child,
    addr: SocketAddr,
}

impl Served {
    fn start(model: &str) -> Served {
        // Only the reactor takes --workers (the other models refuse it).
        let workers: &[&str] = if model == "reactor" {
            &["--workers", "1"]
        } else {
            &[]
        };
        let mut child = Command::new(env!("CARGO_BIN_EXE_reactor-pool"))
            .args(["serve", "--listen", "127.0.0.1:0"])
            .args(workers)
            .args(["--model", model, "--log-level", "warn"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .spawn()
            .expect("spawn serve");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .expect("read the listening line");
        let addr = line
            .trim()
            .strip_prefix("listening on ")
            .and_then(|a| a.parse().ok())
            .unwrap_or_else(|| panic!("{model}: unexpected first line {line:?}"));
        Served { child, addr }
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn models() -> Vec<String> {
    let out = Command::new(env!("CARGO_BIN_EXE_reactor-pool"))
        .arg("models")
        .output()
        .expect("run reactor-pool models");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().next().map(str::to_owned))
        .collect()
}

fn loopback(c: &mut Criterion) {
    for model in models() {
        let server = Served::start(&model);
        let mut group = c.benchmark_group(format!("loopback/{model}"));
        group.sample_size(20);
        group.measurement_time(Duration::from_secs(2));
        group.warm_up_time(Duration::from_millis(500));

        let mut client = TcpStream::connect(server.addr).expect("connect");
        client.set_nodelay(true).unwrap();
        client
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let small = [42u8; 64];
        let mut back = vec![0u8; 64 * 1024];
        group.throughput(Throughput::Bytes(64));
        group.bench_function("pingpong_64B", |b| {
            b.iter(|| {
                client.write_all(&small).unwrap();
                client.read_exact(&mut back[..64]).unwrap();
            });
        });
        let message = [7u8; 4096];
        group.throughput(Throughput::Bytes(16 * 4096));
        group.bench_function("pipeline_16x4KiB", |b| {
            b.iter(|| {
                for _ in 0..16 {
                    client.write_all(&message).unwrap();
                }
                client.read_exact(&mut back[..16 * 4096]).unwrap();
            });
        });
        group.finish();
    }
}

criterion_group!(benches, echo_core, handoff, loopback);
criterion_main!(benches);
