//! Persist: every write of a scan in ONE transaction, fenced by the scheduler's lease.
//! If the fence fails or anything errors, the transaction rolls back and the previous
//! state stays intact.

use std::collections::BTreeMap;
use std::time::Instant;

use foldhash::{HashMap, HashMapExt};

use chrono::{DateTime, Utc};
use sqlx::pool::PoolConnection;
use sqlx::{PgConnection, Postgres};
use uuid::Uuid;

use super::collect::Collected;
use super::report::{CheckLine, ScanOutcome, ScanReport};
use super::{Failure, ScanError, Scanner};
use crate::checks::{self, ActivityData, CheckOutcome, Source};
use crate::db::admins::AdminActivity;
use crate::db::findings::FindingCatalogData;
use crate::db::instances::{Instance, InstanceScanUpdate};
use crate::db::leases::{self, Held, WriteLock};
use crate::db::{admins, findings, scans, workspace};
use crate::lifecycle::{self, FindingStatus, Mode};
use crate::scheduler::timing::NextPlan;
use crate::status::{InstanceStatus, ScanStatus};

/// The scheduler's claim on an instance: writes commit only while it still holds.
#[derive(Debug, Clone)]
pub struct Fence {
    pub lease_token: Uuid,
    /// The scan row created with the claim, if any.
    pub scan_id: Option<Uuid>,
    /// When the instance is due after this scan.
    pub next: NextDue,
}

/// When an instance is due after a fenced scan, worked out when the scan ends (from the
/// database's clock at that moment, see `crate::db::now`), not when it started.
#[derive(Debug, Clone)]
pub enum NextDue {
    /// Back to this time whatever the outcome: a manual scan does not move the schedule.
    Keep(DateTime<Utc>),
    /// The schedule's next slot after a completed scan, backoff after a failed one.
    Plan(NextPlan),
}

impl Fence {
    fn held(&self, instance_id: Uuid) -> Held {
        Held {
            id: instance_id,
            token: self.lease_token,
        }
    }

    /// The next due time of a scan that ended at `ended` (database clock).
    fn next_scan_at(
        &self,
        ended: DateTime<Utc>,
        report_ok: bool,
        rate_limited: Option<std::time::Duration>,
    ) -> DateTime<Utc> {
        let on = |ok: bool| match &self.next {
            NextDue::Keep(at) => *at,
            NextDue::Plan(plan) => plan.after(ended, ok),
        };
        match rate_limited {
            Some(reset) => {
                let snooze = ended
                    + chrono::Duration::from_std(reset).unwrap_or(chrono::Duration::seconds(10));
                snooze.min(on(true))
            }
            None => on(report_ok),
        }
    }
}

/// Locks the instance row for the rest of the scan's transaction and checks it may still be
/// written: it exists (an operator may have run `instance remove` while the API calls were
/// in flight; its scan row went with it by cascade), and a scheduled scan still holds the
/// lease. Manual scans need the existence check as much as fenced ones: without it their
/// writes fail on a foreign key instead of ending as `InstanceGone`.
///
/// Returns the transaction's `now()` (the database's clock for the scan's end: the scan
/// row, the instance's last_scan_at and the next due time all count from it) and the
/// instance's last scan under the lock.
async fn lock_instance(
    conn: &mut PgConnection,
    instance: &Instance,
    fence: Option<&Fence>,
) -> Result<(DateTime<Utc>, Option<Uuid>), ScanError> {
    let lock = leases::lock_for_write(conn, instance.id, fence.map(|f| f.lease_token)).await?;
    locked(lock, instance)
}

/// The transaction's time and the instance's last scan under the lock, or why the scan
/// may not write.
fn locked(
    lock: WriteLock,
    instance: &Instance,
) -> Result<(DateTime<Utc>, Option<Uuid>), ScanError> {
    match lock {
        WriteLock::Locked { now, last_scan_id } => Ok((now, last_scan_id)),
        WriteLock::Gone => Err(ScanError::InstanceGone(instance.id)),
        WriteLock::LeaseLost => Err(ScanError::LeaseLost(instance.id)),
    }
}

pub(super) struct PersistInput<'a> {
    pub instance: &'a Instance,
    pub scan_id: Uuid,
    pub now: DateTime<Utc>,
    pub fence: Option<Fence>,
    pub outcomes: Vec<CheckOutcome>,
    pub collected: &'a Collected,
    /// The inventory read after collection (compared, not trusted blindly: see
    /// `admins::InventoryWrite::of`).
    pub inventory: &'a admins::Inventory,
    pub failure: Option<Failure>,
    pub api_calls: u32,
    pub started: Instant,
    /// The connection the scan read its stored teammates and activity with: the
    /// transaction begins on it instead of a fresh acquire (sqlx pings a connection when
    /// it hands it out and when it goes back to the pool: two round trips each).
    pub conn: PoolConnection<Postgres>,
}

/// The compliance mapping of each catalog check as JSON text, made on first use: building
/// it per check and scan was ~1 % of a steady scan's CPU.
static COMPLIANCE_JSON: std::sync::LazyLock<HashMap<&'static str, String>> =
    std::sync::LazyLock::new(|| {
        checks::catalog()
            .iter()
            .map(|m| {
                let compliance: serde_json::Map<String, serde_json::Value> = m
                    .compliance
                    .iter()
                    .map(|(framework, ids)| ((*framework).to_string(), serde_json::json!(ids)))
                    .collect();
                (m.id, serde_json::Value::Object(compliance).to_string())
            })
            .collect()
    });

fn catalog_data(check_id: &str) -> FindingCatalogData {
    match (checks::meta(check_id), COMPLIANCE_JSON.get(check_id)) {
        (Some(m), Some(compliance)) => FindingCatalogData {
            remediation: m.remediation,
            compliance_json: compliance,
        },
        _ => FindingCatalogData {
            remediation: "",
            compliance_json: "{}",
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
        let entry = map.entry(admin.to_string()).or_default();
        entry.last_active_at = entry.last_active_at.max(Some(e.created_at));
        if e.activity_type == "admin_login_success" {
            entry.last_login_at = entry.last_login_at.max(Some(e.created_at));
        }
    }
    map
}

/// What `write_findings` leaves for the rest of the scan's transaction: the lifecycle's
/// transitions (the alert outbox's input), the counts and the posture.
pub(super) struct FindingsSummary {
    pub transitions: Vec<lifecycle::Transition>,
    pub posture: checks::Posture,
    pub new_by_severity: BTreeMap<String, usize>,
    pub new_count: usize,
    pub resolved_count: usize,
    pub open_by_severity: Vec<(String, i64)>,
    pub open_total: i64,
}

/// Check results, finding upserts, resolutions, unmutes and history, in `tx`.
async fn write_findings(
    tx: &mut PgConnection,
    instance: &Instance,
    scan_id: Uuid,
    now: DateTime<Utc>,
    outcomes: &[CheckOutcome],
    mode: Mode,
    inputs: findings::PlanInputs,
) -> Result<FindingsSummary, ScanError> {
    let findings::PlanInputs {
        existing,
        exceptions,
    } = inputs;
    let plan = lifecycle::plan(outcomes, &existing, &exceptions, mode, is_health_check);
    let counts = findings::write_scan(
        tx,
        findings::ScanFindings {
            instance_id: instance.id,
            scan_id,
            now,
            outcomes,
            plan: &plan,
            existing: &existing,
            succeeded: mode == Mode::Complete,
        },
        severity_of,
        catalog_data,
    )
    .await?;
    tracing::debug!(
        written = counts.written,
        seen_again = counts.seen_again,
        "findings written"
    );

    let muted: std::collections::HashSet<(&str, &str)> = plan
        .writes
        .iter()
        .filter(|w| w.status == FindingStatus::Muted)
        .map(|w| (w.check_id, w.draft.resource.as_str()))
        .collect();
    let posture = checks::posture(outcomes, |check, resource| {
        muted.contains(&(check, resource))
    });
    // Counted from the locked rows and the plan: one round trip fewer than asking again.
    let open = plan.open_by_severity(&existing);
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
    Ok(FindingsSummary {
        new_count: new_by_severity.values().sum::<usize>(),
        resolved_count: plan.resolved_count(),
        transitions: plan.transitions,
        posture,
        new_by_severity,
        open_by_severity: open,
        open_total,
    })
}

/// The inventory and the activity log of a complete scan, in `tx`.
struct WorkspaceWrites {
    admins_seen: Option<i32>,
    events_ingested: Option<i32>,
    cursor_at: Option<DateTime<Utc>>,
    covered_from: Option<DateTime<Utc>>,
}

struct WorkspaceInput<'a> {
    collected: &'a Collected,
    inventory: &'a admins::Inventory,
    /// The instance's last scan, read under this scan's lock.
    last_scan_id: Option<Uuid>,
}

async fn write_workspace(
    tx: &mut PgConnection,
    instance: &Instance,
    scan_id: Uuid,
    now: DateTime<Utc>,
    input: WorkspaceInput<'_>,
) -> Result<WorkspaceWrites, ScanError> {
    let collected = input.collected;
    let mut out = WorkspaceWrites {
        admins_seen: None,
        events_ingested: None,
        cursor_at: None,
        covered_from: None,
    };
    let activity_by_admin = admin_activity(collected);
    let inventory = collected.snapshot.admins.as_ref().ok().map(|list| {
        out.admins_seen = Some(list.len() as i32);
        admins::InventoryWrite::of(
            now,
            list,
            &activity_by_admin,
            input.inventory,
            input.last_scan_id,
        )
    });
    let events = match (&collected.snapshot.activity, collected.fetched_window) {
        (ActivityData::Available { .. }, Some(window)) => {
            out.cursor_at = Some(window.before);
            out.covered_from = Some(window.covered_from);
            Some(collected.new_events())
        }
        _ => None,
    };
    let inserted = workspace::write(
        tx,
        instance.id,
        scan_id,
        inventory.as_ref(),
        events.unwrap_or_default(),
    )
    .await?;
    if events.is_some() {
        out.events_ingested = Some(inserted as i32);
    }
    Ok(out)
}

/// How a scan ends, for `finish_scan`: the scan row's totals, the instance's new state
/// and, for a fenced scan, when it is due next.
struct ScanEnd<'a> {
    instance: &'a Instance,
    totals: scans::ScanTotals,
    update: InstanceScanUpdate<'a>,
    fence: Option<&'a Fence>,
    next_scan_at: Option<DateTime<Utc>>,
    /// The `sspm_findings` payload of a scan that evaluated checks.
    notify_findings: Option<String>,
}

/// The end of every scan, in its transaction: finish the scan row (it is not running any
/// more when it was marked abandoned meanwhile: the lease was reclaimed and our writes are
/// void), record the outcome on the instance, and give the lease back, fenced; one
/// statement ([`leases::record_scan_end`]).
async fn finish_scan(tx: &mut PgConnection, end: ScanEnd<'_>) -> Result<(), ScanError> {
    let id = end.instance.id;
    let release = match (end.fence, end.next_scan_at) {
        (Some(f), Some(next)) => Some((f.held(id), next)),
        _ => None,
    };
    let fenced = release.is_some();
    let written = leases::record_scan_end(
        tx,
        id,
        leases::ScanRowEnd {
            totals: &end.totals,
            notify_findings: end.notify_findings.as_deref(),
        },
        &end.update,
        release,
    )
    .await?;
    if !written.scan_finished {
        return Err(ScanError::LeaseLost(id));
    }
    if !written.instance_updated {
        // The row is locked (`lock_instance`), so a miss is a lease lost before the lock
        // or, unfenced, a removed instance.
        return Err(if fenced {
            ScanError::LeaseLost(id)
        } else {
            ScanError::InstanceGone(id)
        });
    }
    Ok(())
}

pub(super) async fn persist(input: PersistInput<'_>) -> Result<ScanReport, ScanError> {
    let PersistInput {
        instance,
        scan_id,
        now,
        fence,
        outcomes,
        collected,
        inventory,
        failure,
        api_calls,
        started,
        mut conn,
    } = input;
    let mode = if failure.is_none() {
        Mode::Complete
    } else {
        Mode::HealthOnly
    };
    let mut tx = sqlx::Connection::begin(&mut *conn).await?;
    let start = leases::lock_for_scan_write(
        &mut tx,
        instance.id,
        fence.as_ref().map(|f| f.lease_token),
        now,
    )
    .await?;
    let (finished_at, last_scan_id) = locked(start.lock, instance)?;
    let plan_inputs = start.plan;

    let summary = write_findings(
        &mut tx,
        instance,
        scan_id,
        now,
        &outcomes,
        mode,
        plan_inputs,
    )
    .await?;
    // The scan's finding transitions are known here (summary.transitions), inside the
    // scan's transaction: alert outbox rows for them are enqueued at this point, so they
    // commit or roll back with the findings.
    tracing::debug!(transitions = summary.transitions.len(), "findings written");

    let workspace = if mode == Mode::Complete {
        write_workspace(
            &mut tx,
            instance,
            scan_id,
            now,
            WorkspaceInput {
                collected,
                inventory,
                last_scan_id,
            },
        )
        .await?
    } else {
        WorkspaceWrites {
            admins_seen: None,
            events_ingested: None,
            cursor_at: None,
            covered_from: None,
        }
    };

    let status = if failure.is_none() {
        ScanOutcome::Succeeded
    } else {
        ScanOutcome::Failed
    };
    let error = failure.as_ref().map(Failure::message);
    let error_kind = failure.as_ref().map(|f| f.kind().to_string());
    let me = collected.snapshot.me.as_ref().ok();
    let app = me.and_then(|m| m.app.as_ref());
    let instance_status = match &failure {
        None => Some(InstanceStatus::Ok),
        Some(f) => f.instance_status(),
    };
    // Sent by the scan row's update; delivered to listeners only when the transaction
    // commits.
    let payload = serde_json::json!({
        "instance_id": instance.id,
        "instance": instance.name,
        "scan_id": scan_id,
        "status": status.as_str(),
        "new": summary.new_count,
        "resolved": summary.resolved_count,
        "open": summary.open_total,
    });
    finish_scan(
        &mut tx,
        ScanEnd {
            instance,
            notify_findings: Some(payload.to_string()),
            totals: scans::ScanTotals {
                status: status.stored(),
                error: error.clone(),
                error_kind: error_kind.clone(),
                score: summary.posture.score,
                coverage: Some(summary.posture.coverage),
                api_calls: api_calls as i32,
                admins_seen: workspace.admins_seen,
                events_ingested: workspace.events_ingested,
                new_findings: Some(summary.new_count as i32),
                resolved_findings: Some(summary.resolved_count as i32),
                open_findings: Some(summary.open_total as i32),
            },
            update: InstanceScanUpdate {
                status: instance_status,
                status_detail: error.as_deref(),
                scan_id,
                at: finished_at,
                succeeded: failure.is_none(),
                findings_seen_at: failure.is_none().then_some(now),
                workspace_id: app.and_then(|a| a.id_code.as_deref()),
                workspace_name: app.and_then(|a| a.name.as_deref()),
                activity_cursor_at: workspace.cursor_at,
                activity_covered_from: workspace.covered_from,
                failure: failure.is_some(),
            },
            fence: fence.as_ref(),
            next_scan_at: fence
                .as_ref()
                .map(|f| f.next_scan_at(finished_at, failure.is_none(), None)),
        },
    )
    .await?;
    // Alert outbox rows for this scan's transitions, in the same transaction: a rolled-back
    // scan alerts nobody, a committed one cannot lose its alert.
    crate::notify::enqueue_for_scan(
        &mut tx,
        &crate::notify::ScanNotice {
            instance,
            scan_id,
            status_after: instance_status,
            status_detail: error.as_deref(),
            transitions: &summary.transitions,
            channels_enabled: Some(start.any_channel_enabled),
        },
    )
    .await?;
    tx.commit().await?;

    Ok(ScanReport {
        scan_id,
        instance_id: instance.id,
        instance: instance.name.clone(),
        region: instance.region.to_string(),
        status,
        error,
        error_kind,
        instance_status: instance_status.unwrap_or(instance.status),
        score: summary.posture.score,
        coverage: Some(summary.posture.coverage),
        api_calls,
        new_findings: summary.new_count,
        resolved_findings: summary.resolved_count,
        new_by_severity: summary.new_by_severity,
        open_by_severity: summary.open_by_severity.into_iter().collect(),
        checks: outcomes
            .iter()
            .map(|o| CheckLine {
                check_id: o.check_id.to_string(),
                status: o.status,
                reason: o.reason.clone(),
                failed_count: o.findings.len(),
            })
            .collect(),
        duration: started.elapsed(),
        rate_limited_reset: None,
        counts_as_failure: failure.is_some(),
    })
}

/// A scan that ends before any check ran (token unavailable, 429, workspace mismatch).
pub(super) struct EarlyEnd<'a> {
    pub instance: &'a Instance,
    pub scan_id: Uuid,
    pub fence: Option<Fence>,
    pub failure: Failure,
    pub api_calls: u32,
    pub started: Instant,
}

/// Records an [`EarlyEnd`]: the scan row and the instance status change, nothing else.
pub(super) async fn fail_without_results(
    scanner: &Scanner,
    end: EarlyEnd<'_>,
) -> Result<ScanReport, ScanError> {
    let EarlyEnd {
        instance,
        scan_id,
        fence,
        failure,
        api_calls,
        started,
    } = end;
    let rate_limited = match &failure {
        Failure::Api(crate::intercom::IntercomError::RateLimited { reset, .. }) => Some(*reset),
        _ => None,
    };
    let counts_as_failure = rate_limited.is_none();
    let message = failure.message();
    let kind = failure.kind();
    let instance_status = failure.instance_status();
    let mut tx = scanner.pool.begin().await?;
    let (finished_at, _) = lock_instance(&mut tx, instance, fence.as_ref()).await?;
    finish_scan(
        &mut tx,
        ScanEnd {
            instance,
            notify_findings: None,
            totals: scans::ScanTotals {
                status: ScanStatus::Failed,
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
            update: InstanceScanUpdate {
                status: instance_status,
                status_detail: Some(&message),
                scan_id,
                at: finished_at,
                succeeded: false,
                findings_seen_at: None,
                workspace_id: None,
                workspace_name: None,
                activity_cursor_at: None,
                activity_covered_from: None,
                failure: counts_as_failure,
            },
            fence: fence.as_ref(),
            next_scan_at: fence
                .as_ref()
                .map(|f| f.next_scan_at(finished_at, false, rate_limited)),
        },
    )
    .await?;
    // A health change (token revoked, IP blocked) is alerted in the same transaction.
    crate::notify::enqueue_for_scan(
        &mut tx,
        &crate::notify::ScanNotice {
            instance,
            scan_id,
            status_after: instance_status,
            status_detail: Some(&message),
            transitions: &[],
            channels_enabled: None,
        },
    )
    .await?;
    tx.commit().await?;
    Ok(ScanReport {
        scan_id,
        instance_id: instance.id,
        instance: instance.name.clone(),
        region: instance.region.to_string(),
        status: ScanOutcome::Failed,
        error: Some(message),
        error_kind: Some(kind.to_string()),
        instance_status: instance_status.unwrap_or(instance.status),
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
