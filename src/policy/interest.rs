//! The contract between the echo core and every event loop: what a drive achieved
//! ([`Progress`]), the readiness a connection waits for ([`Wants`]), and the one rule that
//! turns them into what the loop does next ([`next`]): the interest to register, whether the
//! connection is owed a drive without an event, and whether reading paused for backpressure.
//!
//! The reactor's workers, the `epoll`, `epoll-et`, `poll` and `select` models, and the
//! state-machine property tests' loop model all call [`next`], so the tests check the rule
//! the servers run.

use crate::close::CloseReason;

/// Readiness a connection needs before it can make progress again.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Wants {
    /// Waiting for bytes (or FIN) from the peer.
    pub read: bool,
    /// Waiting for room in the socket's send buffer.
    pub write: bool,
}

impl Wants {
    /// The interest of a fresh connection: reading only.
    pub(crate) const READ: Wants = Wants {
        read: true,
        write: false,
    };
}

/// What one drive of the echo core achieved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Progress {
    /// Every possible step was taken; call again when this readiness arrives.
    Blocked(Wants),
    /// The read budget for this call is spent while the peer may still have bytes queued.
    /// Call again soon even without a new event: edge-triggered pollers will not report
    /// bytes that were already readable.
    Yielded,
    /// The connection is finished (`Eof`, `Reset` or `Error`); close it.
    Done(CloseReason),
}

/// A connection's reading state as the rule needs it, read from the echo core before and
/// after a drive (`Echo::state`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct State {
    /// The interest the connection has: read while the peer is open and its buffer has room,
    /// write while bytes wait.
    pub(crate) wants: Wants,
    /// The peer's FIN has been read.
    pub(crate) peer_closed: bool,
}

/// How a loop's poller reports readiness.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Trigger {
    /// Level-triggered (`select`, `poll`, epoll without `EPOLLET`): a ready descriptor is
    /// reported at every wait, so bytes left unread are reported again.
    Level,
    /// Edge-triggered (`EPOLLET`, mio): only changes are reported; bytes left unread raise
    /// no new event.
    Edge,
}

/// What the loop does with a connection after a drive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Next {
    /// Keep the connection.
    Wait {
        /// The interest to register (re-register only if it changed). Never empty: a
        /// connection the core keeps always waits for something, and pollers such as mio
        /// cannot express an empty interest, so reading stands in for it.
        interest: Wants,
        /// Drive it again after this round without waiting for an event: it yielded with
        /// bytes possibly still queued, and an edge-triggered poller will not report them.
        resume: bool,
        /// Reading just paused because its buffer is full (the peer sends faster than it
        /// reads): count one backpressure pause.
        backpressure_pause: bool,
    },
    /// Close the connection for this reason.
    Close(CloseReason),
}

/// The rule: from a drive's `progress`, the connection's state `before` and `after` it, and
/// the loop's `trigger`, what the loop does next.
pub(crate) fn next(progress: Progress, before: State, after: State, trigger: Trigger) -> Next {
    let wants = match progress {
        Progress::Done(reason) => return Next::Close(reason),
        // `Blocked` carries the same interest as `after.wants`; the state is the one source.
        Progress::Blocked(_) | Progress::Yielded => after.wants,
    };
    Next::Wait {
        interest: Wants {
            read: wants.read || !wants.write,
            write: wants.write,
        },
        resume: progress == Progress::Yielded && trigger == Trigger::Edge,
        // It was reading, now it is not, and not because the peer finished: the buffer is
        // full.
        backpressure_pause: matches!(progress, Progress::Blocked(_))
            && before.wants.read
            && !after.wants.read
            && !after.peer_closed,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const fn state(read: bool, write: bool, peer_closed: bool) -> State {
        State {
            wants: Wants { read, write },
            peer_closed,
        }
    }

    const READING: State = state(true, false, false);

    #[test]
    fn done_closes_with_its_reason() {
        let done = Progress::Done(CloseReason::Reset);
        assert_eq!(
            next(done, READING, READING, Trigger::Edge),
            Next::Close(CloseReason::Reset)
        );
    }

    #[test]
    fn a_full_buffer_stops_reading_and_counts_one_pause() {
        let full = state(false, true, false);
        let blocked = Progress::Blocked(full.wants);
        let wait = |before, trigger| next(blocked, before, full, trigger);
        for trigger in [Trigger::Level, Trigger::Edge] {
            assert_eq!(
                wait(READING, trigger),
                Next::Wait {
                    interest: full.wants,
                    resume: false,
                    backpressure_pause: true
                }
            );
            let Next::Wait {
                backpressure_pause, ..
            } = wait(full, trigger)
            else {
                panic!("kept");
            };
            assert!(!backpressure_pause, "already paused: not counted again");
        }
    }

    #[test]
    fn a_half_closed_peer_is_not_backpressure() {
        let flushing = state(false, true, true);
        let n = next(
            Progress::Blocked(flushing.wants),
            READING,
            flushing,
            Trigger::Edge,
        );
        assert_eq!(
            n,
            Next::Wait {
                interest: flushing.wants,
                resume: false,
                backpressure_pause: false
            }
        );
    }

    #[test]
    fn a_yield_is_resumed_only_under_edge_triggering() {
        let busy = state(true, true, false);
        for (trigger, resume) in [(Trigger::Edge, true), (Trigger::Level, false)] {
            assert_eq!(
                next(Progress::Yielded, READING, busy, trigger),
                Next::Wait {
                    interest: busy.wants,
                    resume,
                    backpressure_pause: false
                }
            );
        }
    }

    #[test]
    fn the_interest_is_never_empty() {
        let nothing = state(false, false, true);
        let Next::Wait { interest, .. } = next(
            Progress::Blocked(nothing.wants),
            READING,
            nothing,
            Trigger::Level,
        ) else {
            panic!("kept");
        };
        assert_eq!(interest, Wants::READ);
    }
}
