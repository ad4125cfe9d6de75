//! What every check function sees once `/me` succeeded, with the gates shared by families:
//! the teammate list, the allowed domains and the per-admin result aggregation.

use chrono::{DateTime, Utc};
use serde_json::{json, Value};

use foldhash::{HashMap, HashMapExt};

use super::domains::{
    domain_part, email_domain, normalize_domain, normalize_email_domain, provider, registrable,
    Provider,
};
use super::settings::CheckSettings;
use super::snapshot::{PreviousState, Snapshot};
use super::types::{FindingDraft, Verdict};
use crate::intercom::models::{Admin, Me};
use crate::intercom::IntercomError;

pub(crate) struct Ctx<'a> {
    pub snap: &'a Snapshot,
    pub prev: &'a PreviousState,
    pub settings: &'a CheckSettings,
    pub me: &'a Me,
    /// What several checks derive from the same snapshot, shared by every check of one
    /// evaluation.
    pub derived: &'a Derived<'a>,
}

/// Values several checks derive from the same teammates, worked out by the first check
/// that needs them and reused by the others of the same evaluation (same snapshot, same
/// settings). Five email checks read each teammate's domain and four its provider: the
/// IDNA normalisation and the dataset lookups, redone per check and teammate, were ~5 % of
/// a steady scan's CPU (benches/README.md, issue 17). Kept per distinct domain as written
/// (a workspace has few), not per teammate: a 20,000-teammate list would otherwise hold
/// ~2 MB more at the scan's memory peak.
#[derive(Default)]
pub(crate) struct Derived<'a> {
    domains: std::cell::OnceCell<HashMap<&'a str, Option<DomainFacts>>>,
}

/// A teammate's email domain as the email checks judge it.
pub(crate) struct DomainFacts {
    /// The normalized domain ([`email_domain`]).
    pub domain: String,
    /// Its mailbox provider under the scan's settings ([`provider`]).
    pub provider: Option<Provider>,
}

/// What the email checks can tell of one teammate's address.
pub(crate) enum EmailFacts<'d> {
    /// No email, or an empty one.
    Missing,
    /// An address whose domain does not parse.
    Unparseable,
    Parsed(&'d DomainFacts),
}

impl<'a> Ctx<'a> {
    /// [`EmailFacts`] of a teammate of the snapshot's list.
    pub fn email_facts(&self, admin: &Admin) -> EmailFacts<'a> {
        let Some(email) = admin.email.as_deref().map(str::trim) else {
            return EmailFacts::Missing;
        };
        if email.is_empty() {
            return EmailFacts::Missing;
        }
        let facts = domain_part(email).and_then(|d| self.domains().get(d)?.as_ref());
        facts.map_or(EmailFacts::Unparseable, EmailFacts::Parsed)
    }

    /// Every distinct domain part of the teammates' addresses, judged once.
    fn domains(&self) -> &'a HashMap<&'a str, Option<DomainFacts>> {
        self.derived.domains.get_or_init(|| {
            let mut out = HashMap::new();
            let Ok(admins) = &self.snap.admins else {
                return out;
            };
            for part in admins
                .iter()
                .filter_map(|a| domain_part(a.email.as_deref()?))
            {
                out.entry(part).or_insert_with(|| {
                    normalize_email_domain(part).map(|domain| DomainFacts {
                        provider: provider(
                            &domain,
                            &self.settings.personal_email_domains,
                            &self.settings.personal_email_domains_ignore,
                        ),
                        domain,
                    })
                });
            }
            out
        })
    }
}

impl<'a> Ctx<'a> {
    pub fn now(&self) -> DateTime<Utc> {
        self.snap.now
    }

    /// The teammate list, or the verdict a check needing it must return.
    pub fn admins(&self) -> Result<&'a [Admin], Verdict> {
        self.snap
            .admins
            .as_deref()
            .map_err(|e| Verdict::Error(fetch_error_reason(e)))
    }

    /// The instance's allowed domains (normalized), else the registrable domain of the token
    /// owner's address (`alice@eu.acme.co.uk` allows `acme.co.uk`, never `co.uk`); `None`
    /// when neither is known (the caller must not guess).
    pub fn allowed_domains(&self) -> Option<Vec<String>> {
        let configured: Vec<String> = self
            .snap
            .allowed_domains
            .iter()
            .filter_map(|d| normalize_domain(d.trim().trim_start_matches('@')))
            .collect();
        if !configured.is_empty() {
            return Some(configured);
        }
        let owner = self.me.email.as_deref().and_then(email_domain)?;
        registrable(&owner).map(|r| vec![r.to_string()])
    }
}

/// Reason for a check whose input could not be fetched. Rate limiting gets a fixed reason
/// because it is routine and never a failure.
pub(crate) fn fetch_error_reason(e: &IntercomError) -> String {
    match e {
        IntercomError::RateLimited { .. } => "rate limited".to_string(),
        IntercomError::Unauthorized { .. } => "token rejected".to_string(),
        other => other.to_string(),
    }
}

/// `admin:<id>`: Intercom admin ids never change, unlike emails and names.
pub(crate) fn admin_resource(admin: &Admin) -> Option<String> {
    admin
        .id
        .as_deref()
        .map(str::trim)
        .filter(|id| !id.is_empty())
        .map(|id| format!("admin:{id}"))
}

/// How a teammate is named in titles: the email identifies a person best.
pub(crate) fn admin_label(admin: &Admin) -> String {
    admin
        .email
        .clone()
        .or_else(|| admin.name.clone())
        .or_else(|| admin.id.as_deref().map(|id| format!("admin {}", id.trim())))
        .unwrap_or_else(|| "unnamed teammate".to_string())
}

/// Identity fields repeated in every per-admin finding's evidence.
pub(crate) fn admin_evidence(admin: &Admin) -> Value {
    json!({
        "admin_id": admin.id,
        "name": admin.name,
        "email": admin.email,
    })
}

/// Collects per-teammate results. Teammates the check cannot judge (no id, no email, a
/// missing field) are never silently passed: they are named in the reason, and when no
/// other teammate fails the check is `error` rather than `pass`.
#[derive(Default)]
pub(crate) struct PerAdmin {
    findings: Vec<FindingDraft>,
    unknown: Vec<String>,
    notes: Vec<String>,
}

impl PerAdmin {
    pub fn fail(&mut self, finding: FindingDraft) {
        self.findings.push(finding);
    }

    /// A teammate the check could not judge, e.g. `"admin:12 has no email"`.
    pub fn unknown(&mut self, what: String) {
        self.unknown.push(what);
    }

    /// Context for the reason that does not affect the status.
    pub fn note(&mut self, note: String) {
        self.notes.push(note);
    }

    pub fn finish(self) -> Verdict {
        let mut parts = self.notes;
        if !self.unknown.is_empty() {
            const SHOWN: usize = 10;
            let more = self.unknown.len().saturating_sub(SHOWN);
            let mut list = self.unknown[..self.unknown.len().min(SHOWN)].join("; ");
            if more > 0 {
                list.push_str(&format!("; and {more} more"));
            }
            parts.insert(
                0,
                format!(
                    "{} teammate(s) could not be checked: {list}",
                    self.unknown.len()
                ),
            );
        }
        let reason = (!parts.is_empty()).then(|| parts.join(". "));
        match (self.findings.is_empty(), self.unknown.is_empty()) {
            (false, _) => Verdict::Fail {
                findings: self.findings,
                reason,
            },
            (true, false) => Verdict::Error(reason.unwrap_or_default()),
            (true, true) => Verdict::Pass(reason),
        }
    }
}

/// How an admin without a resource key is named in an `unknown` entry.
pub(crate) fn unnamed(admin: &Admin) -> String {
    format!("{} has no id", admin_label(admin))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checks::types::Severity;

    /// The facts shared per domain are what each teammate's own address gives, whatever
    /// the case or spacing it is written with, and teammates without a usable address
    /// stay apart.
    #[test]
    fn email_facts_are_each_addresses_own_domain_and_provider() {
        use crate::checks::testutil::{admin, previous, snapshot};
        let mut snap = snapshot();
        let emails = [
            "a@Gmail.com",
            " b@gmail.com ",
            "c@acme.com",
            "d@mailinator.com",
            "e@",
            "@acme.com",
            "no-at-sign",
            "f@bad domain.com",
            "",
        ];
        let mut admins: Vec<Admin> = emails
            .iter()
            .enumerate()
            .map(|(i, e)| admin(&i.to_string(), e))
            .collect();
        let mut no_email = admin("99", "x@acme.com");
        no_email.email = None;
        admins.push(no_email);
        snap.admins = Ok(admins.clone());
        let (prev, settings, derived) = (previous(), CheckSettings::default(), Derived::default());
        let me = snap.me.clone().unwrap();
        let ctx = Ctx {
            snap: &snap,
            prev: &prev,
            settings: &settings,
            me: &me,
            derived: &derived,
        };
        for a in &admins {
            let email = a.email.as_deref().map(str::trim).unwrap_or_default();
            let expected = email_domain(email).map(|d| {
                let p = provider(
                    &d,
                    &settings.personal_email_domains,
                    &settings.personal_email_domains_ignore,
                );
                (d, p)
            });
            match (ctx.email_facts(a), expected) {
                (EmailFacts::Missing, None) => assert!(email.is_empty(), "{email:?}"),
                (EmailFacts::Unparseable, None) => assert!(!email.is_empty(), "{email:?}"),
                (EmailFacts::Parsed(f), Some((domain, provider))) => {
                    assert_eq!(f.domain, domain);
                    assert_eq!(f.provider, provider);
                }
                (_, expected) => panic!("{email:?}: expected {expected:?}"),
            }
        }
        assert!(matches!(
            ctx.email_facts(&admins[1]),
            EmailFacts::Parsed(DomainFacts {
                provider: Some(Provider::Consumer { .. }),
                ..
            })
        ));
    }

    fn finding() -> FindingDraft {
        FindingDraft {
            resource: "admin:1".into(),
            severity: Severity::Low,
            title: "t".into(),
            evidence: Value::Null.into(),
        }
    }

    #[test]
    fn unknown_teammates_turn_a_pass_into_an_error() {
        let mut agg = PerAdmin::default();
        agg.unknown("admin:2 has no email".into());
        match agg.finish() {
            Verdict::Error(reason) => assert!(reason.contains("admin:2 has no email"), "{reason}"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn failures_win_and_still_mention_unknown_teammates() {
        let mut agg = PerAdmin::default();
        agg.fail(finding());
        agg.unknown("admin:2 has no email".into());
        match agg.finish() {
            Verdict::Fail { findings, reason } => {
                assert_eq!(findings.len(), 1);
                assert!(reason
                    .unwrap()
                    .contains("1 teammate(s) could not be checked"));
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(PerAdmin::default().finish(), Verdict::Pass(None));
    }

    #[test]
    fn resource_keys_use_the_admin_id() {
        let a = Admin {
            id: Some(" 42 ".into()),
            ..Default::default()
        };
        assert_eq!(admin_resource(&a).as_deref(), Some("admin:42"));
        assert_eq!(admin_resource(&Admin::default()), None);
        assert_eq!(admin_label(&a), "admin 42");
    }
}
