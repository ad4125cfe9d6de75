//! `intercom-sspm run`: the daemon (wired in `crate::daemon`). This handler owns what is
//! the process's: SIGTERM/SIGINT and sd_notify. First signal: STOPPING=1, `/readyz` 503,
//! stop claiming, drain, hand back what is left, exit 0. A second signal cuts the drain
//! short. READY=1 once the database is ready and claims start.

use std::process::ExitCode;

use anyhow::Context as _;
use sd_notify::NotifyState;
use tokio::signal::unix::{signal, SignalKind};
use tracing::{info, warn};

use super::Context;
use crate::config::Sources;
use crate::daemon::{Daemon, Listeners, Shutdown};

use crate::daemon::replica_id;

pub async fn run(ctx: &Context, sources: &Sources) -> anyhow::Result<ExitCode> {
    let replica = replica_id();
    info!(replica = %replica, version = env!("CARGO_PKG_VERSION"), "starting the intercom-sspm daemon");
    let shutdown = Shutdown::default();
    spawn_signal_handler(shutdown.clone())?;
    let listeners = Listeners::bind(&ctx.settings).await?;
    let daemon = Daemon::build(ctx.settings.clone(), listeners, replica, &shutdown)
        .await?
        .with_worker(
            "alert delivery",
            crate::notify::worker::daemon_worker(&ctx.settings)?,
        );
    log_startup(ctx, sources, &daemon);
    // The web console on console.listen, when set (never on server.listen).
    let daemon = match crate::console::serve::daemon_worker(&ctx.settings) {
        Some(console) => daemon.with_worker("console", console),
        None => daemon,
    };
    daemon
        .run_until_stopped(shutdown, || {
            notify(&[NotifyState::Ready, NotifyState::Status("scanning")])
        })
        .await?;
    Ok(ExitCode::SUCCESS)
}

/// What an operator checks first when a replica misbehaves: which configuration it read,
/// which database and keys it uses, its limits and where it listens. Never a secret:
/// environment variables by name only, the database without its password, key ids.
fn log_startup(ctx: &Context, sources: &Sources, daemon: &Daemon) {
    let settings = &ctx.settings;
    let files: Vec<String> = sources
        .defaults_file
        .iter()
        .chain(&sources.file)
        .filter(|p| p.exists())
        .map(|p| {
            std::path::absolute(p)
                .unwrap_or_else(|_| p.clone())
                .display()
                .to_string()
        })
        .collect();
    let env: Vec<&str> = sources
        .env
        .iter()
        .map(|(k, _)| k.as_str())
        .filter(|k| k.starts_with("SSPM__") || *k == "DATABASE_URL")
        .collect();
    info!(
        config_files = %list_or_none(&files),
        environment = %list_or_none(&env),
        database = %crate::db::describe(settings).unwrap_or_else(|| "not configured".into()),
        token_keys = %daemon.key_summary(),
        "configuration loaded"
    );
    let regions: Vec<String> = settings
        .scheduler
        .region_concurrency
        .iter()
        .map(|(region, n)| format!("{region}={n}"))
        .collect();
    let probes: Vec<String> = daemon
        .local_addrs()
        .iter()
        .map(|(role, addr)| format!("{} http://{addr}", role.name()))
        .collect();
    let console = match &settings.console.listen {
        Some(addr) => addr.to_string(),
        None => "off (console.listen unset)".into(),
    };
    info!(
        max_concurrent_scans = settings.scheduler.max_concurrent_scans,
        region_concurrency = %regions.join(" "),
        database_max_connections = settings.database.max_connections,
        listeners = %probes.join(", "),
        console = %console,
        "limits and listeners"
    );
}

fn list_or_none<S: AsRef<str>>(items: &[S]) -> String {
    if items.is_empty() {
        "none".into()
    } else {
        items
            .iter()
            .map(AsRef::as_ref)
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// sd_notify is a no-op without NOTIFY_SOCKET (not under systemd `Type=notify`).
fn notify(states: &[NotifyState]) {
    if let Err(e) = sd_notify::notify(states) {
        warn!(error = %e, "sd_notify failed");
    }
}

fn spawn_signal_handler(shutdown: Shutdown) -> anyhow::Result<()> {
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
        shutdown.drain.cancel();
        let name = tokio::select! {
            _ = term.recv() => "SIGTERM",
            _ = int.recv() => "SIGINT",
        };
        warn!(
            signal = name,
            "second signal: cancelling running scans and releasing their leases now"
        );
        shutdown.force.cancel();
    });
    Ok(())
}
