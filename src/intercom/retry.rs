//! Retry policy: exponential backoff with jitter for transient failures, inside a time budget
//! fixed when the session starts.
//!
//! The budget bounds a whole scan (`intercom.scan_timeout`): retries, rate-limit waits and
//! pacing pauses all draw from it, so a struggling API can never hold a scan slot longer
//! than configured.

use std::time::Duration;

use rand::Rng;
use tokio::time::Instant;

use super::error::IntercomError;

/// No single backoff pause exceeds this, however many retries are configured.
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// The pause before retry number `attempt + 1` (`attempt` counts from 0): `base · 2^attempt`,
/// capped, then "equal jitter" (a uniform pick in the upper half) so that sessions failing
/// together do not retry in lockstep, yet each still waits at least half the nominal delay.
pub(crate) fn backoff(base: Duration, attempt: u32) -> Duration {
    let nominal = base
        .checked_mul(1u32.checked_shl(attempt.min(31)).unwrap_or(u32::MAX))
        .unwrap_or(MAX_BACKOFF)
        .min(MAX_BACKOFF);
    let half = nominal / 2;
    let jitter_nanos = rand::thread_rng().gen_range(0..=half.as_nanos() as u64);
    half + Duration::from_nanos(jitter_nanos)
}

/// A small random addition to rate-limit waits, so sessions snoozed by the same window reset
/// do not all fire in the same millisecond.
pub(crate) fn wait_jitter(wait: Duration) -> Duration {
    let cap = (wait / 20).min(Duration::from_millis(500));
    Duration::from_nanos(rand::thread_rng().gen_range(0..=cap.as_nanos() as u64))
}

/// The whole-session time budget.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Budget {
    deadline: Instant,
    total: Duration,
}

impl Budget {
    pub fn starting_now(total: Duration) -> Self {
        Self {
            deadline: Instant::now() + total,
            total,
        }
    }

    pub fn deadline(&self) -> Instant {
        self.deadline
    }

    /// Time left, or `BudgetExhausted` once the deadline has passed.
    pub fn remaining(&self) -> Result<Duration, IntercomError> {
        let left = self.deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            Err(self.exhausted())
        } else {
            Ok(left)
        }
    }

    /// Whether a pause of `wait` still leaves time for the request that follows it.
    pub fn allows(&self, wait: Duration) -> bool {
        Instant::now() + wait < self.deadline
    }

    pub fn exhausted(&self) -> IntercomError {
        IntercomError::BudgetExhausted(self.total)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_within_jitter_and_is_capped() {
        let base = Duration::from_millis(100);
        for attempt in 0..4 {
            let nominal = base * 2u32.pow(attempt);
            for _ in 0..50 {
                let d = backoff(base, attempt);
                assert!(d >= nominal / 2 && d <= nominal, "{attempt}: {d:?}");
            }
        }
        assert!(backoff(base, 40) <= MAX_BACKOFF);
        assert!(backoff(Duration::from_secs(3600), 0) <= MAX_BACKOFF);
    }

    #[test]
    fn wait_jitter_is_small() {
        for _ in 0..50 {
            assert!(wait_jitter(Duration::from_secs(10)) <= Duration::from_millis(500));
            assert!(wait_jitter(Duration::from_millis(100)) <= Duration::from_millis(5));
        }
    }

    #[tokio::test]
    async fn budget_runs_out() {
        let b = Budget::starting_now(Duration::from_millis(30));
        assert!(b.remaining().is_ok());
        assert!(b.allows(Duration::from_millis(1)));
        assert!(!b.allows(Duration::from_secs(1)));
        tokio::time::sleep(Duration::from_millis(40)).await;
        assert!(matches!(
            b.remaining(),
            Err(IntercomError::BudgetExhausted(d)) if d == Duration::from_millis(30)
        ));
    }
}
