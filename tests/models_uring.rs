//! Proves the `uring` model fails clearly where io_uring is unavailable: with
//! `io_uring_setup` refused (here by a seccomp filter, as a container runtime or
//! `kernel.io_uring_disabled` would), `serve --model uring` exits 1 before it listens, with
//! one line on stderr naming io_uring and the OS error.

mod util;

use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use util::BIN;

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
