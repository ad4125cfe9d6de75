//! The teammate inventory (`sspm.admins`), kept across scans: first/last seen, removal,
//! continuous away time, last activity.

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Utc};
use sqlx::PgConnection;
use uuid::Uuid;

use crate::checks::AdminHistory;
use crate::intercom::models::Admin;

/// Inventory of admins not removed, keyed by admin id.
pub async fn current(
    conn: &mut PgConnection,
    instance_id: Uuid,
) -> Result<HashMap<String, AdminHistory>, sqlx::Error> {
    let rows = sqlx::query!(
        "SELECT admin_id, first_seen_at, away_since, last_active_at FROM sspm.admins
         WHERE instance_id = $1 AND removed_at IS NULL",
        instance_id
    )
    .fetch_all(conn)
    .await?;
    Ok(rows
        .into_iter()
        .map(|r| {
            (
                r.admin_id,
                AdminHistory {
                    first_seen_at: r.first_seen_at,
                    away_since: r.away_since,
                    last_active_at: r.last_active_at,
                },
            )
        })
        .collect())
}

/// Per-admin activity seen in this scan's new events.
#[derive(Debug, Default, Clone, Copy)]
pub struct AdminActivity {
    pub last_active_at: Option<DateTime<Utc>>,
    pub last_login_at: Option<DateTime<Utc>>,
}

/// Upserts every admin seen now and marks the ones no longer listed as removed.
pub async fn sync(
    conn: &mut PgConnection,
    instance_id: Uuid,
    now: DateTime<Utc>,
    admins: &[Admin],
    activity: &HashMap<String, AdminActivity>,
) -> Result<(), sqlx::Error> {
    let admins: Vec<&Admin> = {
        let mut seen = HashSet::new();
        admins
            .iter()
            .filter(|a| a.id.as_ref().is_some_and(|id| seen.insert(id.clone())))
            .collect()
    };
    let n = admins.len();
    let mut ids = Vec::with_capacity(n);
    let mut names = Vec::with_capacity(n);
    let mut emails = Vec::with_capacity(n);
    let mut titles = Vec::with_capacity(n);
    let mut roles = Vec::with_capacity(n);
    let mut role_ids = Vec::with_capacity(n);
    let mut seats = Vec::with_capacity(n);
    let mut away = Vec::with_capacity(n);
    let mut teams = Vec::with_capacity(n);
    let mut last_active = Vec::with_capacity(n);
    let mut last_login = Vec::with_capacity(n);
    for a in &admins {
        let id = a.id.clone().unwrap_or_default();
        let act = activity.get(&id).copied().unwrap_or_default();
        names.push(a.name.clone());
        emails.push(a.email.clone());
        titles.push(a.job_title.clone());
        roles.push(a.role.as_ref().and_then(|r| r.name.clone()));
        role_ids.push(a.role.as_ref().and_then(|r| r.id.clone()));
        seats.push(a.has_inbox_seat);
        away.push(a.away_mode_enabled);
        teams.push(a.team_ids.clone().unwrap_or_default().join(","));
        last_active.push(act.last_active_at);
        last_login.push(act.last_login_at);
        ids.push(id);
    }
    for chunk in (0..n).collect::<Vec<_>>().chunks(5000) {
        let (lo, hi) = (chunk[0], chunk[chunk.len() - 1] + 1);
        sqlx::query!(
            r#"INSERT INTO sspm.admins
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
                                     THEN COALESCE(sspm.admins.away_since, EXCLUDED.away_since) END,
                   team_ids = EXCLUDED.team_ids,
                   last_seen_at = EXCLUDED.last_seen_at,
                   removed_at = NULL,
                   last_active_at = GREATEST(sspm.admins.last_active_at, EXCLUDED.last_active_at),
                   last_login_at = GREATEST(sspm.admins.last_login_at, EXCLUDED.last_login_at)"#,
            instance_id,
            now,
            &ids[lo..hi],
            &names[lo..hi] as &[Option<String>],
            &emails[lo..hi] as &[Option<String>],
            &titles[lo..hi] as &[Option<String>],
            &roles[lo..hi] as &[Option<String>],
            &role_ids[lo..hi] as &[Option<String>],
            &seats[lo..hi] as &[Option<bool>],
            &away[lo..hi] as &[Option<bool>],
            &teams[lo..hi],
            &last_active[lo..hi] as &[Option<DateTime<Utc>>],
            &last_login[lo..hi] as &[Option<DateTime<Utc>>],
        )
        .execute(&mut *conn)
        .await?;
    }
    sqlx::query!(
        "UPDATE sspm.admins SET removed_at = $2
         WHERE instance_id = $1 AND removed_at IS NULL AND NOT (admin_id = ANY($3))",
        instance_id,
        now,
        &ids
    )
    .execute(conn)
    .await?;
    Ok(())
}
