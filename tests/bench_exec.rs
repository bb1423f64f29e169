//! `reactor-pool bench` runs the `reactor-pool-bench` binary next to the server binary; a
//! server installed without it says, in one line, how to build it, and exits 1. (The bench
//! itself is tested in its own crate, `crates/bench/tests/`.)

mod util;

use std::path::PathBuf;

use util::{BIN, PATIENCE, run_program};

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
    // It fails at once; the deadline only guards against a hang.
    let output = run_program(&lone, &["bench", "--target", "127.0.0.1:9"], b"", PATIENCE);
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
