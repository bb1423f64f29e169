//! systemd readiness notification (`sd_notify`), for `Type=notify` units: `READY=1` once the
//! server listens, `RELOADING=1` … `READY=1` around a reload, `STOPPING=1` when draining.
//! A no-op unless systemd set `NOTIFY_SOCKET`.

use std::io;
use std::os::unix::net::{SocketAddr, UnixDatagram};

/// Sends `state` (e.g. `"READY=1"`) to the service manager, if there is one.
pub(super) fn notify(state: &str) {
    let Some(path) = std::env::var_os("NOTIFY_SOCKET") else {
        return;
    };
    if let Err(e) = send(&path.to_string_lossy(), state) {
        tracing::debug!(error = %e, state, "sd_notify failed");
    }
}

fn send(path: &str, state: &str) -> io::Result<()> {
    let addr = if let Some(name) = path.strip_prefix('@') {
        // An abstract socket (Linux): systemd writes it with a leading '@'.
        use std::os::linux::net::SocketAddrExt;
        SocketAddr::from_abstract_name(name.as_bytes())?
    } else {
        SocketAddr::from_pathname(path)?
    };
    let socket = UnixDatagram::unbound()?;
    socket.send_to_addr(state.as_bytes(), &addr)?;
    Ok(())
}
