//! The instance page: health and what to do, score/coverage trend, the last scan's check
//! results with reasons, open findings, teammates and scan history. A fixed number of
//! queries (one per section), each bounded.

use std::sync::Arc;

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::response::Response;
use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::console::auth::Signed;
use crate::console::charts::{self, Point};
use crate::console::forms;
use crate::console::role::Role;
use crate::console::routes::manage::{done_notice, Done};
use crate::console::state::ConsoleState;
use crate::console::views::{self, Chrome};
use crate::db::instances::{self, Instance};
use crate::db::Checked;
use crate::status::{CheckStatus, ScanStatus};

const MAX_FINDINGS: i64 = 200;
const MAX_ADMINS: i64 = 2000;
const MAX_SCANS: i64 = 30;
const TREND_DAYS: i64 = 90;

pub struct CheckRow {
    pub check_id: String,
    pub title: String,
    pub severity: String,
    pub status: CheckStatus,
    pub status_words: &'static str,
    pub failed_count: i32,
    pub reason: String,
    /// A manual control: its row links to the attestation page.
    pub manual: bool,
}

pub struct FindingRow {
    pub id: Uuid,
    pub severity: String,
    pub title: String,
    pub resource: String,
    pub first_seen: String,
}

pub struct AdminRow {
    pub name: String,
    pub email: String,
    pub job_title: String,
    pub role: String,
    pub seat: &'static str,
    pub away: &'static str,
    pub last_active: String,
    pub first_seen: String,
    pub removed: String,
}

pub struct ScanRow {
    pub started: String,
    pub trigger: String,
    pub status: ScanStatus,
    pub duration: String,
    pub api_calls: i32,
    pub score: String,
    pub error: String,
}

#[derive(Template)]
#[template(path = "console/instance.html")]
struct InstancePage {
    chrome: Chrome,
    i: Instance,
    next_scan: String,
    status_label: &'static str,
    status_class: &'static str,
    advice: &'static str,
    score: String,
    coverage: String,
    trend: String,
    checks: Vec<CheckRow>,
    findings: Vec<FindingRow>,
    admins: Vec<AdminRow>,
    scans: Vec<ScanRow>,
    /// What the last action did (from `?done=`), or empty.
    notice: &'static str,
    /// "running" or "queued" while a scan is under way: the page then reloads itself.
    busy: &'static str,
    /// The scan-status poller, loaded only while `busy`.
    scan_status_src: String,
    can_scan: bool,
    is_admin: bool,
    next_runs: Vec<String>,
}

fn yes_no(v: Option<bool>) -> &'static str {
    match v {
        Some(true) => "yes",
        Some(false) => "no",
        None => "unknown",
    }
}

fn result_words(status: CheckStatus) -> &'static str {
    match status {
        CheckStatus::Pass => "pass",
        CheckStatus::Fail => "fail",
        CheckStatus::Error => "error (could not evaluate)",
        CheckStatus::NotEvaluated => "not evaluated",
    }
}

pub async fn page(
    State(state): State<Arc<ConsoleState>>,
    signed: Signed,
    Path(id): Path<Uuid>,
    done: Query<Done>,
) -> Response {
    if let Some(r) = signed.refuse_unless(Role::Viewer) {
        return r;
    }
    match render(&state, &signed, id, done_notice(&done)).await {
        Ok(Some(r)) => r,
        Ok(None) => views::not_found(&signed, "instance"),
        Err(e) => views::internal(e),
    }
}

async fn render(
    state: &ConsoleState,
    signed: &Signed,
    id: Uuid,
    notice: &'static str,
) -> Result<Option<Response>, sqlx::Error> {
    // One snapshot for the whole page: a scan that commits between two of these reads
    // would otherwise show its history beside the state before it, with nothing busy, so
    // the page's poller would stop on a mix of both.
    let mut tx = state
        .pool
        .begin_with("BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        .await?;
    let Some(i) = instances::find_by_id(&mut *tx, id).await? else {
        return Ok(None);
    };
    let latest = sqlx::query!(
        r#"SELECT id, score, coverage FROM sspm.scans
           WHERE instance_id = $1 AND status = 'succeeded'
           ORDER BY started_at DESC, id DESC LIMIT 1"#,
        id
    )
    .fetch_optional(&mut *tx)
    .await?;
    let now = Utc::now();
    let from = now - chrono::Duration::days(TREND_DAYS);
    let trend_rows = sqlx::query!(
        r#"SELECT started_at, score AS "score!", coverage FROM sspm.scans
           WHERE instance_id = $1 AND status = 'succeeded' AND score IS NOT NULL AND started_at > $2
           ORDER BY started_at LIMIT 2000"#,
        id,
        from
    )
    .fetch_all(&mut *tx)
    .await?;
    let score_pts: Vec<Point> = trend_rows
        .iter()
        .map(|r| Point {
            at: r.started_at,
            value: r.score,
        })
        .collect();
    let cov_pts: Vec<Point> = trend_rows
        .iter()
        .filter_map(|r| {
            r.coverage.map(|c| Point {
                at: r.started_at,
                value: c,
            })
        })
        .collect();
    let checks = match &latest {
        Some(l) => sqlx::query!(
            r#"SELECT check_id, status AS "status: Checked<CheckStatus>", severity, reason, failed_count
               FROM sspm.check_results WHERE scan_id = $1"#,
            l.id
        )
        .fetch_all(&mut *tx)
        .await?
        .into_iter()
        .map(|c| {
            let status = c.status.of(
                "sspm.check_results",
                format_args!("(scan {}, check {})", l.id, c.check_id),
            )?;
            let meta = crate::checks::meta(&c.check_id);
            Ok(CheckRow {
                manual: meta.is_some_and(|m| m.source == crate::checks::Source::Manual),
                title: meta
                    .map(|m| m.title.to_string())
                    .unwrap_or_else(|| "(check no longer in the catalog)".into()),
                status_words: result_words(status),
                reason: c.reason.unwrap_or_default(),
                check_id: c.check_id,
                severity: c.severity,
                status,
                failed_count: c.failed_count,
            })
        })
        .collect::<Result<_, sqlx::Error>>()?,
        None => Vec::new(),
    };
    let findings = sqlx::query!(
        r#"SELECT id, severity, title, resource, first_seen_at FROM sspm.finding_rows
           WHERE instance_id = $1 AND status = 'open'
           ORDER BY CASE severity WHEN 'critical' THEN 0 WHEN 'high' THEN 1 WHEN 'medium' THEN 2
                                  WHEN 'low' THEN 3 ELSE 4 END, title, resource
           LIMIT $2"#,
        id,
        MAX_FINDINGS
    )
    .fetch_all(&mut *tx)
    .await?
    .into_iter()
    .map(|f| FindingRow {
        id: f.id,
        severity: f.severity,
        title: f.title,
        resource: f.resource,
        first_seen: views::when(&Some(f.first_seen_at)),
    })
    .collect();
    let admins = sqlx::query!(
        r#"SELECT name, email, job_title, role, has_inbox_seat, away_mode_enabled,
                  last_active_at, first_seen_at, removed_at
           FROM sspm.admin_rows WHERE instance_id = $1
           ORDER BY removed_at IS NOT NULL, lower(coalesce(name, '')), admin_id LIMIT $2"#,
        id,
        MAX_ADMINS
    )
    .fetch_all(&mut *tx)
    .await?
    .into_iter()
    .map(|a| AdminRow {
        name: a.name.unwrap_or_default(),
        email: a.email.unwrap_or_default(),
        job_title: a.job_title.unwrap_or_default(),
        role: a.role.unwrap_or_default(),
        seat: yes_no(a.has_inbox_seat),
        away: yes_no(a.away_mode_enabled),
        last_active: views::when(&a.last_active_at),
        first_seen: views::when(&Some(a.first_seen_at)),
        removed: a
            .removed_at
            .map(|t| views::when(&Some(t)))
            .unwrap_or_default(),
    })
    .collect();
    let scans: Vec<ScanRow> = sqlx::query!(
        r#"SELECT id, started_at, finished_at, trigger, status AS "status: Checked<ScanStatus>",
                  api_calls, score, error
           FROM sspm.scans WHERE instance_id = $1
           ORDER BY started_at DESC, id DESC LIMIT $2"#,
        id,
        MAX_SCANS
    )
    .fetch_all(&mut *tx)
    .await?
    .into_iter()
    .map(|s| {
        Ok(ScanRow {
            status: s.status.of("sspm.scans", s.id)?,
            started: views::when(&Some(s.started_at)),
            duration: duration(s.started_at, s.finished_at),
            trigger: s.trigger,
            api_calls: s.api_calls,
            score: views::score(s.score),
            error: s.error.unwrap_or_default(),
        })
    })
    .collect::<Result<_, sqlx::Error>>()?;
    tx.commit().await?;
    let (status_label, status_class, advice) = views::status_words(i.status);
    let busy = if scans
        .first()
        .is_some_and(|s| s.status == ScanStatus::Running)
    {
        "running"
    } else if i.enabled && i.next_scan_at <= now {
        "queued"
    } else {
        ""
    };
    let next_runs = match (&i.schedule, &state.ops) {
        (Some(s), _) => forms::preview(s, "", s),
        (None, Some(ops)) => forms::preview("", "", &ops.default_schedule),
        (None, None) => Vec::new(),
    };
    Ok(Some(views::page(&InstancePage {
        chrome: Chrome::for_user(signed),
        next_scan: views::when(&Some(i.next_scan_at)),
        status_label,
        status_class,
        advice,
        score: views::score(latest.as_ref().and_then(|l| l.score)),
        coverage: views::pct(latest.as_ref().and_then(|l| l.coverage)),
        trend: charts::trend(
            &format!("Score and coverage over {TREND_DAYS} days"),
            &score_pts,
            &cov_pts,
            from,
            now,
        ),
        i,
        checks,
        findings,
        admins,
        scans,
        notice,
        busy,
        scan_status_src: crate::console::assets::scan_status_src(),
        can_scan: signed.role.allows(Role::Operator),
        is_admin: signed.role.allows(Role::Admin),
        next_runs,
    })))
}

fn duration(start: DateTime<Utc>, end: Option<DateTime<Utc>>) -> String {
    match end {
        Some(e) => {
            let ms = (e - start).num_milliseconds().max(0);
            if ms < 10_000 {
                format!("{:.1} s", ms as f64 / 1000.0)
            } else {
                format!("{} s", ms / 1000)
            }
        }
        None => "running".into(),
    }
}
