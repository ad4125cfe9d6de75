//! CSRF tokens. Every form carries a token derived from a secret the browser holds in an
//! HttpOnly cookie (the session id when signed in, else a random pre-session cookie):
//! another site can neither read the cookie nor compute the token, and SameSite=Strict
//! keeps the cookie off cross-site requests as a second line.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};

/// The pre-session cookie (sign-in form, proxy mode).
pub const SECURE_COOKIE: &str = "__Host-sspm_csrf";
pub const INSECURE_COOKIE: &str = "sspm_csrf";

pub fn cookie_name(secure: bool) -> &'static str {
    if secure {
        SECURE_COOKIE
    } else {
        INSECURE_COOKIE
    }
}

/// The form token for a cookie secret.
pub fn token_for(secret: &SecretString) -> String {
    let mut h = Sha256::new();
    h.update(b"intercom-sspm console csrf v1\0");
    h.update(secret.expose_secret().as_bytes());
    URL_SAFE_NO_PAD.encode(h.finalize())
}

/// Whether `given` is the token for `secret`, compared in constant time.
pub fn verify(secret: &SecretString, given: &str) -> bool {
    let expected = token_for(secret);
    let (a, b) = (expected.as_bytes(), given.as_bytes());
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_bind_to_their_secret() {
        let s = SecretString::from("secret-one".to_string());
        let t = token_for(&s);
        assert!(verify(&s, &t));
        assert!(!verify(&SecretString::from("secret-two".to_string()), &t));
        assert!(!verify(&s, ""));
        assert!(!verify(&s, &t[..t.len() - 1]));
        assert!(!t.contains("secret-one"));
    }
}

/// The browser's CSRF secret for this request (from its cookie, or freshly made).
#[derive(Clone)]
pub struct CsrfSecret(pub SecretString);

impl CsrfSecret {
    pub fn token(&self) -> String {
        token_for(&self.0)
    }
}

/// Form bodies larger than this are refused before parsing.
pub const MAX_FORM_BYTES: usize = 64 * 1024;

/// Middleware: gives every request a CSRF secret (setting the cookie when the browser had
/// none) and refuses every POST whose form lacks the matching `csrf` field, before any
/// handler runs. One place, so no form can forget it.
pub async fn enforce(
    axum::extract::State(state): axum::extract::State<std::sync::Arc<super::state::ConsoleState>>,
    jar: axum_extra::extract::CookieJar,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    let secure = state.secure_cookies();
    let existing = jar
        .get(cookie_name(secure))
        .map(|c| c.value().to_string())
        .filter(|v| v.len() >= 32 && v.len() <= 64);
    let fresh = existing.is_none();
    let secret = SecretString::from(
        existing.unwrap_or_else(|| super::session::new_id().expose_secret().to_string()),
    );
    let (parts, body) = req.into_parts();
    let req = if parts.method == axum::http::Method::POST {
        let bytes = match axum::body::to_bytes(body, MAX_FORM_BYTES).await {
            Ok(b) => b,
            Err(_) => {
                return (axum::http::StatusCode::PAYLOAD_TOO_LARGE, "form too large")
                    .into_response()
            }
        };
        let given = url::form_urlencoded::parse(&bytes)
            .find(|(k, _)| k == "csrf")
            .map(|(_, v)| v.into_owned())
            .unwrap_or_default();
        if fresh || !verify(&secret, &given) {
            return super::views::refused(
                axum::http::StatusCode::FORBIDDEN,
                "The form was refused",
                "It did not carry this browser's security token (it may have come from another site, or the page was open for too long). Reload the page and try again.",
            );
        }
        axum::extract::Request::from_parts(parts, axum::body::Body::from(bytes))
    } else {
        axum::extract::Request::from_parts(parts, body)
    };
    let mut req = req;
    req.extensions_mut().insert(CsrfSecret(secret.clone()));
    let mut res = next.run(req).await;
    if fresh && !res.headers().contains_key(axum::http::header::SET_COOKIE) {
        if let Ok(v) = cookie(secure, &secret).to_string().parse() {
            res.headers_mut().append(axum::http::header::SET_COOKIE, v);
        }
    }
    res
}

/// The Set-Cookie for a CSRF secret: HttpOnly (scripts never need it: the token is in the page).
pub fn cookie(secure: bool, secret: &SecretString) -> axum_extra::extract::cookie::Cookie<'static> {
    super::session::build_cookie(
        cookie_name(secure),
        secret.expose_secret().to_string(),
        secure,
    )
}
