//! How often, and after how long, a conflicting write decides again.

use std::time::Duration;

use rand::Rng;

/// Retries of a read-modify-write that lost an optimistic concurrency race.
///
/// Attempt `n` (1-based) that conflicts waits a random duration in
/// `[0, min(max_backoff, initial_backoff × 2^(n-1))]` ("full jitter"),
/// reloads, decides again and appends; after `max_attempts` attempts the last
/// conflict is returned. Random waits spread the writers of a hot stream
/// apart instead of letting them collide again in lock step.
///
/// ```
/// use std::time::Duration;
/// use strata_aggregates::RetryPolicy;
/// let policy = RetryPolicy::default().with_max_attempts(5);
/// assert!(policy.backoff(3) <= Duration::from_millis(4) * 4);
/// assert_eq!(RetryPolicy::no_retry().max_attempts, 1);
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct RetryPolicy {
    /// Attempts in all, the first included (at least 1; 1 means no retry). Default 10.
    pub max_attempts: u32,
    /// The ceiling of the first wait. Default 2 ms.
    pub initial_backoff: Duration,
    /// The largest ceiling any wait grows to. Default 200 ms.
    pub max_backoff: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 10,
            initial_backoff: Duration::from_millis(2),
            max_backoff: Duration::from_millis(200),
        }
    }
}

impl RetryPolicy {
    /// One attempt, no retry.
    pub fn no_retry() -> RetryPolicy {
        RetryPolicy {
            max_attempts: 1,
            ..RetryPolicy::default()
        }
    }

    /// The same policy with `max_attempts` attempts (at least 1).
    pub fn with_max_attempts(mut self, max_attempts: u32) -> RetryPolicy {
        self.max_attempts = max_attempts.max(1);
        self
    }

    /// The same policy with these backoff bounds.
    pub fn with_backoff(mut self, initial: Duration, max: Duration) -> RetryPolicy {
        self.initial_backoff = initial;
        self.max_backoff = max.max(initial);
        self
    }

    /// The attempts this policy allows (`max_attempts`, at least 1).
    pub fn attempts(&self) -> u32 {
        self.max_attempts.max(1)
    }

    /// The ceiling of the wait after failed attempt `attempt` (1-based).
    pub fn backoff_ceiling(&self, attempt: u32) -> Duration {
        let shift = attempt.saturating_sub(1).min(31);
        self.initial_backoff
            .checked_mul(1u32 << shift)
            .unwrap_or(self.max_backoff)
            .min(self.max_backoff)
    }

    /// A random wait after failed attempt `attempt` (1-based), uniform in
    /// `[0, backoff_ceiling(attempt)]`.
    pub fn backoff(&self, attempt: u32) -> Duration {
        let ceiling = self.backoff_ceiling(attempt);
        let nanos = u64::try_from(ceiling.as_nanos()).unwrap_or(u64::MAX);
        if nanos == 0 {
            return Duration::ZERO;
        }
        Duration::from_nanos(rand::rng().random_range(0..=nanos))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ceiling_doubles_up_to_the_maximum() {
        let p = RetryPolicy::default().with_backoff(Duration::from_millis(1), Duration::from_millis(10));
        let ceilings: Vec<_> = (1..=6).map(|n| p.backoff_ceiling(n).as_millis()).collect();
        assert_eq!(ceilings, vec![1, 2, 4, 8, 10, 10]);
        assert_eq!(p.backoff_ceiling(1000), Duration::from_millis(10), "no overflow");
    }

    #[test]
    fn waits_are_jittered_within_the_ceiling() {
        let p = RetryPolicy::default().with_backoff(Duration::from_millis(8), Duration::from_millis(8));
        let waits: Vec<_> = (0..200).map(|_| p.backoff(1)).collect();
        assert!(waits.iter().all(|w| *w <= Duration::from_millis(8)));
        let distinct: std::collections::HashSet<_> = waits.iter().collect();
        assert!(
            distinct.len() > 100,
            "waits are random, got {} distinct",
            distinct.len()
        );
    }

    #[test]
    fn at_least_one_attempt() {
        assert_eq!(RetryPolicy::default().with_max_attempts(0).attempts(), 1);
        let p = RetryPolicy {
            max_attempts: 0,
            ..RetryPolicy::default()
        };
        assert_eq!(p.attempts(), 1);
    }
}
