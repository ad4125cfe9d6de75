//! Instances: onboarding rows, token sources, enable/disable, schedules.
//! The sealed token columns are read only by `token_source`; listings never select them.

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::{Acquire, PgExecutor, PgPool, Postgres};
use uuid::Uuid;

use super::Checked;
use crate::crypto::Sealed;
use crate::region::Region;
use crate::status::InstanceStatus;
use crate::token::{TokenRef, TokenSource};

/// What operators and listings see of an instance: everything but the token.
#[derive(Debug, Clone, Serialize)]
pub struct Instance {
    pub id: Uuid,
    pub name: String,
    pub region: Region,
    pub workspace_id: Option<String>,
    pub workspace_name: Option<String>,
    pub enabled: bool,
    pub schedule: Option<String>,
    pub next_scan_at: DateTime<Utc>,
    pub status: InstanceStatus,
    pub status_detail: Option<String>,
    pub last_scan_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    /// `sealed` or `reference`.
    pub token_kind: String,
    pub token_key_id: Option<String>,
    /// Filled in only by `instance show` (see `token_reference`); `find` and `list` leave it out.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token_ref: Option<String>,
    pub allowed_domains: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum InstanceError {
    #[error("an instance named {0:?} already exists: choose another --name")]
    DuplicateName(String),
    #[error("workspace {workspace_id} ({region}) is already onboarded as instance {existing:?}: use `instance set-token {existing}` to replace its token")]
    DuplicateWorkspace {
        workspace_id: String,
        region: Region,
        existing: String,
    },
    #[error("no instance named or with id {0:?}: see `intercom-sspm instance list`")]
    NotFound(String),
    #[error(transparent)]
    Db(#[from] sqlx::Error),
}

pub struct NewInstance<'a> {
    pub id: Uuid,
    pub name: &'a str,
    pub region: Region,
    pub workspace_id: &'a str,
    pub workspace_name: Option<&'a str>,
    pub token: &'a TokenSource,
    pub schedule: Option<&'a str>,
    pub allowed_domains: &'a [String],
}

/// The four token columns; exactly one source is set (a CHECK constraint agrees).
struct TokenColumns<'a> {
    ciphertext: Option<&'a [u8]>,
    nonce: Option<&'a [u8]>,
    key_id: Option<&'a str>,
    reference: Option<String>,
}

fn token_columns(token: &TokenSource) -> TokenColumns<'_> {
    match token {
        TokenSource::Sealed(s) => TokenColumns {
            ciphertext: Some(&s.ciphertext),
            nonce: Some(&s.nonce),
            key_id: Some(&s.key_id),
            reference: None,
        },
        TokenSource::Reference(r) => TokenColumns {
            ciphertext: None,
            nonce: None,
            key_id: None,
            reference: Some(r.to_string()),
        },
    }
}

/// Pass a pool, or a transaction to commit the row with the caller's other writes.
pub async fn insert<'c>(
    conn: impl Acquire<'c, Database = Postgres>,
    new: &NewInstance<'_>,
) -> Result<Instance, InstanceError> {
    let mut conn = conn.acquire().await?;
    insert_on(&mut conn, new).await
}

/// [`insert`] on a connection or transaction; not generic over `Acquire`, so the
/// caller's future stays `Send` (the console's handlers need that).
pub async fn insert_on(
    conn: &mut sqlx::PgConnection,
    new: &NewInstance<'_>,
) -> Result<Instance, InstanceError> {
    let TokenColumns {
        ciphertext,
        nonce,
        key_id,
        reference: token_ref,
    } = token_columns(new.token);
    let inserted = sqlx::query!(
        r#"INSERT INTO sspm.instances
               (id, name, region, workspace_id, workspace_name, token_ciphertext, token_nonce,
                token_key_id, token_ref, schedule, allowed_domains, next_scan_at)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, now())"#,
        new.id,
        new.name,
        new.region.as_str(),
        new.workspace_id,
        new.workspace_name,
        ciphertext,
        nonce,
        key_id,
        token_ref,
        new.schedule,
        new.allowed_domains,
    )
    .execute(&mut *conn)
    .await;
    match inserted {
        Ok(_) => {}
        Err(sqlx::Error::Database(db)) if db.constraint() == Some("instances_name_key") => {
            return Err(InstanceError::DuplicateName(new.name.to_string()))
        }
        Err(sqlx::Error::Database(db)) if db.constraint() == Some("instances_workspace_key") => {
            // Inside a caller's transaction the failed INSERT aborted it, so the lookup
            // may fail too; the error still names the workspace.
            let existing = find_by_workspace_on(conn, new.region, new.workspace_id)
                .await
                .ok()
                .flatten()
                .map(|i| i.name)
                .unwrap_or_default();
            return Err(InstanceError::DuplicateWorkspace {
                workspace_id: new.workspace_id.to_string(),
                region: new.region,
                existing,
            });
        }
        Err(e) => return Err(e.into()),
    }
    find_by_id(&mut *conn, new.id)
        .await?
        .ok_or_else(|| InstanceError::NotFound(new.id.to_string()))
}

/// Looks an instance up by id or (case-insensitive) name.
pub async fn find(
    executor: impl PgExecutor<'_>,
    name_or_id: &str,
) -> Result<Option<Instance>, sqlx::Error> {
    let id = Uuid::parse_str(name_or_id).ok();
    let mut found = select(executor, Some(name_or_id), id, Some(1)).await?;
    Ok(found.pop())
}

/// Looks an instance up by id: the scheduler after each claim, the console's pages. A plain
/// primary-key read, so its prepared plan is reused; `find`'s name-or-id condition is
/// planned again on every call (~0.1 ms per scan in `throughput_steady`).
pub async fn find_by_id(
    executor: impl PgExecutor<'_>,
    id: Uuid,
) -> Result<Option<Instance>, sqlx::Error> {
    sqlx::query_as!(
        InstanceRow,
        r#"SELECT id, name, region AS "region: Region", workspace_id, workspace_name, enabled, schedule, next_scan_at,
                  status AS "status: Checked<InstanceStatus>", status_detail, last_scan_at, created_at,
                  CASE WHEN token_key_id IS NULL THEN 'reference' ELSE 'sealed' END AS "token_kind!",
                  token_key_id, allowed_domains
           FROM sspm.instances WHERE id = $1"#,
        id,
    )
    .fetch_optional(executor)
    .await?
    .map(InstanceRow::into_instance)
    .transpose()
}

/// The columns `select`, `find_by_id` and the scheduler's claim (`leases::claim`) read (the
/// same list in each statement), before the stored status is checked.
#[derive(Debug, Clone)]
pub(crate) struct InstanceRow {
    pub(crate) id: Uuid,
    pub(crate) name: String,
    pub(crate) region: Region,
    pub(crate) workspace_id: Option<String>,
    pub(crate) workspace_name: Option<String>,
    pub(crate) enabled: bool,
    pub(crate) schedule: Option<String>,
    pub(crate) next_scan_at: DateTime<Utc>,
    pub(crate) status: Checked<InstanceStatus>,
    pub(crate) status_detail: Option<String>,
    pub(crate) last_scan_at: Option<DateTime<Utc>>,
    pub(crate) created_at: DateTime<Utc>,
    pub(crate) token_kind: String,
    pub(crate) token_key_id: Option<String>,
    pub(crate) allowed_domains: Vec<String>,
}

impl InstanceRow {
    pub(crate) fn into_instance(self) -> Result<Instance, sqlx::Error> {
        Ok(Instance {
            status: self.status.of("sspm.instances", self.id)?,
            id: self.id,
            name: self.name,
            region: self.region,
            workspace_id: self.workspace_id,
            workspace_name: self.workspace_name,
            enabled: self.enabled,
            schedule: self.schedule,
            next_scan_at: self.next_scan_at,
            status_detail: self.status_detail,
            last_scan_at: self.last_scan_at,
            created_at: self.created_at,
            token_kind: self.token_kind,
            token_key_id: self.token_key_id,
            token_ref: None,
            allowed_domains: self.allowed_domains,
        })
    }
}

/// The one statement listings and look-ups by name read instances with: every instance
/// (`name_or_id` None, ordered by name), or the one with that id or (case-insensitive)
/// name, the id first.
async fn select(
    executor: impl PgExecutor<'_>,
    name_or_id: Option<&str>,
    id: Option<Uuid>,
    limit: Option<i64>,
) -> Result<Vec<Instance>, sqlx::Error> {
    sqlx::query_as!(
        InstanceRow,
        r#"SELECT id, name, region AS "region: Region", workspace_id, workspace_name, enabled, schedule, next_scan_at,
                  status AS "status: Checked<InstanceStatus>", status_detail, last_scan_at, created_at,
                  CASE WHEN token_key_id IS NULL THEN 'reference' ELSE 'sealed' END AS "token_kind!",
                  token_key_id, allowed_domains
           FROM sspm.instances
           WHERE $2::text IS NULL OR id = $1 OR lower(name) = lower($2)
           ORDER BY (id = $1) DESC NULLS LAST, lower(name)
           LIMIT $3"#,
        id,
        name_or_id,
        limit,
    )
    .fetch_all(executor)
    .await?
    .into_iter()
    .map(InstanceRow::into_instance)
    .collect()
}

pub async fn get(pool: &PgPool, name_or_id: &str) -> Result<Instance, InstanceError> {
    find(pool, name_or_id)
        .await?
        .ok_or_else(|| InstanceError::NotFound(name_or_id.to_string()))
}

pub async fn find_by_workspace<'c>(
    conn: impl Acquire<'c, Database = Postgres>,
    region: Region,
    workspace_id: &str,
) -> Result<Option<Instance>, sqlx::Error> {
    let mut conn = conn.acquire().await?;
    find_by_workspace_on(&mut conn, region, workspace_id).await
}

async fn find_by_workspace_on(
    conn: &mut sqlx::PgConnection,
    region: Region,
    workspace_id: &str,
) -> Result<Option<Instance>, sqlx::Error> {
    let row = sqlx::query_scalar!(
        "SELECT id FROM sspm.instances WHERE region = $1 AND workspace_id = $2",
        region.as_str(),
        workspace_id
    )
    .fetch_optional(&mut *conn)
    .await?;
    match row {
        Some(id) => find(&mut *conn, &id.to_string()).await,
        None => Ok(None),
    }
}

pub async fn name_taken(pool: &PgPool, name: &str) -> Result<bool, sqlx::Error> {
    let taken = sqlx::query_scalar!(
        r#"SELECT EXISTS (SELECT 1 FROM sspm.instances WHERE lower(name) = lower($1)) AS "taken!""#,
        name
    )
    .fetch_one(pool)
    .await?;
    Ok(taken)
}

pub async fn list(pool: &PgPool) -> Result<Vec<Instance>, sqlx::Error> {
    select(pool, None, None, None).await
}

/// Where a referenced token lives (`file:/...`, `env:VAR`). Kept out of `find` and `list`
/// because `sspm_reader` may not read `token_ref` (instances_one_token_source makes
/// `token_key_id IS NULL` the same test), so those serve read-only roles too.
pub async fn token_reference(pool: &PgPool, id: Uuid) -> Result<Option<String>, sqlx::Error> {
    let row = sqlx::query_scalar!("SELECT token_ref FROM sspm.instances WHERE id = $1", id)
        .fetch_optional(pool)
        .await?;
    Ok(row.flatten())
}

/// The token columns of one instance, read only when a scan or a check needs them.
pub async fn token_source(
    executor: impl PgExecutor<'_>,
    id: Uuid,
) -> Result<Option<TokenSource>, sqlx::Error> {
    let row = sqlx::query!(
        "SELECT token_ciphertext, token_nonce, token_key_id, token_ref FROM sspm.instances WHERE id = $1",
        id
    )
    .fetch_optional(executor)
    .await?;
    Ok(row.and_then(|r| {
        token_source_of(
            r.token_ref,
            r.token_ciphertext,
            r.token_nonce,
            r.token_key_id,
        )
    }))
}

/// The token columns as a source: a reference wins; a sealed token needs all three parts.
pub(crate) fn token_source_of(
    token_ref: Option<String>,
    ciphertext: Option<Vec<u8>>,
    nonce: Option<Vec<u8>>,
    key_id: Option<String>,
) -> Option<TokenSource> {
    match (token_ref, ciphertext, nonce, key_id) {
        (Some(reference), _, _, _) => reference
            .parse::<TokenRef>()
            .ok()
            .map(TokenSource::Reference),
        (None, Some(ciphertext), Some(nonce), Some(key_id)) => Some(TokenSource::Sealed(Sealed {
            key_id,
            nonce,
            ciphertext,
        })),
        _ => None,
    }
}

pub async fn set_enabled(
    executor: impl PgExecutor<'_>,
    id: Uuid,
    enabled: bool,
) -> Result<(), sqlx::Error> {
    // Enabling makes the instance due now so the operator sees a scan soon.
    sqlx::query!(
        r#"UPDATE sspm.instances
           SET enabled = $2, updated_at = now(),
               next_scan_at = CASE WHEN $2 AND NOT enabled THEN now() ELSE next_scan_at END
           WHERE id = $1"#,
        id,
        enabled
    )
    .execute(executor)
    .await?;
    Ok(())
}

pub async fn set_token(
    executor: impl PgExecutor<'_>,
    id: Uuid,
    token: &TokenSource,
) -> Result<(), sqlx::Error> {
    let TokenColumns {
        ciphertext,
        nonce,
        key_id,
        reference: token_ref,
    } = token_columns(token);
    // A new token is worth trying at once; failures counted against the old one are void.
    sqlx::query!(
        r#"UPDATE sspm.instances
           SET token_ciphertext = $2, token_nonce = $3, token_key_id = $4, token_ref = $5,
               consecutive_failures = 0, next_scan_at = now(), updated_at = now()
           WHERE id = $1"#,
        id,
        ciphertext,
        nonce,
        key_id,
        token_ref
    )
    .execute(executor)
    .await?;
    Ok(())
}

pub async fn set_schedule(
    executor: impl PgExecutor<'_>,
    id: Uuid,
    schedule: Option<&str>,
    next_scan_at: DateTime<Utc>,
) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "UPDATE sspm.instances SET schedule = $2, next_scan_at = $3, updated_at = now() WHERE id = $1",
        id,
        schedule,
        next_scan_at
    )
    .execute(executor)
    .await?;
    Ok(())
}

pub async fn set_allowed_domains(
    executor: impl PgExecutor<'_>,
    id: Uuid,
    domains: &[String],
) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "UPDATE sspm.instances SET allowed_domains = $2, updated_at = now() WHERE id = $1",
        id,
        domains
    )
    .execute(executor)
    .await?;
    Ok(())
}

/// Removes an instance and, by cascade, its scans, findings and history.
pub async fn remove(executor: impl PgExecutor<'_>, id: Uuid) -> Result<bool, sqlx::Error> {
    let done = sqlx::query!("DELETE FROM sspm.instances WHERE id = $1", id)
        .execute(executor)
        .await?;
    Ok(done.rows_affected() == 1)
}

/// Makes the instance due now (a due time already past is kept, so it keeps its place).
pub async fn make_due(executor: impl PgExecutor<'_>, id: Uuid) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "UPDATE sspm.instances SET next_scan_at = LEAST(next_scan_at, now()), updated_at = now() WHERE id = $1",
        id
    )
    .execute(executor)
    .await?;
    Ok(())
}

/// Wakes running daemons (`LISTEN sspm_wakeup`) so a change takes effect within seconds.
pub async fn notify_wakeup(executor: impl PgExecutor<'_>) -> Result<(), sqlx::Error> {
    sqlx::query!("SELECT pg_notify('sspm_wakeup', '')")
        .execute(executor)
        .await?;
    Ok(())
}

/// Everything a scan needs to know about its instance beyond `Instance`.
#[derive(Debug, Clone)]
pub struct ScanTarget {
    pub check_overrides: serde_json::Value,
    pub activity_cursor_at: Option<DateTime<Utc>>,
    pub activity_covered_from: Option<DateTime<Utc>>,
    pub has_completed_scan: bool,
    pub attestations: Vec<String>,
    /// The database's clock when this was read: the scan's "now".
    pub now: DateTime<Utc>,
    /// The instance's last scan as of this read (see `db::admins::Inventory`).
    pub last_scan_id: Option<Uuid>,
    /// The token's columns (None when the instance has no usable token).
    pub token: Option<TokenSource>,
}

/// One statement for what a scan reads of its instance row before calling Intercom:
/// the database's time, settings, cursors, live attestations and the token's columns.
/// Manual scans read it here; the scheduler's claim reads the same columns with the same
/// rules (`leases::claim`), and `tests/it/claim_target.rs` keeps the two equal.
pub async fn scan_target(
    conn: &mut sqlx::PgConnection,
    id: Uuid,
) -> Result<Option<ScanTarget>, sqlx::Error> {
    let row = sqlx::query!(
        r#"SELECT now() AS "now!", check_overrides, activity_cursor_at, activity_covered_from,
                  last_success_at IS NOT NULL AS "has_completed_scan!", last_scan_id,
                  ARRAY(SELECT DISTINCT control_id FROM sspm.attestations a
                        WHERE a.instance_id = i.id AND a.expires_at > now()) AS "attestations!",
                  token_ciphertext, token_nonce, token_key_id, token_ref
           FROM sspm.instances i WHERE id = $1"#,
        id,
    )
    .fetch_optional(conn)
    .await?;
    Ok(row.map(|r| ScanTarget {
        check_overrides: r.check_overrides,
        activity_cursor_at: r.activity_cursor_at,
        activity_covered_from: r.activity_covered_from,
        has_completed_scan: r.has_completed_scan,
        attestations: r.attestations,
        now: r.now,
        last_scan_id: r.last_scan_id,
        token: token_source_of(
            r.token_ref,
            r.token_ciphertext,
            r.token_nonce,
            r.token_key_id,
        ),
    }))
}

/// How a scan ended, written to the instance in the scan's transaction.
pub struct InstanceScanUpdate<'a> {
    /// None keeps the current status (a 429 says nothing about access).
    pub status: Option<InstanceStatus>,
    pub status_detail: Option<&'a str>,
    pub scan_id: Uuid,
    pub at: DateTime<Utc>,
    pub succeeded: bool,
    /// A succeeded scan's own time (its findings' `last_seen_at`): the instance's
    /// `findings_seen_at`, which the findings found again follow (migration
    /// 20261208000010). None for any other outcome.
    pub findings_seen_at: Option<DateTime<Utc>>,
    pub workspace_id: Option<&'a str>,
    pub workspace_name: Option<&'a str>,
    pub activity_cursor_at: Option<DateTime<Utc>>,
    pub activity_covered_from: Option<DateTime<Utc>>,
    /// Whether this outcome counts toward failure backoff (a 429 does not).
    pub failure: bool,
}

/// Makes an instance due now and wakes the daemons (`scan --queue`).
pub async fn queue_now(pool: &PgPool, id: Uuid) -> Result<(), sqlx::Error> {
    let mut tx = pool.begin().await?;
    make_due(&mut *tx, id).await?;
    notify_wakeup(&mut *tx).await?;
    tx.commit().await?;
    Ok(())
}

/// The instance's stored check overrides (None when it does not exist).
pub async fn check_overrides(
    executor: impl PgExecutor<'_>,
    id: Uuid,
) -> Result<Option<serde_json::Value>, sqlx::Error> {
    sqlx::query_scalar!(
        "SELECT check_overrides FROM sspm.instances WHERE id = $1",
        id
    )
    .fetch_optional(executor)
    .await
}

/// [`check_overrides`], locking the row until the transaction ends, so concurrent edits
/// of different keys both land.
pub async fn check_overrides_for_update(
    executor: impl PgExecutor<'_>,
    id: Uuid,
) -> Result<Option<serde_json::Value>, sqlx::Error> {
    sqlx::query_scalar!(
        "SELECT check_overrides FROM sspm.instances WHERE id = $1 FOR UPDATE",
        id
    )
    .fetch_optional(executor)
    .await
}

pub async fn set_check_overrides(
    executor: impl PgExecutor<'_>,
    id: Uuid,
    overrides: &serde_json::Value,
) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "UPDATE sspm.instances SET check_overrides = $2 WHERE id = $1",
        id,
        overrides
    )
    .execute(executor)
    .await?;
    Ok(())
}
