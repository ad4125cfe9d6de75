//! Email addresses and domains as the teammate and invite checks judge them: parsing,
//! the consumer and disposable datasets, allowed domains (Public Suffix List, label-based
//! subdomains) and lookalikes. `validate_allowed_domains` is the one validation of an
//! instance's allowed domains for every front end.

mod allowed;
mod data;
mod lookalike;
mod names;

pub use allowed::{validate_allowed_domains, AllowedDomainError, AllowedDomains};
pub use data::preload;
pub use lookalike::LookalikeRule;
pub use names::{is_public_suffix, is_within, normalize_domain, registrable};

/// The normalized domain of an address (lower-case ASCII, IDN as punycode), or `None` when
/// it is not `local@domain` with a well-formed domain of two labels or more.
pub(crate) fn email_domain(email: &str) -> Option<String> {
    normalize_email_domain(domain_part(email)?)
}

/// The text after the last `@` of an address with a non-empty local part, as written.
pub(crate) fn domain_part(email: &str) -> Option<&str> {
    let (local, domain) = email.trim().rsplit_once('@')?;
    (!local.is_empty()).then_some(domain)
}

/// [`email_domain`] of the [`domain_part`] of an address.
pub(crate) fn normalize_email_domain(domain: &str) -> Option<String> {
    if domain.contains(char::is_whitespace) {
        return None;
    }
    normalize_domain(domain)
}

/// The lower-cased local part without a `+tag`: `Support+eu@x.com` is the shared `support`.
pub(crate) fn local_part(email: &str) -> Option<String> {
    let (local, _) = email.trim().rsplit_once('@')?;
    let base = local.split('+').next().unwrap_or(local);
    (!base.is_empty()).then(|| base.to_ascii_lowercase())
}

/// `*` stands for exactly one label, so `gmx.*` matches `gmx.de` but not `gmx.co.uk` or
/// `mail.gmx.de`; other patterns match exactly. Both sides are compared case-insensitively.
pub(crate) fn matches_pattern(domain: &str, pattern: &str) -> bool {
    // Compared in place (ASCII case folded, as `to_ascii_lowercase` on both sides would):
    // this runs for every teammate and pattern of every scan, so nothing is allocated.
    let pattern = pattern.trim().trim_start_matches('@');
    if !pattern.contains('*') {
        return domain.eq_ignore_ascii_case(pattern);
    }
    let (mut d, mut p) = (domain.split('.'), pattern.split('.'));
    loop {
        match (d.next(), p.next()) {
            (None, None) => return true,
            (Some(dl), Some(pl))
                if (pl == "*" && !dl.is_empty()) || dl.eq_ignore_ascii_case(pl) => {}
            _ => return false,
        }
    }
}

/// What kind of mailbox provider a domain belongs to, per the vendored datasets and the
/// configured patterns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Provider {
    /// A throwaway mailbox service; `entry` is the dataset's entry that matched.
    Disposable { entry: String },
    /// A consumer (free) mail provider; `entry` is the dataset entry or config pattern.
    Consumer { entry: String },
}

/// The provider of a normalized domain: disposable first (the consumer dataset also lists
/// many throwaway services), then consumer, unless `ignore` names the domain or a parent.
pub(crate) fn provider(domain: &str, patterns: &[String], ignore: &[String]) -> Option<Provider> {
    let ignored = names::self_and_parents(domain)
        .any(|d| ignore.iter().any(|pattern| matches_pattern(d, pattern)));
    if ignored {
        return None;
    }
    if let Some(entry) = data::disposable_entry(domain) {
        return Some(Provider::Disposable {
            entry: entry.to_string(),
        });
    }
    data::consumer_entry(domain)
        .map(str::to_string)
        .or_else(|| {
            patterns
                .iter()
                .find(|p| matches_pattern(domain, p))
                .map(|p| p.trim().to_ascii_lowercase())
        })
        .map(|entry| Provider::Consumer { entry })
}

/// How a normalized domain relates to the organisation's allowed domains.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Affiliation<'a> {
    /// An allowed domain or one of its subdomains.
    Allowed,
    /// Imitates `imitates`, one of the allowed domains.
    Lookalike {
        imitates: &'a str,
        rule: LookalikeRule,
    },
    External,
}

/// `allowed` holds normalized domains (see [`validate_allowed_domains`]).
pub(crate) fn affiliation<'a>(domain: &str, allowed: &'a [String]) -> Affiliation<'a> {
    if is_allowed(domain, allowed) {
        return Affiliation::Allowed;
    }
    match lookalike::imitated(domain, allowed) {
        Some((imitates, rule)) => Affiliation::Lookalike { imitates, rule },
        None => Affiliation::External,
    }
}

/// A domain is allowed when it equals an allowed domain or is one of its subdomains, by
/// label: `eu.example.com` belongs to whoever owns `example.com`, `badexample.com` does not.
pub(crate) fn is_allowed(domain: &str, allowed: &[String]) -> bool {
    allowed.iter().any(|a| {
        let a = a.trim().trim_start_matches('@');
        // Stored allowed domains are normalized (lower-case) already: copy only if not.
        let a: std::borrow::Cow<'_, str> = if a.bytes().any(|b| b.is_ascii_uppercase()) {
            a.to_ascii_lowercase().into()
        } else {
            a.into()
        };
        !a.is_empty() && is_within(domain, &a)
    })
}

/// Email addresses found in free text (an activity description), lower-cased, in order,
/// without duplicates.
pub(crate) fn emails_in_text(text: &str) -> Vec<String> {
    let mut found: Vec<String> = Vec::new();
    let is_edge = |c: char| !(c.is_ascii_alphanumeric() || "@._%+-".contains(c));
    for token in text.split(is_edge) {
        let token = token.trim_matches(|c: char| c == '.' || c == '-');
        if token.matches('@').count() == 1 && email_domain(token).is_some() {
            let lower = token.to_ascii_lowercase();
            if !found.contains(&lower) {
                found.push(lower);
            }
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn parses_domains_and_local_parts() {
        assert_eq!(
            email_domain(" J.Doe@GMail.com ").as_deref(),
            Some("gmail.com")
        );
        assert_eq!(
            email_domain("x@example.com.").as_deref(),
            Some("example.com")
        );
        assert_eq!(email_domain("no-at-sign"), None);
        assert_eq!(email_domain("@example.com"), None);
        assert_eq!(email_domain("a@localhost"), None);
        assert_eq!(local_part("Support+EU@x.com").as_deref(), Some("support"));
        assert_eq!(local_part("+x@x.com"), None);
    }

    #[test]
    fn wildcard_matches_exactly_one_label() {
        assert!(matches_pattern("gmx.de", "gmx.*"));
        assert!(matches_pattern("GMX.net", "gmx.*"));
        assert!(!matches_pattern("gmx.co.uk", "gmx.*"));
        assert!(!matches_pattern("mail.gmx.de", "gmx.*"));
        assert!(!matches_pattern("gmxx.de", "gmx.*"));
        assert!(matches_pattern("gmail.com", "Gmail.com"));
        assert!(!matches_pattern("notgmail.com", "gmail.com"));
    }

    #[test]
    fn allowed_domains_include_subdomains_only() {
        let allowed = list(&["example.com", "@Corp.io"]);
        assert!(is_allowed("example.com", &allowed));
        assert!(is_allowed("eu.example.com", &allowed));
        assert!(is_allowed("corp.io", &allowed));
        assert!(!is_allowed("badexample.com", &allowed));
        assert!(!is_allowed("example.com.evil.io", &allowed));
        assert!(!is_allowed("example.com", &list(&[""])));
    }

    #[test]
    fn finds_emails_in_descriptions() {
        let text = "Ciaran (admin5@email.com) invited J.Doe@Gmail.com, and j.doe@gmail.com.";
        assert_eq!(
            emails_in_text(text),
            ["admin5@email.com", "j.doe@gmail.com"]
        );
        assert!(emails_in_text("no address here @ all").is_empty());
    }
}
