//! `intercom-sspm findings`: list findings as a table, JSON, CSV or OCSF.

use std::process::ExitCode;

use anyhow::bail;
use clap::{Args, ValueEnum};

use super::output::{self, opt};
use super::Context;
use crate::checks::Severity;
use crate::db::findings::{self, FindingFilter, FindingListRow};
use crate::status::FindingStatus;

#[derive(Debug, Clone, Copy, Default, ValueEnum, PartialEq, Eq)]
pub enum FindingsFormat {
    #[default]
    Table,
    Json,
    Csv,
    /// OCSF 1.1 Detection Finding events, one JSON object per line.
    Ocsf,
}

#[derive(Debug, Clone, Copy, Default, ValueEnum, PartialEq, Eq)]
pub enum StatusFilter {
    #[default]
    Open,
    Resolved,
    Muted,
    All,
}

#[derive(Debug, Args)]
pub struct FindingsArgs {
    /// Only this instance (name or id).
    #[arg(long)]
    instance: Option<String>,
    #[arg(long, value_enum, default_value_t)]
    status: StatusFilter,
    /// Only findings at or above this severity (critical, high, medium, low, info).
    #[arg(long)]
    severity: Option<String>,
    /// Only this check id (see `intercom-sspm checks`).
    #[arg(long)]
    check: Option<String>,
    #[arg(long, value_enum, default_value_t)]
    format: FindingsFormat,
}

const SEVERITIES: [&str; 5] = ["critical", "high", "medium", "low", "info"];

pub async fn run(ctx: &Context, args: FindingsArgs) -> anyhow::Result<ExitCode> {
    let severities = match &args.severity {
        None => None,
        Some(s) => {
            let min: Severity = s.parse().map_err(|_| {
                anyhow::anyhow!(
                    "unknown severity {s:?}: use one of {}",
                    SEVERITIES.join(", ")
                )
            })?;
            let idx = SEVERITIES
                .iter()
                .position(|x| *x == min.as_str())
                .unwrap_or(4);
            Some(SEVERITIES[..=idx].iter().map(|s| s.to_string()).collect())
        }
    };
    if let Some(check) = &args.check {
        if crate::checks::meta(check).is_none() {
            bail!("unknown check {check:?}: see `intercom-sspm checks` for the catalog");
        }
    }
    let pool = ctx.db().await?;
    let instance_id = super::context::instance_filter(&pool, args.instance.as_deref()).await?;
    let status = match args.status {
        StatusFilter::Open => Some(FindingStatus::Open),
        StatusFilter::Resolved => Some(FindingStatus::Resolved),
        StatusFilter::Muted => Some(FindingStatus::Muted),
        StatusFilter::All => None,
    };
    let rows = findings::list(
        &pool,
        &FindingFilter {
            instance_id,
            status,
            severities,
            check_id: args.check.clone(),
        },
    )
    .await?;
    match args.format {
        FindingsFormat::Json => outln!("{}", output::json(&rows)?),
        FindingsFormat::Ocsf => {
            for row in &rows {
                outln!(
                    "{}",
                    serde_json::to_string(&crate::export::ocsf::detection_finding(row))?
                );
            }
        }
        FindingsFormat::Csv => print_csv(&rows)?,
        FindingsFormat::Table => print_table(&rows)?,
    }
    Ok(ExitCode::SUCCESS)
}

fn print_table(rows: &[FindingListRow]) -> anyhow::Result<()> {
    if rows.is_empty() {
        outln!("no findings match");
        return Ok(());
    }
    let table_rows = rows
        .iter()
        .map(|f| {
            vec![
                f.severity.clone(),
                f.instance_name.clone(),
                f.check_id.clone(),
                f.resource.clone(),
                f.title.clone(),
                f.status.to_string(),
                f.first_seen_at.format("%Y-%m-%d").to_string(),
                opt(&f.resolved_at.map(|t| t.format("%Y-%m-%d").to_string())),
            ]
        })
        .collect();
    outln!(
        "{}",
        output::table(
            &[
                "severity",
                "instance",
                "check",
                "resource",
                "title",
                "status",
                "first seen",
                "resolved"
            ],
            table_rows
        )
    );
    outln!("{} finding(s)", rows.len());
    Ok(())
}

fn print_csv(rows: &[FindingListRow]) -> anyhow::Result<()> {
    crate::export::csv::write(std::io::stdout(), rows)?;
    Ok(())
}
