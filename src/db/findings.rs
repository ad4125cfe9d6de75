//! Findings, their history, exceptions and per-scan check results. Writes are batched
//! with UNNEST so a scan costs a handful of statements whatever its size.

use std::collections::HashMap;

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
        r#"SELECT id, check_id, resource, status AS "status: Checked<FindingStatus>", severity,
                  exception_id, content_digest
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
                severity: r.severity,
                exception_id: r.exception_id,
                content_digest: r.content_digest,
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

/// Digest of what the scanner writes into a finding's content columns (stored as
/// `sspm.findings.content_digest`): SHA-256 over severity, title, remediation and
/// compliance (each length-prefixed) and the evidence's JSON text, first 8 bytes. Stable
/// across builds (no per-process hash keys), so a digest stored by one build is compared
/// by the next. The evidence arrives as the compact text `Value`'s serialiser writes
/// ([`crate::checks::Evidence`]), so digests stored before it existed still match.
pub fn content_digest(
    severity: &str,
    title: &str,
    remediation: &str,
    compliance_json: &str,
    evidence: &crate::checks::Evidence,
) -> i64 {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    for field in [severity, title, remediation, compliance_json] {
        h.update((field.len() as u64).to_le_bytes());
        h.update(field.as_bytes());
    }
    h.update(evidence.json().as_bytes());
    let out = h.finalize();
    i64::from_be_bytes(out[..8].try_into().expect("8 bytes"))
}

/// How many findings a scan wrote in full and how many it only saw again.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct UpsertCounts {
    pub written: usize,
    pub seen_again: usize,
}

/// Writes the plan's findings: new ones and those whose status, exception or content
/// (by digest) changed are upserted in full; every other one is an open or muted finding
/// found again unchanged, whose `last_seen_at`/`last_scan_id` move in one statement. The
/// rows end exactly as the full upsert would leave them (for an unchanged row it only
/// changes those two columns), without sending or re-parsing their evidence.
pub async fn upsert(
    conn: &mut PgConnection,
    instance_id: Uuid,
    scan_id: Uuid,
    now: DateTime<Utc>,
    writes: &[FindingWrite<'_>],
    existing: &[ExistingFinding],
    catalog: impl Fn(&str) -> FindingCatalogData,
) -> Result<UpsertCounts, sqlx::Error> {
    let prior: HashMap<Uuid, &ExistingFinding> = existing.iter().map(|f| (f.id, f)).collect();
    // Catalog data is per check: made (and its compliance serialised) once per scan.
    let mut catalog_of: HashMap<&str, (String, String)> = HashMap::new();
    let mut seen_again: Vec<Uuid> = Vec::new();
    let mut full: Vec<(&FindingWrite<'_>, i64)> = Vec::new();
    for w in writes {
        let (remediation, compliance) = catalog_of.entry(w.check_id).or_insert_with(|| {
            let data = catalog(w.check_id);
            (data.remediation, data.compliance.to_string())
        });
        let digest = content_digest(
            w.draft.severity.as_str(),
            &w.draft.title,
            remediation,
            compliance,
            &w.draft.evidence,
        );
        match prior.get(&w.id) {
            Some(p)
                if p.status == w.status
                    && p.exception_id == w.exception_id
                    && p.content_digest == Some(digest) =>
            {
                seen_again.push(w.id)
            }
            _ => full.push((w, digest)),
        }
    }
    if !seen_again.is_empty() {
        sqlx::query!(
            "UPDATE sspm.findings SET last_seen_at = $2, last_scan_id = $3 WHERE id = ANY($1)",
            &seen_again,
            now,
            scan_id
        )
        .execute(&mut *conn)
        .await?;
    }
    // Chunked, with evidence and compliance sent as JSON text (cast in SQL): the arrays of
    // one statement stay small however many findings a large workspace has, and no second
    // parsed copy of every evidence object is made.
    for chunk in full.chunks(UPSERT_BATCH) {
        let n = chunk.len();
        let mut ids = Vec::with_capacity(n);
        let mut check_ids = Vec::with_capacity(n);
        let mut resources = Vec::with_capacity(n);
        let mut statuses = Vec::with_capacity(n);
        let mut severities = Vec::with_capacity(n);
        let mut titles = Vec::with_capacity(n);
        let mut evidence: Vec<&str> = Vec::with_capacity(n);
        let mut remediations: Vec<&str> = Vec::with_capacity(n);
        let mut compliance: Vec<&str> = Vec::with_capacity(n);
        let mut exception_ids: Vec<Option<Uuid>> = Vec::with_capacity(n);
        let mut digests: Vec<i64> = Vec::with_capacity(n);
        for (w, digest) in chunk {
            let (rem, comp) = &catalog_of[w.check_id];
            ids.push(w.id);
            check_ids.push(w.check_id);
            resources.push(w.draft.resource.as_str());
            statuses.push(w.status);
            severities.push(w.draft.severity.as_str());
            titles.push(w.draft.title.as_str());
            evidence.push(w.draft.evidence.json());
            remediations.push(rem);
            compliance.push(comp);
            exception_ids.push(w.exception_id);
            digests.push(*digest);
        }
        sqlx::query!(
            r#"INSERT INTO sspm.findings
                   (id, instance_id, check_id, resource, status, severity, title, evidence, remediation,
                    compliance, first_seen_at, last_seen_at, first_scan_id, last_scan_id, exception_id,
                    content_digest)
               SELECT u.id, $1, u.check_id, u.resource, u.status, u.severity, u.title, u.evidence::jsonb,
                      u.remediation, u.compliance::jsonb, $2, $2, $3, $3, u.exception_id, u.digest
               FROM UNNEST($4::uuid[], $5::text[], $6::text[], $7::text[], $8::text[], $9::text[],
                           $10::text[], $11::text[], $12::text[], $13::uuid[], $14::int8[])
                    AS u(id, check_id, resource, status, severity, title, evidence, remediation, compliance,
                         exception_id, digest)
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
                   content_digest = EXCLUDED.content_digest,
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
            &evidence as &[&str],
            &remediations as &[&str],
            &compliance as &[&str],
            &exception_ids as &[Option<Uuid>],
            &digests,
        )
        .execute(&mut *conn)
        .await?;
    }
    Ok(UpsertCounts {
        written: full.len(),
        seen_again: seen_again.len(),
    })
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

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_content_digest_is_stable_and_covers_every_content_column() {
        let ev: crate::checks::Evidence = json!({"email_domain": "gmail.com", "n": 2}).into();
        let base = content_digest("high", "t", "fix it", r#"{"soc2":["CC6.1"]}"#, &ev);
        // A digest stored by one build is compared by the next: pinned (computed
        // independently: SHA-256 over the u64-LE-length-prefixed fields, then the compact
        // evidence JSON, first 8 bytes big-endian).
        assert_eq!(base, -4_983_380_831_271_507_824);
        let variants = [
            content_digest("low", "t", "fix it", r#"{"soc2":["CC6.1"]}"#, &ev),
            content_digest("high", "t2", "fix it", r#"{"soc2":["CC6.1"]}"#, &ev),
            content_digest("high", "t", "fix", r#"{"soc2":["CC6.1"]}"#, &ev),
            content_digest("high", "t", "fix it", r#"{}"#, &ev),
            content_digest(
                "high",
                "t",
                "fix it",
                r#"{"soc2":["CC6.1"]}"#,
                &json!({"n": 2}).into(),
            ),
            // Moving text between fields is a change (fields are length-prefixed).
            content_digest("high", "tf", "ix it", r#"{"soc2":["CC6.1"]}"#, &ev),
        ];
        for v in variants {
            assert_ne!(v, base);
        }
    }
}
