//! `intercom-sspm run`: the daemon. Start-up order: metrics, signal handlers and the HTTP
//! server first (so `/livez` answers while the database is still coming up), then the
//! pool and migrations (retried while the database is unreachable), then READY=1, the
//! scheduler, housekeeping and the database health monitor. SIGTERM/SIGINT: STOPPING=1,
//! `/readyz` 503, stop claiming, drain, hand back what is left, exit 0. A second signal
//! cuts the drain short.

use std::process::ExitCode;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use sd_notify::NotifyState;
use sqlx::{ConnectOptions, Connection, PgConnection, PgPool};
use tokio::net::TcpListener;
use tokio::signal::unix::{signal, SignalKind};
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, warn};

use super::Context;
use crate::config::Settings;
use crate::scan::Scanner;
use crate::scheduler::{housekeeping, Scheduler, SchedulerState};
use crate::server::{self, AppState};

/// Longest pause between start-up connection attempts.
const MAX_CONNECT_BACKOFF: Duration = Duration::from_secs(30);
/// A health query slower than this counts as "database unreachable".
const HEALTH_TIMEOUT: Duration = Duration::from_secs(2);

pub async fn run(ctx: &Context) -> anyhow::Result<ExitCode> {
    let settings = Arc::new(ctx.settings.clone());
    let replica = replica_id();
    info!(replica = %replica, version = env!("CARGO_PKG_VERSION"), "starting the intercom-sspm daemon");

    let metrics =
        crate::metrics::install().context("installing the Prometheus metrics recorder")?;
    let shutdown = CancellationToken::new();
    let force = CancellationToken::new();
    spawn_signal_handler(shutdown.clone(), force.clone())?;

    let state = Arc::new(SchedulerState::default());
    let app = Arc::new(AppState::new(
        Arc::clone(&state),
        shutdown.clone(),
        Some(metrics),
    ));
    let listener = TcpListener::bind(&settings.server.listen)
        .await
        .with_context(|| {
            format!(
                "cannot listen on server.listen = {}",
                settings.server.listen
            )
        })?;
    info!(addr = %listener.local_addr()?, "serving /livez, /readyz and /metrics");
    let server_stop = CancellationToken::new();
    let server_task = tokio::spawn(server::serve(
        listener,
        Arc::clone(&app),
        server_stop.clone(),
    ));

    let Some(pool) = connect_and_migrate(&settings, &shutdown).await? else {
        info!("stopped before the database was ready");
        server_stop.cancel();
        let _ = server_task.await;
        return Ok(ExitCode::SUCCESS);
    };
    app.migrated.store(true, Ordering::Relaxed);
    state.db_ok.store(true, Ordering::Relaxed);

    let keyring = ctx.keyring_optional()?;
    if keyring.is_none() {
        warn!("no token key configured (security.token_key or token_key_file): instances with sealed tokens will fail to scan; token references still work");
    }
    // >>> console hook (issue 13): serve the web console on console.listen when set,
    // stopped by the daemon's shutdown token. Port to src/daemon.rs as is.
    let console_task =
        crate::console::serve::spawn(&settings.console, pool.clone(), shutdown.clone())?;
    // <<< console hook
    let scanner = Scanner {
        pool: pool.clone(),
        client: ctx.intercom()?,
        keyring: keyring.map(Arc::new),
        settings: Arc::clone(&settings),
        replica: replica.clone(),
    };
    let scheduler = Scheduler::new(scanner, Arc::clone(&state));
    let waker = scheduler.waker();
    let hard_stop = scheduler.hard_stop_token();
    tokio::spawn(async move {
        force.cancelled().await;
        hard_stop.cancel();
    });

    let mut cron = housekeeping::start(
        pool.clone(),
        Arc::clone(&settings),
        replica.clone(),
        housekeeping::Plan::default(),
    )
    .await
    .context("starting the housekeeping jobs")?;
    let monitor_stop = CancellationToken::new();
    let monitor = tokio::spawn(health_monitor(
        pool.clone(),
        Arc::clone(&state),
        waker,
        monitor_interval(&settings),
        monitor_stop.clone(),
    ));

    notify(&[NotifyState::Ready, NotifyState::Status("scanning")]);
    info!("ready: claiming due instances");
    scheduler.run(shutdown.clone()).await;

    if let Err(e) = cron.shutdown().await {
        debug!(error = %e, "housekeeping scheduler shutdown");
    }
    monitor_stop.cancel();
    let _ = monitor.await;
    server_stop.cancel();
    match server_task.await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => warn!(error = %e, "HTTP server ended with an error"),
        Err(e) => warn!(error = %e, "HTTP server task failed"),
    }
    // >>> console hook (issue 13): wait for the console's graceful stop.
    if let Some(task) = console_task {
        if let Ok(Err(e)) = task.await {
            warn!(error = %e, "console server ended with an error");
        }
    }
    // <<< console hook
    pool.close().await;
    info!("stopped");
    Ok(ExitCode::SUCCESS)
}

/// `SSPM_REPLICA_ID` when set, else `hostname:pid` (the pod name under Kubernetes). It
/// names leases and scan rows, so two processes must never share one.
pub fn replica_id() -> String {
    if let Ok(id) = std::env::var("SSPM_REPLICA_ID") {
        let id = id.trim();
        if !id.is_empty() {
            return id.to_string();
        }
    }
    // /proc/sys is hidden under the unit's ProcSubset=pid; /etc/hostname (the pod name
    // under Kubernetes) stays readable there.
    let host = ["/proc/sys/kernel/hostname", "/etc/hostname"]
        .iter()
        .filter_map(|path| std::fs::read_to_string(path).ok())
        .map(|h| h.trim().to_string())
        .find(|h| !h.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok().filter(|h| !h.is_empty()))
        .unwrap_or_else(|| "localhost".into());
    format!("{host}:{}", std::process::id())
}

/// sd_notify is a no-op without NOTIFY_SOCKET (not under systemd `Type=notify`).
fn notify(states: &[NotifyState]) {
    if let Err(e) = sd_notify::notify(states) {
        warn!(error = %e, "sd_notify failed");
    }
}

fn spawn_signal_handler(
    shutdown: CancellationToken,
    force: CancellationToken,
) -> anyhow::Result<()> {
    let mut term = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    let mut int = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
    tokio::spawn(async move {
        let name = tokio::select! {
            _ = term.recv() => "SIGTERM",
            _ = int.recv() => "SIGINT",
        };
        info!(
            signal = name,
            "shutting down: no new claims; draining in-flight scans (send again to stop now)"
        );
        notify(&[NotifyState::Stopping, NotifyState::Status("draining")]);
        shutdown.cancel();
        let name = tokio::select! {
            _ = term.recv() => "SIGTERM",
            _ = int.recv() => "SIGINT",
        };
        warn!(
            signal = name,
            "second signal: cancelling running scans and releasing their leases now"
        );
        force.cancel();
    });
    Ok(())
}

/// Connects and migrates (under sqlx's advisory lock, so replicas starting together
/// apply each migration once). While the database is unreachable it retries with backoff;
/// an error retrying cannot fix (bad URL, a migration that fails, a schema newer than this
/// build) stops the daemon. None when a signal arrived first.
async fn connect_and_migrate(
    settings: &Settings,
    shutdown: &CancellationToken,
) -> anyhow::Result<Option<PgPool>> {
    let mut delay = Duration::from_secs(1);
    loop {
        let outcome = match crate::db::connect(settings).await {
            Ok(pool) => match crate::db::MIGRATOR.run(&pool).await {
                Ok(()) => return Ok(Some(pool)),
                Err(e) => {
                    pool.close().await;
                    let retry = matches!(&e, sqlx::migrate::MigrateError::Execute(inner) if transient(inner));
                    (retry, anyhow::anyhow!("applying migrations failed: {e}"))
                }
            },
            Err(e @ crate::db::DbError::BadUrl(_)) => (false, e.into()),
            Err(e) => (true, e.into()),
        };
        match outcome {
            (false, e) => return Err(e),
            (true, e) => {
                error!(error = %format!("{e:#}"), retry_in = ?delay, "database not ready; retrying");
                tokio::select! {
                    _ = shutdown.cancelled() => return Ok(None),
                    _ = tokio::time::sleep(delay) => {}
                }
                delay = (delay * 2).min(MAX_CONNECT_BACKOFF);
            }
        }
    }
}

/// Errors that come from the connection rather than from the statement.
fn transient(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::Protocol(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed => true,
        // 08xxx connection exceptions; 57P0x admin shutdown, crash shutdown, cannot connect now.
        sqlx::Error::Database(db) => db
            .code()
            .is_some_and(|c| c.starts_with("08") || c.starts_with("57P")),
        _ => false,
    }
}

/// How often the gauges (and with them the database health) are refreshed: as often as
/// the scheduler polls, within 1 s..15 s.
fn monitor_interval(settings: &Settings) -> Duration {
    settings
        .scheduler
        .poll_interval
        .clamp(Duration::from_secs(1), Duration::from_secs(15))
}

/// Refreshes the fleet gauges; their success or failure is the database health that
/// `/readyz` reports. It uses a connection of its own, outside the pool: a pool busy with
/// scans must not make a healthy replica look unready, and a fresh connect proves the
/// server is reachable. When the database comes back it wakes the claim loop, which may
/// be in a long backoff.
async fn health_monitor(
    pool: PgPool,
    state: Arc<SchedulerState>,
    wake: Arc<tokio::sync::Notify>,
    every: Duration,
    stop: CancellationToken,
) {
    let options = pool.connect_options();
    let mut conn: Option<PgConnection> = None;
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stop.cancelled() => break,
            _ = tick.tick() => {}
        }
        let probe = async {
            if conn.is_none() {
                conn = Some(options.connect().await?);
            }
            match conn.as_mut() {
                Some(c) => crate::metrics::refresh_gauges(c).await,
                None => Ok(()),
            }
        };
        let ok = match tokio::time::timeout(HEALTH_TIMEOUT, probe).await {
            Ok(Ok(())) => true,
            Ok(Err(e)) => {
                debug!(error = %e, "database health query failed");
                false
            }
            Err(_) => {
                debug!("database health query timed out");
                false
            }
        };
        if !ok {
            // Reconnect next time rather than reuse a connection in an unknown state.
            conn = None;
        }
        let was_ok = state.db_ok.swap(ok, Ordering::Relaxed);
        match (was_ok, ok) {
            (true, false) => {
                warn!("database unreachable: /readyz reports 503 until it answers again")
            }
            (false, true) => {
                info!("database reachable again; resuming claims");
                wake.notify_one();
            }
            _ => {}
        }
    }
    if let Some(c) = conn {
        let _ = c.close().await;
    }
}
