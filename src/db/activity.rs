//! Activity-log events: stored de-duplicated by Intercom's event id, read back for the
//! look-back window the A checks need.

use chrono::{DateTime, Utc};
use sqlx::PgConnection;
use uuid::Uuid;

use crate::checks::{ActivityEvent, EventMetadata};

/// Events per INSERT: large enough to amortise the round trip, small enough that the
/// encoded arrays of one statement stay a few MB.
const INSERT_BATCH: usize = 2000;

pub async fn since(
    conn: &mut PgConnection,
    instance_id: Uuid,
    from: DateTime<Utc>,
) -> Result<Vec<ActivityEvent>, sqlx::Error> {
    let rows = sqlx::query!(
        r#"SELECT event_id, activity_type, performed_by_id, performed_by_email, ip, created_at, description,
                  metadata::text AS "metadata_text"
         FROM sspm.activity_events WHERE instance_id = $1 AND created_at >= $2"#,
        instance_id,
        from
    )
    .fetch_all(conn)
    .await?;
    Ok(rows
        .into_iter()
        .map(|r| ActivityEvent {
            id: r.event_id,
            activity_type: r.activity_type,
            performed_by_id: r.performed_by_id,
            performed_by_email: r.performed_by_email,
            ip: r.ip,
            created_at: r.created_at,
            description: r.description,
            metadata: EventMetadata::from_json_text(r.metadata_text),
        })
        .collect())
}

/// Inserts new events; ones already stored (the overlap window) are skipped.
/// Returns how many were actually new.
pub async fn insert(
    conn: &mut PgConnection,
    instance_id: Uuid,
    scan_id: Uuid,
    events: &[ActivityEvent],
) -> Result<u64, sqlx::Error> {
    let mut inserted = 0;
    for batch in events.chunks(INSERT_BATCH) {
        let ids: Vec<&str> = batch.iter().map(|e| e.id.as_str()).collect();
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
               ON CONFLICT (instance_id, event_id) DO NOTHING"#,
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
