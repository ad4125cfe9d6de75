//! Attestations: an operator's signed statement, with evidence and an expiry, that a
//! manual control (one the API cannot show, e.g. 2FA enforced workspace-wide) is in place.

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::{Acquire, PgPool, Postgres};
use uuid::Uuid;

use super::id_prefix::{self, Candidate, IdPrefix, IdPrefixError};

#[derive(Debug, Clone, Serialize)]
pub struct AttestationRow {
    pub id: Uuid,
    pub instance_name: String,
    pub control_id: String,
    pub evidence: String,
    pub author: String,
    pub attested_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
}

/// Why an attestation was not added.
#[derive(Debug, thiserror::Error)]
pub enum AttestationError {
    #[error("{control} is already attested on this instance by attestation {existing} (until {until}): remove it first (`intercom-sspm attest remove {existing}`) to record a new one")]
    Duplicate {
        existing: Uuid,
        control: String,
        until: String,
    },
    #[error(transparent)]
    Db(#[from] sqlx::Error),
}

/// Records an attestation, refused while an unexpired one of the same control exists on
/// the instance. Pass a transaction to commit it with the audit row (a savepoint then).
pub async fn add<'c>(
    conn: impl Acquire<'c, Database = Postgres>,
    instance_id: Uuid,
    control_id: &str,
    evidence: &str,
    author: &str,
    expires_at: DateTime<Utc>,
) -> Result<Uuid, AttestationError> {
    let mut tx = conn.begin().await?;
    // Concurrent attestations of one control take turns, so the check below holds.
    sqlx::query!(
        "SELECT pg_advisory_xact_lock(hashtextextended('sspm.attestations:' || $1::uuid::text || ':' || $2::text, 0))",
        instance_id,
        control_id
    )
    .execute(&mut *tx)
    .await?;
    let existing = sqlx::query!(
        "SELECT id, expires_at FROM sspm.attestations
         WHERE instance_id = $1 AND control_id = $2 AND expires_at > now()
         ORDER BY expires_at DESC LIMIT 1",
        instance_id,
        control_id
    )
    .fetch_optional(&mut *tx)
    .await?;
    if let Some(e) = existing {
        return Err(AttestationError::Duplicate {
            existing: e.id,
            control: control_id.to_string(),
            until: e.expires_at.format("%Y-%m-%d %H:%M:%S UTC").to_string(),
        });
    }
    let id = sqlx::query_scalar!(
        "INSERT INTO sspm.attestations (instance_id, control_id, evidence, author, expires_at)
         VALUES ($1, $2, $3, $4, $5) RETURNING id",
        instance_id,
        control_id,
        evidence,
        author,
        expires_at
    )
    .fetch_one(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(id)
}

/// What a removed attestation was: its instance's name and the control.
#[derive(Debug, Clone)]
pub struct Removed {
    pub instance_name: String,
    pub control_id: String,
}

/// Deletes an attestation (its control is `not_evaluated` again from the next scan);
/// None when it did not exist.
pub async fn remove(
    executor: impl sqlx::PgExecutor<'_>,
    id: Uuid,
) -> Result<Option<Removed>, sqlx::Error> {
    sqlx::query_as!(
        Removed,
        "DELETE FROM sspm.attestations a USING sspm.instances i
         WHERE a.id = $1 AND i.id = a.instance_id
         RETURNING i.name AS instance_name, a.control_id",
        id
    )
    .fetch_optional(executor)
    .await
}

/// The attestation whose id starts with `prefix` (exactly one, or an error listing them).
pub async fn resolve_id(
    executor: impl sqlx::PgExecutor<'_>,
    prefix: &IdPrefix,
) -> Result<Uuid, IdPrefixError> {
    let candidates = sqlx::query_as!(
        Candidate,
        r#"SELECT a.id, i.name || ' / ' || a.control_id AS "label!"
           FROM sspm.attestations a JOIN sspm.instances i ON i.id = a.instance_id
           WHERE replace(a.id::text, '-', '') LIKE $1 || '%'
           ORDER BY a.id LIMIT $2"#,
        prefix.hex(),
        id_prefix::MAX_CANDIDATES + 1
    )
    .fetch_all(executor)
    .await?;
    id_prefix::pick(id_prefix::ATTESTATION, prefix, candidates)
}

pub async fn list(
    pool: &PgPool,
    instance_id: Option<Uuid>,
) -> Result<Vec<AttestationRow>, sqlx::Error> {
    sqlx::query_as!(
        AttestationRow,
        r#"SELECT a.id, i.name AS instance_name, a.control_id, a.evidence, a.author, a.attested_at, a.expires_at
           FROM sspm.attestations a JOIN sspm.instances i ON i.id = a.instance_id
           WHERE ($1::uuid IS NULL OR a.instance_id = $1)
           ORDER BY i.name, a.control_id, a.attested_at DESC"#,
        instance_id
    )
    .fetch_all(pool)
    .await
}

/// Attestation `id` when it is one of instance `instance_id`'s (the console's removal
/// confirmation reads it through the instance in its address).
pub async fn find(
    executor: impl sqlx::PgExecutor<'_>,
    instance_id: Uuid,
    id: Uuid,
) -> Result<Option<AttestationRow>, sqlx::Error> {
    sqlx::query_as!(
        AttestationRow,
        r#"SELECT a.id, i.name AS instance_name, a.control_id, a.evidence, a.author, a.attested_at, a.expires_at
           FROM sspm.attestations a JOIN sspm.instances i ON i.id = a.instance_id
           WHERE a.id = $1 AND a.instance_id = $2"#,
        id,
        instance_id
    )
    .fetch_optional(executor)
    .await
}
