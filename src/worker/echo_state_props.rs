//! Property tests of [`EchoState`] under completion-style schedules (the `uring` model's
//! world): receives complete with any number of bytes, even past the room left (a multishot
//! receive has no length), a cancelled receive can still complete before its cancellation
//! lands, a send completes short or late (at most one is in flight), and the peer's FIN
//! arrives at any point behind its bytes.
//!
//! The driver here is the `uring` model's, without the ring: bytes accepted by the state
//! queue (in `queue`), one send takes everything queued, what a short send leaves goes back
//! first, bytes past the room wait in `overflow` (not counted as received) and are taken in
//! as room returns, and the FIN reaches the state only behind them. After every completion it
//! acts on [`EchoState::plan`], as the model does.
//!
//! Properties, after every completion:
//! - `unsent <= limit`, and `unsent` is exactly the bytes queued plus those in flight;
//! - the output is a prefix of the input (bytes out in order, none lost, none twice);
//! - a receive stays armed only while the plan says to receive and nothing waits in the
//!   overflow; a send starts only when none is in flight;
//! - the plan says finish only after the peer's FIN with everything sent, and it is acted on
//!   once.
//!
//! After the schedule the network cooperates (sends complete in full, cancellations land,
//! the peer's bytes and FIN are delivered): within a bounded number of completions the echo
//! must finish with output == input.

use std::collections::VecDeque;

use proptest::prelude::*;

use super::echo::EchoOptions;
use super::echo_state::EchoState;

/// One thing the kernel (or the peer) does.
#[derive(Debug, Clone, Copy)]
enum Event {
    /// The receive completes with up to this many of the peer's bytes (if one is armed or
    /// its cancellation has not landed).
    Recv(usize),
    /// A requested cancellation of the receive lands.
    CancelLands,
    /// The send in flight completes, taking up to this many bytes (at least one).
    Sent(usize),
    /// The peer shuts down its write side; the receive reports it after the bytes before it.
    Fin,
}

/// The receive's lifecycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Recv {
    Off,
    Armed,
    /// Cancellation asked for; completions may still come until it lands.
    Cancelling,
}

#[derive(Debug)]
struct Run {
    options: EchoOptions,
    state: EchoState,
    input: Vec<u8>,
    /// Bytes of `input` the peer has sent (all of it once it sends FIN).
    peer_sent: usize,
    /// Bytes of `input` the kernel has delivered to the driver.
    delivered: usize,
    peer_fin: bool,
    /// The receive has reported the FIN to the driver.
    fin_seen: bool,
    recv: Recv,
    queue: VecDeque<u8>,
    overflow: VecDeque<u8>,
    in_flight: Vec<u8>,
    output: Vec<u8>,
    finished: bool,
}

impl Run {
    fn new(limit: usize, input: Vec<u8>) -> Run {
        Run {
            options: EchoOptions::new(limit),
            state: EchoState::new(),
            input,
            peer_sent: 0,
            delivered: 0,
            peer_fin: false,
            fin_seen: false,
            recv: Recv::Armed,
            queue: VecDeque::new(),
            overflow: VecDeque::new(),
            in_flight: Vec::new(),
            output: Vec::new(),
            finished: false,
        }
    }

    /// The peer sends up to `n` more bytes (before its FIN).
    fn peer_sends(&mut self, n: usize) {
        if !self.peer_fin {
            self.peer_sent = (self.peer_sent + n).min(self.input.len());
        }
    }

    fn event(&mut self, event: Event) -> Result<(), String> {
        if self.finished {
            return Ok(());
        }
        match event {
            Event::Recv(n) => {
                if self.recv == Recv::Off || self.fin_seen {
                    return Ok(());
                }
                let n = n.min(self.peer_sent - self.delivered);
                if n == 0 {
                    if self.peer_fin && self.peer_sent == self.delivered {
                        // Result 0: the multishot receive ends with the FIN.
                        self.fin_seen = true;
                        self.recv = Recv::Off;
                    } else {
                        return Ok(());
                    }
                } else {
                    let data = &self.input[self.delivered..self.delivered + n];
                    self.delivered += n;
                    let room = if self.overflow.is_empty() {
                        self.state.room(&self.options)
                    } else {
                        0
                    };
                    let take = n.min(room);
                    self.queue.extend(&data[..take]);
                    self.overflow.extend(&data[take..]);
                    self.state.received(take);
                }
            }
            Event::CancelLands => {
                if self.recv != Recv::Cancelling {
                    return Ok(());
                }
                self.recv = Recv::Off;
            }
            Event::Sent(k) => {
                if self.in_flight.is_empty() {
                    return Ok(());
                }
                let k = k.clamp(1, self.in_flight.len());
                self.output.extend(self.in_flight.drain(..k));
                self.state.sent(k);
                // What a short send left goes first.
                for byte in std::mem::take(&mut self.in_flight).into_iter().rev() {
                    self.queue.push_front(byte);
                }
            }
            Event::Fin => {
                self.peer_sent = self.input.len();
                self.peer_fin = true;
                return Ok(());
            }
        }
        self.progress()
    }

    /// What the model does after every completion: take in overflow, pass on the FIN, act
    /// on the plan; then check the invariants.
    fn progress(&mut self) -> Result<(), String> {
        let take = self.overflow.len().min(self.state.room(&self.options));
        let taken: Vec<u8> = self.overflow.drain(..take).collect();
        self.queue.extend(taken);
        self.state.received(take);
        if self.fin_seen && self.overflow.is_empty() && !self.state.is_peer_closed() {
            self.state.read_eof();
        }
        let plan = self.state.plan(&self.options, self.in_flight.len());
        if plan.finish {
            if self.finished {
                return Err("finished twice".into());
            }
            if self.output != self.input {
                return Err(format!(
                    "finished with {} of {} bytes echoed",
                    self.output.len(),
                    self.input.len()
                ));
            }
            self.finished = true;
            return Ok(());
        }
        if plan.send > 0 {
            if !self.in_flight.is_empty() {
                return Err("a second send while one is in flight".into());
            }
            if plan.send != self.queue.len() {
                return Err(format!(
                    "plan sends {} but {} are queued",
                    plan.send,
                    self.queue.len()
                ));
            }
            self.in_flight = self.queue.drain(..).collect();
        }
        let wanted = plan.receive && !self.fin_seen && self.overflow.is_empty();
        self.recv = match (wanted, self.recv) {
            (true, Recv::Off) => Recv::Armed,
            (false, Recv::Armed) => Recv::Cancelling,
            (_, r) => r,
        };
        self.check()
    }

    fn check(&self) -> Result<(), String> {
        let unsent = self.state.unsent();
        if unsent > self.options.limit {
            return Err(format!(
                "unsent {unsent} over the limit {}",
                self.options.limit
            ));
        }
        if unsent != self.queue.len() + self.in_flight.len() {
            return Err(format!(
                "unsent {unsent} but {} queued and {} in flight",
                self.queue.len(),
                self.in_flight.len()
            ));
        }
        if !self.input.starts_with(&self.output) {
            return Err("the output is not a prefix of the input".into());
        }
        if self.recv == Recv::Armed && !self.overflow.is_empty() {
            return Err("receiving while bytes wait in the overflow".into());
        }
        if self.recv == Recv::Armed && self.state.room(&self.options) == 0 {
            return Err("receiving with no room".into());
        }
        Ok(())
    }

    /// The network cooperates until the echo finishes; a bounded number of completions.
    fn finish(mut self) -> Result<(), String> {
        self.event(Event::Fin)?;
        let bound = 4 * (self.input.len() + 8);
        for _ in 0..bound {
            if self.finished {
                return Ok(());
            }
            let event = if !self.in_flight.is_empty() {
                Event::Sent(usize::MAX)
            } else if self.recv == Recv::Cancelling {
                Event::CancelLands
            } else {
                Event::Recv(usize::MAX)
            };
            self.event(event)?;
        }
        Err(format!(
            "not finished after {bound} completions: {} of {} echoed, recv {:?}, unsent {}, \
             overflow {}",
            self.output.len(),
            self.input.len(),
            self.recv,
            self.state.unsent(),
            self.overflow.len()
        ))
    }
}

/// One step of a schedule: the peer sends some bytes, or the kernel completes something.
#[derive(Debug, Clone, Copy)]
enum Step {
    PeerSends(usize),
    Kernel(Event),
}

fn step_strategy() -> impl Strategy<Value = Step> {
    prop_oneof![
        3 => (1usize..40).prop_map(Step::PeerSends),
        4 => (1usize..40).prop_map(|n| Step::Kernel(Event::Recv(n))),
        2 => Just(Step::Kernel(Event::CancelLands)),
        4 => (1usize..40).prop_map(|n| Step::Kernel(Event::Sent(n))),
        1 => Just(Step::Kernel(Event::Fin)),
    ]
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
        cases: cases(1024),
        ..ProptestConfig::default()
    })]

    /// Any schedule of arrivals, receive completions of any size, late cancellations, short
    /// or late send completions and a FIN anywhere: bounded, in order, complete, finished once.
    #[test]
    fn echo_state_survives_any_completion_schedule(
        limit in 1usize..48,
        len in 0usize..200,
        steps in proptest::collection::vec(step_strategy(), 0..80),
    ) {
        let input: Vec<u8> = (0..len).map(|i| (i * 7 + 3) as u8).collect();
        let mut run = Run::new(limit, input);
        for step in steps {
            let result = match step {
                Step::PeerSends(n) => {
                    run.peer_sends(n);
                    Ok(())
                }
                Step::Kernel(e) => run.event(e),
            };
            if let Err(e) = result {
                return Err(TestCaseError::fail(e));
            }
        }
        if let Err(e) = run.finish() {
            return Err(TestCaseError::fail(e));
        }
    }
}
