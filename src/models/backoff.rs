//! `Backoff`: how long a polling loop with no readiness API (the `nonblocking` model) pauses
//! after a round that made no progress. Pure: it sees only whether each round progressed.
//!
//! The trade it encodes: a loop that never pauses answers at once but burns a core while
//! idle; one that always sleeps `max` is cheap while idle but adds up to `max` to the first
//! echo after a quiet spell. So the first idle round only yields the CPU (a peer's next bytes
//! are often microseconds away), later ones sleep [`FIRST_SLEEP`], doubling up to `max`
//! (`poll_interval`); any progress starts over.

use std::time::Duration;

/// The first sleep after the yield (Linux's default timer slack is 50 µs, so a shorter
/// sleep would not be shorter).
pub(crate) const FIRST_SLEEP: Duration = Duration::from_micros(50);

/// What to do before the next round.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Pause {
    /// Go again at once: the last round made progress.
    None,
    /// Give the CPU to anyone waiting, then go again.
    Yield,
    /// Sleep this long.
    Sleep(Duration),
}

/// The back-off state of one loop.
#[derive(Debug, Clone)]
pub(crate) struct Backoff {
    /// The longest sleep (`poll_interval`); never zero.
    max: Duration,
    /// Rounds without progress since the last progress.
    idle_rounds: u32,
    /// The sleep after the next idle round (once past the yield).
    next_sleep: Duration,
}

impl Backoff {
    /// A back-off whose sleeps grow up to `max` (a zero `max` is raised to 1 µs: a loop
    /// that never sleeps would spin).
    pub(crate) fn new(max: Duration) -> Backoff {
        let max = max.max(Duration::from_micros(1));
        Backoff {
            max,
            idle_rounds: 0,
            next_sleep: FIRST_SLEEP.min(max),
        }
    }

    /// Records a round and says what to do before the next one.
    pub(crate) fn after_round(&mut self, progressed: bool) -> Pause {
        if progressed {
            self.idle_rounds = 0;
            self.next_sleep = FIRST_SLEEP.min(self.max);
            return Pause::None;
        }
        self.idle_rounds = self.idle_rounds.saturating_add(1);
        if self.idle_rounds == 1 {
            return Pause::Yield;
        }
        let sleep = self.next_sleep;
        self.next_sleep = (sleep * 2).min(self.max);
        Pause::Sleep(sleep)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn us(n: u64) -> Duration {
        Duration::from_micros(n)
    }

    #[test]
    fn idle_rounds_yield_then_sleep_doubling_up_to_the_interval() {
        let mut b = Backoff::new(Duration::from_millis(1));
        let pauses: Vec<Pause> = (0..8).map(|_| b.after_round(false)).collect();
        assert_eq!(
            pauses,
            [
                Pause::Yield,
                Pause::Sleep(us(50)),
                Pause::Sleep(us(100)),
                Pause::Sleep(us(200)),
                Pause::Sleep(us(400)),
                Pause::Sleep(us(800)),
                Pause::Sleep(us(1000)),
                Pause::Sleep(us(1000)),
            ]
        );
    }

    #[test]
    fn progress_goes_on_at_once_and_starts_the_back_off_over() {
        let mut b = Backoff::new(Duration::from_millis(1));
        for _ in 0..20 {
            b.after_round(false);
        }
        assert_eq!(b.after_round(true), Pause::None);
        assert_eq!(b.after_round(true), Pause::None);
        assert_eq!(b.after_round(false), Pause::Yield);
        assert_eq!(b.after_round(false), Pause::Sleep(us(50)));
    }

    #[test]
    fn a_short_interval_caps_every_sleep_and_zero_never_spins() {
        let mut b = Backoff::new(us(20));
        assert_eq!(b.after_round(false), Pause::Yield);
        assert_eq!(b.after_round(false), Pause::Sleep(us(20)));
        assert_eq!(b.after_round(false), Pause::Sleep(us(20)));
        let mut z = Backoff::new(Duration::ZERO);
        z.after_round(false);
        assert_eq!(z.after_round(false), Pause::Sleep(us(1)));
    }

    #[test]
    fn a_long_idle_spell_stays_at_the_interval() {
        let mut b = Backoff::new(Duration::from_millis(3));
        let last = (0..100_000).map(|_| b.after_round(false)).last();
        assert_eq!(last, Some(Pause::Sleep(Duration::from_millis(3))));
    }
}
