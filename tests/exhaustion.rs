//! Proves fd exhaustion is survivable: with RLIMIT_NOFILE squeezed to a few dozen, a flood
//! of connections makes `accept` fail with EMFILE; the server neither crashes nor spins (its
//! CPU time stays low while the backlog is full), logs a warning, and serves again once
//! descriptors are free.

mod util;

use std::io::Write;
use std::os::unix::process::CommandExt;
use std::time::Duration;

use reactor_pool::Model;
use util::{Binary, Spec, connect, echo_all, wait_for, wait_until};

/// Starts the binary with an open-files limit of `limit`.
fn spawn_with_nofile(spec: &Spec, limit: u64) -> Binary {
    Binary::spawn_with(&spec.args(), |cmd| {
        // SAFETY: the closure runs in the forked child before exec and only calls setrlimit,
        // which is async-signal-safe; it touches no memory shared with the parent's threads.
        unsafe {
            cmd.pre_exec(move || {
                let rl = libc::rlimit {
                    rlim_cur: limit,
                    rlim_max: limit,
                };
                if libc::setrlimit(libc::RLIMIT_NOFILE, &rl) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
    })
}

/// Limit 40 descriptors, 80 clients: about half are accepted, the rest hit EMFILE. Over the
/// next second the server uses far less than a second of CPU (a busy accept loop would use
/// all of it). After the clients leave, a new client is served.
fn emfile_backs_off_and_recovers(model: Model) {
    if matches!(model.name(), "fork" | "blocking") {
        // By design the process never holds more than one connection's descriptor: the fork
        // parent closes its copy at once, the iterative model serves one at a time.
        return;
    }
    let mut server = spawn_with_nofile(&Spec::new(model).workers(1), 40);
    let clients: Vec<_> = (0..80)
        .map(|_| {
            let mut s = connect(server.addr);
            s.write_all(b"x").unwrap();
            s
        })
        .collect();
    // Wait until the server has used up its descriptors.
    wait_for(
        "the server to use up its descriptors",
        || server.fd_count(),
        |&fds| fds >= 39,
    );
    let cpu_before = server.cpu_time();
    let wall = std::time::Instant::now();
    std::thread::sleep(Duration::from_secs(1)); // the measurement window, not synchronisation
    let cpu = server.cpu_time().saturating_sub(cpu_before);
    let elapsed = wall.elapsed();
    assert!(
        cpu * 2 < elapsed,
        "server used {cpu:?} of CPU in {elapsed:?} while out of fds"
    );
    drop(clients);
    wait_until("a client served after the flood", || {
        echo_all(server.addr, b"after the flood") == b"after the flood"
    });
    let stderr = server.stop();
    assert!(
        stderr.contains("pausing accept"),
        "no warning logged:\n{stderr}"
    );
}

per_model!(emfile_backs_off_and_recovers);
