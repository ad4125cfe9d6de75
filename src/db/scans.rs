//! Scan rows: inserted `running` when a scan starts, finished inside the scan's
//! transaction, failed or abandoned otherwise.

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::PgExecutor;
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
