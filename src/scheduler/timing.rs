//! When an instance is next due: pure functions, unit-tested.

use std::time::Duration;

use chrono::{DateTime, Utc};
use rand::Rng;

use crate::schedule::Schedule;

/// First retry after a failure; doubles per consecutive failure.
pub const BACKOFF_BASE: Duration = Duration::from_secs(60);

/// Adds up to `fraction` of `interval` at random so instances onboarded together drift apart.
pub fn jittered(at: DateTime<Utc>, interval: Duration, fraction: f64) -> DateTime<Utc> {
    if fraction <= 0.0 {
        return at;
    }
    let max = interval.as_secs_f64() * fraction;
    let extra = rand::thread_rng().gen_range(0.0..=max);
    at + chrono::Duration::milliseconds((extra * 1000.0) as i64)
}

/// The next regular run after a completed scan.
pub fn next_on_success(schedule: &Schedule, now: DateTime<Utc>, jitter: f64) -> DateTime<Utc> {
    let next = schedule.next_after(now);
    jittered(next, schedule.nominal_interval(now), jitter)
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
    jitter: f64,
) -> DateTime<Utc> {
    let wait = backoff(
        failures_so_far + 1,
        schedule.nominal_interval(now),
        max_backoff,
    );
    jittered(
        now + chrono::Duration::from_std(wait).unwrap_or(chrono::Duration::minutes(1)),
        wait,
        jitter,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

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
        let next = next_on_success(&s, now, 0.05);
        let delta = (next - now).num_seconds();
        assert!((6 * 3600..=6 * 3600 + 1080).contains(&delta), "{delta}");
    }

    #[test]
    fn failure_retries_sooner_than_the_schedule() {
        let s = Schedule::parse("6h").unwrap();
        let now = Utc::now();
        let next = next_on_failure(&s, now, 0, Duration::from_secs(6 * 3600), 0.0);
        assert_eq!((next - now).num_seconds(), 60);
    }

    #[test]
    fn one_minute_schedule_reschedules_within_three_seconds_of_jitter() {
        let s = Schedule::parse("1m").unwrap();
        let now = Utc::now();
        let mut seen = std::collections::HashSet::new();
        for _ in 0..100 {
            let next = next_on_success(&s, now, 0.05);
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
            next_on_success(&s, summer, 0.0).to_rfc3339(),
            "2026-07-02T01:00:00+00:00"
        );
        assert_eq!(
            next_on_success(&s, winter, 0.0).to_rfc3339(),
            "2026-12-02T02:00:00+00:00"
        );
        // Jitter is a share of the nominal interval (a day): at most 5% = 72 minutes.
        let jittered = next_on_success(&s, summer, 0.05);
        let extra = (jittered - next_on_success(&s, summer, 0.0)).num_seconds();
        assert!((0..=72 * 60).contains(&extra), "{extra}");
    }

    #[test]
    fn failures_back_off_exponentially_but_never_beyond_the_schedule() {
        let hourly = Schedule::parse("1h").unwrap();
        let now = Utc::now();
        let waits: Vec<i64> = (0..9)
            .map(|f| {
                (next_on_failure(&hourly, now, f, Duration::from_secs(6 * 3600), 0.0) - now)
                    .num_seconds()
            })
            .collect();
        assert_eq!(waits, [60, 120, 240, 480, 960, 1920, 3600, 3600, 3600]);
        // A cron schedule caps at its nominal interval too (every 15 minutes here).
        let quarter = Schedule::parse("*/15 * * * *").unwrap();
        let wait = (next_on_failure(&quarter, now, 10, Duration::from_secs(6 * 3600), 0.0) - now)
            .num_seconds();
        assert_eq!(wait, 900);
        // And at max_backoff when that is shorter.
        let daily = Schedule::parse("1d").unwrap();
        let wait =
            (next_on_failure(&daily, now, 30, Duration::from_secs(1800), 0.0) - now).num_seconds();
        assert_eq!(wait, 1800);
    }
}
