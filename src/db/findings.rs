//! Findings, their history, exceptions and per-scan check results. Writes are batched
//! with UNNEST so a scan costs a handful of statements whatever its size.

use chrono::{DateTime, Utc};
use sqlx::PgConnection;
use uuid::Uuid;

use crate::checks::{CheckOutcome, Severity};

use super::Checked;
use crate::lifecycle::{ActiveException, ExistingFinding, FindingStatus, FindingWrite, Transition};
use crate::status::CheckStatus;

const TABLE: &str = "sspm.findings";
/// Findings per upsert statement.
const UPSERT_BATCH: usize = 2000;

pub async fn existing_for_instance(
    conn: &mut PgConnection,
    instance_id: Uuid,
) -> Result<Vec<ExistingFinding>, sqlx::Error> {
    let rows = sqlx::query!(
        r#"SELECT id, check_id, resource, status AS "status: Checked<FindingStatus>"
           FROM sspm.findings WHERE instance_id = $1 FOR UPDATE"#,
        instance_id
    )
    .fetch_all(&mut *conn)
    .await?;
    // A row this build cannot read stops the scan (its transaction rolls back) instead of
    // being skipped: skipping would plan it as new and write a duplicate finding.
    rows.into_iter()
        .map(|r| {
            Ok(ExistingFinding {
                status: r.status.of(TABLE, r.id)?,
                id: r.id,
                check_id: r.check_id,
                resource: r.resource,
            })
        })
        .collect()
}

pub async fn active_exceptions(
    conn: &mut PgConnection,
    instance_id: Uuid,
    now: DateTime<Utc>,
) -> Result<Vec<ActiveException>, sqlx::Error> {
    let rows = sqlx::query!(
        "SELECT id, check_id, resource FROM sspm.exceptions
         WHERE instance_id = $1 AND (expires_at IS NULL OR expires_at > $2)",
        instance_id,
        now
    )
    .fetch_all(&mut *conn)
    .await?;
    Ok(rows
        .into_iter()
        .map(|r| ActiveException {
            id: r.id,
            check_id: r.check_id,
            resource: r.resource,
        })
        .collect())
}

pub async fn insert_check_results(
    conn: &mut PgConnection,
    scan_id: Uuid,
    instance_id: Uuid,
    outcomes: &[CheckOutcome],
    severity_of: impl Fn(&str) -> Severity,
) -> Result<(), sqlx::Error> {
    let ids: Vec<&str> = outcomes.iter().map(|o| o.check_id).collect();
    let statuses: Vec<CheckStatus> = outcomes.iter().map(|o| o.status).collect();
    let severities: Vec<&str> = outcomes
        .iter()
        .map(|o| severity_of(o.check_id).as_str())
        .collect();
    let reasons: Vec<Option<String>> = outcomes.iter().map(|o| o.reason.clone()).collect();
    let counts: Vec<i32> = outcomes.iter().map(|o| o.findings.len() as i32).collect();
    sqlx::query!(
        r#"INSERT INTO sspm.check_results (scan_id, instance_id, check_id, status, severity, reason, failed_count)
           SELECT $1, $2, u.check_id, u.status, u.severity, u.reason, u.failed_count
           FROM UNNEST($3::text[], $4::text[], $5::text[], $6::text[], $7::int4[])
                AS u(check_id, status, severity, reason, failed_count)"#,
        scan_id,
        instance_id,
        &ids as &[&str],
        &statuses as &[CheckStatus],
        &severities as &[&str],
        &reasons as &[Option<String>],
        &counts,
    )
    .execute(conn)
    .await?;
    Ok(())
}

/// Catalog data stored with each finding so consumers need not know the catalog.
pub struct FindingCatalogData {
    pub remediation: String,
    pub compliance: serde_json::Value,
}

pub async fn upsert(
    conn: &mut PgConnection,
    instance_id: Uuid,
    scan_id: Uuid,
    now: DateTime<Utc>,
    writes: &[FindingWrite<'_>],
    catalog: impl Fn(&str) -> FindingCatalogData,
) -> Result<(), sqlx::Error> {
    // Chunked, with evidence and compliance sent as JSON text (cast in SQL): the arrays of
    // one statement stay small however many findings a large workspace has, and no second
    // parsed copy of every evidence object is made.
    for chunk in writes.chunks(UPSERT_BATCH) {
        let n = chunk.len();
        let mut ids = Vec::with_capacity(n);
        let mut check_ids = Vec::with_capacity(n);
        let mut resources = Vec::with_capacity(n);
        let mut statuses = Vec::with_capacity(n);
        let mut severities = Vec::with_capacity(n);
        let mut titles = Vec::with_capacity(n);
        let mut evidence = Vec::with_capacity(n);
        let mut remediations = Vec::with_capacity(n);
        let mut compliance = Vec::with_capacity(n);
        let mut exception_ids: Vec<Option<Uuid>> = Vec::with_capacity(n);
        for w in chunk {
            let data = catalog(w.check_id);
            ids.push(w.id);
            check_ids.push(w.check_id);
            resources.push(w.draft.resource.as_str());
            statuses.push(w.status);
            severities.push(w.draft.severity.as_str());
            titles.push(w.draft.title.as_str());
            evidence.push(w.draft.evidence.to_string());
            remediations.push(data.remediation);
            compliance.push(data.compliance.to_string());
            exception_ids.push(w.exception_id);
        }
        sqlx::query!(
            r#"INSERT INTO sspm.findings
                   (id, instance_id, check_id, resource, status, severity, title, evidence, remediation,
                    compliance, first_seen_at, last_seen_at, first_scan_id, last_scan_id, exception_id)
               SELECT u.id, $1, u.check_id, u.resource, u.status, u.severity, u.title, u.evidence::jsonb,
                      u.remediation, u.compliance::jsonb, $2, $2, $3, $3, u.exception_id
               FROM UNNEST($4::uuid[], $5::text[], $6::text[], $7::text[], $8::text[], $9::text[],
                           $10::text[], $11::text[], $12::text[], $13::uuid[])
                    AS u(id, check_id, resource, status, severity, title, evidence, remediation, compliance, exception_id)
               ON CONFLICT (instance_id, check_id, resource) DO UPDATE SET
                   status = EXCLUDED.status,
                   severity = EXCLUDED.severity,
                   title = EXCLUDED.title,
                   evidence = EXCLUDED.evidence,
                   remediation = EXCLUDED.remediation,
                   compliance = EXCLUDED.compliance,
                   last_seen_at = EXCLUDED.last_seen_at,
                   last_scan_id = EXCLUDED.last_scan_id,
                   exception_id = EXCLUDED.exception_id,
                   resolved_at = NULL,
                   reopen_count = sspm.findings.reopen_count
                       + CASE WHEN sspm.findings.status = 'resolved' THEN 1 ELSE 0 END"#,
            instance_id,
            now,
            scan_id,
            &ids,
            &check_ids as &[&str],
            &resources as &[&str],
            &statuses as &[FindingStatus],
            &severities as &[&str],
            &titles as &[&str],
            &evidence,
            &remediations,
            &compliance,
            &exception_ids as &[Option<Uuid>],
        )
        .execute(&mut *conn)
        .await?;
    }
    Ok(())
}

pub async fn resolve(
    conn: &mut PgConnection,
    ids: &[Uuid],
    scan_id: Uuid,
    now: DateTime<Utc>,
) -> Result<(), sqlx::Error> {
    if ids.is_empty() {
        return Ok(());
    }
    sqlx::query!(
        "UPDATE sspm.findings SET status = 'resolved', resolved_at = $2, last_scan_id = $3, exception_id = NULL
         WHERE id = ANY($1)",
        ids,
        now,
        scan_id
    )
    .execute(conn)
    .await?;
    Ok(())
}

pub async fn unmute(conn: &mut PgConnection, ids: &[Uuid]) -> Result<(), sqlx::Error> {
    if ids.is_empty() {
        return Ok(());
    }
    sqlx::query!(
        "UPDATE sspm.findings SET status = 'open', exception_id = NULL WHERE id = ANY($1) AND status = 'muted'",
        ids
    )
    .execute(conn)
    .await?;
    Ok(())
}

pub async fn record_transitions(
    conn: &mut PgConnection,
    instance_id: Uuid,
    scan_id: Option<Uuid>,
    now: DateTime<Utc>,
    transitions: &[Transition],
) -> Result<(), sqlx::Error> {
    if transitions.is_empty() {
        return Ok(());
    }
    let finding_ids: Vec<Uuid> = transitions.iter().map(|t| t.finding_id).collect();
    let from: Vec<Option<FindingStatus>> = transitions.iter().map(|t| t.from).collect();
    let to: Vec<FindingStatus> = transitions.iter().map(|t| t.to).collect();
    let reasons: Vec<&str> = transitions.iter().map(|t| t.reason).collect();
    sqlx::query!(
        r#"INSERT INTO sspm.finding_events (finding_id, instance_id, scan_id, from_status, to_status, at, reason)
           SELECT u.finding_id, $1, $2, u.from_status, u.to_status, $3, u.reason
           FROM UNNEST($4::uuid[], $5::text[], $6::text[], $7::text[]) AS u(finding_id, from_status, to_status, reason)"#,
        instance_id,
        scan_id,
        now,
        &finding_ids,
        &from as &[Option<FindingStatus>],
        &to as &[FindingStatus],
        &reasons as &[&str],
    )
    .execute(conn)
    .await?;
    Ok(())
}

/// Open findings by severity after the scan, for the summary.
pub async fn open_counts(
    conn: &mut PgConnection,
    instance_id: Uuid,
) -> Result<Vec<(String, i64)>, sqlx::Error> {
    let rows = sqlx::query!(
        r#"SELECT severity, count(*) AS "n!" FROM sspm.findings
           WHERE instance_id = $1 AND status = 'open' GROUP BY severity"#,
        instance_id
    )
    .fetch_all(conn)
    .await?;
    Ok(rows.into_iter().map(|r| (r.severity, r.n)).collect())
}

/// A finding as listed to operators and exported.
#[derive(Debug, Clone, serde::Serialize)]
pub struct FindingListRow {
    pub id: Uuid,
    pub instance_id: Uuid,
    pub instance_name: String,
    pub region: String,
    pub workspace_id: Option<String>,
    pub check_id: String,
    pub resource: String,
    pub status: FindingStatus,
    pub severity: String,
    pub title: String,
    pub evidence: serde_json::Value,
    pub remediation: String,
    pub compliance: serde_json::Value,
    pub first_seen_at: DateTime<Utc>,
    pub last_seen_at: DateTime<Utc>,
    pub resolved_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Default, Clone)]
pub struct FindingFilter {
    pub instance_id: Option<Uuid>,
    /// None = every status.
    pub status: Option<FindingStatus>,
    /// Severities to include.
    pub severities: Option<Vec<String>>,
    pub check_id: Option<String>,
}

pub async fn list(
    executor: impl sqlx::PgExecutor<'_>,
    filter: &FindingFilter,
) -> Result<Vec<FindingListRow>, sqlx::Error> {
    let rows = sqlx::query!(
        r#"SELECT f.id, f.instance_id, i.name AS instance_name, i.region, i.workspace_id, f.check_id,
                  f.resource, f.status AS "status: Checked<FindingStatus>", f.severity, f.title,
                  f.evidence, f.remediation, f.compliance, f.first_seen_at, f.last_seen_at, f.resolved_at
           FROM sspm.findings f JOIN sspm.instances i ON i.id = f.instance_id
           WHERE ($1::uuid IS NULL OR f.instance_id = $1)
             AND ($2::text IS NULL OR f.status = $2)
             AND ($3::text[] IS NULL OR f.severity = ANY($3))
             AND ($4::text IS NULL OR f.check_id = $4)
           ORDER BY CASE f.severity WHEN 'critical' THEN 0 WHEN 'high' THEN 1 WHEN 'medium' THEN 2
                                    WHEN 'low' THEN 3 ELSE 4 END,
                    i.name, f.check_id, f.resource"#,
        filter.instance_id,
        filter.status as Option<FindingStatus>,
        filter.severities.as_deref(),
        filter.check_id,
    )
    .fetch_all(executor)
    .await?;
    rows.into_iter()
        .map(|r| {
            Ok(FindingListRow {
                status: r.status.of(TABLE, r.id)?,
                id: r.id,
                instance_id: r.instance_id,
                instance_name: r.instance_name,
                region: r.region,
                workspace_id: r.workspace_id,
                check_id: r.check_id,
                resource: r.resource,
                severity: r.severity,
                title: r.title,
                evidence: r.evidence,
                remediation: r.remediation,
                compliance: r.compliance,
                first_seen_at: r.first_seen_at,
                last_seen_at: r.last_seen_at,
                resolved_at: r.resolved_at,
            })
        })
        .collect()
}
