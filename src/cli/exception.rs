//! `intercom-sspm exception add | list | remove`: accepted risks that mute findings.

use std::process::ExitCode;

use chrono::Utc;
use clap::Subcommand;

use super::output;
use super::{Context, ListFormat};
use crate::audit::Actor;
use crate::db::exceptions as store;
use crate::db::id_prefix::IdPrefix;
use crate::db::instances;
use crate::exceptions::{self, ExceptionInput};

#[derive(Debug, Subcommand)]
pub enum ExceptionCommand {
    /// Accept a risk: matching findings become `muted` (still recorded, excluded from the score).
    ///
    /// Say when it ends with --expires, or pass --permanent. A --resource must match an
    /// open or muted finding of the check (--force to add it anyway), and an instance,
    /// check and resource already covered by an active exception is refused.
    #[command(
        after_help = "Examples:\n  intercom-sspm exception add --instance acme --check admin_external_domain --resource admin:1234 --reason \"contractor, approved by CISO\" --expires 2027-03-31\n  intercom-sspm exception add --instance acme --check data_exported --reason \"exports reviewed monthly\" --expires 30d"
    )]
    Add {
        /// Instance name or id.
        #[arg(long)]
        instance: String,
        /// Check id (see `intercom-sspm checks`).
        #[arg(long)]
        check: String,
        /// One resource (e.g. admin:123) of a current finding; omit to cover every resource of the check.
        #[arg(long)]
        resource: Option<String>,
        /// Why the risk is accepted (kept for audit).
        #[arg(long)]
        reason: String,
        /// When it ends and the findings reopen: a duration from now (12h, 30d, 2w), a date
        /// (YYYY-MM-DD, end of day UTC) or an RFC 3339 time. Required unless --permanent.
        #[arg(long, value_name = "WHEN")]
        expires: Option<String>,
        /// The exception never expires (instead of --expires).
        #[arg(long, conflicts_with = "expires")]
        permanent: bool,
        /// Add it even though --resource matches no open or muted finding of the check.
        #[arg(long)]
        force: bool,
        /// Who approved it; defaults to $USER.
        #[arg(long)]
        author: Option<String>,
    },
    /// List exceptions (the id column is the shortest unique prefix; --wide shows it whole).
    #[command(after_help = "Example:\n  intercom-sspm exception list --instance acme")]
    List {
        #[arg(long)]
        instance: Option<String>,
        #[arg(long, value_enum, default_value_t)]
        format: ListFormat,
    },
    /// Remove an exception; its muted findings reopen.
    #[command(
        after_help = "Examples:\n  intercom-sspm exception remove 1b4e28ba-2fa1-11d2-883f-0016d3cca427\n  intercom-sspm exception remove 1b4e28ba"
    )]
    Remove {
        /// Exception id, or its first 4 or more characters when no other id starts so (see `exception list`).
        id: IdPrefix,
    },
}

pub async fn run(ctx: &Context, cmd: ExceptionCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        ExceptionCommand::Add {
            instance,
            check,
            resource,
            reason,
            expires,
            permanent,
            force,
            author,
        } => {
            let valid = exceptions::validate(
                &ExceptionInput {
                    check: &check,
                    resource: resource.as_deref(),
                    reason: &reason,
                    expires: expires.as_deref(),
                    permanent,
                },
                Utc::now(),
            )?;
            let author = output::author_or_user(author)?;
            let pool = ctx.db().await?;
            let found = instances::get(&pool, &instance).await?;
            let added = exceptions::add(
                &pool,
                found.id,
                &found.name,
                &valid,
                &author,
                force,
                &Actor::cli(),
            )
            .await?;
            outln!(
                "exception {} added for {} / {}{}; {} finding(s) muted{}",
                added.id,
                found.name,
                valid.check,
                valid
                    .resource
                    .map(|r| format!(" / {r}"))
                    .unwrap_or_default(),
                added.muted,
                valid
                    .expires_at
                    .map(|t| format!(" until {}", output::utc(t)))
                    .unwrap_or_else(|| ", permanently".into())
            );
        }
        ExceptionCommand::List { instance, format } => {
            let pool = ctx.db().await?;
            let instance_id = super::context::instance_filter(&pool, instance.as_deref()).await?;
            let rows = store::list(&pool, instance_id).await?;
            output::print_id_list(
                format,
                &rows,
                |e| e.id,
                &[
                    "instance", "check", "resource", "reason", "author", "expires", "muted",
                ],
                |e, now| {
                    vec![
                        e.instance_name.clone(),
                        e.check_id.clone(),
                        e.resource.clone().unwrap_or_else(|| "(all)".into()),
                        e.reason.clone(),
                        e.author.clone(),
                        output::expiry(e.expires_at, now),
                        e.muted_findings.to_string(),
                    ]
                },
            )?;
        }
        ExceptionCommand::Remove { id } => {
            let pool = ctx.db().await?;
            let id = store::resolve_id(&pool, &id).await?;
            match exceptions::remove(&pool, id, &Actor::cli()).await? {
                Some(n) => outln!("exception {id} removed; {n} finding(s) reopened"),
                None => {
                    return Err(super::exit::NotFound {
                        message: format!(
                            "no exception with id {id}: see `intercom-sspm exception list`"
                        ),
                    }
                    .into())
                }
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
