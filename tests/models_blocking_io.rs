//! Proves the promises of the models built on blocking calls: the iterative model serves one
//! client at a time (the next waits in the backlog, then is served) and times out a silent
//! one through SO_RCVTIMEO; the thread model runs exactly one small-stack thread per
//! connection and none once they are gone.

mod util;

use std::io::{ErrorKind, Read, Write};
use std::time::{Duration, Instant};

use reactor_pool::Model;
use util::{Binary, PATIENCE, Spec, connect, read_n, wait_for};

/// Client A is in service; client B connects and sends, but gets nothing back while A stays
/// connected (its bytes wait in the backlog's socket). When A leaves, B gets its echo.
#[test]
fn blocking_serves_one_client_at_a_time() {
    let server = Spec::new(Model::Blocking).start();
    let mut a = connect(server.addr);
    a.write_all(b"a").unwrap();
    assert_eq!(read_n(&mut a, 1), b"a");
    let mut b = connect(server.addr);
    b.write_all(b"b").unwrap();
    b.set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    let mut buf = [0u8; 1];
    let early = b.read(&mut buf);
    assert!(
        matches!(&early, Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut)),
        "B was served while A was in service: {early:?}"
    );
    drop(a);
    b.set_read_timeout(Some(PATIENCE)).unwrap();
    assert_eq!(read_n(&mut b, 1), b"b");
    drop(b);
    server.stop();
}

/// With `idle_timeout` = 0.5 s, a client that goes silent after one echo is closed by the
/// iterative model (its blocking read gives up through SO_RCVTIMEO), no earlier than 0.5 s
/// after its last traffic, and the next client is then served.
#[test]
fn blocking_idle_timeout_frees_the_server() {
    let idle = Duration::from_millis(500);
    let server = Spec::new(Model::Blocking).idle_timeout(idle).start();
    let mut silent = connect(server.addr);
    // Taken before the write: the server's last traffic is later, so the close cannot come
    // sooner than `idle` after this, however the test is scheduled.
    let last = Instant::now();
    silent.write_all(b"s").unwrap();
    assert_eq!(read_n(&mut silent, 1), b"s");
    let mut buf = [0u8; 1];
    match silent.read(&mut buf) {
        Ok(0) => {}
        Err(e) if e.kind() == ErrorKind::ConnectionReset => {}
        other => panic!("the silent client was not closed: {other:?}"),
    }
    assert!(last.elapsed() >= idle, "closed too early");
    let mut next = connect(server.addr);
    next.write_all(b"n").unwrap();
    assert_eq!(read_n(&mut next, 1), b"n");
    drop(next);
    server.stop();
}

/// 200 connections, each echoed once, run on 200 threads besides the process's own (main
/// and signal threads), with the configured 64 KiB stack; resident memory per connection
/// stays small. When the clients leave, every connection thread ends.
#[test]
fn thread_model_runs_one_thread_per_connection() {
    let mut args = Spec::new(Model::Thread).args();
    args.extend(["--thread-stack-size".into(), "65536".into()]);
    let mut server = Binary::spawn(&args);
    let base = server.threads();
    let before = server.rss();
    let conns: Vec<_> = (0..200u32)
        .map(|i| {
            let mut s = connect(server.addr);
            s.write_all(&i.to_be_bytes()).unwrap();
            assert_eq!(read_n(&mut s, 4), i.to_be_bytes());
            s
        })
        .collect();
    wait_for(
        "one thread per connection (200 more)",
        || server.threads(),
        |&n| n == base + 200,
    );
    let per_conn = server.rss().saturating_sub(before) / 200;
    eprintln!("thread model: {per_conn} bytes of RSS per connection");
    assert!(
        per_conn < 64 * 1024,
        "{per_conn} bytes of RSS per connection"
    );
    drop(conns);
    wait_for(
        "every connection thread to end",
        || server.threads(),
        |&n| n == base,
    );
    server.stop();
}
