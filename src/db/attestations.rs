//! Attestations: an operator's signed statement, with evidence and an expiry, that a
//! manual control (one the API cannot show, e.g. 2FA enforced workspace-wide) is in place.

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::PgPool;
use uuid::Uuid;

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

pub async fn add(
    executor: impl sqlx::PgExecutor<'_>,
    instance_id: Uuid,
    control_id: &str,
    evidence: &str,
    author: &str,
    expires_at: DateTime<Utc>,
) -> Result<Uuid, sqlx::Error> {
    sqlx::query_scalar!(
        "INSERT INTO sspm.attestations (instance_id, control_id, evidence, author, expires_at)
         VALUES ($1, $2, $3, $4, $5) RETURNING id",
        instance_id,
        control_id,
        evidence,
        author,
        expires_at
    )
    .fetch_one(executor)
    .await
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
