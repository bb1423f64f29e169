//! Proves fd exhaustion is survivable: with RLIMIT_NOFILE squeezed to a few dozen, a flood
//! of connections makes `accept` fail with EMFILE; the server neither crashes nor spins, logs a
//! warning, and serves again once descriptors are free.
//!
//! "Does not spin" is measured by what a busy loop would do, never by a share of wall time
//! (which moves with the machine's load): the server's own count of failed accepts per second
//! of exhaustion (a loop that retries at once fails thousands of times in any slice of CPU it
//! gets; a server that pauses fails a handful of times, and fewer on a slower machine), and its
//! CPU time set against what a busy loop gets on this machine over the same second.

mod ops_util;

use std::io::Write;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use ops_util::*;
use reactor_pool::Model;

/// Failed accepts allowed per second of exhaustion. The server pauses 100 ms between
/// attempts (at most 10 a second); the margin keeps this a test of "no spin", not of the exact
/// pause.
const MAX_ATTEMPTS_PER_SEC: f64 = 50.0;

/// A process that does nothing but spin: the CPU time it gets over a window is what a busy
/// loop gets on this machine, under its current load, over that window. Killed on drop.
struct Spinner(Child);

impl Spinner {
    fn start() -> Spinner {
        let child = Command::new("sh")
            .args(["-c", "while :; do :; done"])
            .stdin(Stdio::null())
            .spawn()
            .expect("spawn a spinning shell");
        Spinner(child)
    }

    /// CPU time used since it started.
    fn cpu_time(&self) -> Duration {
        cpu_time_precise_of(self.0.id())
    }
}

impl Drop for Spinner {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Limit 40 descriptors, 80 clients: about half are accepted, the rest wait in the backlog
/// while `accept` fails with EMFILE, for at least a second. Over the whole flood the server
/// counts at most `MAX_ATTEMPTS_PER_SEC` failed accepts per second
/// (`reactor_pool_accept_errors_total`, scraped once descriptors are free again), and at
/// least one (it did run out). Over one second of exhaustion it uses less than a quarter of
/// the CPU a spinning process gets over the same second (a busy loop of any kind would get
/// about as much as the spinner). After the clients leave, a new client is served, and the
/// pause was logged.
fn emfile_backs_off_and_recovers(model: Model) {
    if matches!(model.name(), "fork" | "blocking") {
        // By design the process never holds more than one connection's descriptor: the fork
        // parent closes its copy at once, the iterative model serves one at a time.
        return;
    }
    let mut args = Spec::new(model).workers(1).args();
    args.extend(["--metrics-listen".to_owned(), "127.0.0.1:0".to_owned()]);
    let mut server = spawn_with_nofile(&args, 40);
    let metrics = metrics_addr(&server);
    let flood = Instant::now();
    let clients: Vec<_> = (0..80)
        .map(|_| {
            let mut s = connect(server.addr);
            s.write_all(b"x").unwrap();
            s
        })
        .collect();
    wait_for(
        "the server to use up its descriptors",
        || server.fd_count(),
        |&fds| fds >= 39,
    );
    let cpu_before = cpu_time_precise_of(server.pid());
    let spinner = Spinner::start();
    std::thread::sleep(Duration::from_secs(1)); // the measurement window, not synchronisation
    let cpu = cpu_time_precise_of(server.pid()).saturating_sub(cpu_before);
    let busy_loop = spinner.cpu_time();
    drop(spinner);
    assert!(
        cpu * 4 < busy_loop,
        "server used {cpu:?} of CPU while out of fds, a busy loop got {busy_loop:?}"
    );
    drop(clients);
    wait_until("a client served after the flood", || {
        echo_all(server.addr, b"after the flood") == b"after the flood"
    });
    let exhausted_for = flood.elapsed();
    let failed = scrape(metrics, "reactor_pool_accept_errors_total");
    let allowed = MAX_ATTEMPTS_PER_SEC * exhausted_for.as_secs_f64();
    eprintln!(
        "{model:?}: {failed} failed accepts in {exhausted_for:?}, CPU {cpu:?} vs a busy loop's {busy_loop:?}"
    );
    assert!(failed >= 1.0, "accept never failed: the limit did not bite");
    assert!(
        failed <= allowed,
        "{failed} failed accepts in {exhausted_for:?} (at most {allowed:.0} allowed): accept spins"
    );
    let stderr = server.stop();
    assert!(
        stderr.contains("pausing accept"),
        "no warning logged:\n{stderr}"
    );
}

per_model!(emfile_backs_off_and_recovers);
per_dispatch!(emfile_backs_off_and_recovers);
