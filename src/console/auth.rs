//! Who is asking, on every request: a local session (cookie) or a trusted proxy's
//! identity header. Handlers take `Signed`, which turns anonymous requests into a
//! redirect to the sign-in page and proxy identities from untrusted peers into a refusal;
//! `Signed::require` then checks the role.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::request::Parts;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum_extra::extract::CookieJar;
use secrecy::SecretString;

use super::client;
use super::csrf::CsrfSecret;
use super::role::Role;
use super::session;
use super::settings::AuthMode;
use super::state::ConsoleState;
use super::views;

/// Longest identity a proxy may assert (an email address is at most 254).
const MAX_IDENTITY_LEN: usize = 254;

/// A signed-in person, with what every page needs to render its chrome.
#[derive(Debug, Clone)]
pub struct Signed {
    pub name: String,
    pub role: Role,
    /// The CSRF token for this browser, for every form on the page (logout included).
    pub csrf: String,
    /// False in proxy mode: sign-out belongs to the proxy.
    pub local: bool,
}

impl Signed {
    /// None when the role suffices; else the "not permitted" page (403) to return.
    pub fn refuse_unless(&self, needed: Role) -> Option<Response> {
        (!self.role.allows(needed)).then(|| views::not_permitted(self, needed))
    }
}

fn peer(parts: &Parts) -> SocketAddr {
    parts
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0)
        .unwrap_or_else(|| SocketAddr::from(([0, 0, 0, 0], 0)))
}

fn csrf(parts: &Parts) -> String {
    parts
        .extensions
        .get::<CsrfSecret>()
        .map(CsrfSecret::token)
        .unwrap_or_default()
}

impl FromRequestParts<Arc<ConsoleState>> for Signed {
    type Rejection = Response;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &Arc<ConsoleState>,
    ) -> Result<Self, Self::Rejection> {
        match state.auth {
            AuthMode::Local => {
                let jar = CookieJar::from_headers(&parts.headers);
                let name = session::cookie_name(state.secure_cookies());
                let user = match jar.get(name) {
                    Some(c) => {
                        let id = SecretString::from(c.value().to_string());
                        session::lookup(&state.pool, &id, state.settings.session_idle_timeout)
                            .await
                            .map_err(views::internal)?
                    }
                    None => None,
                };
                match user {
                    Some(u) => Ok(Signed {
                        name: u.name,
                        role: u.role,
                        csrf: csrf(parts),
                        local: true,
                    }),
                    None => Err(to_login(parts)),
                }
            }
            AuthMode::Proxy => {
                let peer = peer(parts);
                if !client::is_trusted(peer.ip(), &state.proxy_nets) {
                    return Err(views::refused(
                        StatusCode::FORBIDDEN,
                        "Not permitted",
                        "This console accepts requests only through its authenticating proxy.",
                    ));
                }
                let s = &state.settings;
                let name = parts
                    .headers
                    .get(s.proxy_user_header.as_str())
                    .and_then(|v| v.to_str().ok())
                    .map(str::trim)
                    .filter(|v| !v.is_empty() && v.len() <= MAX_IDENTITY_LEN)
                    .filter(|v| v.chars().all(|c| !c.is_control()));
                let Some(name) = name else {
                    return Err(views::refused(
                        StatusCode::FORBIDDEN,
                        "Not signed in",
                        "The proxy did not say who you are. Sign in through it and try again.",
                    ));
                };
                // An unknown role value falls back to the least role, never to a greater one.
                let role = match &s.proxy_role_header {
                    Some(h) => parts
                        .headers
                        .get(h.as_str())
                        .and_then(|v| v.to_str().ok())
                        .map(|v| v.parse().unwrap_or(Role::Viewer))
                        .unwrap_or(s.proxy_default_role),
                    None => s.proxy_default_role,
                };
                Ok(Signed {
                    name: name.to_string(),
                    role,
                    csrf: csrf(parts),
                    local: false,
                })
            }
        }
    }
}

/// 303 to the sign-in page, remembering where the user was going.
fn to_login(parts: &Parts) -> Response {
    let next = parts
        .uri
        .path_and_query()
        .map(|p| p.as_str())
        .unwrap_or("/");
    let encoded: String = url::form_urlencoded::byte_serialize(next.as_bytes()).collect();
    Redirect::to(&format!("/login?next={encoded}")).into_response()
}

/// Only same-site relative paths are followed after sign-in (no open redirect).
pub fn safe_next(next: Option<&str>) -> &str {
    match next {
        Some(n)
            if n.starts_with('/')
                && !n.starts_with("//")
                && !n.starts_with("/\\")
                && !n.chars().any(|c| c.is_control()) =>
        {
            n
        }
        _ => "/",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn next_is_never_an_open_redirect() {
        assert_eq!(
            safe_next(Some("/findings?severity=high")),
            "/findings?severity=high"
        );
        assert_eq!(safe_next(Some("//evil.example")), "/");
        assert_eq!(safe_next(Some("/\\evil.example")), "/");
        assert_eq!(safe_next(Some("https://evil.example")), "/");
        assert_eq!(safe_next(None), "/");
    }
}
