//! `RunResult`: what one measurement of one cell produced, the load generator's figures
//! plus the server's CPU and memory sampled around the window.

use serde::Serialize;

use crate::compare_spec::Cell;
use crate::report::RunReport;
use crate::scenario::Scenario;
use crate::spec::LoadSpec;
use crate::summary::NOT_SERVED;

/// What one measurement of one cell produced.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct RunResult {
    /// Cell label.
    pub cell: String,
    /// Scenario.
    pub scenario: Scenario,
    /// Repetition (0-based).
    pub repetition: usize,
    /// Position of this cell in the repetition's order (0-based).
    pub position: usize,
    /// Whether the server started; if not, `server_exit` says why and the figures are empty.
    pub server_started: bool,
    /// The load generator's figures.
    pub report: RunReport,
    /// Length of the interval between the two samples of the server, seconds (about the
    /// window's length; a little shorter when the sampling thread woke late).
    pub sampled_secs: Option<f64>,
    /// Server CPU time (user + system) over the sampled interval, seconds.
    pub server_cpu_secs: Option<f64>,
    /// Server CPU time per message in the window, microseconds.
    pub server_cpu_per_msg_us: Option<f64>,
    /// Load-generator CPU time per message in the window, microseconds.
    pub client_cpu_per_msg_us: Option<f64>,
    /// Server context switches (all threads) per message in the window: how often the
    /// server went to sleep and was woken, the cost that grows when threads outnumber cores.
    pub server_switches_per_msg: Option<f64>,
    /// Server resident memory before any connection, bytes.
    pub server_rss_start_bytes: Option<u64>,
    /// Server resident memory at the window's end, bytes (idle: at the end of the hold).
    pub server_rss_bytes: Option<u64>,
    /// Server peak resident memory (VmHWM) at the window's end, bytes.
    pub server_rss_peak_bytes: Option<u64>,
    /// Idle: server memory growth per open connection, bytes.
    pub rss_per_connection_bytes: Option<f64>,
    /// Connections each worker handled (reactor cells, from the server's per-worker
    /// counters at the end of the run, warm-up included).
    pub per_worker_connections: Option<Vec<u64>>,
    /// The busiest worker's connections over the mean (1.0: perfectly even).
    pub imbalance: Option<f64>,
    /// "clean", or how the server failed.
    pub server_exit: String,
}

impl RunResult {
    /// The record of a measurement whose server did not start.
    pub(crate) fn not_started(
        cell: &Cell,
        load: &LoadSpec,
        repetition: usize,
        position: usize,
        why: &str,
    ) -> RunResult {
        RunResult {
            cell: cell.label.clone(),
            scenario: load.scenario,
            repetition,
            position,
            server_started: false,
            report: RunReport::empty(load),
            sampled_secs: None,
            server_cpu_secs: None,
            server_cpu_per_msg_us: None,
            client_cpu_per_msg_us: None,
            server_switches_per_msg: None,
            server_rss_start_bytes: None,
            server_rss_bytes: None,
            server_rss_peak_bytes: None,
            rss_per_connection_bytes: None,
            per_worker_connections: None,
            imbalance: None,
            server_exit: format!("did not start: {why}"),
        }
    }

    /// The record of a measurement not run because the cell's model cannot serve the load
    /// at all (`why`); not an error.
    pub(crate) fn not_served(
        cell: &Cell,
        load: &LoadSpec,
        repetition: usize,
        position: usize,
        why: &str,
    ) -> RunResult {
        RunResult {
            server_exit: format!("{NOT_SERVED}: {why}"),
            ..RunResult::not_started(cell, load, repetition, position, why)
        }
    }

    /// Why the cell's model cannot serve this load, if that is why it was not run.
    pub(crate) fn not_served_because(&self) -> Option<&str> {
        self.server_exit
            .strip_prefix(NOT_SERVED)
            .and_then(|rest| rest.strip_prefix(": "))
    }

    /// Errors counted by the load generator, plus one if the server did not exit cleanly
    /// (a load its model cannot serve is not an error).
    pub(crate) fn errors(&self) -> u64 {
        let unclean = self.server_exit != "clean" && self.not_served_because().is_none();
        self.report.errors.total() + u64::from(unclean)
    }
}
