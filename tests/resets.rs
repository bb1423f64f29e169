//! Proves resets never hurt the server: a storm of clients that reset mid-echo (SO_LINGER 0)
//! leaves no file descriptor behind, writes to reset peers do not raise SIGPIPE, and the
//! server keeps serving.

mod util;

use std::io::Write;
use std::time::Duration;

use reactor_pool::Model;
use socket2::SockRef;
use util::{Spec, assert_same, connect, echo_all, payload, wait_for};

/// Three waves of 300 clients each: a third reset at once, a third after sending 1 byte, a
/// third after sending 200 KiB (so the server is mid-echo with unsent bytes when the RST
/// lands and its next write fails with ECONNRESET/EPIPE). Afterwards the server's fd count
/// returns to its baseline and it still echoes.
fn reset_storm_leaks_nothing(model: Model) {
    let _heavy = util::heavy();
    let mut server = Spec::new(model).spawn();
    // One full echo first, so lazily created fds (if any) exist in the baseline.
    assert_same(&echo_all(server.addr, b"warm-up"), b"warm-up");
    // The warm-up connection may still be closing; it can only make the baseline one higher,
    // while a leak in a storm of 900 resets would show as hundreds.
    let baseline = server.fd_count();
    let big = payload(5, 200 * 1024);
    for wave in 0..3 {
        let mut conns = Vec::new();
        for i in 0..300 {
            let mut s = connect(server.addr);
            match i % 3 {
                0 => {}
                1 => s.write_all(b"x").unwrap(),
                _ => {
                    s.set_nonblocking(true).unwrap();
                    // Whatever fits; the server starts echoing into a socket about to reset.
                    let _ = s.write(&big);
                }
            }
            conns.push(s);
        }
        for s in conns {
            SockRef::from(&s).set_linger(Some(Duration::ZERO)).unwrap();
            drop(s); // RST
        }
        wait_for(
            &format!("wave {wave}: the server's fds back to the baseline {baseline}"),
            || server.fd_count(),
            |&fds| fds <= baseline,
        );
    }
    let data = payload(6, 300_000);
    assert_same(&echo_all(server.addr, &data), &data);
    server.stop();
}

per_model!(reset_storm_leaks_nothing);
