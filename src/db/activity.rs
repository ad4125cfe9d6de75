//! Activity-log events: stored de-duplicated by Intercom's event id, read back as much as
//! the A checks need: the event window one by one, the rest of the look-back as aggregates.

use chrono::{DateTime, Utc};
use sqlx::PgConnection;
use uuid::Uuid;

use crate::checks::{ActivityEvent, EarlierActivity, EventMetadata, Interner};

/// Events per INSERT: large enough to amortise the round trip, small enough that the
/// encoded arrays of one statement stay a few MB.
const INSERT_BATCH: usize = 2000;

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
    let needed = bounds.events_needed_from.max(bounds.lookback_from);
    // Both reads are PL/pgSQL functions (migration 20261204000010) so that their plans are made
    // once per connection: planned per call, they cost more than they run.
    let run_start = sqlx::query_scalar!(
        r#"SELECT sspm.failed_login_run_start($1, $2, $3, $4::bigint) AS "run_start""#,
        instance_id,
        bounds.lookback_from,
        needed,
        i64::from(bounds.burst_gap_minutes)
    )
    .fetch_one(&mut *conn)
    .await?;
    let events_from = run_start.map_or(needed, |r| r.min(needed));
    let events = since(&mut *conn, instance_id, events_from).await?;
    let mut earlier = EarlierActivity::default();
    if events_from > bounds.lookback_from {
        let rows = sqlx::query!(
            r#"SELECT performed_by_id, performed_by_email, last_at AS "last_at!"
               FROM sspm.activity_last_per_performer($1, $2, $3)"#,
            instance_id,
            bounds.lookback_from,
            events_from
        )
        .fetch_all(&mut *conn)
        .await?;
        for r in rows {
            earlier.add(
                r.performed_by_id,
                r.performed_by_email.as_deref(),
                r.last_at,
            );
        }
    }
    Ok(StoredActivity {
        events,
        earlier,
        events_from,
    })
}

/// Stored events created at or after `from`. Streamed into the result: collecting the
/// rows first held a second copy of every event (and up to half again of unused capacity)
/// at the scan's peak, ~25 MB for a 70,000-event window (benches/README.md). Types,
/// performers and IPs repeat across events and are shared ([`Interner`]).
pub async fn since(
    conn: &mut PgConnection,
    instance_id: Uuid,
    from: DateTime<Utc>,
) -> Result<Vec<ActivityEvent>, sqlx::Error> {
    use futures_util::TryStreamExt;
    let mut rows = sqlx::query!(
        r#"SELECT event_id, activity_type, performed_by_id, performed_by_email, ip, created_at, description,
                  metadata::text AS "metadata_text"
         FROM sspm.activity_events WHERE instance_id = $1 AND created_at >= $2"#,
        instance_id,
        from
    )
    .fetch(conn);
    let mut events = Vec::new();
    let mut shared = Interner::default();
    while let Some(r) = rows.try_next().await? {
        events.push(ActivityEvent {
            id: r.event_id.into_boxed_str(),
            activity_type: shared.intern(r.activity_type),
            performed_by_id: r.performed_by_id.map(|id| shared.intern(id)),
            performed_by_email: r.performed_by_email.map(|e| shared.intern(e)),
            ip: r.ip.map(|ip| shared.intern(ip)),
            created_at: r.created_at,
            description: r.description.map(String::into_boxed_str),
            metadata: EventMetadata::from_json_text(r.metadata_text),
        });
    }
    // Pushing grows by doubling: up to half the capacity would sit unused.
    events.shrink_to_fit();
    Ok(events)
}

/// Inserts new events; ones already stored (the overlap window) are skipped by id. The
/// table is partitioned by `created_at`, so its primary key includes it and cannot do the
/// de-duplication by id alone: the `NOT EXISTS` does (one index probe per partition, on the
/// primary key's `(instance_id, event_id)` prefix), `ON CONFLICT` covers a racing insert.
/// Returns how many were actually new.
pub async fn insert(
    conn: &mut PgConnection,
    instance_id: Uuid,
    scan_id: Uuid,
    events: &[ActivityEvent],
) -> Result<u64, sqlx::Error> {
    let mut inserted = 0;
    for batch in events.chunks(INSERT_BATCH) {
        let ids: Vec<&str> = batch.iter().map(|e| &*e.id).collect();
        let types: Vec<&str> = batch.iter().map(|e| e.activity_type.as_str()).collect();
        let by_id: Vec<Option<&str>> = batch.iter().map(|e| e.performed_by_id.as_deref()).collect();
        let by_email: Vec<Option<&str>> = batch
            .iter()
            .map(|e| e.performed_by_email.as_deref())
            .collect();
        let ips: Vec<Option<&str>> = batch.iter().map(|e| e.ip.as_deref()).collect();
        let created: Vec<DateTime<Utc>> = batch.iter().map(|e| e.created_at).collect();
        let descriptions: Vec<Option<&str>> =
            batch.iter().map(|e| e.description.as_deref()).collect();
        // JSON text, cast in SQL: no parsed Value per event on either side.
        let metadata: Vec<&str> = batch.iter().map(|e| e.metadata.json_text()).collect();
        let done = sqlx::query!(
            r#"INSERT INTO sspm.activity_events
                   (instance_id, event_id, activity_type, performed_by_id, performed_by_email, ip,
                    created_at, description, metadata, scan_id)
               SELECT $1, u.event_id, u.activity_type, u.by_id, u.by_email, u.ip, u.created_at,
                      u.description, u.metadata::jsonb, $2
               FROM UNNEST($3::text[], $4::text[], $5::text[], $6::text[], $7::text[],
                           $8::timestamptz[], $9::text[], $10::text[])
                    AS u(event_id, activity_type, by_id, by_email, ip, created_at, description, metadata)
               WHERE NOT EXISTS (SELECT 1 FROM sspm.activity_events s
                                 WHERE s.instance_id = $1 AND s.event_id = u.event_id)
               ON CONFLICT DO NOTHING"#,
            instance_id,
            scan_id,
            &ids as &[&str],
            &types as &[&str],
            &by_id as &[Option<&str>],
            &by_email as &[Option<&str>],
            &ips as &[Option<&str>],
            &created,
            &descriptions as &[Option<&str>],
            &metadata as &[&str],
        )
        .execute(&mut *conn)
        .await?;
        inserted += done.rows_affected();
    }
    Ok(inserted)
}
