//! The workspace data of a complete scan, written together: the teammate inventory
//! ([`admins::InventoryWrite`]) and the new activity-log events
//! ([`activity::EventColumns`]) go in the same statements, one for a steady scan. Each
//! statement is a round trip for the daemon and Postgres, and the two writes touch
//! different tables, so nothing orders one before the other.

use chrono::{DateTime, Utc};
use sqlx::PgConnection;
use uuid::Uuid;

use super::activity::{self, EventColumns};
use super::admins::{self, InventoryWrite, UpsertColumns};
use crate::checks::ActivityEvent;

/// Writes `inventory` (None: the teammates are not written) and inserts `events`;
/// returns how many events were new.
///
/// A large workspace's first scan has more rows than one statement should carry: the
/// upserts go in chunks of [`admins::UPSERT_BATCH`], the events in chunks of
/// [`activity::INSERT_BATCH`], the i-th statement carrying the i-th chunk of each, and the
/// statement with the last chunk of upserts also the removals. Those parts touch disjoint
/// rows (listed and changed, no longer listed), so no row is modified twice in a
/// statement; teammates listed again unchanged are not written.
pub async fn write(
    conn: &mut PgConnection,
    instance_id: Uuid,
    scan_id: Uuid,
    inventory: Option<&InventoryWrite<'_>>,
    events: &[ActivityEvent],
) -> Result<u64, sqlx::Error> {
    let upsert_chunks: Vec<(std::ops::Range<usize>, bool)> = match inventory {
        Some(inv) => super::write_chunks(inv.upserts.ids.len(), admins::UPSERT_BATCH).collect(),
        None => Vec::new(),
    };
    let event_chunks: Vec<&[ActivityEvent]> = events.chunks(activity::INSERT_BATCH).collect();
    let statements = upsert_chunks.len().max(event_chunks.len());
    let mut inserted = 0;
    for i in 0..statements {
        let part = match (inventory, upsert_chunks.get(i)) {
            (Some(inv), Some((chunk, last))) => InventoryPart {
                now: Some(inv.now),
                upserts: inv.upserts.slice(chunk.clone()),
                listed: inv.listed.as_deref().filter(|_| *last),
            },
            _ => InventoryPart::default(),
        };
        let events = EventColumns::of(event_chunks.get(i).copied().unwrap_or_default());
        inserted += statement(conn, instance_id, scan_id, part, events).await?;
    }
    Ok(inserted)
}

/// One statement's share of the inventory write.
#[derive(Default)]
struct InventoryPart<'p> {
    /// The scan's time (first/last seen, removal, away since); None with nothing to write.
    now: Option<DateTime<Utc>>,
    upserts: UpsertSlice<'p>,
    listed: Option<&'p [&'p str]>,
}

/// A chunk of [`UpsertColumns`].
#[derive(Default)]
struct UpsertSlice<'p> {
    ids: &'p [&'p str],
    names: &'p [Option<&'p str>],
    emails: &'p [Option<&'p str>],
    titles: &'p [Option<&'p str>],
    roles: &'p [Option<&'p str>],
    role_ids: &'p [Option<&'p str>],
    seats: &'p [Option<bool>],
    away: &'p [Option<bool>],
    teams: &'p [String],
    last_active: &'p [Option<DateTime<Utc>>],
    last_login: &'p [Option<DateTime<Utc>>],
}

impl<'a> UpsertColumns<'a> {
    fn slice(&self, r: std::ops::Range<usize>) -> UpsertSlice<'_> {
        UpsertSlice {
            ids: &self.ids[r.clone()],
            names: &self.names[r.clone()],
            emails: &self.emails[r.clone()],
            titles: &self.titles[r.clone()],
            roles: &self.roles[r.clone()],
            role_ids: &self.role_ids[r.clone()],
            seats: &self.seats[r.clone()],
            away: &self.away[r.clone()],
            teams: &self.teams[r.clone()],
            last_active: &self.last_active[r.clone()],
            last_login: &self.last_login[r],
        }
    }
}

async fn statement(
    conn: &mut PgConnection,
    instance_id: Uuid,
    scan_id: Uuid,
    inv: InventoryPart<'_>,
    ev: EventColumns<'_>,
) -> Result<u64, sqlx::Error> {
    let u = &inv.upserts;
    let inserted = sqlx::query_scalar!(
        r#"WITH changed AS (
               INSERT INTO sspm.admin_rows
                   (instance_id, admin_id, name, email, job_title, role, role_id, has_inbox_seat,
                    away_mode_enabled, away_since, team_ids, first_seen_at, last_seen_at, removed_at,
                    last_active_at, last_login_at)
               SELECT $1, u.admin_id, u.name, u.email, u.job_title, u.role, u.role_id, u.seat, u.away,
                      CASE WHEN u.away THEN $2::timestamptz END,
                      COALESCE(string_to_array(NULLIF(u.teams, ''), ','), '{}'),
                      $2, $2, NULL, u.last_active, u.last_login
               FROM UNNEST($3::text[], $4::text[], $5::text[], $6::text[], $7::text[], $8::text[],
                           $9::bool[], $10::bool[], $11::text[], $12::timestamptz[], $13::timestamptz[])
                    AS u(admin_id, name, email, job_title, role, role_id, seat, away, teams, last_active, last_login)
               ON CONFLICT (instance_id, admin_id) DO UPDATE SET
                   name = EXCLUDED.name,
                   email = EXCLUDED.email,
                   job_title = EXCLUDED.job_title,
                   role = EXCLUDED.role,
                   role_id = EXCLUDED.role_id,
                   has_inbox_seat = EXCLUDED.has_inbox_seat,
                   away_mode_enabled = EXCLUDED.away_mode_enabled,
                   -- Away time is continuous: it starts when first seen away and ends when back.
                   away_since = CASE WHEN EXCLUDED.away_mode_enabled IS TRUE
                                     THEN COALESCE(sspm.admin_rows.away_since, EXCLUDED.away_since) END,
                   team_ids = EXCLUDED.team_ids,
                   last_seen_at = EXCLUDED.last_seen_at,
                   removed_at = NULL,
                   last_active_at = GREATEST(sspm.admin_rows.last_active_at, EXCLUDED.last_active_at),
                   last_login_at = GREATEST(sspm.admin_rows.last_login_at, EXCLUDED.last_login_at)
           ),
           -- Teammates listed again unchanged are not written: their last_seen_at is the
           -- instance's findings_seen_at (migration 20261208000020). A removed one stores
           -- it as the view derives it, before this scan moves it.
           removed AS (
               UPDATE sspm.admin_rows a
               SET removed_at = $2, last_seen_at = v.last_seen_at
               FROM sspm.admins v
               WHERE $14::text[] IS NOT NULL AND v.instance_id = a.instance_id
                 AND v.admin_id = a.admin_id
                 AND a.instance_id = $1 AND a.removed_at IS NULL AND NOT (a.admin_id = ANY($14))
           ),
           events AS (
               INSERT INTO sspm.activity_events
                   (instance_id, event_id, activity_type, performed_by_id, performed_by_email, ip,
                    created_at, description, metadata, scan_id)
               SELECT $1, e.event_id, e.activity_type, e.by_id, e.by_email, e.ip, e.created_at,
                      e.description, e.metadata::jsonb, $15
               FROM UNNEST($16::text[], $17::text[], $18::text[], $19::text[], $20::text[],
                           $21::timestamptz[], $22::text[], $23::text[])
                    AS e(event_id, activity_type, by_id, by_email, ip, created_at, description, metadata)
               WHERE NOT EXISTS (SELECT 1 FROM sspm.activity_events s
                                 WHERE s.instance_id = $1 AND s.event_id = e.event_id)
               ON CONFLICT DO NOTHING
               RETURNING 1
           )
           SELECT count(*) AS "inserted!" FROM events"#,
        instance_id,
        inv.now,
        u.ids as &[&str],
        u.names as &[Option<&str>],
        u.emails as &[Option<&str>],
        u.titles as &[Option<&str>],
        u.roles as &[Option<&str>],
        u.role_ids as &[Option<&str>],
        u.seats as &[Option<bool>],
        u.away as &[Option<bool>],
        u.teams,
        u.last_active as &[Option<DateTime<Utc>>],
        u.last_login as &[Option<DateTime<Utc>>],
        inv.listed as Option<&[&str]>,
        scan_id,
        &ev.ids as &[&str],
        &ev.types as &[&str],
        &ev.by_id as &[Option<&str>],
        &ev.by_email as &[Option<&str>],
        &ev.ips as &[Option<&str>],
        &ev.created,
        &ev.descriptions as &[Option<&str>],
        &ev.metadata as &[&str],
    )
    .fetch_one(&mut *conn)
    .await?;
    Ok(inserted as u64)
}
