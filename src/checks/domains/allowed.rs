//! The one validation of an instance's allowed email domains, shared by `instance add`,
//! `instance set-domains` and any other front end that edits them.

use super::data;
use super::names::{is_public_suffix, normalize_domain, registrable};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AllowedDomainError {
    #[error("invalid allowed domain {0:?}: give bare domain names such as example.com (an internationalised name such as münchen.de or its punycode xn--mnchen-3ya.de is fine)")]
    Invalid(String),
    #[error("{0:?} is a public suffix, not a domain anyone owns (it would allow every organisation under it): give your organisation's own domain, e.g. example.{0}")]
    PublicSuffix(String),
}

/// Validated allowed domains, normalized (lower-case ASCII, IDN as punycode), in the order
/// given without duplicates, plus warnings worth showing the operator.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AllowedDomains {
    pub domains: Vec<String>,
    pub warnings: Vec<String>,
}

/// Parses comma-separated lists of domains (`@example.com` is read as `example.com`).
/// Refuses malformed names and bare public suffixes (`co.uk`, `com`); warns when a consumer
/// or disposable mail domain is allowed, because anyone can have an address there.
pub fn validate_allowed_domains(raw: &[String]) -> Result<AllowedDomains, AllowedDomainError> {
    let mut out = AllowedDomains::default();
    for given in raw.iter().flat_map(|d| d.split(',')) {
        let given = given.trim().trim_start_matches('@');
        if given.is_empty() {
            continue;
        }
        let Some(d) = normalize_domain(given) else {
            let lower = given.trim_end_matches('.').to_ascii_lowercase();
            return Err(if is_public_suffix(&lower) {
                AllowedDomainError::PublicSuffix(lower)
            } else {
                AllowedDomainError::Invalid(given.into())
            });
        };
        if is_public_suffix(&d) || registrable(&d).is_none() {
            return Err(AllowedDomainError::PublicSuffix(d));
        }
        if out.domains.contains(&d) {
            continue;
        }
        if let Some(entry) = data::disposable_entry(&d) {
            out.warnings.push(format!(
                "{d} is a disposable mail domain ({entry} is listed in data/disposable_email_domains.txt): \
                 anyone can receive mail there, so it does not identify your organisation; teammates \
                 on it are still reported by admin_disposable_email"
            ));
        } else if let Some(entry) = data::consumer_entry(&d) {
            out.warnings.push(format!(
                "{d} is a consumer mail domain ({entry} is listed in data/free_email_domains.txt): \
                 anyone can register an address there, so it does not identify your organisation; \
                 teammates on it are still reported by admin_personal_email_domain unless you add \
                 it to checks.personal_email_domains_ignore"
            ));
        }
        out.domains.push(d);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(items: &[&str]) -> Result<AllowedDomains, AllowedDomainError> {
        validate_allowed_domains(&items.iter().map(|s| s.to_string()).collect::<Vec<_>>())
    }

    #[test]
    fn normalizes_deduplicates_and_accepts_idn() {
        let got = v(&["Acme.com, @acme.co.uk", "acme.com", "münchen.de", " "]).unwrap();
        assert_eq!(got.domains, ["acme.com", "acme.co.uk", "xn--mnchen-3ya.de"]);
        assert!(got.warnings.is_empty());
        assert_eq!(
            v(&["xn--mnchen-3ya.de"]).unwrap().domains,
            ["xn--mnchen-3ya.de"]
        );
        assert_eq!(v(&[]).unwrap(), AllowedDomains::default());
    }

    #[test]
    fn refuses_malformed_names_and_bare_public_suffixes() {
        for bad in ["not a domain", "localhost", "a_b.com", "*.acme.com"] {
            assert!(
                matches!(v(&[bad]), Err(AllowedDomainError::Invalid(_))),
                "{bad}"
            );
        }
        for suffix in ["co.uk", "com", "com.au", "github.io", "CO.UK."] {
            let err = v(&["acme.com", suffix]).unwrap_err();
            assert!(
                matches!(err, AllowedDomainError::PublicSuffix(_)),
                "{suffix}"
            );
            assert!(err.to_string().contains("public suffix"), "{err}");
        }
        assert!(v(&["acme.co.uk", "team.github.io"]).is_ok());
    }

    #[test]
    fn warns_about_consumer_and_disposable_domains() {
        let got = v(&["gmail.com", "mailinator.com", "acme.com"]).unwrap();
        assert_eq!(got.domains, ["gmail.com", "mailinator.com", "acme.com"]);
        assert_eq!(got.warnings.len(), 2);
        assert!(got.warnings[0].starts_with("gmail.com is a consumer mail domain"));
        assert!(got.warnings[1].starts_with("mailinator.com is a disposable mail domain"));
    }
}
