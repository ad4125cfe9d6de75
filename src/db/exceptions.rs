//! Exceptions: an operator accepts a risk for (instance, check[, resource]) with a reason
//! and optional expiry. Matching findings become `muted` at once (and stay recorded);
//! removal or expiry reopens them. Every change is a row in finding_events.

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::{Acquire, PgPool, Postgres};
use uuid::Uuid;

use super::id_prefix::{self, Candidate, IdPrefix, IdPrefixError};

#[derive(Debug, Clone, Serialize)]
pub struct ExceptionRow {
    pub id: Uuid,
    pub instance_id: Uuid,
    pub instance_name: String,
    pub check_id: String,
    pub resource: Option<String>,
    pub reason: String,
    pub author: String,
    pub created_at: DateTime<Utc>,
    pub expires_at: Option<DateTime<Utc>>,
    pub muted_findings: i64,
}

pub struct NewException<'a> {
    pub instance_id: Uuid,
    pub check_id: &'a str,
    pub resource: Option<&'a str>,
    pub reason: &'a str,
    pub author: &'a str,
    pub expires_at: Option<DateTime<Utc>>,
    /// Add it even though `resource` matches no open or muted finding (e.g. ahead of the
    /// scan that will find it).
    pub force: bool,
}

/// Why an exception was not added.
#[derive(Debug, thiserror::Error)]
pub enum ExceptionError {
    #[error("exception {existing} already covers {check}{scope} on this instance{until}: remove it first (`intercom-sspm exception remove {existing}`) to replace it")]
    Duplicate {
        existing: Uuid,
        check: String,
        scope: String,
        until: String,
    },
    #[error("no open or muted finding of {check} has resource {resource:?} on this instance: check the spelling (`intercom-sspm findings --instance NAME --check {check} --status all`), or pass --force to add the exception anyway")]
    NoSuchFinding { check: String, resource: String },
    #[error(transparent)]
    Db(#[from] sqlx::Error),
}

/// Creates the exception and mutes matching open findings in one transaction.
/// Returns the exception id and how many findings were muted.
///
/// Refused when an active (unexpired) exception already covers the same scope: the same
/// resource, or every resource of the check; and, unless `force`, when `resource`
/// names no open or muted finding of the check (a typo would mute nothing).
/// Pass a pool, or a transaction to commit the change with the caller's other writes
/// (the audit row); inside a transaction this runs in a savepoint.
pub async fn add<'c>(
    conn: impl Acquire<'c, Database = Postgres>,
    new: &NewException<'_>,
) -> Result<(Uuid, u64), ExceptionError> {
    let mut tx = conn.begin().await?;
    // Two concurrent adds for the same (instance, check) take turns, so the duplicate
    // check below sees the other's row.
    sqlx::query!(
        "SELECT pg_advisory_xact_lock(hashtextextended('sspm.exceptions:' || $1::uuid::text || ':' || $2::text, 0))",
        new.instance_id,
        new.check_id
    )
    .execute(&mut *tx)
    .await?;
    lock_instances(&mut tx, &[new.instance_id]).await?;
    let existing = sqlx::query!(
        r#"SELECT id, resource, expires_at FROM sspm.exceptions
           WHERE instance_id = $1 AND check_id = $2
             AND (expires_at IS NULL OR expires_at > now())
             AND (resource IS NULL OR resource = $3)
           ORDER BY resource NULLS FIRST, created_at LIMIT 1"#,
        new.instance_id,
        new.check_id,
        new.resource
    )
    .fetch_optional(&mut *tx)
    .await?;
    if let Some(e) = existing {
        return Err(ExceptionError::Duplicate {
            existing: e.id,
            check: new.check_id.to_string(),
            scope: match &e.resource {
                Some(r) => format!(" / {r}"),
                None => " (every resource)".into(),
            },
            until: match e.expires_at {
                Some(t) => format!(" until {}", t.format("%Y-%m-%d %H:%M:%S UTC")),
                None => " permanently".into(),
            },
        });
    }
    if let (Some(resource), false) = (new.resource, new.force) {
        let known = sqlx::query_scalar!(
            r#"SELECT EXISTS (SELECT 1 FROM sspm.finding_rows
                   WHERE instance_id = $1 AND check_id = $2 AND resource = $3
                     AND status IN ('open', 'muted')) AS "known!""#,
            new.instance_id,
            new.check_id,
            resource
        )
        .fetch_one(&mut *tx)
        .await?;
        if !known {
            return Err(ExceptionError::NoSuchFinding {
                check: new.check_id.to_string(),
                resource: resource.to_string(),
            });
        }
    }
    let id = sqlx::query_scalar!(
        "INSERT INTO sspm.exceptions (instance_id, check_id, resource, reason, author, expires_at)
         VALUES ($1, $2, $3, $4, $5, $6) RETURNING id",
        new.instance_id,
        new.check_id,
        new.resource,
        new.reason,
        new.author,
        new.expires_at
    )
    .fetch_one(&mut *tx)
    .await?;
    let muted = sqlx::query!(
        r#"WITH muted AS (
               UPDATE sspm.finding_rows SET status = 'muted', exception_id = $1
               WHERE instance_id = $2 AND check_id = $3 AND ($4::text IS NULL OR resource = $4)
                 AND status = 'open'
               RETURNING id)
           INSERT INTO sspm.finding_events (finding_id, instance_id, from_status, to_status, reason)
           SELECT id, $2, 'open', 'muted', 'exception added' FROM muted"#,
        id,
        new.instance_id,
        new.check_id,
        new.resource
    )
    .execute(&mut *tx)
    .await?
    .rows_affected();
    tx.commit().await?;
    Ok((id, muted))
}

pub async fn list(
    pool: &PgPool,
    instance_id: Option<Uuid>,
) -> Result<Vec<ExceptionRow>, sqlx::Error> {
    sqlx::query_as!(
        ExceptionRow,
        r#"SELECT e.id, e.instance_id, i.name AS instance_name, e.check_id, e.resource, e.reason, e.author,
                  e.created_at, e.expires_at,
                  (SELECT count(*) FROM sspm.finding_rows f WHERE f.exception_id = e.id AND f.status = 'muted') AS "muted_findings!"
           FROM sspm.exceptions e JOIN sspm.instances i ON i.id = e.instance_id
           WHERE ($1::uuid IS NULL OR e.instance_id = $1)
           ORDER BY i.name, e.check_id, e.created_at"#,
        instance_id
    )
    .fetch_all(pool)
    .await
}

/// Deletes an exception; its muted findings reopen. Returns None when it did not exist.
pub async fn remove<'c>(
    conn: impl Acquire<'c, Database = Postgres>,
    id: Uuid,
) -> Result<Option<u64>, sqlx::Error> {
    let mut tx = conn.begin().await?;
    let instance: Vec<Uuid> =
        sqlx::query_scalar!("SELECT instance_id FROM sspm.exceptions WHERE id = $1", id)
            .fetch_all(&mut *tx)
            .await?;
    lock_instances(&mut tx, &instance).await?;
    let reopened = reopen_findings_of(&mut tx, &[id], "exception removed").await?;
    let deleted = sqlx::query!("DELETE FROM sspm.exceptions WHERE id = $1", id)
        .execute(&mut *tx)
        .await?
        .rows_affected();
    if deleted == 0 {
        return Ok(None);
    }
    tx.commit().await?;
    Ok(Some(reopened))
}

/// The exception whose id starts with `prefix` (exactly one, or an error listing them).
pub async fn resolve_id(
    executor: impl sqlx::PgExecutor<'_>,
    prefix: &IdPrefix,
) -> Result<Uuid, IdPrefixError> {
    let candidates = sqlx::query_as!(
        Candidate,
        r#"SELECT e.id, i.name || ' / ' || e.check_id || coalesce(' / ' || e.resource, '') AS "label!"
           FROM sspm.exceptions e JOIN sspm.instances i ON i.id = e.instance_id
           WHERE replace(e.id::text, '-', '') LIKE $1 || '%'
           ORDER BY e.id LIMIT $2"#,
        prefix.hex(),
        id_prefix::MAX_CANDIDATES + 1
    )
    .fetch_all(executor)
    .await?;
    id_prefix::pick(id_prefix::EXCEPTION, prefix, candidates)
}

/// The name of the instance an exception belongs to (the audit row's target).
pub async fn instance_name_of(
    executor: impl sqlx::PgExecutor<'_>,
    id: Uuid,
) -> Result<Option<String>, sqlx::Error> {
    sqlx::query_scalar!(
        "SELECT i.name FROM sspm.exceptions e JOIN sspm.instances i ON i.id = e.instance_id WHERE e.id = $1",
        id
    )
    .fetch_optional(executor)
    .await
}

/// Reopens findings muted by exceptions that have expired; returns how many.
pub async fn expire(pool: &PgPool, now: DateTime<Utc>) -> Result<u64, sqlx::Error> {
    let mut tx = pool.begin().await?;
    let expired = sqlx::query!(
        "SELECT id, instance_id FROM sspm.exceptions WHERE expires_at IS NOT NULL AND expires_at <= $1",
        now
    )
    .fetch_all(&mut *tx)
    .await?;
    let instances: Vec<Uuid> = expired.iter().map(|e| e.instance_id).collect();
    lock_instances(&mut tx, &instances).await?;
    let expired: Vec<Uuid> = expired.into_iter().map(|e| e.id).collect();
    let reopened = reopen_findings_of(&mut tx, &expired, "exception expired").await?;
    tx.commit().await?;
    Ok(reopened)
}

/// Locks the instances' rows, in id order, before their findings change. A status change
/// updates the instance's open counts (trigger of migration 20261202000010), and a scan
/// locks the instance row first and its findings after (`leases::lock_for_write`): taking
/// the same order here means the two wait for each other instead of deadlocking.
async fn lock_instances(
    conn: &mut sqlx::PgConnection,
    instance_ids: &[Uuid],
) -> Result<(), sqlx::Error> {
    if instance_ids.is_empty() {
        return Ok(());
    }
    sqlx::query!(
        "SELECT id FROM sspm.instances WHERE id = ANY($1) ORDER BY id FOR NO KEY UPDATE",
        instance_ids
    )
    .fetch_all(conn)
    .await?;
    Ok(())
}

async fn reopen_findings_of(
    conn: &mut sqlx::PgConnection,
    exception_ids: &[Uuid],
    reason: &str,
) -> Result<u64, sqlx::Error> {
    if exception_ids.is_empty() {
        return Ok(0);
    }
    let done = sqlx::query!(
        r#"WITH reopened AS (
               UPDATE sspm.finding_rows SET status = 'open', exception_id = NULL
               WHERE exception_id = ANY($1) AND status = 'muted'
               RETURNING id, instance_id)
           INSERT INTO sspm.finding_events (finding_id, instance_id, from_status, to_status, reason)
           SELECT id, instance_id, 'muted', 'open', $2 FROM reopened"#,
        exception_ids,
        reason
    )
    .execute(conn)
    .await?;
    Ok(done.rows_affected())
}
