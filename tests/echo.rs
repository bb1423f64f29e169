//! Proves the echo is byte-exact for every model: single round trips, a thousand clients at
//! once with varied payloads, byte-by-byte fragmentation, and half-close.

mod util;

use std::io::Write;
use std::net::Shutdown;
use std::thread;

use reactor_pool::Model;
use util::{Spec, assert_same, connect, echo_all, payload, read_n, read_to_eof, with_dispatch};

/// One client sends a line and reads it back, then sends a second message on the same
/// connection: the connection survives across messages.
fn round_trip(model: Model) {
    let server = Spec::new(model).start();
    let mut s = connect(server.addr);
    s.write_all(b"hello, reactor\n").unwrap();
    assert_eq!(read_n(&mut s, 15), b"hello, reactor\n");
    s.write_all(b"again").unwrap();
    assert_eq!(read_n(&mut s, 5), b"again");
    drop(s);
    server.stop();
}

/// 1,000 clients are connected at the same time, each sends a payload of a different size
/// (0 to 16 KiB) and must get exactly that payload back. Four client threads share the work;
/// every connection is open before any payload is sent.
fn thousand_concurrent_clients(model: Model) {
    if !util::is_concurrent(model) {
        return; // the iterative model serves one client at a time by design
    }
    let _heavy = util::heavy();
    let server = Spec::new(model).start();
    let addr = server.addr;
    let threads: Vec<_> = (0..4u64)
        .map(|t| {
            thread::spawn(move || {
                let mut conns: Vec<_> = (0..250).map(|_| connect(addr)).collect();
                let payloads: Vec<Vec<u8>> = (0..250u64)
                    .map(|i| {
                        let seed = t * 1000 + i;
                        payload(seed, (seed as usize * 7919) % (16 * 1024 + 1))
                    })
                    .collect();
                for (c, p) in conns.iter_mut().zip(&payloads) {
                    c.write_all(p).unwrap();
                }
                for (c, p) in conns.iter_mut().zip(&payloads) {
                    assert_same(&read_n(c, p.len()), p);
                }
            })
        })
        .collect();
    for t in threads {
        t.join().expect("client thread");
    }
    server.stop();
}

/// A 64 KiB payload is written one byte per `write` call (with TCP_NODELAY on the client,
/// so many tiny segments) while a reader collects the echo: fragmentation must not matter.
fn byte_by_byte_fragmentation(model: Model) {
    let server = Spec::new(model).buffer_size(4096).start();
    let data = payload(7, 64 * 1024);
    let mut s = connect(server.addr);
    s.set_nodelay(true).unwrap();
    let mut w = s.try_clone().unwrap();
    let sent = data.clone();
    let writer = thread::spawn(move || {
        for b in &sent {
            w.write_all(std::slice::from_ref(b)).unwrap();
        }
        w.shutdown(Shutdown::Write).unwrap();
    });
    let echoed = read_to_eof(&mut s);
    writer.join().unwrap();
    assert_same(&echoed, &data);
    server.stop();
}

/// The client sends 1 MiB and half-closes at once; the server must echo all of it and only
/// then send its FIN (the client sees EOF right after the last byte).
fn half_close_gets_everything_back(model: Model) {
    let server = Spec::new(model).start();
    for (seed, len) in [(1, 0), (2, 1), (3, 100_000), (4, 1 << 20)] {
        let data = payload(seed, len);
        assert_same(&echo_all(server.addr, &data), &data);
    }
    server.stop();
}

per_model!(
    round_trip,
    thousand_concurrent_clients,
    byte_by_byte_fragmentation,
    half_close_gets_everything_back,
);
per_dispatch!(
    round_trip,
    thousand_concurrent_clients,
    byte_by_byte_fragmentation,
    half_close_gets_everything_back,
);
