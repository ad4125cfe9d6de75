//! Sign-in and sign-out (local users). One answer for an unknown name, a wrong password,
//! a disabled user and a locked-out name or address, so the form tells an attacker nothing.

use std::net::SocketAddr;
use std::sync::Arc;

use askama::Template;
use axum::extract::{ConnectInfo, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::{Extension, Form};
use axum_extra::extract::CookieJar;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

use crate::console::csrf::{self, CsrfSecret};
use crate::console::settings::AuthMode;
use crate::console::state::ConsoleState;
use crate::console::views::{self, Chrome};
use crate::console::{auth, client, session, throttle, users};

const FAILED: &str = "Wrong user name or password, or too many attempts: check them, or wait 15 minutes and try again.";

#[derive(Template)]
#[template(path = "console/login.html")]
struct LoginPage<'a> {
    chrome: Chrome,
    csrf: String,
    next: &'a str,
    error: Option<&'a str>,
}

#[derive(Deserialize)]
pub struct NextQuery {
    next: Option<String>,
}

pub async fn form(
    State(state): State<Arc<ConsoleState>>,
    Extension(secret): Extension<CsrfSecret>,
    Query(q): Query<NextQuery>,
) -> Response {
    if state.auth == AuthMode::Proxy {
        return Redirect::to("/").into_response();
    }
    views::page(&LoginPage {
        chrome: Chrome::anonymous(),
        csrf: secret.token(),
        next: auth::safe_next(q.next.as_deref()),
        error: None,
    })
}

#[derive(Deserialize)]
pub struct LoginForm {
    username: String,
    password: SecretString,
    next: Option<String>,
}

pub async fn submit(
    State(state): State<Arc<ConsoleState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Extension(secret): Extension<CsrfSecret>,
    jar: CookieJar,
    headers: axum::http::HeaderMap,
    Form(form): Form<LoginForm>,
) -> Response {
    if state.auth == AuthMode::Proxy {
        return Redirect::to("/").into_response();
    }
    let s = &state.settings;
    let addr = client::client_addr(peer, &headers, &state.proxy_nets).to_string();
    let name = form.username.trim().to_string();
    let keys = [throttle::user_key(&name), throttle::addr_key(&addr)];
    let next = auth::safe_next(form.next.as_deref()).to_string();
    let fail = |status| {
        views::with_status(
            status,
            &LoginPage {
                chrome: Chrome::anonymous(),
                csrf: secret.token(),
                next: &next,
                error: Some(FAILED),
            },
        )
    };
    match throttle::locked(&state.pool, &keys).await {
        Ok(true) => return fail(StatusCode::TOO_MANY_REQUESTS),
        Ok(false) => {}
        Err(e) => return views::internal(e),
    }
    let creds = match users::credentials(&state.pool, &name).await {
        Ok(c) => c,
        Err(e) => return views::internal(e),
    };
    // Always one argon2 verification, against a decoy hash for unknown names, so timing
    // does not tell them apart; off the async threads (it takes tens of milliseconds).
    let (user, hash) = match creds {
        Some((u, h)) => (Some(u), h),
        None => (None, users::decoy_hash().to_string()),
    };
    let password = form.password;
    let verified = tokio::task::spawn_blocking(move || {
        users::verify_password(password.expose_secret(), &hash)
    })
    .await
    .unwrap_or(false);
    let user = match user {
        Some(u) if verified && !u.disabled => u,
        _ => {
            if let Err(e) =
                throttle::record_failure(&state.pool, &keys, s.login_max_failures, s.login_lockout)
                    .await
            {
                return views::internal(e);
            }
            tracing::info!(client = %addr, "console sign-in failed");
            return fail(StatusCode::UNAUTHORIZED);
        }
    };
    let secure = state.secure_cookies();
    // Rotation: whatever session the browser had is ended, and both cookies are new.
    let cookie_name = session::cookie_name(secure);
    let created = async {
        if let Some(old) = jar.get(cookie_name) {
            session::delete(&state.pool, &SecretString::from(old.value().to_string())).await?;
        }
        session::purge_expired(&state.pool, s.session_idle_timeout).await?;
        throttle::clear(&state.pool, &keys[0]).await?;
        session::create(&state.pool, user.id, s.session_absolute_timeout, &addr).await
    }
    .await;
    let id = match created {
        Ok(id) => id,
        Err(e) => return views::internal(e),
    };
    tracing::info!(user = %user.name, client = %addr, "console sign-in");
    let jar = jar
        .add(session::build_cookie(
            cookie_name,
            id.expose_secret().to_string(),
            secure,
        ))
        .add(csrf::cookie(secure, &session::new_id()));
    (jar, Redirect::to(&next)).into_response()
}

pub async fn logout(State(state): State<Arc<ConsoleState>>, jar: CookieJar) -> Response {
    let secure = state.secure_cookies();
    let name = session::cookie_name(secure);
    if let Some(c) = jar.get(name) {
        if let Err(e) =
            session::delete(&state.pool, &SecretString::from(c.value().to_string())).await
        {
            return views::internal(e);
        }
    }
    let jar = jar
        .add(session::removal_cookie(name, secure))
        .add(session::removal_cookie(csrf::cookie_name(secure), secure));
    let to = if state.auth == AuthMode::Local {
        "/login"
    } else {
        "/"
    };
    (jar, Redirect::to(to)).into_response()
}
