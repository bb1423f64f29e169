//! Proves the fork model's promises, through the real binary (never by forking the
//! multi-threaded test process): the parent stays single-threaded, reaps every child even
//! when many exit at once (no zombies after a burst), keeps serving children through a
//! shutdown, and leaves no child behind when it exits.

mod util;

use std::io::Write;
use std::net::Shutdown;
use std::thread;
use std::time::Duration;

use reactor_pool::Model;
use util::{
    Spec, children_of, connect, read_n, read_to_eof, stat_field, threads_of, wait_for, wait_until,
};

/// 8 client threads each run 50 short connections (connect, echo 1 byte, close) at once,
/// so children exit in bursts and SIGCHLDs coalesce. Afterwards the parent has no children
/// at all: none alive, none a zombie. The parent has a single thread throughout.
#[test]
fn burst_of_short_connections_leaves_no_zombies() {
    let mut server = Spec::new(Model::Fork).spawn();
    let pid = server.pid();
    let addr = server.addr;
    let clients: Vec<_> = (0..8u8)
        .map(|t| {
            thread::spawn(move || {
                for i in 0..50u8 {
                    let mut s = connect(addr);
                    s.write_all(&[t, i]).unwrap();
                    assert_eq!(read_n(&mut s, 2), [t, i]);
                }
            })
        })
        .collect();
    for c in clients {
        c.join().expect("client thread");
    }
    assert_eq!(
        threads_of(pid),
        1,
        "the fork parent must stay single-threaded"
    );
    wait_for(
        "every child to be reaped; (pid, state) of the children left",
        || {
            children_of(pid)
                .into_iter()
                .take(10)
                .map(|c| (c, stat_field(c, 3)))
                .collect::<Vec<_>>()
        },
        Vec::is_empty,
    );
    let stderr = server.stop();
    assert!(!stderr.contains("abnormally"), "{stderr}");
}

/// Three connections are open (three children). After SIGTERM new connections are refused,
/// but each child keeps echoing; once the clients half-close and get their last echo, the
/// parent exits 0 long before the 10 min shutdown timeout (`wait` gives up after `PATIENCE`,
/// whatever the machine's load), and none of the children exists.
#[test]
fn shutdown_lets_children_finish_and_leaves_none() {
    let timeout = Duration::from_secs(600);
    let mut server = Spec::new(Model::Fork).shutdown_timeout(timeout).spawn();
    let pid = server.pid();
    let mut conns: Vec<_> = (0..3u8)
        .map(|i| {
            let mut s = connect(server.addr);
            s.write_all(&[i]).unwrap();
            assert_eq!(read_n(&mut s, 1), [i]);
            s
        })
        .collect();
    let children = children_of(pid);
    assert_eq!(children.len(), 3, "one child per connection");
    server.signal(libc::SIGTERM);
    let addr = server.addr;
    wait_until("connections refused after SIGTERM", || {
        std::net::TcpStream::connect(addr).is_err()
    });
    for s in &mut conns {
        s.write_all(b"after").unwrap();
        assert_eq!(read_n(s, 5), b"after", "a child stopped serving at SIGTERM");
        s.shutdown(Shutdown::Write).unwrap();
        assert!(read_to_eof(s).is_empty());
    }
    let start = std::time::Instant::now();
    let status = server.wait();
    let stderr = server.stderr();
    assert!(status.success(), "exit {status:?}: {stderr}");
    assert!(start.elapsed() < timeout / 2, "waited for the timeout");
    for c in children {
        assert!(
            !std::path::Path::new(&format!("/proc/{c}")).exists(),
            "child {c} outlived the parent"
        );
    }
}
