//! The Intercom HTTP client: one shared `reqwest::Client`; a `Session` per scan holds the
//! token, the region's origin and the call counter.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use reqwest::header::{HeaderMap, HeaderValue, ACCEPT, AUTHORIZATION};
use reqwest::StatusCode;
use secrecy::{ExposeSecret, SecretString};
use serde::de::DeserializeOwned;
use url::Url;

use super::error::IntercomError;
use super::models::{Admin, AdminList, ErrorList, Me};
use crate::config::IntercomSettings;
use crate::region::Region;

/// Shared by every scan: connection pools, TLS sessions and settings.
#[derive(Clone)]
pub struct IntercomClient {
    http: reqwest::Client,
    settings: Arc<IntercomSettings>,
}

impl std::fmt::Debug for IntercomClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IntercomClient").finish_non_exhaustive()
    }
}

#[derive(Debug, thiserror::Error)]
#[error("cannot build the HTTP client: {0}")]
pub struct ClientBuildError(String);

impl IntercomClient {
    pub fn new(settings: &IntercomSettings) -> Result<Self, ClientBuildError> {
        let http = reqwest::Client::builder()
            .user_agent(crate::USER_AGENT)
            .connect_timeout(settings.connect_timeout)
            .timeout(settings.request_timeout)
            .gzip(true)
            // Never follow redirects: reqwest would strip Authorization on a cross-host hop,
            // but the API has no reason to redirect at all, so a redirect is reported instead.
            .redirect(reqwest::redirect::Policy::none())
            .pool_idle_timeout(Duration::from_secs(90))
            .build()
            .map_err(|e| ClientBuildError(e.to_string()))?;
        Ok(Self {
            http,
            settings: Arc::new(settings.clone()),
        })
    }

    pub fn settings(&self) -> &IntercomSettings {
        &self.settings
    }

    /// A session for one scan (or one onboarding check) of one workspace.
    pub fn session(&self, region: Region, token: SecretString) -> Session {
        Session {
            client: self.clone(),
            region,
            base: self.settings.base_url.url(region),
            token,
            calls: Arc::new(AtomicU32::new(0)),
        }
    }
}

/// Requests on behalf of one token in one region.
pub struct Session {
    client: IntercomClient,
    region: Region,
    base: Url,
    token: SecretString,
    calls: Arc<AtomicU32>,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("region", &self.region)
            .field("base", &self.base.as_str())
            .finish_non_exhaustive()
    }
}

impl Session {
    pub fn region(&self) -> Region {
        self.region
    }

    /// HTTP requests made so far (retries included).
    pub fn api_calls(&self) -> u32 {
        self.calls.load(Ordering::Relaxed)
    }

    pub async fn me(&self) -> Result<Me, IntercomError> {
        self.get_json("/me", &[]).await
    }

    pub async fn admins(&self) -> Result<Vec<Admin>, IntercomError> {
        let list: AdminList = self.get_json("/admins", &[]).await?;
        Ok(list.into_admins())
    }

    fn endpoint_url(&self, path: &str, query: &[(&str, String)]) -> Url {
        let mut url = self.base.clone();
        let joined = format!("{}{}", url.path().trim_end_matches('/'), path);
        url.set_path(&joined);
        if !query.is_empty() {
            url.query_pairs_mut()
                .extend_pairs(query.iter().map(|(k, v)| (*k, v.as_str())));
        }
        url
    }

    async fn get_json<T: DeserializeOwned>(
        &self,
        path: &str,
        query: &[(&str, String)],
    ) -> Result<T, IntercomError> {
        let url = self.endpoint_url(path, query);
        let body = self.get_bytes(path, url).await?;
        decode(path, &body)
    }

    fn headers(&self) -> HeaderMap {
        let mut headers = HeaderMap::new();
        let mut auth = HeaderValue::from_str(&format!("Bearer {}", self.token.expose_secret()))
            .unwrap_or_else(|_| HeaderValue::from_static("Bearer invalid"));
        auth.set_sensitive(true);
        headers.insert(AUTHORIZATION, auth);
        headers.insert(ACCEPT, HeaderValue::from_static("application/json"));
        if let Ok(v) = HeaderValue::from_str(&self.client.settings.api_version) {
            headers.insert("Intercom-Version", v);
        }
        headers
    }

    /// One GET with the body read up to the configured cap.
    async fn get_bytes(&self, endpoint: &str, url: Url) -> Result<Vec<u8>, IntercomError> {
        self.calls.fetch_add(1, Ordering::Relaxed);
        let response = self
            .client
            .http
            .get(url)
            .headers(self.headers())
            .send()
            .await
            .map_err(|e| transient(endpoint, &e))?;
        let status = response.status();
        let headers = response.headers().clone();
        let body = read_capped(endpoint, response, self.client.settings.max_body_bytes).await?;
        if status.is_success() {
            return Ok(body);
        }
        Err(classify(endpoint, status, &headers, &body))
    }
}

fn transient(endpoint: &str, e: &reqwest::Error) -> IntercomError {
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

async fn read_capped(
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

pub(crate) fn decode<T: DeserializeOwned>(endpoint: &str, body: &[u8]) -> Result<T, IntercomError> {
    let de = &mut serde_json::Deserializer::from_slice(body);
    serde_path_to_error::deserialize(de).map_err(|e| IntercomError::Decode {
        endpoint: endpoint.to_string(),
        path: e.path().to_string(),
        reason: e.inner().to_string(),
    })
}

const IP_ALLOWLIST_MARKER: &str = "not on the allowlist";
const DEFAULT_RATE_LIMIT_RESET: Duration = Duration::from_secs(10);

/// Maps a non-2xx response to its error class (see API.md §4.2 and §5).
pub(crate) fn classify(
    endpoint: &str,
    status: StatusCode,
    headers: &HeaderMap,
    body: &[u8],
) -> IntercomError {
    let errors: ErrorList = serde_json::from_slice(body).unwrap_or_default();
    let code = errors.first_code().unwrap_or("").to_string();
    let message = errors
        .first_message()
        .map(|m| m.chars().take(300).collect::<String>())
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

/// `Retry-After` (seconds) or `X-RateLimit-Reset` (Unix seconds) as a wait from now.
pub(crate) fn rate_limit_reset(headers: &HeaderMap) -> Option<Duration> {
    let header_u64 = |name: &str| headers.get(name)?.to_str().ok()?.trim().parse::<u64>().ok();
    if let Some(secs) = header_u64("retry-after") {
        return Some(Duration::from_secs(secs));
    }
    let reset = header_u64("x-ratelimit-reset")?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .ok()?
        .as_secs();
    Some(Duration::from_secs(reset.saturating_sub(now).max(1)))
}

#[cfg(test)]
mod tests {
    use super::*;

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

    #[test]
    fn retry_after_beats_reset_header() {
        let mut h = HeaderMap::new();
        h.insert("retry-after", HeaderValue::from_static("7"));
        h.insert("x-ratelimit-reset", HeaderValue::from_static("1"));
        assert_eq!(rate_limit_reset(&h), Some(Duration::from_secs(7)));
    }
}
