//! O: workspace and teammate fields from GET /me and GET /admins.

use super::{CheckMeta, CIS_V8, ISO_27001, NIST_800_53, SOC2};
use crate::checks::types::{
    Category::{Identity, Workspace},
    Severity::*,
    Source::Object,
};

pub(super) const CHECKS: &[CheckMeta] = &[
    CheckMeta {
        id: "identity_verification_enabled",
        title: "Messenger identity verification is enabled",
        severity: High,
        category: Workspace,
        source: Object,
        description: "app.identity_verification from GET /me is true. A missing field is an \
                      error, never a pass.",
        risk: "Without identity verification anyone can impersonate a logged-in user in the \
               Messenger by sending their user_id or email, and read that user's conversations.",
        remediation: "In Intercom open Settings > Workspace > Security (Messenger tab; older \
                      workspaces: Settings > Channels > Messenger > Security), set up identity \
                      verification for web, iOS and Android with the HMAC secret on your server, \
                      then turn on \"Enforce identity verification\".",
        compliance: &[
            (CIS_V8, &["16.10", "6.7"]),
            (SOC2, &["CC6.1"]),
            (ISO_27001, &["A.8.5", "A.8.26"]),
            (NIST_800_53, &["IA-8", "SC-23"]),
        ],
    },
    CheckMeta {
        id: "admin_personal_email_domain",
        title: "Teammates use company email addresses, not personal ones",
        severity: High,
        category: Identity,
        source: Object,
        description: "One finding per teammate whose email domain (or a parent of it) is a \
                      consumer mail domain: the vendored free-email dataset (thousands of \
                      providers: yahoo.fr, outlook.de, web.de, ...; data/README.md) plus the \
                      checks.personal_email_domains patterns (gmx.*), minus \
                      checks.personal_email_domains_ignore. Disposable providers are reported by \
                      admin_disposable_email instead.",
        risk: "Personal mailboxes sit outside company SSO, MFA policy and offboarding; password \
               resets for the Intercom account go to a mailbox the company cannot control or \
               revoke.",
        remediation: "In Intercom open Settings > Workspace > Teammates, select the teammate and \
                      either change their email to a company address (they confirm it from their \
                      profile) or remove them with \"Remove from workspace\" and invite their \
                      company address instead.",
        compliance: &[
            (CIS_V8, &["5.1", "6.7"]),
            (SOC2, &["CC6.1", "CC6.2"]),
            (ISO_27001, &["A.5.16", "A.5.17"]),
            (NIST_800_53, &["IA-2", "IA-4", "AC-2"]),
        ],
    },
    CheckMeta {
        id: "admin_external_domain",
        title: "Teammates belong to the organisation's email domains",
        severity: Medium,
        category: Identity,
        source: Object,
        description: "One finding per teammate whose email domain is not one of the instance's \
                      allowed domains or their subdomains, matched label by label (default: the \
                      registrable domain of the token owner's address per the Public Suffix \
                      List, so eu.acme.co.uk allows acme.co.uk, never co.uk). Disposable, \
                      personal and lookalike domains are reported by their own checks instead.",
        risk: "Contractors and partners with workspace access are often forgotten at the end of \
               an engagement and are not covered by the organisation's identity provider.",
        remediation: "In Intercom open Settings > Workspace > Teammates and confirm each listed \
                      teammate still needs access; remove those who do not (select > \"Remove \
                      from workspace\") and restrict the others' permissions. If the domain is \
                      legitimately yours, add it to the instance's allowed domains.",
        compliance: &[
            (CIS_V8, &["5.1", "6.1"]),
            (SOC2, &["CC6.2", "CC9.2"]),
            (ISO_27001, &["A.5.18", "A.5.19"]),
            (NIST_800_53, &["AC-2", "PS-7"]),
        ],
    },
    CheckMeta {
        id: "admin_disposable_email",
        title: "No teammate uses a disposable email address",
        severity: High,
        category: Identity,
        source: Object,
        description: "One finding per teammate whose email domain (or a parent of it) is a \
                      disposable or throwaway mailbox provider (mailinator.com, guerrillamail.com, \
                      ...: the vendored disposable-email-domains dataset, data/README.md), minus \
                      checks.personal_email_domains_ignore. Takes precedence over the personal \
                      and external checks for that teammate.",
        risk: "A throwaway mailbox is readable by anyone who knows its name and disappears \
               at will: password resets and 2FA recovery for the Intercom account go to a \
               mailbox with no owner, a typical sign of an abusive or test account.",
        remediation: "In Intercom open Settings > Workspace > Teammates, select the teammate and \
                      choose \"Remove from workspace\"; if the person needs access, invite their \
                      company address instead. Then review the activity log for what the account \
                      did.",
        compliance: &[
            (CIS_V8, &["5.1", "6.7"]),
            (SOC2, &["CC6.1", "CC6.2"]),
            (ISO_27001, &["A.5.16", "A.5.17"]),
            (NIST_800_53, &["IA-2", "IA-4", "AC-2"]),
        ],
    },
    CheckMeta {
        id: "admin_lookalike_domain",
        title: "No teammate uses a domain imitating the organisation's",
        severity: High,
        category: Identity,
        source: Object,
        description: "One finding per teammate whose registrable domain imitates an allowed \
                      domain: the allowed name embedded in another (acme.com.evil.io, \
                      acme-com.io), with a hyphen or digits added (acme-corp.com, acme2.com), \
                      another public suffix (acme.co), or at most 2 edits away after mapping \
                      look-alike characters (acrne.com; 1 edit for 4-5 letter names, look-alike \
                      characters only below that). acmeinc.org is not a lookalike (external). \
                      Evidence names the imitated domain and the rule. Takes precedence over \
                      admin_external_domain.",
        risk: "A teammate on a domain that imitates the company's is a likely impersonation or \
               phishing account: colleagues and customers trust the name, and the real \
               organisation controls neither the mailbox nor its sign-in.",
        remediation: "In Intercom open Settings > Workspace > Teammates, select the teammate and \
                      choose \"Remove from workspace\" unless the domain is verifiably yours (then \
                      add it to the instance's allowed domains). Review the activity log for what \
                      the account did and who invited it.",
        compliance: &[
            (CIS_V8, &["5.1", "9.3"]),
            (SOC2, &["CC6.1", "CC6.2"]),
            (ISO_27001, &["A.5.16", "A.8.23"]),
            (NIST_800_53, &["AC-2", "IA-4", "SI-4"]),
        ],
    },
    CheckMeta {
        id: "admin_shared_account",
        title: "No shared or generic teammate accounts",
        severity: Medium,
        category: Identity,
        source: Object,
        description: "One finding per teammate whose email local part is generic \
                      (checks.shared_account_local_parts: support, info, admin, team, ...), \
                      ignoring a +tag.",
        risk: "A shared login has no single accountable owner, its password circulates, 2FA is \
               usually disabled for convenience, and the activity log cannot tell who did what.",
        remediation: "In Intercom open Settings > Workspace > Teammates, invite each person who \
                      uses the shared login with their own address, then select the shared \
                      teammate and choose \"Remove from workspace\". Use a team inbox (Settings > \
                      Workspace > Teammates > Teams) instead of a shared login.",
        compliance: &[
            (CIS_V8, &["5.2", "5.4"]),
            (SOC2, &["CC6.1"]),
            (ISO_27001, &["A.5.16"]),
            (NIST_800_53, &["IA-2", "IA-4", "AC-2"]),
        ],
    },
    CheckMeta {
        id: "admin_without_role",
        title: "Every teammate has a role",
        severity: Low,
        category: Identity,
        source: Object,
        description: "One finding per teammate without a role object in GET /admins. Roles are \
                      returned from Intercom-Version 2.16; with an older version the check is \
                      not evaluated.",
        risk: "Teammates without a role carry individually toggled permissions that drift over \
               time and escape role reviews.",
        remediation: "In Intercom open Settings > Workspace > Teammates > Roles, create roles \
                      that match job functions, then select each listed teammate, choose \"Edit \
                      permissions\" and assign a role.",
        compliance: &[
            (CIS_V8, &["6.8"]),
            (SOC2, &["CC6.3"]),
            (ISO_27001, &["A.5.15", "A.5.18"]),
            (NIST_800_53, &["AC-2", "AC-6"]),
        ],
    },
    CheckMeta {
        id: "admin_long_away",
        title: "No teammate has been away for longer than the limit",
        severity: Low,
        category: Identity,
        source: Object,
        description: "One finding per teammate continuously in away mode for more than \
                      checks.long_away_days (default 30), tracked across scans. Tracking starts \
                      the first time the scanner sees the teammate away.",
        risk: "A teammate away for weeks (leave, departure) keeps full access that nobody uses; \
               a compromise of the account would go unnoticed.",
        remediation: "In Intercom open Settings > Workspace > Teammates and check with the \
                      listed teammate's manager: if they left, choose \"Remove from workspace\"; \
                      if on leave, consider revoking their seat until they return.",
        compliance: &[
            (CIS_V8, &["5.3"]),
            (SOC2, &["CC6.2", "CC6.3"]),
            (ISO_27001, &["A.5.18"]),
            (NIST_800_53, &["AC-2(3)"]),
        ],
    },
    CheckMeta {
        id: "admin_new",
        title: "New teammates since the previous scan",
        severity: Info,
        category: Identity,
        source: Object,
        description: "One finding per teammate not present in the previous completed scan; never \
                      on an instance's first scan, which records the baseline.",
        risk: "An unexpected new teammate can be an attacker's persistence or a bypass of the \
               access-request process.",
        remediation: "In Intercom open Settings > Workspace > Teammates, confirm the listed \
                      teammate was approved through your access process; if not, choose \"Remove \
                      from workspace\" and review the activity log for who invited them.",
        compliance: &[
            (CIS_V8, &["5.1", "6.1"]),
            (SOC2, &["CC6.2"]),
            (ISO_27001, &["A.5.16", "A.5.18"]),
            (NIST_800_53, &["AC-2(4)"]),
        ],
    },
    CheckMeta {
        id: "inbox_seat_inactive",
        title: "No paid inbox seat sits unused",
        severity: Low,
        category: Identity,
        source: Object,
        description: "One finding per teammate with has_inbox_seat and no activity performed by \
                      them for checks.inbox_inactive_days (default 60). Needs activity log \
                      history covering that period; otherwise not evaluated.",
        risk: "Unused seats are unused access: an account nobody watches is an easy takeover \
               target, and the seat costs money.",
        remediation: "In Intercom open Settings > Workspace > Teammates, select the listed \
                      teammate and change their seat (\"Manage seats\") to a free/lite seat, or \
                      remove the teammate if they no longer need access.",
        compliance: &[
            (CIS_V8, &["5.3"]),
            (SOC2, &["CC6.2"]),
            (ISO_27001, &["A.5.18"]),
            (NIST_800_53, &["AC-2(3)"]),
        ],
    },
];
