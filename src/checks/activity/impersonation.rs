//! `impersonation`: one finding per `admin_impersonation_start` or
//! `admin_impersonation_consent_approved` event in the window, resource `event:<id>`.
//! A start becomes high once `impersonation_max_hours` passed without a matching
//! `admin_impersonation_end`; before that it is reported at the check's severity with
//! `ongoing: true` (the same resource is raised on a later scan).

use chrono::Duration;
use serde_json::json;

use super::super::catalog::CheckMeta;
use super::super::context::Ctx;
use super::super::snapshot::ActivityEvent;
use super::super::types::{Severity, Verdict};
use super::{
    actor, available, coverage_note, event_evidence, event_finding, event_finding_with, recent_of,
    sort_events, when,
};

const START: &str = "admin_impersonation_start";
const END: &str = "admin_impersonation_end";
const CONSENT: &str = "admin_impersonation_consent_approved";

/// An end closes a start when both name the same actor; events without any actor
/// identity match anything (better a missed "high" than a false one).
fn same_actor(a: &ActivityEvent, b: &ActivityEvent) -> bool {
    match (
        (&a.performed_by_id, &a.performed_by_email),
        (&b.performed_by_id, &b.performed_by_email),
    ) {
        ((Some(x), _), (Some(y), _)) => x == y,
        ((_, Some(x)), (_, Some(y))) => x.eq_ignore_ascii_case(y),
        _ => true,
    }
}

pub(in crate::checks) fn impersonation(ctx: &Ctx<'_>, m: &CheckMeta) -> Verdict {
    let (events, covered_from) = match available(ctx) {
        Ok(a) => a,
        Err(v) => return v,
    };
    let max = Duration::hours(i64::from(ctx.settings.impersonation_max_hours));
    let mut ends: Vec<&ActivityEvent> = events.iter().filter(|e| e.activity_type == END).collect();
    sort_events(&mut ends);
    let mut used = vec![false; ends.len()];

    let findings = recent_of(ctx, events, &[START, CONSENT])
        .into_iter()
        .map(|ev| {
            if ev.activity_type == CONSENT {
                let title = format!(
                    "Impersonation consent approved by {} ({})",
                    actor(ev),
                    when(ev.created_at)
                );
                return event_finding(ev, m.severity, title);
            }
            // Starts are visited oldest first, so each takes the earliest free end.
            let end = ends.iter().enumerate().position(|(i, e)| {
                !used[i]
                    && e.created_at >= ev.created_at
                    && e.created_at <= ev.created_at + max
                    && same_actor(ev, e)
            });
            if let Some(i) = end {
                used[i] = true;
            }
            let overdue = end.is_none() && ctx.now() > ev.created_at + max;
            let (severity, title) = if overdue {
                (
                    Severity::High,
                    format!(
                        "Impersonation session started by {} ({}) with no end within {} hours",
                        actor(ev),
                        when(ev.created_at),
                        ctx.settings.impersonation_max_hours
                    ),
                )
            } else {
                (
                    m.severity,
                    format!(
                        "Impersonation session started by {} ({})",
                        actor(ev),
                        when(ev.created_at)
                    ),
                )
            };
            let mut evidence = event_evidence(ev);
            evidence["ended_by_event"] = json!(end.map(|i| &ends[i].id));
            evidence["ended_at"] = json!(end.map(|i| ends[i].created_at));
            evidence["ongoing"] = json!(end.is_none() && !overdue);
            evidence["max_hours"] = json!(ctx.settings.impersonation_max_hours);
            event_finding_with(ev, severity, title, evidence)
        })
        .collect();
    Verdict::from_findings(findings, coverage_note(ctx, covered_from))
}

#[cfg(test)]
mod tests {
    use chrono::Duration;

    use super::super::super::testutil::*;
    use super::super::super::types::{CheckStatus, Severity};
    use super::*;

    #[test]
    fn unended_sessions_past_the_limit_are_high() {
        let mut snap = snapshot();
        let now = snap.now;
        set_events(
            &mut snap,
            vec![
                event("s1", START, "9", now - Duration::hours(20)),
                event("e1", END, "9", now - Duration::hours(19)),
                event("s2", START, "9", now - Duration::hours(12)),
                event("s3", START, "9", now - Duration::hours(2)),
                event("c1", CONSENT, "2", now - Duration::hours(30)),
                event("old", START, "9", now - Duration::days(40)),
            ],
        );
        let o = run("impersonation", &snap);
        assert_eq!(o.status, CheckStatus::Fail);
        assert_eq!(
            resources(&o),
            ["event:c1", "event:s1", "event:s2", "event:s3"]
        );
        let sev: Vec<Severity> = o.findings.iter().map(|f| f.severity).collect();
        assert_eq!(
            sev,
            [
                Severity::Medium,
                Severity::Medium,
                Severity::High,
                Severity::Medium
            ]
        );
        assert_eq!(o.findings[1].evidence.value()["ended_by_event"], "e1");
        assert_eq!(o.findings[3].evidence.value()["ongoing"], true);
        assert!(o.findings[2].title.contains("no end within 8 hours"));
    }

    #[test]
    fn an_end_by_someone_else_does_not_close_a_session() {
        let mut snap = snapshot();
        let now = snap.now;
        set_events(
            &mut snap,
            vec![
                event("s1", START, "9", now - Duration::hours(20)),
                event("e1", END, "7", now - Duration::hours(19)),
            ],
        );
        let o = run("impersonation", &snap);
        assert_eq!(o.findings[0].severity, Severity::High);
        set_events(&mut snap, vec![event("e", END, "9", now)]);
        assert_eq!(run("impersonation", &snap).status, CheckStatus::Pass);
    }
}
