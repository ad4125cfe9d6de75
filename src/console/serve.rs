//! Serving the console on `console.listen`, optionally with TLS (rustls), until stopped.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum_server::tls_rustls::RustlsConfig;
use axum_server::Handle;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::settings::ConsoleSettings;
use super::state::ConsoleState;
use super::ConsoleError;

/// How long open connections get to finish when the console stops.
const GRACE: Duration = Duration::from_secs(10);

/// Binds `console.listen` (std listener, so the caller learns errors before spawning).
pub fn bind(settings: &ConsoleSettings) -> Result<std::net::TcpListener, ConsoleError> {
    let addr = settings.listen.clone().ok_or(ConsoleError::NoListen)?;
    std::net::TcpListener::bind(&addr).map_err(|source| ConsoleError::Bind { addr, source })
}

/// Serves the console on `listener` until `stop` is cancelled.
pub async fn serve(
    listener: std::net::TcpListener,
    state: Arc<ConsoleState>,
    stop: CancellationToken,
) -> Result<(), ConsoleError> {
    let s = &state.settings;
    if s.insecure_cookies {
        warn!("console.insecure_cookies is set: session cookies lack the Secure flag; use it only for plain HTTP on localhost");
    }
    let tls = match (&s.tls_cert_file, &s.tls_key_file) {
        (Some(cert), Some(key)) => {
            // One process-wide provider; an earlier install (tests, reqwest) is fine.
            let _ = rustls::crypto::ring::default_provider().install_default();
            Some(
                RustlsConfig::from_pem_file(cert, key)
                    .await
                    .map_err(ConsoleError::Tls)?,
            )
        }
        _ => None,
    };
    let addr = listener.local_addr().map_err(ConsoleError::Serve)?;
    info!(addr = %addr, tls = tls.is_some(), auth = ?state.auth, "serving the console");
    let handle: Handle<SocketAddr> = Handle::new();
    let watcher = handle.clone();
    tokio::spawn(async move {
        stop.cancelled().await;
        watcher.graceful_shutdown(Some(GRACE));
    });
    let app = super::router(state).into_make_service_with_connect_info::<SocketAddr>();
    let result = match tls {
        Some(config) => {
            axum_server::from_tcp_rustls(listener, config)
                .map_err(ConsoleError::Serve)?
                .handle(handle)
                .serve(app)
                .await
        }
        None => {
            axum_server::from_tcp(listener)
                .map_err(ConsoleError::Serve)?
                .handle(handle)
                .serve(app)
                .await
        }
    };
    result.map_err(ConsoleError::Serve)
}

/// The console as one of the daemon's background tasks (`intercom-sspm run` with
/// `console.listen` set): it starts once the database is ready and stops with the daemon.
/// None when the console is off.
pub fn daemon_worker(settings: &crate::config::Settings) -> Option<crate::daemon::Worker> {
    settings.console.listen.as_ref()?;
    let settings = settings.clone();
    Some(Box::new(move |ctx: crate::daemon::WorkerContext| {
        Box::pin(async move {
            match spawn(&settings, ctx.pool, ctx.stop) {
                Ok(Some(task)) => {
                    if let Ok(Err(e)) = task.await {
                        tracing::error!(error = %e, "the console server ended with an error");
                    }
                }
                Ok(None) => {}
                Err(e) => tracing::error!(error = %e, "the console could not start"),
            }
        })
    }))
}

/// Binds and spawns the console when `console.listen` is set (None otherwise), serving
/// until `stop`, with the actions wired to the product's settings.
pub fn spawn(
    settings: &crate::config::Settings,
    pool: sqlx::PgPool,
    stop: CancellationToken,
) -> Result<Option<tokio::task::JoinHandle<Result<(), ConsoleError>>>, ConsoleError> {
    if settings.console.listen.is_none() {
        return Ok(None);
    }
    let listener = bind(&settings.console)?;
    let state = Arc::new(ConsoleState::from_settings(pool, settings)?);
    Ok(Some(tokio::spawn(serve(listener, state, stop))))
}
