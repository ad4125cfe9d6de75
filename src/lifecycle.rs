//! Finding lifecycle, pure: given this scan's check outcomes, the instance's existing
//! findings and its active exceptions, decide every write and every transition.
//!
//! Rules: a failing resource is upserted (`open`, or `muted` under an exception); a
//! resolved finding that fails again reopens (first_seen kept, reopen counted); on a
//! complete scan, open or muted findings of a check that was evaluated (pass or fail) and
//! no longer fail are resolved; findings of checks that errored or were not evaluated are
//! never touched, because missing data proves nothing.

use foldhash::{HashMap, HashSet, HashSetExt};

use uuid::Uuid;

use crate::checks::{CheckOutcome, CheckStatus, FindingDraft, Severity};

pub use crate::status::FindingStatus;

#[derive(Debug, Clone)]
pub struct ExistingFinding {
    pub id: Uuid,
    pub check_id: String,
    pub resource: String,
    pub status: FindingStatus,
    pub severity: String,
    pub exception_id: Option<Uuid>,
    /// Digest of the stored content (`db::findings::content_digest`); None when unknown.
    pub content_digest: Option<i64>,
    /// Its `last_seen_at`/`last_scan_id` are the instance's last succeeded scan's
    /// (`sspm.finding_rows.last_seen_follows_instance`), not stored on the row.
    pub last_seen_follows_instance: bool,
}

#[derive(Debug, Clone)]
pub struct ActiveException {
    pub id: Uuid,
    pub check_id: String,
    /// None covers every resource of the check.
    pub resource: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// `/me` and `/admins` succeeded: evaluated checks may resolve their findings.
    Complete,
    /// The scan failed before collecting workspace data: only scan-health findings
    /// (token_valid, api_reachable) are recorded and nothing resolves.
    HealthOnly,
}

/// One finding row to insert or update; the draft is borrowed from the check outcome
/// (a large workspace has tens of thousands, each with its evidence).
#[derive(Debug, Clone)]
pub struct FindingWrite<'a> {
    pub id: Uuid,
    pub check_id: &'static str,
    pub draft: &'a FindingDraft,
    pub status: FindingStatus,
    pub exception_id: Option<Uuid>,
    pub reopened: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transition {
    pub finding_id: Uuid,
    pub from: Option<FindingStatus>,
    pub to: FindingStatus,
    pub reason: &'static str,
}

#[derive(Debug, Default)]
pub struct Plan<'a> {
    pub writes: Vec<FindingWrite<'a>>,
    /// Findings to mark resolved.
    pub resolve: Vec<Uuid>,
    /// Muted findings whose exception ended while their check could not be evaluated.
    pub unmute: Vec<Uuid>,
    pub transitions: Vec<Transition>,
}

impl Plan<'_> {
    pub fn new_count(&self) -> usize {
        self.transitions
            .iter()
            .filter(|t| t.from.is_none() || (t.from == Some(FindingStatus::Resolved)))
            .count()
    }

    pub fn resolved_count(&self) -> usize {
        self.resolve.len()
    }

    /// Open findings by severity once the plan is applied to `existing` (the instance's
    /// findings, read locked in the same transaction): what a `GROUP BY severity` over the
    /// open rows would count after the writes, without asking the database again.
    pub fn open_by_severity(&self, existing: &[ExistingFinding]) -> Vec<(String, i64)> {
        let mut state: HashMap<Uuid, (FindingStatus, &str)> = existing
            .iter()
            .map(|f| (f.id, (f.status, f.severity.as_str())))
            .collect();
        for w in &self.writes {
            state.insert(w.id, (w.status, w.draft.severity.as_str()));
        }
        for id in &self.resolve {
            if let Some(s) = state.get_mut(id) {
                s.0 = FindingStatus::Resolved;
            }
        }
        for id in &self.unmute {
            if let Some(s) = state.get_mut(id) {
                if s.0 == FindingStatus::Muted {
                    s.0 = FindingStatus::Open;
                }
            }
        }
        let mut counts: std::collections::BTreeMap<&str, i64> = Default::default();
        for (status, severity) in state.values() {
            if *status == FindingStatus::Open {
                *counts.entry(severity).or_default() += 1;
            }
        }
        counts
            .into_iter()
            .map(|(s, n)| (s.to_string(), n))
            .collect()
    }
}

/// Finds the exception covering (check, resource): a resource-specific one wins.
pub fn matching_exception<'a>(
    exceptions: &'a [ActiveException],
    check_id: &str,
    resource: &str,
) -> Option<&'a ActiveException> {
    exceptions
        .iter()
        .filter(|e| e.check_id == check_id)
        .find(|e| e.resource.as_deref() == Some(resource))
        .or_else(|| {
            exceptions
                .iter()
                .find(|e| e.check_id == check_id && e.resource.is_none())
        })
}

pub fn plan<'a>(
    outcomes: &'a [CheckOutcome],
    existing: &[ExistingFinding],
    exceptions: &[ActiveException],
    mode: Mode,
    is_health_check: impl Fn(&str) -> bool,
) -> Plan<'a> {
    let by_key: HashMap<(&str, &str), &ExistingFinding> = existing
        .iter()
        .map(|f| ((f.check_id.as_str(), f.resource.as_str()), f))
        .collect();
    let mut plan = Plan::default();
    let mut failing: HashSet<(&str, &str)> = HashSet::new();

    for outcome in outcomes {
        if outcome.status != CheckStatus::Fail {
            continue;
        }
        if mode == Mode::HealthOnly && !is_health_check(outcome.check_id) {
            continue;
        }
        for draft in &outcome.findings {
            failing.insert((outcome.check_id, draft.resource.as_str()));
            let exception = matching_exception(exceptions, outcome.check_id, &draft.resource);
            let target = if exception.is_some() {
                FindingStatus::Muted
            } else {
                FindingStatus::Open
            };
            let prior = by_key.get(&(outcome.check_id, draft.resource.as_str()));
            let id = prior.map(|p| p.id).unwrap_or_else(Uuid::new_v4);
            let from = prior.map(|p| p.status);
            if from != Some(target) {
                plan.transitions.push(Transition {
                    finding_id: id,
                    from,
                    to: target,
                    reason: match (from, target) {
                        (None, FindingStatus::Muted) => "new finding, muted by exception",
                        (None, _) => "new finding",
                        (Some(FindingStatus::Resolved), _) => "failing again",
                        (Some(FindingStatus::Open), FindingStatus::Muted) => "exception applies",
                        (Some(FindingStatus::Muted), FindingStatus::Open) => "exception ended",
                        _ => "status change",
                    },
                });
            }
            plan.writes.push(FindingWrite {
                id,
                check_id: outcome.check_id,
                draft,
                status: target,
                exception_id: exception.map(|e| e.id),
                reopened: from == Some(FindingStatus::Resolved),
            });
        }
    }

    if mode == Mode::Complete {
        let evaluated: HashSet<&str> = outcomes
            .iter()
            .filter(|o| matches!(o.status, CheckStatus::Pass | CheckStatus::Fail))
            .map(|o| o.check_id)
            .collect();
        for f in existing {
            if f.status == FindingStatus::Resolved
                || failing.contains(&(f.check_id.as_str(), f.resource.as_str()))
            {
                continue;
            }
            if evaluated.contains(f.check_id.as_str()) {
                plan.resolve.push(f.id);
                plan.transitions.push(Transition {
                    finding_id: f.id,
                    from: Some(f.status),
                    to: FindingStatus::Resolved,
                    reason: "no longer failing",
                });
            } else if f.status == FindingStatus::Muted
                && matching_exception(exceptions, &f.check_id, &f.resource).is_none()
            {
                plan.unmute.push(f.id);
                plan.transitions.push(Transition {
                    finding_id: f.id,
                    from: Some(FindingStatus::Muted),
                    to: FindingStatus::Open,
                    reason: "exception ended",
                });
            }
        }
    }
    plan
}

/// Severity to store: the draft's own (checks may raise it above the catalog's).
pub fn severity_of(draft: &FindingDraft) -> Severity {
    draft.severity
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn draft(resource: &str) -> FindingDraft {
        FindingDraft {
            resource: resource.into(),
            severity: Severity::High,
            title: format!("t {resource}"),
            evidence: json!({}).into(),
        }
    }

    fn outcome(id: &'static str, status: CheckStatus, resources: &[&str]) -> CheckOutcome {
        CheckOutcome {
            check_id: id,
            status,
            reason: None,
            findings: resources.iter().map(|r| draft(r)).collect(),
        }
    }

    fn existing(check: &str, resource: &str, status: FindingStatus) -> ExistingFinding {
        ExistingFinding {
            id: Uuid::new_v4(),
            check_id: check.into(),
            resource: resource.into(),
            status,
            severity: "high".into(),
            exception_id: None,
            content_digest: None,
            last_seen_follows_instance: false,
        }
    }

    fn no_health(_: &str) -> bool {
        false
    }

    #[test]
    fn new_failures_open_and_passing_checks_resolve() {
        let old = existing("a", "admin:1", FindingStatus::Open);
        let outcomes = [outcome("a", CheckStatus::Fail, &["admin:2"])];
        let p = plan(
            &outcomes,
            std::slice::from_ref(&old),
            &[],
            Mode::Complete,
            no_health,
        );
        assert_eq!(p.writes.len(), 1);
        assert_eq!(p.writes[0].status, FindingStatus::Open);
        assert_eq!(p.resolve, vec![old.id]);
        assert_eq!(p.new_count(), 1);
        assert_eq!(p.resolved_count(), 1);
    }

    #[test]
    fn regression_reopens_with_the_same_id() {
        let old = existing("a", "admin:1", FindingStatus::Resolved);
        let outcomes = [outcome("a", CheckStatus::Fail, &["admin:1"])];
        let p = plan(
            &outcomes,
            std::slice::from_ref(&old),
            &[],
            Mode::Complete,
            no_health,
        );
        assert_eq!(p.writes[0].id, old.id);
        assert!(p.writes[0].reopened);
        assert_eq!(
            p.transitions,
            vec![Transition {
                finding_id: old.id,
                from: Some(FindingStatus::Resolved),
                to: FindingStatus::Open,
                reason: "failing again"
            }]
        );
    }

    #[test]
    fn still_open_finding_has_no_transition() {
        let old = existing("a", "admin:1", FindingStatus::Open);
        let outcomes = [outcome("a", CheckStatus::Fail, &["admin:1"])];
        let p = plan(&outcomes, &[old], &[], Mode::Complete, no_health);
        assert!(p.transitions.is_empty());
        assert!(p.resolve.is_empty());
    }

    #[test]
    fn errored_or_unevaluated_checks_never_resolve() {
        let a = existing("a", "admin:1", FindingStatus::Open);
        let b = existing("b", "event:9", FindingStatus::Open);
        let outcomes = [
            outcome("a", CheckStatus::Error, &[]),
            outcome("b", CheckStatus::NotEvaluated, &[]),
        ];
        let p = plan(&outcomes, &[a, b], &[], Mode::Complete, no_health);
        assert!(p.resolve.is_empty());
        assert!(p.transitions.is_empty());
    }

    #[test]
    fn health_only_mode_records_health_findings_and_resolves_nothing() {
        let other = existing("a", "admin:1", FindingStatus::Open);
        let outcomes = [
            outcome("token_valid", CheckStatus::Fail, &["workspace"]),
            outcome("a", CheckStatus::Pass, &[]),
        ];
        let p = plan(&outcomes, &[other], &[], Mode::HealthOnly, |id| {
            id == "token_valid"
        });
        assert_eq!(p.writes.len(), 1);
        assert_eq!(p.writes[0].check_id, "token_valid");
        assert!(p.resolve.is_empty());
    }

    #[test]
    fn exceptions_mute_resource_specific_first_and_unmute_when_gone() {
        let exceptions = [
            ActiveException {
                id: Uuid::new_v4(),
                check_id: "a".into(),
                resource: None,
            },
            ActiveException {
                id: Uuid::new_v4(),
                check_id: "a".into(),
                resource: Some("admin:1".into()),
            },
        ];
        let outcomes = [outcome("a", CheckStatus::Fail, &["admin:1", "admin:2"])];
        let p = plan(&outcomes, &[], &exceptions, Mode::Complete, no_health);
        assert!(p.writes.iter().all(|w| w.status == FindingStatus::Muted));
        assert_eq!(p.writes[0].exception_id, Some(exceptions[1].id));
        assert_eq!(p.writes[1].exception_id, Some(exceptions[0].id));

        let muted = existing("a", "admin:1", FindingStatus::Muted);
        let outcomes = [outcome("a", CheckStatus::Fail, &["admin:1"])];
        let p = plan(
            &outcomes,
            std::slice::from_ref(&muted),
            &[],
            Mode::Complete,
            no_health,
        );
        assert_eq!(p.writes[0].status, FindingStatus::Open);
        assert_eq!(p.transitions[0].reason, "exception ended");

        let outcomes = [outcome("a", CheckStatus::Error, &[])];

        let p = plan(
            &outcomes,
            std::slice::from_ref(&muted),
            &[],
            Mode::Complete,
            no_health,
        );
        assert_eq!(p.unmute, vec![muted.id]);
    }

    #[test]
    fn open_counts_follow_the_plan() {
        let mut kept_low = existing("k", "admin:9", FindingStatus::Open);
        kept_low.severity = "low".into();
        let fixed = existing("a", "admin:1", FindingStatus::Open);
        let muted = existing("m", "admin:3", FindingStatus::Muted);
        let old = existing("a", "admin:4", FindingStatus::Resolved);
        let rows = [kept_low, fixed, muted.clone(), old];
        // a: admin:1 passes now (resolved), admin:2 new (high), admin:4 fails again (high);
        // m errored and its exception is gone: unmuted, counted open with its severity;
        // k not evaluated: stays open (low).
        let outcomes = [
            outcome("a", CheckStatus::Fail, &["admin:2", "admin:4"]),
            outcome("m", CheckStatus::Error, &[]),
        ];
        let p = plan(&outcomes, &rows, &[], Mode::Complete, no_health);
        assert_eq!(p.unmute, vec![muted.id]);
        assert_eq!(
            p.open_by_severity(&rows),
            vec![("high".to_string(), 3), ("low".to_string(), 1)]
        );
    }
}
