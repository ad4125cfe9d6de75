//! The daemon's HTTP endpoints for probes and scrapers, on `server.listen`:
//!
//! - `GET /livez`: 200 while the process runs. No dependency checks, so a database outage
//!   never gets a healthy pod restarted.
//! - `GET /readyz`: 200 only when the database is reachable, migrations are applied, the
//!   scheduler runs and the daemon is not draining; otherwise 503 with a short JSON reason.
//! - `GET /metrics`: Prometheus text exposition (see `crate::metrics`).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use metrics_exporter_prometheus::PrometheusHandle;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::scheduler::SchedulerState;

/// What the probes read. Flags are written by the daemon's startup, the scheduler and
/// the database health monitor; handlers only load them, so a probe never waits on the
/// database (a busy pool must not make a healthy replica look unready).
pub struct AppState {
    /// Set once the pool is up and migrations are applied.
    pub migrated: AtomicBool,
    pub scheduler: Arc<SchedulerState>,
    /// Cancelled on SIGTERM/SIGINT: from then on the replica is draining.
    pub shutdown: CancellationToken,
    pub metrics: Option<PrometheusHandle>,
}

impl AppState {
    pub fn new(
        scheduler: Arc<SchedulerState>,
        shutdown: CancellationToken,
        metrics: Option<PrometheusHandle>,
    ) -> Self {
        Self {
            migrated: AtomicBool::new(false),
            scheduler,
            shutdown,
            metrics,
        }
    }

    /// None when ready; otherwise why not, most important reason first.
    pub fn not_ready_reason(&self) -> Option<&'static str> {
        let s = &self.scheduler;
        if self.shutdown.is_cancelled() || s.draining.load(Ordering::Relaxed) {
            Some("draining: shutting down, no new scans are claimed")
        } else if !self.migrated.load(Ordering::Relaxed) {
            Some("starting: database not connected or migrations not applied yet")
        } else if !s.db_ok.load(Ordering::Relaxed) {
            Some("database unreachable")
        } else if !s.running.load(Ordering::Relaxed) {
            Some("scheduler not running")
        } else {
            None
        }
    }
}

pub fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/livez", get(livez))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(state)
}

/// Serves `router` until `stop` is cancelled. The daemon stops its listeners last, after
/// the drain, so `/readyz` keeps answering 503 and `/metrics` keeps scraping while scans
/// finish.
pub async fn serve_router(
    listener: TcpListener,
    router: Router,
    stop: CancellationToken,
) -> std::io::Result<()> {
    axum::serve(listener, router)
        .with_graceful_shutdown(stop.cancelled_owned())
        .await
}

async fn livez() -> impl IntoResponse {
    Json(serde_json::json!({ "status": "alive" }))
}

async fn readyz(State(state): State<Arc<AppState>>) -> Response {
    match state.not_ready_reason() {
        None => (
            StatusCode::OK,
            Json(serde_json::json!({ "status": "ready" })),
        )
            .into_response(),
        Some(reason) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(serde_json::json!({ "status": "not_ready", "reason": reason })),
        )
            .into_response(),
    }
}

async fn metrics(State(state): State<Arc<AppState>>) -> Response {
    crate::metrics::ready(state.not_ready_reason().is_none());
    match &state.metrics {
        Some(handle) => (
            [(
                header::CONTENT_TYPE,
                "text/plain; version=0.0.4; charset=utf-8",
            )],
            handle.render(),
        )
            .into_response(),
        None => (StatusCode::NOT_FOUND, "metrics recorder not installed\n").into_response(),
    }
}
