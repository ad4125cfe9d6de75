//! H checks: the scanner's own access to the workspace. All findings use the resource
//! `workspace`, except `token_owner_verified` (`admin:<owner id>`, so that a new token
//! owner gets a new finding).

use serde_json::json;

use super::catalog::{activity_dependent_ids, CheckMeta};
use super::context::{fetch_error_reason, Ctx};
use super::snapshot::{ActivityData, ProbeOutcome};
use super::types::{FindingDraft, Verdict};
use crate::intercom::IntercomError;
use crate::Region;

const WORKSPACE: &str = "workspace";
/// Reading the activity log is a capability the scanner wants, not an excess one.
const ACTIVITY_ENDPOINT: &str = "/admins/activity_logs";

fn workspace_finding(m: &CheckMeta, title: String, evidence: serde_json::Value) -> FindingDraft {
    FindingDraft {
        resource: WORKSPACE.to_string(),
        severity: m.severity,
        title,
        evidence: evidence.into(),
    }
}

fn error_evidence(e: &IntercomError) -> serde_json::Value {
    json!({
        "endpoint": e.endpoint(),
        "error_kind": e.kind(),
        "error": e.to_string(),
    })
}

fn fail_one(m: &CheckMeta, title: String, evidence: serde_json::Value) -> Verdict {
    Verdict::from_findings(vec![workspace_finding(m, title, evidence)], None)
}

/// Every check when `/me` failed: only the check that names the cause fails, the rest
/// are `error` because nothing else in the snapshot can be trusted.
pub(super) fn when_me_failed(m: &CheckMeta, e: &IntercomError) -> Verdict {
    match (m.id, e) {
        ("token_valid", IntercomError::Unauthorized { .. }) => fail_one(
            m,
            "Intercom rejects the scanner's access token (invalid, revoked or wrong region)".into(),
            error_evidence(e),
        ),
        ("token_valid", IntercomError::NotPermitted { .. }) => fail_one(
            m,
            "Scanner token may not read teammates (grant \"Read admins\")".into(),
            error_evidence(e),
        ),
        ("api_reachable", IntercomError::IpNotAllowed { .. }) => fail_one(
            m,
            "Scanner's IP address is not on the workspace's REST API IP allowlist".into(),
            error_evidence(e),
        ),
        ("api_reachable", e) if e.is_unreachable() => {
            fail_one(m, unreachable_title("/me", e), error_evidence(e))
        }
        _ => Verdict::Error(fetch_error_reason(e)),
    }
}

pub(super) fn token_valid(_: &Ctx<'_>, _: &CheckMeta) -> Verdict {
    Verdict::pass()
}

fn unreachable_title(endpoint: &str, e: &IntercomError) -> String {
    match e {
        IntercomError::BudgetExhausted(_) => format!(
            "Intercom API did not answer within the scan's time budget (intercom.scan_timeout, at {endpoint})"
        ),
        _ => format!("Intercom API unreachable from the scanner ({endpoint})"),
    }
}

/// `/me` answered, but a later call may still hit the IP allowlist, a persistent outage or
/// the end of the scan's time budget. It fails exactly when the scan marks the instance
/// `ip_not_allowed` or `unreachable` (see `IntercomError::is_unreachable`), so the check
/// and the instance status never disagree; the activity log counts too (its failure does
/// not fail the scan, but the API was no more reachable for it).
pub(super) fn api_reachable(ctx: &Ctx<'_>, m: &CheckMeta) -> Verdict {
    let activity_err = match &ctx.snap.activity {
        ActivityData::Failed(e) => Some((ACTIVITY_ENDPOINT, e)),
        _ => None,
    };
    let unreachable = ctx
        .snap
        .admins
        .as_ref()
        .err()
        .map(|e| ("/admins", e))
        .into_iter()
        .chain(activity_err)
        .find(|(_, e)| matches!(e, IntercomError::IpNotAllowed { .. }) || e.is_unreachable());
    match unreachable {
        Some((_, e @ IntercomError::IpNotAllowed { .. })) => fail_one(
            m,
            "Scanner's IP address is not on the workspace's REST API IP allowlist".into(),
            error_evidence(e),
        ),
        Some((endpoint, e)) => fail_one(
            m,
            unreachable_title(e.endpoint().unwrap_or(endpoint), e),
            error_evidence(e),
        ),
        None => Verdict::pass(),
    }
}

pub(super) fn region_matches(ctx: &Ctx<'_>, m: &CheckMeta) -> Verdict {
    let Some(reported) = ctx.me.app.as_ref().and_then(|a| a.region.as_deref()) else {
        return Verdict::error("/me did not report app.region");
    };
    let onboarded = ctx.snap.onboarded_region;
    match reported.parse::<Region>() {
        Err(_) => Verdict::error(format!("unrecognised app.region {reported:?}")),
        Ok(region) if region == onboarded => Verdict::pass(),
        Ok(region) => fail_one(
            m,
            format!(
                "Workspace is hosted in {} but was onboarded as {}",
                region.as_str().to_uppercase(),
                onboarded.as_str().to_uppercase()
            ),
            json!({
                "reported_region": reported,
                "onboarded_region": onboarded.as_str(),
                "workspace_id": ctx.me.app.as_ref().and_then(|a| a.id_code.clone()),
            }),
        ),
    }
}

pub(super) fn activity_log_access(ctx: &Ctx<'_>, m: &CheckMeta) -> Verdict {
    let not_evaluated: Vec<&str> = activity_dependent_ids()
        .into_iter()
        .filter(|id| !ctx.settings.disabled.iter().any(|d| d.trim() == *id))
        .collect();
    match &ctx.snap.activity {
        ActivityData::Available { .. } => Verdict::pass(),
        ActivityData::Refused(e @ IntercomError::PlanRestricted { .. }) => fail_one(
            m,
            "Workspace plan does not include activity logs".into(),
            json!({
                "error": error_evidence(e),
                "not_evaluated_checks": not_evaluated,
                "to_enable": "ask the Intercom account owner for a plan that includes activity logs",
            }),
        ),
        ActivityData::Refused(e) => fail_one(
            m,
            "Scanner token may not read the admin activity log (grant \"Read admin activity logs\")"
                .into(),
            json!({
                "error": error_evidence(e),
                "not_evaluated_checks": not_evaluated,
                "grant": "Read admin activity logs",
                "where": "Settings > Integrations > Developer Hub > (scanner app) > Configure > Authentication > Edit permissions",
            }),
        ),
        ActivityData::Failed(e) => Verdict::Error(fetch_error_reason(e)),
        ActivityData::NotFetched => Verdict::error("activity log was not fetched in this scan"),
    }
}

pub(super) fn token_least_privilege(ctx: &Ctx<'_>, m: &CheckMeta) -> Verdict {
    if !ctx.snap.probes_enabled {
        return Verdict::not_evaluated(
            "capability probes disabled by configuration (scan.probe_extra_scopes)",
        );
    }
    let probes: Vec<_> = ctx
        .snap
        .probes
        .iter()
        .filter(|p| !p.endpoint.starts_with(ACTIVITY_ENDPOINT))
        .collect();
    if probes.is_empty() {
        return Verdict::error("no capability probe was run");
    }
    let allowed: Vec<_> = probes
        .iter()
        .filter(|p| p.outcome == ProbeOutcome::Allowed)
        .collect();
    if !allowed.is_empty() {
        let names: Vec<&str> = allowed.iter().map(|p| p.capability.as_str()).collect();
        return fail_one(
            m,
            format!(
                "Scanner token holds extra capabilities: {}",
                names.join(", ")
            ),
            json!({
                "extra_capabilities": allowed
                    .iter()
                    .map(|p| json!({"capability": p.capability, "endpoint": p.endpoint}))
                    .collect::<Vec<_>>(),
                "needed": ["Read admins", "Read admin activity logs"],
            }),
        );
    }
    let errors: Vec<String> = probes
        .iter()
        .filter_map(|p| match &p.outcome {
            ProbeOutcome::Error(e) => Some(format!("{} ({}): {e}", p.capability, p.endpoint)),
            _ => None,
        })
        .collect();
    if errors.is_empty() {
        Verdict::pass()
    } else {
        Verdict::Error(format!("capability probes failed: {}", errors.join("; ")))
    }
}

pub(super) fn token_owner_verified(ctx: &Ctx<'_>, m: &CheckMeta) -> Verdict {
    let me = ctx.me;
    let Some(owner_id) = me.id.as_deref().filter(|id| !id.trim().is_empty()) else {
        return Verdict::error("/me did not report the token owner's id");
    };
    let present = ctx
        .snap
        .admins
        .as_ref()
        .ok()
        .map(|admins| admins.iter().any(|a| a.id.as_deref() == Some(owner_id)));
    let mut problems = Vec::new();
    if me.email_verified == Some(false) {
        problems.push("email address is not verified");
    }
    if present == Some(false) {
        problems.push("no longer appears in the teammate list");
    }
    if !problems.is_empty() {
        let owner = me.email.as_deref().unwrap_or(owner_id);
        return Verdict::from_findings(
            vec![FindingDraft {
                resource: format!("admin:{owner_id}"),
                severity: m.severity,
                title: format!("Token owner {owner}: {}", problems.join(" and ")),
                evidence: json!({
                    "owner_id": owner_id,
                    "owner_email": me.email,
                    "email_verified": me.email_verified,
                    "present_in_admins": present,
                })
                .into(),
            }],
            None,
        );
    }
    match (me.email_verified, &ctx.snap.admins) {
        (None, _) => Verdict::error("/me did not say whether the owner's email is verified"),
        (_, Err(e)) => Verdict::Error(fetch_error_reason(e)),
        _ => Verdict::pass(),
    }
}

#[cfg(test)]
mod tests {
    use super::super::testutil::*;
    use super::super::types::{CheckStatus, Severity};
    use super::super::CheckSettings;
    use super::*;
    use crate::intercom::models::App;

    fn transient(endpoint: &str) -> IntercomError {
        IntercomError::Transient {
            endpoint: endpoint.into(),
            reason: "HTTP 503 after 3 retries".into(),
        }
    }

    #[test]
    fn token_valid_fails_on_401_and_on_missing_scope() {
        assert_eq!(run("token_valid", &snapshot()).status, CheckStatus::Pass);
        let mut snap = snapshot();
        snap.me = Err(not_permitted("/me"));
        snap.admins = Err(not_permitted("/me"));
        let o = run("token_valid", &snap);
        assert_eq!(o.status, CheckStatus::Fail);
        assert!(o.findings[0].title.contains("Read admins"));
        snap.me = Err(transient("/me"));
        assert_eq!(run("token_valid", &snap).status, CheckStatus::Error);
    }

    #[test]
    fn api_reachable_fails_on_persistent_outage_not_on_decode_errors() {
        let mut snap = snapshot();
        snap.me = Err(transient("/me"));
        let o = run("api_reachable", &snap);
        assert_eq!(o.status, CheckStatus::Fail);
        assert_eq!(resources(&o), ["workspace"]);
        assert_eq!(o.findings[0].evidence.value()["error_kind"], "unreachable");

        snap.me = Err(IntercomError::Decode {
            endpoint: "/me".into(),
            path: "app".into(),
            reason: "bad".into(),
        });
        assert_eq!(run("api_reachable", &snap).status, CheckStatus::Error);

        let mut snap = snapshot();
        snap.activity = ActivityData::Failed(transient("/admins/activity_logs"));
        assert_eq!(run("api_reachable", &snap).status, CheckStatus::Fail);

        let mut snap = snapshot();
        snap.admins = Err(IntercomError::RateLimited {
            endpoint: "/admins".into(),
            reset: std::time::Duration::from_secs(3),
        });
        assert_eq!(run("api_reachable", &snap).status, CheckStatus::Pass);
        assert_eq!(
            run("admin_new", &snap).reason.as_deref(),
            Some("rate limited")
        );
    }

    #[test]
    fn region_compares_case_insensitively_and_errors_when_missing() {
        let mut snap = snapshot();
        assert_eq!(run("region_matches", &snap).status, CheckStatus::Pass);
        snap.onboarded_region = Region::Eu;
        let o = run("region_matches", &snap);
        assert_eq!(o.status, CheckStatus::Fail);
        assert_eq!(o.findings[0].severity, Severity::Low);
        assert_eq!(o.findings[0].evidence.value()["reported_region"], "US");

        let mut me = me();
        me.app.as_mut().unwrap().region = Some("eu".into());
        snap.me = Ok(me.clone());
        assert_eq!(run("region_matches", &snap).status, CheckStatus::Pass);
        me.app.as_mut().unwrap().region = None;
        snap.me = Ok(me.clone());
        assert_eq!(run("region_matches", &snap).status, CheckStatus::Error);
        me.app = None;
        snap.me = Ok(me.clone());
        assert_eq!(run("region_matches", &snap).status, CheckStatus::Error);
        me.app = Some(App {
            region: Some("Mars".into()),
            ..Default::default()
        });
        snap.me = Ok(me);
        assert_eq!(run("region_matches", &snap).status, CheckStatus::Error);
    }

    #[test]
    fn activity_log_access_says_what_is_lost_and_what_to_grant() {
        assert_eq!(
            run("activity_log_access", &snapshot()).status,
            CheckStatus::Pass
        );
        let mut snap = snapshot();
        snap.activity = ActivityData::Refused(not_permitted("/admins/activity_logs"));
        let settings = CheckSettings {
            disabled: vec!["data_deleted".into()],
            ..Default::default()
        };
        let o = run_with("activity_log_access", &snap, &previous(), &settings);
        assert_eq!(o.status, CheckStatus::Fail);
        let ev = o.findings[0].evidence.value();
        assert_eq!(ev["grant"], "Read admin activity logs");
        let lost: Vec<&str> = ev["not_evaluated_checks"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap())
            .collect();
        assert!(lost.contains(&"admin_dormant") && lost.contains(&"inbox_seat_inactive"));
        assert!(!lost.contains(&"data_deleted"));

        snap.activity = ActivityData::Refused(IntercomError::PlanRestricted {
            endpoint: "/admins/activity_logs".into(),
            message: "This feature is not yet available to your app".into(),
        });
        let o = run("activity_log_access", &snap);
        assert_eq!(o.status, CheckStatus::Fail);
        assert!(o.findings[0]
            .title
            .contains("plan does not include activity logs"));

        snap.activity = ActivityData::Failed(transient("/admins/activity_logs"));
        assert_eq!(run("activity_log_access", &snap).status, CheckStatus::Error);
        snap.activity = ActivityData::NotFetched;
        assert_eq!(run("activity_log_access", &snap).status, CheckStatus::Error);
    }

    #[test]
    fn least_privilege_lists_extra_capabilities() {
        let mut snap = snapshot();
        assert_eq!(
            run("token_least_privilege", &snap).status,
            CheckStatus::Pass
        );
        snap.probes[0].outcome = ProbeOutcome::Allowed;
        snap.probes.push(probe(
            "Read admin activity logs",
            "/admins/activity_logs",
            ProbeOutcome::Allowed,
        ));
        let o = run("token_least_privilege", &snap);
        assert_eq!(o.status, CheckStatus::Fail);
        assert_eq!(resources(&o), ["workspace"]);
        let evidence = o.findings[0].evidence.value();
        let extra = evidence["extra_capabilities"].as_array().unwrap();
        assert_eq!(extra.len(), 1, "activity-log access is not a violation");
        assert_eq!(extra[0]["capability"], "Read tags");
    }

    #[test]
    fn least_privilege_is_error_or_not_evaluated_without_answers() {
        let mut snap = snapshot();
        snap.probes[1].outcome = ProbeOutcome::Error("HTTP 502".into());
        let o = run("token_least_privilege", &snap);
        assert_eq!(o.status, CheckStatus::Error);
        assert!(o.reason.unwrap().contains("/ip_allowlist"));

        snap.probes.clear();
        assert_eq!(
            run("token_least_privilege", &snap).status,
            CheckStatus::Error
        );
        snap.probes_enabled = false;
        assert_eq!(
            run("token_least_privilege", &snap).status,
            CheckStatus::NotEvaluated
        );
    }

    #[test]
    fn token_owner_must_be_verified_and_present() {
        let mut snap = snapshot();
        assert_eq!(run("token_owner_verified", &snap).status, CheckStatus::Pass);

        let mut me = me();
        me.email_verified = None;
        snap.me = Ok(me.clone());
        assert_eq!(
            run("token_owner_verified", &snap).status,
            CheckStatus::Error
        );

        me.email_verified = Some(false);
        snap.me = Ok(me.clone());
        let o = run("token_owner_verified", &snap);
        assert_eq!(o.status, CheckStatus::Fail);
        assert_eq!(resources(&o), ["admin:1"]);

        let mut snap = snapshot();
        snap.admins = Ok(vec![admin("2", "bo@acme.com")]);
        let o = run("token_owner_verified", &snap);
        assert_eq!(o.status, CheckStatus::Fail);
        assert_eq!(o.findings[0].evidence.value()["present_in_admins"], false);

        snap.admins = Err(transient("/admins"));
        assert_eq!(
            run("token_owner_verified", &snap).status,
            CheckStatus::Error
        );
    }
}
