//! `intercom-sspm scan <instance>`: one scan now, in the foreground, with a summary.
//! `--queue` asks the running daemons to scan it instead.

use std::process::ExitCode;
use std::sync::Arc;

use anyhow::bail;
use clap::Args;

use super::output;
use super::{Context, ListFormat};
use crate::db::instances;
use crate::db::leases::{self, LeaseTerms};
use crate::db::scans::Trigger;
use crate::scan::{format_elapsed, Fence, ScanReport, ScanStatus, Scanner};

#[derive(Debug, Args)]
pub struct ScanArgs {
    /// Instance name or id.
    instance: String,
    /// Do not scan here: make the instance due now and wake the running daemons.
    #[arg(long)]
    queue: bool,
    #[arg(long, value_enum, default_value_t)]
    format: ListFormat,
}

pub async fn run(ctx: &Context, args: ScanArgs) -> anyhow::Result<ExitCode> {
    let pool = ctx.db().await?;
    let instance = instances::get(&pool, &args.instance).await?;
    if args.queue {
        instances::queue_now(&pool, instance.id).await?;
        println!("queued a scan of {}: a running daemon (`intercom-sspm run`) will pick it up within seconds", instance.name);
        return Ok(ExitCode::SUCCESS);
    }
    let scanner = Scanner {
        pool: pool.clone(),
        client: ctx.intercom()?,
        keyring: ctx.keyring_optional()?.map(Arc::new),
        settings: Arc::new(ctx.settings.clone()),
        replica: format!("cli:{}", std::process::id()),
    };
    // The lease keeps daemons off this instance while it is scanned here; it outlasts the
    // scan's whole time budget because nothing heartbeats it.
    let lease_length = ctx.settings.intercom.scan_timeout + std::time::Duration::from_secs(60);
    let Some(lease) = leases::claim_manual(
        &pool,
        instance.id,
        &scanner.replica,
        LeaseTerms(lease_length),
    )
    .await?
    else {
        let holder = leases::holder(&pool, instance.id)
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
        next_on_success: lease.previous_next_scan_at,
        next_on_failure: lease.previous_next_scan_at,
    };
    let report = tokio::select! {
        r = scanner.scan(&instance, Trigger::Manual, Some(fence)) => r,
        _ = tokio::signal::ctrl_c() => {
            leases::release_manual(&pool, instance.id, &lease, "interrupted by the operator").await?;
            bail!("scan of {} interrupted; nothing was recorded", instance.name);
        }
    };
    let report = match report {
        Ok(r) => r,
        Err(e) => {
            let _ = leases::release_manual(&pool, instance.id, &lease, &e.to_string()).await;
            return Err(e.into());
        }
    };
    match args.format {
        ListFormat::Json => println!("{}", output::json(&report)?),
        ListFormat::Table => print_summary(&report),
    }
    Ok(match report.status {
        ScanStatus::Succeeded => ExitCode::SUCCESS,
        ScanStatus::Failed => {
            eprintln!(
                "error: scan of {} failed: {}",
                report.instance,
                report.error.as_deref().unwrap_or("unknown error")
            );
            ExitCode::FAILURE
        }
    })
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

pub fn print_summary(r: &ScanReport) {
    println!(
        "scan {} of {} ({}): {} in {}, {} API calls; instance status {}",
        r.scan_id,
        r.instance,
        r.region,
        r.status.as_str(),
        format_elapsed(r.duration),
        r.api_calls,
        r.instance_status
    );
    if let Some(e) = &r.error {
        println!("error: {e}");
    }
    if r.checks.is_empty() {
        return;
    }
    let evaluated = r
        .checks
        .iter()
        .filter(|c| c.status == "pass" || c.status == "fail")
        .count();
    println!(
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
    println!(
        "findings: new {}; resolved {}; open {}",
        by_severity(&r.new_by_severity),
        r.resolved_findings,
        by_severity(&r.open_by_severity)
    );
    let rows: Vec<Vec<String>> = r
        .checks
        .iter()
        .filter(|c| c.status != "pass")
        .map(|c| {
            let severity = crate::checks::meta(&c.check_id)
                .map(|m| m.severity.as_str().to_string())
                .unwrap_or_default();
            vec![
                c.check_id.clone(),
                severity,
                c.status.clone(),
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
        println!(
            "{}",
            output::table(&["check", "severity", "result", "findings", "reason"], rows)
        );
    }
}
