//! When an instance is next due: pure functions, unit-tested.

use std::time::Duration;

use chrono::{DateTime, Utc};
use rand::Rng;

use crate::schedule::Schedule;

/// First retry after a failure; doubles per consecutive failure.
pub const BACKOFF_BASE: Duration = Duration::from_secs(60);

/// How far past its slot a run may be moved at random, so instances onboarded together
/// drift apart (`scheduler.jitter`, `scheduler.cron_jitter`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Jitter {
    /// Share of an interval schedule's interval (0.05 = up to 5%).
    pub fraction: f64,
    /// Absolute cap for cron schedules: "0 3 * * *" means 03:00, not 03:42 (5% of a day).
    pub cron_max: Duration,
}

impl Jitter {
    pub const NONE: Jitter = Jitter {
        fraction: 0.0,
        cron_max: Duration::ZERO,
    };

    /// The largest delay for a run of `schedule` spaced `interval` from the next.
    pub fn max_for(&self, schedule: &Schedule, interval: Duration) -> Duration {
        let proportional = interval.mul_f64(self.fraction.max(0.0));
        if schedule.is_cron() {
            proportional.min(self.cron_max)
        } else {
            proportional
        }
    }
}

/// Adds up to `fraction` of `interval` at random so instances onboarded together drift apart.
pub fn jittered(at: DateTime<Utc>, interval: Duration, fraction: f64) -> DateTime<Utc> {
    if fraction <= 0.0 {
        return at;
    }
    spread(at, interval.mul_f64(fraction))
}

/// Adds a uniform random delay of at most `max`.
fn spread(at: DateTime<Utc>, max: Duration) -> DateTime<Utc> {
    if max.is_zero() {
        return at;
    }
    let extra = rand::thread_rng().gen_range(0.0..=max.as_secs_f64());
    at + chrono::Duration::milliseconds((extra * 1000.0) as i64)
}

/// The next regular run after `now` (a completed scan, or a schedule change).
pub fn next_on_success(schedule: &Schedule, now: DateTime<Utc>, jitter: Jitter) -> DateTime<Utc> {
    let next = schedule.next_after(now);
    spread(
        next,
        jitter.max_for(schedule, schedule.nominal_interval(now)),
    )
}

/// Exponential backoff after `failures` consecutive failures (1 = the first), capped at the
/// schedule's own interval (a failing instance is never retried less often than it is
/// scanned) and at `max_backoff`.
pub fn backoff(failures: u32, schedule_interval: Duration, max_backoff: Duration) -> Duration {
    let exp = failures.saturating_sub(1).min(20);
    let raw = BACKOFF_BASE.saturating_mul(1u32 << exp);
    raw.min(schedule_interval)
        .min(max_backoff)
        .max(Duration::from_secs(1))
}

pub fn next_on_failure(
    schedule: &Schedule,
    now: DateTime<Utc>,
    failures_so_far: u32,
    max_backoff: Duration,
    jitter: Jitter,
) -> DateTime<Utc> {
    let wait = backoff(
        failures_so_far + 1,
        schedule.nominal_interval(now),
        max_backoff,
    );
    // A retry is not a wall-clock slot: its jitter stays proportional to the wait.
    jittered(
        now + chrono::Duration::from_std(wait).unwrap_or(chrono::Duration::minutes(1)),
        wait,
        jitter.fraction,
    )
}

/// How a scheduled scan's next due time is chosen, decided at claim time and applied when
/// the scan ENDS (by the database's clock): a scan that ran for minutes (a hanging host,
/// `intercom.scan_timeout`) must not use up its own backoff or land its next slot in the
/// past.
#[derive(Debug, Clone)]
pub struct NextPlan {
    pub schedule: Schedule,
    /// Consecutive failures before this scan.
    pub failures_so_far: u32,
    pub max_backoff: Duration,
    pub jitter: Jitter,
}

impl NextPlan {
    /// The next due time for a scan that ended at `ended`.
    pub fn after(&self, ended: DateTime<Utc>, succeeded: bool) -> DateTime<Utc> {
        if succeeded {
            next_on_success(&self.schedule, ended, self.jitter)
        } else {
            next_on_failure(
                &self.schedule,
                ended,
                self.failures_so_far,
                self.max_backoff,
                self.jitter,
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FIVE_PERCENT: Jitter = Jitter {
        fraction: 0.05,
        cron_max: Duration::from_secs(60),
    };

    #[test]
    fn backoff_doubles_and_caps_at_the_schedule() {
        let day = Duration::from_secs(86_400);
        assert_eq!(backoff(1, day, day), Duration::from_secs(60));
        assert_eq!(backoff(2, day, day), Duration::from_secs(120));
        assert_eq!(backoff(5, day, day), Duration::from_secs(960));
        assert_eq!(
            backoff(30, Duration::from_secs(1800), day),
            Duration::from_secs(1800)
        );
        assert_eq!(
            backoff(30, day, Duration::from_secs(3600)),
            Duration::from_secs(3600)
        );
    }

    #[test]
    fn jitter_stays_within_the_fraction() {
        let now = Utc::now();
        for _ in 0..200 {
            let t = jittered(now, Duration::from_secs(1000), 0.05);
            let extra = (t - now).num_milliseconds();
            assert!((0..=50_000).contains(&extra), "{extra}");
        }
        assert_eq!(jittered(now, Duration::from_secs(1000), 0.0), now);
    }

    #[test]
    fn success_follows_the_schedule() {
        let s = Schedule::parse("6h").unwrap();
        let now = Utc::now();
        let next = next_on_success(&s, now, FIVE_PERCENT);
        let delta = (next - now).num_seconds();
        assert!((6 * 3600..=6 * 3600 + 1080).contains(&delta), "{delta}");
    }

    #[test]
    fn failure_retries_sooner_than_the_schedule() {
        let s = Schedule::parse("6h").unwrap();
        let now = Utc::now();
        let next = next_on_failure(&s, now, 0, Duration::from_secs(6 * 3600), Jitter::NONE);
        assert_eq!((next - now).num_seconds(), 60);
    }

    #[test]
    fn one_minute_schedule_reschedules_within_three_seconds_of_jitter() {
        let s = Schedule::parse("1m").unwrap();
        let now = Utc::now();
        let mut seen = std::collections::HashSet::new();
        for _ in 0..100 {
            let next = next_on_success(&s, now, FIVE_PERCENT);
            let ms = (next - now).num_milliseconds();
            assert!((60_000..=63_000).contains(&ms), "{ms}");
            seen.insert(ms);
        }
        // Jitter actually spreads instances scheduled at the same instant.
        assert!(seen.len() > 10, "{seen:?}");
    }

    #[test]
    fn cron_schedules_keep_their_wall_clock_time_across_dst() {
        // 03:00 Berlin is 01:00 UTC in summer and 02:00 UTC in winter.
        let s = Schedule::parse("CRON_TZ=Europe/Berlin 0 3 * * *").unwrap();
        let summer: DateTime<Utc> = "2026-07-01T12:00:00Z".parse().unwrap();
        let winter: DateTime<Utc> = "2026-12-01T12:00:00Z".parse().unwrap();
        assert_eq!(
            next_on_success(&s, summer, Jitter::NONE).to_rfc3339(),
            "2026-07-02T01:00:00+00:00"
        );
        assert_eq!(
            next_on_success(&s, winter, Jitter::NONE).to_rfc3339(),
            "2026-12-02T02:00:00+00:00"
        );
    }

    #[test]
    fn cron_jitter_is_capped_at_an_absolute_spread() {
        // 5% of a daily cron would be 72 minutes; the cap keeps 03:00 Berlin near 03:00.
        let s = Schedule::parse("CRON_TZ=Europe/Berlin 0 3 * * *").unwrap();
        let summer: DateTime<Utc> = "2026-07-01T12:00:00Z".parse().unwrap();
        let slot = next_on_success(&s, summer, Jitter::NONE);
        let mut seen = std::collections::HashSet::new();
        for _ in 0..200 {
            let extra = (next_on_success(&s, summer, FIVE_PERCENT) - slot).num_milliseconds();
            assert!((0..=60_000).contains(&extra), "{extra}");
            seen.insert(extra);
        }
        assert!(seen.len() > 10, "still spread: {seen:?}");
        // A tighter configured cap holds too; intervals keep their proportional jitter.
        let tight = Jitter {
            fraction: 0.05,
            cron_max: Duration::from_secs(5),
        };
        for _ in 0..100 {
            let extra = (next_on_success(&s, summer, tight) - slot).num_milliseconds();
            assert!((0..=5_000).contains(&extra), "{extra}");
        }
        let daily = Schedule::parse("1d").unwrap();
        assert_eq!(
            tight.max_for(&daily, Duration::from_secs(86_400)),
            Duration::from_secs(4320)
        );
    }

    #[test]
    fn failures_back_off_exponentially_but_never_beyond_the_schedule() {
        let hourly = Schedule::parse("1h").unwrap();
        let now = Utc::now();
        let waits: Vec<i64> = (0..9)
            .map(|f| {
                (next_on_failure(&hourly, now, f, Duration::from_secs(6 * 3600), Jitter::NONE)
                    - now)
                    .num_seconds()
            })
            .collect();
        assert_eq!(waits, [60, 120, 240, 480, 960, 1920, 3600, 3600, 3600]);
        // A cron schedule caps at its nominal interval too (every 15 minutes here).
        let quarter = Schedule::parse("*/15 * * * *").unwrap();
        let wait = (next_on_failure(
            &quarter,
            now,
            10,
            Duration::from_secs(6 * 3600),
            Jitter::NONE,
        ) - now)
            .num_seconds();
        assert_eq!(wait, 900);
        // And at max_backoff when that is shorter.
        let daily = Schedule::parse("1d").unwrap();
        let wait = (next_on_failure(&daily, now, 30, Duration::from_secs(1800), Jitter::NONE)
            - now)
            .num_seconds();
        assert_eq!(wait, 1800);
    }
}
