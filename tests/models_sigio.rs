//! Proves the `sigio` model survives the loss of readiness signals: with the process's
//! real-time signal queue limited to one entry (`RLIMIT_SIGPENDING`), most readiness events
//! overflow into plain `SIGIO`, which carries no descriptor; the model rescans every
//! connection and still echoes every byte of many concurrent clients.

mod util;

use std::io::Write;
use std::os::unix::process::CommandExt;

use reactor_pool::Model;
use util::{Binary, Spec, assert_same, connect, payload, read_n};

/// Starts the binary with at most `limit` queued signals.
fn spawn_with_sigpending(spec: &Spec, limit: u64) -> Binary {
    Binary::spawn_with(&spec.args(), |cmd| {
        // SAFETY: the closure runs in the forked child before exec and only calls setrlimit,
        // which is async-signal-safe; it touches no memory shared with the parent's threads.
        unsafe {
            cmd.pre_exec(move || {
                let rl = libc::rlimit {
                    rlim_cur: limit,
                    rlim_max: limit,
                };
                if libc::setrlimit(libc::RLIMIT_SIGPENDING, &rl) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
    })
}

/// Sixteen clients at once, each sending thirty messages of up to 20 KB (several segments,
/// so several events each) and waiting for every echo. With one queue entry, events are
/// lost all the time; every byte must still come back, and the server must say it rescanned.
#[test]
fn queue_overflow_is_recovered_by_rescanning() {
    let mut server = spawn_with_sigpending(&Spec::new(Model::Sigio), 1);
    let clients: Vec<_> = (0..16u64)
        .map(|c| {
            let addr = server.addr;
            std::thread::spawn(move || {
                let mut s = connect(addr);
                for i in 0..30 {
                    let msg = payload(c * 1000 + i, 1 + (i as usize * 677) % 20_000);
                    s.write_all(&msg).unwrap();
                    assert_same(&read_n(&mut s, msg.len()), &msg);
                }
            })
        })
        .collect();
    for c in clients {
        c.join().expect("client");
    }
    let stderr = server.stop();
    assert!(
        stderr.contains("signal queue overflowed"),
        "the queue never overflowed, so recovery was not exercised:\n{stderr}"
    );
}
