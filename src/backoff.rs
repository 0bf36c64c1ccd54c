//! Retry delays, for everything that retries: the Navixy source's reconnects and tracker
//! list refreshes, and the outbox's deliveries.
//!
//! Exponential backoff with "equal jitter": the step doubles from `initial` with every
//! failure in a row up to `max`, and each delay is uniform in the upper half of its step.
//! The jitter spreads clients (or notifications) that failed together so they do not
//! retry together; the floor keeps a single one from retrying in a tight loop. A server's
//! `Retry-After` is the caller's to weigh: the source waits at least that long, the
//! outbox waits exactly that long (within bounds).

use std::time::Duration;

/// The delay after the `failures`-th failure in a row (1 for the first; 0 counts as 1).
/// `jitter` in `[0, 1]` picks the point in the step's upper half.
pub fn exponential(initial: Duration, max: Duration, failures: u32, jitter: f64) -> Duration {
    let exp = failures.saturating_sub(1).min(30);
    let step = initial.saturating_mul(1u32 << exp).min(max);
    let half = step / 2;
    half + half.mul_f64(jitter.clamp(0.0, 1.0))
}

/// A running backoff: counts failures in a row and draws its jitter from its own
/// seeded RNG (so that a test can replay it).
#[derive(Debug, Clone)]
pub struct Backoff {
    initial: Duration,
    max: Duration,
    failures: u32,
    rng: fastrand::Rng,
}

impl Backoff {
    /// `initial` is raised to 1ms and `max` to `initial`: never a tight loop.
    pub fn new(initial: Duration, max: Duration, seed: u64) -> Backoff {
        let initial = initial.max(Duration::from_millis(1));
        Backoff {
            initial,
            max: max.max(initial),
            failures: 0,
            rng: fastrand::Rng::with_seed(seed),
        }
    }

    /// The delay after one more failure; the step doubles with each until the cap.
    pub fn next_delay(&mut self) -> Duration {
        self.failures = self.failures.saturating_add(1);
        exponential(self.initial, self.max, self.failures, self.rng.f64())
    }

    /// [`Backoff::next_delay`], but at least what the server asked (`Retry-After`).
    pub fn next_delay_at_least(&mut self, retry_after: Option<Duration>) -> Duration {
        self.next_delay().max(retry_after.unwrap_or_default())
    }

    /// A delay at the cap: for failures that only a person can fix.
    pub fn slow(&mut self) -> Duration {
        exponential(self.max, self.max, 1, self.rng.f64())
    }

    /// After a success: the next failure starts from `initial` again.
    pub fn reset(&mut self) {
        self.failures = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: fn(u64) -> Duration = Duration::from_secs;

    #[test]
    fn the_step_doubles_to_the_cap_and_jitter_picks_its_upper_half() {
        let (initial, max) = (S(1), S(300));
        assert_eq!(
            exponential(initial, max, 1, 0.0),
            Duration::from_millis(500)
        );
        assert_eq!(
            exponential(initial, max, 1, 0.5),
            Duration::from_millis(750)
        );
        assert_eq!(exponential(initial, max, 0, 1.0), S(1));
        assert_eq!(exponential(initial, max, 2, 0.0), S(1));
        assert_eq!(exponential(initial, max, 4, 0.5), S(6));
        assert_eq!(exponential(initial, max, 20, 0.0), S(150));
        assert_eq!(exponential(initial, max, u32::MAX, 1.0), S(300));
        // Out-of-range jitter is clamped, not trusted.
        assert_eq!(exponential(initial, max, 1, 7.0), S(1));
        assert_eq!(
            exponential(initial, max, 1, -1.0),
            Duration::from_millis(500)
        );
    }

    #[test]
    fn a_seeded_backoff_replays_and_stays_in_its_steps() {
        let delays = |seed| {
            let mut b = Backoff::new(S(1), S(60), seed);
            (0..10).map(|_| b.next_delay()).collect::<Vec<_>>()
        };
        let first = delays(7);
        assert_eq!(first, delays(7), "the same seed gives the same delays");
        assert_ne!(first, delays(8));
        let steps = [1, 2, 4, 8, 16, 32, 60, 60, 60, 60].map(S);
        for (d, step) in first.iter().zip(steps) {
            assert!(
                *d >= step / 2 && *d <= step,
                "{d:?} not in [{:?}, {step:?}]",
                step / 2
            );
        }
    }

    #[test]
    fn reset_starts_over_and_slow_waits_at_the_cap() {
        let mut b = Backoff::new(S(1), S(60), 1);
        for _ in 0..8 {
            b.next_delay();
        }
        b.reset();
        assert!(b.next_delay() <= S(1));
        let slow = b.slow();
        assert!(slow >= S(30) && slow <= S(60), "{slow:?}");
        // `slow` does not count as a failure: the next step is the second.
        let next = b.next_delay();
        assert!(next >= S(1) && next <= S(2), "{next:?}");
    }

    #[test]
    fn retry_after_is_a_floor() {
        let mut b = Backoff::new(S(1), S(60), 1);
        assert_eq!(b.next_delay_at_least(Some(S(90))), S(90));
        let d = b.next_delay_at_least(Some(Duration::ZERO));
        assert!(d >= S(1) && d <= S(2), "{d:?}");
        let d = b.next_delay_at_least(None);
        assert!(d >= S(2) && d <= S(4), "{d:?}");
    }

    #[test]
    fn never_a_tight_loop() {
        let mut b = Backoff::new(Duration::ZERO, Duration::ZERO, 1);
        assert!(b.next_delay() >= Duration::from_micros(500));
        assert!(b.slow() >= Duration::from_micros(500));
    }
}
