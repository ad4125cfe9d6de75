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
/// Text search, per severity: first this many rows in page order are filtered (an index
/// walk with a LIMIT, whatever the table's size). The planner cannot estimate how common
/// an ILIKE '%..%' term is, so the sample measures it: it fills the page for a very common
/// term; with no match at all the term is rare and the trigram indexes answer...
const TEXT_SAMPLE: i64 = 200;
/// ...with some match, the walk goes on to this many rows (each a heap fetch at a random
/// place, since ids are random: ~25 ms at most) and fills the page for a term in more than
/// ~1.5 % of the rows; otherwise the trigram indexes answer...
const TEXT_WALK: i64 = 4_000;
/// ...gathering up to this many matches and paging from them; beyond it the matches are
/// dense after all and walking the page order to the end of the page is fast.
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
            Some(like) => {
                let (rows, complete) = text_page(state, f, idx, after, like, want).await?;
                if complete {
                    push_rows(&mut out, rows)?;
                    break;
                }
                rows
            }
            None => {
                sqlx::query_as!(
                    PageRow,
                    r#"SELECT f.id, f.instance_id, i.name AS instance_name, f.severity, f.title, f.resource,
                              f.status AS "status: Checked<FindingStatus>", f.first_seen_at, f.last_seen_at
                       FROM sspm.finding_rows f JOIN sspm.instances i ON i.id = f.instance_id
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
        push_rows(&mut out, rows)?;
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

fn push_rows(out: &mut Vec<Row>, rows: Vec<PageRow>) -> Result<(), sqlx::Error> {
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
    Ok(())
}

/// One severity's rows of a text-filtered page, and whether they complete the page (they
/// then hold the later severities' matches too). Which index serves depends on how common
/// the term is, which the planner cannot estimate for ILIKE '%..%': bounded walks of the
/// page order measure it (a common term fills the page there), the trigram indexes answer
/// for a rare one.
async fn text_page(
    state: &ConsoleState,
    f: &Filter,
    idx: usize,
    after: Option<Uuid>,
    like: &str,
    want: i64,
) -> Result<(Vec<PageRow>, bool), sqlx::Error> {
    let sev = SEVERITIES[idx];
    let mut walk = text_walk(state, f, sev, after, like, want, TEXT_SAMPLE).await?;
    if matches!(walk, Walk::Short { matches } if matches > 0) {
        walk = text_walk(state, f, sev, after, like, want, TEXT_WALK).await?;
    }
    if let Walk::Page(rows) = walk {
        return Ok((rows, false));
    }
    // Rare here: this severity from the trigram indexes. When that leaves the page short,
    // one more trigram scan answers for every later severity at once (a scan costs about
    // the same whatever the severity filter) instead of a walk and a scan per severity.
    let mut rows = trigram_text_page(state, f, sev, after, like, want).await?;
    if (rows.len() as i64) < want {
        let short = want - rows.len() as i64;
        if let Some(rest) = rare_text_rest(state, f, idx + 1, like, short).await? {
            rows.extend(rest);
            return Ok((rows, true));
        }
    }
    Ok((rows, false))
}

/// What a bounded walk of a severity's rows in page order found.
enum Walk {
    /// The page's rows of this severity: the walk filled the page, or it reached the end
    /// of the severity.
    Page(Vec<PageRow>),
    /// Neither: this many matches among the rows walked.
    Short { matches: usize },
}

/// Filters the first `limit` rows of the severity in page order.
#[allow(clippy::too_many_arguments)]
async fn text_walk(
    state: &ConsoleState,
    f: &Filter,
    sev: &str,
    after: Option<Uuid>,
    like: &str,
    want: i64,
    limit: i64,
) -> Result<Walk, sqlx::Error> {
    // The walk streams (index scan, row numbers, filter) and stops at the page's last
    // match. Row `limit`, the walk's last, is returned even when it does not match: it
    // tells a walk cut short by the limit from one that reached the severity's end.
    let rows = sqlx::query!(
        r#"SELECT w.id, w.instance_id, i.name AS instance_name, w.severity, w.title, w.resource,
                  w.status AS "status: Checked<FindingStatus>", w.first_seen_at, w.last_seen_at,
                  w.n AS "n!", (w.title ILIKE $6 OR w.resource ILIKE $6) AS "is_match!"
           FROM (SELECT f.id, f.instance_id, f.severity, f.title, f.resource, f.status,
                        f.first_seen_at, f.last_seen_at, row_number() OVER (ORDER BY f.id) AS n
                 FROM sspm.finding_rows f
                 WHERE f.severity = $1
                   AND ($2::uuid IS NULL OR f.id > $2)
                   AND ($3::text IS NULL OR f.status = $3)
                   AND ($4::uuid IS NULL OR f.instance_id = $4)
                   AND ($5::text IS NULL OR f.check_id = $5)
                 ORDER BY f.id
                 LIMIT $7) w
           JOIN sspm.instances i ON i.id = w.instance_id
           WHERE w.title ILIKE $6 OR w.resource ILIKE $6 OR w.n = $7
           ORDER BY w.id
           LIMIT $8"#,
        sev,
        after,
        f.status as Option<FindingStatus>,
        f.instance_id,
        f.check,
        like,
        limit,
        want
    )
    .fetch_all(&state.pool)
    .await?;
    let cut_short = rows.iter().any(|r| r.n == limit);
    let matches: Vec<PageRow> = rows
        .into_iter()
        .filter(|r| r.is_match)
        .map(|r| PageRow {
            id: r.id,
            instance_id: r.instance_id,
            instance_name: r.instance_name,
            severity: r.severity,
            title: r.title,
            resource: r.resource,
            status: r.status,
            first_seen_at: r.first_seen_at,
            last_seen_at: r.last_seen_at,
        })
        .collect();
    Ok(if matches.len() as i64 >= want || !cut_short {
        Walk::Page(matches)
    } else {
        Walk::Short {
            matches: matches.len(),
        }
    })
}

/// The text filter for a rare term in one severity, from the trigram indexes.
async fn trigram_text_page(
    state: &ConsoleState,
    f: &Filter,
    sev: &str,
    after: Option<Uuid>,
    like: &str,
    want: i64,
) -> Result<Vec<PageRow>, sqlx::Error> {
    let candidates = trigram_candidates(state, f, &[sev.to_string()], after, like).await?;
    if candidates.len() as i64 <= TEXT_CANDIDATES {
        page_of(state, candidates, want).await
    } else {
        ordered_text_page(state, f, sev, after, like, want).await
    }
}

/// The rest of the page for a rare term, from one trigram scan over the severities from
/// `from` on: their first `want` matches in page order when they hold at most
/// TEXT_CANDIDATES, `None` when they hold more (then each severity pages alone).
async fn rare_text_rest(
    state: &ConsoleState,
    f: &Filter,
    from: usize,
    like: &str,
    want: i64,
) -> Result<Option<Vec<PageRow>>, sqlx::Error> {
    let severities: Vec<String> = SEVERITIES
        .iter()
        .skip(from)
        .filter(|s| f.severity.as_deref().is_none_or(|only| only == **s))
        .map(|s| s.to_string())
        .collect();
    if severities.is_empty() {
        return Ok(Some(Vec::new()));
    }
    let candidates = trigram_candidates(state, f, &severities, None, like).await?;
    if candidates.len() as i64 > TEXT_CANDIDATES {
        return Ok(None);
    }
    Ok(Some(page_of(state, candidates, want).await?))
}

/// Up to TEXT_CANDIDATES + 1 matches (id, severity) in `severities`, unordered, from the
/// (status, trigram) GIN indexes.
async fn trigram_candidates(
    state: &ConsoleState,
    f: &Filter,
    severities: &[String],
    after: Option<Uuid>,
    like: &str,
) -> Result<Vec<(Uuid, String)>, sqlx::Error> {
    let mut tx = state.pool.begin().await?;
    // Bitmap scans forced: the planner cannot estimate ILIKE '%..%' and would otherwise
    // walk the id order hoping for an early match that never comes. A custom plan always,
    // so a given status is an index condition of the GIN indexes (a generic plan of
    // `$4 IS NULL OR status = $4` could not use it).
    sqlx::query!(
        r#"SELECT set_config('enable_seqscan', 'off', true) AS "seqscan",
                  set_config('enable_indexscan', 'off', true) AS "indexscan",
                  set_config('plan_cache_mode', 'force_custom_plan', true) AS "plan_cache_mode""#
    )
    .fetch_one(&mut *tx)
    .await?;
    // The severity test is written so that no index serves it: ANDing the trigram bitmap
    // with a severity btree's (hundreds of thousands of rows) costs more than testing the
    // few rows the trigrams leave.
    let rows = sqlx::query!(
        r#"SELECT f.id, f.severity FROM sspm.finding_rows f
           WHERE (f.title ILIKE $1 OR f.resource ILIKE $1)
             AND array_position($2::text[], f.severity) IS NOT NULL
             AND ($3::uuid IS NULL OR f.id > $3)
             AND ($4::text IS NULL OR f.status = $4)
             AND ($5::uuid IS NULL OR f.instance_id = $5)
             AND ($6::text IS NULL OR f.check_id = $6)
           LIMIT $7"#,
        like,
        severities,
        after,
        f.status as Option<FindingStatus>,
        f.instance_id,
        f.check,
        TEXT_CANDIDATES + 1
    )
    .fetch_all(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(rows.into_iter().map(|r| (r.id, r.severity)).collect())
}

/// The first `want` of `candidates` in page order (severity, then id), read in full.
async fn page_of(
    state: &ConsoleState,
    candidates: Vec<(Uuid, String)>,
    want: i64,
) -> Result<Vec<PageRow>, sqlx::Error> {
    let rank = |sev: &str| SEVERITIES.iter().position(|s| *s == sev);
    let mut keyed: Vec<(Option<usize>, Uuid)> = candidates
        .iter()
        .map(|(id, sev)| (rank(sev), *id))
        .collect();
    keyed.sort_unstable();
    keyed.truncate(want.max(0) as usize);
    let ids: Vec<Uuid> = keyed.iter().map(|k| k.1).collect();
    let mut rows = sqlx::query_as!(
        PageRow,
        r#"SELECT f.id, f.instance_id, i.name AS instance_name, f.severity, f.title,
                  f.resource, f.status AS "status: Checked<FindingStatus>", f.first_seen_at, f.last_seen_at
           FROM sspm.finding_rows f JOIN sspm.instances i ON i.id = f.instance_id
           WHERE f.id = ANY($1)"#,
        &ids
    )
    .fetch_all(&state.pool)
    .await?;
    rows.sort_unstable_by_key(|r| (rank(&r.severity), r.id));
    Ok(rows)
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
               FROM sspm.finding_rows f JOIN sspm.instances i ON i.id = f.instance_id
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
