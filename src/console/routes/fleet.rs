//! The fleet page: every instance with status, score, coverage, a 30-day sparkline, open
//! findings by severity, last and next scan. Keyset-paginated (by name, or by score then
//! name, names compared case-insensitively); two queries per page whatever its size
//! (rows, then all their trends), and posture is computed for the page's rows only.

use std::collections::HashMap;
use std::sync::Arc;

use askama::Template;
use axum::extract::{Query, State};
use axum::response::Response;
use chrono::{DateTime, Utc};
use serde::Deserialize;
use uuid::Uuid;

use crate::console::auth::Signed;
use crate::console::charts::{self, Point};
use crate::console::role::Role;
use crate::console::state::ConsoleState;
use crate::console::views::{self, Chrome};
use crate::db::Checked;
use crate::status::InstanceStatus;

pub const PAGE_SIZE: i64 = 100;
const SEVERITIES: [&str; 5] = ["critical", "high", "medium", "low", "info"];
const STATUSES: [&str; 7] = [
    "ok",
    "pending",
    "unauthorized",
    "not_permitted",
    "ip_not_allowed",
    "unreachable",
    "error",
];

#[derive(Debug, Default, Deserialize)]
pub struct FleetFilter {
    pub region: Option<String>,
    pub status: Option<String>,
    pub severity: Option<String>,
    pub sort: Option<String>,
    /// Keyset cursor: the last name of the previous page.
    pub after: Option<String>,
    /// With sort=score: the last score of the previous page (-1 = none yet).
    pub after_score: Option<f64>,
    /// `removed` after an instance was removed (a fixed word, shown as a notice).
    pub done: Option<String>,
}

fn blank_to_none(v: &Option<String>) -> Option<String> {
    v.as_ref()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
}

pub struct FleetRow {
    pub id: Uuid,
    pub name: String,
    pub region: String,
    pub enabled: bool,
    pub status_label: &'static str,
    pub status_class: &'static str,
    pub score: String,
    pub coverage: String,
    pub spark: String,
    pub open: [i64; 5],
    pub last_scan: String,
    pub next_scan: String,
}

#[derive(Template)]
#[template(path = "console/fleet.html")]
struct FleetPage {
    chrome: Chrome,
    removed: bool,
    is_admin: bool,
    filter: FleetFilter,
    by_score: bool,
    regions: [&'static str; 3],
    statuses: [&'static str; 7],
    severities: [&'static str; 5],
    rows: Vec<FleetRow>,
    next: Option<String>,
}

pub async fn page(
    State(state): State<Arc<ConsoleState>>,
    signed: Signed,
    Query(raw): Query<FleetFilter>,
) -> Response {
    if let Some(r) = signed.refuse_unless(Role::Viewer) {
        return r;
    }
    let filter = FleetFilter {
        region: blank_to_none(&raw.region),
        status: blank_to_none(&raw.status),
        severity: blank_to_none(&raw.severity).filter(|s| SEVERITIES.contains(&s.as_str())),
        sort: blank_to_none(&raw.sort),
        after: raw.after.clone(),
        after_score: raw.after_score,
        done: None,
    };
    let by_score = filter.sort.as_deref() == Some("score");
    let rows = match page_rows(&state, &filter, by_score).await {
        Ok(r) => r,
        Err(e) => return views::internal(e),
    };
    let ids: Vec<Uuid> = rows.iter().map(|r| r.id).collect();
    let now = Utc::now();
    let trends = match daily_scores(&state, &ids).await {
        Ok(t) => t,
        Err(e) => return views::internal(e),
    };
    let next = (rows.len() as i64 == PAGE_SIZE).then(|| {
        let last = rows.last().expect("a full page has a last row");
        let mut q = url::form_urlencoded::Serializer::new(String::new());
        for (k, v) in [
            ("region", &filter.region),
            ("status", &filter.status),
            ("severity", &filter.severity),
            ("sort", &filter.sort),
        ] {
            if let Some(v) = v {
                q.append_pair(k, v);
            }
        }
        q.append_pair("after", &last.name);
        if by_score {
            q.append_pair(
                "after_score",
                &last.latest_score.unwrap_or(-1.0).to_string(),
            );
        }
        format!("/?{}", q.finish())
    });
    let rows: Result<Vec<FleetRow>, sqlx::Error> = rows
        .into_iter()
        .map(|r| {
            let (label, class, _) = views::status_words(r.status.of("sspm.instances", r.id)?);
            Ok(FleetRow {
                spark: charts::sparkline(trends.get(&r.id).map(Vec::as_slice).unwrap_or(&[]), now),
                id: r.id,
                name: r.name,
                region: r.region,
                enabled: r.enabled,
                status_label: label,
                status_class: class,
                score: views::score(r.latest_score),
                coverage: views::pct(r.latest_coverage),
                open: [
                    r.open_critical,
                    r.open_high,
                    r.open_medium,
                    r.open_low,
                    r.open_info,
                ],
                last_scan: views::when(&r.last_scan_at),
                next_scan: views::when(&Some(r.next_scan_at)),
            })
        })
        .collect();
    let rows = match rows {
        Ok(r) => r,
        Err(e) => return views::internal(e),
    };
    views::page(&FleetPage {
        chrome: Chrome::for_user(&signed),
        removed: raw.done.as_deref() == Some("removed"),
        is_admin: signed.role.allows(Role::Admin),
        filter,
        by_score,
        regions: ["us", "eu", "au"],
        statuses: STATUSES,
        severities: SEVERITIES,
        rows,
        next,
    })
}

/// One instance's row of `sspm.instance_posture`, as the page shows it.
struct PostureRow {
    id: Uuid,
    name: String,
    region: String,
    enabled: bool,
    status: Checked<InstanceStatus>,
    latest_score: Option<f64>,
    latest_coverage: Option<f64>,
    last_scan_at: Option<DateTime<Utc>>,
    next_scan_at: DateTime<Utc>,
    open_critical: i64,
    open_high: i64,
    open_medium: i64,
    open_low: i64,
    open_info: i64,
}

/// The page's instances: first their ids (filters, keyset cursor, order, LIMIT over
/// `sspm.instances` alone; names are unique case-insensitively, so `lower(name)` is the
/// key and its index gives the order), then the posture (latest scan, open counts) of
/// those ids only. Sorting by score needs every filtered instance's latest score, one
/// index probe each, never their findings.
async fn page_rows(
    state: &ConsoleState,
    filter: &FleetFilter,
    by_score: bool,
) -> Result<Vec<PostureRow>, sqlx::Error> {
    if by_score {
        sqlx::query_as!(
            PostureRow,
            r#"WITH scored AS MATERIALIZED (
                   SELECT i.id, lower(i.name) AS key, coalesce(ls.score, -1) AS score
                   FROM sspm.instances i
                   LEFT JOIN LATERAL (
                       SELECT s.score FROM sspm.scans s
                       WHERE s.instance_id = i.id AND s.status = 'succeeded'
                       ORDER BY s.started_at DESC, s.id DESC
                       LIMIT 1
                   ) ls ON true
                   WHERE ($1::text IS NULL OR i.region = $1)
                     AND ($2::text IS NULL OR i.status = $2)
                     AND ($3::text IS NULL OR EXISTS (
                           SELECT 1 FROM sspm.findings f
                           WHERE f.instance_id = i.id AND f.status = 'open' AND f.severity = $3))
               ), page AS MATERIALIZED (
                   SELECT id, key, score FROM scored
                   WHERE $4::text IS NULL OR (score, key) > ($5, lower($4))
                   ORDER BY score, key
                   LIMIT $6
               )
               SELECT p.id AS "id!", p.name AS "name!", p.region AS "region!", p.enabled AS "enabled!",
                      p.status AS "status!: Checked<InstanceStatus>", p.latest_score, p.latest_coverage, p.last_scan_at,
                      p.next_scan_at AS "next_scan_at!",
                      p.open_critical AS "open_critical!", p.open_high AS "open_high!",
                      p.open_medium AS "open_medium!", p.open_low AS "open_low!", p.open_info AS "open_info!"
               FROM page JOIN sspm.instance_posture p ON p.id = page.id
               ORDER BY page.score, page.key"#,
            filter.region,
            filter.status,
            filter.severity,
            filter.after,
            filter.after_score.unwrap_or(-1.0),
            PAGE_SIZE
        )
        .fetch_all(&state.pool)
        .await
    } else {
        sqlx::query_as!(
            PostureRow,
            r#"WITH page AS MATERIALIZED (
                   SELECT i.id, lower(i.name) AS key
                   FROM sspm.instances i
                   WHERE ($1::text IS NULL OR i.region = $1)
                     AND ($2::text IS NULL OR i.status = $2)
                     AND ($3::text IS NULL OR EXISTS (
                           SELECT 1 FROM sspm.findings f
                           WHERE f.instance_id = i.id AND f.status = 'open' AND f.severity = $3))
                     AND ($4::text IS NULL OR lower(i.name) > lower($4))
                   ORDER BY lower(i.name)
                   LIMIT $5
               )
               SELECT p.id AS "id!", p.name AS "name!", p.region AS "region!", p.enabled AS "enabled!",
                      p.status AS "status!: Checked<InstanceStatus>", p.latest_score, p.latest_coverage, p.last_scan_at,
                      p.next_scan_at AS "next_scan_at!",
                      p.open_critical AS "open_critical!", p.open_high AS "open_high!",
                      p.open_medium AS "open_medium!", p.open_low AS "open_low!", p.open_info AS "open_info!"
               FROM page JOIN sspm.instance_posture p ON p.id = page.id
               ORDER BY page.key"#,
            filter.region,
            filter.status,
            filter.severity,
            filter.after,
            PAGE_SIZE
        )
        .fetch_all(&state.pool)
        .await
    }
}

/// Daily average score over 30 days for every instance of the page, in one query.
async fn daily_scores(
    state: &ConsoleState,
    ids: &[Uuid],
) -> Result<HashMap<Uuid, Vec<Point>>, sqlx::Error> {
    let rows = sqlx::query!(
        r#"SELECT instance_id, date_trunc('day', started_at) AS "day!: DateTime<Utc>", avg(score) AS "score!"
           FROM sspm.scans
           WHERE instance_id = ANY($1) AND status = 'succeeded' AND score IS NOT NULL
             AND started_at > now() - interval '30 days'
           GROUP BY 1, 2 ORDER BY 1, 2"#,
        ids
    )
    .fetch_all(&state.pool)
    .await?;
    let mut out: HashMap<Uuid, Vec<Point>> = HashMap::new();
    for r in rows {
        out.entry(r.instance_id).or_default().push(Point {
            at: r.day,
            value: r.score,
        });
    }
    Ok(out)
}
