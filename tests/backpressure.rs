//! Proves a client that sends without reading cannot make the server buffer without bound:
//! the server stops reading at `buffer_size` unsent bytes, its memory stays flat, and every
//! byte still arrives, in order, once the client reads.

mod util;

use std::io::{self, Read, Write};
use std::time::{Duration, Instant};

use reactor_pool::Model;
use util::{PATIENCE, Spec, connect, payload};

/// Total the client tries to push: far beyond `buffer_size` and beyond what loopback socket
/// buffers can absorb (a few MiB each way), so an unbounded server would show it in RSS.
const TOTAL: usize = 48 << 20;

/// The client writes (non-blocking) without reading until the connection stops accepting
/// bytes for a while. A bounded server stops well short of `TOTAL`, and its RSS grows by far
/// less than what was sent. Then the client reads and writes the rest; the echo must match.
fn non_reading_client_is_held_back(model: Model) {
    let server = Spec::new(model).buffer_size(64 * 1024).spawn();
    let rss_before = server.rss();
    let data = payload(99, TOTAL);
    let mut s = connect(server.addr);
    s.set_nonblocking(true).unwrap();

    // Phase 1: write until no progress is possible (the pipe is full end to end).
    let mut sent = 0;
    let deadline = Instant::now() + PATIENCE;
    let mut stalled_since: Option<Instant> = None;
    while sent < TOTAL && Instant::now() < deadline {
        match s.write(&data[sent..(sent + 256 * 1024).min(TOTAL)]) {
            Ok(n) => {
                sent += n;
                stalled_since = None;
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                let since = *stalled_since.get_or_insert_with(Instant::now);
                // Full for half a second: the server has stopped taking bytes.
                if since.elapsed() > Duration::from_millis(500) {
                    break;
                }
                std::thread::sleep(Duration::from_millis(5));
            }
            Err(e) => panic!("write failed: {e}"),
        }
    }
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
    let mut got = Vec::with_capacity(TOTAL);
    let mut buf = vec![0u8; 256 * 1024];
    let deadline = Instant::now() + PATIENCE * 2;
    while got.len() < TOTAL {
        assert!(
            Instant::now() < deadline,
            "echo incomplete: {} of {TOTAL}",
            got.len()
        );
        let mut progress = false;
        if sent < TOTAL {
            match s.write(&data[sent..(sent + 256 * 1024).min(TOTAL)]) {
                Ok(n) => {
                    sent += n;
                    progress = true;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => panic!("write failed: {e}"),
            }
        }
        match s.read(&mut buf) {
            Ok(0) => panic!("EOF after {} bytes", got.len()),
            Ok(n) => {
                assert_eq!(
                    &buf[..n],
                    &data[got.len()..got.len() + n],
                    "echo differs at {}",
                    got.len()
                );
                got.extend_from_slice(&buf[..n]);
                progress = true;
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) => panic!("read failed: {e}"),
        }
        if !progress {
            std::thread::sleep(Duration::from_millis(1));
        }
    }
    assert_eq!(got.len(), TOTAL);
    drop(s);
    server.stop();
}

per_model!(non_reading_client_is_held_back);
