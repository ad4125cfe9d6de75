//! `intercom-sspm audit list`: the trail of changes made through the CLI and the console.

use std::process::ExitCode;

use clap::Args;

use super::output;
use super::{Context, ListFormat};
use crate::audit;

#[derive(Debug, Args)]
pub struct AuditListArgs {
    /// How many rows, newest first.
    #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(i64).range(1..=10_000))]
    limit: i64,
    /// Only rows older than this id (the `id` column of a previous page).
    #[arg(long)]
    before: Option<i64>,
    #[arg(long, value_enum, default_value_t)]
    format: ListFormat,
}

#[derive(Debug, clap::Subcommand)]
pub enum AuditCommand {
    /// List audit rows, newest first.
    ///
    /// Example: `intercom-sspm audit list --limit 20 --format json`
    List(AuditListArgs),
}

pub async fn run(ctx: &Context, cmd: AuditCommand) -> anyhow::Result<ExitCode> {
    let AuditCommand::List(args) = cmd;
    let pool = ctx.db().await?;
    let rows = audit::list(&pool, args.before, args.limit).await?;
    match args.format {
        ListFormat::Json => outln!("{}", output::json(&rows)?),
        ListFormat::Table if rows.is_empty() => outln!("no audit rows yet"),
        ListFormat::Table => {
            let table = rows
                .iter()
                .map(|r| {
                    vec![
                        r.id.to_string(),
                        r.at.format("%Y-%m-%d %H:%M:%S").to_string(),
                        r.actor.clone(),
                        r.via.clone(),
                        r.action.clone(),
                        r.target.clone(),
                        r.details.to_string(),
                    ]
                })
                .collect();
            outln!(
                "{}",
                output::table(
                    &["id", "at", "actor", "via", "action", "target", "details"],
                    table
                )
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}
