//! The audit trail (`sspm.audit_log`): who changed what, through which door. One function
//! writes a row, always on the caller's connection or transaction, so the row commits or
//! rolls back with the change it records. `details` must never carry a secret: callers pass
//! names and settings, never tokens or passwords.

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::{PgConnection, PgExecutor};

/// Which door a change came through (the `via` column).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Via {
    Console,
    Cli,
}

impl Via {
    pub fn as_str(self) -> &'static str {
        match self {
            Via::Console => "console",
            Via::Cli => "cli",
        }
    }
}

/// The person (or process) behind a change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Actor {
    pub name: String,
    pub via: Via,
}

impl Actor {
    /// The CLI's actor: $USER on the machine (or "cli" when unset), as for exceptions.
    pub fn cli() -> Self {
        Self {
            name: std::env::var("USER")
                .ok()
                .filter(|u| !u.trim().is_empty())
                .unwrap_or_else(|| "cli".into()),
            via: Via::Cli,
        }
    }

    pub fn console(user: &str) -> Self {
        Self {
            name: user.to_string(),
            via: Via::Console,
        }
    }
}

/// Appends one audit row on `conn` (pass the transaction of the change it records).
pub async fn record(
    conn: &mut PgConnection,
    actor: &Actor,
    action: &str,
    target: &str,
    details: serde_json::Value,
) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "INSERT INTO sspm.audit_log (actor, via, action, target, details) VALUES ($1, $2, $3, $4, $5)",
        actor.name,
        actor.via.as_str(),
        action,
        target,
        details
    )
    .execute(conn)
    .await?;
    Ok(())
}

#[derive(Debug, Clone, Serialize)]
pub struct AuditRow {
    pub id: i64,
    pub at: DateTime<Utc>,
    pub actor: String,
    pub via: String,
    pub action: String,
    pub target: String,
    pub details: serde_json::Value,
}

/// Newest first, keyset-paginated: rows with an id below `before` (None = from the newest).
pub async fn list(
    executor: impl PgExecutor<'_>,
    before: Option<i64>,
    limit: i64,
) -> Result<Vec<AuditRow>, sqlx::Error> {
    sqlx::query_as!(
        AuditRow,
        r#"SELECT id, at, actor, via, action, target, details
           FROM sspm.audit_log
           WHERE ($1::bigint IS NULL OR id < $1)
           ORDER BY id DESC
           LIMIT $2"#,
        before,
        limit
    )
    .fetch_all(executor)
    .await
}
