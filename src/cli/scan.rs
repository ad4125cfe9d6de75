//! `intercom-sspm scan <instance>`: one scan now, in the foreground, with a summary.
//! `--queue` asks the running daemons to scan it instead.

use std::process::ExitCode;
use std::sync::Arc;

use anyhow::bail;
use chrono::{DateTime, Utc};
use clap::Args;
use serde::Serialize;

use super::output;
use super::{Context, ListFormat};
use crate::db::instances;
use crate::db::leases::{self, LeaseTerms};
use crate::db::scans::Trigger;
use crate::scan::{format_elapsed, Fence, NextDue, ScanOutcome, ScanReport, Scanner};
use crate::status::CheckStatus;

#[derive(Debug, Args)]
pub struct ScanArgs {
    /// Instance name or id.
    #[arg(required_unless_present = "all", conflicts_with = "all")]
    instance: Option<String>,
    /// Every enabled instance, one after the other (exit 1 if any scan failed).
    #[arg(long)]
    all: bool,
    /// Do not scan here: make the instance due now and wake the running daemons.
    #[arg(long)]
    queue: bool,
    #[arg(long, value_enum, default_value_t)]
    format: ListFormat,
}

/// `--format json`: the report plus when it ran. Times are RFC 3339 UTC, the duration
/// also a number of seconds, and a failed scan has no score (null, not 0).
fn scan_json(
    report: &ScanReport,
    started_at: DateTime<Utc>,
    finished_at: DateTime<Utc>,
) -> anyhow::Result<serde_json::Value> {
    let mut v = serde_json::to_value(report)?;
    if let Some(o) = v.as_object_mut() {
        o.insert("started_at".into(), serde_json::to_value(started_at)?);
        o.insert("finished_at".into(), serde_json::to_value(finished_at)?);
        o.insert(
            "duration_seconds".into(),
            serde_json::json!(report.duration.as_secs_f64()),
        );
        if report.status != ScanOutcome::Succeeded {
            o.insert("score".into(), serde_json::Value::Null);
            o.insert("coverage".into(), serde_json::Value::Null);
        }
    }
    Ok(v)
}

#[derive(Debug, Serialize)]
struct QueuedJson<'a> {
    queued: bool,
    instance: &'a str,
    instance_id: uuid::Uuid,
}

pub async fn run(ctx: &Context, args: ScanArgs) -> anyhow::Result<ExitCode> {
    let pool = ctx.db().await?;
    let targets = match &args.instance {
        Some(name) => vec![instances::get(&pool, name).await?],
        None => instances::list(&pool)
            .await?
            .into_iter()
            .filter(|i| i.enabled)
            .collect(),
    };
    if args.queue {
        let mut queued = Vec::new();
        for instance in &targets {
            crate::manage::queue_scan(&pool, instance, &crate::audit::Actor::cli()).await?;
            queued.push(QueuedJson {
                queued: true,
                instance: &instance.name,
                instance_id: instance.id,
            });
        }
        match args.format {
            ListFormat::Json if args.all => outln!("{}", output::json(&queued)?),
            ListFormat::Json => outln!("{}", output::json(&queued[0])?),
            ListFormat::Table => {
                for q in &queued {
                    outln!("queued a scan of {}: a running daemon (`intercom-sspm run`) will pick it up within seconds", q.instance);
                }
            }
        }
        return Ok(ExitCode::SUCCESS);
    }
    if targets.is_empty() {
        bail!("no enabled instances to scan: see `intercom-sspm instance list`");
    }
    // A sealed token cannot be opened without the key: refuse before anything is written
    // (no scan row, no status change), as a malformed key is refused.
    let keyring = ctx.keyring_optional()?.map(Arc::new);
    if keyring.is_none() {
        if let Some(sealed) = targets.iter().find(|i| i.token_key_id.is_some()) {
            bail!(
                "cannot scan {}: its token is sealed under token key {}, and no token key is configured; set security.token_key (SSPM__SECURITY__TOKEN_KEY) or security.token_key_file to that key. Nothing was scanned or recorded",
                sealed.name,
                sealed.token_key_id.as_deref().unwrap_or("?")
            );
        }
    }
    let mut all_ok = true;
    let mut json = Vec::new();
    for instance in &targets {
        let started_at = Utc::now();
        let report = scan_one(ctx, &pool, keyring.clone(), instance).await?;
        let finished_at = Utc::now();
        if report.status != ScanOutcome::Succeeded {
            all_ok = false;
            // Said once, on stderr; the summary on stdout only states the outcome.
            eprintln!(
                "error: scan of {} failed: {}",
                report.instance,
                report.error.as_deref().unwrap_or("unknown error")
            );
        }
        match args.format {
            ListFormat::Json => json.push(scan_json(&report, started_at, finished_at)?),
            ListFormat::Table => print_summary(&report)?,
        }
    }
    if args.format == ListFormat::Json {
        match (args.all, json.as_slice()) {
            (false, [one]) => outln!("{}", output::json(one)?),
            _ => outln!("{}", output::json(&json)?),
        }
    }
    Ok(if all_ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// One foreground scan under a manual lease. Err when it could not run at all (held by
/// another scanner, interrupted, a database error); a failed scan is an Ok report.
async fn scan_one(
    ctx: &Context,
    pool: &sqlx::PgPool,
    keyring: Option<Arc<crate::crypto::Keyring>>,
    instance: &instances::Instance,
) -> anyhow::Result<ScanReport> {
    let scanner = Scanner {
        pool: pool.clone(),
        client: ctx.intercom()?,
        keyring,
        settings: Arc::new(ctx.settings.clone()),
        replica: format!("cli:{}", std::process::id()),
    };
    // The lease keeps daemons off this instance while it is scanned here; it outlasts the
    // scan's whole time budget because nothing heartbeats it.
    let lease_length = ctx.settings.intercom.scan_timeout + std::time::Duration::from_secs(60);
    let Some(lease) = leases::claim_manual(
        pool,
        instance.id,
        &scanner.replica,
        LeaseTerms(lease_length),
    )
    .await?
    else {
        let holder = leases::holder(pool, instance.id)
            .await?
            .unwrap_or_else(|| "another process".into());
        bail!(
            "{} is being scanned right now by {holder}: wait for that scan to finish, or use `scan --queue`",
            instance.name
        );
    };
    let fence = Fence {
        lease_token: lease.lease_token,
        scan_id: Some(lease.scan_id),
        next: NextDue::Keep(lease.previous_next_scan_at),
    };
    let report = tokio::select! {
        r = scanner.scan(instance, Trigger::Manual, Some(fence)) => r,
        _ = tokio::signal::ctrl_c() => {
            leases::release_manual(pool, instance.id, &lease, "interrupted by the operator").await?;
            bail!("scan of {} interrupted; nothing was recorded", instance.name);
        }
    };
    match report {
        Ok(r) => Ok(r),
        Err(e) => {
            let _ = leases::release_manual(pool, instance.id, &lease, &e.to_string()).await;
            Err(e.into())
        }
    }
}

fn by_severity<V: std::fmt::Display + Default + PartialEq>(
    map: &std::collections::BTreeMap<String, V>,
) -> String {
    let order = ["critical", "high", "medium", "low", "info"];
    let parts: Vec<String> = order
        .iter()
        .filter_map(|s| {
            map.get(*s)
                .filter(|v| **v != V::default())
                .map(|v| format!("{v} {s}"))
        })
        .collect();
    if parts.is_empty() {
        "none".into()
    } else {
        parts.join(", ")
    }
}

pub fn print_summary(r: &ScanReport) -> anyhow::Result<()> {
    outln!(
        "scan {} of {} ({}): {} in {}, {} API calls; instance status {}",
        r.scan_id,
        r.instance,
        r.region,
        r.status.as_str(),
        format_elapsed(r.duration),
        r.api_calls,
        r.instance_status
    );
    // A failed scan evaluated nothing: its per-check rows would all repeat the error,
    // which the command prints once on stderr.
    if r.checks.is_empty() || r.status == ScanOutcome::Failed {
        return Ok(());
    }
    let evaluated = r.checks.iter().filter(|c| c.status.is_evaluated()).count();
    outln!(
        "posture score: {}   coverage: {} ({} of {} checks evaluated)",
        r.score
            .map(|s| format!("{s:.1}/100"))
            .unwrap_or_else(|| "n/a".into()),
        r.coverage
            .map(|c| format!("{:.0}%", c * 100.0))
            .unwrap_or_else(|| "n/a".into()),
        evaluated,
        r.checks.len()
    );
    outln!(
        "findings: new {}; resolved {}; open {}",
        by_severity(&r.new_by_severity),
        r.resolved_findings,
        by_severity(&r.open_by_severity)
    );
    let rows: Vec<Vec<String>> = r
        .checks
        .iter()
        .filter(|c| c.status != CheckStatus::Pass)
        .map(|c| {
            let severity = crate::checks::meta(&c.check_id)
                .map(|m| m.severity.as_str().to_string())
                .unwrap_or_default();
            vec![
                c.check_id.clone(),
                severity,
                c.status.to_string(),
                if c.failed_count > 0 {
                    c.failed_count.to_string()
                } else {
                    String::new()
                },
                c.reason.clone().unwrap_or_default(),
            ]
        })
        .collect();
    if !rows.is_empty() {
        outln!(
            "{}",
            output::table(&["check", "severity", "result", "findings", "reason"], rows)
        );
    }
    Ok(())
}
