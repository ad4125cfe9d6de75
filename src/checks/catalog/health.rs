//! H: the scanner's own connection to the workspace.

use super::{CheckMeta, CIS_V8, ISO_27001, NIST_800_53, SOC2};
use crate::checks::types::{Category::Integration, Severity::*, Source::Health};

pub(super) const CHECKS: &[CheckMeta] = &[
    CheckMeta {
        id: "token_valid",
        title: "Scanner access token is accepted",
        severity: High,
        category: Integration,
        source: Health,
        description: "GET /me with the instance's access token returns 200.",
        risk: "A revoked, expired or wrong-region token stops every check: the workspace is no \
               longer monitored and open findings can neither resolve nor be confirmed.",
        remediation:
            "In Intercom open Settings > Integrations > Developer Hub, select the app used \
                      by the scanner, go to Configure > Authentication and copy its access token \
                      (regenerate it if it was revoked), then store it with \
                      `intercom-sspm instance set-token <name> --token-stdin`. Check that the \
                      instance's region matches the host you log into (app.intercom.com = us, \
                      app.eu.intercom.com = eu, app.au.intercom.com = au).",
        compliance: &[
            (CIS_V8, &["8.2"]),
            (SOC2, &["CC7.2"]),
            (ISO_27001, &["A.8.16"]),
            (NIST_800_53, &["CA-7", "SI-4"]),
        ],
    },
    CheckMeta {
        id: "api_reachable",
        title: "Intercom REST API is reachable from the scanner",
        severity: High,
        category: Integration,
        source: Health,
        description: "The regional Intercom API answers the scanner: no REST API IP allowlist \
                      refusal (HTTP 403 \"not on the allowlist for API access\"), no persistent \
                      network or 5xx failure, and answers within the scan's time budget \
                      (intercom.scan_timeout). It fails exactly when the scan marks the instance \
                      ip_not_allowed or unreachable. Rate limiting (HTTP 429) is not a failure.",
        risk: "While the API is unreachable the workspace is not monitored; changes to teammates \
               and security settings go unnoticed.",
        remediation:
            "If the error names the IP allowlist: in Intercom open Settings > Workspace > \
                      Security, find the REST API IP allowlist and add the scanner's egress IP \
                      addresses. Otherwise check the scanner host's outbound HTTPS access to the \
                      regional API host and status.intercom.com; a used-up time budget means a \
                      host that hangs or answers very slowly.",
        compliance: &[
            (CIS_V8, &["8.2"]),
            (SOC2, &["CC7.2", "A1.1"]),
            (ISO_27001, &["A.8.16"]),
            (NIST_800_53, &["CA-7", "SI-4"]),
        ],
    },
    CheckMeta {
        id: "region_matches",
        title: "Workspace is hosted in the onboarded region",
        severity: Low,
        category: Integration,
        source: Health,
        description: "app.region from GET /me (US, EU or AU) agrees with the region the instance \
                      was onboarded with, case-insensitively.",
        risk: "A mismatch means customer data may reside in a different jurisdiction than the one \
               recorded for data-residency obligations, or the instance record is wrong.",
        remediation: "Compare the host you log into (app.intercom.com = US, app.eu.intercom.com = \
                      EU, app.au.intercom.com = AU) with the onboarded region. If the record is \
                      wrong, remove the instance and add it again with the right `--region`; if \
                      the workspace itself is in the wrong region, contact Intercom support about \
                      a data-hosting migration.",
        compliance: &[
            (CIS_V8, &["3.1"]),
            (SOC2, &["C1.1", "P4.1"]),
            (ISO_27001, &["A.5.31", "A.5.34"]),
            (NIST_800_53, &["SA-9(5)"]),
        ],
    },
    CheckMeta {
        id: "activity_log_access",
        title: "Scanner may read the admin activity log",
        severity: Info,
        category: Integration,
        source: Health,
        description: "GET /admins/activity_logs is not refused for scope (401 token_unauthorized \
                      or 403 forbidden) or for the workspace's plan (403 api_plan_restricted). \
                      Severity info (weight 0): a token limited to \"Read admins\", as Intercom \
                      advises, does not lower the posture score; the coverage figure shows the \
                      activity checks that are then not evaluated.",
        risk: "Without the activity log the scanner cannot see logins, 2FA and authentication \
               changes, exports, deletions, impersonation or integration changes: all activity \
               checks stay not evaluated.",
        remediation: "In Intercom open Settings > Integrations > Developer Hub, select the \
                      scanner's app, go to Configure > Authentication > Edit permissions and tick \
                      \"Read admin activity logs\" (keep \"Read admins\"), save, then reinstall or \
                      re-authorise the app if Intercom asks. If the error says the plan does not \
                      include activity logs, ask your Intercom account owner about the plan.",
        compliance: &[
            (CIS_V8, &["8.2", "8.5"]),
            (SOC2, &["CC7.2"]),
            (ISO_27001, &["A.8.15", "A.8.16"]),
            (NIST_800_53, &["AU-2", "AU-6", "AU-12"]),
        ],
    },
    CheckMeta {
        id: "token_least_privilege",
        title: "Scanner token holds no scope beyond what it needs",
        severity: Medium,
        category: Integration,
        source: Health,
        description: "Low-sensitivity probes (for example GET /tags, GET /ip_allowlist) are \
                      refused; any 200 means the token holds more than \"Read admins\" and \"Read \
                      admin activity logs\". Probe bodies are discarded, never stored.",
        risk: "A leaked scanner token with extra scopes exposes more of the workspace (contacts, \
               conversations, settings) than a read-only posture scanner needs.",
        remediation: "In Intercom open Settings > Integrations > Developer Hub, select the \
                      scanner's app, go to Configure > Authentication > Edit permissions and \
                      untick every permission except \"Read admins\" and \"Read admin activity \
                      logs\"; save and store the new token with `intercom-sspm instance \
                      set-token`.",
        compliance: &[
            (CIS_V8, &["5.4", "6.8"]),
            (SOC2, &["CC6.1", "CC6.3"]),
            (ISO_27001, &["A.5.15", "A.8.2"]),
            (NIST_800_53, &["AC-6"]),
        ],
    },
    CheckMeta {
        id: "token_owner_verified",
        title: "Token owner is a verified, current teammate",
        severity: Medium,
        category: Integration,
        source: Health,
        description: "The teammate the token acts for (GET /me) has a verified email \
                      (email_verified true) and still appears in GET /admins.",
        risk: "A token bound to an unverified or removed teammate is an orphaned credential: \
               nobody accountable owns it, and it may outlive the person's access.",
        remediation: "Have the token owner verify their email address in Intercom (profile \
                      settings), or create the scanner app under a current teammate: Settings > \
                      Integrations > Developer Hub > New app, grant \"Read admins\" and \"Read \
                      admin activity logs\", and store its token with `intercom-sspm instance \
                      set-token`.",
        compliance: &[
            (CIS_V8, &["5.1", "5.5"]),
            (SOC2, &["CC6.2"]),
            (ISO_27001, &["A.5.16", "A.5.18"]),
            (NIST_800_53, &["IA-4", "AC-2"]),
        ],
    },
];
