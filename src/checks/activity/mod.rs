//! A checks: events from `/admins/activity_logs`. The gate every activity-dependent
//! check passes first, and the helpers event checks share.
//!
//! Event findings use `event:<id>` and only events created within
//! `checks.event_window_days` produce them; older events drop out and their findings
//! resolve. Unknown activity types are simply never matched.

pub(super) mod events;
pub(super) mod impersonation;
pub(super) mod invites;
pub(super) mod logins;
pub(super) mod two_factor;

use chrono::{DateTime, Duration, Utc};
use serde_json::{json, Value};

use super::context::{fetch_error_reason, Ctx};
use super::snapshot::{ActivityData, ActivityEvent};
use super::types::{FindingDraft, Severity, Verdict};
use crate::intercom::IntercomError;

/// Reason of every activity-dependent check when the token lacks the scope.
pub const SCOPE_REASON: &str =
    "token may not read activity logs (grant \"Read admin activity logs\")";
pub const PLAN_REASON: &str =
    "token may not read activity logs: the workspace's plan does not include them";

/// The fetched events and the start of the gap-free window, or the verdict a check must
/// return without them.
pub(crate) fn available<'a>(
    ctx: &Ctx<'a>,
) -> Result<(&'a [ActivityEvent], DateTime<Utc>), Verdict> {
    match &ctx.snap.activity {
        ActivityData::Available {
            events,
            covered_from,
        } => Ok((events.as_slice(), *covered_from)),
        ActivityData::Refused(IntercomError::PlanRestricted { .. }) => {
            Err(Verdict::not_evaluated(PLAN_REASON))
        }
        ActivityData::Refused(_) => Err(Verdict::not_evaluated(SCOPE_REASON)),
        ActivityData::Failed(e) => Err(Verdict::Error(fetch_error_reason(e))),
        ActivityData::NotFetched => {
            Err(Verdict::error("activity log was not fetched in this scan"))
        }
    }
}

/// Events that may still produce findings.
pub(crate) fn window_start(ctx: &Ctx<'_>) -> DateTime<Utc> {
    ctx.now() - Duration::days(i64::from(ctx.settings.event_window_days))
}

/// A pass over a window the history does not fully cover says so.
pub(crate) fn coverage_note(ctx: &Ctx<'_>, covered_from: DateTime<Utc>) -> Option<String> {
    (covered_from > window_start(ctx)).then(|| {
        format!(
            "activity history covers {} of the {}-day event window",
            ctx.snap.activity.covered_days(ctx.now()),
            ctx.settings.event_window_days
        )
    })
}

/// Who did it, for titles.
pub(crate) fn actor(ev: &ActivityEvent) -> String {
    ev.performed_by_email
        .as_ref()
        .map(|email| email.to_string())
        .or_else(|| ev.performed_by_id.as_ref().map(|id| format!("admin {id}")))
        .unwrap_or_else(|| "an unknown actor".to_string())
}

pub(crate) fn when(at: DateTime<Utc>) -> String {
    at.format("%Y-%m-%d %H:%M UTC").to_string()
}

/// The event as stored, for evidence.
pub(crate) fn event_evidence(ev: &ActivityEvent) -> Value {
    json!({
        "event_id": ev.id,
        "activity_type": ev.activity_type,
        "created_at": ev.created_at,
        "performed_by_id": ev.performed_by_id,
        "performed_by_email": ev.performed_by_email,
        "ip": ev.ip,
        "description": ev.description,
        "metadata": ev.metadata.value(),
    })
}

pub(crate) fn event_finding(ev: &ActivityEvent, severity: Severity, title: String) -> FindingDraft {
    event_finding_with(ev, severity, title, event_evidence(ev))
}

/// [`event_finding`] with evidence the check extended (from [`event_evidence`]).
pub(crate) fn event_finding_with(
    ev: &ActivityEvent,
    severity: Severity,
    title: String,
    evidence: Value,
) -> FindingDraft {
    FindingDraft {
        resource: format!("event:{}", ev.id),
        severity,
        title,
        evidence: evidence.into(),
    }
}

/// Events of the given types inside the event window, oldest first (ties by id) so that
/// findings come out in a stable order.
pub(crate) fn recent_of<'a>(
    ctx: &Ctx<'_>,
    events: &'a [ActivityEvent],
    types: &[&str],
) -> Vec<&'a ActivityEvent> {
    let start = window_start(ctx);
    let mut out: Vec<_> = events
        .iter()
        .filter(|e| e.created_at >= start && types.contains(&e.activity_type.as_str()))
        .collect();
    sort_events(&mut out);
    out
}

pub(crate) fn sort_events(events: &mut [&ActivityEvent]) {
    events.sort_by(|a, b| {
        a.created_at
            .cmp(&b.created_at)
            .then_with(|| a.id.cmp(&b.id))
    });
}

#[cfg(test)]
mod tests {
    use chrono::Duration;

    use super::super::testutil::*;
    use super::super::types::CheckStatus;
    use super::super::{ActivityData, CheckSettings};
    use super::*;

    #[test]
    fn plan_restriction_has_its_own_reason() {
        let mut snap = snapshot();
        snap.activity = ActivityData::Refused(IntercomError::PlanRestricted {
            endpoint: "/admins/activity_logs".into(),
            message: "Active subscription needed.".into(),
        });
        let o = run("data_exported", &snap);
        assert_eq!(o.status, CheckStatus::NotEvaluated);
        assert_eq!(o.reason.as_deref(), Some(PLAN_REASON));
        snap.activity = ActivityData::NotFetched;
        assert_eq!(run("data_exported", &snap).status, CheckStatus::Error);
    }

    #[test]
    fn events_outside_the_window_produce_no_finding() {
        let mut snap = snapshot();
        let now = snap.now;
        set_events(
            &mut snap,
            vec![
                event("old", "bulk_export", "1", now - Duration::days(31)),
                event("edge", "bulk_export", "1", now - Duration::days(30)),
            ],
        );
        let o = run("data_exported", &snap);
        assert_eq!(resources(&o), ["event:edge"]);
        let settings = CheckSettings {
            event_window_days: 7,
            ..Default::default()
        };
        let o = run_with("data_exported", &snap, &previous(), &settings);
        assert_eq!(o.status, CheckStatus::Pass);
    }

    #[test]
    fn a_pass_over_partial_history_says_so() {
        let mut snap = snapshot();
        snap.activity = ActivityData::Available {
            events: Vec::new(),
            covered_from: snap.now - Duration::days(3),
        };
        let o = run("data_exported", &snap);
        assert_eq!(o.status, CheckStatus::Pass);
        assert_eq!(
            o.reason.as_deref(),
            Some("activity history covers 3 of the 30-day event window")
        );
        assert_eq!(run("data_exported", &snapshot()).reason, None);
    }
}
