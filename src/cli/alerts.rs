//! `intercom-sspm alerts ...`: the delivery status of every alert message (the outbox).

use std::process::ExitCode;

use anyhow::bail;
use clap::{Subcommand, ValueEnum};
use uuid::Uuid;

use super::output::{self, opt};
use super::{Context, ListFormat};
use crate::notify::outbox;

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum StatusFilter {
    Pending,
    Delivered,
    Failed,
    Dead,
}

impl StatusFilter {
    fn as_str(self) -> &'static str {
        match self {
            StatusFilter::Pending => "pending",
            StatusFilter::Delivered => "delivered",
            StatusFilter::Failed => "failed",
            StatusFilter::Dead => "dead",
        }
    }
}

#[derive(Debug, Subcommand)]
pub enum AlertsCommand {
    /// List alert messages, newest first.
    #[command(
        after_help = "Examples:\n  intercom-sspm alerts list --status dead\n  intercom-sspm alerts list --format json --limit 500"
    )]
    List {
        #[arg(long, value_enum)]
        status: Option<StatusFilter>,
        /// Most rows shown.
        #[arg(long, default_value_t = 100)]
        limit: i64,
        #[arg(long, value_enum, default_value_t)]
        format: ListFormat,
    },
    /// Show one message: its delivery status and what it says.
    #[command(
        after_help = "Example:\n  intercom-sspm alerts show 0b7c6a7e-3f0e-4c57-9a55-1d2b8f0e9c11"
    )]
    Show {
        id: Uuid,
        #[arg(long, value_enum, default_value_t)]
        format: ListFormat,
    },
    /// Send a failed or dead message again (due now, with a fresh attempt budget).
    #[command(
        after_help = "Example:\n  intercom-sspm alerts retry 0b7c6a7e-3f0e-4c57-9a55-1d2b8f0e9c11"
    )]
    Retry { id: Uuid },
}

pub async fn run(ctx: &Context, cmd: AlertsCommand) -> anyhow::Result<ExitCode> {
    let pool = ctx.db().await?;
    match cmd {
        AlertsCommand::List {
            status,
            limit,
            format,
        } => {
            let rows = outbox::list(
                &pool,
                status.map(StatusFilter::as_str),
                limit.clamp(1, 100_000),
            )
            .await?;
            match format {
                ListFormat::Json => outln!("{}", output::json(&rows)?),
                ListFormat::Table => {
                    let table = rows
                        .iter()
                        .map(|r| {
                            vec![
                                r.id.to_string(),
                                output::utc(r.created_at),
                                format!("{} ({})", r.channel, r.channel_kind),
                                opt(&r.instance),
                                r.kind.clone(),
                                r.status.clone(),
                                r.attempts.to_string(),
                                opt(&r.last_status_code),
                                opt(&r.last_error),
                            ]
                        })
                        .collect();
                    outln!(
                        "{}",
                        output::table(
                            &[
                                "ID",
                                "CREATED",
                                "CHANNEL",
                                "INSTANCE",
                                "KIND",
                                "STATUS",
                                "ATTEMPTS",
                                "CODE",
                                "LAST ERROR"
                            ],
                            table
                        )
                    );
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        AlertsCommand::Show { id, format } => {
            let Some((row, event)) = outbox::get(&pool, id).await? else {
                bail!("no alert message {id}: see `intercom-sspm alerts list`");
            };
            match format {
                ListFormat::Json => outln!(
                    "{}",
                    output::json(&serde_json::json!({ "message": row, "event": event }))?
                ),
                ListFormat::Table => {
                    let rows = vec![
                        vec!["id".into(), row.id.to_string()],
                        vec![
                            "channel".into(),
                            format!("{} ({})", row.channel, row.channel_kind),
                        ],
                        vec!["instance".into(), opt(&row.instance)],
                        vec!["scan".into(), opt(&row.scan_id)],
                        vec!["kind".into(), row.kind.clone()],
                        vec!["status".into(), row.status.clone()],
                        vec!["attempts".into(), row.attempts.to_string()],
                        vec!["next attempt".into(), row.next_attempt_at.to_rfc3339()],
                        vec!["last code".into(), opt(&row.last_status_code)],
                        vec!["last error".into(), opt(&row.last_error)],
                        vec!["created".into(), row.created_at.to_rfc3339()],
                        vec![
                            "delivered".into(),
                            opt(&row.delivered_at.map(|t| t.to_rfc3339())),
                        ],
                    ];
                    outln!("{}", output::table_in_full(&["FIELD", "VALUE"], rows));
                    outln!("{}", output::json(&event)?);
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        AlertsCommand::Retry { id } => match outbox::retry(&pool, id).await? {
            None => {
                outln!("alert message {id} is due now");
                Ok(ExitCode::SUCCESS)
            }
            Some(status) if status == "missing" => {
                bail!("no alert message {id}: see `intercom-sspm alerts list`")
            }
            Some(status) => {
                bail!("alert message {id} is {status}: only undelivered messages are retried")
            }
        },
    }
}
