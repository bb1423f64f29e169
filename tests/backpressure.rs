//! Proves a client that sends without reading cannot make the server buffer without bound:
//! the server stops reading at `buffer_size` unsent bytes, its memory stays flat, and every
//! byte still arrives, in order, once the client reads.

mod util;

use std::time::Duration;

use reactor_pool::Model;
use util::{PATIENCE, Spec, connect, finish_echo, payload, write_until_stalled};

/// Total the client tries to push: far beyond `buffer_size` and beyond what loopback socket
/// buffers can absorb (a few MiB each way), so an unbounded server would show it in RSS.
const TOTAL: usize = 48 << 20;

/// The client writes (non-blocking) without reading until the connection stops accepting
/// bytes for a while. A bounded server stops well short of `TOTAL`, and its RSS grows by far
/// less than what was sent. Then the client reads and writes the rest; the echo must match.
fn non_reading_client_is_held_back(model: Model) {
    let mut server = Spec::new(model).buffer_size(64 * 1024).spawn();
    let rss_before = server.rss();
    let data = payload(99, TOTAL);
    let mut s = connect(server.addr);
    s.set_nonblocking(true).unwrap();

    // Phase 1: write until no progress is possible (the pipe is full end to end): full for
    // half a second, the server has stopped taking bytes.
    let mut sent = 0;
    write_until_stalled(
        &mut s,
        &data,
        &mut sent,
        256 * 1024,
        Duration::from_millis(500),
    );
    assert!(
        sent < TOTAL,
        "the server accepted all {TOTAL} bytes without the client reading"
    );
    let grown = server.rss().saturating_sub(rss_before);
    assert!(
        grown < 8 << 20,
        "server RSS grew by {grown} bytes while holding a non-reading client ({sent} bytes sent)"
    );

    // Phase 2: read everything back while sending the rest.
    finish_echo(&mut s, &data, sent, 256 * 1024, PATIENCE * 2);
    drop(s);
    server.stop();
}

per_model!(non_reading_client_is_held_back);
