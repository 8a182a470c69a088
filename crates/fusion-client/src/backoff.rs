//! Exponential backoff with full jitter, for reconnecting to a server that
//! is down or restarting without a thundering herd of clients.

use std::time::Duration;

use rand::RngExt;

/// Delays of `base · 2^n`, capped at `max`, each drawn uniformly from
/// `[0, delay]` ("full jitter", which spreads clients out best).
#[derive(Clone, Debug)]
pub struct Backoff {
    base: Duration,
    max: Duration,
    failures: u32,
}

impl Backoff {
    /// Starts at `base`, never waits more than `max`.
    pub fn new(base: Duration, max: Duration) -> Self {
        Self {
            base,
            max,
            failures: 0,
        }
    }

    /// The ceiling of the next delay (before jitter).
    pub fn ceiling(&self) -> Duration {
        let factor = 2u32.saturating_pow(self.failures.min(30));
        self.base.saturating_mul(factor).min(self.max)
    }

    /// The next delay, and counts a failure.
    pub fn next_delay(&mut self) -> Duration {
        let ceiling = self.ceiling();
        self.failures = self.failures.saturating_add(1);
        let fraction: f64 = rand::rng().random_range(0.0..=1.0);
        ceiling.mul_f64(fraction)
    }

    /// Failures since the last success.
    pub fn failures(&self) -> u32 {
        self.failures
    }

    /// Back to the first delay after a success.
    pub fn reset(&mut self) {
        self.failures = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_grow_to_the_cap_and_reset() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_secs(2));
        let ceilings: Vec<u128> = (0..8)
            .map(|_| {
                let c = b.ceiling();
                let d = b.next_delay();
                assert!(d <= c);
                c.as_millis()
            })
            .collect();
        assert_eq!(ceilings, [100, 200, 400, 800, 1600, 2000, 2000, 2000]);
        b.reset();
        assert_eq!(b.ceiling(), Duration::from_millis(100));
        // Jitter: delays differ between draws.
        let draws: std::collections::BTreeSet<u128> = (0..20)
            .map(|_| {
                b.reset();
                b.next_delay().as_micros()
            })
            .collect();
        assert!(draws.len() > 10);
    }
}
