//! `reactor-pool bench` runs the `reactor-pool-bench` binary next to the server binary; a
//! server installed without it says, in one line, how to build it, and exits 1. (The bench
//! itself is tested in its own crate, `crates/bench/tests/`.)

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_reactor-pool");

/// A copy of the server binary alone in a fresh directory: `bench` finds no sibling.
#[test]
fn a_missing_bench_binary_is_explained() {
    let dir = std::env::temp_dir().join(format!("reactor-pool-no-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let lone: PathBuf = dir.join("reactor-pool");
    let _ = std::fs::remove_file(&lone);
    if std::fs::hard_link(BIN, &lone).is_err() {
        std::fs::copy(BIN, &lone).unwrap();
    }
    let mut child = Command::new(&lone)
        .args(["bench", "--target", "127.0.0.1:9"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run the lone server binary");
    // It fails at once; the deadline only guards against a hang.
    let deadline = Instant::now() + Duration::from_secs(30);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("`reactor-pool bench` without its bench binary did not exit");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let output = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "stderr: {err}");
    assert!(
        err.contains("reactor-pool-bench is missing")
            && err.contains("cargo build --release -p reactor-pool-bench"),
        "{err}"
    );
    assert_eq!(err.trim().lines().count(), 1, "one line: {err:?}");
    let _ = std::fs::remove_dir_all(&dir);
}
