//! `intercom-sspm attest add | list | remove`: record that a manual control is in place. The API
//! cannot show these settings, so they stay `not_evaluated` until an operator attests them
//! with evidence; the attestation counts until it expires (default 90 days).

use std::process::ExitCode;

use chrono::Utc;
use clap::Subcommand;

use super::output;
use super::{Context, ListFormat};
use crate::attest;
use crate::audit::Actor;
use crate::db::id_prefix::IdPrefix;
use crate::db::{attestations, instances};

#[derive(Debug, Subcommand)]
pub enum AttestCommand {
    /// Attest a manual control (see `intercom-sspm checks`: ids starting with manual_).
    ///
    /// Refused while an unexpired attestation of the same control exists on the instance
    /// (remove that one first to record a new one).
    #[command(
        after_help = "Examples:\n  intercom-sspm attest add --instance acme --control manual_2fa_enforced --evidence \"SEC-42: Security settings screenshot\" --expires 2027-02-28\n  intercom-sspm attest add --instance acme --control manual_sso_required --evidence \"SEC-43\" --expires 26w"
    )]
    Add {
        /// Instance name or id.
        #[arg(long)]
        instance: String,
        /// Manual control id, e.g. manual_2fa_enforced.
        #[arg(long)]
        control: String,
        /// What proves it (ticket, screenshot location, reviewer): kept for audit.
        #[arg(long)]
        evidence: String,
        /// When it stops counting: a duration from now (12h, 30d, 2w), a date (YYYY-MM-DD,
        /// end of day UTC) or an RFC 3339 time; default 90 days from now.
        #[arg(long, value_name = "WHEN")]
        expires: Option<String>,
        /// Who attests; defaults to $USER.
        #[arg(long)]
        author: Option<String>,
    },
    /// List attestations (expired ones included, marked; the id column is the shortest
    /// unique prefix, --wide shows it whole).
    #[command(after_help = "Example:\n  intercom-sspm attest list --instance acme")]
    List {
        #[arg(long)]
        instance: Option<String>,
        #[arg(long, value_enum, default_value_t)]
        format: ListFormat,
    },
    /// Remove an attestation; its control is `not_evaluated` again from the next scan.
    #[command(
        after_help = "Examples:\n  intercom-sspm attest remove 6f1d2c3b-8a4e-4f5a-9b6c-7d8e9f0a1b2c\n  intercom-sspm attest remove 6f1d2c3b"
    )]
    Remove {
        /// Attestation id, or its first 4 or more characters when no other id starts so (see `attest list`).
        id: IdPrefix,
    },
}

pub async fn run(ctx: &Context, cmd: AttestCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        AttestCommand::Add {
            instance,
            control,
            evidence,
            expires,
            author,
        } => {
            let attestation =
                attest::validate(&control, &evidence, expires.as_deref(), Utc::now())?;
            let author = output::author_or_user(author)?;
            let pool = ctx.db().await?;
            let found = instances::get(&pool, &instance).await?;
            let id = attest::add(&pool, &found, &attestation, &author, &Actor::cli()).await?;
            outln!(
                "attestation {id}: {} on {} counts until {}; the next scan reports it",
                attestation.control,
                found.name,
                attestation.expires_at.format("%Y-%m-%d")
            );
        }
        AttestCommand::List { instance, format } => {
            let pool = ctx.db().await?;
            let instance_id = super::context::instance_filter(&pool, instance.as_deref()).await?;
            let rows = attestations::list(&pool, instance_id).await?;
            output::print_id_list(
                format,
                &rows,
                |a| a.id,
                &[
                    "instance", "control", "evidence", "author", "attested", "expires",
                ],
                |a, now| {
                    vec![
                        a.instance_name.clone(),
                        a.control_id.clone(),
                        a.evidence.clone(),
                        a.author.clone(),
                        a.attested_at.format("%Y-%m-%d").to_string(),
                        output::expiry(Some(a.expires_at), now),
                    ]
                },
            )?;
        }
        AttestCommand::Remove { id } => {
            let pool = ctx.db().await?;
            let mut tx = pool.begin().await?;
            let id = attestations::resolve_id(&mut *tx, &id).await?;
            let Some(removed) = attest::remove(&mut tx, id, &Actor::cli()).await? else {
                return Err(super::exit::NotFound {
                    message: format!(
                        "no attestation with id {id}: see `intercom-sspm attest list`"
                    ),
                }
                .into());
            };
            tx.commit().await?;
            outln!(
                "attestation {id} removed; {} on {} is not_evaluated from the next scan",
                removed.control_id,
                removed.instance_name
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}
