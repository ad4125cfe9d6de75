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

use chrono::Utc;
use sqlx::PgPool;
use tracing::{info, warn, Instrument};
use uuid::Uuid;

use crate::checks::{self, ActivityData, CheckSettings, PreviousState};
use crate::config::Settings;
use crate::crypto::Keyring;
use crate::db::instances::{self, Instance};
use crate::db::scans::{self, Trigger};
use crate::intercom::{IntercomClient, IntercomError};
use crate::token::TokenError;

pub use persist::Fence;
pub use report::{ScanReport, ScanStatus};

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
    fn kind(&self) -> &'static str {
        match self {
            Failure::Api(e) => e.kind(),
            Failure::Token(_) => "token_unavailable",
            Failure::WorkspaceMismatch { .. } => "workspace_mismatch",
            Failure::WorkspaceTaken { .. } => "workspace_taken",
        }
    }

    /// The instance status a failure implies; None keeps the current one.
    fn instance_status(&self) -> Option<&'static str> {
        Some(match self {
            Failure::Api(IntercomError::Unauthorized { .. }) => "unauthorized",
            Failure::Api(IntercomError::NotPermitted { .. })
            | Failure::Api(IntercomError::PlanRestricted { .. }) => "not_permitted",
            Failure::Api(IntercomError::IpNotAllowed { .. }) => "ip_not_allowed",
            Failure::Api(IntercomError::Transient { .. })
            | Failure::Api(IntercomError::BudgetExhausted(_)) => "unreachable",
            Failure::Api(IntercomError::RateLimited { .. }) => return None,
            _ => "error",
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
        let scan_id = fence
            .as_ref()
            .and_then(|f| f.scan_id)
            .unwrap_or_else(Uuid::new_v4);
        let span = tracing::info_span!("scan", instance_id = %instance.id, instance = %instance.name, scan_id = %scan_id, region = %instance.region);
        self.scan_inner(instance, trigger, fence, scan_id)
            .instrument(span)
            .await
    }

    async fn scan_inner(
        &self,
        instance: &Instance,
        trigger: Trigger,
        fence: Option<Fence>,
        scan_id: Uuid,
    ) -> Result<ScanReport, ScanError> {
        let started = Instant::now();
        let now = Utc::now();
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

        let mut conn = self.pool.acquire().await?;
        let target = instances::scan_target(&mut conn, instance.id, now)
            .await?
            .ok_or(ScanError::InstanceGone(instance.id))?;
        let token_source = instances::token_source(&mut *conn, instance.id).await?;
        let check_settings = self.check_settings(&target.check_overrides);
        let lookback_from = now - chrono::Duration::days(i64::from(lookback_days(&check_settings)));
        let stored_events =
            crate::db::activity::since(&mut conn, instance.id, lookback_from).await?;
        let admins = crate::db::admins::current(&mut conn, instance.id).await?;
        drop(conn);
        // The inventory holds exactly the admins present at the last completed scan.
        let previous = PreviousState {
            has_completed_scan: target.has_completed_scan,
            previous_admin_ids: admins.keys().cloned().collect(),
            admins,
        };

        let token = match token_source {
            Some(source) => source
                .refuse_own_key_file(self.settings.security.token_key_file.as_deref())
                .and_then(|()| source.reveal(self.keyring.as_deref(), instance.id.as_bytes())),
            None => Err(TokenError::Empty),
        };
        let token = match token {
            Ok(t) => t,
            Err(e) => {
                warn!(error = %e, "token unavailable; scan failed");
                return persist::fail_without_results(
                    self,
                    instance,
                    scan_id,
                    fence,
                    Failure::Token(e),
                    0,
                    started,
                )
                .await;
            }
        };

        let session = self.client.session(instance.region(), token);
        let collected = collect::collect(
            &session,
            collect::CollectInput {
                region: instance.region(),
                api_version: &self.settings.intercom.api_version,
                allowed_domains: instance.allowed_domains.clone(),
                attestations: target.attestations.clone(),
                activity_cursor_at: target.activity_cursor_at,
                activity_covered_from: target.activity_covered_from,
                stored_events,
                probe_extra_scopes: self.settings.scan.probe_extra_scopes,
                now,
            },
            &check_settings,
        )
        .await;
        let api_calls = session.api_calls();

        let rate_limited_activity = match &collected.snapshot.activity {
            ActivityData::Failed(e @ IntercomError::RateLimited { .. }) => Some(e.clone()),
            _ => None,
        };
        let failure = match (&collected.snapshot.me, &collected.snapshot.admins) {
            (Err(e), _) | (Ok(_), Err(e)) => Some(Failure::Api(e.clone())),
            // A 429 on the activity log would turn every activity check into `error`; the
            // window resets within seconds, so snooze the whole scan instead.
            (Ok(_), Ok(_)) if rate_limited_activity.is_some() => {
                rate_limited_activity.map(Failure::Api)
            }
            (Ok(me), Ok(_)) => {
                let seen = me.app.as_ref().and_then(|a| a.id_code.clone());
                match (&instance.workspace_id, seen) {
                    (Some(stored), Some(seen)) if stored != &seen => {
                        Some(Failure::WorkspaceMismatch {
                            stored: stored.clone(),
                            seen,
                        })
                    }
                    _ => None,
                }
            }
        };
        if let Some(Failure::Api(IntercomError::RateLimited { reset, .. })) = &failure {
            let reset = *reset;
            info!(?reset, "rate limited; scan will be retried after the reset");
            let mut report = persist::fail_without_results(
                self,
                instance,
                scan_id,
                fence,
                failure.unwrap(),
                api_calls,
                started,
            )
            .await?;
            report.rate_limited_reset = Some(reset);
            return Ok(report);
        }
        let failure = match failure {
            None => self.workspace_taken(instance, &collected).await?,
            other => other,
        };
        if let Some(f @ (Failure::WorkspaceMismatch { .. } | Failure::WorkspaceTaken { .. })) =
            failure
        {
            warn!(error = %f.message(), "scan failed");
            return persist::fail_without_results(
                self, instance, scan_id, fence, f, api_calls, started,
            )
            .await;
        }

        let outcomes = checks::evaluate(&collected.snapshot, &previous, &check_settings);
        let report = persist::persist(
            self,
            persist::PersistInput {
                instance,
                scan_id,
                now,
                fence,
                outcomes,
                collected: &collected,
                failure,
                api_calls,
                started,
            },
        )
        .await?;
        match report.status {
            ScanStatus::Succeeded => info!(
                score = report.score,
                coverage = report.coverage,
                new = report.new_findings,
                resolved = report.resolved_findings,
                api_calls,
                "scan succeeded"
            ),
            _ => warn!(error = report.error.as_deref().unwrap_or(""), "scan failed"),
        }
        Ok(report)
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
        let other = instances::find_by_workspace(&self.pool, instance.region(), &seen).await?;
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

/// How far back stored events are loaded for evaluation: the longest window a check uses.
fn lookback_days(s: &CheckSettings) -> u32 {
    s.dormant_days
        .max(s.inbox_inactive_days)
        .max(s.event_window_days)
        + 1
}

/// A short human duration for summaries.
pub fn format_elapsed(d: Duration) -> String {
    if d.as_secs() >= 1 {
        format!("{:.1}s", d.as_secs_f64())
    } else {
        format!("{}ms", d.as_millis())
    }
}
