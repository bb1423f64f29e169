//! The tokio ecosystem's default echo server, as a peer for `reactor-pool bench --compare`:
//! accept, spawn a task per connection, `tokio::io::copy` from the socket to itself.
//!
//! Usage: `tokio_echo [ADDR]` (default 127.0.0.1:7008). Prints `listening on ADDR` once
//! ready, like `reactor-pool serve`. TCP_NODELAY is set on accepted sockets, as reactor-pool
//! does, so small pipelined echoes are not held back by Nagle's algorithm; everything else is
//! tokio's default (multi-threaded runtime with one worker per CPU, 8 KiB copy buffer).
//!
//! ```text
//! cargo build --release --example tokio_echo
//! reactor-pool bench --compare --peer tokio='target/release/examples/tokio_echo {addr}'
//! ```

use std::process::ExitCode;

use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;
use tokio::signal::unix::{SignalKind, signal};

#[tokio::main]
async fn main() -> ExitCode {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:7008".to_owned());
    let listener = match TcpListener::bind(&addr).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("tokio_echo: cannot listen on {addr}: {e}");
            return ExitCode::from(1);
        }
    };
    let mut terminate = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("tokio_echo: cannot handle SIGTERM: {e}");
            return ExitCode::from(1);
        }
    };
    match listener.local_addr() {
        Ok(bound) => println!("listening on {bound}"),
        Err(e) => {
            eprintln!("tokio_echo: {e}");
            return ExitCode::from(1);
        }
    }
    // Built once: a fresh ctrl_c() future per accept would re-register the signal listener
    // on every connection and slow accepting down.
    let shutdown = async {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = terminate.recv() => {}
        }
    };
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((mut socket, _)) => {
                    let _ = socket.set_nodelay(true);
                    tokio::spawn(async move {
                        let (mut reader, mut writer) = socket.split();
                        // Errors (resets) end this connection only.
                        if tokio::io::copy(&mut reader, &mut writer).await.is_ok() {
                            let _ = writer.shutdown().await;
                        }
                    });
                }
                // Out of descriptors or a connection aborted before accept: keep serving.
                Err(e) => {
                    eprintln!("tokio_echo: accept failed: {e}");
                    tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                }
            },
            () = &mut shutdown => return ExitCode::SUCCESS,
        }
    }
}
