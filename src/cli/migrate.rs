//! `intercom-sspm migrate`: apply pending migrations and exit.

use std::process::ExitCode;

use super::Context;

pub async fn run(ctx: &Context) -> anyhow::Result<ExitCode> {
    let pool = crate::db::connect(&ctx.settings).await?;
    crate::db::migrate(&pool).await?;
    let applied = crate::db::MIGRATOR.iter().count();
    outln!("database schema is up to date ({applied} migrations)");
    Ok(ExitCode::SUCCESS)
}
