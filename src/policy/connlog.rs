//! `ConnLog`: the connection log (`log_connections`), one info line when a connection opens
//! and one when it closes, for every model.
//!
//! A record is made at accept only while `log_connections` is on (so a reload turns it on or
//! off for connections accepted after it), and lives boxed in the connection: a connection
//! that is not logged pays one null pointer, which matters when idle connections cost well
//! under a hundred bytes each. The loops add what each drive moved ([`ConnLog::add`], the same
//! numbers the counters get) and hand the record back with the close reason
//! ([`ConnLog::closed`]).

use std::net::SocketAddr;
use std::time::Instant;

use tracing::info;

use super::CloseReason;
use crate::live::LiveSettings;
use crate::models::Model;
use crate::worker::Moved;

/// What the close line reports about one connection.
#[derive(Debug)]
pub(crate) struct ConnLog {
    /// The peer (`None` if `getpeername` failed: the peer is already gone).
    peer: Option<SocketAddr>,
    /// The model serving it.
    model: Model,
    /// The reactor worker serving it; 0 in the models that have no workers.
    worker: usize,
    /// When it was accepted.
    opened: Instant,
    /// Bytes read from the peer so far.
    bytes_in: u64,
    /// Bytes written back so far.
    bytes_out: u64,
}

/// A connection's record: `None` when the connection is not logged.
pub(crate) type Record = Option<Box<ConnLog>>;

impl ConnLog {
    /// Logs the open line and returns the record, if `log_connections` is on now. `peer` is
    /// asked for only then (it is a system call).
    pub(crate) fn opened(
        live: &LiveSettings,
        model: Model,
        worker: usize,
        peer: impl FnOnce() -> std::io::Result<SocketAddr>,
    ) -> Record {
        if !live.log_connections() {
            return None;
        }
        let peer = peer().ok();
        let log = ConnLog {
            peer,
            model,
            worker,
            opened: Instant::now(),
            bytes_in: 0,
            bytes_out: 0,
        };
        info!(peer = %log.peer_text(), %model, worker, "connection opened");
        Some(Box::new(log))
    }

    /// Adds what one drive moved.
    pub(crate) fn add(record: &mut Record, moved: Moved) {
        if let Some(log) = record {
            log.bytes_in += moved.read;
            log.bytes_out += moved.written;
        }
    }

    /// Logs the close line, if the connection was logged.
    pub(crate) fn closed(record: Record, reason: CloseReason) {
        let Some(log) = record else { return };
        info!(
            peer = %log.peer_text(),
            model = %log.model,
            worker = log.worker,
            bytes_in = log.bytes_in,
            bytes_out = log.bytes_out,
            duration_ms = log.opened.elapsed().as_millis() as u64,
            reason = %reason.as_str(),
            "connection closed"
        );
    }

    fn peer_text(&self) -> String {
        self.peer
            .map_or_else(|| "unknown".to_owned(), |p| p.to_string())
    }
}
