//! The transactional outbox (`sspm.notification_outbox`).
//!
//! `enqueue_for_scan` runs inside the scan's own transaction: it reads the transitions
//! that transaction just recorded (`finding_events` of the scan) and inserts one row per
//! channel whose rules match, so a rolled-back scan alerts nobody and a committed one
//! cannot lose its alert. The delivery worker claims due rows with `FOR UPDATE SKIP
//! LOCKED` under a lease (fencing token), and settles them only while it holds it; those
//! statements live with every other lease statement, in `crate::db::leases::outbox`.

use chrono::{DateTime, Utc};
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

use super::channels::{self, Channel};
use super::render::{AlertEvent, EventKind, FindingChange, Health, InstanceRef};
use super::rules::{self, Event};
use crate::checks::Severity;
use crate::db::instances::Instance;
use crate::db::Checked;
use crate::status::{FindingStatus, InstanceStatus};

const EVENTS: &str = "sspm.finding_events";
pub use crate::db::leases::outbox::{claim, mark, mark_delivered, release, retry, Claimed};

/// What the scan knows that the database does not yet say: the instance as it was
/// before the scan (its status), and what the scan sets.
pub struct ScanNotice<'a> {
    pub instance: &'a Instance,
    pub scan_id: Uuid,
    /// The status this scan records (None = unchanged).
    pub status_after: Option<InstanceStatus>,
    pub status_detail: Option<&'a str>,
    /// The finding transitions this scan's transaction recorded (empty for a scan that
    /// ended before its checks ran).
    pub transitions: &'a [crate::lifecycle::Transition],
    /// Whether any channel is enabled, when the scan's transaction read it already
    /// (`leases::lock_for_scan_write`); None reads the channels whenever something could
    /// alert.
    pub channels_enabled: Option<bool>,
}

/// Whether any transition can alert (into `muted` never does): without one and without a
/// health change, no channel can want the scan.
fn any_alerting(transitions: &[crate::lifecycle::Transition]) -> bool {
    transitions
        .iter()
        .any(|t| Event::of_transition(t.from, t.to).is_some())
}

/// Inserts this scan's alerts; returns how many rows. A scan with nothing to alert (the
/// steady state: no transition, no health change), or that knows no channel is enabled,
/// costs no query at all; otherwise one small query finds the enabled channels, and
/// nothing more runs when there are none.
pub async fn enqueue_for_scan(
    conn: &mut PgConnection,
    notice: &ScanNotice<'_>,
) -> Result<u64, sqlx::Error> {
    let instance = notice.instance;
    let health = notice
        .status_after
        .filter(|after| rules::is_health_change(instance.status, *after))
        .map(|after| Health {
            from: instance.status,
            to: after,
            detail: notice.status_detail.map(|d| d.chars().take(500).collect()),
        });
    if (health.is_none() && !any_alerting(notice.transitions))
        || notice.channels_enabled == Some(false)
    {
        return Ok(0);
    }
    let channels = channels::list_enabled(&mut *conn).await?;
    if channels.is_empty() {
        return Ok(0);
    }
    let changes = scan_changes(&mut *conn, notice.scan_id).await?;
    let first_scan =
        !changes.is_empty() && is_first_success(&mut *conn, instance.id, notice.scan_id).await?;

    let now = Utc::now();
    let mut inserted = 0;
    for channel in &channels {
        let Some(event) = event_for(
            channel,
            instance,
            notice.scan_id,
            now,
            first_scan,
            health.as_ref(),
            &changes,
        ) else {
            continue;
        };
        inserted += insert(
            &mut *conn,
            channel.id,
            Some(instance.id),
            Some(notice.scan_id),
            EventKind::Scan,
            &event,
            None,
        )
        .await?;
    }
    Ok(inserted)
}

/// The event one channel gets for one scan, or None when its rules match nothing.
pub fn event_for(
    channel: &Channel,
    instance: &Instance,
    scan_id: Uuid,
    now: DateTime<Utc>,
    first_scan: bool,
    health: Option<&Health>,
    changes: &[FindingChange],
) -> Option<AlertEvent> {
    let rules = &channel.rules;
    if !rules.wants_instance(&instance.name) {
        return None;
    }
    let findings: Vec<FindingChange> = changes
        .iter()
        .filter(|c| {
            let severity = c.severity.parse().unwrap_or(Severity::Info);
            rules.wants_finding(c.event, &c.check_id, severity)
        })
        .cloned()
        .collect();
    let health = health.filter(|_| rules.wants_health()).cloned();
    if findings.is_empty() && health.is_none() {
        return None;
    }
    let mut event = AlertEvent::new(EventKind::Scan, now);
    event.instance = Some(InstanceRef {
        id: instance.id,
        name: instance.name.clone(),
        region: instance.region.to_string(),
        workspace_id: instance.workspace_id.clone(),
    });
    event.scan_id = Some(scan_id);
    event.first_scan = first_scan;
    event.health = health;
    event.findings = findings;
    event.bound();
    Some(event)
}

/// The finding transitions recorded by this scan (in this transaction), with the
/// finding as it now is. Transitions that alert nobody (into muted) are left out here.
async fn scan_changes(
    conn: &mut PgConnection,
    scan_id: Uuid,
) -> Result<Vec<FindingChange>, sqlx::Error> {
    let rows = sqlx::query!(
        r#"SELECT e.id, e.finding_id, e.from_status AS "from_status: Checked<FindingStatus>",
                  e.to_status AS "to_status: Checked<FindingStatus>", f.check_id AS "check_id!",
                  f.resource AS "resource!", f.status AS "status!: Checked<FindingStatus>",
                  f.severity AS "severity!", f.title AS "title!", f.remediation AS "remediation!",
                  f.evidence AS "evidence!", f.compliance AS "compliance!",
                  f.first_seen_at AS "first_seen_at!", f.last_seen_at AS "last_seen_at!", f.resolved_at
           FROM sspm.finding_events e
           JOIN sspm.findings f ON f.id = e.finding_id
           WHERE e.scan_id = $1
           ORDER BY e.id"#,
        scan_id
    )
    .fetch_all(conn)
    .await?;
    let mut changes = Vec::new();
    for r in rows {
        let from = r
            .from_status
            .map(|s| s.column(EVENTS, "from_status", r.id))
            .transpose()?;
        let to = r.to_status.column(EVENTS, "to_status", r.id)?;
        let Some(event) = Event::of_transition(from, to) else {
            continue;
        };
        changes.push(FindingChange {
            event,
            finding_id: r.finding_id,
            instance: None,
            check_id: r.check_id,
            resource: r.resource,
            status: r.status.of("sspm.findings", r.finding_id)?,
            severity: r.severity,
            title: r.title,
            remediation: r.remediation,
            evidence: r.evidence,
            compliance: r.compliance,
            first_seen_at: r.first_seen_at,
            last_seen_at: r.last_seen_at,
            resolved_at: r.resolved_at,
        });
    }
    Ok(changes)
}

async fn is_first_success(
    conn: &mut PgConnection,
    instance_id: Uuid,
    scan_id: Uuid,
) -> Result<bool, sqlx::Error> {
    let earlier = sqlx::query_scalar!(
        r#"SELECT EXISTS (SELECT 1 FROM sspm.scans
                          WHERE instance_id = $1 AND status = 'succeeded' AND id <> $2) AS "e!""#,
        instance_id,
        scan_id
    )
    .fetch_one(conn)
    .await?;
    Ok(!earlier)
}

/// One outbox row; 0 when (channel, scan) or (channel, digest slot) already has one.
pub async fn insert(
    conn: &mut PgConnection,
    channel_id: Uuid,
    instance_id: Option<Uuid>,
    scan_id: Option<Uuid>,
    kind: EventKind,
    event: &AlertEvent,
    digest_slot: Option<DateTime<Utc>>,
) -> Result<u64, sqlx::Error> {
    let kind = match kind {
        EventKind::Scan => "scan",
        EventKind::Digest => "digest",
        EventKind::Test => "test",
    };
    let body = serde_json::to_value(event).unwrap_or_default();
    let done = sqlx::query!(
        r#"INSERT INTO sspm.notification_outbox (channel_id, instance_id, scan_id, kind, event, digest_slot)
           VALUES ($1, $2, $3, $4, $5, $6)
           ON CONFLICT DO NOTHING"#,
        channel_id,
        instance_id,
        scan_id,
        kind,
        body,
        digest_slot
    )
    .execute(conn)
    .await?;
    Ok(done.rows_affected())
}

/// Pending count and the oldest pending message's age, for the gauges.
pub async fn backlog(pool: &PgPool) -> Result<(i64, f64), sqlx::Error> {
    let r = sqlx::query!(
        r#"SELECT count(*) AS "n!",
                  COALESCE(EXTRACT(EPOCH FROM now() - min(created_at))::float8, 0) AS "age!"
           FROM sspm.notification_outbox WHERE status = 'pending'"#
    )
    .fetch_one(pool)
    .await?;
    Ok((r.n, r.age))
}

/// What `alerts list|show` print: status, never the body's secrets (it has none) nor
/// the channel's.
#[derive(Debug, Clone, serde::Serialize)]
pub struct OutboxRow {
    pub id: Uuid,
    pub channel: String,
    pub channel_kind: String,
    pub instance: Option<String>,
    pub scan_id: Option<Uuid>,
    pub kind: String,
    pub status: String,
    pub attempts: i32,
    pub next_attempt_at: DateTime<Utc>,
    pub last_status_code: Option<i32>,
    pub last_error: Option<String>,
    pub created_at: DateTime<Utc>,
    pub delivered_at: Option<DateTime<Utc>>,
    pub digest_slot: Option<DateTime<Utc>>,
}

/// The newest message of one channel, for the channel list.
#[derive(Debug, Clone)]
pub struct LastMessage {
    pub channel_id: Uuid,
    pub kind: String,
    pub status: String,
    pub last_status_code: Option<i32>,
    pub last_error: Option<String>,
    pub at: DateTime<Utc>,
}

/// Each channel's newest message: one backward step on the (channel_id, created_at) index
/// per channel, however long the history is.
pub async fn last_per_channel(pool: &PgPool) -> Result<Vec<LastMessage>, sqlx::Error> {
    sqlx::query_as!(
        LastMessage,
        r#"SELECT c.id AS channel_id, o.kind AS "kind!", o.status AS "status!",
                  o.last_status_code AS "last_status_code?", o.last_error AS "last_error?",
                  o.updated_at AS "at!"
           FROM sspm.notification_channels c
           CROSS JOIN LATERAL (
               SELECT kind, status, last_status_code, last_error, updated_at
               FROM sspm.notification_outbox
               WHERE channel_id = c.id
               ORDER BY created_at DESC
               LIMIT 1
           ) o"#
    )
    .fetch_all(pool)
    .await
}

/// How many messages (queued and past) removing the channel deletes with it.
pub async fn count_for_channel(pool: &PgPool, channel_id: Uuid) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar!(
        r#"SELECT count(*) AS "n!" FROM sspm.notification_outbox WHERE channel_id = $1"#,
        channel_id
    )
    .fetch_one(pool)
    .await
}

pub async fn list(
    pool: &PgPool,
    status: Option<&str>,
    limit: i64,
) -> Result<Vec<OutboxRow>, sqlx::Error> {
    sqlx::query_as!(
        OutboxRow,
        r#"SELECT o.id, c.name AS channel, c.kind AS channel_kind, i.name AS "instance?",
                  o.scan_id, o.kind, o.status, o.attempts, o.next_attempt_at,
                  o.last_status_code, o.last_error, o.created_at, o.delivered_at, o.digest_slot
           FROM sspm.notification_outbox o
           JOIN sspm.notification_channels c ON c.id = o.channel_id
           LEFT JOIN sspm.instances i ON i.id = o.instance_id
           WHERE ($1::text IS NULL OR o.status = $1)
           ORDER BY o.created_at DESC, o.id
           LIMIT $2"#,
        status,
        limit
    )
    .fetch_all(pool)
    .await
}

pub async fn get(
    pool: &PgPool,
    id: Uuid,
) -> Result<Option<(OutboxRow, serde_json::Value)>, sqlx::Error> {
    let row = sqlx::query!(
        r#"SELECT o.id, c.name AS channel, c.kind AS channel_kind, i.name AS "instance?",
                  o.scan_id, o.kind, o.status, o.attempts, o.next_attempt_at,
                  o.last_status_code, o.last_error, o.created_at, o.delivered_at, o.digest_slot,
                  o.event
           FROM sspm.notification_outbox o
           JOIN sspm.notification_channels c ON c.id = o.channel_id
           LEFT JOIN sspm.instances i ON i.id = o.instance_id
           WHERE o.id = $1"#,
        id
    )
    .fetch_optional(pool)
    .await?;
    Ok(row.map(|r| {
        (
            OutboxRow {
                id: r.id,
                channel: r.channel,
                channel_kind: r.channel_kind,
                instance: r.instance,
                scan_id: r.scan_id,
                kind: r.kind,
                status: r.status,
                attempts: r.attempts,
                next_attempt_at: r.next_attempt_at,
                last_status_code: r.last_status_code,
                last_error: r.last_error,
                created_at: r.created_at,
                delivered_at: r.delivered_at,
                digest_slot: r.digest_slot,
            },
            r.event,
        )
    }))
}

#[cfg(test)]
mod tests {
    use super::any_alerting;
    use crate::lifecycle::{FindingStatus, Transition};

    fn t(from: Option<FindingStatus>, to: FindingStatus) -> Transition {
        Transition {
            finding_id: uuid::Uuid::nil(),
            from,
            to,
            reason: "test",
        }
    }

    #[test]
    fn only_transitions_that_alert_make_a_scan_worth_enqueueing() {
        assert!(!any_alerting(&[]));
        // Muting alerts nobody.
        assert!(!any_alerting(&[
            t(Some(FindingStatus::Open), FindingStatus::Muted),
            t(None, FindingStatus::Muted),
        ]));
        assert!(any_alerting(&[t(None, FindingStatus::Open)]));
        assert!(any_alerting(&[t(
            Some(FindingStatus::Resolved),
            FindingStatus::Open
        )]));
        assert!(any_alerting(&[t(
            Some(FindingStatus::Open),
            FindingStatus::Resolved
        )]));
        assert!(any_alerting(&[t(
            Some(FindingStatus::Muted),
            FindingStatus::Open
        )]));
    }
}
