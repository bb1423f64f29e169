//! The plain UDP echo, as the baseline for `reactor-pool serve --udp`: one thread, a blocking
//! socket, `recvfrom` then `sendto` for each datagram, as inetd's built-in echo does. No
//! batching, no poller, no rules (it echoes privileged source ports too: a baseline, not a
//! service to expose).
//!
//! Usage: `udp_echo_baseline [ADDR]` (default 127.0.0.1:7009; port 0 picks one). Prints
//! `listening on ADDR` once bound, like `reactor-pool serve`, and dies of SIGTERM.
//!
//! ```text
//! cargo build --release --example udp_echo_baseline
//! target/release/examples/udp_echo_baseline 127.0.0.1:7009
//! ```

use std::io::{ErrorKind, Write};
use std::net::UdpSocket;
use std::process::ExitCode;

fn main() -> ExitCode {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:7009".to_owned());
    let socket = match UdpSocket::bind(&addr) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("udp_echo_baseline: cannot listen on {addr}: {e}");
            return ExitCode::from(1);
        }
    };
    match socket.local_addr() {
        Ok(bound) => println!("listening on {bound}"),
        Err(e) => {
            eprintln!("udp_echo_baseline: {e}");
            return ExitCode::from(1);
        }
    }
    let _ = std::io::stdout().flush();
    // Room for the largest datagram; a larger one (IPv6) arrives truncated and is echoed so.
    let mut buf = vec![0u8; 65_536];
    loop {
        let (n, from) = match socket.recv_from(&mut buf) {
            Ok(got) => got,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) => {
                eprintln!("udp_echo_baseline: receive failed: {e}");
                continue;
            }
        };
        // A reply that cannot be sent is lost, as UDP allows.
        let _ = socket.send_to(&buf[..n], from);
    }
}
