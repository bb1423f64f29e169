//! Metrics: the Prometheus text exposition format (version 0.0.4) rendered from the server's
//! counters, and the small HTTP endpoint that serves it.
//!
//! - [`render`]: `render`, counters and gauges as text.
//! - [`http`]: `MetricsServer`, a one-thread, non-blocking HTTP/1.1 `GET /metrics` endpoint.
//!
//! Metric names start with `reactor_pool_`; the standard `process_*` metrics (open fds,
//! resident memory, CPU seconds, start time) come from `/proc/self`.

pub(crate) mod http;
pub(crate) mod render;

pub(crate) use http::MetricsServer;
pub(crate) use render::MetricsSource;
