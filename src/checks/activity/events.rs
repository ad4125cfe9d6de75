//! A checks that report every matching event in the window: one finding per event,
//! resource `event:<id>`.

use super::super::catalog::CheckMeta;
use super::super::context::Ctx;
use super::super::types::{Severity, Verdict};
use super::{actor, available, coverage_note, event_finding, recent_of, when};

/// (activity type, what happened), for titles.
type Labelled = &'static [(&'static str, &'static str)];

const AUTH_METHOD: Labelled = &[
    (
        "app_authentication_method_change",
        "Workspace authentication methods changed",
    ),
    ("app_google_sso_domain_change", "Google SSO domain changed"),
];
const UNAUTHORIZED_SIGN_IN: Labelled = &[(
    "admin_unauthorized_sign_in_method",
    "Sign-in attempted with a disallowed method",
)];
const PRIVILEGE: Labelled = &[
    ("admin_permission_change", "Teammate permissions changed"),
    ("role_change", "Role changed"),
    ("role_creation", "Role created"),
    ("role_deletion", "Role deleted"),
];
const IDENTITY_VERIFICATION: Labelled = &[(
    "app_identity_verification_change",
    "Messenger identity verification setting changed",
)];
const SECURITY_SETTINGS: Labelled = &[
    (
        "security_settings_change",
        "Workspace security settings changed",
    ),
    (
        "trusted_domains_setting_change",
        "Messenger trusted domains changed",
    ),
    (
        "malicious_domains_setting_change",
        "Malicious domains setting changed",
    ),
    (
        "strip_inbound_email_links_change",
        "Inbound email link stripping changed",
    ),
];
const EXPORTS: Labelled = &[
    ("app_data_export", "Workspace data exported"),
    ("bulk_export", "User or lead data bulk-exported"),
    ("conversation_pdf_export", "Conversation exported as PDF"),
    ("macro_usage_export", "Macro usage exported"),
];
const DELETIONS: Labelled = &[
    ("app_data_deletion", "User or lead deleted"),
    ("bulk_delete", "User or lead data bulk-deleted"),
    ("message_deletion", "Message deleted"),
    ("conversation_part_deletion", "Conversation part deleted"),
    ("workspace_deletion_request", "Workspace deletion requested"),
];
const INTEGRATIONS: Labelled = &[
    ("app_package_installation", "App installed"),
    (
        "app_package_token_regeneration",
        "App access token regenerated",
    ),
    ("app_webhook_creation", "Webhook created"),
    (
        "messenger_api_secret_creation",
        "Messenger API secret created",
    ),
    (
        "custom_authentication_token_creation",
        "Custom authentication token created",
    ),
    ("oauth_token_revocation", "OAuth token revoked"),
];

/// One finding per event of `types` in the window; `severity` may raise one event.
fn per_event(ctx: &Ctx<'_>, types: Labelled, severity: impl Fn(&str) -> Severity) -> Verdict {
    let (events, covered_from) = match available(ctx) {
        Ok(a) => a,
        Err(v) => return v,
    };
    let names: Vec<&str> = types.iter().map(|(t, _)| *t).collect();
    let findings = recent_of(ctx, events, &names)
        .into_iter()
        .map(|ev| {
            let label = types
                .iter()
                .find(|(t, _)| *t == ev.activity_type)
                .map_or("Event", |(_, l)| *l);
            let title = format!("{label} by {} ({})", actor(ev), when(ev.created_at));
            event_finding(ev, severity(&ev.activity_type), title)
        })
        .collect();
    Verdict::from_findings(findings, coverage_note(ctx, covered_from))
}

pub(in crate::checks) fn auth_method_changed(ctx: &Ctx<'_>, m: &CheckMeta) -> Verdict {
    per_event(ctx, AUTH_METHOD, |_| m.severity)
}

pub(in crate::checks) fn unauthorized_sign_in_method(ctx: &Ctx<'_>, m: &CheckMeta) -> Verdict {
    per_event(ctx, UNAUTHORIZED_SIGN_IN, |_| m.severity)
}

pub(in crate::checks) fn privilege_changed(ctx: &Ctx<'_>, m: &CheckMeta) -> Verdict {
    per_event(ctx, PRIVILEGE, |_| m.severity)
}

pub(in crate::checks) fn identity_verification_changed(ctx: &Ctx<'_>, m: &CheckMeta) -> Verdict {
    per_event(ctx, IDENTITY_VERIFICATION, |_| m.severity)
}

pub(in crate::checks) fn security_settings_changed(ctx: &Ctx<'_>, m: &CheckMeta) -> Verdict {
    per_event(ctx, SECURITY_SETTINGS, |_| m.severity)
}

pub(in crate::checks) fn data_exported(ctx: &Ctx<'_>, m: &CheckMeta) -> Verdict {
    per_event(ctx, EXPORTS, |_| m.severity)
}

pub(in crate::checks) fn data_deleted(ctx: &Ctx<'_>, m: &CheckMeta) -> Verdict {
    per_event(ctx, DELETIONS, |t| {
        if t == "workspace_deletion_request" {
            Severity::Critical
        } else {
            m.severity
        }
    })
}

pub(in crate::checks) fn integration_changed(ctx: &Ctx<'_>, m: &CheckMeta) -> Verdict {
    per_event(ctx, INTEGRATIONS, |_| m.severity)
}

#[cfg(test)]
mod tests {
    use chrono::Duration;

    use super::super::super::testutil::*;
    use super::super::super::types::{CheckStatus, Severity};
    use super::*;

    fn with(types: &[&str]) -> super::super::super::Snapshot {
        let mut snap = snapshot();
        let at = snap.now - Duration::hours(1);
        let events = types
            .iter()
            .enumerate()
            .map(|(i, t)| {
                let mut ev = event(&format!("e{i}"), t, "2", at + Duration::seconds(i as i64));
                ev.performed_by_email = Some("bo@acme.com".into());
                ev
            })
            .collect();
        set_events(&mut snap, events);
        snap
    }

    #[test]
    fn each_check_matches_exactly_its_types() {
        let table: &[(&str, Labelled, Severity)] = &[
            ("auth_method_changed", AUTH_METHOD, Severity::High),
            (
                "unauthorized_sign_in_method",
                UNAUTHORIZED_SIGN_IN,
                Severity::Medium,
            ),
            ("privilege_changed", PRIVILEGE, Severity::Medium),
            (
                "identity_verification_changed",
                IDENTITY_VERIFICATION,
                Severity::High,
            ),
            (
                "security_settings_changed",
                SECURITY_SETTINGS,
                Severity::Medium,
            ),
            ("data_exported", EXPORTS, Severity::High),
            ("integration_changed", INTEGRATIONS, Severity::Medium),
        ];
        for (id, types, severity) in table {
            let names: Vec<&str> = types.iter().map(|(t, _)| *t).collect();
            let mut all = names.clone();
            all.push("app_name_change");
            let o = run(id, &with(&all));
            assert_eq!(o.status, CheckStatus::Fail, "{id}");
            assert_eq!(o.findings.len(), names.len(), "{id}");
            for (i, f) in o.findings.iter().enumerate() {
                assert_eq!(f.resource, format!("event:e{i}"), "{id}");
                assert_eq!(f.severity, *severity, "{id}");
                assert!(f.title.contains("by bo@acme.com"), "{}", f.title);
                assert_eq!(f.evidence.value()["activity_type"], names[i]);
            }
            assert_eq!(
                run(id, &with(&["app_name_change"])).status,
                CheckStatus::Pass
            );
        }
    }

    #[test]
    fn workspace_deletion_request_is_critical() {
        let o = run(
            "data_deleted",
            &with(&["bulk_delete", "workspace_deletion_request"]),
        );
        assert_eq!(o.status, CheckStatus::Fail);
        let sev: Vec<Severity> = o.findings.iter().map(|f| f.severity).collect();
        assert_eq!(sev, [Severity::High, Severity::Critical]);
        assert!(o.findings[1]
            .title
            .starts_with("Workspace deletion requested"));
        assert_eq!(
            run(
                "data_deleted",
                &with(&[
                    "message_deletion",
                    "conversation_part_deletion",
                    "app_data_deletion"
                ])
            )
            .findings
            .len(),
            3
        );
    }
}
