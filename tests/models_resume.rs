//! Proves no model strands a connection it stopped serving early, with the smallest buffer
//! (512 bytes, so the 16-read fairness budget covers only 8 KiB): a connection that spent
//! its budget with bytes still queued, or was paused by backpressure, is resumed without a
//! new readiness event. This is the edge-triggered model's hazard (no new edge comes for
//! bytes already queued); every model runs it.

mod util;

use std::io::{self, Read, Write};
use std::time::{Duration, Instant};

use reactor_pool::Model;
use util::{PATIENCE, Spec, assert_same, connect, payload, read_n};

/// Ping-pong with 64 KiB messages: the client sends a whole message, then waits for all of
/// it back before sending the next. Each message needs eight budgets of reads; after the
/// first, no new data arrives until the echo is complete, so only a resumed connection
/// finishes. Twenty messages per connection, on two connections at once.
fn messages_larger_than_the_budget_finish(model: Model) {
    let server = Spec::new(model).buffer_size(512).start();
    let clients: Vec<_> = (0..2u64)
        .map(|c| {
            let addr = server.addr;
            std::thread::spawn(move || {
                let mut s = connect(addr);
                for i in 0..20 {
                    let msg = payload(c * 100 + i, 64 * 1024);
                    s.write_all(&msg).unwrap();
                    assert_same(&read_n(&mut s, msg.len()), &msg);
                }
            })
        })
        .collect();
    for c in clients {
        c.join().expect("client");
    }
    server.stop();
}

/// The client writes without reading until its writes stop making progress (the server,
/// holding 512 unsent bytes, has stopped reading), then reads while sending the rest of 8
/// MiB. The paused connection must resume and deliver every byte in order.
fn connection_paused_by_backpressure_resumes(model: Model) {
    const TOTAL: usize = 8 << 20;
    let server = Spec::new(model).buffer_size(512).start();
    let data = payload(42, TOTAL);
    let mut s = connect(server.addr);
    s.set_nonblocking(true).unwrap();
    let mut sent = 0;
    let mut stalled_since: Option<Instant> = None;
    let deadline = Instant::now() + PATIENCE;
    while sent < TOTAL && Instant::now() < deadline {
        match s.write(&data[sent..(sent + 64 * 1024).min(TOTAL)]) {
            Ok(n) => {
                sent += n;
                stalled_since = None;
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                if stalled_since.get_or_insert_with(Instant::now).elapsed()
                    > Duration::from_millis(200)
                {
                    break;
                }
                std::thread::sleep(Duration::from_millis(2));
            }
            Err(e) => panic!("write: {e}"),
        }
    }
    let mut got = 0;
    let mut buf = vec![0u8; 64 * 1024];
    let deadline = Instant::now() + PATIENCE;
    while got < TOTAL {
        assert!(
            Instant::now() < deadline,
            "stranded after {got} of {TOTAL} bytes"
        );
        let mut progress = false;
        if sent < TOTAL {
            match s.write(&data[sent..(sent + 64 * 1024).min(TOTAL)]) {
                Ok(n) => (sent, progress) = (sent + n, true),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => panic!("write: {e}"),
            }
        }
        match s.read(&mut buf) {
            Ok(0) => panic!("EOF after {got} bytes"),
            Ok(n) => {
                assert_eq!(&buf[..n], &data[got..got + n], "echo differs at {got}");
                (got, progress) = (got + n, true);
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) => panic!("read: {e}"),
        }
        if !progress {
            std::thread::sleep(Duration::from_millis(1));
        }
    }
    drop(s);
    server.stop();
}

per_model!(
    messages_larger_than_the_budget_finish,
    connection_paused_by_backpressure_resumes
);
