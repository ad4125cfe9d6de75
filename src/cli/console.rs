//! `intercom-sspm console`: serve the web console alone (no scheduler), e.g. next to a
//! read-only replica. SIGTERM/SIGINT stop it gracefully.

use std::process::ExitCode;
use std::sync::Arc;

use tokio::signal::unix::{signal, SignalKind};
use tokio_util::sync::CancellationToken;

use super::Context;
use crate::console::state::ConsoleState;

#[derive(Debug, clap::Args)]
#[command(
    after_help = "Example:\n  SSPM__CONSOLE__LISTEN=127.0.0.1:8443 SSPM__CONSOLE__AUTH=local intercom-sspm console"
)]
pub struct ConsoleArgs {}

pub async fn run(ctx: &Context, _args: ConsoleArgs) -> anyhow::Result<ExitCode> {
    let settings = ctx.settings.console.clone();
    // Refuse before touching the database: no listen address or no auth mode is a
    // configuration error, never an open console.
    let listener = crate::console::serve::bind(&settings)?;
    let pool = ctx.db().await?;
    let state = Arc::new(ConsoleState::from_settings(pool, &ctx.settings)?);
    let stop = CancellationToken::new();
    let on_signal = stop.clone();
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    tokio::spawn(async move {
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
        on_signal.cancel();
    });
    crate::console::serve::serve(listener, state, stop).await?;
    Ok(ExitCode::SUCCESS)
}
