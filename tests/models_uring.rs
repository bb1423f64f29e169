//! Proves what is particular to the `uring` model: where io_uring is unavailable (here
//! `io_uring_setup` is refused by a seccomp filter, as a container runtime or
//! `kernel.io_uring_disabled` would) `serve --model uring` exits 1 before it listens, with
//! one line on stderr naming io_uring and the OS error; and a peer's FIN that arrives while
//! sends are still queued gets every byte back before the server's FIN.

mod util;

use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use std::io::Write;
use std::net::Shutdown;

use reactor_pool::Model;
use util::{BIN, Spec, assert_same, connect, payload, read_to_eof};

/// `io_uring_setup`'s number (the same on every architecture since Linux 5.1).
const SYS_IO_URING_SETUP: u32 = 425;

/// Installs a seccomp filter that fails `io_uring_setup` with `EPERM` and allows the rest.
fn refuse_io_uring() -> std::io::Result<()> {
    let filter = [
        // Load the syscall number (offset 0 of `struct seccomp_data`).
        libc::sock_filter {
            code: (libc::BPF_LD | libc::BPF_W | libc::BPF_ABS) as u16,
            jt: 0,
            jf: 0,
            k: 0,
        },
        libc::sock_filter {
            code: (libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K) as u16,
            jt: 0,
            jf: 1,
            k: SYS_IO_URING_SETUP,
        },
        libc::sock_filter {
            code: (libc::BPF_RET | libc::BPF_K) as u16,
            jt: 0,
            jf: 0,
            k: libc::SECCOMP_RET_ERRNO | libc::EPERM as u32,
        },
        libc::sock_filter {
            code: (libc::BPF_RET | libc::BPF_K) as u16,
            jt: 0,
            jf: 0,
            k: libc::SECCOMP_RET_ALLOW,
        },
    ];
    let prog = libc::sock_fprog {
        len: filter.len() as u16,
        filter: filter.as_ptr().cast_mut(),
    };
    // SAFETY: plain prctl calls; `prog` points at `filter`, which outlives the call (the
    // kernel copies the program).
    unsafe {
        if libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0
            || libc::prctl(
                libc::PR_SET_SECCOMP,
                libc::SECCOMP_MODE_FILTER,
                &prog as *const libc::sock_fprog,
            ) != 0
        {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}

/// The binary, with io_uring refused, exits 1 within a bounded time, prints nothing on
/// stdout (it never reported listening) and one line on stderr naming io_uring and EPERM.
#[test]
fn unavailable_io_uring_exits_1_with_one_line() {
    let mut cmd = Command::new(BIN);
    cmd.args(["serve", "--listen", "127.0.0.1:0", "--model", "uring"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    // SAFETY: the closure runs in the forked child before exec and only calls prctl, which
    // is async-signal-safe; it touches no memory shared with the parent's threads.
    unsafe {
        cmd.pre_exec(refuse_io_uring);
    }
    let mut child = cmd.spawn().unwrap();
    let deadline = Instant::now() + util::PATIENCE;
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("the server kept running without io_uring");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "stderr: {stderr}");
    assert!(stdout.is_empty(), "it reported listening: {stdout}");
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "stderr: {stderr}");
    assert!(
        lines[0].contains("io_uring") && lines[0].contains("Operation not permitted"),
        "stderr: {stderr}"
    );
}

/// Thirty waves; in each, with a 512-byte `buffer_size`, 32 clients at once each write 16 KiB
/// in pieces of 1 to 7 bytes (TCP_NODELAY: many tiny segments, so the server handles
/// several receive completions per round) and half-close right after the last one, reading
/// the echo concurrently. Now and then the FIN reaches the server while a send is in flight
/// and more bytes wait behind it (the waves make that likely); each client must still get
/// its whole payload back, in order, before EOF.
#[test]
fn fin_with_sends_queued_gets_everything_first() {
    let server = Spec::new(Model::Uring).buffer_size(512).start();
    for wave in 0..30u64 {
        let clients: Vec<_> = (0..32)
            .map(|i| {
                let addr = server.addr;
                std::thread::spawn(move || {
                    let data = payload(wave * 32 + i, 16 * 1024);
                    let mut s = connect(addr);
                    s.set_nodelay(true).unwrap();
                    let mut w = s.try_clone().unwrap();
                    let sent = data.clone();
                    let writer = std::thread::spawn(move || {
                        let mut rest = &sent[..];
                        for n in (1..=7).cycle() {
                            if rest.is_empty() {
                                break;
                            }
                            let (piece, tail) = rest.split_at(n.min(rest.len()));
                            w.write_all(piece).unwrap();
                            rest = tail;
                        }
                        w.shutdown(Shutdown::Write).unwrap();
                    });
                    let echoed = read_to_eof(&mut s);
                    writer.join().unwrap();
                    assert_same(&echoed, &data);
                })
            })
            .collect();
        for c in clients {
            c.join().unwrap();
        }
    }
    server.stop();
}
