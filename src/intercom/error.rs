//! Error classes of the Intercom boundary. Each variant drives behaviour: instance status,
//! retry or not, snooze, which checks become `error` or `not_evaluated`.
//! No variant ever carries the token or an Authorization header.

use std::time::Duration;

#[derive(Debug, Clone, thiserror::Error)]
pub enum IntercomError {
    /// 401 `unauthorized`, `token_not_found`, `token_revoked`, ...: the token is dead or wrong
    /// for this region. Do not retry.
    #[error("{endpoint}: token rejected (HTTP 401 {code}): it is invalid, revoked, or belongs to another region")]
    Unauthorized { endpoint: String, code: String },
    /// 401 `token_unauthorized`, 403 `forbidden`: valid token, missing scope or permission.
    #[error("{endpoint}: token not permitted (HTTP {status} {code}): {message}")]
    NotPermitted {
        endpoint: String,
        status: u16,
        code: String,
        message: String,
    },
    /// 403 `api_plan_restricted`: the workspace's plan lacks the feature.
    #[error("{endpoint}: not available on this workspace's plan (HTTP 403 api_plan_restricted): {message}")]
    PlanRestricted { endpoint: String, message: String },
    /// 403 "not on the allowlist for API access": the customer's REST API IP allowlist.
    #[error("{endpoint}: this host's IP address is not on the workspace's REST API IP allowlist (HTTP 403): add the scanner's egress IPs in Intercom")]
    IpNotAllowed { endpoint: String },
    /// 429. `reset` is how long until the window resets.
    #[error("{endpoint}: rate limited (HTTP 429), window resets in {reset:?}")]
    RateLimited { endpoint: String, reset: Duration },
    /// 5xx, timeouts, connection failures: worth retrying.
    #[error("{endpoint}: temporary failure: {reason}")]
    Transient { endpoint: String, reason: String },
    /// The body was not the JSON we expect; `path` is the failing field.
    #[error("{endpoint}: malformed response at `{path}`: {reason}")]
    Decode {
        endpoint: String,
        path: String,
        reason: String,
    },
    /// The body exceeded `intercom.max_body_bytes`, or pagination exceeded `intercom.max_pages`.
    #[error("{endpoint}: response too large: {reason}")]
    TooLarge { endpoint: String, reason: String },
    /// A `pages.next` or redirect pointing off the configured regional origin.
    #[error("{endpoint}: refused to follow {url_origin}: not the configured origin {expected_origin} (the token is never sent elsewhere)")]
    ForeignOrigin {
        endpoint: String,
        url_origin: String,
        expected_origin: String,
    },
    /// A 3xx. Redirects are never followed: the API has no reason to redirect, and following
    /// one could carry the token to another host. `location` is origin and path only.
    #[error("{endpoint}: the API answered HTTP {status}, a redirect to {location}; redirects are never followed, so the token is only sent to the configured origin. Check intercom.base_url and any proxy in front of the API")]
    Redirect {
        endpoint: String,
        status: u16,
        location: String,
    },
    /// Any other 4xx: a bug on our side or an API change.
    #[error("{endpoint}: unexpected HTTP {status} {code}: {message}")]
    Unexpected {
        endpoint: String,
        status: u16,
        code: String,
        message: String,
    },
    /// The whole-scan time budget ran out.
    #[error("timed out after {} s: the time budget of one scan (intercom.scan_timeout) is used up", .0.as_secs_f64())]
    BudgetExhausted(Duration),
    /// A caller asked for a path the client will not build a request for (a bug in the caller).
    #[error("{endpoint}: not a plain API path; refused before any request was made")]
    InvalidEndpoint { endpoint: String },
}

impl IntercomError {
    pub fn endpoint(&self) -> Option<&str> {
        match self {
            IntercomError::Unauthorized { endpoint, .. }
            | IntercomError::NotPermitted { endpoint, .. }
            | IntercomError::PlanRestricted { endpoint, .. }
            | IntercomError::IpNotAllowed { endpoint }
            | IntercomError::RateLimited { endpoint, .. }
            | IntercomError::Transient { endpoint, .. }
            | IntercomError::Decode { endpoint, .. }
            | IntercomError::TooLarge { endpoint, .. }
            | IntercomError::ForeignOrigin { endpoint, .. }
            | IntercomError::Redirect { endpoint, .. }
            | IntercomError::Unexpected { endpoint, .. }
            | IntercomError::InvalidEndpoint { endpoint } => Some(endpoint),
            IntercomError::BudgetExhausted(_) => None,
        }
    }

    /// Whether the API did not answer usefully at all: a persistent network or 5xx
    /// failure, or the scan's whole time budget (`intercom.scan_timeout`) used up by a host
    /// that hangs or keeps failing. Both leave the workspace unmonitored, so the scan marks
    /// the instance `unreachable` AND `api_reachable` fails: one rule, used by both.
    pub fn is_unreachable(&self) -> bool {
        matches!(
            self,
            IntercomError::Transient { .. } | IntercomError::BudgetExhausted(_)
        )
    }

    /// Short machine-readable class, stored as `scans.error_kind`.
    pub fn kind(&self) -> &'static str {
        match self {
            IntercomError::Unauthorized { .. } => "unauthorized",
            IntercomError::NotPermitted { .. } => "not_permitted",
            IntercomError::PlanRestricted { .. } => "plan_restricted",
            IntercomError::IpNotAllowed { .. } => "ip_not_allowed",
            IntercomError::RateLimited { .. } => "rate_limited",
            IntercomError::Transient { .. } => "unreachable",
            IntercomError::Decode { .. } => "decode",
            IntercomError::TooLarge { .. } => "too_large",
            IntercomError::ForeignOrigin { .. } => "foreign_origin",
            IntercomError::Redirect { .. } => "redirect",
            IntercomError::Unexpected { .. } => "unexpected",
            IntercomError::BudgetExhausted(_) => "timeout",
            IntercomError::InvalidEndpoint { .. } => "invalid_endpoint",
        }
    }
}

/// Longest text an error keeps from a server-supplied field (codes, messages, decode
/// reasons that quote a value): errors end up in logs and database rows.
const MAX_FIELD_CHARS: usize = 500;

impl IntercomError {
    /// The error with every occurrence of `secret` replaced and every text field bounded.
    ///
    /// Errors quote what the server sent (codes, messages, mistyped values, URLs). A
    /// compromised API or a proxy can reflect the Authorization header into any of them;
    /// this keeps the token out of our logs, `scans.error` and `instances.status_detail`.
    pub(crate) fn sanitized(self, secret: &str) -> Self {
        let clean = |s: String| -> String {
            let s = if secret.is_empty() {
                s
            } else {
                s.replace(secret, "[REDACTED]")
            };
            if s.chars().count() > MAX_FIELD_CHARS {
                let mut cut: String = s.chars().take(MAX_FIELD_CHARS).collect();
                cut.push_str("… (truncated)");
                cut
            } else {
                s
            }
        };
        use IntercomError as E;
        match self {
            E::Unauthorized { endpoint, code } => E::Unauthorized {
                endpoint: clean(endpoint),
                code: clean(code),
            },
            E::NotPermitted {
                endpoint,
                status,
                code,
                message,
            } => E::NotPermitted {
                endpoint: clean(endpoint),
                status,
                code: clean(code),
                message: clean(message),
            },
            E::PlanRestricted { endpoint, message } => E::PlanRestricted {
                endpoint: clean(endpoint),
                message: clean(message),
            },
            E::IpNotAllowed { endpoint } => E::IpNotAllowed {
                endpoint: clean(endpoint),
            },
            E::RateLimited { endpoint, reset } => E::RateLimited {
                endpoint: clean(endpoint),
                reset,
            },
            E::Transient { endpoint, reason } => E::Transient {
                endpoint: clean(endpoint),
                reason: clean(reason),
            },
            E::Decode {
                endpoint,
                path,
                reason,
            } => E::Decode {
                endpoint: clean(endpoint),
                path: clean(path),
                reason: clean(reason),
            },
            E::TooLarge { endpoint, reason } => E::TooLarge {
                endpoint: clean(endpoint),
                reason: clean(reason),
            },
            E::ForeignOrigin {
                endpoint,
                url_origin,
                expected_origin,
            } => E::ForeignOrigin {
                endpoint: clean(endpoint),
                url_origin: clean(url_origin),
                expected_origin: clean(expected_origin),
            },
            E::Redirect {
                endpoint,
                status,
                location,
            } => E::Redirect {
                endpoint: clean(endpoint),
                status,
                location: clean(location),
            },
            E::Unexpected {
                endpoint,
                status,
                code,
                message,
            } => E::Unexpected {
                endpoint: clean(endpoint),
                status,
                code: clean(code),
                message: clean(message),
            },
            E::BudgetExhausted(d) => E::BudgetExhausted(d),
            E::InvalidEndpoint { endpoint } => E::InvalidEndpoint {
                endpoint: clean(endpoint),
            },
        }
    }
}
