//! The server's signal thread: SIGINT and SIGTERM drain (through the [`ShutdownHandle`]),
//! SIGHUP reloads.
//!
//! `signal-hook` replaces `ctrlc` here because `ctrlc`'s termination feature maps SIGHUP to
//! the same handler as SIGTERM, and a server must tell "reload" from "stop". signal-hook's
//! handlers only write to a self-pipe (async-signal-safe); the decoding and all real work run
//! on this ordinary thread.

use std::io;
use std::thread::{self, JoinHandle};

use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
use signal_hook::iterator::{Handle, Signals};
use tracing::info;

use super::notify::notify;
use super::reload::{ReloadThread, Reloader};
use crate::shutdown::ShutdownHandle;

/// Installed handlers and the thread that acts on them.
#[derive(Debug)]
pub(super) struct SignalThread {
    /// Closes the signal iterator, which ends the thread.
    handle: Handle,
    /// The thread.
    thread: JoinHandle<()>,
}

/// Installs the handlers at once (so a signal that arrives right after start-up is not lost
/// to its default action) and starts the thread.
pub(super) fn spawn(shutdown: ShutdownHandle, reloader: Reloader) -> io::Result<SignalThread> {
    let mut signals = Signals::new([SIGHUP, SIGINT, SIGTERM])?;
    // Reloads run elsewhere: a read that blocks must not keep SIGTERM waiting.
    let reloads = ReloadThread::spawn(reloader)?;
    let handle = signals.handle();
    let thread = thread::Builder::new()
        .name("signals".to_owned())
        .spawn(move || {
            for signal in signals.forever() {
                match signal {
                    SIGHUP => {
                        info!("SIGHUP: reloading");
                        reloads.request();
                    }
                    _ => {
                        let name = if signal == SIGINT {
                            "SIGINT"
                        } else {
                            "SIGTERM"
                        };
                        if shutdown.is_requested() {
                            info!(signal = name, "already draining");
                        } else {
                            info!(signal = name, "draining and shutting down");
                            notify("STOPPING=1");
                            shutdown.shutdown();
                        }
                    }
                }
            }
        })?;
    Ok(SignalThread { handle, thread })
}

impl SignalThread {
    /// Stops the thread (the handlers stay installed, so a late signal is still handled
    /// harmlessly rather than killing the process mid-exit).
    pub(super) fn stop(self) {
        self.handle.close();
        let _ = self.thread.join();
    }
}
