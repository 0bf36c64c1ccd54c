//! The reconnect delay: exponential backoff with jitter, capped.

use std::time::Duration;

/// Exponential backoff with "equal jitter": each delay is uniform in [d/2, d], where d
/// doubles from `initial` up to `max`. The jitter spreads a fleet of clients that lost
/// the same server; the floor keeps a single client from retrying in a tight loop.
#[derive(Debug, Clone)]
pub struct Backoff {
    initial: Duration,
    max: Duration,
    attempt: u32,
    rng: fastrand::Rng,
}

impl Backoff {
    pub fn new(initial: Duration, max: Duration, seed: u64) -> Backoff {
        let initial = initial.max(Duration::from_millis(1));
        Backoff {
            initial,
            max: max.max(initial),
            attempt: 0,
            rng: fastrand::Rng::with_seed(seed),
        }
    }

    /// The next delay; each call doubles the base until the cap.
    pub fn next_delay(&mut self) -> Duration {
        let base = self
            .initial
            .saturating_mul(2u32.saturating_pow(self.attempt))
            .min(self.max);
        self.attempt = (self.attempt + 1).min(31);
        self.jitter(base)
    }

    /// A delay at the cap: for failures that only a person can fix.
    pub fn slow(&mut self) -> Duration {
        self.jitter(self.max)
    }

    /// After a success: the next failure starts from `initial` again.
    pub fn reset(&mut self) {
        self.attempt = 0;
    }

    fn jitter(&mut self, base: Duration) -> Duration {
        let half = base / 2;
        half + half.mul_f64(self.rng.f64())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_to_the_cap_with_jitter_and_resets() {
        let mut b = Backoff::new(Duration::from_secs(1), Duration::from_secs(60), 1);
        let delays: Vec<Duration> = (0..10).map(|_| b.next_delay()).collect();
        let bases = [1u64, 2, 4, 8, 16, 32, 60, 60, 60, 60];
        for (d, base) in delays.iter().zip(bases) {
            let base = Duration::from_secs(base);
            assert!(
                *d >= base / 2 && *d <= base,
                "{d:?} not in [{:?}, {base:?}]",
                base / 2
            );
        }
        b.reset();
        assert!(b.next_delay() <= Duration::from_secs(1));
        let slow = b.slow();
        assert!(slow >= Duration::from_secs(30) && slow <= Duration::from_secs(60));
        // Never zero, even when configured so: no tight loop.
        let mut z = Backoff::new(Duration::ZERO, Duration::ZERO, 1);
        assert!(z.next_delay() >= Duration::from_micros(500));
    }
}
