//! Expiry times of exceptions and attestations (`--expires` on the CLI, the "Expires"
//! field in the console): one parser for every door. It takes a duration from now (`12h`,
//! `30d`, `2w`), a date (the end of that day, UTC) or an RFC 3339 time, and refuses times
//! that have already passed. The messages name the CLI flag; [`ExpiryError::reason`] is
//! the same rule without it, for a form field.

use chrono::{DateTime, Duration, NaiveDate, Utc};

/// The longest relative expiry: ten years (longer is `--permanent`, where offered).
const MAX_RELATIVE_DAYS: i64 = 3650;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ExpiryError {
    #[error("--expires {input:?}: use a duration from now (12h, 30d, 2w), a date (YYYY-MM-DD, end of day UTC) or an RFC 3339 time (2027-03-31T12:00:00Z)")]
    Unreadable { input: String },
    #[error("--expires {input:?} is more than {MAX_RELATIVE_DAYS} days away: give a date instead")]
    TooFar { input: String },
    #[error("--expires is in the past ({at}): give a later time")]
    Past { at: String },
}

impl ExpiryError {
    /// What is wrong, without the CLI flag: shown under a form's expiry field.
    pub fn reason(&self) -> String {
        match self {
            ExpiryError::Unreadable { .. } => "use a duration from now (12h, 30d, 2w), a date (YYYY-MM-DD, end of day UTC) or an RFC 3339 time (2027-03-31T12:00:00Z)".into(),
            ExpiryError::TooFar { .. } => format!("more than {MAX_RELATIVE_DAYS} days away: give a date instead"),
            ExpiryError::Past { at } => format!("that is in the past ({at}): give a later time"),
        }
    }
}

/// The moment `--expires <input>` names, seen from `now`; it must lie after `now`.
pub fn parse_expiry(input: &str, now: DateTime<Utc>) -> Result<DateTime<Utc>, ExpiryError> {
    let s = input.trim();
    let at = match relative(s) {
        Some(Ok(d)) => now + d,
        Some(Err(e)) => return Err(e),
        None => absolute(s).ok_or_else(|| ExpiryError::Unreadable {
            input: input.to_string(),
        })?,
    };
    if at <= now {
        return Err(ExpiryError::Past {
            at: at.format("%Y-%m-%d %H:%M:%S UTC").to_string(),
        });
    }
    Ok(at)
}

/// `<n>h`, `<n>d` or `<n>w`; None when `s` does not have that shape.
fn relative(s: &str) -> Option<Result<Duration, ExpiryError>> {
    let unit = s.chars().last()?;
    let hours_per_unit: i64 = match unit.to_ascii_lowercase() {
        'h' => 1,
        'd' => 24,
        'w' => 24 * 7,
        _ => return None,
    };
    let digits = &s[..s.len() - unit.len_utf8()];
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let too_far = || ExpiryError::TooFar {
        input: s.to_string(),
    };
    let n: i64 = match digits.parse() {
        Ok(n) => n,
        Err(_) => return Some(Err(too_far())),
    };
    let hours = n.saturating_mul(hours_per_unit);
    if hours > MAX_RELATIVE_DAYS * 24 {
        return Some(Err(too_far()));
    }
    Some(Ok(Duration::hours(hours)))
}

/// An RFC 3339 time, or a date meaning the last second of that day in UTC.
fn absolute(s: &str) -> Option<DateTime<Utc>> {
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Some(t.with_timezone(&Utc));
    }
    let date = NaiveDate::parse_from_str(s, "%Y-%m-%d").ok()?;
    Some(date.and_hms_opt(23, 59, 59)?.and_utc())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-12-01T10:00:00Z")
            .unwrap()
            .with_timezone(&Utc)
    }

    #[test]
    fn relative_durations_count_from_now() {
        assert_eq!(parse_expiry("12h", now()), Ok(now() + Duration::hours(12)));
        assert_eq!(parse_expiry("30d", now()), Ok(now() + Duration::days(30)));
        assert_eq!(parse_expiry(" 2w ", now()), Ok(now() + Duration::weeks(2)));
        assert_eq!(parse_expiry("1D", now()), Ok(now() + Duration::days(1)));
    }

    #[test]
    fn dates_and_times_are_absolute() {
        assert_eq!(
            parse_expiry("2027-03-31", now()).unwrap().to_rfc3339(),
            "2027-03-31T23:59:59+00:00"
        );
        assert_eq!(
            parse_expiry("2027-03-31T12:00:00+02:00", now())
                .unwrap()
                .to_rfc3339(),
            "2027-03-31T10:00:00+00:00"
        );
    }

    #[test]
    fn nonsense_the_past_and_the_far_future_are_refused() {
        for bad in [
            "",
            "d",
            "30",
            "30x",
            "-3d",
            "3.5d",
            "next week",
            "2030-02-30",
            "30 d",
        ] {
            assert!(
                matches!(
                    parse_expiry(bad, now()),
                    Err(ExpiryError::Unreadable { .. })
                ),
                "{bad:?}"
            );
        }
        assert!(matches!(
            parse_expiry("0d", now()),
            Err(ExpiryError::Past { .. })
        ));
        assert!(matches!(
            parse_expiry("2001-01-01", now()),
            Err(ExpiryError::Past { .. })
        ));
        for far in ["3651d", "99999999999999999999999h", "600w"] {
            assert!(
                matches!(parse_expiry(far, now()), Err(ExpiryError::TooFar { .. })),
                "{far:?}"
            );
        }
        assert!(parse_expiry("3650d", now()).is_ok());
        let msg = parse_expiry("soon", now()).unwrap_err().to_string();
        assert!(msg.contains("30d") && msg.contains("YYYY-MM-DD"), "{msg}");
    }
}
