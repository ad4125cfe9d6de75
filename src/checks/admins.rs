//! O checks on teammate email addresses. Resource: `admin:<id>`.
//!
//! A teammate without an email (or without an id) cannot be judged: they are named in
//! the reason, and if nobody else fails the check is `error`, never `pass`.

use serde_json::json;

use super::catalog::CheckMeta;
use super::context::{
    admin_evidence, admin_label, admin_resource, unnamed, Ctx, EmailFacts, PerAdmin,
};
use super::domains::{affiliation, local_part, Affiliation, Provider};
use super::types::{FindingDraft, Verdict};
use crate::intercom::models::Admin;

/// A teammate as the email checks judge it: the trimmed address, its normalized domain
/// and its provider under the scan's settings.
struct Address<'a> {
    email: &'a str,
    domain: &'a str,
    provider: Option<&'a Provider>,
}

/// What the email checks share: iterate teammates with an id and a parseable email.
fn per_email(
    ctx: &Ctx<'_>,
    mut judge: impl FnMut(&Admin, &Address<'_>) -> Option<(String, serde_json::Value)>,
    m: &CheckMeta,
) -> Verdict {
    let admins = match ctx.admins() {
        Ok(a) => a,
        Err(v) => return v,
    };
    let mut agg = PerAdmin::default();
    for admin in admins {
        let Some(resource) = admin_resource(admin) else {
            agg.unknown(unnamed(admin));
            continue;
        };
        let email = admin.email.as_deref().map(str::trim).unwrap_or_default();
        let (domain, provider) = match ctx.email_facts(admin) {
            EmailFacts::Missing => {
                agg.unknown(format!("{resource} has no email"));
                continue;
            }
            EmailFacts::Unparseable => {
                agg.unknown(format!("{resource} has an unparseable email {email:?}"));
                continue;
            }
            EmailFacts::Parsed(facts) => (facts.domain.as_str(), facts.provider.as_ref()),
        };
        let address = Address {
            email,
            domain,
            provider,
        };
        if let Some((title, extra)) = judge(admin, &address) {
            let mut evidence = admin_evidence(admin);
            if let (Some(e), Some(x)) = (evidence.as_object_mut(), extra.as_object()) {
                e.extend(x.clone());
            }
            agg.fail(FindingDraft {
                resource,
                severity: m.severity,
                title,
                evidence: evidence.into(),
            });
        }
    }
    agg.finish()
}

/// Disposable takes precedence over personal, and both over lookalike and external: one
/// finding per teammate for the most specific reason.
pub(super) fn disposable_email(ctx: &Ctx<'_>, m: &CheckMeta) -> Verdict {
    per_email(
        ctx,
        |_, a| match a.provider? {
            Provider::Disposable { entry } => Some((
                format!("Teammate {} uses a disposable email address", a.email),
                json!({"domain": a.domain, "dataset_entry": entry}),
            )),
            Provider::Consumer { .. } => None,
        },
        m,
    )
}

pub(super) fn personal_email_domain(ctx: &Ctx<'_>, m: &CheckMeta) -> Verdict {
    per_email(
        ctx,
        |_, a| match a.provider? {
            Provider::Consumer { entry } => Some((
                format!("Teammate {} uses a personal email domain", a.email),
                json!({"domain": a.domain, "dataset_entry": entry}),
            )),
            Provider::Disposable { .. } => None,
        },
        m,
    )
}

fn no_allowed_domains() -> Verdict {
    Verdict::error("no allowed domains configured and the token owner's email domain is unknown")
}

pub(super) fn lookalike_domain(ctx: &Ctx<'_>, m: &CheckMeta) -> Verdict {
    let Some(allowed) = ctx.allowed_domains() else {
        return no_allowed_domains();
    };
    per_email(
        ctx,
        |_, a| {
            if a.provider.is_some() {
                return None;
            }
            match affiliation(a.domain, &allowed) {
                Affiliation::Lookalike { imitates, rule } => Some((
                    format!(
                        "Teammate {} uses {}, a lookalike of {imitates}",
                        a.email, a.domain
                    ),
                    json!({
                        "domain": a.domain,
                        "imitates": imitates,
                        "rule": rule.as_str(),
                        "allowed_domains": allowed,
                    }),
                )),
                Affiliation::Allowed | Affiliation::External => None,
            }
        },
        m,
    )
}

pub(super) fn external_domain(ctx: &Ctx<'_>, m: &CheckMeta) -> Verdict {
    let Some(allowed) = ctx.allowed_domains() else {
        return no_allowed_domains();
    };
    per_email(
        ctx,
        |_, a| {
            // Disposable, personal and lookalike domains have their own checks: one finding.
            if a.provider.is_some() {
                return None;
            }
            (affiliation(a.domain, &allowed) == Affiliation::External).then(|| {
                (
                    format!("Teammate {} is outside the allowed email domains", a.email),
                    json!({"domain": a.domain, "allowed_domains": allowed}),
                )
            })
        },
        m,
    )
}

pub(super) fn shared_account(ctx: &Ctx<'_>, m: &CheckMeta) -> Verdict {
    let generic = &ctx.settings.shared_account_local_parts;
    per_email(
        ctx,
        |admin, a| {
            let local = local_part(a.email)?;
            generic
                .iter()
                .any(|g| g.trim().eq_ignore_ascii_case(&local))
                .then(|| {
                    (
                        format!(
                            "Teammate {} looks like a shared account",
                            admin_label(admin)
                        ),
                        json!({"local_part": local}),
                    )
                })
        },
        m,
    )
}

#[cfg(test)]
mod tests {
    use super::super::testutil::*;
    use super::super::types::{CheckStatus, Severity};
    use super::super::CheckSettings;
    use crate::intercom::IntercomError;

    fn with_admins(admins: Vec<crate::intercom::models::Admin>) -> super::super::Snapshot {
        let mut snap = snapshot();
        snap.admins = Ok(admins);
        snap
    }

    #[test]
    fn personal_domains_fail_per_admin_including_wildcards() {
        let snap = with_admins(vec![
            admin("1", "owner@acme.com"),
            admin("5", "j.doe@Gmail.com"),
            admin("6", "k@gmx.de"),
        ]);
        let o = run("admin_personal_email_domain", &snap);
        assert_eq!(o.status, CheckStatus::Fail);
        assert_eq!(resources(&o), ["admin:5", "admin:6"]);
        assert_eq!(o.findings[0].severity, Severity::High);
        assert_eq!(
            o.findings[0].title,
            "Teammate j.doe@Gmail.com uses a personal email domain"
        );
        assert_eq!(o.findings[1].evidence.value()["domain"], "gmx.de");
        assert_eq!(
            run("admin_personal_email_domain", &snapshot()).status,
            CheckStatus::Pass
        );
    }

    #[test]
    fn missing_email_is_never_a_silent_pass() {
        let mut no_email = admin("7", "x@acme.com");
        no_email.email = None;
        let snap = with_admins(vec![admin("1", "owner@acme.com"), no_email.clone()]);
        for id in [
            "admin_personal_email_domain",
            "admin_external_domain",
            "admin_shared_account",
        ] {
            let o = run(id, &snap);
            assert_eq!(o.status, CheckStatus::Error, "{id}");
            assert!(o.reason.unwrap().contains("admin:7 has no email"), "{id}");
        }
        let snap = with_admins(vec![admin("5", "a@gmail.com"), no_email]);
        let o = run("admin_personal_email_domain", &snap);
        assert_eq!(o.status, CheckStatus::Fail);
        assert!(o
            .reason
            .unwrap()
            .contains("1 teammate(s) could not be checked"));
    }

    #[test]
    fn admins_fetch_failure_is_an_error() {
        let mut snap = snapshot();
        snap.admins = Err(IntercomError::Transient {
            endpoint: "/admins".into(),
            reason: "HTTP 500".into(),
        });
        for id in [
            "admin_personal_email_domain",
            "admin_without_role",
            "admin_new",
        ] {
            assert_eq!(run(id, &snap).status, CheckStatus::Error, "{id}");
        }
    }

    #[test]
    fn external_domains_default_to_the_owner_domain_and_skip_personal_ones() {
        let snap = with_admins(vec![
            admin("1", "owner@acme.com"),
            admin("2", "eu@support.acme.com"),
            admin("3", "c@contractor.io"),
            admin("4", "p@gmail.com"),
        ]);
        let o = run("admin_external_domain", &snap);
        assert_eq!(o.status, CheckStatus::Fail);
        assert_eq!(resources(&o), ["admin:3"]);
        assert_eq!(o.findings[0].severity, Severity::Medium);

        let mut snap = snap;
        snap.allowed_domains = vec!["acme.com".into(), "Contractor.io".into()];
        assert_eq!(
            run("admin_external_domain", &snap).status,
            CheckStatus::Pass
        );

        snap.allowed_domains.clear();
        let mut me = me();
        me.email = None;
        snap.me = Ok(me);
        assert_eq!(
            run("admin_external_domain", &snap).status,
            CheckStatus::Error
        );
    }

    #[test]
    fn shared_local_parts_fail_ignoring_case_and_tags() {
        let snap = with_admins(vec![
            admin("1", "owner@acme.com"),
            admin("8", "Support+eu@acme.com"),
            admin("9", "it@acme.com"),
            admin("10", "italo@acme.com"),
        ]);
        let o = run("admin_shared_account", &snap);
        assert_eq!(resources(&o), ["admin:8", "admin:9"]);
        let settings = CheckSettings {
            shared_account_local_parts: vec!["italo".into()],
            ..Default::default()
        };
        let o = run_with("admin_shared_account", &snap, &previous(), &settings);
        assert_eq!(resources(&o), ["admin:10"]);
    }
}
