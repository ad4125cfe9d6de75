//! The Intercom simulator: a local HTTP server that answers like the regional Intercom REST
//! API (`/me`, `/admins`, `/admins/activity_logs`, `/tags`, `/ip_allowlist`, `/teams`) from a
//! scenario, with faults on demand. Tests, the demo and benchmarks use it in place of the
//! real API; production code paths never do. See docs/SIMULATOR.md.
//!
//! `scenario` (the document), `faults` (what can go wrong, and when), `state` (live data and
//! the handle that changes it), `render` (response bodies), `server` (the request pipeline),
//! `generate` (large deterministic scenarios).
#![forbid(unsafe_code)]

mod faults;
pub mod generate;
mod region;
mod render;
mod scenario;
mod server;
mod state;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use axum::serve::ListenerExt;
use tokio::task::JoinHandle;

pub use faults::{FaultSpec, Malformed, RateLimitFault, ServerErrorFault};
pub use scenario::{
    scopes, AdminSpec, EventSpec, IpAllowlistSpec, NextStyle, PaginationSpec, RateLimitSpec,
    RawJson, Refusal, RoleSpec, Scenario, ScenarioError, TeamPriorityLevelSpec, TeamSpec,
    TokenSpec, Workspace,
};
pub use state::ScenarioHandle;

pub use region::Region;

/// How long `shutdown` waits for in-flight requests before cutting them off.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// A running simulator. One listener serves all three regions under `/us`, `/eu`, `/au`.
#[derive(Debug)]
pub struct Simulator {
    addr: SocketAddr,
    state: Arc<state::SimState>,
    task: JoinHandle<std::io::Result<()>>,
}

impl Simulator {
    /// Binds `listen` (use `127.0.0.1:0` in tests) and starts serving `scenario`.
    /// An invalid scenario is an `InvalidInput` error.
    pub async fn start(scenario: Scenario, listen: SocketAddr) -> std::io::Result<Simulator> {
        let state = Arc::new(
            state::SimState::new(scenario)
                .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?,
        );
        let listener = tokio::net::TcpListener::bind(listen).await?;
        let addr = listener.local_addr()?;
        let app = Arc::new(server::AppState {
            sim: state.clone(),
            local: addr,
        });
        let listener = listener.tap_io(|tcp| {
            // Small JSON answers: do not let Nagle hold them back.
            let _ = tcp.set_nodelay(true);
        });
        let shutdown = state.shutdown.clone();
        let task = tokio::spawn(async move {
            axum::serve(listener, server::router(app))
                .with_graceful_shutdown(shutdown.cancelled_owned())
                .await
        });
        Ok(Simulator { addr, state, task })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The base URL to configure as `intercom.base_url.<region>`, e.g.
    /// `http://127.0.0.1:PORT/us`.
    pub fn base_url(&self, region: Region) -> String {
        let mut addr = self.addr;
        if addr.ip().is_unspecified() {
            addr.set_ip(IpAddr::V4(Ipv4Addr::LOCALHOST));
        }
        format!("http://{addr}/{region}")
    }

    /// Requests received so far (all of them: any path, any outcome).
    pub fn request_count(&self) -> u64 {
        self.state.requests.load(Ordering::Relaxed)
    }

    /// Changes the world while the simulator serves.
    pub fn scenario_handle(&self) -> ScenarioHandle {
        ScenarioHandle::new(self.state.clone())
    }

    /// Stops accepting, lets in-flight requests finish (hung ones are released at once),
    /// and waits for the server task.
    pub async fn shutdown(self) {
        self.state.shutdown.cancel();
        let abort = self.task.abort_handle();
        match tokio::time::timeout(SHUTDOWN_GRACE, self.task).await {
            Ok(Ok(Ok(()))) => {}
            Ok(Ok(Err(e))) => tracing::warn!(error = %e, "simulator server ended with an error"),
            Ok(Err(e)) => tracing::warn!(error = %e, "simulator task failed"),
            Err(_) => {
                tracing::warn!("simulator did not stop within {SHUTDOWN_GRACE:?}; aborting");
                abort.abort();
            }
        }
    }
}
