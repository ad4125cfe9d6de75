//! Activity-log events: stored de-duplicated by Intercom's event id, read back as much as
//! the A checks need: the event window one by one, the rest of the look-back as aggregates.

use chrono::{DateTime, Utc};
use sqlx::PgConnection;
use uuid::Uuid;

use crate::checks::{ActivityEvent, EarlierActivity, EventMetadata, Interner};

/// Events per INSERT: large enough to amortise the round trip, small enough that the
/// encoded arrays of one statement stay a few MB.
pub(super) const INSERT_BATCH: usize = 2000;

/// What a scan reads of the stored activity log: the events the checks read one by one,
/// and an aggregate of the rest of the look-back window for the inactivity checks.
#[derive(Debug, Default)]
pub struct StoredActivity {
    /// Stored events created at or after `events_from`.
    pub events: Vec<ActivityEvent>,
    /// Latest activity per performer among stored events in `[lookback_from, events_from)`.
    pub earlier: EarlierActivity,
    pub events_from: DateTime<Utc>,
}

/// Where a scan's bounds come from (see [`for_scan`]).
#[derive(Debug, Clone, Copy)]
pub struct ScanBounds {
    /// The longest look-back any check uses (inactivity): `now - lookback days`.
    pub lookback_from: DateTime<Utc>,
    /// The earliest time an event check reads events from: the start of the event window,
    /// or the start of this scan's fetch when that is earlier (fetched events are merged
    /// with stored ones from there).
    pub events_needed_from: DateTime<Utc>,
    /// `checks.failed_login_window_minutes`: failures further apart than this never belong
    /// to one burst.
    pub burst_gap_minutes: u32,
}

/// Reads what one scan needs of the stored events. Event checks read the event window
/// one by one; `failed_login_burst` also reads the failures before it that belong to a
/// run crossing into it (so that the run's first failure, its resource, stays put), which
/// is found here in SQL: the latest failure at or before `events_needed_from` that follows
/// the previous stored failure by more than the burst gap starts a run no earlier failure
/// can join, so events are loaded from there. Everything older in the look-back window is
/// only needed as "latest activity per teammate" and is read as one aggregate.
pub async fn for_scan(
    conn: &mut PgConnection,
    instance_id: Uuid,
    bounds: ScanBounds,
) -> Result<StoredActivity, sqlx::Error> {
    use futures_util::TryStreamExt;
    let needed = bounds.events_needed_from.max(bounds.lookback_from);
    // One call, three reads from plans kept for the session (migration 20261207000010):
    // the bound (kind 0), the events from it (1), the aggregate before it (2). Streamed
    // into the result: collecting the rows first held a second copy of every event (and
    // up to half again of unused capacity) at the scan's peak, ~25 MB for a 70,000-event
    // window (benches/README.md). Types, performers and IPs repeat across events and are
    // shared ([`Interner`]).
    let mut rows = sqlx::query!(
        r#"SELECT kind AS "kind!", events_from, event_id, activity_type, performed_by_id,
                  performed_by_email, ip, created_at, description, metadata_text
           FROM sspm.activity_for_scan($1, $2, $3, $4::bigint)"#,
        instance_id,
        bounds.lookback_from,
        needed,
        i64::from(bounds.burst_gap_minutes)
    )
    .fetch(conn);
    let mut out = StoredActivity {
        events: Vec::new(),
        earlier: EarlierActivity::default(),
        events_from: needed,
    };
    let mut shared = Interner::default();
    while let Some(r) = rows.try_next().await? {
        match (r.kind, r.event_id, r.activity_type, r.created_at) {
            (0, _, _, _) => out.events_from = r.events_from.unwrap_or(needed),
            (1, Some(id), Some(activity_type), Some(created_at)) => {
                out.events.push(ActivityEvent {
                    id: id.into_boxed_str(),
                    activity_type: shared.intern(activity_type),
                    performed_by_id: r.performed_by_id.map(|id| shared.intern(id)),
                    performed_by_email: r.performed_by_email.map(|e| shared.intern(e)),
                    ip: r.ip.map(|ip| shared.intern(ip)),
                    created_at,
                    description: r.description.map(String::into_boxed_str),
                    metadata: EventMetadata::from_json_text(r.metadata_text),
                })
            }
            (2, _, _, Some(last_at)) => {
                out.earlier
                    .add(r.performed_by_id, r.performed_by_email.as_deref(), last_at)
            }
            (kind, ..) => {
                return Err(sqlx::Error::Decode(
                    format!("sspm.activity_for_scan: a row of kind {kind} without its columns")
                        .into(),
                ))
            }
        }
    }
    // Pushing grows by doubling: up to half the capacity would sit unused.
    out.events.shrink_to_fit();
    Ok(out)
}

/// The scan's new events as the columns of an `UNNEST`, metadata as JSON text (cast in
/// SQL: no parsed `Value` per event on either side). Inserted by
/// [`super::workspace::write`]: ones already stored (the overlap window) are skipped by
/// id. The table is partitioned by `created_at`, so its primary key includes it and cannot
/// do the de-duplication by id alone: a `NOT EXISTS` does (one index probe per partition,
/// on the primary key's `(instance_id, event_id)` prefix), `ON CONFLICT` covers a racing
/// insert.
#[derive(Default)]
pub(super) struct EventColumns<'a> {
    pub ids: Vec<&'a str>,
    pub types: Vec<&'a str>,
    pub by_id: Vec<Option<&'a str>>,
    pub by_email: Vec<Option<&'a str>>,
    pub ips: Vec<Option<&'a str>>,
    pub created: Vec<DateTime<Utc>>,
    pub descriptions: Vec<Option<&'a str>>,
    pub metadata: Vec<&'a str>,
}

impl<'a> EventColumns<'a> {
    pub(super) fn of(batch: &'a [ActivityEvent]) -> Self {
        Self {
            ids: batch.iter().map(|e| &*e.id).collect(),
            types: batch.iter().map(|e| e.activity_type.as_str()).collect(),
            by_id: batch.iter().map(|e| e.performed_by_id.as_deref()).collect(),
            by_email: batch
                .iter()
                .map(|e| e.performed_by_email.as_deref())
                .collect(),
            ips: batch.iter().map(|e| e.ip.as_deref()).collect(),
            created: batch.iter().map(|e| e.created_at).collect(),
            descriptions: batch.iter().map(|e| e.description.as_deref()).collect(),
            metadata: batch.iter().map(|e| e.metadata.json_text()).collect(),
        }
    }
}

/// Inserts new events alone (no inventory change); returns how many were actually new.
pub async fn insert(
    conn: &mut PgConnection,
    instance_id: Uuid,
    scan_id: Uuid,
    events: &[ActivityEvent],
) -> Result<u64, sqlx::Error> {
    super::workspace::write(conn, instance_id, scan_id, None, events).await
}
