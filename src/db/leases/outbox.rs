//! Lease statements of the alert outbox (`sspm.notification_outbox`): claim due messages
//! with `FOR UPDATE SKIP LOCKED` under a fencing token, settle them only while that token
//! still holds, hand back what was not sent. They follow the instance leases' rule
//! (`lease_expires_at` set from the database clock at claim) but cannot share their
//! statements: `query!` needs one literal per table.

use chrono::{DateTime, Utc};
use sqlx::PgPool;
use uuid::Uuid;

use super::LeaseTerms;

/// A claimed message.
#[derive(Debug, Clone)]
pub struct Claimed {
    pub id: Uuid,
    pub channel_id: Uuid,
    pub event: serde_json::Value,
    /// Including this one.
    pub attempts: i32,
    pub created_at: DateTime<Utc>,
}

/// Claims up to `limit` due messages for `lease`. The claim pushes `next_attempt_at` to
/// the lease's end, so a replica that dies mid-send leaves its rows due again then.
pub async fn claim(
    pool: &PgPool,
    lease_token: Uuid,
    owner: &str,
    lease: LeaseTerms,
    limit: i64,
) -> Result<Vec<Claimed>, sqlx::Error> {
    let lease_secs = lease.secs();
    let rows = sqlx::query!(
        r#"UPDATE sspm.notification_outbox o
           SET lease_token = $1, lease_owner = $2,
               lease_expires_at = now() + make_interval(secs => $3),
               next_attempt_at = now() + make_interval(secs => $3),
               attempts = o.attempts + 1, updated_at = now()
           WHERE o.id IN (
               SELECT id FROM sspm.notification_outbox
               WHERE status = 'pending' AND next_attempt_at <= now()
               ORDER BY next_attempt_at
               LIMIT $4
               FOR UPDATE SKIP LOCKED)
           RETURNING o.id, o.channel_id, o.event, o.attempts, o.created_at"#,
        lease_token,
        owner,
        lease_secs,
        limit
    )
    .fetch_all(pool)
    .await?;
    Ok(rows
        .into_iter()
        .map(|r| Claimed {
            id: r.id,
            channel_id: r.channel_id,
            event: r.event,
            attempts: r.attempts,
            created_at: r.created_at,
        })
        .collect())
}

/// Marks messages delivered, only those still under our lease.
pub async fn mark_delivered(
    pool: &PgPool,
    lease_token: Uuid,
    ids: &[Uuid],
    codes: &[Option<i32>],
) -> Result<u64, sqlx::Error> {
    if ids.is_empty() {
        return Ok(0);
    }
    let done = sqlx::query!(
        r#"UPDATE sspm.notification_outbox o
           SET status = 'delivered', delivered_at = now(), updated_at = now(),
               lease_token = NULL, lease_owner = NULL, lease_expires_at = NULL,
               last_status_code = u.code, last_error = NULL
           FROM UNNEST($2::uuid[], $3::int4[]) AS u(id, code)
           WHERE o.id = u.id AND o.lease_token = $1"#,
        lease_token,
        ids,
        codes as &[Option<i32>]
    )
    .execute(pool)
    .await?;
    Ok(done.rows_affected())
}

/// Settles one message as `pending` again (retry at `next`), `failed` or `dead`.
pub async fn mark(
    pool: &PgPool,
    lease_token: Uuid,
    id: Uuid,
    status: &str,
    next: DateTime<Utc>,
    code: Option<i32>,
    error: &str,
) -> Result<bool, sqlx::Error> {
    let done = sqlx::query!(
        r#"UPDATE sspm.notification_outbox
           SET status = $3, next_attempt_at = $4, last_status_code = $5, last_error = $6,
               lease_token = NULL, lease_owner = NULL, lease_expires_at = NULL, updated_at = now()
           WHERE id = $1 AND lease_token = $2"#,
        id,
        lease_token,
        status,
        next,
        code,
        error
    )
    .execute(pool)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Hands back rows claimed under `lease_token` that were not sent (shutdown): due now
/// for other replicas, and the claim does not count as an attempt.
pub async fn release(pool: &PgPool, lease_token: Uuid) -> Result<u64, sqlx::Error> {
    let done = sqlx::query!(
        r#"UPDATE sspm.notification_outbox
           SET lease_token = NULL, lease_owner = NULL, lease_expires_at = NULL,
               next_attempt_at = now(), attempts = greatest(attempts - 1, 0), updated_at = now()
           WHERE lease_token = $1 AND status = 'pending'"#,
        lease_token
    )
    .execute(pool)
    .await?;
    Ok(done.rows_affected())
}

/// `alerts retry`: a failed, dead (or pending) message becomes due now with a fresh
/// attempt budget. A delivered one is left alone (send it again with `channel test`).
pub async fn retry(pool: &PgPool, id: Uuid) -> Result<Option<String>, sqlx::Error> {
    let done = sqlx::query_scalar!(
        r#"UPDATE sspm.notification_outbox
           SET status = 'pending', attempts = 0, next_attempt_at = now(), created_at = now(),
               lease_token = NULL, lease_owner = NULL, lease_expires_at = NULL, updated_at = now()
           WHERE id = $1 AND status <> 'delivered'
           RETURNING id"#,
        id
    )
    .fetch_optional(pool)
    .await?;
    if done.is_some() {
        return Ok(None);
    }
    sqlx::query_scalar!(
        "SELECT status FROM sspm.notification_outbox WHERE id = $1",
        id
    )
    .fetch_optional(pool)
    .await
    .map(|s| Some(s.unwrap_or_else(|| "missing".into())))
}
