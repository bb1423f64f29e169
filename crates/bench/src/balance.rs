//! Balance: how evenly a reactor server's workers shared the connections of one run, read
//! from the server's own per-worker counters (`reactor_pool_worker_connections_total` on its
//! metrics endpoint, whose address the server logs at start-up).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::time::Duration;

/// The line a server logs when its metrics endpoint is up.
const METRICS_AT: &str = "metrics at http://";
/// Bound on connecting to, and reading from, the endpoint.
const SCRAPE_TIMEOUT: Duration = Duration::from_secs(5);
/// The per-worker counter of connections handed to (or accepted by) a worker.
const PER_WORKER: &str = "reactor_pool_worker_connections_total{worker=\"";

/// Connections each worker handled so far, in worker order: scraped from the endpoint whose
/// address the server wrote to `log`.
pub(crate) fn scrape_per_worker(log: &Path) -> Result<Vec<u64>, String> {
    let text =
        std::fs::read_to_string(log).map_err(|e| format!("cannot read {}: {e}", log.display()))?;
    let addr = metrics_addr(&text).ok_or("the server logged no metrics address")?;
    let mut stream = TcpStream::connect_timeout(&addr, SCRAPE_TIMEOUT)
        .map_err(|e| format!("metrics endpoint {addr}: {e}"))?;
    stream
        .set_read_timeout(Some(SCRAPE_TIMEOUT))
        .and_then(|()| stream.set_write_timeout(Some(SCRAPE_TIMEOUT)))
        .and_then(|()| {
            write!(
                stream,
                "GET /metrics HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
            )
        })
        .map_err(|e| format!("metrics endpoint {addr}: {e}"))?;
    let mut body = String::new();
    stream
        .read_to_string(&mut body)
        .map_err(|e| format!("metrics endpoint {addr}: {e}"))?;
    let per_worker = per_worker(&body);
    if per_worker.is_empty() {
        return Err(format!("no {PER_WORKER}...}} samples at {addr}"));
    }
    Ok(per_worker)
}

/// The metrics address in a server's log.
fn metrics_addr(log: &str) -> Option<SocketAddr> {
    let rest = &log[log.find(METRICS_AT)? + METRICS_AT.len()..];
    rest[..rest.find("/metrics")?].parse().ok()
}

/// The per-worker connection counters in a scrape, by worker index.
fn per_worker(body: &str) -> Vec<u64> {
    let mut found: Vec<(usize, u64)> = body
        .lines()
        .filter_map(|l| {
            let rest = l.strip_prefix(PER_WORKER)?;
            let (worker, value) = rest.split_once("\"} ")?;
            Some((
                worker.parse().ok()?,
                value.trim().parse::<f64>().ok()? as u64,
            ))
        })
        .collect();
    found.sort_unstable();
    found.into_iter().map(|(_, v)| v).collect()
}

/// Imbalance of a spread: the busiest worker's share over the mean (1.0 is perfectly even;
/// `n` means one worker of `n` got everything). `None` when nothing was handled.
pub(crate) fn imbalance(per_worker: &[u64]) -> Option<f64> {
    let total: u64 = per_worker.iter().sum();
    let max = *per_worker.iter().max()?;
    (total > 0).then(|| max as f64 * per_worker.len() as f64 / total as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_address_and_the_counters() {
        let log = "2026 INFO reactor_pool::ops: metrics at http://127.0.0.1:4567/metrics\n";
        assert_eq!(metrics_addr(log), Some("127.0.0.1:4567".parse().unwrap()));
        let body = "# TYPE x counter\n\
            reactor_pool_worker_connections_total{worker=\"1\"} 5\n\
            reactor_pool_worker_connections_total{worker=\"0\"} 3\n\
            reactor_pool_worker_connections_active{worker=\"0\"} 1\n";
        assert_eq!(per_worker(body), [3, 5]);
    }

    #[test]
    fn imbalance_is_max_over_mean() {
        assert_eq!(imbalance(&[4, 4, 4, 4]), Some(1.0));
        assert_eq!(imbalance(&[16, 0, 0, 0]), Some(4.0));
        assert_eq!(imbalance(&[6, 2, 4, 4]), Some(1.5));
        assert_eq!(imbalance(&[0, 0]), None);
        assert_eq!(imbalance(&[]), None);
    }
}
