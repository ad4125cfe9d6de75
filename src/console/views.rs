//! Rendering: the page chrome every template shares, and the small pages (messages,
//! refusals, errors). Templates live in templates/console/ and are checked at compile
//! time by askama, which HTML-escapes every `{{ }}` (all Intercom data is hostile).

use askama::Template;
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};

use super::auth::Signed;
use super::role::Role;
use crate::status::InstanceStatus;

/// The signed-in user as the header shows them.
pub struct ChromeUser {
    pub name: String,
    pub role: String,
    pub csrf: String,
    pub local: bool,
    pub is_admin: bool,
}

pub struct Chrome {
    pub stylesheet: String,
    pub user: Option<ChromeUser>,
}

impl Chrome {
    pub fn anonymous() -> Self {
        Self {
            stylesheet: super::assets::stylesheet_href(),
            user: None,
        }
    }

    /// The CSRF token for the page's forms (empty when signed out).
    pub fn csrf(&self) -> &str {
        self.user.as_ref().map(|u| u.csrf.as_str()).unwrap_or("")
    }

    pub fn for_user(s: &Signed) -> Self {
        Self {
            stylesheet: super::assets::stylesheet_href(),
            user: Some(ChromeUser {
                name: s.name.clone(),
                role: s.role.to_string(),
                csrf: s.csrf.clone(),
                local: s.local,
                is_admin: s.role.allows(Role::Admin),
            }),
        }
    }
}

/// Renders a template as a 200 page (or a 500 when rendering fails, which askama's
/// compile-time checks make a programming error).
pub fn page<T: Template>(t: &T) -> Response {
    with_status(StatusCode::OK, t)
}

pub fn with_status<T: Template>(status: StatusCode, t: &T) -> Response {
    match t.render() {
        Ok(html) => (status, Html(html)).into_response(),
        Err(e) => internal(e),
    }
}

#[derive(Template)]
#[template(path = "console/message.html")]
struct Message<'a> {
    chrome: Chrome,
    heading: &'a str,
    detail: &'a str,
}

/// A refusal or notice page with the given status, for anonymous requests.
pub fn refused(status: StatusCode, heading: &str, detail: &str) -> Response {
    with_status(
        status,
        &Message {
            chrome: Chrome::anonymous(),
            heading,
            detail,
        },
    )
}

/// The "not permitted" page (403) for a signed-in user whose role is too small.
pub fn not_permitted(s: &Signed, needed: Role) -> Response {
    let detail = format!(
        "This page needs the {needed} role; you are signed in as {} with the {} role. Ask an admin (`intercom-sspm user set-role`).",
        s.name, s.role
    );
    with_status(
        StatusCode::FORBIDDEN,
        &Message {
            chrome: Chrome::for_user(s),
            heading: "Not permitted",
            detail: &detail,
        },
    )
}

/// A notice page for a signed-in user.
pub fn message(s: &Signed, status: StatusCode, heading: &str, detail: &str) -> Response {
    with_status(
        status,
        &Message {
            chrome: Chrome::for_user(s),
            heading,
            detail,
        },
    )
}

pub fn not_found(s: &Signed, what: &str) -> Response {
    let detail = format!("No {what} with that id: it may have been removed.");
    with_status(
        StatusCode::NOT_FOUND,
        &Message {
            chrome: Chrome::for_user(s),
            heading: "Not found",
            detail: &detail,
        },
    )
}

/// A 500 that logs the cause and shows none of it (it may quote data).
pub fn internal<E: std::fmt::Display>(e: E) -> Response {
    tracing::error!(error = %e, "console request failed");
    let body = "<!doctype html><title>Error</title><h1>Something went wrong</h1><p>The error was logged. Try again; if it persists, check the daemon's log.</p>";
    (StatusCode::INTERNAL_SERVER_ERROR, Html(body)).into_response()
}

/// Formatting helpers templates call.
pub fn when(t: &Option<chrono::DateTime<chrono::Utc>>) -> String {
    t.map(|t| t.format("%Y-%m-%d %H:%M UTC").to_string())
        .unwrap_or_else(|| "never".into())
}

pub fn pct(v: Option<f64>) -> String {
    v.map(|v| format!("{:.0}%", v * 100.0))
        .unwrap_or_else(|| "–".into())
}

pub fn score(v: Option<f64>) -> String {
    v.map(|v| format!("{v:.0}")).unwrap_or_else(|| "–".into())
}

/// An instance status in words, its colour class, and what to do about it.
pub fn status_words(status: InstanceStatus) -> (&'static str, &'static str, &'static str) {
    match status {
        InstanceStatus::Ok => ("healthy", "ok", "Scans succeed."),
        InstanceStatus::Pending => ("waiting for the first scan", "pending", "The first scan runs soon after onboarding."),
        InstanceStatus::Unauthorized => ("token rejected", "bad", "Intercom rejected the token (revoked or regenerated): replace it with `intercom-sspm instance set-token`."),
        InstanceStatus::NotPermitted => ("missing permission", "bad", "The token lacks a permission (Read admins): enable it for the app in the Developer Hub and regenerate the token."),
        InstanceStatus::IpNotAllowed => ("IP address not allowed", "bad", "The workspace's IP allowlist blocks the scanner: add its egress addresses in Intercom (Settings > Workspace > Security)."),
        InstanceStatus::Unreachable => ("Intercom unreachable", "warn", "The API could not be reached or kept failing: check the network path to the region's API; scans retry with back-off."),
        InstanceStatus::Error => ("scan error", "warn", "The last scan failed: see the error below and the daemon's log."),
    }
}
