//! The rules every server follows, one home each, so that a comparison between I/O models
//! compares the models and not diverging copies of the rules. The reactor (`worker`,
//! `reactor`) and every model (`models`) call these; none of them depends on either.
//!
//! - [`close`]: `CloseReason`, why a connection ended (echo core, loops, admission, counters).

pub mod close;

pub use close::CloseReason;
