//! Proves the command-line contract: exactly one `listening on` line when ready, bad
//! arguments and config exit 2 with one line naming the field (nothing listening, no panic),
//! an address in use exits 1 naming the address, and flags override the config file. Also
//! proves that the launcher's check of that one-line contract can fail a test.

mod util;

use std::io::Write;

use util::{Binary, connect, read_n, run};

fn temp_config(name: &str, text: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("reactor-pool-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

#[track_caller]
fn assert_usage_error(args: &[&str], must_mention: &str) {
    let out = run(args);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(2),
        "{args:?}: status {:?}, stderr {stderr}",
        out.status
    );
    assert!(
        out.stdout.is_empty(),
        "{args:?} printed to stdout: {:?}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert_eq!(
        stderr.trim_end().lines().count(),
        1,
        "{args:?}: not one line: {stderr}"
    );
    assert!(
        stderr.contains(must_mention),
        "{args:?}: {stderr:?} does not mention {must_mention:?}"
    );
    assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
}

/// Each bad flag value exits 2 with one line naming the flag.
#[test]
fn bad_flags_exit_2_naming_the_field() {
    let l = ["serve", "--listen", "127.0.0.1:0"];
    let with =
        |extra: &[&'static str]| -> Vec<&'static str> { l.iter().chain(extra).copied().collect() };
    assert_usage_error(&with(&["--workers", "abc"]), "--workers");
    assert_usage_error(&with(&["--workers", "5000"]), "workers");
    assert_usage_error(&with(&["--buffer-size", "1"]), "buffer_size");
    assert_usage_error(&with(&["--max-connections", "0"]), "max_connections");
    assert_usage_error(&with(&["--backlog", "0"]), "backlog");
    assert_usage_error(&with(&["--idle-timeout", "soon"]), "--idle-timeout");
    assert_usage_error(&with(&["--model", "fibers"]), "model");
    assert_usage_error(&with(&["--log-level", "=[bad"]), "log_level");
    assert_usage_error(&with(&["--frobnicate"]), "--frobnicate");
    assert_usage_error(&["serve", "--listen", "nowhere"], "listen");
    assert_usage_error(&["serve", "--listen", "127.0.0.1:99999"], "listen");
}

/// Config-file problems exit 2 with one line naming the file or the field.
#[test]
fn bad_config_files_exit_2_naming_the_field() {
    assert_usage_error(
        &["serve", "--config", "/nonexistent/reactor-pool.toml"],
        "/nonexistent/reactor-pool.toml",
    );
    let cases = [
        (
            "unknown.toml",
            "listen = \"127.0.0.1:0\"\nwrokers = 2\n",
            "wrokers",
        ),
        (
            "type.toml",
            "listen = \"127.0.0.1:0\"\nworkers = \"two\"\n",
            "workers",
        ),
        (
            "range.toml",
            "listen = \"127.0.0.1:0\"\nbuffer_size = 10\n",
            "buffer_size",
        ),
        ("addr.toml", "listen = \"localhost\"\n", "listen"),
        (
            "model.toml",
            "listen = \"127.0.0.1:0\"\nmodel = \"fibers\"\n",
            "model",
        ),
        (
            "duration.toml",
            "listen = \"127.0.0.1:0\"\nidle_timeout = \"5 fortnights\"\n",
            "idle_timeout",
        ),
        ("syntax.toml", "listen = \n", "syntax.toml"),
    ];
    for (name, text, field) in cases {
        let path = temp_config(name, text);
        assert_usage_error(&["serve", "--config", path.to_str().unwrap()], field);
    }
}

/// A second server on a busy address exits 1 with the address and the OS error.
#[test]
fn address_in_use_exits_1() {
    let mut first = Binary::spawn(&["serve", "--listen", "127.0.0.1:0"]);
    let addr = first.addr.to_string();
    let out = run(&["serve", "--listen", &addr]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(&addr) && stderr.contains("in use"),
        "{stderr}"
    );
    assert!(out.stdout.is_empty());
    first.stop();
}

/// The file sets `max_connections = 1`; `--listen` on the command line overrides the file's
/// address. Both take effect: the server listens on the flag's port 0, and a second client
/// is turned away.
#[test]
fn flags_override_the_file_and_the_file_overrides_defaults() {
    let path = temp_config(
        "good.toml",
        "listen = \"127.0.0.1:1\"\nmax_connections = 1\nidle_timeout = \"5m\"\n",
    );
    let mut server = Binary::spawn(&[
        "serve",
        "--config",
        path.to_str().unwrap(),
        "--listen",
        "127.0.0.1:0",
    ]);
    assert_ne!(server.addr.port(), 1);
    let mut first = connect(server.addr);
    first.write_all(b"one").unwrap();
    assert_eq!(read_n(&mut first, 3), b"one");
    let mut second = connect(server.addr);
    let mut buf = [0u8; 1];
    let n = std::io::Read::read(&mut second, &mut buf).unwrap_or(0);
    assert_eq!(
        n, 0,
        "the second connection was served despite max_connections = 1"
    );
    drop(first);
    server.stop();
}

/// `models` lists the reactor model; `--help` exits 0.
#[test]
fn models_and_help() {
    let out = run(&["models"]);
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("reactor"));
    let out = run(&["serve", "--help"]);
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("--idle-timeout"));
}

/// The launcher's stdout check bites: a stand-in server (a shell) that prints its
/// `listening on` line and then one more line fails the test that waits for it, and, when it
/// is still running at the end, the test that merely drops it.
#[test]
fn an_extra_stdout_line_fails_the_test() {
    use std::panic::{AssertUnwindSafe, catch_unwind};
    let stand_in = |then: &str| {
        let mut cmd = std::process::Command::new("sh");
        cmd.arg("-c").arg(format!(
            "echo listening on 127.0.0.1:9; echo surprise; {then}"
        ));
        Binary::spawn_command(&mut cmd)
    };
    let message = |caught: Result<(), Box<dyn std::any::Any + Send>>| -> String {
        let payload = caught.expect_err("the extra line went unnoticed");
        payload
            .downcast_ref::<String>()
            .cloned()
            .unwrap_or_default()
    };
    let mut exits = stand_in("exit 0");
    let waited = message(catch_unwind(AssertUnwindSafe(|| {
        exits.wait();
    })));
    assert!(waited.contains("\"surprise\""), "{waited}");
    // The stand-in says on stderr once its extra line is out, so the drop below cannot kill
    // it before it printed that line.
    let runs = stand_in("echo printed >&2; exec sleep 600");
    assert_eq!(runs.addr, "127.0.0.1:9".parse().unwrap());
    util::wait_until("the stand-in printed its extra line", || {
        runs.stderr().contains("printed")
    });
    let dropped = message(catch_unwind(AssertUnwindSafe(|| drop(runs))));
    assert!(dropped.contains("\"surprise\""), "{dropped}");
}
