//! Every lease statement, and only here: claims (scheduled and manual), heartbeat,
//! release, fenced release, lock-for-write, holder, due backlog. Postgres is the only
//! source of truth; a replica that dies simply stops heartbeating and its leases lapse.
//!
//! One rule everywhere: a lease is **live** while `lease_expires_at > now()` and
//! **expired** once `lease_expires_at <= now()`; a row is free when `lease_token IS NULL`
//! or its lease expired. Every statement below uses exactly that comparison (a guard test
//! at the end of this file fails when lease SQL appears anywhere else in the workspace).
//!
//! A lease is a fencing token (`lease_token`, fresh per claim), an owner (`lease_owner`,
//! the replica id) and an expiry (`lease_expires_at`). Writes made under a lease check the
//! token in the same transaction (`lock_for_write`, `record_scan_end`), so a holder whose
//! lease lapsed and was reclaimed can never overwrite the new holder's work.
//!
//! ## Other leased tables (the alerts outbox)
//!
//! The statements are not generic over the table: all SQL is checked at compile time
//! (`sqlx::query!` needs one literal string per statement, so a table name cannot be a
//! parameter), and runtime-built SQL would give that up. A table that needs leases (e.g.
//! `sspm.notification_outbox` with `lease_token uuid, lease_owner text,
//! lease_expires_at timestamptz`) gets its own claim / heartbeat / release statements
//! IN THIS MODULE (the outbox's are in [`outbox`]), written with the same rule and the
//! same shapes:
//!
//! - claim: `... WHERE <due> AND (lease_token IS NULL OR lease_expires_at <= now())
//!   ORDER BY <due column> LIMIT $n FOR UPDATE SKIP LOCKED`, then `SET lease_token =
//!   gen_random_uuid(), lease_owner = $owner, lease_expires_at = now() +
//!   make_interval(secs => $secs)`, returning the token ([`LeaseTerms::secs`] gives `$secs`);
//! - heartbeat and release: `WHERE id = $1 AND lease_token = $2` (the fence);
//! - reuse [`Held`] for heartbeats and [`LeaseTerms`] for the duration.

use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::{Acquire, PgConnection, PgExecutor, Postgres};
use uuid::Uuid;

use crate::db::instances::{
    token_source_of, Instance, InstanceRow, InstanceScanUpdate, ScanTarget,
};
use crate::db::Checked;
use crate::lifecycle::FindingStatus;
use crate::region::Region;
use crate::status::{InstanceStatus, ScanStatus};

pub mod outbox;

/// How long a claim or heartbeat holds a lease.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LeaseTerms(pub Duration);

impl LeaseTerms {
    /// The `make_interval(secs => $n)` argument.
    pub fn secs(self) -> f64 {
        self.0.as_secs_f64()
    }
}

/// A lease this process holds: the row and its fencing token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Held {
    pub id: Uuid,
    pub token: Uuid,
}

/// One instance claimed by this replica.
#[derive(Debug, Clone)]
pub struct Claimed {
    pub instance_id: Uuid,
    pub lease_token: Uuid,
    pub scan_id: Uuid,
    pub consecutive_failures: i32,
    /// The scan row of a previous holder whose lease expired (now marked abandoned).
    pub reclaimed_scan: Option<Uuid>,
    /// The instance as the claim left it, read by the claim itself (one look-up per scan
    /// fewer); checked by [`Claimed::instance`].
    row: InstanceRow,
    /// What the scan reads of its instance before calling Intercom, read by the claim too
    /// (`instances::scan_target` for a manual scan): a steady scan's first connection,
    /// with its two pings, and one statement fewer.
    target: ScanTarget,
}

/// Claims up to `limit` due instances of `region` in ONE statement: skips rows other
/// replicas are claiming (SKIP LOCKED) or hold (live lease), takes a fresh fencing token,
/// pushes next_scan_at past the lease so a crash makes the instance due again when the
/// lease ends, marks a dead holder's scan `abandoned`, and inserts this scan's `running`
/// row. The schedule and failure count are read here, at claim time, so instance changes
/// apply to the next claim without a restart.
pub async fn claim(
    executor: impl PgExecutor<'_>,
    region: Region,
    limit: i64,
    replica: &str,
    lease: LeaseTerms,
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
               -- The instance's columns as `instances::find_by_id` reads them (InstanceRow).
               RETURNING i.id, i.lease_token, i.lease_scan_id, i.schedule, i.consecutive_failures,
                         due.stale_scan_id, i.name, i.region, i.workspace_id, i.workspace_name,
                         i.enabled, i.next_scan_at, i.status, i.status_detail, i.last_scan_at,
                         i.created_at, i.token_key_id, i.allowed_domains,
                         CASE WHEN i.token_key_id IS NULL THEN 'reference' ELSE 'sealed' END AS token_kind,
                         -- What `instances::scan_target` reads (ScanTarget).
                         i.check_overrides, i.activity_cursor_at, i.activity_covered_from,
                         i.last_success_at IS NOT NULL AS has_completed_scan, i.last_scan_id,
                         ARRAY(SELECT DISTINCT control_id FROM sspm.attestations a
                               WHERE a.instance_id = i.id AND a.expires_at > now()) AS attestations,
                         i.token_ciphertext, i.token_nonce, i.token_ref
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
                  (SELECT a.id FROM abandoned a WHERE a.id = claimed.stale_scan_id) AS reclaimed_scan,
                  name AS "name!", region AS "region!: Region", workspace_id, workspace_name,
                  enabled AS "enabled!", next_scan_at AS "next_scan_at!",
                  status AS "status!: Checked<InstanceStatus>", status_detail, last_scan_at,
                  created_at AS "created_at!", token_key_id, allowed_domains AS "allowed_domains!",
                  token_kind AS "token_kind!", now() AS "now!",
                  check_overrides AS "check_overrides!", activity_cursor_at, activity_covered_from,
                  has_completed_scan AS "has_completed_scan!", last_scan_id,
                  attestations AS "attestations!", token_ciphertext, token_nonce, token_ref
           FROM claimed"#,
        region.as_str(),
        limit,
        replica,
        lease.secs(),
    )
    .fetch_all(executor)
    .await?;
    Ok(rows
        .into_iter()
        .map(|r| Claimed {
            instance_id: r.id,
            lease_token: r.lease_token,
            scan_id: r.scan_id,
            consecutive_failures: r.consecutive_failures,
            reclaimed_scan: r.reclaimed_scan,
            row: InstanceRow {
                id: r.id,
                name: r.name,
                region: r.region,
                workspace_id: r.workspace_id,
                workspace_name: r.workspace_name,
                enabled: r.enabled,
                schedule: r.schedule,
                next_scan_at: r.next_scan_at,
                status: r.status,
                status_detail: r.status_detail,
                last_scan_at: r.last_scan_at,
                created_at: r.created_at,
                token_kind: r.token_kind,
                token_key_id: r.token_key_id.clone(),
                allowed_domains: r.allowed_domains,
            },
            target: ScanTarget {
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
            },
        })
        .collect())
}

impl Claimed {
    /// The claimed instance, as the claim read it; an error when its stored status is one
    /// this build does not know (the caller hands the lease back, as for a failed read).
    pub fn instance(&self) -> Result<Instance, sqlx::Error> {
        self.row.clone().into_instance()
    }

    /// What the scan reads of its instance before calling Intercom, as the claim read it.
    pub fn target(&self) -> ScanTarget {
        self.target.clone()
    }

    /// The instance's schedule as the claim read it (None: the configured default).
    pub fn schedule(&self) -> Option<&str> {
        self.row.schedule.as_deref()
    }

    pub fn held(&self) -> Held {
        Held {
            id: self.instance_id,
            token: self.lease_token,
        }
    }
}

/// A lease taken by a foreground `intercom-sspm scan`, so it never overlaps a daemon's
/// scan of the same instance.
#[derive(Debug, Clone)]
pub struct ManualLease {
    pub lease_token: Uuid,
    pub scan_id: Uuid,
    /// Restored when the lease is released: a manual scan does not move the schedule.
    pub previous_next_scan_at: DateTime<Utc>,
}

/// Takes the instance's lease unless another holder's lease is still live (then None),
/// marks a lapsed holder's scan abandoned and inserts this scan's `running` row.
pub async fn claim_manual(
    executor: impl PgExecutor<'_>,
    id: Uuid,
    owner: &str,
    lease: LeaseTerms,
) -> Result<Option<ManualLease>, sqlx::Error> {
    let row = sqlx::query!(
        r#"WITH cur AS (
               SELECT id, next_scan_at, lease_scan_id AS stale_scan_id
               FROM sspm.instances
               WHERE id = $1 AND (lease_token IS NULL OR lease_expires_at <= now())
               FOR UPDATE
           ), leased AS (
               UPDATE sspm.instances i
               SET lease_token = gen_random_uuid(), lease_owner = $2,
                   lease_expires_at = now() + make_interval(secs => $3),
                   lease_scan_id = gen_random_uuid(),
                   next_scan_at = GREATEST(i.next_scan_at, now() + make_interval(secs => $3))
               FROM cur WHERE i.id = cur.id
               RETURNING i.lease_token, i.lease_scan_id, cur.next_scan_at AS previous, cur.stale_scan_id
           ), abandoned AS (
               UPDATE sspm.scans s
               SET status = 'abandoned', finished_at = now(), error_kind = 'abandoned',
                   error = 'lease expired: the process running this scan stopped'
               FROM leased WHERE s.id = leased.stale_scan_id AND s.status = 'running'
           ), started AS (
               INSERT INTO sspm.scans (id, instance_id, status, trigger, replica, lease_token)
               SELECT lease_scan_id, $1, 'running', 'manual', $2, lease_token FROM leased
           )
           SELECT lease_token AS "lease_token!", lease_scan_id AS "scan_id!", previous AS "previous!"
           FROM leased"#,
        id,
        owner,
        lease.secs()
    )
    .fetch_optional(executor)
    .await?;
    Ok(row.map(|r| ManualLease {
        lease_token: r.lease_token,
        scan_id: r.scan_id,
        previous_next_scan_at: r.previous,
    }))
}

/// Who holds the instance's live lease, for the "already being scanned" message.
pub async fn holder(
    executor: impl PgExecutor<'_>,
    id: Uuid,
) -> Result<Option<String>, sqlx::Error> {
    let owner = sqlx::query_scalar!(
        "SELECT lease_owner FROM sspm.instances WHERE id = $1 AND lease_expires_at > now()",
        id
    )
    .fetch_optional(executor)
    .await?;
    Ok(owner.flatten())
}

/// Extends every lease this replica still holds; returns the instance ids whose lease
/// was lost (reclaimed by another replica, or the instance removed).
pub async fn heartbeat(
    executor: impl PgExecutor<'_>,
    held: &[Held],
    lease: LeaseTerms,
) -> Result<Vec<Uuid>, sqlx::Error> {
    if held.is_empty() {
        return Ok(Vec::new());
    }
    let ids: Vec<Uuid> = held.iter().map(|h| h.id).collect();
    let tokens: Vec<Uuid> = held.iter().map(|h| h.token).collect();
    let extended: Vec<Uuid> = sqlx::query_scalar!(
        r#"UPDATE sspm.instances i
           SET lease_expires_at = now() + make_interval(secs => $3),
               -- Follow the lease unless an operator set a time during the scan (see
               -- record_scan_end: their choice is applied when the scan finishes).
               next_scan_at = CASE WHEN i.next_scan_at IS DISTINCT FROM i.lease_expires_at
                                   THEN i.next_scan_at
                                   ELSE now() + make_interval(secs => $3) END
           FROM UNNEST($1::uuid[], $2::uuid[]) AS h(id, token)
           WHERE i.id = h.id AND i.lease_token = h.token
           RETURNING i.id"#,
        &ids,
        &tokens,
        lease.secs()
    )
    .fetch_all(executor)
    .await?;
    Ok(ids
        .into_iter()
        .filter(|id| !extended.contains(id))
        .collect())
}

/// When a released instance is due again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Due {
    /// At once, by the database's clock (`now()`): a replica whose clock runs ahead must
    /// not hand an instance back "due now" in its own future.
    Now,
    /// At this time (itself computed from the database's clock, or read from the row).
    At(DateTime<Utc>),
}

impl Due {
    fn at(self) -> Option<DateTime<Utc>> {
        match self {
            Due::Now => None,
            Due::At(t) => Some(t),
        }
    }
}

/// Gives a lease back without a result (shutdown, cancellation, infrastructure error,
/// an interrupted manual scan): the instance is due at `next` and the scan row is marked
/// abandoned, in one transaction (a nested one when `conn` is already in a transaction).
pub async fn release<'c>(
    conn: impl Acquire<'c, Database = Postgres>,
    held: Held,
    scan_id: Uuid,
    next: Due,
    reason: &str,
) -> Result<(), sqlx::Error> {
    let mut tx = conn.begin().await?;
    sqlx::query!(
        "UPDATE sspm.instances
         SET lease_token = NULL, lease_owner = NULL, lease_expires_at = NULL, lease_scan_id = NULL,
             next_scan_at = COALESCE($3, now())
         WHERE id = $1 AND lease_token = $2",
        held.id,
        held.token,
        next.at()
    )
    .execute(&mut *tx)
    .await?;
    crate::db::scans::mark_abandoned(&mut *tx, scan_id, reason).await?;
    tx.commit().await?;
    Ok(())
}

/// Gives a manual lease back without a result, with the schedule as it was.
pub async fn release_manual<'c>(
    conn: impl Acquire<'c, Database = Postgres>,
    id: Uuid,
    lease: &ManualLease,
    reason: &str,
) -> Result<(), sqlx::Error> {
    release(
        conn,
        Held {
            id,
            token: lease.lease_token,
        },
        lease.scan_id,
        Due::At(lease.previous_next_scan_at),
        reason,
    )
    .await
}

/// The end of a scan's row: its totals, and the `sspm_findings` payload to send (delivered
/// at commit, like any NOTIFY) for a scan that evaluated checks.
/// The row is the one `InstanceScanUpdate::scan_id` names.
pub struct ScanRowEnd<'a> {
    pub totals: &'a crate::db::scans::ScanTotals,
    pub notify_findings: Option<&'a str>,
}

/// What [`record_scan_end`] matched. Either false means the caller's transaction must roll
/// back: the scan row was not running any more (marked abandoned meanwhile: the lease was
/// reclaimed), or the instance row is gone or no longer leased by us.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ScanEndWritten {
    pub scan_finished: bool,
    pub instance_updated: bool,
}

/// Finishes the scan's row, records how the scan ended on its instance
/// ([`InstanceScanUpdate`]) and, for a fenced scan (`release`: the lease held and the next
/// due time), gives the lease back with the schedule moved, in ONE statement: the scan's
/// transaction locked the instance row with [`lock_for_write`], and each statement is a
/// round trip for the daemon and Postgres.
///
/// A succeeded scan also sets the instance's latest-succeeded columns to its own, which
/// the `scans_latest_upd_row` trigger (the one place that maintains them) would otherwise
/// write in a second version of the instance row after this statement. The trigger still
/// runs: it finds them equal and writes nothing, or corrects them when another scan of the
/// instance started later and succeeded first.
pub async fn record_scan_end(
    conn: &mut PgConnection,
    id: Uuid,
    scan: ScanRowEnd<'_>,
    u: &InstanceScanUpdate<'_>,
    release: Option<(Held, DateTime<Utc>)>,
) -> Result<ScanEndWritten, sqlx::Error> {
    if let Some((held, _)) = &release {
        debug_assert_eq!(held.id, id, "a lease is released on its own instance");
    }
    let t = scan.totals;
    debug_assert_eq!(
        u.succeeded,
        t.status == ScanStatus::Succeeded,
        "the instance records the scan row's outcome"
    );
    let token = release.as_ref().map(|(held, _)| held.token);
    let next = release.as_ref().map(|(_, next)| *next);
    let done = sqlx::query!(
        r#"WITH finished AS (
               UPDATE sspm.scans
               SET status = $14, finished_at = $4, error = $15, error_kind = $16, score = $17,
                   coverage = $18, api_calls = $19, admins_seen = $20, events_ingested = $21,
                   new_findings = $22, resolved_findings = $23, open_findings = $24
               WHERE id = $5 AND status = 'running'
               RETURNING CASE WHEN $25::text IS NOT NULL
                              THEN pg_notify('sspm_findings', $25)::text END AS notified
           ),
           ended AS (
               UPDATE sspm.instances SET
                   status = COALESCE($2, status),
                   status_detail = CASE WHEN $2::text IS NULL THEN status_detail ELSE $3 END,
                   last_scan_at = $4,
                   last_scan_id = $5,
                   last_success_at = CASE WHEN $6 THEN $4 ELSE last_success_at END,
                   last_succeeded_scan_id = CASE WHEN $6 THEN $5 ELSE last_succeeded_scan_id END,
                   last_score = CASE WHEN $6 THEN $17 ELSE last_score END,
                   last_coverage = CASE WHEN $6 THEN $18 ELSE last_coverage END,
                   -- $26 is set exactly for a succeeded scan (`findings_seen_at`).
                   findings_seen_at = COALESCE($26, findings_seen_at),
                   findings_seen_scan_id = CASE WHEN $26::timestamptz IS NOT NULL THEN $5
                                                ELSE findings_seen_scan_id END,
                   workspace_id = COALESCE(workspace_id, $7),
                   workspace_name = COALESCE($8, workspace_name),
                   activity_cursor_at = COALESCE($9, activity_cursor_at),
                   activity_covered_from = COALESCE($10, activity_covered_from),
                   consecutive_failures = CASE WHEN $6 THEN 0 WHEN $11 THEN consecutive_failures + 1
                                               ELSE consecutive_failures END,
                   updated_at = now(),
                   -- The release, when fenced ($12 is the token): claims and heartbeats keep
                   -- next_scan_at equal to lease_expires_at; anything else means an operator
                   -- queued a scan or changed the schedule meanwhile, and their choice wins
                   -- over the computed time ($13).
                   lease_token = CASE WHEN $12::uuid IS NULL THEN lease_token END,
                   lease_owner = CASE WHEN $12::uuid IS NULL THEN lease_owner END,
                   lease_expires_at = CASE WHEN $12::uuid IS NULL THEN lease_expires_at END,
                   lease_scan_id = CASE WHEN $12::uuid IS NULL THEN lease_scan_id END,
                   next_scan_at = CASE WHEN $12::uuid IS NULL
                                            OR next_scan_at IS DISTINCT FROM lease_expires_at
                                       THEN next_scan_at ELSE $13 END
               WHERE id = $1 AND ($12::uuid IS NULL OR lease_token = $12)
               RETURNING 1 AS one
           )
           SELECT EXISTS (SELECT 1 FROM finished) AS "scan_finished!",
                  EXISTS (SELECT 1 FROM ended) AS "instance_updated!""#,
        id,
        u.status as Option<InstanceStatus>,
        u.status_detail,
        u.at,
        u.scan_id,
        u.succeeded,
        u.workspace_id,
        u.workspace_name,
        u.activity_cursor_at,
        u.activity_covered_from,
        u.failure,
        token,
        next,
        t.status as ScanStatus,
        t.error,
        t.error_kind,
        t.score,
        t.coverage,
        t.api_calls,
        t.admins_seen,
        t.events_ingested,
        t.new_findings,
        t.resolved_findings,
        t.open_findings,
        scan.notify_findings,
        u.findings_seen_at,
    )
    .fetch_one(conn)
    .await?;
    Ok(ScanEndWritten {
        scan_finished: done.scan_finished,
        instance_updated: done.instance_updated,
    })
}

/// What [`lock_for_write`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteLock {
    /// The row is locked for the rest of the transaction and may be written. `now` is the
    /// transaction's `now()` (the same value any later `now()` in it returns), read here
    /// to save the scan a round trip; `last_scan_id` is the instance's, under the lock.
    Locked {
        now: DateTime<Utc>,
        last_scan_id: Option<Uuid>,
    },
    /// The instance no longer exists (removed while the scan ran).
    Gone,
    /// The expected token no longer holds the lease.
    LeaseLost,
}

/// Locks the instance row for the rest of the caller's transaction and checks it may
/// still be written: it exists, and when `fence` is given, that token still holds it.
pub async fn lock_for_write(
    conn: &mut PgConnection,
    id: Uuid,
    fence: Option<Uuid>,
) -> Result<WriteLock, sqlx::Error> {
    let row = sqlx::query_as!(
        LockedInstance,
        r#"SELECT lease_token, last_scan_id, now() AS "now!" FROM sspm.instances WHERE id = $1 FOR UPDATE"#,
        id
    )
    .fetch_optional(conn)
    .await?;
    Ok(write_lock(row, fence))
}

/// The instance row as a write transaction locked it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct LockedInstance {
    lease_token: Option<Uuid>,
    last_scan_id: Option<Uuid>,
    /// The transaction's `now()`.
    now: DateTime<Utc>,
}

/// Whether a locked instance row (None: not found) may be written by the holder of
/// `fence` (None: an unfenced write).
fn write_lock(row: Option<LockedInstance>, fence: Option<Uuid>) -> WriteLock {
    match (row, fence) {
        (None, _) => WriteLock::Gone,
        (Some(row), Some(expected)) if row.lease_token != Some(expected) => WriteLock::LeaseLost,
        (Some(row), _) => WriteLock::Locked {
            now: row.now,
            last_scan_id: row.last_scan_id,
        },
    }
}

/// What [`lock_for_scan_write`] read with its lock.
#[derive(Debug)]
pub struct ScanWriteStart {
    pub lock: WriteLock,
    /// What the scan's lifecycle plan starts from.
    pub plan: crate::db::findings::PlanInputs,
    /// Whether any alert channel is enabled (false also when the instance is gone): a
    /// scan whose transitions could alert reads the channels only then, a round trip
    /// fewer for most scans with changes (`notify::ScanNotice::channels_enabled`).
    pub any_channel_enabled: bool,
}

/// [`lock_for_write`] for a scan that writes findings, with what its lifecycle plan starts
/// from (`findings::PlanInputs`: the findings, locked too, and the exceptions in force at
/// `at`) and whether any alert channel is enabled, in one statement: round trips fewer
/// per scan. The instance row is locked before its findings, the order every writer of an
/// instance keeps (the Append runs its branches in order). The exceptions are read by a
/// volatile function, after the lock is granted (migration 20261207000030): the
/// statement's own snapshot predates the wait, and would miss an exception that a
/// transaction holding the lock meanwhile added while seeing the findings it muted. A lost
/// fence still returns the findings: the caller rolls back.
pub async fn lock_for_scan_write(
    conn: &mut PgConnection,
    id: Uuid,
    fence: Option<Uuid>,
    at: DateTime<Utc>,
) -> Result<ScanWriteStart, sqlx::Error> {
    let rows = sqlx::query!(
        r#"WITH instance AS (
               SELECT lease_token, last_scan_id, now() AS now
               FROM sspm.instances WHERE id = $1 FOR UPDATE
           ), locked AS (
               SELECT id, check_id, resource, status, severity, exception_id, content_digest,
                      last_seen_follows_instance
               FROM sspm.finding_rows WHERE instance_id = $1 FOR UPDATE
           )
           SELECT 0 AS "kind!", NULL::uuid AS id, NULL::text AS check_id, NULL::text AS resource,
                  NULL::text AS "status?: Checked<FindingStatus>", NULL::text AS severity,
                  NULL::uuid AS exception_id, NULL::bigint AS content_digest,
                  NULL::bool AS follows, lease_token, last_scan_id, now,
                  EXISTS (SELECT 1 FROM sspm.notification_channels WHERE enabled) AS channels_enabled
           FROM instance
           UNION ALL
           SELECT 1, id, check_id, resource, status, severity, exception_id, content_digest,
                  last_seen_follows_instance, NULL, NULL, NULL, NULL
           FROM locked
           UNION ALL
           SELECT 2, id, check_id, resource, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL
           FROM sspm.exceptions_in_force($1, $2)"#,
        id,
        at
    )
    .fetch_all(&mut *conn)
    .await?;
    let mut instance = None;
    let mut any_channel_enabled = false;
    let mut plan = crate::db::findings::PlanInputs::default();
    for r in rows {
        if r.kind == 0 {
            instance = Some(LockedInstance {
                lease_token: r.lease_token,
                last_scan_id: r.last_scan_id,
                now: r.now.ok_or_else(|| {
                    sqlx::Error::Decode(format!("sspm.instances row {id}: now() is NULL").into())
                })?,
            });
            any_channel_enabled = r.channels_enabled.unwrap_or(false);
            continue;
        }
        plan.push(crate::db::findings::PlanRow {
            is_exception: r.kind == 2,
            id: r.id,
            check_id: r.check_id,
            resource: r.resource,
            status: r.status,
            severity: r.severity,
            exception_id: r.exception_id,
            content_digest: r.content_digest,
            last_seen_follows_instance: r.follows.unwrap_or(false),
        })?;
    }
    Ok(ScanWriteStart {
        lock: write_lock(instance, fence),
        plan,
        any_channel_enabled,
    })
}

/// Instances due at least `overdue_by` ago and not held by a live lease: how many, and
/// how long the oldest has waited (seconds, 0 when none). Uses `instances_due_idx`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DueBacklog {
    pub count: i64,
    pub oldest_age_secs: f64,
}

pub async fn due_backlog(
    executor: impl PgExecutor<'_>,
    overdue_by: Duration,
) -> Result<DueBacklog, sqlx::Error> {
    let due = sqlx::query!(
        r#"SELECT count(*) AS "backlog!",
                  COALESCE(EXTRACT(EPOCH FROM now() - min(next_scan_at))::float8, 0) AS "oldest_age!"
           FROM sspm.instances
           WHERE enabled AND next_scan_at <= now() - make_interval(secs => $1)
             AND (lease_token IS NULL OR lease_expires_at <= now())"#,
        overdue_by.as_secs_f64()
    )
    .fetch_one(executor)
    .await?;
    Ok(DueBacklog {
        count: due.backlog,
        oldest_age_secs: due.oldest_age,
    })
}

/// The guard: no lease statement outside this module. It reads every Rust source of the
/// workspace (product, simulator, bench), takes its string literals (comments are not
/// SQL) and flags any that names a lease column of a table other than `sspm.scans`
/// (whose `lease_token` only records which lease ran a scan). Tests under `tests/` may
/// still set lease state up directly; they are not scanned.
#[cfg(test)]
mod guard {
    use std::path::{Path, PathBuf};

    const THIS_MODULE: &str = "src/db/leases.rs";
    const LEASE_COLUMNS: [&str; 4] = [
        "lease_token",
        "lease_owner",
        "lease_expires_at",
        "lease_scan_id",
    ];

    /// The string literals of Rust source `src` (plain, raw and byte strings).
    fn string_literals(src: &str) -> Vec<String> {
        let b = src.as_bytes();
        let mut out = Vec::new();
        let mut i = 0;
        while i < b.len() {
            match b[i] {
                b'/' if b.get(i + 1) == Some(&b'/') => {
                    while i < b.len() && b[i] != b'\n' {
                        i += 1;
                    }
                }
                b'/' if b.get(i + 1) == Some(&b'*') => {
                    i += 2;
                    while i + 1 < b.len() && !(b[i] == b'*' && b[i + 1] == b'/') {
                        i += 1;
                    }
                    i += 2;
                }
                // A char literal ('x', '\n', '"') or a lifetime ('a).
                b'\'' => {
                    if b.get(i + 1) == Some(&b'\\') {
                        i += 2;
                        while i < b.len() && b[i] != b'\'' {
                            i += 1;
                        }
                        i += 1;
                    } else if b.get(i + 2) == Some(&b'\'') {
                        i += 3;
                    } else {
                        i += 1;
                    }
                }
                b'r' if matches!(b.get(i + 1), Some(b'#') | Some(b'"'))
                    && (i == 0 || !(b[i - 1].is_ascii_alphanumeric() || b[i - 1] == b'_')) =>
                {
                    let mut j = i + 1;
                    let mut hashes = 0;
                    while b.get(j) == Some(&b'#') {
                        hashes += 1;
                        j += 1;
                    }
                    if b.get(j) != Some(&b'"') {
                        i += 1;
                        continue;
                    }
                    let close = format!("\"{}", "#".repeat(hashes));
                    let start = j + 1;
                    let end = src[start..].find(&close).map_or(b.len(), |e| start + e);
                    out.push(src[start..end].to_string());
                    i = end + close.len();
                }
                b'"' => {
                    let start = i + 1;
                    let mut j = start;
                    while j < b.len() && b[j] != b'"' {
                        j += if b[j] == b'\\' { 2 } else { 1 };
                    }
                    out.push(src[start..j.min(b.len())].to_string());
                    i = j + 1;
                }
                _ => i += 1,
            }
        }
        out
    }

    /// Whether a literal is a lease statement: it names a lease column, and a table
    /// other than `sspm.scans` (or no table at all, unless only `lease_token` appears).
    fn is_lease_statement(literal: &str) -> bool {
        let lower = literal.to_ascii_lowercase();
        let columns: Vec<&str> = LEASE_COLUMNS
            .into_iter()
            .filter(|c| lower.contains(c))
            .collect();
        if columns.is_empty() {
            return false;
        }
        let other_table = lower
            .match_indices("sspm.")
            .any(|(at, _)| !lower[at..].starts_with("sspm.scans"));
        other_table || columns.iter().any(|c| *c != "lease_token")
    }

    fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir).expect("readable source directory") {
            let path = entry.expect("directory entry").path();
            if path.is_dir() {
                rust_files(&path, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                out.push(path);
            }
        }
    }

    #[test]
    fn lexer_finds_sql_in_literals_but_not_in_comments() {
        let src = r####"
            // SET lease_owner = 'comment'
            /* lease_expires_at <= now() */
            let c = '"'; let l: &'static str = "plain";
            sqlx::query!(r#"UPDATE sspm.instances SET lease_owner = $1"#);
            let s = "SELECT \"lease_expires_at\" FROM x";
        "####;
        let found = string_literals(src);
        assert_eq!(
            found,
            [
                "plain",
                "UPDATE sspm.instances SET lease_owner = $1",
                r#"SELECT \"lease_expires_at\" FROM x"#
            ]
        );
        assert!(!is_lease_statement("plain"));
        assert!(is_lease_statement(&found[1]));
        assert!(is_lease_statement(&found[2]));
        assert!(is_lease_statement(
            "UPDATE sspm.notification_outbox SET lease_token = NULL WHERE id = $1"
        ));
        assert!(!is_lease_statement(
            "INSERT INTO sspm.scans (id, lease_token) VALUES ($1, $2)"
        ));
    }

    #[test]
    fn no_lease_statement_outside_the_lease_module() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let mut files = Vec::new();
        rust_files(&root.join("src"), &mut files);
        for krate in std::fs::read_dir(root.join("crates")).expect("crates directory") {
            let src = krate.expect("crate entry").path().join("src");
            if src.is_dir() {
                rust_files(&src, &mut files);
            }
        }
        assert!(
            files.iter().any(|f| f.ends_with(THIS_MODULE)),
            "the guard must see the lease module itself"
        );
        let mut offenders = Vec::new();
        for file in &files {
            let relative = file.strip_prefix(root).unwrap_or(file);
            if relative == Path::new(THIS_MODULE) || relative.starts_with("src/db/leases") {
                continue;
            }
            let text = std::fs::read_to_string(file).expect("readable source file");
            for literal in string_literals(&text) {
                if is_lease_statement(&literal) {
                    let first_line = literal.trim().lines().next().unwrap_or("").to_string();
                    offenders.push(format!("{}: {first_line}", relative.display()));
                }
            }
        }
        assert!(
            offenders.is_empty(),
            "lease SQL outside src/db/leases.rs (move it there, with the same expiry rule):\n{}",
            offenders.join("\n")
        );
        // And the module itself is what it claims: it holds the claim statement.
        let own = std::fs::read_to_string(root.join(THIS_MODULE)).expect("lease module");
        assert!(string_literals(&own)
            .iter()
            .any(|l| is_lease_statement(l) && l.contains("FOR UPDATE SKIP LOCKED")));
    }
}
