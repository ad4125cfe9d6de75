//! The check catalog (CHECKS.md): metadata as data plus pure functions over a scan
//! snapshot and the previous state. No I/O here.
//!
//! Missing data is never a pass: a check whose input could not be fetched is `error`
//! (something went wrong) or `not_evaluated` (by design: disabled, scope not granted,
//! history too short, manual control without attestation).
mod activity;
mod admins;
mod catalog;
mod context;
pub mod domains;
mod health;
mod inactivity;
mod manual;
mod objects;
pub mod overrides;
mod score;
mod settings;
mod snapshot;
mod types;

#[cfg(test)]
mod address_table;
#[cfg(test)]
pub(crate) mod testutil;

pub use catalog::{catalog, meta, CheckMeta, Compliance, CIS_V8, ISO_27001, NIST_800_53, SOC2};
pub use score::{posture, Posture};
pub use settings::CheckSettings;
pub use snapshot::{
    ActivityData, ActivityEvent, AdminHistory, EarlierActivity, EventMetadata, Interner,
    PreviousState, Probe, ProbeOutcome, SharedText, Snapshot,
};
pub use types::{
    Category, CheckOutcome, CheckStatus, Evidence, FindingDraft, Severity, Source,
    UnknownCheckStatus, UnknownSeverity,
};

use context::Ctx;
use types::Verdict;

/// Reason of every check listed in `checks.disabled`.
pub const DISABLED_REASON: &str = "disabled by configuration";

type CheckFn = fn(&Ctx<'_>, &CheckMeta) -> Verdict;

/// Runs every catalog entry: exactly one outcome per entry, in catalog order.
pub fn evaluate(
    snapshot: &Snapshot,
    previous: &PreviousState,
    settings: &CheckSettings,
) -> Vec<CheckOutcome> {
    let derived = context::Derived::default();
    catalog()
        .iter()
        .map(|m| evaluate_one(m, snapshot, previous, settings, &derived).into_outcome(m.id))
        .collect()
}

fn evaluate_one<'a>(
    m: &CheckMeta,
    snapshot: &'a Snapshot,
    previous: &'a PreviousState,
    settings: &'a CheckSettings,
    derived: &'a context::Derived<'a>,
) -> Verdict {
    if settings.disabled.iter().any(|d| d.trim() == m.id) {
        return Verdict::not_evaluated(DISABLED_REASON);
    }
    // Without /me nothing in the snapshot can be trusted (CHECKS.md token_valid: every
    // other check is `error` and no finding resolves).
    let me = match &snapshot.me {
        Ok(me) => me,
        Err(e) => return health::when_me_failed(m, e),
    };
    let ctx = Ctx {
        snap: snapshot,
        prev: previous,
        settings,
        me,
        derived,
    };
    if m.source == Source::Manual {
        return manual::attested(&ctx, m);
    }
    match check_fn(m.id) {
        Some(f) => f(&ctx, m),
        None => Verdict::error(format!("no evaluator for check {}", m.id)),
    }
}

fn check_fn(id: &str) -> Option<CheckFn> {
    Some(match id {
        "token_valid" => health::token_valid,
        "api_reachable" => health::api_reachable,
        "region_matches" => health::region_matches,
        "activity_log_access" => health::activity_log_access,
        "token_least_privilege" => health::token_least_privilege,
        "token_owner_verified" => health::token_owner_verified,
        "identity_verification_enabled" => objects::identity_verification_enabled,
        "admin_personal_email_domain" => admins::personal_email_domain,
        "admin_external_domain" => admins::external_domain,
        "admin_disposable_email" => admins::disposable_email,
        "admin_lookalike_domain" => admins::lookalike_domain,
        "admin_shared_account" => admins::shared_account,
        "admin_without_role" => objects::without_role,
        "admin_long_away" => objects::long_away,
        "admin_new" => objects::new_admin,
        "inbox_seat_inactive" => inactivity::inbox_seat_inactive,
        "admin_dormant" => inactivity::dormant,
        "password_login_used" => activity::logins::password_login_used,
        "failed_login_burst" => activity::logins::failed_login_burst,
        "admin_2fa_disabled" => activity::two_factor::admin_2fa_disabled,
        "auth_method_changed" => activity::events::auth_method_changed,
        "unauthorized_sign_in_method" => activity::events::unauthorized_sign_in_method,
        "privilege_changed" => activity::events::privilege_changed,
        "identity_verification_changed" => activity::events::identity_verification_changed,
        "security_settings_changed" => activity::events::security_settings_changed,
        "data_exported" => activity::events::data_exported,
        "data_deleted" => activity::events::data_deleted,
        "integration_changed" => activity::events::integration_changed,
        "impersonation" => activity::impersonation::impersonation,
        "external_invite" => activity::invites::external_invite,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::testutil::*;
    use super::*;
    use crate::intercom::IntercomError;

    #[test]
    fn one_outcome_per_catalog_entry_in_order() {
        let outcomes = evaluate(&snapshot(), &previous(), &CheckSettings::default());
        let ids: Vec<&str> = outcomes.iter().map(|o| o.check_id).collect();
        let expected: Vec<&str> = catalog().iter().map(|m| m.id).collect();
        assert_eq!(ids, expected);
    }

    #[test]
    fn every_api_check_has_an_evaluator() {
        for m in catalog().iter().filter(|m| m.source != Source::Manual) {
            assert!(check_fn(m.id).is_some(), "{} has no evaluator", m.id);
        }
    }

    #[test]
    fn a_clean_workspace_passes_every_api_check() {
        let outcomes = evaluate(&snapshot(), &previous(), &CheckSettings::default());
        for o in &outcomes {
            let m = meta(o.check_id).unwrap();
            if m.source == Source::Manual {
                assert_eq!(o.status, CheckStatus::NotEvaluated, "{}", o.check_id);
            } else {
                assert_eq!(
                    o.status,
                    CheckStatus::Pass,
                    "{}: {:?}",
                    o.check_id,
                    o.reason
                );
            }
            assert!(o.findings.is_empty());
        }
    }

    #[test]
    fn disabled_checks_are_not_evaluated() {
        let settings = CheckSettings {
            disabled: vec!["admin_dormant".into(), "token_valid".into()],
            ..Default::default()
        };
        let outcomes = evaluate(&snapshot(), &previous(), &settings);
        for o in outcomes {
            if o.check_id == "admin_dormant" || o.check_id == "token_valid" {
                assert_eq!(o.status, CheckStatus::NotEvaluated);
                assert_eq!(o.reason.as_deref(), Some(DISABLED_REASON));
            } else {
                assert_ne!(o.reason.as_deref(), Some(DISABLED_REASON));
            }
        }
    }

    #[test]
    fn findings_only_on_failures_and_unknown_event_types_are_ignored() {
        let mut snap = snapshot();
        let mut events = vec![
            event("weird", "totally_new_event_type", "1", snap.now),
            event("x1", "bulk_export", "1", snap.now),
        ];
        events[0].metadata = serde_json::json!({"before": {"a": [1, {"b": null}]}}).into();
        push_events(&mut snap, events);
        let outcomes = evaluate(&snap, &previous(), &CheckSettings::default());
        for o in &outcomes {
            assert_eq!(
                o.status == CheckStatus::Fail,
                !o.findings.is_empty(),
                "{}",
                o.check_id
            );
        }
        let failed: Vec<&str> = outcomes
            .iter()
            .filter(|o| o.status == CheckStatus::Fail)
            .map(|o| o.check_id)
            .collect();
        assert_eq!(failed, ["data_exported"]);
    }

    /// The Intercom fixtures end to end: a first scan one day after the last event.
    #[test]
    fn fixtures_evaluate_to_stable_unique_findings() {
        use crate::intercom::models::{ActivityLogPage, AdminList, Me};
        let read = |name: &str| {
            let path = format!(
                "{}/tests/fixtures/intercom/{name}",
                env!("CARGO_MANIFEST_DIR")
            );
            std::fs::read_to_string(path).unwrap()
        };
        let me: Me = serde_json::from_str(&read("me.json")).unwrap();
        let admins: AdminList = serde_json::from_str(&read("admins_list.json")).unwrap();
        let mut events = Vec::new();
        for page in ["activity_logs_page1.json", "activity_logs_page2.json"] {
            let page: ActivityLogPage = serde_json::from_str(&read(page)).unwrap();
            events.extend(
                page.activity_logs
                    .iter()
                    .filter_map(ActivityEvent::from_log),
            );
        }
        let now = chrono::DateTime::from_timestamp(1_734_537_900 + 86_400, 0).unwrap();
        let snap = Snapshot {
            now,
            me: Ok(me),
            admins: Ok(admins.into_admins()),
            activity: ActivityData::Available {
                events,
                covered_from: now - chrono::Duration::days(90),
            },
            ..snapshot()
        };
        let outcomes = evaluate(&snap, &PreviousState::default(), &CheckSettings::default());
        let again = evaluate(&snap, &PreviousState::default(), &CheckSettings::default());
        assert_eq!(outcomes, again, "evaluation is deterministic");
        for o in &outcomes {
            let mut seen = std::collections::HashSet::new();
            for f in &o.findings {
                assert!(
                    seen.insert(&f.resource),
                    "{}: duplicate {}",
                    o.check_id,
                    f.resource
                );
            }
        }
        let get = |id: &str| outcomes.iter().find(|o| o.check_id == id).unwrap();
        let expect: &[(&str, &[&str])] = &[
            ("token_owner_verified", &["admin:991267459"]),
            ("identity_verification_enabled", &["workspace"]),
            // email.com (the spec examples' domain) is a consumer provider in the dataset.
            (
                "admin_personal_email_domain",
                &[
                    "admin:991267466",
                    "admin:991267460",
                    "admin:991267468",
                    "admin:991267471",
                ],
            ),
            ("admin_external_domain", &["admin:991267472"]),
            ("password_login_used", &["admin:991267460"]),
            (
                "security_settings_changed",
                &["event:0b8f7a52-6f0e-4a8e-9d59-7f3f1c0e1a12"],
            ),
            (
                "impersonation",
                &["event:0b8f7a52-6f0e-4a8e-9d59-7f3f1c0e1a06"],
            ),
            (
                "admin_dormant",
                &[
                    "admin:991267466",
                    "admin:991267468",
                    "admin:991267471",
                    "admin:991267472",
                ],
            ),
        ];
        for (id, want) in expect {
            assert_eq!(resources(get(id)), *want, "{id}");
        }
        assert_eq!(get("admin_new").status, CheckStatus::NotEvaluated);
        assert_eq!(get("failed_login_burst").status, CheckStatus::Pass);
    }

    #[test]
    fn unauthorized_me_fails_token_valid_and_errors_everything_else() {
        let mut snap = snapshot();
        let err = IntercomError::Unauthorized {
            endpoint: "/me".into(),
            code: "unauthorized".into(),
        };
        snap.me = Err(err.clone());
        snap.admins = Err(err);
        snap.activity = ActivityData::NotFetched;
        let outcomes = evaluate(&snap, &previous(), &CheckSettings::default());
        for o in outcomes {
            if o.check_id == "token_valid" {
                assert_eq!(o.status, CheckStatus::Fail);
                assert_eq!(o.findings.len(), 1);
                assert_eq!(o.findings[0].resource, "workspace");
                assert_eq!(o.findings[0].severity, Severity::High);
            } else {
                assert_eq!(o.status, CheckStatus::Error, "{}", o.check_id);
                assert_eq!(o.reason.as_deref(), Some("token rejected"));
            }
        }
    }

    #[test]
    fn ip_allowlist_fails_api_reachable_only() {
        let mut snap = snapshot();
        let err = IntercomError::IpNotAllowed {
            endpoint: "/me".into(),
        };
        snap.me = Err(err.clone());
        snap.admins = Err(err);
        let outcomes = evaluate(&snap, &previous(), &CheckSettings::default());
        let status = |id: &str| outcomes.iter().find(|o| o.check_id == id).unwrap().status;
        assert_eq!(status("api_reachable"), CheckStatus::Fail);
        assert_eq!(status("token_valid"), CheckStatus::Error);
        assert_eq!(status("admin_dormant"), CheckStatus::Error);
        let fails = outcomes
            .iter()
            .filter(|o| o.status == CheckStatus::Fail)
            .count();
        assert_eq!(fails, 1);
    }

    #[test]
    fn rate_limiting_is_never_a_failure() {
        let mut snap = snapshot();
        let err = IntercomError::RateLimited {
            endpoint: "/me".into(),
            reset: std::time::Duration::from_secs(5),
        };
        snap.me = Err(err.clone());
        snap.admins = Err(err);
        for o in evaluate(&snap, &previous(), &CheckSettings::default()) {
            assert_eq!(o.status, CheckStatus::Error, "{}", o.check_id);
            assert_eq!(o.reason.as_deref(), Some("rate limited"));
        }
    }

    #[test]
    fn refused_activity_makes_activity_checks_not_evaluated() {
        let mut snap = snapshot();
        snap.activity = ActivityData::Refused(not_permitted("/admins/activity_logs"));
        for o in evaluate(&snap, &previous(), &CheckSettings::default()) {
            let m = meta(o.check_id).unwrap();
            if m.needs_activity() {
                assert_eq!(o.status, CheckStatus::NotEvaluated, "{}", o.check_id);
                assert_eq!(
                    o.reason.as_deref(),
                    Some(activity::SCOPE_REASON),
                    "{}",
                    o.check_id
                );
            }
        }
        assert_eq!(
            activity::SCOPE_REASON,
            "token may not read activity logs (grant \"Read admin activity logs\")"
        );
    }

    #[test]
    fn failed_activity_makes_activity_checks_error() {
        let mut snap = snapshot();
        snap.activity = ActivityData::Failed(IntercomError::Transient {
            endpoint: "/admins/activity_logs".into(),
            reason: "HTTP 503".into(),
        });
        for o in evaluate(&snap, &previous(), &CheckSettings::default()) {
            if meta(o.check_id).unwrap().needs_activity() {
                assert_eq!(o.status, CheckStatus::Error, "{}", o.check_id);
            }
        }
    }
}
