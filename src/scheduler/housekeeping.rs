//! Process-level housekeeping on tokio-cron-scheduler: retention pruning (which also
//! creates the coming months' partitions of `sspm.activity_events`) and exception
//! expiry. Each job runs once per slot across the whole fleet: the replica that inserts
//! the (job, slot) row into `sspm.housekeeping_runs` runs it, the others skip.

use std::sync::Arc;

use chrono::{DateTime, Duration, DurationRound, Utc};
use sqlx::PgPool;
use tokio_cron_scheduler::{Job, JobScheduler, JobSchedulerError};
use tracing::{debug, info, warn};

use crate::config::Settings;
use crate::metrics;

/// When the jobs run (UTC, with seconds: tokio-cron-scheduler requires six fields) and
/// how long a slot is. Every replica fires at the same instant; the slot row decides who
/// works. Tests use second-granular plans to see the real scheduler fire.
#[derive(Debug, Clone)]
pub struct Plan {
    pub expire_exceptions_cron: String,
    pub expire_exceptions_slot: Duration,
    pub retention_cron: String,
    pub retention_slot: Duration,
}

impl Default for Plan {
    fn default() -> Self {
        Self {
            // Every 5 minutes: reopen findings whose exception expired.
            expire_exceptions_cron: "0 */5 * * * *".into(),
            expire_exceptions_slot: Duration::minutes(5),
            // Daily at 03:17 UTC: prune history older than `retention.days`.
            retention_cron: "0 17 3 * * *".into(),
            retention_slot: Duration::days(1),
        }
    }
}

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

/// Gives a slot back after a failed run, so that the next firing (here or on another
/// replica) may try again instead of the chore being skipped for the whole slot.
async fn release_slot(pool: &PgPool, job: &str, slot: DateTime<Utc>) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "DELETE FROM sspm.housekeeping_runs WHERE job = $1 AND slot = $2 AND finished_at IS NULL",
        job,
        slot
    )
    .execute(pool)
    .await?;
    Ok(())
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
    /// Monthly partitions of `sspm.activity_events` dropped (their rows are counted in
    /// `activity_events`).
    pub activity_partitions_dropped: u64,
    pub housekeeping_runs: u64,
}

/// Deletes scans (and, by trigger, their check results), finding history, activity events
/// and housekeeping rows older than the retention. Findings themselves are never deleted
/// (open ones are current state; resolved ones are the record). Each instance's latest
/// scan and latest succeeded scan are kept whatever their age: consumers show the first
/// as current and take the score from the second (`sspm.instance_posture`). Activity
/// events are kept at least as long as the checks look back.
pub async fn prune(
    pool: &PgPool,
    retention_days: u32,
    activity_keep_days: u32,
    now: DateTime<Utc>,
) -> Result<Pruned, sqlx::Error> {
    let cutoff = now - Duration::days(i64::from(retention_days));
    let activity_cutoff = now - Duration::days(i64::from(retention_days.max(activity_keep_days)));
    let mut tx = pool.begin().await?;
    let scans = sqlx::query!(
        "DELETE FROM sspm.scans s WHERE s.started_at < $1 AND s.status <> 'running'
           AND s.id NOT IN (SELECT last_scan_id FROM sspm.instances WHERE last_scan_id IS NOT NULL)
           AND NOT (s.status = 'succeeded' AND NOT EXISTS (
               SELECT 1 FROM sspm.scans newer
               WHERE newer.instance_id = s.instance_id AND newer.status = 'succeeded'
                 AND (newer.started_at, newer.id) > (s.started_at, s.id)))",
        cutoff
    )
    .execute(&mut *tx)
    .await?
    .rows_affected();
    // What the deleted scans leave behind (their check results, the scan_id of the events
    // and findings that name them) is cleared by the `scans_clear_references` trigger in
    // this statement (migration 20261203000020), for any DELETE of scans.
    let finding_events = sqlx::query!("DELETE FROM sspm.finding_events WHERE at < $1", cutoff)
        .execute(&mut *tx)
        .await?
        .rows_affected();
    // Whole months first (a DROP, however many rows), then the few stray rows of the
    // DEFAULT partition (times outside every month). Events of the month that straddles
    // the cutoff stay until all of it is older.
    let dropped = sqlx::query!(
        r#"SELECT partition_name AS "partition_name!", row_count AS "row_count!"
           FROM sspm.activity_events_drop_months_before($1)"#,
        activity_cutoff
    )
    .fetch_all(&mut *tx)
    .await?;
    let stray = sqlx::query!(
        "DELETE FROM sspm.activity_events_default WHERE created_at < $1",
        activity_cutoff
    )
    .execute(&mut *tx)
    .await?
    .rows_affected();
    let activity_events = dropped.iter().map(|d| d.row_count as u64).sum::<u64>() + stray;
    let activity_partitions_dropped = dropped.len() as u64;
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
        activity_partitions_dropped,
        housekeeping_runs,
    })
}

/// Months of `sspm.activity_events` kept ready ahead of time: the current one and the next
/// two, so that inserts land in a month partition rather than the DEFAULT one.
pub const ACTIVITY_MONTHS_AHEAD: i32 = 2;

/// Creates the monthly partitions of `sspm.activity_events` for the month of `now` and
/// the next [`ACTIVITY_MONTHS_AHEAD`] (rows of those months already in the DEFAULT
/// partition move into them). Returns how many were created; idempotent.
pub async fn ensure_activity_partitions(
    pool: &PgPool,
    now: DateTime<Utc>,
) -> Result<u64, sqlx::Error> {
    let created = sqlx::query_scalar!(
        r#"SELECT count(*) FILTER (WHERE sspm.activity_events_create_month($1::timestamptz + m * interval '1 month'))
                  AS "created!"
           FROM generate_series(0, $2::int) AS m"#,
        now,
        ACTIVITY_MONTHS_AHEAD
    )
    .fetch_one(pool)
    .await?;
    Ok(created as u64)
}

/// The slot a firing at `now` belongs to: `now` truncated to the slot length, so every
/// replica computes the same key for the same firing.
pub fn slot_of(now: DateTime<Utc>, granularity: Duration) -> DateTime<Utc> {
    now.duration_trunc(granularity).unwrap_or(now)
}

/// Runs `job` for the slot of `now` if this replica wins the slot; records the outcome.
/// Returns whether this replica ran it.
async fn run_once_per_slot<F, Fut>(
    pool: &PgPool,
    job: &'static str,
    slot_len: Duration,
    replica: &str,
    work: F,
) -> bool
where
    F: FnOnce(DateTime<Utc>) -> Fut,
    Fut: std::future::Future<Output = Result<serde_json::Value, sqlx::Error>>,
{
    // The slot by the database's clock: replicas with skewed clocks agree on it.
    let now = match crate::db::now(pool).await {
        Ok(now) => now,
        Err(e) => {
            warn!(job, error = %e, "cannot read the database's clock; housekeeping skipped until the next firing");
            return false;
        }
    };
    let slot = slot_of(now, slot_len);
    match claim_slot(pool, job, slot, replica).await {
        Ok(true) => match work(now).await {
            Ok(detail) => {
                info!(job, %slot, %detail, "housekeeping done");
                metrics::housekeeping_run(job, true);
                if let Err(e) = finish_slot(pool, job, slot, detail).await {
                    warn!(job, error = %e, "could not record the housekeeping result");
                }
                true
            }
            Err(e) => {
                warn!(job, error = %e, "housekeeping failed; the slot is released for a retry");
                metrics::housekeeping_run(job, false);
                let _ = release_slot(pool, job, slot).await;
                true
            }
        },
        Ok(false) => {
            debug!(job, %slot, "another replica has this slot");
            false
        }
        Err(e) => {
            warn!(job, error = %e, "housekeeping slot claim failed");
            false
        }
    }
}

pub async fn run_expire(pool: &PgPool, replica: &str, slot_len: Duration) -> bool {
    run_once_per_slot(
        pool,
        "expire_exceptions",
        slot_len,
        replica,
        |now| async move {
            let reopened = crate::db::exceptions::expire(pool, now).await?;
            Ok(serde_json::json!({ "reopened": reopened }))
        },
    )
    .await
}

pub async fn run_retention(
    pool: &PgPool,
    replica: &str,
    settings: &Settings,
    slot_len: Duration,
) -> bool {
    run_once_per_slot(pool, "retention", slot_len, replica, |now| async move {
        let c = &settings.checks;
        let keep = c
            .dormant_days
            .max(c.inbox_inactive_days)
            .max(c.event_window_days)
            + 1;
        let partitions_created = ensure_activity_partitions(pool, now).await?;
        let pruned = prune(pool, settings.retention.days, keep, now).await?;
        let mut detail = serde_json::to_value(pruned).unwrap_or_default();
        detail["activity_partitions_created"] = serde_json::json!(partitions_created);
        Ok(detail)
    })
    .await
}

/// Starts the housekeeping jobs on tokio-cron-scheduler (two process-level jobs, never
/// one per instance); the returned scheduler must be shut down on exit.
pub async fn start(
    pool: PgPool,
    settings: Arc<Settings>,
    replica: String,
    plan: Plan,
) -> Result<JobScheduler, JobSchedulerError> {
    // The coming months' partitions exist from start-up, not only after the first daily
    // run (every replica may do this: creating a month is idempotent).
    if let Err(e) = ensure_activity_partitions(&pool, Utc::now()).await {
        warn!(error = %e, "could not create the coming months' activity_events partitions; the daily retention run retries");
    }
    let sched = JobScheduler::new().await?;
    let (p, r, slot) = (pool.clone(), replica.clone(), plan.expire_exceptions_slot);
    sched
        .add(Job::new_async(
            plan.expire_exceptions_cron.as_str(),
            move |_id, _l| {
                let (p, r) = (p.clone(), r.clone());
                Box::pin(async move {
                    run_expire(&p, &r, slot).await;
                })
            },
        )?)
        .await?;
    let slot = plan.retention_slot;
    sched
        .add(Job::new_async(
            plan.retention_cron.as_str(),
            move |_id, _l| {
                let (p, r, s) = (pool.clone(), replica.clone(), Arc::clone(&settings));
                Box::pin(async move {
                    run_retention(&p, &r, &s, slot).await;
                })
            },
        )?)
        .await?;
    sched.start().await?;
    Ok(sched)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_replica_computes_the_same_slot_for_one_firing() {
        let at = |s: &str| s.parse::<DateTime<Utc>>().unwrap();
        let five = Duration::minutes(5);
        // Replicas fire a few hundred milliseconds apart: same slot.
        assert_eq!(
            slot_of(at("2026-11-24T10:05:00.020Z"), five),
            at("2026-11-24T10:05:00Z")
        );
        assert_eq!(
            slot_of(at("2026-11-24T10:05:00.950Z"), five),
            at("2026-11-24T10:05:00Z")
        );
        assert_eq!(
            slot_of(at("2026-11-24T10:09:59.999Z"), five),
            at("2026-11-24T10:05:00Z")
        );
        assert_eq!(
            slot_of(at("2026-11-24T10:10:00Z"), five),
            at("2026-11-24T10:10:00Z")
        );
        let day = Duration::days(1);
        assert_eq!(
            slot_of(at("2026-11-24T03:17:00.400Z"), day),
            at("2026-11-24T00:00:00Z")
        );
    }

    #[test]
    fn default_plan_parses_as_tokio_cron_scheduler_jobs() {
        // Six fields (seconds first): a five-field expression would fail at start-up.
        let plan = Plan::default();
        for cron in [&plan.expire_exceptions_cron, &plan.retention_cron] {
            assert!(
                Job::new_async(cron.as_str(), |_, _| Box::pin(async {})).is_ok(),
                "{cron}"
            );
        }
        assert!(Job::new_async("*/5 * * * *", |_, _| Box::pin(async {})).is_err());
    }
}
