//! The fleet page: every instance with status, score, coverage, a 30-day sparkline, open
//! findings by severity, last and next scan. Keyset-paginated (by name, or by score then
//! name, names compared case-insensitively); two queries per page whatever its size
//! (rows, then all their trends). Score, coverage and open counts are the summary columns
//! of `sspm.instances`, so neither sorting nor filtering reads scans or findings.

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

/// One instance's row as the page shows it: `sspm.instances` with its summary columns
/// (the latest succeeded scan's score and coverage, open findings per severity), which
/// the database keeps equal to what `sspm.instance_posture` computes (migration
/// 20261202000010).
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

/// The page's instances: filters, keyset cursor, order and LIMIT over `sspm.instances`
/// alone, one statement. Names are unique case-insensitively, so `lower(name)` is the key
/// and its index gives the name order; `instances_score_order_idx` gives the score order
/// (no score first, as -1). The severity filter reads the stored open counts, never the
/// findings.
async fn page_rows(
    state: &ConsoleState,
    filter: &FleetFilter,
    by_score: bool,
) -> Result<Vec<PostureRow>, sqlx::Error> {
    if by_score {
        sqlx::query_as!(
            PostureRow,
            r#"SELECT i.id, i.name, i.region, i.enabled, i.status AS "status: Checked<InstanceStatus>",
                      i.last_score AS latest_score, i.last_coverage AS latest_coverage, i.last_scan_at,
                      i.next_scan_at, i.open_critical, i.open_high, i.open_medium, i.open_low, i.open_info
               FROM sspm.instances i
               WHERE ($1::text IS NULL OR i.region = $1)
                 AND ($2::text IS NULL OR i.status = $2)
                 AND ($3::text IS NULL OR CASE $3 WHEN 'critical' THEN i.open_critical WHEN 'high' THEN i.open_high
                        WHEN 'medium' THEN i.open_medium WHEN 'low' THEN i.open_low ELSE i.open_info END > 0)
                 AND ($4::text IS NULL OR (coalesce(i.last_score, -1), lower(i.name)) > ($5, lower($4)))
               ORDER BY coalesce(i.last_score, -1), lower(i.name)
               LIMIT $6"#,
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
            r#"SELECT i.id, i.name, i.region, i.enabled, i.status AS "status: Checked<InstanceStatus>",
                      i.last_score AS latest_score, i.last_coverage AS latest_coverage, i.last_scan_at,
                      i.next_scan_at, i.open_critical, i.open_high, i.open_medium, i.open_low, i.open_info
               FROM sspm.instances i
               WHERE ($1::text IS NULL OR i.region = $1)
                 AND ($2::text IS NULL OR i.status = $2)
                 AND ($3::text IS NULL OR CASE $3 WHEN 'critical' THEN i.open_critical WHEN 'high' THEN i.open_high
                        WHEN 'medium' THEN i.open_medium WHEN 'low' THEN i.open_low ELSE i.open_info END > 0)
                 AND ($4::text IS NULL OR lower(i.name) > lower($4))
               ORDER BY lower(i.name)
               LIMIT $5"#,
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
