//! The findings page (filters, keyset pagination) and its export (CSV, JSON, OCSF with
//! the CLI's serialisers). Pages walk severities in order and, within one, ids ascending,
//! so every page is a handful of index range scans however many findings exist.

use std::sync::Arc;

use askama::Template;
use axum::extract::{Query, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use serde::Deserialize;
use uuid::Uuid;

use crate::console::auth::Signed;
use crate::console::role::Role;
use crate::console::state::ConsoleState;
use crate::console::views::{self, Chrome};
use crate::db::findings::{self as db_findings, FindingFilter as DbFilter};
use crate::db::Checked;
use crate::status::{FindingStatus, TextEnum as _};

pub const PAGE_SIZE: i64 = 50;
/// Text search: first a sample of this many rows of one severity, in page order, is
/// filtered; it fills the page for a very common term and tells how common the term is.
/// Small, since every row costs a heap fetch at a random place (ids are random)...
const TEXT_SAMPLE: i64 = 200;
/// ...with at least this many matches in the sample (2 %), walking the page order fills a
/// page within some 2,500 rows; with fewer the term is rare and the trigram indexes answer...
const TEXT_DENSE: usize = 4;
/// ...gathering up to this many matches of one severity and paging from them; beyond it
/// the matches are dense after all and the id-order walk is fast.
const TEXT_CANDIDATES: i64 = 2_000;
/// The export is for spreadsheets and SIEM imports; larger sets belong to the CLI or SQL.
pub const MAX_EXPORT_ROWS: usize = 100_000;
const SEVERITIES: [&str; 5] = ["critical", "high", "medium", "low", "info"];
const STATUSES: [&str; 4] = ["open", "muted", "resolved", "any"];

#[derive(Debug, Default, Clone, Deserialize)]
pub struct FindingsQuery {
    pub instance: Option<String>,
    pub severity: Option<String>,
    pub status: Option<String>,
    pub check: Option<String>,
    pub q: Option<String>,
    /// Keyset cursor: `severity:uuid` of the previous page's last row.
    pub after: Option<String>,
    pub format: Option<String>,
}

fn clean(v: &Option<String>, max: usize) -> Option<String> {
    v.as_ref()
        .map(|s| s.trim().chars().take(max).collect::<String>())
        .filter(|s| !s.is_empty())
}

/// The filter as validated: unknown values are dropped, never passed to SQL as patterns.
struct Filter {
    raw: FindingsQuery,
    instance_id: Option<Uuid>,
    status: Option<FindingStatus>,
    severity: Option<String>,
    check: Option<String>,
    like: Option<String>,
}

impl Filter {
    async fn from_query(
        state: &ConsoleState,
        q: FindingsQuery,
    ) -> Result<Result<Filter, String>, sqlx::Error> {
        {
            let raw = FindingsQuery {
                instance: clean(&q.instance, 100),
                severity: clean(&q.severity, 20).filter(|s| SEVERITIES.contains(&s.as_str())),
                status: clean(&q.status, 20).filter(|s| STATUSES.contains(&s.as_str())),
                check: clean(&q.check, 100).filter(|c| crate::checks::meta(c).is_some()),
                q: clean(&q.q, 200),
                after: q.after,
                format: q.format,
            };
            let instance_id = match &raw.instance {
                Some(name) => match crate::db::instances::find(&state.pool, name).await? {
                    Some(i) => Some(i.id),
                    None => return Ok(Err(format!("No instance named or with id {name:?}."))),
                },
                None => None,
            };
            // `raw.status` is one of STATUSES: "any", or a status every build knows.
            let status = match raw.status.as_deref() {
                None => Some(FindingStatus::Open),
                Some(s) => FindingStatus::from_stored(s),
            };
            // ILIKE with the user's text as a literal: escape the pattern characters.
            let like = raw.q.as_ref().map(|t| {
                let escaped = t
                    .replace('\\', "\\\\")
                    .replace('%', "\\%")
                    .replace('_', "\\_");
                format!("%{escaped}%")
            });
            Ok(Ok(Filter {
                instance_id,
                status,
                severity: raw.severity.clone(),
                check: raw.check.clone(),
                like,
                raw,
            }))
        }
    }

    /// The filter as a query string (for links: next page, exports).
    fn query_string(&self) -> String {
        let mut s = url::form_urlencoded::Serializer::new(String::new());
        for (k, v) in [
            ("instance", &self.raw.instance),
            ("severity", &self.raw.severity),
            ("status", &self.raw.status),
            ("check", &self.raw.check),
            ("q", &self.raw.q),
        ] {
            if let Some(v) = v {
                s.append_pair(k, v);
            }
        }
        s.finish()
    }
}

pub struct Row {
    pub id: Uuid,
    pub instance_id: Uuid,
    pub instance_name: String,
    pub severity: String,
    pub title: String,
    pub resource: String,
    pub status: FindingStatus,
    pub first_seen: String,
    pub last_seen: String,
}

#[derive(Template)]
#[template(path = "console/findings.html")]
struct FindingsPage {
    chrome: Chrome,
    f: FindingsQuery,
    status: String,
    severities: [&'static str; 5],
    statuses: [&'static str; 4],
    checks: Vec<&'static str>,
    query: String,
    error: Option<String>,
    rows: Vec<Row>,
    next: Option<String>,
}

fn parse_cursor(after: Option<&str>) -> Option<(usize, Uuid)> {
    let (sev, id) = after?.split_once(':')?;
    let idx = SEVERITIES.iter().position(|s| *s == sev)?;
    Some((idx, id.parse().ok()?))
}

pub async fn page(
    State(state): State<Arc<ConsoleState>>,
    signed: Signed,
    Query(q): Query<FindingsQuery>,
) -> Response {
    if let Some(r) = signed.refuse_unless(Role::Viewer) {
        return r;
    }
    let filter = match Filter::from_query(&state, q).await {
        Ok(f) => f,
        Err(e) => return views::internal(e),
    };
    let checks: Vec<&'static str> = crate::checks::catalog().iter().map(|m| m.id).collect();
    let filter = match filter {
        Ok(f) => f,
        Err(message) => {
            return views::page(&FindingsPage {
                chrome: Chrome::for_user(&signed),
                f: FindingsQuery::default(),
                status: "open".into(),
                severities: SEVERITIES,
                statuses: STATUSES,
                checks,
                query: String::new(),
                error: Some(message),
                rows: Vec::new(),
                next: None,
            })
        }
    };
    let cursor = parse_cursor(filter.raw.after.as_deref());
    let (rows, next) = match fetch_page(&state, &filter, cursor).await {
        Ok(r) => r,
        Err(e) => return views::internal(e),
    };
    let query = filter.query_string();
    let next = next.map(|c| {
        let sep = if query.is_empty() { "" } else { "&" };
        let c: String = url::form_urlencoded::byte_serialize(c.as_bytes()).collect();
        format!("/findings?{query}{sep}after={c}")
    });
    views::page(&FindingsPage {
        chrome: Chrome::for_user(&signed),
        status: filter.raw.status.clone().unwrap_or_else(|| "open".into()),
        f: filter.raw,
        severities: SEVERITIES,
        statuses: STATUSES,
        checks,
        query,
        error: None,
        rows,
        next,
    })
}

struct PageRow {
    id: Uuid,
    instance_id: Uuid,
    instance_name: String,
    severity: String,
    title: String,
    resource: String,
    status: Checked<FindingStatus>,
    first_seen_at: DateTime<Utc>,
    last_seen_at: DateTime<Utc>,
}

/// One page: severities from the cursor's on, each an index range scan, until full.
async fn fetch_page(
    state: &ConsoleState,
    f: &Filter,
    cursor: Option<(usize, Uuid)>,
) -> Result<(Vec<Row>, Option<String>), sqlx::Error> {
    let start = cursor.map(|c| c.0).unwrap_or(0);
    let mut out: Vec<Row> = Vec::new();
    for (idx, sev) in SEVERITIES.iter().enumerate().skip(start) {
        if f.severity.as_deref().is_some_and(|s| s != *sev) {
            continue;
        }
        let after = cursor.filter(|c| c.0 == idx).map(|c| c.1);
        let want = PAGE_SIZE + 1 - out.len() as i64;
        let rows = match &f.like {
            // Text: which index serves depends on how common the term is, which the
            // planner cannot estimate for ILIKE '%..%'. A bounded walk of the page order
            // decides: full page (common term) or the trigram indexes (rare term).
            Some(like) => match text_sample(state, f, sev, after, like, want).await? {
                Sample::Page(rows) => rows,
                Sample::Dense => ordered_text_page(state, f, sev, after, like, want).await?,
                Sample::Sparse => trigram_text_page(state, f, sev, after, like, want).await?,
            },
            None => {
                sqlx::query_as!(
                    PageRow,
                    r#"SELECT f.id, f.instance_id, i.name AS instance_name, f.severity, f.title, f.resource,
                              f.status AS "status: Checked<FindingStatus>", f.first_seen_at, f.last_seen_at
                       FROM sspm.findings f JOIN sspm.instances i ON i.id = f.instance_id
                       WHERE f.severity = $1
                         AND ($2::uuid IS NULL OR f.id > $2)
                         AND ($3::text IS NULL OR f.status = $3)
                         AND ($4::uuid IS NULL OR f.instance_id = $4)
                         AND ($5::text IS NULL OR f.check_id = $5)
                       ORDER BY f.id
                       LIMIT $6"#,
                    sev,
                    after,
                    f.status as Option<FindingStatus>,
                    f.instance_id,
                    f.check,
                    want
                )
                .fetch_all(&state.pool)
                .await?
            }
        };
        for r in rows {
            out.push(Row {
                status: r.status.of("sspm.findings", r.id)?,
                id: r.id,
                instance_id: r.instance_id,
                instance_name: r.instance_name,
                severity: r.severity,
                title: r.title,
                resource: r.resource,
                first_seen: fmt(r.first_seen_at),
                last_seen: fmt(r.last_seen_at),
            });
        }
        if out.len() as i64 > PAGE_SIZE {
            break;
        }
    }
    let next = if out.len() as i64 > PAGE_SIZE {
        out.truncate(PAGE_SIZE as usize);
        out.last().map(|r| format!("{}:{}", r.severity, r.id))
    } else {
        None
    };
    Ok((out, next))
}

/// What the sample of a severity's rows in page order says about a text term.
enum Sample {
    /// The sample filled the page, or held every remaining row of the severity.
    Page(Vec<PageRow>),
    /// Common: walking the page order fills the page soon.
    Dense,
    /// Rare: the trigram indexes find its matches faster.
    Sparse,
}

/// Filters the first TEXT_SAMPLE rows of the severity in page order (an index walk with a
/// LIMIT, whatever the table's size): the planner cannot estimate how common an ILIKE
/// '%..%' term is, so this measures it.
async fn text_sample(
    state: &ConsoleState,
    f: &Filter,
    sev: &str,
    after: Option<Uuid>,
    like: &str,
    want: i64,
) -> Result<Sample, sqlx::Error> {
    let rows = sqlx::query!(
        r#"WITH w AS MATERIALIZED (
               SELECT f.id, f.instance_id, f.severity, f.title, f.resource, f.status, f.first_seen_at, f.last_seen_at
               FROM sspm.findings f
               WHERE f.severity = $1
                 AND ($2::uuid IS NULL OR f.id > $2)
                 AND ($3::text IS NULL OR f.status = $3)
                 AND ($4::uuid IS NULL OR f.instance_id = $4)
                 AND ($5::text IS NULL OR f.check_id = $5)
               ORDER BY f.id
               LIMIT $7
           ), m AS (
               SELECT w.id, w.instance_id, i.name AS instance_name, w.severity, w.title, w.resource,
                      w.status, w.first_seen_at, w.last_seen_at
               FROM w JOIN sspm.instances i ON i.id = w.instance_id
               WHERE w.title ILIKE $6 OR w.resource ILIKE $6
               ORDER BY w.id
               LIMIT $8
           )
           SELECT (SELECT count(*) FROM w) AS "walked!", m.id AS "id?", m.instance_id AS "instance_id?",
                  m.instance_name AS "instance_name?", m.severity AS "severity?", m.title AS "title?",
                  m.resource AS "resource?", m.status AS "status?: Checked<FindingStatus>",
                  m.first_seen_at AS "first_seen_at?", m.last_seen_at AS "last_seen_at?"
           FROM (SELECT 1) one LEFT JOIN m ON true
           ORDER BY m.id"#,
        sev,
        after,
        f.status as Option<FindingStatus>,
        f.instance_id,
        f.check,
        like,
        TEXT_SAMPLE,
        want
    )
    .fetch_all(&state.pool)
    .await?;
    let walked = rows.first().map(|r| r.walked).unwrap_or(0);
    let matches: Vec<PageRow> = rows
        .into_iter()
        .filter_map(|r| {
            Some(PageRow {
                id: r.id?,
                instance_id: r.instance_id?,
                instance_name: r.instance_name?,
                severity: r.severity?,
                title: r.title?,
                resource: r.resource?,
                status: r.status?,
                first_seen_at: r.first_seen_at?,
                last_seen_at: r.last_seen_at?,
            })
        })
        .collect();
    Ok(if matches.len() as i64 >= want || walked < TEXT_SAMPLE {
        Sample::Page(matches)
    } else if matches.len() >= TEXT_DENSE {
        Sample::Dense
    } else {
        Sample::Sparse
    })
}

/// The text filter for a rare term, from the trigram indexes (bitmap scans forced, since
/// the planner cannot estimate ILIKE '%..%' and would otherwise walk the id order hoping
/// for an early match that never comes).
async fn trigram_text_page(
    state: &ConsoleState,
    f: &Filter,
    sev: &str,
    after: Option<Uuid>,
    like: &str,
    want: i64,
) -> Result<Vec<PageRow>, sqlx::Error> {
    let mut tx = state.pool.begin().await?;
    sqlx::query!("SET LOCAL enable_seqscan = off")
        .execute(&mut *tx)
        .await?;
    sqlx::query!("SET LOCAL enable_indexscan = off")
        .execute(&mut *tx)
        .await?;
    let candidates: Vec<Uuid> = sqlx::query_scalar!(
        r#"SELECT f.id FROM sspm.findings f
           WHERE (f.title ILIKE $1 OR f.resource ILIKE $1)
             AND f.severity = $2
             AND ($3::uuid IS NULL OR f.id > $3)
             AND ($4::text IS NULL OR f.status = $4)
             AND ($5::uuid IS NULL OR f.instance_id = $5)
             AND ($6::text IS NULL OR f.check_id = $6)
           LIMIT $7"#,
        like,
        sev,
        after,
        f.status as Option<FindingStatus>,
        f.instance_id,
        f.check,
        TEXT_CANDIDATES + 1
    )
    .fetch_all(&mut *tx)
    .await?;
    tx.commit().await?;
    // At most TEXT_CANDIDATES matches: the page is read from those ids. With more, matches
    // are dense enough that walking the id order fills a page quickly.
    if candidates.len() as i64 <= TEXT_CANDIDATES {
        sqlx::query_as!(
            PageRow,
            r#"SELECT f.id, f.instance_id, i.name AS instance_name, f.severity, f.title,
                      f.resource, f.status AS "status: Checked<FindingStatus>", f.first_seen_at, f.last_seen_at
               FROM sspm.findings f JOIN sspm.instances i ON i.id = f.instance_id
               WHERE f.id = ANY($1)
               ORDER BY f.id
               LIMIT $2"#,
            &candidates,
            want
        )
        .fetch_all(&state.pool)
        .await
    } else {
        ordered_text_page(state, f, sev, after, like, want).await
    }
}

/// The text filter walking the page order until the page is full (a common term).
async fn ordered_text_page(
    state: &ConsoleState,
    f: &Filter,
    sev: &str,
    after: Option<Uuid>,
    like: &str,
    want: i64,
) -> Result<Vec<PageRow>, sqlx::Error> {
    sqlx::query_as!(
        PageRow,
        r#"SELECT f.id, f.instance_id, i.name AS instance_name, f.severity, f.title,
                      f.resource, f.status AS "status: Checked<FindingStatus>", f.first_seen_at, f.last_seen_at
               FROM sspm.findings f JOIN sspm.instances i ON i.id = f.instance_id
               WHERE f.severity = $1
                 AND ($2::uuid IS NULL OR f.id > $2)
                 AND ($3::text IS NULL OR f.status = $3)
                 AND ($4::uuid IS NULL OR f.instance_id = $4)
                 AND ($5::text IS NULL OR f.check_id = $5)
                 AND (f.title ILIKE $6 OR f.resource ILIKE $6)
               ORDER BY f.id
               LIMIT $7"#,
        sev,
        after,
        f.status as Option<FindingStatus>,
        f.instance_id,
        f.check,
        like,
        want
    )
    .fetch_all(&state.pool)
    .await
}

fn fmt(t: DateTime<Utc>) -> String {
    views::when(&Some(t))
}

/// The current filter's findings as a download: csv, json (an array) or ocsf (NDJSON).
pub async fn export(
    State(state): State<Arc<ConsoleState>>,
    signed: Signed,
    Query(q): Query<FindingsQuery>,
) -> Response {
    if let Some(r) = signed.refuse_unless(Role::Viewer) {
        return r;
    }
    let format = q.format.clone().unwrap_or_else(|| "csv".into());
    let filter = match Filter::from_query(&state, q).await {
        Ok(Ok(f)) => f,
        Ok(Err(message)) => return (axum::http::StatusCode::BAD_REQUEST, message).into_response(),
        Err(e) => return views::internal(e),
    };
    let rows = match db_findings::list(
        &state.pool,
        &DbFilter {
            instance_id: filter.instance_id,
            status: filter.status,
            severities: filter.severity.clone().map(|s| vec![s]),
            check_id: filter.check.clone(),
        },
    )
    .await
    {
        Ok(r) => r,
        Err(e) => return views::internal(e),
    };
    let needle = filter.raw.q.as_ref().map(|t| t.to_lowercase());
    let rows: Vec<_> = rows
        .into_iter()
        .filter(|r| {
            needle.as_ref().is_none_or(|n| {
                r.title.to_lowercase().contains(n) || r.resource.to_lowercase().contains(n)
            })
        })
        .take(MAX_EXPORT_ROWS)
        .collect();
    let stamp = Utc::now().format("%Y%m%dT%H%M%SZ");
    let (body, content_type, ext) = match format.as_str() {
        "json" => match serde_json::to_vec_pretty(&rows) {
            Ok(b) => (b, "application/json", "json"),
            Err(e) => return views::internal(e),
        },
        "ocsf" => {
            let mut b = Vec::new();
            for r in &rows {
                match serde_json::to_vec(&crate::export::ocsf::detection_finding(r)) {
                    Ok(line) => {
                        b.extend(line);
                        b.push(b'\n');
                    }
                    Err(e) => return views::internal(e),
                }
            }
            (b, "application/x-ndjson", "ocsf.jsonl")
        }
        "csv" => {
            let mut b = Vec::new();
            if let Err(e) = crate::export::csv::write(&mut b, &rows) {
                return views::internal(e);
            }
            (b, "text/csv; charset=utf-8", "csv")
        }
        other => {
            return (
                axum::http::StatusCode::BAD_REQUEST,
                format!("unknown export format {other:?}: use csv, json or ocsf"),
            )
                .into_response()
        }
    };
    (
        [
            (header::CONTENT_TYPE, content_type.to_string()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"findings-{stamp}.{ext}\""),
            ),
        ],
        body,
    )
        .into_response()
}
