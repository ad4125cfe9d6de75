//! A: events from GET /admins/activity_logs ("Read admin activity logs").

use super::{CheckMeta, CIS_V8, ISO_27001, NIST_800_53, SOC2};
use crate::checks::types::{
    Category::{Authentication, Data, Identity, Integration, Workspace},
    Severity::*,
    Source::Activity,
};

pub(super) const CHECKS: &[CheckMeta] = &[
    CheckMeta {
        id: "admin_dormant",
        title: "No dormant teammate accounts",
        severity: Medium,
        category: Identity,
        source: Activity,
        description: "One finding per teammate with no admin_login_success and no other event \
                      performed by them for checks.dormant_days (default 30). Not evaluated \
                      until the fetched activity history covers that period.",
        risk: "Dormant accounts keep their permissions while nobody notices their use; they are \
               the classic foothold after a credential leak and often belong to people who left.",
        remediation: "In Intercom open Settings > Workspace > Teammates, confirm with the \
                      listed teammate's manager whether they still need access; if not, select \
                      them and choose \"Remove from workspace\".",
        compliance: &[
            (CIS_V8, &["5.3"]),
            (SOC2, &["CC6.2", "CC6.3"]),
            (ISO_27001, &["A.5.18"]),
            (NIST_800_53, &["AC-2(3)"]),
        ],
    },
    CheckMeta {
        id: "password_login_used",
        title: "Teammates do not sign in with email and password",
        severity: Medium,
        category: Authentication,
        source: Activity,
        description: "One finding per teammate with an admin_login_success whose \
                      metadata.sign_in_method is email_password within checks.event_window_days: \
                      email/password login is still allowed.",
        risk: "Passwords can be phished, reused and sprayed; unlike SSO they bypass the \
               organisation's identity provider, its MFA and its offboarding.",
        remediation: "In Intercom open Settings > Workspace > Security > Authentication methods, \
                      turn on \"Require Google sign in\" or \"Require SAML SSO\", and turn off \
                      email/password sign-in once every teammate can use SSO.",
        compliance: &[
            (CIS_V8, &["6.3", "6.7"]),
            (SOC2, &["CC6.1"]),
            (ISO_27001, &["A.5.17", "A.8.5"]),
            (NIST_800_53, &["IA-2", "IA-5"]),
        ],
    },
    CheckMeta {
        id: "failed_login_burst",
        title: "No bursts of failed teammate logins",
        severity: High,
        category: Authentication,
        source: Activity,
        description: "One finding per burst of at least checks.failed_login_threshold (default \
                      5) admin_login_failure events within checks.failed_login_window_minutes \
                      (default 30) for the same teammate or the same IP address; critical when \
                      a successful login from one of the burst's IPs follows within \
                      checks.failed_login_success_window_minutes (default 60).",
        risk: "Repeated failures are password guessing or credential stuffing; a success right \
               after them suggests the attacker got in.",
        remediation: "In Intercom open Settings > Workspace > Teammates > Activity logs, filter \
                      on the teammate and IP in the evidence. If a login followed the failures, \
                      reset the teammate's password, sign them out of all sessions, check their \
                      2FA, and review what the session did. Require SSO and 2FA under Settings > \
                      Workspace > Security > Authentication methods.",
        compliance: &[
            (CIS_V8, &["8.11", "13.1"]),
            (SOC2, &["CC7.2", "CC7.3"]),
            (ISO_27001, &["A.8.5", "A.8.16"]),
            (NIST_800_53, &["AC-7", "SI-4"]),
        ],
    },
    CheckMeta {
        id: "admin_2fa_disabled",
        title: "No teammate turned two-factor authentication off",
        severity: High,
        category: Authentication,
        source: Activity,
        description: "One finding per admin_two_factor_auth_change event that turns 2FA off \
                      (metadata before/after, or enabled: false); medium \"review\" when the \
                      direction cannot be read from the event.",
        risk: "An account without 2FA falls to a single phished or reused password; turning it \
               off is also a common step after an account takeover.",
        remediation: "Ask the teammate to turn two-factor authentication back on in their \
                      Intercom profile (Personal settings > Security), and enforce it for \
                      everyone: Settings > Workspace > Security > Authentication methods > \
                      \"Require two-factor authentication\".",
        compliance: &[
            (CIS_V8, &["6.3", "6.5"]),
            (SOC2, &["CC6.1", "CC7.2"]),
            (ISO_27001, &["A.8.5"]),
            (NIST_800_53, &["IA-2(1)", "IA-2(2)"]),
        ],
    },
    CheckMeta {
        id: "auth_method_changed",
        title: "Workspace authentication methods changed",
        severity: High,
        category: Authentication,
        source: Activity,
        description: "One finding per app_authentication_method_change or \
                      app_google_sso_domain_change event within checks.event_window_days.",
        risk: "Relaxing sign-in requirements (turning off SSO or 2FA enforcement, re-enabling \
               passwords, changing the Google SSO domain) weakens every account at once.",
        remediation: "In Intercom open Settings > Workspace > Security > Authentication methods \
                      and confirm the current settings are intended (2FA required, SSO required, \
                      email/password off); ask the teammate in the evidence why they changed \
                      them, then acknowledge or mute the finding.",
        compliance: &[
            (CIS_V8, &["4.1", "6.7"]),
            (SOC2, &["CC7.1", "CC8.1"]),
            (ISO_27001, &["A.8.5", "A.8.32"]),
            (NIST_800_53, &["CM-3", "IA-2"]),
        ],
    },
    CheckMeta {
        id: "unauthorized_sign_in_method",
        title: "No sign-in attempts with a disallowed method",
        severity: Medium,
        category: Authentication,
        source: Activity,
        description: "One finding per admin_unauthorized_sign_in_method event within \
                      checks.event_window_days.",
        risk: "Someone tried to sign in with a method the workspace forbids (for example a \
               password where SSO is required): a misconfigured client or an attacker holding \
               a password.",
        remediation: "In Intercom open Settings > Workspace > Teammates > Activity logs and ask \
                      the teammate in the evidence whether the attempt was theirs; if not, reset \
                      their password and review their sessions.",
        compliance: &[
            (CIS_V8, &["8.11"]),
            (SOC2, &["CC7.2"]),
            (ISO_27001, &["A.8.5", "A.8.16"]),
            (NIST_800_53, &["AC-7", "SI-4"]),
        ],
    },
    CheckMeta {
        id: "privilege_changed",
        title: "Teammate permissions or roles changed",
        severity: Medium,
        category: Identity,
        source: Activity,
        description: "One finding per admin_permission_change, role_change, role_creation or \
                      role_deletion event within checks.event_window_days.",
        risk: "Privilege changes outside the access-request process grant access nobody \
               approved, and are a typical persistence step after a compromise.",
        remediation: "In Intercom open Settings > Workspace > Teammates (and the Roles tab), \
                      confirm the change in the evidence was approved; revert it with \"Edit \
                      permissions\" if not.",
        compliance: &[
            (CIS_V8, &["6.1", "6.8"]),
            (SOC2, &["CC6.2", "CC6.3"]),
            (ISO_27001, &["A.5.18", "A.8.2"]),
            (NIST_800_53, &["AC-2", "AC-6(9)"]),
        ],
    },
    CheckMeta {
        id: "identity_verification_changed",
        title: "Messenger identity verification settings changed",
        severity: High,
        category: Workspace,
        source: Activity,
        description: "One finding per app_identity_verification_change event within \
                      checks.event_window_days.",
        risk: "Turning identity verification off lets anyone impersonate Messenger users and \
               read their conversations.",
        remediation: "In Intercom open Settings > Workspace > Security (Messenger tab) and \
                      confirm \"Enforce identity verification\" is on for every platform; ask \
                      the teammate in the evidence why it changed.",
        compliance: &[
            (CIS_V8, &["4.1"]),
            (SOC2, &["CC7.1", "CC8.1"]),
            (ISO_27001, &["A.8.9", "A.8.32"]),
            (NIST_800_53, &["CM-3", "CM-6"]),
        ],
    },
    CheckMeta {
        id: "security_settings_changed",
        title: "Workspace security settings changed",
        severity: Medium,
        category: Workspace,
        source: Activity,
        description: "One finding per security_settings_change, trusted_domains_setting_change, \
                      malicious_domains_setting_change or strip_inbound_email_links_change event \
                      within checks.event_window_days.",
        risk: "Session length, IP allowlists, Messenger trusted domains and email link handling \
               protect against account and Messenger abuse; an unreviewed change can silently \
               remove them.",
        remediation: "In Intercom open Settings > Workspace > Security and Settings > Channels > \
                      Messenger > Security, confirm the current values are intended, and ask the \
                      teammate in the evidence why they changed them.",
        compliance: &[
            (CIS_V8, &["4.1"]),
            (SOC2, &["CC7.1", "CC8.1"]),
            (ISO_27001, &["A.8.9", "A.8.32"]),
            (NIST_800_53, &["CM-3", "CM-6"]),
        ],
    },
    CheckMeta {
        id: "data_exported",
        title: "Workspace data exports",
        severity: High,
        category: Data,
        source: Activity,
        description: "One finding per app_data_export, bulk_export, conversation_pdf_export or \
                      macro_usage_export event within checks.event_window_days.",
        risk: "Exports move customer personal data out of Intercom's access controls; an \
               unexpected export is a possible data breach.",
        remediation: "Confirm with the teammate in the evidence that the export was needed and \
                      where the file is stored; restrict who may export in Settings > Workspace \
                      > Teammates > \"Edit permissions\" (export permissions).",
        compliance: &[
            (CIS_V8, &["3.3", "3.14"]),
            (SOC2, &["CC6.7", "C1.1"]),
            (ISO_27001, &["A.8.12", "A.5.14"]),
            (NIST_800_53, &["AC-4", "AU-12"]),
        ],
    },
    CheckMeta {
        id: "data_deleted",
        title: "Workspace data deletions",
        severity: High,
        category: Data,
        source: Activity,
        description: "One finding per app_data_deletion, bulk_delete, message_deletion or \
                      conversation_part_deletion event within checks.event_window_days; \
                      workspace_deletion_request is critical.",
        risk: "Deletions destroy records that support, legal holds and audits rely on; a \
               workspace deletion request would remove everything.",
        remediation: "Confirm with the teammate in the evidence that the deletion was intended. \
                      For a workspace deletion request you did not plan, contact Intercom \
                      support immediately to cancel it. Restrict deletion rights in Settings > \
                      Workspace > Teammates > \"Edit permissions\".",
        compliance: &[
            (CIS_V8, &["3.4", "3.5"]),
            (SOC2, &["C1.2", "A1.2"]),
            (ISO_27001, &["A.8.10", "A.8.13"]),
            (NIST_800_53, &["SI-12", "AU-12"]),
        ],
    },
    CheckMeta {
        id: "integration_changed",
        title: "Integrations, webhooks or API credentials changed",
        severity: Medium,
        category: Integration,
        source: Activity,
        description: "One finding per app_package_installation, app_package_token_regeneration, \
                      app_webhook_creation, messenger_api_secret_creation, \
                      custom_authentication_token_creation or oauth_token_revocation event \
                      within checks.event_window_days.",
        risk: "New apps, webhooks and tokens can read or stream workspace data to third \
               parties; a malicious install is a quiet exfiltration channel.",
        remediation: "In Intercom open Settings > Integrations > App Store (installed apps) and \
                      Settings > Integrations > Developer Hub, confirm each app, webhook and \
                      token in the evidence is approved; uninstall or revoke the rest.",
        compliance: &[
            (CIS_V8, &["2.1", "15.1"]),
            (SOC2, &["CC8.1", "CC9.2"]),
            (ISO_27001, &["A.5.19", "A.5.23", "A.8.32"]),
            (NIST_800_53, &["CM-3", "SA-9"]),
        ],
    },
    CheckMeta {
        id: "impersonation",
        title: "Support impersonation of teammates",
        severity: Medium,
        category: Identity,
        source: Activity,
        description: "One finding per admin_impersonation_start or \
                      admin_impersonation_consent_approved event within checks.event_window_days; \
                      high when a start has no admin_impersonation_end within \
                      checks.impersonation_max_hours (default 8).",
        risk: "Impersonation gives Intercom staff a teammate's full access; long or unexpected \
               sessions widen third-party access to customer data.",
        remediation: "Confirm the support case behind the session; revoke open consents in \
                      Settings > Workspace > Security (support access / impersonation consent) \
                      and only grant consent for the duration of a ticket.",
        compliance: &[
            (CIS_V8, &["6.1", "8.11"]),
            (SOC2, &["CC6.2", "CC9.2"]),
            (ISO_27001, &["A.5.19", "A.8.2"]),
            (NIST_800_53, &["AC-2", "AC-20"]),
        ],
    },
    CheckMeta {
        id: "external_invite",
        title: "No invitations to personal or outside email domains",
        severity: Medium,
        category: Identity,
        source: Activity,
        description: "One finding per admin_invite_creation event within \
                      checks.event_window_days whose invitee email (metadata or description) has \
                      a personal domain or one outside the instance's allowed domains.",
        risk: "Invitations to personal or outside addresses bring accounts into the workspace \
               that the organisation's identity provider and offboarding do not cover.",
        remediation: "In Intercom open Settings > Workspace > Teammates > Pending invites and \
                      delete the invitation if it was not approved; otherwise invite the \
                      person's company address instead.",
        compliance: &[
            (CIS_V8, &["5.1", "6.1"]),
            (SOC2, &["CC6.2"]),
            (ISO_27001, &["A.5.16", "A.5.18"]),
            (NIST_800_53, &["AC-2", "PS-7"]),
        ],
    },
];
