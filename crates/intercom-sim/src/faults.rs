//! Fault injection: what can go wrong (the `faults` object of a workspace or token) and the
//! per-request decision, with the counters that "every Nth" and "next N" need.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::scenario::ScenarioError;

/// Faults of a workspace or a token. Every field is optional; an empty object injects nothing.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FaultSpec {
    /// Limit the faults to these endpoints (e.g. `"/admins/activity_logs"`); empty = all.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub endpoints: Vec<String>,
    /// Added before every matching response.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub latency_ms: u64,
    /// Wait this long before answering (set it above the client's request timeout).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hang_ms: Option<u64>,
    /// Answer 429 with rate-limit headers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_limited: Option<RateLimitFault>,
    /// Answer 5xx.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_error: Option<ServerErrorFault>,
    /// Corrupt successful JSON bodies.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub malformed_json: Option<Malformed>,
    /// Replace successful bodies by this many bytes (streamed, no Content-Length).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub oversized_body: Option<u64>,
    /// After this many calls of a token, it is revoked: 401 `token_revoked` from then on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revoke_after_calls: Option<u64>,
    /// Activity-log `pages.next` points here (another host) whenever there is a next page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub foreign_next_url: Option<String>,
    /// Activity-log `pages.next` points at the page just served.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub next_loop: bool,
    /// 403 "Your IP address is not on the allowlist for API access".
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub ip_not_allowed: bool,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// When to answer 429. With neither `every_nth` nor `next`, every matching request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimitFault {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub every_nth: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next: Option<u64>,
    /// `X-RateLimit-Reset` = now + this (whole seconds, as Intercom sends it).
    #[serde(default = "ten")]
    pub reset_after_secs: u64,
    /// Also send `Retry-After` (seconds).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_after_secs: Option<u64>,
}

fn ten() -> u64 {
    10
}

/// When to answer 5xx. With neither `next` nor `probability`, every matching request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerErrorFault {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next: Option<u64>,
    /// 0.0..=1.0, decided by a hash of `seed` and the request's ordinal: reproducible for a
    /// given request order.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub probability: Option<f64>,
    #[serde(default = "service_unavailable")]
    pub status: u16,
    #[serde(default)]
    pub seed: u64,
}

fn service_unavailable() -> u16 {
    503
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Malformed {
    /// The body cut in half: not JSON at all.
    Truncated,
    /// Valid JSON with one field of the wrong type (e.g. `has_inbox_seat: "yes"`).
    WrongType,
}

impl FaultSpec {
    pub fn is_empty(&self) -> bool {
        *self == FaultSpec::default()
    }

    pub(crate) fn validate(&self, what: &str) -> Result<(), ScenarioError> {
        let bad = |m: &str| Err(ScenarioError::Invalid(format!("{what}: {m}")));
        if let Some(r) = &self.rate_limited {
            if r.every_nth == Some(0) {
                return bad("rate_limited.every_nth must be at least 1");
            }
        }
        if let Some(s) = &self.server_error {
            if !(500..=599).contains(&s.status) {
                return bad("server_error.status must be 5xx");
            }
            if s.probability.is_some_and(|p| !(0.0..=1.0).contains(&p)) {
                return bad("server_error.probability must be within 0..=1");
            }
        }
        if let Some(url) = &self.foreign_next_url {
            if url::Url::parse(url).is_err() {
                return bad("foreign_next_url must be an absolute URL");
            }
        }
        Ok(())
    }

    pub(crate) fn applies_to(&self, endpoint: &str) -> bool {
        self.endpoints.is_empty() || self.endpoints.iter().any(|e| e == endpoint)
    }
}

/// What replaces the normal response.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Interrupt {
    IpNotAllowed,
    RateLimited {
        reset_after_secs: u64,
        retry_after_secs: Option<u64>,
    },
    ServerError(u16),
}

/// A fault spec in force, with its counters. Replacing the spec (the handle's `set_*_faults`)
/// creates a new one, so "next N" counts from that moment.
#[derive(Debug)]
pub(crate) struct ActiveFaults {
    spec: FaultSpec,
    matched: AtomicU64,
    left_429: AtomicU64,
    left_5xx: AtomicU64,
}

impl ActiveFaults {
    /// `None` for an empty spec, so the common case costs one `Option` check per request.
    pub fn new(spec: FaultSpec) -> Option<Arc<Self>> {
        if spec.is_empty() {
            return None;
        }
        let left_429 = spec.rate_limited.as_ref().and_then(|r| r.next).unwrap_or(0);
        let left_5xx = spec.server_error.as_ref().and_then(|s| s.next).unwrap_or(0);
        Some(Arc::new(Self {
            spec,
            matched: AtomicU64::new(0),
            left_429: AtomicU64::new(left_429),
            left_5xx: AtomicU64::new(left_5xx),
        }))
    }

    pub fn spec(&self) -> &FaultSpec {
        &self.spec
    }

    /// Counts one matching request and decides whether a fault answers it instead.
    pub fn interrupt(&self) -> Option<Interrupt> {
        let n = self.matched.fetch_add(1, Ordering::Relaxed) + 1;
        let spec = &self.spec;
        if spec.ip_not_allowed {
            return Some(Interrupt::IpNotAllowed);
        }
        if let Some(r) = &spec.rate_limited {
            let fire = match (r.every_nth, r.next) {
                (Some(k), _) if n % k == 0 => true,
                (_, Some(_)) => take_one(&self.left_429),
                (None, None) => true,
                _ => false,
            };
            if fire {
                return Some(Interrupt::RateLimited {
                    reset_after_secs: r.reset_after_secs,
                    retry_after_secs: r.retry_after_secs,
                });
            }
        }
        if let Some(s) = &spec.server_error {
            let fire = match (s.next, s.probability) {
                (Some(_), _) if take_one(&self.left_5xx) => true,
                (_, Some(p)) => unit_interval(s.seed ^ n) < p,
                (None, None) => true,
                _ => false,
            };
            if fire {
                return Some(Interrupt::ServerError(s.status));
            }
        }
        None
    }
}

/// Decrements a "next N" budget; true while it lasts.
fn take_one(left: &AtomicU64) -> bool {
    left.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |v| v.checked_sub(1))
        .is_ok()
}

/// SplitMix64 of `x`, scaled to [0, 1): cheap, stateless, reproducible.
fn unit_interval(x: u64) -> f64 {
    let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^= z >> 31;
    (z >> 11) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn active(json: &str) -> Arc<ActiveFaults> {
        ActiveFaults::new(serde_json::from_str(json).unwrap()).unwrap()
    }

    #[test]
    fn empty_spec_is_inactive() {
        assert!(ActiveFaults::new(FaultSpec::default()).is_none());
    }

    #[test]
    fn next_n_then_normal() {
        let f = active(r#"{"server_error":{"next":2}}"#);
        assert_eq!(f.interrupt(), Some(Interrupt::ServerError(503)));
        assert_eq!(f.interrupt(), Some(Interrupt::ServerError(503)));
        assert_eq!(f.interrupt(), None);
    }

    #[test]
    fn every_nth_rate_limit() {
        let f = active(r#"{"rate_limited":{"every_nth":3,"reset_after_secs":1}}"#);
        let fired: Vec<bool> = (0..6).map(|_| f.interrupt().is_some()).collect();
        assert_eq!(fired, [false, false, true, false, false, true]);
    }

    #[test]
    fn probability_is_roughly_honoured_and_reproducible() {
        let spec = r#"{"server_error":{"probability":0.25,"seed":7}}"#;
        let a: Vec<bool> = {
            let f = active(spec);
            (0..2000).map(|_| f.interrupt().is_some()).collect()
        };
        let b: Vec<bool> = {
            let f = active(spec);
            (0..2000).map(|_| f.interrupt().is_some()).collect()
        };
        assert_eq!(a, b);
        let share = a.iter().filter(|x| **x).count() as f64 / 2000.0;
        assert!((0.2..0.3).contains(&share), "{share}");
    }

    #[test]
    fn validation() {
        let bad: FaultSpec = serde_json::from_str(r#"{"server_error":{"status":404}}"#).unwrap();
        assert!(bad.validate("t").is_err());
        let bad: FaultSpec = serde_json::from_str(r#"{"rate_limited":{"every_nth":0}}"#).unwrap();
        assert!(bad.validate("t").is_err());
        let ok: FaultSpec =
            serde_json::from_str(r#"{"endpoints":["/me"],"latency_ms":5}"#).unwrap();
        assert!(ok.validate("t").is_ok());
        assert!(ok.applies_to("/me") && !ok.applies_to("/admins"));
    }
}
