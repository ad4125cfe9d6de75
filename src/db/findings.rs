//! Findings, their history, exceptions and per-scan check results. A scan's writes are
//! batched with UNNEST into one statement (`write_scan`), whatever the workspace's size.

use foldhash::{HashMap, HashMapExt};

use chrono::{DateTime, Utc};
use sqlx::PgConnection;
use uuid::Uuid;

use crate::checks::{CheckOutcome, Severity};

use super::Checked;
use crate::lifecycle::{ActiveException, ExistingFinding, FindingStatus, FindingWrite, Plan};
use crate::status::CheckStatus;

const TABLE: &str = "sspm.findings";
/// Findings per upsert statement.
const UPSERT_BATCH: usize = 2000;

/// What a scan's lifecycle plan starts from: the instance's findings, locked for the rest
/// of the scan's transaction, and its exceptions in force at the scan's time. Read with the
/// instance's write lock, in one statement (`leases::lock_for_scan_write`).
#[derive(Debug, Default)]
pub struct PlanInputs {
    pub existing: Vec<ExistingFinding>,
    pub exceptions: Vec<ActiveException>,
}

/// One row of that statement: a finding (`is_exception` false) or an exception (true, no
/// finding columns). Options where the statement's UNION leaves sqlx unsure.
pub(crate) struct PlanRow {
    pub is_exception: bool,
    pub id: Option<Uuid>,
    pub check_id: Option<String>,
    pub resource: Option<String>,
    pub status: Option<Checked<FindingStatus>>,
    pub severity: Option<String>,
    pub exception_id: Option<Uuid>,
    pub content_digest: Option<i64>,
    pub last_seen_follows_instance: bool,
}

impl PlanInputs {
    pub(crate) fn push(&mut self, r: PlanRow) -> Result<(), sqlx::Error> {
        let (Some(id), Some(check_id)) = (r.id, r.check_id) else {
            return Err(missing_column(r.id.unwrap_or_default(), "id, check_id"));
        };
        if r.is_exception {
            self.exceptions.push(ActiveException {
                id,
                check_id,
                resource: r.resource,
            });
            return Ok(());
        }
        // A row this build cannot read stops the scan (its transaction rolls back) instead
        // of being skipped: skipping would plan it as new and write a duplicate finding.
        let status = match r.status {
            Some(status) => status.of(TABLE, id)?,
            None => return Err(missing_column(id, "status")),
        };
        let (Some(resource), Some(severity)) = (r.resource, r.severity) else {
            return Err(missing_column(id, "resource, severity"));
        };
        self.existing.push(ExistingFinding {
            status,
            id,
            check_id,
            resource,
            severity,
            exception_id: r.exception_id,
            content_digest: r.content_digest,
            last_seen_follows_instance: r.last_seen_follows_instance,
        });
        Ok(())
    }
}

/// A NOT NULL column read as NULL: only a schema this build does not know can do that.
fn missing_column(id: Uuid, column: &str) -> sqlx::Error {
    sqlx::Error::Decode(format!("{TABLE} row {id}: {column} is NULL").into())
}

/// Catalog data stored with each finding so consumers need not know the catalog: the
/// remediation text and the compliance mapping as JSON text (what `Value`'s serialiser
/// writes). Static: the catalog is compiled in, so its JSON is made once per process.
#[derive(Debug, Clone, Copy)]
pub struct FindingCatalogData {
    pub remediation: &'static str,
    pub compliance_json: &'static str,
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

/// Everything a scan writes about its checks and findings: its check results and the
/// lifecycle's plan (writes, resolutions, unmutes, transitions), with the findings as
/// they were read under the scan's lock.
pub struct ScanFindings<'a> {
    pub instance_id: Uuid,
    pub scan_id: Uuid,
    pub now: DateTime<Utc>,
    pub outcomes: &'a [CheckOutcome],
    pub plan: &'a Plan<'a>,
    pub existing: &'a [ExistingFinding],
    /// The scan succeeded (its instance's `findings_seen_*` columns move to it).
    pub succeeded: bool,
}

/// The plan's finding writes, split: new findings and those whose status, exception or
/// content (by digest) changed are upserted in full; every other one is an open or muted
/// finding found again unchanged. Of those, a succeeded scan writes nothing for the ones
/// whose `last_seen_at`/`last_scan_id` already follow the instance (they move with the
/// instance's `findings_seen_*` columns, migration 20261208000010); the others get those
/// two columns and the flag written (`stamped`). The rows end as the full upsert would
/// leave them, without sending or re-parsing their evidence.
struct SplitWrites<'p, 'a> {
    /// Found again unchanged, in all.
    seen_again: usize,
    /// Found again unchanged, with `last_seen_at`/`last_scan_id` to write.
    stamped: Vec<Uuid>,
    full: Vec<(&'p FindingWrite<'a>, i64)>,
    /// Remediation and compliance JSON per check, looked up once per scan.
    catalog_of: HashMap<&'static str, FindingCatalogData>,
}

fn split_writes<'p, 'a>(
    writes: &'p [FindingWrite<'a>],
    prior: &HashMap<Uuid, &ExistingFinding>,
    succeeded: bool,
    catalog: impl Fn(&str) -> FindingCatalogData,
) -> SplitWrites<'p, 'a> {
    let mut out = SplitWrites {
        seen_again: 0,
        stamped: Vec::new(),
        full: Vec::new(),
        catalog_of: HashMap::new(),
    };
    for w in writes {
        let data = *out
            .catalog_of
            .entry(w.check_id)
            .or_insert_with(|| catalog(w.check_id));
        let digest = content_digest(
            w.draft.severity.as_str(),
            &w.draft.title,
            data.remediation,
            data.compliance_json,
            &w.draft.evidence,
        );
        match prior.get(&w.id) {
            Some(p)
                if p.status == w.status
                    && p.exception_id == w.exception_id
                    && p.content_digest == Some(digest) =>
            {
                out.seen_again += 1;
                if !(succeeded && p.last_seen_follows_instance) {
                    out.stamped.push(w.id);
                }
            }
            _ => out.full.push((w, digest)),
        }
    }
    out
}

/// The findings a succeeded scan leaves with `last_seen_at`/`last_scan_id` following the
/// instance although it did not find them again (their check was not evaluated): their
/// values are stored before the instance's move on. Resolved and unmuted findings store
/// theirs in their own updates.
fn to_freeze(existing: &[ExistingFinding], plan: &Plan<'_>, succeeded: bool) -> Vec<Uuid> {
    if !succeeded {
        return Vec::new();
    }
    let touched: foldhash::HashSet<Uuid> = plan
        .writes
        .iter()
        .map(|w| w.id)
        .chain(plan.resolve.iter().copied())
        .chain(plan.unmute.iter().copied())
        .collect();
    existing
        .iter()
        .filter(|f| {
            f.last_seen_follows_instance
                && f.status != FindingStatus::Resolved
                && !touched.contains(&f.id)
        })
        .map(|f| f.id)
        .collect()
}

/// One chunk of full finding writes as the columns of an `UNNEST`, evidence and
/// compliance as JSON text (cast in SQL): no second parsed copy of any evidence is made.
#[derive(Default)]
struct FullColumns<'p> {
    ids: Vec<Uuid>,
    check_ids: Vec<&'p str>,
    resources: Vec<&'p str>,
    statuses: Vec<FindingStatus>,
    severities: Vec<&'p str>,
    titles: Vec<&'p str>,
    evidence: Vec<&'p str>,
    remediations: Vec<&'p str>,
    compliance: Vec<&'p str>,
    exception_ids: Vec<Option<Uuid>>,
    digests: Vec<i64>,
}

impl<'p> FullColumns<'p> {
    fn of(
        chunk: &[(&'p FindingWrite<'_>, i64)],
        catalog_of: &'p HashMap<&'static str, FindingCatalogData>,
    ) -> Self {
        let mut c = FullColumns::default();
        for (w, digest) in chunk {
            let data = &catalog_of[w.check_id];
            c.ids.push(w.id);
            c.check_ids.push(w.check_id);
            c.resources.push(w.draft.resource.as_str());
            c.statuses.push(w.status);
            c.severities.push(w.draft.severity.as_str());
            c.titles.push(w.draft.title.as_str());
            c.evidence.push(w.draft.evidence.json());
            c.remediations.push(data.remediation);
            c.compliance.push(data.compliance_json);
            c.exception_ids.push(w.exception_id);
            c.digests.push(*digest);
        }
        c
    }
}

/// Check results as the columns of an `UNNEST`.
#[derive(Default)]
struct ResultColumns<'p> {
    check_ids: Vec<&'p str>,
    statuses: Vec<CheckStatus>,
    severities: Vec<&'static str>,
    reasons: Vec<Option<&'p str>>,
    failed_counts: Vec<i32>,
}

/// Finding history rows (`finding_events`) as the columns of an `UNNEST`.
#[derive(Default)]
struct EventColumns {
    finding_ids: Vec<Uuid>,
    from: Vec<Option<FindingStatus>>,
    to: Vec<FindingStatus>,
    reasons: Vec<&'static str>,
}

/// What one execution of [`write_statement`] writes; any part may be empty.
struct Parts<'p> {
    results: ResultColumns<'p>,
    stamped: &'p [Uuid],
    full: FullColumns<'p>,
    resolve: &'p [Uuid],
    unmute: &'p [Uuid],
    freeze: &'p [Uuid],
    events: EventColumns,
}

/// Writes a scan's check results and findings plan in ONE statement (data-modifying
/// CTEs): each round trip costs the daemon and Postgres more than most of these writes,
/// and a steady scan had five of them. The parts touch disjoint findings (the plan writes
/// failing ones, resolves or unmutes others), so no row is modified twice in a statement,
/// and the history rows' foreign keys are checked at its end, when new findings exist.
///
/// Full writes beyond `UPSERT_BATCH` (a large workspace's first scan) go first, each chunk
/// in the same statement with its other parts empty ([`super::write_chunks`]), so no
/// statement's arrays grow with the workspace.
pub async fn write_scan(
    conn: &mut PgConnection,
    scan: ScanFindings<'_>,
    severity_of: impl Fn(&str) -> Severity,
    catalog: impl Fn(&str) -> FindingCatalogData,
) -> Result<UpsertCounts, sqlx::Error> {
    let ScanFindings {
        instance_id,
        scan_id,
        now,
        outcomes,
        plan,
        existing,
        succeeded,
    } = scan;
    let prior: HashMap<Uuid, &ExistingFinding> = existing.iter().map(|f| (f.id, f)).collect();
    let split = split_writes(&plan.writes, &prior, succeeded, catalog);
    let freeze = to_freeze(existing, plan, succeeded);
    let at = (instance_id, scan_id, now, succeeded);
    for (chunk, last) in super::write_chunks(split.full.len(), UPSERT_BATCH) {
        let full = FullColumns::of(&split.full[chunk], &split.catalog_of);
        let parts = if !last {
            Parts {
                results: ResultColumns::default(),
                stamped: &[],
                full,
                resolve: &[],
                unmute: &[],
                freeze: &[],
                events: EventColumns::default(),
            }
        } else {
            Parts {
                results: ResultColumns {
                    check_ids: outcomes.iter().map(|o| o.check_id).collect(),
                    statuses: outcomes.iter().map(|o| o.status).collect(),
                    severities: outcomes
                        .iter()
                        .map(|o| severity_of(o.check_id).as_str())
                        .collect(),
                    reasons: outcomes.iter().map(|o| o.reason.as_deref()).collect(),
                    failed_counts: outcomes.iter().map(|o| o.findings.len() as i32).collect(),
                },
                stamped: &split.stamped,
                full,
                resolve: &plan.resolve,
                unmute: &plan.unmute,
                freeze: &freeze,
                events: EventColumns {
                    finding_ids: plan.transitions.iter().map(|t| t.finding_id).collect(),
                    from: plan.transitions.iter().map(|t| t.from).collect(),
                    to: plan.transitions.iter().map(|t| t.to).collect(),
                    reasons: plan.transitions.iter().map(|t| t.reason).collect(),
                },
            }
        };
        write_statement(conn, at, parts).await?;
    }
    Ok(UpsertCounts {
        written: split.full.len(),
        seen_again: split.seen_again,
    })
}

async fn write_statement(
    conn: &mut PgConnection,
    (instance_id, scan_id, now, succeeded): (Uuid, Uuid, DateTime<Utc>, bool),
    p: Parts<'_>,
) -> Result<(), sqlx::Error> {
    let (r, f, e) = (&p.results, &p.full, &p.events);
    sqlx::query!(
        r#"WITH results AS (
               INSERT INTO sspm.check_results
                   (scan_id, instance_id, check_id, status, severity, reason, failed_count)
               SELECT $2, $1, u.check_id, u.status, u.severity, u.reason, u.failed_count
               FROM UNNEST($4::text[], $5::text[], $6::text[], $7::text[], $8::int4[])
                    AS u(check_id, status, severity, reason, failed_count)
           ),
           stamped AS (
               UPDATE sspm.finding_rows
               SET last_seen_at = $3, last_scan_id = $2, last_seen_follows_instance = $27
               WHERE id = ANY($9)
           ),
           written AS (
               INSERT INTO sspm.finding_rows
                   (id, instance_id, check_id, resource, status, severity, title, evidence, remediation,
                    compliance, first_seen_at, last_seen_at, first_scan_id, last_scan_id, exception_id,
                    content_digest, last_seen_follows_instance)
               SELECT u.id, $1, u.check_id, u.resource, u.status, u.severity, u.title, u.evidence::jsonb,
                      u.remediation, u.compliance::jsonb, $3, $3, $2, $2, u.exception_id, u.digest, $27
               FROM UNNEST($10::uuid[], $11::text[], $12::text[], $13::text[], $14::text[], $15::text[],
                           $16::text[], $17::text[], $18::text[], $19::uuid[], $20::int8[])
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
                   last_seen_follows_instance = EXCLUDED.last_seen_follows_instance,
                   exception_id = EXCLUDED.exception_id,
                   content_digest = EXCLUDED.content_digest,
                   resolved_at = NULL,
                   reopen_count = sspm.finding_rows.reopen_count
                       + CASE WHEN sspm.finding_rows.status = 'resolved' THEN 1 ELSE 0 END
           ),
           -- Resolved, unmuted and frozen findings were not found again: each stores its
           -- last seen values as the view derives them (the instance's last succeeded
           -- scan for a flagged one, read before this scan moves it) and is unflagged.
           resolved AS (
               UPDATE sspm.finding_rows f
               SET status = 'resolved', resolved_at = $3, last_scan_id = $2, exception_id = NULL,
                   last_seen_at = v.last_seen_at, last_seen_follows_instance = false
               FROM sspm.findings v
               WHERE v.id = f.id AND f.id = ANY($21)
           ),
           unmuted AS (
               UPDATE sspm.finding_rows f
               SET status = 'open', exception_id = NULL, last_seen_at = v.last_seen_at,
                   last_scan_id = v.last_scan_id, last_seen_follows_instance = false
               FROM sspm.findings v
               WHERE v.id = f.id AND f.id = ANY($22) AND f.status = 'muted'
           ),
           frozen AS (
               UPDATE sspm.finding_rows f
               SET last_seen_at = v.last_seen_at, last_scan_id = v.last_scan_id,
                   last_seen_follows_instance = false
               FROM sspm.findings v
               WHERE v.id = f.id AND f.id = ANY($28) AND f.last_seen_follows_instance
           )
           INSERT INTO sspm.finding_events
               (finding_id, instance_id, scan_id, from_status, to_status, at, reason)
           SELECT u.finding_id, $1, $2, u.from_status, u.to_status, $3, u.reason
           FROM UNNEST($23::uuid[], $24::text[], $25::text[], $26::text[])
                AS u(finding_id, from_status, to_status, reason)"#,
        instance_id,
        scan_id,
        now,
        &r.check_ids as &[&str],
        &r.statuses as &[CheckStatus],
        &r.severities as &[&str],
        &r.reasons as &[Option<&str>],
        &r.failed_counts,
        p.stamped,
        &f.ids,
        &f.check_ids as &[&str],
        &f.resources as &[&str],
        &f.statuses as &[FindingStatus],
        &f.severities as &[&str],
        &f.titles as &[&str],
        &f.evidence as &[&str],
        &f.remediations as &[&str],
        &f.compliance as &[&str],
        &f.exception_ids as &[Option<Uuid>],
        &f.digests,
        p.resolve,
        p.unmute,
        &e.finding_ids,
        &e.from as &[Option<FindingStatus>],
        &e.to as &[FindingStatus],
        &e.reasons as &[&str],
        succeeded,
        p.freeze,
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
        // The view (derived last_seen_at); its columns are NOT NULL in its table.
        r#"SELECT f.id AS "id!", f.instance_id AS "instance_id!", i.name AS instance_name, i.region,
                  i.workspace_id, f.check_id AS "check_id!", f.resource AS "resource!",
                  f.status AS "status!: Checked<FindingStatus>", f.severity AS "severity!",
                  f.title AS "title!", f.evidence AS "evidence!", f.remediation AS "remediation!",
                  f.compliance AS "compliance!", f.first_seen_at AS "first_seen_at!",
                  f.last_seen_at AS "last_seen_at!", f.resolved_at
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
    use crate::checks::FindingDraft;
    use crate::lifecycle::{self, Mode};
    use serde_json::json;

    fn outcome(id: &'static str, status: CheckStatus, resources: &[&str]) -> CheckOutcome {
        CheckOutcome {
            check_id: id,
            status,
            reason: None,
            findings: resources
                .iter()
                .map(|r| FindingDraft {
                    resource: (*r).into(),
                    severity: Severity::High,
                    title: format!("t {r}"),
                    evidence: json!({}).into(),
                })
                .collect(),
        }
    }

    const NO_CATALOG: FindingCatalogData = FindingCatalogData {
        remediation: "",
        compliance_json: "{}",
    };

    /// A stored finding whose content digest matches what `outcome` drafts for it.
    fn stored(
        check: &str,
        resource: &str,
        status: FindingStatus,
        follows: bool,
    ) -> ExistingFinding {
        let evidence = json!({}).into();
        let title = format!("t {resource}");
        ExistingFinding {
            id: Uuid::new_v4(),
            check_id: check.into(),
            resource: resource.into(),
            status,
            severity: "high".into(),
            exception_id: None,
            content_digest: Some(content_digest("high", &title, "", "{}", &evidence)),
            last_seen_follows_instance: follows,
        }
    }

    /// What a scan writes of the findings it finds again, and which following ones it
    /// freezes (migration 20261208000010).
    #[test]
    fn found_again_following_findings_are_not_written_and_the_rest_are_frozen() {
        let catalog = |_: &str| NO_CATALOG;
        let follows = stored("a", "r1", FindingStatus::Open, true);
        let stored_only = stored("a", "r2", FindingStatus::Open, false);
        let not_evaluated = stored("b", "r3", FindingStatus::Open, true);
        let resolved_before = stored("b", "r4", FindingStatus::Resolved, false);
        let resolving = stored("c", "r5", FindingStatus::Open, true);
        let existing = vec![
            follows.clone(),
            stored_only.clone(),
            not_evaluated.clone(),
            resolved_before,
            resolving.clone(),
        ];
        let outcomes = vec![
            outcome("a", CheckStatus::Fail, &["r1", "r2"]),
            outcome("b", CheckStatus::Error, &[]),
            outcome("c", CheckStatus::Pass, &[]),
        ];
        let plan = lifecycle::plan(&outcomes, &existing, &[], Mode::Complete, |_| false);
        assert_eq!(plan.resolve, vec![resolving.id]);
        let prior: HashMap<Uuid, &ExistingFinding> = existing.iter().map(|f| (f.id, f)).collect();

        let split = split_writes(&plan.writes, &prior, true, catalog);
        assert_eq!(split.seen_again, 2);
        assert!(split.full.is_empty());
        assert_eq!(
            split.stamped,
            vec![stored_only.id],
            "only the unflagged one is written"
        );
        assert_eq!(to_freeze(&existing, &plan, true), vec![not_evaluated.id]);

        // A failed scan does not move the instance: everything it finds again is stamped,
        // nothing is frozen.
        let split = split_writes(&plan.writes, &prior, false, catalog);
        assert_eq!(split.stamped, vec![follows.id, stored_only.id]);
        assert!(to_freeze(&existing, &plan, false).is_empty());
    }

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
