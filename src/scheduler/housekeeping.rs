//! Process-level housekeeping on tokio-cron-scheduler: retention pruning and exception
//! expiry. Each job runs once per slot across the whole fleet: the replica that inserts
//! the (job, slot) row into `sspm.housekeeping_runs` runs it, the others skip.

use std::sync::Arc;

use chrono::{DateTime, Duration, DurationRound, Utc};
use sqlx::PgPool;
use tokio_cron_scheduler::{Job, JobScheduler, JobSchedulerError};
use tracing::{info, warn};

use crate::config::Settings;

/// Every 5 minutes: reopen findings whose exception expired.
const EXPIRE_EXCEPTIONS_CRON: &str = "0 */5 * * * *";
/// Daily at 03:17 UTC: prune history older than `retention.days`.
const RETENTION_CRON: &str = "0 17 3 * * *";

/// Claims (job, slot) for this replica; false when another replica already has it.
pub async fn claim_slot(
    pool: &PgPool,
    job: &str,
    slot: DateTime<Utc>,
    replica: &str,
) -> Result<bool, sqlx::Error> {
    let done = sqlx::query!(
        "INSERT INTO sspm.housekeeping_runs (job, slot, replica) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
        job,
        slot,
        replica
    )
    .execute(pool)
    .await?;
    Ok(done.rows_affected() == 1)
}

async fn finish_slot(
    pool: &PgPool,
    job: &str,
    slot: DateTime<Utc>,
    detail: serde_json::Value,
) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "UPDATE sspm.housekeeping_runs SET finished_at = now(), detail = $3 WHERE job = $1 AND slot = $2",
        job,
        slot,
        detail
    )
    .execute(pool)
    .await?;
    Ok(())
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Pruned {
    pub scans: u64,
    pub finding_events: u64,
    pub activity_events: u64,
    pub housekeeping_runs: u64,
}

/// Deletes scans (and by cascade their check results), finding history, activity events
/// and housekeeping rows older than the retention. Open findings are never deleted.
/// Activity events are kept at least as long as the checks look back.
pub async fn prune(
    pool: &PgPool,
    retention_days: u32,
    activity_keep_days: u32,
    now: DateTime<Utc>,
) -> Result<Pruned, sqlx::Error> {
    let cutoff = now - Duration::days(i64::from(retention_days));
    let activity_cutoff = now - Duration::days(i64::from(retention_days.max(activity_keep_days)));
    let mut tx = pool.begin().await?;
    // Keep each instance's latest scan whatever its age: consumers show it as current.
    let scans = sqlx::query!(
        "DELETE FROM sspm.scans s WHERE s.started_at < $1 AND s.status <> 'running'
           AND s.id NOT IN (SELECT last_scan_id FROM sspm.instances WHERE last_scan_id IS NOT NULL)",
        cutoff
    )
    .execute(&mut *tx)
    .await?
    .rows_affected();
    let finding_events = sqlx::query!("DELETE FROM sspm.finding_events WHERE at < $1", cutoff)
        .execute(&mut *tx)
        .await?
        .rows_affected();
    let activity_events = sqlx::query!(
        "DELETE FROM sspm.activity_events WHERE created_at < $1",
        activity_cutoff
    )
    .execute(&mut *tx)
    .await?
    .rows_affected();
    let housekeeping_runs =
        sqlx::query!("DELETE FROM sspm.housekeeping_runs WHERE slot < $1", cutoff)
            .execute(&mut *tx)
            .await?
            .rows_affected();
    tx.commit().await?;
    Ok(Pruned {
        scans,
        finding_events,
        activity_events,
        housekeeping_runs,
    })
}

fn slot_of(now: DateTime<Utc>, granularity: Duration) -> DateTime<Utc> {
    now.duration_trunc(granularity).unwrap_or(now)
}

async fn run_expire(pool: PgPool, replica: String) {
    let now = Utc::now();
    let slot = slot_of(now, Duration::minutes(5));
    match claim_slot(&pool, "expire_exceptions", slot, &replica).await {
        Ok(true) => match crate::db::exceptions::expire(&pool, now).await {
            Ok(n) => {
                if n > 0 {
                    info!(reopened = n, "expired exceptions: findings reopened");
                }
                let _ = finish_slot(
                    &pool,
                    "expire_exceptions",
                    slot,
                    serde_json::json!({ "reopened": n }),
                )
                .await;
            }
            Err(e) => warn!(error = %e, "exception expiry failed"),
        },
        Ok(false) => {}
        Err(e) => warn!(error = %e, "housekeeping slot claim failed"),
    }
}

async fn run_retention(pool: PgPool, replica: String, settings: Arc<Settings>) {
    let now = Utc::now();
    let slot = slot_of(now, Duration::days(1));
    match claim_slot(&pool, "retention", slot, &replica).await {
        Ok(true) => {
            let c = &settings.checks;
            let keep = c
                .dormant_days
                .max(c.inbox_inactive_days)
                .max(c.event_window_days)
                + 1;
            match prune(&pool, settings.retention.days, keep, now).await {
                Ok(p) => {
                    info!(?p, "retention pruning done");
                    let _ = finish_slot(
                        &pool,
                        "retention",
                        slot,
                        serde_json::to_value(p).unwrap_or_default(),
                    )
                    .await;
                }
                Err(e) => warn!(error = %e, "retention pruning failed"),
            }
        }
        Ok(false) => {}
        Err(e) => warn!(error = %e, "housekeeping slot claim failed"),
    }
}

/// Starts the housekeeping jobs; the returned scheduler must be shut down on exit.
pub async fn start(
    pool: PgPool,
    settings: Arc<Settings>,
    replica: String,
) -> Result<JobScheduler, JobSchedulerError> {
    let sched = JobScheduler::new().await?;
    let (p, r) = (pool.clone(), replica.clone());
    sched
        .add(Job::new_async(EXPIRE_EXCEPTIONS_CRON, move |_id, _l| {
            Box::pin(run_expire(p.clone(), r.clone()))
        })?)
        .await?;
    sched
        .add(Job::new_async(RETENTION_CRON, move |_id, _l| {
            Box::pin(run_retention(
                pool.clone(),
                replica.clone(),
                Arc::clone(&settings),
            ))
        })?)
        .await?;
    sched.start().await?;
    Ok(sched)
}
