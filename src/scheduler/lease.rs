//! The fenced lease SQL: claim due instances, heartbeat, release. Postgres is the only
//! source of truth; a replica that dies simply stops heartbeating and its leases lapse.

use std::time::Duration;

use sqlx::PgPool;
use uuid::Uuid;

use crate::region::Region;

/// One instance claimed by this replica.
#[derive(Debug, Clone)]
pub struct Claimed {
    pub instance_id: Uuid,
    pub lease_token: Uuid,
    pub scan_id: Uuid,
    pub schedule: Option<String>,
    pub consecutive_failures: i32,
    /// The scan row of a previous holder whose lease expired (now marked abandoned).
    pub reclaimed_scan: Option<Uuid>,
}

/// Claims up to `limit` due instances of `region` in ONE statement: skips rows other
/// replicas are claiming (SKIP LOCKED) or hold (live lease), takes a fresh fencing token,
/// pushes next_scan_at past the lease so a crash makes the instance due again when the
/// lease ends, marks a dead holder's scan `abandoned`, and inserts this scan's `running`
/// row. The schedule and failure count are read here, at claim time, so instance changes
/// apply to the next claim without a restart.
pub async fn claim(
    pool: &PgPool,
    region: Region,
    limit: i64,
    replica: &str,
    lease: Duration,
) -> Result<Vec<Claimed>, sqlx::Error> {
    let rows = sqlx::query!(
        r#"WITH due AS (
               SELECT id, lease_scan_id AS stale_scan_id
               FROM sspm.instances
               WHERE enabled AND next_scan_at <= now() AND region = $1
                 -- A live lease is never taken over, even when an operator made the
                 -- instance due meanwhile (queue, set-schedule, set-token, enable):
                 -- only an expired one is, so one instance never runs twice at once.
                 AND (lease_token IS NULL OR lease_expires_at <= now())
               ORDER BY next_scan_at
               LIMIT $2
               FOR UPDATE SKIP LOCKED
           ), claimed AS (
               UPDATE sspm.instances i
               SET lease_token = gen_random_uuid(),
                   lease_owner = $3,
                   lease_expires_at = now() + make_interval(secs => $4),
                   next_scan_at = now() + make_interval(secs => $4),
                   lease_scan_id = gen_random_uuid()
               FROM due
               WHERE i.id = due.id
               RETURNING i.id, i.lease_token, i.lease_scan_id, i.schedule, i.consecutive_failures,
                         due.stale_scan_id
           ), abandoned AS (
               UPDATE sspm.scans s
               SET status = 'abandoned', finished_at = now(), error_kind = 'abandoned',
                   error = 'lease expired: the replica running this scan stopped or lost the database'
               FROM claimed
               WHERE s.id = claimed.stale_scan_id AND s.status = 'running'
               RETURNING s.id
           ), started AS (
               INSERT INTO sspm.scans (id, instance_id, status, trigger, replica, lease_token)
               SELECT lease_scan_id, id, 'running', 'schedule', $3, lease_token FROM claimed
           )
           SELECT id AS "id!", lease_token AS "lease_token!", lease_scan_id AS "scan_id!", schedule,
                  consecutive_failures AS "consecutive_failures!",
                  (SELECT a.id FROM abandoned a WHERE a.id = claimed.stale_scan_id) AS reclaimed_scan
           FROM claimed"#,
        region.as_str(),
        limit,
        replica,
        lease.as_secs_f64(),
    )
    .fetch_all(pool)
    .await?;
    Ok(rows
        .into_iter()
        .map(|r| Claimed {
            instance_id: r.id,
            lease_token: r.lease_token,
            scan_id: r.scan_id,
            schedule: r.schedule,
            consecutive_failures: r.consecutive_failures,
            reclaimed_scan: r.reclaimed_scan,
        })
        .collect())
}

/// Extends every lease this replica still holds; returns the instance ids whose lease
/// was lost (reclaimed by another replica, or the instance removed).
pub async fn heartbeat(
    pool: &PgPool,
    held: &[(Uuid, Uuid)],
    lease: Duration,
) -> Result<Vec<Uuid>, sqlx::Error> {
    if held.is_empty() {
        return Ok(Vec::new());
    }
    let ids: Vec<Uuid> = held.iter().map(|(i, _)| *i).collect();
    let tokens: Vec<Uuid> = held.iter().map(|(_, t)| *t).collect();
    let extended: Vec<Uuid> = sqlx::query_scalar!(
        r#"UPDATE sspm.instances i
           SET lease_expires_at = now() + make_interval(secs => $3),
               next_scan_at = now() + make_interval(secs => $3)
           FROM UNNEST($1::uuid[], $2::uuid[]) AS h(id, token)
           WHERE i.id = h.id AND i.lease_token = h.token
           RETURNING i.id"#,
        &ids,
        &tokens,
        lease.as_secs_f64()
    )
    .fetch_all(pool)
    .await?;
    Ok(ids
        .into_iter()
        .filter(|id| !extended.contains(id))
        .collect())
}

/// Gives a lease back without a result (shutdown, cancellation, infrastructure error):
/// the instance is due at `next` and the scan row is marked abandoned, in one transaction.
pub async fn release(
    pool: &PgPool,
    instance_id: Uuid,
    lease_token: Uuid,
    scan_id: Uuid,
    next: chrono::DateTime<chrono::Utc>,
    reason: &str,
) -> Result<(), sqlx::Error> {
    let mut tx = pool.begin().await?;
    sqlx::query!(
        "UPDATE sspm.instances
         SET lease_token = NULL, lease_owner = NULL, lease_expires_at = NULL, lease_scan_id = NULL,
             next_scan_at = $3
         WHERE id = $1 AND lease_token = $2",
        instance_id,
        lease_token,
        next
    )
    .execute(&mut *tx)
    .await?;
    crate::db::scans::mark_abandoned(&mut *tx, scan_id, reason).await?;
    tx.commit().await?;
    Ok(())
}
