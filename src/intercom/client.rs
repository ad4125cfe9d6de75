//! The Intercom HTTP client: one shared `reqwest::Client`; a `Session` per scan holds the
//! token, the region's origin, the time budget, pacing state and counters.
//!
//! Every request goes through `Session::get`, which owns the policy: pacing before sending,
//! retries with backoff for transient failures, waiting out short 429s, and the budget.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use reqwest::header::{HeaderMap, HeaderValue, ACCEPT, AUTHORIZATION};
use secrecy::{ExposeSecret, SecretString};
use serde::de::DeserializeOwned;
use url::Url;

use super::error::IntercomError;
use super::models::{Admin, AdminList, Me};
use super::pacing::Pacer;
use super::pagination::{ActivityLogPager, ACTIVITY_LOGS};
use super::probe::{valid_probe_path, ProbeOutcome};
use super::response::{classify, decode, read_capped, transient};
use super::retry::{backoff, wait_jitter, Budget};
use crate::config::IntercomSettings;
use crate::metrics::RequestKind;
use crate::region::Region;

/// Error bodies are a few hundred bytes; more than this is not an Intercom error document.
const ERROR_BODY_CAP: u64 = 64 * 1024;

/// Shared by every scan: connection pools, TLS sessions and settings.
#[derive(Clone)]
pub struct IntercomClient {
    http: reqwest::Client,
    settings: Arc<IntercomSettings>,
    on_retry: Option<RetryObserver>,
}

/// Told about every retry before its pause (the CLI prints progress with it).
pub type RetryObserver = Arc<dyn Fn(&RetryNotice) + Send + Sync>;

/// One retry about to happen: what failed, how long the pause is, which attempt is next.
#[derive(Debug, Clone)]
pub struct RetryNotice {
    pub endpoint: String,
    /// Why the last attempt failed, e.g. "HTTP 503 Service Unavailable" or "cannot connect".
    pub reason: String,
    pub delay: Duration,
    /// The attempt about to be made, counting the first request as 1.
    pub next_attempt: u32,
    /// How many attempts there will be at most (`intercom.max_retries` + 1).
    pub attempts: u32,
}

impl std::fmt::Display for RetryNotice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let answered = match self.reason.strip_prefix("HTTP ") {
            Some(status) => format!("Intercom answered {status}"),
            None => format!("Intercom: {}", self.reason),
        };
        let pause = if self.delay < Duration::from_secs(1) {
            format!("{} ms", self.delay.as_millis())
        } else {
            format!("{:.1} s", self.delay.as_secs_f64())
        };
        write!(
            f,
            "{answered} on {}, retrying in {pause} (attempt {} of {})",
            self.endpoint, self.next_attempt, self.attempts
        )
    }
}

impl std::fmt::Debug for IntercomClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IntercomClient").finish_non_exhaustive()
    }
}

#[derive(Debug, thiserror::Error)]
#[error("cannot build the HTTP client")]
pub struct ClientBuildError(#[source] reqwest::Error);

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
            .map_err(ClientBuildError)?;
        Ok(Self {
            http,
            settings: Arc::new(settings.clone()),
            on_retry: None,
        })
    }

    /// The same client, telling `observer` about each retry of its sessions.
    pub fn with_retry_observer(mut self, observer: RetryObserver) -> Self {
        self.on_retry = Some(observer);
        self
    }

    pub fn settings(&self) -> &IntercomSettings {
        &self.settings
    }

    /// A session for one scan (or one onboarding check) of one workspace. Its time budget
    /// (`intercom.scan_timeout`) starts now.
    pub fn session(&self, region: Region, token: SecretString) -> Session {
        Session {
            inner: Arc::new(SessionInner {
                client: self.clone(),
                region,
                base: self.settings.base_url.url(region),
                token,
                budget: Budget::starting_now(self.settings.scan_timeout),
                pacer: Pacer::default(),
                calls: AtomicU32::new(0),
                retries: AtomicU32::new(0),
                rate_limited: AtomicU32::new(0),
            }),
        }
    }
}

/// Requests on behalf of one token in one region. Cloning is cheap and yields the same
/// session (shared budget, pacing and counters), which is how a pager keeps using it.
#[derive(Clone)]
pub struct Session {
    inner: Arc<SessionInner>,
}

struct SessionInner {
    client: IntercomClient,
    region: Region,
    base: Url,
    token: SecretString,
    budget: Budget,
    pacer: Pacer,
    calls: AtomicU32,
    retries: AtomicU32,
    rate_limited: AtomicU32,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("region", &self.inner.region)
            .field("base", &self.inner.base.as_str())
            .finish_non_exhaustive()
    }
}

impl Session {
    pub fn region(&self) -> Region {
        self.inner.region
    }

    /// HTTP requests made so far (retries, rate-limited attempts and pages included).
    pub fn api_calls(&self) -> u32 {
        self.inner.calls.load(Ordering::Relaxed)
    }

    /// Requests repeated after a transient failure.
    pub fn retry_count(&self) -> u32 {
        self.inner.retries.load(Ordering::Relaxed)
    }

    /// 429 responses received (waited out or returned).
    pub fn rate_limited_count(&self) -> u32 {
        self.inner.rate_limited.load(Ordering::Relaxed)
    }

    /// When the session's time budget runs out.
    pub fn deadline(&self) -> tokio::time::Instant {
        self.inner.budget.deadline()
    }

    pub(crate) fn settings(&self) -> &IntercomSettings {
        &self.inner.client.settings
    }

    /// The configured regional base URL: the only origin the token is ever sent to.
    pub(crate) fn base(&self) -> &Url {
        &self.inner.base
    }

    pub async fn me(&self) -> Result<Me, IntercomError> {
        self.get_json("/me", &[]).await
    }

    pub async fn admins(&self) -> Result<Vec<Admin>, IntercomError> {
        let list: AdminList = self.get_json("/admins", &[]).await?;
        Ok(list.into_admins())
    }

    /// The activity log between two Unix timestamps (seconds), newest first, page by page.
    pub fn activity_logs(&self, created_at_after: i64, created_at_before: i64) -> ActivityLogPager {
        let first = self.endpoint_url(
            ACTIVITY_LOGS,
            &[
                ("created_at_after", created_at_after.to_string()),
                ("created_at_before", created_at_before.to_string()),
                ("per_page", self.settings().activity_page_size.to_string()),
            ],
        );
        ActivityLogPager::new(self.clone(), first)
    }

    /// Whether the token may call `endpoint` (e.g. `/tags`, `/ip_allowlist`, `/teams`).
    pub async fn probe(&self, endpoint: &str) -> Result<ProbeOutcome, IntercomError> {
        if !valid_probe_path(endpoint) {
            return Err(IntercomError::InvalidEndpoint {
                endpoint: endpoint.chars().take(100).collect(),
            });
        }
        let url = self.endpoint_url(endpoint, &[]);
        let result = self
            .get_unscrubbed(endpoint, url, RequestKind::Probe)
            .await
            .map_err(|e| self.scrub(e));
        ProbeOutcome::from_result(result)
    }

    fn endpoint_url(&self, path: &str, query: &[(&str, String)]) -> Url {
        let mut url = self.inner.base.clone();
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
        let body = self.get(path, url).await?;
        decode(path, &body).map_err(|e| self.scrub(e))
    }

    /// Takes the token out of an error built from what the server sent (see
    /// `IntercomError::sanitized`). Every error leaving the session passes through here.
    pub(crate) fn scrub(&self, e: IntercomError) -> IntercomError {
        e.sanitized(self.inner.token.expose_secret())
    }

    fn headers(&self) -> HeaderMap {
        let mut headers = HeaderMap::new();
        let mut auth =
            HeaderValue::from_str(&format!("Bearer {}", self.inner.token.expose_secret()))
                .unwrap_or_else(|_| HeaderValue::from_static("Bearer invalid"));
        auth.set_sensitive(true);
        headers.insert(AUTHORIZATION, auth);
        headers.insert(ACCEPT, HeaderValue::from_static("application/json"));
        if let Ok(v) = HeaderValue::from_str(&self.settings().api_version) {
            headers.insert("Intercom-Version", v);
        }
        headers
    }

    /// One logical GET: pacing, the request, and the retry/429 policy, all within budget.
    /// `url` must already be on the configured origin (callers build it from `base` or have
    /// checked it with `check_same_origin`).
    pub(crate) async fn get(&self, endpoint: &str, url: Url) -> Result<Vec<u8>, IntercomError> {
        self.get_unscrubbed(endpoint, url, RequestKind::Api)
            .await
            .map_err(|e| self.scrub(e))
    }

    async fn get_unscrubbed(
        &self,
        endpoint: &str,
        url: Url,
        kind: RequestKind,
    ) -> Result<Vec<u8>, IntercomError> {
        let inner = &*self.inner;
        let settings = self.settings();
        let mut attempt: u32 = 0;
        loop {
            self.pace().await;
            let left = inner.budget.remaining()?;
            inner.calls.fetch_add(1, Ordering::Relaxed);
            let result = tokio::time::timeout(left, self.send_once(endpoint, url.clone(), kind))
                .await
                .map_err(|_| inner.budget.exhausted())?;
            match result {
                Ok(body) => return Ok(body),
                // A 429 is the API asking us to slow down, not a failure: wait it out when
                // the wait is short and affordable, without spending a retry.
                Err(IntercomError::RateLimited { endpoint, reset }) => {
                    inner.rate_limited.fetch_add(1, Ordering::Relaxed);
                    let wait = reset + wait_jitter(reset);
                    if reset > settings.max_rate_limit_wait || !inner.budget.allows(wait) {
                        return Err(IntercomError::RateLimited { endpoint, reset });
                    }
                    tracing::debug!(endpoint, ?wait, "rate limited; waiting for the window");
                    tokio::time::sleep(wait).await;
                }
                Err(e @ IntercomError::Transient { .. }) => {
                    if attempt >= settings.max_retries {
                        return Err(e);
                    }
                    let delay = backoff(settings.retry_base_delay, attempt);
                    if !inner.budget.allows(delay) {
                        return Err(e);
                    }
                    attempt += 1;
                    inner.retries.fetch_add(1, Ordering::Relaxed);
                    tracing::debug!(endpoint, attempt, ?delay, error = %e, "retrying");
                    if let (Some(observe), IntercomError::Transient { reason, .. }) =
                        (&inner.client.on_retry, &e)
                    {
                        observe(&RetryNotice {
                            endpoint: endpoint.to_string(),
                            reason: reason.clone(),
                            delay,
                            next_attempt: attempt + 1,
                            attempts: settings.max_retries + 1,
                        });
                    }
                    tokio::time::sleep(delay).await;
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Sleeps until the rate-limit window resets when the last response said the budget is
    /// nearly spent, if that wait is short enough to be worth it (otherwise the request goes
    /// ahead and a real 429, if any, is handled as such).
    async fn pace(&self) {
        let Some(pause) = self.inner.pacer.take_pause(SystemTime::now()) else {
            return;
        };
        if pause <= self.settings().max_rate_limit_wait && self.inner.budget.allows(pause) {
            tracing::debug!(
                ?pause,
                "rate-limit budget low; pausing until the window resets"
            );
            tokio::time::sleep(pause).await;
        }
    }

    /// Exactly one HTTP request, its body read up to the cap.
    async fn send_once(
        &self,
        endpoint: &str,
        url: Url,
        kind: RequestKind,
    ) -> Result<Vec<u8>, IntercomError> {
        let response = self
            .inner
            .client
            .http
            .get(url)
            .headers(self.headers())
            .send()
            .await
            .map_err(|e| {
                // A hanging host: say how long was waited and which setting decides it.
                if e.is_timeout() {
                    IntercomError::Transient {
                        endpoint: endpoint.to_string(),
                        reason: format!(
                            "timed out after {} s (intercom.request_timeout)",
                            self.settings().request_timeout.as_secs_f64()
                        ),
                    }
                } else {
                    transient(endpoint, &e)
                }
            })?;
        let status = response.status();
        crate::metrics::intercom_response(self.inner.region, status.as_u16(), kind);
        let headers = response.headers().clone();
        self.inner.pacer.observe(&headers);
        let cap = self.settings().max_body_bytes;
        if status.is_success() {
            return read_capped(endpoint, response, cap).await;
        }
        // An error body only serves classification: read a little of it, and let a huge or
        // broken one degrade to "no body" so the status still decides (a 503 stays Transient).
        let body = read_capped(endpoint, response, cap.min(ERROR_BODY_CAP))
            .await
            .unwrap_or_default();
        Err(classify(endpoint, status, &headers, &body))
    }
}

#[cfg(test)]
mod retry_notice_tests {
    use super::*;

    #[test]
    fn a_retry_reads_as_progress() {
        let notice = |reason: &str, delay| RetryNotice {
            endpoint: "/me".into(),
            reason: reason.into(),
            delay,
            next_attempt: 2,
            attempts: 4,
        };
        assert_eq!(
            notice("HTTP 503", Duration::from_secs(2)).to_string(),
            "Intercom answered 503 on /me, retrying in 2.0 s (attempt 2 of 4)"
        );
        assert_eq!(
            notice("cannot connect", Duration::from_millis(250)).to_string(),
            "Intercom: cannot connect on /me, retrying in 250 ms (attempt 2 of 4)"
        );
    }
}
