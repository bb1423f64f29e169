//! Hostile or careless input: a config "file" that is a FIFO or a device, one over the size
//! bound, bytes TOML forbids, durations too small for the timers, a zero client timeout.
//! Each is refused with one line naming the file position or the field (exit 2), never a
//! hang, an unbounded read, a silent "disabled" or an empty reason; and a reload that meets a
//! FIFO is rejected while SIGTERM keeps working, in every model.

mod ops_util;

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use ops_util::*;

/// Creates a FIFO at `path`.
fn mkfifo(path: &Path) {
    let c = CString::new(path.as_os_str().as_bytes()).unwrap();
    // SAFETY: `c` is a valid NUL-terminated path for the duration of the call.
    let rc = unsafe { libc::mkfifo(c.as_ptr(), 0o644) };
    assert_eq!(rc, 0, "mkfifo: {}", std::io::Error::last_os_error());
}

/// `serve --config PATH`, expected to exit 2 with one line containing each of `needles`.
#[track_caller]
fn refused(path: &Path, needles: &[&str]) {
    let (status, _, err) = run(
        &[
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--config",
            path.to_str().unwrap(),
        ],
        b"",
    );
    assert_eq!(status.code(), Some(2), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
    for needle in needles {
        assert!(err.contains(needle), "{needle:?} not in: {err}");
    }
}

/// A FIFO as the config file: opening it for reading would wait for a writer forever.
#[test]
fn a_fifo_config_is_refused_at_start() {
    let dir = TempDir::new("cfg-fifo");
    let fifo = dir.join("c.toml");
    mkfifo(&fifo);
    refused(&fifo, &["not a regular file", "FIFO"]);
}

/// A device as the config file: /dev/zero would be read forever.
#[test]
fn a_device_config_is_refused_at_start() {
    refused(Path::new("/dev/zero"), &["not a regular file"]);
}

/// A regular file over the 1 MiB bound is refused before it is read.
#[test]
fn an_oversized_config_is_refused() {
    let dir = TempDir::new("cfg-big");
    let text = "# padding\n".repeat(200_000);
    let path = dir.write("c.toml", &text);
    refused(&path, &["1 MiB"]);
}

/// NUL and DEL bytes: the error says which byte, on which line and column.
#[test]
fn nul_and_del_bytes_are_named_with_their_position() {
    let dir = TempDir::new("cfg-ctl");
    let nul = dir.write("nul.toml", "workers = 2\nlog_level = \"in\0fo\"\n");
    refused(&nul, &["U+0000", "line 2", "column 16"]);
    let del = dir.write("del.toml", "\u{7f}workers = 2\n");
    refused(&del, &["U+007F", "line 1", "column 1"]);
}

/// A positive duration below the timers' resolution is an error naming the field, given as
/// a flag or in the file, in the same syntax; never "disabled".
#[test]
fn tiny_durations_are_errors_naming_the_field() {
    let (status, _, err) = run(
        &[
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--idle-timeout",
            "0.0000000001",
        ],
        b"",
    );
    assert_eq!(status.code(), Some(2), "{err}");
    assert!(
        err.contains("--idle-timeout") && err.contains("resolution"),
        "{err}"
    );
    let (status, _, err) = run(
        &[
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--idle-timeout",
            "1e-10",
        ],
        b"",
    );
    assert_eq!(status.code(), Some(2), "{err}");
    assert!(err.contains("resolution"), "same syntax as the file: {err}");
    let dir = TempDir::new("cfg-tiny");
    let path = dir.write("c.toml", "idle_timeout = 1e-10\n");
    refused(&path, &["`idle_timeout`", "resolution"]);
    let path = dir.write("c.toml", "shutdown_timeout = \"1e-10s\"\n");
    refused(&path, &["`shutdown_timeout`", "resolution"]);
}

/// `client --timeout 0` is a bad argument: exit 2 naming the flag, before connecting.
#[test]
fn client_timeout_zero_is_a_usage_error() {
    let (status, _, err) = run(&["client", "127.0.0.1:9", "--timeout", "0"], b"");
    assert_eq!(status.code(), Some(2), "{err}");
    assert!(err.contains("--timeout"), "{err}");
    assert!(!err.contains("cannot connect"), "{err}");
}

/// The config file is replaced by a FIFO and the server gets SIGHUP: the reload is
/// rejected (the FIFO is not read) and the server keeps serving, and SIGTERM still drains
/// and exits 0.
fn reload_of_a_fifo_is_rejected_and_sigterm_still_works(model: reactor_pool::Model) {
    let dir = TempDir::new("cfg-reload-fifo");
    let path = dir.write(
        "c.toml",
        &format!("listen = \"127.0.0.1:0\"\nmodel = \"{model}\"\n"),
    );
    let mut p = Proc::spawn(&["serve", "--config", path.to_str().unwrap()]);
    let addr = p.listening();
    std::fs::remove_file(&path).unwrap();
    mkfifo(&path);
    p.signal(libc::SIGHUP);
    p.wait_stderr("config reload rejected", 1);
    assert!(p.stderr().contains("not a regular file"), "{}", p.stderr());
    wait_echo(addr);
    p.stop();
}

per_model!(reload_of_a_fifo_is_rejected_and_sigterm_still_works);
