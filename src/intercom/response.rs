//! Turning an HTTP response into a value or an error class: capped body reads, JSON decoding
//! with the failing field's path, and the status/code classification of API.md §4.2 and §5.

use std::time::Duration;

use reqwest::header::HeaderMap;
use reqwest::StatusCode;
use serde::de::DeserializeOwned;

use super::error::IntercomError;
use super::models::ErrorList;
use super::pacing::rate_limit_reset;

const IP_ALLOWLIST_MARKER: &str = "not on the allowlist";
/// Intercom's windows are 10 s long; a 429 without usable headers waits one window.
const DEFAULT_RATE_LIMIT_RESET: Duration = Duration::from_secs(10);
/// Error messages from the server are echoed into our errors; keep them short.
const MAX_MESSAGE_CHARS: usize = 300;

/// A network-level failure as a `Transient` error.
pub(crate) fn transient(endpoint: &str, e: &reqwest::Error) -> IntercomError {
    // reqwest's Display includes the URL, which never holds the token (it is a header).
    let reason = if e.is_timeout() {
        "request timed out".to_string()
    } else if e.is_connect() {
        "cannot connect".to_string()
    } else {
        e.to_string()
    };
    IntercomError::Transient {
        endpoint: endpoint.to_string(),
        reason,
    }
}

/// Reads the body, failing with `TooLarge` as soon as it would exceed `cap` bytes: a hostile
/// or broken server can make us read at most `cap` bytes (plus one chunk), never allocate
/// what it announces.
pub(crate) async fn read_capped(
    endpoint: &str,
    mut response: reqwest::Response,
    cap: u64,
) -> Result<Vec<u8>, IntercomError> {
    let too_large = |seen: u64| IntercomError::TooLarge {
        endpoint: endpoint.to_string(),
        reason: format!(
            "body exceeds intercom.max_body_bytes ({cap} bytes; at least {seen} received)"
        ),
    };
    if let Some(len) = response.content_length() {
        if len > cap {
            return Err(too_large(len));
        }
    }
    let mut body = Vec::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|e| transient(endpoint, &e))?
    {
        if body.len() as u64 + chunk.len() as u64 > cap {
            return Err(too_large(body.len() as u64 + chunk.len() as u64));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// Longest JSON string accepted in a response. Intercom's values (names, emails, ids,
/// event metadata) are short; a multi-megabyte string is hostile or broken, and would
/// otherwise flow into findings, inventory rows and logs.
pub const MAX_STRING_BYTES: usize = 1024 * 1024;

/// Parses a response body; a failure names the field path (`admins[0].has_inbox_seat`).
/// Public so the fuzz tests drive exactly the parser the client uses.
///
/// Nesting is bounded by serde_json's recursion limit (128), so a deep document is a
/// `Decode` error, never a stack overflow; invalid UTF-8 is a `Decode` error.
pub fn decode<T: DeserializeOwned>(endpoint: &str, body: &[u8]) -> Result<T, IntercomError> {
    let longest = longest_string(body);
    if longest > MAX_STRING_BYTES {
        return Err(IntercomError::TooLarge {
            endpoint: endpoint.to_string(),
            reason: format!(
                "a string value of {longest} bytes exceeds the {MAX_STRING_BYTES}-byte limit per value"
            ),
        });
    }
    // The plain parse first: tracking the path wraps every value's visitor (~2 % of the
    // daemon's CPU in a steady scan, `perf`), and only a failure needs it. Parsing is
    // deterministic, so the second pass fails at the same place and names it.
    if let Ok(parsed) = T::deserialize(&mut serde_json::Deserializer::from_slice(body)) {
        return Ok(parsed);
    }
    let de = &mut serde_json::Deserializer::from_slice(body);
    serde_path_to_error::deserialize(de).map_err(|e| IntercomError::Decode {
        endpoint: endpoint.to_string(),
        path: e.path().to_string(),
        reason: e.inner().to_string(),
    })
}

/// Length in bytes of the longest string literal in a JSON text (escapes counted as
/// written). One pass, no allocation; an unterminated string counts to the end. Jumps
/// from quote to quote (and backslash) with `memchr`: a byte-at-a-time loop over every
/// response body was ~2 % of a steady scan's CPU.
fn longest_string(body: &[u8]) -> usize {
    let mut longest = 0;
    let mut at = 0;
    while let Some(open) = memchr::memchr(b'"', &body[at..]) {
        let start = at + open + 1;
        let mut i = start;
        loop {
            match memchr::memchr2(b'"', b'\\', body.get(i..).unwrap_or_default()) {
                // An escape: the byte after the backslash is part of the string, whatever it is.
                Some(k) if body[i + k] == b'\\' => i += k + 2,
                Some(k) => {
                    longest = longest.max(i + k - start);
                    at = i + k + 1;
                    break;
                }
                None => return longest.max(body.len() - start),
            }
        }
    }
    longest
}

/// Where a redirect pointed, origin and path only: a query may carry anything.
fn redirect_target(headers: &HeaderMap) -> String {
    let Some(raw) = headers
        .get(reqwest::header::LOCATION)
        .and_then(|v| v.to_str().ok())
    else {
        return "(no Location header)".into();
    };
    match url::Url::parse(raw) {
        Ok(u) => format!("{}{}", u.origin().ascii_serialization(), u.path()),
        // A relative Location stays on the origin; keep its path only.
        Err(_) => raw.split(['?', '#']).next().unwrap_or("").to_string(),
    }
}

/// Maps a non-2xx response to its error class (see API.md §4.2 and §5).
pub fn classify(
    endpoint: &str,
    status: StatusCode,
    headers: &HeaderMap,
    body: &[u8],
) -> IntercomError {
    let errors: ErrorList = serde_json::from_slice(body).unwrap_or_default();
    let code = errors.first_code().unwrap_or("").to_string();
    let message = errors
        .first_message()
        .map(|m| m.chars().take(MAX_MESSAGE_CHARS).collect::<String>())
        .unwrap_or_default();
    let endpoint = endpoint.to_string();
    match status.as_u16() {
        401 if code == "token_unauthorized" => IntercomError::NotPermitted {
            endpoint,
            status: 401,
            code,
            message,
        },
        401 => IntercomError::Unauthorized {
            endpoint,
            code: if code.is_empty() {
                "unauthorized".into()
            } else {
                code
            },
        },
        403 if message.to_ascii_lowercase().contains(IP_ALLOWLIST_MARKER) => {
            IntercomError::IpNotAllowed { endpoint }
        }
        403 if code == "api_plan_restricted" => IntercomError::PlanRestricted { endpoint, message },
        403 => IntercomError::NotPermitted {
            endpoint,
            status: 403,
            code: if code.is_empty() {
                "forbidden".into()
            } else {
                code
            },
            message,
        },
        s @ 300..=399 => IntercomError::Redirect {
            endpoint,
            status: s,
            location: redirect_target(headers),
        },
        429 => IntercomError::RateLimited {
            endpoint,
            reset: rate_limit_reset(headers).unwrap_or(DEFAULT_RATE_LIMIT_RESET),
        },
        s if s >= 500 => IntercomError::Transient {
            endpoint,
            reason: format!("HTTP {s}"),
        },
        s => IntercomError::Unexpected {
            endpoint,
            status: s,
            code,
            message,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::intercom::models::AdminList;

    fn fixture(name: &str) -> Vec<u8> {
        std::fs::read(format!(
            "{}/tests/fixtures/intercom/{name}",
            env!("CARGO_MANIFEST_DIR")
        ))
        .unwrap()
    }

    #[test]
    fn classifies_fixture_errors() {
        let h = HeaderMap::new();
        let c = |status: u16, f: &str| {
            classify("/x", StatusCode::from_u16(status).unwrap(), &h, &fixture(f))
        };
        assert!(matches!(
            c(401, "error_401_unauthorized.json"),
            IntercomError::Unauthorized { .. }
        ));
        assert!(matches!(
            c(401, "error_401_token_unauthorized.json"),
            IntercomError::NotPermitted { status: 401, .. }
        ));
        assert!(matches!(
            c(403, "error_403_forbidden_scope.json"),
            IntercomError::NotPermitted { status: 403, .. }
        ));
        assert!(matches!(
            c(403, "error_403_api_plan_restricted.json"),
            IntercomError::PlanRestricted { .. }
        ));
        assert!(matches!(
            c(429, "error_429_rate_limited.json"),
            IntercomError::RateLimited { .. }
        ));
        let ip = br#"{"type":"error.list","errors":[{"code":"forbidden","message":"Your IP address is not on the allowlist for API access"}]}"#;
        assert!(matches!(
            classify("/me", StatusCode::FORBIDDEN, &h, ip),
            IntercomError::IpNotAllowed { .. }
        ));
        assert!(matches!(
            classify("/me", StatusCode::BAD_GATEWAY, &h, b"<html>"),
            IntercomError::Transient { .. }
        ));
        assert!(matches!(
            classify("/me", StatusCode::UNAUTHORIZED, &h, b""),
            IntercomError::Unauthorized { .. }
        ));
    }

    #[test]
    fn a_429_without_headers_waits_one_window() {
        match classify("/me", StatusCode::TOO_MANY_REQUESTS, &HeaderMap::new(), b"") {
            IntercomError::RateLimited { reset, .. } => assert_eq!(reset, DEFAULT_RATE_LIMIT_RESET),
            other => panic!("{other:?}"),
        }
    }

    /// The byte-at-a-time scan `longest_string` replaced, as the oracle.
    fn longest_string_bytewise(body: &[u8]) -> usize {
        let (mut longest, mut start, mut in_string, mut escaped) = (0, 0, false, false);
        for (i, &b) in body.iter().enumerate() {
            if !in_string {
                if b == b'"' {
                    in_string = true;
                    start = i + 1;
                }
            } else if escaped {
                escaped = false;
            } else if b == b'\\' {
                escaped = true;
            } else if b == b'"' {
                in_string = false;
                longest = longest.max(i - start);
            }
        }
        if in_string {
            longest = longest.max(body.len() - start);
        }
        longest
    }

    proptest::proptest! {
        #[test]
        fn longest_string_matches_the_bytewise_scan(
            body in proptest::collection::vec(
                proptest::prop_oneof![proptest::strategy::Just(b'"'), proptest::strategy::Just(b'\\'), proptest::strategy::Just(b'a'), proptest::strategy::Just(b'{'), proptest::num::u8::ANY],
                0..64,
            )
        ) {
            proptest::prop_assert_eq!(longest_string(&body), longest_string_bytewise(&body));
        }
    }

    #[test]
    fn longest_string_counts_escapes_as_written_and_open_strings_to_the_end() {
        assert_eq!(longest_string(br#"{"a":"xyz","b":"\"q\"\\"}"#), 7);
        assert_eq!(longest_string(br#"{"a":"abc"#), 3);
        assert_eq!(longest_string(b"\"ab\\"), 3);
        assert_eq!(longest_string(b""), 0);
    }

    #[test]
    fn decode_error_names_the_failing_field() {
        let e = decode::<AdminList>(
            "/admins",
            br#"{"admins":[{"id":"1","has_inbox_seat":"yes"}]}"#,
        )
        .unwrap_err();
        match e {
            IntercomError::Decode { path, .. } => assert_eq!(path, "admins[0].has_inbox_seat"),
            other => panic!("{other:?}"),
        }
    }
}
