//! Manual controls: settings Intercom's API cannot show as state (API.md §6). They stay
//! `not_evaluated` until an operator records an unexpired attestation.

use super::{CheckMeta, CIS_V8, ISO_27001, NIST_800_53, SOC2};
use crate::checks::types::{
    Category::{Authentication, Identity, Workspace},
    Severity::*,
    Source::Manual,
};

pub(super) const CHECKS: &[CheckMeta] = &[
    CheckMeta {
        id: "manual_2fa_enforced",
        title: "Two-factor authentication is enforced workspace-wide",
        severity: High,
        category: Authentication,
        source: Manual,
        description: "Attested by an operator: \"Require two-factor authentication\" is on for \
                      the whole workspace. The API exposes no 2FA state.",
        risk: "Without enforced 2FA any teammate account falls to a single phished or reused \
               password.",
        remediation: "In Intercom open Settings > Workspace > Security > Authentication methods \
                      and turn on \"Require two-factor authentication\"; then record an \
                      attestation with a screenshot as evidence.",
        compliance: &[
            (CIS_V8, &["6.3", "6.5"]),
            (SOC2, &["CC6.1"]),
            (ISO_27001, &["A.8.5"]),
            (NIST_800_53, &["IA-2(1)", "IA-2(2)"]),
        ],
    },
    CheckMeta {
        id: "manual_sso_required",
        title: "SAML or Google sign-in is required and email/password is off",
        severity: High,
        category: Authentication,
        source: Manual,
        description: "Attested by an operator: \"Require SAML SSO\" or \"Require Google sign \
                      in\" is on and email/password sign-in is disabled.",
        risk: "Password logins bypass the identity provider's MFA, conditional access and \
               offboarding.",
        remediation: "In Intercom open Settings > Workspace > Security > Authentication methods, \
                      turn on \"Require SAML SSO\" (or \"Require Google sign in\") and turn off \
                      email/password; then record an attestation.",
        compliance: &[
            (CIS_V8, &["6.7", "12.5"]),
            (SOC2, &["CC6.1"]),
            (ISO_27001, &["A.5.17", "A.8.5"]),
            (NIST_800_53, &["IA-2", "IA-5", "AC-2(1)"]),
        ],
    },
    CheckMeta {
        id: "manual_session_length",
        title: "Teammate sessions expire after a set period",
        severity: Medium,
        category: Authentication,
        source: Manual,
        description: "Attested by an operator: \"Force teammates to re-authenticate after a set \
                      period of time\" is configured (the default keeps sessions alive while \
                      there is activity within 4 days).",
        risk: "Long-lived sessions on lost or shared devices keep access open long after the \
               teammate stopped working.",
        remediation: "In Intercom open Settings > Workspace > Security > Workspace access \
                      restrictions, turn on \"Force teammates to re-authenticate after a set \
                      period of time\" and choose a period (e.g. 12 hours); then record an \
                      attestation.",
        compliance: &[
            (CIS_V8, &["4.3"]),
            (SOC2, &["CC6.1"]),
            (ISO_27001, &["A.8.5"]),
            (NIST_800_53, &["AC-12", "AC-11"]),
        ],
    },
    CheckMeta {
        id: "manual_ip_allowlists",
        title: "Web app and REST API IP allowlists are configured",
        severity: Medium,
        category: Workspace,
        source: Manual,
        description: "Attested by an operator: \"Only allow access from specified IP addresses\" \
                      (web app) and the REST API IP allowlist are enabled with the \
                      organisation's egress ranges.",
        risk: "Without allowlists a stolen session or token works from anywhere on the \
               internet.",
        remediation: "In Intercom open Settings > Workspace > Security > Workspace access \
                      restrictions, enable \"Only allow access from specified IP addresses\" and \
                      the REST API IP allowlist with your office/VPN ranges (include the \
                      scanner's egress IPs); then record an attestation.",
        compliance: &[
            (CIS_V8, &["4.4", "13.4"]),
            (SOC2, &["CC6.6"]),
            (ISO_27001, &["A.8.20", "A.8.3"]),
            (NIST_800_53, &["AC-17", "SC-7"]),
        ],
    },
    CheckMeta {
        id: "manual_roles_reviewed",
        title: "Teammate roles and permissions were reviewed",
        severity: Low,
        category: Identity,
        source: Manual,
        description: "Attested by an operator: roles and per-teammate permissions were reviewed \
                      within the attestation period (default 90 days). Individual permission \
                      flags are not exposed by the API.",
        risk: "Permissions accumulate; without periodic review people keep access to \
               settings, exports and apps they no longer need.",
        remediation: "In Intercom open Settings > Workspace > Teammates and the Roles tab, \
                      review each role's permissions (settings, teammates, exports, apps, \
                      developer hub) and each teammate's role, fix excess access, then record \
                      an attestation with the review notes.",
        compliance: &[
            (CIS_V8, &["5.1", "6.8"]),
            (SOC2, &["CC6.2", "CC6.3"]),
            (ISO_27001, &["A.5.18", "A.8.2"]),
            (NIST_800_53, &["AC-2", "AC-6(7)"]),
        ],
    },
];
