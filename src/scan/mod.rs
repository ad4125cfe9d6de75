//! One scan: collect (Intercom API) → evaluate (pure checks) → persist (one transaction).
//!
//! A scan that completes (`/me` and `/admins` read) updates findings; a scan that fails
//! records its scan row, check results and scan-health findings (token_valid,
//! api_reachable) but resolves nothing; a 429 only snoozes.

pub mod collect;
mod persist;
mod report;

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use sqlx::PgPool;
use tracing::{info, warn, Instrument};
use uuid::Uuid;

use crate::checks::{self, ActivityData, CheckSettings, PreviousState, Snapshot};
use crate::config::Settings;
use crate::crypto::Keyring;
use crate::db::instances::{self, Instance};
use crate::db::scans::{self, Trigger};
use crate::intercom::{IntercomClient, IntercomError};
use crate::token::TokenError;

use crate::status::InstanceStatus;
pub use persist::{Fence, NextDue};
pub use report::{ScanOutcome, ScanReport};

/// Everything scans share: the pool, the HTTP client, the keyring and settings.
#[derive(Clone)]
pub struct Scanner {
    pub pool: PgPool,
    pub client: IntercomClient,
    pub keyring: Option<Arc<Keyring>>,
    pub settings: Arc<Settings>,
    /// Names this process in scan rows and leases (hostname:pid by default).
    pub replica: String,
}

#[derive(Debug, thiserror::Error)]
pub enum ScanError {
    #[error("database error during scan: {0}")]
    Db(#[from] sqlx::Error),
    #[error("instance {0} no longer exists (removed while scanning)")]
    InstanceGone(Uuid),
    #[error("the lease on instance {0} was lost to another replica; this scan's writes were rolled back")]
    LeaseLost(Uuid),
}

/// Why a scan stopped before persisting workspace data.
#[derive(Debug)]
pub(crate) enum Failure {
    Api(IntercomError),
    Token(TokenError),
    WorkspaceMismatch {
        stored: String,
        seen: String,
    },
    /// A row onboarded by SQL turned out to be a workspace another instance already scans.
    WorkspaceTaken {
        seen: String,
        existing: String,
    },
}

impl Failure {
    /// Whether the scan ends here, before any check runs: a 429 (snooze), or a token that
    /// belongs to another workspace. API and token failures still record scan-health
    /// findings through `persist`.
    fn ends_without_results(&self) -> bool {
        matches!(
            self,
            Failure::Api(IntercomError::RateLimited { .. })
                | Failure::WorkspaceMismatch { .. }
                | Failure::WorkspaceTaken { .. }
        )
    }

    fn kind(&self) -> &'static str {
        match self {
            Failure::Api(e) => e.kind(),
            Failure::Token(_) => "token_unavailable",
            Failure::WorkspaceMismatch { .. } => "workspace_mismatch",
            Failure::WorkspaceTaken { .. } => "workspace_taken",
        }
    }

    /// The instance status a failure implies; None keeps the current one.
    fn instance_status(&self) -> Option<InstanceStatus> {
        Some(match self {
            Failure::Api(IntercomError::Unauthorized { .. }) => InstanceStatus::Unauthorized,
            Failure::Api(IntercomError::NotPermitted { .. })
            | Failure::Api(IntercomError::PlanRestricted { .. }) => InstanceStatus::NotPermitted,
            Failure::Api(IntercomError::IpNotAllowed { .. }) => InstanceStatus::IpNotAllowed,
            // The same rule as the `api_reachable` check's, so the two agree.
            Failure::Api(e) if e.is_unreachable() => InstanceStatus::Unreachable,
            Failure::Api(IntercomError::RateLimited { .. }) => return None,
            _ => InstanceStatus::Error,
        })
    }

    fn message(&self) -> String {
        match self {
            Failure::Api(e) => e.to_string(),
            Failure::Token(e) => e.to_string(),
            Failure::WorkspaceMismatch { stored, seen } => format!(
                "the token now belongs to workspace {seen}, but this instance is workspace {stored}: replace the token with `instance set-token`"
            ),
            Failure::WorkspaceTaken { seen, existing } => format!(
                "the token belongs to workspace {seen}, which is already onboarded as instance {existing:?}: remove one of the two instances"
            ),
        }
    }
}

impl Scanner {
    /// Runs one scan of `instance`. `fence` is the scheduler's lease; manual scans pass None.
    pub async fn scan(
        &self,
        instance: &Instance,
        trigger: Trigger,
        fence: Option<Fence>,
    ) -> Result<ScanReport, ScanError> {
        self.scan_with_target(instance, trigger, fence, None).await
    }

    /// [`Scanner::scan`] with what the scan reads of its instance before calling Intercom
    /// already read (`leases::Claimed::target`); None reads it first.
    pub async fn scan_with_target(
        &self,
        instance: &Instance,
        trigger: Trigger,
        fence: Option<Fence>,
        target: Option<instances::ScanTarget>,
    ) -> Result<ScanReport, ScanError> {
        let scan_id = fence
            .as_ref()
            .and_then(|f| f.scan_id)
            .unwrap_or_else(Uuid::new_v4);
        // A scheduled scan runs in the scheduler's scan span already: name it there.
        if crate::telemetry::record_scan_instance(&instance.name) {
            return self
                .scan_inner(instance, trigger, fence, scan_id, target)
                .await;
        }
        let span = crate::telemetry::scan_span(scan_id, instance.id, instance.region);
        span.record("instance", tracing::field::display(&instance.name));
        self.scan_inner(instance, trigger, fence, scan_id, target)
            .instrument(span)
            .await
    }

    /// The stages: load inputs -> collect -> classify failure -> evaluate -> persist.
    /// Every stage that can end the scan early records it through
    /// `persist::fail_without_results`; otherwise `persist::persist` writes it all.
    async fn scan_inner(
        &self,
        instance: &Instance,
        trigger: Trigger,
        fence: Option<Fence>,
        scan_id: Uuid,
        target: Option<instances::ScanTarget>,
    ) -> Result<ScanReport, ScanError> {
        let started = Instant::now();
        if fence.as_ref().and_then(|f| f.scan_id).is_none() {
            scans::insert_running(
                &self.pool,
                scan_id,
                instance.id,
                trigger,
                &self.replica,
                fence.as_ref().map(|f| f.lease_token),
            )
            .await?;
        }
        info!("scan started");
        let early_end = |failure: Failure, api_calls: u32| persist::EarlyEnd {
            instance,
            scan_id,
            fence: fence.clone(),
            failure,
            api_calls,
            started,
        };

        let inputs = self.load_inputs(instance, target).await?;
        // The scan's instant, by the database's clock: the snapshot's "now" (activity
        // window, dormancy), the findings' first/last seen times and their history.
        let now = inputs.now;
        let token = match inputs.token {
            Ok(t) => t,
            Err(e) => {
                warn!(error = %e, "token unavailable; scan failed");
                return persist::fail_without_results(self, early_end(Failure::Token(e), 0)).await;
            }
        };

        let session = self.client.session(instance.region, token);
        let collected = collect::collect(
            &session,
            collect::CollectInput {
                region: instance.region,
                api_version: &self.settings.intercom.api_version,
                allowed_domains: instance.allowed_domains.clone(),
                attestations: inputs.target.attestations.clone(),
                activity_cursor_at: inputs.target.activity_cursor_at,
                activity_covered_from: inputs.target.activity_covered_from,
                probe_extra_scopes: self.settings.scan.probe_extra_scopes,
                now,
            },
            &inputs.check_settings,
        )
        .await;
        let api_calls = session.api_calls();

        let failure = match classify_failure(&collected.snapshot, instance) {
            None => self.workspace_taken(instance, &collected).await?,
            other => other,
        };
        match failure {
            Some(Failure::Api(IntercomError::RateLimited { reset, .. })) => {
                info!(?reset, "rate limited; scan will be retried after the reset");
            }
            Some(ref f) if f.ends_without_results() => warn!(error = %f.message(), "scan failed"),
            _ => {}
        }
        let failure = match failure {
            Some(f) if f.ends_without_results() => {
                return persist::fail_without_results(self, early_end(f, api_calls)).await;
            }
            other => other,
        };

        let mut collected = collected;
        // One connection from here to the findings write, kept through the checks (CPU
        // only, no I/O): each acquire and release costs two round trips (sqlx pings).
        let mut conn = self.pool.acquire().await?;
        let (mut previous, inventory) =
            load_stored_admins(&mut conn, instance.id, &inputs.target).await?;
        if matches!(collected.snapshot.activity, ActivityData::Available { .. }) {
            let stored = self
                .load_stored_activity(
                    &mut conn,
                    instance,
                    &inputs.check_settings,
                    &inputs.target,
                    now,
                )
                .await?;
            previous.earlier_activity = stored.earlier;
            collected.merge_stored(stored.events);
        }
        let outcomes = checks::evaluate(&collected.snapshot, &previous, &inputs.check_settings);
        // What only the checks read goes before the findings write, the memory peak.
        drop(previous);
        collected.keep_only_new_events();
        let report = persist::persist(persist::PersistInput {
            instance,
            scan_id,
            now,
            fence,
            outcomes,
            collected: &collected,
            inventory: &inventory,
            failure,
            api_calls,
            started,
            conn,
        })
        .await?;
        match report.status {
            ScanOutcome::Succeeded => info!(
                score = report.score,
                // Three decimals say enough and keep the line short.
                coverage = report.coverage.map(|c| (c * 1000.0).round() / 1000.0),
                new = report.new_findings,
                resolved = report.resolved_findings,
                api_calls,
                "scan succeeded"
            ),
            _ => warn!(error = report.error.as_deref().unwrap_or(""), "scan failed"),
        }
        Ok(report)
    }

    /// Stage 1: what the scan reads of its instance before calling Intercom (unless the
    /// claim read it: `target`), and the token, revealed. The stored teammates are read
    /// after the API calls, with the stored events (`load_stored_admins`).
    async fn load_inputs(
        &self,
        instance: &Instance,
        target: Option<instances::ScanTarget>,
    ) -> Result<ScanInputs, ScanError> {
        let mut target = match target {
            Some(t) => t,
            None => {
                let mut conn = self.pool.acquire().await?;
                instances::scan_target(&mut conn, instance.id)
                    .await?
                    .ok_or(ScanError::InstanceGone(instance.id))?
            }
        };
        let now = target.now;
        let check_settings = self.check_settings(&target.check_overrides);
        let token = match target.token.take() {
            Some(source) => source
                .refuse_own_key_file(self.settings.security.token_key_file.as_deref())
                .and_then(|()| source.reveal(self.keyring.as_deref(), instance.id.as_bytes())),
            None => Err(TokenError::Empty),
        };
        Ok(ScanInputs {
            now,
            target,
            check_settings,
            token,
        })
    }

    /// Stage 2b, once the activity log was fetched: the stored events the checks read one
    /// by one and the aggregate of older ones (`db::activity::for_scan`). Read after the
    /// API calls, not with the other inputs, so that a large workspace's ~70,000 stored
    /// events (~25 MB) and the `/admins` response being decoded (~20 MB) are not held
    /// at the same time, and not at all by a scan whose collection failed.
    async fn load_stored_activity(
        &self,
        conn: &mut sqlx::PgConnection,
        instance: &Instance,
        check_settings: &CheckSettings,
        target: &instances::ScanTarget,
        now: DateTime<Utc>,
    ) -> Result<crate::db::activity::StoredActivity, ScanError> {
        Ok(crate::db::activity::for_scan(
            conn,
            instance.id,
            activity_bounds(check_settings, target.activity_cursor_at, now),
        )
        .await?)
    }

    /// For an instance whose workspace is not known yet (onboarded by SQL): the workspace
    /// `/me` names must not belong to another instance.
    async fn workspace_taken(
        &self,
        instance: &Instance,
        collected: &collect::Collected,
    ) -> Result<Option<Failure>, ScanError> {
        if instance.workspace_id.is_some() {
            return Ok(None);
        }
        let seen = collected
            .snapshot
            .me
            .as_ref()
            .ok()
            .and_then(|m| m.app.as_ref())
            .and_then(|a| a.id_code.clone());
        let Some(seen) = seen else { return Ok(None) };
        let other = instances::find_by_workspace(&self.pool, instance.region, &seen).await?;
        Ok(other
            .filter(|o| o.id != instance.id)
            .map(|o| Failure::WorkspaceTaken {
                seen,
                existing: o.name,
            }))
    }

    fn check_settings(&self, overrides: &serde_json::Value) -> CheckSettings {
        match self.settings.checks.with_overrides(overrides) {
            Ok(s) => s,
            Err(e) => {
                warn!(error = %e, "ignoring invalid per-instance check overrides");
                self.settings.checks.clone()
            }
        }
    }
}

/// What `load_inputs` read for one scan.
struct ScanInputs {
    /// The database's clock when the scan read its inputs.
    now: DateTime<Utc>,
    target: instances::ScanTarget,
    check_settings: CheckSettings,
    token: Result<secrecy::SecretString, TokenError>,
}

/// Stage 2a, once `/me` and `/admins` were called: the teammates stored by the last
/// completed scan, as the checks compare against them (`PreviousState`) and as the
/// findings write diffs against them (`Inventory`). No other scan of the instance can
/// complete meanwhile: the lease is held since the claim.
async fn load_stored_admins(
    conn: &mut sqlx::PgConnection,
    instance_id: Uuid,
    target: &instances::ScanTarget,
) -> Result<(PreviousState, crate::db::admins::Inventory), ScanError> {
    let stored_admins = crate::db::admins::current(conn, instance_id).await?;
    // The inventory holds exactly the admins present at the last completed scan.
    let previous = PreviousState {
        has_completed_scan: target.has_completed_scan,
        previous_admin_ids: stored_admins.keys().cloned().collect(),
        admins: stored_admins
            .iter()
            .map(|(id, a)| (id.clone(), a.history.clone()))
            .collect(),
        // Read with the stored events (`load_stored_activity`).
        earlier_activity: Default::default(),
    };
    let inventory = crate::db::admins::Inventory {
        admins: stored_admins,
        after_scan: target.last_scan_id,
    };
    Ok((previous, inventory))
}

/// Stage 3, pure: why the collected data cannot be evaluated as a complete scan, if it
/// cannot. `/me` or `/admins` failing is an API failure; a 429 on the activity log would
/// turn every activity check into `error`, and its window resets within seconds, so it
/// snoozes the whole scan instead; a token now naming another workspace than the stored
/// one is a mismatch. (Whether an unknown workspace is another instance's needs the
/// database: see `Scanner::workspace_taken`.)
pub(crate) fn classify_failure(snapshot: &Snapshot, instance: &Instance) -> Option<Failure> {
    match (&snapshot.me, &snapshot.admins) {
        (Err(e), _) | (Ok(_), Err(e)) => Some(Failure::Api(e.clone())),
        (Ok(me), Ok(_)) => {
            if let ActivityData::Failed(e @ IntercomError::RateLimited { .. }) = &snapshot.activity
            {
                return Some(Failure::Api(e.clone()));
            }
            let seen = me.app.as_ref().and_then(|a| a.id_code.clone());
            match (&instance.workspace_id, seen) {
                (Some(stored), Some(seen)) if stored != &seen => Some(Failure::WorkspaceMismatch {
                    stored: stored.clone(),
                    seen,
                }),
                _ => None,
            }
        }
    }
}

/// How far back stored events are read for evaluation: the longest window a check uses.
fn lookback_days(s: &CheckSettings) -> u32 {
    s.dormant_days
        .max(s.inbox_inactive_days)
        .max(s.event_window_days)
        + 1
}

/// What a scan reads of the stored activity log: events one by one from the start of the
/// event window (or of this scan's fetch, if earlier), aggregates back to the look-back.
fn activity_bounds(
    s: &CheckSettings,
    cursor: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
) -> crate::db::activity::ScanBounds {
    let window_start = now - chrono::Duration::days(i64::from(s.event_window_days));
    crate::db::activity::ScanBounds {
        lookback_from: now - chrono::Duration::days(i64::from(lookback_days(s))),
        events_needed_from: window_start.min(collect::fetch_after(cursor, s, now)),
        burst_gap_minutes: s.failed_login_window_minutes,
    }
}

/// A short human duration for summaries.
pub fn format_elapsed(d: Duration) -> String {
    if d.as_secs() >= 1 {
        format!("{:.1}s", d.as_secs_f64())
    } else {
        format!("{}ms", d.as_millis())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checks::testutil;
    use crate::region::Region;

    fn instance(workspace_id: Option<&str>) -> Instance {
        Instance {
            id: Uuid::new_v4(),
            name: "acme".into(),
            region: Region::Us,
            workspace_id: workspace_id.map(str::to_string),
            workspace_name: None,
            enabled: true,
            schedule: None,
            next_scan_at: Utc::now(),
            status: InstanceStatus::Ok,
            status_detail: None,
            last_scan_at: None,
            created_at: Utc::now(),
            token_kind: "sealed".into(),
            token_key_id: None,
            token_ref: None,
            allowed_domains: Vec::new(),
        }
    }

    fn unauthorized(endpoint: &str) -> IntercomError {
        IntercomError::Unauthorized {
            endpoint: endpoint.into(),
            code: "unauthorized".into(),
        }
    }

    #[test]
    fn a_complete_snapshot_of_the_stored_workspace_is_no_failure() {
        let snap = testutil::snapshot();
        assert!(classify_failure(&snap, &instance(Some("abc123"))).is_none());
        // Not onboarded with a workspace yet: nothing to compare (the database decides
        // whether another instance has it).
        assert!(classify_failure(&snap, &instance(None)).is_none());
    }

    #[test]
    fn me_or_admins_failing_is_an_api_failure_that_still_records_health() {
        let mut snap = testutil::snapshot();
        snap.me = Err(unauthorized("/me"));
        let f = classify_failure(&snap, &instance(Some("abc123"))).expect("a failure");
        assert_eq!(f.kind(), "unauthorized");
        assert!(!f.ends_without_results());

        let mut snap = testutil::snapshot();
        snap.admins = Err(unauthorized("/admins"));
        let f = classify_failure(&snap, &instance(Some("abc123"))).expect("a failure");
        assert!(
            matches!(f, Failure::Api(IntercomError::Unauthorized { ref endpoint, .. }) if endpoint == "/admins")
        );
    }

    #[test]
    fn a_rate_limited_activity_log_snoozes_the_whole_scan() {
        let mut snap = testutil::snapshot();
        snap.activity = ActivityData::Failed(IntercomError::RateLimited {
            endpoint: "/admins/activity_logs".into(),
            reset: Duration::from_secs(7),
        });
        let f = classify_failure(&snap, &instance(Some("abc123"))).expect("a failure");
        assert!(f.ends_without_results());
        assert_eq!(f.instance_status(), None, "a 429 keeps the instance status");
    }

    /// Issue 15 item 8: `/me` answered, then `/admins` failed. Whatever the error, the
    /// instance status the scan records and the `api_reachable` check agree: the check fails
    /// exactly when the instance becomes `unreachable` or `ip_not_allowed`. (A used-up
    /// time budget passed the check while marking the instance unreachable.)
    #[test]
    fn api_reachable_agrees_with_the_instance_status() {
        let endpoint = || "/admins".to_string();
        let errors = [
            unauthorized("/admins"),
            IntercomError::NotPermitted {
                endpoint: endpoint(),
                status: 403,
                code: "forbidden".into(),
                message: "no".into(),
            },
            IntercomError::PlanRestricted {
                endpoint: endpoint(),
                message: "no".into(),
            },
            IntercomError::IpNotAllowed {
                endpoint: endpoint(),
            },
            IntercomError::Transient {
                endpoint: endpoint(),
                reason: "HTTP 503".into(),
            },
            IntercomError::BudgetExhausted(Duration::from_secs(70)),
            IntercomError::Decode {
                endpoint: endpoint(),
                path: "admins".into(),
                reason: "bad".into(),
            },
            IntercomError::TooLarge {
                endpoint: endpoint(),
                reason: "big".into(),
            },
            IntercomError::Unexpected {
                endpoint: endpoint(),
                status: 418,
                code: "teapot".into(),
                message: "no".into(),
            },
        ];
        let settings = CheckSettings::default();
        for e in errors {
            for in_me in [false, true] {
                let mut snap = testutil::snapshot();
                if in_me {
                    snap.me = Err(e.clone());
                }
                snap.admins = Err(e.clone());
                let failure =
                    classify_failure(&snap, &instance(Some("abc123"))).expect("a failure");
                let status = failure.instance_status();
                let outcomes = checks::evaluate(&snap, &PreviousState::default(), &settings);
                let reachable = outcomes
                    .iter()
                    .find(|o| o.check_id == "api_reachable")
                    .expect("api_reachable evaluated");
                let fails = reachable.status == checks::CheckStatus::Fail;
                let blocked = matches!(
                    status,
                    Some(InstanceStatus::Unreachable) | Some(InstanceStatus::IpNotAllowed)
                );
                assert_eq!(
                    fails, blocked,
                    "{e:?} (in /me: {in_me}): instance {status:?}, api_reachable {:?}",
                    reachable.status
                );
            }
        }
        // The budget's finding says what ran out.
        let mut snap = testutil::snapshot();
        snap.admins = Err(IntercomError::BudgetExhausted(Duration::from_secs(70)));
        let outcomes = checks::evaluate(&snap, &PreviousState::default(), &settings);
        let o = outcomes
            .iter()
            .find(|o| o.check_id == "api_reachable")
            .unwrap();
        assert!(
            o.findings[0].title.contains("intercom.scan_timeout"),
            "{:?}",
            o.findings[0].title
        );
        assert_eq!(o.findings[0].evidence.value()["error_kind"], "timeout");
    }

    #[test]
    fn a_token_of_another_workspace_is_a_mismatch() {
        let snap = testutil::snapshot();
        let f = classify_failure(&snap, &instance(Some("other9"))).expect("a failure");
        assert!(f.ends_without_results());
        assert!(
            matches!(&f, Failure::WorkspaceMismatch { stored, seen } if stored == "other9" && seen == "abc123"),
            "{f:?}"
        );
    }
}
