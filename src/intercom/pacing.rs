//! Rate-limit awareness: reads `X-RateLimit-*` / `Retry-After` and decides how long to wait.
//!
//! Intercom counts requests in 10-second windows per app and per workspace (API.md §4.3).
//! Every authenticated response says how many requests are left (`X-RateLimit-Remaining` of
//! `X-RateLimit-Limit`) and when the window resets (`X-RateLimit-Reset`, Unix seconds). A
//! session that sees its budget nearly spent waits for the reset instead of running into a
//! 429, because a 429 costs a round trip and, shared with the customer's other apps, can
//! starve them too.

use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use reqwest::header::HeaderMap;

/// Waiting a little past the advertised reset absorbs clock granularity: the reset is a whole
/// second and the server's window may flip a few milliseconds after our clock says so.
pub(crate) const RESET_MARGIN: Duration = Duration::from_millis(20);

/// Pause before the next request when fewer than `limit / LOW_WATER_DIVISOR` remain (10 %).
const LOW_WATER_DIVISOR: u64 = 10;

fn header_u64(headers: &HeaderMap, name: &str) -> Option<u64> {
    headers.get(name)?.to_str().ok()?.trim().parse::<u64>().ok()
}

/// Time from `now` until the Unix second `reset`, or zero when it has passed.
fn until_unix(reset: u64, now: SystemTime) -> Duration {
    let reset_at = UNIX_EPOCH + Duration::from_secs(reset);
    reset_at.duration_since(now).unwrap_or(Duration::ZERO)
}

/// How long a 429 asks us to wait: `Retry-After` (seconds) when sent, else until
/// `X-RateLimit-Reset` (Unix seconds). `None` when neither header is usable.
pub(crate) fn rate_limit_reset(headers: &HeaderMap) -> Option<Duration> {
    if let Some(secs) = header_u64(headers, "retry-after") {
        return Some(Duration::from_secs(secs));
    }
    let reset = header_u64(headers, "x-ratelimit-reset")?;
    Some(until_unix(reset, SystemTime::now()) + RESET_MARGIN)
}

/// The rate-limit window as last reported by the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RateLimitWindow {
    pub limit: u64,
    pub remaining: u64,
    /// Unix seconds.
    pub reset: u64,
}

impl RateLimitWindow {
    /// All three headers, or nothing: a partial set cannot be acted on safely.
    pub fn from_headers(headers: &HeaderMap) -> Option<Self> {
        Some(Self {
            limit: header_u64(headers, "x-ratelimit-limit")?,
            remaining: header_u64(headers, "x-ratelimit-remaining")?,
            reset: header_u64(headers, "x-ratelimit-reset")?,
        })
    }

    pub fn is_low(&self) -> bool {
        self.remaining == 0 || self.remaining * LOW_WATER_DIVISOR < self.limit
    }

    /// How long until the window resets, as seen from `now` (zero once it has).
    pub fn until_reset(&self, now: SystemTime) -> Duration {
        until_unix(self.reset, now)
    }
}

/// Per-session pacing state: the most recent window report.
#[derive(Debug, Default)]
pub(crate) struct Pacer {
    last: Mutex<Option<RateLimitWindow>>,
}

impl Pacer {
    /// Records the window from a response; responses without the headers change nothing.
    pub fn observe(&self, headers: &HeaderMap) {
        if let Some(window) = RateLimitWindow::from_headers(headers) {
            *self.lock() = Some(window);
        }
    }

    /// The pause owed before the next request, if the last report said the budget is low and
    /// its window has not reset yet. Taking the pause consumes the report, so one low reading
    /// causes one wait, not one per request.
    pub fn take_pause(&self, now: SystemTime) -> Option<Duration> {
        let mut last = self.lock();
        let window = (*last)?;
        if !window.is_low() {
            return None;
        }
        *last = None;
        let wait = window.until_reset(now);
        (!wait.is_zero()).then_some(wait + RESET_MARGIN)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<RateLimitWindow>> {
        // The guarded value is a plain Copy struct; a panic elsewhere cannot leave it torn.
        self.last.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;

    fn headers(pairs: &[(&'static str, String)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    fn unix_now() -> u64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs()
    }

    #[test]
    fn retry_after_beats_reset_header() {
        let h = headers(&[
            ("retry-after", "7".into()),
            ("x-ratelimit-reset", "1".into()),
        ]);
        assert_eq!(rate_limit_reset(&h), Some(Duration::from_secs(7)));
    }

    #[test]
    fn reset_in_the_past_waits_only_the_margin() {
        let h = headers(&[("x-ratelimit-reset", "1".into())]);
        assert_eq!(rate_limit_reset(&h), Some(RESET_MARGIN));
        assert_eq!(rate_limit_reset(&HeaderMap::new()), None);
    }

    #[test]
    fn low_water_mark_is_ten_percent() {
        let w = |limit, remaining| RateLimitWindow {
            limit,
            remaining,
            reset: 0,
        };
        assert!(w(167, 16).is_low());
        assert!(!w(167, 17).is_low());
        assert!(w(5, 0).is_low());
        assert!(!w(5, 1).is_low());
    }

    #[test]
    fn pacer_pauses_once_per_low_report() {
        let pacer = Pacer::default();
        let reset = unix_now() + 5;
        pacer.observe(&headers(&[
            ("x-ratelimit-limit", "100".into()),
            ("x-ratelimit-remaining", "50".into()),
            ("x-ratelimit-reset", reset.to_string()),
        ]));
        assert_eq!(pacer.take_pause(SystemTime::now()), None);
        pacer.observe(&headers(&[
            ("x-ratelimit-limit", "100".into()),
            ("x-ratelimit-remaining", "3".into()),
            ("x-ratelimit-reset", reset.to_string()),
        ]));
        let pause = pacer
            .take_pause(SystemTime::now())
            .expect("low budget pauses");
        assert!(pause > Duration::from_secs(3) && pause <= Duration::from_secs(6));
        assert_eq!(pacer.take_pause(SystemTime::now()), None, "consumed");
    }

    #[test]
    fn partial_headers_are_ignored() {
        let pacer = Pacer::default();
        pacer.observe(&headers(&[("x-ratelimit-remaining", "0".into())]));
        assert_eq!(pacer.take_pause(SystemTime::now()), None);
    }
}
