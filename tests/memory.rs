//! Proves idle connections cost almost nothing: with 10,000 idle connections open (each
//! having completed one echo, so the server has accepted and registered it), the server's
//! resident memory grows by less than 2 KiB per connection.

mod util;

use std::io::Write;
use std::net::TcpStream;

use reactor_pool::Model;
use util::{Spec, connect, read_n};

const CONNECTIONS: usize = 10_000;

/// Opens 10,000 connections in batches of 500 (each batch echoes one byte per connection
/// before the next batch, so the accept backlog never overflows), then compares the server's
/// RSS with its RSS after a single warm-up connection.
fn ten_thousand_idle_connections_cost_under_2k_each(model: Model) {
    if !util::is_concurrent(model) || matches!(model.name(), "select" | "thread" | "fork") {
        // One client at a time, FD_SETSIZE caps it at ~1000, or a thread (stack + buffer) or
        // a process per connection: by design (tests/models_costs.rs measures those).
        return;
    }
    let _heavy = util::heavy();
    let mut server = Spec::new(model).max_connections(CONNECTIONS + 100).spawn();
    let mut warm = connect(server.addr);
    warm.write_all(b"w").unwrap();
    assert_eq!(read_n(&mut warm, 1), b"w");
    let before = server.rss();
    let mut conns: Vec<TcpStream> = Vec::with_capacity(CONNECTIONS);
    while conns.len() < CONNECTIONS {
        let start = conns.len();
        for _ in 0..500 {
            conns.push(connect(server.addr));
        }
        for s in &mut conns[start..] {
            s.write_all(b"i").unwrap();
        }
        for s in &mut conns[start..] {
            assert_eq!(read_n(s, 1), b"i");
        }
    }
    let after = server.rss();
    let per_conn = after.saturating_sub(before) as f64 / CONNECTIONS as f64;
    eprintln!(
        "{model}: RSS {before} -> {after} bytes with {CONNECTIONS} idle connections: {per_conn:.0} B each"
    );
    assert!(
        per_conn < 2048.0,
        "{per_conn:.0} bytes of RSS per idle connection"
    );
    drop(conns);
    server.stop();
}

per_model!(ten_thousand_idle_connections_cost_under_2k_each);
