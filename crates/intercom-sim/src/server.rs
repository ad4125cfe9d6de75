//! The HTTP side: one axum fallback handler that routes by region prefix and runs every
//! request through the same pipeline: authenticate, count, inject faults, check scope,
//! render, corrupt (if asked), add rate-limit headers.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::Response;
use axum::Router;
use futures_util::StreamExt as _;
use serde_json::Value;

use super::faults::{ActiveFaults, Interrupt, Malformed};
use super::render::{self, LogQuery, NextOverride, Position};
use super::scenario::{scopes, RateLimitSpec, Refusal, TokenSpec, Workspace};
use super::state::{unix_now, RateStatus, SimState, TokenEntry};
use crate::Region;

pub(crate) struct AppState {
    pub sim: Arc<SimState>,
    pub local: SocketAddr,
}

pub(crate) fn router(state: Arc<AppState>) -> Router {
    Router::new().fallback(handle).with_state(state)
}

/// The endpoints served under each region prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Endpoint {
    Me,
    Admins,
    /// `GET /admins/{admin_id}`; the id is taken from the path again by the handler.
    Admin,
    ActivityLogs,
    Tags,
    IpAllowlist,
    Teams,
}

impl Endpoint {
    fn parse(path: &str) -> Option<Self> {
        Some(match path.trim_end_matches('/') {
            "/me" => Endpoint::Me,
            "/admins" => Endpoint::Admins,
            "/admins/activity_logs" => Endpoint::ActivityLogs,
            "/tags" => Endpoint::Tags,
            "/ip_allowlist" => Endpoint::IpAllowlist,
            "/teams" => Endpoint::Teams,
            other => {
                let id = other.strip_prefix("/admins/")?;
                if id.is_empty() || id.contains('/') {
                    return None;
                }
                Endpoint::Admin
            }
        })
    }

    fn path(self) -> &'static str {
        match self {
            Endpoint::Me => "/me",
            Endpoint::Admins => "/admins",
            Endpoint::Admin => "/admins/{admin_id}",
            Endpoint::ActivityLogs => "/admins/activity_logs",
            Endpoint::Tags => "/tags",
            Endpoint::IpAllowlist => "/ip_allowlist",
            Endpoint::Teams => "/teams",
        }
    }

    fn scope(self) -> &'static str {
        match self {
            Endpoint::Me | Endpoint::Admins | Endpoint::Admin => scopes::READ_ADMINS,
            Endpoint::ActivityLogs => scopes::READ_ADMIN_ACTIVITY_LOGS,
            Endpoint::Tags => scopes::READ_TAGS,
            Endpoint::IpAllowlist => scopes::MANAGE_IP_ALLOWLIST,
            Endpoint::Teams => scopes::READ_TEAMS,
        }
    }
}

fn split_region(path: &str) -> Option<(Region, &str)> {
    let rest = path.strip_prefix('/')?;
    let (prefix, tail) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let region = match prefix {
        "us" => Region::Us,
        "eu" => Region::Eu,
        "au" => Region::Au,
        _ => return None,
    };
    Some((region, tail))
}

fn json(status: StatusCode, body: Vec<u8>) -> Response {
    let mut response = Response::new(Body::from(body));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json; charset=utf-8"),
    );
    response
}

fn error(sim: &SimState, status: StatusCode, code: &str, message: &str) -> Response {
    json(
        status,
        render::error_body(Some(&sim.request_id()), code, message),
    )
}

fn unauthorized(sim: &SimState) -> Response {
    error(
        sim,
        StatusCode::UNAUTHORIZED,
        "unauthorized",
        "Access Token Invalid",
    )
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|t| !t.is_empty())
}

/// The `Intercom-Version` values the API accepts: `components.schemas.intercom_version` of
/// the 2.16 description (1.0-1.4, 2.0-2.16), plus `Preview` and its predecessor `Unstable`.
fn version_known(v: &str) -> bool {
    const VERSIONS: [&str; 22] = [
        "1.0", "1.1", "1.2", "1.3", "1.4", "2.0", "2.1", "2.2", "2.3", "2.4", "2.5", "2.6", "2.7",
        "2.8", "2.9", "2.10", "2.11", "2.12", "2.13", "2.14", "2.15", "2.16",
    ];
    let v = v.trim();
    v.eq_ignore_ascii_case("preview") || v.eq_ignore_ascii_case("unstable") || VERSIONS.contains(&v)
}

/// The requested version when it is not one the API knows (an absent header means the app's
/// default and is fine).
fn unknown_version(headers: &HeaderMap) -> Option<String> {
    let v = headers.get("intercom-version")?;
    let text = v.to_str().unwrap_or("");
    (!version_known(text)).then(|| text.chars().take(32).collect())
}

/// `Accept` allows JSON: absent (tolerated; unverified whether the API insists), or a media
/// range covering `application/json`.
fn accepts_json(headers: &HeaderMap) -> bool {
    let values: Vec<&str> = headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect();
    values.is_empty()
        || values.iter().flat_map(|v| v.split(',')).any(|range| {
            let media = range.split(';').next().unwrap_or("").trim();
            media.eq_ignore_ascii_case("application/json")
                || media.eq_ignore_ascii_case("application/*")
                || media == "*/*"
        })
}

/// `admin.role` exists from API 2.16 on; no header means the app's default (2.16 here).
fn version_has_roles(headers: &HeaderMap) -> bool {
    let Some(v) = headers
        .get("intercom-version")
        .and_then(|v| v.to_str().ok())
    else {
        return true;
    };
    let v = v.trim();
    if v.eq_ignore_ascii_case("preview") || v.eq_ignore_ascii_case("unstable") {
        return true;
    }
    let mut parts = v.split('.').map(|p| p.parse::<u32>().ok());
    match (parts.next().flatten(), parts.next().flatten()) {
        (Some(major), Some(minor)) => (major, minor) >= (2, 16),
        _ => true,
    }
}

/// Sleeps, but gives up (and says so) when the simulator shuts down, so a hung request never
/// holds up `Simulator::shutdown`.
async fn pause(sim: &SimState, d: Duration) -> bool {
    tokio::select! {
        _ = tokio::time::sleep(d) => true,
        _ = sim.shutdown.cancelled() => false,
    }
}

fn shutting_down(sim: &SimState) -> Response {
    error(
        sim,
        StatusCode::SERVICE_UNAVAILABLE,
        "service_unavailable",
        "Simulator shutting down",
    )
}

async fn handle(State(app): State<Arc<AppState>>, request: Request) -> Response {
    // GET requests carry no body; only the head is needed (and, unlike the body, it is Sync).
    let (request, _body) = request.into_parts();
    let sim = &*app.sim;
    sim.requests.fetch_add(1, Ordering::Relaxed);
    let Some((region, tail)) = split_region(request.uri.path()) else {
        return error(
            sim,
            StatusCode::NOT_FOUND,
            "not_found",
            "Resource Not Found (the simulator serves /us, /eu and /au)",
        );
    };
    let headers = &request.headers;
    // Authentication first, as the API does: an unknown token, or a token of a workspace in
    // another region (what a wrong regional host looks like), is the same 401.
    let Some(token_value) = bearer(headers) else {
        return unauthorized(sim);
    };
    let Some(entry) = sim.lookup(token_value) else {
        return unauthorized(sim);
    };
    let ws = entry.workspace.data();
    let Some(token) = ws.tokens.iter().find(|t| t.token == token_value) else {
        return unauthorized(sim);
    };
    if ws.region != region {
        return unauthorized(sim);
    }
    let rate = entry.workspace.count_request(ws.rate_limit, unix_now());
    let cx = Ctx {
        app: &app,
        ws: &ws,
        token,
        entry: &entry,
        region,
        tail,
        request: &request,
        rate,
    };
    let mut response = authenticated(cx).await;
    let status = response.status();
    if status == StatusCode::TOO_MANY_REQUESTS {
        sim.served_429.fetch_add(1, Ordering::Relaxed);
    } else if response.extensions().get::<NotAuthenticated>().is_none() {
        // Intercom sends the headers on authenticated responses only.
        set_rate_headers(
            response.headers_mut(),
            rate.limit,
            rate.remaining,
            rate.reset,
        );
    }
    response
}

/// Marks a response to a token that turned out not to be valid (revoked): no rate headers.
#[derive(Debug, Clone, Copy)]
struct NotAuthenticated;

/// Everything known about an authenticated request.
struct Ctx<'a> {
    app: &'a AppState,
    ws: &'a Workspace,
    token: &'a TokenSpec,
    entry: &'a TokenEntry,
    region: Region,
    /// The path after the region prefix.
    tail: &'a str,
    request: &'a Parts,
    rate: RateStatus,
}

fn set_rate_headers(h: &mut HeaderMap, limit: u32, remaining: u32, reset: u64) {
    h.insert("x-ratelimit-limit", HeaderValue::from(limit));
    h.insert("x-ratelimit-remaining", HeaderValue::from(remaining));
    h.insert("x-ratelimit-reset", HeaderValue::from(reset));
}

fn too_many(
    sim: &SimState,
    window: RateLimitSpec,
    reset: u64,
    retry_after: Option<u64>,
) -> Response {
    let limit = window.limit;
    let mut r = error(
        sim,
        StatusCode::TOO_MANY_REQUESTS,
        "rate_limit_exceeded",
        &format!(
            "Exceeded rate limit of {limit} in {}_seconds",
            window.window_secs
        ),
    );
    set_rate_headers(r.headers_mut(), limit, 0, reset);
    if let Some(secs) = retry_after {
        r.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(secs));
    }
    r
}

async fn authenticated(cx: Ctx<'_>) -> Response {
    let Ctx {
        app,
        ws,
        token,
        entry,
        region,
        tail,
        request,
        rate,
    } = cx;
    let sim = &*app.sim;
    let endpoint = Endpoint::parse(tail);
    let endpoint_path = endpoint.map_or(tail, |e| e.path());

    // Token faults first, then the workspace's.
    let in_force: Vec<Arc<ActiveFaults>> = [entry.runtime.faults(), entry.workspace.faults()]
        .into_iter()
        .flatten()
        .collect();
    // Revocation counts every call of the token, whatever the endpoint.
    let calls = entry.runtime.count_call();
    let revoke_after = in_force
        .iter()
        .filter_map(|f| f.spec().revoke_after_calls)
        .min();
    if revoke_after.is_some_and(|n| calls > n) {
        entry.runtime.revoke();
    }
    if token.revoked || entry.runtime.is_revoked() {
        let mut r = error(
            sim,
            StatusCode::UNAUTHORIZED,
            "token_revoked",
            "The token or API Key has been revoked",
        );
        r.extensions_mut().insert(NotAuthenticated);
        return r;
    }

    let faults: Vec<&Arc<ActiveFaults>> = in_force
        .iter()
        .filter(|f| f.spec().applies_to(endpoint_path))
        .collect();
    for f in &faults {
        let spec = f.spec();
        if spec.latency_ms > 0 && !pause(sim, Duration::from_millis(spec.latency_ms)).await {
            return shutting_down(sim);
        }
        if let Some(ms) = spec.hang_ms {
            if !pause(sim, Duration::from_millis(ms)).await {
                return shutting_down(sim);
            }
        }
    }
    for f in &faults {
        match f.interrupt() {
            None => {}
            Some(Interrupt::IpNotAllowed) => {
                return error(
                    sim,
                    StatusCode::FORBIDDEN,
                    "forbidden",
                    "Your IP address is not on the allowlist for API access",
                )
            }
            Some(Interrupt::RateLimited {
                reset_after_secs,
                retry_after_secs,
            }) => {
                return too_many(
                    sim,
                    ws.rate_limit,
                    unix_now() + reset_after_secs,
                    retry_after_secs,
                )
            }
            Some(Interrupt::ServerError(status)) => {
                let status =
                    StatusCode::from_u16(status).unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
                return error(sim, status, "server_error", "Simulated server error");
            }
        }
    }
    if rate.exceeded {
        return too_many(sim, ws.rate_limit, rate.reset, None);
    }

    let Some(endpoint) = endpoint else {
        return error(
            sim,
            StatusCode::NOT_FOUND,
            "not_found",
            "Resource Not Found",
        );
    };
    if request.method != Method::GET {
        return error(
            sim,
            StatusCode::NOT_FOUND,
            "not_found",
            "Resource Not Found",
        );
    }
    if !accepts_json(&request.headers) {
        // 406 per the developer docs' HTTP-responses page; the body's code is unverified.
        return error(
            sim,
            StatusCode::NOT_ACCEPTABLE,
            "not_acceptable",
            "The Accept header must allow application/json",
        );
    }
    if unknown_version(&request.headers).is_some() {
        return error(
            sim,
            StatusCode::BAD_REQUEST,
            "intercom_version_invalid",
            "Requested resource is not available in current API version.",
        );
    }
    if !token.has_scope(endpoint.scope()) {
        return refusal(sim, token.refusal.unwrap_or(ws.refusal), endpoint.scope());
    }

    let query = request.uri.query().unwrap_or("");
    let body = match endpoint {
        Endpoint::Me => render::me(ws, render::token_owner(ws, token)),
        Endpoint::Admins => {
            let display_avatar = query_param(query, "display_avatar").as_deref() == Some("true");
            render::admins(ws, display_avatar, version_has_roles(&request.headers))
        }
        Endpoint::Admin => {
            let id = tail.trim_end_matches('/').trim_start_matches("/admins/");
            match ws.admins.iter().find(|a| a.id == id) {
                Some(a) => render::admin(a, version_has_roles(&request.headers)),
                None => {
                    return error(
                        sim,
                        StatusCode::NOT_FOUND,
                        "admin_not_found",
                        "Admin not found",
                    )
                }
            }
        }
        Endpoint::ActivityLogs => {
            let q = match parse_log_query(ws, query) {
                Ok(q) => q,
                Err(e) => return e.response(sim),
            };
            let host = host_of(&request.headers, app.local);
            let base = format!("http://{host}/{region}{}", endpoint.path());
            let self_url = match query {
                "" => base.clone(),
                q => format!("{base}?{q}"),
            };
            let next_override = faults
                .iter()
                .find_map(|f| {
                    let s = f.spec();
                    s.foreign_next_url
                        .as_deref()
                        .map(NextOverride::Foreign)
                        .or(s.next_loop.then_some(NextOverride::Loop))
                })
                .unwrap_or(NextOverride::None);
            render::activity_page(ws, &q, &base, &self_url, next_override)
        }
        Endpoint::Tags => render::tags(ws),
        Endpoint::IpAllowlist => render::ip_allowlist(ws),
        Endpoint::Teams => render::teams(ws),
    };

    for f in &faults {
        let spec = f.spec();
        if let Some(bytes) = spec.oversized_body {
            return oversized(bytes);
        }
        if let Some(kind) = spec.malformed_json {
            return json(StatusCode::OK, corrupt(endpoint, body, kind));
        }
    }
    json(StatusCode::OK, body)
}

fn refusal(sim: &SimState, style: Refusal, scope: &str) -> Response {
    match style {
        Refusal::TokenUnauthorized => error(
            sim,
            StatusCode::UNAUTHORIZED,
            "token_unauthorized",
            "Not authorized to access resource",
        ),
        Refusal::Forbidden => error(
            sim,
            StatusCode::FORBIDDEN,
            "forbidden",
            &format!("You do not have the required scope ({scope}) to access this resource"),
        ),
        Refusal::ApiPlanRestricted => error(
            sim,
            StatusCode::FORBIDDEN,
            "api_plan_restricted",
            "This feature is not yet available to your app",
        ),
    }
}

fn query_param(query: &str, name: &str) -> Option<String> {
    url::form_urlencoded::parse(query.as_bytes())
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

/// Why an activity-log query was rejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum QueryError {
    MissingAfter,
    Invalid(&'static str),
}

impl QueryError {
    fn response(self, sim: &SimState) -> Response {
        match self {
            // The legacy documented answer, verbatim (fixtures/error_missing_created_at_after.json).
            QueryError::MissingAfter => json(
                StatusCode::NOT_FOUND,
                render::error_body(
                    None,
                    "parameter_not_found",
                    "Please provide the following parameters: created_at_after",
                ),
            ),
            QueryError::Invalid(name) => error(
                sim,
                StatusCode::BAD_REQUEST,
                "parameter_invalid",
                &format!("{name} is invalid"),
            ),
        }
    }
}

fn parse_log_query(ws: &Workspace, query: &str) -> Result<LogQuery, QueryError> {
    let invalid = QueryError::Invalid;
    let after = query_param(query, "created_at_after").ok_or(QueryError::MissingAfter)?;
    let after: i64 = after
        .trim()
        .parse()
        .map_err(|_| invalid("created_at_after"))?;
    let before = match query_param(query, "created_at_before") {
        Some(b) => Some(
            b.trim()
                .parse::<i64>()
                .map_err(|_| invalid("created_at_before"))?,
        ),
        None => None,
    };
    let p = ws.pagination;
    let per_page = query_param(query, "per_page")
        .and_then(|v| v.parse::<u32>().ok())
        .unwrap_or(p.default_per_page)
        .clamp(1, p.max_per_page);
    let position = if let Some(cursor) = query_param(query, "starting_after") {
        let (t, id) = render::decode_cursor(&cursor).ok_or_else(|| invalid("starting_after"))?;
        Position::After(t, id)
    } else {
        let page = match query_param(query, "page") {
            Some(v) => v
                .parse::<u32>()
                .ok()
                .filter(|p| *p >= 1)
                .ok_or_else(|| invalid("page"))?,
            None => 1,
        };
        Position::Page(page)
    };
    Ok(LogQuery {
        after,
        before,
        per_page,
        position,
    })
}

/// The host the client addressed (so `pages.next` stays on it), if it looks like a host;
/// otherwise the listening address.
fn host_of(headers: &HeaderMap, local: SocketAddr) -> String {
    headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .filter(|h| {
            !h.is_empty()
                && h.bytes().all(|b| {
                    b.is_ascii_alphanumeric() || matches!(b, b'.' | b':' | b'-' | b'[' | b']')
                })
        })
        .map(str::to_string)
        .unwrap_or_else(|| local.to_string())
}

/// A valid-looking JSON document of `bytes` bytes, streamed without Content-Length so the
/// client has to enforce its cap while reading.
fn oversized(bytes: u64) -> Response {
    const CHUNK: usize = 64 * 1024;
    let head: &'static [u8] = br#"{"type":"padding","padding":""#;
    let tail: &'static [u8] = br#""}"#;
    let fill = Bytes::from(vec![b'a'; CHUNK]);
    let mut left = bytes.saturating_sub((head.len() + tail.len()) as u64);
    let mut chunks: Vec<Bytes> = vec![Bytes::from_static(head)];
    let stream = futures_util::stream::iter(std::iter::from_fn(move || {
        if let Some(first) = chunks.pop() {
            return Some(first);
        }
        if left == 0 {
            return None;
        }
        let n = left.min(CHUNK as u64) as usize;
        left -= n as u64;
        Some(fill.slice(..n))
    }))
    .chain(futures_util::stream::once(async move {
        Bytes::from_static(tail)
    }))
    .map(Ok::<Bytes, Infallible>);
    let mut response = Response::new(Body::from_stream(stream));
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json; charset=utf-8"),
    );
    response
}

/// Breaks a rendered body the way `kind` says.
fn corrupt(endpoint: Endpoint, body: Vec<u8>, kind: Malformed) -> Vec<u8> {
    match kind {
        Malformed::Truncated => {
            let mut body = body;
            body.truncate(body.len() / 2);
            body
        }
        Malformed::WrongType => {
            let Ok(mut v) = serde_json::from_slice::<Value>(&body) else {
                return body;
            };
            let wrong = Value::String("not-the-right-type".into());
            match endpoint {
                Endpoint::Me => v["has_inbox_seat"] = wrong,
                Endpoint::Admin => v["has_inbox_seat"] = wrong,
                Endpoint::Admins => match v["admins"].get_mut(0) {
                    Some(first) => first["has_inbox_seat"] = wrong,
                    None => v["admins"] = wrong,
                },
                Endpoint::ActivityLogs => match v["activity_logs"].get_mut(0) {
                    Some(first) => first["created_at"] = wrong,
                    None => v["activity_logs"] = wrong,
                },
                Endpoint::Tags | Endpoint::IpAllowlist | Endpoint::Teams => {
                    v["type"] = Value::Bool(true)
                }
            }
            serde_json::to_vec(&v).unwrap_or(body)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn region_prefixes() {
        assert_eq!(split_region("/us/me"), Some((Region::Us, "/me")));
        assert_eq!(
            split_region("/eu/admins/activity_logs"),
            Some((Region::Eu, "/admins/activity_logs"))
        );
        assert_eq!(split_region("/au"), Some((Region::Au, "")));
        assert_eq!(split_region("/ca/me"), None);
        assert_eq!(split_region("/me"), None);
    }

    #[test]
    fn roles_from_2_16() {
        let h = |v: &'static str| {
            let mut m = HeaderMap::new();
            m.insert("intercom-version", HeaderValue::from_static(v));
            m
        };
        assert!(version_has_roles(&HeaderMap::new()));
        assert!(version_has_roles(&h("2.16")));
        assert!(version_has_roles(&h("Preview")));
        assert!(!version_has_roles(&h("2.15")));
        assert!(!version_has_roles(&h("2.9")));
    }

    #[test]
    fn activity_log_queries() {
        let ws: Workspace =
            serde_json::from_str(r#"{"id_code":"w","name":"W","region":"us"}"#).unwrap();
        assert_eq!(
            parse_log_query(&ws, "").unwrap_err(),
            QueryError::MissingAfter
        );
        assert_eq!(
            parse_log_query(&ws, "created_at_after=yesterday").unwrap_err(),
            QueryError::Invalid("created_at_after")
        );
        assert_eq!(
            parse_log_query(&ws, "created_at_after=1&page=0").unwrap_err(),
            QueryError::Invalid("page")
        );
        assert_eq!(
            parse_log_query(&ws, "created_at_after=1&starting_after=%%").unwrap_err(),
            QueryError::Invalid("starting_after")
        );
        let q = parse_log_query(
            &ws,
            "created_at_after=5&created_at_before=9&per_page=9999&page=3",
        )
        .unwrap();
        assert_eq!(
            q,
            LogQuery {
                after: 5,
                before: Some(9),
                per_page: 250,
                position: Position::Page(3)
            }
        );
        assert_eq!(
            parse_log_query(&ws, "created_at_after=5").unwrap().per_page,
            20
        );
    }

    #[test]
    fn admin_paths_and_versions() {
        assert_eq!(Endpoint::parse("/admins/991267468"), Some(Endpoint::Admin));
        assert_eq!(
            Endpoint::parse("/admins/activity_logs"),
            Some(Endpoint::ActivityLogs)
        );
        assert_eq!(Endpoint::parse("/admins/"), Some(Endpoint::Admins));
        assert_eq!(Endpoint::parse("/admins/1/away"), None);
        for v in ["1.0", "1.4", "2.0", "2.9", "2.16", "Preview", "unstable"] {
            assert!(version_known(v), "{v}");
        }
        for v in [
            "", "2.17", "3.0", "1.5", "2", "2.x", "latest", "2.-1", "2.+1", "2.01",
        ] {
            assert!(!version_known(v), "{v}");
        }
    }

    #[test]
    fn accept_header_must_allow_json() {
        let h = |v: &'static str| {
            let mut m = HeaderMap::new();
            m.insert(header::ACCEPT, HeaderValue::from_static(v));
            m
        };
        assert!(accepts_json(&HeaderMap::new()));
        assert!(accepts_json(&h("application/json")));
        assert!(accepts_json(&h("text/html, application/json;q=0.9")));
        assert!(accepts_json(&h("*/*")));
        assert!(!accepts_json(&h("text/html")));
        assert!(!accepts_json(&h("application/xml")));
    }

    #[test]
    fn bearer_parsing() {
        let mut m = HeaderMap::new();
        m.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("Bearer abc"),
        );
        assert_eq!(bearer(&m), Some("abc"));
        m.insert(header::AUTHORIZATION, HeaderValue::from_static("Basic abc"));
        assert_eq!(bearer(&m), None);
        m.insert(header::AUTHORIZATION, HeaderValue::from_static("Bearer "));
        assert_eq!(bearer(&m), None);
    }
}
