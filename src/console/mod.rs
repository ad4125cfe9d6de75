//! The web console: server-rendered pages over the same database the daemon writes,
//! behind mandatory authentication (local users or a trusted reverse proxy).
//!
//! Layout: `settings` ([console]), `state`, `serve` (listener, TLS), `auth` (who is
//! asking), `session` and `throttle` (local sign-in), `csrf`, `headers`, `assets`,
//! `views` (chrome and small pages), `charts` (SVG), `routes` (one module per page).

pub mod assets;
pub mod auth;
pub mod charts;
pub mod client;
pub mod csrf;
pub mod forms;
pub mod headers;
pub mod role;
pub mod routes;
pub mod serve;
pub mod session;
pub mod settings;
pub mod state;
pub mod throttle;
pub mod users;
pub mod views;

use std::sync::Arc;

use axum::routing::{get, post};
use axum::Router;

use state::ConsoleState;

#[derive(Debug, thiserror::Error)]
pub enum ConsoleError {
    #[error("the console needs an authentication mode: set console.auth = \"local\" (users from `intercom-sspm user add`) or \"proxy\" (with console.trusted_proxies)")]
    NoAuthMode,
    #[error("console.auth = \"proxy\" needs console.trusted_proxies (CIDRs of the authenticating proxies)")]
    NoTrustedProxies,
    #[error("console.listen is not set: give the address to serve on (e.g. SSPM__CONSOLE__LISTEN=127.0.0.1:8443)")]
    NoListen,
    #[error("cannot listen on console.listen = {addr}: {source}")]
    Bind {
        addr: String,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot load the console's TLS certificate or key (console.tls_cert_file / tls_key_file): {0}")]
    Tls(std::io::Error),
    #[error("the console cannot open sealed tokens: {0}")]
    Keyring(crate::crypto::CryptoError),
    #[error("the console cannot build its Intercom client: {0}")]
    Client(String),
    #[error("the console server failed: {0}")]
    Serve(std::io::Error),
}

/// Every console route. Each handler checks the role it needs; the CSRF middleware
/// refuses every POST without this browser's token before a handler runs.
pub fn router(state: Arc<ConsoleState>) -> Router {
    use routes::*;
    Router::new()
        .route("/", get(fleet::page))
        .route("/instances/new", get(onboard::form).post(onboard::submit))
        .route("/instances/{id}", get(instance::page))
        .route("/instances/{id}/scan", post(manage::scan_now))
        .route("/instances/{id}/settings", get(manage::settings))
        .route("/instances/{id}/token", post(manage::set_token))
        .route("/instances/{id}/schedule", post(manage::set_schedule))
        .route("/instances/{id}/domains", post(manage::set_domains))
        .route("/instances/{id}/enabled", post(manage::set_enabled))
        .route(
            "/instances/{id}/remove",
            get(manage::remove_form).post(manage::remove),
        )
        .route(
            "/instances/{id}/attestations",
            get(attestations::page).post(attestations::record),
        )
        .route(
            "/instances/{id}/attestations/{aid}/remove",
            get(attestations::remove_form).post(attestations::remove),
        )
        .route("/instances/{id}/overrides", post(manage::set_overrides))
        .route("/findings", get(findings::page))
        .route("/findings/export", get(findings::export))
        .route("/findings/{id}", get(finding::page))
        .route("/findings/{id}/exception", post(exception::add))
        .route("/exceptions", get(exception::list))
        .route("/exceptions/{id}/remove", post(exception::remove))
        .route("/checks", get(checks::page))
        .route("/compliance", get(compliance::index))
        .route("/compliance/{framework}", get(compliance::page))
        .route("/audit", get(audit::page))
        .route("/channels", get(channels::list))
        .route(
            "/channels/new",
            get(channels::new_form).post(channels::create),
        )
        .route(
            "/channels/{id}",
            get(channels::edit_form).post(channels::save),
        )
        .route("/channels/{id}/test", post(channels::test))
        .route("/channels/{id}/enabled", post(channels::set_enabled))
        .route(
            "/channels/{id}/remove",
            get(channels::remove_form).post(channels::remove),
        )
        .route("/users", get(users::page).post(users::add))
        .route("/users/{id}/role", post(users::set_role))
        .route("/users/{id}/enabled", post(users::set_enabled))
        .route("/users/{id}/password", post(users::reset_password))
        .route(
            "/users/{id}/remove",
            get(users::remove_form).post(users::remove),
        )
        .route("/login", get(login::form).post(login::submit))
        .route("/logout", post(login::logout))
        .route("/assets/{name}", get(assets::serve))
        .fallback(fallback)
        .layer(axum::middleware::from_fn_with_state(
            Arc::clone(&state),
            csrf::enforce,
        ))
        .layer(axum::middleware::from_fn_with_state(
            Arc::clone(&state),
            headers::apply,
        ))
        .with_state(state)
}

async fn fallback() -> axum::response::Response {
    views::refused(
        axum::http::StatusCode::NOT_FOUND,
        "Not found",
        "There is no page at this address.",
    )
}
