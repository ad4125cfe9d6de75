//! `intercom-sspm exception add | list | remove`: accepted risks that mute findings.

use std::process::ExitCode;

use anyhow::{bail, Context as _};
use chrono::{DateTime, NaiveDate, Utc};
use clap::Subcommand;
use serde_json::json;
use uuid::Uuid;

use super::output;
use super::{Context, ListFormat};
use crate::audit::{self, Actor};
use crate::db::exceptions::{self, NewException};
use crate::db::instances;

#[derive(Debug, Subcommand)]
pub enum ExceptionCommand {
    /// Accept a risk: matching findings become `muted` (still recorded, excluded from the score).
    #[command(
        after_help = "Example:\n  intercom-sspm exception add --instance acme --check admin_external_domain --resource admin:1234 --reason \"contractor, approved by CISO\" --expires 2027-03-31"
    )]
    Add {
        /// Instance name or id.
        #[arg(long)]
        instance: String,
        /// Check id (see `intercom-sspm checks`).
        #[arg(long)]
        check: String,
        /// One resource (e.g. admin:123); omit to cover every resource of the check.
        #[arg(long)]
        resource: Option<String>,
        /// Why the risk is accepted (kept for audit).
        #[arg(long)]
        reason: String,
        /// Expiry date (YYYY-MM-DD, end of day UTC) or RFC 3339 time; the findings reopen then.
        #[arg(long)]
        expires: Option<String>,
        /// Who approved it; defaults to $USER.
        #[arg(long)]
        author: Option<String>,
    },
    /// List exceptions.
    #[command(after_help = "Example:\n  intercom-sspm exception list --instance acme")]
    List {
        #[arg(long)]
        instance: Option<String>,
        #[arg(long, value_enum, default_value_t)]
        format: ListFormat,
    },
    /// Remove an exception; its muted findings reopen.
    #[command(
        after_help = "Example:\n  intercom-sspm exception remove 1b4e28ba-2fa1-11d2-883f-0016d3cca427"
    )]
    Remove {
        /// Exception id (see `exception list`).
        id: Uuid,
    },
}

/// `--expires`: a date (end of that day, UTC) or an RFC 3339 time.
pub(super) fn parse_expiry(s: &str) -> anyhow::Result<DateTime<Utc>> {
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Ok(t.with_timezone(&Utc));
    }
    let date = NaiveDate::parse_from_str(s, "%Y-%m-%d")
        .with_context(|| format!("--expires {s:?}: use YYYY-MM-DD or an RFC 3339 time"))?;
    Ok(date
        .and_hms_opt(23, 59, 59)
        .expect("valid time of day")
        .and_utc())
}

pub async fn run(ctx: &Context, cmd: ExceptionCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        ExceptionCommand::Add {
            instance,
            check,
            resource,
            reason,
            expires,
            author,
        } => {
            if crate::checks::meta(&check).is_none() {
                bail!("unknown check {check:?}: see `intercom-sspm checks`");
            }
            if reason.trim().is_empty() {
                bail!("--reason must say why the risk is accepted");
            }
            let expires_at = expires.as_deref().map(parse_expiry).transpose()?;
            if expires_at.is_some_and(|t| t <= Utc::now()) {
                bail!("--expires is in the past");
            }
            let author = output::author_or_user(author);
            let pool = ctx.db().await?;
            let found = instances::get(&pool, &instance).await?;
            let mut tx = pool.begin().await?;
            let (id, muted) = exceptions::add(
                &mut *tx,
                &NewException {
                    instance_id: found.id,
                    check_id: &check,
                    resource: resource.as_deref(),
                    reason: reason.trim(),
                    author: &author,
                    expires_at,
                },
            )
            .await?;
            let details = json!({
                "exception_id": id, "instance_id": found.id, "check": check,
                "resource": resource, "reason": reason.trim(), "expires_at": expires_at,
                "muted_findings": muted,
            });
            let actor = Actor::cli();
            audit::record(&mut tx, &actor, "exception.add", &found.name, details).await?;
            tx.commit().await?;
            outln!(
                "exception {id} added for {} / {check}{}; {muted} finding(s) muted{}",
                found.name,
                resource.map(|r| format!(" / {r}")).unwrap_or_default(),
                expires_at
                    .map(|t| format!(" until {}", output::utc(t)))
                    .unwrap_or_default()
            );
        }
        ExceptionCommand::List { instance, format } => {
            let pool = ctx.db().await?;
            let instance_id = super::context::instance_filter(&pool, instance.as_deref()).await?;
            let rows = exceptions::list(&pool, instance_id).await?;
            match format {
                ListFormat::Json => outln!("{}", output::json(&rows)?),
                ListFormat::Table => {
                    let now = Utc::now();
                    let table = rows
                        .iter()
                        .map(|e| {
                            vec![
                                e.id.to_string(),
                                e.instance_name.clone(),
                                e.check_id.clone(),
                                e.resource.clone().unwrap_or_else(|| "(all)".into()),
                                e.reason.clone(),
                                e.author.clone(),
                                output::expiry(e.expires_at, now),
                                e.muted_findings.to_string(),
                            ]
                        })
                        .collect();
                    outln!(
                        "{}",
                        output::table(
                            &[
                                "id", "instance", "check", "resource", "reason", "author",
                                "expires", "muted"
                            ],
                            table
                        )
                    );
                }
            }
        }
        ExceptionCommand::Remove { id } => {
            let pool = ctx.db().await?;
            let mut tx = pool.begin().await?;
            let target = exceptions::instance_name_of(&mut *tx, id).await?;
            match exceptions::remove(&mut *tx, id).await? {
                Some(n) => {
                    let details = json!({ "exception_id": id, "reopened_findings": n });
                    let target = target.unwrap_or_default();
                    audit::record(&mut tx, &Actor::cli(), "exception.remove", &target, details)
                        .await?;
                    tx.commit().await?;
                    outln!("exception {id} removed; {n} finding(s) reopened")
                }
                None => bail!("no exception with id {id}: see `intercom-sspm exception list`"),
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
