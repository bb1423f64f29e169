//! Property tests of the echo state machine, without sockets (issue 4, level 1): however the
//! stream is cut, and whenever the poller reports it, the echo is byte-exact, bounded in
//! memory, asks for the right readiness, closes on errors, and finishes.
//!
//! A generated [`Case`] is a schedule of network events (the peer sends, half-closes, reads
//! our output, resets), event-loop iterations, and faults injected into the next calls. The
//! core runs over a [`SimSocket`] and is driven only when an event-loop model ([`Run`]) says
//! the poller would report the connection, as `Worker` does. What to do after a drive is the
//! servers' own rule, [`interest::next`]: its interest is registered (re-registered only when
//! it changes; or, as the `epoll-et` model does, registered once for both directions), and a
//! connection it says to `resume` is driven again after the batch without a new event (under
//! edge triggering; a level-triggered poller reports it again). An event that carries the peer's FIN (read-closed or error) is passed on
//! through `Echo::note_read_closed`, as `Connection::drive` does. Three triggers are modelled, each
//! with the read policies it is correct for:
//!
//! | trigger      | models                                   | an event is reported when                    |
//! |--------------|------------------------------------------|----------------------------------------------|
//! | `Level`      | select, poll, epoll LT                   | at every wait while ready                    |
//! | `Edge`       | epoll ET on Linux TCP (the reactor, mio) | data or FIN arrives; room returns after `EAGAIN`; RST; re-registration while ready |
//! | `EdgeStrict` | the portable ET contract (mio's docs)    | readiness returns after the caller saw `EAGAIN`; RST; re-registration while ready |
//!
//! `ReadUntil::ShortRead` relies on Linux's "every arrival signals", so it is not generated
//! with `EdgeStrict`; spurious `EAGAIN` and reads cut short while bytes stay queued break the
//! edge-triggered contract (a real socket never does that), so they are only injected under
//! `Level` (short reads also under `ReadUntil::WouldBlock`, which reads on regardless).
//!
//! Properties, checked after every `drive`:
//! - the output is a prefix of the input, and `pending` is exactly what was read and not yet
//!   written; after the peer's EOF (write side healthy) everything was written, then the write
//!   side was shut down, once;
//! - `pending <= limit` and the buffer's heap never exceeds `limit`; no read ever offers more
//!   than the room left (so at the bound the core does not read) and it then stops asking to;
//! - `Blocked(wants)` equals the state's `wants`: write interest exactly while bytes are pending (so
//!   after a short or `EAGAIN` write it asks, and once drained it drops the interest), read
//!   interest exactly while the peer is open and there is room; never "waiting for nothing";
//! - an error ends the connection at once with the matching `CloseReason`, never a panic;
//! - reading stops with the peer open and room left (`Blocked` with read interest) only at a
//!   `WouldBlock`, or at a short read where a short read counts as drained: under
//!   `ReadUntil::ShortRead` and only until the poller has flagged the peer's FIN (after that, a
//!   short read may have consumed the FIN, and no edge reports it again: the FIN rule);
//! - at most `read_budget` reads per call; the scratch buffer (poisoned between calls) holds
//!   no state.
//!
//! After the schedule the network cooperates (the peer sends the rest, takes all our output);
//! the connection must then finish (or, for a peer that stays open, go quiet with everything
//! echoed) within a bounded number of event-loop rounds: no lost wake-up, no livelock.
//!
//! The loop model mirrors by hand only the poller side of `Worker::run`/`ready` and
//! `Connection::set_interest` (they are bound to mio): when events fire, and that a changed
//! registration re-polls the socket. The rules are not mirrored: the model calls
//! [`interest::next`] for the interest, the resume and the backpressure count, and the echo
//! core's own rule for a reported FIN. A backpressure pause is checked to mean a full buffer. Cases: `PROPTEST_CASES`
//! (default 2048, about 4 s in a debug build); failing seeds are kept in
//! `proptest-regressions/worker/echo_props.txt` and replayed first.

use std::fmt;

use proptest::prelude::*;

use super::echo::{Echo, EchoOptions, ReadUntil};
use super::sim_socket::{Fin, ReadFault, SimSocket, WriteFault};
use crate::close::{CloseReason, classify};
use crate::policy::interest::{self, Next, Progress, Wants};

/// How the modelled poller reports readiness (see the module table).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Trigger {
    Level,
    Edge,
    EdgeStrict,
}

/// What the peer and the network do.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Net {
    /// The peer sends up to this many more bytes.
    Send(usize),
    /// The peer shuts down its write side (half-close); it sends nothing more.
    Fin,
    /// The peer reads up to this many bytes of our output, freeing send-buffer room.
    Recv(usize),
    /// An RST arrives.
    Reset,
}

/// One step of a schedule.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Step {
    Net(Net),
    /// One event-loop iteration: wait, drive what was reported, drive what yielded.
    Poll,
    /// An iteration during which `Net` happens between the wait and the drive (the race an
    /// edge-triggered loop must survive: the reported flags are already stale).
    PollRacing(Net),
    /// The poller reports the connection with no readiness (mio allows spurious events).
    Spurious,
    Read(ReadFault),
    Write(WriteFault),
}

/// How the loop registers interest.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Registration {
    /// Follows `Blocked(wants)`, re-registering on change (`Worker`, the LT models).
    FollowWants,
    /// Read and write, registered once, never changed (the `epoll-et` model). Edge-triggered
    /// only: under a level-triggered poller it would report writability forever.
    Fixed,
}

/// How the peer ends once the schedule is over.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Ending {
    /// Sends the rest, then FIN, and reads until our FIN.
    Fin,
    /// Sends the rest and stays open.
    Open,
}

/// One generated scenario.
#[derive(Clone)]
struct Case {
    trigger: Trigger,
    read_until: ReadUntil,
    registration: Registration,
    /// Whether the loop acts on the event's read-closed flag (`Worker` does; select has no
    /// such flag, and level-triggered loops do not need it).
    hints: bool,
    limit: usize,
    read_budget: u32,
    scratch: usize,
    sndbuf: usize,
    payload: usize,
    ending: Ending,
    steps: Vec<Step>,
}

impl Step {
    /// Whether this step is something the case's poller and socket can produce.
    fn applies_to(self, trigger: Trigger, read_until: ReadUntil) -> bool {
        match self {
            Step::Read(ReadFault::WouldBlock) | Step::Write(WriteFault::WouldBlock) => {
                trigger == Trigger::Level
            }
            Step::Read(ReadFault::Short(_)) => {
                trigger == Trigger::Level || read_until == ReadUntil::WouldBlock
            }
            _ => true,
        }
    }
}

impl fmt::Debug for Net {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Net::Send(n) => write!(f, "send {n}"),
            Net::Fin => f.write_str("fin"),
            Net::Recv(n) => write!(f, "recv {n}"),
            Net::Reset => f.write_str("reset"),
        }
    }
}

impl fmt::Debug for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Step::Net(net) => write!(f, "{net:?}"),
            Step::Poll => f.write_str("poll"),
            Step::PollRacing(net) => write!(f, "poll({net:?} before the drive)"),
            Step::Spurious => f.write_str("spurious-event"),
            Step::Read(ReadFault::Interrupted) => f.write_str("read:EINTR"),
            Step::Read(ReadFault::Short(n)) => write!(f, "read:at-most-{n}"),
            Step::Read(ReadFault::WouldBlock) => f.write_str("read:EAGAIN"),
            Step::Read(ReadFault::Fail) => f.write_str("read:EIO"),
            Step::Write(WriteFault::Interrupted) => f.write_str("write:EINTR"),
            Step::Write(WriteFault::Short(n)) => write!(f, "write:at-most-{n}"),
            Step::Write(WriteFault::WouldBlock) => f.write_str("write:EAGAIN"),
            Step::Write(WriteFault::Zero) => f.write_str("write:Ok(0)"),
        }
    }
}

impl fmt::Debug for Case {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:?}-triggered, read until {:?}, {:?}, hints {}, limit {}, read_budget {}, \
             scratch {}, sndbuf {}, payload {} bytes, then {:?}; steps: {:?}",
            self.trigger,
            self.read_until,
            self.registration,
            self.hints,
            self.limit,
            self.read_budget,
            self.scratch,
            self.sndbuf,
            self.payload,
            self.ending,
            self.steps
        )
    }
}

/// The peer's bytes: position-dependent and aperiodic, so a lost, repeated or reordered byte
/// shows up as a mismatch.
fn payload(len: usize) -> Vec<u8> {
    (0..len as u32)
        .map(|i| (i.wrapping_mul(0x9E37_79B1) >> 13) as u8)
        .collect()
}

/// The flags of one reported event (what mio's `Event` would say).
#[derive(Clone, Copy, Debug, Default)]
struct Flags {
    read_closed: bool,
    error: bool,
}

/// One connection in the event-loop model.
struct Run<'c> {
    case: &'c Case,
    options: EchoOptions,
    echo: Echo,
    sock: SimSocket,
    /// The worker's read buffer, poisoned before every drive.
    scratch: Vec<u8>,
    /// Interest registered with the poller (mirrors `Connection::set_interest`).
    interest: Wants,
    /// Edge-triggered: an event is on the poller's ready list.
    queued: bool,
    /// A spurious event is due.
    spurious: bool,
    /// The connection yielded and is owed a drive without an event.
    yielded: bool,
    /// The loop has passed a reported FIN on (`Echo::note_read_closed`).
    fin_flagged: bool,
    /// Set once `drive` returned `Done`.
    done: Option<CloseReason>,
    /// What happened, for the failure message.
    trace: Vec<String>,
}

/// Fails the case with a message and the run's trace.
macro_rules! ensure {
    ($run:expr, $cond:expr, $($fmt:tt)+) => {
        if !$cond {
            return Err($run.failure(format!($($fmt)+)));
        }
    };
}

impl<'c> Run<'c> {
    fn new(case: &'c Case) -> Self {
        let options = EchoOptions {
            limit: case.limit,
            read_budget: case.read_budget,
            read_until: case.read_until,
        };
        // Generous per-drive cap: every call moves a byte, consumes a fault, or ends a phase.
        let call_cap = 4 * (case.payload + case.steps.len() + case.read_budget as usize) + 16;
        Run {
            case,
            options,
            echo: Echo::new(),
            sock: SimSocket::new(
                payload(case.payload),
                case.sndbuf,
                case.limit,
                call_cap as u32,
            ),
            scratch: vec![0; case.scratch],
            interest: Wants {
                read: true,
                write: case.registration == Registration::Fixed,
            },
            queued: false,
            spurious: false,
            yielded: false,
            fin_flagged: false,
            done: None,
            trace: Vec::new(),
        }
    }

    fn failure(&self, what: String) -> String {
        format!(
            "{what}\n  echoed {} of {} bytes read ({} sent by the peer), pending {}, interest {:?}\n  trace: {}",
            self.sock.written().len(),
            self.sock.read_count(),
            self.sock.sent_bytes().len(),
            self.echo.pending(),
            self.interest,
            self.trace.join(" | ")
        )
    }

    /// Runs the schedule, then the cooperative ending, then the final checks.
    fn execute(mut self) -> Result<(), String> {
        for &step in &self.case.steps {
            self.trace.push(format!("{step:?}"));
            self.step(step)?;
        }
        self.trace.push("<network cooperates>".to_owned());
        self.finish()
    }

    fn step(&mut self, step: Step) -> Result<(), String> {
        match step {
            Step::Net(net) => self.net(net),
            Step::Poll => {
                self.poll()?;
            }
            Step::PollRacing(net) => {
                let event = self.wait();
                self.net(net);
                self.dispatch_batch(event)?;
            }
            Step::Spurious => self.spurious = true,
            Step::Read(fault) => self.sock.inject_read(fault),
            Step::Write(fault) => self.sock.inject_write(fault),
        }
        Ok(())
    }

    /// Applies a network event and queues the edge it raises, if the poller would.
    fn net(&mut self, net: Net) {
        match net {
            Net::Send(n) => {
                if self.sock.peer_send(n) {
                    self.read_edge();
                }
            }
            Net::Fin => {
                if self.sock.peer_fin() {
                    self.read_edge();
                }
            }
            Net::Recv(n) => {
                if self.sock.peer_recv(n) {
                    self.write_edge();
                }
            }
            // EPOLLERR and EPOLLHUP are reported whatever the interest.
            Net::Reset => {
                if self.sock.peer_reset() {
                    self.queued = true;
                }
            }
        }
    }

    fn read_edge(&mut self) {
        let signalled = match self.case.trigger {
            Trigger::Level => false,
            Trigger::Edge => true,
            Trigger::EdgeStrict => std::mem::take(&mut self.sock.read_armed),
        };
        if signalled && self.interest.read {
            self.queued = true;
        }
    }

    fn write_edge(&mut self) {
        // Linux signals room only to a writer that found none (SOCK_NOSPACE); so does the
        // portable contract.
        let signalled = match self.case.trigger {
            Trigger::Level => false,
            Trigger::Edge | Trigger::EdgeStrict => std::mem::take(&mut self.sock.write_armed),
        };
        if signalled && self.interest.write {
            self.queued = true;
        }
    }

    /// The poller's wait: the event it reports for this connection, if any. Flags are the
    /// socket's state now (epoll re-polls an item when it reports it), masked by interest.
    fn wait(&mut self) -> Option<Flags> {
        let readable = self.sock.readable() && self.interest.read;
        let writable = self.sock.writable() && self.interest.write;
        let error = self.sock.is_reset();
        let ready = readable || writable || error;
        let fire = match self.case.trigger {
            Trigger::Level => ready,
            // An item whose state no longer matches its interest is dropped, not reported.
            Trigger::Edge | Trigger::EdgeStrict => std::mem::take(&mut self.queued) && ready,
        };
        let spurious = std::mem::take(&mut self.spurious);
        if fire {
            Some(Flags {
                // mio: EPOLLHUP, or EPOLLIN with EPOLLRDHUP.
                read_closed: error || (readable && self.sock.rdhup()),
                error,
            })
        } else if spurious {
            Some(Flags::default())
        } else {
            None
        }
    }

    /// One full iteration; returns whether the connection was driven.
    fn poll(&mut self) -> Result<bool, String> {
        let event = self.wait();
        self.dispatch_batch(event)
    }

    /// Drives the reported connection, then (as `Worker::run` does after the batch) the
    /// connection again if it has yielded, with no event.
    fn dispatch_batch(&mut self, event: Option<Flags>) -> Result<bool, String> {
        let mut drove = false;
        if let Some(flags) = event {
            if self.done.is_none() {
                self.dispatch(Some(flags))?;
                drove = true;
            }
        }
        if std::mem::take(&mut self.yielded) && self.done.is_none() {
            self.dispatch(None)?;
            drove = true;
        }
        Ok(drove)
    }

    /// `Worker::ready` and `Connection::drive`: pass a FIN flag on to the echo
    /// (`Echo::note_read_closed`), drive, act on the progress.
    fn dispatch(&mut self, flags: Option<Flags>) -> Result<(), String> {
        if let Some(flags) = flags {
            if self.case.hints && (flags.read_closed || flags.error) {
                self.echo.note_read_closed();
                self.fin_flagged = true;
            }
        }
        self.scratch.fill(0xA5);
        self.sock.begin_drive();
        let before = self.echo.state(&self.options);
        let progress = self
            .echo
            .drive(&mut self.sock, &mut self.scratch, &self.options)
            .progress;
        self.trace.push(match flags {
            Some(f) if f.read_closed => format!("drive(rdhup)->{progress:?}"),
            Some(_) => format!("drive->{progress:?}"),
            None => format!("drive(yielded)->{progress:?}"),
        });
        self.check_drive(progress)?;
        let trigger = match self.case.trigger {
            Trigger::Level => interest::Trigger::Level,
            Trigger::Edge | Trigger::EdgeStrict => interest::Trigger::Edge,
        };
        let after = self.echo.state(&self.options);
        match interest::next(progress, before, after, trigger) {
            Next::Close(reason) => self.done = Some(reason),
            Next::Wait {
                interest,
                resume,
                backpressure_pause,
            } => {
                ensure!(
                    self,
                    !backpressure_pause
                        || (self.echo.pending() == self.case.limit && !after.peer_closed),
                    "a backpressure pause counted with {} of {} bytes pending, peer closed {}",
                    self.echo.pending(),
                    self.case.limit,
                    after.peer_closed
                );
                self.set_interest(interest);
                // A resume still owed from the last round stands (the worker drives it twice).
                self.yielded |= resume;
            }
        }
        Ok(())
    }

    /// `Connection::set_interest`: re-register only on change, and epoll then re-polls the
    /// socket (a ready socket gets an event).
    fn set_interest(&mut self, new: Wants) {
        if self.case.registration == Registration::Fixed {
            return;
        }
        if new != self.interest {
            self.interest = new;
            let ready = (self.sock.readable() && new.read)
                || (self.sock.writable() && new.write)
                || self.sock.is_reset();
            if ready && self.case.trigger != Trigger::Level {
                self.queued = true;
            }
        }
    }

    /// The invariants that hold after every `drive`.
    fn check_drive(&self, progress: Progress) -> Result<(), String> {
        let s = &self.sock;
        let limit = self.case.limit;
        ensure!(
            self,
            s.violations.is_empty(),
            "contract breach: {}",
            s.violations.join("; ")
        );
        let out = s.written();
        let input = s.sent_bytes();
        ensure!(
            self,
            out.len() <= s.read_count() && out == &input[..out.len()],
            "output is not a prefix of the input (first difference at byte {})",
            out.iter()
                .zip(input)
                .position(|(a, b)| a != b)
                .unwrap_or(out.len().min(input.len()))
        );
        // Bytes read but not written are all pending, except after an error (the connection
        // is dropped, and the bytes of the read whose echo failed were never buffered).
        let pending = self.echo.pending();
        ensure!(
            self,
            pending == s.read_count() - out.len() || s.drive.fatal.is_some(),
            "pending is {pending}, but {} bytes were read and {} written",
            s.read_count(),
            out.len()
        );
        ensure!(
            self,
            pending <= limit,
            "pending {pending} exceeds the limit {limit}"
        );
        ensure!(
            self,
            self.echo.heap_bytes() <= limit,
            "buffer holds {} heap bytes, limit {limit}",
            self.echo.heap_bytes()
        );
        ensure!(
            self,
            s.drive.data_reads <= self.case.read_budget,
            "{} data reads in one drive, budget {}",
            s.drive.data_reads,
            self.case.read_budget
        );
        ensure!(
            self,
            self.echo.state(&self.options).peer_closed == s.eof_returned(),
            "peer_closed is {} but EOF returned is {}",
            self.echo.state(&self.options).peer_closed,
            s.eof_returned()
        );
        match progress {
            Progress::Done(closed) => match s.drive.fatal {
                Some(kind) => ensure!(
                    self,
                    closed == classify(&kind.into()),
                    "closed as {closed:?} after the error {kind:?}"
                ),
                None => {
                    ensure!(
                        self,
                        closed == CloseReason::Eof,
                        "closed as {closed:?} without an error"
                    );
                    ensure!(
                        self,
                        s.eof_returned()
                            && s.shutdowns() == 1
                            && pending == 0
                            && out.len() == input.len(),
                        "closed as Eof before echoing everything and shutting down \
                         (eof read {}, shutdowns {})",
                        s.eof_returned(),
                        s.shutdowns()
                    );
                }
            },
            Progress::Blocked(_) | Progress::Yielded => {
                ensure!(
                    self,
                    s.drive.fatal.is_none(),
                    "the error {:?} did not end the connection",
                    s.drive.fatal
                );
                let wants = self.echo.state(&self.options).wants;
                ensure!(
                    self,
                    wants.write == (pending > 0),
                    "write interest {} with {pending} bytes pending",
                    wants.write
                );
                ensure!(
                    self,
                    wants.read == (!s.eof_returned() && pending < limit),
                    "read interest {} with {pending} pending (limit {limit}), eof {}",
                    wants.read,
                    s.eof_returned()
                );
                ensure!(
                    self,
                    !s.drive.write_blocked || wants.write,
                    "a write blocked but the connection does not ask for writability"
                );
                if let Progress::Blocked(w) = progress {
                    ensure!(
                        self,
                        w == wants,
                        "Blocked({w:?}) but the state says {wants:?}"
                    );
                    ensure!(self, w.read || w.write, "blocked waiting for nothing");
                    let short_read_drains =
                        self.case.read_until == ReadUntil::ShortRead && !self.fin_flagged;
                    ensure!(
                        self,
                        !w.read || short_read_drains || s.drive.read_blocked,
                        "stopped reading before WouldBlock although {}",
                        if self.fin_flagged {
                            "the poller flagged the FIN"
                        } else {
                            "short reads do not count as drained"
                        }
                    );
                } else {
                    ensure!(
                        self,
                        s.drive.data_reads == self.case.read_budget && !s.eof_returned(),
                        "yielded after {} data reads (budget {})",
                        s.drive.data_reads,
                        self.case.read_budget
                    );
                }
            }
        }
        Ok(())
    }

    /// The network cooperates from now on; the connection must end, or go quiet with
    /// everything echoed if the peer stays open, within a bounded number of rounds.
    fn finish(mut self) -> Result<(), String> {
        let max_rounds = 4 * (self.case.payload + self.case.steps.len()) + 32;
        for _ in 0..max_rounds {
            if self.done.is_some() {
                return Ok(());
            }
            let rest = self.sock.unsent();
            self.net(Net::Send(rest));
            if self.case.ending == Ending::Fin {
                self.net(Net::Fin);
            }
            let in_flight = self.sock.in_flight();
            self.net(Net::Recv(in_flight));
            self.trace.push("round".to_owned());
            if !self.poll()? && self.done.is_none() {
                return self.check_quiet();
            }
        }
        Err(self.failure(format!(
            "livelock: not finished after {max_rounds} rounds of a cooperative network"
        )))
    }

    /// Nothing will ever wake the connection again: that is only right if the peer is still
    /// open and has everything back.
    fn check_quiet(&self) -> Result<(), String> {
        let s = &self.sock;
        ensure!(
            self,
            s.fin() == Fin::No,
            "hang: the peer half-closed (FIN {:?}) but the connection waits forever",
            s.fin()
        );
        ensure!(
            self,
            !s.is_reset(),
            "hang: the connection was reset but never noticed"
        );
        ensure!(
            self,
            s.unsent() == 0 && s.written() == s.sent_bytes() && self.echo.pending() == 0,
            "hang: the network is idle but the echo is incomplete"
        );
        ensure!(
            self,
            self.case.registration == Registration::Fixed || self.interest == Wants::READ,
            "an idle connection should wait for reading only"
        );
        Ok(())
    }
}

// ----- generators -----

/// Every loop style with the read policies it is correct for.
const COMBINATIONS: &[(Trigger, ReadUntil, Registration)] = &[
    (
        Trigger::Level,
        ReadUntil::WouldBlock,
        Registration::FollowWants,
    ),
    (
        Trigger::Level,
        ReadUntil::ShortRead,
        Registration::FollowWants,
    ),
    (
        Trigger::Edge,
        ReadUntil::WouldBlock,
        Registration::FollowWants,
    ),
    (
        Trigger::Edge,
        ReadUntil::ShortRead,
        Registration::FollowWants,
    ),
    (Trigger::Edge, ReadUntil::WouldBlock, Registration::Fixed),
    (Trigger::Edge, ReadUntil::ShortRead, Registration::Fixed),
    (
        Trigger::EdgeStrict,
        ReadUntil::WouldBlock,
        Registration::FollowWants,
    ),
    (
        Trigger::EdgeStrict,
        ReadUntil::WouldBlock,
        Registration::Fixed,
    ),
];

fn net_strategy() -> impl Strategy<Value = Net> {
    prop_oneof![
        5 => (1usize..=48).prop_map(Net::Send),
        5 => (1usize..=48).prop_map(Net::Recv),
        2 => Just(Net::Fin),
        1 => Just(Net::Reset),
    ]
}

fn step_strategy() -> impl Strategy<Value = Step> {
    prop_oneof![
        280 => (1usize..=48).prop_map(|n| Step::Net(Net::Send(n))),
        240 => (1usize..=48).prop_map(|n| Step::Net(Net::Recv(n))),
        240 => Just(Step::Poll),
        50 => net_strategy().prop_map(Step::PollRacing),
        10 => Just(Step::Net(Net::Fin)),
        5 => Just(Step::Net(Net::Reset)),
        20 => Just(Step::Spurious),
        30 => Just(Step::Read(ReadFault::Interrupted)),
        30 => (1usize..=8).prop_map(|n| Step::Read(ReadFault::Short(n))),
        15 => Just(Step::Read(ReadFault::WouldBlock)),
        3 => Just(Step::Read(ReadFault::Fail)),
        30 => Just(Step::Write(WriteFault::Interrupted)),
        30 => (1usize..=8).prop_map(|n| Step::Write(WriteFault::Short(n))),
        15 => Just(Step::Write(WriteFault::WouldBlock)),
        3 => Just(Step::Write(WriteFault::Zero)),
    ]
}

prop_compose! {
    fn case_strategy()(
        (trigger, read_until, registration) in prop::sample::select(COMBINATIONS),
        hints in any::<bool>(),
        limit in 1usize..=40,
        read_budget in 1u32..=6,
        scratch in 1usize..=40,
        sndbuf in 1usize..=40,
        payload in 0usize..=200,
        ending in prop_oneof![3 => Just(Ending::Fin), 1 => Just(Ending::Open)],
        steps in prop::collection::vec(step_strategy(), 0..=60),
    ) -> Case {
        let steps = steps
            .into_iter()
            .filter(|s| s.applies_to(trigger, read_until))
            .collect();
        Case {
            trigger,
            read_until,
            registration,
            // An edge-triggered loop must act on the flag; select has none to pass.
            hints: hints || trigger != Trigger::Level,
            limit,
            read_budget,
            scratch,
            sndbuf,
            payload,
            ending,
            steps,
        }
    }
}

/// Cases per run: `PROPTEST_CASES` if set, else `default`.
fn cases(default: u32) -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: cases(2048),
        max_shrink_iters: 100_000,
        ..ProptestConfig::default()
    })]

    /// A generated schedule of arrivals, half-closes, resets, partial writes, faults and
    /// event-loop iterations; every invariant holds after every drive, and the connection
    /// ends (or idles with everything echoed) once the network cooperates.
    #[test]
    fn echo_survives_any_schedule(case in case_strategy()) {
        if let Err(e) = Run::new(&case).execute() {
            return Err(TestCaseError::fail(e));
        }
    }
}

#[cfg(test)]
mod examples {
    use super::*;

    fn case(trigger: Trigger, read_until: ReadUntil, payload: usize, steps: Vec<Step>) -> Case {
        Case {
            trigger,
            read_until,
            registration: Registration::FollowWants,
            hints: true,
            limit: 64,
            read_budget: 16,
            scratch: 64,
            sndbuf: 64,
            payload,
            ending: Ending::Fin,
            steps,
        }
    }

    /// Data and FIN arrive together; under epoll ET the read that returns the data also
    /// consumes the FIN, so a short read is no proof of a drained socket: the event's
    /// read-closed flag must make the loop read on to EOF instead of waiting forever.
    #[test]
    fn fin_behind_data_under_edge_trigger() {
        let c = case(
            Trigger::Edge,
            ReadUntil::ShortRead,
            5,
            vec![Step::Net(Net::Send(5)), Step::Net(Net::Fin), Step::Poll],
        );
        Run::new(&c).execute().unwrap();
    }

    /// The FIN arrives between the wait and the drive: the reported flags do not show it,
    /// the read consumes it, and only the next event (the FIN's own) can finish the echo.
    #[test]
    fn fin_racing_the_drive_under_edge_trigger() {
        let c = case(
            Trigger::Edge,
            ReadUntil::ShortRead,
            5,
            vec![
                Step::Net(Net::Send(5)),
                Step::PollRacing(Net::Fin),
                Step::Poll,
            ],
        );
        Run::new(&c).execute().unwrap();
    }

    /// The peer resets while our send buffer is full and bytes are queued for us: the RST is
    /// reported whatever the interest, and the write it triggers fails, ending the connection.
    #[test]
    fn reset_while_blocked_on_a_full_send_buffer() {
        let mut c = case(
            Trigger::Edge,
            ReadUntil::ShortRead,
            20,
            vec![
                Step::Net(Net::Send(10)),
                Step::Poll,
                Step::Net(Net::Send(10)),
                Step::Net(Net::Reset),
                Step::Poll,
            ],
        );
        c.sndbuf = 4;
        Run::new(&c).execute().unwrap();
    }
}
