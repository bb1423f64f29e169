//! The rules every server follows, one home each, so that a comparison between I/O models
//! compares the models and not diverging copies of the rules. The reactor (`worker`,
//! `reactor`) and every model (`models`) call these; none of them depends on either.
//!
//! - `CloseReason` (re-exported from `crate::close`, its own module so that the counters in
//!   `stats` can name it without depending on the rules): why a connection ended.
//! - `interest`: `Progress` and `Wants`, the echo core's status, and `next`, the rule from a
//!   drive to the interest, the resume-without-event and the backpressure count.
//! - `housekeeping`: `Housekeeping`, the idle-sweep schedule, the wait timeout and the drain
//!   deadline of an event loop (pure: time is passed in).
//! - `admission`: `Admission`, `max_connections`, the accept back-off and its logs, and
//!   `classify_accept_error`.
//! - `socket_options`: `configure_accepted`, the options of an accepted connection
//!   (`TCP_NODELAY`, keepalive, `TCP_USER_TIMEOUT`).
//! - `connlog`: `ConnLog`, the connection log's open and close lines (`log_connections`).

pub(crate) mod admission;
pub(crate) mod connlog;
pub(crate) mod housekeeping;
pub(crate) mod interest;
pub(crate) mod socket_options;

pub use crate::close::CloseReason;
pub use interest::{Progress, Wants};
