//! The one exponential backoff with jitter used by every reconnect and retry loop.

use std::time::Duration;

use rand::Rng;

/// Exponential backoff: `initial * 2^n`, capped at `max`, with up to 20% random jitter so that
/// several instances reconnecting after the same outage do not stampede in step.
#[derive(Debug, Clone)]
pub struct Backoff {
    initial: Duration,
    max: Duration,
    attempt: u32,
}

impl Backoff {
    pub fn new(initial: Duration, max: Duration) -> Self {
        Self {
            initial,
            max,
            attempt: 0,
        }
    }

    /// The delay to wait before the next attempt; each call doubles the next one.
    pub fn next_delay(&mut self) -> Duration {
        let base = self
            .initial
            .saturating_mul(2u32.saturating_pow(self.attempt.min(20)))
            .min(self.max);
        self.attempt = self.attempt.saturating_add(1);
        let jitter = rand::rng().random_range(0.0..0.2);
        base.mul_f64(1.0 + jitter).min(self.max)
    }

    /// Call after a success so that the next failure starts from the initial delay again.
    pub fn reset(&mut self) {
        self.attempt = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_grow_and_stay_capped() {
        let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(1));
        let first = backoff.next_delay();
        assert!(first >= Duration::from_millis(100) && first < Duration::from_millis(121));
        let second = backoff.next_delay();
        assert!(second >= Duration::from_millis(200));
        for _ in 0..30 {
            assert!(backoff.next_delay() <= Duration::from_secs(1));
        }
        backoff.reset();
        assert!(backoff.next_delay() < Duration::from_millis(121));
    }
}
