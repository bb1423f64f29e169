//! `reactor-pool client`: sends stdin line by line (or `--send TEXT` once) and prints each
//! echo, even when the echo arrives in pieces; exits non-zero with a clear message when the
//! server is unreachable, closes early, goes silent, or echoes something else.

mod ops_util;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::thread;
use std::time::Duration;

use ops_util::*;

fn server() -> (Binary, SocketAddr) {
    let p = Binary::spawn(&["serve", "--listen", "127.0.0.1:0", "--workers", "1"]);
    let addr = p.addr;
    (p, addr)
}

/// A fake server on 127.0.0.1:0 that runs `serve_one` on its first connection.
fn fake(
    serve_one: impl FnOnce(std::net::TcpStream) + Send + 'static,
) -> (SocketAddr, thread::JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let handle = thread::spawn(move || {
        let stream = accept_within(&listener, DEADLINE);
        stream.set_read_timeout(Some(DEADLINE)).unwrap();
        serve_one(stream);
    });
    (addr, handle)
}

/// `--send` prints the echo of TEXT plus a newline and exits 0.
#[test]
fn send_prints_the_echo() {
    let (mut p, addr) = server();
    let (status, out, err) = run(&["client", &addr.to_string(), "--send", "hello, echo"], b"");
    assert!(status.success(), "{err}");
    assert_eq!(out, "hello, echo\n");
    p.stop();
}

/// Lines from stdin, including an empty one, a 300 KB one and a last one without a newline,
/// come back in order, byte for byte.
#[test]
fn stdin_lines_are_echoed_in_order() {
    let (mut p, addr) = server();
    let mut input = b"first\n\nthird line\n".to_vec();
    input.extend(std::iter::repeat_n(b'x', 300_000));
    input.extend_from_slice(b"\nno newline at the end");
    let (status, out, err) = run(&["client", &addr.to_string()], &input);
    assert!(status.success(), "{err}");
    assert_eq!(out.as_bytes(), &input[..]);
    p.stop();
}

/// A server that echoes one byte at a time, flushing each: the client still prints the whole
/// line and succeeds.
#[test]
fn an_echo_in_pieces_is_reassembled() {
    let (addr, fake) = fake(|stream| {
        let mut reader = BufReader::new(stream.try_clone().unwrap());
        let mut line = Vec::new();
        reader.read_until(b'\n', &mut line).unwrap();
        let mut writer = stream;
        writer.set_nodelay(true).unwrap();
        for byte in line {
            writer.write_all(&[byte]).unwrap();
            thread::sleep(Duration::from_millis(2));
        }
    });
    let (status, out, err) = run(
        &["client", &addr.to_string(), "--send", "piece by piece"],
        b"",
    );
    assert!(status.success(), "{err}");
    assert_eq!(out, "piece by piece\n");
    fake.join().unwrap();
}

/// Nothing listening: exit 1, "cannot connect".
#[test]
fn an_unreachable_server_is_an_error() {
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let addr = format!("127.0.0.1:{port}");
    let (status, out, err) = run(&["client", &addr, "--send", "x"], b"");
    assert_eq!(status.code(), Some(1));
    assert!(out.is_empty());
    assert!(err.contains(&format!("cannot connect to {addr}")), "{err}");
}

/// A server that reads the line and closes after echoing only part of it: exit 1, "closed the
/// connection early", with the partial echo printed.
#[test]
fn a_server_closing_early_is_an_error() {
    let (addr, fake) = fake(|mut stream| {
        let mut buf = [0u8; 64];
        let _ = stream.read(&mut buf).unwrap();
        stream.write_all(b"hal").unwrap();
    });
    let (status, out, err) = run(&["client", &addr.to_string(), "--send", "halfway"], b"");
    assert_eq!(status.code(), Some(1), "{err}");
    assert_eq!(out, "hal");
    assert!(
        err.contains("closed the connection early (3 of 8 bytes echoed)"),
        "{err}"
    );
    fake.join().unwrap();
}

/// A server that never answers: exit 1 after the timeout, saying so.
#[test]
fn a_silent_server_times_out() {
    let (tx, rx) = std::sync::mpsc::channel::<()>();
    let (addr, fake) = fake(move |stream| {
        // Hold the connection open, silent, until the client has given up.
        let _ = rx.recv_timeout(DEADLINE);
        drop(stream);
    });
    let (status, _, err) = run(
        &[
            "client",
            &addr.to_string(),
            "--send",
            "anyone?",
            "--timeout",
            "300ms",
        ],
        b"",
    );
    let _ = tx.send(());
    assert_eq!(status.code(), Some(1), "{err}");
    assert!(err.contains("no echo for 300ms"), "{err}");
    fake.join().unwrap();
}

/// A server that answers with other bytes: exit 1, "differs".
#[test]
fn a_wrong_echo_is_an_error() {
    let (addr, fake) = fake(|mut stream| {
        let mut buf = [0u8; 64];
        let n = stream.read(&mut buf).unwrap();
        buf[..n].make_ascii_uppercase();
        stream.write_all(&buf[..n]).unwrap();
    });
    let (status, _, err) = run(&["client", &addr.to_string(), "--send", "quiet"], b"");
    assert_eq!(status.code(), Some(1), "{err}");
    assert!(
        err.contains("differs from what was sent (first difference at byte 0)"),
        "{err}"
    );
    fake.join().unwrap();
}

/// An address without a port is a usage error: exit 2.
#[test]
fn a_malformed_address_is_a_usage_error() {
    let (status, _, err) = run(&["client", "127.0.0.1", "--send", "x"], b"");
    assert_eq!(status.code(), Some(2), "{err}");
    assert!(err.contains("invalid address '127.0.0.1'"), "{err}");
}
