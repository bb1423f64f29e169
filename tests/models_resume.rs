//! Proves no model strands a connection it stopped serving early, with the smallest buffer
//! (512 bytes, so the 16-read fairness budget covers only 8 KiB): a connection that spent
//! its budget with bytes still queued, or was paused by backpressure, is resumed without a
//! new readiness event. This is the edge-triggered model's hazard (no new edge comes for
//! bytes already queued); every model runs it.

mod util;

use std::io::Write;
use std::time::Duration;

use reactor_pool::Model;
use util::{
    PATIENCE, Spec, assert_same, connect, finish_echo, payload, read_n, write_until_stalled,
};

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
    write_until_stalled(
        &mut s,
        &data,
        &mut sent,
        64 * 1024,
        Duration::from_millis(200),
    );
    finish_echo(&mut s, &data, sent, 64 * 1024, PATIENCE);
    drop(s);
    server.stop();
}

per_model!(
    messages_larger_than_the_budget_finish,
    connection_paused_by_backpressure_resumes
);
