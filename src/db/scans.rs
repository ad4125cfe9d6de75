//! Scan rows: inserted `running` when a scan starts, finished inside the scan's
//! transaction, failed or abandoned otherwise.

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::{PgConnection, PgExecutor};
use uuid::Uuid;

use super::Checked;
use crate::status::ScanStatus;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trigger {
    Schedule,
    Manual,
}

impl Trigger {
    pub fn as_str(self) -> &'static str {
        match self {
            Trigger::Schedule => "schedule",
            Trigger::Manual => "manual",
        }
    }
}

pub async fn insert_running(
    executor: impl PgExecutor<'_>,
    scan_id: Uuid,
    instance_id: Uuid,
    trigger: Trigger,
    replica: &str,
    lease_token: Option<Uuid>,
) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "INSERT INTO sspm.scans (id, instance_id, status, trigger, replica, lease_token)
         VALUES ($1, $2, 'running', $3, $4, $5)",
        scan_id,
        instance_id,
        trigger.as_str(),
        replica,
        lease_token
    )
    .execute(executor)
    .await?;
    Ok(())
}

pub struct ScanTotals {
    pub status: ScanStatus,
    pub error: Option<String>,
    pub error_kind: Option<String>,
    pub score: Option<f64>,
    pub coverage: Option<f64>,
    pub api_calls: i32,
    pub admins_seen: Option<i32>,
    pub events_ingested: Option<i32>,
    pub new_findings: Option<i32>,
    pub resolved_findings: Option<i32>,
    pub open_findings: Option<i32>,
}

/// Finishes a running scan's row; false when it is not running any more (marked abandoned
/// meanwhile). `notify_findings`, when given, is sent on `sspm_findings` by the same
/// statement (delivered at commit, like any NOTIFY): one round trip fewer per scan.
pub async fn finish(
    conn: &mut PgConnection,
    scan_id: Uuid,
    finished_at: DateTime<Utc>,
    totals: &ScanTotals,
    notify_findings: Option<&str>,
) -> Result<bool, sqlx::Error> {
    let done = sqlx::query_scalar!(
        r#"UPDATE sspm.scans
           SET status = $2, finished_at = $3, error = $4, error_kind = $5, score = $6, coverage = $7,
               api_calls = $8, admins_seen = $9, events_ingested = $10, new_findings = $11,
               resolved_findings = $12, open_findings = $13
           WHERE id = $1 AND status = 'running'
           RETURNING CASE WHEN $14::text IS NOT NULL
                          THEN pg_notify('sspm_findings', $14)::text END AS notified"#,
        scan_id,
        totals.status as ScanStatus,
        finished_at,
        totals.error,
        totals.error_kind,
        totals.score,
        totals.coverage,
        totals.api_calls,
        totals.admins_seen,
        totals.events_ingested,
        totals.new_findings,
        totals.resolved_findings,
        totals.open_findings,
        notify_findings,
    )
    .fetch_optional(conn)
    .await?;
    Ok(done.is_some())
}

/// Marks a still-running scan abandoned (lease lost, released on shutdown, or reclaimed).
pub async fn mark_abandoned(
    executor: impl PgExecutor<'_>,
    scan_id: Uuid,
    reason: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "UPDATE sspm.scans SET status = 'abandoned', finished_at = now(), error = $2, error_kind = 'abandoned'
         WHERE id = $1 AND status = 'running'",
        scan_id,
        reason
    )
    .execute(executor)
    .await?;
    Ok(())
}

#[derive(Debug, Clone, Serialize)]
pub struct ScanRow {
    pub id: Uuid,
    pub instance_id: Uuid,
    pub status: ScanStatus,
    pub trigger: String,
    pub started_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
    pub error: Option<String>,
    pub error_kind: Option<String>,
    pub score: Option<f64>,
    pub coverage: Option<f64>,
    pub api_calls: i32,
}

pub async fn recent(
    executor: impl PgExecutor<'_>,
    instance_id: Uuid,
    limit: i64,
) -> Result<Vec<ScanRow>, sqlx::Error> {
    let rows = sqlx::query!(
        r#"SELECT id, instance_id, status AS "status: Checked<ScanStatus>", trigger, started_at, finished_at,
                  error, error_kind, score, coverage, api_calls
           FROM sspm.scans WHERE instance_id = $1 ORDER BY started_at DESC LIMIT $2"#,
        instance_id,
        limit
    )
    .fetch_all(executor)
    .await?;
    rows.into_iter()
        .map(|r| {
            Ok(ScanRow {
                status: r.status.of("sspm.scans", r.id)?,
                id: r.id,
                instance_id: r.instance_id,
                trigger: r.trigger,
                started_at: r.started_at,
                finished_at: r.finished_at,
                error: r.error,
                error_kind: r.error_kind,
                score: r.score,
                coverage: r.coverage,
                api_calls: r.api_calls,
            })
        })
        .collect()
}
