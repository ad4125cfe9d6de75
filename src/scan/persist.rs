//! Persist: every write of a scan in ONE transaction, fenced by the scheduler's lease.
//! If the fence fails or anything errors, the transaction rolls back and the previous
//! state stays intact.

use std::collections::{BTreeMap, HashMap};
use std::time::Instant;

use chrono::{DateTime, Utc};
use sqlx::PgConnection;
use uuid::Uuid;

use super::collect::Collected;
use super::lifecycle::{self, FindingStatus, Mode};
use super::report::{CheckLine, ScanReport, ScanStatus};
use super::{Failure, ScanError, Scanner};
use crate::checks::{self, ActivityData, CheckOutcome, Source};
use crate::db::admins::AdminActivity;
use crate::db::findings::FindingCatalogData;
use crate::db::instances::{self, Instance, InstanceScanUpdate};
use crate::db::{activity, admins, findings, scans};

/// The scheduler's claim on an instance: writes commit only while it still holds.
#[derive(Debug, Clone)]
pub struct Fence {
    pub lease_token: Uuid,
    /// The scan row created with the claim, if any.
    pub scan_id: Option<Uuid>,
    pub next_on_success: DateTime<Utc>,
    pub next_on_failure: DateTime<Utc>,
}

impl Fence {
    fn next_scan_at(
        &self,
        report_ok: bool,
        rate_limited: Option<std::time::Duration>,
    ) -> DateTime<Utc> {
        match rate_limited {
            Some(reset) => {
                let snooze = Utc::now()
                    + chrono::Duration::from_std(reset).unwrap_or(chrono::Duration::seconds(10));
                snooze.min(self.next_on_success)
            }
            None if report_ok => self.next_on_success,
            None => self.next_on_failure,
        }
    }
}

/// Clears the lease and sets the next due time, only if the lease is still ours.
async fn release_fenced(
    conn: &mut PgConnection,
    instance_id: Uuid,
    fence: &Fence,
    next: DateTime<Utc>,
) -> Result<bool, sqlx::Error> {
    let done = sqlx::query!(
        "UPDATE sspm.instances
         SET lease_token = NULL, lease_owner = NULL, lease_expires_at = NULL, lease_scan_id = NULL,
             -- Claims and heartbeats keep next_scan_at equal to lease_expires_at; anything
             -- else means an operator queued a scan or changed the schedule meanwhile,
             -- and their choice wins over the computed time.
             next_scan_at = CASE WHEN next_scan_at IS DISTINCT FROM lease_expires_at
                                 THEN next_scan_at ELSE $3 END
         WHERE id = $1 AND lease_token = $2",
        instance_id,
        fence.lease_token,
        next
    )
    .execute(conn)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Locks the instance row for the rest of the scan's transaction and checks it may still be
/// written: it exists (an operator may have run `instance remove` while the API calls were
/// in flight; its scan row went with it by cascade), and a scheduled scan still holds the
/// lease. Manual scans need the existence check as much as fenced ones: without it their
/// writes fail on a foreign key instead of ending as `InstanceGone`.
async fn lock_instance(
    conn: &mut PgConnection,
    instance: &Instance,
    fence: Option<&Fence>,
) -> Result<(), ScanError> {
    let held = sqlx::query_scalar!(
        "SELECT lease_token FROM sspm.instances WHERE id = $1 FOR UPDATE",
        instance.id
    )
    .fetch_optional(conn)
    .await?;
    match (held, fence) {
        (None, _) => Err(ScanError::InstanceGone(instance.id)),
        (Some(token), Some(f)) if token != Some(f.lease_token) => {
            Err(ScanError::LeaseLost(instance.id))
        }
        _ => Ok(()),
    }
}

pub(super) struct PersistInput<'a> {
    pub instance: &'a Instance,
    pub scan_id: Uuid,
    pub now: DateTime<Utc>,
    pub fence: Option<Fence>,
    pub outcomes: Vec<CheckOutcome>,
    pub collected: &'a Collected,
    pub failure: Option<Failure>,
    pub api_calls: u32,
    pub started: Instant,
}

fn catalog_data(check_id: &str) -> FindingCatalogData {
    match checks::meta(check_id) {
        Some(m) => FindingCatalogData {
            remediation: m.remediation.to_string(),
            compliance: serde_json::Value::Object(
                m.compliance
                    .iter()
                    .map(|(framework, ids)| ((*framework).to_string(), serde_json::json!(ids)))
                    .collect(),
            ),
        },
        None => FindingCatalogData {
            remediation: String::new(),
            compliance: serde_json::json!({}),
        },
    }
}

fn is_health_check(check_id: &str) -> bool {
    checks::meta(check_id).is_some_and(|m| m.source == Source::Health)
}

fn severity_of(check_id: &str) -> checks::Severity {
    checks::meta(check_id)
        .map(|m| m.severity)
        .unwrap_or(checks::Severity::Info)
}

/// Per-admin last activity and last login among this scan's new events.
fn admin_activity(collected: &Collected) -> HashMap<String, AdminActivity> {
    let mut map: HashMap<String, AdminActivity> = HashMap::new();
    for e in collected.new_events() {
        let Some(admin) = &e.performed_by_id else {
            continue;
        };
        let entry = map.entry(admin.clone()).or_default();
        entry.last_active_at = entry.last_active_at.max(Some(e.created_at));
        if e.activity_type == "admin_login_success" {
            entry.last_login_at = entry.last_login_at.max(Some(e.created_at));
        }
    }
    map
}

pub(super) async fn persist(
    scanner: &Scanner,
    input: PersistInput<'_>,
) -> Result<ScanReport, ScanError> {
    let PersistInput {
        instance,
        scan_id,
        now,
        fence,
        outcomes,
        collected,
        failure,
        api_calls,
        started,
    } = input;
    let mode = if failure.is_none() {
        Mode::Complete
    } else {
        Mode::HealthOnly
    };
    let mut tx = scanner.pool.begin().await?;
    lock_instance(&mut tx, instance, fence.as_ref()).await?;

    findings::insert_check_results(&mut tx, scan_id, instance.id, &outcomes, severity_of).await?;
    let existing = findings::existing_for_instance(&mut tx, instance.id).await?;
    let exceptions = findings::active_exceptions(&mut tx, instance.id, now).await?;
    let plan = lifecycle::plan(&outcomes, &existing, &exceptions, mode, is_health_check);
    findings::upsert(
        &mut tx,
        instance.id,
        scan_id,
        now,
        &plan.writes,
        catalog_data,
    )
    .await?;
    findings::resolve(&mut tx, &plan.resolve, scan_id, now).await?;
    findings::unmute(&mut tx, &plan.unmute).await?;
    findings::record_transitions(&mut tx, instance.id, Some(scan_id), now, &plan.transitions)
        .await?;

    let muted: std::collections::HashSet<(&str, &str)> = plan
        .writes
        .iter()
        .filter(|w| w.status == FindingStatus::Muted)
        .map(|w| (w.check_id, w.draft.resource.as_str()))
        .collect();
    let posture = checks::posture(&outcomes, |check, resource| {
        muted.contains(&(check, resource))
    });

    let mut events_ingested = None;
    let (mut cursor_at, mut covered_from) = (None, None);
    let mut admins_seen = None;
    if mode == Mode::Complete {
        if let Ok(list) = &collected.snapshot.admins {
            admins::sync(&mut tx, instance.id, now, list, &admin_activity(collected)).await?;
            admins_seen = Some(list.len() as i32);
        }
        if let (ActivityData::Available { .. }, Some(window)) =
            (&collected.snapshot.activity, collected.fetched_window)
        {
            let n = activity::insert(&mut tx, instance.id, scan_id, collected.new_events()).await?;
            events_ingested = Some(n as i32);
            cursor_at = Some(window.before);
            covered_from = Some(window.covered_from);
        }
    }

    let open = findings::open_counts(&mut tx, instance.id).await?;
    let open_total: i64 = open.iter().map(|(_, n)| n).sum();
    let mut new_by_severity: BTreeMap<String, usize> = BTreeMap::new();
    for t in &plan.transitions {
        if t.to == FindingStatus::Open
            && (t.from.is_none() || t.from == Some(FindingStatus::Resolved))
        {
            if let Some(w) = plan.writes.iter().find(|w| w.id == t.finding_id) {
                *new_by_severity
                    .entry(w.draft.severity.as_str().to_string())
                    .or_default() += 1;
            }
        }
    }
    let new_count = new_by_severity.values().sum::<usize>();
    let resolved_count = plan.resolved_count();

    let status = if failure.is_none() {
        ScanStatus::Succeeded
    } else {
        ScanStatus::Failed
    };
    let error = failure.as_ref().map(Failure::message);
    let error_kind = failure.as_ref().map(|f| f.kind().to_string());
    let me = collected.snapshot.me.as_ref().ok();
    let app = me.and_then(|m| m.app.as_ref());
    let instance_status = match &failure {
        None => Some("ok"),
        Some(f) => f.instance_status(),
    };
    let finished_at = Utc::now();
    let scan_ok = scans::finish(
        &mut tx,
        scan_id,
        finished_at,
        &scans::ScanTotals {
            status: status.as_str(),
            error: error.clone(),
            error_kind: error_kind.clone(),
            score: posture.score,
            coverage: Some(posture.coverage),
            api_calls: api_calls as i32,
            admins_seen,
            events_ingested,
            new_findings: Some(new_count as i32),
            resolved_findings: Some(resolved_count as i32),
            open_findings: Some(open_total as i32),
        },
    )
    .await?;
    if !scan_ok {
        // The scan row was marked abandoned meanwhile (lease reclaimed): our writes are void.
        return Err(ScanError::LeaseLost(instance.id));
    }
    let updated = instances::record_scan(
        &mut tx,
        instance.id,
        &InstanceScanUpdate {
            status: instance_status,
            status_detail: error.as_deref(),
            scan_id,
            at: finished_at,
            succeeded: failure.is_none(),
            workspace_id: app.and_then(|a| a.id_code.as_deref()),
            workspace_name: app.and_then(|a| a.name.as_deref()),
            activity_cursor_at: cursor_at,
            activity_covered_from: covered_from,
            failure: failure.is_some(),
        },
    )
    .await?;
    if !updated {
        return Err(ScanError::InstanceGone(instance.id));
    }
    if let Some(f) = &fence {
        let next = f.next_scan_at(failure.is_none(), None);
        if !release_fenced(&mut tx, instance.id, f, next).await? {
            return Err(ScanError::LeaseLost(instance.id));
        }
    }
    // Alerts (src/notify, owner: alerts): outbox rows in this same transaction.
    crate::notify::enqueue_for_scan(
        &mut tx,
        &crate::notify::ScanNotice {
            instance,
            scan_id,
            status_after: instance_status,
            status_detail: error.as_deref(),
        },
    )
    .await?;
    // Delivered to listeners only when the transaction commits.
    let payload = serde_json::json!({
        "instance_id": instance.id,
        "instance": instance.name,
        "scan_id": scan_id,
        "status": status.as_str(),
        "new": new_count,
        "resolved": resolved_count,
        "open": open_total,
    });
    sqlx::query!("SELECT pg_notify('sspm_findings', $1)", payload.to_string())
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;

    Ok(ScanReport {
        scan_id,
        instance_id: instance.id,
        instance: instance.name.clone(),
        region: instance.region.clone(),
        status,
        error,
        error_kind,
        instance_status: instance_status.unwrap_or(&instance.status).to_string(),
        score: posture.score,
        coverage: Some(posture.coverage),
        api_calls,
        new_findings: new_count,
        resolved_findings: resolved_count,
        new_by_severity,
        open_by_severity: open.into_iter().collect(),
        checks: outcomes
            .iter()
            .map(|o| CheckLine {
                check_id: o.check_id.to_string(),
                status: o.status.as_str().to_string(),
                reason: o.reason.clone(),
                failed_count: o.findings.len(),
            })
            .collect(),
        duration: started.elapsed(),
        rate_limited_reset: None,
        counts_as_failure: failure.is_some(),
    })
}

/// A scan that ends before any check ran (token unavailable, 429, workspace mismatch):
/// the scan row and the instance status change, nothing else.
pub(super) async fn fail_without_results(
    scanner: &Scanner,
    instance: &Instance,
    scan_id: Uuid,
    fence: Option<Fence>,
    failure: Failure,
    api_calls: u32,
    started: Instant,
) -> Result<ScanReport, ScanError> {
    let rate_limited = match &failure {
        Failure::Api(crate::intercom::IntercomError::RateLimited { reset, .. }) => Some(*reset),
        _ => None,
    };
    let counts_as_failure = rate_limited.is_none();
    let message = failure.message();
    let kind = failure.kind();
    let instance_status = failure.instance_status();
    let mut tx = scanner.pool.begin().await?;
    lock_instance(&mut tx, instance, fence.as_ref()).await?;
    let finished_at = Utc::now();
    let scan_ok = scans::finish(
        &mut tx,
        scan_id,
        finished_at,
        &scans::ScanTotals {
            status: "failed",
            error: Some(message.clone()),
            error_kind: Some(kind.to_string()),
            score: None,
            coverage: None,
            api_calls: api_calls as i32,
            admins_seen: None,
            events_ingested: None,
            new_findings: Some(0),
            resolved_findings: Some(0),
            open_findings: None,
        },
    )
    .await?;
    if !scan_ok {
        return Err(ScanError::LeaseLost(instance.id));
    }
    let updated = instances::record_scan(
        &mut tx,
        instance.id,
        &InstanceScanUpdate {
            status: instance_status,
            status_detail: Some(&message),
            scan_id,
            at: finished_at,
            succeeded: false,
            workspace_id: None,
            workspace_name: None,
            activity_cursor_at: None,
            activity_covered_from: None,
            failure: counts_as_failure,
        },
    )
    .await?;
    if !updated {
        return Err(ScanError::InstanceGone(instance.id));
    }
    if let Some(f) = &fence {
        let next = f.next_scan_at(false, rate_limited);
        if !release_fenced(&mut tx, instance.id, f, next).await? {
            return Err(ScanError::LeaseLost(instance.id));
        }
    }
    // Alerts (src/notify, owner: alerts): a health change (token revoked, IP blocked).
    crate::notify::enqueue_for_scan(
        &mut tx,
        &crate::notify::ScanNotice {
            instance,
            scan_id,
            status_after: instance_status,
            status_detail: Some(&message),
        },
    )
    .await?;
    tx.commit().await?;
    Ok(ScanReport {
        scan_id,
        instance_id: instance.id,
        instance: instance.name.clone(),
        region: instance.region.clone(),
        status: ScanStatus::Failed,
        error: Some(message),
        error_kind: Some(kind.to_string()),
        instance_status: instance_status.unwrap_or(&instance.status).to_string(),
        score: None,
        coverage: None,
        api_calls,
        new_findings: 0,
        resolved_findings: 0,
        new_by_severity: BTreeMap::new(),
        open_by_severity: BTreeMap::new(),
        checks: Vec::new(),
        duration: started.elapsed(),
        rate_limited_reset: rate_limited,
        counts_as_failure,
    })
}
