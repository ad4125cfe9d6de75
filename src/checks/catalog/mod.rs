//! Check metadata as data (CHECKS.md). The catalog's order is the order of `evaluate`'s
//! outcomes: health, objects, activity, manual.

mod activity;
mod health;
mod manual;
mod objects;

use std::sync::LazyLock;

use serde::ser::{SerializeMap, Serializer};
use serde::Serialize;

use super::types::{Category, Severity, Source};

/// Framework name -> control ids. The ids are proposals mapped from CHECKS.md's intro;
/// verify them against the official texts before quoting them in an audit.
pub type Compliance = &'static [(&'static str, &'static [&'static str])];

pub const CIS_V8: &str = "CIS v8";
pub const SOC2: &str = "SOC 2";
pub const ISO_27001: &str = "ISO/IEC 27001:2022";
pub const NIST_800_53: &str = "NIST SP 800-53 r5";

#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct CheckMeta {
    /// Stable, snake_case, never reused.
    pub id: &'static str,
    pub title: &'static str,
    pub severity: Severity,
    pub category: Category,
    pub source: Source,
    pub description: &'static str,
    pub risk: &'static str,
    /// What to click in Intercom.
    pub remediation: &'static str,
    #[serde(serialize_with = "compliance_as_map")]
    pub compliance: Compliance,
}

impl CheckMeta {
    /// Checks that read `/admins/activity_logs` (all `A` checks, plus `inbox_seat_inactive`,
    /// an `O` check that needs activity to tell an idle seat).
    pub fn needs_activity(&self) -> bool {
        self.source == Source::Activity || self.id == "inbox_seat_inactive"
    }
}

fn compliance_as_map<S: Serializer>(c: &Compliance, s: S) -> Result<S::Ok, S::Error> {
    let mut map = s.serialize_map(Some(c.len()))?;
    for (framework, controls) in c.iter() {
        map.serialize_entry(framework, controls)?;
    }
    map.end()
}

static CATALOG: LazyLock<Vec<CheckMeta>> = LazyLock::new(|| {
    [
        health::CHECKS,
        objects::CHECKS,
        activity::CHECKS,
        manual::CHECKS,
    ]
    .concat()
});

/// Every check, in evaluation order.
pub fn catalog() -> &'static [CheckMeta] {
    &CATALOG
}

pub fn meta(id: &str) -> Option<&'static CheckMeta> {
    catalog().iter().find(|m| m.id == id)
}

/// Ids of the activity-dependent checks, for evidence that says what a missing scope costs.
pub(crate) fn activity_dependent_ids() -> Vec<&'static str> {
    catalog()
        .iter()
        .filter(|m| m.needs_activity())
        .map(|m| m.id)
        .collect()
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    /// Every id in the CHECKS.md tables (H, O, A), copied verbatim.
    pub(crate) const CHECKS_MD_IDS: &[&str] = &[
        "token_valid",
        "api_reachable",
        "region_matches",
        "activity_log_access",
        "token_least_privilege",
        "token_owner_verified",
        "identity_verification_enabled",
        "admin_personal_email_domain",
        "admin_external_domain",
        "admin_disposable_email",
        "admin_lookalike_domain",
        "admin_shared_account",
        "admin_without_role",
        "admin_long_away",
        "admin_new",
        "inbox_seat_inactive",
        "admin_dormant",
        "password_login_used",
        "failed_login_burst",
        "admin_2fa_disabled",
        "auth_method_changed",
        "unauthorized_sign_in_method",
        "privilege_changed",
        "identity_verification_changed",
        "security_settings_changed",
        "data_exported",
        "data_deleted",
        "integration_changed",
        "impersonation",
        "external_invite",
    ];

    #[test]
    fn every_checks_md_id_is_catalogued_and_nothing_else_but_manual() {
        let ids: Vec<&str> = catalog().iter().map(|m| m.id).collect();
        for id in CHECKS_MD_IDS {
            assert!(ids.contains(id), "{id} missing from the catalog");
        }
        for m in catalog() {
            assert!(
                CHECKS_MD_IDS.contains(&m.id) || m.source == Source::Manual,
                "{} is neither in CHECKS.md nor manual",
                m.id
            );
        }
        let manual: Vec<&str> = catalog()
            .iter()
            .filter(|m| m.source == Source::Manual)
            .map(|m| m.id)
            .collect();
        assert_eq!(
            manual,
            [
                "manual_2fa_enforced",
                "manual_sso_required",
                "manual_session_length",
                "manual_ip_allowlists",
                "manual_roles_reviewed"
            ]
        );
    }

    #[test]
    fn ids_are_unique_snake_case_and_metadata_complete() {
        let mut seen = HashSet::new();
        for m in catalog() {
            assert!(seen.insert(m.id), "duplicate id {}", m.id);
            assert!(
                m.id.chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'),
                "{} is not snake_case",
                m.id
            );
            for (field, text) in [
                ("title", m.title),
                ("description", m.description),
                ("risk", m.risk),
                ("remediation", m.remediation),
            ] {
                assert!(text.len() >= 10, "{}: {field} too short", m.id);
            }
            let frameworks: Vec<&str> = m.compliance.iter().map(|(f, _)| *f).collect();
            assert_eq!(
                frameworks,
                [CIS_V8, SOC2, ISO_27001, NIST_800_53],
                "{}: compliance frameworks",
                m.id
            );
            assert!(m.compliance.iter().all(|(_, c)| !c.is_empty()), "{}", m.id);
        }
    }

    #[test]
    fn severities_and_sources_follow_checks_md() {
        let expect = [
            ("token_valid", Severity::High, Source::Health),
            ("region_matches", Severity::Low, Source::Health),
            ("activity_log_access", Severity::Info, Source::Health),
            ("admin_disposable_email", Severity::High, Source::Object),
            ("admin_lookalike_domain", Severity::High, Source::Object),
            (
                "identity_verification_enabled",
                Severity::High,
                Source::Object,
            ),
            ("admin_new", Severity::Info, Source::Object),
            ("inbox_seat_inactive", Severity::Low, Source::Object),
            ("admin_dormant", Severity::Medium, Source::Activity),
            ("failed_login_burst", Severity::High, Source::Activity),
            ("data_deleted", Severity::High, Source::Activity),
            ("impersonation", Severity::Medium, Source::Activity),
        ];
        for (id, sev, src) in expect {
            let m = meta(id).unwrap();
            assert_eq!((m.severity, m.source), (sev, src), "{id}");
        }
        assert!(meta("nope").is_none());
    }

    #[test]
    fn catalog_order_groups_sources() {
        let order: Vec<Source> = catalog().iter().map(|m| m.source).collect();
        let mut sorted = order.clone();
        sorted.sort_by_key(|s| match s {
            Source::Health => 0,
            Source::Object => 1,
            Source::Activity => 2,
            Source::Manual => 3,
        });
        assert_eq!(order, sorted);
    }

    #[test]
    fn serializes_compliance_as_a_map() {
        let v = serde_json::to_value(meta("admin_dormant").unwrap()).unwrap();
        assert_eq!(v["severity"], "medium");
        assert_eq!(v["source"], "activity");
        assert!(v["compliance"][CIS_V8].is_array());
    }

    #[test]
    fn activity_dependents_include_inbox_seat_inactive() {
        let ids = activity_dependent_ids();
        assert!(ids.contains(&"inbox_seat_inactive"));
        assert!(ids.contains(&"admin_dormant"));
        assert!(!ids.contains(&"admin_new"));
    }
}
