//! Per-instance scan schedules: an interval (`30m`, `6h`, `1d`) or a cron expression,
//! optionally prefixed `CRON_TZ=<IANA zone>` (the cronie convention) so that "03:00 in
//! Berlin" stays 03:00 across daylight-saving changes.
//!
//! The floor of one minute applies to both forms: a cron expression's next
//! `CRON_FLOOR_SAMPLES` firings must be at least `MIN_INTERVAL` apart. A 6-field
//! expression (leading seconds field) is accepted, so `0 0 3 * * *` works, but the floor
//! refuses every sub-minute pattern such as `*/2 * * * * *`. An expression that never
//! fires (`0 3 31 2 *`) is refused rather than silently run daily.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use croner::Cron;

/// The shortest interval accepted: below this a scan would hammer the customer's rate limit.
pub const MIN_INTERVAL: Duration = Duration::from_secs(60);
/// The longest interval accepted. Far longer ones ("300000y") would overflow date
/// arithmetic; an instance that should not be scanned is disabled instead.
pub const MAX_INTERVAL: Duration = Duration::from_secs(366 * 86_400);
/// How many upcoming firings of a cron expression are checked against `MIN_INTERVAL`:
/// enough to cover a whole hour of a per-minute pattern or several days of a dense one.
const CRON_FLOOR_SAMPLES: usize = 120;

#[derive(Debug, Clone)]
pub enum Schedule {
    Interval(Duration),
    Cron {
        cron: Box<Cron>,
        tz: Tz,
        text: String,
    },
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ScheduleError {
    #[error(
        "schedule is empty: use an interval such as 6h or a cron expression such as \"0 3 * * *\""
    )]
    Empty,
    #[error("interval {0:?} is shorter than the minimum of 1m")]
    TooShort(String),
    #[error("interval {0:?} is longer than the maximum of 366d: use `instance disable` to stop scanning an instance")]
    TooLong(String),
    #[error("cron expression {input:?} fires {gap_secs}s apart at {at}, more often than the minimum of 1m: scans that close together would hammer the workspace's rate limit")]
    CronTooFrequent {
        input: String,
        gap_secs: i64,
        at: String,
    },
    #[error("cron expression {0:?} never fires (no date matches it, e.g. 31 February): fix its day and month fields")]
    NeverFires(String),
    #[error("unknown time zone {0:?}: use an IANA name such as Europe/Berlin or America/New_York")]
    UnknownTimeZone(String),
    #[error(
        "{input:?} is neither an interval (30m, 6h, 1d) nor a valid cron expression: {reason}"
    )]
    Invalid { input: String, reason: String },
}

impl Schedule {
    pub fn parse(input: &str) -> Result<Self, ScheduleError> {
        let text = input.trim();
        if text.is_empty() {
            return Err(ScheduleError::Empty);
        }
        if let Ok(d) = humantime::parse_duration(text) {
            if d < MIN_INTERVAL {
                return Err(ScheduleError::TooShort(text.to_string()));
            }
            if d > MAX_INTERVAL {
                return Err(ScheduleError::TooLong(text.to_string()));
            }
            return Ok(Schedule::Interval(d));
        }
        let (tz, expr) = match text.strip_prefix("CRON_TZ=") {
            Some(rest) => {
                let (zone, expr) =
                    rest.split_once(char::is_whitespace)
                        .ok_or_else(|| ScheduleError::Invalid {
                            input: text.to_string(),
                            reason: "CRON_TZ=<zone> must be followed by a cron expression".into(),
                        })?;
                let tz = Tz::from_str(zone)
                    .map_err(|_| ScheduleError::UnknownTimeZone(zone.to_string()))?;
                (tz, expr.trim())
            }
            None => (Tz::UTC, text),
        };
        let fields = expr.split_whitespace().count();
        if !(5..=6).contains(&fields) && !expr.starts_with('@') {
            return Err(ScheduleError::Invalid {
                input: text.to_string(),
                reason: format!(
                    "a cron expression has 5 fields (or 6 with seconds), found {fields}"
                ),
            });
        }
        let cron = Cron::from_str(expr).map_err(|e| ScheduleError::Invalid {
            input: text.to_string(),
            reason: cron_reason(expr, &e.to_string()),
        })?;
        check_cron_floor(&cron, tz, text, Utc::now())?;
        Ok(Schedule::Cron {
            cron: Box::new(cron),
            tz,
            text: text.to_string(),
        })
    }

    /// The time zone wall-clock times of this schedule are meant in (UTC for intervals).
    pub fn time_zone(&self) -> Tz {
        match self {
            Schedule::Interval(_) => Tz::UTC,
            Schedule::Cron { tz, .. } => *tz,
        }
    }

    pub fn is_cron(&self) -> bool {
        matches!(self, Schedule::Cron { .. })
    }

    /// The next time a scan is due after `after`, before jitter.
    pub fn next_after(&self, after: DateTime<Utc>) -> DateTime<Utc> {
        match self {
            // Checked: `parse` bounds intervals, but a `Schedule` can be built directly and
            // an overflowing `+` panics.
            Schedule::Interval(d) => chrono::Duration::from_std(*d)
                .ok()
                .and_then(|d| after.checked_add_signed(d))
                .unwrap_or(after + chrono::Duration::days(1)),
            Schedule::Cron { cron, tz, .. } => {
                let local = after.with_timezone(tz);
                cron.find_next_occurrence(&local, false)
                    .map(|t| t.with_timezone(&Utc))
                    // A pattern with no future match (e.g. 30 February) degrades to daily.
                    .unwrap_or(after + chrono::Duration::days(1))
            }
        }
    }

    /// The typical spacing between runs; bounds backoff and sizes jitter.
    pub fn nominal_interval(&self, around: DateTime<Utc>) -> Duration {
        match self {
            Schedule::Interval(d) => *d,
            Schedule::Cron { .. } => {
                let first = self.next_after(around);
                let second = self.next_after(first);
                (second - first)
                    .to_std()
                    .unwrap_or(Duration::from_secs(86_400))
            }
        }
    }
}

/// Refuses a cron expression that never fires or whose upcoming firings come closer
/// together than `MIN_INTERVAL` (checked from `from` over `CRON_FLOOR_SAMPLES` firings).
fn check_cron_floor(
    cron: &Cron,
    tz: Tz,
    text: &str,
    from: DateTime<Utc>,
) -> Result<(), ScheduleError> {
    let floor = chrono::Duration::from_std(MIN_INTERVAL).expect("a minute fits");
    let mut previous = cron
        .find_next_occurrence(&from.with_timezone(&tz), false)
        .map_err(|_| ScheduleError::NeverFires(text.to_string()))?;
    for _ in 1..CRON_FLOOR_SAMPLES {
        let Ok(next) = cron.find_next_occurrence(&previous, false) else {
            // Fires a few times, then never again (e.g. a year field): the floor held.
            return Ok(());
        };
        let gap = next - previous;
        if gap < floor {
            return Err(ScheduleError::CronTooFrequent {
                input: text.to_string(),
                gap_secs: gap.num_seconds(),
                at: previous.with_timezone(&Utc).to_rfc3339(),
            });
        }
        previous = next;
    }
    Ok(())
}

/// croner's reason, with the field it is about named when it can be told.
fn cron_reason(expr: &str, reason: &str) -> String {
    let fields: Vec<&str> = expr.split_whitespace().collect();
    let names: &[&str] = if fields.len() == 6 {
        &[
            "second",
            "minute",
            "hour",
            "day of month",
            "month",
            "day of week",
        ]
    } else {
        &["minute", "hour", "day of month", "month", "day of week"]
    };
    // Each field alone in an otherwise all-`*` expression: the first that fails is the bad one.
    for (i, field) in fields.iter().enumerate() {
        let probe: Vec<&str> = (0..fields.len())
            .map(|j| if j == i { *field } else { "*" })
            .collect();
        if Cron::from_str(&probe.join(" ")).is_err() {
            if let Some(name) = names.get(i) {
                return format!("the {name} field {field:?} is invalid ({reason})");
            }
        }
    }
    reason.to_string()
}

impl fmt::Display for Schedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Schedule::Interval(d) => f.write_str(&humantime::format_duration(*d).to_string()),
            Schedule::Cron { text, .. } => f.write_str(text),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn intervals_parse() {
        assert!(
            matches!(Schedule::parse("6h").unwrap(), Schedule::Interval(d) if d == Duration::from_secs(21600))
        );
        assert!(
            matches!(Schedule::parse("1d").unwrap(), Schedule::Interval(d) if d == Duration::from_secs(86400))
        );
        assert_eq!(
            Schedule::parse("10s").unwrap_err(),
            ScheduleError::TooShort("10s".into())
        );
        assert_eq!(Schedule::parse("  ").unwrap_err(), ScheduleError::Empty);
    }

    #[test]
    fn cron_with_zone_is_dst_correct() {
        let s = Schedule::parse("CRON_TZ=Europe/Berlin 0 3 * * *").unwrap();
        // Berlin switches to summer time on 2026-03-29: 03:00 local is 02:00 UTC before, 01:00 after.
        let before = Utc.with_ymd_and_hms(2026, 3, 27, 12, 0, 0).unwrap();
        assert_eq!(
            s.next_after(before),
            Utc.with_ymd_and_hms(2026, 3, 28, 2, 0, 0).unwrap()
        );
        let after = Utc.with_ymd_and_hms(2026, 3, 29, 12, 0, 0).unwrap();
        assert_eq!(
            s.next_after(after),
            Utc.with_ymd_and_hms(2026, 3, 30, 1, 0, 0).unwrap()
        );
    }

    #[test]
    fn bad_cron_and_zone_are_clear_errors() {
        assert!(matches!(
            Schedule::parse("61 * * * *").unwrap_err(),
            ScheduleError::Invalid { .. }
        ));
        assert!(matches!(
            Schedule::parse("every day").unwrap_err(),
            ScheduleError::Invalid { .. }
        ));
        assert_eq!(
            Schedule::parse("CRON_TZ=Mars/Olympus 0 3 * * *").unwrap_err(),
            ScheduleError::UnknownTimeZone("Mars/Olympus".into())
        );
    }

    #[test]
    fn cron_faster_than_the_floor_is_refused() {
        for expr in ["*/2 * * * * *", "* * * * * *", "0,30 * * * * *"] {
            assert!(
                matches!(
                    Schedule::parse(expr).unwrap_err(),
                    ScheduleError::CronTooFrequent { .. }
                ),
                "{expr}"
            );
        }
        // A dense burst after a quiet stretch is found too: every second of minute 7.
        assert!(matches!(
            Schedule::parse("* 7 * * * *").unwrap_err(),
            ScheduleError::CronTooFrequent { .. }
        ));
        // At the floor, and with a fixed seconds field, it is fine.
        for expr in [
            "* * * * *",
            "0 * * * * *",
            "0 0 3 * * *",
            "0 3 * * *",
            "0,1 * * * *",
        ] {
            assert!(Schedule::parse(expr).is_ok(), "{expr}");
        }
    }

    #[test]
    fn cron_that_never_fires_is_refused() {
        assert_eq!(
            Schedule::parse("0 3 31 2 *").unwrap_err(),
            ScheduleError::NeverFires("0 3 31 2 *".into())
        );
        assert!(matches!(
            Schedule::parse("CRON_TZ=Europe/Berlin 0 3 30 2 *").unwrap_err(),
            ScheduleError::NeverFires(_)
        ));
        // 29 February fires in leap years: accepted.
        assert!(Schedule::parse("0 3 29 2 *").is_ok());
    }

    #[test]
    fn cron_errors_name_the_bad_field() {
        let e = Schedule::parse("0 25 * * *").unwrap_err().to_string();
        assert!(e.contains("hour field \"25\""), "{e}");
        let e = Schedule::parse("61 * * * *").unwrap_err().to_string();
        assert!(e.contains("minute field \"61\""), "{e}");
        let e = Schedule::parse("0 3 * 13 *").unwrap_err().to_string();
        assert!(e.contains("month field \"13\""), "{e}");
    }

    #[test]
    fn nominal_interval_of_hourly_cron_is_an_hour() {
        let s = Schedule::parse("0 * * * *").unwrap();
        assert_eq!(s.nominal_interval(Utc::now()), Duration::from_secs(3600));
    }
}
